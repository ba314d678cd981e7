/* alloc.c - see alloc.h. */
#include "alloc.h"

#include <assert.h>
#include <errno.h>

#include "container.h"
#include "frame.h"
#include "view.h"

#define ALLOC_FLAGS (CONT_ALLOC_PARTIAL | CONT_ALLOC_SQUASH | CONT_ALLOC_EXTRA)

/* Whether frame i of the allocation lives here. */
static bool alloc_here(const struct pmd_alloc *a, uint32_t i)
{
	switch (a->where) {
	case PMD_ALLOC_HERE:
		return true;
	case PMD_ALLOC_ANYWHERE:
		return false;
	case PMD_ALLOC_PLACES:
		break;
	}
	return i < a->nplaces && a->places[i].node == 0;
}

/* Takes one frame's charge from the task's quota q; an extra frame kept
 * here also takes one of node_left, what no guarantee reserves here
 * (guaranteed frames were reserved at admission; frames on other nodes
 * are the lender's). false: ENOMEM. */
static bool alloc_take(struct pmd_quota *q, uint64_t *node_left, bool here,
		       bool *extra)
{
	if (!pmd_quota_take(q, extra))
		return false;
	if (*extra && here) {
		if (!*node_left)
			return false;
		(*node_left)--;
	}
	return true;
}

/* Gives back a squashed frame's charge (and, when it was here, its
 * room). */
static void alloc_return(struct pmd_quota *q, uint64_t *node_left,
			 uint64_t *room, const struct pmd_frame *old,
			 bool extra_ok)
{
	bool extra = old->flags & PMD_FRAME_EXTRA;

	pmd_quota_return(q, extra, extra_ok);
	if (extra && extra_ok && !pmd_frame_remote(old))
		(*node_left)++;
	if (!pmd_frame_remote(old))
		(*room)++;
}

/* The walk of the decode: frame after frame until the first that cannot
 * be allocated. */
static void alloc_walk(struct pmd_core *core, struct pmd_alloc *a,
		       struct pmd_culprit *why)
{
	bool extra_ok = a->flags & CONT_ALLOC_EXTRA;
	bool squash = a->flags & CONT_ALLOC_SQUASH;
	struct pmd_container *c = a->cont;
	struct pmd_quota q;
	uint64_t node_left, room;
	uint32_t n;

	a->stop = 0;
	a->reclaim = 0;
	pmd_quota_init_remote(&a->task->charge, extra_ok, &q);
	node_left = pmd_budget_unreserved(&core->budget);
	room = pmd_budget_room(&core->budget);
	for (n = 0; n < a->count; n++) {
		struct pmd_frame *old = pmd_ftab_lookup(&c->frames, a->start + n);
		bool here = alloc_here(a, n), extra;

		if (old && !squash) {
			a->stop = EEXIST;
			break;
		}
		if (old && pmd_container_locked(c) && c->locker != a->task) {
			a->stop = EBUSY; /* no squashing under a server's lock */
			pmd_lock_refused(c);
			break;
		}
		if (old)
			alloc_return(&q, &node_left, &room, old, extra_ok);
		if (!alloc_take(&q, &node_left, here, &extra)) {
			a->stop = ENOMEM;
			break;
		}
		if (here && !room) {
			/* (An extra frame here took room no guarantee
			 * reserves: there was some.) */
			a->stop = ENOMEM;
			a->reclaim = (uint32_t)(a->count - n < q.g_left + 1
						? a->count - n : q.g_left + 1);
			break;
		}
		room -= here;
	}
	a->n = n;
	/* Frames with places: as many as there are places. */
	if (a->where == PMD_ALLOC_PLACES && a->nplaces < a->n) {
		a->n = a->nplaces;
		a->stop = ENOMEM;
	}
	if (a->stop)
		why->frame = a->start + a->n;
}

error_t pmd_alloc_decode(struct pmd_core *core, struct pmd_task *task,
			 container_t h, frame_t start, uint32_t count,
			 uint32_t flags, enum pmd_alloc_where where,
			 const struct pmd_place *places, uint32_t nplaces,
			 struct pmd_alloc *a, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err;

	err = pmd_cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
	if (err)
		return err;
	if (!pmd_range_ok(start, count)) {
		why->arg = PMD_ARG_ALLOC_COUNT;
		return EINVAL;
	}
	if (flags & ~ALLOC_FLAGS) {
		why->arg = PMD_ARG_ALLOC_FLAGS;
		return EINVAL;
	}
	*a = (struct pmd_alloc){ .cont = cap->cont, .task = task,
				 .start = start, .count = count, .flags = flags,
				 .where = where, .places = places,
				 .nplaces = nplaces };
	alloc_walk(core, a, why);
	return 0;
}

/* a->n shrinks to n, and the allocation stops there for want of memory. */
static void alloc_cut(struct pmd_alloc *a, uint32_t n)
{
	a->n = n;
	a->stop = ENOMEM;
}

void pmd_alloc_reserve(struct pmd_core *core, struct pmd_alloc *a,
		       struct pmd_culprit *why)
{
	struct pmd_container *c = a->cont;
	uint32_t i, n_here = 0;

	assert(a->where != PMD_ALLOC_ANYWHERE);
	/* The lent segments' records, and how many frames stay here. */
	for (i = 0; i < a->n; i++) {
		if (alloc_here(a, i)) {
			n_here++;
		} else if (pmd_rseg_add(core, &a->places[i])) {
			alloc_cut(a, i);
			break;
		}
	}
	/* Slots here: short of them, as many frames as leave free_slots
	 * frames here. */
	if (n_here && pmd_container_slots_reserve(core, c, n_here)) {
		uint32_t k = 0;
		for (i = 0; i < a->n; i++) {
			bool here = alloc_here(a, i);
			if (here && k == c->free_slots)
				break;
			k += here;
		}
		alloc_cut(a, i);
	}
	for (i = 0; i < a->n; i++) {
		if (pmd_ftab_reserve(&c->frames, a->start + i)) {
			alloc_cut(a, i);
			break;
		}
	}
	if (a->n && pmd_cview_reserve(core, c, c->frames.count + a->n))
		alloc_cut(a, 0);
	if (a->stop)
		why->frame = a->start + a->n;
}

/* New frames' slots are made ready (zero, not physical) in runs. */
struct alloc_run {
	struct pmd_segment *seg;
	unsigned first, n;
};

static void alloc_run_add(struct pmd_core *core, struct alloc_run *run,
			  const struct pmd_frame *e)
{
	if (run->seg && e->seg == run->seg->index &&
	    e->slot == run->first + run->n) {
		run->n++;
		return;
	}
	if (run->seg)
		pmd_segment_ready(run->seg, run->first, run->n);
	*run = (struct alloc_run){ .seg = pmd_frame_seg(core, e),
				   .first = e->slot, .n = 1 };
}

void pmd_alloc_invoke(struct pmd_core *core, const struct pmd_alloc *a)
{
	bool extra_ok = a->flags & CONT_ALLOC_EXTRA;
	struct pmd_container *c = a->cont;
	struct alloc_run run = { 0 };
	struct pmd_quota q;
	uint64_t node_left, room = 0;

	assert(a->where != PMD_ALLOC_ANYWHERE);
	/* The same quota walk as the decode, now for real. */
	pmd_quota_init_remote(&a->task->charge, extra_ok, &q);
	node_left = pmd_budget_unreserved(&core->budget);
	pmd_cview_begin(c);
	for (uint32_t i = 0; i < a->n; i++) {
		frame_t f = a->start + i;
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, f);
		bool here = alloc_here(a, i);
		bool extra, ok;

		/* A squashed frame keeps its table entry: removing it could
		 * prune the path that decode reserved. */
		if (e) {
			alloc_return(&q, &node_left, &room, e, extra_ok);
			pmd_frame_release(core, c, e);
			e->flags = 0;
		} else {
			e = pmd_ftab_insert(&c->frames, f);
			pmd_frame_forget_gone(c, f); /* (taken back before) */
		}
		ok = alloc_take(&q, &node_left, here, &extra);
		assert(ok);
		(void)ok;
		if (here) {
			pmd_frame_take_slot(core, c, e);
			e->node = 0;
			alloc_run_add(core, &run, e);
		} else {
			const struct pmd_place *p = &a->places[i];
			e->flags |= PMD_FRAME_REMOTE;
			e->seg = p->seg;
			e->slot = p->slot;
			e->node = p->node;
			e->gen++;
		}
		if (extra)
			e->flags |= PMD_FRAME_EXTRA;
		pmd_frame_touch(core, e);
		if (here)
			pmd_charge_add(&core->budget, &a->task->charge, extra);
		else
			pmd_charge_add_remote(&core->budget, &a->task->charge,
					      extra);
		core->nframes++;
		pmd_cview_put(core, c, f, e);
	}
	if (run.seg)
		pmd_segment_ready(run.seg, run.first, run.n);
	pmd_cview_end(c);
}

error_t pmd_container_allocate(struct pmd_core *core, struct pmd_task *task,
			       container_t h, frame_t start, uint32_t count,
			       uint32_t flags, const struct pmd_place *places,
			       uint32_t nplaces, uint32_t *done,
			       struct pmd_culprit *why)
{
	struct pmd_alloc a;
	error_t err;

	*done = 0;
	err = pmd_alloc_decode(core, task, h, start, count, flags,
			       places ? PMD_ALLOC_PLACES : PMD_ALLOC_HERE,
			       places, nplaces, &a, why);
	if (err)
		return err;
	pmd_alloc_reserve(core, &a, why);
	/* Without CONT_ALLOC_PARTIAL a stop leaves nothing allocated. */
	if (a.stop && (!(flags & CONT_ALLOC_PARTIAL) || a.n == 0))
		return a.stop;
	pmd_alloc_invoke(core, &a);
	*done = a.n;
	return a.stop;
}

error_t pmd_release_stops(struct pmd_core *core, struct pmd_task *task,
			  container_t h, frame_t start, uint64_t count)
{
	struct pmd_culprit why;
	struct pmd_cap *cap;
	struct pmd_frame *e;
	frame_t f = start;
	error_t err;

	pmd_stops_reset(&core->stops);
	if (pmd_cap_decode(task, h, PMD_RIGHT_OWNER, PMD_USE_DATA, &cap, &why))
		return 0; /* the request itself says what is wrong */
	while (pmd_ftab_next(&cap->cont->frames, &f, &e) &&
	       f - start < count) {
		if (!pmd_frame_remote(e) && pmd_frame_cow(core, e)) {
			err = pmd_frame_break_stops(core, cap->cont, e, f);
			if (err)
				return err;
		}
		if (f++ == UINT64_MAX)
			break;
	}
	return 0;
}

error_t pmd_container_deallocate(struct pmd_core *core, struct pmd_task *task,
				 container_t h, frame_t start, uint32_t count,
				 struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	error_t err;

	err = pmd_cap_decode(task, h, PMD_RIGHT_OWNER, PMD_USE_DATA, &cap, why);
	if (err)
		return err;
	if (!pmd_range_ok(start, count)) {
		why->arg = PMD_ARG_ALLOC_COUNT;
		return EINVAL;
	}
	c = cap->cont;
	for (uint32_t i = 0; i < count; i++) {
		if (!pmd_ftab_lookup(&c->frames, start + i) &&
		    !pmd_frame_gone(c, start + i)) {
			why->frame = start + i;
			return ENOENT;
		}
	}
	pmd_cview_begin(c);
	for (uint32_t i = 0; i < count; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);

		if (!e) { /* taken back by the pmd: forgotten now */
			pmd_frame_forget_gone(c, start + i);
			continue;
		}
		pmd_frame_drop(core, c, start + i, e);
		if (c->view)
			pmd_view_del(c->view, start + i);
	}
	pmd_cview_end(c);
	pmd_container_trim(core, c);
	return 0;
}
