/* map.c - see map.h. */
#include "map.h"

#include <errno.h>

#include "container.h"
#include "frame.h"
#include "task.h"
#include "view.h"

#define MAP_FLAGS (CONT_MAP_READ | CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE)

error_t pmd_map_check(struct pmd_task *task, container_t h, frame_t start,
		      uint32_t count, uint32_t flags, struct pmd_container **c,
		      struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err;

	err = pmd_cap_decode(task, h, PMD_RIGHT_MAP | PMD_RIGHT_READ |
			     ((flags & CONT_MAP_WRITE) ? PMD_RIGHT_WRITE : 0),
			     PMD_USE_ALL, &cap, why);
	if (err)
		return err;
	if (!pmd_range_ok(start, count) || count > PM_MAP_MAX) {
		why->arg = PMD_ARG_MAP_COUNT;
		return EINVAL;
	}
	if ((flags & ~MAP_FLAGS) || !(flags & (CONT_MAP_READ | CONT_MAP_WRITE))) {
		why->arg = PMD_ARG_MAP_FLAGS;
		return EINVAL;
	}
	*c = cap->cont;
	return 0;
}

error_t pmd_map_decode(struct pmd_core *core, struct pmd_task *task,
		       container_t h, frame_t start, uint32_t count,
		       uint32_t flags, struct pmd_map *m,
		       struct pmd_culprit *why)
{
	struct pmd_container *c;
	error_t err;

	pmd_stops_reset(&core->stops);
	err = pmd_map_check(task, h, start, count, flags, &c, why);
	if (err)
		return err;
	*m = (struct pmd_map){ .cont = c, .start = start, .count = count,
			       .flags = flags };
	for (uint32_t i = 0; i < count; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&m->cont->frames, start + i);
		if (!e) {
			why->frame = start + i;
			return pmd_frame_missing(m->cont, start + i);
		}
		pmd_frame_touch(core, e);
		if (pmd_frame_remote(e)) {
			why->frame = start + i;
			if (e->flags & PMD_FRAME_LOST)
				return EIO;
			m->remote = true;
			return 0;
		}
		if (pmd_frame_seg(core, e)->domain != c) {
			m->nforeign++;
			err = pmd_frame_break_stops(core, c, e, start + i);
			if (err)
				return err;
		}
		if (pmd_frame_cow(core, e)) {
			m->ncow++;
			if ((flags & CONT_MAP_WRITE) &&
			    (flags & CONT_MAP_FORCE_WRITE) &&
			    (err = pmd_frame_break_stops(core, c, e, start + i)))
				return err;
		}
	}
	return 0;
}

/* The task's first map of the container makes its view; FORCE_WRITE
 * reserves the slots of the copies it breaks. */
static error_t map_reserve(struct pmd_core *core, const struct pmd_map *m,
			   bool force)
{
	struct pmd_container *c = m->cont;
	error_t err;

	if (!c->view) {
		err = pmd_cview_remake(core, c, c->frames.count * 2);
		if (err)
			return err;
	}
	if ((force && m->ncow) || m->nforeign)
		return pmd_container_slots_reserve(core, c, m->nforeign +
						   (force ? m->ncow : 0));
	return 0;
}

/* Adds frame e's slot to the runs (a new run when it does not follow the
 * last one); false when a new run needs a descriptor that no longer fits
 * in the reply. */
static bool map_run_add(struct pmd_core *core, const struct pmd_task *task,
			struct pmd_map_out *out, const struct pmd_frame *e,
			uint16_t prot)
{
	struct pmd_segment *seg = pmd_frame_seg(core, e);
	struct pm_map_run *run = out->nruns ? &out->runs[out->nruns - 1] : NULL;

	if (run && run->segment == seg->id && run->prot == prot &&
	    run->slot + run->nframes == e->slot && run->nframes < UINT16_MAX) {
		run->nframes++;
		return true;
	}
	if (!pmd_task_has_segment(task, seg->id)) {
		bool listed = false;
		for (uint32_t s = 0; s < out->nsegs; s++)
			listed |= out->segs[s] == seg;
		if (!listed) {
			if (out->nsegs == PM_MAP_FDS_MAX)
				return false; /* the task asks again */
			out->segs[out->nsegs++] = seg;
		}
	}
	out->runs[out->nruns++] = (struct pm_map_run){ .segment = seg->id,
		.slot = e->slot, .nframes = 1, .prot = prot };
	return true;
}

bool pmd_map_sends_fds(const struct pmd_core *core,
		       const struct pmd_task *task, const struct pmd_map *m)
{
	const struct pmd_container *c = m->cont;
	bool force = (m->flags & CONT_MAP_WRITE) &&
		     (m->flags & CONT_MAP_FORCE_WRITE);

	if (!c->view || !pmd_task_has_segment(task, c->view->id))
		return true;
	if (m->nforeign || (force && m->ncow))
		return true; /* new slots, perhaps in a new segment */
	for (uint32_t i = 0; i < m->count; i++) {
		const struct pmd_frame *e = pmd_ftab_lookup(&c->frames,
							    m->start + i);
		if (!pmd_task_has_segment(task, pmd_frame_seg(core, e)->id))
			return true;
	}
	return false;
}

error_t pmd_map_invoke(struct pmd_core *core, struct pmd_task *task,
		       const struct pmd_map *m, struct pmd_map_out *out)
{
	bool want_write = m->flags & CONT_MAP_WRITE;
	bool force = want_write && (m->flags & CONT_MAP_FORCE_WRITE);
	struct pmd_container *c = m->cont;
	bool writable = true;
	error_t err;
	uint32_t i;

	err = map_reserve(core, m, force);
	if (err)
		return err;
	/* FORCE_WRITE copies every copy-on-write frame first; a frame in
	 * another container's segment gets a slot of its own in any case
	 * (a task maps only its container's segments). */
	if ((force && m->ncow) || m->nforeign) {
		pmd_cview_begin(c);
		for (i = 0; i < m->count; i++) {
			struct pmd_frame *e = pmd_ftab_lookup(&c->frames,
							      m->start + i);
			if ((force && pmd_frame_cow(core, e)) ||
			    pmd_frame_seg(core, e)->domain != c)
				pmd_frame_break_cow(core, c, m->start + i, e);
		}
		pmd_cview_end(c);
	}

	/* What the task may touch is physical first. */
	pmd_frames_make_physical(core, c, m->start, m->count);
	out->nruns = out->nsegs = 0;
	if (want_write)
		pmd_cview_begin(c);
	for (i = 0; i < m->count; i++) {
		const struct pmd_frame *e = pmd_ftab_lookup(&c->frames,
							    m->start + i);
		uint16_t prot = CONT_MAP_READ;

		/* The seed's rule: never a writable mapping of a
		 * copy-on-write frame. */
		if (want_write && !pmd_frame_cow(core, e)) {
			prot |= CONT_MAP_WRITE;
			/* Its view entry may still say copy-on-write (the
			 * other side of the share went): say it is not. */
			pmd_cview_put(core, c, m->start + i, e);
		} else if (want_write) {
			writable = false;
		}
		if (!map_run_add(core, task, out, e, prot))
			break;
	}
	if (want_write)
		pmd_cview_end(c);
	for (uint32_t s = 0; s < out->nsegs; s++) {
		out->segs[s]->exposed = true;
		err = pmd_task_add_segment(task, out->segs[s]->id);
		if (err)
			return err;
	}
	out->view = c->view;
	out->send_view = !pmd_task_has_segment(task, c->view->id);
	if (out->send_view) {
		err = pmd_task_add_segment(task, c->view->id);
		if (err)
			return err;
	}
	out->done = i;
	out->granted = CONT_MAP_READ |
		       (want_write && writable ? CONT_MAP_WRITE : 0);
	return 0;
}
