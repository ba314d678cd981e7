/* move.c - see move.h. */
#include "move.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "container.h"
#include "frame.h"
#include "map.h"
#include "task.h"

bool pmd_holders_follow(const struct pmd_core *core,
			const struct pmd_segment *seg,
			const struct pmd_task *except)
{
	for (const struct pmd_list *p = core->tasks.next; p != &core->tasks;
	     p = p->next) {
		const struct pmd_task *t = pmd_container_of(p, struct pmd_task,
							    link);
		if (t != except && !t->follows &&
		    pmd_task_has_segment(t, seg->id))
			return false;
	}
	return true;
}

error_t pmd_move_decode(struct pmd_core *core, struct pmd_task *task,
			container_t h, frame_t f, struct pmd_move *mv,
			struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_segment *old;
	struct pmd_frame *e;
	struct pmd_cap *cap;
	error_t err;

	pmd_stops_reset(&core->stops);
	err = pmd_cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
	if (err)
		return err;
	c = cap->cont;
	e = pmd_ftab_lookup(&c->frames, f);
	if (!e) {
		why->frame = f;
		return ENOENT;
	}
	/* The pmd moves no locked frame, no frame that shares its slot (it
	 * moves when the copy breaks), none in another container's segment,
	 * and none that a task which cannot follow may have mapped. */
	if (pmd_frame_remote(e)) {
		why->frame = f;
		return EOPNOTSUPP; /* between nodes: the pulls and pushes do */
	}
	old = pmd_frame_seg(core, e);
	if (pmd_container_locked(c) || old->slots.ref[e->slot] > 1 ||
	    old->domain != c || (old->exposed && !pmd_holders_follow(core, old, NULL))) {
		why->frame = f;
		return EBUSY;
	}
	if (old->exposed) {
		err = pmd_segment_fwd_reserve(old);
		if (!err)
			err = pmd_stops_add(&core->stops, old, e->slot, 1,
					    PM_STOP_WP, 0);
		if (err)
			return err;
	}
	err = pmd_container_slots_reserve(core, c, 1);
	if (err)
		return err;
	*mv = (struct pmd_move){ .c = c, .e = e, .f = f };
	return 0;
}

void pmd_move_invoke(struct pmd_core *core, const struct pmd_move *mv)
{
	struct pmd_container *c = mv->c;
	struct pmd_frame *e = mv->e;
	struct pmd_segment *old = pmd_frame_seg(core, e), *nw;
	uint16_t old_slot = e->slot;

	pmd_cview_begin(c);
	pmd_frame_take_slot(core, c, e);
	nw = pmd_frame_seg(core, e);
	pmd_segment_fill(nw, e->slot, pmd_segment_frame(old, old_slot));
	pmd_cview_put(core, c, mv->f, e);
	pmd_cview_end(c);
	if (old->exposed)
		pmd_segment_slot_retire(&core->segs, old, old_slot, c, mv->f);
	else
		pmd_slot_put(core, old->index, old_slot);
}

/* Frames of c in old go to the same slots of nw (old's slots forward to
 * them, so that other mappings follow); how many. */
static uint64_t segment_repoint(struct pmd_core *core, struct pmd_container *c,
				struct pmd_segment *old, struct pmd_segment *nw)
{
	struct pmd_frame *e;
	uint64_t n = 0;
	frame_t f = 0;

	while (pmd_ftab_next(&c->frames, &f, &e)) {
		if (!pmd_frame_remote(e) && e->seg == old->index) {
			if (old->domain == c)
				old->fwd[e->slot] = (struct pmd_fwd){
					.cont = c, .frame = f };
			e->seg = nw->index;
			e->gen++;
			pmd_cview_put(core, c, f, e);
			n++;
		}
		if (f++ == UINT64_MAX)
			break;
	}
	return n;
}

void pmd_move_segments(struct pmd_core *core, struct pmd_container *c,
		       struct pmd_task *t, struct pmd_segment **fresh,
		       uint32_t nfresh)
{
	struct pmd_list *pos, *tmp;
	uint32_t used = 0;

	pmd_cview_begin(c);
	pmd_list_for_each_safe(pos, tmp, &c->segments) {
		struct pmd_segment *old =
			pmd_container_of(pos, struct pmd_segment, link);
		struct pmd_segment *nw;
		uint64_t refs;

		if (!pmd_task_has_segment(t, old->id))
			continue;
		assert(used < nfresh && old->fwd);
		nw = fresh[used++];
		/* Same slot numbers: a slot's sharers move together. */
		memcpy(&nw->slots, &old->slots, sizeof(nw->slots));
		/* (Its retired slots are free there: c has them to place
		 * frames in.) */
		for (unsigned s = 0; old->nretired && s < PMD_SEG_SLOTS; s++)
			if (pmd_segment_retired(old, s)) {
				pmd_slots_release(&nw->slots, s);
				c->free_slots++;
			}
		core->segs.slots_used += nw->slots.used;
		for (unsigned s = 0; s < PMD_SEG_SLOTS; s++)
			if (old->slots.ref[s])
				memcpy(pmd_segment_frame(nw, s),
				       pmd_segment_frame(old, s), PM_FRAME_SIZE);
		refs = 0;
		for (unsigned s = 0; s < PMD_SEG_SLOTS; s++)
			refs += old->slots.ref[s];
		refs -= segment_repoint(core, c, old, nw);
		/* Frames of other containers share some of its slots (a
		 * logical copy): they move too (a walk of every container,
		 * which only such a copy makes necessary). */
		for (struct pmd_list *tp = core->tasks.next;
		     refs && tp != &core->tasks; tp = tp->next) {
			struct pmd_task *ot = pmd_container_of(tp,
							       struct pmd_task,
							       link);
			for (struct pmd_list *cp = ot->containers.next;
			     refs && cp != &ot->containers; cp = cp->next) {
				struct pmd_container *oc = pmd_container_of(
					cp, struct pmd_container, owner_link);
				if (oc == c)
					continue;
				pmd_cview_begin(oc);
				refs -= segment_repoint(core, oc, old, nw);
				pmd_cview_end(oc);
			}
		}
		nw->domain = c;
		pmd_list_add(&c->segments, &nw->link);
		/* The old segment stays, all retired: punched whole (the
		 * revoked task's mappings of it fault into nothing; it
		 * cannot refill it for anyone else, who all dropped their
		 * mappings of it), a forwarding record per slot for the
		 * others' faults, and nothing placed in it again. */
		old->exposed = true;
		pmd_segment_retire_all(&core->segs, old);
		pmd_task_del_segment(t, old->id);
	}
	pmd_cview_end(c);
	assert(used == nfresh);
}

/* Where frame f (entry e) of c is now, for task's fault. */
static error_t resolve_frame(struct pmd_core *core, struct pmd_task *task,
			     struct pmd_container *c, frame_t f,
			     struct pmd_frame *e, struct pmd_resolve_out *out)
{
	struct pmd_segment *now;

	pmd_frame_touch(core, e);
	if (pmd_frame_remote(e)) {
		/* Moved to another node: the daemon brings it back here. */
		if (e->flags & PMD_FRAME_LOST)
			return EIO;
		out->remote = true;
		out->cont = c;
		out->frame = f;
		return 0;
	}
	if (pmd_container_locked(c) && c->locker != task && c->owner == task) {
		pmd_lock_refused(c);
		return EBUSY; /* the owner waits for the server's lock */
	}
	now = pmd_frame_seg(core, e);
	if (now->domain != c) {
		/* In another container's segment (a logical copy): it gets
		 * a slot of its own first (pmd_resolve_own), never that
		 * segment; its mappings there go before (core->stops). */
		error_t err;

		pmd_stops_reset(&core->stops);
		err = pmd_container_slots_reserve(core, c, 1);
		if (!err)
			err = pmd_frame_break_stops(core, c, e, f);
		if (err)
			return err;
		out->foreign = true;
		out->cont = c;
		out->frame = f;
		out->e = e;
		return 0;
	}
	if (!pmd_segment_physical(now, e->slot)) /* never touched yet */
		pmd_frames_make_physical(core, c, f, 1);
	out->seg = now;
	out->slot = e->slot;
	out->cow = pmd_frame_cow(core, e);
	out->send_fd = !pmd_task_has_segment(task, now->id);
	if (out->send_fd) {
		error_t err = pmd_task_add_segment(task, now->id);
		if (err)
			return err;
		now->exposed = true;
	}
	return 0;
}

error_t pmd_container_resolve(struct pmd_core *core, struct pmd_task *task,
			      uint64_t seg_id, uint32_t slot,
			      struct pmd_resolve_out *out)
{
	struct pmd_segment *seg = pmd_segtab_get(&core->segs, (uint32_t)seg_id);
	const struct pmd_fwd *fwd;
	struct pmd_frame *e;

	memset(out, 0, sizeof(*out));
	if (slot >= PMD_SEG_SLOTS)
		return EINVAL;
	/* Holding the old segment is the right to follow its frames. */
	if (!pmd_task_has_segment(task, seg_id))
		return EACCES;
	if (seg && seg->id == seg_id && !pmd_segment_retired(seg, slot) &&
	    seg->slots.ref[slot] && !pmd_segment_physical(seg, slot)) {
		/* A frame lives there that nobody touched yet (a map makes
		 * its slots physical first; a pointer handed out before
		 * may not have): physical now, and in the same place. */
		pmd_segment_make_physical(seg, slot, 1);
		out->seg = seg;
		out->slot = slot;
		out->cow = seg->slots.ref[slot] > 1;
		return 0;
	}
	if (!seg || seg->id != seg_id || !pmd_segment_retired(seg, slot))
		return ENOENT; /* freed, not moved: the task reads zeros */
	fwd = &seg->fwd[slot];
	e = fwd->cont ? pmd_ftab_lookup(&fwd->cont->frames, fwd->frame) : NULL;
	if (!e) /* moved, then deallocated (zeros); or taken back */
		return fwd->cont ? pmd_frame_missing(fwd->cont, fwd->frame)
				 : ENOENT;
	return resolve_frame(core, task, fwd->cont, fwd->frame, e, out);
}

error_t pmd_container_where(struct pmd_core *core, struct pmd_task *task,
			    container_t h, frame_t f,
			    struct pmd_resolve_out *out)
{
	struct pmd_culprit why;
	struct pmd_frame *e;
	struct pmd_cap *cap;
	error_t err;

	memset(out, 0, sizeof(*out));
	err = pmd_cap_decode(task, h, PMD_RIGHT_MAP, 0, &cap, &why);
	if (err)
		return err == EBADF ? EACCES : err;
	e = pmd_ftab_lookup(&cap->cont->frames, f);
	if (!e) /* deallocated: the task reads zeros; or taken back */
		return pmd_frame_missing(cap->cont, f);
	return resolve_frame(core, task, cap->cont, f, e, out);
}

void pmd_resolve_own(struct pmd_core *core, const struct pmd_resolve_out *out)
{
	pmd_cview_begin(out->cont);
	if (pmd_frame_seg(core, out->e)->domain != out->cont)
		pmd_frame_break_cow(core, out->cont, out->frame, out->e);
	pmd_cview_end(out->cont);
}

/* ---- pulls ---- */

/* Whether remote frame e of c sits in a segment its node keeps for
 * task's mappings of c (a forwarded map put it there). */
static bool frame_pushed_for(const struct pmd_core *core,
			     const struct pmd_container *c,
			     const struct pmd_frame *e, uint64_t task)
{
	const struct pmd_rseg *r;

	if (!pmd_frame_remote(e) || (e->flags & PMD_FRAME_LOST) || !task)
		return false;
	r = pmd_rseg_find(core, e->node, e->seg);
	return r && r->tag_task == task && r->tag_cont == c->id;
}

/* Adds remote frame f (entry e) to the pulls when it is of the kind of
 * the first (below); EIO when it is lost. */
static error_t pull_add(struct pmd_core *core, frame_t f,
			const struct pmd_frame *e, struct pmd_pull *pulls,
			uint32_t *n, struct pmd_culprit *why)
{
	const struct pmd_rseg *r = pmd_rseg_find(core, e->node, e->seg);
	bool tagged;

	if ((e->flags & PMD_FRAME_LOST) || !r) {
		why->frame = f;
		return EIO;
	}
	/* One kind a pull: RDMA reads from any lenders, or the slots one
	 * node keeps for a task, returned by that node in one request. */
	tagged = r->tag_task != 0;
	if (*n && (pulls[0].tagged != tagged ||
		   (tagged && pulls[0].node != e->node)))
		return 0; /* in a later pull */
	pulls[(*n)++] = (struct pmd_pull){
		.frame = f, .node = e->node, .seg = e->seg, .slot = e->slot,
		.tagged = tagged,
		.piece = pmd_io_piece_remote(r, e, 0, PM_FRAME_SIZE) };
	return 0;
}

error_t pmd_pull_plan(struct pmd_core *core, struct pmd_container *c,
		      frame_t start, uint32_t count, uint64_t keep_task,
		      struct pmd_pull *pulls, uint32_t *npulls,
		      struct pmd_culprit *why)
{
	uint32_t n = 0;
	error_t err;

	*npulls = 0;
	if (!pmd_range_ok(start, count)) {
		why->arg = PMD_ARG_MAP_COUNT;
		return EINVAL;
	}
	for (uint32_t i = 0; i < count && n < PMD_PULL_MAX; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);

		if (!e || !pmd_frame_remote(e) ||
		    frame_pushed_for(core, c, e, keep_task))
			continue;
		err = pull_add(core, start + i, e, pulls, &n, why);
		if (err)
			return err;
	}
	*npulls = n;
	return 0;
}

/* The pulls of the frames of the whole container that pick(arg) says. */
static void pull_plan_where(struct pmd_core *core, struct pmd_container *c,
			    bool (*pick)(struct pmd_core *,
					 const struct pmd_container *,
					 const struct pmd_frame *, uint64_t),
			    uint64_t arg, struct pmd_pull *pulls,
			    uint32_t *npulls)
{
	struct pmd_culprit why;
	struct pmd_frame *e;
	uint32_t n = 0;
	frame_t f = 0;

	while (n < PMD_PULL_MAX && pmd_ftab_next(&c->frames, &f, &e)) {
		if (pick(core, c, e, arg))
			pull_add(core, f, e, pulls, &n, &why);
		if (f++ == UINT64_MAX)
			break;
	}
	*npulls = n;
}

/* (A lost one stays lost; the rest come here.) */
static bool pick_pushed(struct pmd_core *core, const struct pmd_container *c,
			const struct pmd_frame *e, uint64_t for_task)
{
	return frame_pushed_for(core, c, e, for_task);
}

void pmd_pull_plan_pushed(struct pmd_core *core, struct pmd_container *c,
			  uint64_t for_task, struct pmd_pull *pulls,
			  uint32_t *npulls)
{
	pull_plan_where(core, c, pick_pushed, for_task, pulls, npulls);
}

static bool pick_node(struct pmd_core *core, const struct pmd_container *c,
		      const struct pmd_frame *e, uint64_t node)
{
	(void)core;
	(void)c;
	return pmd_frame_remote(e) && e->node == node &&
	       !(e->flags & PMD_FRAME_LOST);
}

void pmd_pull_plan_node(struct pmd_core *core, struct pmd_container *c,
			pm_node_t node, struct pmd_pull *pulls,
			uint32_t *npulls)
{
	pull_plan_where(core, c, pick_node, node, pulls, npulls);
}

void pmd_move_remote_finish(struct pmd_core *core, struct pmd_task *task,
			    container_t h, const struct pmd_pull *pulls,
			    uint32_t n, const struct pmd_place *places)
{
	struct pmd_culprit why;
	struct pmd_container *c = NULL;
	struct pmd_cap *cap;

	if (!pmd_cap_decode(task, h, 0, 0, &cap, &why))
		c = cap->cont;
	for (uint32_t i = 0; i < n; i++) {
		struct pmd_frame *e = c ? pmd_ftab_lookup(&c->frames,
							  pulls[i].frame) : NULL;

		/* Only if it is still the frame we read. */
		if (!e || !pmd_frame_remote(e) || (e->flags & PMD_FRAME_LOST) ||
		    e->node != pulls[i].node || e->seg != pulls[i].seg ||
		    e->slot != pulls[i].slot || pmd_rseg_add(core, &places[i])) {
			pmd_rslot_give_back(core, places[i].node, places[i].seg,
					    places[i].slot);
			continue;
		}
		pmd_rslot_give_back(core, e->node, e->seg, e->slot);
		e->node = places[i].node;
		e->seg = places[i].seg;
		e->slot = places[i].slot;
		e->gen++;
	}
}

error_t pmd_pull_reserve(struct pmd_core *core, struct pmd_container *c,
			 const struct pmd_pull *pulls, uint32_t n,
			 uint32_t *held)
{
	uint32_t extra = 0, all = 0;

	*held = 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct pmd_frame *e = pmd_ftab_lookup(&c->frames,
							    pulls[i].frame);
		if (pulls[i].tagged && e) {
			all++;
			extra += !!(e->flags & PMD_FRAME_EXTRA);
		}
	}
	/* Returned frames must find room (guaranteed ones too: extra
	 * frames may fill what their guarantee reserved). */
	if (extra > pmd_budget_unreserved(&core->budget) ||
	    all > pmd_budget_room(&core->budget))
		return ENOMEM;
	if (n && pulls[0].tagged) { /* and the slots, before they come */
		error_t err = pmd_container_slots_reserve(core, c, n);
		if (err)
			return err;
	}
	core->budget.held += all;
	*held = all;
	return 0;
}

void pmd_pull_unreserve(struct pmd_core *core, uint32_t held)
{
	core->budget.held -= held;
}

error_t pmd_pull_finish(struct pmd_core *core, struct pmd_task *task,
			container_t h, const struct pmd_pull *pulls,
			uint32_t n, const uint8_t *data, uint32_t lost,
			uint32_t held)
{
	struct pmd_culprit why;
	struct pmd_container *c;
	struct pmd_cap *cap;
	error_t err;

	pmd_pull_unreserve(core, held); /* the frames take it now */
	err = pmd_cap_decode(task, h, 0, 0, &cap, &why);
	if (err)
		return err; /* gone meanwhile: nothing to bring in */
	c = cap->cont;
	err = pmd_container_slots_reserve(core, c, n);
	if (err)
		return err;
	pmd_cview_begin(c);
	for (uint32_t i = 0; i < n; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, pulls[i].frame);
		struct pmd_segment *seg;
		bool extra;

		/* Only if it is still the frame we read. */
		if (!e || !pmd_frame_remote(e) || (e->flags & PMD_FRAME_LOST) ||
		    e->node != pulls[i].node || e->seg != pulls[i].seg ||
		    e->slot != pulls[i].slot)
			continue;
		if (lost & (1u << i)) {
			e->flags |= PMD_FRAME_LOST;
			continue;
		}
		/* Here it is charged to this node: an extra frame needs room
		 * that no guarantee reserves (held for a returned one). */
		extra = e->flags & PMD_FRAME_EXTRA;
		if ((extra && pmd_budget_unreserved(&core->budget) == 0) ||
		    pmd_budget_free(&core->budget) == 0) {
			/* (A guaranteed one finds no room while extra
			 * frames fill it: it stays where it is.) */
			err = ENOMEM;
			continue;
		}
		pmd_charge_sub_remote(&core->budget, &c->owner->charge, extra);
		pmd_charge_add(&core->budget, &c->owner->charge, extra);
		if (!pulls[i].tagged) /* returned ones are given back */
			pmd_rslot_give_back(core, e->node, e->seg, e->slot);
		e->flags &= (uint16_t)~PMD_FRAME_REMOTE;
		e->node = 0;
		pmd_frame_take_slot(core, c, e);
		seg = pmd_frame_seg(core, e);
		pmd_segment_fill(seg, e->slot, data + (size_t)i * PM_FRAME_SIZE);
		pmd_cview_put(core, c, pulls[i].frame, e);
	}
	pmd_cview_end(c);
	return err;
}

/* ---- pushes ---- */

/* The runs of the lender's slots of the first count frames (all in
 * place), granted as asked. */
static void push_runs(const struct pmd_container *c, frame_t start,
		      uint32_t count, uint32_t flags, struct pmd_push_out *out)
{
	struct pm_map_run *run = NULL;

	out->granted = CONT_MAP_READ |
		       ((flags & CONT_MAP_WRITE) ? CONT_MAP_WRITE : 0);
	out->nruns = 0;
	for (uint32_t i = 0; i < count; i++) {
		const struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);

		if (run && run->segment == e->seg &&
		    run->slot + run->nframes == e->slot) {
			run->nframes++;
			continue;
		}
		run = &out->runs[out->nruns++];
		*run = (struct pm_map_run){ .segment = e->seg, .slot = e->slot,
					    .nframes = 1,
					    .prot = (uint16_t)out->granted };
	}
	out->done = count;
}

error_t pmd_push_plan(struct pmd_core *core, struct pmd_task *task,
		      container_t h, frame_t start, uint32_t count,
		      uint32_t flags, pm_node_t node, struct pmd_push_out *out,
		      struct pmd_culprit *why)
{
	struct pmd_container *c;
	error_t err;

	pmd_stops_reset(&core->stops);
	err = pmd_map_check(task, h, start, count, flags, &c, why);
	if (err)
		return err;
	if (count > PMD_FWD_MAP_MAX)
		count = PMD_FWD_MAP_MAX; /* the task asks again for the rest */
	out->pull = false;
	out->npush = 0;
	for (uint32_t i = 0; i < count; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);
		struct pmd_segment *seg;

		if (!e) {
			why->frame = start + i;
			return ENOENT;
		}
		if (frame_pushed_for(core, c, e, task->id) && e->node == node)
			continue; /* in place */
		if (pmd_frame_remote(e)) {
			/* Here first (pulled), then on to the task's node. */
			why->frame = start + i;
			if (e->flags & PMD_FRAME_LOST)
				return EIO;
			out->pull = true;
			return 0;
		}
		if (out->npush == PMD_PUSH_MAX)
			continue;
		/* It moves as pmd_container_move moves a frame: not from
		 * under a task that could not follow it. */
		seg = pmd_frame_seg(core, e);
		if (seg->exposed && seg->slots.ref[e->slot] == 1) {
			if (!pmd_holders_follow(core, seg, NULL)) {
				why->frame = start + i;
				return EBUSY;
			}
			/* Its holders' stores stop before it is read. */
			err = pmd_segment_fwd_reserve(seg);
			if (!err)
				err = pmd_stops_add(&core->stops, seg, e->slot, 1,
						    PM_STOP_WP, 0);
			if (err)
				return err;
		} else if (seg->exposed) {
			/* It leaves a shared slot: its mappings there go. */
			err = pmd_frame_break_stops(core, c, e, start + i);
			if (err)
				return err;
		}
		out->push[out->npush++] = (struct pmd_push){
			.frame = start + i, .seg = e->seg, .slot = e->slot,
			.gen = e->gen };
	}
	if (!out->npush)
		push_runs(c, start, count, flags, out);
	return 0;
}

/* The frame of a planned push, if it is still where the plan saw it. */
static struct pmd_frame *push_frame(struct pmd_container *c,
				    const struct pmd_push *push)
{
	struct pmd_frame *e = pmd_ftab_lookup(&c->frames, push->frame);

	if (!e || pmd_frame_remote(e) || e->seg != push->seg ||
	    e->slot != push->slot || e->gen != push->gen)
		return NULL;
	return e;
}

const uint8_t *pmd_push_bytes(struct pmd_core *core, struct pmd_task *task,
			      container_t h, const struct pmd_push *push)
{
	struct pmd_culprit why;
	struct pmd_frame *e;
	struct pmd_cap *cap;

	if (pmd_cap_decode(task, h, 0, 0, &cap, &why))
		return NULL;
	e = push_frame(cap->cont, push);
	return e ? pmd_frame_bytes(core, e) : NULL;
}

void pmd_frame_goes_to(struct pmd_core *core, struct pmd_container *c,
		       frame_t f, struct pmd_frame *e,
		       const struct pmd_place *p)
{
	struct pmd_segment *seg = pmd_frame_seg(core, e);
	bool extra = e->flags & PMD_FRAME_EXTRA;

	pmd_charge_sub(&core->budget, &c->owner->charge, extra);
	pmd_charge_add_remote(&core->budget, &c->owner->charge, extra);
	/* A slot it shared stays with the other frame; one that a task may
	 * have mapped retires (its mappings follow). */
	if (seg->exposed && seg->slots.ref[e->slot] == 1 && seg->fwd)
		pmd_segment_slot_retire(&core->segs, seg, e->slot, c, f);
	else
		pmd_slot_put(core, e->seg, e->slot);
	e->flags |= PMD_FRAME_REMOTE;
	e->seg = p->seg;
	e->slot = p->slot;
	e->node = p->node;
	e->gen++;
	pmd_cview_put(core, c, f, e);
}

void pmd_push_finish(struct pmd_core *core, struct pmd_task *task,
		     container_t h, const struct pmd_push *push, uint32_t n,
		     const struct pmd_place *places)
{
	struct pmd_culprit why;
	struct pmd_container *c = NULL;
	struct pmd_cap *cap;

	if (!pmd_cap_decode(task, h, 0, 0, &cap, &why))
		c = cap->cont;
	if (c)
		pmd_cview_begin(c);
	for (uint32_t i = 0; i < n; i++) {
		struct pmd_frame *e = c ? push_frame(c, &push[i]) : NULL;

		/* Only if it is still where we read it from. */
		if (!e || pmd_rseg_add(core, &places[i])) {
			pmd_rslot_give_back(core, places[i].node, places[i].seg,
					    places[i].slot);
			continue;
		}
		pmd_frame_goes_to(core, c, push[i].frame, e, &places[i]);
	}
	if (c)
		pmd_cview_end(c);
}
