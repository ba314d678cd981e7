/* frame.c - see frame.h. */
#include "frame.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "borrowed.h"
#include "pm_proto.h"
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

uint8_t *pmd_frame_bytes(const struct pmd_core *core, const struct pmd_frame *e)
{
	return pmd_segment_frame(pmd_frame_seg(core, e), e->slot);
}

void pmd_slot_put(struct pmd_core *core, uint32_t segi, uint16_t slot)
{
	struct pmd_segment *seg = pmd_segtab_get(&core->segs, segi);

	/* (An orphaned segment goes once its last slot is released, at
	 * the flush.) */
	if (pmd_segment_slot_put(&core->segs, seg, slot) && seg->domain)
		seg->domain->free_slots++;
}

void pmd_frame_release(struct pmd_core *core, struct pmd_container *c,
		       struct pmd_frame *e)
{
	if (pmd_frame_remote(e)) {
		/* Its lent slot goes back (the node layer sends the frees);
		 * a lost one has nothing to give back, but for a slot of
		 * our own backing store. */
		if (!(e->flags & PMD_FRAME_LOST) || e->node == PMD_NODE_STORE)
			pmd_rslot_give_back(core, e->node, e->seg, e->slot);
		pmd_charge_sub_remote(&core->budget, &c->owner->charge,
				      e->flags & PMD_FRAME_EXTRA);
	} else {
		pmd_slot_put(core, e->seg, e->slot);
		pmd_charge_sub(&core->budget, &c->owner->charge,
			       e->flags & PMD_FRAME_EXTRA);
	}
	core->nframes--;
}

void pmd_frame_drop(struct pmd_core *core, struct pmd_container *c, frame_t f,
		    struct pmd_frame *e)
{
	pmd_frame_release(core, c, e);
	pmd_ftab_remove(&c->frames, f);
}

error_t pmd_container_slots_reserve(struct pmd_core *core,
				    struct pmd_container *c, uint64_t need)
{
	while (c->free_slots < need) {
		struct pmd_segment *seg;
		error_t err = pmd_segment_create(&core->segs, &seg);
		if (err)
			return err;
		seg->domain = c;
		pmd_list_add(&c->segments, &seg->link);
		c->free_slots += PMD_SEG_SLOTS;
	}
	return 0;
}

uint64_t pmd_container_slots_free(const struct pmd_container *c)
{
	uint64_t n = 0;

	for (const struct pmd_list *pos = c->segments.next;
	     pos != &c->segments; pos = pos->next) {
		const struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		n += PMD_SEG_SLOTS - seg->slots.used;
		for (unsigned w = 0; w < PMD_SEG_SLOTS / 64; w++)
			n += (unsigned)__builtin_popcountll(seg->pending[w]);
	}
	return n;
}

bool pmd_container_slots_ok(const struct pmd_container *c)
{
	return c->free_slots == pmd_container_slots_free(c);
}

void pmd_frame_take_slot(struct pmd_core *core, struct pmd_container *c,
			 struct pmd_frame *e)
{
	struct pmd_list *pos;
	bool flushed = false;

again:
	for (pos = c->segments.next; pos != &c->segments; pos = pos->next) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		int slot = pmd_segment_slot_alloc(&core->segs, seg);
		if (slot < 0)
			continue;
		c->free_slots--;
		e->seg = seg->index;
		e->slot = (uint16_t)slot;
		e->gen++;
		/* Keep segments with room at the front. */
		if (pmd_slots_free(&seg->slots) == 0 && pos->next != &c->segments) {
			pmd_list_del(pos);
			pmd_list_add(c->segments.prev, pos);
		}
		return;
	}
	/* The reserved slot may be one freed in this request, not punched
	 * yet. */
	if (!flushed) {
		pmd_segtab_flush(&core->segs);
		flushed = true;
		goto again;
	}
	assert(!"pmd_frame_take_slot without a reserved slot");
}

error_t pmd_frame_break_stops(struct pmd_core *core,
			      const struct pmd_container *c,
			      const struct pmd_frame *e, frame_t f)
{
	const struct pmd_segment *seg = pmd_frame_seg(core, e);

	/* (Also in another container's segment, where a logical copy put
	 * it: a task that holds that segment too may have mapped it there.
	 * Mappings of another container's frame of the same number there
	 * go too, and fault back in.) */
	if (!pmd_stop_needed(seg))
		return 0;
	return pmd_stops_add_drop(&core->stops, seg, e->slot, f, c);
}

void pmd_frame_break_cow(struct pmd_core *core, struct pmd_container *c,
			 frame_t f, struct pmd_frame *e)
{
	struct pmd_segment *old = pmd_frame_seg(core, e);
	uint32_t old_seg = e->seg;
	uint16_t old_slot = e->slot;

	pmd_frame_take_slot(core, c, e);
	memcpy(pmd_frame_bytes(core, e), pmd_segment_frame(old, old_slot),
	       PM_FRAME_SIZE);
	pmd_slot_put(core, old_seg, old_slot);
	pmd_cview_put(core, c, f, e);
}

void pmd_container_trim(struct pmd_core *core, struct pmd_container *c)
{
	struct pmd_segment *keep = NULL;
	struct pmd_list *pos, *tmp;

	pmd_segtab_flush(&core->segs);
	/* The one kept: one the tasks already hold if any (the next frames
	 * placed there need no descriptor sent; whoever holds it may map
	 * this container's frames: a task whose right went had its
	 * segments retired), else the first. */
	for (pos = c->segments.next; pos != &c->segments; pos = pos->next) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		if (seg->slots.used)
			continue;
		if (!keep || (seg->exposed && !keep->exposed))
			keep = seg;
	}
	pmd_list_for_each_safe(pos, tmp, &c->segments) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		if (seg->slots.used || seg == keep)
			continue;
		assert(c->free_slots >= PMD_SEG_SLOTS);
		c->free_slots -= PMD_SEG_SLOTS;
		pmd_segment_destroy(&core->segs, seg);
	}
}

/* ---- the tasks' view of the frame table ---- */

void pmd_cview_begin(struct pmd_container *c)
{
	if (c->view)
		pmd_view_begin(c->view);
}

void pmd_cview_end(struct pmd_container *c)
{
	if (c->view)
		pmd_view_end(c->view);
}

/* The view's flags of frame e (here). */
static uint16_t view_flags(const struct pmd_core *core,
			   const struct pmd_frame *e)
{
	const struct pmd_segment *seg = pmd_frame_seg(core, e);

	return (uint16_t)((seg->slots.ref[e->slot] > 1 ? PM_VIEW_COW : 0) |
			  (pmd_segment_physical(seg, e->slot) ? 0
							      : PM_VIEW_HOLE));
}

void pmd_cview_put(struct pmd_core *core, struct pmd_container *c, frame_t f,
		   const struct pmd_frame *e)
{
	if (c->view && pmd_frame_remote(e))
		pmd_view_del(c->view, f);
	else if (c->view)
		pmd_view_set(c->view, f, pmd_frame_seg(core, e)->id, e->slot,
			     view_flags(core, e), e->gen);
}

void pmd_frames_make_physical(struct pmd_core *core, struct pmd_container *c,
			      frame_t start, uint32_t count)
{
	struct pmd_segment *run = NULL;
	unsigned first = 0, n = 0;
	bool any = false;

	pmd_cview_begin(c);
	for (uint32_t i = 0; i <= count; i++) {
		struct pmd_frame *e = i < count
			? pmd_ftab_lookup(&c->frames, start + i) : NULL;
		struct pmd_segment *seg = e && !pmd_frame_remote(e)
			? pmd_frame_seg(core, e) : NULL;
		bool hole = seg && !pmd_segment_physical(seg, e->slot);

		if (run && (!hole || seg != run || e->slot != first + n)) {
			pmd_segment_make_physical(run, first, n);
			run = NULL;
		}
		if (!hole)
			continue;
		any = true;
		if (!run) {
			run = seg;
			first = e->slot;
			n = 0;
		}
		n++;
	}
	for (uint32_t i = 0; any && c->view && i < count; i++) {
		const struct pmd_frame *e = pmd_ftab_lookup(&c->frames,
							    start + i);
		if (e && !pmd_frame_remote(e))
			pmd_cview_put(core, c, start + i, e);
	}
	pmd_cview_end(c);
}

void pmd_cview_install(struct pmd_core *core, struct pmd_container *c,
		       struct pmd_view *v)
{
	struct pmd_frame *e;
	frame_t f = 0;

	pmd_view_begin(v);
	while (pmd_ftab_next(&c->frames, &f, &e)) {
		if (!pmd_frame_remote(e))
			pmd_view_set(v, f, pmd_frame_seg(core, e)->id, e->slot,
				     view_flags(core, e), e->gen);
		if (f++ == UINT64_MAX)
			break;
	}
	pmd_view_set_locker(v, c->locker ? c->locker->id : 0);
	pmd_view_end(v);
	pmd_view_defer(v, &core->views_unsettled);
	pmd_view_destroy(c->view);
	c->view = v;
}

error_t pmd_cview_remake(struct pmd_core *core, struct pmd_container *c,
			 uint64_t count)
{
	struct pmd_view *v;
	error_t err;

	err = pmd_view_create(count, &v);
	if (err)
		return err;
	pmd_cview_install(core, c, v);
	return 0;
}

error_t pmd_cview_reserve(struct pmd_core *core, struct pmd_container *c,
			  uint64_t count)
{
	if (!c->view || pmd_view_fits(c->view, count))
		return 0;
	return pmd_cview_remake(core, c, count * 2);
}
