/*
 * Unit tests of the local container operations (pmd/core), with no
 * daemon: the allocation's stop rule, squash, deallocation that changes
 * nothing on a missing frame, copy-on-write copies and what breaks them,
 * locks, unshare's move of what a revoked task could see, and the bounds
 * on a task's metadata. The accounting check holds after every test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "container.h"
#include "copy.h"
#include "core_fixture.h"
#include "frame.h"
#include "lock.h"
#include "map.h"
#include "move.h"
#include "share.h"
#include "task.h"
#include "view.h"

static struct pmd_core core;

static int setup(void **state)
{
	cf_core_init(&core);
	return 0;
}

static int teardown(void **state)
{
	cf_core_fini(&core);
	return 0;
}

static uint64_t frames_of(struct pmd_task *t, container_t h)
{
	return pmd_container_lookup(t, h)->frames.count;
}

static error_t allocate(struct pmd_task *t, container_t h, frame_t start,
			uint32_t count, uint32_t flags, uint32_t *done,
			struct pmd_culprit *why)
{
	*why = (struct pmd_culprit){ 0 };
	return pmd_container_allocate(&core, t, h, start, count, flags, NULL,
				      0, done, why);
}

static void allocation_stops_at_the_first_frame_that_cannot_be(void **state)
{
	struct pmd_task *t = cf_task(&core);
	container_t h = cf_container(&core, t, 4);
	struct pmd_culprit why;
	uint32_t done = 99;

	/* A frame in use stops it; without PARTIAL nothing stays. */
	assert_int_equal(allocate(t, h, 2, 4, 0, &done, &why), EEXIST);
	assert_int_equal(done, 0);
	assert_int_equal(why.frame, 2);
	assert_int_equal(frames_of(t, h), 4);
	/* With PARTIAL the frames before the stop stay. */
	assert_int_equal(allocate(t, h, 6, 1, 0, &done, &why), 0);
	assert_int_equal(allocate(t, h, 4, 4, CONT_ALLOC_PARTIAL, &done, &why),
			 EEXIST);
	assert_int_equal(done, 2);
	assert_int_equal(why.frame, 6);
	assert_int_equal(frames_of(t, h), 7);
	/* The task's guarantee (CF_GUARANTEE) stops it; extra frames go
	 * beyond only when asked for, up to the extra limit. */
	assert_int_equal(allocate(t, h, 100, CF_GUARANTEE, 0, &done, &why),
			 ENOMEM);
	assert_int_equal(done, 0);
	assert_int_equal(why.frame, 100 + CF_GUARANTEE - 7);
	assert_int_equal(allocate(t, h, 100, CF_GUARANTEE, CONT_ALLOC_EXTRA,
				  &done, &why), 0);
	assert_int_equal(done, CF_GUARANTEE);
	assert_int_equal(t->charge.extra_allocated, 7);
	assert_int_equal(allocate(t, h, 1000, CF_EXTRA,
				  CONT_ALLOC_EXTRA | CONT_ALLOC_PARTIAL, &done,
				  &why), ENOMEM);
	assert_int_equal(done, CF_EXTRA - 7);
	/* Bad arguments stop it before any frame, naming the argument. */
	assert_int_equal(allocate(t, h, 0, 1, 0x80, &done, &why), EINVAL);
	assert_int_equal(why.arg, PMD_ARG_ALLOC_FLAGS);
	assert_int_equal(allocate(t, h, UINT64_MAX, 2, 0, &done, &why), EINVAL);
	assert_int_equal(why.arg, PMD_ARG_ALLOC_COUNT);
	assert_int_equal(allocate(t, h + 1, 0, 1, 0, &done, &why), EBADF);
	assert_int_equal(why.arg, PMD_ARG_HANDLE);
	cf_check(&core);
}

static void a_weak_reference_cannot_allocate(void **state)
{
	struct pmd_task *owner = cf_task(&core), *server = cf_task(&core);
	container_t h = cf_container(&core, owner, 1);
	container_t ref = cf_share(&core, owner, h, server);
	struct pmd_culprit why;
	uint32_t done;

	assert_int_equal(allocate(server, ref, 1, 1, 0, &done, &why), EPERM);
	assert_int_equal(pmd_container_deallocate(&core, server, ref, 0, 1,
						  &why), EPERM);
	assert_int_equal(pmd_container_destroy(&core, server, ref, &why),
			 EPERM);
	assert_int_equal(frames_of(owner, h), 1);
}

static void squash_replaces_a_frame_and_its_charge(void **state)
{
	struct pmd_task *t = cf_task(&core), *server = cf_task(&core);
	container_t h = cf_container(&core, t, 2);
	container_t ref = cf_share(&core, t, h, server);
	struct pmd_culprit why;
	uint32_t done;

	cf_fill(&core, t, h, 1, 0xaa);
	assert_int_equal(allocate(t, h, 1, 2, CONT_ALLOC_SQUASH, &done, &why),
			 0);
	assert_int_equal(done, 2);
	assert_int_equal(cf_byte(&core, t, h, 1), 0); /* its contents went */
	assert_int_equal(t->charge.allocated, 3);
	/* Not under a server's lock. */
	assert_int_equal(pmd_container_lock(&core, server, ref, 500, &why), 0);
	assert_int_equal(allocate(t, h, 0, 1, CONT_ALLOC_SQUASH, &done, &why),
			 EBUSY);
	assert_int_equal(done, 0);
	assert_int_equal(pmd_container_unlock(&core, server, ref, &why), 0);
	cf_check(&core);
}

static void deallocating_a_missing_frame_changes_nothing(void **state)
{
	struct pmd_task *t = cf_task(&core);
	container_t h = cf_container(&core, t, 4);
	struct pmd_culprit why = { 0 };

	assert_int_equal(pmd_container_deallocate(&core, t, h, 2, 3, &why),
			 ENOENT);
	assert_int_equal(why.frame, 4);
	assert_int_equal(frames_of(t, h), 4);
	assert_int_equal(pmd_container_deallocate(&core, t, h, 2, 2, &why), 0);
	assert_int_equal(frames_of(t, h), 2);
	assert_int_equal(t->charge.allocated, 2);
	cf_check(&core);
}

static uint64_t cow_frames(struct pmd_task *t, container_t h)
{
	struct pm_stat_rep st;
	struct pmd_culprit why;

	assert_int_equal(pmd_container_stat(&core, t, h, &st, &why), 0);
	return st.cow;
}

static error_t copy(struct pmd_task *t, container_t src, frame_t s,
		    container_t dst, frame_t d, uint32_t n,
		    struct pmd_culprit *why)
{
	struct pmd_copy cp;
	error_t err = pmd_copy_decode(&core, t, src, s, dst, d, n, 0, &cp, why);

	if (err)
		return err;
	assert_false(cp.remote);
	return pmd_copy_invoke(&core, &cp);
}

static void a_write_breaks_a_copy_and_shows_in_one_side_only(void **state)
{
	struct pmd_task *t = cf_task(&core);
	container_t h = cf_container(&core, t, 4);
	struct pmd_culprit why;

	cf_fill(&core, t, h, 0, 0x11);
	cf_fill(&core, t, h, 1, 0x22);
	/* Within one container no task has mapped: the slot is shared. */
	assert_int_equal(copy(t, h, 0, h, 2, 2, &why), 0);
	assert_int_equal(cow_frames(t, h), 4);
	assert_int_equal(cf_byte(&core, t, h, 3), 0x22);
	/* A write to either side breaks its copy; the other keeps its bytes. */
	cf_fill(&core, t, h, 2, 0x33);
	assert_int_equal(cf_byte(&core, t, h, 0), 0x11);
	assert_int_equal(cf_byte(&core, t, h, 2), 0x33);
	assert_int_equal(cow_frames(t, h), 2);
	cf_fill(&core, t, h, 1, 0x44);
	assert_int_equal(cf_byte(&core, t, h, 3), 0x22);
	assert_int_equal(cow_frames(t, h), 0);
	cf_check(&core);
}

static void copies_stop_as_the_api_says(void **state)
{
	struct pmd_task *t = cf_task(&core);
	container_t a = cf_container(&core, t, 4), b = cf_container(&core, t, 2);
	struct pmd_culprit why = { 0 };

	cf_fill(&core, t, a, 0, 0x55);
	/* Across containers the copy is logical too: both sides share
	 * the slot until one is written. */
	assert_int_equal(copy(t, a, 0, b, 0, 1, &why), 0);
	assert_int_equal(cow_frames(t, a), 1);
	assert_int_equal(cow_frames(t, b), 1);
	assert_int_equal(cf_byte(&core, t, b, 0), 0x55);
	cf_fill(&core, t, b, 0, 0x66);
	assert_int_equal(cf_byte(&core, t, a, 0), 0x55);
	assert_int_equal(cf_byte(&core, t, b, 0), 0x66);
	assert_int_equal(cow_frames(t, a) + cow_frames(t, b), 0);
	/* A missing destination frame stops it (ENOMEM), a missing source
	 * frame too (ENOENT); the frames before are copied. */
	assert_int_equal(copy(t, a, 0, b, 1, 2, &why), ENOMEM);
	assert_int_equal(why.frame, 2);
	assert_int_equal(cf_byte(&core, t, b, 1), 0x55);
	assert_int_equal(copy(t, b, 1, a, 2, 2, &why), ENOENT);
	assert_int_equal(why.frame, 2);
	/* Overlapping ranges in one container copy like memmove. */
	for (frame_t f = 0; f < 4; f++)
		cf_fill(&core, t, a, f, (uint8_t)(f + 1));
	assert_int_equal(copy(t, a, 0, a, 1, 3, &why), 0);
	for (frame_t f = 1; f < 4; f++)
		assert_int_equal(cf_byte(&core, t, a, f), f);
	cf_check(&core);
}

static error_t map(struct pmd_task *t, container_t h, frame_t start,
		   uint32_t n, uint32_t flags, struct pmd_map_out *out)
{
	struct pmd_culprit why;
	struct pmd_map m;
	error_t err = pmd_map_decode(&core, t, h, start, n, flags, &m, &why);

	if (err)
		return err;
	assert_false(m.remote);
	return pmd_map_invoke(&core, t, &m, out);
}

static void maps_never_write_a_copy(void **state)
{
	static struct pmd_map_out out;
	struct pmd_task *t = cf_task(&core);
	container_t h = cf_container(&core, t, 2);
	struct pmd_culprit why;

	assert_int_equal(copy(t, h, 0, h, 1, 1, &why), 0);
	assert_int_equal(cow_frames(t, h), 2);
	/* WRITE without FORCE_WRITE: read-only, the copy stays. */
	assert_int_equal(map(t, h, 0, 2, CONT_MAP_READ | CONT_MAP_WRITE, &out),
			 0);
	assert_int_equal(out.granted, CONT_MAP_READ);
	assert_int_equal(out.done, 2);
	assert_int_equal(cow_frames(t, h), 2);
	/* FORCE_WRITE breaks it first. */
	assert_int_equal(map(t, h, 0, 2, CONT_MAP_READ | CONT_MAP_WRITE |
			     CONT_MAP_FORCE_WRITE, &out), 0);
	assert_int_equal(out.granted, CONT_MAP_READ | CONT_MAP_WRITE);
	assert_int_equal(cow_frames(t, h), 0);
	/* Mapped or not, a copy shares the slot (the holders' mappings
	 * were told to break it before any store). */
	assert_int_equal(copy(t, h, 0, h, 1, 1, &why), 0);
	assert_int_equal(cow_frames(t, h), 2);
	cf_check(&core);
}

/* Whether task t holds a descriptor of a segment of c. */
static bool holds_one_of(const struct pmd_task *t, struct pmd_container *c)
{
	for (struct pmd_list *p = c->segments.next; p != &c->segments;
	     p = p->next)
		if (pmd_task_has_segment(t, pmd_container_of(
			p, struct pmd_segment, link)->id))
			return true;
	return false;
}

/* An owner's container of three frames (frame f holding b), shared
 * with a server that maps all three. */
struct shared3 {
	struct pmd_task *owner, *server;
	container_t h, ref;          /* the owner's handle, the server's */
	struct pmd_container *c;
};

static struct shared3 shared3_mapped(frame_t f, uint8_t b)
{
	static struct pmd_map_out out;
	struct shared3 x;

	x.owner = cf_task(&core);
	x.server = cf_task(&core);
	x.h = cf_container(&core, x.owner, 3);
	x.ref = cf_share(&core, x.owner, x.h, x.server);
	x.c = pmd_container_lookup(x.owner, x.h);
	cf_fill(&core, x.owner, x.h, f, b);
	assert_int_equal(map(x.server, x.ref, 0, 3, CONT_MAP_READ, &out), 0);
	return x;
}

static void unshare_moves_what_the_revoked_task_could_see(void **state)
{
	static struct pmd_map_out out;
	struct shared3 x = shared3_mapped(2, 0x77);
	struct pmd_task *owner = x.owner, *server = x.server;
	container_t h = x.h, ref = x.ref;
	struct pmd_container *c = x.c;
	struct pmd_culprit why;
	uint64_t view;

	assert_true(holds_one_of(server, c));
	view = c->view->id;
	/* Not while that server holds its lock. */
	assert_int_equal(pmd_container_lock(&core, server, ref, 500, &why), 0);
	assert_int_equal(pmd_container_unshare(&core, owner, h, server->id,
					       &why), EBUSY);
	assert_int_equal(pmd_container_unlock(&core, server, ref, &why), 0);
	/* Then: revoked, and the frames live in segments it never had,
	 * with their contents, under a view it does not hold. */
	assert_int_equal(pmd_container_unshare(&core, owner, h, server->id,
					       &why), 0);
	assert_int_equal(map(server, ref, 0, 1, CONT_MAP_READ, &out), EKEYREVOKED);
	assert_false(holds_one_of(server, c));
	assert_true(c->view->id != view);
	assert_int_equal(cf_byte(&core, owner, h, 2), 0x77);
	assert_int_equal(frames_of(owner, h), 3);
	cf_check(&core);
}


/* A frame moved out of a slot the server could see leaves that slot
 * retired (a forwarding record for the server's fault). Unshare gives
 * the frames fresh segments where that slot is free again: the
 * container counts it among its free slots, so that emptying the
 * container and trimming its segments keeps the count true, and the
 * next frames find the slots the count promises. */
static void unshare_frees_the_slots_a_move_retired(void **state)
{
	struct shared3 x = shared3_mapped(1, 0x5a);
	struct pmd_culprit why;
	struct pmd_move mv;
	uint32_t done;

	assert_int_equal(pmd_move_decode(&core, x.owner, x.h, 1, &mv, &why), 0);
	pmd_move_invoke(&core, &mv);
	assert_true(pmd_container_slots_ok(x.c));
	assert_int_equal(pmd_container_unshare(&core, x.owner, x.h,
					       x.server->id, &why), 0);
	assert_true(pmd_container_slots_ok(x.c));
	assert_int_equal(cf_byte(&core, x.owner, x.h, 1), 0x5a);
	cf_check(&core);
	assert_int_equal(pmd_container_deallocate(&core, x.owner, x.h, 0, 3,
						  &why), 0);
	assert_true(pmd_container_slots_ok(x.c));
	assert_int_equal(allocate(x.owner, x.h, 0, 3, 0, &done, &why), 0);
	assert_int_equal(done, 3);
	assert_true(pmd_container_slots_ok(x.c));
	cf_check(&core);
}


/* A task's tables are bounded: handles (containers, imports), and the
 * weak references its containers have. One more is ENOMEM and changes
 * nothing; freeing one makes room again. */
static void a_tasks_tables_are_bounded(void **state)
{
	struct pmd_task *t = cf_task(&core), *other = cf_task(&core);
	struct pmd_culprit why = { 0 };
	container_t h, first = 0, weak;
	struct pm_token tok;
	uint32_t n = 0;

	while (pmd_container_create(&core, t, &h) == 0) {
		if (!first)
			first = h;
		n++;
		assert_true(n <= PMD_TASK_HANDLES_MAX);
	}
	assert_int_equal(n, PMD_TASK_HANDLES_MAX);
	assert_int_equal(pmd_container_create(&core, t, &h), ENOMEM);
	assert_int_equal(t->ncontainers, PMD_TASK_HANDLES_MAX);
	cf_check(&core);
	/* An import needs a handle too. */
	h = cf_container(&core, other, 1);
	assert_int_equal(pmd_container_share(&core, other, h, t->id, &weak,
					     &why), 0);
	assert_int_equal(pmd_cap_export(&core, other, weak, &tok, &why), 0);
	assert_int_equal(pmd_cap_import(&core, t, &tok, &weak, &why), ENOMEM);
	assert_int_equal(pmd_container_destroy(&core, t, first, &why), 0);
	assert_int_equal(pmd_cap_import(&core, t, &tok, &weak, &why), 0);
	assert_int_equal(pmd_container_create(&core, t, &h), ENOMEM);
	cf_check(&core);

	/* Weak references of its containers: bounded apart (they may live
	 * in other tasks' tables). */
	n = 0;
	h = cf_container(&core, other, 0);
	for (;;) {
		error_t err = pmd_container_share(&core, other, h, t->id,
						  &weak, &why);
		if (err) {
			assert_int_equal(err, ENOMEM);
			break;
		}
		n++;
		assert_true(n <= PMD_TASK_SHARES_MAX);
	}
	assert_int_equal(n + 1, PMD_TASK_SHARES_MAX); /* one share above */
	assert_int_equal(other->nshares, PMD_TASK_SHARES_MAX);
	cf_check(&core);
	/* Unshare ends them all: room again. */
	assert_int_equal(pmd_container_unshare(&core, other, h, t->id, &why),
			 0);
	assert_int_equal(other->nshares, 1);
	assert_int_equal(pmd_container_share(&core, other, h, t->id, &weak,
					     &why), 0);
	cf_check(&core);
}

/* A user's sessions are bounded (the node's user_sessions, or its [user]
 * section's): one more is EUSERS and changes nothing; other users are
 * served; one that leaves makes room. */
static void a_users_sessions_are_bounded(void **state)
{
	struct pmd_task *t[3], *other, *extra;
	struct pmd_core_config cfg = core.cfg;

	cf_core_fini(&core);
	cfg.user_sessions = 3;
	cfg.users[0] = (struct pmd_user_limits){ .uid = 7,
		.guarantee = PMD_LIMIT_DEFAULT, .extra = PMD_LIMIT_DEFAULT,
		.sessions = 1 };
	cfg.nusers = 1;
	pmd_core_init(&core, &cfg);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pmd_task_create(&core, 1000, 1000, 1, &t[i]),
				 0);
	assert_int_equal(pmd_task_create(&core, 1000, 1000, 1, &extra),
			 EUSERS);
	assert_int_equal(core.ntasks, 3);
	assert_int_equal(pmd_task_create(&core, 1001, 1001, 2, &other), 0);
	assert_int_equal(pmd_task_create(&core, 7, 7, 3, &extra), 0);
	assert_int_equal(pmd_task_create(&core, 7, 7, 3, &extra), EUSERS);
	pmd_task_destroy(&core, t[1]);
	assert_int_equal(pmd_task_create(&core, 1000, 1000, 1, &t[1]), 0);
	cf_check(&core);
}

/* What a user's tasks hold together is bounded too (user_handles, or its
 * [user] section's handles): a user cannot spread past it over many
 * sessions; others are not touched; a destroy makes room. */
static void a_users_handles_are_bounded(void **state)
{
	struct pmd_task *a, *b, *other;
	struct pmd_core_config cfg = core.cfg;
	container_t h, first = 0;
	int n = 0;

	cf_core_fini(&core);
	cfg.user_handles = 100;
	pmd_core_init(&core, &cfg);
	assert_int_equal(pmd_task_create(&core, 9, 9, 1, &a), 0);
	assert_int_equal(pmd_task_create(&core, 9, 9, 2, &b), 0);
	assert_int_equal(pmd_task_create(&core, 10, 10, 3, &other), 0);
	for (int i = 0; i < 60; i++)
		assert_int_equal(pmd_container_create(&core, a, &h), 0);
	while (pmd_container_create(&core, b, &h) == 0) {
		if (!first)
			first = h;
		if (++n > 100)
			break;
	}
	assert_int_equal(n, 40);
	assert_int_equal(pmd_container_create(&core, a, &h), ENOMEM);
	assert_int_equal(pmd_container_create(&core, other, &h), 0);
	cf_check(&core);
	struct pmd_culprit why = { 0 };
	assert_int_equal(pmd_container_destroy(&core, b, first, &why), 0);
	assert_int_equal(pmd_container_create(&core, a, &h), 0);
	pmd_task_destroy(&core, b);
	for (int i = 0; i < 39; i++)
		assert_int_equal(pmd_container_create(&core, a, &h), 0);
	assert_int_equal(pmd_container_create(&core, a, &h), ENOMEM);
	cf_check(&core);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			allocation_stops_at_the_first_frame_that_cannot_be,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_weak_reference_cannot_allocate, setup, teardown),
		cmocka_unit_test_setup_teardown(
			squash_replaces_a_frame_and_its_charge, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			deallocating_a_missing_frame_changes_nothing, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_write_breaks_a_copy_and_shows_in_one_side_only,
			setup, teardown),
		cmocka_unit_test_setup_teardown(copies_stop_as_the_api_says,
						setup, teardown),
		cmocka_unit_test_setup_teardown(maps_never_write_a_copy, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			unshare_moves_what_the_revoked_task_could_see, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			unshare_frees_the_slots_a_move_retired, setup, teardown),
		cmocka_unit_test_setup_teardown(a_tasks_tables_are_bounded,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_users_sessions_are_bounded,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_users_handles_are_bounded,
						setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
