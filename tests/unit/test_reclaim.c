/*
 * The core's half of the extra-frame protocol (reclaim.h): admission
 * counts extra frames as reclaimable, an allocation says what reclaim
 * could give it, the victims' order, which frames the pmd takes, and
 * what a frame taken answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "borrowed.h"
#include "container.h"
#include "copy.h"
#include "core_fixture.h"
#include "frame.h"
#include "io.h"
#include "lock.h"
#include "move.h"
#include "reclaim.h"

/* n extra frames of a new container of t, from frame 0 (t's guarantee
 * must be used up: allocations take guaranteed frames first). */
static container_t extras(struct pmd_core *core, struct pmd_task *t,
			  uint32_t n)
{
	struct pmd_culprit why;
	container_t h;
	uint32_t done;

	assert_int_equal(pmd_container_create(core, t, &h), 0);
	assert_int_equal(pmd_container_allocate(core, t, h, 0, n,
						CONT_ALLOC_EXTRA, NULL, 0,
						&done, &why), 0);
	return h;
}

/* The error a read of frame f of h answers. */
static error_t read_err(struct pmd_core *core, struct pmd_task *t,
			container_t h, frame_t f)
{
	struct pmd_culprit why;
	struct pmd_io io;

	return pmd_io_decode(core, t, h, false, f, 0, 8, &io, &why);
}

static void a_guarantee_fits_a_node_full_of_extra_frames(void **state)
{
	struct pmd_core core;
	struct pmd_task *t[8], *late;
	struct pmd_culprit why;
	struct pmd_alloc a;
	container_t h;

	(void)state;
	cf_core_init(&core);
	/* 8 tasks of 256 guaranteed and 256 extra frames fill 4096. */
	for (int i = 0; i < 8; i++) {
		t[i] = cf_task(&core);
		cf_container(&core, t[i], CF_GUARANTEE);
		extras(&core, t[i], CF_EXTRA);
	}
	assert_int_equal(pmd_budget_room(&core.budget), 0);
	assert_int_equal(pmd_budget_unreserved(&core.budget), 0);
	late = cf_task(&core);
	assert_int_equal(late->charge.guaranteed, CF_GUARANTEE);
	/* Its allocation stops at once: all of it is what reclaim gives;
	 * an extra allocation of it gets nothing to reclaim. */
	assert_int_equal(pmd_container_create(&core, late, &h), 0);
	assert_int_equal(pmd_alloc_decode(&core, late, h, 0, 100, 0,
					  PMD_ALLOC_HERE, NULL, 0, &a, &why),
			 0);
	assert_int_equal(a.stop, ENOMEM);
	assert_int_equal(a.n, 0);
	assert_int_equal(a.reclaim, 100);
	assert_int_equal(pmd_alloc_decode(&core, late, h, 0, 300, 0,
					  PMD_ALLOC_HERE, NULL, 0, &a, &why),
			 0);
	assert_int_equal(a.reclaim, CF_GUARANTEE); /* its quota ends there */
	assert_int_equal(pmd_alloc_decode(&core, late, h, 0, 10,
					  CONT_ALLOC_EXTRA, PMD_ALLOC_HERE,
					  NULL, 0, &a, &why), 0);
	assert_int_equal(a.stop, ENOMEM);
	/* Taken back, 100 frames fit. */
	assert_int_equal(pmd_reclaim_take(&core, t[0], 100, NULL, NULL), 100);
	assert_int_equal(pmd_alloc_decode(&core, late, h, 0, 100, 0,
					  PMD_ALLOC_HERE, NULL, 0, &a, &why),
			 0);
	assert_int_equal(a.stop, 0);
	assert_int_equal(a.reclaim, 0);
	cf_check(&core);
	cf_core_fini(&core);
}

static void victims_come_largest_excess_first(void **state)
{
	struct pmd_core core;
	struct pmd_task *a, *b, *c, *d, *v[4];

	(void)state;
	cf_core_init(&core);
	a = cf_task(&core);
	b = cf_task(&core);
	c = cf_task(&core);
	d = cf_task(&core);
	cf_container(&core, a, CF_GUARANTEE);
	cf_container(&core, b, CF_GUARANTEE);
	cf_container(&core, c, CF_GUARANTEE);
	extras(&core, a, 100);
	extras(&core, b, 200);
	extras(&core, c, 100);
	cf_container(&core, d, 10); /* guaranteed only: no victim */
	assert_int_equal(pmd_reclaim_victims(&core, v, 4), 3);
	assert_ptr_equal(v[0], b);
	assert_ptr_equal(v[1], a); /* the older of two equals */
	assert_ptr_equal(v[2], c);
	assert_int_equal(pmd_reclaim_victims(&core, v, 2), 2);
	assert_ptr_equal(v[0], b);
	assert_ptr_equal(v[1], a);
	cf_core_fini(&core);
}

static bool all_busy(void *arg, const struct pmd_container *c)
{
	(void)c;
	return *(bool *)arg;
}

static void the_rule_of_what_is_taken(void **state)
{
	struct pmd_core core;
	struct pmd_task *t, *s;
	struct pmd_culprit why;
	struct pmd_copy cp;
	container_t g, old, shared, locked, ref;
	bool busy = true;

	(void)state;
	cf_core_init(&core);
	t = cf_task(&core);
	s = cf_task(&core);
	g = cf_container(&core, t, CF_GUARANTEE); /* guaranteed */
	old = extras(&core, t, 8);
	shared = extras(&core, t, 4);
	locked = extras(&core, t, 4);             /* the newest */
	for (frame_t f = 0; f < 8; f++)
		cf_fill(&core, t, old, f, (uint8_t)(0x10 + f));
	/* Frames 0 and 1 of shared share slots with g's 0 and 1. */
	assert_int_equal(pmd_copy_decode(&core, t, g, 0, shared, 0, 2, 0, &cp,
					 &why), 0);
	assert_int_equal(pmd_copy_invoke(&core, &cp), 0);
	ref = cf_share(&core, t, locked, s);
	assert_int_equal(pmd_container_lock(&core, s, ref, 1000, &why), 0);
	/* Busy containers: nothing. */
	assert_int_equal(pmd_reclaim_take(&core, t, 100, all_busy, &busy), 0);
	/* The newest first: locked (skipped), shared (2 and 3; 0 and 1
	 * share their slots), then old in frame order; never g. */
	assert_int_equal(pmd_reclaim_take(&core, t, 5, NULL, NULL), 5);
	assert_int_equal(read_err(&core, t, shared, 0), 0);
	assert_int_equal(read_err(&core, t, shared, 1), 0);
	assert_int_equal(read_err(&core, t, shared, 2), ESTALE);
	assert_int_equal(read_err(&core, t, shared, 3), ESTALE);
	assert_int_equal(read_err(&core, t, old, 0), ESTALE);
	assert_int_equal(read_err(&core, t, old, 2), ESTALE);
	assert_int_equal(read_err(&core, t, old, 3), 0);
	assert_int_equal(cf_byte(&core, t, old, 3), 0x13);
	assert_int_equal(t->charge.extra_here, 8 + 4 + 4 - 5);
	cf_check(&core);
	/* All that may be taken: old's 5 more; the locked and the shared
	 * ones stay. */
	assert_int_equal(pmd_reclaim_take(&core, t, 100, NULL, NULL), 5);
	assert_int_equal(t->charge.extra_here, 6);
	assert_int_equal(t->charge.allocated - t->charge.extra_allocated,
			 CF_GUARANTEE);
	for (frame_t f = 0; f < 4; f++)
		assert_int_equal(read_err(&core, t, locked, f), EBUSY);
	assert_int_equal(pmd_container_unlock(&core, s, ref, &why), 0);
	for (frame_t f = 0; f < 4; f++)
		assert_int_equal(read_err(&core, t, locked, f), 0);
	cf_check(&core);
	cf_core_fini(&core);
}

static void a_frame_taken_answers_estale_until_forgotten(void **state)
{
	struct pmd_core core;
	struct pmd_task *t;
	struct pmd_culprit why;
	struct pmd_copy cp;
	container_t h, other;
	uint32_t done;

	(void)state;
	cf_core_init(&core);
	t = cf_task(&core);
	other = cf_container(&core, t, CF_GUARANTEE);
	h = extras(&core, t, 4);
	assert_int_equal(pmd_reclaim_take(&core, t, 2, NULL, NULL), 2);
	assert_true(pmd_frame_gone(pmd_container_lookup(t, h), 0));
	assert_int_equal(read_err(&core, t, h, 1), ESTALE);
	assert_int_equal(read_err(&core, t, h, 9), ENOENT);
	/* A copy from or into it. */
	assert_int_equal(pmd_copy_decode(&core, t, h, 0, other, 0, 1, 0, &cp,
					 &why), 0);
	assert_int_equal(cp.stop, ESTALE);
	assert_int_equal(pmd_copy_decode(&core, t, other, 0, h, 1, 1, 0, &cp,
					 &why), 0);
	assert_int_equal(cp.stop, ESTALE);
	/* Deallocated with a live one: both go; then ENOENT. */
	assert_int_equal(pmd_container_deallocate(&core, t, h, 1, 2, &why), 0);
	assert_int_equal(read_err(&core, t, h, 1), ENOENT);
	assert_int_equal(read_err(&core, t, h, 2), ENOENT);
	/* Allocated again: a frame like any other. */
	assert_int_equal(pmd_container_allocate(&core, t, h, 0, 1,
						CONT_ALLOC_EXTRA, NULL, 0,
						&done, &why), 0);
	assert_int_equal(read_err(&core, t, h, 0), 0);
	assert_false(pmd_frame_gone(pmd_container_lookup(t, h), 0));
	cf_check(&core);
	cf_core_fini(&core);
}

/* ---- paging out ---- */

static bool none_busy(void *arg, const struct pmd_container *c)
{
	(void)arg;
	(void)c;
	return false;
}

/* A core with a task and a container of 16 frames (*h), each frame f
 * holding f + 1, used in the order 15, 14, ..., 0: frame 15 is the
 * coldest. */
static struct pmd_container *sixteen_by_age(struct pmd_core *core,
					    struct pmd_task **t, container_t *h)
{
	cf_core_init(core);
	*t = cf_task(core);
	*h = cf_container(core, *t, 16);
	for (int f = 15; f >= 0; f--)
		for (int k = 0; k < 64; k++) /* (64 uses: one tick) */
			cf_fill(core, *t, *h, (frame_t)f, (uint8_t)(f + 1));
	return pmd_container_lookup(*t, *h);
}

static void the_coldest_frames_page_out_first(void **state)
{
	struct pmd_pageout v[PMD_PUSH_MAX];
	struct pmd_place places[PMD_PUSH_MAX];
	static uint8_t data[PMD_PUSH_MAX * PM_FRAME_SIZE];
	struct pmd_container *c, *got;
	struct pmd_core core;
	struct pmd_task *t;
	container_t h, x;
	bool busy = true, skipped;
	uint32_t n;

	(void)state;
	c = sixteen_by_age(&core, &t, &h);
	n = pmd_pageout_plan(&core, 4, false, none_busy, NULL, &got, v,
			     &skipped);
	assert_int_equal(n, 4);
	assert_ptr_equal(got, c);
	assert_false(skipped);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(v[i].frame, 15 - i);
	/* Busy: nothing, and it says so. */
	assert_int_equal(pmd_pageout_plan(&core, 4, false, all_busy, &busy,
					  &got, v, &skipped), 0);
	assert_true(skipped);
	/* Extra frames only: none in this container yet. */
	cf_container(&core, t, CF_GUARANTEE - 16);
	x = extras(&core, t, 2);
	n = pmd_pageout_plan(&core, 4, true, none_busy, NULL, &got, v,
			     &skipped);
	assert_int_equal(n, 2);
	assert_ptr_equal(got, pmd_container_lookup(t, x));
	/* Out: frames 15 and 14 go to node 2's slots 7 and 8. */
	n = pmd_pageout_plan(&core, 2, false, none_busy, NULL, &got, v,
			     &skipped);
	assert_ptr_equal(got, c);
	for (uint32_t i = 0; i < n; i++)
		places[i] = (struct pmd_place){ .node = 2, .seg = 3,
			.slot = (uint16_t)(7 + i), .key = 42,
			.len = (uint64_t)PMD_SEG_SLOTS * PM_FRAME_SIZE };
	/* A frame that changed meanwhile stays, its place given back. */
	cf_fill(&core, t, h, v[1].frame, 0x55);
	v[1].gen++;
	assert_int_equal(pmd_pageout_repoint(&core, c, v, places, n, data), 1);
	assert_int_equal(v[0].frame, 15);
	assert_int_equal(data[0], 16);
	assert_int_equal(t->charge.allocated, CF_GUARANTEE + 2);
	assert_int_equal(core.budget.remote, 1);
	assert_true(pmd_ftab_lookup(&c->frames, 15)->flags & PMD_FRAME_REMOTE);
	assert_int_equal(cf_byte(&core, t, h, 14), 0x55);
	cf_check(&core);
	cf_core_fini(&core);
}

/* A plan hands out what the last scan of the container found, coldest
 * first, while it lasts: not again what it handed out, not a frame used
 * or changed since; a freed container leaves nothing behind. */
static void plans_take_what_the_last_scan_found(void **state)
{
	struct pmd_pageout v[PMD_PUSH_MAX];
	struct pmd_container *c, *got;
	struct pmd_core core;
	struct pmd_task *t;
	container_t h;
	bool skipped;
	uint32_t n;

	(void)state;
	c = sixteen_by_age(&core, &t, &h);
	n = pmd_pageout_plan(&core, 4, false, none_busy, NULL, &got, v,
			     &skipped);
	assert_int_equal(n, 4);
	assert_int_equal(v[0].frame, 15);
	/* Frame 10 used since (a tick of uses), frame 9 moved. */
	for (int k = 0; k < 64; k++)
		cf_fill(&core, t, h, 10, 0x11);
	pmd_ftab_lookup(&c->frames, 9)->gen++;
	n = pmd_pageout_plan(&core, 4, false, none_busy, NULL, &got, v,
			     &skipped);
	assert_int_equal(n, 4);
	assert_ptr_equal(got, c);
	assert_int_equal(v[0].frame, 11);
	assert_int_equal(v[1].frame, 8);
	assert_int_equal(v[2].frame, 7);
	assert_int_equal(v[3].frame, 6);
	/* To the end of the list, then a new scan (10 and 9 again). */
	n = pmd_pageout_plan(&core, 16, false, none_busy, NULL, &got, v,
			     &skipped);
	assert_int_equal(n, 6);
	assert_int_equal(v[5].frame, 0);
	n = pmd_pageout_plan(&core, 2, false, none_busy, NULL, &got, v,
			     &skipped);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].frame, 15);
	assert_ptr_equal(core.cold.c, c);
	struct pmd_culprit why;
	assert_int_equal(pmd_container_destroy(&core, t, h, &why), 0);
	assert_null(core.cold.c);
	cf_check(&core);
	cf_core_fini(&core);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_guarantee_fits_a_node_full_of_extra_frames),
		cmocka_unit_test(victims_come_largest_excess_first),
		cmocka_unit_test(the_rule_of_what_is_taken),
		cmocka_unit_test(a_frame_taken_answers_estale_until_forgotten),
		cmocka_unit_test(the_coldest_frames_page_out_first),
		cmocka_unit_test(plans_take_what_the_last_scan_found),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
