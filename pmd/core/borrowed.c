/* borrowed.c - see borrowed.h. */
#include "borrowed.h"

#include <errno.h>

#include "core.h"
#include "grow.h"
#include "log.h"

const struct pmd_rseg *pmd_rseg_find(const struct pmd_core *core,
				     pm_node_t node, uint32_t seg)
{
	for (uint32_t i = 0; i < core->nrsegs; i++)
		if (core->rsegs[i].node == node && core->rsegs[i].seg == seg)
			return &core->rsegs[i];
	return NULL;
}

error_t pmd_rseg_add(struct pmd_core *core, const struct pmd_place *p)
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

void pmd_rslot_give_back(struct pmd_core *core, pm_node_t node, uint32_t seg,
			 uint16_t slot)
{
	struct pmd_rfree *v;

	if (node == PMD_NODE_STORE) { /* ours: free at once */
		pmd_store_put(&core->store, seg, slot);
		return;
	}
	v = pmd_grow(core->rfree, core->nrfree, &core->rfree_cap, sizeof(*v),
		     64);

	if (!v) {
		pmd_warn("no memory to give back a slot of node %u; it stays "
			 "lent until that node restarts", node);
		return;
	}
	core->rfree = v;
	core->rfree[core->nrfree++] = (struct pmd_rfree){
		.node = node, .seg = seg, .slot = slot };
}

void pmd_places_give_back(struct pmd_core *core, const struct pmd_place *p,
			  uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i].node && p[i].len)
			pmd_rslot_give_back(core, p[i].node, p[i].seg, p[i].slot);
}

const struct pmd_rseg *pmd_rseg_by_key(const struct pmd_core *core,
				       pm_node_t node, uint64_t key)
{
	for (uint32_t i = 0; i < core->nrsegs; i++)
		if (core->rsegs[i].node == node && core->rsegs[i].key == key)
			return &core->rsegs[i];
	return NULL;
}

/* Remote frames of node (in segment seg, slots first..last; any with
 * all) are lost. */
static void frames_lost(struct pmd_core *core, pm_node_t node, bool all,
			uint32_t seg, uint64_t first, uint64_t last)
{
	struct pmd_list *tp, *cp;

	for (tp = core->tasks.next; tp != &core->tasks; tp = tp->next) {
		struct pmd_task *t = pmd_container_of(tp, struct pmd_task, link);
		for (cp = t->containers.next; cp != &t->containers; cp = cp->next) {
			struct pmd_container *c = pmd_container_of(
				cp, struct pmd_container, owner_link);
			struct pmd_frame *e;
			frame_t f = 0;

			while (pmd_ftab_next(&c->frames, &f, &e)) {
				if ((e->flags & PMD_FRAME_REMOTE) &&
				    e->node == node && (all || (e->seg == seg &&
				    e->slot >= first && e->slot <= last)))
					e->flags |= PMD_FRAME_LOST;
				if (f++ == UINT64_MAX)
					break;
			}
		}
	}
}

void pmd_rslots_lost(struct pmd_core *core, pm_node_t node, uint64_t key,
		     uint64_t roff, uint64_t len)
{
	const struct pmd_rseg *r = pmd_rseg_by_key(core, node, key);

	if (r) /* (forgotten: its frames answer EIO already) */
		frames_lost(core, node, false, r->seg, roff / PM_FRAME_SIZE,
			    (roff + (len ? len : 1) - 1) / PM_FRAME_SIZE);
}

void pmd_node_lost(struct pmd_core *core, pm_node_t node)
{
	uint32_t k = 0;

	frames_lost(core, node, true, 0, 0, 0);
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
