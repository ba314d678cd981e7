/*
 * Memory pressure across nodes (docs/design.md, "Memory pressure"): node
 * 1 holds 1024 frames, node 2 lends. Task A on node 1 fills it; task B
 * connects there and allocates guaranteed frames: the pmd pages A's
 * coldest frames out to node 2 (frames no task maps first) instead of
 * dropping anything; A reads every byte back (by RDMA), maps a paged-out
 * frame home (the pmd makes room by paging another out), and stores
 * that a thread makes into mapped frames while they go out and come
 * back are all kept. The books of both nodes balance after each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_util.h"
#include "walk.h"

#define G 256u                    /* each task's guarantee on node 1 */
#define E 768u                    /* A's extra frames: the rest of node 1 */

static char dir[] = "/tmp/pmd-pressure-XXXXXX";
static char ini[300], key[300];
static struct pmd_proc node[2];

static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/pmd-pressure-XXXXXX");
	ct_cluster_files(dir, ini, sizeof(ini), key, sizeof(key), 2);
	pmd_proc_start(&node[0], (const char *const[]){ "--node-id", "1",
		"--cluster", ini, "--memory", "4M", "--guarantee", "256",
		"--extra", "4096", "--reclaim-grace-ms", "100", NULL });
	pmd_proc_start(&node[1], (const char *const[]){ "--node-id", "2",
		"--cluster", ini, "--memory", "64M", NULL });
	ct_wait_state(&node[0], 2, PM_NODE_UP, 6000);
	ct_wait_state(&node[1], 1, PM_NODE_UP, 6000);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	ct_cluster_down(node, 2, dir, ini, key);
	return 0;
}

/* A's frames 0..G+E-1 (G guaranteed, then E extra), each with its
 * pattern: node 1 is full. */
static container_t fill(pm_t *a)
{
	struct pm_container_stat st;
	container_t c = test_fill(a, G, E);

	assert_int_equal(pm_container_stat(a, c, &st), 0);
	assert_int_equal(st.remote, 0); /* all of it here */
	return c;
}

static void intact(pm_t *a, container_t c, uint32_t round)
{
	test_intact(a, c, 0, G + E, round);
}

#define PAGED "pmd_reclaim_frames_total{kind=\"paged\"}"
#define TAKEN "pmd_reclaim_frames_total{kind=\"taken\"}"

static void cold_frames_go_to_another_node(void **state)
{
	static uint8_t want[PM_FRAME_SIZE];
	pm_t *a = test_follower(test_connect(&node[0])), *b;
	struct pm_container_stat st;
	struct pm_task_stat ts;
	container_t c, cb;
	uint8_t *m, *m2;
	int n = 200, granted;

	(void)state;
	c = fill(a);
	/* Frames 0..9 are mapped (and so hot, whatever their stamps). */
	assert_int_equal(pm_container_map(a, c, 0, 10, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m,
					  &granted), 0);
	b = test_connect(&node[0]);
	assert_int_equal(pm_task_stat(b, &ts), 0);
	assert_int_equal(ts.guaranteed, G);
	assert_int_equal(pm_container_create(b, &cb), 0);
	assert_int_equal(pm_container_allocate(b, cb, 0, &n, 0), 0);
	assert_int_equal(n, 200);
	/* Nothing was dropped: A's coldest unmapped frames went to node 2
	 * (the oldest written first: 10 and on). */
	assert_int_equal(test_metric(a, TAKEN), 0);
	assert_true(test_metric(a, PAGED) >= 200);
	assert_int_equal(pm_container_stat(a, c, &st), 0);
	fprintf(stderr, "A: %lu frames, %lu here, %lu on node 2\n",
		(unsigned long)st.frames, (unsigned long)st.resident,
		(unsigned long)st.remote);
	assert_int_equal(st.frames, G + E);
	assert_true(st.remote >= 200);
	assert_int_equal(pm_task_stat(a, &ts), 0);
	assert_int_equal(ts.allocated, G + E);
	intact(a, c, 0);
	/* Its mapping is where it was, stores through it reach the frame. */
	test_pattern(3, 0, want);
	assert_memory_equal(m + 3 * PM_FRAME_SIZE, want, 64);
	/* A paged-out frame mapped: it comes home (another one goes). */
	assert_int_equal(pm_container_map(a, c, 100, 1, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m2,
					  &granted), 0);
	test_pattern(100, 0, want);
	assert_memory_equal(m2, want, PM_FRAME_SIZE);
	m2[8] = 0x77;
	assert_int_equal(pm_container_read(a, c, 100, 8, want, 1), 0);
	assert_int_equal(want[0], 0x77);
	test_pattern(100, 0, want);
	want[8] = 0x77;
	assert_int_equal(pm_container_write(a, c, 100, 0, want, PM_FRAME_SIZE),
			 0);
	/* A paged-out frame copied onto another (the copy brings it home,
	 * making room again); the copy checked, then both put back. */
	assert_int_equal(pm_container_copy(a, c, 150, c, 0, 1, 0, NULL), 0);
	test_pattern(150, 0, want);
	assert_int_equal(pm_container_read(a, c, 0, 0, want + 1, 1), 0);
	assert_int_equal(want[1], want[0]);
	test_pattern(0, 0, want);
	assert_int_equal(pm_container_write(a, c, 0, 0, want, PM_FRAME_SIZE),
			 0);
	test_pattern(100, 0, want);
	assert_int_equal(pm_container_write(a, c, 100, 0, want, PM_FRAME_SIZE),
			 0);
	intact(a, c, 0);
	test_check(a);
	test_check(b);
	pm_disconnect(b);
	pm_disconnect(a);
	ct_check_loans(node, 2);
}

/* The node holding paged-out frames dies: those frames answer EIO, every
 * other is intact, and A's deallocation of them gives nothing back to
 * nobody. */
static void a_lender_dies_with_paged_frames(void **state)
{
	static uint8_t want[PM_FRAME_SIZE], got[PM_FRAME_SIZE];
	pm_t *a = test_connect(&node[0]), *b;
	struct pm_container_stat st;
	unsigned lost = 0, kept = 0;
	container_t c, cb;
	int n = 100;

	(void)state;
	c = fill(a);
	b = test_connect(&node[0]);
	assert_int_equal(pm_container_create(b, &cb), 0);
	assert_int_equal(pm_container_allocate(b, cb, 0, &n, 0), 0);
	assert_int_equal(pm_container_stat(a, c, &st), 0);
	assert_true(st.remote >= 100);
	ct_kill(&node[1]);
	ct_wait_state(&node[0], 2, PM_NODE_DOWN, 6000);
	for (frame_t f = 0; f < G + E; f++) {
		error_t err = pm_container_read(a, c, f, 0, got, sizeof(got));

		if (err == EIO) {
			lost++;
			continue;
		}
		assert_int_equal(err, 0);
		test_pattern(f, 0, want);
		assert_memory_equal(got, want, sizeof(got));
		kept++;
	}
	fprintf(stderr, "node 2 died: %u frames lost with it, %u intact\n",
		lost, kept);
	assert_int_equal(lost, st.remote);
	assert_int_equal(pm_container_deallocate(a, c, 0, G + E), 0);
	test_check(a);
	pm_disconnect(b);
	pm_disconnect(a);
	ct_check_loans(node, 1);
}

/* ---- stores while frames go out and come back ---- */

static void stores_survive_paging(void **state)
{
	pm_t *a = test_follower(test_connect(&node[0])), *b;
	struct test_storer *w;
	container_t c, cb;
	void *m;
	int granted, n;

	(void)state;
	c = fill(a);
	/* Every frame of A mapped: whatever goes out, mappers stop first. */
	assert_int_equal(pm_container_map(a, c, 0, G + E, CONT_MAP_READ |
					  CONT_MAP_WRITE, &m, &granted), 0);
	w = test_storer_start(m, 32);
	b = test_connect(&node[0]);
	assert_int_equal(pm_container_create(b, &cb), 0);
	for (int i = 0; i < 4; i++) { /* four waves of pressure */
		n = 50;
		assert_int_equal(pm_container_allocate(b, cb, (frame_t)i * 50,
						       &n, 0), 0);
	}
	test_storer_end(w, a, c);
	assert_true(test_metric(a, PAGED) >= 200);
	test_check(a);
	pm_disconnect(b);
	pm_disconnect(a);
	ct_check_loans(node, 2);
}

/* ---- the model's walk at 3x overcommit ---- */

struct churn {
	pthread_t thread;
	pm_t *pm;
	container_t c;
	uint32_t frames;
	bool stop;
	unsigned maps;
};

/* The filler maps its frames in turn: those on node 2 come home, and as
 * many go out, at random (the walk's too). */
static void *churn_main(void *arg)
{
	struct churn *ch = arg;

	for (uint32_t k = 0; !__atomic_load_n(&ch->stop, __ATOMIC_RELAXED);
	     k++) {
		frame_t f = (frame_t)((k * 37u) % ch->frames);
		int granted;
		void *m;

		assert_int_equal(pm_container_map(ch->pm, ch->c, f, 1,
						  CONT_MAP_READ, &m, &granted),
				 0);
		assert_int_equal(pm_container_unmap(ch->pm, m, 1), 0);
		ch->maps++;
	}
	return NULL;
}

/* Node 1 holds 1024 frames; a task holds three times that many (most
 * spilled to node 2 when allocated) and maps them in turn, so that they
 * come home and others go out, at random (the walk's too, however hot):
 * the owner and server of the walk map, write, copy, move, lock and
 * unshare meanwhile, and every mapping and the pmd agree with the model
 * after every step. */
static void the_model_walk_under_pressure(void **state)
{
	pm_t *f = test_connect(&node[0]), *o, *s;
	struct churn ch = { .pm = f, .frames = 3 * (G + E) };
	int n = G;

	(void)state;
	assert_int_equal(pm_container_create(f, &ch.c), 0);
	assert_int_equal(pm_container_allocate(f, ch.c, 0, &n, 0), 0);
	n = (int)(ch.frames - G);
	assert_int_equal(pm_container_allocate(f, ch.c, G, &n,
					       CONT_ALLOC_EXTRA), 0);
	o = test_follower(test_connect(&node[0]));
	s = test_follower(test_connect(&node[0]));
	assert_int_equal(pthread_create(&ch.thread, NULL, churn_main, &ch), 0);
	test_walk_paged(true);
	test_walk(o, s, 150, 0);
	test_walk_paged(false);
	__atomic_store_n(&ch.stop, true, __ATOMIC_RELAXED);
	pthread_join(ch.thread, NULL);
	fprintf(stderr, "%u maps of the filler, %lu frames paged out\n",
		ch.maps, (unsigned long)test_metric(o, PAGED));
	assert_true(test_metric(o, PAGED) > 0);
	test_check(o);
	pm_disconnect(s);
	pm_disconnect(o);
	pm_disconnect(f);
	ct_check_loans(node, 2);
}

static int setup_random(void **state)
{
	int err;

	setenv("PMD_PAGEOUT_POLICY", "random", 1);
	err = setup(state);
	unsetenv("PMD_PAGEOUT_POLICY");
	return err;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(cold_frames_go_to_another_node,
						setup, teardown),
		cmocka_unit_test_setup_teardown(stores_survive_paging, setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_lender_dies_with_paged_frames,
						setup, teardown),
		cmocka_unit_test_setup_teardown(the_model_walk_under_pressure,
						setup_random, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
