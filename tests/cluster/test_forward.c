/*
 * Forwarding to the home: a task on node 2 imports a token of a container
 * homed on node 1 and uses it through its own pmd: reads and writes of
 * every size, stat, lock and unlock, release; what a weak reference may
 * not do stays refused; unshare, a foreign task, an altered token and the
 * home's death give the errors of one node (ENODEV for the dead home);
 * the home forgets its proxy when the task goes. Copies with forwarded
 * handles: within one home the home copies (copy-on-write), between homes
 * the bytes are copied; either way with the errors and culprits of one
 * node.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/wait.h>

#include "cluster_util.h"
#include "walk.h"

static char dir[] = "/tmp/pmd-forward-XXXXXX";
static char ini[300], key[300];
static struct pmd_proc node[3];

static int setup_n(int n)
{
	strcpy(dir, "/tmp/pmd-forward-XXXXXX");
	ct_cluster_files(dir, ini, sizeof(ini), key, sizeof(key), 3);
	ct_start_nodes(node, n, ini);
	return 0;
}

static int setup(void **state)
{
	return setup_n(2);
}

static int setup3(void **state)
{
	return setup_n(3);
}

static int teardown(void **state)
{
	ct_cluster_down(node, 3, dir, ini, key);
	return 0;
}

static uint64_t tasks_on(pm_t *pm)
{
	struct pm_debug_stat st;

	assert_int_equal(pm_debug_stat(pm, &st), 0);
	return st.tasks;
}

static void a_server_on_another_node(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	pm_t *other = test_connect(&node[1]);
	static uint8_t buf[65536], got[65536];
	struct pm_container_stat st;
	pm_cap_token_t tok, bad;
	pm_task_t sid;
	container_t c, weak, ref, ref2;
	uint64_t t0, base_tasks = tasks_on(a);
	int n = 20;
	void *m;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(pm_container_write(a, c, 1, 5, buf, sizeof(buf)), 0);

	/* A task of node 2 is named by its id; the token goes there. */
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(sid >> 48, 2);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	bad = tok;
	bad.bytes[20] ^= 1;
	assert_int_equal(pm_cap_import(s, &bad, &ref), EINVAL);
	assert_int_equal(pm_cap_import(other, &tok, &ref), EACCES);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(tasks_on(a), base_tasks + 1); /* its proxy */
	/* Exported again (as on one node: a token for the same task), it
	 * imports as a second handle. */
	assert_int_equal(pm_cap_export(s, ref, &bad), 0);
	assert_int_equal(pm_cap_import(s, &bad, &ref2), 0);
	assert_int_equal(pm_cap_release(s, ref2), 0);

	/* Reads and writes of every size, through node 2's pmd. */
	assert_int_equal(pm_container_read(s, ref, 1, 5, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	assert_int_equal(pm_container_read(s, ref, 1, 5 + 4093, got, 10), 0);
	assert_memory_equal(got, buf + 4093, 10);
	assert_int_equal(pm_container_write(s, ref, 3, 1, "from node 2", 11), 0);
	assert_int_equal(pm_container_read(a, c, 3, 1, got, 11), 0);
	assert_memory_equal(got, "from node 2", 11);
	assert_int_equal(pm_container_read(s, ref, 30, 0, got, 1), ENOENT);
	/* A write that reaches a missing frame changes nothing, as on one
	 * node: the home decides it whole. */
	assert_int_equal(pm_container_read(a, c, 14, 0, got, 3 * 4096), 0);
	assert_int_equal(pm_container_write(s, ref, 14, 0, buf, sizeof(buf)),
			 ENOENT);
	assert_int_equal(pm_container_read(a, c, 14, 0, got + 3 * 4096,
					   3 * 4096), 0);
	assert_memory_equal(got, got + 3 * 4096, 3 * 4096);
	assert_int_equal(pm_container_stat(s, ref, &st), 0);
	assert_int_equal(st.frames, 20);
	assert_int_equal(st.home, 1);

	/* The server's lock holds the owner off; a weak reference stays
	 * weak; what is not built for another home says so. */
	assert_int_equal(pm_container_lock(s, ref, 5000), 0);
	assert_int_equal(pm_container_deallocate(a, c, 19, 1), EBUSY);
	assert_int_equal(pm_container_unlock(s, ref), 0);
	assert_int_equal(pm_container_deallocate(a, c, 19, 1), 0);
	n = 1;
	assert_int_equal(pm_container_allocate(s, ref, 40, &n, 0), EPERM);
	assert_int_equal(pm_container_destroy(s, ref), EPERM);
	assert_int_equal(pm_container_map(s, ref, 1, 1, CONT_MAP_READ, &m, NULL),
			 0); /* the frame moves to node 2 (test_fwdmap) */
	assert_memory_equal((uint8_t *)m + 5, buf, 16);
	assert_int_equal(pm_container_unmap(s, m, 1), 0);
	assert_int_equal(pm_container_copy(s, ref + 100, 0, ref, 0, 1, 0, NULL),
			 EBADF);
	assert_int_equal(pm_container_copy(s, ref, 0, ref, 1, 1, 1, NULL),
			 EINVAL);
	assert_int_equal(pm_container_read(s, ref + 100, 0, 0, got, 1), EBADF);

	/* Released, and imported again; then unshared by the owner. */
	assert_int_equal(pm_cap_release(s, ref), 0);
	assert_int_equal(pm_container_read(s, ref, 0, 0, got, 1), EBADF);
	assert_int_equal(pm_cap_import(s, &tok, &ref2), 0);
	assert_int_equal(pm_container_read(s, ref2, 3, 1, got, 11), 0);
	assert_int_equal(pm_container_unshare(a, c, sid), 0);
	assert_int_equal(pm_container_read(s, ref2, 3, 1, got, 11), ESTALE);
	test_check(a);

	/* The task goes: the home forgets its proxy. */
	pm_disconnect(s);
	t0 = ct_now_ms();
	while (tasks_on(a) != base_tasks && ct_now_ms() - t0 < 3000)
		usleep(20000);
	assert_int_equal(tasks_on(a), base_tasks);

	/* The home dies: its containers fail clearly, at once or by the
	 * deadline. */
	s = test_connect(&node[1]);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	ct_kill(&node[0]);
	pm_disconnect(a); /* its pmd is gone */
	t0 = ct_now_ms();
	error_t err = pm_container_read(s, ref, 3, 1, got, 11);
	if (err != ENODEV && err != ETIMEDOUT)
		fail_msg("read from a dead home: %s", strerror(err));
	assert_true(ct_now_ms() - t0 <= 2500);
	ct_wait_state(&node[1], 1, PM_NODE_DOWN, 6000);
	assert_int_equal(pm_container_read(s, ref, 3, 1, got, 11), ENODEV);
	/* It comes back as a new incarnation: the old handle is stale. */
	pmd_proc_start(&node[0], (const char *const[]){ "--node-id", "1",
		"--cluster", ini, "--memory", "64M", "--guarantee", "1024", NULL });
	ct_wait_state(&node[1], 1, PM_NODE_UP, 6000);
	assert_int_equal(pm_container_read(s, ref, 3, 1, got, 11), ESTALE);
	pm_disconnect(s);
	pm_disconnect(other);
	ct_stop_nodes(node, 3);
}

/* The task on node 2, the home on node 1, the frames on node 3: reads and
 * writes through the home reach the frames, as on one node. */
static void task_home_and_frames_on_three_nodes(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	static uint8_t buf[65536], got[65536];
	struct pm_container_stat st;
	container_t c, weak, ref;
	pm_cap_token_t tok;
	pm_task_t sid;
	int n = 20;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_set_policy(a, c, PM_PLACE_NODE, 3), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	assert_int_equal(pm_container_stat(a, c, &st), 0);
	assert_int_equal(st.remote, 20);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(pm_container_write(s, ref, 2, 77, buf, sizeof(buf)), 0);
	assert_int_equal(pm_container_read(a, c, 2, 77, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	assert_int_equal(pm_container_read(s, ref, 2, 77, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	test_check(a);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}

/* Frame f's first bytes say "<tag> f". */
static void stamp(pm_t *pm, container_t c, int first, int n, char tag)
{
	for (int f = first; f < first + n; f++) {
		char b[16];
		snprintf(b, sizeof(b), "%c%d", tag, f);
		assert_int_equal(pm_container_write(pm, c, (frame_t)f, 0, b,
						    strlen(b) + 1), 0);
	}
}

/* Whether frame f of c starts with "<tag> g". */
static void expect(pm_t *pm, container_t c, int f, char tag, int g)
{
	char b[16], want[16];

	snprintf(want, sizeof(want), "%c%d", tag, g);
	assert_int_equal(pm_container_read(pm, c, (frame_t)f, 0, b,
					   strlen(want) + 1), 0);
	assert_string_equal(b, want);
}

/* A server on node 2 copies with handles of containers homed on nodes 1
 * and 3 and of its own: one home decides when both are its; otherwise the
 * bytes move, in frame order, stopping where a copy on one node stops. */
static void copies_through_forwarded_handles(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	pm_t *b = test_connect(&node[2]);
	static uint8_t big[40 * PM_FRAME_SIZE], got[40 * PM_FRAME_SIZE];
	struct pm_container_stat st;
	container_t c1, d1, c3, own, r1, rd1, r3;
	frame_t fe = 0;
	int n;

	/* c1 and d1 homed on node 1, c3 on node 3, own on node 2. */
	assert_int_equal(pm_container_create(a, &c1), 0);
	assert_int_equal(pm_container_create(a, &d1), 0);
	assert_int_equal(pm_container_create(b, &c3), 0);
	assert_int_equal(pm_container_create(s, &own), 0);
	n = 20;
	assert_int_equal(pm_container_allocate(a, c1, 0, &n, 0), 0);
	n = 20;
	assert_int_equal(pm_container_allocate(a, d1, 0, &n, 0), 0);
	n = 20;
	assert_int_equal(pm_container_allocate(b, c3, 0, &n, 0), 0);
	n = 40;
	assert_int_equal(pm_container_allocate(s, own, 0, &n, 0), 0);
	stamp(a, c1, 0, 20, 'a');
	stamp(b, c3, 0, 20, 'b');
	stamp(s, own, 0, 40, 's');
	r1 = ct_import(a, c1, s);
	rd1 = ct_import(a, d1, s);
	r3 = ct_import(b, c3, s);

	/* One home: node 1 copies; a later write to either side does not
	 * show in the other. */
	assert_int_equal(pm_container_copy(s, r1, 2, rd1, 5, 4, 0, NULL), 0);
	for (int k = 0; k < 4; k++)
		expect(a, d1, 5 + k, 'a', 2 + k);
	assert_int_equal(pm_container_write(s, rd1, 5, 0, "x", 2), 0);
	expect(a, c1, 2, 'a', 2);
	/* Within one container: copy-on-write (the home shares the slots),
	 * overlapping as memmove; writes break the sharing. */
	assert_int_equal(pm_container_copy(s, r1, 0, r1, 1, 3, 0, NULL), 0);
	assert_int_equal(pm_container_stat(a, c1, &st), 0);
	assert_true(st.cow >= 2);
	expect(a, c1, 1, 'a', 0);
	expect(a, c1, 3, 'a', 2);
	stamp(a, c1, 0, 4, 'a');
	expect(a, c1, 0, 'a', 0);
	/* (c1's frames 4 and 5 still share their slots with d1's 7 and 8:
	 * the first copy, across containers of one home, was logical.) */
	assert_int_equal(pm_container_stat(a, c1, &st), 0);
	assert_int_equal(st.cow, 2);
	/* Its stops and their culprits come back from the home. */
	assert_int_equal(pm_container_copy(s, r1, 18, rd1, 0, 5, 0, &fe), ENOENT);
	assert_int_equal(fe, 20);
	expect(a, d1, 1, 'a', 19);

	/* Between homes: the bytes, node 1 to node 2, 2 to 3, 1 to 3. */
	assert_int_equal(pm_container_copy(s, r1, 0, own, 10, 20, 0, NULL), 0);
	for (int k = 0; k < 20; k++)
		expect(s, own, 10 + k, 'a', k);
	assert_int_equal(pm_container_copy(s, own, 30, r3, 0, 3, 0, NULL), 0);
	for (int k = 0; k < 3; k++)
		expect(b, c3, k, 's', 30 + k);
	assert_int_equal(pm_container_copy(s, r1, 5, r3, 5, 2, 0, NULL), 0);
	expect(b, c3, 5, 'a', 5);
	expect(b, c3, 6, 'a', 6);
	expect(b, c3, 7, 'b', 7);
	/* Whole frames, and more than one request's worth. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31 + 7);
	assert_int_equal(pm_container_write(s, own, 0, 0, big, 20 * PM_FRAME_SIZE),
			 0);
	assert_int_equal(pm_container_copy(s, own, 0, r1, 0, 20, 0, NULL), 0);
	assert_int_equal(pm_container_read(a, c1, 0, 0, got, 20 * PM_FRAME_SIZE),
			 0);
	assert_memory_equal(got, big, 20 * PM_FRAME_SIZE);
	/* A later write to the source does not show in the copy. */
	assert_int_equal(pm_container_write(s, own, 0, 0, "later", 6), 0);
	assert_int_equal(pm_container_read(a, c1, 0, 0, got, 6), 0);
	assert_memory_equal(got, big, 6);

	/* The first missing source frame stops it with ENOENT, the first
	 * missing destination frame with ENOMEM; the frames before are
	 * copied, the rest untouched. */
	stamp(s, own, 0, 5, 's');
	assert_int_equal(pm_container_copy(s, r3, 17, own, 0, 5, 0, &fe), ENOENT);
	assert_int_equal(fe, 20);
	expect(s, own, 2, 'b', 19);
	expect(s, own, 3, 's', 3);
	assert_int_equal(pm_container_copy(s, own, 0, r3, 18, 5, 0, &fe), ENOMEM);
	assert_int_equal(fe, 20);
	expect(b, c3, 18, 'b', 17);
	expect(b, c3, 19, 'b', 18);
	assert_int_equal(pm_container_deallocate(b, c3, 1, 1), 0);
	assert_int_equal(pm_container_copy(s, r1, 0, r3, 0, 3, 0, &fe), ENOMEM);
	assert_int_equal(fe, 1);
	assert_int_equal(pm_container_copy(s, own, 0, r1, 0, 1, 1, NULL), EINVAL);
	test_check(a);
	test_check(s);
	test_check(b);
	pm_disconnect(s);
	pm_disconnect(a);
	pm_disconnect(b);
	ct_stop_nodes(node, 3);
}

/* Whether frame f of c starts with "<tag> f" or holds frame g of data. */
static bool stamped_or(pm_t *pm, container_t c, int f, char tag,
		       const uint8_t *data, int g)
{
	static uint8_t b[PM_FRAME_SIZE];
	char want[16];

	snprintf(want, sizeof(want), "%c%d", tag, f);
	assert_int_equal(pm_container_read(pm, c, (frame_t)f, 0, b,
					   sizeof(b)), 0);
	return strcmp((char *)b, want) == 0 ||
	       memcmp(b, data + (size_t)g * PM_FRAME_SIZE, sizeof(b)) == 0;
}

/*
 * A long copy between homes keeps several pieces in flight: every byte of
 * 200 frames (13 pieces) arrives, either way; a source frame missing in a
 * later piece stops it there (ENOENT, the frames before it copied, it
 * untouched, the ones after it copied or not), and so does a missing
 * destination frame (ENOMEM), wherever the pieces ahead were.
 */
static void long_copies_between_homes(void **state)
{
	enum { FRAMES = 200 };
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	static uint8_t data[FRAMES * PM_FRAME_SIZE], got[FRAMES * PM_FRAME_SIZE];
	container_t c, own, r;
	frame_t fe = 0;
	int n = FRAMES;

	(void)state;
	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	n = FRAMES;
	assert_int_equal(pm_container_create(s, &own), 0);
	assert_int_equal(pm_container_allocate(s, own, 0, &n, 0), 0);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + i / PM_FRAME_SIZE);
	for (int f = 0; f < FRAMES; f += 16)
		assert_int_equal(pm_container_write(a, c, (frame_t)f, 0,
			data + (size_t)f * PM_FRAME_SIZE,
			(size_t)(f + 16 <= FRAMES ? 16 : FRAMES - f) *
				PM_FRAME_SIZE), 0);
	r = ct_import(a, c, s);

	/* Home to here, every byte. */
	assert_int_equal(pm_container_copy(s, r, 0, own, 0, FRAMES, 0, NULL), 0);
	for (int f = 0; f < FRAMES; f += 16)
		assert_int_equal(pm_container_read(s, own, (frame_t)f, 0,
			got + (size_t)f * PM_FRAME_SIZE,
			(size_t)(f + 16 <= FRAMES ? 16 : FRAMES - f) *
				PM_FRAME_SIZE), 0);
	assert_memory_equal(got, data, sizeof(data));
	/* And back, shifted by one frame. */
	assert_int_equal(pm_container_copy(s, own, 0, r, 1, FRAMES - 1, 0,
					   NULL), 0);
	for (int f = 1; f < FRAMES; f += 37) {
		assert_int_equal(pm_container_read(a, c, (frame_t)f, 0, got,
						   PM_FRAME_SIZE), 0);
		assert_memory_equal(got, data + (size_t)(f - 1) * PM_FRAME_SIZE,
				    PM_FRAME_SIZE);
	}
	/* A source hole in the 10th piece. */
	stamp(s, own, 0, FRAMES, 's');
	assert_int_equal(pm_container_deallocate(a, c, 150, 1), 0);
	assert_int_equal(pm_container_copy(s, r, 0, own, 0, FRAMES, 0, &fe),
			 ENOENT);
	assert_int_equal(fe, 150);
	assert_int_equal(pm_container_read(s, own, 149, 0, got, PM_FRAME_SIZE),
			 0);
	assert_int_equal(pm_container_read(a, c, 149, 0, got + PM_FRAME_SIZE,
					   PM_FRAME_SIZE), 0);
	assert_memory_equal(got, got + PM_FRAME_SIZE, PM_FRAME_SIZE);
	expect(s, own, 150, 's', 150);
	/* (c's frame f holds data's f - 1 since the copy back.) */
	for (int f = 151; f < FRAMES; f++)
		assert_true(stamped_or(s, own, f, 's', data, f - 1));
	/* A destination hole in the 6th piece, the other way. */
	stamp(a, c, 0, 150, 'a');
	stamp(s, own, 0, 150, 's');
	assert_int_equal(pm_container_deallocate(a, c, 90, 1), 0);
	assert_int_equal(pm_container_copy(s, own, 0, r, 0, 150, 0, &fe),
			 ENOMEM);
	assert_int_equal(fe, 90);
	expect(a, c, 89, 's', 89);
	for (int f = 91; f < 150; f++) {
		char b[16], sw[16], aw[16];

		snprintf(sw, sizeof(sw), "s%d", f);
		snprintf(aw, sizeof(aw), "a%d", f);
		assert_int_equal(pm_container_read(a, c, (frame_t)f, 0, b,
						   sizeof(b)), 0);
		assert_true(strcmp(b, sw) == 0 || strcmp(b, aw) == 0);
	}
	test_check(a);
	test_check(s);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 2);
}

static uint32_t rnd(uint64_t *rng, uint32_t k)
{
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	return (uint32_t)(*rng % k);
}

/* Random reads, writes, copies and maps by the owner (node 1) and a
 * server on node 2, of a container homed on node 1 with its frames on
 * node 3 (maps and copies bring them home as they go, the server's maps
 * take them to node 2), all checked against one model. Both also keep
 * the whole container mapped and load and store through it, so frames
 * move between nodes 1 and 2 under everything else, each mapping
 * following them; the owner also copies (logically: one home) between
 * that container and a second one of its own, mapped too. */
static void random_traffic_across_three_nodes(void **state)
{
	enum { NF = 64, STEPS = 400 };
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	static uint8_t model[NF * PM_FRAME_SIZE], buf[65536], got[65536];
	static uint8_t own_model[8 * PM_FRAME_SIZE], d_model[8 * PM_FRAME_SIZE];
	container_t c, weak, ref, own, d;
	uint8_t *dmap;
	unsigned logical = 0;
	int n_d = 8;
	pm_cap_token_t tok;
	pm_task_t sid;
	const char *seed = getenv("PMD_TEST_SEED");
	uint64_t rng = seed && *seed ? strtoull(seed, NULL, 0) : 0;
	unsigned maps = 0, copies = 0, across = 0, mapped_io = 0;
	uint8_t *whole[2];
	int n = NF, n_own = 8;

	if (!rng) /* xorshift never leaves 0 */
		rng = 0x9e3779b97f4a7c15ull;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_set_policy(a, c, PM_PLACE_NODE, 3), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	/* The server's own container on node 2: copies between it and the
	 * shared one cross homes (the library moves the bytes). */
	assert_int_equal(pm_container_create(s, &own), 0);
	assert_int_equal(pm_container_allocate(s, own, 0, &n_own, 0), 0);
	assert_int_equal(pm_container_map(a, c, 0, NF, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&whole[0],
					  NULL), 0);
	assert_int_equal(pm_container_map(s, ref, 0, NF, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&whole[1],
					  NULL), 0);
	/* The owner's second container on the home, mapped: copies between
	 * it and the shared one are logical (one home), under the moves. */
	assert_int_equal(pm_container_create(a, &d), 0);
	assert_int_equal(pm_container_allocate(a, d, 0, &n_d, 0), 0);
	assert_int_equal(pm_container_map(a, d, 0, 8, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&dmap, NULL),
			 0);
	for (int step = 0; step < STEPS; step++) {
		uint32_t len = 1 + rnd(&rng, rnd(&rng, 2) ? 4096 : 65536);
		uint64_t off = rnd(&rng, NF * PM_FRAME_SIZE - len + 1);
		bool server = rnd(&rng, 2);
		pm_t *pm = server ? s : a;
		container_t h = server ? ref : c;

		uint32_t op = rnd(&rng, 10);

		if (getenv("PM_TEST_TRACE"))
			fprintf(stderr, "step %d op %u %s off %llu len %u\n", step,
				op, server ? "server" : "owner",
				(unsigned long long)off, len);
		switch (op) {
		case 9: {
			/* The owner: a logical copy between the shared
			 * container and its own second one, or a store
			 * through the second one's mapping; then that
			 * mapping is checked. */
			uint32_t k = 1 + rnd(&rng, 4);
			bool to_d = rnd(&rng, 2);
			frame_t cf = rnd(&rng, NF - k + 1), dfr = rnd(&rng, 8 - k + 1);

			if (rnd(&rng, 3) == 0) {
				uint32_t at = rnd(&rng, 8 * PM_FRAME_SIZE - 64);
				uint8_t v = (uint8_t)rnd(&rng, 256);
				memset(dmap + at, v, 64);
				memset(d_model + at, v, 64);
			} else {
				if (pm_container_copy(a, to_d ? c : d,
						      to_d ? cf : dfr,
						      to_d ? d : c,
						      to_d ? dfr : cf, (int)k, 0,
						      NULL))
					fail_msg("step %d: logical copy failed",
						 step);
				if (to_d)
					memcpy(d_model + dfr * PM_FRAME_SIZE,
					       model + cf * PM_FRAME_SIZE,
					       (size_t)k * PM_FRAME_SIZE);
				else
					memcpy(model + cf * PM_FRAME_SIZE,
					       d_model + dfr * PM_FRAME_SIZE,
					       (size_t)k * PM_FRAME_SIZE);
				logical++;
			}
			if (memcmp(dmap, d_model, sizeof(d_model)))
				fail_msg("step %d: the owner's mapping of its "
					 "second container differs", step);
			break;
		}
		case 7:
			/* A store through a whole-container mapping. */
			for (uint32_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rnd(&rng, 256);
			memcpy(whole[server] + off, buf, len);
			memcpy(model + off, buf, len);
			mapped_io++;
			break;
		case 8:
			for (uint32_t i = 0; getenv("PM_TEST_TRACE") && i < len; i++)
				if (whole[server][off + i] != model[off + i]) {
					fprintf(stderr, "first difference at %llu "
						"(frame %llu): %u, not %u\n",
						(unsigned long long)(off + i),
						(unsigned long long)((off + i) / PM_FRAME_SIZE),
						whole[server][off + i], model[off + i]);
					break;
				}
			if (memcmp(whole[server] + off, model + off, len))
				fail_msg("step %d: %s mapping of %u at %llu differs",
					 step, server ? "server's" : "owner's", len,
					 (unsigned long long)off);
			mapped_io++;
			break;
		case 6: {
			/* Across homes, to the server's container or from it. */
			uint32_t k = 1 + rnd(&rng, 4);
			frame_t in_own = rnd(&rng, 8 - k + 1);
			frame_t in_shared = rnd(&rng, NF - k + 1);
			bool to_own = rnd(&rng, 2);
			frame_t sf = to_own ? rnd(&rng, NF - k + 1) : in_own;
			frame_t df = to_own ? in_own : in_shared;
			container_t from = to_own ? ref : own, to = to_own ? own : ref;
			uint8_t *mfrom = to_own ? model : own_model;
			uint8_t *mto = to_own ? own_model : model;

			if (pm_container_copy(s, from, sf, to, df, (int)k, 0, NULL))
				fail_msg("step %d: copy %s node 2 failed", step,
					 to_own ? "to" : "from");
			memcpy(mto + df * PM_FRAME_SIZE, mfrom + sf * PM_FRAME_SIZE,
			       (size_t)k * PM_FRAME_SIZE);
			across++;
			break;
		}
		case 5: {
			/* A copy within the container (the server's goes to
			 * the home), ranges that may overlap: as memmove. */
			uint32_t k = 1 + rnd(&rng, 4);
			frame_t sf = rnd(&rng, NF - k + 1), df = rnd(&rng, NF - k + 1);
			if (getenv("PM_TEST_TRACE"))
				fprintf(stderr, "  copy %llu -> %llu n %u\n",
					(unsigned long long)sf,
					(unsigned long long)df, k);
			if (pm_container_copy(pm, h, sf, h, df, (int)k, 0, NULL))
				fail_msg("step %d: copy failed", step);
			memmove(model + df * PM_FRAME_SIZE, model + sf * PM_FRAME_SIZE,
				(size_t)k * PM_FRAME_SIZE);
			copies++;
			break;
		}
		case 0: case 1:
			for (uint32_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rnd(&rng, 256);
			error_t werr = pm_container_write(pm, h, 0, off, buf, len);
			if (werr)
				fail_msg("step %d: %s write of %u at %llu: %s", step,
					 server ? "server" : "owner", len,
					 (unsigned long long)off, strerror(werr));
			memcpy(model + off, buf, len);
			break;
		case 2: case 3:
			if (pm_container_read(pm, h, 0, off, got, len))
				fail_msg("step %d: read failed", step);
			if (memcmp(got, model + off, len))
				fail_msg("step %d: %s read of %u at %llu differs",
					 step, server ? "server" : "owner", len,
					 (unsigned long long)off);
			break;
		default: {
			/* Either maps a few frames: they come to its node. */
			frame_t f = rnd(&rng, NF - 4);
			uint8_t *m;

			if (getenv("PM_TEST_TRACE"))
				fprintf(stderr, "  map %llu..+4\n",
					(unsigned long long)f);
			assert_int_equal(pm_container_map(pm, h, f, 4, CONT_MAP_READ,
							  (void **)&m, NULL), 0);
			if (memcmp(m, model + f * PM_FRAME_SIZE, 4 * PM_FRAME_SIZE))
				fail_msg("step %d: mapped frames %llu.. differ", step,
					 (unsigned long long)f);
			pm_container_unmap(pm, m, 4);
			maps++;
		}
		}
	}
	assert_int_equal(pm_container_read(s, own, 0, 0, got, sizeof(own_model)),
			 0);
	assert_memory_equal(got, own_model, sizeof(own_model));
	assert_memory_equal(whole[0], model, sizeof(model));
	assert_memory_equal(whole[1], model, sizeof(model));
	assert_memory_equal(dmap, d_model, sizeof(d_model));
	assert_int_equal(pm_container_read(a, d, 0, 0, got, sizeof(d_model)), 0);
	assert_memory_equal(got, d_model, sizeof(d_model));
	pm_container_unmap(a, whole[0], NF);
	pm_container_unmap(s, whole[1], NF);
	pm_container_unmap(a, dmap, 8);
	test_check(a);
	test_check(s);
	printf("%d steps, %u maps, %u loads and stores through mappings, "
	       "%u copies, %u across homes, %u logical between containers, on "
	       "three nodes (PMD_TEST_SEED to change the seed)\n", STEPS, maps,
	       mapped_io, copies, across, logical);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}

/*
 * A copy between homes is the task's pmd's work, piece by piece: a task
 * killed in the middle of a long one leaves every node's books balanced,
 * its proxy gone at the home, and the pmds serving on.
 */
static void a_task_gone_mid_copy(void **state)
{
	enum { FRAMES = 1000 };
	pm_t *a = test_connect(&node[0]), *watch = test_connect(&node[1]);
	uint64_t base = tasks_on(watch), base_home = tasks_on(a);
	int to_child[2], to_parent[2], n = FRAMES, status;
	container_t c, weak;
	pm_cap_token_t tok;
	pm_task_t child_task;
	char ready;
	pid_t pid;

	(void)state;
	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	stamp(a, c, 0, FRAMES, 'a');
	assert_int_equal(pipe(to_child), 0);
	assert_int_equal(pipe(to_parent), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pm_t *s;
		container_t ref, own;
		int k = FRAMES;

		if (pm_connect(node[1].socket, &s) || pm_self(s, &child_task) ||
		    write(to_parent[1], &child_task, sizeof(child_task)) !=
			    sizeof(child_task) ||
		    read(to_child[0], &tok, sizeof(tok)) != sizeof(tok) ||
		    pm_cap_import(s, &tok, &ref) ||
		    pm_container_create(s, &own) ||
		    pm_container_allocate(s, own, 0, &k, 0) ||
		    write(to_parent[1], "r", 1) != 1)
			_exit(2);
		_exit(pm_container_copy(s, ref, 0, own, 0, FRAMES, 0, NULL) ? 3
									    : 0);
	}
	assert_int_equal(read(to_parent[0], &child_task, sizeof(child_task)),
			 sizeof(child_task));
	assert_int_equal(pm_container_share(a, c, child_task, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(write(to_child[1], &tok, sizeof(tok)), sizeof(tok));
	assert_int_equal(read(to_parent[0], &ready, 1), 1);
	usleep(15000);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		printf("killed in the middle of copying %d frames between "
		       "homes\n", FRAMES);
	else /* a fast machine: the copy ended first */
		assert_int_equal(WEXITSTATUS(status), 0);
	/* Its session, its proxy at the home: gone; the books balance. */
	for (int i = 0; i < 200 && (tasks_on(watch) != base ||
				    tasks_on(a) != base_home); i++)
		usleep(10000);
	assert_int_equal(tasks_on(watch), base);
	assert_int_equal(tasks_on(a), base_home);
	test_check(a);
	test_check(watch);
	expect(a, c, FRAMES - 1, 'a', FRAMES - 1);
	close(to_child[0]);
	close(to_child[1]);
	close(to_parent[0]);
	close(to_parent[1]);
	pm_disconnect(watch);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}

/*
 * The walk of test_sound (walk.h) across three nodes: the owner on node 1
 * (the home), the server on node 2 through its forwarded handle, half the
 * shared container's frames starting on node 3. Every check of the
 * server's mapping brings the frames to node 2 and every check of the
 * owner's brings them home, so each frame moves between nodes at every
 * step, under copies, writes, locks and unshares; after every step every
 * mapping and the pmd agree with the model.
 */
static void mappings_agree_with_a_model_on_three_nodes(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);

	(void)state;
	test_walk(a, s, 150, 3);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}


/* Forwarded handles: a released one's entry is used again under a new
 * handle (the old one finds nothing), and a task holds at most as many as
 * any handles (docs/api.md, "Limits"): one more is ENOMEM, at its node or
 * at the home, and changes nothing. */
static void forwarded_handles_are_bounded_and_reused(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	struct pm_container_stat st;
	container_t c, weak, ref, ref2;
	pm_cap_token_t tok;
	pm_task_t sid;
	unsigned n = 0;
	error_t err;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(pm_cap_release(s, ref), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref2), 0);
	assert_true(ref2 != ref);
	assert_int_equal(pm_container_stat(s, ref, &st), EBADF);
	assert_int_equal(pm_container_stat(s, ref2, &st), 0);
	while ((err = pm_cap_import(s, &tok, &ref)) == 0)
		if (++n > 20000)
			break;
	assert_int_equal(err, ENOMEM);
	assert_true(n >= 16000 && n < 16384);
	assert_int_equal(pm_cap_release(s, ref2), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref2), 0);
	assert_int_equal(pm_container_stat(s, ref2, &st), 0);
	pm_disconnect(s);
	assert_int_equal(pm_container_destroy(a, c), 0);
	test_check(a);
	pm_disconnect(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_server_on_another_node, setup,
						teardown),
		cmocka_unit_test_setup_teardown(task_home_and_frames_on_three_nodes,
						setup3, teardown),
		cmocka_unit_test_setup_teardown(copies_through_forwarded_handles,
						setup3, teardown),
		cmocka_unit_test_setup_teardown(random_traffic_across_three_nodes,
						setup3, teardown),
		cmocka_unit_test_setup_teardown(
			mappings_agree_with_a_model_on_three_nodes, setup3,
			teardown),
		cmocka_unit_test_setup_teardown(a_task_gone_mid_copy, setup3,
						teardown),
		cmocka_unit_test_setup_teardown(long_copies_between_homes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			forwarded_handles_are_bounded_and_reused, setup,
			teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
