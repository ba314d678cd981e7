/* reclaim.c - see reclaim.h. */
#include "reclaim.h"

#include <errno.h>

#include "container.h"
#include "frame.h"
#include "move.h"
#include "view.h"

bool pmd_frame_gone(const struct pmd_container *c, frame_t f)
{
	return c->gone.count && pmd_ftab_lookup(&c->gone, f);
}

error_t pmd_frame_missing(const struct pmd_container *c, frame_t f)
{
	return pmd_frame_gone(c, f) ? ESTALE : ENOENT;
}

void pmd_frame_forget_gone(struct pmd_container *c, frame_t f)
{
	if (pmd_frame_gone(c, f))
		pmd_ftab_remove(&c->gone, f);
}

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

/* Whether the rule lets the pmd take frame e of c. */
static bool takeable(const struct pmd_core *core,
		     const struct pmd_container *c, const struct pmd_frame *e)
{
	const struct pmd_segment *seg;

	if (!(e->flags & PMD_FRAME_EXTRA) || pmd_frame_remote(e))
		return false;
	seg = pmd_frame_seg(core, e);
	return seg->slots.ref[e->slot] == 1 && seg->domain == c &&
	       (!seg->exposed || pmd_holders_follow(core, seg, NULL));
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

		if (pmd_container_locked(c) || (busy && busy(arg, c)))
			continue;
		pmd_cview_begin(c);
		while (taken < want && pmd_ftab_next(&c->frames, &f, &e)) {
			if (takeable(core, c, e)) {
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
