/*
 * walk.c - the seeded random walk of walk.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "walk.h"

#define NF 6 /* frames of each container */

static bool paged; /* test_walk_paged */

void test_walk_paged(bool on)
{
	paged = on;
}

struct walk {
	pm_t *o, *s;                 /* the owner, a server */
	bool apart;                  /* on different nodes */
	container_t c[2];            /* A (shared with s), B */
	container_t ref;             /* s's weak reference to A, or 0 */
	uint8_t *om[2];              /* o's mappings of A and B */
	uint8_t *sm;                 /* s's mapping of A, or NULL */
	bool locked;                 /* s holds A's lock */
	uint8_t model[2][NF][PM_FRAME_SIZE];
	uint64_t rng;
	unsigned steps[6];
};

static uint32_t rnd(struct walk *w, uint32_t n)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return (uint32_t)(w->rng % n);
}

static pm_task_t task_of(pm_t *pm)
{
	pm_task_t t;

	assert_int_equal(pm_self(pm, &t), 0);
	return t;
}

static void walk_share(struct walk *w)
{
	container_t weak;
	pm_cap_token_t tok;

	assert_int_equal(pm_container_share(w->o, w->c[0], task_of(w->s),
					    &weak), 0);
	assert_int_equal(pm_cap_export(w->o, weak, &tok), 0);
	assert_int_equal(pm_cap_import(w->s, &tok, &w->ref), 0);
	int granted;

	/* (Forced: frames shared copy-on-write now get their copies, so
	 * that the mapping is writable.) */
	assert_int_equal(pm_container_map(w->s, w->ref, 0, NF, CONT_MAP_READ |
					  CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE,
					  (void **)&w->sm, &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ | CONT_MAP_WRITE);
}

/* The first byte where a and b differ, or -1. */
static int first_diff(const uint8_t *a, const uint8_t *b)
{
	for (int x = 0; x < (int)PM_FRAME_SIZE; x++)
		if (a[x] != b[x])
			return x;
	return -1;
}

/* Every mapping, and the pmd, show the model. */
static void walk_check(struct walk *w, unsigned step)
{
	for (int k = 0; k < 2; k++)
		for (int f = 0; f < NF; f++) {
			const uint8_t *want = w->model[k][f];
			uint8_t *page = w->om[k] + (size_t)f * PM_FRAME_SIZE;
			uint8_t got[PM_FRAME_SIZE];
			int x;

			/* (Under the server's lock, the owner's fault on a
			 * frame that moved waits for the unlock: A's page is
			 * checked once the lock is gone.) */
			if (!(k == 0 && w->locked) &&
			    (x = first_diff(page, want)) >= 0)
				fail_msg("step %u: the owner's mapping of %c "
					 "frame %d, byte %d: %u, not %u", step,
					 'A' + k, f, x, page[x], want[x]);
			if (w->sm && k == 0 &&
			    (x = first_diff(w->sm + (size_t)f * PM_FRAME_SIZE,
					    want)) >= 0)
				fail_msg("step %u: the server's mapping of A "
					 "frame %d, byte %d: %u, not %u", step, f,
					 x, w->sm[(size_t)f * PM_FRAME_SIZE + x],
					 want[x]);
			if (k == 0 && w->locked)
				continue;
			assert_int_equal(pm_container_read(w->o, w->c[k],
							   (frame_t)f, 0, got,
							   sizeof(got)), 0);
			if ((x = first_diff(got, want)) >= 0)
				fail_msg("step %u: the pmd's %c frame %d, byte "
					 "%d: %u, not %u", step, 'A' + k, f, x,
					 got[x], want[x]);
		}
}

static void walk_step(struct walk *w)
{
	int k = (int)rnd(w, 2), f = (int)rnd(w, NF);
	bool owner_may = !(k == 0 && w->locked); /* A under s's lock */
	uint8_t b = (uint8_t)(rnd(w, 255) + 1);
	uint32_t off = rnd(w, PM_FRAME_SIZE - 64), len = rnd(w, 64) + 1;

	uint32_t op = rnd(w, 10);

	if (getenv("PM_TEST_TRACE"))
		fprintf(stderr, "op %u k %d f %d off %u len %u b %u\n", op, k,
			f, off, len, b);
	switch (op) {
	case 0: case 1: { /* a write through the pmd (the server's on A) */
		uint8_t data[64];
		pm_t *who = k == 0 && w->ref && rnd(w, 2) ? w->s : w->o;
		container_t h = who == w->s ? w->ref : w->c[k];

		if (who == w->o && !owner_may)
			break;
		memset(data, b, len);
		assert_int_equal(pm_container_write(who, h, (frame_t)f, off,
						    data, len), 0);
		memset(w->model[k][f] + off, b, len);
		w->steps[0]++;
		break;
	}
	case 2: case 3: case 4: { /* a store through a mapping */
		uint8_t *m = k == 0 && w->sm && rnd(w, 2) ? w->sm : w->om[k];

		if (m == w->om[k] && !owner_may)
			break;
		m[(size_t)f * PM_FRAME_SIZE + off] = b;
		w->model[k][f][off] = b;
		w->steps[1]++;
		break;
	}
	case 5: case 6: { /* a logical copy, within or across */
		int dk = (int)rnd(w, 2);
		int n = (int)rnd(w, 3) + 1;
		int sf = (int)rnd(w, NF - n + 1), df = (int)rnd(w, NF - n + 1);

		if ((k == 0 || dk == 0) && w->locked)
			break;
		if (getenv("PM_TEST_TRACE"))
			fprintf(stderr, "  copy %c%d -> %c%d n %d\n", 'A' + k, sf,
				'A' + dk, df, n);
		assert_int_equal(pm_container_copy(w->o, w->c[k], (frame_t)sf,
						   w->c[dk], (frame_t)df, n, 0,
						   NULL), 0);
		memmove(w->model[dk][df], w->model[k][sf],
			(size_t)n * PM_FRAME_SIZE);
		w->steps[2]++;
		break;
	}
	case 7: { /* a move */
		error_t err = pm_debug_move(w->o, w->c[k], (frame_t)f);

		/* (Not a shared frame, nor one in the other's segment,
		 * nor under a lock; between nodes, the maps move them;
		 * paged out, the pager does, and it may leave no room.) */
		if (!(err == 0 || err == EBUSY ||
		      ((w->apart || paged) && err == EOPNOTSUPP) ||
		      (paged && err == ENOMEM)))
			fail_msg("a move of %c%d: %s", 'A' + k, f, strerror(err));
		w->steps[3] += err == 0;
		break;
	}
	case 8: /* the server locks A, or lets go */
		if (!w->ref)
			break;
		if (w->locked)
			assert_int_equal(pm_container_unlock(w->s, w->ref), 0);
		else
			assert_int_equal(pm_container_lock(w->s, w->ref, 10000), 0);
		w->locked = !w->locked;
		w->steps[4]++;
		break;
	case 9: /* unshare and share again */
		if (w->locked || !w->ref)
			break;
		assert_int_equal(pm_container_unshare(w->o, w->c[0],
						      task_of(w->s)), 0);
		/* Its mapping of A shows nothing of A any more. */
		for (int g = 0; g < NF; g++)
			assert_int_equal(w->sm[(size_t)g * PM_FRAME_SIZE + off], 0);
		assert_int_equal(pm_container_unmap(w->s, w->sm, NF), 0);
		assert_int_equal(pm_cap_release(w->s, w->ref), 0);
		w->sm = NULL;
		w->ref = 0;
		walk_share(w);
		w->steps[5]++;
		break;
	}
}

void test_walk(pm_t *o, pm_t *s, unsigned nsteps, pm_node_t place_on)
{
	struct walk *w = calloc(1, sizeof(*w));
	const char *seed = getenv("PM_TEST_SEED");
	const char *more = getenv("PM_TEST_STEPS");

	assert_non_null(w);
	w->rng = seed ? strtoull(seed, NULL, 0) : (uint64_t)time(NULL);
	if (!w->rng)
		w->rng = 1;
	fprintf(stderr, "seed %lu (PM_TEST_SEED)\n", (unsigned long)w->rng);
	if (more && atoi(more) > 0)
		nsteps = (unsigned)atoi(more);
	w->o = o;
	w->s = s;
	w->apart = task_of(o) >> 48 != task_of(s) >> 48; /* the node bits */
	for (int k = 0; k < 2; k++) {
		int n = NF / 2;
		assert_int_equal(pm_container_create(w->o, &w->c[k]), 0);
		assert_int_equal(pm_container_allocate(w->o, w->c[k], 0, &n, 0), 0);
		if (place_on && k == 0)
			assert_int_equal(pm_container_set_policy(
				w->o, w->c[k], PM_PLACE_NODE, place_on), 0);
		n = NF - NF / 2;
		assert_int_equal(pm_container_allocate(w->o, w->c[k], NF / 2,
						       &n, 0), 0);
		assert_int_equal(pm_container_map(w->o, w->c[k], 0, NF,
						  CONT_MAP_READ | CONT_MAP_WRITE,
						  (void **)&w->om[k], NULL), 0);
	}
	walk_share(w);
	walk_check(w, 0);
	for (unsigned i = 1; i <= nsteps; i++) {
		walk_step(w);
		walk_check(w, i);
	}
	fprintf(stderr, "%u steps%s: %u pmd writes, %u mapped stores, %u "
		"copies, %u moves, %u locks, %u unshares\n", nsteps,
		w->apart ? " (the server on another node)" : "", w->steps[0],
		w->steps[1], w->steps[2], w->steps[3], w->steps[4], w->steps[5]);
	if (w->locked)
		assert_int_equal(pm_container_unlock(w->s, w->ref), 0);
	test_check(w->o);
	test_check(w->s);
	free(w);
}
