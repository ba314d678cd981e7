/*
 * Mapping through a forwarded handle: a task on node 2 maps frames of a
 * container homed on node 1, some of them placed on node 3. The frames
 * move to node 2 (the home decides and records it) and the task maps them
 * there; both sides see each other's stores, one after the other, as the
 * frame moves back and forth (each side's mapping follows it); a
 * copy-on-write frame is copied, never shared writable, across nodes; a
 * deallocated frame reads as zeros; unshare takes every frame back (the
 * task sees nothing more); the task's end leaves the frames where they
 * are; a task that cannot follow moved frames is refused; a node killed
 * with the frames loses just those (EIO), and the home's death leaves the
 * task's mapping reading zeros, not hanging. Every node's accounting
 * holds throughout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster_util.h"

static char dir[] = "/tmp/pmd-fwdmap-XXXXXX";
static char ini[300], key[300];
static struct pmd_proc node[3];

static int setup(void **state)
{
	strcpy(dir, "/tmp/pmd-fwdmap-XXXXXX");
	ct_cluster_files(dir, ini, sizeof(ini), key, sizeof(key), 3);
	ct_start_nodes(node, 3, ini);
	return 0;
}

static int teardown(void **state)
{
	ct_cluster_down(node, 3, dir, ini, key);
	return 0;
}

static uint8_t pattern(int f, size_t i)
{
	return (uint8_t)(f * 31 + i * 7 + 1);
}

/* Frames 0-7 on the home (node 1), 8-15 on node 3, each with its
 * pattern. */
static container_t make_container(pm_t *a)
{
	static uint8_t buf[PM_FRAME_SIZE];
	container_t c;
	int n = 8;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	assert_int_equal(pm_container_set_policy(a, c, PM_PLACE_NODE, 3), 0);
	n = 8;
	assert_int_equal(pm_container_allocate(a, c, 8, &n, 0), 0);
	assert_int_equal(pm_container_set_policy(a, c, PM_PLACE_LOCAL, 0), 0);
	for (int f = 0; f < 16; f++) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = pattern(f, i);
		assert_int_equal(pm_container_write(a, c, (frame_t)f, 0, buf,
						    sizeof(buf)), 0);
	}
	return c;
}

static uint64_t remote_frames(pm_t *a, container_t c)
{
	struct pm_container_stat st;

	assert_int_equal(pm_container_stat(a, c, &st), 0);
	return st.remote;
}

static void check_all(pm_t *const *pms)
{
	for (int i = 0; i < 3; i++)
		if (pms[i])
			test_check(pms[i]);
}

static void both_sides_see_each_others_stores(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	pm_t *z = test_connect(&node[2]);
	pm_t *all[3] = { a, s, z };
	container_t c = make_container(a), ref = ct_import(a, c, s);
	volatile uint8_t *sm, *am;
	void *m;
	char got[32];
	int granted;

	/* Every frame, home's and node 3's alike, moves to node 2. */
	assert_int_equal(pm_container_map(s, ref, 0, 16,
					  CONT_MAP_READ | CONT_MAP_WRITE, &m,
					  &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ | CONT_MAP_WRITE);
	sm = m;
	for (int f = 0; f < 16; f++)
		for (size_t i = 0; i < PM_FRAME_SIZE; i += 511)
			assert_int_equal(sm[(size_t)f * PM_FRAME_SIZE + i],
					 pattern(f, i));
	assert_int_equal(remote_frames(a, c), 16);
	check_all(all);

	/* A store through the task's mapping is the frame's contents:
	 * the home reads it from node 2. */
	memcpy((void *)(sm + 5 * PM_FRAME_SIZE + 100), "task store", 11);
	memcpy((void *)(sm + 12 * PM_FRAME_SIZE), "node 3 frame", 13);
	assert_int_equal(pm_container_read(a, c, 5, 100, got, 11), 0);
	assert_string_equal(got, "task store");
	assert_int_equal(pm_container_read(a, c, 12, 0, got, 13), 0);
	assert_string_equal(got, "node 3 frame");

	/* The owner maps frame 5: it comes home; the task's mapping of it
	 * follows it back on the task's next touch, and so on. */
	assert_int_equal(pm_container_map(a, c, 5, 1,
					  CONT_MAP_READ | CONT_MAP_WRITE, &m,
					  NULL), 0);
	am = m;
	for (int round = 0; round < 4; round++) {
		char mine[32], theirs[32];

		assert_memory_equal((const void *)(am + 100),
				    round ? "task again" : "task store", 11);
		snprintf(mine, sizeof(mine), "owner %d", round);
		memcpy((void *)am, mine, strlen(mine) + 1);
		/* The task's touch brings it to node 2... */
		assert_string_equal((const char *)sm + 5 * PM_FRAME_SIZE, mine);
		snprintf(theirs, sizeof(theirs), "task %d", round);
		memcpy((void *)(sm + 5 * PM_FRAME_SIZE + 200), theirs,
		       strlen(theirs) + 1);
		memcpy((void *)(sm + 5 * PM_FRAME_SIZE + 100), "task again", 11);
		/* ...and the owner's touch brings it home. */
		assert_string_equal((const char *)am + 200, theirs);
	}
	/* Other frames never moved meanwhile. */
	assert_int_equal(sm[3 * PM_FRAME_SIZE + 7], pattern(3, 7));
	check_all(all);

	/* pmd-mediated access from both sides, wherever the frame is. */
	assert_int_equal(pm_container_write(s, ref, 5, 300, "via pmd", 8), 0);
	assert_string_equal((const char *)am + 300, "via pmd");
	assert_int_equal(pm_container_write(a, c, 6, 0, "home write", 11), 0);
	assert_string_equal((const char *)sm + 6 * PM_FRAME_SIZE, "home write");

	assert_int_equal(pm_container_unmap(a, (void *)am, 1), 0);
	assert_int_equal(pm_container_unmap(s, (void *)sm, 16), 0);
	check_all(all);
	pm_disconnect(z);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}

static void copy_deallocate_unshare_and_the_end(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	pm_t *z = test_connect(&node[2]);
	pm_t *all[3] = { a, s, z };
	container_t c = make_container(a), ref = ct_import(a, c, s);
	struct pm_debug_stat st;
	volatile uint8_t *sm;
	void *m;
	char got[32];
	int granted, n = 1;

	/* A copy-on-write frame is copied when it moves: a write through
	 * the task's mapping changes that frame alone. */
	assert_int_equal(pm_container_allocate(a, c, 20, &n, 0), 0);
	assert_int_equal(pm_container_copy(a, c, 1, c, 20, 1, 0, NULL), 0);
	assert_int_equal(pm_container_map(s, ref, 20, 1,
					  CONT_MAP_READ | CONT_MAP_WRITE, &m,
					  &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ | CONT_MAP_WRITE);
	sm = m;
	assert_int_equal(sm[9], pattern(1, 9));
	memcpy((void *)sm, "copy", 5);
	assert_int_equal(pm_container_read(a, c, 1, 0, got, 5), 0);
	assert_int_equal((uint8_t)got[0], pattern(1, 0));
	assert_int_equal(pm_container_read(a, c, 20, 0, got, 5), 0);
	assert_string_equal(got, "copy");
	/* A read-only map gives a read-only mapping. */
	assert_int_equal(pm_container_unmap(s, (void *)sm, 1), 0);
	assert_int_equal(pm_container_map(s, ref, 2, 1, CONT_MAP_READ, &m,
					  &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ);
	assert_int_equal(((uint8_t *)m)[4], pattern(2, 4));
	assert_int_equal(pm_container_unmap(s, m, 1), 0);

	/* A deallocated frame reads as zeros through the mapping. */
	assert_int_equal(pm_container_map(s, ref, 0, 8,
					  CONT_MAP_READ | CONT_MAP_WRITE, &m,
					  NULL), 0);
	sm = m;
	assert_int_equal(sm[3 * PM_FRAME_SIZE + 1], pattern(3, 1));
	assert_int_equal(pm_container_deallocate(a, c, 3, 1), 0);
	assert_int_equal(sm[3 * PM_FRAME_SIZE + 1], 0);
	assert_int_equal(pm_container_read(s, ref, 3, 0, got, 1), ENOENT);
	check_all(all);

	/* Its end leaves the frames on node 2, where the home reaches
	 * them. */
	memcpy((void *)(sm + 4 * PM_FRAME_SIZE), "left behind", 12);
	pm_disconnect(s);
	s = test_connect(&node[1]);
	all[1] = s;
	assert_int_equal(pm_container_read(a, c, 4, 0, got, 12), 0);
	assert_string_equal(got, "left behind");
	check_all(all);

	/* Unshare takes every frame back first: the task's mapping sees
	 * nothing more, the data stays whole. */
	ref = ct_import(a, c, s);
	assert_int_equal(pm_container_map(s, ref, 4, 4,
					  CONT_MAP_READ | CONT_MAP_WRITE, &m,
					  NULL), 0);
	sm = m;
	assert_string_equal((const char *)sm, "left behind");
	memcpy((void *)(sm + PM_FRAME_SIZE), "last word", 10);
	pm_task_t sid;
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_unshare(a, c, sid), 0);
	assert_int_equal(pm_container_read(a, c, 5, 0, got, 10), 0);
	assert_string_equal(got, "last word");
	for (int f = 0; f < 4; f++)
		assert_int_equal(sm[(size_t)f * PM_FRAME_SIZE + 1], 0);
	assert_int_not_equal(pm_container_read(s, ref, 4, 0, got, 1), 0);
	/* Back home: the four it mapped. Still away: node 3's eight and
	 * the four the first task left on node 2 (0, 1, 2 and 20). */
	assert_int_equal(remote_frames(a, c), 12);
	st = test_check(s);
	assert_int_equal(st.frames, 0);
	check_all(all);
	assert_int_equal(pm_container_allocate(a, c, 3, &n, 0), 0);

	assert_int_equal(pm_container_unmap(s, (void *)sm, 4), 0);
	pm_disconnect(z);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}

static void refused_and_lost(void **state)
{
	pm_t *a = test_connect(&node[0]), *s, *nf;
	container_t c = make_container(a), ref;
	volatile uint8_t *sm;
	void *m;
	char got[8];

	/* A task whose mappings cannot follow moved frames may not map
	 * another home's frames (they move). */
	setenv("PM_NO_USERFAULTFD", "1", 1);
	nf = test_connect(&node[1]);
	unsetenv("PM_NO_USERFAULTFD");
	ref = ct_import(a, c, nf);
	assert_int_equal(pm_container_map(nf, ref, 0, 1, CONT_MAP_READ, &m,
					  NULL), EOPNOTSUPP);
	assert_int_equal(pm_container_read(nf, ref, 0, 0, got, 1), 0);
	pm_disconnect(nf);

	/* Node 2 dies with frames 0-3: they are lost, the rest works. */
	s = test_connect(&node[1]);
	ref = ct_import(a, c, s);
	assert_int_equal(pm_container_map(s, ref, 0, 4, CONT_MAP_READ, &m,
					  NULL), 0);
	sm = m;
	assert_int_equal(sm[PM_FRAME_SIZE + 2], pattern(1, 2));
	ct_kill(&node[1]);
	ct_wait_state(&node[0], 2, PM_NODE_DOWN, 15000);
	assert_int_equal(pm_container_read(a, c, 1, 0, got, 1), EIO);
	assert_int_equal(pm_container_read(a, c, 4, 0, got, 1), 0);
	assert_int_equal(pm_container_read(a, c, 9, 0, got, 1), 0);
	assert_int_equal((uint8_t)got[0], pattern(9, 0));
	test_check(a);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
	ct_reap(&node[1]);
}

/* The home dies while the task has its frames mapped on node 2: node 2
 * takes the slots back, the task's mapping reads zeros (its fault asks a
 * dead home: no hang), its handle answers ENODEV, and node 2 serves on
 * with its books balanced. */
static void the_home_dies_under_a_mapping(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	container_t c = make_container(a), ref = ct_import(a, c, s);
	struct pm_debug_stat st;
	volatile uint8_t *sm;
	uint64_t t0;
	void *m;
	char got[4];

	assert_int_equal(pm_container_map(s, ref, 0, 4, CONT_MAP_READ, &m,
					  NULL), 0);
	sm = m;
	assert_int_equal(sm[PM_FRAME_SIZE + 3], pattern(1, 3));
	ct_kill(&node[0]);
	ct_wait_state(&node[1], 1, PM_NODE_DOWN, 15000);
	t0 = ct_now_ms();
	assert_int_equal(sm[PM_FRAME_SIZE + 3], 0);
	assert_true(ct_now_ms() - t0 < 5000);
	assert_int_equal(pm_container_read(s, ref, 1, 0, got, 1), ENODEV);
	st = test_check(s);
	assert_int_equal(st.frames, 0);
	assert_int_equal(pm_container_unmap(s, m, 4), 0);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
	ct_reap(&node[0]);
}

/* A map larger than one forwarded answer (256 frames) and than one
 * tagged segment (512 slots): the library asks again for the rest. */
static void a_large_forwarded_map(void **state)
{
	enum { N = 700 };
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	container_t c, ref;
	uint8_t *sm;
	void *m;
	int n = N;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	for (int f = 0; f < N; f += 7)
		assert_int_equal(pm_container_write(a, c, (frame_t)f, 9, &f,
						    sizeof(f)), 0);
	ref = ct_import(a, c, s);
	assert_int_equal(pm_container_map(s, ref, 0, N, CONT_MAP_READ |
					  CONT_MAP_WRITE, &m, NULL), 0);
	sm = m;
	for (int f = 0; f < N; f += 7) {
		int got;
		memcpy(&got, sm + (size_t)f * PM_FRAME_SIZE + 9, sizeof(got));
		assert_int_equal(got, f);
	}
	assert_int_equal(remote_frames(a, c), N);
	test_check(a);
	test_check(s);
	assert_int_equal(pm_container_unmap(s, m, N), 0);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}

/* A frame moved back and forth more times than a tagged segment has
 * slots: each move retires one, a new segment opens when one is full,
 * and the full one is spent (its memory and descriptor go) once its last
 * frame leaves, while the task's mapping of that last frame, untouched
 * since, still follows it. */
static void more_moves_than_a_segment_has_slots(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	container_t c = make_container(a), ref = ct_import(a, c, s);
	volatile uint8_t *sm, *am, *am1;
	struct pm_debug_stat before, after;
	void *m;

	assert_int_equal(pm_container_map(s, ref, 0, 2, CONT_MAP_READ |
					  CONT_MAP_WRITE, &m, NULL), 0);
	sm = m;
	assert_int_equal(pm_container_map(a, c, 0, 1, CONT_MAP_READ |
					  CONT_MAP_WRITE, &m, NULL), 0);
	am = m;
	for (int i = 0; i < 600; i++) {
		am[8] = (uint8_t)i;          /* home */
		assert_int_equal(sm[8], (uint8_t)i); /* to node 2 */
	}
	assert_int_equal(sm[PM_FRAME_SIZE + 5], pattern(1, 5));
	before = test_check(s);
	/* Frame 1 leaves the first segment, its last: it is spent. */
	assert_int_equal(pm_container_map(a, c, 1, 1, CONT_MAP_READ |
					  CONT_MAP_WRITE, &m, NULL), 0);
	am1 = m;
	am1[5] = 0xee;
	after = test_check(s);
	assert_int_equal(after.segments, before.segments - 1);
	/* The task's old mapping of it follows it still. */
	assert_int_equal(sm[PM_FRAME_SIZE + 5], 0xee);
	assert_int_equal(sm[PM_FRAME_SIZE + 6], pattern(1, 6));
	test_check(a);
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}

/* A thread storing 1, 2, 3... into words 1.. of one mapped frame, in
 * turn, checking each store reads back; it notes the last number each
 * word got. */
#define WORDS (PM_FRAME_SIZE / sizeof(uint64_t))
struct writer {
	pthread_t thread;
	volatile uint64_t *frame;
	bool stop;
	uint64_t last[WORDS];
	uint64_t stores;             /* atomically */
	uint64_t bad_reads;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (uint64_t n = 1; !__atomic_load_n(&w->stop, __ATOMIC_RELAXED); n++) {
		size_t k = 1 + n % (WORDS - 1);
		uint64_t got;

		w->frame[k] = n;
		got = w->frame[k];
		if (got != n) {
			if (!w->bad_reads)
				fprintf(stderr, "word %zu: stored %lu, read "
					"back %lu\n", k, (unsigned long)n,
					(unsigned long)got);
			w->bad_reads++;
		}
		w->last[k] = n;
		__atomic_store_n(&w->stores, n, __ATOMIC_RELEASE);
	}
	return NULL;
}

/*
 * Stores under moves between nodes: threads of a task on node 2 store
 * sequence numbers into frames of a container homed on node 1, mapped
 * through its forwarded handle, while the owner on node 1 stores into
 * word 0 of the same frames through its own mapping, so that every
 * frame goes home and back to node 2 again and again (each side's touch
 * moves it). Node 2 stops its task's stores before it returns a frame:
 * no number is lost on either side, no store misses its read-back.
 */
static void stores_under_moves_between_nodes(void **state)
{
	enum { FRAMES = 2, ROUNDS = 600 };
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	container_t c = make_container(a), ref = ct_import(a, c, s);
	struct writer w[FRAMES];
	volatile uint64_t *am[FRAMES];
	unsigned late;
	uint8_t *sm;
	void *m;

	assert_int_equal(pm_container_map(s, ref, 0, FRAMES, CONT_MAP_READ |
					  CONT_MAP_WRITE, &m, NULL), 0);
	sm = m;
	memset(w, 0, sizeof(w));
	for (int f = 0; f < FRAMES; f++) {
		assert_int_equal(pm_container_map(a, c, (frame_t)f, 1,
						  CONT_MAP_READ | CONT_MAP_WRITE,
						  &m, NULL), 0);
		am[f] = m;
		w[f].frame = (volatile uint64_t *)(sm + (size_t)f *
						   PM_FRAME_SIZE);
		assert_int_equal(pthread_create(&w[f].thread, NULL, writer_main,
						&w[f]), 0);
	}
	for (uint64_t i = 1; i <= ROUNDS; i++) {
		int f = (int)(i % FRAMES);
		uint64_t before = __atomic_load_n(&w[f].stores,
						  __ATOMIC_ACQUIRE);
		struct timespec t0, t;

		am[f][0] = i;                  /* home... */
		assert_int_equal(am[f][0], i);
		/* ...and back to node 2 with the writer's next store. */
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (__atomic_load_n(&w[f].stores, __ATOMIC_ACQUIRE) ==
		       before) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			assert_true(t.tv_sec - t0.tv_sec < 20);
			sched_yield();
		}
	}
	for (int f = 0; f < FRAMES; f++) {
		__atomic_store_n(&w[f].stop, true, __ATOMIC_RELAXED);
		pthread_join(w[f].thread, NULL);
	}
	/* (A stop whose deadline passed lets stores be lost by design: if
	 * the machine stalled that long, the logs say so here.) */
	late = test_log_grep(&node[0], "did not stop") +
	       test_log_grep(&node[1], "did not stop");
	for (int f = 0; f < FRAMES; f++) {
		uint64_t got[WORDS];
		unsigned lost = 0;

		assert_int_equal(pm_container_read(a, c, (frame_t)f, 0, got,
						   sizeof(got)), 0);
		/* The owner's last store to it. */
		assert_int_equal(got[0], ROUNDS - (ROUNDS - f) % FRAMES);
		for (size_t k = 1; k < WORDS; k++)
			if (got[k] != w[f].last[k] && !lost++)
				fprintf(stderr, "frame %d word %zu: %lu, the "
					"last store was %lu\n", f, k,
					(unsigned long)got[k],
					(unsigned long)w[f].last[k]);
		if ((lost || w[f].bad_reads) && late)
			fprintf(stderr, "(%u stops missed their deadline)\n",
				late);
		assert_int_equal(lost, 0);
		assert_int_equal(w[f].bad_reads, 0);
		fprintf(stderr, "frame %d: %lu stores on node 2 while it moved "
			"home and back %d times, none lost\n", f,
			(unsigned long)w[f].stores, ROUNDS / FRAMES);
	}
	check_all((pm_t *[3]){ a, s, NULL });
	pm_disconnect(s);
	pm_disconnect(a);
	ct_stop_nodes(node, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(both_sides_see_each_others_stores,
						setup, teardown),
		cmocka_unit_test_setup_teardown(copy_deallocate_unshare_and_the_end,
						setup, teardown),
		cmocka_unit_test_setup_teardown(refused_and_lost, setup,
						teardown),
		cmocka_unit_test_setup_teardown(the_home_dies_under_a_mapping,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_large_forwarded_map, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			more_moves_than_a_segment_has_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(
			stores_under_moves_between_nodes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
