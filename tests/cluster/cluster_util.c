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

uint64_t ct_budget_free(const struct pmd_proc *p)
{
	struct pm_debug_stat st;
	pm_t *pm = test_connect(p);

	assert_int_equal(pm_debug_stat(pm, &st), 0);
	pm_disconnect(pm);
	return st.frames_free;
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

/* p runs and is not stopped (a paused node cannot be asked). */
static bool node_serving(const struct pmd_proc *p)
{
	char path[64], buf[256], *rp;
	FILE *f;
	bool ok = false;

	if (p->pid <= 0 || kill(p->pid, 0) < 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)p->pid);
	f = fopen(path, "r");
	if (f && fgets(buf, sizeof(buf), f) && (rp = strrchr(buf, ')')))
		ok = rp[1] == ' ' && rp[2] != 'T' && rp[2] != 't' &&
		     rp[2] != 'Z';
	if (f)
		fclose(f);
	return ok;
}

/* What one node's books say. */
struct books {
	bool live;
	pm_node_t id;
	int n;
	struct pm_debug_loan e[64];
};

static uint64_t books_of(const struct books *b, pm_node_t of, bool lent)
{
	for (int i = 0; i < b->n; i++)
		if (b->e[i].node == of)
			return lent ? b->e[i].lent_to : b->e[i].borrowed_from;
	return 0;
}

/* Reads every serving node's books (each must agree with itself);
 * whether they agree with each other: a node's loans to another are
 * that one's borrowings, and nothing is lent to or borrowed from a node
 * that is not serving. why gets the first disagreement. */
static bool books_agree(const struct pmd_proc *nodes, int n,
			struct books *b, char *why, size_t len)
{
	for (int i = 0; i < n; i++) {
		struct pm_debug_stat st;
		pm_task_t self;
		pm_t *pm;
		int ok = 0;

		b[i] = (struct books){ .live = node_serving(&nodes[i]) };
		if (!b[i].live)
			continue;
		if (pm_connect(nodes[i].socket, &pm)) {
			b[i].live = false;
			continue;
		}
		b[i].n = 64;
		assert_int_equal(pm_self(pm, &self), 0);
		b[i].id = (pm_node_t)(self >> 48);
		assert_int_equal(pm_debug_stat(pm, &st), 0);
		assert_int_equal(pm_debug_loans(pm, b[i].e, &b[i].n, &ok), 0);
		pm_disconnect(pm);
		if (!st.invariant_ok || !ok)
			fail_msg("node %u: its accounting check failed (see "
				 "its log, %s)", b[i].id, nodes[i].log);
	}
	for (int i = 0; i < n; i++) {
		if (!b[i].live)
			continue;
		for (int k = 0; k < b[i].n; k++) {
			const struct pm_debug_loan *e = &b[i].e[k];
			const struct books *o = NULL;

			for (int j = 0; j < n; j++)
				if (b[j].live && b[j].id == e->node)
					o = &b[j];
			if (!o && (e->lent_to || e->borrowed_from)) {
				snprintf(why, len, "node %u lends %lu slots "
					 "to and borrows %lu of node %u, which "
					 "is not serving", b[i].id,
					 (unsigned long)e->lent_to,
					 (unsigned long)e->borrowed_from,
					 e->node);
				return false;
			}
			if (o && (books_of(o, b[i].id, false) != e->lent_to ||
				  books_of(o, b[i].id, true) !=
				  e->borrowed_from)) {
				snprintf(why, len, "node %u lends %lu slots to "
					 "node %u, which borrows %lu; node %u "
					 "borrows %lu, node %u lends %lu",
					 b[i].id, (unsigned long)e->lent_to,
					 o->id, (unsigned long)books_of(
					 o, b[i].id, false), b[i].id,
					 (unsigned long)e->borrowed_from, o->id,
					 (unsigned long)books_of(o, b[i].id,
								 true));
				return false;
			}
		}
	}
	return true;
}

void ct_check_loans(const struct pmd_proc *nodes, int n)
{
	static struct books b[16];
	uint64_t end = ct_now_ms() + 3 * CT_DOWN_MS + 2000;
	char why[256] = "";

	assert_true(n <= 16);
	uint64_t lent = 0;
	int live = 0;

	/* Loans go back, and nodes declare others down, in their time. */
	while (!books_agree(nodes, n, b, why, sizeof(why))) {
		if (ct_now_ms() > end)
			fail_msg("the nodes' books of loans disagree: %s", why);
		usleep(100 * 1000);
	}
	for (int i = 0; i < n; i++) {
		live += b[i].live;
		for (int k = 0; k < b[i].n; k++)
			lent += b[i].e[k].lent_to;
	}
	if (live)
		printf("the books of %d serving nodes agree (%lu slots lent)\n",
		       live, (unsigned long)lent);
}

void ct_stop_nodes(struct pmd_proc *nodes, int n)
{
	ct_check_loans(nodes, n);
	for (int i = 0; i < n; i++)
		pmd_proc_stop(&nodes[i]);
}

void ct_cluster_down(struct pmd_proc *nodes, int n, const char *dir,
		     const char *ini, const char *key)
{
	ct_check_loans(nodes, n);
	for (int i = 0; i < n; i++)
		ct_reap(&nodes[i]);
	unlink(ini);
	unlink(key);
	rmdir(dir);
}
