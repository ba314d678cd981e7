/* copy.c - see copy.h. */
#include "copy.h"

#include <errno.h>
#include <string.h>

#include "container.h"
#include "frame.h"
#include "pm_proto.h"
#include "segment.h"

/*
 * What stops before frame d takes s's slot: the holders of s's segment
 * write-protect their writable mappings of that slot for as long as it
 * is shared (a store through one breaks the copy first); d's mappings
 * of its old slot go.
 */
static error_t copy_stops(struct pmd_core *core, const struct pmd_frame *s,
			  const struct pmd_container *dc,
			  const struct pmd_frame *d, frame_t df)
{
	struct pmd_segment *ss = pmd_frame_seg(core, s);
	struct pmd_segment *ds = pmd_frame_seg(core, d);
	error_t err = 0;

	if (s->seg == d->seg && s->slot == d->slot)
		return 0;
	if (pmd_stop_needed(ss))
		err = pmd_stops_add(&core->stops, ss, s->slot, 1, PM_STOP_COW, 0);
	if (err || !pmd_stop_needed(ds))
		return err;
	/* Whether d's slot retires or stays shared with other frames
	 * (within one container, an earlier frame of the copy may take
	 * it), d's mappings of it go: they fault and find d's new place. */
	err = pmd_segment_fwd_reserve(ds);
	if (!err)
		err = pmd_frame_break_stops(core, dc, d, df);
	return err;
}

error_t pmd_copy_decode(struct pmd_core *core, struct pmd_task *task,
			container_t src, frame_t src_start, container_t dst,
			frame_t dst_start, uint32_t count, uint32_t flags,
			struct pmd_copy *cp, struct pmd_culprit *why)
{
	struct pmd_ftab_cursor cs = { 0 }, cd = { 0 };
	struct pmd_cap *scap, *dcap;
	uint32_t k, reserve = 0;
	bool same;
	error_t err;

	err = pmd_cap_decode(task, src, PMD_RIGHT_READ, PMD_USE_ALL, &scap, why);
	if (err)
		return err;
	err = pmd_cap_decode(task, dst, PMD_RIGHT_WRITE, PMD_USE_ALL, &dcap, why);
	if (err) {
		why->arg = PMD_ARG_COPY_DST;
		return err;
	}
	if (!pmd_range_ok(src_start, count) || !pmd_range_ok(dst_start, count)) {
		why->arg = PMD_ARG_COPY_COUNT;
		return EINVAL;
	}
	if (flags) {
		why->arg = PMD_ARG_COPY_FLAGS;
		return EINVAL;
	}
	pmd_stops_reset(&core->stops);
	*cp = (struct pmd_copy){ .src = scap->cont, .dst = dcap->cont,
				 .src_start = src_start,
				 .dst_start = dst_start };
	same = cp->src == cp->dst;

	/* The first missing source (ENOENT) or destination (ENOMEM) frame
	 * stops the copy, or one the pmd took back (ESTALE); the frames
	 * before it are copied. */
	for (k = 0; k < count; k++) {
		struct pmd_frame *s, *d;

		s = pmd_ftab_lookup_at(&cp->src->frames, &cs, src_start + k);
		if (!s) {
			cp->stop = pmd_frame_missing(cp->src, src_start + k);
			why->frame = src_start + k;
			break;
		}
		d = pmd_ftab_lookup_at(&cp->dst->frames, &cd, dst_start + k);
		pmd_frame_touch(core, s);
		if (d)
			pmd_frame_touch(core, d);
		if (!d) {
			cp->stop = pmd_frame_gone(cp->dst, dst_start + k)
					   ? ESTALE : ENOMEM;
			why->frame = dst_start + k;
			break;
		}
		if (pmd_frame_remote(s) || pmd_frame_remote(d)) {
			/* The daemon brings them here first, then copies. */
			struct pmd_frame *r = pmd_frame_remote(s) ? s : d;
			why->frame = pmd_frame_remote(s) ? src_start + k
							 : dst_start + k;
			if (r->flags & PMD_FRAME_LOST)
				return EIO;
			cp->remote = true;
			return 0;
		}
		/* A physical copy into a shared destination slot needs a
		 * private slot first; within one container any destination
		 * may end up so. */
		reserve += same || pmd_frame_borrowed_slot(core, cp->dst, d);
		err = copy_stops(core, s, cp->dst, d, dst_start + k);
		if (err)
			return err;
	}
	cp->n = k;
	if (reserve)
		return pmd_container_slots_reserve(core, cp->dst, reserve);
	return 0;
}

error_t pmd_copy_invoke(struct pmd_core *core, const struct pmd_copy *cp)
{
	struct pmd_container *sc = cp->src, *dc = cp->dst;
	bool same = sc == dc;
	/* In the order that reads every source before it is overwritten
	 * when the ranges overlap (as memmove does). */
	bool backwards = same && cp->dst_start > cp->src_start;
	/* (Nothing leaves either frame table here: cursors stay valid.) */
	struct pmd_ftab_cursor cs = { 0 }, cd = { 0 };

	pmd_cview_begin(dc);
	for (uint32_t j = 0; j < cp->n; j++) {
		uint32_t i = backwards ? cp->n - 1 - j : j;
		struct pmd_frame *s = pmd_ftab_lookup_at(&sc->frames, &cs,
							 cp->src_start + i);
		struct pmd_frame *d = pmd_ftab_lookup_at(&dc->frames, &cd,
							 cp->dst_start + i);
		struct pmd_segment *ss = pmd_frame_seg(core, s);
		struct pmd_segment *ds = pmd_frame_seg(core, d);

		if (s == d || (s->seg == d->seg && s->slot == d->slot))
			continue; /* already the same contents */
		/* A logical copy: d shares s's slot (within a container or
		 * across, mapped or not: the stops made every writable
		 * mapping of the slot break the copy before a store). d's
		 * old slot retires where a task may have mapped it. */
		if (pmd_slots_get(&ss->slots, s->slot)) {
			if (ds->exposed && ds->slots.ref[d->slot] == 1)
				pmd_segment_slot_retire(&core->segs, ds, d->slot,
							dc, cp->dst_start + i);
			else
				pmd_slot_put(core, d->seg, d->slot);
			d->seg = s->seg;
			d->slot = s->slot;
			d->gen++;
			pmd_cview_put(core, dc, cp->dst_start + i, d);
			pmd_cview_put(core, sc, cp->src_start + i, s);
			continue;
		}
		if (pmd_frame_borrowed_slot(core, dc, d))
			pmd_frame_break_cow(core, dc, cp->dst_start + i, d);
		memcpy(pmd_frame_bytes(core, d), pmd_segment_frame(ss, s->slot),
		       PM_FRAME_SIZE);
	}
	pmd_cview_end(dc);
	pmd_container_trim(core, dc);
	return cp->stop;
}

error_t pmd_break_decode(struct pmd_core *core, struct pmd_task *task,
			 container_t h, frame_t f, uint64_t seg_id,
			 uint32_t slot, struct pmd_break *bk,
			 struct pmd_culprit *why)
{
	struct pmd_segment *seg;
	struct pmd_cap *cap;
	struct pmd_frame *e;
	error_t err;

	pmd_stops_reset(&core->stops);
	err = pmd_cap_decode(task, h, PMD_RIGHT_WRITE, PMD_USE_ALL, &cap, why);
	if (err)
		return err;
	e = pmd_ftab_lookup(&cap->cont->frames, f);
	if (!e || pmd_frame_remote(e))
		return ESTALE; /* gone, or elsewhere: the mapping is stale */
	seg = pmd_frame_seg(core, e);
	if (seg->id != seg_id || e->slot != slot)
		return ESTALE;
	*bk = (struct pmd_break){ .c = cap->cont, .e = e, .f = f,
				  .shared = pmd_frame_cow(core, e) };
	if (!bk->shared)
		return 0;
	err = pmd_frame_break_stops(core, cap->cont, e, f);
	if (!err)
		err = pmd_container_slots_reserve(core, cap->cont, 1);
	return err;
}

void pmd_break_invoke(struct pmd_core *core, const struct pmd_break *bk)
{
	pmd_cview_begin(bk->c);
	if (pmd_frame_cow(core, bk->e))
		pmd_frame_break_cow(core, bk->c, bk->f, bk->e);
	pmd_cview_end(bk->c);
}
