/*
 * Mappings that follow their frames: a frame the pmd moves (here through
 * pm_debug_move, as paging and migration will) faults back in through the
 * library's userfaultfd, and the old address shows the frame, not a zero
 * or stale page; writes through it reach the frame. A task without
 * userfaultfd keeps its mapped frames in place. The fault session is the
 * task's own and serves nothing else.
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
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "pm_proto.h"

static pm_t *follower_of(pm_t *pm)
{
	return test_follower(pm);
}

static pm_t *follower(void)
{
	return test_follower(test_connect(&test_pmd));
}

static void tag(pm_t *pm, container_t c, frame_t f, const char *text)
{
	char buf[32] = { 0 };

	snprintf(buf, sizeof(buf), "%s", text);
	assert_int_equal(pm_container_write(pm, c, f, 0, buf, sizeof(buf)), 0);
}

static void moved_frames_fault_back_in_place(void **state)
{
	pm_t *pm = follower();
	container_t c;
	int n = 8;
	char *run, *one, buf[32];

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	for (frame_t f = 0; f < 8; f++) {
		snprintf(buf, sizeof(buf), "frame %u", (unsigned)f);
		tag(pm, c, f, buf);
	}
	/* Frame 7 moved first: the eight are not one run of slots, so
	 * their map is a range of its own (runs mapped into it); frame 3's
	 * alone is a pointer into the segment. Both follow it. */
	assert_int_equal(pm_debug_move(pm, c, 7), 0);
	assert_int_equal(pm_container_map(pm, c, 0, 8, CONT_MAP_READ | CONT_MAP_WRITE,
					  (void **)&run, NULL), 0);
	assert_int_equal(pm_container_map(pm, c, 3, 1, CONT_MAP_READ | CONT_MAP_WRITE,
					  (void **)&one, NULL), 0);
	assert_ptr_not_equal(one, run + 3 * PM_FRAME_SIZE);
	assert_string_equal(one, "frame 3");

	for (int round = 0; round < 3; round++) {
		assert_int_equal(pm_debug_move(pm, c, 3), 0);
		/* Both old addresses show frame 3 (not zeros)... */
		assert_string_equal(run + 3 * PM_FRAME_SIZE,
				    round ? "written by the pmd" : "frame 3");
		assert_string_equal(one, round ? "written by the pmd" : "frame 3");
		/* ...and a store through one reaches the frame itself. */
		strcpy(one + 100, "stored through the old pointer");
		assert_int_equal(pm_container_read(pm, c, 3, 100, buf, 31), 0);
		assert_string_equal(buf, "stored through the old pointer");
		assert_string_equal(run + 3 * PM_FRAME_SIZE + 100,
				    "stored through the old pointer");
		tag(pm, c, 3, "written by the pmd");
		assert_string_equal(one, "written by the pmd");
	}
	/* The neighbours never moved and never changed. */
	assert_string_equal(run + 2 * PM_FRAME_SIZE, "frame 2");
	assert_string_equal(run + 4 * PM_FRAME_SIZE, "frame 4");
	test_check(pm);
	assert_int_equal(pm_container_unmap(pm, run, 8), 0);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	test_check(pm);
	pm_disconnect(pm);
}

/* The same with the fast path off: every fault asks the pmd (RESOLVE),
 * and the pmd sends the new segments' descriptors to the fault session. */
static int slow_session(void **state)
{
	setenv("PM_NO_FASTPATH", "1", 1);
	*state = test_connect(&test_pmd);
	unsetenv("PM_NO_FASTPATH");
	return 0;
}

static void moved_frames_fault_back_through_the_pmd(void **state)
{
	pm_t *pm = follower_of(*state);
	container_t c;
	int n = 600;
	char *p;

	/* 600 frames span two segments; moving frame 0 a few hundred times
	 * walks it through retired slots into segments this task was never
	 * given by a map. */
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	tag(pm, c, 0, "far away");
	assert_int_equal(pm_container_map(pm, c, 0, 1, CONT_MAP_READ, (void **)&p, NULL), 0);
	for (int i = 0; i < 700; i++) {
		assert_int_equal(pm_debug_move(pm, c, 0), 0);
		if (i % 50 == 0)
			assert_string_equal(p, "far away");
	}
	assert_string_equal(p, "far away");
	/* A map of it now names a segment only the fault session was
	 * given: the library takes it from there. */
	char *q;
	assert_int_equal(pm_container_map(pm, c, 0, 2, CONT_MAP_READ,
					  (void **)&q, NULL), 0);
	assert_string_equal(q, "far away");
	assert_int_equal(pm_container_unmap(pm, q, 2), 0);
	test_check(pm);
	pm_disconnect(pm);
	*state = NULL;
}

struct reader {
	char *base;
	frame_t first;
	int bad;
};

static void *read_moved(void *p)
{
	struct reader *r = p;
	char want[32];

	for (frame_t f = r->first; f < r->first + 8; f++) {
		snprintf(want, sizeof(want), "frame %u", (unsigned)f);
		if (strcmp(r->base + f * PM_FRAME_SIZE, want))
			r->bad++;
	}
	return NULL;
}

static void threads_fault_on_their_own_frames(void **state)
{
	pm_t *pm = follower();
	container_t c;
	int n = 32;
	char *base, buf[32];
	pthread_t th[4];
	struct reader rd[4];

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	for (frame_t f = 0; f < 32; f++) {
		snprintf(buf, sizeof(buf), "frame %u", (unsigned)f);
		tag(pm, c, f, buf);
	}
	assert_int_equal(pm_container_map(pm, c, 0, 32, CONT_MAP_READ,
					  (void **)&base, NULL), 0);
	for (frame_t f = 0; f < 32; f++)
		assert_int_equal(pm_debug_move(pm, c, f), 0);
	for (int i = 0; i < 4; i++) {
		rd[i] = (struct reader){ .base = base, .first = (frame_t)i * 8 };
		assert_int_equal(pthread_create(&th[i], NULL, read_moved, &rd[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(rd[i].bad, 0);
	}
	test_check(pm);
	pm_disconnect(pm);
}

static void frames_gone_read_as_zeros(void **state)
{
	pm_t *pm = follower();
	container_t c;
	int n = 2;
	char *p0, *p1;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	tag(pm, c, 0, "zero");
	tag(pm, c, 1, "one");
	assert_int_equal(pm_container_map(pm, c, 0, 1, CONT_MAP_READ,
					  (void **)&p0, NULL), 0);
	assert_int_equal(pm_container_map(pm, c, 1, 1, CONT_MAP_READ,
					  (void **)&p1, NULL), 0);
	assert_string_equal(p0, "zero");
	/* Moved, then deallocated; and deallocated without a move. */
	assert_int_equal(pm_debug_move(pm, c, 0), 0);
	assert_int_equal(pm_container_deallocate(pm, c, 0, 2), 0);
	assert_int_equal(p0[0], 0);
	assert_int_equal(p1[0], 0);
	test_check(pm);
	pm_disconnect(pm);
}

static void without_userfaultfd_mapped_frames_stay(void **state)
{
	pm_t *a = follower(), *b, *s;
	container_t c, d, weak, ref;
	pm_cap_token_t tok;
	pm_task_t sid;
	int n = 2;
	char *p;

	setenv("PM_NO_USERFAULTFD", "1", 1);
	b = test_connect(&test_pmd);
	s = test_connect(&test_pmd);
	unsetenv("PM_NO_USERFAULTFD");
	assert_int_equal(pm_debug_follows(b), 0);

	/* b cannot follow: what it has mapped stays where it is. */
	assert_int_equal(pm_container_create(b, &c), 0);
	assert_int_equal(pm_container_allocate(b, c, 0, &n, 0), 0);
	assert_int_equal(pm_debug_move(b, c, 0), 0); /* not mapped yet */
	tag(b, c, 0, "stays");
	assert_int_equal(pm_container_map(b, c, 0, 1, CONT_MAP_READ, (void **)&p, NULL), 0);
	assert_int_equal(pm_debug_move(b, c, 0), EBUSY);
	assert_int_equal(pm_debug_move(b, c, 1), EBUSY); /* same segment */
	assert_string_equal(p, "stays");

	/* a follows, but a server that does not maps a's container. */
	n = 1;
	assert_int_equal(pm_container_create(a, &d), 0);
	assert_int_equal(pm_container_allocate(a, d, 0, &n, 0), 0);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, d, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(pm_debug_move(a, d, 0), 0);
	assert_int_equal(pm_container_map(s, ref, 0, 1, CONT_MAP_READ, (void **)&p, NULL), 0);
	assert_int_equal(pm_debug_move(a, d, 0), EBUSY);
	pm_disconnect(s);
	/* It went away (once the pmd has seen the hang-up). */
	error_t err = EBUSY;
	for (int i = 0; i < 200 && err == EBUSY; i++) {
		err = pm_debug_move(a, d, 0);
		if (err == EBUSY)
			usleep(10000);
	}
	assert_int_equal(err, 0);
	test_check(a);
	pm_disconnect(b);
	pm_disconnect(a);
}

static void what_may_not_move(void **state)
{
	pm_t *a = test_connect(&test_pmd), *s = test_connect(&test_pmd);
	container_t c, weak, ref;
	pm_cap_token_t tok;
	pm_task_t sid;
	int n = 2;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	assert_int_equal(pm_debug_move(a, c, 5), ENOENT);
	assert_int_equal(pm_debug_move(a, c + 1000, 0), EBADF);
	/* Copy-on-write frames move when their copy breaks, not before. */
	assert_int_equal(pm_container_copy(a, c, 0, c, 1, 1, 0, NULL), 0);
	assert_int_equal(pm_debug_move(a, c, 1), EBUSY);
	tag(a, c, 1, "broken");
	assert_int_equal(pm_debug_move(a, c, 1), 0);
	/* Weak references may not; and nothing moves under a lock. */
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(pm_debug_move(s, ref, 0), EPERM);
	assert_int_equal(pm_container_lock(s, ref, 1000), 0);
	assert_int_equal(pm_debug_move(a, c, 0), EBUSY);
	assert_int_equal(pm_container_unlock(s, ref), 0);
	assert_int_equal(pm_debug_move(a, c, 0), 0);
	test_check(a);
	pm_disconnect(s);
	pm_disconnect(a);
}

/* ---- the fault session, on raw sockets ---- */

static int raw_connect(void)
{
	return test_raw_connect(&test_pmd);
}

static void the_fault_session_is_the_tasks_own(void **state)
{
	struct pm_hello_req hello = { .version = PM_PROTO_VERSION };
	struct pm_hello_rep hrep;
	struct pm_attach_key_rep key;
	struct pm_attach_req att;
	struct pm_resolve_req res = { .segment = 1, .slot = 0 };
	struct pm_task_stat_rep ts;
	int main_fd = raw_connect(), f1 = raw_connect(), f2 = raw_connect();
	char c;

	assert_int_equal(test_raw_call(main_fd, PM_MSG_HELLO, &hello, sizeof(hello),
				  &hrep, sizeof(hrep)), PM_ST_OK);
	/* No key asked for yet: nothing to attach to. */
	att = (struct pm_attach_req){ .task = hrep.task };
	assert_int_equal(test_raw_call(f1, PM_MSG_ATTACH, &att, sizeof(att), NULL, 0),
			 PM_ST_NOT_YOURS);
	assert_int_equal(test_raw_call(main_fd, PM_MSG_ATTACH_KEY, NULL, 0, &key,
				  sizeof(key)), PM_ST_OK);
	/* A wrong key, an unknown task. */
	memcpy(att.key, key.key, sizeof(att.key));
	att.key[5] ^= 1;
	assert_int_equal(test_raw_call(f1, PM_MSG_ATTACH, &att, sizeof(att), NULL, 0),
			 PM_ST_NOT_YOURS);
	att.key[5] ^= 1;
	att.task = hrep.task + 1000;
	assert_int_equal(test_raw_call(f1, PM_MSG_ATTACH, &att, sizeof(att), NULL, 0),
			 PM_ST_NO_TASK);
	att.task = hrep.task;
	assert_int_equal(test_raw_call(f1, PM_MSG_ATTACH, &att, sizeof(att), NULL, 0),
			 PM_ST_OK);
	/* The key was good once; one fault session a task. */
	assert_int_equal(test_raw_call(f2, PM_MSG_ATTACH, &att, sizeof(att), NULL, 0),
			 PM_ST_NOT_YOURS);
	assert_int_equal(test_raw_call(main_fd, PM_MSG_ATTACH_KEY, NULL, 0, &key,
				  sizeof(key)), PM_ST_BUSY);
	/* It serves RESOLVE and nothing else; a segment it never got is
	 * not its to follow. */
	assert_int_equal(test_raw_call(f1, PM_MSG_TASK_STAT, NULL, 0, &ts, sizeof(ts)),
			 PM_ST_BAD_MESSAGE);
	assert_int_equal(test_raw_call(f1, PM_MSG_RESOLVE, &res, sizeof(res), NULL, 0),
			 PM_ST_NOT_YOURS);
	/* The task goes: its fault session is hung up. */
	close(main_fd);
	assert_int_equal(recv(f1, &c, 1, 0), 0);
	close(f1);
	close(f2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(moved_frames_fault_back_in_place),
		cmocka_unit_test_setup(moved_frames_fault_back_through_the_pmd,
				       slow_session),
		cmocka_unit_test(threads_fault_on_their_own_frames),
		cmocka_unit_test(frames_gone_read_as_zeros),
		cmocka_unit_test(without_userfaultfd_mapped_frames_stay),
		cmocka_unit_test(what_may_not_move),
		cmocka_unit_test(the_fault_session_is_the_tasks_own),
	};
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--guarantee", "4096", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
