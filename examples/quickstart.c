/* quickstart.c - two tasks share a container: the owner fills it, the
 * other maps it. The rendezvous: the other task sends its id, the owner
 * sends back a token (here through a pipe pair between a parent and the
 * child it forks; a session belongs to its process, so each connects).
 * Run it with a pmd listening: PM_ENDPOINT=/path/to/pmd.sock quickstart */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pm/pm.h>

static int other(int to_owner, int from_owner)
{
	pm_t *pm;
	pm_task_t me;
	pm_cap_token_t token;
	container_t ref;
	void *addr;
	int granted;

	if (pm_connect(NULL, &pm) || pm_self(pm, &me))
		return 1;
	/* 1. Tell the owner who we are; 2. receive the token. */
	if (write(to_owner, &me, sizeof(me)) != sizeof(me) ||
	    read(from_owner, &token, sizeof(token)) != sizeof(token))
		return 1;
	/* 3. Import it and map what the owner wrote. */
	if (pm_cap_import(pm, &token, &ref) ||
	    pm_container_map(pm, ref, 0, 1, CONT_MAP_READ, &addr, &granted))
		return 1;
	printf("the other task reads: %s\n", (const char *)addr);
	pm_disconnect(pm);
	return 0;
}

int main(void)
{
	int up[2], down[2], status, n = 1;
	pm_t *pm;
	container_t c, ref;
	pm_task_t them;
	pm_cap_token_t token;
	const char msg[] = "hello from the owner";
	pid_t child;

	if (pipe(up) || pipe(down))
		return 1;
	child = fork();
	if (child == 0)
		return other(up[1], down[0]);
	/* The owner: a container with one frame, written. */
	if (pm_connect(NULL, &pm) || pm_container_create(pm, &c) ||
	    pm_container_allocate(pm, c, 0, &n, 0) ||
	    pm_container_write(pm, c, 0, 0, msg, sizeof(msg)))
		return 1;
	/* The rendezvous: their id in, a weak reference for them, its token
	 * out. */
	if (read(up[0], &them, sizeof(them)) != sizeof(them) ||
	    pm_container_share(pm, c, them, &ref) ||
	    pm_cap_export(pm, ref, &token) ||
	    write(down[1], &token, sizeof(token)) != sizeof(token))
		return 1;
	if (waitpid(child, &status, 0) != child || status)
		return 1;
	pm_container_destroy(pm, c);
	pm_disconnect(pm);
	return 0;
}
