/*
 * Cluster membership with real daemons: three pmds on loopback ports find
 * each other, authenticate with the cluster secret and report each other
 * up; one killed (SIGKILL) turns suspect then down on the others within
 * the configured times; restarted, it rejoins under a new incarnation. A
 * node with another secret is refused by both sides and logged. Node
 * requests (pm_debug_ping) cross the fabric, fail clearly and in time when
 * the other node dies, and never stall the pmd's other sessions. Garbage
 * from the fabric (random, truncated, forged node messages) changes
 * nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <sys/un.h>

#include "cluster_util.h"
#include "fabric.h"
#include "pm_proto.h"

static char dir[] = "/tmp/pmd-cluster-XXXXXX";
static char ini[300], key[300], ini_bad[300], key_bad[300];
static struct pmd_proc node[3];

/* Two cluster files naming the same three nodes: one with the cluster's
 * secret, one with another. */
static int group_setup(void **state)
{
	int p[3];

	assert_non_null(mkdtemp(dir));
	snprintf(ini, sizeof(ini), "%s/cluster.ini", dir);
	snprintf(key, sizeof(key), "%s/cluster.key", dir);
	snprintf(ini_bad, sizeof(ini_bad), "%s/other.ini", dir);
	snprintf(key_bad, sizeof(key_bad), "%s/other.key", dir);
	ct_free_ports(p, 3);
	ct_write_file(key, 0600, "the cluster secret, 32 bytes ok!");
	ct_write_file(key_bad, 0600, "not the cluster secret at all!!!");
	ct_cluster_file(ini, "cluster.key", p, 3);
	ct_cluster_file(ini_bad, "other.key", p, 3);
	return 0;
}

static int group_teardown(void **state)
{
	unlink(ini_bad);
	unlink(key_bad);
	ct_cluster_down(node, 0, dir, ini, key);
	return 0;
}

/* What a test leaves running is checked (the nodes' books, ct_check_loans)
 * and ended. */
static int kill_leftovers(void **state)
{
	ct_check_loans(node, 3);
	for (int i = 0; i < 3; i++)
		ct_reap(&node[i]);
	return 0;
}

static void start(int i, const char *file)
{
	ct_start_node(&node[i], i + 1, file, (const char *const[]){
		"--guarantee", "16", "--log-level", "info", NULL });
}

/* What node i says of node `of`. */
static struct pm_node_info seen(int i, pm_node_t of)
{
	return ct_seen(&node[i], of);
}

static uint64_t wait_state(int i, pm_node_t of, int state, uint64_t max_ms)
{
	return ct_wait_state(&node[i], of, state, max_ms);
}

struct pinger {
	pm_t *pm;
	pm_node_t to;
	error_t err;
	uint64_t ms;
};

static void *ping_thread(void *arg)
{
	struct pinger *p = arg;
	uint64_t t0 = ct_now_ms(), rtt;

	p->err = pm_debug_ping(p->pm, p->to, &rtt);
	p->ms = ct_now_ms() - t0;
	return NULL;
}

/* A task that asks for a round trip and hangs up before the answer. */
static void ping_and_hang_up(int i, pm_node_t to)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint8_t buf[64] __attribute__((aligned(8))) = { 0 };
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)buf;
	struct pm_hello_req *hello = (struct pm_hello_req *)(h + 1);
	struct pm_ping_req *ping = (struct pm_ping_req *)(h + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0 && strlen(node[i].socket) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, node[i].socket, strlen(node[i].socket) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	pm_msg_hdr_init(h, PM_MSG_HELLO, sizeof(*h) + sizeof(*hello), 1);
	hello->version = PM_PROTO_VERSION;
	assert_true(send(fd, buf, h->length, 0) > 0);
	assert_true(recv(fd, buf, sizeof(buf), 0) > 0);
	memset(buf, 0, sizeof(buf));
	pm_msg_hdr_init(h, PM_MSG_PING_NODE, sizeof(*h) + sizeof(*ping), 2);
	ping->node = to;
	assert_true(send(fd, buf, h->length, 0) > 0);
	close(fd);
}

static void nodes_join_fail_and_rejoin(void **state)
{
	struct pm_node_info me, n3;
	uint64_t inc3, t;

	for (int i = 0; i < 3; i++)
		start(i, ini);
	for (int i = 0; i < 3; i++)
		for (pm_node_t j = 1; j <= 3; j++)
			if (j != i + 1)
				wait_state(i, j, PM_NODE_UP, 5000);
	{
		/* Each lists itself first, and the other two. */
		struct pm_node_info info[8];
		int n = 8;
		pm_t *pm = test_connect(&node[0]);

		assert_int_equal(pm_nodes(pm, info, &n), 0);
		pm_disconnect(pm);
		assert_int_equal(n, 3);
		assert_int_equal(info[0].id, 1);
	}
	me = seen(0, 1);
	assert_int_equal(me.state, PM_NODE_UP);
	assert_true(me.incarnation != 0);
	assert_int_equal(strncmp(me.address, ct_addr(), strlen(ct_addr())), 0);
	/* Peers' frames come with their heartbeats. */
	usleep(3 * CT_HEARTBEAT_MS * 1000);
	n3 = seen(0, 3);
	assert_int_equal(n3.frames_total, (64u << 20) / PM_FRAME_SIZE);
	assert_true(n3.incarnation != 0);
	inc3 = n3.incarnation;
	/* And they are the frames no physical page takes, as the node says
	 * of itself: frames allocated on node 3 take none until written. */
	{
		pm_t *pm = test_connect(&node[2]);
		static uint8_t buf[16 * PM_FRAME_SIZE];
		uint64_t free0 = seen(2, 3).frames_free, t0;
		container_t c;
		int n = 16;

		assert_int_equal(n3.frames_free, free0);
		assert_int_equal(pm_container_create(pm, &c), 0);
		assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
		usleep(3 * CT_HEARTBEAT_MS * 1000);
		assert_int_equal(seen(2, 3).frames_free, free0);
		assert_int_equal(seen(0, 3).frames_free, free0);
		memset(buf, 3, sizeof(buf));
		assert_int_equal(pm_container_write(pm, c, 0, 0, buf,
						    sizeof(buf)), 0);
		assert_int_equal(seen(2, 3).frames_free, free0 - 16);
		t0 = ct_now_ms();
		while ((seen(0, 3).frames_free != free0 - 16 ||
			seen(1, 3).frames_free != free0 - 16) &&
		       ct_now_ms() - t0 < 20 * CT_HEARTBEAT_MS)
			usleep(CT_HEARTBEAT_MS * 1000);
		assert_int_equal(seen(0, 3).frames_free, free0 - 16);
		assert_int_equal(seen(1, 3).frames_free, free0 - 16);
		assert_int_equal(pm_container_destroy(pm, c), 0);
		pm_disconnect(pm);
	}

	/* Round trips between nodes. */
	{
		pm_t *pm = test_connect(&node[0]);
		uint64_t rtt = 0;

		assert_int_equal(pm_debug_ping(pm, 2, &rtt), 0);
		assert_true(rtt > 0);
		assert_int_equal(pm_debug_ping(pm, 3, &rtt), 0);
		assert_int_equal(pm_debug_ping(pm, 1, &rtt), EINVAL);
		assert_int_equal(pm_debug_ping(pm, 9, &rtt), ENODEV);
		pm_disconnect(pm);
	}

	/* Node 3 dies: suspect, then down, in the configured times. A round
	 * trip to it in flight fails by the deadline, and the pmd serves its
	 * other tasks meanwhile; a task that gave up waiting changes nothing. */
	ct_kill(&node[2]);
	t = wait_state(0, 3, PM_NODE_SUSPECT, CT_SUSPECT_MS + 2000);
	{
		struct pinger pg = { .pm = test_connect(&node[0]), .to = 3 };
		pm_t *other = test_connect(&node[0]);
		struct pm_task_stat ts;
		pthread_t th;

		ping_and_hang_up(0, 3);
		assert_int_equal(pthread_create(&th, NULL, ping_thread, &pg), 0);
		for (int k = 0; k < 20; k++) {
			uint64_t t0 = ct_now_ms();
			assert_int_equal(pm_task_stat(other, &ts), 0);
			assert_true(ct_now_ms() - t0 < 200);
			usleep(20000);
		}
		pthread_join(th, NULL);
		if (pg.err != ETIMEDOUT && pg.err != ENODEV)
			fail_msg("a round trip to a dead node: %s", strerror(pg.err));
		assert_true(pg.ms <= CT_DOWN_MS + 1000);
		test_check(other);
		pm_disconnect(other);
		pm_disconnect(pg.pm);
	}
	wait_state(0, 3, PM_NODE_DOWN, CT_DOWN_MS + 2000);
	wait_state(1, 3, PM_NODE_DOWN, CT_DOWN_MS + 2000);
	assert_true(t <= CT_SUSPECT_MS + 2000);
	assert_int_equal(seen(0, 2).state, PM_NODE_UP);
	{
		pm_t *pm = test_connect(&node[0]);
		uint64_t rtt, t0 = ct_now_ms();

		assert_int_equal(pm_debug_ping(pm, 3, &rtt), ENODEV);
		assert_true(ct_now_ms() - t0 < 100); /* known down: at once */
		pm_disconnect(pm);
	}

	/* It comes back as a new incarnation. */
	start(2, ini);
	wait_state(0, 3, PM_NODE_UP, 5000);
	wait_state(1, 3, PM_NODE_UP, 5000);
	wait_state(2, 1, PM_NODE_UP, 5000);
	assert_true(seen(0, 3).incarnation != inc3);
	{
		pm_t *pm = test_connect(&node[1]);
		uint64_t rtt;

		assert_int_equal(pm_debug_ping(pm, 3, &rtt), 0);
		pm_disconnect(pm);
	}
	ct_stop_nodes(node, 3);
}

static void a_node_without_the_secret_is_refused(void **state)
{
	char log[16384] = { 0 };
	int fd;

	start(0, ini);
	start(1, ini_bad);
	usleep(4 * CT_DOWN_MS * 1000 / 2);
	assert_int_equal(seen(0, 2).state, PM_NODE_DOWN);
	assert_int_equal(seen(1, 1).state, PM_NODE_DOWN);
	fd = open(node[0].log, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(read(fd, log, sizeof(log) - 1) > 0);
	close(fd);
	if (!strstr(log, "node 2 failed authentication"))
		fail_msg("node 1 did not log the refusal: %s", log);
	ct_stop_nodes(node, 3);
}

/* A stranger on the fabric sends node 1 garbage and forgeries. */
static void garbage_from_the_fabric_changes_nothing(void **state)
{
	struct fab_attr attr = { .node = ct_addr(), .msg_size = 8192,
				 .timeout_ms = 500 };
	struct fab_ep *ep;
	struct fab_name name;
	fab_peer_t to;
	char port[16];
	uint8_t msg[8192];
	uint32_t seed = 12345;
	unsigned sent = 0;
	const char *addr;

	start(0, ini);
	start(1, ini);
	wait_state(0, 2, PM_NODE_UP, 5000);
	addr = seen(0, 1).address; /* host:port */
	snprintf(port, sizeof(port), "%s", strchr(addr, ':') + 1);
	if (fab_ep_open(&attr, &ep)) {
		fprintf(stderr, "no fabric endpoint for the stranger: skipped\n");
		skip();
	}
	assert_int_equal(fab_name_resolve(ep, ct_addr(), port, &name), 0);
	assert_int_equal(fab_peer_insert(ep, &name, &to), 0);
	for (int i = 0; i < 2000; i++) {
		size_t len;

		for (size_t k = 0; k < sizeof(msg); k++) {
			seed = seed * 1103515245u + 12345u;
			msg[k] = (uint8_t)(seed >> 16);
		}
		/* Half look like node messages: the right magic and version,
		 * node ids of the cluster, a wrong MAC. */
		if (i % 2) {
			const uint32_t magic[2] = { 0x43444d50u, 0x52444d50u };
			memcpy(msg, &magic[i % 4 / 2], 4);
			msg[4] = 1; msg[5] = 0;          /* version */
			msg[8] = 2; msg[9] = 0;          /* from node 2 */
			msg[10] = 1; msg[11] = 0;        /* to node 1 */
		}
		len = i % 3 == 0 ? 104 : i % 3 == 1 ? 80 + (size_t)(seed % 600)
					   : (size_t)(seed % sizeof(msg));
		if (fab_send(ep, to, msg, len, NULL) == 0)
			sent++;
		if (i % 64 == 0) {
			struct fab_cqe c[64];
			size_t n;
			fab_ep_poll(ep, c, 64, &n);
		}
	}
	for (int i = 0; i < 50; i++) {
		struct fab_cqe c[64];
		size_t n;
		fab_ep_poll(ep, c, 64, &n);
		usleep(2000);
	}
	printf("sent %u garbage messages\n", sent);
	/* Node 1 still serves, still sees node 2, still answers it. */
	{
		pm_t *pm = test_connect(&node[0]);
		uint64_t rtt;
		assert_int_equal(pm_debug_ping(pm, 2, &rtt), 0);
		test_check(pm);
		pm_disconnect(pm);
	}
	assert_int_equal(seen(0, 2).state, PM_NODE_UP);
	assert_int_equal(seen(1, 1).state, PM_NODE_UP);
	fab_ep_close(ep);
	ct_stop_nodes(node, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(nodes_join_fail_and_rejoin,
					  kill_leftovers),
		cmocka_unit_test_teardown(a_node_without_the_secret_is_refused,
					  kill_leftovers),
		cmocka_unit_test_teardown(garbage_from_the_fabric_changes_nothing,
					  kill_leftovers),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
