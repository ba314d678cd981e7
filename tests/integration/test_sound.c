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

#include <sys/socket.h>
#include <sys/un.h>

#include "harness.h"
#include "walk.h"
#include "pm_proto.h"

#define WORDS (PM_FRAME_SIZE / sizeof(uint64_t))

static pm_t *follower(void)
{
	return test_follower(test_connect(&test_pmd));
}

/* A thread storing 1, 2, 3... into the words of one mapped frame, in
 * turn, and checking each store reads back; it notes the last number
 * each word got. */
struct writer {
	pthread_t thread;
	volatile uint64_t *frame;    /* its mapping */
	bool *stop;                  /* set (atomically) to end it */
	uint64_t last[WORDS];        /* the last number stored in each word */
	uint64_t stores;
	uint64_t bad_reads;          /* a store that did not read back */
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (uint64_t n = 1; !__atomic_load_n(w->stop, __ATOMIC_RELAXED); n++) {
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
	bool stop = false;
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
	__atomic_store_n(&stop, true, __ATOMIC_RELAXED);
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
 * An owner that dies with a frame whose slot it shares by a logical copy
 * with a container of another task: a server that had mapped the dead
 * owner's frame must not see that other task's frame (its writes) through
 * its old mapping; the other task's frame keeps its contents.
 */
static void a_dead_owners_shared_slot_shows_nobody_else(void **state)
{
	pm_t *o = follower(), *s = follower(), *t = follower();
	container_t a, c, cref;
	int n = 1;
	char *srv, buf[32];

	(void)state;
	/* t's container c, which o may write (a weak reference). */
	assert_int_equal(pm_container_create(t, &c), 0);
	assert_int_equal(pm_container_allocate(t, c, 0, &n, 0), 0);
	cref = server_maps(t, c, o, 0, 1, (void **)&srv); /* (o maps it too) */
	assert_int_equal(pm_container_unmap(o, srv, 1), 0);
	/* o's container a, mapped by the server s. */
	n = 1;
	assert_int_equal(pm_container_create(o, &a), 0);
	assert_int_equal(pm_container_allocate(o, a, 0, &n, 0), 0);
	assert_int_equal(pm_container_write(o, a, 0, 0, "o's frame", 10), 0);
	server_maps(o, a, s, 0, 1, (void **)&srv);
	assert_string_equal(srv, "o's frame");
	/* o copies its frame into t's: t's frame shares o's slot. */
	assert_int_equal(pm_container_copy(o, a, 0, cref, 0, 1, 0, NULL), 0);
	pm_disconnect(o);
	/* t writes its frame: s sees none of it. */
	assert_int_equal(pm_container_read(t, c, 0, 0, buf, 10), 0);
	assert_string_equal(buf, "o's frame");
	assert_int_equal(pm_container_write(t, c, 0, 0, "t's secret", 11), 0);
	assert_true(strcmp(srv, "t's secret") != 0);
	assert_int_equal(pm_container_read(t, c, 0, 0, buf, 11), 0);
	assert_string_equal(buf, "t's secret");
	test_check(t);
	pm_disconnect(s);
	pm_disconnect(t);
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
 * A store through an address the fast path gave out (a page of the
 * whole-segment view) after a logical copy made its frame copy-on-write:
 * the copy breaks, and the store reaches the frame (the pmd reads it,
 * the other mapping of it shows it), not a page of the task's own; the
 * other side keeps the copied bytes. The page names only its slot, which
 * the other side of the copy still holds: the library asks for the frame
 * the address was given out for. (A store there was lost: it went to a
 * private zero page.)
 */
static void stores_through_fast_addresses_break_a_later_copy(void **state)
{
	pm_t *pm = follower();
	container_t a, b;
	struct pm_debug_stat st;
	char *region, *fast, got[16];
	uint64_t before;
	int n = 4;

	(void)state;
	assert_int_equal(pm_container_create(pm, &a), 0);
	assert_int_equal(pm_container_allocate(pm, a, 0, &n, 0), 0);
	n = 4;
	assert_int_equal(pm_container_create(pm, &b), 0);
	assert_int_equal(pm_container_allocate(pm, b, 0, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, a, 0, 0, "a0", 3), 0);
	assert_int_equal(pm_container_write(pm, b, 0, 0, "b0", 3), 0);
	/* Frame 3 moved first: the four are not one run of slots, so
	 * their map is a range of its own; frames 0-1 are one run, their
	 * map the fast path's pointer into the segment. */
	assert_int_equal(pm_debug_move(pm, a, 3), 0);
	assert_int_equal(pm_container_map(pm, a, 0, 4, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&region,
					  NULL), 0);
	assert_int_equal(pm_debug_stat(pm, &st), 0);
	before = st.requests;
	assert_int_equal(pm_container_map(pm, a, 0, 2, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&fast,
					  NULL), 0);
	assert_int_equal(pm_debug_stat(pm, &st), 0);
	assert_int_equal(st.requests - before, 1); /* the stat only */
	assert_ptr_not_equal(fast, region);
	assert_int_equal(pm_container_copy(pm, a, 0, b, 0, 4, 0, NULL), 0);
	strcpy(fast, "a0 later");
	assert_int_equal(pm_container_read(pm, a, 0, 0, got, 9), 0);
	assert_string_equal(got, "a0 later");
	assert_string_equal(region, "a0 later");
	assert_int_equal(pm_container_read(pm, b, 0, 0, got, 3), 0);
	assert_string_equal(got, "a0");
	/* And a store through the other address, to a frame still shared. */
	strcpy(region + PM_FRAME_SIZE, "a1 later");
	assert_string_equal(fast + PM_FRAME_SIZE, "a1 later");
	assert_int_equal(pm_container_read(pm, b, 1, 0, got, 1), 0);
	assert_int_equal(got[0], 0);
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

/*
 * The end of a logical copy gives the owner its stores back. Task o maps
 * its frames writable and writes them; task b copies them logically into
 * a container of its own (o's mappings are write-protected then: a store
 * would break the copy first); the copy ends (b destroys its container,
 * or writes every frame of it, which gives b's frames slots of their
 * own). o's stores then go straight to its frames: the pmd told o's
 * library that the slots are not shared any more, and no store asks the
 * pmd to break a share that is gone (at most the first, when it races
 * that message). Again with o's frames freed and allocated anew between
 * rounds, on slots used before: no round pays more than the first.
 */
#define UNSHARED_FRAMES 1024
static void a_copys_end_gives_the_owner_its_stores_back(void **state)
{
	const char *breaks = "pmd_requests_total{type=\"break\"}";
	const char *unshared = "pmd_cow_unshared_slots_total";
	pm_t *o = follower(), *b = test_connect(&test_pmd);
	pm_task_t bid;
	char buf[64];

	(void)state;
	assert_int_equal(pm_self(b, &bid), 0);
	for (int round = 0; round < 4; round++) {
		container_t a, weak, ref, d;
		pm_cap_token_t tok;
		struct pm_container_stat st;
		int n = UNSHARED_FRAMES;
		uint64_t b0, b1, u0;
		char *m, want[64];

		assert_int_equal(pm_container_create(o, &a), 0);
		assert_int_equal(pm_container_allocate(o, a, 0, &n, 0), 0);
		assert_int_equal(pm_container_map(o, a, 0, UNSHARED_FRAMES,
						  CONT_MAP_READ | CONT_MAP_WRITE,
						  (void **)&m, NULL), 0);
		for (int f = 0; f < UNSHARED_FRAMES; f++)
			snprintf(m + (size_t)f * PM_FRAME_SIZE, 64,
				 "round %d frame %d", round, f);
		/* b's logical copy of them. */
		assert_int_equal(pm_container_share(o, a, bid, &weak), 0);
		assert_int_equal(pm_cap_export(o, weak, &tok), 0);
		assert_int_equal(pm_cap_import(b, &tok, &ref), 0);
		n = UNSHARED_FRAMES;
		assert_int_equal(pm_container_create(b, &d), 0);
		assert_int_equal(pm_container_allocate(b, d, 0, &n, 0), 0);
		assert_int_equal(pm_container_copy(b, ref, 0, d, 0,
						   UNSHARED_FRAMES, 0, NULL), 0);
		assert_int_equal(pm_container_stat(b, d, &st), 0);
		assert_int_equal(st.cow, UNSHARED_FRAMES);
		/* One store breaks one frame's copy: b's keeps the old. */
		b0 = test_metric(o, breaks);
		strcpy(m, "o's own");
		assert_int_equal(pm_container_read(b, d, 0, 0, buf, 16), 0);
		snprintf(want, sizeof(want), "round %d frame 0", round);
		assert_string_equal(buf, want);
		assert_int_equal(test_metric(o, breaks), b0 + 1);
		/* The copy ends. */
		u0 = test_metric(o, unshared);
		if (round % 2) {
			for (int f = 1; f < UNSHARED_FRAMES; f++)
				assert_int_equal(pm_container_write(
					b, d, (frame_t)f, 0, "b's", 4), 0);
		} else {
			assert_int_equal(pm_container_destroy(b, d), 0);
		}
		/* The pmd tells in rounds (bursts together): all of it went
		 * out before the stores. */
		for (int i = 0; i < 500 && test_metric(o, unshared) <
					 u0 + UNSHARED_FRAMES - 1; i++)
			usleep(10000);
		if (test_metric(o, unshared) < u0 + UNSHARED_FRAMES - 1)
			fail_msg("round %d: %lu slots told unshared, not %u",
				 round, (unsigned long)(test_metric(o, unshared)
							- u0),
				 UNSHARED_FRAMES - 1);
		b1 = test_metric(o, breaks);
		for (int f = 1; f < UNSHARED_FRAMES; f++)
			snprintf(m + (size_t)f * PM_FRAME_SIZE, 64,
				 "round %d stored %d", round, f);
		if (test_metric(o, breaks) > b1 + 1)
			fail_msg("round %d: %lu stores asked the pmd to break a "
				 "share that had ended", round,
				 (unsigned long)(test_metric(o, breaks) - b1));
		for (int f = 0; f < UNSHARED_FRAMES; f += 97) {
			snprintf(want, sizeof(want), f ? "round %d stored %d"
				 : "o's own", round, f);
			assert_int_equal(pm_container_read(o, a, (frame_t)f, 0,
							   buf, sizeof(buf)), 0);
			assert_string_equal(buf, want);
			if (round % 2) {
				assert_int_equal(pm_container_read(
					b, d, (frame_t)f, 0, buf, 4), 0);
				if (f)
					assert_string_equal(buf, "b's");
				else
					assert_memory_equal(buf, "roun", 4);
			}
		}
		if (round % 2)
			assert_int_equal(pm_container_destroy(b, d), 0);
		assert_int_equal(pm_cap_release(b, ref), 0);
		assert_int_equal(pm_container_unmap(o, m, UNSHARED_FRAMES), 0);
		assert_int_equal(pm_container_destroy(o, a), 0);
		test_check(o);
	}
	pm_disconnect(b);
	pm_disconnect(o);
}

/* ---- a seeded random walk against a model ---- */

/*
 * A seeded random walk (walk.h; PM_TEST_SEED picks the seed; it is
 * printed): the owner and a server on one node map what they may, write
 * through the pmd and through their mappings, copy within and across
 * containers, move frames, lock, unshare and share again; after every
 * step every mapping and the pmd agree with a model, byte for byte.
 */
static void mappings_agree_with_a_model(void **state)
{
	pm_t *o = follower(), *s = follower();

	(void)state;
	test_walk(o, s, 400, 0);
	pm_disconnect(s);
	pm_disconnect(o);
}

/* ---- a library that does not answer ---- */

static int raw_connect(void)
{
	return test_raw_connect(&test_pmd);
}

static void raw_send(int fd, uint16_t type, const void *body, uint32_t len)
{
	uint8_t buf[256] __attribute__((aligned(8)));
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)buf;

	pm_msg_hdr_init(h, type, (uint32_t)sizeof(*h) + len, 9);
	if (len)
		memcpy(h + 1, body, len);
	assert_int_equal(send(fd, buf, sizeof(*h) + len, 0),
			 (ssize_t)(sizeof(*h) + len));
}

/* One message in (any descriptors it carries are dropped); its type. */
static uint16_t raw_recv(int fd, void *out, size_t out_len)
{
	uint8_t buf[1024] __attribute__((aligned(8)));
	const struct pm_msg_hdr *h = (const struct pm_msg_hdr *)buf;
	ssize_t n = recv(fd, buf, sizeof(buf), 0);

	assert_true(n >= (ssize_t)sizeof(*h));
	if (out)
		memcpy(out, buf, (size_t)n < out_len ? (size_t)n : out_len);
	return h->type;
}

static uint32_t raw_call(int fd, uint16_t type, const void *body, uint32_t len,
			 void *out, uint32_t out_len)
{
	uint8_t buf[256] __attribute__((aligned(8)));
	const struct pm_reply *rep = (const struct pm_reply *)
		(buf + sizeof(struct pm_msg_hdr));

	raw_send(fd, type, body, len);
	assert_int_equal(raw_recv(fd, buf, sizeof(buf)), type | PM_MSG_REPLY);
	if (out && rep->status == PM_ST_OK)
		memcpy(out, rep + 1, out_len);
	return rep->status;
}

/* A task spoken for by hand: HELLO on main_fd, its fault session
 * attached on fs, and a container of n frames (its handle). */
static struct pm_handle_rep raw_task(int main_fd, int fs, uint32_t n)
{
	struct pm_hello_req hello = { .version = PM_PROTO_VERSION };
	struct pm_hello_rep hrep;
	struct pm_attach_key_rep key;
	struct pm_attach_req att;
	struct pm_handle_rep c;
	struct pm_alloc_req alloc;

	assert_int_equal(raw_call(main_fd, PM_MSG_HELLO, &hello, sizeof(hello),
				  &hrep, sizeof(hrep)), PM_ST_OK);
	assert_int_equal(raw_call(main_fd, PM_MSG_ATTACH_KEY, NULL, 0, &key,
				  sizeof(key)), PM_ST_OK);
	att = (struct pm_attach_req){ .task = hrep.task };
	memcpy(att.key, key.key, sizeof(att.key));
	assert_int_equal(raw_call(fs, PM_MSG_ATTACH, &att, sizeof(att), NULL, 0),
			 PM_ST_OK);
	assert_int_equal(raw_call(main_fd, PM_MSG_CREATE, NULL, 0, &c,
				  sizeof(c)), PM_ST_OK);
	alloc = (struct pm_alloc_req){ .handle = c.handle, .count = n };
	assert_int_equal(raw_call(main_fd, PM_MSG_ALLOCATE, &alloc,
				  sizeof(alloc), NULL, 0), PM_ST_OK);
	return c;
}

/*
 * A task whose library never answers the pmd's STOP (a raw fault
 * session that reads nothing): the move it asked for waits the deadline
 * (--stop-ms) and then goes on; meanwhile the pmd serves everyone else;
 * RESUME follows; the frame is intact through the pmd.
 */
static void a_library_that_does_not_answer(void **state)
{
	struct pm_handle_rep c;
	struct pm_task_stat ts;
	int main_fd = raw_connect(), fs = raw_connect();
	pm_t *other = test_connect(&test_pmd);
	uint64_t t0, t_other = 0, waited;
	uint8_t msg[256];
	char got[8];

	(void)state;
	c = raw_task(main_fd, fs, 1);
	uint8_t data[sizeof(struct pm_io_req) + 8] __attribute__((aligned(8)));
	struct pm_io_req *io = (struct pm_io_req *)data;
	*io = (struct pm_io_req){ .handle = c.handle, .len = 6 };
	memcpy(io + 1, "intact", 6);
	assert_int_equal(raw_call(main_fd, PM_MSG_WRITE, data,
				  sizeof(*io) + 6, NULL, 0), PM_ST_OK);
	/* It maps the frame: it holds the segment now (the descriptor
	 * goes unread). */
	struct pm_map_req map = { .handle = c.handle, .count = 1,
				  .flags = CONT_MAP_READ | CONT_MAP_WRITE };
	assert_int_equal(raw_call(main_fd, PM_MSG_MAP, &map, sizeof(map),
				  NULL, 0), PM_ST_OK);

	struct pm_move_req mv = { .handle = c.handle, .frame = 0 };
	t0 = test_ms_now();
	raw_send(main_fd, PM_MSG_MOVE, &mv, sizeof(mv));
	/* The STOP comes, and nobody answers it. */
	assert_int_equal(raw_recv(fs, msg, sizeof(msg)), PM_MSG_STOP);
	/* Everyone else is served meanwhile. */
	uint64_t t1 = test_ms_now();
	assert_int_equal(pm_task_stat(other, &ts), 0);
	t_other = test_ms_now() - t1;
	assert_int_equal(raw_recv(main_fd, msg, sizeof(msg)),
			 PM_MSG_MOVE | PM_MSG_REPLY);
	waited = test_ms_now() - t0;
	assert_int_equal(((struct pm_reply *)(msg + sizeof(struct pm_msg_hdr)))->status,
			 PM_ST_OK);
	assert_int_equal(raw_recv(fs, msg, sizeof(msg)), PM_MSG_RESUME);
	fprintf(stderr, "the move waited %lu ms for a silent library (the "
		"deadline is 300 ms); another task's request took %lu ms\n",
		(unsigned long)waited, (unsigned long)t_other);
	assert_true(waited >= 250 && waited < 5000);
	assert_true(t_other < 250);
	/* The frame moved with its bytes. */
	struct pm_io_req rd = { .handle = c.handle, .len = 6 };
	uint8_t rbuf[PM_REPLY_HDR + 8] __attribute__((aligned(8)));
	raw_send(main_fd, PM_MSG_READ, &rd, sizeof(rd));
	assert_int_equal(raw_recv(main_fd, rbuf, sizeof(rbuf)),
			 PM_MSG_READ | PM_MSG_REPLY);
	memcpy(got, rbuf + PM_REPLY_HDR, 6);
	got[6] = 0;
	assert_string_equal(got, "intact");
	test_check(other);
	close(fs);
	close(main_fd);
	pm_disconnect(other);
}

/*
 * Bad input on the fault session's new messages: a BREAK or WHERE that
 * names no handle of the task, a frame that is not where it says, or
 * carries a nonzero pad; a STOP answer nobody asked for; BREAK and WHERE
 * on the task's main session. Each gets its error and changes nothing;
 * the session goes on.
 */
static void fault_session_bad_input(void **state)
{
	struct pm_handle_rep c;
	struct pm_resolve_rep rrep;
	struct pm_break_rep brep;
	int main_fd = raw_connect(), fs = raw_connect();
	pm_t *other = test_connect(&test_pmd);
	struct pm_debug_stat before, after;
	uint8_t stray[PM_REPLY_HDR] __attribute__((aligned(8)));

	(void)state;
	c = raw_task(main_fd, fs, 2);
	before = test_check(other);

	struct pm_break_req br = { .handle = c.handle + 1000, .frame = 0 };
	assert_int_equal(raw_call(fs, PM_MSG_BREAK, &br, sizeof(br), &brep,
				  sizeof(brep)), PM_ST_BAD_HANDLE);
	br = (struct pm_break_req){ .handle = c.handle, .frame = 7 };
	assert_int_equal(raw_call(fs, PM_MSG_BREAK, &br, sizeof(br), &brep,
				  sizeof(brep)), PM_ST_FRAME_LOST);
	br = (struct pm_break_req){ .handle = c.handle, .frame = 0,
				    .segment = 12345, .slot = 3 };
	assert_int_equal(raw_call(fs, PM_MSG_BREAK, &br, sizeof(br), &brep,
				  sizeof(brep)), PM_ST_FRAME_LOST);
	br.pad = 1;
	assert_int_equal(raw_call(fs, PM_MSG_BREAK, &br, sizeof(br), &brep,
				  sizeof(brep)), PM_ST_BAD_MESSAGE);
	struct pm_where_req wq = { .handle = c.handle + 1000, .frame = 0 };
	assert_int_equal(raw_call(fs, PM_MSG_WHERE, &wq, sizeof(wq), &rrep,
				  sizeof(rrep)), PM_ST_NOT_YOURS);
	wq = (struct pm_where_req){ .handle = c.handle, .frame = 9 };
	assert_int_equal(raw_call(fs, PM_MSG_WHERE, &wq, sizeof(wq), &rrep,
				  sizeof(rrep)), PM_ST_NO_FRAME);
	/* A STOP answer for no STOP: ignored. */
	memset(stray, 0, sizeof(stray));
	pm_msg_hdr_init((struct pm_msg_hdr *)stray, PM_MSG_STOP | PM_MSG_REPLY,
			sizeof(stray), 4242);
	assert_int_equal(send(fs, stray, sizeof(stray), 0), (ssize_t)sizeof(stray));
	/* Only the fault session asks these. */
	assert_int_equal(raw_call(main_fd, PM_MSG_BREAK, &br, sizeof(br), NULL,
				  0), PM_ST_BAD_MESSAGE);
	assert_int_equal(raw_call(main_fd, PM_MSG_WHERE, &wq, sizeof(wq), NULL,
				  0), PM_ST_BAD_MESSAGE);
	/* Both sessions go on; nothing changed. */
	wq = (struct pm_where_req){ .handle = c.handle, .frame = 1 };
	assert_int_equal(raw_call(fs, PM_MSG_WHERE, &wq, sizeof(wq), &rrep,
				  sizeof(rrep)), PM_ST_OK);
	assert_int_equal(raw_call(main_fd, PM_MSG_CREATE, NULL, 0, &c,
				  sizeof(c)), PM_ST_OK);
	after = test_check(other);
	assert_int_equal(after.frames, before.frames);
	assert_int_equal(after.slots_used, before.slots_used);
	close(fs);
	close(main_fd);
	pm_disconnect(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(stores_under_moves_are_kept),
		cmocka_unit_test(stores_through_fast_addresses_break_a_later_copy),
		cmocka_unit_test(owner_mappings_live_through_unshare),
		cmocka_unit_test(a_dead_owners_shared_slot_shows_nobody_else),
		cmocka_unit_test(cow_mapping_follows_its_frame),
		cmocka_unit_test(logical_copy_between_mapped_containers),
		cmocka_unit_test(a_copys_end_gives_the_owner_its_stores_back),
		cmocka_unit_test(mappings_agree_with_a_model),
		cmocka_unit_test(a_library_that_does_not_answer),
		cmocka_unit_test(fault_session_bad_input),
	};
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--guarantee", "4096", "--stop-ms", "300", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
