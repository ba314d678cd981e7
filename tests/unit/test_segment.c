/*
 * Unit tests of segments (pmd/core/segment.c): what a device that pinned
 * a segment's pages at registration sees. A pipe that a page was
 * vmsplice'd into holds that page as an RDMA registration does, so
 * reading the pipe shows what such a device would read: the page behind
 * the slot now, or an old one the pmd replaced behind its back (the data
 * loss that real RDMA showed, where the TCP provider, which copies from
 * the address, did not). And the slots whose copy-on-write shares ended,
 * which the daemon tells the segment's holders about.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "segment.h"
#include "slots.h"

static struct pmd_segtab tab;
static struct pmd_segment *seg;

static int setup(void **state)
{
	pmd_segtab_init(&tab);
	assert_int_equal(pmd_segment_create(&tab, &seg), 0);
	return 0;
}

static int teardown(void **state)
{
	pmd_segtab_flush(&tab);
	pmd_segment_destroy(&tab, seg);
	pmd_segtab_fini(&tab);
	return 0;
}

/* A slot written with 'A' and held by a pipe (as a registration holds
 * it); then freed, made ready again and written with 'B', as a lender
 * does between two loans. What the holder of the old reference reads. */
static char held_after_reuse(void)
{
	struct iovec iov;
	int pipefd[2];
	char got;
	int slot;

	assert_int_equal(pipe(pipefd), 0);
	slot = pmd_segment_slot_alloc(&tab, seg);
	assert_true(slot >= 0);
	pmd_segment_populate(seg, (unsigned)slot, 1);
	memset(pmd_segment_frame(seg, (unsigned)slot), 'A', PM_FRAME_SIZE);
	iov = (struct iovec){ .iov_base = pmd_segment_frame(seg, (unsigned)slot),
			      .iov_len = PM_FRAME_SIZE };
	assert_int_equal(vmsplice(pipefd[1], &iov, 1, 0), PM_FRAME_SIZE);

	assert_true(pmd_segment_slot_put(&tab, seg, (unsigned)slot));
	pmd_segtab_flush(&tab);
	assert_int_equal(pmd_segment_slot_alloc(&tab, seg), slot);
	pmd_segment_populate(seg, (unsigned)slot, 1);
	assert_int_equal(((char *)pmd_segment_frame(seg, (unsigned)slot))[0], 0);
	memset(pmd_segment_frame(seg, (unsigned)slot), 'B', PM_FRAME_SIZE);

	assert_int_equal(read(pipefd[0], &got, 1), 1);
	close(pipefd[0]);
	close(pipefd[1]);
	pmd_segment_slot_put(&tab, seg, (unsigned)slot);
	return got;
}

static void a_pinned_segment_keeps_the_pages_registered(void **state)
{
	pmd_segment_pin(seg);
	/* Freed and reused in place: the device sees what the pmd wrote. */
	assert_int_equal(held_after_reuse(), 'B');
}

static void an_unpinned_segment_gives_its_pages_back(void **state)
{
	/* (The check above can fail: here the slot's page is replaced, and
	 * the old reference still sees the old bytes.) */
	assert_int_equal(held_after_reuse(), 'A');
}

/* A retired slot is punched so that a task's mapping faults; the page a
 * registration still holds was zeroed first: it keeps nothing of the
 * frame that moved away. */
static void a_retired_pinned_slot_leaves_nothing_registered(void **state)
{
	struct iovec iov;
	int pipefd[2];
	char got[64], zero[64] = { 0 };
	int slot;

	pmd_segment_pin(seg);
	assert_int_equal(pmd_segment_fwd_reserve(seg), 0);
	assert_int_equal(pipe(pipefd), 0);
	slot = pmd_segment_slot_alloc(&tab, seg);
	assert_true(slot >= 0);
	memset(pmd_segment_frame(seg, (unsigned)slot), 'S', PM_FRAME_SIZE);
	iov = (struct iovec){ .iov_base = pmd_segment_frame(seg, (unsigned)slot),
			      .iov_len = PM_FRAME_SIZE };
	assert_int_equal(vmsplice(pipefd[1], &iov, 1, 0), PM_FRAME_SIZE);
	pmd_segment_slot_retire(&tab, seg, (unsigned)slot, NULL, 42);
	assert_int_equal(read(pipefd[0], got, sizeof(got)), sizeof(got));
	assert_memory_equal(got, zero, sizeof(got));
	close(pipefd[0]);
	close(pipefd[1]);
	pmd_segment_release_retired(&tab, seg);
}

/* ---- the end of copy-on-write shares ---- */

struct runs {
	unsigned n;
	struct { uint64_t seg; unsigned slot, count; } v[8];
};

/* The memory the segments hold as a sweep sees it: a few segments looked
 * at again each time (a heartbeat's), exact once all were; a segment
 * that goes takes its pages out of the figure. */
static void a_sweep_sees_each_segment_in_turn(void **state)
{
	struct pmd_segment *more[2];
	const uint64_t page = PM_FRAME_SIZE;
	int a, b;

	(void)state;
	assert_int_equal(pmd_segment_create(&tab, &more[0]), 0);
	assert_int_equal(pmd_segment_create(&tab, &more[1]), 0);
	assert_int_equal(pmd_segtab_resident_sweep(&tab, UINT32_MAX), 0);
	a = pmd_segment_slot_alloc(&tab, more[0]);
	pmd_segment_populate(more[0], (unsigned)a, 1);
	b = pmd_segment_slot_alloc(&tab, more[1]);
	pmd_segment_populate(more[1], (unsigned)b, 1);
	assert_int_equal(pmd_segment_slot_alloc(&tab, more[1]), b + 1);
	pmd_segment_populate(more[1], (unsigned)b + 1, 1);
	assert_int_equal(pmd_segtab_resident(&tab), 3 * page);
	/* One segment a sweep: the three are seen after three. */
	uint64_t seen = 0;
	for (int k = 0; k < 3; k++) {
		uint64_t now = pmd_segtab_resident_sweep(&tab, 1);
		assert_true(now >= seen && now <= 3 * page);
		seen = now;
	}
	assert_int_equal(seen, 3 * page);
	/* Freed and punched: a full sweep sees it at once. */
	assert_true(pmd_segment_slot_put(&tab, more[1], (unsigned)b));
	pmd_segtab_flush(&tab);
	assert_int_equal(pmd_segtab_resident_sweep(&tab, UINT32_MAX), 2 * page);
	/* A segment destroyed with a page seen in it: out of the figure. */
	assert_true(pmd_segment_slot_put(&tab, more[0], (unsigned)a));
	pmd_segtab_flush(&tab);
	pmd_segment_destroy(&tab, more[0]);
	assert_int_equal(pmd_segtab_resident_sweep(&tab, 0), 0 + page);
	assert_true(pmd_segment_slot_put(&tab, more[1], (unsigned)b + 1));
	pmd_segtab_flush(&tab);
	pmd_segment_destroy(&tab, more[1]);
	assert_int_equal(pmd_segtab_resident_sweep(&tab, UINT32_MAX), 0);
}

static void note_run(void *arg, const struct pmd_segment *sg, unsigned slot,
		     unsigned n)
{
	struct runs *r = arg;

	assert_true(r->n < 8);
	r->v[r->n].seg = sg->id;
	r->v[r->n].slot = slot;
	r->v[r->n].count = n;
	r->n++;
}

/* Slots a put leaves to one frame are handed out once, in runs, if they
 * still have one frame then; not for a segment no task was given. */
static void shares_that_end_are_handed_out_once(void **state)
{
	struct runs r = { 0 };
	int s[6];

	for (int i = 0; i < 6; i++) {
		s[i] = pmd_segment_slot_alloc(&tab, seg);
		assert_int_equal(s[i], i);
		assert_true(pmd_slots_get(&seg->slots, (unsigned)i));
	}
	/* Not exposed: nobody to tell. */
	assert_false(pmd_segment_slot_put(&tab, seg, 0));
	assert_false(pmd_segtab_unshared_any(&tab));
	seg->exposed = true;
	assert_false(pmd_segment_slot_put(&tab, seg, 1));
	assert_false(pmd_segment_slot_put(&tab, seg, 2));
	assert_false(pmd_segment_slot_put(&tab, seg, 4));
	assert_false(pmd_segment_slot_put(&tab, seg, 5));
	assert_true(pmd_segtab_unshared_any(&tab));
	/* Slot 4 shared again, slot 5 freed since: neither is said. */
	assert_true(pmd_slots_get(&seg->slots, 4));
	assert_true(pmd_segment_slot_put(&tab, seg, 5));
	pmd_segtab_unshared_take(&tab, note_run, &r);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.v[0].seg, seg->id);
	assert_int_equal(r.v[0].slot, 1);
	assert_int_equal(r.v[0].count, 2);
	assert_false(pmd_segtab_unshared_any(&tab));
	r.n = 0;
	pmd_segtab_unshared_take(&tab, note_run, &r);
	assert_int_equal(r.n, 0);
	/* A segment destroyed with slots noted leaves nothing behind. */
	assert_false(pmd_segment_slot_put(&tab, seg, 4));
	assert_true(pmd_segtab_unshared_any(&tab));
	for (int i = 0; i < 5; i++)
		while (!pmd_segment_slot_put(&tab, seg, (unsigned)i))
			;
	pmd_segtab_flush(&tab);
	pmd_segment_destroy(&tab, seg);
	assert_false(pmd_segtab_unshared_any(&tab));
	assert_int_equal(pmd_segment_create(&tab, &seg), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			a_pinned_segment_keeps_the_pages_registered, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			an_unpinned_segment_gives_its_pages_back, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_retired_pinned_slot_leaves_nothing_registered, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			shares_that_end_are_handed_out_once, setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_sweep_sees_each_segment_in_turn, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
