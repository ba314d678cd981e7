/* check.c - see check.h. */
#include "check.h"

#include <string.h>

#include "frame.h"
#include "log.h"

/* What the walk counted. */
struct check_sums {
	uint64_t frames;              /* frames of every container */
	uint64_t remote;              /* of which on other nodes (or in the
	                               * backing store, */
	uint64_t stored;              /* these) */
	uint64_t charged;             /* sum of the tasks' charges */
	uint64_t extra_here;          /* of which extra frames here */
	uint64_t guaranteed;          /* sum of their guarantees */
	uint64_t containers;
};

/* One container's frames: each one here holds a live slot. */
static bool check_container(struct pmd_core *core, struct pmd_container *c,
			    uint64_t *mine, uint64_t *extra, uint64_t *extra_here,
			    struct check_sums *sums)
{
	struct pmd_frame *e;
	frame_t f = 0;
	bool ok = true;

	while (pmd_ftab_next(&c->frames, &f, &e)) {
		struct pmd_segment *seg = pmd_segtab_get(&core->segs, e->seg);

		if (e->flags & PMD_FRAME_REMOTE) {
			sums->remote++;
			sums->stored += e->node == PMD_NODE_STORE;
		} else if (!seg || !seg->slots.ref[e->slot]) {
			pmd_err("check: frame %#lx of container %#lx has no slot",
				(unsigned long)f, (unsigned long)c->id);
			ok = false;
		}
		(*mine)++;
		*extra += !!(e->flags & PMD_FRAME_EXTRA);
		*extra_here += (e->flags & (PMD_FRAME_EXTRA | PMD_FRAME_REMOTE)) ==
			       PMD_FRAME_EXTRA;
		if (f++ == UINT64_MAX)
			break;
	}
	if (!pmd_container_slots_ok(c)) {
		pmd_err("check: container %#lx counts %lu free slots, its "
			"segments have %lu", (unsigned long)c->id,
			(unsigned long)c->free_slots,
			(unsigned long)pmd_container_slots_free(c));
		ok = false;
	}
	return ok;
}

/* One task: its charge is what it owns, within its limits. */
static bool check_task(struct pmd_core *core, struct pmd_task *t,
		       struct check_sums *sums)
{
	uint64_t mine = 0, extra = 0, extra_here = 0, shares = 0;
	bool ok = true;

	for (struct pmd_list *cp = t->containers.next; cp != &t->containers;
	     cp = cp->next) {
		struct pmd_container *c = pmd_container_of(
			cp, struct pmd_container, owner_link);

		sums->containers++;
		ok &= check_container(core, c, &mine, &extra, &extra_here,
				      sums);
		for (struct pmd_list *sp = c->shares.next; sp != &c->shares;
		     sp = sp->next)
			shares++;
	}
	if (shares != t->nshares || t->nshares > PMD_TASK_SHARES_MAX ||
	    t->handles.count > PMD_TASK_HANDLES_MAX) {
		pmd_err("check: task %#lx has %lu shares (counted %lu) and %u "
			"handles", (unsigned long)t->id, (unsigned long)shares,
			(unsigned long)t->nshares, t->handles.count);
		ok = false;
	}
	if (mine != t->charge.allocated || extra != t->charge.extra_allocated ||
	    extra_here != t->charge.extra_here) {
		pmd_err("check: task %#lx is charged %lu (%lu extra, %lu here) "
			"but owns %lu (%lu extra, %lu here)",
			(unsigned long)t->id,
			(unsigned long)t->charge.allocated,
			(unsigned long)t->charge.extra_allocated,
			(unsigned long)t->charge.extra_here,
			(unsigned long)mine, (unsigned long)extra,
			(unsigned long)extra_here);
		ok = false;
	}
	if (t->charge.allocated - t->charge.extra_allocated >
	    t->charge.guaranteed ||
	    t->charge.extra_allocated > t->charge.extra_limit) {
		pmd_err("check: task %#lx is over its limits",
			(unsigned long)t->id);
		ok = false;
	}
	sums->frames += mine;
	sums->charged += t->charge.allocated;
	sums->extra_here += t->charge.extra_here;
	sums->guaranteed += t->charge.guaranteed;
	return ok;
}

/* The node's totals: what the walk counted, the budget, the slots. */
static bool check_totals(const struct pmd_core *core,
			 const struct check_sums *sums)
{
	const struct pmd_budget *b = &core->budget;
	uint64_t refs = 0, seen = 0;

	for (uint32_t i = 0; i < core->segs.len; i++) {
		const struct pmd_segment *seg = core->segs.v[i];
		for (unsigned s = 0; seg && s < PMD_SEG_SLOTS; s++)
			refs += seg->slots.ref[s];
		if (seg)
			seen += seg->resident_seen;
	}
	if (seen != core->segs.resident_seen) {
		pmd_err("check: the segments' memory as last seen sums to %lu "
			"bytes, the table says %lu", (unsigned long)seen,
			(unsigned long)core->segs.resident_seen);
		return false;
	}
	if (sums->frames == core->nframes &&
	    sums->charged == b->charged + b->remote &&
	    sums->extra_here == b->extra_charged &&
	    sums->stored + core->store.pending == core->store.used &&
	    sums->guaranteed == b->guaranteed_sum &&
	    sums->containers == core->ncontainers &&
	    refs == sums->frames - sums->remote + b->lent &&
	    b->charged + b->lent <= b->total &&
	    b->guaranteed_sum <= b->total + b->store)
		return true;
	pmd_err("check: node totals disagree: frames %lu/%lu charged %lu/%lu "
		"extra here %lu/%lu stored %lu/%lu (+%lu on their way) "
		"guaranteed %lu/%lu "
		"containers %lu/%lu slot refs %lu (frames here %lu, lent %lu; "
		"budget %lu)", (unsigned long)sums->frames,
		(unsigned long)core->nframes, (unsigned long)sums->charged,
		(unsigned long)(b->charged + b->remote),
		(unsigned long)sums->extra_here,
		(unsigned long)b->extra_charged, (unsigned long)sums->stored,
		(unsigned long)core->store.used,
		(unsigned long)core->store.pending,
		(unsigned long)sums->guaranteed,
		(unsigned long)b->guaranteed_sum,
		(unsigned long)sums->containers,
		(unsigned long)core->ncontainers, (unsigned long)refs,
		(unsigned long)(sums->frames - sums->remote),
		(unsigned long)b->lent, (unsigned long)b->total);
	return false;
}

/* Each user's books: its live tasks and the handles they hold. */
static bool check_users(const struct pmd_core *core)
{
	bool ok = true;

	for (const struct pmd_list *ul = core->users.next; ul != &core->users;
	     ul = ul->next) {
		const struct pmd_user *u = pmd_container_of(ul, struct pmd_user,
							    link);
		uint64_t handles = 0;
		uint32_t tasks = 0;

		for (const struct pmd_list *tl = core->tasks.next;
		     tl != &core->tasks; tl = tl->next) {
			const struct pmd_task *t = pmd_container_of(
				tl, struct pmd_task, link);
			if (t->user == u) {
				tasks++;
				handles += t->handles.count;
			}
		}
		if (tasks != u->ntasks || !tasks || handles != u->handles) {
			pmd_err("check: uid %u has %u tasks holding %lu "
				"handles, its books say %u and %lu", u->uid,
				tasks, (unsigned long)handles, u->ntasks,
				(unsigned long)u->handles);
			ok = false;
		}
	}
	return ok;
}

void pmd_core_check(struct pmd_core *core, struct pm_debug_rep *out)
{
	struct check_sums sums = { 0 };
	bool ok = true;

	pmd_segtab_flush(&core->segs);
	for (struct pmd_list *tp = core->tasks.next; tp != &core->tasks;
	     tp = tp->next)
		ok &= check_task(core, pmd_container_of(tp, struct pmd_task,
							link), &sums);
	ok &= check_totals(core, &sums);
	ok &= check_users(core);
	memset(out, 0, sizeof(*out));
	out->tasks = core->ntasks;
	out->containers = core->ncontainers;
	out->frames = core->nframes;
	out->charged = core->budget.charged + core->budget.remote;
	out->slots_used = core->segs.slots_used - core->segs.slots_retired -
			  core->segs.slots_lent;
	out->segments = core->segs.live;
	out->frames_total = core->budget.total;
	out->frames_free = pmd_budget_free(&core->budget);
	out->invariant_ok = ok;
}
