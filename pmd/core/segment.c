/* segment.c - see segment.h. */
#include "segment.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#include "pm_proto.h"

#define SEG_BYTES ((size_t)PMD_SEG_SLOTS * PM_FRAME_SIZE)
static_assert(PMD_SEG_SLOTS == PM_SEGMENT_SLOTS, "tasks map whole segments");

static struct pmd_segtab *guarded;
static volatile sig_atomic_t guard_hits; /* segments broken so far */
static sig_atomic_t guard_said;           /* of which logged */

static void segment_sigbus(int sig, siginfo_t *si, void *ctx)
{
	const uint8_t *a = si->si_addr;
	struct pmd_segtab *t = guarded;

	(void)sig;
	(void)ctx;
	for (uint32_t i = 0; t && i < t->len; i++) {
		struct pmd_segment *seg = t->v[i];
		if (!seg || a < seg->base || a >= seg->base + SEG_BYTES)
			continue;
		if (mmap(seg->base, SEG_BYTES, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    MAP_FAILED)
			break;
		seg->broken = 1;
		guard_hits++;
		return; /* the access runs again, on the private pages */
	}
	signal(SIGBUS, SIG_DFL); /* not a segment: the fault it is */
}

error_t pmd_segtab_guard(struct pmd_segtab *t)
{
	struct sigaction sa = { .sa_sigaction = segment_sigbus,
				.sa_flags = SA_SIGINFO };

	guarded = t;
	sigemptyset(&sa.sa_mask);
	return sigaction(SIGBUS, &sa, NULL) < 0 ? errno : 0;
}

void pmd_segtab_init(struct pmd_segtab *t)
{
	memset(t, 0, sizeof(*t));
	pmd_list_init(&t->dirty);
	pmd_list_init(&t->pool);
	pmd_list_init(&t->unshared);
}

static void segment_free(struct pmd_segtab *t, struct pmd_segment *seg)
{
	free(seg->fwd);
	t->v[seg->index] = NULL;
	if (seg->index < t->hint)
		t->hint = seg->index;
	munmap(seg->base, SEG_BYTES);
	close(seg->fd);
	free(seg);
}

void pmd_segtab_fini(struct pmd_segtab *t)
{
	struct pmd_list *pos, *tmp;

	assert(t->live == 0);
	if (guarded == t)
		guarded = NULL;
	pmd_list_for_each_safe(pos, tmp, &t->pool) {
		pmd_list_del(pos);
		segment_free(t, pmd_container_of(pos, struct pmd_segment, link));
	}
	free(t->v);
	free(t->gen);
	memset(t, 0, sizeof(*t));
}

static error_t segtab_take_index(struct pmd_segtab *t, uint32_t *index_out)
{
	for (uint32_t i = t->hint; i < t->len; i++) {
		if (!t->v[i]) {
			*index_out = i;
			return 0;
		}
	}
	if (t->len == t->cap) {
		uint32_t ncap = t->cap ? t->cap * 2 : 64;
		struct pmd_segment **v = realloc(t->v, ncap * sizeof(*v));
		if (!v)
			return ENOMEM;
		t->v = v;
		uint32_t *gen = realloc(t->gen, ncap * sizeof(*gen));
		if (!gen)
			return ENOMEM;
		t->gen = gen;
		t->cap = ncap;
	}
	t->v[t->len] = NULL;
	t->gen[t->len] = 0;
	*index_out = t->len++;
	return 0;
}

error_t pmd_segment_create(struct pmd_segtab *t, struct pmd_segment **seg_out)
{
	struct pmd_segment *seg = NULL;
	uint32_t index;
	error_t err;

	/* A pooled segment was never given to a task and is all holes. */
	if (!pmd_list_empty(&t->pool)) {
		seg = pmd_container_of(t->pool.next, struct pmd_segment, link);
		pmd_list_del(&seg->link);
		t->npool--;
		t->live++;
		seg->domain = NULL;
		*seg_out = seg;
		return 0;
	}
	err = segtab_take_index(t, &index);
	if (err)
		goto out;
	seg = calloc(1, sizeof(*seg));
	if (!seg) {
		err = ENOMEM;
		goto out;
	}
	seg->fd = memfd_create("pmd-segment", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (seg->fd < 0) {
		err = errno;
		pmd_err("memfd_create: %m");
		goto free_seg;
	}
	/* Sealed at its size: a task given it can neither cut it (and make
	 * other mappings of it fault with SIGBUS) nor grow it. */
	if (ftruncate(seg->fd, (off_t)SEG_BYTES) < 0 ||
	    fcntl(seg->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
		  F_SEAL_SEAL) < 0) {
		err = errno;
		pmd_err("sizing and sealing a segment: %m");
		goto close_fd;
	}
	seg->base = mmap(NULL, SEG_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
			 seg->fd, 0);
	if (seg->base == MAP_FAILED) {
		err = errno;
		pmd_err("mmap segment: %m");
		goto close_fd;
	}
	pmd_slots_init(&seg->slots);
	pmd_list_init(&seg->link);
	pmd_list_init(&seg->dirty_link);
	pmd_list_init(&seg->unshared_link);
	seg->index = index;
	t->gen[index]++;
	seg->id = (uint64_t)t->gen[index] << 32 | index;
	t->v[index] = seg;
	t->hint = index + 1;
	t->live++;
	*seg_out = seg;
	return 0;

close_fd:
	close(seg->fd);
free_seg:
	free(seg);
out:
	return err;
}

static void segment_flush(struct pmd_segtab *t, struct pmd_segment *seg);

void pmd_segment_destroy(struct pmd_segtab *t, struct pmd_segment *seg)
{
	assert(t->v[seg->index] == seg);
	/* Punch what is pending: a task holding the segment must not find
	 * freed frames in it. */
	segment_flush(t, seg);
	t->slots_used -= seg->slots.used;
	t->live--;
	/* (Pooled, it is holes; freed, it is gone: out of the figure.) */
	t->resident_seen -= seg->resident_seen;
	seg->resident_seen = 0;
	pmd_list_del(&seg->link);
	pmd_list_del(&seg->unshared_link); /* nobody holds it any more */
	memset(seg->unshared, 0, sizeof(seg->unshared));
	free(seg->fwd);
	seg->fwd = NULL;
	memset(seg->retired, 0, sizeof(seg->retired));
	t->slots_retired -= seg->nretired;
	seg->nretired = 0;
	/* (A pinned one has all its pages: not the holes the pool keeps.) */
	if (!seg->exposed && !seg->pinned && seg->slots.used == 0 &&
	    t->npool < PMD_SEG_POOL_MAX) {
		seg->domain = NULL;
		seg->orphaned = false;
		pmd_list_add(&t->pool, &seg->link);
		t->npool++;
		return;
	}
	segment_free(t, seg);
}

static void punch(struct pmd_segment *seg, unsigned first, unsigned n);

void pmd_segment_retire_all(struct pmd_segtab *t, struct pmd_segment *seg)
{
	int slot;

	segment_flush(t, seg); /* freed slots are free first */
	while ((slot = pmd_segment_slot_alloc(t, seg)) >= 0)
		seg->fwd[slot] = (struct pmd_fwd){ 0 }; /* never a frame's */
	for (unsigned s = 0; s < PMD_SEG_SLOTS; s++) {
		seg->slots.ref[s] = 0;
		if (pmd_segment_retired(seg, s))
			continue;
		seg->retired[s / 64] |= UINT64_C(1) << (s % 64);
		seg->nretired++;
		t->slots_retired++;
	}
	punch(seg, 0, PMD_SEG_SLOTS);
}

int pmd_segment_slot_alloc(struct pmd_segtab *t, struct pmd_segment *seg)
{
	int slot = pmd_slots_alloc(&seg->slots);

	if (slot >= 0)
		t->slots_used++;
	return slot;
}

bool pmd_segment_slot_put(struct pmd_segtab *t, struct pmd_segment *seg,
			  unsigned slot)
{
	if (!pmd_slots_unref(&seg->slots, slot)) {
		if (seg->exposed && seg->slots.ref[slot] == 1)
			pmd_segtab_unshared_note(t, seg, slot, 1);
		return false;
	}
	seg->pending[slot / 64] |= UINT64_C(1) << (slot % 64);
	if (pmd_list_empty(&seg->dirty_link))
		pmd_list_add(&t->dirty, &seg->dirty_link);
	return true;
}

/* Gives slots' pages back: they read as zeros, and a task's mapping of
 * them faults. */
/* Slots [first, first + n)'s bits of seg->physical, set or cleared. */
static void physical_mark(struct pmd_segment *seg, unsigned first, unsigned n,
			  bool on)
{
	for (unsigned s = first; s < first + n; s++) {
		uint64_t bit = UINT64_C(1) << (s % 64);
		if (on)
			seg->physical[s / 64] |= bit;
		else
			seg->physical[s / 64] &= ~bit;
	}
}

static void punch(struct pmd_segment *seg, unsigned first, unsigned n)
{
	/* Should the kernel refuse, zero them by hand: a slot is never
	 * handed out dirty. A broken segment's memfd is not our view any
	 * more. */
	if (!seg->pinned)
		physical_mark(seg, first, n, false);
	if (seg->broken) {
		memset(pmd_segment_frame(seg, first), 0, (size_t)n * PM_FRAME_SIZE);
		return;
	}
	if (fallocate(seg->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)first * PM_FRAME_SIZE, (off_t)n * PM_FRAME_SIZE) < 0) {
		pmd_warn("punching slots %u-%u of segment %#lx: %m; zeroing them",
			 first, first + n - 1, (unsigned long)seg->id);
		memset(pmd_segment_frame(seg, first), 0, (size_t)n * PM_FRAME_SIZE);
	}
}

/* Freed slots read as zeros: punched, or (pinned) zeroed in place. */
static void clear(struct pmd_segment *seg, unsigned first, unsigned n)
{
	if (seg->pinned)
		memset(pmd_segment_frame(seg, first), 0, (size_t)n * PM_FRAME_SIZE);
	else
		punch(seg, first, n);
}

static void segment_flush(struct pmd_segtab *t, struct pmd_segment *seg)
{
	unsigned slot = 0;

	if (pmd_list_empty(&seg->dirty_link))
		return;
	while (slot < PMD_SEG_SLOTS) {
		unsigned first, n = 0;

		while (slot < PMD_SEG_SLOTS &&
		       !(seg->pending[slot / 64] & (UINT64_C(1) << (slot % 64))))
			slot++;
		first = slot;
		while (slot < PMD_SEG_SLOTS &&
		       (seg->pending[slot / 64] & (UINT64_C(1) << (slot % 64)))) {
			pmd_slots_release(&seg->slots, slot);
			slot++;
			n++;
		}
		if (n) {
			clear(seg, first, n);
			t->slots_used -= n;
		}
	}
	memset(seg->pending, 0, sizeof(seg->pending));
	pmd_list_del(&seg->dirty_link);
}

void pmd_segtab_flush(struct pmd_segtab *t)
{
	while (!pmd_list_empty(&t->dirty)) {
		struct pmd_segment *seg = pmd_container_of(t->dirty.next,
							   struct pmd_segment,
							   dirty_link);
		segment_flush(t, seg);
		/* An orphan (its container gone, frames of other
		 * containers sharing its slots) goes with its last slot. */
		if (seg->orphaned && seg->slots.used == 0)
			pmd_segment_destroy(t, seg);
	}
	if (guard_hits == guard_said)
		return;
	guard_said = guard_hits;
	for (uint32_t i = 0; i < t->len; i++) {
		struct pmd_segment *seg = t->v[i];
		if (seg && seg->broken && !seg->broken_said) {
			seg->broken_said = true;
			pmd_warn("segment %#lx was truncated by a task that held "
				 "it: its frames keep what the pmd saw (zeros "
				 "where it was cut) and work through the pmd; "
				 "mappings of it fault", (unsigned long)seg->id);
		}
	}
}

void pmd_segtab_unshared_note(struct pmd_segtab *t, struct pmd_segment *seg,
			      unsigned slot, unsigned n)
{
	for (unsigned s = slot; s < slot + n && s < PMD_SEG_SLOTS; s++)
		seg->unshared[s / 64] |= UINT64_C(1) << (s % 64);
	if (pmd_list_empty(&seg->unshared_link))
		pmd_list_add(&t->unshared, &seg->unshared_link);
}

void pmd_segtab_unshared_take(struct pmd_segtab *t, pmd_unshared_fn *fn,
			      void *arg)
{
	while (!pmd_list_empty(&t->unshared)) {
		struct pmd_segment *seg = pmd_container_of(t->unshared.next,
							   struct pmd_segment,
							   unshared_link);
		unsigned run = 0;

		for (unsigned s = 0; s <= PMD_SEG_SLOTS; s++) {
			bool one = s < PMD_SEG_SLOTS &&
				   (seg->unshared[s / 64] &
				    (UINT64_C(1) << (s % 64))) &&
				   seg->slots.ref[s] == 1;
			if (one) {
				run++;
				continue;
			}
			if (run)
				fn(arg, seg, s - run, run);
			run = 0;
		}
		memset(seg->unshared, 0, sizeof(seg->unshared));
		pmd_list_del(&seg->unshared_link);
	}
}

error_t pmd_segment_fwd_reserve(struct pmd_segment *seg)
{
	if (!seg->fwd) {
		seg->fwd = calloc(PMD_SEG_SLOTS, sizeof(*seg->fwd));
		if (!seg->fwd)
			return ENOMEM;
	}
	return 0;
}

void pmd_segment_slot_retire(struct pmd_segtab *t, struct pmd_segment *seg,
			     unsigned slot, struct pmd_container *cont,
			     frame_t frame)
{
	bool last = pmd_slots_unref(&seg->slots, slot);

	assert(last && seg->fwd && !pmd_segment_retired(seg, slot));
	(void)last;
	/* The hole makes the task's mapping fault and follow the frame. A
	 * registration keeps the old page until the segment goes: zeroed
	 * first, unless a task may be reading it now (segment.h). */
	if (seg->pinned && !seg->exposed)
		memset(pmd_segment_frame(seg, slot), 0, PM_FRAME_SIZE);
	punch(seg, slot, 1);
	seg->retired[slot / 64] |= UINT64_C(1) << (slot % 64);
	seg->fwd[slot] = (struct pmd_fwd){ .cont = cont, .frame = frame };
	seg->nretired++;
	t->slots_retired++;
}

void pmd_segment_release_retired(struct pmd_segtab *t, struct pmd_segment *seg)
{
	for (unsigned slot = 0; seg->nretired && slot < PMD_SEG_SLOTS; slot++) {
		if (!pmd_segment_retired(seg, slot))
			continue;
		seg->retired[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
		seg->fwd[slot].cont = NULL;
		pmd_slots_release(&seg->slots, slot);
		t->slots_used--;
		t->slots_retired--;
		seg->nretired--;
	}
}

void pmd_segment_ready(struct pmd_segment *seg, unsigned first, unsigned n)
{
	off_t off = (off_t)first * PM_FRAME_SIZE, len = (off_t)n * PM_FRAME_SIZE;

	if (seg->broken || seg->pinned) {
		memset(pmd_segment_frame(seg, first), 0, (size_t)len);
		physical_mark(seg, first, n, true);
		return;
	}
	physical_mark(seg, first, n, false);
	if (fallocate(seg->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      off, len) < 0) {
		pmd_warn("clearing slots %u-%u of segment %#lx: %m; zeroing them",
			 first, first + n - 1, (unsigned long)seg->id);
		memset(pmd_segment_frame(seg, first), 0, (size_t)len);
	}
}

void pmd_segment_make_physical(struct pmd_segment *seg, unsigned first,
			       unsigned n)
{
	if (seg->broken || seg->pinned) {
		physical_mark(seg, first, n, true);
		return;
	}
	/* Out of memory here leaves the pages to be found at first touch,
	 * as without it; say so once in a while, do not fail. */
	if (fallocate(seg->fd, FALLOC_FL_KEEP_SIZE, (off_t)first * PM_FRAME_SIZE,
		      (off_t)n * PM_FRAME_SIZE) < 0) {
		static unsigned warned;
		if (warned++ % 1024 == 0)
			pmd_warn("allocating slots %u-%u of segment %#lx: %m",
				 first, first + n - 1, (unsigned long)seg->id);
		return;
	}
	physical_mark(seg, first, n, true);
}

void pmd_segment_populate(struct pmd_segment *seg, unsigned first, unsigned n)
{
	pmd_segment_ready(seg, first, n);
	pmd_segment_make_physical(seg, first, n);
}

void pmd_segment_fill(struct pmd_segment *seg, unsigned slot, const void *src)
{
	off_t off = (off_t)slot * PM_FRAME_SIZE;

	assert(slot < PMD_SEG_SLOTS);
	/* (A write the kernel refused, out of memory: the store through
	 * our mapping finds the page at its fault, as a first touch does.) */
	if (seg->broken || seg->pinned ||
	    pwrite(seg->fd, src, PM_FRAME_SIZE, off) != PM_FRAME_SIZE)
		memcpy(pmd_segment_frame(seg, slot), src, PM_FRAME_SIZE);
	physical_mark(seg, slot, 1, true);
}

uint64_t pmd_segtab_resident(const struct pmd_segtab *t)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < t->len; i++)
		if (t->v[i])
			sum += pmd_segment_resident(t->v[i]);
	return sum;
}

uint64_t pmd_segtab_resident_sweep(struct pmd_segtab *t, uint32_t max)
{
	for (uint32_t k = 0; k < max && k < t->len; k++) {
		struct pmd_segment *seg;
		uint64_t r;

		if (t->sweep >= t->len)
			t->sweep = 0;
		seg = t->v[t->sweep++];
		if (!seg)
			continue;
		r = pmd_segment_resident(seg);
		t->resident_seen += r - seg->resident_seen;
		seg->resident_seen = r;
	}
	return t->resident_seen;
}

void pmd_segment_written(struct pmd_segment *seg, unsigned slot)
{
	physical_mark(seg, slot, 1, true);
}

uint64_t pmd_segment_resident(const struct pmd_segment *seg)
{
	struct stat st;

	if (seg->broken || fstat(seg->fd, &st) < 0)
		return (uint64_t)PMD_SEG_SLOTS * PM_FRAME_SIZE;
	return (uint64_t)st.st_blocks * 512;
}

void pmd_segment_pin(struct pmd_segment *seg)
{
	assert(seg->slots.used == 0);
	pmd_segment_populate(seg, 0, PMD_SEG_SLOTS);
	seg->pinned = true;
}
