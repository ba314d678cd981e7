/*
 * place.c - allocations whose frames go to other nodes, by any policy: a
 * container placed on another node (PM_PLACE_NODE), interleaved across
 * the nodes that are up (PM_PLACE_INTERLEAVE), or spilling when this
 * node's budget is spent (PM_PLACE_LOCAL).
 *
 * The plan gives each frame its place (node 0: here); the slots are
 * borrowed node after node, in id order; a node that cannot lend all its
 * share ends the plan at its first frame without a slot (ENOMEM, or
 * ENODEV when the policy named that node and it is down); then one
 * allocation runs over the mixed places, all or nothing without
 * CONT_ALLOC_PARTIAL, as any allocation, and what it did not use goes
 * back.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

/* A placed allocation in progress. */
struct actx {
	struct pmd_pending base;
	struct pmd_server *srv;      /* (C) */
	struct pm_alloc_req req;     /* (C) the request */
	uint32_t asked;              /* (C) frames planned first */
	uint32_t plan;               /* (L) frames it may allocate, */
	error_t stop;                /* (L) and why not more */
	bool named;                  /* (C) the policy named the node */
	pm_node_t node;              /* (L) the lender borrowed from now, */
	uint32_t scan;               /* (L) its next frame in places */
	struct pmd_place *places;    /* (L) a place per frame planned; those
	                              * with a slot are ours to give back */
	uint32_t nplaces;            /* (L) */
};

static void actx_free(struct actx *x)
{
	pmd_places_give_back(x->srv->core, x->places, x->nplaces);
	free(x->places);
	free(x);
}

/* A context with room for n places, all here until the caller names
 * their nodes. */
static struct actx *actx_new(struct pmd_server *srv,
			     const struct pm_alloc_req *req, uint32_t n)
{
	struct actx *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->places = calloc(n ? n : 1, sizeof(*x->places));
	if (!x->places) {
		free(x);
		return NULL;
	}
	x->srv = srv;
	x->req = *req;
	x->nplaces = n;
	return x;
}

static void place_borrowed(void *arg, error_t status,
			   const struct pmd_place *places, uint32_t n);

/* Frames of the plan from `from` on that go to node and have no slot. */
static uint32_t place_need(const struct actx *x, pm_node_t node, uint32_t from)
{
	uint32_t need = 0;

	for (uint32_t i = from; i < x->plan; i++)
		need += x->places[i].node == node && !x->places[i].len;
	return need;
}

/* x->node lends no more (why: the borrow's error): the plan ends at its
 * first frame without a slot. */
static void place_short(struct actx *x, error_t why)
{
	for (uint32_t i = x->scan; i < x->plan; i++) {
		if (x->places[i].node == x->node && !x->places[i].len) {
			x->plan = i;
			x->stop = why == ENODEV && x->named ? ENODEV : ENOMEM;
			return;
		}
	}
}

/* The allocation once every share is borrowed (or no more come); the
 * places it did not use go back. */
static error_t place_allocate(struct pmd_server *srv, struct pmd_session *s,
			      struct actx *x, struct pmd_reply *r)
{
	const struct pm_alloc_req *q = &x->req;
	bool partial = q->flags & CONT_ALLOC_PARTIAL;
	uint32_t done = 0;
	error_t err;

	if (x->plan < x->asked && (!partial || x->plan == 0)) {
		err = x->stop; /* not all of it: nothing at all */
		r->why.frame = q->start + x->plan;
	} else {
		err = pmd_container_allocate(srv->core, s->task, q->handle,
					     q->start, x->plan, q->flags,
					     x->places, x->plan, &done, &r->why);
		if (!err && done < q->count) {
			err = x->stop; /* as planned: the stop of the plan */
			r->why.frame = q->start + done;
		}
	}
	pmd_places_give_back(srv->core, x->places + done, x->nplaces - done);
	x->nplaces = 0;
	pmd_alloc_reply(srv, r, done);
	return err;
}

/* Borrows the share of the next node that has one: true when a borrow
 * is under way, false when every share is in (or cannot be had). */
static bool place_next(struct pmd_server *srv, struct actx *x)
{
	for (;;) {
		pm_node_t next = 0;
		error_t err;

		for (uint32_t i = 0; i < x->plan; i++) {
			pm_node_t node = x->places[i].node;
			if (node > x->node && (!next || node < next))
				next = node;
		}
		if (!next)
			return false;
		x->node = next;
		x->scan = 0;
		err = pmd_cluster_borrow(srv->cluster, next,
					 place_need(x, next, 0), place_borrowed,
					 x);
		if (!err)
			return true;
		place_short(x, err);
	}
}

static void place_borrowed(void *arg, error_t status,
			   const struct pmd_place *places, uint32_t n)
{
	struct actx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_session *s = x->base.s;
	struct pmd_reply r = { 0 };
	uint32_t k = 0, i, need;

	for (i = x->scan; i < x->plan && k < n; i++)
		if (x->places[i].node == x->node)
			x->places[i] = places[k++];
	x->scan = i;
	if (k < n)
		pmd_places_give_back(srv->core, places + k, n - k);
	if (!s) { /* its session went: what it borrowed goes back */
		actx_free(x);
		return;
	}
	need = place_need(x, x->node, x->scan);
	if (need && !status && n &&
	    !pmd_cluster_borrow(srv->cluster, x->node, need, place_borrowed, x))
		return;
	if (need)
		place_short(x, status);
	if (place_next(srv, x))
		return;
	s->pending = NULL;
	r.status = place_allocate(srv, s, x, &r);
	actx_free(x);
	pmd_session_answer(srv, s, &r);
}

/* Starts the placed allocation of x's first n frames, whose places
 * x->places names; stop: why not more. */
static enum pmd_step place_start(struct pmd_server *srv, struct pmd_session *s,
				 struct actx *x, uint32_t n, error_t stop,
				 bool named, struct pmd_reply *r)
{
	x->plan = x->asked = n;
	x->stop = stop;
	x->named = named;
	if (place_next(srv, x))
		return pmd_session_park(s, &x->base);
	r->status = place_allocate(srv, s, x, r); /* no node could lend */
	actx_free(x);
	return PMD_STEP_REPLY;
}

/* The decode of an allocation whose frames may live on other nodes,
 * bounded by the task's quota alone: a context for its a->n frames (all
 * here so far). NULL when it stops before any frame (or, without
 * CONT_ALLOC_PARTIAL, at all): r is the answer. */
static struct actx *plan_elsewhere(struct pmd_server *srv,
				   struct pmd_session *s,
				   const struct pm_alloc_req *req,
				   struct pmd_alloc *a, struct pmd_reply *r)
{
	struct actx *x;
	error_t err;

	err = pmd_alloc_decode(srv->core, s->task, req->handle, req->start,
			       req->count, req->flags, PMD_ALLOC_ANYWHERE,
			       NULL, 0, a, &r->why);
	pmd_alloc_reply(srv, r, 0);
	if (!err && (a->n == 0 ||
		     (a->stop && !(req->flags & CONT_ALLOC_PARTIAL))))
		err = a->stop ? a->stop : EINVAL;
	if (err) {
		r->status = err;
		return NULL;
	}
	x = actx_new(srv, req, a->n);
	if (!x)
		r->status = ENOMEM;
	return x;
}

/* A container placed on another node. */
static enum pmd_step alloc_named(struct pmd_server *srv, struct pmd_session *s,
				 const struct pm_alloc_req *req, pm_node_t node,
				 struct pmd_reply *r)
{
	struct pmd_alloc a;
	struct actx *x = plan_elsewhere(srv, s, req, &a, r);

	if (!x)
		return PMD_STEP_REPLY;
	for (uint32_t i = 0; i < a.n; i++)
		x->places[i].node = node;
	return place_start(srv, s, x, a.n, a.stop, true, r);
}

/* Interleave: frame f of the container goes to the (f mod k)-th of the k
 * nodes that are up (this one among them), in id order, so that frames
 * next to each other are on different nodes whatever the calls. Not when
 * this node is the only one up: the frames are all here. */
static enum pmd_step alloc_interleave(struct pmd_server *srv,
				      struct pmd_session *s,
				      const struct pm_alloc_req *req,
				      bool *applies, struct pmd_reply *r)
{
	pm_node_t nodes[PMD_CLUSTER_NODES_MAX];
	pm_node_t self = srv->core->cfg.node;
	unsigned k = pmd_cluster_up_nodes(srv->cluster, nodes,
					  PMD_CLUSTER_NODES_MAX);
	struct pmd_alloc a, b;
	error_t stop, err;
	struct actx *x;
	uint32_t n;

	*applies = k >= 2;
	if (!*applies)
		return PMD_STEP_REPLY;
	/* The task's quota bounds the plan, and so the places it needs. */
	x = plan_elsewhere(srv, s, req, &a, r);
	if (!x)
		return PMD_STEP_REPLY;
	n = a.n;
	stop = a.stop;
	for (uint32_t i = 0; i < n; i++) {
		pm_node_t node = nodes[(req->start + i) % k];
		x->places[i].node = node == self ? 0 : node;
	}
	/* Now with each frame's node: extra frames here need room here. */
	err = pmd_alloc_decode(srv->core, s->task, req->handle, req->start, n,
			       req->flags, PMD_ALLOC_PLACES, x->places, n, &b,
			       &r->why);
	if (!err && b.stop) {
		n = b.n;
		stop = b.stop;
	}
	if (n == 0 || (stop && !(req->flags & CONT_ALLOC_PARTIAL))) {
		actx_free(x);
		pmd_alloc_reply(srv, r, 0);
		return pmd_reply_now(r, stop);
	}
	return place_start(srv, s, x, n, stop, false, r);
}

/* A container placed here whose node budget is spent: the frames that do
 * not fit go to the node with the most room, the first ones here. Not
 * when this node holds them all, when the task's own quota stops it
 * first, or when no node has room. */
static enum pmd_step alloc_spill(struct pmd_server *srv, struct pmd_session *s,
				 const struct pm_alloc_req *req, bool *applies,
				 struct pmd_reply *r)
{
	struct pmd_culprit why;
	struct pmd_alloc here, any;
	pm_node_t lender;
	struct actx *x;

	*applies = false;
	/* Room here for every frame asked for: nothing to plan (guaranteed
	 * frames always fit, extra ones while no guarantee is eaten). */
	if (pmd_budget_unreserved(&srv->core->budget) >= req->count)
		return PMD_STEP_REPLY;
	if (pmd_alloc_decode(srv->core, s->task, req->handle, req->start,
			     req->count, req->flags, PMD_ALLOC_HERE, NULL, 0,
			     &here, &why) || here.stop != ENOMEM)
		return PMD_STEP_REPLY;
	pmd_alloc_decode(srv->core, s->task, req->handle, req->start,
			 req->count, req->flags, PMD_ALLOC_ANYWHERE, NULL, 0,
			 &any, &why);
	lender = pmd_cluster_best_lender(srv->cluster, 0);
	if (any.n <= here.n || !lender)
		return PMD_STEP_REPLY;
	*applies = true;
	if (any.stop && !(req->flags & CONT_ALLOC_PARTIAL)) {
		/* Not all of it even with other nodes: nothing at all. */
		pmd_alloc_reply(srv, r, 0);
		r->why.frame = req->start + any.n;
		return pmd_reply_now(r, any.stop);
	}
	x = actx_new(srv, req, any.n);
	if (!x) {
		*applies = false;
		return PMD_STEP_REPLY;
	}
	for (uint32_t i = here.n; i < any.n; i++)
		x->places[i].node = lender;
	return place_start(srv, s, x, any.n, any.stop, false, r);
}

enum pmd_step pmd_place_store(struct pmd_server *srv, struct pmd_session *s,
			      const struct pm_alloc_req *req, bool *applies,
			      struct pmd_reply *r)
{
	struct pmd_core *core = srv->core;
	struct pmd_alloc here, any;
	struct pmd_culprit why;
	struct pmd_place *places;
	uint32_t n, done = 0;
	error_t stop, err;
	uint64_t left;

	*applies = false;
	if (!core->store.nslots || pmd_budget_room(&core->budget) >= req->count)
		return PMD_STEP_REPLY;
	if (pmd_alloc_decode(core, s->task, req->handle, req->start,
			     req->count, req->flags, PMD_ALLOC_HERE, NULL, 0,
			     &here, &why) || here.stop != ENOMEM)
		return PMD_STEP_REPLY;
	/* Guaranteed frames only: the store is what guarantees reserve
	 * beyond memory, extra frames have no claim on it. */
	pmd_alloc_decode(core, s->task, req->handle, req->start, req->count,
			 req->flags & ~CONT_ALLOC_EXTRA, PMD_ALLOC_ANYWHERE,
			 NULL, 0, &any, &why);
	if (any.n <= here.n)
		return PMD_STEP_REPLY;
	*applies = true;
	n = any.n;
	stop = any.n < req->count ? ENOMEM : 0;
	left = pmd_store_free(&core->store, false);
	if (n - here.n > left) {
		n = here.n + (uint32_t)left;
		stop = ENOMEM;
	}
	if (stop && (n == 0 || !(req->flags & CONT_ALLOC_PARTIAL))) {
		pmd_alloc_reply(srv, r, 0);
		r->why.frame = req->start + n;
		return pmd_reply_now(r, ENOMEM);
	}
	places = calloc(n, sizeof(*places));
	if (!places)
		return pmd_reply_now(r, ENOMEM);
	if (pmd_store_take(&core->store, n - here.n, places + here.n) !=
	    n - here.n) { /* (pmd_store_free said there were) */
		pmd_places_give_back(core, places, n);
		free(places);
		return pmd_reply_now(r, ENOMEM);
	}
	err = pmd_store_zero(srv, places + here.n, n - here.n) ? ENOMEM : 0;
	if (!err)
		err = pmd_container_allocate(core, s->task, req->handle,
					     req->start, n, req->flags, places,
					     n, &done, &r->why);
	if (!err && done < req->count) {
		err = stop ? stop : ENOMEM;
		r->why.frame = req->start + done;
	}
	pmd_places_give_back(core, places + done, n - done);
	free(places);
	pmd_alloc_reply(srv, r, done);
	return pmd_reply_now(r, err);
}

enum pmd_step pmd_place_allocate(struct pmd_server *srv, struct pmd_session *s,
				 const struct pm_alloc_req *req,
				 const struct pmd_container *c, bool *applies,
				 struct pmd_reply *r)
{
	enum pmd_step step;

	*applies = true;
	if (c->policy == PM_PLACE_NODE && c->policy_node != srv->core->cfg.node)
		return alloc_named(srv, s, req, c->policy_node, r);
	if (c->policy == PM_PLACE_INTERLEAVE) {
		step = alloc_interleave(srv, s, req, applies, r);
		if (*applies)
			return step;
	}
	/* Local placement spills when this node's budget is spent. */
	return alloc_spill(srv, s, req, applies, r);
}
