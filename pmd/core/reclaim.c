/* reclaim.c - see reclaim.h. */
#include "reclaim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "borrowed.h"
#include "container.h"
#include "frame.h"
#include "move.h"
#include "task.h"
#include "view.h"

/* Whether a comes before b among victims. */
static bool before(const struct pmd_task *a, const struct pmd_task *b)
{
	return a->charge.extra_here > b->charge.extra_here ||
	       (a->charge.extra_here == b->charge.extra_here && a->id < b->id);
}

uint32_t pmd_reclaim_victims(struct pmd_core *core, struct pmd_task **out,
			     uint32_t max)
{
	uint32_t n = 0;

	for (struct pmd_list *p = core->tasks.next; p != &core->tasks;
	     p = p->next) {
		struct pmd_task *t = pmd_container_of(p, struct pmd_task, link);
		uint32_t i;

		if (!t->charge.extra_here)
			continue;
		/* Insertion by excess, then age (the smaller id). */
		for (i = n; i > 0 && before(t, out[i - 1]); i--)
			if (i < max)
				out[i] = out[i - 1];
		if (i < max) {
			out[i] = t;
			if (n < max)
				n++;
		}
	}
	return n;
}

/* Whether the rule lets the pmd take frame e of c back (extra_only) or
 * page it out (any class): a frame here alone in a slot of c's own, no
 * task holding its segment that cannot follow moves. */
static bool pageable(const struct pmd_core *core,
		     const struct pmd_container *c, const struct pmd_frame *e,
		     bool extra_only)
{
	const struct pmd_segment *seg;

	if (pmd_frame_remote(e) ||
	    (extra_only && !(e->flags & PMD_FRAME_EXTRA)))
		return false;
	seg = pmd_frame_seg(core, e);
	return seg->slots.ref[e->slot] == 1 && seg->domain == c &&
	       !seg->pinned &&
	       (!seg->exposed || pmd_holders_follow(core, seg, NULL));
}

/* Whether c may give frames now. */
static bool container_open(struct pmd_container *c, pmd_reclaim_busy_fn *busy,
			   void *arg)
{
	return !pmd_container_locked(c) && !(busy && busy(arg, c));
}

/* Takes frame f (entry e) of c: gone from now on. false: no memory to
 * record it (nothing changed). Inside a view change. */
static bool take_one(struct pmd_core *core, struct pmd_container *c,
		     frame_t f, struct pmd_frame *e)
{
	struct pmd_segment *seg = pmd_frame_seg(core, e);
	uint16_t slot = e->slot;

	if (pmd_ftab_reserve(&c->gone, f) ||
	    (seg->exposed && pmd_segment_fwd_reserve(seg)))
		return false;
	pmd_charge_sub(&core->budget, &c->owner->charge, true);
	core->nframes--;
	pmd_ftab_remove(&c->frames, f);
	if (c->view)
		pmd_view_del(c->view, f);
	/* A slot a task may have mapped retires: its mappings fault and
	 * learn that the frame is gone. */
	if (seg->exposed)
		pmd_segment_slot_retire(&core->segs, seg, slot, c, f);
	else
		pmd_slot_put(core, seg->index, slot);
	pmd_ftab_insert(&c->gone, f);
	return true;
}

uint64_t pmd_reclaim_take(struct pmd_core *core, struct pmd_task *t,
			  uint64_t want, pmd_reclaim_busy_fn *busy, void *arg)
{
	uint64_t taken = 0;

	for (struct pmd_list *cp = t->containers.next;
	     taken < want && cp != &t->containers; cp = cp->next) {
		struct pmd_container *c = pmd_container_of(
			cp, struct pmd_container, owner_link);
		struct pmd_frame *e;
		frame_t f = 0;

		if (!container_open(c, busy, arg))
			continue;
		pmd_cview_begin(c);
		while (taken < want && pmd_ftab_next(&c->frames, &f, &e)) {
			if (pageable(core, c, e, true)) {
				if (!take_one(core, c, f, e))
					break; /* out of memory: the rest stays */
				taken++;
			}
			if (f++ == UINT64_MAX)
				break;
		}
		pmd_cview_end(c);
	}
	return taken;
}

/* ---- paging out to other nodes ---- */

/* How cold e is: unmapped frames first, then by age (or at random). */
static uint32_t coldness(const struct pmd_core *core,
			 const struct pmd_frame *e)
{
	if (core->pageout_random)
		return (uint32_t)random();
	return (pmd_frame_seg(core, e)->exposed ? 0 : UINT32_C(1) << 16) |
	       pmd_frame_age(core, e);
}

struct cand {
	uint32_t cold;
	frame_t frame;
	uint32_t gen;  /* its place, */
	uint16_t used; /* and its use stamp, when found */
};

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	return x->cold < y->cold ? 1 : x->cold > y->cold ? -1 : 0;
}

/* The container holding the coldest pageable frame, and how many such
 * frames it has. */
static struct pmd_container *coldest(struct pmd_core *core, bool extra_only,
				     pmd_reclaim_busy_fn *busy, void *arg,
				     uint64_t *count, bool *busy_skipped)
{
	struct pmd_container *best = NULL;
	uint32_t best_cold = 0;

	*count = 0;
	*busy_skipped = false;
	for (struct pmd_list *tp = core->tasks.next; tp != &core->tasks;
	     tp = tp->next) {
		struct pmd_task *t = pmd_container_of(tp, struct pmd_task, link);

		for (struct pmd_list *cp = t->containers.next;
		     cp != &t->containers; cp = cp->next) {
			struct pmd_container *c = pmd_container_of(
				cp, struct pmd_container, owner_link);
			struct pmd_frame *e;
			uint64_t n = 0;
			frame_t f = 0;

			if (busy && busy(arg, c) && c->frames.count)
				*busy_skipped = true;
			if (!container_open(c, busy, arg))
				continue;
			while (pmd_ftab_next(&c->frames, &f, &e)) {
				if (pageable(core, c, e, extra_only)) {
					uint32_t k = coldness(core, e);
					n++;
					if (!best || k > best_cold) {
						best = c;
						best_cold = k;
					}
				}
				if (f++ == UINT64_MAX)
					break;
			}
			if (best == c)
				*count = n;
		}
	}
	return best;
}

/* The min-heap h[0..n) of candidates (the warmest at the root): the
 * entry at i sinks to its place. */
static void heap_sink(struct cand *h, uint32_t n, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, m = i;

		if (l < n && h[l].cold < h[m].cold)
			m = l;
		if (l + 1 < n && h[l + 1].cold < h[m].cold)
			m = l + 1;
		if (m == i)
			return;
		struct cand t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* x joins the heap h[0..*n): the coldest PMD_COLDLIST_MAX stay. */
static void heap_offer(struct cand *h, uint32_t *n, struct cand x)
{
	uint32_t i;

	if (*n == PMD_COLDLIST_MAX) {
		if (x.cold > h[0].cold) {
			h[0] = x;
			heap_sink(h, *n, 0);
		}
		return;
	}
	for (i = (*n)++; i > 0 && h[(i - 1) / 2].cold > x.cold;
	     i = (i - 1) / 2)
		h[i] = h[(i - 1) / 2];
	h[i] = x;
}

/* Up to max frames of the cold list still where, and as cold as, the
 * plan found them (c's, open now). */
static uint32_t plan_from_list(struct pmd_core *core, uint32_t max,
			       struct pmd_pageout *out)
{
	struct pmd_coldlist *l = &core->cold;
	struct pmd_container *c = l->c;
	uint32_t k = 0;

	while (l->next < l->n && k < max) {
		frame_t f = l->v[l->next].frame;
		const struct pmd_frame *e = pmd_ftab_lookup(&c->frames, f);

		if (e && e->gen == l->v[l->next].gen &&
		    e->used == l->v[l->next].used &&
		    pageable(core, c, e, l->extra_only))
			out[k++] = (struct pmd_pageout){ .frame = f,
				.seg = e->seg, .slot = e->slot, .gen = e->gen };
		l->next++;
	}
	if (l->next == l->n)
		l->c = NULL;
	return k;
}

uint32_t pmd_pageout_plan(struct pmd_core *core, uint32_t max,
			  bool extra_only, pmd_reclaim_busy_fn *busy, void *arg,
			  struct pmd_container **c_out,
			  struct pmd_pageout *out, bool *busy_skipped)
{
	struct pmd_coldlist *l = &core->cold;
	struct cand h[PMD_COLDLIST_MAX];
	struct pmd_container *c;
	struct pmd_frame *e;
	uint64_t count, seen = 0;
	uint32_t n = 0, k;
	frame_t f = 0;

	*c_out = NULL;
	*busy_skipped = false;
	if (!max)
		return 0;
	/* What the last scan found, while it lasts: a scan visits every
	 * frame of every container. */
	if (l->c && l->extra_only == extra_only &&
	    container_open(l->c, busy, arg)) {
		c = l->c;
		k = plan_from_list(core, max, out);
		if (k) {
			*c_out = c;
			return k;
		}
	}
	c = coldest(core, extra_only, busy, arg, &count, busy_skipped);
	if (!c)
		return 0;
	/* Its PMD_COLDLIST_MAX coldest frames (a heap of them), coldest
	 * first. */
	while (seen < count && pmd_ftab_next(&c->frames, &f, &e)) {
		if (pageable(core, c, e, extra_only)) {
			seen++;
			heap_offer(h, &n, (struct cand){
				.cold = coldness(core, e), .frame = f,
				.gen = e->gen, .used = e->used });
		}
		if (f++ == UINT64_MAX)
			break;
	}
	qsort(h, n, sizeof(*h), cand_cmp);
	*l = (struct pmd_coldlist){ .c = c, .extra_only = extra_only,
				    .n = n };
	for (uint32_t i = 0; i < n; i++) {
		l->v[i].frame = h[i].frame;
		l->v[i].gen = h[i].gen;
		l->v[i].used = h[i].used;
	}
	k = plan_from_list(core, max, out);
	if (k)
		*c_out = c;
	return k;
}

/* Tasks holding seg. */
static uint32_t holders(const struct pmd_core *core,
			const struct pmd_segment *seg)
{
	uint32_t n = 0;

	for (const struct pmd_list *p = core->tasks.next; seg->exposed &&
	     p != &core->tasks; p = p->next)
		n += pmd_task_has_segment(pmd_container_of(p, struct pmd_task,
							   link), seg->id);
	return n;
}

error_t pmd_pageout_stops(struct pmd_core *core, struct pmd_container *c,
			  struct pmd_pageout *v, uint32_t n)
{
	pmd_stops_reset(&core->stops);
	for (uint32_t i = 0; i < n; i++) {
		const struct pmd_frame *e = pmd_ftab_lookup(&c->frames,
							    v[i].frame);
		const struct pmd_segment *seg;
		error_t err;

		if (!e || pmd_frame_remote(e) || e->seg != v[i].seg ||
		    e->slot != v[i].slot)
			continue;
		seg = pmd_frame_seg(core, e);
		v[i].holders = holders(core, seg);
		if (!pmd_stop_needed(seg))
			continue;
		err = pmd_stops_add(&core->stops, seg, e->slot, 1, PM_STOP_WP,
				    0);
		if (err)
			return err;
	}
	return 0;
}

uint32_t pmd_pageout_repoint(struct pmd_core *core, struct pmd_container *c,
			     struct pmd_pageout *v, struct pmd_place *places,
			     uint32_t n, uint8_t *data)
{
	uint32_t k = 0;

	pmd_cview_begin(c);
	for (uint32_t i = 0; i < n; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, v[i].frame);
		struct pmd_segment *seg;

		/* Only if it is still where it was planned, alone there,
		 * held by the tasks that were stopped (no other may be
		 * storing into it now). */
		seg = e && !pmd_frame_remote(e) ? pmd_frame_seg(core, e) : NULL;
		if (!seg || e->seg != v[i].seg || e->slot != v[i].slot ||
		    e->gen != v[i].gen || !pageable(core, c, e, false) ||
		    holders(core, seg) != v[i].holders ||
		    (seg->exposed && pmd_segment_fwd_reserve(seg)) ||
		    pmd_rseg_add(core, &places[i])) {
			pmd_places_give_back(core, &places[i], 1);
			continue;
		}
		memcpy(data + (size_t)k * PM_FRAME_SIZE,
		       pmd_segment_frame(seg, e->slot), PM_FRAME_SIZE);
		/* (A task's mapping of the old slot faults and brings the
		 * frame home.) */
		pmd_frame_goes_to(core, c, v[i].frame, e, &places[i]);
		v[k] = v[i];
		places[k] = places[i];
		k++;
	}
	pmd_cview_end(c);
	return k;
}
