/* view.c - see view.h. */
#include "view.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

#define VIEW_ID_BIT (UINT64_C(1) << 63) /* apart from segment ids */

static uint64_t next_view_id;

/* Grow before the table is 3/4 full: probes stay short. */
bool pmd_view_fits(const struct pmd_view *v, uint64_t count)
{
	return count <= (uint64_t)v->nbuckets / 4 * 3;
}

error_t pmd_view_create(uint64_t want, struct pmd_view **view_out)
{
	struct pmd_view *v = calloc(1, sizeof(*v));
	uint64_t n = 64;
	error_t err;

	if (!v)
		return ENOMEM;
	while (n / 4 * 3 < want)
		n *= 2;
	if (n > UINT32_MAX) {
		err = ENOMEM;
		goto free_view;
	}
	v->nbuckets = (uint32_t)n;
	v->bytes = sizeof(struct pm_view_hdr) + n * sizeof(struct pm_view_entry);
	v->fd = memfd_create("pmd-view", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (v->fd < 0) {
		err = errno;
		pmd_err("memfd_create (view): %m");
		goto free_view;
	}
	if (ftruncate(v->fd, (off_t)v->bytes) < 0) {
		err = errno;
		goto close_fd;
	}
	v->hdr = mmap(NULL, v->bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->hdr == MAP_FAILED) {
		err = errno;
		goto close_fd;
	}
	/* From now on nobody else can map it writable: tasks get it
	 * read-only whatever they try. */
	if (fcntl(v->fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK |
		  F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		err = errno;
		pmd_err("sealing a view: %m");
		goto unmap;
	}
	v->e = (struct pm_view_entry *)(v->hdr + 1);
	v->id = VIEW_ID_BIT | ++next_view_id;
	v->hdr->magic = PM_VIEW_MAGIC;
	v->hdr->state = PM_VIEW_LIVE;
	v->hdr->id = v->id;
	v->hdr->nbuckets = v->nbuckets;
	pmd_list_init(&v->settle_link);
	*view_out = v;
	return 0;

unmap:
	munmap(v->hdr, v->bytes);
close_fd:
	close(v->fd);
free_view:
	free(v);
	return err;
}

void pmd_view_destroy(struct pmd_view *v)
{
	if (!v)
		return;
	pmd_list_del(&v->settle_link);
	v->unsettled = NULL;
	pmd_view_begin(v);
	__atomic_store_n(&v->hdr->state, PM_VIEW_DEAD, __ATOMIC_RELAXED);
	pmd_view_end(v);
	munmap(v->hdr, v->bytes);
	close(v->fd);
	free(v);
}

/*
 * Seqlock, writer side. Readers copy entries with relaxed atomic loads and
 * check seq around the copy with acquire loads; the release fence after
 * making seq odd orders it before the writes, the release store of the
 * even value after them.
 */
void pmd_view_begin(struct pmd_view *v)
{
	uint64_t s = __atomic_load_n(&v->hdr->seq, __ATOMIC_RELAXED);

	assert(!(s & 1));
	__atomic_store_n(&v->hdr->seq, s + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

/* f's bucket: its entry, or the empty bucket where it would go. */
static uint32_t view_bucket(const struct pmd_view *v, frame_t f)
{
	uint32_t mask = v->nbuckets - 1, i = pm_view_hash(f, v->nbuckets);

	while ((v->e[i].flags & PM_VIEW_USED) && v->e[i].frame != f)
		i = (i + 1) & mask;
	return i;
}

static struct pm_view_entry *view_find(struct pmd_view *v, frame_t f)
{
	uint32_t i = view_bucket(v, f);

	return v->e[i].flags & PM_VIEW_USED ? &v->e[i] : NULL;
}

static void dirty(struct pmd_view *v, frame_t f)
{
	if (!v->dn++) {
		v->dlo = v->dhi = f;
	} else if (f < v->dlo) {
		v->dlo = f;
	} else if (f > v->dhi) {
		v->dhi = f;
	}
}

/* e's run, given the entry of the frame after it (NULL: none). */
static uint16_t run_flags(const struct pm_view_entry *e,
			  const struct pm_view_entry *next)
{
	const uint16_t unclean = PM_VIEW_COW | PM_VIEW_HOLE;
	uint16_t low = e->flags & ((1u << PM_VIEW_RUN_SHIFT) - 1);
	unsigned run = 0;

	if (!(e->flags & unclean)) {
		run = 1;
		if (next && !(next->flags & unclean) &&
		    next->segment == e->segment &&
		    next->slot == (uint32_t)e->slot + 1)
			run += PM_VIEW_RUN(next->flags);
		if (run > PM_VIEW_RUN_MAX)
			run = PM_VIEW_RUN_MAX;
	}
	return (uint16_t)(low | run << PM_VIEW_RUN_SHIFT);
}

static int frame_desc(const void *a, const void *b)
{
	frame_t x = (*(const struct pm_view_entry *const *)a)->frame;
	frame_t y = (*(const struct pm_view_entry *const *)b)->frame;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* Every entry's run anew: entries in descending frame order. Without
 * memory for the order, every run is 0 (maps then look each frame up). */
static void runs_rebuild(struct pmd_view *v)
{
	struct pm_view_entry **order = malloc(v->hdr->count * sizeof(*order)
					      + 1);
	const struct pm_view_entry *next = NULL;
	uint64_t n = 0;

	for (uint32_t i = 0; i < v->nbuckets; i++) {
		if (!(v->e[i].flags & PM_VIEW_USED))
			continue;
		if (order)
			order[n++] = &v->e[i];
		else
			__atomic_store_n(&v->e[i].flags,
					 (uint16_t)(v->e[i].flags &
					 ((1u << PM_VIEW_RUN_SHIFT) - 1)),
					 __ATOMIC_RELAXED);
	}
	if (!order)
		return;
	qsort(order, n, sizeof(*order), frame_desc);
	for (uint64_t k = 0; k < n; k++) {
		struct pm_view_entry *e = order[k];
		bool follows = next && e->frame != UINT64_MAX &&
			       next->frame == e->frame + 1;

		__atomic_store_n(&e->flags, run_flags(e, follows ? next : NULL),
				 __ATOMIC_RELAXED);
		next = e;
	}
	free(order);
}

/* The runs of the frames changed in [lo, hi] (n changes), and of those
 * before them whose run they end or lengthen (a run stays within one
 * segment, so nothing further down changes once a run comes out as it
 * was); short_ok, one before lo that would only lengthen is left as it
 * is, and so are those before it (runs stay no longer than the truth):
 * then the frame where it stopped is returned, else UINT64_MAX (every run
 * exact). A sparse range of changes (the view filled anew) has every run
 * rebuilt. */
static frame_t runs_fix(struct pmd_view *v, frame_t lo, frame_t hi,
			uint64_t n, bool short_ok)
{
	const struct pm_view_entry *next;

	if (hi - lo > 4 * n + 64) {
		runs_rebuild(v);
		return UINT64_MAX;
	}
	next = hi == UINT64_MAX ? NULL : view_find(v, hi + 1);
	for (frame_t f = hi;; f--) {
		struct pm_view_entry *e = view_find(v, f);

		if (e) {
			uint16_t fl = run_flags(e, next);

			if (f < lo && fl == e->flags)
				return UINT64_MAX;
			if (f < lo && short_ok &&
			    PM_VIEW_RUN(e->flags) < PM_VIEW_RUN(fl))
				return f;
			__atomic_store_n(&e->flags, fl, __ATOMIC_RELAXED);
		} else if (f < lo) {
			return UINT64_MAX;
		}
		next = e;
		if (f == 0)
			return UINT64_MAX;
	}
}

void pmd_view_end(struct pmd_view *v)
{
	uint64_t s = __atomic_load_n(&v->hdr->seq, __ATOMIC_RELAXED);
	frame_t low;

	assert(s & 1);
	/* What a deferred view's end leaves short is at or after low, or
	 * chained to it (an entry of [low, dhi] whose run a short next
	 * cut). */
	low = v->dn ? runs_fix(v, v->dlo, v->dhi, v->dn, v->unsettled != NULL)
		    : UINT64_MAX;
	if (low != UINT64_MAX) {
		if (!v->sn)
			pmd_list_add(v->unsettled, &v->settle_link);
		v->slo = !v->sn || low < v->slo ? low : v->slo;
		v->shi = !v->sn || v->dhi > v->shi ? v->dhi : v->shi;
		v->sn += v->dn;
	}
	v->dn = 0;
	__atomic_store_n(&v->hdr->seq, s + 1, __ATOMIC_RELEASE);
}

void pmd_view_defer(struct pmd_view *v, struct pmd_list *unsettled)
{
	v->unsettled = unsettled;
}

void pmd_view_settle_all(struct pmd_list *unsettled, uint64_t min_changes)
{
	struct pmd_list *pos, *tmp;

	pmd_list_for_each_safe(pos, tmp, unsettled) {
		struct pmd_view *v = pmd_container_of(pos, struct pmd_view,
						      settle_link);

		if (v->sn < min_changes)
			continue;
		/* Outside begin/end: settling only lengthens runs to what
		 * the view holds since its last end, so a reader may see
		 * any mix of old and new runs and map by either (the fence
		 * orders that end before the new runs); a reader that
		 * found seq odd would have asked the pmd instead. */
		assert(!(__atomic_load_n(&v->hdr->seq, __ATOMIC_RELAXED) & 1));
		pmd_list_del(pos);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		/* (Ends far apart: a walk of the range unless it is longer
		 * than the view.) */
		runs_fix(v, v->slo, v->shi,
			 v->sn > v->hdr->count / 4 ? v->sn : v->hdr->count / 4,
			 false);
		v->sn = 0;
	}
}

static void entry_store(struct pm_view_entry *d, const struct pm_view_entry *s)
{
	__atomic_store_n(&d->frame, s->frame, __ATOMIC_RELAXED);
	__atomic_store_n(&d->segment, s->segment, __ATOMIC_RELAXED);
	__atomic_store_n(&d->slot, s->slot, __ATOMIC_RELAXED);
	__atomic_store_n(&d->gen, s->gen, __ATOMIC_RELAXED);
	__atomic_store_n(&d->flags, s->flags, __ATOMIC_RELAXED);
}

void pmd_view_set(struct pmd_view *v, frame_t f, uint64_t segment,
		  uint16_t slot, uint16_t flags, uint32_t gen)
{
	uint32_t i = view_bucket(v, f);
	struct pm_view_entry ent = { .frame = f, .segment = segment,
				     .slot = slot, .gen = gen,
				     .flags = (uint16_t)((flags | PM_VIEW_USED) &
					 ((1u << PM_VIEW_RUN_SHIFT) - 1)) };

	if (!(v->e[i].flags & PM_VIEW_USED)) {
		assert(pmd_view_fits(v, v->hdr->count + 1));
		v->hdr->count++;
	}
	entry_store(&v->e[i], &ent);
	dirty(v, f);
}

void pmd_view_del(struct pmd_view *v, frame_t f)
{
	uint32_t mask = v->nbuckets - 1, i = view_bucket(v, f);
	static const struct pm_view_entry empty;

	if (!(v->e[i].flags & PM_VIEW_USED))
		return;
	dirty(v, f);
	/* Backward shift: move later entries of the probe run into the
	 * hole, so lookups never need tombstones. */
	for (uint32_t j = (i + 1) & mask; v->e[j].flags & PM_VIEW_USED;
	     j = (j + 1) & mask) {
		uint32_t home = pm_view_hash(v->e[j].frame, v->nbuckets);
		bool movable = (j > i) ? (home <= i || home > j)
				       : (home <= i && home > j);
		if (movable) {
			entry_store(&v->e[i], &v->e[j]);
			i = j;
		}
	}
	entry_store(&v->e[i], &empty);
	v->hdr->count--;
}

void pmd_view_set_locker(struct pmd_view *v, pm_task_t locker)
{
	__atomic_store_n(&v->hdr->locker, locker, __ATOMIC_RELAXED);
}
