/*
 * Model-based randomized test: thousands of random operations by several
 * tasks (allocate with every flag, deallocate, copy, write, read, map,
 * share, lock, unshare, destroy, move, disconnect) against a real pmd, each
 * checked against a small reference model kept here, with the pmd's
 * accounting check after every step.
 *
 * Seeded and reproducible: PMD_TEST_SEED=N picks the seed (printed at the
 * start); PMD_TEST_STEPS=N the number of steps. Bounded in time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define NTASK  3
#define NCONT  6      /* container slots in the model */
#define NFRAME 24     /* frame ids 0..NFRAME-1 */
#define G      40     /* guarantee per task */
#define E      20     /* extra limit per task */
#define LOCK_MS 600000

struct mtask {
	pm_t *pm;
	pm_task_t id;
	uint64_t alloc, extra;            /* model charge */
	container_t ref[NCONT];           /* imported weak ref, or 0 */
	bool ref_stale[NCONT];            /* revoked: ESTALE until released */
};

struct mcont {
	bool live;
	int owner;
	container_t h;                    /* owner's handle */
	bool present[NFRAME];
	bool extra[NFRAME];
	uint8_t value[NFRAME];            /* every byte of the frame */
	int locker;                       /* task index or -1 */
	int fenced;                       /* a locker that refused its owner:
	                                   * it may not lock again (the locks
	                                   * here outlast the run) */
	bool shared_with[NTASK];
};

static struct mtask T[NTASK];
static struct mcont C[NCONT];
static uint64_t rng;
static unsigned long step;
static unsigned long moved, moved_mapped; /* moves done; of which mapped */

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

#define expect(got, want) do { \
	error_t g_ = (got), w_ = (want); \
	if (g_ != w_) \
		fail_msg("step %lu (seed in log): %s = %d, model says %d", \
			 step, #got, g_, w_); \
} while (0)

static void task_open(int t)
{
	T[t].pm = test_connect(&test_pmd);
	pm_self(T[t].pm, &T[t].id);
	T[t].alloc = T[t].extra = 0;
	memset(T[t].ref, 0, sizeof(T[t].ref));
	memset(T[t].ref_stale, 0, sizeof(T[t].ref_stale));
}

static bool owner_blocked(int c)
{
	return C[c].locker >= 0;
}

/* The lock refuses the owner: its holder is fenced (lock.h). */
static void refuse(int c)
{
	if (C[c].locker >= 0)
		C[c].fenced = C[c].locker;
}

static int live_cont_of(int t)
{
	int pick = -1, n = 0;

	for (int c = 0; c < NCONT; c++)
		if (C[c].live && C[c].owner == t && rnd((uint32_t)++n) == 0)
			pick = c;
	return pick;
}

static void cont_forget(int c)
{
	for (int t = 0; t < NTASK; t++)
		if (T[t].ref[c])
			T[t].ref_stale[c] = true;
	memset(&C[c], 0, sizeof(C[c]));
	C[c].locker = -1;
	C[c].fenced = -1;
}

static void op_create(int t)
{
	for (int c = 0; c < NCONT; c++) {
		if (C[c].live)
			continue;
		/* A slot whose old refs are still held as tombstones is
		 * reused only once they are released. */
		bool held = false;
		for (int u = 0; u < NTASK; u++)
			held |= T[u].ref[c] != 0;
		if (held)
			continue;
		expect(pm_container_create(T[t].pm, &C[c].h), 0);
		C[c].live = true;
		C[c].owner = t;
		C[c].locker = -1;
		C[c].fenced = -1;
		return;
	}
}

static void op_allocate(int t)
{
	int c = live_cont_of(t);
	if (c < 0)
		return;
	frame_t start = rnd(NFRAME);
	int want = 1 + (int)rnd(8), count = want;
	int flags = (int)rnd(8);
	bool extra_ok = flags & CONT_ALLOC_EXTRA;
	uint64_t g_left = G - (T[t].alloc - T[t].extra);
	uint64_t e_left = extra_ok ? E - T[t].extra : 0;
	error_t stop = 0;
	int n;
	bool cls[8];

	if (start + (frame_t)want > NFRAME)
		want = count = NFRAME - (int)start;
	for (n = 0; n < want; n++) {
		frame_t f = start + (frame_t)n;
		if (C[c].present[f] && !(flags & CONT_ALLOC_SQUASH)) {
			stop = EEXIST;
			break;
		}
		if (C[c].present[f] && owner_blocked(c)) {
			stop = EBUSY;
			refuse(c);
			break;
		}
		if (C[c].present[f]) {
			if (!C[c].extra[f])
				g_left++;
			else if (extra_ok)
				e_left++;
		}
		if (g_left) {
			g_left--;
			cls[n] = false;
		} else if (e_left) {
			e_left--;
			cls[n] = true;
		} else {
			stop = ENOMEM;
			break;
		}
	}
	bool keep = !stop || ((flags & CONT_ALLOC_PARTIAL) && n > 0);
	expect(pm_container_allocate(T[t].pm, C[c].h, start, &count, flags), stop);
	assert_int_equal(count, keep ? n : 0);
	if (!keep)
		return;
	for (int i = 0; i < n; i++) {
		frame_t f = start + (frame_t)i;
		if (C[c].present[f]) {
			T[t].alloc--;
			T[t].extra -= C[c].extra[f];
		}
		C[c].present[f] = true;
		C[c].extra[f] = cls[i];
		C[c].value[f] = 0;
		T[t].alloc++;
		T[t].extra += cls[i];
	}
}

static void op_deallocate(int t)
{
	int c = live_cont_of(t);
	if (c < 0)
		return;
	frame_t start = rnd(NFRAME);
	int count = 1 + (int)rnd(4);
	error_t want = 0;

	if (start + (frame_t)count > NFRAME)
		count = NFRAME - (int)start;
	if (owner_blocked(c)) {
		want = EBUSY;
		refuse(c);
	}
	for (int i = 0; i < count && !want; i++)
		if (!C[c].present[start + (frame_t)i])
			want = ENOENT;
	expect(pm_container_deallocate(T[t].pm, C[c].h, start, count), want);
	if (want)
		return;
	for (int i = 0; i < count; i++) {
		frame_t f = start + (frame_t)i;
		C[c].present[f] = false;
		T[t].alloc--;
		T[t].extra -= C[c].extra[f];
	}
}

/* A handle task t may use on container c, and how the pmd will answer. */
static bool pick_access(int t, int *c_out, container_t *h, error_t *gate)
{
	int c = (int)rnd(NCONT);

	if (C[c].live && C[c].owner == t) {
		*h = C[c].h;
		*gate = owner_blocked(c) ? EBUSY : 0;
		if (*gate)
			refuse(c);
	} else if (T[t].ref[c]) {
		*h = T[t].ref[c];
		*gate = T[t].ref_stale[c] ? ESTALE : 0;
	} else {
		return false;
	}
	*c_out = c;
	return true;
}

static void op_write(int t)
{
	uint8_t buf[PM_FRAME_SIZE];
	container_t h;
	error_t want;
	int c;

	if (!pick_access(t, &c, &h, &want))
		return;
	frame_t f = rnd(NFRAME);
	uint8_t v = (uint8_t)(1 + rnd(255));
	if (!want && !C[c].present[f])
		want = ENOENT;
	memset(buf, v, sizeof(buf));
	expect(pm_container_write(T[t].pm, h, f, 0, buf, sizeof(buf)), want);
	if (!want)
		C[c].value[f] = v;
}

static void op_read(int t)
{
	uint8_t buf[PM_FRAME_SIZE];
	container_t h;
	error_t want;
	int c;

	if (!pick_access(t, &c, &h, &want))
		return;
	frame_t f = rnd(NFRAME);
	if (!want && !C[c].present[f])
		want = ENOENT;
	expect(pm_container_read(T[t].pm, h, f, 0, buf, sizeof(buf)), want);
	if (want)
		return;
	for (size_t i = 0; i < sizeof(buf); i += 97)
		if (buf[i] != C[c].value[f])
			fail_msg("step %lu: frame %lu reads %#x, model %#x", step,
				 (unsigned long)f, buf[i], C[c].value[f]);
}

static void op_map(int t)
{
	container_t h;
	error_t want;
	uint8_t *m;
	int c;

	if (!pick_access(t, &c, &h, &want))
		return;
	frame_t f = rnd(NFRAME);
	int n = 1 + (int)rnd(4);
	if (f + (frame_t)n > NFRAME)
		n = NFRAME - (int)f;
	for (int i = 0; i < n && !want; i++)
		if (!C[c].present[f + (frame_t)i])
			want = ENOENT;
	int flags = CONT_MAP_READ | (rnd(2) ? CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE : 0);
	expect(pm_container_map(T[t].pm, h, f, n, flags, (void **)&m, NULL), want);
	if (want)
		return;
	for (int i = 0; i < n; i++)
		if (m[(size_t)i * PM_FRAME_SIZE + 100] != C[c].value[f + (frame_t)i])
			fail_msg("step %lu: mapped frame %lu differs", step,
				 (unsigned long)(f + (frame_t)i));
	if (flags & CONT_MAP_WRITE) {
		/* A store through the writable map of the first frame. */
		uint8_t v = (uint8_t)(1 + rnd(255));
		memset(m, v, PM_FRAME_SIZE);
		C[c].value[f] = v;
	}
	pm_container_unmap(T[t].pm, m, n);
}

static void op_copy(int t)
{
	int s = live_cont_of(t), d = live_cont_of(t);
	frame_t ferr = 0, fe = 0;
	error_t want = 0;
	int i;

	if (s < 0 || d < 0)
		return;
	frame_t ss = rnd(NFRAME), ds = rnd(NFRAME);
	int n = 1 + (int)rnd(6);
	if (owner_blocked(s) || owner_blocked(d)) {
		want = EBUSY;
		refuse(owner_blocked(s) ? s : d); /* the first it decodes */
	}
	for (i = 0; i < n && !want; i++) {
		if (ss + (frame_t)i >= NFRAME || !C[s].present[ss + (frame_t)i]) {
			want = ENOENT;
			fe = ss + (frame_t)i;
		} else if (ds + (frame_t)i >= NFRAME || !C[d].present[ds + (frame_t)i]) {
			want = ENOMEM;
			fe = ds + (frame_t)i;
		}
	}
	int done = want == EBUSY ? 0 : (want ? i - 1 : n);
	expect(pm_container_copy(T[t].pm, C[s].h, ss, C[d].h, ds, n, 0, &ferr), want);
	if (want == ENOENT || want == ENOMEM)
		assert_int_equal(ferr, fe);
	uint8_t snap[NFRAME];
	memcpy(snap, C[s].value, sizeof(snap));
	for (int k = 0; k < done; k++)
		C[d].value[ds + (frame_t)k] = snap[ss + (frame_t)k];
}

static void op_share(int t)
{
	int c = live_cont_of(t), r = (int)rnd(NTASK);
	container_t weak, ref;
	pm_cap_token_t tok;

	if (c < 0 || r == t || T[r].ref[c])
		return;
	expect(pm_container_share(T[t].pm, C[c].h, T[r].id, &weak), 0);
	expect(pm_cap_export(T[t].pm, weak, &tok), 0);
	expect(pm_cap_import(T[r].pm, &tok, &ref), 0);
	expect(pm_cap_release(T[t].pm, weak), 0);
	T[r].ref[c] = ref;
	C[c].shared_with[r] = true;
}

static void op_unshare(int t)
{
	int c = live_cont_of(t), r = (int)rnd(NTASK);

	if (c < 0 || r == t)
		return;
	/* Unsharing a task that mapped frames under another's lock would
	 * depend on which segments it holds; the conformance suite covers
	 * it, the model skips it. */
	if (C[c].locker >= 0 && C[c].locker != r)
		return;
	error_t want = C[c].locker == r ? EBUSY : 0;
	if (want)
		refuse(c);
	expect(pm_container_unshare(T[t].pm, C[c].h, T[r].id), want);
	if (want)
		return;
	if (T[r].ref[c])
		T[r].ref_stale[c] = true;
	C[c].shared_with[r] = false;
}

static void op_lock(int t)
{
	int c = (int)rnd(NCONT);

	if (!T[t].ref[c])
		return;
	if (rnd(2)) {
		error_t want = T[t].ref_stale[c] ? ESTALE :
			(C[c].locker >= 0 && C[c].locker != t) ? EBUSY :
			C[c].fenced == t ? EBUSY : 0;
		expect(pm_container_lock(T[t].pm, T[t].ref[c], LOCK_MS), want);
		if (!want)
			C[c].locker = t;
	} else {
		error_t want = T[t].ref_stale[c] ? ESTALE :
			(C[c].locker >= 0 && C[c].locker != t) ? EPERM : 0;
		expect(pm_container_unlock(T[t].pm, T[t].ref[c]), want);
		if (!want && C[c].locker == t)
			C[c].locker = -1;
	}
}

static void op_release(int t)
{
	int c = (int)rnd(NCONT);

	if (!T[t].ref[c])
		return;
	expect(pm_cap_release(T[t].pm, T[t].ref[c]), 0);
	if (C[c].locker == t)
		C[c].locker = -1;
	T[t].ref[c] = 0;
	T[t].ref_stale[c] = false;
}

static void op_destroy(int t)
{
	int c = live_cont_of(t);

	if (c < 0)
		return;
	error_t want = owner_blocked(c) ? EBUSY : 0;
	if (want)
		refuse(c);
	expect(pm_container_destroy(T[t].pm, C[c].h), want);
	if (want)
		return;
	for (frame_t f = 0; f < NFRAME; f++) {
		if (C[c].present[f]) {
			T[t].alloc--;
			T[t].extra -= C[c].extra[f];
		}
	}
	cont_forget(c);
}

static void wait_tasks(uint64_t n)
{
	struct pm_debug_stat st;

	for (int i = 0; i < 500; i++) {
		assert_int_equal(pm_debug_stat(T[0].pm, &st), 0);
		if (st.tasks == n)
			return;
		usleep(2000);
	}
	fail_msg("step %lu: the pmd still has %lu tasks", step,
		 (unsigned long)st.tasks);
}

/* The owner moves a frame (as paging will); a mapping made before the
 * move must show the frame after it. */
static void op_move(int t)
{
	int c = live_cont_of(t);
	frame_t f = rnd(NFRAME);
	uint8_t *m = NULL;
	error_t got;

	if (c < 0)
		return;
	if (C[c].present[f] && !owner_blocked(c))
		expect(pm_container_map(T[t].pm, C[c].h, f, 1, CONT_MAP_READ,
					(void **)&m, NULL), 0);
	got = pm_debug_move(T[t].pm, C[c].h, f);
	if (!C[c].present[f])
		expect(got, ENOENT);
	else if (owner_blocked(c))
		expect(got, EBUSY);
	else if (got != 0 && got != EBUSY) /* EBUSY: copy-on-write */
		expect(got, 0);
	moved += got == 0;
	moved_mapped += got == 0 && m;
	if (m) {
		if (m[100] != C[c].value[f] || m[PM_FRAME_SIZE - 1] != C[c].value[f])
			fail_msg("step %lu: a mapping of moved frame %lu shows %#x, "
				 "model %#x", step, (unsigned long)f, m[100],
				 C[c].value[f]);
		pm_container_unmap(T[t].pm, m, 1);
	}
}

static void op_disconnect(int t)
{
	if (t == 0)
		return; /* task 0 also runs the checks */
	pm_disconnect(T[t].pm);
	for (int c = 0; c < NCONT; c++) {
		if (C[c].live && C[c].owner == t)
			cont_forget(c);
		if (C[c].locker == t)
			C[c].locker = -1;
		if (C[c].fenced == t)
			C[c].fenced = -1; /* it comes back as a new task */
		C[c].shared_with[t] = false;
	}
	wait_tasks(NTASK - 1);
	task_open(t);
}

static void check_accounting(void)
{
	struct pm_debug_stat st;
	struct pm_task_stat ts;
	uint64_t frames = 0;

	assert_int_equal(pm_debug_stat(T[0].pm, &st), 0);
	if (!st.invariant_ok)
		fail_msg("step %lu: the pmd's accounting check failed", step);
	for (int t = 0; t < NTASK; t++) {
		assert_int_equal(pm_task_stat(T[t].pm, &ts), 0);
		if (ts.allocated != T[t].alloc || ts.extra_allocated != T[t].extra)
			fail_msg("step %lu: task %d charged %lu/%lu, model %lu/%lu",
				 step, t, (unsigned long)ts.allocated,
				 (unsigned long)ts.extra_allocated,
				 (unsigned long)T[t].alloc, (unsigned long)T[t].extra);
		frames += T[t].alloc;
	}
	assert_int_equal(st.frames, frames);
	assert_int_equal(st.charged, frames);
}

static void random_operations_match_the_model(void **state)
{
	const char *s = getenv("PMD_TEST_SEED"), *n = getenv("PMD_TEST_STEPS");
	unsigned long steps = n ? strtoul(n, NULL, 0) : 20000;
	uint64_t seed = s ? strtoull(s, NULL, 0) : 20261125;
	time_t deadline = time(NULL) + 90;
	static void (*const ops[])(int) = {
		op_create, op_allocate, op_allocate, op_allocate, op_deallocate,
		op_write, op_write, op_read, op_read, op_map, op_copy, op_copy,
		op_share, op_unshare, op_lock, op_release, op_destroy,
		op_move, op_disconnect,
	};

	rng = seed ? seed : 1;
	fprintf(stderr, "model test: seed %llu, %lu steps "
		"(PMD_TEST_SEED/PMD_TEST_STEPS to change)\n",
		(unsigned long long)seed, steps);
	for (int c = 0; c < NCONT; c++)
		C[c].locker = C[c].fenced = -1;
	for (int t = 0; t < NTASK; t++)
		task_open(t);
	for (step = 0; step < steps && time(NULL) < deadline; step++) {
		int t = (int)rnd(NTASK);
		uint32_t k = rnd(sizeof(ops) / sizeof(ops[0]));
		/* Disconnects are rarer than the rest. */
		if (ops[k] == op_disconnect && rnd(4))
			continue;
		ops[k](t);
		check_accounting();
	}
	fprintf(stderr, "model test: %lu steps done; %lu frames moved, %lu of "
		"them mapped\n", step, moved, moved_mapped);
	assert_true(step >= 100);
	if (step >= 2000)
		assert_true(moved_mapped > 0);
	for (int t = 0; t < NTASK; t++)
		pm_disconnect(T[t].pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_operations_match_the_model),
	};
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--guarantee", "40", "--extra", "20", "--max-lock-ms",
		"600000", "--log-level", "error", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
