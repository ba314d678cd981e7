/* Helpers of the cluster tests (see cluster_util.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster_util.h"

const char *ct_addr(void)
{
	const char *a = getenv("PM_TEST_ADDR");

	return a && *a ? a : "127.0.0.1";
}

/* A socket bound to a free port of the test address (*port), still open. */
static int hold_free_port(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(inet_pton(AF_INET, ct_addr(), &sa.sin_addr), 1);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

void ct_free_ports(int *ports, int n)
{
	int fds[16];

	/* All held at once, so that no two are the same. */
	assert_true(n > 0 && n <= 16);
	for (int i = 0; i < n; i++)
		fds[i] = hold_free_port(&ports[i]);
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

void ct_write_file(const char *path, int mode, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

void ct_cluster_file(const char *ini, const char *secret_file,
		     const int *ports, int n)
{
	char text[1024];
	int len;

	len = snprintf(text, sizeof(text),
		       "[cluster]\nsecret_file = %s\nheartbeat_ms = %d\n"
		       "suspect_ms = %d\ndown_ms = %d\n", secret_file,
		       CT_HEARTBEAT_MS, CT_SUSPECT_MS, CT_DOWN_MS);
	for (int i = 0; i < n; i++)
		len += snprintf(text + len, sizeof(text) - (size_t)len,
				"[node %d]\naddress = %s:%d\n", i + 1,
				ct_addr(), ports[i]);
	assert_true((size_t)len < sizeof(text));
	ct_write_file(ini, 0644, text);
}

void ct_cluster_files(char *dir, char *ini, size_t ini_len, char *key,
		      size_t key_len, int n)
{
	int ports[16];

	assert_non_null(mkdtemp(dir));
	snprintf(ini, ini_len, "%s/cluster.ini", dir);
	snprintf(key, key_len, "%s/cluster.key", dir);
	ct_write_file(key, 0600, "a cluster test's own secret, 32+");
	ct_free_ports(ports, n);
	ct_cluster_file(ini, "cluster.key", ports, n);
}

void ct_reap(struct pmd_proc *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	p->pid = 0;
}

void ct_kill(struct pmd_proc *p)
{
	if (p->pid <= 0)
		return;
	ct_reap(p);
	unlink(p->socket);
	unlink(p->log);
	rmdir(p->dir);
}

uint64_t ct_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct pm_node_info ct_seen(const struct pmd_proc *p, pm_node_t of)
{
	struct pm_node_info info[8];
	int n = 8;
	pm_t *pm = test_connect(p);

	assert_int_equal(pm_nodes(pm, info, &n), 0);
	pm_disconnect(pm);
	for (int k = 0; k < n && k < 8; k++)
		if (info[k].id == of)
			return info[k];
	fail_msg("%s does not list node %u", p->socket, of);
	return info[0];
}

uint64_t ct_wait_state(const struct pmd_proc *p, pm_node_t of, int state,
		       uint64_t max_ms)
{
	uint64_t t0 = ct_now_ms();

	while (ct_seen(p, of).state != state) {
		if (ct_now_ms() - t0 > max_ms)
			fail_msg("%s never saw node %u in state %d (now %d)",
				 p->socket, of, state, ct_seen(p, of).state);
		usleep(20000);
	}
	return ct_now_ms() - t0;
}

container_t ct_import(pm_t *owner, container_t c, pm_t *s)
{
	pm_cap_token_t tok;
	container_t weak, ref;
	pm_task_t sid;

	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(owner, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(owner, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	return ref;
}

void ct_start_node(struct pmd_proc *p, int id, const char *ini,
		   const char *const *extra)
{
	static const char *const standard[] = { "--guarantee", "1024", NULL };
	const char *args[32] = { "--node-id", NULL, "--cluster", ini,
				 "--memory", "64M" };
	char sid[16];
	int n = 6;

	snprintf(sid, sizeof(sid), "%d", id);
	args[1] = sid;
	if (!extra)
		extra = standard;
	while (*extra && n < 31)
		args[n++] = *extra++;
	args[n] = NULL;
	pmd_proc_start(p, args);
}

void ct_start_nodes(struct pmd_proc *nodes, int n, const char *ini)
{
	for (int i = 0; i < n; i++)
		ct_start_node(&nodes[i], i + 1, ini, NULL);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			if (i != j)
				ct_wait_state(&nodes[i], (pm_node_t)(j + 1),
					      PM_NODE_UP, 6000);
}

void ct_cluster_down(struct pmd_proc *nodes, int n, const char *dir,
		     const char *ini, const char *key)
{
	for (int i = 0; i < n; i++)
		ct_reap(&nodes[i]);
	unlink(ini);
	unlink(key);
	rmdir(dir);
}
