/*
 * borrow.c - slots this node borrows from others for its own frames
 * (ALLOC), and gives back (FREE): at once when a frame lets go of one
 * (what the core queued), or with an answer awaited when a slot of a
 * segment another node keeps for a task's mapping must be retired before
 * we go on (pmd_cluster_take_back).
 */
#include "node_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* A loan being asked for (an ALLOC call's argument). */
struct pmd_borrow {
	struct pmd_cluster *c;         /* (C) */
	pm_node_t node;                /* (C) the lender */
	uint64_t tag_task, tag_cont;   /* (C) tagged loans: their tag */
	pmd_borrow_done *done;         /* (C) */
	void *arg;                     /* (C) */
};

/* The places of a lender's answer; EPROTO when it is not one. */
static error_t borrow_places(const struct pmd_borrow *b, const void *body,
			     size_t len, struct pmd_place *places,
			     uint32_t *n)
{
	struct pmd_nreq_alloc_rep rep;

	*n = 0;
	memset(&rep, 0, sizeof(rep));
	if (len < offsetof(struct pmd_nreq_alloc_rep, e) || len > sizeof(rep))
		return EPROTO;
	memcpy(&rep, body, len);
	if (rep.n > PMD_LEND_MAX ||
	    len != offsetof(struct pmd_nreq_alloc_rep, e) +
		   rep.n * sizeof(rep.e[0]))
		return EPROTO;
	for (uint32_t i = 0; i < rep.n; i++) {
		const struct pmd_nreq_lent *e = &rep.e[i];
		if (e->slot >= PMD_SEG_SLOTS ||
		    e->len < (uint64_t)(e->slot + 1) * PM_FRAME_SIZE) {
			*n = 0;
			return EPROTO;
		}
		places[(*n)++] = (struct pmd_place){ .node = b->node,
			.seg = e->seg, .slot = e->slot, .key = e->key,
			.base = e->base, .len = e->len, .tag_task = b->tag_task,
			.tag_cont = b->tag_cont };
	}
	return 0;
}

void pmd_borrow_late(struct pmd_cluster *c, pm_node_t lender, const void *body,
		     size_t len)
{
	struct pmd_borrow b = { .c = c, .node = lender };
	struct pmd_place places[PMD_LEND_MAX];
	uint32_t n = 0;

	if (borrow_places(&b, body, len, places, &n) || !n)
		return;
	pmd_debug("cluster: %u slots node %u lent after the call ended go back",
		  n, lender);
	pmd_places_give_back(c->core, places, n);
}

static void borrow_answer(void *arg, error_t status, const void *body,
			  size_t len)
{
	struct pmd_borrow *b = arg;
	struct pmd_place places[PMD_LEND_MAX];
	uint32_t n = 0;

	if (!status) {
		status = borrow_places(b, body, len, places, &n);
		if (status)
			pmd_warn("cluster: node %u answered a loan badly", b->node);
	}
	b->done(b->arg, status, places, n);
	free(b);
}

error_t pmd_cluster_borrow(struct pmd_cluster *c, pm_node_t node, uint32_t n,
			   pmd_borrow_done *done, void *arg)
{
	return pmd_cluster_borrow_for(c, node, n, 0, 0, 0, NULL, done, arg);
}

error_t pmd_cluster_borrow_for(struct pmd_cluster *c, pm_node_t node,
			       uint32_t n, uint64_t task, uint64_t cont,
			       container_t handle, const frame_t *frames,
			       pmd_borrow_done *done, void *arg)
{
	struct pmd_borrow *b = malloc(sizeof(*b));
	struct pmd_nreq_alloc_req q = { 0 };
	error_t err;

	if (!b)
		return ENOMEM;
	*b = (struct pmd_borrow){ .c = c, .node = node, .done = done,
				  .arg = arg, .tag_task = task,
				  .tag_cont = cont };
	if (n > PMD_LEND_MAX)
		n = PMD_LEND_MAX;
	q.n = n;
	if (task) {
		q.task = task;
		q.cont = cont;
		q.handle = handle;
		memcpy(q.frame, frames, n * sizeof(*frames));
	}
	err = pmd_cluster_call(c, node, PMD_NREQ_ALLOC, &q,
			       task ? sizeof(q) : PMD_NREQ_ALLOC_UNTAGGED,
			       borrow_answer, b);
	if (err)
		free(b);
	return err;
}

static void give_back_answer(void *arg, error_t status, const void *body,
			     size_t len)
{
	(void)arg;
	(void)body;
	(void)len;
	if (status && status != ENODEV)
		pmd_debug("cluster: giving slots back: %s", strerror(status));
}

/* FREE requests for slots v[0..n) (any nodes; the array is used up): up
 * to PMD_NREQ_FREE_MAX of one node a request, done called for each. The
 * number of requests sent. */
static unsigned free_send(struct pmd_cluster *c, struct pmd_rfree *v,
			  uint32_t nv, pmd_ncall_done *done, void *arg)
{
	unsigned calls = 0;

	while (nv) {
		pm_node_t node = v[0].node;
		struct pmd_nreq_free_req q = { 0 };
		uint32_t k = 0;

		for (uint32_t i = 0; i < nv; i++) {
			if (v[i].node == node && q.n < PMD_NREQ_FREE_MAX)
				q.e[q.n++] = (struct pmd_nreq_free_slot){
					.seg = v[i].seg, .slot = v[i].slot };
			else
				v[k++] = v[i];
		}
		nv = k;
		/* A node that is down has taken its slots back already. */
		if (pmd_cluster_call(c, node, PMD_NREQ_FREE, &q,
				     offsetof(struct pmd_nreq_free_req, e) +
				     q.n * sizeof(q.e[0]), done, arg))
			pmd_debug("cluster: %u slots of node %u not given back "
				  "(it is down)", q.n, node);
		else
			calls++;
	}
	return calls;
}

unsigned pmd_cluster_take_back(struct pmd_cluster *c, struct pmd_rfree *slots,
			       uint32_t n, pmd_ncall_done *done, void *arg)
{
	return free_send(c, slots, n, done, arg);
}

/* Whether a slot to give back is named by a held write (rio.c): its
 * lender must not lend it again while that may still land. */
static bool slot_in_doubt(const struct pmd_cluster *c,
			  const struct pmd_rfree *v)
{
	const struct pmd_rseg *r = pmd_rseg_find(c->core, v->node, v->seg);

	return r && pmd_rio_in_doubt(c, v->node, r->key,
				     (uint64_t)v->slot * PM_FRAME_SIZE,
				     PM_FRAME_SIZE);
}

void pmd_cluster_give_back(struct pmd_cluster *c)
{
	struct pmd_core *core = c->core;
	uint32_t n = core->nrfree, m = n;

	if (c->rio_held) { /* those in doubt stay, at the end */
		m = 0;
		for (uint32_t i = 0; i < n; i++)
			if (!slot_in_doubt(c, &core->rfree[i])) {
				struct pmd_rfree t = core->rfree[m];
				core->rfree[m++] = core->rfree[i];
				core->rfree[i] = t;
			}
	}
	free_send(c, core->rfree, m, give_back_answer, c);
	if (n > m)
		memmove(core->rfree, core->rfree + m,
			(n - m) * sizeof(core->rfree[0]));
	core->nrfree = n - m;
}

/* A RETURN call: its caller's done, and how many slots it asked. */
struct pmd_return_call {
	pmd_return_done *done;         /* (C) */
	void *arg;                     /* (C) */
	uint32_t n;                    /* (C) */
};

static void return_answer(void *arg, error_t status, const void *body,
			  size_t len)
{
	struct pmd_return_call *k = arg;
	struct pmd_nreq_return_rep rep;

	if (!status && (len < sizeof(rep) ||
			(memcpy(&rep, body, sizeof(rep)), rep.n != k->n) ||
			len != sizeof(rep) + (size_t)k->n * PM_FRAME_SIZE ||
			(k->n < 32 && rep.lost >> k->n)))
		status = EPROTO;
	if (status)
		k->done(k->arg, status, 0, NULL);
	else
		k->done(k->arg, 0, rep.lost,
			(const uint8_t *)body + sizeof(rep));
	free(k);
}

error_t pmd_cluster_return(struct pmd_cluster *c, pm_node_t node,
			   const struct pmd_rfree *slots, uint32_t n,
			   bool nostop, pmd_return_done *done, void *arg)
{
	struct pmd_nreq_return_req q = { .n = n,
		.flags = nostop ? PMD_RETURN_NOSTOP : 0 };
	struct pmd_return_call *k;
	error_t err;

	if (!n || n > PMD_RETURN_MAX)
		return EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		if (slots[i].node != node)
			return EINVAL;
		q.e[i] = (struct pmd_nreq_free_slot){ .seg = slots[i].seg,
						       .slot = slots[i].slot };
	}
	k = malloc(sizeof(*k));
	if (!k)
		return ENOMEM;
	*k = (struct pmd_return_call){ .done = done, .arg = arg, .n = n };
	err = pmd_cluster_call(c, node, PMD_NREQ_RETURN, &q,
			       offsetof(struct pmd_nreq_return_req, e) +
			       n * sizeof(q.e[0]), return_answer, k);
	if (err)
		free(k);
	return err;
}

void pmd_borrow_count(struct pmd_cluster *c, uint64_t *by_index, bool *ok)
{
	struct pmd_core *core = c->core;

	for (struct pmd_list *tp = core->tasks.next; tp != &core->tasks;
	     tp = tp->next) {
		struct pmd_task *t = pmd_container_of(tp, struct pmd_task, link);

		for (struct pmd_list *cp = t->containers.next;
		     cp != &t->containers; cp = cp->next) {
			struct pmd_container *ct = pmd_container_of(
				cp, struct pmd_container, owner_link);
			struct pmd_frame *e;
			frame_t f = 0;

			while (pmd_ftab_next(&ct->frames, &f, &e)) {
				/* (The backing store is no node.) */
				int i = (e->flags & PMD_FRAME_REMOTE) &&
					!(e->flags & PMD_FRAME_LOST) &&
					e->node != PMD_NODE_STORE
					? pmd_node_index(c, e->node) : -2;

				if (i == -1 || (i >= 0 && (e->node == c->self ||
				    !pmd_rseg_find(core, e->node, e->seg)))) {
					pmd_err("check: frame %#lx of container "
						"%#lx lives on node %u, segment "
						"%u, which we know nothing of",
						(unsigned long)f,
						(unsigned long)ct->id, e->node,
						e->seg);
					*ok = false;
				} else if (i >= 0) {
					by_index[i]++;
				}
				if (f++ == UINT64_MAX)
					break;
			}
		}
	}
	for (uint32_t k = 0; k < core->nrfree; k++) {
		int i = pmd_node_index(c, core->rfree[k].node);
		if (i >= 0)
			by_index[i]++;
	}
}
