/* Unit tests of the frame view's runs (pmd/core/view.c, PM_VIEW_RUN in
 * pm_proto.h): after every pmd_view_end, each entry's run is exactly what
 * a walk of the frames after it gives; in a deferred view, never more
 * than that after an end, and exactly that once settled. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "view.h"

#define SPAN 1500u /* frames the tests use: 0 .. SPAN-1 */

/* The model: what each frame's entry holds (present or not). */
struct model {
	bool present[SPAN + 1];
	uint64_t seg[SPAN + 1];
	uint16_t slot[SPAN + 1];
	uint16_t flags[SPAN + 1];
};

static const struct pm_view_entry *find(const struct pmd_view *v, frame_t f)
{
	uint32_t mask = v->nbuckets - 1, i = pm_view_hash(f, v->nbuckets);

	for (; v->e[i].flags & PM_VIEW_USED; i = (i + 1) & mask)
		if (v->e[i].frame == f)
			return &v->e[i];
	return NULL;
}

static unsigned want_run(const struct model *m, frame_t f)
{
	unsigned run = 0;

	for (frame_t g = f; g < SPAN && m->present[g]; g++) {
		if (m->flags[g] & (PM_VIEW_COW | PM_VIEW_HOLE))
			break;
		if (g > f && (m->seg[g] != m->seg[f] ||
			      m->slot[g] != m->slot[f] + (g - f)))
			break;
		run++;
	}
	return run;
}

static void check_runs(const struct pmd_view *v, const struct model *m,
		       bool exact)
{
	for (frame_t f = 0; f < SPAN; f++) {
		const struct pm_view_entry *e = find(v, f);

		if (!m->present[f]) {
			assert_null(e);
			continue;
		}
		assert_non_null(e);
		assert_int_equal(e->segment, m->seg[f]);
		assert_int_equal(e->slot, m->slot[f]);
		assert_int_equal(e->flags & 0x7, m->flags[f] | PM_VIEW_USED);
		if (exact ? PM_VIEW_RUN(e->flags) != want_run(m, f)
			  : PM_VIEW_RUN(e->flags) > want_run(m, f)) {
			fprintf(stderr, "frame %lu: run %u, want %s%u\n",
				(unsigned long)f, PM_VIEW_RUN(e->flags),
				exact ? "" : "at most ", want_run(m, f));
			fail();
		}
	}
}

static void check(const struct pmd_view *v, const struct model *m)
{
	check_runs(v, m, true);
}

static void set(struct pmd_view *v, struct model *m, frame_t f, uint64_t seg,
		uint16_t slot, uint16_t flags)
{
	pmd_view_set(v, f, seg, slot, flags, 1);
	m->present[f] = true;
	m->seg[f] = seg;
	m->slot[f] = slot;
	m->flags[f] = flags;
}

static void del(struct pmd_view *v, struct model *m, frame_t f)
{
	pmd_view_del(v, f);
	m->present[f] = false;
}

/* 512 frames in one segment's slots in order: one run of 512 from the
 * first, counting down; a hole, a COW frame and a frame of another
 * segment split it; a deletion too; mending each joins it again. */
static void a_run_is_split_and_joined(void **state)
{
	static struct model m;
	struct pmd_view *v;

	(void)state;
	assert_int_equal(pmd_view_create(SPAN, &v), 0);
	pmd_view_begin(v);
	for (frame_t f = 0; f < 512; f++)
		set(v, &m, f, 7, (uint16_t)f, 0);
	pmd_view_end(v);
	assert_int_equal(PM_VIEW_RUN(find(v, 0)->flags), 512);
	assert_int_equal(PM_VIEW_RUN(find(v, 511)->flags), 1);
	check(v, &m);
	const uint16_t kinds[] = { PM_VIEW_HOLE, PM_VIEW_COW, 0 };
	for (unsigned k = 0; k < 3; k++) {
		pmd_view_begin(v);
		set(v, &m, 300, k == 2 ? 8 : 7, 300, kinds[k]);
		pmd_view_end(v);
		check(v, &m);
		assert_int_equal(PM_VIEW_RUN(find(v, 0)->flags),
				 300);
		pmd_view_begin(v);
		set(v, &m, 300, 7, 300, 0);
		pmd_view_end(v);
		check(v, &m);
		assert_int_equal(PM_VIEW_RUN(find(v, 0)->flags), 512);
	}
	pmd_view_begin(v);
	del(v, &m, 100);
	pmd_view_end(v);
	check(v, &m);
	assert_int_equal(PM_VIEW_RUN(find(v, 0)->flags), 100);
	pmd_view_begin(v);
	set(v, &m, 100, 7, 100, 0);
	pmd_view_end(v);
	check(v, &m);
	pmd_view_destroy(v);
}

/* One seeded random batch of sets and deletions, dense or sparse, slots
 * that mostly continue their neighbour's, between begin and end. */
static void random_batch(struct pmd_view *v, struct model *m, unsigned *seed,
			 int batch)
{
	unsigned n = 1 + (unsigned)rand_r(seed) % (batch % 10 ? 8 : 400);
	frame_t f = (frame_t)rand_r(seed) % SPAN;

	pmd_view_begin(v);
	for (unsigned i = 0; i < n; i++) {
		unsigned r = (unsigned)rand_r(seed) % 100;

		if (batch % 7 == 0) /* sparse: anywhere */
			f = (frame_t)rand_r(seed) % SPAN;
		else
			f = (f + 1) % SPAN;
		if (r < 15) {
			del(v, m, f);
		} else if (r < 90 && f > 0 && m->present[f - 1] &&
			   m->slot[f - 1] < 511) {
			set(v, m, f, m->seg[f - 1],
			    (uint16_t)(m->slot[f - 1] + 1),
			    r < 85 ? 0 : r < 88 ? PM_VIEW_COW : PM_VIEW_HOLE);
		} else {
			set(v, m, f, 1 + (uint64_t)rand_r(seed) % 3,
			    (uint16_t)(rand_r(seed) % 512), 0);
		}
	}
	pmd_view_end(v);
}

/* Random batches: every run exact after each. */
static void runs_stay_exact_under_random_changes(void **state)
{
	static struct model m;
	unsigned seed = 20261202;
	struct pmd_view *v;

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_int_equal(pmd_view_create(SPAN, &v), 0);
	for (int batch = 0; batch < 3000; batch++) {
		random_batch(v, &m, &seed, batch);
		check(v, &m);
	}
	pmd_view_destroy(v);
}

/* Deferred: frames appended one at a time in slot order (page-ins in
 * frame order) leave the runs before them as they were, short, until the
 * view is settled; a change that shortens a run shortens it at once. */
static void appends_leave_runs_short_until_settled(void **state)
{
	static struct model m;
	struct pmd_list unsettled;
	struct pmd_view *v;

	(void)state;
	memset(&m, 0, sizeof(m));
	pmd_list_init(&unsettled);
	assert_int_equal(pmd_view_create(SPAN, &v), 0);
	pmd_view_defer(v, &unsettled);
	for (frame_t f = 0; f < 512; f++) {
		pmd_view_begin(v);
		set(v, &m, f, 7, (uint16_t)f, 0);
		pmd_view_end(v);
		check_runs(v, &m, false);
		assert_int_equal(PM_VIEW_RUN(find(v, f)->flags), 1);
	}
	assert_int_equal(PM_VIEW_RUN(find(v, 0)->flags), 1);
	assert_false(pmd_list_empty(&unsettled));
	pmd_view_settle_all(&unsettled, 1);
	assert_true(pmd_list_empty(&unsettled));
	check(v, &m);
	assert_int_equal(PM_VIEW_RUN(find(v, 0)->flags), 512);
	assert_int_equal(v->hdr->seq % 2, 0);

	/* A hole in the middle cuts every run before it at once. */
	pmd_view_begin(v);
	set(v, &m, 300, 7, 300, PM_VIEW_HOLE);
	pmd_view_end(v);
	check_runs(v, &m, false);
	assert_int_equal(PM_VIEW_RUN(find(v, 0)->flags), 300);
	/* Mended, the runs before it wait for the settle. */
	pmd_view_begin(v);
	set(v, &m, 300, 7, 300, 0);
	pmd_view_end(v);
	check_runs(v, &m, false);
	assert_int_equal(PM_VIEW_RUN(find(v, 0)->flags), 300);
	pmd_view_settle_all(&unsettled, 1);
	check(v, &m);

	/* Changes that lengthen no run leave nothing to settle. */
	pmd_view_begin(v);
	del(v, &m, 100);
	pmd_view_end(v);
	pmd_view_begin(v);
	set(v, &m, 100, 9, 0, 0);
	pmd_view_end(v);
	check(v, &m);
	assert_true(pmd_list_empty(&unsettled));
	/* A view destroyed while unsettled leaves the list. */
	pmd_view_begin(v);
	set(v, &m, 100, 7, 100, 0);
	pmd_view_end(v);
	assert_false(pmd_list_empty(&unsettled));
	pmd_view_destroy(v);
	assert_true(pmd_list_empty(&unsettled));
}

/* The random batches on a deferred view, settled now and then: runs
 * never say more than the view holds, and are exact once settled. */
static void deferred_runs_are_never_long_and_settle_exact(void **state)
{
	static struct model m;
	struct pmd_list unsettled;
	unsigned seed = 20261203;
	struct pmd_view *v;

	(void)state;
	memset(&m, 0, sizeof(m));
	pmd_list_init(&unsettled);
	assert_int_equal(pmd_view_create(SPAN, &v), 0);
	pmd_view_defer(v, &unsettled);
	for (int batch = 0; batch < 3000; batch++) {
		random_batch(v, &m, &seed, batch);
		check_runs(v, &m, false);
		if (rand_r(&seed) % 4 == 0) {
			pmd_view_settle_all(&unsettled, 1);
			check(v, &m);
		}
	}
	pmd_view_destroy(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_run_is_split_and_joined),
		cmocka_unit_test(runs_stay_exact_under_random_changes),
		cmocka_unit_test(appends_leave_runs_short_until_settled),
		cmocka_unit_test(deferred_runs_are_never_long_and_settle_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
