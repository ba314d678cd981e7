/*
 * Mappings you can trust (docs/design.md, "The mapping invariant"): a
 * mapping of frame F reads F's current contents (or faults, then reads
 * them); a store that completed through a writable mapping of F is in F;
 * a mapping never shows another frame's bytes. Here on one node: stores
 * racing moves, a read-only mapping of a copy-on-write frame written
 * through the pmd, the owner's mappings across an unshare of a task that
 * mapped, and a task that does not answer the pmd's stop in time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define WORDS (PM_FRAME_SIZE / sizeof(uint64_t))

static pm_t *follower(void)
{
	pm_t *pm = test_connect(&test_pmd);

	if (!pm_debug_follows(pm)) {
		pm_disconnect(pm);
		fprintf(stderr, "no userfaultfd for this process (see the "
			"libpmclient message above): skipped\n");
		skip();
	}
	return pm;
}

/* A thread storing 1, 2, 3... into the words of one mapped frame, in
 * turn, and checking each store reads back; it notes the last number
 * each word got. */
struct writer {
	pthread_t thread;
	volatile uint64_t *frame;    /* its mapping */
	volatile bool *stop;
	uint64_t last[WORDS];        /* the last number stored in each word */
	uint64_t stores;
	uint64_t bad_reads;          /* a store that did not read back */
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (uint64_t n = 1; !*w->stop; n++) {
		size_t k = n % WORDS;

		w->frame[k] = n;
		if (w->frame[k] != n)
			w->bad_reads++;
		w->last[k] = n;
		w->stores = n;
	}
	return NULL;
}

/* Every word of frame f holds what its writer stored last. */
static void check_frame(pm_t *pm, container_t c, frame_t f,
			const struct writer *w)
{
	uint64_t got[WORDS];
	unsigned lost = 0;

	assert_int_equal(pm_container_read(pm, c, f, 0, got, sizeof(got)), 0);
	for (size_t k = 0; k < WORDS; k++)
		if (got[k] != w->last[k]) {
			if (!lost)
				fprintf(stderr, "frame %u word %zu: %lu, the "
					"last store was %lu\n", (unsigned)f, k,
					(unsigned long)got[k],
					(unsigned long)w->last[k]);
			lost++;
		}
	assert_int_equal(lost, 0);
	assert_int_equal(w->bad_reads, 0);
}

/*
 * Threads store sequence numbers into mapped frames (through the fast
 * path's pointer into the segment and through mappings the pmd made)
 * while the pmd moves those frames thousands of times: no number is
 * lost, no store misses its read-back, no signal.
 */
static void stores_under_moves_are_kept(void **state)
{
	enum { FRAMES = 4, MOVES = 3000 };
	pm_t *pm = follower();
	container_t c;
	int n = FRAMES;
	volatile bool stop = false;
	struct writer *w = calloc(FRAMES, sizeof(*w));
	uint8_t *run, *one;

	(void)state;
	assert_non_null(w);
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	/* Frames 0-2 through a pmd-made mapping, frame 3 by the fast
	 * path's pointer into the segment. */
	assert_int_equal(pm_container_map(pm, c, 0, 3, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&run, NULL), 0);
	assert_int_equal(pm_container_map(pm, c, 3, 1, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&one, NULL), 0);
	for (int i = 0; i < FRAMES; i++) {
		w[i].frame = (volatile uint64_t *)(i < 3 ? run + (size_t)i *
						   PM_FRAME_SIZE : one);
		w[i].stop = &stop;
		assert_int_equal(pthread_create(&w[i].thread, NULL, writer_main,
						&w[i]), 0);
	}
	for (int m = 0; m < MOVES; m++)
		assert_int_equal(pm_debug_move(pm, c, (frame_t)(m % FRAMES)), 0);
	stop = true;
	for (int i = 0; i < FRAMES; i++) {
		pthread_join(w[i].thread, NULL);
		assert_true(w[i].stores > 0);
		check_frame(pm, c, (frame_t)i, &w[i]);
	}
	fprintf(stderr, "%d moves under %d writers: %lu stores, none lost\n",
		MOVES, FRAMES, (unsigned long)(w[0].stores + w[1].stores +
					       w[2].stores + w[3].stores));
	test_check(pm);
	free(w);
	pm_disconnect(pm);
}

/* A server task s of owner o, with a weak reference to c, mapped. */
static pm_task_t task_of(pm_t *pm)
{
	pm_task_t t;

	assert_int_equal(pm_self(pm, &t), 0);
	return t;
}

static container_t server_maps(pm_t *o, container_t c, pm_t *s, frame_t f,
			       int n, void **addr)
{
	container_t weak, ref;
	pm_cap_token_t tok;
	pm_task_t sid;

	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(o, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(o, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(pm_container_map(s, ref, f, n, CONT_MAP_READ |
					  CONT_MAP_WRITE, addr, NULL), 0);
	return ref;
}

/*
 * Unshare of a server that mapped: the frames leave the segments it
 * holds, and the owner's own mappings (the fast path's pointer and a
 * mapping the pmd made) follow them, with no SIGBUS, and its stores
 * through them reach the frames; the server's mappings fault into
 * nothing (zeros), and its stores reach nobody. Also under another
 * server's lock (no EBUSY: nothing but the move needs the frames).
 */
static void owner_mappings_live_through_unshare(void **state)
{
	pm_t *o = follower(), *s = follower(), *l = follower();
	container_t c, ref, lref;
	int n = 4;
	char *own, *one, *srv, *lsrv, buf[32];

	(void)state;
	assert_int_equal(pm_container_create(o, &c), 0);
	assert_int_equal(pm_container_allocate(o, c, 0, &n, 0), 0);
	for (frame_t f = 0; f < 4; f++) {
		snprintf(buf, sizeof(buf), "frame %u", (unsigned)f);
		assert_int_equal(pm_container_write(o, c, f, 0, buf,
						    sizeof(buf)), 0);
	}
	assert_int_equal(pm_container_map(o, c, 0, 4, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&own, NULL), 0);
	assert_int_equal(pm_container_map(o, c, 2, 1, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&one, NULL), 0);
	ref = server_maps(o, c, s, 0, 4, (void **)&srv);
	lref = server_maps(o, c, l, 0, 4, (void **)&lsrv);
	assert_string_equal(srv + PM_FRAME_SIZE, "frame 1");
	strcpy(srv + 3 * PM_FRAME_SIZE, "the server's store");
	assert_int_equal(pm_container_lock(l, lref, 5000), 0);

	assert_int_equal(pm_container_unshare(o, c, task_of(s)), 0);

	/* The owner's mappings show the frames, its stores land. */
	assert_string_equal(own, "frame 0");
	assert_string_equal(own + 3 * PM_FRAME_SIZE, "the server's store");
	assert_string_equal(one, "frame 2");
	strcpy(own + PM_FRAME_SIZE, "owner after unshare");
	strcpy(one, "owner by the fast path");
	assert_int_equal(pm_container_unlock(l, lref), 0);
	assert_int_equal(pm_container_read(o, c, 1, 0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "owner after unshare");
	assert_int_equal(pm_container_read(o, c, 2, 0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "owner by the fast path");
	/* The other server still sees them. */
	assert_string_equal(lsrv + PM_FRAME_SIZE, "owner after unshare");
	/* The revoked server sees nothing, and changes nothing. */
	for (int f = 0; f < 4; f++)
		assert_int_equal(srv[(size_t)f * PM_FRAME_SIZE], 0);
	strcpy(srv, "revoked store");
	assert_int_equal(pm_container_read(o, c, 0, 0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "frame 0");
	assert_string_equal(own, "frame 0");
	assert_int_equal(pm_container_read(s, ref, 0, 0, buf, sizeof(buf)),
			 ESTALE);
	test_check(o);
	pm_disconnect(l);
	pm_disconnect(s);
	pm_disconnect(o);
}

/*
 * A read-only mapping of a copy-on-write frame, the frame then written
 * through the pmd: the mapping shows the new contents, and the other
 * frame's mapping the old (the known gap of the first copy-on-write).
 */
static void cow_mapping_follows_its_frame(void **state)
{
	pm_t *pm = follower();
	container_t c;
	int n = 2, granted;
	char *m0, *m1, buf[16];

	(void)state;
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, c, 0, 0, "original", 9), 0);
	assert_int_equal(pm_container_copy(pm, c, 0, c, 1, 1, 0, NULL), 0);
	assert_int_equal(pm_container_map(pm, c, 0, 1, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m0,
					  &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ); /* copy-on-write */
	assert_int_equal(pm_container_map(pm, c, 1, 1, CONT_MAP_READ,
					  (void **)&m1, NULL), 0);
	assert_string_equal(m0, "original");
	assert_string_equal(m1, "original");
	assert_int_equal(pm_container_write(pm, c, 0, 0, "written", 8), 0);
	assert_string_equal(m0, "written");
	assert_string_equal(m1, "original");
	assert_int_equal(pm_container_write(pm, c, 1, 0, "second", 7), 0);
	assert_string_equal(m1, "second");
	assert_string_equal(m0, "written");
	assert_int_equal(pm_container_read(pm, c, 0, 0, buf, 8), 0);
	assert_string_equal(buf, "written");
	test_check(pm);
	pm_disconnect(pm);
}

/*
 * A logical copy between two containers whose frames are mapped
 * writable on both sides: nothing is copied (both count the frames as
 * copy-on-write, no slot is used), and a store through either side's
 * mapping, or a write through the pmd, breaks the copy and shows in that
 * side only.
 */
static void logical_copy_between_mapped_containers(void **state)
{
	pm_t *pm = follower();
	struct pm_container_stat sa, sb;
	struct pm_debug_stat before, after;
	container_t a, b;
	int n = 4;
	char *ma, *mb, buf[16];

	(void)state;
	assert_int_equal(pm_container_create(pm, &a), 0);
	assert_int_equal(pm_container_allocate(pm, a, 0, &n, 0), 0);
	n = 4;
	assert_int_equal(pm_container_create(pm, &b), 0);
	assert_int_equal(pm_container_allocate(pm, b, 0, &n, 0), 0);
	assert_int_equal(pm_container_map(pm, a, 0, 4, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&ma, NULL), 0);
	assert_int_equal(pm_container_map(pm, b, 0, 4, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&mb, NULL), 0);
	for (int f = 0; f < 4; f++) {
		snprintf(ma + (size_t)f * PM_FRAME_SIZE, 16, "a%d", f);
		snprintf(mb + (size_t)f * PM_FRAME_SIZE, 16, "b%d", f);
	}
	before = test_check(pm);
	assert_int_equal(pm_container_copy(pm, a, 0, b, 0, 4, 0, NULL), 0);
	after = test_check(pm);
	/* Shared: b's own slots went back, none was taken. */
	assert_true(after.slots_used + 4 <= before.slots_used);
	assert_int_equal(pm_container_stat(pm, a, &sa), 0);
	assert_int_equal(pm_container_stat(pm, b, &sb), 0);
	assert_int_equal(sa.cow, 4);
	assert_int_equal(sb.cow, 4);
	/* b's mapping shows the copy. */
	for (int f = 0; f < 4; f++) {
		snprintf(buf, sizeof(buf), "a%d", f);
		assert_string_equal(mb + (size_t)f * PM_FRAME_SIZE, buf);
	}
	/* Stores through a's mapping and through b's break the copy. */
	strcpy(ma, "a0 later");
	strcpy(mb + PM_FRAME_SIZE, "b1 later");
	assert_int_equal(pm_container_write(pm, a, 2, 0, "a2 later", 9), 0);
	assert_string_equal(ma, "a0 later");
	assert_string_equal(mb, "a0");
	assert_string_equal(ma + PM_FRAME_SIZE, "a1");
	assert_string_equal(mb + PM_FRAME_SIZE, "b1 later");
	assert_string_equal(ma + 2 * PM_FRAME_SIZE, "a2 later");
	assert_string_equal(mb + 2 * PM_FRAME_SIZE, "a2");
	assert_int_equal(pm_container_read(pm, b, 0, 0, buf, 3), 0);
	assert_string_equal(buf, "a0");
	assert_int_equal(pm_container_read(pm, a, 1, 0, buf, 3), 0);
	assert_string_equal(buf, "a1");
	assert_int_equal(pm_container_read(pm, b, 1, 0, buf, 9), 0);
	assert_string_equal(buf, "b1 later");
	/* (b's mapping made b's frames its own when it touched them: a
	 * task maps only its container's segments.) */
	strcpy(ma + 3 * PM_FRAME_SIZE, "a3 later");
	assert_string_equal(mb + 3 * PM_FRAME_SIZE, "a3");
	/* Copied again while nobody touches b's side: the stores through
	 * a's mappings (the pmd's and the fast path's pointer into the
	 * segment) find the slots shared and break the copies. */
	char *fast;
	assert_int_equal(pm_container_map(pm, a, 1, 1, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&fast, NULL), 0);
	assert_int_equal(pm_container_copy(pm, a, 0, b, 2, 2, 0, NULL), 0);
	assert_int_equal(pm_container_stat(pm, b, &sb), 0);
	assert_int_equal(sb.cow, 2);
	strcpy(ma, "a0 third");
	strcpy(fast, "a1 third");
	assert_int_equal(pm_container_stat(pm, b, &sb), 0);
	assert_int_equal(sb.cow, 0);
	assert_string_equal(ma, "a0 third");
	assert_string_equal(ma + PM_FRAME_SIZE, "a1 third");
	assert_string_equal(mb + 2 * PM_FRAME_SIZE, "a0 later");
	assert_string_equal(mb + 3 * PM_FRAME_SIZE, "a1");
	assert_int_equal(pm_container_read(pm, a, 1, 0, buf, 9), 0);
	assert_string_equal(buf, "a1 third");
	assert_int_equal(pm_container_destroy(pm, a), 0);
	assert_string_equal(mb + 3 * PM_FRAME_SIZE, "a1");
	test_check(pm);
	pm_disconnect(pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stores_under_moves_are_kept),
		cmocka_unit_test(owner_mappings_live_through_unshare),
		cmocka_unit_test(cow_mapping_follows_its_frame),
		cmocka_unit_test(logical_copy_between_mapped_containers),
	};
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--guarantee", "4096", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
