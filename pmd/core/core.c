/* core.c - see core.h. */
#include "core.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "container.h"
#include "grow.h"
#include "log.h"

void pmd_core_init(struct pmd_core *core, const struct pmd_core_config *cfg)
{
	memset(core, 0, sizeof(*core));
	core->cfg = *cfg;
	pmd_budget_init(&core->budget, cfg->frames_total);
	pmd_segtab_init(&core->segs);
	pmd_list_init(&core->tasks);
	/* Tokens are valid for this pmd's life; a restart makes old ones
	 * fail their MAC. */
	randombytes_buf(core->secret, sizeof(core->secret));
}

uint64_t pmd_core_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const struct pmd_rseg *pmd_core_rseg(const struct pmd_core *core,
				     pm_node_t node, uint32_t seg)
{
	for (uint32_t i = 0; i < core->nrsegs; i++)
		if (core->rsegs[i].node == node && core->rsegs[i].seg == seg)
			return &core->rsegs[i];
	return NULL;
}

error_t pmd_core_rseg_add(struct pmd_core *core, const struct pmd_place *p)
{
	struct pmd_rseg *r;

	for (uint32_t i = 0; i < core->nrsegs; i++) {
		r = &core->rsegs[i];
		if (r->node == p->node && r->seg == p->seg) {
			r->key = p->key; /* the lender may have made it anew */
			r->base = p->base;
			r->len = p->len;
			r->tag_task = p->tag_task;
			r->tag_cont = p->tag_cont;
			return 0;
		}
	}
	r = pmd_grow(core->rsegs, core->nrsegs, &core->rsegs_cap, sizeof(*r), 16);
	if (!r)
		return ENOMEM;
	core->rsegs = r;
	core->rsegs[core->nrsegs++] = (struct pmd_rseg){ .node = p->node,
		.seg = p->seg, .key = p->key, .base = p->base, .len = p->len,
		.tag_task = p->tag_task, .tag_cont = p->tag_cont };
	return 0;
}

void pmd_core_give_back(struct pmd_core *core, pm_node_t node, uint32_t seg,
			uint16_t slot)
{
	struct pmd_rfree *v = pmd_grow(core->rfree, core->nrfree,
				       &core->rfree_cap, sizeof(*v), 64);

	if (!v) {
		pmd_warn("no memory to give back a slot of node %u; it stays "
			 "lent until that node restarts", node);
		return;
	}
	core->rfree = v;
	core->rfree[core->nrfree++] = (struct pmd_rfree){
		.node = node, .seg = seg, .slot = slot };
}

void pmd_core_node_lost(struct pmd_core *core, pm_node_t node)
{
	struct pmd_list *tp, *cp;
	uint32_t k = 0;

	for (tp = core->tasks.next; tp != &core->tasks; tp = tp->next) {
		struct pmd_task *t = pmd_container_of(tp, struct pmd_task, link);
		for (cp = t->containers.next; cp != &t->containers; cp = cp->next) {
			struct pmd_container *c = pmd_container_of(
				cp, struct pmd_container, owner_link);
			struct pmd_frame *e;
			frame_t f = 0;

			while (pmd_ftab_next(&c->frames, &f, &e)) {
				if ((e->flags & PMD_FRAME_REMOTE) && e->pad == node)
					e->flags |= PMD_FRAME_LOST;
				if (f++ == UINT64_MAX)
					break;
			}
		}
	}
	for (uint32_t i = 0; i < core->nrfree; i++)
		if (core->rfree[i].node != node)
			core->rfree[k++] = core->rfree[i];
	core->nrfree = k;
	k = 0;
	for (uint32_t i = 0; i < core->nrsegs; i++)
		if (core->rsegs[i].node != node)
			core->rsegs[k++] = core->rsegs[i];
	core->nrsegs = k;
}

struct pmd_task *pmd_core_find_task(struct pmd_core *core, pm_task_t id)
{
	for (struct pmd_list *p = core->tasks.next; p != &core->tasks; p = p->next) {
		struct pmd_task *t = pmd_container_of(p, struct pmd_task, link);
		if (t->id == id)
			return t;
	}
	return NULL;
}

void pmd_share_insert(struct pmd_core *core, struct pmd_share *sh)
{
	struct pmd_share **b = &core->shares[sh->id % PMD_SHARE_BUCKETS];

	sh->hash_next = *b;
	*b = sh;
	core->nshares++;
}

struct pmd_share *pmd_share_lookup(struct pmd_core *core, uint64_t id)
{
	struct pmd_share *sh = core->shares[id % PMD_SHARE_BUCKETS];

	while (sh && sh->id != id)
		sh = sh->hash_next;
	return sh;
}

void pmd_share_remove(struct pmd_core *core, struct pmd_share *sh)
{
	struct pmd_share **p = &core->shares[sh->id % PMD_SHARE_BUCKETS];

	while (*p != sh)
		p = &(*p)->hash_next;
	*p = sh->hash_next;
	core->nshares--;
}

void pmd_core_fini(struct pmd_core *core)
{
	assert(pmd_list_empty(&core->tasks));
	pmd_segtab_fini(&core->segs);
	free(core->rsegs);
	free(core->rfree);
}

error_t pmd_task_create(struct pmd_core *core, uint32_t uid, uint32_t gid,
			uint32_t pid, struct pmd_task **task_out)
{
	struct pmd_task *t = calloc(1, sizeof(*t));
	uint64_t guarantee = core->cfg.guarantee, extra = core->cfg.extra;
	error_t err;

	if (!t)
		return ENOMEM;
	for (uint32_t i = 0; i < core->cfg.nusers; i++) {
		const struct pmd_user_limits *u = &core->cfg.users[i];
		if (u->uid != uid)
			continue;
		if (u->guarantee != PMD_LIMIT_DEFAULT)
			guarantee = u->guarantee;
		if (u->extra != PMD_LIMIT_DEFAULT)
			extra = u->extra;
	}
	err = pmd_budget_admit(&core->budget, core->cfg.admit, guarantee,
			       extra, &t->charge);
	if (err) {
		pmd_warn("refusing a session of uid %u pid %u: its guarantee of "
			 "%lu frames does not fit", uid, pid,
			 (unsigned long)guarantee);
		free(t);
		return err;
	}
	t->id = (pm_task_t)core->cfg.node << 48 | ++core->next_task;
	t->uid = uid;
	t->gid = gid;
	t->pid = pid;
	pmd_htab_init(&t->handles);
	pmd_list_init(&t->containers);
	pmd_list_add(&core->tasks, &t->link);
	core->ntasks++;
	*task_out = t;
	return 0;
}

error_t pmd_task_create_proxy(struct pmd_core *core, pm_task_t id,
			      struct pmd_task **task_out)
{
	struct pmd_task *t = calloc(1, sizeof(*t));

	if (!t)
		return ENOMEM;
	/* It owns nothing here: no guarantee, no extra frames. */
	t->id = id;
	t->proxy = true;
	pmd_htab_init(&t->handles);
	pmd_list_init(&t->containers);
	pmd_list_add(&core->tasks, &t->link);
	core->ntasks++;
	*task_out = t;
	return 0;
}

void pmd_task_destroy(struct pmd_core *core, struct pmd_task *task)
{
	struct pmd_list *pos, *tmp;

	/* The locks it holds as a server end; then its own containers go
	 * (servers holding weak references see them revoked); then the
	 * capabilities it held to other tasks' containers. */
	pmd_container_unlock_all(core, task);
	pmd_list_for_each_safe(pos, tmp, &task->containers)
		pmd_container_free(core, pmd_container_of(
			pos, struct pmd_container, owner_link));
	for (uint32_t i = 0; i < task->handles.len; i++)
		if (task->handles.v[i])
			pmd_cap_free(core, task->handles.v[i]);
	pmd_htab_fini(&task->handles);
	pmd_budget_leave(&core->budget, &task->charge);
	pmd_list_del(&task->link);
	core->ntasks--;
	free(task->segs_given);
	free(task);
}

void pmd_task_stat(const struct pmd_task *task, struct pm_task_stat_rep *out)
{
	memset(out, 0, sizeof(*out));
	out->task = task->id;
	out->guaranteed = task->charge.guaranteed;
	out->extra_limit = task->charge.extra_limit;
	out->allocated = task->charge.allocated;
	out->extra_allocated = task->charge.extra_allocated;
	out->containers = task->ncontainers;
	out->uid = task->uid;
	out->pid = task->pid;
}

void pmd_core_debug(struct pmd_core *core, struct pm_debug_rep *out)
{
	uint64_t frames = 0, charged = 0, guaranteed = 0, refs = 0, conts = 0;
	uint64_t remote = 0;
	bool ok = true;
	struct pmd_list *tp, *cp;

	pmd_segtab_flush(&core->segs);
	memset(out, 0, sizeof(*out));
	for (tp = core->tasks.next; tp != &core->tasks; tp = tp->next) {
		struct pmd_task *t = pmd_container_of(tp, struct pmd_task, link);
		uint64_t mine = 0, extra = 0;

		for (cp = t->containers.next; cp != &t->containers; cp = cp->next) {
			struct pmd_container *c = pmd_container_of(
				cp, struct pmd_container, owner_link);
			frame_t f = 0;
			struct pmd_frame *e;

			conts++;
			while (pmd_ftab_next(&c->frames, &f, &e)) {
				struct pmd_segment *seg =
					pmd_segtab_get(&core->segs, e->seg);
				if (e->flags & PMD_FRAME_REMOTE) {
					remote++;
				} else if (!seg || !seg->slots.ref[e->slot]) {
					pmd_err("check: frame %#lx of container %#lx "
						"has no slot", (unsigned long)f,
						(unsigned long)c->id);
					ok = false;
				}
				mine++;
				extra += !!(e->flags & PMD_FRAME_EXTRA);
				if (f == UINT64_MAX)
					break;
				f++;
			}
		}
		if (mine != t->charge.allocated || extra != t->charge.extra_allocated) {
			pmd_err("check: task %#lx is charged %lu (%lu extra) but "
				"owns %lu (%lu extra)", (unsigned long)t->id,
				(unsigned long)t->charge.allocated,
				(unsigned long)t->charge.extra_allocated,
				(unsigned long)mine, (unsigned long)extra);
			ok = false;
		}
		if (t->charge.allocated - t->charge.extra_allocated >
		    t->charge.guaranteed ||
		    t->charge.extra_allocated > t->charge.extra_limit) {
			pmd_err("check: task %#lx is over its limits",
				(unsigned long)t->id);
			ok = false;
		}
		frames += mine;
		charged += t->charge.allocated;
		guaranteed += t->charge.guaranteed;
	}
	for (uint32_t i = 0; i < core->segs.len; i++) {
		struct pmd_segment *seg = core->segs.v[i];
		if (!seg)
			continue;
		for (unsigned s = 0; s < PMD_SEG_SLOTS; s++)
			refs += seg->slots.ref[s];
	}
	if (frames != core->nframes ||
	    charged != core->budget.charged + core->budget.remote ||
	    guaranteed != core->budget.guaranteed_sum ||
	    conts != core->ncontainers ||
	    refs != frames - remote + core->budget.lent ||
	    core->budget.charged + core->budget.lent > core->budget.total ||
	    core->budget.guaranteed_sum > core->budget.total) {
		pmd_err("check: node totals disagree: frames %lu/%lu charged "
			"%lu/%lu guaranteed %lu/%lu slot refs %lu",
			(unsigned long)frames, (unsigned long)core->nframes,
			(unsigned long)charged,
			(unsigned long)(core->budget.charged + core->budget.remote),
			(unsigned long)guaranteed,
			(unsigned long)core->budget.guaranteed_sum,
			(unsigned long)refs);
		ok = false;
	}
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
