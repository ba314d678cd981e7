/* quickstart.c - two tasks share a container: the owner fills it, the
 * other maps it. The rendezvous: the other task sends its id, the owner
 * sends back a token (here through a pipe pair between a parent and the
 * child it forks; a session belongs to its process, so each connects).
 * Run it with a pmd listening: PM_ENDPOINT=/path/to/pmd.sock quickstart
 * (each task is guaranteed the pmd's --guarantee frames: the pmd must
 * have room for two). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pm/pm.h>

/* A call that failed: said, and the program ends (the other process
 * then reads the end of its pipe, and ends too). */
static int failed(const char *who, const char *what, error_t err)
{
	fprintf(stderr, "%s: %s: %s\n", who, what,
		err ? strerror(err) : "the other task is gone");
	return 1;
}

static int other(int to_owner, int from_owner)
{
	pm_t *pm;
	pm_task_t me;
	pm_cap_token_t token;
	container_t ref;
	void *addr;
	int granted;
	error_t err;

	if ((err = pm_connect(NULL, &pm)) || (err = pm_self(pm, &me)))
		return failed("other", "connect", err);
	/* 1. Tell the owner who we are; 2. receive the token. */
	if (write(to_owner, &me, sizeof(me)) != sizeof(me) ||
	    read(from_owner, &token, sizeof(token)) != sizeof(token))
		return failed("other", "rendezvous", 0);
	/* 3. Import it and map what the owner wrote. */
	if ((err = pm_cap_import(pm, &token, &ref)) ||
	    (err = pm_container_map(pm, ref, 0, 1, CONT_MAP_READ, &addr,
				    &granted)))
		return failed("other", "import and map", err);
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
	error_t err;

	if (pipe(up) || pipe(down) || (child = fork()) < 0)
		return failed("owner", "pipe and fork", 0);
	if (child == 0) {
		close(up[0]);
		close(down[1]);
		return other(up[1], down[0]);
	}
	close(up[1]);
	close(down[0]);
	/* The owner: a container with one frame, written. */
	if ((err = pm_connect(NULL, &pm)) ||
	    (err = pm_container_create(pm, &c)) ||
	    (err = pm_container_allocate(pm, c, 0, &n, 0)) ||
	    (err = pm_container_write(pm, c, 0, 0, msg, sizeof(msg))))
		return failed("owner", "a container", err);
	/* The rendezvous: their id in, a weak reference for them, its token
	 * out. */
	if (read(up[0], &them, sizeof(them)) != sizeof(them))
		return failed("owner", "rendezvous", 0);
	if ((err = pm_container_share(pm, c, them, &ref)) ||
	    (err = pm_cap_export(pm, ref, &token)))
		return failed("owner", "share", err);
	if (write(down[1], &token, sizeof(token)) != sizeof(token))
		return failed("owner", "rendezvous", 0);
	if (waitpid(child, &status, 0) != child || status)
		return failed("owner", "the other task", 0);
	pm_container_destroy(pm, c);
	pm_disconnect(pm);
	return 0;
}
