/*
 * The container interface on one node, through libpmclient against a real
 * pmd: sessions, containers, allocation and its errors, maps, read/write,
 * stats, and cleanup when a task goes away.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define GUARANTEE 1024
#define EXTRA     512

static void session_identity_and_stats(void **state)
{
	pm_t *a = test_connect(&test_pmd), *b = test_connect(&test_pmd);
	struct pm_task_stat st;
	pm_task_t ta, tb;

	assert_int_equal(pm_self(a, &ta), 0);
	assert_int_equal(pm_self(b, &tb), 0);
	assert_true(ta != tb);
	assert_int_equal(ta >> 48, 1); /* node id in the high 16 bits */
	assert_int_equal(pm_task_stat(a, &st), 0);
	assert_int_equal(st.task, ta);
	assert_int_equal(st.guaranteed, GUARANTEE);
	assert_int_equal(st.extra_limit, EXTRA);
	assert_int_equal(st.allocated, 0);
	assert_int_equal(st.pid, (uint32_t)getpid());
	pm_disconnect(a);
	pm_disconnect(b);
}

static void allocate_map_write_read(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	container_t c;
	int count = 8, granted = 0;
	uint8_t *map;
	char buf[PM_FRAME_SIZE * 2];

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 100, &count, 0), 0);
	assert_int_equal(count, 8);

	/* Fresh frames read as zeros. */
	assert_int_equal(pm_container_read(pm, c, 100, 0, buf, sizeof(buf)), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);

	assert_int_equal(pm_container_map(pm, c, 100, 8, CONT_MAP_READ | CONT_MAP_WRITE,
					  (void **)&map, &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ | CONT_MAP_WRITE);
	/* Stores through the mapping are seen by pmd-mediated reads ... */
	memset(map, 0xab, PM_FRAME_SIZE);
	strcpy((char *)map + 3 * PM_FRAME_SIZE + 10, "hello, frame 103");
	assert_int_equal(pm_container_read(pm, c, 100, 3 * PM_FRAME_SIZE + 10,
					   buf, 17), 0);
	assert_string_equal(buf, "hello, frame 103");
	assert_int_equal(pm_container_read(pm, c, 100, 0, buf, 1), 0);
	assert_int_equal((uint8_t)buf[0], 0xab);
	/* ... and writes across a frame boundary show in the mapping. */
	memset(buf, 0x5c, 100);
	assert_int_equal(pm_container_write(pm, c, 105, PM_FRAME_SIZE - 50, buf, 100), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(map[6 * PM_FRAME_SIZE - 50 + i], 0x5c);
	assert_int_equal(map[6 * PM_FRAME_SIZE + 50], 0);
	assert_int_equal(pm_container_unmap(pm, map, 8), 0);

	/* A read-only map. */
	assert_int_equal(pm_container_map(pm, c, 103, 1, CONT_MAP_READ,
					  (void **)&map, &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ);
	assert_string_equal((char *)map + 10, "hello, frame 103");
	assert_int_equal(pm_container_unmap(pm, map, 1), 0);

	assert_int_equal(pm_container_destroy(pm, c), 0);
	pm_disconnect(pm);
}

static void large_transfers_and_maps(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	enum { FRAMES = 1000 }; /* > one segment, > one map chunk of runs */
	size_t len = (size_t)FRAMES * PM_FRAME_SIZE;
	uint8_t *src = malloc(len), *dst = malloc(len), *map;
	container_t c;
	int count = FRAMES;

	assert_non_null(src);
	assert_non_null(dst);
	for (size_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 7 + i / 4096);
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), 0);
	assert_int_equal(pm_container_write(pm, c, 0, 0, src, len), 0);
	assert_int_equal(pm_container_read(pm, c, 0, 0, dst, len), 0);
	assert_memory_equal(src, dst, len);
	assert_int_equal(pm_container_map(pm, c, 0, FRAMES, CONT_MAP_READ,
					  (void **)&map, NULL), 0);
	assert_memory_equal(src, map, len);
	assert_int_equal(pm_container_unmap(pm, map, FRAMES), 0);
	/* An unaligned read through the middle. */
	assert_int_equal(pm_container_read(pm, c, 10, 12345, dst, 70000), 0);
	assert_memory_equal(src + 10 * PM_FRAME_SIZE + 12345, dst, 70000);
	free(src);
	free(dst);
	pm_disconnect(pm); /* container reclaimed with the task */
}

static void allocate_stop_rule(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	struct pm_container_stat cs;
	container_t c;
	int count;

	assert_int_equal(pm_container_create(pm, &c), 0);
	count = 1;
	assert_int_equal(pm_container_allocate(pm, c, 5, &count, 0), 0);

	/* Frames 0..9 with 5 in use: EEXIST stops at 5; without PARTIAL
	 * nothing stays and *count is 0. */
	count = 10;
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), EEXIST);
	assert_int_equal(count, 0);
	assert_int_equal(pm_container_stat(pm, c, &cs), 0);
	assert_int_equal(cs.frames, 1);
	/* With PARTIAL the frames before the stop stay. */
	count = 10;
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, CONT_ALLOC_PARTIAL),
			 EEXIST);
	assert_int_equal(count, 5);
	assert_int_equal(pm_container_stat(pm, c, &cs), 0);
	assert_int_equal(cs.frames, 6);
	/* The stop at the very first frame allocates nothing either way. */
	count = 3;
	assert_int_equal(pm_container_allocate(pm, c, 5, &count, CONT_ALLOC_PARTIAL),
			 EEXIST);
	assert_int_equal(count, 0);

	/* SQUASH replaces frames in use; contents are lost (zero). */
	assert_int_equal(pm_container_write(pm, c, 5, 0, "x", 1), 0);
	count = 10;
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, CONT_ALLOC_SQUASH), 0);
	assert_int_equal(count, 10);
	char ch = 1;
	assert_int_equal(pm_container_read(pm, c, 5, 0, &ch, 1), 0);
	assert_int_equal(ch, 0);
	assert_int_equal(pm_container_stat(pm, c, &cs), 0);
	assert_int_equal(cs.frames, 10);
	test_check(pm);
	pm_disconnect(pm);
}

/* A frame alone in its part of the frame table, squashed: the pmd must
 * not prune the table under its own feet. */
static void squash_of_a_lone_frame(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	struct pm_container_stat cs;
	container_t c;
	int count = 1;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 1000, &count, 0), 0);
	assert_int_equal(pm_container_write(pm, c, 1000, 0, "old", 3), 0);
	count = 1;
	assert_int_equal(pm_container_allocate(pm, c, 1000, &count,
					       CONT_ALLOC_SQUASH), 0);
	assert_int_equal(count, 1);
	char b = 1;
	assert_int_equal(pm_container_read(pm, c, 1000, 0, &b, 1), 0);
	assert_int_equal(b, 0);
	assert_int_equal(pm_container_stat(pm, c, &cs), 0);
	assert_int_equal(cs.frames, 1);
	test_check(pm);
	pm_disconnect(pm);
}

static void guarantee_and_extra_limits(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	struct pm_task_stat ts;
	container_t c;
	int count;

	assert_int_equal(pm_container_create(pm, &c), 0);
	/* Without EXTRA: the guarantee and no more. */
	count = GUARANTEE + 1;
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), ENOMEM);
	assert_int_equal(count, 0);
	count = GUARANTEE + 1;
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, CONT_ALLOC_PARTIAL),
			 ENOMEM);
	assert_int_equal(count, GUARANTEE);
	/* With EXTRA: up to the extra limit. */
	count = EXTRA + 10;
	assert_int_equal(pm_container_allocate(pm, c, GUARANTEE, &count,
			 CONT_ALLOC_EXTRA | CONT_ALLOC_PARTIAL), ENOMEM);
	assert_int_equal(count, EXTRA);
	assert_int_equal(pm_task_stat(pm, &ts), 0);
	assert_int_equal(ts.allocated, GUARANTEE + EXTRA);
	assert_int_equal(ts.extra_allocated, EXTRA);
	test_check(pm);

	/* Deallocating gives the charge back. */
	assert_int_equal(pm_container_deallocate(pm, c, GUARANTEE, EXTRA), 0);
	assert_int_equal(pm_container_deallocate(pm, c, 0, 24), 0);
	assert_int_equal(pm_task_stat(pm, &ts), 0);
	assert_int_equal(ts.allocated, GUARANTEE - 24);
	assert_int_equal(ts.extra_allocated, 0);
	test_check(pm);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	assert_int_equal(pm_task_stat(pm, &ts), 0);
	assert_int_equal(ts.allocated, 0);
	pm_disconnect(pm);
}

static void deallocate_missing_frame_changes_nothing(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	struct pm_container_stat cs;
	container_t c;
	int count = 4;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), 0);
	assert_int_equal(pm_container_deallocate(pm, c, 2, 3), ENOENT);
	assert_int_equal(pm_container_stat(pm, c, &cs), 0);
	assert_int_equal(cs.frames, 4);
	assert_int_equal(pm_container_deallocate(pm, c, 0, 0), EINVAL);
	assert_int_equal(pm_container_deallocate(pm, c, 0, 4), 0);
	assert_int_equal(pm_container_stat(pm, c, &cs), 0);
	assert_int_equal(cs.frames, 0);
	pm_disconnect(pm);
}

static void missing_frames_are_enoent(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	container_t c;
	int count = 2;
	char buf[16] = "data";
	void *map = NULL;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), 0);
	assert_int_equal(pm_container_read(pm, c, 2, 0, buf, 1), ENOENT);
	/* A transfer running off the last frame touches a missing one. */
	assert_int_equal(pm_container_write(pm, c, 1, PM_FRAME_SIZE - 2, buf, 4), ENOENT);
	/* ... and changed nothing. */
	assert_int_equal(pm_container_read(pm, c, 1, PM_FRAME_SIZE - 2, buf, 2), 0);
	assert_int_equal(buf[0], 0);
	assert_int_equal(pm_container_map(pm, c, 1, 2, CONT_MAP_READ, &map, NULL), ENOENT);
	assert_null(map);
	pm_disconnect(pm);
}

static void unknown_handles_are_ebadf(void **state)
{
	pm_t *a = test_connect(&test_pmd), *b = test_connect(&test_pmd);
	struct pm_container_stat cs;
	container_t c, bogus[] = { 0, 1, 2, 0xdeadbeef, UINT64_MAX };
	int count = 1;
	char buf[4];
	void *map;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &count, 0), 0);
	/* Another session's handle is not a handle of this one. */
	count = 1;
	assert_int_equal(pm_container_allocate(b, c, 1, &count, 0), EBADF);
	assert_int_equal(pm_container_read(b, c, 0, 0, buf, 1), EBADF);
	assert_int_equal(pm_container_map(b, c, 0, 1, CONT_MAP_READ, &map, NULL), EBADF);
	assert_int_equal(pm_container_destroy(b, c), EBADF);
	for (size_t i = 0; i < sizeof(bogus) / sizeof(bogus[0]); i++) {
		container_t h = bogus[i];
		count = 1;
		assert_int_equal(pm_container_allocate(a, h, 0, &count, 0), EBADF);
		assert_int_equal(pm_container_deallocate(a, h, 0, 1), EBADF);
		assert_int_equal(pm_container_read(a, h, 0, 0, buf, 1), EBADF);
		assert_int_equal(pm_container_write(a, h, 0, 0, buf, 1), EBADF);
		assert_int_equal(pm_container_map(a, h, 0, 1, CONT_MAP_READ, &map, NULL), EBADF);
		assert_int_equal(pm_container_stat(a, h, &cs), EBADF);
		assert_int_equal(pm_container_destroy(a, h), EBADF);
	}
	/* A destroyed container's handle is dead. */
	assert_int_equal(pm_container_destroy(a, c), 0);
	assert_int_equal(pm_container_stat(a, c, &cs), EBADF);
	assert_int_equal(pm_container_destroy(a, c), EBADF);
	pm_disconnect(a);
	pm_disconnect(b);
}

static void bad_arguments_are_einval(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	container_t c;
	int count = 1;
	char buf[4];
	void *map;

	assert_int_equal(pm_container_create(pm, &c), 0);
	count = 0;
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), EINVAL);
	count = 1;
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0x100), EINVAL);
	assert_int_equal(count, 0);
	count = 2;
	assert_int_equal(pm_container_allocate(pm, c, UINT64_MAX, &count, 0), EINVAL);
	count = 1;
	assert_int_equal(pm_container_allocate(pm, c, UINT64_MAX, &count, 0), 0);
	assert_int_equal(pm_container_read(pm, c, UINT64_MAX, PM_FRAME_SIZE, buf, 1),
			 EINVAL);
	assert_int_equal(pm_container_map(pm, c, UINT64_MAX, 1, 0, &map, NULL), EINVAL);
	assert_int_equal(pm_container_map(pm, c, UINT64_MAX, 1, 0x40 | CONT_MAP_READ,
					  &map, NULL), EINVAL);
	assert_int_equal(pm_container_map(pm, c, UINT64_MAX, 0, CONT_MAP_READ,
					  &map, NULL), EINVAL);
	assert_int_equal(pm_container_unmap(pm, (void *)1, 1), EINVAL);
	pm_disconnect(pm);
}

static void fresh_frames_never_show_old_data(void **state)
{
	pm_t *a = test_connect(&test_pmd), *b = test_connect(&test_pmd);
	container_t ca, cb;
	int count = 64;
	uint8_t buf[PM_FRAME_SIZE];

	assert_int_equal(pm_container_create(a, &ca), 0);
	assert_int_equal(pm_container_allocate(a, ca, 0, &count, 0), 0);
	memset(buf, 0xee, sizeof(buf));
	for (frame_t f = 0; f < 64; f++)
		assert_int_equal(pm_container_write(a, ca, f, 0, buf, sizeof(buf)), 0);
	assert_int_equal(pm_container_deallocate(a, ca, 0, 64), 0);
	/* Same task, frames reallocated into the same slots. */
	count = 64;
	assert_int_equal(pm_container_allocate(a, ca, 0, &count, 0), 0);
	for (frame_t f = 0; f < 64; f++) {
		assert_int_equal(pm_container_read(a, ca, f, 0, buf, sizeof(buf)), 0);
		for (size_t i = 0; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 0);
	}
	memset(buf, 0xdd, sizeof(buf));
	assert_int_equal(pm_container_write(a, ca, 0, 0, buf, sizeof(buf)), 0);
	pm_disconnect(a);
	/* Another task after the first one died. */
	assert_int_equal(pm_container_create(b, &cb), 0);
	count = 64;
	assert_int_equal(pm_container_allocate(b, cb, 0, &count, 0), 0);
	for (frame_t f = 0; f < 64; f++) {
		assert_int_equal(pm_container_read(b, cb, f, 0, buf, sizeof(buf)), 0);
		for (size_t i = 0; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 0);
	}
	pm_disconnect(b);
}

static void nodes_reports_this_node(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	struct pm_node_info nodes[4];
	int n = 4;

	assert_int_equal(pm_nodes(pm, nodes, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(nodes[0].id, 1);
	assert_int_equal(nodes[0].state, PM_NODE_UP);
	assert_int_equal(nodes[0].frames_total, (64u << 20) / PM_FRAME_SIZE);
	assert_true(nodes[0].frames_free <= nodes[0].frames_total);
	n = 0;
	assert_int_equal(pm_nodes(pm, NULL, &n), 0);
	assert_int_equal(n, 1);
	pm_disconnect(pm);
}

static uint64_t nodes_free(pm_t *pm)
{
	struct pm_node_info node;
	int n = 1;

	assert_int_equal(pm_nodes(pm, &node, &n), 0);
	return node.frames_free;
}

static uint64_t budget_free(pm_t *pm)
{
	struct pm_debug_stat st;

	assert_int_equal(pm_debug_stat(pm, &st), 0);
	return st.frames_free;
}

/* pm_nodes says the frames no physical page takes: a frame takes one once
 * written or mapped, and gives it back when deallocated; the budget
 * (pm_debug_stat) counts frames from their allocation. */
static void nodes_free_frames_are_physical(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	uint64_t phys0 = nodes_free(pm), budget0 = budget_free(pm);
	static uint8_t buf[100 * PM_FRAME_SIZE];
	container_t c;
	int n = 256;
	int granted;
	void *m;

	assert_true(phys0 >= budget0);
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	assert_int_equal(n, 256);
	assert_int_equal(budget_free(pm), budget0 - 256);
	assert_int_equal(nodes_free(pm), phys0);

	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(pm_container_write(pm, c, 0, 0, buf, sizeof(buf)), 0);
	assert_int_equal(nodes_free(pm), phys0 - 100);
	assert_int_equal(test_metric(pm, "pmd_frames{state=\"physical_free\"}"),
			 phys0 - 100);
	/* A mapping may touch any of its frames: they are made physical
	 * before the task is given them. */
	assert_int_equal(pm_container_map(pm, c, 200, 10, CONT_MAP_READ, &m,
					  &granted), 0);
	assert_int_equal(nodes_free(pm), phys0 - 110);
	assert_int_equal(pm_container_unmap(pm, m, 10), 0);
	assert_int_equal(budget_free(pm), budget0 - 256);

	assert_int_equal(pm_container_deallocate(pm, c, 0, 256), 0);
	assert_int_equal(budget_free(pm), budget0);
	assert_int_equal(nodes_free(pm), phys0);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	pm_disconnect(pm);
}

struct thread_arg {
	pm_t *pm;
	container_t c;
	frame_t base;
};

static void *hammer(void *p)
{
	struct thread_arg *a = p;
	uint8_t buf[256], back[256];

	for (int i = 0; i < 200; i++) {
		memset(buf, (int)(a->base + (frame_t)i), sizeof(buf));
		if (pm_container_write(a->pm, a->c, a->base + (frame_t)(i % 8), 0,
				       buf, sizeof(buf)) ||
		    pm_container_read(a->pm, a->c, a->base + (frame_t)(i % 8), 0,
				      back, sizeof(back)) ||
		    memcmp(buf, back, sizeof(buf)))
			return (void *)1;
	}
	return NULL;
}

static void one_session_many_threads(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	pthread_t th[4];
	struct thread_arg args[4];
	container_t c;
	int count = 32;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), 0);
	for (int i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){ pm, c, (frame_t)i * 8 };
		assert_int_equal(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		assert_null(ret);
	}
	pm_disconnect(pm);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, test_clean_teardown)
	const struct CMUnitTest tests[] = {
		T(session_identity_and_stats),
		T(allocate_map_write_read),
		T(large_transfers_and_maps),
		T(allocate_stop_rule),
		T(squash_of_a_lone_frame),
		T(guarantee_and_extra_limits),
		T(deallocate_missing_frame_changes_nothing),
		T(missing_frames_are_enoent),
		T(unknown_handles_are_ebadf),
		T(bad_arguments_are_einval),
		T(fresh_frames_never_show_old_data),
		T(nodes_reports_this_node),
		T(nodes_free_frames_are_physical),
		T(one_session_many_threads),
	};
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--guarantee", "1024", "--extra", "512", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
