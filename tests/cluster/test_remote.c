/*
 * Remote frames: a container on node 1 placed on node 2 (PM_PLACE_NODE)
 * gets its frames in slots node 2 lends; reads and writes of every size
 * and alignment go by one-sided RDMA and read back what was written; node
 * 2's free frames fall and rise with the loans; mapping brings frames
 * here (the fast path then applies), and so does copying them; when node
 * 2 dies its frames
 * answer EIO while everything else works, and the accounting holds. A
 * task that hangs up while its remote allocation is in flight leaves
 * nothing lent behind. A full home spills; an interleaved container
 * (three nodes) puts frame f on the (f mod k)-th node that is up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/un.h>

#include "cluster_util.h"
#include "pm_proto.h"

#define NFR 40

static char dir[] = "/tmp/pmd-remote-XXXXXX";
static char ini[300], key[300];
static struct pmd_proc node[3];
static uint8_t model[NFR * PM_FRAME_SIZE];
static bool small_home;        /* node 1 with a budget of 512 frames */
static bool small_third;       /* node 3 with a budget of 256 frames */
static int nnodes = 2;

/* Node 2's budget left, as it says. */
static uint64_t lender_free(void)
{
	return ct_budget_free(&node[1]);
}

static int setup(void **state)
{
	strcpy(dir, "/tmp/pmd-remote-XXXXXX");
	ct_cluster_files(dir, ini, sizeof(ini), key, sizeof(key), nnodes);
	for (int i = 0; i < nnodes; i++) {
		char id[16];
		bool small = small_home && i == 0;
		bool tiny = small_third && i == 2;
		snprintf(id, sizeof(id), "%d", i + 1);
		/* The three-node cluster busy-polls (--poll-us), so that its
		 * loop is tested too. */
		pmd_proc_start(&node[i], (const char *const[]){ "--node-id", id,
			"--cluster", ini, "--memory", small ? "2M" : tiny ? "1M" : "64M",
			"--guarantee", small ? "16" : "1024",
			"--extra", small ? "2000" : "16384",
			"--poll-us", nnodes == 3 ? "300" : "0", NULL });
	}
	for (int i = 1; i < nnodes; i++) {
		ct_wait_state(&node[0], (pm_node_t)(i + 1), PM_NODE_UP, 6000);
		ct_wait_state(&node[i], 1, PM_NODE_UP, 6000);
	}
	return 0;
}

static int teardown(void **state)
{
	ct_cluster_down(node, nnodes, dir, ini, key);
	nnodes = 2;
	small_third = false;
	small_home = false;
	return 0;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static void frames_on_another_node(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	static uint8_t buf[65536], got[65536];
	static const uint32_t lens[] = { 1, 7, 4095, 4096, 4097, 12345, 65536 };
	static const uint64_t offs[] = { 0, 1, 4095, 4096, 8191, 20000 };
	uint64_t free0 = lender_free(), t0;
	uint64_t home0 = ct_budget_free(&node[0]);
	struct pm_container_stat st;
	container_t c, local;
	int n = NFR;
	void *m;
	uint32_t seed = 1;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_NODE, 9), ENODEV);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_NODE, 2), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	assert_int_equal(n, NFR);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.frames, NFR);
	assert_int_equal(st.remote, NFR);
	assert_int_equal(st.resident, 0);
	/* The lender's free frames fall by the loan (seen at once); the
	 * home's do not: the frames are not here. */
	assert_int_equal(lender_free(), free0 - NFR);
	assert_int_equal(ct_budget_free(&node[0]), home0);

	/* Fresh remote frames read as zeros. */
	assert_int_equal(pm_container_read(pm, c, 0, 0, got, sizeof(got)), 0);
	for (size_t i = 0; i < sizeof(got); i++)
		if (got[i])
			fail_msg("fresh remote byte %zu is %#x", i, got[i]);

	/* Every size at every alignment, checked against a model. */
	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		for (size_t oi = 0; oi < sizeof(offs) / sizeof(offs[0]); oi++) {
			uint64_t off = offs[oi] + li * 3 * PM_FRAME_SIZE;
			uint32_t len = lens[li];
			if (off + len > sizeof(model))
				continue;
			fill(buf, len, seed++);
			assert_int_equal(pm_container_write(pm, c, 0, off, buf, len), 0);
			memcpy(model + off, buf, len);
			assert_int_equal(pm_container_read(pm, c, 0, off, got, len), 0);
			assert_memory_equal(got, model + off, len);
		}
	}
	for (uint64_t off = 0; off < sizeof(model); off += sizeof(got)) {
		uint32_t len = sizeof(model) - off < sizeof(got) ?
			       (uint32_t)(sizeof(model) - off) : sizeof(got);
		assert_int_equal(pm_container_read(pm, c, 0, off, got, len), 0);
		assert_memory_equal(got, model + off, len);
	}
	/* The same without an I/O window (bytes in the messages, through
	 * the pmd's bounce buffers). */
	{
		pm_t *nw;
		container_t cn;
		int k = 20;

		setenv("PM_NO_WINDOW", "1", 1);
		nw = test_connect(&node[0]);
		unsetenv("PM_NO_WINDOW");
		assert_int_equal(pm_container_create(nw, &cn), 0);
		assert_int_equal(pm_container_set_policy(nw, cn, PM_PLACE_NODE, 2), 0);
		assert_int_equal(pm_container_allocate(nw, cn, 0, &k, 0), 0);
		for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
			fill(buf, lens[li], seed++);
			assert_int_equal(pm_container_write(nw, cn, 1, 4093, buf,
							    lens[li]), 0);
			assert_int_equal(pm_container_read(nw, cn, 1, 4093, got,
							   lens[li]), 0);
			assert_memory_equal(got, buf, lens[li]);
		}
		assert_int_equal(pm_container_destroy(nw, cn), 0);
		pm_disconnect(nw);
		/* Its loans come back after the answer, as the lender serves
		 * the home's FREE: wait for them before counting again. */
		t0 = ct_now_ms();
		while (lender_free() != free0 - NFR && ct_now_ms() - t0 < 3000)
			usleep(20000);
		assert_int_equal(lender_free(), free0 - NFR);
	}

	/* Mapping brings frames here: 20 of them, in two batches; the map
	 * shows the model's bytes, the loans go back, later maps of them are
	 * the fast path, and stores through the map reach the frames. */
	{
		struct pm_debug_stat d0, d1;
		uint64_t lent_before = free0 - lender_free();

		assert_int_equal(pm_container_map(pm, c, 8, 20, CONT_MAP_READ |
						  CONT_MAP_WRITE, &m, NULL), 0);
		assert_memory_equal(m, model + 8 * PM_FRAME_SIZE,
				    20 * PM_FRAME_SIZE);
		assert_int_equal(pm_container_stat(pm, c, &st), 0);
		assert_int_equal(st.remote, NFR - 20);
		assert_int_equal(st.resident, 20);
		t0 = ct_now_ms();
		while (free0 - lender_free() != lent_before - 20 &&
		       ct_now_ms() - t0 < 3000)
			usleep(20000);
		assert_int_equal(free0 - lender_free(), lent_before - 20);
		memcpy((uint8_t *)m + 5 * PM_FRAME_SIZE + 7, "mapped", 6);
		memcpy(model + 13 * PM_FRAME_SIZE + 7, "mapped", 6);
		assert_int_equal(pm_container_read(pm, c, 13, 7, got, 6), 0);
		assert_memory_equal(got, "mapped", 6);
		assert_int_equal(pm_debug_stat(pm, &d0), 0);
		assert_int_equal(pm_container_map(pm, c, 9, 1, CONT_MAP_READ, &m, NULL), 0);
		assert_int_equal(pm_debug_stat(pm, &d1), 0);
		assert_int_equal(d1.requests, d0.requests + 1); /* no map request */
	}

	/* A local container beside it works as ever. */
	assert_int_equal(pm_container_create(pm, &local), 0);
	n = 2;
	assert_int_equal(pm_container_allocate(pm, local, 0, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, local, 1, 0, "local", 5), 0);

	/* Copies across nodes: the remote frames are brought here first.
	 * Remote to local, then local to remote. */
	assert_int_equal(pm_container_copy(pm, c, 30, local, 0, 1, 0, NULL), 0);
	assert_int_equal(pm_container_read(pm, local, 0, 0, got, PM_FRAME_SIZE), 0);
	assert_memory_equal(got, model + 30 * PM_FRAME_SIZE, PM_FRAME_SIZE);
	assert_int_equal(pm_container_copy(pm, local, 1, c, 35, 1, 0, NULL), 0);
	assert_int_equal(pm_container_read(pm, c, 35, 0, got, 5), 0);
	assert_memory_equal(got, "local", 5);
	memcpy(model + 35 * PM_FRAME_SIZE, got, 5);
	assert_int_equal(pm_container_read(pm, local, 1, 0, got, PM_FRAME_SIZE), 0);
	memcpy(model + 35 * PM_FRAME_SIZE, got, PM_FRAME_SIZE);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.remote, NFR - 20 - 2);

	/* Squashed frames are fresh ones, on the lender again. */
	n = 4;
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, CONT_ALLOC_SQUASH), 0);
	assert_int_equal(pm_container_read(pm, c, 0, 0, got, 4 * PM_FRAME_SIZE), 0);
	for (size_t i = 0; i < 4 * PM_FRAME_SIZE; i++)
		if (got[i])
			fail_msg("squashed remote byte %zu is %#x", i, got[i]);
	memset(model, 0, 4 * PM_FRAME_SIZE);

	/* Deallocated frames go back to the lender: frames 0-7 stay
	 * remote (8-27 came here when mapped; 28-39 go). */
	assert_int_equal(pm_container_deallocate(pm, c, 20, 20), 0);
	t0 = ct_now_ms();
	while (lender_free() != free0 - 8 && ct_now_ms() - t0 < 3000)
		usleep(20000);
	assert_int_equal(lender_free(), free0 - 8);
	test_check(pm);
	{
		pm_t *l = test_connect(&node[1]);
		test_check(l);
		pm_disconnect(l);
	}

	/* The lender dies: its frames are lost (EIO), nothing else is. */
	ct_kill(&node[1]);
	ct_wait_state(&node[0], 2, PM_NODE_DOWN, 6000);
	assert_int_equal(pm_container_read(pm, c, 5, 0, got, 10), EIO);
	assert_int_equal(pm_container_write(pm, c, 5, 0, "x", 1), EIO);
	assert_int_equal(pm_container_read(pm, local, 1, 0, got, 5), 0);
	assert_memory_equal(got, "local", 5);
	/* It comes back (a new incarnation): the lost frames stay lost, new
	 * ones go to it again. */
	pmd_proc_start(&node[1], (const char *const[]){ "--node-id", "2",
		"--cluster", ini, "--memory", "64M", "--guarantee", "1024", NULL });
	ct_wait_state(&node[0], 2, PM_NODE_UP, 6000);
	assert_int_equal(pm_container_read(pm, c, 5, 0, got, 10), EIO);
	n = 2;
	assert_int_equal(pm_container_allocate(pm, c, 100, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, c, 100, 0, "back", 4), 0);
	assert_int_equal(pm_container_read(pm, c, 100, 0, got, 4), 0);
	assert_memory_equal(got, "back", 4);
	assert_int_equal(pm_container_deallocate(pm, c, 0, 20), 0);
	assert_int_equal(pm_container_deallocate(pm, c, 100, 2), 0);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.frames, 0);
	test_check(pm);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

/* One request on a raw session; returns the wire status. */
static uint32_t raw_call(int fd, uint16_t type, const void *body, uint32_t len,
			 void *out, uint32_t out_len, bool wait)
{
	uint8_t buf[256] __attribute__((aligned(8))) = { 0 };
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)buf;
	const struct pm_reply *rep = (const struct pm_reply *)(h + 1);

	pm_msg_hdr_init(h, type, (uint32_t)sizeof(*h) + len, 9);
	if (len)
		memcpy(h + 1, body, len);
	assert_true(send(fd, buf, sizeof(*h) + len, 0) > 0);
	if (!wait)
		return 0;
	assert_true(recv(fd, buf, sizeof(buf), 0) >= (ssize_t)PM_REPLY_HDR);
	if (out)
		memcpy(out, rep + 1, out_len);
	return rep->status;
}

static void a_task_gone_mid_allocation_leaves_no_loan(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pm_hello_req hello = { .version = PM_PROTO_VERSION };
	struct pm_hello_rep hrep;
	struct pm_handle_rep c;
	uint64_t free0 = lender_free(), t0;

	/* Placed on node 2, then interleaved (every other frame there). */
	for (int k = 0; k < 2; k++) {
		struct pm_policy_req pol = { .policy = k ? PM_PLACE_INTERLEAVE
							 : PM_PLACE_NODE,
					     .node = k ? 0 : 2 };
		struct pm_alloc_req alloc = { .count = k ? 60 : 30 };
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

		assert_true(fd >= 0 &&
			    strlen(node[0].socket) < sizeof(sa.sun_path));
		memcpy(sa.sun_path, node[0].socket, strlen(node[0].socket) + 1);
		assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)),
				 0);
		assert_int_equal(raw_call(fd, PM_MSG_HELLO, &hello,
					  sizeof(hello), &hrep, sizeof(hrep),
					  true), PM_ST_OK);
		assert_int_equal(raw_call(fd, PM_MSG_CREATE, NULL, 0, &c,
					  sizeof(c), true), PM_ST_OK);
		pol.handle = c.handle;
		assert_int_equal(raw_call(fd, PM_MSG_SET_POLICY, &pol,
					  sizeof(pol), NULL, 0, true), PM_ST_OK);
		alloc.handle = c.handle;
		raw_call(fd, PM_MSG_ALLOCATE, &alloc, sizeof(alloc), NULL, 0,
			 false);
		close(fd);

		/* Whatever was lent comes back (an answer that came after
		 * its call's deadline gives its slots back: on a slow node
		 * that can take a few down times). */
		t0 = ct_now_ms();
		while (lender_free() != free0 &&
		       ct_now_ms() - t0 < 4 * CT_DOWN_MS + 1000)
			usleep(20000);
		assert_int_equal(lender_free(), free0);
	}
	/* Both nodes keep their books. */
	for (int i = 0; i < 2; i++) {
		pm_t *pm = test_connect(&node[i]);
		test_check(pm);
		pm_disconnect(pm);
	}
	ct_stop_nodes(node, 3);
}

struct traffic {
	const struct pmd_proc *home;
	container_t c;            /* the owner's, shared by handle number */
	pm_t *pm;
	volatile int stop;
	unsigned ok, failed, other;
	uint64_t worst_ms;
};

static void *reader(void *arg)
{
	struct traffic *t = arg;
	uint8_t buf[4096];

	while (!__atomic_load_n(&t->stop, __ATOMIC_RELAXED)) {
		uint64_t t0 = ct_now_ms();
		error_t err = pm_container_read(t->pm, t->c, 3, 0, buf, sizeof(buf));
		uint64_t dt = ct_now_ms() - t0;
		if (dt > t->worst_ms)
			t->worst_ms = dt;
		if (!err)
			t->ok++;
		else if (err == EIO || err == ETIMEDOUT || err == ENODEV)
			t->failed++;
		else
			t->other++;
	}
	return NULL;
}

/* The lender dies under traffic: reads fail clearly within the deadline,
 * nothing hangs, and the home's books hold. */
static void lender_killed_under_traffic(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	struct traffic t = { .pm = pm };
	pthread_t th;
	int n = 8;

	assert_int_equal(pm_container_create(pm, &t.c), 0);
	assert_int_equal(pm_container_set_policy(pm, t.c, PM_PLACE_NODE, 2), 0);
	assert_int_equal(pm_container_allocate(pm, t.c, 0, &n, 0), 0);
	assert_int_equal(pthread_create(&th, NULL, reader, &t), 0);
	usleep(300000);
	ct_kill(&node[1]);
	ct_wait_state(&node[0], 2, PM_NODE_DOWN, 6000);
	usleep(200000);
	__atomic_store_n(&t.stop, 1, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	printf("reads under the kill: %u ok, %u failed clearly, worst %llu ms\n",
	       t.ok, t.failed, (unsigned long long)t.worst_ms);
	assert_true(t.ok > 0);
	assert_true(t.failed > 0);
	assert_int_equal(t.other, 0);
	assert_true(t.worst_ms <= 1200 + 1000); /* the down time, and some */
	assert_int_equal(pm_container_deallocate(pm, t.c, 0, 8), 0);
	test_check(pm);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

static int setup_small(void **state)
{
	small_home = true;
	return setup(state);
}

/* The home's budget is spent: the frames that do not fit spill to the
 * other node; all or nothing without CONT_ALLOC_PARTIAL. */
static void spill_when_the_home_is_full(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	struct pm_container_stat st;
	static uint8_t buf[65536], got[65536];
	container_t c;
	int n = 800;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, CONT_ALLOC_EXTRA), 0);
	assert_int_equal(n, 800);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	printf("800 frames: %llu here, %llu spilled\n",
	       (unsigned long long)st.resident, (unsigned long long)st.remote);
	assert_true(st.resident > 0 && st.remote > 0);
	assert_int_equal(st.resident + st.remote, 800);
	/* Across the boundary between here and there. */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 5 + 9);
	frame_t edge = (frame_t)st.resident - 8;
	assert_int_equal(pm_container_write(pm, c, edge, 100, buf, sizeof(buf)), 0);
	assert_int_equal(pm_container_read(pm, c, edge, 100, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	/* Past the task's extra limit: nothing at all, without PARTIAL. */
	n = 2000;
	assert_int_equal(pm_container_allocate(pm, c, 1000, &n, CONT_ALLOC_EXTRA),
			 ENOMEM);
	assert_int_equal(n, 0);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.frames, 800);
	/* With PARTIAL: as many as the extra limit allows, all elsewhere. */
	n = 2000;
	assert_int_equal(pm_container_allocate(pm, c, 1000, &n, CONT_ALLOC_EXTRA |
					       CONT_ALLOC_PARTIAL), ENOMEM);
	assert_int_equal(n, 1216); /* extra limit 2000, 784 of it used */
	assert_int_equal(pm_container_write(pm, c, 1000 + 1215, 0, "last", 4), 0);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.frames, 800 + 1216);
	test_check(pm);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	test_check(pm);
	pm_disconnect(pm);
	small_home = false;
	ct_stop_nodes(node, 3);
}

static int setup_three(void **state)
{
	nnodes = 3;
	return setup(state);
}

/* Node n's budget left, as it says. */
static uint64_t free_of(pm_node_t n)
{
	return ct_budget_free(&node[n - 1]);
}

/* Until node n has want free frames (loans go back asynchronously), at
 * most 3 s. */
static void wait_free(pm_node_t n, uint64_t want)
{
	uint64_t t0 = ct_now_ms();

	while (free_of(n) != want && ct_now_ms() - t0 < 3000)
		usleep(20000);
	assert_int_equal(free_of(n), want);
}

/* A container of pm's with n frames placed on node 2. */
static container_t placed_on_2(pm_t *pm, int n)
{
	container_t c;
	int got = n;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_NODE, 2), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &got, 0), 0);
	return c;
}

/* A lender paused past the down time (not killed: the same incarnation
 * comes back): the home declared it down and its frames there lost (the
 * task destroys the container); when the lender continues, the home tells
 * it (RESET) and every loan comes back to it: nothing stays lent for
 * ever; a handle of its task that the home served answers ESTALE. */
static void a_paused_lender_gets_its_loans_back(void **state)
{
	pm_t *pm = test_connect(&node[0]), *s = test_connect(&node[1]);
	uint64_t before = free_of(2);
	container_t c, h, ref;
	int n = 64;
	char b;

	(void)state;
	c = placed_on_2(pm, n);
	wait_free(2, before - 64);
	/* A task of node 2 with a handle that node 1 serves (its proxy
	 * there goes when node 2 is declared down). */
	n = 1;
	assert_int_equal(pm_container_create(pm, &h), 0);
	assert_int_equal(pm_container_allocate(pm, h, 0, &n, 0), 0);
	ref = ct_import(pm, h, s);
	assert_int_equal(pm_container_read(s, ref, 0, 0, &b, 1), 0);
	assert_int_equal(kill(node[1].pid, SIGSTOP), 0);
	ct_wait_state(&node[0], 2, PM_NODE_DOWN, 6000);
	assert_int_equal(pm_container_read(pm, c, 3, 0, &b, 1), EIO);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	assert_int_equal(kill(node[1].pid, SIGCONT), 0);
	ct_wait_state(&node[0], 2, PM_NODE_UP, 6000);
	wait_free(2, before);
	/* Node 1 forgot that task's proxy: its handle is stale, not
	 * unknown. */
	assert_int_equal(pm_container_read(s, ref, 0, 0, &b, 1), ESTALE);
	/* And neither took the other's late handshake for a wrong secret. */
	assert_int_equal(test_log_grep(&node[0], "failed authentication") +
			 test_log_grep(&node[1], "failed authentication"), 0);
	test_check(pm);
	test_check(s);
	pm_disconnect(s);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

/* The home paused past the down time: the lender took its loans back;
 * when the home continues, its frames there read EIO (never bytes the
 * lender has since lent to anyone else), and its books hold. */
static void a_paused_home_finds_its_frames_there_lost(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	uint64_t before = free_of(2);
	container_t c;
	int n = 8;
	char b;

	(void)state;
	c = placed_on_2(pm, n);
	assert_int_equal(pm_container_write(pm, c, 0, 0, "home", 5), 0);
	assert_int_equal(kill(node[0].pid, SIGSTOP), 0);
	ct_wait_state(&node[1], 1, PM_NODE_DOWN, 6000);
	wait_free(2, before);
	assert_int_equal(kill(node[0].pid, SIGCONT), 0);
	ct_wait_state(&node[1], 1, PM_NODE_UP, 6000);
	ct_wait_state(&node[0], 2, PM_NODE_UP, 6000);
	for (int i = 0; i < 100 &&
	     pm_container_read(pm, c, 0, 0, &b, 1) != EIO; i++)
		usleep(20000);
	assert_int_equal(pm_container_read(pm, c, 0, 0, &b, 1), EIO);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	assert_int_equal(test_log_grep(&node[0], "failed authentication") +
			 test_log_grep(&node[1], "failed authentication"), 0);
	test_check(pm);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

/* A metric of node n (the first sample whose line starts with name). */
static uint64_t metric_of(struct pmd_proc *n, const char *name)
{
	static char buf[1 << 16];
	pm_t *pm = test_connect(n);
	size_t len = 0;
	uint64_t v = 0;
	const char *at;

	assert_int_equal(pm_debug_metrics(pm, buf, sizeof(buf), &len), 0);
	pm_disconnect(pm);
	for (at = buf; (at = strstr(at, name)); at++)
		if ((at == buf || at[-1] == '\n') && at[strlen(name)] == ' ') {
			v = strtoull(at + strlen(name) + 1, NULL, 10);
			break;
		}
	return v;
}

/* A read of a frame on node 2, which is stopped: EIO over tcp (the read
 * needs the lender's progress). A verbs device serves it without the
 * lender's CPU: then the transfer never fails, the scenario does not
 * arise, and the test says so and is skipped. */
static void read_of_a_stopped_lender(pm_t *pm, container_t c, uint8_t *got)
{
	error_t err = pm_container_read(pm, c, 0, 0, got, PM_FRAME_SIZE);

	if (err == 0) {
		assert_int_equal(kill(node[1].pid, SIGCONT), 0);
		pm_disconnect(pm);
		printf("skipped: the fabric served a stopped lender's frame "
		       "(a verbs device needs no CPU there): no transfer "
		       "failed\n");
		skip();
	}
	assert_int_equal(err, EIO);
}

struct beside {
	pm_t *pm;
	container_t c;
	frame_t f;
	bool write;
	uint8_t byte;          /* written, or expected */
	error_t err;
	uint64_t done_ms;      /* atomic; 0: not yet */
};

static void *beside_io(void *arg)
{
	static __thread uint8_t buf[PM_FRAME_SIZE];
	struct beside *b = arg;

	if (b->write) {
		memset(buf, b->byte, sizeof(buf));
		b->err = pm_container_write(b->pm, b->c, b->f, 0, buf,
					    sizeof(buf));
	} else {
		b->err = pm_container_read(b->pm, b->c, b->f, 0, buf,
					   sizeof(buf));
		if (!b->err && (buf[0] != b->byte ||
				buf[PM_FRAME_SIZE - 1] != b->byte))
			b->err = EBADMSG;
	}
	__atomic_store_n(&b->done_ms, test_ms_now(), __ATOMIC_RELEASE);
	return NULL;
}

/* Several remote operations on one container in flight: while reads of
 * its frames 0 and 2 wait for a paused lender, a read and a write of its
 * local frame 1 are served at once; a write of frame 0 waits for the
 * read of it (their bytes in order), and all end when the lender goes
 * on. */
static void other_frames_are_served_beside_remote_work(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	static uint8_t buf[PM_FRAME_SIZE];
	struct beside a = { .pm = pm, .f = 0, .byte = 0xa0 };
	struct beside b = { .pm = pm, .f = 2, .byte = 0xa2 };
	struct beside w = { .pm = pm, .f = 0, .byte = 0xc0, .write = true };
	pthread_t ta, tb, tw;
	uint64_t t0, stopped;
	bool held;
	container_t c;
	int n;

	(void)state;
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_NODE, 2), 0);
	n = 1;
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	n = 1;
	assert_int_equal(pm_container_allocate(pm, c, 2, &n, 0), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_LOCAL, 0), 0);
	n = 1;
	assert_int_equal(pm_container_allocate(pm, c, 1, &n, 0), 0);
	for (frame_t f = 0; f < 3; f++) {
		memset(buf, 0xa0 + (int)f, sizeof(buf));
		assert_int_equal(pm_container_write(pm, c, f, 0, buf,
						    sizeof(buf)), 0);
	}
	a.c = b.c = w.c = c;
	assert_int_equal(kill(node[1].pid, SIGSTOP), 0);
	stopped = test_ms_now();
	assert_int_equal(pthread_create(&ta, NULL, beside_io, &a), 0);
	assert_int_equal(pthread_create(&tb, NULL, beside_io, &b), 0);
	usleep(100000);
	t0 = test_ms_now();
	assert_int_equal(pm_container_read(pm, c, 1, 0, buf, sizeof(buf)), 0);
	assert_int_equal(buf[100], 0xa1);
	memset(buf, 0xb1, sizeof(buf));
	assert_int_equal(pm_container_write(pm, c, 1, 0, buf, sizeof(buf)),
			 0);
	printf("frame 1 read and written in %lu ms while frames 0 and 2 "
	       "wait\n", (unsigned long)(test_ms_now() - t0));
	assert_true(test_ms_now() - t0 < 200);
	/* A verbs device serves one-sided reads with no CPU at the lender:
	 * then nothing was held, and only the bytes are checked. */
	held = !__atomic_load_n(&a.done_ms, __ATOMIC_ACQUIRE);
	if (!held)
		printf("not held: the fabric served a stopped lender's frames "
		       "(a verbs device needs no CPU there); the order of "
		       "the bytes only is checked\n");
	assert_int_equal(pthread_create(&tw, NULL, beside_io, &w), 0);
	usleep(150000);
	if (held)
		assert_int_equal(__atomic_load_n(&w.done_ms, __ATOMIC_ACQUIRE),
				 0);
	/* (Well before node 1 could call node 2 down.) */
	assert_true(test_ms_now() - stopped < CT_DOWN_MS / 2);
	assert_int_equal(kill(node[1].pid, SIGCONT), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_join(tw, NULL);
	assert_int_equal(a.err, 0);
	assert_int_equal(b.err, 0);
	assert_int_equal(w.err, 0);
	/* (The order the pmd served them in is in the bytes: a's read saw
	 * frame 0's old bytes, not w's. When the threads woke after their
	 * answers is the scheduler's: on a loaded machine w's thread may
	 * note its end a millisecond before a's does.) */
	assert_int_equal(pm_container_read(pm, c, 0, 0, buf, sizeof(buf)), 0);
	assert_int_equal(buf[4095], 0xc0);
	assert_int_equal(pm_container_read(pm, c, 1, 0, buf, sizeof(buf)), 0);
	assert_int_equal(buf[0], 0xb1);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	test_check(pm);
	pm_disconnect(pm);
}

struct late_write {
	pm_t *pm;
	container_t c;
	const uint8_t *data;
	error_t err;
};

static void *late_writer(void *arg)
{
	struct late_write *w = arg;

	w->err = pm_container_write(w->pm, w->c, 0, 0, w->data, PM_FRAME_SIZE);
	return NULL;
}

/* A read of a frame on a paused lender fails (EIO) while the fabric may
 * still carry it out: when the lender continues, its answer must land
 * nowhere a later request uses. Here the late answer and the next write
 * (through the session's window) reach the home together (the home is
 * paused in between): the write must store its own bytes, not the late
 * read's; and the lender's slot that a held transfer names is not lent
 * to anyone else until the fabric lets go. */
static void a_late_read_lands_in_no_later_request(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	static uint8_t remote[PM_FRAME_SIZE], mine[PM_FRAME_SIZE],
		got[PM_FRAME_SIZE];
	struct late_write w = { .pm = pm, .data = mine };
	container_t c, l;
	pthread_t th;
	int n = 1;

	(void)state;
	fill(remote, sizeof(remote), 11);
	fill(mine, sizeof(mine), 22);
	c = placed_on_2(pm, 1);
	assert_int_equal(pm_container_write(pm, c, 0, 0, remote,
					    sizeof(remote)), 0);
	assert_int_equal(pm_container_create(pm, &l), 0);
	assert_int_equal(pm_container_allocate(pm, l, 0, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, l, 0, 0, "x", 1), 0);

	assert_int_equal(kill(node[1].pid, SIGSTOP), 0);
	read_of_a_stopped_lender(pm, c, got);
	/* The home stops; the lender answers the read it had; the task
	 * sends its next write; then the home sees both at once. */
	assert_int_equal(kill(node[0].pid, SIGSTOP), 0);
	assert_int_equal(kill(node[1].pid, SIGCONT), 0);
	usleep(300000);
	w.c = l;
	assert_int_equal(pthread_create(&th, NULL, late_writer, &w), 0);
	usleep(300000);
	assert_int_equal(kill(node[0].pid, SIGCONT), 0);
	pthread_join(th, NULL);
	assert_int_equal(w.err, 0);
	assert_int_equal(pm_container_read(pm, l, 0, 0, got, sizeof(got)), 0);
	assert_memory_equal(got, mine, sizeof(mine));
	printf("reads held by the fabric: %lu\n",
	       (unsigned long)metric_of(&node[0], "pmd_rma_held_total"));
	/* Reads and writes go on, through a new window. */
	for (int i = 0; i < 20; i++) {
		fill(mine, sizeof(mine), 30 + i);
		assert_int_equal(pm_container_write(pm, l, 0, 0, mine,
						    sizeof(mine)), 0);
		assert_int_equal(pm_container_read(pm, l, 0, 0, got,
						   sizeof(got)), 0);
		assert_memory_equal(got, mine, sizeof(mine));
	}
	ct_wait_state(&node[0], 2, PM_NODE_UP, 6000);
	pm_container_destroy(pm, c);
	assert_int_equal(pm_container_destroy(pm, l), 0);
	test_check(pm);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

/* The home stops (SIGTERM) while a read of a paused lender's frame is
 * still held by the fabric: it stops cleanly (the window's registrations
 * go before the endpoint closes, its memory after; the log says no
 * error, the sanitizers no leak). */
static void a_pmd_stops_with_a_transfer_held(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	static uint8_t got[PM_FRAME_SIZE];
	container_t c;

	(void)state;
	c = placed_on_2(pm, 1);
	assert_int_equal(pm_container_write(pm, c, 0, 0, "x", 1), 0);
	assert_int_equal(kill(node[1].pid, SIGSTOP), 0);
	read_of_a_stopped_lender(pm, c, got);
	printf("held when the home stops: %lu\n",
	       (unsigned long)metric_of(&node[0], "pmd_rma_held"));
	pm_disconnect(pm);
	pmd_proc_stop(&node[0]);
	assert_int_equal(test_log_grep(&node[0], "closing the fabric endpoint")
			 + test_log_grep(&node[0], "deregistering"), 0);
	assert_int_equal(kill(node[1].pid, SIGCONT), 0);
	pmd_proc_stop(&node[1]);
}

/* Writes and reads back frames of c while a drain runs; every call must
 * succeed (a drain loses nothing and fails nothing), and what each frame
 * last got is kept for the check after. */
struct drain_traffic {
	pm_t *pm;
	container_t c;
	int frames;
	volatile int stop;
	uint32_t last[64];        /* the seed each frame was last written with */
	unsigned ops, errors;
	error_t first_err;
};

static void *drain_traffic(void *arg)
{
	struct drain_traffic *t = arg;
	static uint8_t buf[PM_FRAME_SIZE], got[PM_FRAME_SIZE];
	uint32_t seed = 1000;

	while (!__atomic_load_n(&t->stop, __ATOMIC_RELAXED)) {
		int f = (int)(seed % (uint32_t)t->frames);
		error_t err;

		fill(buf, sizeof(buf), ++seed);
		err = pm_container_write(t->pm, t->c, (frame_t)f, 0, buf,
					 sizeof(buf));
		if (!err)
			t->last[f] = seed;
		if (!err)
			err = pm_container_read(t->pm, t->c, (frame_t)f, 0, got,
						sizeof(got));
		if (!err && memcmp(got, buf, sizeof(got)))
			err = EILSEQ;
		if (err && !t->errors++)
			t->first_err = err;
		t->ops++;
		seed = seed * 1103515245u + 12345u;
	}
	return NULL;
}

/* pmctl drain of a lender under traffic: node 2 lends slots to homes 1
 * and 3 (frames placed there, interleaved, and frames of node 1 that a
 * task of node 2 maps through a forwarded handle, in a tagged segment);
 * it drains while a task of node 1 writes and reads its frames there:
 * no call fails, every frame comes home with its last bytes (the mapped
 * ones with what node 2's task stored), node 2 stops by itself with a
 * clean log, and the books of 1 and 3 hold. */
static void drain_under_traffic(void **state)
{
	pm_t *a = test_connect(&node[0]), *b = test_connect(&node[2]);
	pm_t *s = test_follower(test_connect(&node[1])), *op;
	static uint8_t buf[64 * PM_FRAME_SIZE], got[64 * PM_FRAME_SIZE];
	static struct drain_traffic t;
	struct pm_container_stat st;
	container_t cb, ci, ct, ref;
	uint64_t slots = 0, t0;
	pm_node_t holder = 0;
	pthread_t th;
	int n, status = 0, granted;
	uint8_t *m;
	error_t err;

	(void)state;
	t = (struct drain_traffic){ .pm = a, .frames = 64 };
	t.c = placed_on_2(a, 64);
	for (int f = 0; f < 64; f++) {
		t.last[f] = 7 + (uint32_t)f;
		fill(buf, PM_FRAME_SIZE, t.last[f]);
		assert_int_equal(pm_container_write(a, t.c, (frame_t)f, 0, buf,
						    PM_FRAME_SIZE), 0);
	}
	cb = placed_on_2(b, 32);
	fill(buf, 32 * PM_FRAME_SIZE, 99);
	assert_int_equal(pm_container_write(b, cb, 0, 0, buf,
					    32 * PM_FRAME_SIZE), 0);
	n = 30;
	assert_int_equal(pm_container_create(a, &ci), 0);
	assert_int_equal(pm_container_set_policy(a, ci, PM_PLACE_INTERLEAVE, 0),
			 0);
	assert_int_equal(pm_container_allocate(a, ci, 0, &n, 0), 0);
	fill(buf, 30 * PM_FRAME_SIZE, 55);
	assert_int_equal(pm_container_write(a, ci, 0, 0, buf,
					    30 * PM_FRAME_SIZE), 0);
	/* Frames of node 1 that node 2's task maps: they live in node 2's
	 * tagged slots from then on. */
	n = 8;
	assert_int_equal(pm_container_create(a, &ct), 0);
	assert_int_equal(pm_container_allocate(a, ct, 0, &n, 0), 0);
	ref = ct_import(a, ct, s);
	assert_int_equal(pm_container_map(s, ref, 0, 8, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m,
					  &granted), 0);
	for (int f = 0; f < 8; f++)
		snprintf((char *)m + f * PM_FRAME_SIZE, 32, "node 2 was here %d",
			 f);
	assert_true(free_of(2) < ct_seen(&node[1], 2).frames_total);

	assert_int_equal(pthread_create(&th, NULL, drain_traffic, &t), 0);
	usleep(200 * 1000);
	op = test_connect(&node[1]);
	t0 = ct_now_ms();
	err = pm_debug_drain(op, 20000, &slots, &holder);
	printf("drain: %s, %lu slots in %lu ms (holder %u)\n", strerror(err),
	       (unsigned long)slots, (unsigned long)(ct_now_ms() - t0), holder);
	assert_int_equal(err, 0);
	assert_true(slots >= 64 + 32 + 10 + 8);
	/* Node 2 stops by itself, cleanly. */
	for (int i = 0; i < 1000 && waitpid(node[1].pid, &status, WNOHANG) == 0;
	     i++)
		usleep(10 * 1000);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	node[1].pid = 0;
	assert_int_equal(test_log_grep(&node[1], "] error: "), 0);
	usleep(200 * 1000);
	__atomic_store_n(&t.stop, 1, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	printf("traffic during the drain: %u writes and reads, %u failed (%s)\n",
	       t.ops, t.errors, t.errors ? strerror(t.first_err) : "none");
	assert_int_equal(t.errors, 0);
	assert_true(t.ops > 0);

	/* Every frame home, with its bytes. */
	assert_int_equal(pm_container_stat(a, t.c, &st), 0);
	assert_int_equal(st.remote, 0);
	for (int f = 0; f < 64; f++) {
		fill(buf, PM_FRAME_SIZE, t.last[f]);
		assert_int_equal(pm_container_read(a, t.c, (frame_t)f, 0, got,
						   PM_FRAME_SIZE), 0);
		assert_memory_equal(got, buf, PM_FRAME_SIZE);
	}
	fill(buf, 32 * PM_FRAME_SIZE, 99);
	assert_int_equal(pm_container_read(b, cb, 0, 0, got,
					   32 * PM_FRAME_SIZE), 0);
	assert_memory_equal(got, buf, 32 * PM_FRAME_SIZE);
	fill(buf, 30 * PM_FRAME_SIZE, 55);
	assert_int_equal(pm_container_read(a, ci, 0, 0, got,
					   30 * PM_FRAME_SIZE), 0);
	assert_memory_equal(got, buf, 30 * PM_FRAME_SIZE);
	for (int f = 0; f < 8; f++) {
		char want[32];
		snprintf(want, sizeof(want), "node 2 was here %d", f);
		assert_int_equal(pm_container_read(a, ct, (frame_t)f, 0, got,
						   sizeof(want)), 0);
		assert_string_equal((char *)got, want);
	}
	pm_disconnect(op);
	pm_disconnect(s);
	assert_int_equal(pm_container_destroy(a, t.c), 0);
	assert_int_equal(pm_container_destroy(b, cb), 0);
	test_check(a);
	test_check(b);
	pm_disconnect(a);
	pm_disconnect(b);
	ct_stop_nodes(node, 3);
}

static int setup_three_small_home(void **state)
{
	nnodes = 3;
	small_home = true;
	return setup(state);
}

/* Node 2 drains, and the home of frames there (node 1) has no room for
 * them (its budget is full of extra frames): they move to node 3, with
 * their bytes, and node 2 stops. */
static void drain_to_a_third_node(void **state)
{
	pm_t *pm = test_connect(&node[0]), *op;
	static uint8_t buf[48 * PM_FRAME_SIZE], got[48 * PM_FRAME_SIZE];
	struct pm_debug_loan loans[8];
	struct pm_container_stat st;
	uint64_t slots = 0, lent3 = 0;
	pm_node_t holder = 0;
	container_t full, c;
	int n = 512, status = 0, count = 8, ok = 0;
	pm_t *p3;

	(void)state;
	/* Node 1's budget, all taken by extra frames here. */
	assert_int_equal(pm_container_create(pm, &full), 0);
	assert_int_equal(pm_container_allocate(pm, full, 0, &n,
					       CONT_ALLOC_EXTRA |
					       CONT_ALLOC_PARTIAL), 0);
	n = 48;
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_NODE, 2), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, CONT_ALLOC_EXTRA),
			 0);
	fill(buf, sizeof(buf), 4242);
	assert_int_equal(pm_container_write(pm, c, 0, 0, buf, sizeof(buf)), 0);

	op = test_connect(&node[1]);
	assert_int_equal(pm_debug_drain(op, 20000, &slots, &holder), 0);
	printf("drained %lu slots of node 2\n", (unsigned long)slots);
	for (int i = 0; i < 1000 && waitpid(node[1].pid, &status, WNOHANG) == 0;
	     i++)
		usleep(10 * 1000);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	node[1].pid = 0;
	pm_disconnect(op);

	/* Still remote (no room here), now on node 3, with their bytes. */
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.remote, 48);
	assert_int_equal(pm_container_read(pm, c, 0, 0, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	p3 = test_connect(&node[2]);
	assert_int_equal(pm_debug_loans(p3, loans, &count, &ok), 0);
	for (int i = 0; i < count; i++)
		if (loans[i].node == 1)
			lent3 = loans[i].lent_to;
	printf("node 3 lends node 1 %lu slots now\n", (unsigned long)lent3);
	assert_true(lent3 >= 48);
	pm_disconnect(p3);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	assert_int_equal(pm_container_destroy(pm, full), 0);
	test_check(pm);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

/* A drain that cannot finish changes nothing: the home (its budget full)
 * has no room for the frames it spilled to node 2, so node 2's drain
 * times out naming node 1; node 2 goes on serving and lending, and
 * every frame still reads its bytes. */
static void a_drain_that_cannot_finish_changes_nothing(void **state)
{
	pm_t *pm = test_connect(&node[0]), *op;
	struct pm_container_stat st;
	static uint8_t buf[800 * 64], got[800 * 64];
	uint64_t slots = 0;
	pm_node_t holder = 0;
	container_t c, d;
	int n = 800;

	(void)state;
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, CONT_ALLOC_EXTRA),
			 0);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_true(st.remote > 0);
	for (int f = 0; f < 800; f++) {
		fill(buf + f * 64, 64, (uint32_t)f + 3);
		assert_int_equal(pm_container_write(pm, c, (frame_t)f, 0,
						    buf + f * 64, 64), 0);
	}
	op = test_connect(&node[1]);
	assert_int_equal(pm_debug_drain(op, 2000, &slots, &holder), ETIMEDOUT);
	assert_int_equal(holder, 1);
	assert_true(test_log_grep(&node[0], "no room here") > 0);
	/* Node 2 serves and lends as before; nothing was lost. */
	assert_int_equal(kill(node[1].pid, 0), 0);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_true(st.remote > 0);
	for (int f = 0; f < 800; f++)
		assert_int_equal(pm_container_read(pm, c, (frame_t)f, 0,
						   got + f * 64, 64), 0);
	assert_memory_equal(got, buf, sizeof(got));
	n = 4;
	assert_int_equal(pm_container_create(pm, &d), 0);
	assert_int_equal(pm_container_set_policy(pm, d, PM_PLACE_NODE, 2), 0);
	assert_int_equal(pm_container_allocate(pm, d, 0, &n, CONT_ALLOC_EXTRA),
			 0);
	assert_int_equal(pm_container_write(pm, d, 0, 0, "again", 6), 0);
	assert_int_equal(pm_container_destroy(pm, d), 0);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	test_check(pm);
	pm_disconnect(op);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

/* PM_PLACE_INTERLEAVE on three nodes: frame f on the (f mod 3)-th node
 * that is up, whatever the calls; all or nothing; a node down leaves the
 * others; reads, writes and maps across all of them. */
static void interleave_across_nodes(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	static uint8_t buf[30 * PM_FRAME_SIZE], got[30 * PM_FRAME_SIZE];
	uint64_t f2 = free_of(2), f3 = free_of(3);
	struct pm_container_stat st;
	container_t c;
	int n = 30;
	void *m;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_INTERLEAVE, 0),
			 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	assert_int_equal(n, 30);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.frames, 30);
	assert_int_equal(st.resident, 10);
	assert_int_equal(st.remote, 20);
	assert_int_equal(free_of(2), f2 - 10);
	assert_int_equal(free_of(3), f3 - 10);

	/* One range across all three nodes, at an odd offset. */
	fill(buf, sizeof(buf) - 100, 77);
	assert_int_equal(pm_container_write(pm, c, 0, 100, buf,
					    sizeof(buf) - 100), 0);
	for (int f = 0; f < 30; f++) {
		uint32_t off = f ? 0 : 100;
		assert_int_equal(pm_container_read(pm, c, (frame_t)f, off, got,
						   PM_FRAME_SIZE - off), 0);
		assert_memory_equal(got, buf + f * PM_FRAME_SIZE - (f ? 100 : 0),
				    PM_FRAME_SIZE - off);
	}

	/* The pattern follows the frame numbers, not the call: frame 31 on
	 * node 2, 32 on node 3, 33 here. */
	n = 3;
	assert_int_equal(pm_container_allocate(pm, c, 31, &n, 0), 0);
	assert_int_equal(free_of(2), f2 - 11);
	assert_int_equal(free_of(3), f3 - 11);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.resident, 11);

	/* All or nothing: frame 33 is in use, so 30..35 allocates nothing
	 * and borrows nothing; with PARTIAL, frame 30 alone. */
	n = 6;
	assert_int_equal(pm_container_allocate(pm, c, 30, &n, 0), EEXIST);
	assert_int_equal(n, 0);
	n = 6;
	assert_int_equal(pm_container_allocate(pm, c, 30, &n,
					       CONT_ALLOC_PARTIAL), EEXIST);
	assert_int_equal(n, 1);
	wait_free(2, f2 - 11);
	wait_free(3, f3 - 11);
	/* Past the task's guarantee (1024 frames; no CONT_ALLOC_EXTRA):
	 * nothing at all. */
	n = 2000;
	assert_int_equal(pm_container_allocate(pm, c, 100, &n, 0), ENOMEM);
	assert_int_equal(n, 0);
	wait_free(2, f2 - 11);

	/* Mapping brings the remote frames of the range here. */
	assert_int_equal(pm_container_map(pm, c, 0, 6, CONT_MAP_READ, &m, NULL),
			 0);
	assert_memory_equal((uint8_t *)m + 100, buf, 6 * PM_FRAME_SIZE - 100);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.remote, 20 + 2 - 4);
	wait_free(2, f2 - 9);
	wait_free(3, f3 - 9);
	test_check(pm);

	/* Node 3 goes down: new frames alternate between nodes 1 and 2;
	 * frames on node 3 are lost, the rest work. */
	ct_kill(&node[2]);
	ct_wait_state(&node[0], 3, PM_NODE_DOWN, 6000);
	n = 4;
	assert_int_equal(pm_container_allocate(pm, c, 200, &n, 0), 0);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.resident, 12 + 4 + 2); /* 30 came with PARTIAL */
	assert_int_equal(free_of(2), f2 - 9 - 2);
	assert_int_equal(pm_container_read(pm, c, 8, 0, got, 1), EIO);
	assert_int_equal(pm_container_read(pm, c, 7, 0, got, PM_FRAME_SIZE), 0);
	assert_memory_equal(got, buf + 7 * PM_FRAME_SIZE - 100, PM_FRAME_SIZE);
	assert_int_equal(pm_container_write(pm, c, 200, 0, "four", 4), 0);
	assert_int_equal(pm_container_write(pm, c, 203, 0, "four", 4), 0);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	wait_free(2, f2);
	test_check(pm);
	{
		pm_t *l = test_connect(&node[1]);
		test_check(l);
		pm_disconnect(l);
	}
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

/* One write across a remote frame and two local frames that share a
 * slot (copy-on-write): the shares break, the bytes land, the copy's
 * source keeps its own. */
static void a_write_across_remote_and_copy_on_write_frames(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	static uint8_t buf[2 * PM_FRAME_SIZE], got[2 * PM_FRAME_SIZE];
	struct pm_container_stat st;
	container_t c;
	int n = 4;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_NODE, 2), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_LOCAL, 0), 0);
	n = 3;
	assert_int_equal(pm_container_allocate(pm, c, 4, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, c, 4, 0, "four", 5), 0);
	assert_int_equal(pm_container_copy(pm, c, 4, c, 5, 1, 0, NULL), 0);
	assert_int_equal(pm_container_copy(pm, c, 4, c, 6, 1, 0, NULL), 0);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.cow, 3);
	assert_int_equal(st.remote, 4);
	/* Frames 3 (remote), 4 and 5 (sharing a slot with 6). */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 3 + 1);
	assert_int_equal(pm_container_write(pm, c, 3, 100, buf, sizeof(buf)), 0);
	assert_int_equal(pm_container_read(pm, c, 3, 100, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	assert_int_equal(pm_container_read(pm, c, 6, 0, got, 5), 0);
	assert_memory_equal(got, "four", 5);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.cow, 0);
	test_check(pm);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

static uint32_t xrnd(uint64_t *rng, uint32_t k)
{
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	return (uint32_t)(*rng % k);
}

/* Random allocations (squash, partial), deallocations, reads, writes,
 * copies and maps of a container placed by policy, each checked against
 * a model of which frames exist and what they hold. */
static void random_container_matches_a_model(bool spill)
{
	enum { NF = 48, STEPS = 600 };
	pm_t *pm = test_connect(&node[0]);
	container_t filler;
	static uint8_t data[NF * PM_FRAME_SIZE], buf[8 * PM_FRAME_SIZE],
		got[8 * PM_FRAME_SIZE];
	bool exists[NF] = { false };
	const char *seed = getenv("PMD_TEST_SEED");
	uint64_t rng = seed && *seed ? strtoull(seed, NULL, 0) : 0;
	struct pm_container_stat st;
	container_t c;

	if (!rng)
		rng = 0x2545f4914f6cdd1dull;
	if (spill) {
		/* The small home is nearly full: most frames spill. */
		int n = 500;
		assert_int_equal(pm_container_create(pm, &filler), 0);
		assert_int_equal(pm_container_allocate(pm, filler, 0, &n,
						       CONT_ALLOC_EXTRA), 0);
	}
	assert_int_equal(pm_container_create(pm, &c), 0);
	if (!spill)
		assert_int_equal(pm_container_set_policy(pm, c,
							 PM_PLACE_INTERLEAVE, 0), 0);
	for (int step = 0; step < STEPS; step++) {
		uint32_t k = 1 + xrnd(&rng, 8);
		uint32_t f = xrnd(&rng, NF - k + 1);
		bool all = true, none = true;
		uint32_t first_in = k;
		error_t err;

		for (uint32_t i = 0; i < k; i++) {
			all &= exists[f + i];
			none &= !exists[f + i];
			if (exists[f + i] && first_in == k)
				first_in = i;
		}
		switch (xrnd(&rng, 6)) {
		case 0: { /* allocate */
			int flags = (xrnd(&rng, 3) ? 0 : CONT_ALLOC_SQUASH) |
				    (xrnd(&rng, 2) ? CONT_ALLOC_PARTIAL : 0) |
				    CONT_ALLOC_EXTRA;
			int n = (int)k;
			bool squash = flags & CONT_ALLOC_SQUASH;
			uint32_t want = squash ? k : first_in;
			error_t expect = want < k ? EEXIST : 0;
			err = pm_container_allocate(pm, c, f, &n, flags);
			if (err != expect)
				fail_msg("step %d: allocate %u at %u: %s, want %s",
					 step, k, f, strerror(err), strerror(expect));
			if (!(flags & CONT_ALLOC_PARTIAL) && expect)
				want = 0;
			if ((uint32_t)n != want)
				fail_msg("step %d: allocated %d, want %u", step, n,
					 want);
			for (uint32_t i = 0; i < want; i++) {
				exists[f + i] = true;
				memset(data + (f + i) * PM_FRAME_SIZE, 0,
				       PM_FRAME_SIZE);
			}
			break;
		}
		case 1: /* deallocate */
			err = pm_container_deallocate(pm, c, f, (int)k);
			if (err != (all ? 0 : ENOENT))
				fail_msg("step %d: deallocate %u at %u: %s", step,
					 k, f, strerror(err));
			for (uint32_t i = 0; all && i < k; i++)
				exists[f + i] = false;
			break;
		case 2: { /* write, at an odd offset */
			uint32_t off = xrnd(&rng, PM_FRAME_SIZE);
			uint32_t len = k * PM_FRAME_SIZE - off;
			for (uint32_t i = 0; i < len; i++)
				buf[i] = (uint8_t)xrnd(&rng, 256);
			err = pm_container_write(pm, c, f, off, buf, len);
			if (err != (all ? 0 : ENOENT))
				fail_msg("step %d: write: %s", step, strerror(err));
			if (all)
				memcpy(data + f * PM_FRAME_SIZE + off, buf, len);
			break;
		}
		case 3: /* read */
			err = pm_container_read(pm, c, f, 0, got, k * PM_FRAME_SIZE);
			if (err != (all ? 0 : ENOENT))
				fail_msg("step %d: read: %s", step, strerror(err));
			if (all && memcmp(got, data + f * PM_FRAME_SIZE,
					  k * PM_FRAME_SIZE))
				fail_msg("step %d: frames %u.. read differ", step,
					 f);
			break;
		case 4: { /* copy, where every frame of both ranges exists */
			uint32_t d = xrnd(&rng, NF - k + 1);
			bool ok = all;
			for (uint32_t i = 0; i < k; i++)
				ok &= exists[d + i];
			if (!ok)
				break;
			err = pm_container_copy(pm, c, f, c, d, (int)k, 0, NULL);
			/* Copies bring remote frames here: a full home may
			 * not have the room (nothing copied then). */
			if (err == ENOMEM && spill)
				break;
			if (err)
				fail_msg("step %d: copy: %s", step, strerror(err));
			memmove(data + d * PM_FRAME_SIZE, data + f * PM_FRAME_SIZE,
				(size_t)k * PM_FRAME_SIZE);
			break;
		}
		default: { /* map (brings the frames here) */
			void *m;
			if (!all)
				break;
			err = pm_container_map(pm, c, f, (int)k, CONT_MAP_READ, &m,
					       NULL);
			if (err == ENOMEM && spill)
				break; /* as copies */
			if (err)
				fail_msg("step %d: map: %s", step, strerror(err));
			if (memcmp(m, data + f * PM_FRAME_SIZE, k * PM_FRAME_SIZE))
				fail_msg("step %d: mapped frames %u.. differ", step,
					 f);
			pm_container_unmap(pm, m, (int)k);
		}
		}
	}
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	{
		uint64_t count = 0;
		for (int i = 0; i < NF; i++)
			count += exists[i];
		assert_int_equal(st.frames, count);
		printf("%d steps on %s container: %llu frames at the end, "
		       "%llu of them on other nodes\n", STEPS,
		       spill ? "a spilling" : "an interleaved",
		       (unsigned long long)st.frames,
		       (unsigned long long)st.remote);
	}
	test_check(pm);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	if (spill)
		assert_int_equal(pm_container_destroy(pm, filler), 0);
	test_check(pm);
	pm_disconnect(pm);
	for (int i = 0; i < nnodes; i++) {
		pm_t *p = test_connect(&node[i]);
		test_check(p);
		pm_disconnect(p);
	}
	ct_stop_nodes(node, 3);
}

static void random_interleaved_container_matches_a_model(void **state)
{
	random_container_matches_a_model(false);
}

static void random_spilling_container_matches_a_model(void **state)
{
	random_container_matches_a_model(true);
}

static int setup_three_small(void **state)
{
	small_third = true;
	return setup_three(state);
}

/* Interleave across three nodes when node 3 can lend only 256 frames:
 * its share of 900 is 300, so the allocation stops at the first frame
 * it cannot take (all or nothing, or with PARTIAL the frames before);
 * nothing stays lent after a failure. */
static void interleave_when_a_node_cannot_lend_its_share(void **state)
{
	pm_t *pm = test_connect(&node[0]);
	uint64_t f2 = free_of(2), f3 = free_of(3);
	struct pm_container_stat st;
	container_t c;
	int n = 900;

	assert_true(f3 < 300 && f3 > 200);
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_set_policy(pm, c, PM_PLACE_INTERLEAVE, 0),
			 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), ENOMEM);
	assert_int_equal(n, 0);
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.frames, 0);
	wait_free(2, f2);
	wait_free(3, f3);

	/* With PARTIAL: frame 3k+2 is node 3's k-th; it lends f3 at most,
	 * so the stop is at or before frame 3*f3 + 2. */
	n = 900;
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, CONT_ALLOC_PARTIAL),
			 ENOMEM);
	printf("node 3 lent %llu of its 300: %d frames allocated\n",
	       (unsigned long long)(f3 - free_of(3)), n);
	assert_true(n > 0 && n <= 3 * (int)f3 + 2);
	assert_int_equal(n % 3, 2); /* it stopped at one of node 3's frames */
	assert_int_equal(pm_container_stat(pm, c, &st), 0);
	assert_int_equal(st.frames, (uint64_t)n);
	assert_int_equal(st.remote, (uint64_t)(n - (n + 2) / 3)); /* f % 3 != 0 */
	/* Every frame works. */
	for (int f = 0; f < n; f += 97)
		assert_int_equal(pm_container_write(pm, c, (frame_t)f, 0, "ok", 2),
				 0);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	wait_free(2, f2);
	wait_free(3, f3);
	test_check(pm);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

/* A task that sends its next request while the last one waits on
 * another node: the second is read once the first is answered, and
 * both are answered in order. */
static void requests_sent_while_one_waits_on_another_node(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pm_hello_req hello = { .version = PM_PROTO_VERSION };
	uint8_t hrep[64], msg[2][16 + sizeof(struct pm_io_req)], in[8192];
	struct pm_handle_rep c;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, node[0].socket);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(raw_call(fd, PM_MSG_HELLO, &hello, sizeof(hello),
				  hrep, sizeof(hrep) - 16, true), PM_ST_OK);
	assert_int_equal(raw_call(fd, PM_MSG_CREATE, NULL, 0, &c, sizeof(c),
				  true), PM_ST_OK);
	struct pm_policy_req pol = { .handle = c.handle,
				     .policy = PM_PLACE_NODE, .node = 2 };
	assert_int_equal(raw_call(fd, PM_MSG_SET_POLICY, &pol, sizeof(pol),
				  NULL, 0, true), PM_ST_OK);
	struct pm_alloc_req al = { .handle = c.handle, .count = 4 };
	assert_int_equal(raw_call(fd, PM_MSG_ALLOCATE, &al, sizeof(al),
				  NULL, 0, true), PM_ST_OK);
	for (uint32_t k = 0; k < 2; k++) {
		struct pm_msg_hdr *h = (struct pm_msg_hdr *)msg[k];
		struct pm_io_req q = { .handle = c.handle, .frame = k, .len = 4096 };
		pm_msg_hdr_init(h, PM_MSG_READ, sizeof(msg[k]), 10 + k);
		memcpy(h + 1, &q, sizeof(q));
	}
	assert_int_equal(send(fd, msg[0], sizeof(msg[0]), 0), sizeof(msg[0]));
	assert_int_equal(send(fd, msg[1], sizeof(msg[1]), 0), sizeof(msg[1]));
	for (uint32_t k = 0; k < 2; k++) {
		assert_int_equal(recv(fd, in, sizeof(in), 0), PM_REPLY_HDR + 4096);
		assert_int_equal(((struct pm_msg_hdr *)in)->seq, 10 + k);
		assert_int_equal(((struct pm_reply *)(in + 16))->status, PM_ST_OK);
	}
	close(fd);
	pm_t *pm = test_connect(&node[0]);
	test_check(pm);
	pm_disconnect(pm);
	ct_stop_nodes(node, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(frames_on_another_node, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			other_frames_are_served_beside_remote_work, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			requests_sent_while_one_waits_on_another_node, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_task_gone_mid_allocation_leaves_no_loan, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_paused_lender_gets_its_loans_back, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_paused_home_finds_its_frames_there_lost, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_late_read_lands_in_no_later_request, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_pmd_stops_with_a_transfer_held, setup, teardown),
		cmocka_unit_test_setup_teardown(lender_killed_under_traffic,
						setup, teardown),
		cmocka_unit_test_setup_teardown(drain_under_traffic,
						setup_three, teardown),
		cmocka_unit_test_setup_teardown(
			a_drain_that_cannot_finish_changes_nothing, setup_small,
			teardown),
		cmocka_unit_test_setup_teardown(drain_to_a_third_node,
						setup_three_small_home,
						teardown),
		cmocka_unit_test_setup_teardown(spill_when_the_home_is_full,
						setup_small, teardown),
		cmocka_unit_test_setup_teardown(
			a_write_across_remote_and_copy_on_write_frames, setup,
			teardown),
		cmocka_unit_test_setup_teardown(interleave_across_nodes,
						setup_three, teardown),
		cmocka_unit_test_setup_teardown(
			interleave_when_a_node_cannot_lend_its_share,
			setup_three_small, teardown),
		cmocka_unit_test_setup_teardown(
			random_interleaved_container_matches_a_model,
			setup_three, teardown),
		cmocka_unit_test_setup_teardown(
			random_spilling_container_matches_a_model, setup_small,
			teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
