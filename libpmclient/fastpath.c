/*
 * fastpath.c - the local fast path. Every segment the pmd passes is
 * mapped whole, once, read-only and read/write; every container mapped
 * once comes with its frame view (pm_proto.h). A map of frames the view
 * shows resident in segments we hold is then a look-up and pointer
 * arithmetic (one mmap per run when the frames are scattered), with no
 * message. The fast path reads the two directories (segment index ->
 * segment, handle -> view) without the lock: entries are published with
 * release stores and never freed before pm_disconnect.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"

/* The segment with this id, or NULL. Lock-free. */
struct pmc_seg *pmc_seg_get(struct pm *pm, uint64_t id)
{
	uint32_t index = (uint32_t)id;
	struct pmc_seg **chunk, *g;

	if (index >= PMC_DIR_MAX)
		return NULL;
	chunk = __atomic_load_n(&pm->segdir[index >> PMC_DIR_BITS], __ATOMIC_ACQUIRE);
	if (!chunk)
		return NULL;
	g = __atomic_load_n(&chunk[index & (PMC_DIR_SIZE - 1)], __ATOMIC_ACQUIRE);
	return g && g->id == id ? g : NULL;
}

/* Where the next segment's two views go: in the reserved range while it
 * lasts (NULL, NULL: anywhere). Must hold pm->lock. */
static void view_place(struct pm *pm, uint8_t **ro, uint8_t **rw)
{
	*ro = *rw = NULL;
	if (!pm->vbase && !pm->views_outside) {
		void *p = mmap(NULL, PMC_VIEW_SPAN, PROT_NONE, MAP_PRIVATE |
			       MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p != MAP_FAILED)
			__atomic_store_n(&pm->vbase, (uint8_t *)p, __ATOMIC_RELEASE);
	}
	if (!pm->vbase || pm->vnext == PMC_VIEW_PAIRS) {
		__atomic_store_n(&pm->views_outside, true, __ATOMIC_RELEASE);
		return;
	}
	*ro = pm->vbase + pm->vnext * 2 * PMC_SEG_BYTES;
	*rw = *ro + PMC_SEG_BYTES;
	pm->vnext++;
}

/* Undoes one view of a failed seg_add; inside the reserved range the
 * place is reserved again, never left for another mapping to take. */
static void view_release(struct pm *pm, uint8_t *view)
{
	if (view == MAP_FAILED || !view)
		return;
	if (pm->vbase && view >= pm->vbase && view < pm->vbase + PMC_VIEW_SPAN)
		mmap(view, PMC_SEG_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
		     MAP_NORESERVE | MAP_FIXED, -1, 0);
	else
		munmap(view, PMC_SEG_BYTES);
}

/* Takes fd as segment id's descriptor and maps the segment whole (closing
 * fd if we hold the segment already). Must hold pm->lock. */
error_t pmc_seg_add(struct pm *pm, uint64_t id, int fd)
{
	uint32_t index = (uint32_t)id;
	struct pmc_seg **chunk, *g;
	uint8_t *want_ro = NULL, *want_rw = NULL;
	error_t err = 0;

	if (pmc_seg_get(pm, id)) {
		close(fd);
		return 0;
	}
	if (index >= PMC_DIR_MAX) {
		err = ENOMEM;
		goto close_fd;
	}
	chunk = pm->segdir[index >> PMC_DIR_BITS];
	if (!chunk) {
		chunk = calloc(PMC_DIR_SIZE, sizeof(*chunk));
		if (!chunk) {
			err = ENOMEM;
			goto close_fd;
		}
		__atomic_store_n(&pm->segdir[index >> PMC_DIR_BITS], chunk,
				 __ATOMIC_RELEASE);
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		err = ENOMEM;
		goto close_fd;
	}
	g->id = id;
	g->fd = fd;
	view_place(pm, &want_ro, &want_rw);
	g->ro = mmap(want_ro, PMC_SEG_BYTES, PROT_READ,
		     MAP_SHARED | (want_ro ? MAP_FIXED : 0), fd, 0);
	g->rw = mmap(want_rw, PMC_SEG_BYTES, PROT_READ | PROT_WRITE,
		     MAP_SHARED | (want_rw ? MAP_FIXED : 0), fd, 0);
	if (g->ro == MAP_FAILED || g->rw == MAP_FAILED) {
		err = errno;
		goto unmap;
	}
	err = pmc_follow_add(&pm->follow, g->ro, PMC_SEG_BYTES, id, 0, PROT_READ,
			     0, 0);
	if (!err)
		err = pmc_follow_add(&pm->follow, g->rw, PMC_SEG_BYTES, id, 0,
				     PROT_READ | PROT_WRITE, 0, 0);
	if (err) {
		pmc_follow_forget(&pm->follow, g->ro, PMC_SEG_BYTES);
		goto unmap;
	}
	g->next = pm->all_segs;
	pm->all_segs = g;
	/* A reused index replaces an older segment's entry; the old one
	 * stays mapped (and on all_segs) for mappings that still use it. */
	__atomic_store_n(&chunk[index & (PMC_DIR_SIZE - 1)], g, __ATOMIC_RELEASE);
	return 0;
unmap:
	view_release(pm, want_ro ? want_ro : g->ro);
	view_release(pm, want_rw ? want_rw : g->rw);
	free(g);
close_fd:
	close(fd);
	return err;
}

/* The view mapped for handle h, or NULL. Lock-free. */
static struct pmc_view *hview_get(struct pm *pm, container_t h)
{
	uint64_t index = (h & UINT32_MAX) - 1;
	struct pmc_hview *chunk, *e;

	if (index >= PMC_DIR_MAX)
		return NULL;
	chunk = __atomic_load_n(&pm->hdir[index >> PMC_DIR_BITS], __ATOMIC_ACQUIRE);
	if (!chunk)
		return NULL;
	e = &chunk[index & (PMC_DIR_SIZE - 1)];
	if (__atomic_load_n(&e->handle, __ATOMIC_ACQUIRE) != h)
		return NULL;
	return __atomic_load_n(&e->view, __ATOMIC_ACQUIRE);
}

/* Records v as h's view (NULL: forget). Must hold pm->lock. */
void pmc_hview_set(struct pm *pm, container_t h, struct pmc_view *v)
{
	uint64_t index = (h & UINT32_MAX) - 1;
	struct pmc_hview *chunk;

	if (index >= PMC_DIR_MAX)
		return;
	chunk = pm->hdir[index >> PMC_DIR_BITS];
	if (!chunk) {
		if (!v)
			return;
		chunk = calloc(PMC_DIR_SIZE, sizeof(*chunk));
		if (!chunk)
			return; /* the fast path just stays off for h */
		__atomic_store_n(&pm->hdir[index >> PMC_DIR_BITS], chunk,
				 __ATOMIC_RELEASE);
	}
	/* Readers check the handle after reading it, then the view: clear
	 * the handle first, set it last. */
	__atomic_store_n(&chunk[index & (PMC_DIR_SIZE - 1)].handle, 0,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&chunk[index & (PMC_DIR_SIZE - 1)].view, v,
			 __ATOMIC_RELEASE);
	if (v)
		__atomic_store_n(&chunk[index & (PMC_DIR_SIZE - 1)].handle, h,
				 __ATOMIC_RELEASE);
}

/* The view with this id among those we hold, mapping fd (>= 0) if new.
 * Must hold pm->lock. */
struct pmc_view *pmc_view_add(struct pm *pm, uint64_t id, int fd)
{
	struct pmc_view *v;
	struct stat st;

	for (v = pm->all_views; v; v = v->next)
		if (v->id == id)
			break;
	if (v || fd < 0) {
		if (fd >= 0)
			close(fd);
		return v;
	}
	v = calloc(1, sizeof(*v));
	if (!v || fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(*v->hdr))
		goto fail;
	v->bytes = (size_t)st.st_size;
	v->hdr = mmap(NULL, v->bytes, PROT_READ, MAP_SHARED, fd, 0);
	if (v->hdr == MAP_FAILED)
		goto fail;
	close(fd);
	if (v->hdr->magic != PM_VIEW_MAGIC || v->hdr->id != id ||
	    !v->hdr->nbuckets || (v->hdr->nbuckets & (v->hdr->nbuckets - 1)) ||
	    sizeof(*v->hdr) + (size_t)v->hdr->nbuckets *
	    sizeof(struct pm_view_entry) > v->bytes) {
		munmap((void *)v->hdr, v->bytes);
		free(v);
		return NULL;
	}
	v->id = id;
	v->next = pm->all_views;
	pm->all_views = v;
	return v;
fail:
	free(v);
	close(fd);
	return NULL;
}

/*
 * Looks frame f up in view v (seqlock reader: copy, then check that the
 * pmd wrote nothing meanwhile). False when the frame is not there, the
 * view is dead or locked against us, or the pmd kept writing: the caller
 * asks the pmd.
 */
static bool view_lookup(const struct pmc_view *v, pm_task_t self, frame_t f,
			struct pm_view_entry *out)
{
	const struct pm_view_hdr *h = v->hdr;
	const struct pm_view_entry *e = (const struct pm_view_entry *)(h + 1);
	uint32_t mask = h->nbuckets - 1;

	for (int tries = 0; tries < 16; tries++) {
		uint64_t s1 = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
		bool found = false;
		uint64_t locker;

		if (s1 & 1)
			continue;
		if (__atomic_load_n(&h->state, __ATOMIC_RELAXED) != PM_VIEW_LIVE)
			return false;
		locker = __atomic_load_n(&h->locker, __ATOMIC_RELAXED);
		uint32_t i = pm_view_hash(f, mask + 1);
		for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
			uint16_t flags = __atomic_load_n(&e[i].flags, __ATOMIC_RELAXED);
			if (!(flags & PM_VIEW_USED))
				break;
			if (__atomic_load_n(&e[i].frame, __ATOMIC_RELAXED) != f)
				continue;
			out->frame = f;
			out->segment = __atomic_load_n(&e[i].segment, __ATOMIC_RELAXED);
			out->slot = __atomic_load_n(&e[i].slot, __ATOMIC_RELAXED);
			out->gen = __atomic_load_n(&e[i].gen, __ATOMIC_RELAXED);
			out->flags = flags;
			found = true;
			break;
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) == s1)
			return found && (!locker || locker == self);
	}
	return false;
}

/* Whether the last note of g was slots slot.. for frames start.. of c,
 * at least n of them (then rev holds them: every note is recorded there
 * before it is recorded as the last). Lock-free. */
static bool rev_last_is(const struct pmc_seg *g, uint16_t slot, container_t c,
			frame_t start, int n)
{
	uint64_t s1 = __atomic_load_n(&g->last.seq, __ATOMIC_ACQUIRE);
	bool same;

	if (s1 & 1)
		return false;
	same = __atomic_load_n(&g->last.cont, __ATOMIC_RELAXED) == c &&
	       __atomic_load_n(&g->last.slot, __ATOMIC_RELAXED) <= slot &&
	       __atomic_load_n(&g->last.start, __ATOMIC_RELAXED) ==
		       start - (slot - __atomic_load_n(&g->last.slot,
						       __ATOMIC_RELAXED)) &&
	       __atomic_load_n(&g->last.slot, __ATOMIC_RELAXED) +
		       __atomic_load_n(&g->last.n, __ATOMIC_RELAXED) >=
		       (uint32_t)slot + (uint32_t)n;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return same && __atomic_load_n(&g->last.seq, __ATOMIC_RELAXED) == s1;
}

/*
 * Notes that the segment's addresses of slots slot.. now stand for frames
 * start.. of c, so that a fault there can be resolved from the view. The
 * common cases (within the run noted last, or every slot noted already)
 * take no lock; the first looks at no slot.
 */
static bool rev_note(struct pm *pm, struct pmc_seg *g, uint16_t slot,
		     container_t c, frame_t start, int n)
{
	struct pmc_rev *rev = __atomic_load_n(&g->rev, __ATOMIC_ACQUIRE);
	bool same = rev != NULL;

	if (same && rev_last_is(g, slot, c, start, n))
		return true;
	for (int i = 0; same && i < n; i++)
		same = __atomic_load_n(&rev[slot + i].cont, __ATOMIC_RELAXED) == c &&
		       __atomic_load_n(&rev[slot + i].frame, __ATOMIC_RELAXED) ==
			       start + (frame_t)i;
	if (same)
		return true;
	pthread_mutex_lock(&pm->follow.lock);
	if (!g->rev)
		__atomic_store_n(&g->rev, calloc(PM_SEGMENT_SLOTS, sizeof(*g->rev)),
				 __ATOMIC_RELEASE);
	rev = g->rev;
	for (int i = 0; rev && i < n; i++) {
		__atomic_store_n(&rev[slot + i].cont, c, __ATOMIC_RELAXED);
		__atomic_store_n(&rev[slot + i].frame, start + (frame_t)i,
				 __ATOMIC_RELAXED);
	}
	if (rev) { /* the last note, after its slots */
		uint64_t s = g->last.seq;

		__atomic_store_n(&g->last.seq, s + 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		__atomic_store_n(&g->last.cont, c, __ATOMIC_RELAXED);
		__atomic_store_n(&g->last.start, start, __ATOMIC_RELAXED);
		__atomic_store_n(&g->last.slot, slot, __ATOMIC_RELAXED);
		__atomic_store_n(&g->last.n, (uint32_t)n, __ATOMIC_RELAXED);
		__atomic_store_n(&g->last.seq, s + 2, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&pm->follow.lock);
	return rev != NULL;
}

/* pmc_local_fn: the current place of a frame, from the session's view. */
bool pmc_local_place(void *arg, uint64_t seg, uint32_t slot, container_t c,
		     frame_t f, struct pmc_place *out)
{
	struct pm *pm = arg;
	struct pm_view_entry e;
	struct pmc_view *v;
	struct pmc_seg *g;

	if (!c) {
		g = pmc_seg_get(pm, seg);
		if (!g || slot >= PM_SEGMENT_SLOTS)
			return false;
		pthread_mutex_lock(&pm->follow.lock);
		if (g->rev) {
			c = g->rev[slot].cont;
			f = g->rev[slot].frame;
		}
		pthread_mutex_unlock(&pm->follow.lock);
		if (!c)
			return false;
	}
	out->cont = c; /* (known even when the view cannot say where) */
	out->frame = f;
	v = hview_get(pm, c);
	if (!v || !view_lookup(v, pm->task, f, &e) || (e.flags & PM_VIEW_HOLE))
		return false; /* the pmd knows better (or makes it physical) */
	g = pmc_seg_get(pm, e.segment);
	*out = (struct pmc_place){ .cont = c, .frame = f, .seg = e.segment,
				   .slot = e.slot, .cow = e.flags & PM_VIEW_COW,
				   .fd = g ? g->fd : -1 };
	return true;
}

static bool map_fast(struct pm *pm, struct pmc_view *v, container_t c,
		     frame_t start, int n, int flags, struct pm_view_entry *ents,
		     void **addr, int *granted);

/*
 * The fast path: maps frames start.. (any number of them) from the view
 * and the segments we hold, without a message. False (nothing done)
 * whenever any frame needs the pmd: not in the view, in a segment we do
 * not hold, copy-on-write under FORCE_WRITE, a lock, a dead view.
 */
bool pmc_map_fast(struct pm *pm, container_t c, frame_t start, int n,
		  int flags, void **addr, int *granted)
{
	struct pm_view_entry small[16], *ents = small, e0;
	struct pmc_view *v = hview_get(pm, c);
	struct pmc_seg *g0;
	bool ok;

	if (!v || !(flags & (CONT_MAP_READ | CONT_MAP_WRITE)) ||
	    (flags & ~(CONT_MAP_READ | CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE)))
		return false;
	/* Frames in one run of the view (PM_VIEW_RUN): one look-up and a
	 * pointer into the segment's mapping, whatever their number. */
	if (view_lookup(v, pm->task, start, &e0) &&
	    PM_VIEW_RUN(e0.flags) >= (unsigned)n &&
	    (g0 = pmc_seg_get(pm, e0.segment)) &&
	    (!pmc_follow_on(&pm->follow) ||
	     rev_note(pm, g0, e0.slot, c, start, n))) {
		*addr = ((flags & CONT_MAP_WRITE) ? g0->rw : g0->ro) +
			(size_t)e0.slot * PM_FRAME_SIZE;
		if (granted)
			*granted = CONT_MAP_READ | (flags & CONT_MAP_WRITE);
		return true;
	}
	if (n > (int)(sizeof(small) / sizeof(small[0])) &&
	    !(ents = malloc((size_t)n * sizeof(*ents))))
		return false; /* the pmd then */
	ok = map_fast(pm, v, c, start, n, flags, ents, addr, granted);
	if (ents != small)
		free(ents);
	return ok;
}

static bool map_fast(struct pm *pm, struct pmc_view *v, container_t c,
		     frame_t start, int n, int flags, struct pm_view_entry *ents,
		     void **addr, int *granted)
{
	bool want_write = flags & CONT_MAP_WRITE;
	bool writable = want_write, one_run = true;
	struct pmc_seg *g0 = NULL;

	for (int i = 0; i < n; i++) {
		struct pmc_seg *g;

		if (!view_lookup(v, pm->task, start + (frame_t)i, &ents[i]))
			return false;
		g = pmc_seg_get(pm, ents[i].segment);
		if (!g)
			return false;
		if (ents[i].flags & PM_VIEW_HOLE)
			return false; /* the pmd makes it physical first */
		if (ents[i].flags & PM_VIEW_COW) {
			/* The pmd makes the copy (FORCE_WRITE), or knows
			 * whether the frame is still shared (the flag
			 * outlives the share until the pmd looks). */
			if (want_write)
				return false;
			writable = false;
			/* A shared slot's address in the whole-segment view
			 * would stand for every frame that shares it: a
			 * copy-on-write frame gets an address of its own,
			 * which follows it alone when the copy breaks. */
			one_run = false;
		}
		if (i == 0)
			g0 = g;
		else if (g != g0 || ents[i].slot != ents[0].slot + i)
			one_run = false;
	}
	if (one_run) {
		uint8_t *base = writable ? g0->rw : g0->ro;
		if (pmc_follow_on(&pm->follow) &&
		    !rev_note(pm, g0, ents[0].slot, c, start, n))
			return false;
		*addr = base + (size_t)ents[0].slot * PM_FRAME_SIZE;
	} else {
		/* Scattered frames: one mmap per run of consecutive slots of
		 * one segment, into a reserved range (still no message). */
		size_t size = (size_t)n * PM_FRAME_SIZE;
		int prot = PROT_READ | (writable ? PROT_WRITE : 0);
		uint8_t *region = mmap(NULL, size, PROT_NONE, MAP_PRIVATE |
				       MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (region == MAP_FAILED)
			return false;
		bool ok = true;

		for (int i = 0, run; i < n && ok; i += run) {
			struct pmc_seg *g = pmc_seg_get(pm, ents[i].segment);
			uint8_t *at = region + (size_t)i * PM_FRAME_SIZE;

			for (run = 1; i + run < n &&
			     ents[i + run].segment == ents[i].segment &&
			     ents[i + run].slot == ents[i].slot + run; run++)
				;
			ok = mmap(at, (size_t)run * PM_FRAME_SIZE, prot,
				  MAP_SHARED | MAP_FIXED, g->fd,
				  (off_t)ents[i].slot * PM_FRAME_SIZE) != MAP_FAILED;
		}
		/* One registration for the whole range, then the runs. */
		ok = ok && !pmc_follow_register(&pm->follow, region, size);
		for (int i = 0, run; i < n && ok; i += run) {
			for (run = 1; i + run < n &&
			     ents[i + run].segment == ents[i].segment &&
			     ents[i + run].slot == ents[i].slot + run; run++)
				;
			ok = !pmc_follow_note(&pm->follow,
					      region + (size_t)i * PM_FRAME_SIZE,
					      (size_t)run * PM_FRAME_SIZE,
					      ents[i].segment, ents[i].slot, prot,
					      c, start + (frame_t)i);
		}
		if (!ok) {
			pmc_follow_forget(&pm->follow, region, size);
			munmap(region, size);
			return false;
		}
		*addr = region;
	}
	if (granted)
		*granted = CONT_MAP_READ | (writable ? CONT_MAP_WRITE : 0);
	return true;
}

/* Whether addr lies in the whole-segment views (maps of the fast path,
 * released with the session, not by unmap). */
bool pmc_in_segment_view(struct pm *pm, const uint8_t *addr)
{
	uint8_t *base = __atomic_load_n(&pm->vbase, __ATOMIC_ACQUIRE);
	bool hit = false;

	if (base && addr >= base && addr < base + PMC_VIEW_SPAN)
		return true;
	if (!__atomic_load_n(&pm->views_outside, __ATOMIC_ACQUIRE))
		return false;
	pthread_mutex_lock(&pm->lock);
	for (struct pmc_seg *g = pm->all_segs; g && !hit; g = g->next)
		hit = (addr >= g->ro && addr < g->ro + PMC_SEG_BYTES) ||
		      (addr >= g->rw && addr < g->rw + PMC_SEG_BYTES);
	pthread_mutex_unlock(&pm->lock);
	return hit;
}


int pmc_seg_fd(void *arg, uint64_t id)
{
	struct pmc_seg *g = pmc_seg_get(arg, id);

	return g ? g->fd : -1;
}

void pmc_fast_fini(struct pm *pm)
{
	for (struct pmc_seg *g = pm->all_segs, *n; g; g = n) {
		n = g->next;
		munmap(g->ro, PMC_SEG_BYTES);
		munmap(g->rw, PMC_SEG_BYTES);
		close(g->fd);
		free(g->rev);
		free(g);
	}
	if (pm->vbase)
		munmap(pm->vbase, PMC_VIEW_SPAN); /* the views in it go too */
	for (struct pmc_view *v = pm->all_views, *n; v; v = n) {
		n = v->next;
		munmap((void *)v->hdr, v->bytes);
		free(v);
	}
	for (unsigned i = 0; i < PMC_DIR_SIZE; i++) {
		free(pm->segdir[i]);
		free(pm->hdir[i]);
	}
}
