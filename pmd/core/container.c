/* container.c - see container.h. */
#include "container.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core.h"
#include "log.h"
#include "segment.h"
#include "task.h"
#include "view.h"

#define ALLOC_FLAGS (CONT_ALLOC_PARTIAL | CONT_ALLOC_SQUASH | CONT_ALLOC_EXTRA)
#define MAP_FLAGS   (CONT_MAP_READ | CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE)

/* What a decode step checks besides handle and rights. */
#define USE_BOUND 0x1 /* a weak reference works only for its task: EACCES */
#define USE_DATA  0x2 /* touches contents: the owner is EBUSY under a lock */
#define USE_ALL   (USE_BOUND | USE_DATA)

/* ---- locks ---- */

/* Sets or clears (task NULL) the lock, in the view too: while a lock
 * holds, the owner's maps must come to the pmd. */
static void container_set_locker(struct pmd_container *c,
				 struct pmd_task *task, uint64_t until_ms)
{
	c->locker = task;
	c->lock_until_ms = until_ms;
	if (c->view)
		pmd_view_set_locker(c->view, task ? task->id : 0);
}

/* Whether c is locked now; an expired lock ends here. */
static bool container_locked(struct pmd_container *c)
{
	if (!c->locker)
		return false;
	if (pmd_core_now_ms() >= c->lock_until_ms) {
		container_set_locker(c, NULL, 0);
		return false;
	}
	return true;
}

void pmd_container_unlock_all(struct pmd_core *core, struct pmd_task *task)
{
	for (uint32_t i = 0; i < task->handles.len; i++) {
		struct pmd_cap *cap = task->handles.v[i];
		if (cap && cap->cont && cap->cont->locker == task)
			container_set_locker(cap->cont, NULL, 0);
	}
}

/* ---- capabilities ---- */

/* Decode step shared by every operation: the handle names a live
 * capability of this task with the rights asked for, usable by it, and
 * not blocked by a server's lock. */
static error_t cap_decode(struct pmd_task *task, container_t h,
			  uint32_t rights, unsigned use,
			  struct pmd_cap **cap_out, struct pmd_culprit *why)
{
	struct pmd_cap *cap = pmd_htab_lookup(&task->handles, h);

	why->arg = 1;
	if (!cap)
		return EBADF;
	if (!cap->cont)
		return ESTALE; /* revoked: unshared, or the container is gone */
	if ((cap->rights & rights) != rights)
		return EPERM;
	if ((use & USE_BOUND) && cap->share && cap->share->bound != task->id)
		return EACCES;
	if ((use & USE_DATA) && (cap->rights & PMD_RIGHT_OWNER) &&
	    container_locked(cap->cont) && cap->cont->locker != task)
		return EBUSY;
	why->arg = 0;
	*cap_out = cap;
	return 0;
}

static void share_free(struct pmd_core *core, struct pmd_share *sh)
{
	pmd_share_remove(core, sh);
	pmd_list_del(&sh->cont_link);
	free(sh);
}

/* Turns a capability into a tombstone: its handle stays, and every use
 * but release answers ESTALE. */
static void cap_revoke(struct pmd_cap *cap)
{
	if (!cap->cont)
		return;
	if (cap->cont->locker == cap->holder && cap->share)
		container_set_locker(cap->cont, NULL, 0);
	pmd_list_del(&cap->cont_link);
	cap->cont = NULL;
	if (cap->share)
		cap->share->ncaps--;
	cap->share = NULL;
}

void pmd_cap_free(struct pmd_core *core, struct pmd_cap *cap)
{
	struct pmd_share *sh = cap->share;

	cap_revoke(cap);
	/* A share nobody holds any more can never be used again. */
	if (sh && sh->ncaps == 0)
		share_free(core, sh);
	pmd_htab_remove(&cap->holder->handles, cap);
	free(cap);
}

static error_t cap_new(struct pmd_task *holder, struct pmd_container *c,
		       struct pmd_share *sh, uint32_t rights,
		       struct pmd_cap **cap_out)
{
	struct pmd_cap *cap = calloc(1, sizeof(*cap));
	error_t err;

	if (!cap)
		return ENOMEM;
	err = pmd_htab_insert(&holder->handles, cap);
	if (err) {
		free(cap);
		return err;
	}
	cap->cont = c;
	cap->share = sh;
	cap->holder = holder;
	cap->rights = rights;
	pmd_list_add(&c->caps, &cap->cont_link);
	if (sh)
		sh->ncaps++;
	*cap_out = cap;
	return 0;
}

/* Frames start .. start+count-1 are a valid range: count >= 1 and no
 * identifier wraps. */
static bool range_ok(frame_t start, uint64_t count)
{
	return count >= 1 && start <= UINT64_MAX - (count - 1);
}

static struct pmd_segment *frame_seg(struct pmd_core *core,
				     const struct pmd_frame *e)
{
	struct pmd_segment *seg = pmd_segtab_get(&core->segs, e->seg);

	assert(seg);
	return seg;
}

/* A frame is copy-on-write while its slot is shared. */
static bool frame_is_cow(struct pmd_core *core, const struct pmd_frame *e)
{
	return !(e->flags & PMD_FRAME_REMOTE) &&
	       frame_seg(core, e)->slots.ref[e->slot] > 1;
}

static bool frame_remote(const struct pmd_frame *e)
{
	return e->flags & PMD_FRAME_REMOTE;
}

/* ---- the tasks' view of the frame table ---- */

/* Publishes frame f's place in the view (must be inside begin/end). */
static void view_put(struct pmd_core *core, struct pmd_container *c,
		     frame_t f, const struct pmd_frame *e)
{
	if (c->view && frame_remote(e))
		pmd_view_del(c->view, f); /* not for the fast path */
	else if (c->view)
		pmd_view_set(c->view, f, frame_seg(core, e)->id, e->slot,
			     frame_is_cow(core, e) ? PM_VIEW_COW : 0, e->gen);
}

static void view_begin(struct pmd_container *c)
{
	if (c->view)
		pmd_view_begin(c->view);
}

static void view_end(struct pmd_container *c)
{
	if (c->view)
		pmd_view_end(c->view);
}

/* Replaces c's view by a new one with room for `count` frames, filled from
 * the frame table. Decode-safe: on failure the old view stays. */
static void container_view_install(struct pmd_core *core,
				   struct pmd_container *c, struct pmd_view *v);

static error_t container_view_remake(struct pmd_core *core,
				     struct pmd_container *c, uint64_t count)
{
	struct pmd_view *v;
	error_t err;

	err = pmd_view_create(count, &v);
	if (err)
		return err;
	container_view_install(core, c, v);
	return 0;
}

/* Fills v from c's frame table and makes it c's view; cannot fail. */
static void container_view_install(struct pmd_core *core,
				   struct pmd_container *c, struct pmd_view *v)
{
	struct pmd_frame *e;
	frame_t f = 0;

	pmd_view_begin(v);
	while (pmd_ftab_next(&c->frames, &f, &e)) {
		if (!frame_remote(e))
			pmd_view_set(v, f, frame_seg(core, e)->id, e->slot,
				     frame_is_cow(core, e) ? PM_VIEW_COW : 0,
				     e->gen);
		if (f++ == UINT64_MAX)
			break;
	}
	pmd_view_set_locker(v, c->locker ? c->locker->id : 0);
	pmd_view_end(v);
	pmd_view_destroy(c->view);
	c->view = v;
}

/* Decode step of anything that adds frames: room for `count` in the view. */
static error_t container_view_reserve(struct pmd_core *core,
				      struct pmd_container *c, uint64_t count)
{
	if (!c->view || pmd_view_fits(c->view, count))
		return 0;
	return container_view_remake(core, c, count * 2);
}

/* ---- life of a container ---- */

error_t pmd_container_create(struct pmd_core *core, struct pmd_task *task,
			     container_t *handle_out)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	error_t err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	pmd_ftab_init(&c->frames);
	pmd_list_init(&c->segments);
	pmd_list_init(&c->caps);
	pmd_list_init(&c->shares);
	err = cap_new(task, c, NULL, PMD_RIGHTS_OWNER, &cap);
	if (err) {
		free(c);
		return err;
	}
	c->id = (uint64_t)core->cfg.node << 48 | ++core->next_container;
	c->owner = task;
	c->policy = PM_PLACE_LOCAL;
	pmd_list_add(&task->containers, &c->owner_link);
	task->ncontainers++;
	core->ncontainers++;
	*handle_out = cap->handle;
	return 0;
}

/* Drops one slot reference of a frame's place. */
static void slot_put(struct pmd_core *core, uint32_t segi, uint16_t slot)
{
	struct pmd_segment *seg = pmd_segtab_get(&core->segs, segi);

	if (pmd_segment_slot_put(&core->segs, seg, slot)) {
		if (seg->domain)
			seg->domain->free_slots++;
		else if (seg->slots.used == 0)
			pmd_segment_destroy(&core->segs, seg);
	}
}

/* A remote frame's lent slot goes back to its node (the server sends the
 * frees); a lost one has nothing to give back. */
static void remote_put(struct pmd_core *core, const struct pmd_frame *e)
{
	if (!(e->flags & PMD_FRAME_LOST))
		pmd_core_give_back(core, (pm_node_t)e->pad, e->seg, e->slot);
}

/* Gives up what a frame holds, its slot reference and its charge, but not
 * its table entry. */
static void frame_release(struct pmd_core *core, struct pmd_container *c,
			  struct pmd_frame *e)
{
	if (frame_remote(e)) {
		remote_put(core, e);
		pmd_charge_sub_remote(&core->budget, &c->owner->charge,
				      e->flags & PMD_FRAME_EXTRA);
	} else {
		slot_put(core, e->seg, e->slot);
		pmd_charge_sub(&core->budget, &c->owner->charge,
			       e->flags & PMD_FRAME_EXTRA);
	}
	core->nframes--;
}

/* Drops one frame: what it holds and its table entry. */
static void frame_drop(struct pmd_core *core, struct pmd_container *c,
		       frame_t f, struct pmd_frame *e)
{
	frame_release(core, c, e);
	pmd_ftab_remove(&c->frames, f);
}

/* Empty segments of c beyond the first go back to the kernel, so that
 * deallocating many frames releases descriptors and address space too. */
static void container_trim_segments(struct pmd_core *core,
				    struct pmd_container *c)
{
	struct pmd_list *pos, *tmp;
	bool kept = false;

	pmd_segtab_flush(&core->segs);
	pmd_list_for_each_safe(pos, tmp, &c->segments) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		if (seg->slots.used)
			continue;
		if (!kept && !seg->exposed) {
			kept = true;
			continue;
		}
		c->free_slots -= PMD_SEG_SLOTS;
		pmd_segment_destroy(&core->segs, seg);
	}
}

void pmd_container_free(struct pmd_core *core, struct pmd_container *c)
{
	struct pmd_list *pos, *tmp;
	frame_t f = 0;
	struct pmd_frame *e;

	/* Every capability naming it dies: the owner's goes, weak
	 * references become tombstones (ESTALE) in their holders' tables. */
	pmd_list_for_each_safe(pos, tmp, &c->caps) {
		struct pmd_cap *cap =
			pmd_container_of(pos, struct pmd_cap, cont_link);
		if (cap->share)
			cap_revoke(cap);
		else
			pmd_cap_free(core, cap);
	}
	pmd_list_for_each_safe(pos, tmp, &c->shares)
		share_free(core, pmd_container_of(pos, struct pmd_share,
						  cont_link));
	pmd_view_destroy(c->view);
	c->view = NULL;
	while (pmd_ftab_next(&c->frames, &f, &e))
		frame_drop(core, c, f, e);
	pmd_ftab_fini(&c->frames);
	pmd_segtab_flush(&core->segs); /* freed slots count as used until then */

	/* Segments with slots still referenced elsewhere outlive it,
	 * orphaned; the rest go now. Retired slots forward to c: they go
	 * with it. */
	pmd_list_for_each_safe(pos, tmp, &c->segments) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		pmd_segment_release_retired(&core->segs, seg);
		if (seg->slots.used) {
			pmd_list_del(&seg->link);
			seg->domain = NULL;
		} else {
			pmd_segment_destroy(&core->segs, seg);
		}
	}
	pmd_list_del(&c->owner_link);
	c->owner->ncontainers--;
	core->ncontainers--;
	free(c);
}

error_t pmd_container_destroy(struct pmd_core *core, struct pmd_task *task,
			      container_t h, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, PMD_RIGHT_OWNER, USE_DATA, &cap, why);

	if (err)
		return err;
	pmd_container_free(core, cap->cont);
	return 0;
}

error_t pmd_container_stat(struct pmd_core *core, struct pmd_task *task,
			   container_t h, struct pm_stat_rep *st_out,
			   struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	struct pmd_frame *e;
	frame_t f = 0;
	error_t err = cap_decode(task, h, 0, 0, &cap, why);

	if (err)
		return err;
	c = cap->cont;
	memset(st_out, 0, sizeof(*st_out));
	while (pmd_ftab_next(&c->frames, &f, &e)) {
		st_out->cow += frame_is_cow(core, e);
		st_out->remote += frame_remote(e);
		if (f++ == UINT64_MAX)
			break;
	}
	st_out->frames = c->frames.count;
	st_out->resident = c->frames.count - st_out->remote;
	st_out->home = (uint16_t)(c->id >> 48);
	if (container_locked(c)) {
		uint64_t left = c->lock_until_ms - pmd_core_now_ms();
		st_out->locked_ms_left = left ? (uint32_t)left : 1;
	}
	return 0;
}

/* ---- slots ---- */

/* Makes sure c has at least `need` free slots in its own segments. On
 * failure the segments made so far stay with c (empty, harmless). */
static error_t container_reserve_slots(struct pmd_core *core,
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

/* Takes one free slot of c's own segments into e; there must be one. */
static void container_take_slot(struct pmd_core *core, struct pmd_container *c,
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
	assert(!"container_take_slot without a reserved slot");
}

/* Gives e a private slot holding its current contents (breaks the copy).
 * A slot must have been reserved. */
static void frame_unshare(struct pmd_core *core, struct pmd_container *c,
			  frame_t f, struct pmd_frame *e)
{
	struct pmd_segment *old = frame_seg(core, e);
	uint32_t old_seg = e->seg;
	uint16_t old_slot = e->slot;

	container_take_slot(core, c, e);
	memcpy(pmd_segment_frame(frame_seg(core, e), e->slot),
	       pmd_segment_frame(old, old_slot), PM_FRAME_SIZE);
	slot_put(core, old_seg, old_slot);
	view_put(core, c, f, e);
}

/* ---- allocation ---- */

/* Whether frame i of an allocation lives here: every frame of a local
 * one, and of one with places those whose place names no node (an
 * interleave mixes both); a frame past the places has none. */
static bool alloc_here(const struct pmd_place *places, uint32_t nplaces,
		       bool here, uint32_t i)
{
	if (!places)
		return here;
	return i < nplaces && places[i].node == 0;
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

/* Gives back a squashed frame's charge. */
static void alloc_return(struct pmd_quota *q, uint64_t *node_left,
			 const struct pmd_frame *old, bool extra_ok)
{
	bool extra = old->flags & PMD_FRAME_EXTRA;

	pmd_quota_return(q, extra, extra_ok);
	if (extra && extra_ok && !frame_remote(old))
		(*node_left)++;
}

/* Allocation, local or into the places given (one per frame: a lent slot
 * of another node, or here when it names no node); with plan set, only
 * the decode (places, if any, need only their nodes; without, plan_here
 * says where): *done gets how many frames the call would allocate and
 * the stop is returned, nothing changes. */
static error_t container_allocate(struct pmd_core *core, struct pmd_task *task,
				  container_t h, frame_t start, uint32_t count,
				  uint32_t flags, const struct pmd_place *places,
				  uint32_t nplaces, bool plan, bool plan_here,
				  uint32_t *done, struct pmd_culprit *why)
{
	bool extra_ok = flags & CONT_ALLOC_EXTRA;
	bool squash = flags & CONT_ALLOC_SQUASH;
	bool here_all = plan ? plan_here : true;
	struct pmd_container *c;
	struct pmd_quota q;
	struct pmd_cap *cap;
	uint64_t node_left;
	uint32_t n = 0, i, n_here = 0;
	error_t stop = 0, err;

	*done = 0;
	err = cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
	if (err)
		return err;
	if (!range_ok(start, count)) {
		why->arg = 3;
		return EINVAL;
	}
	if (flags & ~ALLOC_FLAGS) {
		why->arg = 4;
		return EINVAL;
	}
	c = cap->cont;

	/* Decode: walk the frames in order until the first that cannot be
	 * allocated; that error is the stop. */
	pmd_quota_init_remote(&task->charge, extra_ok, &q);
	node_left = pmd_budget_unreserved(&core->budget);
	for (n = 0; n < count; n++) {
		struct pmd_frame *old = pmd_ftab_lookup(&c->frames, start + n);
		bool extra;

		if (old && !squash) {
			stop = EEXIST;
			break;
		}
		if (old && container_locked(c) && c->locker != task) {
			stop = EBUSY; /* no squashing under a server's lock */
			break;
		}
		if (old)
			alloc_return(&q, &node_left, old, extra_ok);
		if (!alloc_take(&q, &node_left,
				alloc_here(places, plan ? count : nplaces,
					   here_all, n), &extra)) {
			stop = ENOMEM;
			break;
		}
	}
	if (plan) {
		*done = n;
		if (stop)
			why->frame = start + n;
		return stop;
	}
	/* Frames with places: as many as there are places. */
	if (places && nplaces < n) {
		n = nplaces;
		stop = ENOMEM;
	}
	for (i = 0; i < n; i++) {
		if (alloc_here(places, nplaces, true, i)) {
			n_here++;
		} else if (pmd_core_rseg_add(core, &places[i])) {
			n = i;
			stop = ENOMEM;
			break;
		}
	}
	/* Reserve slots and table nodes for the n frames; running out here
	 * is one more reason to stop early. */
	if (n_here && container_reserve_slots(core, c, n_here)) {
		/* As many frames as leave free_slots frames here. */
		uint32_t k = 0;
		for (i = 0; i < n; i++) {
			bool here = alloc_here(places, nplaces, true, i);
			if (here && k == c->free_slots)
				break;
			k += here;
		}
		n = i;
		stop = ENOMEM;
	}
	for (i = 0; i < n; i++) {
		if (pmd_ftab_reserve(&c->frames, start + i)) {
			n = i;
			stop = ENOMEM;
			break;
		}
	}
	if (n && container_view_reserve(core, c, c->frames.count + n)) {
		n = 0;
		stop = ENOMEM;
	}
	if (stop) {
		why->frame = start + n;
		if (!(flags & CONT_ALLOC_PARTIAL) || n == 0)
			return stop;
	}

	/* Invoke: replay the same quota walk, now for real. */
	pmd_quota_init_remote(&task->charge, extra_ok, &q);
	node_left = pmd_budget_unreserved(&core->budget);
	struct pmd_segment *run_seg = NULL;
	unsigned run_first = 0, run_n = 0;
	view_begin(c);
	for (i = 0; i < n; i++) {
		frame_t f = start + i;
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, f);
		bool here = alloc_here(places, nplaces, true, i);
		bool extra, ok;

		/* A squashed frame keeps its table entry: removing it could
		 * prune the path that decode reserved. */
		if (e) {
			alloc_return(&q, &node_left, e, extra_ok);
			frame_release(core, c, e);
			e->flags = 0;
		} else {
			e = pmd_ftab_insert(&c->frames, f);
		}
		ok = alloc_take(&q, &node_left, here, &extra);
		assert(ok);
		(void)ok;
		if (!here) {
			e->flags |= PMD_FRAME_REMOTE;
			e->seg = places[i].seg;
			e->slot = places[i].slot;
			e->pad = places[i].node;
			e->gen++;
		} else {
			container_take_slot(core, c, e);
			e->pad = 0;
			/* Frames are physical from birth, in runs of slots. */
			if (run_seg && e->seg == run_seg->index &&
			    e->slot == run_first + run_n) {
				run_n++;
			} else {
				if (run_seg)
					pmd_segment_populate(run_seg, run_first,
							     run_n);
				run_seg = frame_seg(core, e);
				run_first = e->slot;
				run_n = 1;
			}
		}
		if (extra)
			e->flags |= PMD_FRAME_EXTRA;
		if (!here)
			pmd_charge_add_remote(&core->budget, &task->charge, extra);
		else
			pmd_charge_add(&core->budget, &task->charge, extra);
		core->nframes++;
		view_put(core, c, f, e);
	}
	if (run_seg)
		pmd_segment_populate(run_seg, run_first, run_n);
	view_end(c);
	*done = n;
	return stop;
}

error_t pmd_container_allocate(struct pmd_core *core, struct pmd_task *task,
			       container_t h, frame_t start, uint32_t count,
			       uint32_t flags, uint32_t *done,
			       struct pmd_culprit *why)
{
	return container_allocate(core, task, h, start, count, flags, NULL, 0,
				  false, false, done, why);
}

error_t pmd_container_allocate_plan(struct pmd_core *core,
				    struct pmd_task *task, container_t h,
				    frame_t start, uint32_t count,
				    uint32_t flags, bool here, uint32_t *n,
				    struct pmd_culprit *why)
{
	return container_allocate(core, task, h, start, count, flags, NULL, 0,
				  true, here, n, why);
}

error_t pmd_container_allocate_plan_places(struct pmd_core *core,
					   struct pmd_task *task,
					   container_t h, frame_t start,
					   uint32_t count, uint32_t flags,
					   const struct pmd_place *places,
					   uint32_t *n,
					   struct pmd_culprit *why)
{
	return container_allocate(core, task, h, start, count, flags, places,
				  count, true, false, n, why);
}

error_t pmd_container_allocate_remote(struct pmd_core *core,
				      struct pmd_task *task, container_t h,
				      frame_t start, uint32_t count,
				      uint32_t flags,
				      const struct pmd_place *places,
				      uint32_t nplaces, uint32_t *done,
				      struct pmd_culprit *why)
{
	return container_allocate(core, task, h, start, count, flags, places,
				  nplaces, false, false, done, why);
}

error_t pmd_container_deallocate(struct pmd_core *core, struct pmd_task *task,
				 container_t h, frame_t start, uint32_t count,
				 struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	error_t err;

	err = cap_decode(task, h, PMD_RIGHT_OWNER, USE_DATA, &cap, why);
	if (err)
		return err;
	if (!range_ok(start, count)) {
		why->arg = 3;
		return EINVAL;
	}
	c = cap->cont;
	for (uint32_t i = 0; i < count; i++) {
		if (!pmd_ftab_lookup(&c->frames, start + i)) {
			why->frame = start + i;
			return ENOENT;
		}
	}
	view_begin(c);
	for (uint32_t i = 0; i < count; i++) {
		frame_drop(core, c, start + i,
			   pmd_ftab_lookup(&c->frames, start + i));
		if (c->view)
			pmd_view_del(c->view, start + i);
	}
	view_end(c);
	container_trim_segments(core, c);
	return 0;
}

/* ---- maps ---- */

/* A map's handle, rights and arguments. */
static error_t map_decode(struct pmd_task *task, container_t h, frame_t start,
			  uint32_t count, uint32_t flags,
			  struct pmd_container **c, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err;

	err = cap_decode(task, h, PMD_RIGHT_MAP | PMD_RIGHT_READ |
			 ((flags & CONT_MAP_WRITE) ? PMD_RIGHT_WRITE : 0),
			 USE_ALL, &cap, why);
	if (err)
		return err;
	if (!range_ok(start, count) || count > PM_MAP_MAX) {
		why->arg = 3;
		return EINVAL;
	}
	if ((flags & ~MAP_FLAGS) || !(flags & (CONT_MAP_READ | CONT_MAP_WRITE))) {
		why->arg = 5;
		return EINVAL;
	}
	*c = cap->cont;
	return 0;
}

error_t pmd_container_map(struct pmd_core *core, struct pmd_task *task,
			  container_t h, frame_t start, uint32_t count,
			  uint32_t flags, struct pmd_map_out *out,
			  struct pmd_culprit *why)
{
	bool want_write = flags & CONT_MAP_WRITE;
	bool force = want_write && (flags & CONT_MAP_FORCE_WRITE);
	struct pm_map_run *run = NULL;
	struct pmd_container *c;
	bool writable = true;
	uint64_t cow = 0;
	error_t err;
	uint32_t i;

	err = map_decode(task, h, start, count, flags, &c, why);
	if (err)
		return err;
	for (i = 0; i < count; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);
		if (!e) {
			why->frame = start + i;
			return ENOENT;
		}
		if (frame_remote(e)) {
			/* Mapping brings a remote frame here first: the
			 * server pulls it (pmd_container_pull_*). */
			why->frame = start + i;
			return (e->flags & PMD_FRAME_LOST) ? EIO : EREMOTE;
		}
		cow += frame_is_cow(core, e);
	}
	/* The task gets the view with its first map. */
	if (!c->view) {
		err = container_view_remake(core, c, c->frames.count * 2);
		if (err)
			return err;
	}
	/* FORCE_WRITE copies every copy-on-write frame first. */
	if (force && cow) {
		err = container_reserve_slots(core, c, cow);
		if (err)
			return err;
		view_begin(c);
		for (i = 0; i < count; i++) {
			struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);
			if (frame_is_cow(core, e))
				frame_unshare(core, c, start + i, e);
		}
		view_end(c);
	}

	out->nruns = out->nsegs = 0;
	for (i = 0; i < count; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);
		struct pmd_segment *seg = frame_seg(core, e);
		uint16_t prot = CONT_MAP_READ;

		/* The seed's rule: never a writable mapping of a
		 * copy-on-write frame. */
		if (want_write && !frame_is_cow(core, e))
			prot |= CONT_MAP_WRITE;
		else if (want_write)
			writable = false;

		if (run && run->segment == seg->id && run->prot == prot &&
		    run->slot + run->nframes == e->slot &&
		    run->nframes < UINT16_MAX) {
			run->nframes++;
			continue;
		}
		/* A new run; its segment may need a descriptor sent. */
		if (!pmd_task_has_segment(task, seg->id)) {
			bool listed = false;
			for (uint32_t s = 0; s < out->nsegs; s++)
				listed |= out->segs[s] == seg;
			if (!listed) {
				if (out->nsegs == PM_MAP_FDS_MAX)
					break; /* the task asks again */
				out->segs[out->nsegs++] = seg;
			}
		}
		run = &out->runs[out->nruns++];
		run->segment = seg->id;
		run->slot = e->slot;
		run->nframes = 1;
		run->prot = prot;
	}
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
	out->granted = CONT_MAP_READ | (want_write && writable ? CONT_MAP_WRITE : 0);
	return 0;
}

/* ---- read and write ---- */

/* Decode for read and write: rights, range, every touched frame present.
 * Sets *first and *nframes to the frames touched. */
static error_t io_decode(struct pmd_task *task, container_t h, uint32_t rights,
			 frame_t frame, uint64_t offset, uint32_t len,
			 struct pmd_cap **cap_out, frame_t *first,
			 uint64_t *nframes, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	uint64_t skip, in_first, n;
	error_t err;

	err = cap_decode(task, h, rights, USE_ALL, &cap, why);
	if (err)
		return err;
	if (len == 0 || len > PM_IO_MAX) {
		why->arg = 5;
		return EINVAL;
	}
	skip = offset / PM_FRAME_SIZE;
	in_first = offset % PM_FRAME_SIZE;
	n = (in_first + len + PM_FRAME_SIZE - 1) / PM_FRAME_SIZE;
	if (frame > UINT64_MAX - skip || !range_ok(frame + skip, n)) {
		why->arg = 3;
		return EINVAL;
	}
	bool remote = false;
	for (uint64_t i = 0; i < n; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&cap->cont->frames,
						      frame + skip + i);
		if (!e) {
			why->frame = frame + skip + i;
			return ENOENT;
		}
		remote |= frame_remote(e);
	}
	*cap_out = cap;
	if (remote) {
		*first = frame + skip;
		*nframes = n;
		return EREMOTE; /* the server reaches it: pmd_container_io_plan */
	}
	*first = frame + skip;
	*nframes = n;
	return 0;
}

error_t pmd_container_read(struct pmd_core *core, struct pmd_task *task,
			   container_t h, frame_t frame, uint64_t offset,
			   void *buf, uint32_t len, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	frame_t first;
	uint64_t n, pos = offset % PM_FRAME_SIZE;
	uint8_t *dst = buf;
	error_t err;

	err = io_decode(task, h, PMD_RIGHT_READ, frame, offset, len, &cap,
			&first, &n, why);
	if (err)
		return err;
	for (uint64_t i = 0; i < n && len; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&cap->cont->frames, first + i);
		uint32_t chunk = PM_FRAME_SIZE - (uint32_t)pos;

		if (chunk > len)
			chunk = len;
		memcpy(dst, (uint8_t *)pmd_segment_frame(frame_seg(core, e),
							 e->slot) + pos, chunk);
		dst += chunk;
		len -= chunk;
		pos = 0;
	}
	return 0;
}

/* Where len bytes at pos of remote frame e are, for RDMA (r: its
 * segment's registration on the lender). */
static struct pmd_io_piece remote_piece(const struct pmd_rseg *r,
					const struct pmd_frame *e,
					uint32_t pos, uint32_t len)
{
	return (struct pmd_io_piece){
		.node = (pm_node_t)e->pad, .key = r->key, .base = r->base,
		.rlen = r->len, .len = len,
		.roff = (uint64_t)e->slot * PM_FRAME_SIZE + pos };
}

/* Frames next to each other in one segment (here, or one lender's) make
 * one piece: one copy, or one RDMA operation rather than one a frame.
 * true when next joined prev. */
static bool io_piece_join(struct pmd_io_piece *prev,
			  const struct pmd_io_piece *next)
{
	if (!prev || !!prev->local != !!next->local)
		return false;
	if (prev->local ? prev->local + prev->len != next->local
			: prev->node != next->node || prev->key != next->key ||
			  prev->base != next->base ||
			  prev->roff + prev->len != next->roff)
		return false;
	prev->len += next->len;
	return true;
}

error_t pmd_container_io_plan(struct pmd_core *core, struct pmd_task *task,
			      container_t h, bool write, frame_t frame,
			      uint64_t offset, uint32_t len,
			      struct pmd_io_piece *pieces, uint32_t *npieces,
			      struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	frame_t first;
	uint64_t n, cow = 0, pos = offset % PM_FRAME_SIZE;
	uint32_t k = 0;
	error_t err;

	err = io_decode(task, h, write ? PMD_RIGHT_WRITE : PMD_RIGHT_READ,
			frame, offset, len, &cap, &first, &n, why);
	if (err && err != EREMOTE)
		return err;
	c = cap->cont;
	for (uint64_t i = 0; i < n; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, first + i);
		if ((e->flags & PMD_FRAME_LOST) ||
		    (frame_remote(e) &&
		     !pmd_core_rseg(core, (pm_node_t)e->pad, e->seg))) {
			why->frame = first + i;
			return EIO; /* on a node that went down */
		}
		cow += write && frame_is_cow(core, e);
	}
	/* A write breaks the copy-on-write shares it touches here first, as
	 * the local write path does; their pieces then point at the frames'
	 * own slots. */
	if (cow) {
		err = container_reserve_slots(core, c, cow);
		if (err)
			return err;
		view_begin(c);
		for (uint64_t i = 0; i < n; i++) {
			struct pmd_frame *e = pmd_ftab_lookup(&c->frames, first + i);
			if (frame_is_cow(core, e))
				frame_unshare(core, c, first + i, e);
		}
		view_end(c);
	}
	for (uint64_t i = 0; i < n && len; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, first + i);
		uint32_t chunk = PM_FRAME_SIZE - (uint32_t)pos;
		uint8_t *bytes;

		if (chunk > len)
			chunk = len;
		if (frame_remote(e)) {
			pieces[k] = remote_piece(pmd_core_rseg(core,
				(pm_node_t)e->pad, e->seg), e, (uint32_t)pos, chunk);
		} else {
			bytes = pmd_segment_frame(frame_seg(core, e), e->slot);
			pieces[k] = (struct pmd_io_piece){ .local = bytes + pos,
							   .len = chunk };
		}
		k += !io_piece_join(k ? &pieces[k - 1] : NULL, &pieces[k]);
		len -= chunk;
		pos = 0;
	}
	*npieces = k;
	return 0;
}

static bool holders_follow(struct pmd_core *core, const struct pmd_segment *seg);

/* Whether remote frame e of c sits in a segment its node keeps for
 * task's mappings of c (a forwarded map put it there). */
static bool frame_pushed_for(const struct pmd_core *core,
			     const struct pmd_container *c,
			     const struct pmd_frame *e, uint64_t task)
{
	const struct pmd_rseg *r;

	if (!frame_remote(e) || (e->flags & PMD_FRAME_LOST) || !task)
		return false;
	r = pmd_core_rseg(core, (pm_node_t)e->pad, e->seg);
	return r && r->tag_task == task && r->tag_cont == c->id;
}

/* Adds remote frame f (entry e) of c to the pulls; EIO when it is lost. */
static error_t pull_add(struct pmd_core *core, frame_t f,
			const struct pmd_frame *e, struct pmd_pull *pulls,
			uint32_t *n, struct pmd_culprit *why)
{
	const struct pmd_rseg *r = pmd_core_rseg(core, (pm_node_t)e->pad,
						 e->seg);

	if ((e->flags & PMD_FRAME_LOST) || !r) {
		why->frame = f;
		return EIO;
	}
	pulls[(*n)++] = (struct pmd_pull){
		.frame = f, .node = (pm_node_t)e->pad, .seg = e->seg,
		.slot = e->slot, .piece = remote_piece(r, e, 0, PM_FRAME_SIZE) };
	return 0;
}

error_t pmd_container_pull_plan(struct pmd_core *core, struct pmd_task *task,
				container_t h, bool write, frame_t start,
				uint32_t count, uint64_t keep_task,
				struct pmd_pull *pulls, uint32_t *npulls,
				struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	uint32_t n = 0;
	error_t err;

	err = cap_decode(task, h, write ? PMD_RIGHT_WRITE : PMD_RIGHT_READ,
			 USE_ALL, &cap, why);
	if (err)
		return err;
	if (!range_ok(start, count)) {
		why->arg = 3;
		return EINVAL;
	}
	c = cap->cont;
	for (uint32_t i = 0; i < count && n < PMD_PULL_MAX; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);

		if (!e || !frame_remote(e) ||
		    frame_pushed_for(core, c, e, keep_task))
			continue;
		err = pull_add(core, start + i, e, pulls, &n, why);
		if (err)
			return err;
	}
	*npulls = n;
	return 0;
}

error_t pmd_container_pull_plan_pushed(struct pmd_core *core,
				       struct pmd_task *task, container_t h,
				       uint64_t for_task, struct pmd_pull *pulls,
				       uint32_t *npulls)
{
	struct pmd_culprit why;
	struct pmd_container *c;
	struct pmd_frame *e;
	struct pmd_cap *cap;
	uint32_t n = 0;
	frame_t f = 0;
	error_t err;

	err = cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, &why);
	if (err)
		return err;
	c = cap->cont;
	while (n < PMD_PULL_MAX && pmd_ftab_next(&c->frames, &f, &e)) {
		/* A lost one stays lost; the rest come here. */
		if (frame_pushed_for(core, c, e, for_task))
			pull_add(core, f, e, pulls, &n, &why);
		if (f++ == UINT64_MAX)
			break;
	}
	*npulls = n;
	return 0;
}

error_t pmd_container_push_plan(struct pmd_core *core, struct pmd_task *task,
				container_t h, frame_t start, uint32_t count,
				uint32_t flags, pm_node_t node,
				struct pmd_push_out *out,
				struct pmd_culprit *why)
{
	bool want_write = flags & CONT_MAP_WRITE;
	struct pm_map_run *run = NULL;
	struct pmd_container *c;
	error_t err;
	uint32_t i;

	err = map_decode(task, h, start, count, flags, &c, why);
	if (err)
		return err;
	if (count > PMD_FWD_MAP_MAX)
		count = PMD_FWD_MAP_MAX; /* the task asks again for the rest */
	out->npush = 0;
	for (i = 0; i < count; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);
		struct pmd_segment *seg;

		if (!e) {
			why->frame = start + i;
			return ENOENT;
		}
		if (frame_pushed_for(core, c, e, task->id) &&
		    e->pad == node)
			continue; /* in place */
		if (frame_remote(e)) {
			/* Here first (pulled), then on to the task's node. */
			why->frame = start + i;
			return (e->flags & PMD_FRAME_LOST) ? EIO : EREMOTE;
		}
		if (out->npush == PMD_PUSH_MAX)
			continue;
		/* It moves as pmd_container_move moves a frame: not from
		 * under a task that could not follow it. */
		seg = frame_seg(core, e);
		if (seg->exposed && seg->slots.ref[e->slot] == 1) {
			if (!holders_follow(core, seg)) {
				why->frame = start + i;
				return EBUSY;
			}
			err = pmd_segment_fwd_reserve(seg);
			if (err)
				return err;
		}
		out->push[out->npush++] = (struct pmd_push){
			.frame = start + i, .seg = e->seg, .slot = e->slot,
			.gen = e->gen };
	}
	if (out->npush)
		return 0;
	/* Every frame is in place: the runs of the lender's slots. */
	out->granted = CONT_MAP_READ | (want_write ? CONT_MAP_WRITE : 0);
	out->nruns = 0;
	for (i = 0; i < count; i++) {
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
	return 0;
}

const uint8_t *pmd_container_push_bytes(struct pmd_core *core,
					struct pmd_task *task, container_t h,
					const struct pmd_push *push)
{
	struct pmd_culprit why;
	struct pmd_frame *e;
	struct pmd_cap *cap;

	if (cap_decode(task, h, 0, 0, &cap, &why))
		return NULL;
	e = pmd_ftab_lookup(&cap->cont->frames, push->frame);
	if (!e || frame_remote(e) || e->seg != push->seg ||
	    e->slot != push->slot || e->gen != push->gen)
		return NULL;
	return pmd_segment_frame(frame_seg(core, e), e->slot);
}

void pmd_container_push_finish(struct pmd_core *core, struct pmd_task *task,
			       container_t h, const struct pmd_push *push,
			       uint32_t n, const struct pmd_place *places)
{
	struct pmd_culprit why;
	struct pmd_container *c = NULL;
	struct pmd_cap *cap;

	if (!cap_decode(task, h, 0, 0, &cap, &why))
		c = cap->cont;
	if (c)
		view_begin(c);
	for (uint32_t i = 0; i < n; i++) {
		struct pmd_frame *e = c ? pmd_ftab_lookup(&c->frames,
							   push[i].frame) : NULL;
		struct pmd_segment *seg;
		bool extra;

		/* Only if it is still where we read it from. */
		if (!e || frame_remote(e) || e->seg != push[i].seg ||
		    e->slot != push[i].slot || e->gen != push[i].gen ||
		    pmd_core_rseg_add(core, &places[i])) {
			pmd_core_give_back(core, places[i].node, places[i].seg,
					   places[i].slot);
			continue;
		}
		extra = e->flags & PMD_FRAME_EXTRA;
		pmd_charge_sub(&core->budget, &c->owner->charge, extra);
		pmd_charge_add_remote(&core->budget, &c->owner->charge, extra);
		seg = frame_seg(core, e);
		/* A slot it shared stays with the other frame; one that a
		 * task may have mapped retires (its mappings follow). */
		if (seg->exposed && seg->slots.ref[e->slot] == 1 && seg->fwd)
			pmd_segment_slot_retire(&core->segs, seg, e->slot, c,
						push[i].frame);
		else
			slot_put(core, e->seg, e->slot);
		e->flags |= PMD_FRAME_REMOTE;
		e->seg = places[i].seg;
		e->slot = places[i].slot;
		e->pad = places[i].node;
		e->gen++;
		view_put(core, c, push[i].frame, e);
	}
	if (c)
		view_end(c);
}

error_t pmd_container_pull_finish(struct pmd_core *core, struct pmd_task *task,
				  container_t h, const struct pmd_pull *pulls,
				  uint32_t n, const uint8_t *data)
{
	struct pmd_culprit why;
	struct pmd_container *c;
	struct pmd_cap *cap;
	error_t err;

	err = cap_decode(task, h, 0, 0, &cap, &why);
	if (err)
		return err; /* gone meanwhile: nothing to bring in */
	c = cap->cont;
	err = container_reserve_slots(core, c, n);
	if (err)
		return err;
	view_begin(c);
	for (uint32_t i = 0; i < n; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, pulls[i].frame);
		struct pmd_segment *seg;
		bool extra;

		/* Only if it is still the frame we read. */
		if (!e || !frame_remote(e) || (e->flags & PMD_FRAME_LOST) ||
		    e->pad != pulls[i].node || e->seg != pulls[i].seg ||
		    e->slot != pulls[i].slot)
			continue;
		/* Here it is charged to this node: an extra frame needs room
		 * that no guarantee reserves. */
		extra = e->flags & PMD_FRAME_EXTRA;
		if (extra && pmd_budget_unreserved(&core->budget) == 0) {
			err = ENOMEM;
			continue;
		}
		pmd_charge_sub_remote(&core->budget, &c->owner->charge, extra);
		pmd_charge_add(&core->budget, &c->owner->charge, extra);
		remote_put(core, e); /* the loan goes back */
		e->flags &= (uint16_t)~PMD_FRAME_REMOTE;
		e->pad = 0;
		container_take_slot(core, c, e);
		seg = frame_seg(core, e);
		pmd_segment_populate(seg, e->slot, 1);
		memcpy(pmd_segment_frame(seg, e->slot),
		       data + (size_t)i * PM_FRAME_SIZE, PM_FRAME_SIZE);
		view_put(core, c, pulls[i].frame, e);
	}
	view_end(c);
	return err;
}

error_t pmd_container_id_of(struct pmd_core *core, struct pmd_task *task,
			    container_t h, uint64_t *id)
{
	struct pmd_culprit why;
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, 0, 0, &cap, &why);

	(void)core;
	if (!err)
		*id = cap->cont->id;
	return err;
}

error_t pmd_container_policy(struct pmd_core *core, struct pmd_task *task,
			     container_t h, uint32_t *policy, pm_node_t *node)
{
	struct pmd_culprit why;
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, 0, 0, &cap, &why);

	(void)core;
	if (err)
		return err;
	*policy = cap->cont->policy;
	*node = cap->cont->policy_node;
	return 0;
}

error_t pmd_container_write(struct pmd_core *core, struct pmd_task *task,
			    container_t h, frame_t frame, uint64_t offset,
			    const void *buf, uint32_t len,
			    struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	frame_t first;
	uint64_t n, cow = 0, pos = offset % PM_FRAME_SIZE;
	const uint8_t *src = buf;
	error_t err;

	err = io_decode(task, h, PMD_RIGHT_WRITE, frame, offset, len, &cap,
			&first, &n, why);
	if (err)
		return err;
	c = cap->cont;
	/* Writing a copy-on-write frame breaks the copy first. */
	for (uint64_t i = 0; i < n; i++)
		cow += frame_is_cow(core, pmd_ftab_lookup(&c->frames, first + i));
	if (cow) {
		err = container_reserve_slots(core, c, cow);
		if (err)
			return err;
	}
	view_begin(c);
	for (uint64_t i = 0; i < n && len; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, first + i);
		uint32_t chunk = PM_FRAME_SIZE - (uint32_t)pos;

		if (frame_is_cow(core, e))
			frame_unshare(core, c, first + i, e);
		if (chunk > len)
			chunk = len;
		memcpy((uint8_t *)pmd_segment_frame(frame_seg(core, e), e->slot) +
		       pos, src, chunk);
		src += chunk;
		len -= chunk;
		pos = 0;
	}
	view_end(c);
	return 0;
}

/* ---- logical copy ---- */

error_t pmd_container_copy(struct pmd_core *core, struct pmd_task *task,
			   container_t src, frame_t src_start, container_t dst,
			   frame_t dst_start, uint32_t count, uint32_t flags,
			   struct pmd_culprit *why)
{
	struct pmd_container *sc, *dc;
	struct pmd_cap *scap, *dcap;
	uint32_t k, reserve = 0;
	error_t stop = 0, err;
	bool same, backwards;

	err = cap_decode(task, src, PMD_RIGHT_READ, USE_ALL, &scap, why);
	if (err)
		return err;
	err = cap_decode(task, dst, PMD_RIGHT_WRITE, USE_ALL, &dcap, why);
	if (err) {
		why->arg = 3;
		return err;
	}
	if (!range_ok(src_start, count) || !range_ok(dst_start, count)) {
		why->arg = 5;
		return EINVAL;
	}
	if (flags) {
		why->arg = 6;
		return EINVAL;
	}
	sc = scap->cont;
	dc = dcap->cont;
	same = sc == dc;

	/* Decode: the first missing source (ENOENT) or destination (ENOMEM)
	 * frame stops the copy; the frames before it are copied. */
	for (k = 0; k < count; k++) {
		struct pmd_frame *d, *sf;

		sf = pmd_ftab_lookup(&sc->frames, src_start + k);
		if (!sf) {
			stop = ENOENT;
			why->frame = src_start + k;
			break;
		}
		d = pmd_ftab_lookup(&dc->frames, dst_start + k);
		if (!d) {
			stop = ENOMEM;
			why->frame = dst_start + k;
			break;
		}
		if (frame_remote(sf) || frame_remote(d)) {
			/* The server brings them here first, then copies. */
			struct pmd_frame *r = frame_remote(sf) ? sf : d;
			why->frame = frame_remote(sf) ? src_start + k
						      : dst_start + k;
			return (r->flags & PMD_FRAME_LOST) ? EIO : EREMOTE;
		}
		/* A physical copy into a shared destination slot needs a
		 * private slot first; within one container any destination
		 * may end up so. */
		reserve += same || frame_is_cow(core, d);
	}
	if (reserve) {
		err = container_reserve_slots(core, dc, reserve);
		if (err)
			return err;
	}

	/* Invoke, in the order that reads every source before it is
	 * overwritten when the ranges overlap (as memmove does). */
	backwards = same && dst_start > src_start;
	view_begin(dc);
	for (uint32_t j = 0; j < k; j++) {
		uint32_t i = backwards ? k - 1 - j : j;
		struct pmd_frame *s = pmd_ftab_lookup(&sc->frames, src_start + i);
		struct pmd_frame *d = pmd_ftab_lookup(&dc->frames, dst_start + i);
		struct pmd_segment *ss = frame_seg(core, s);
		struct pmd_segment *ds = frame_seg(core, d);

		if (s == d || (s->seg == d->seg && s->slot == d->slot))
			continue; /* already the same contents */
		/* Share the slot only within one container and only while
		 * no task holds a segment of either side: a task's writable
		 * mapping must never write into the other copy. */
		if (same && !ss->exposed && !ds->exposed &&
		    pmd_slots_get(&ss->slots, s->slot)) {
			slot_put(core, d->seg, d->slot);
			d->seg = s->seg;
			d->slot = s->slot;
			d->gen++;
			view_put(core, dc, dst_start + i, d);
			view_put(core, sc, src_start + i, s);
			continue;
		}
		if (frame_is_cow(core, d))
			frame_unshare(core, dc, dst_start + i, d);
		memcpy(pmd_segment_frame(frame_seg(core, d), d->slot),
		       pmd_segment_frame(ss, s->slot), PM_FRAME_SIZE);
	}
	view_end(dc);
	container_trim_segments(core, dc);
	return stop;
}

/* ---- sharing ---- */

error_t pmd_container_share(struct pmd_core *core, struct pmd_task *task,
			    container_t h, pm_task_t remote,
			    container_t *weak_out, struct pmd_culprit *why)
{
	struct pmd_share *sh;
	struct pmd_cap *cap, *weak;
	error_t err;

	err = cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
	if (err)
		return err;
	/* A task of another node is named by its id (node in the high bits);
	 * its node checks it when the token comes through. */
	if ((pm_node_t)(remote >> 48) == core->cfg.node &&
	    !pmd_core_find_task(core, remote)) {
		why->arg = 2;
		return ESRCH;
	}
	if (!(remote >> 48)) {
		why->arg = 2;
		return ESRCH;
	}
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return ENOMEM;
	/* The home node in the high bits (tokens find their way home), 48
	 * random bits below (the MAC makes it unforgeable). */
	do {
		randombytes_buf(&sh->id, sizeof(sh->id));
		sh->id = (uint64_t)core->cfg.node << 48 |
			 (sh->id & ((UINT64_C(1) << 48) - 1));
	} while (!(sh->id & ((UINT64_C(1) << 48) - 1)) ||
		 pmd_share_lookup(core, sh->id));
	sh->bound = remote;
	sh->cont = cap->cont;
	err = cap_new(task, cap->cont, sh, PMD_RIGHTS_WEAK, &weak);
	if (err) {
		free(sh);
		return err;
	}
	pmd_list_add(&cap->cont->shares, &sh->cont_link);
	pmd_share_insert(core, sh);
	*weak_out = weak->handle;
	return 0;
}

/* The segments of c that task t holds descriptors for. */
static uint32_t exposed_to(struct pmd_container *c, const struct pmd_task *t)
{
	uint32_t n = 0;

	for (struct pmd_list *p = c->segments.next; p != &c->segments; p = p->next)
		n += pmd_task_has_segment(t, pmd_container_of(
			p, struct pmd_segment, link)->id);
	return n;
}

/*
 * Moves every frame living in a segment that t holds to fresh segments,
 * then empties the old ones: t's mappings fault from now on, and so do
 * other tasks' mappings of those segments (they remap). `fresh` holds the
 * new segments, made in decode.
 */
static void container_move_from(struct pmd_core *core, struct pmd_container *c,
				const struct pmd_task *t,
				struct pmd_segment **fresh, uint32_t nfresh)
{
	struct pmd_list *pos, *tmp;
	uint32_t used = 0;

	pmd_list_for_each_safe(pos, tmp, &c->segments) {
		struct pmd_segment *old =
			pmd_container_of(pos, struct pmd_segment, link);
		struct pmd_segment *nw;
		frame_t f = 0;
		struct pmd_frame *e;

		if (!pmd_task_has_segment(t, old->id))
			continue;
		assert(used < nfresh);
		nw = fresh[used++];
		/* Same slot numbers: a slot's sharers move together. */
		memcpy(&nw->slots, &old->slots, sizeof(nw->slots));
		for (unsigned s = 0; old->nretired && s < PMD_SEG_SLOTS; s++)
			if (pmd_segment_retired(old, s))
				pmd_slots_release(&nw->slots, s);
		core->segs.slots_used += nw->slots.used;
		for (unsigned s = 0; s < PMD_SEG_SLOTS; s++)
			if (old->slots.ref[s])
				memcpy(pmd_segment_frame(nw, s),
				       pmd_segment_frame(old, s), PM_FRAME_SIZE);
		while (pmd_ftab_next(&c->frames, &f, &e)) {
			if (!frame_remote(e) && e->seg == old->index) {
				e->seg = nw->index;
				e->gen++;
			}
			if (f++ == UINT64_MAX)
				break;
		}
		nw->domain = c;
		pmd_list_add(&c->segments, &nw->link);
		pmd_segment_revoke(old);
		pmd_segment_destroy(&core->segs, old);
	}
	assert(used == nfresh);
}

error_t pmd_container_unshare(struct pmd_core *core, struct pmd_task *task,
			      container_t h, pm_task_t remote,
			      struct pmd_culprit *why)
{
	struct pmd_segment *fresh[64], **segs = fresh;
	struct pmd_view *nview = NULL;
	struct pmd_list *pos, *tmp;
	struct pmd_container *c;
	struct pmd_task *rt;
	struct pmd_cap *cap;
	uint32_t nmove = 0, made = 0;
	error_t err;

	err = cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
	if (err)
		return err;
	c = cap->cont;
	if (container_locked(c) && c->locker->id == remote)
		return EBUSY; /* the server's lock holds until it expires */
	rt = pmd_core_find_task(core, remote);
	if (rt)
		nmove = exposed_to(c, rt);
	if (nmove && container_locked(c))
		return EBUSY; /* another server's lock: no frame may move */

	/* Decode: make the segments the move needs, and a new view when the
	 * revoked task holds the current one (it must learn nothing more). */
	if (c->view && rt && (nmove || pmd_task_has_segment(rt, c->view->id))) {
		err = pmd_view_create(c->frames.count * 2, &nview);
		if (err)
			return err;
	}
	if (nmove > sizeof(fresh) / sizeof(fresh[0])) {
		segs = calloc(nmove, sizeof(*segs));
		if (!segs) {
			pmd_view_destroy(nview);
			return ENOMEM;
		}
	}
	for (; made < nmove; made++) {
		err = pmd_segment_create(&core->segs, &segs[made]);
		if (err)
			goto undo;
	}

	/* Invoke: revoke every capability of the shares bound to remote,
	 * then move the frames it could see. */
	pmd_list_for_each_safe(pos, tmp, &c->caps) {
		struct pmd_cap *k = pmd_container_of(pos, struct pmd_cap,
						     cont_link);
		if (k->share && k->share->bound == remote)
			cap_revoke(k);
	}
	pmd_list_for_each_safe(pos, tmp, &c->shares) {
		struct pmd_share *sh = pmd_container_of(pos, struct pmd_share,
							cont_link);
		if (sh->bound == remote)
			share_free(core, sh);
	}
	if (nmove) {
		pmd_segtab_flush(&core->segs); /* slot maps move as they are */
		container_move_from(core, c, rt, segs, nmove);
	}
	if (nview)
		container_view_install(core, c, nview);
	if (segs != fresh)
		free(segs);
	return 0;

undo:
	while (made)
		pmd_segment_destroy(&core->segs, segs[--made]);
	if (segs != fresh)
		free(segs);
	pmd_view_destroy(nview);
	return err;
}

/* ---- moving frames, and finding where they went ---- */

/* Whether every task holding seg can follow a frame moved out of it. */
static bool holders_follow(struct pmd_core *core, const struct pmd_segment *seg)
{
	for (struct pmd_list *p = core->tasks.next; p != &core->tasks; p = p->next) {
		struct pmd_task *t = pmd_container_of(p, struct pmd_task, link);
		if (!t->follows && pmd_task_has_segment(t, seg->id))
			return false;
	}
	return true;
}

error_t pmd_container_move(struct pmd_core *core, struct pmd_task *task,
			   container_t h, frame_t f, struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_segment *old, *nw;
	struct pmd_frame *e;
	struct pmd_cap *cap;
	uint16_t old_slot;
	error_t err;

	err = cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
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
	if (frame_remote(e)) {
		why->frame = f;
		return EOPNOTSUPP; /* migration between nodes: not built yet */
	}
	old = frame_seg(core, e);
	if (container_locked(c) || old->slots.ref[e->slot] > 1 ||
	    old->domain != c || (old->exposed && !holders_follow(core, old))) {
		why->frame = f;
		return EBUSY;
	}
	if (old->exposed) {
		err = pmd_segment_fwd_reserve(old);
		if (err)
			return err;
	}
	err = container_reserve_slots(core, c, 1);
	if (err)
		return err;

	old_slot = e->slot;
	view_begin(c);
	container_take_slot(core, c, e);
	nw = frame_seg(core, e);
	pmd_segment_populate(nw, e->slot, 1);
	memcpy(pmd_segment_frame(nw, e->slot), pmd_segment_frame(old, old_slot),
	       PM_FRAME_SIZE);
	view_put(core, c, f, e);
	view_end(c);
	if (old->exposed)
		pmd_segment_slot_retire(&core->segs, old, old_slot, c, f);
	else
		slot_put(core, old->index, old_slot);
	return 0;
}

error_t pmd_container_resolve(struct pmd_core *core, struct pmd_task *task,
			      uint64_t seg_id, uint32_t slot,
			      struct pmd_resolve_out *out)
{
	struct pmd_segment *seg = pmd_segtab_get(&core->segs, (uint32_t)seg_id);
	const struct pmd_fwd *fwd;
	struct pmd_frame *e;
	struct pmd_segment *now;

	if (slot >= PMD_SEG_SLOTS)
		return EINVAL;
	/* Holding the old segment is the right to follow its frames. */
	if (!pmd_task_has_segment(task, seg_id))
		return EACCES;
	if (!seg || seg->id != seg_id || !pmd_segment_retired(seg, slot))
		return ENOENT; /* freed, not moved: the task reads zeros */
	fwd = &seg->fwd[slot];
	e = fwd->cont ? pmd_ftab_lookup(&fwd->cont->frames, fwd->frame) : NULL;
	if (!e)
		return ENOENT; /* moved, then deallocated */
	if (frame_remote(e)) {
		/* Moved to another node: the server brings it back here. */
		if (e->flags & PMD_FRAME_LOST)
			return EIO;
		out->cont = fwd->cont;
		out->frame = fwd->frame;
		return EREMOTE;
	}
	if (container_locked(fwd->cont) && fwd->cont->locker != task &&
	    fwd->cont->owner == task)
		return EBUSY; /* the owner waits for the server's lock */
	now = frame_seg(core, e);
	out->seg = now;
	out->slot = e->slot;
	out->cow = frame_is_cow(core, e);
	out->send_fd = !pmd_task_has_segment(task, now->id);
	if (out->send_fd) {
		error_t err = pmd_task_add_segment(task, now->id);
		if (err)
			return err;
		now->exposed = true;
	}
	return 0;
}

container_t pmd_container_handle_of(struct pmd_task *task,
				   const struct pmd_container *c)
{
	for (struct pmd_list *p = c->caps.next; p != &c->caps; p = p->next) {
		struct pmd_cap *k = pmd_container_of(p, struct pmd_cap,
						     cont_link);
		/* Not a weak reference it made for another task. */
		if (k->holder == task &&
		    (!k->share || k->share->bound == task->id))
			return k->handle;
	}
	return 0;
}

/* Token layout: share id (8), bound task (8), MAC of both (16). */
static void token_mac(const struct pmd_core *core, const uint8_t *msg,
		      uint8_t mac[16])
{
	uint8_t full[crypto_auth_hmacsha256_BYTES];

	crypto_auth_hmacsha256(full, msg, 16, core->secret);
	memcpy(mac, full, 16);
}

error_t pmd_cap_export(struct pmd_core *core, struct pmd_task *task,
		       container_t h, struct pm_token *token_out,
		       struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, 0, 0, &cap, why);

	if (err)
		return err;
	if (!cap->share) {
		why->arg = 2;
		return EPERM; /* only weak references travel: share first */
	}
	memcpy(token_out->bytes, &cap->share->id, 8);
	memcpy(token_out->bytes + 8, &cap->share->bound, 8);
	token_mac(core, token_out->bytes, token_out->bytes + 16);
	return 0;
}

error_t pmd_cap_import(struct pmd_core *core, struct pmd_task *task,
		       const struct pm_token *token, container_t *h_out,
		       struct pmd_culprit *why)
{
	uint8_t mac[16];
	struct pmd_share *sh;
	struct pmd_cap *cap;
	uint64_t id;
	pm_task_t bound;
	error_t err;

	why->arg = 2;
	token_mac(core, token->bytes, mac);
	if (sodium_memcmp(mac, token->bytes + 16, sizeof(mac)) != 0)
		return EINVAL; /* forged or altered */
	memcpy(&id, token->bytes, 8);
	memcpy(&bound, token->bytes + 8, 8);
	if (bound != task->id)
		return EACCES;
	sh = pmd_share_lookup(core, id);
	if (!sh)
		return ESTALE; /* unshared, released, or the container is gone */
	err = cap_new(task, sh->cont, sh, PMD_RIGHTS_WEAK, &cap);
	if (err)
		return err;
	why->arg = 0;
	*h_out = cap->handle;
	return 0;
}

error_t pmd_cap_release(struct pmd_core *core, struct pmd_task *task,
			container_t h, struct pmd_culprit *why)
{
	struct pmd_cap *cap = pmd_htab_lookup(&task->handles, h);

	why->arg = 1;
	if (!cap)
		return EBADF;
	if (cap->cont && !cap->share)
		return EINVAL; /* the owner's capability goes with destroy */
	pmd_cap_free(core, cap);
	return 0;
}

/* ---- locks ---- */

error_t pmd_container_lock(struct pmd_core *core, struct pmd_task *task,
			   container_t h, uint32_t msec,
			   struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, PMD_RIGHT_LOCK, USE_BOUND, &cap, why);

	if (err)
		return err;
	if (msec == 0 || msec > core->cfg.max_lock_ms) {
		why->arg = 2;
		return EINVAL;
	}
	if (container_locked(cap->cont) && cap->cont->locker != task)
		return EBUSY;
	container_set_locker(cap->cont, task, pmd_core_now_ms() + msec);
	return 0;
}

error_t pmd_container_unlock(struct pmd_core *core, struct pmd_task *task,
			     container_t h, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, PMD_RIGHT_LOCK, USE_BOUND, &cap, why);

	if (err)
		return err;
	/* Unlocking a lock that just expired is not an error. */
	if (cap->cont->locker == task) {
		container_set_locker(cap->cont, NULL, 0);
		return 0;
	}
	if (!container_locked(cap->cont) && !cap->cont->locker)
		return 0;
	return EPERM; /* another server's lock */
}

error_t pmd_container_set_policy(struct pmd_core *core, struct pmd_task *task,
				 container_t h, uint32_t policy,
				 pm_node_t node, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);

	if (err)
		return err;
	if (policy > PM_PLACE_INTERLEAVE) {
		why->arg = 3;
		return EINVAL;
	}
	/* A named node other than this one was checked by the server
	 * against the cluster (ENODEV when unknown). */
	cap->cont->policy = policy;
	cap->cont->policy_node = node;
	return 0;
}
