/*
 * drain.c - a node leaving the cluster without losing anyone's frames,
 * and the other side of it.
 *
 * Draining (pmctl drain: the operator's DRAIN): this node lends no more,
 * and asks every node it lends slots to (RECALL) to take its frames home.
 * Each of them pulls them by RDMA, a container's worth at a time, and
 * gives the slots back (FREE). Once nothing is lent the drain is answered
 * and the pmd stops, as on SIGTERM: its own tasks' sessions end, no
 * other node loses a frame. A home that cannot (no room for the frames,
 * a release without RECALL) or a deadline that passes ends the drain
 * with an error, and the node lends and serves as before.
 *
 * Recalling (a peer's RECALL): the frames of our containers in that
 * node's slots come home, one pull per container at a time (the
 * container is busy meanwhile, as for any remote work), or, when there
 * is no room here for them, go to the node with the most room (read
 * from the one that drains, written to slots the other lends); when
 * neither can take them they stay, and we give up, saying so.
 */
#include "daemon.h"

#include <errno.h>
#include <string.h>

#include "clock.h"
#include "container.h"
#include "log.h"
#include "task.h"

#define DRAIN_DEFAULT_MS 30000u
#define DRAIN_TICK_MS    20

/* ---- this node drains ---- */

static void drain_recall_answered(void *arg, error_t status, const void *body,
				  size_t len)
{
	struct pmd_server *srv = arg;

	(void)body;
	(void)len;
	if (status == ENODEV)
		return; /* down: it has given our slots back already */
	if (status && srv->drain.on && !srv->drain.failed)
		srv->drain.failed = status;
}

enum pmd_step pmd_drain_start(struct pmd_server *srv, struct pmd_session *s,
			      uint32_t timeout_ms, struct pmd_reply *r)
{
	struct pmd_drain *d = &srv->drain;

	if (d->on)
		return pmd_reply_now(r, EBUSY);
	*d = (struct pmd_drain){ .on = true, .t0_ms = pmd_now_ms() };
	d->end_ms = d->t0_ms + (timeout_ms ? timeout_ms : DRAIN_DEFAULT_MS);
	if (srv->cluster) {
		d->slots = pmd_cluster_lent(srv->cluster, 0);
		pmd_cluster_drain(srv->cluster, true);
		d->nhomes = pmd_cluster_recall(srv->cluster, d->homes,
					       PM_NODES_MAX,
					       drain_recall_answered, srv);
	}
	pmd_info("draining: %lu slots lent to %u nodes go back to them; "
		 "then the pmd stops", (unsigned long)d->slots, d->nhomes);
	return pmd_session_park(s, &d->base);
}

/* The drain ends: answered (if its session is still there). */
static void drain_end(struct pmd_server *srv, error_t status,
		      pm_node_t culprit)
{
	struct pmd_drain *d = &srv->drain;
	struct pmd_session *s = d->base.s;
	struct pm_drain_rep *rep = pmd_reply_body(srv);
	struct pmd_reply r = { .status = status, .why.frame = culprit };

	d->on = false;
	if (status && srv->cluster)
		pmd_cluster_drain(srv->cluster, false);
	if (!s)
		return;
	s->pending = NULL;
	if (!status) {
		*rep = (struct pm_drain_rep){ .slots = d->slots,
			.homes = d->nhomes,
			.ms = (uint32_t)(pmd_now_ms() - d->t0_ms) };
		r.body_len = sizeof(*rep);
	}
	pmd_session_answer(srv, s, &r);
}

/* A node that still holds slots of ours, for the error. */
static pm_node_t drain_holder(struct pmd_server *srv)
{
	for (uint32_t i = 0; i < srv->drain.nhomes; i++)
		if (pmd_cluster_lent(srv->cluster, srv->drain.homes[i]))
			return srv->drain.homes[i];
	return 0;
}

static void drain_check(struct pmd_server *srv, bool *stop)
{
	struct pmd_drain *d = &srv->drain;
	pm_node_t who;

	if (!d->base.s) { /* the operator went: nothing to answer */
		pmd_warn("draining: the operator's session ended; lending "
			 "again");
		drain_end(srv, ECANCELED, 0);
		return;
	}
	if (d->failed) {
		who = drain_holder(srv);
		pmd_warn("draining: node %u cannot take its frames back (%s); "
			 "lending again", who, strerror(d->failed));
		drain_end(srv, d->failed, who);
		return;
	}
	if (!srv->cluster || !pmd_cluster_lent(srv->cluster, 0)) {
		pmd_info("drained in %lu ms: nothing lent; stopping",
			 (unsigned long)(pmd_now_ms() - d->t0_ms));
		drain_end(srv, 0, 0);
		*stop = true;
		return;
	}
	if (pmd_now_ms() >= d->end_ms) {
		who = drain_holder(srv);
		pmd_warn("draining: node %u still holds %lu of our slots after "
			 "%lu ms; lending again", who,
			 (unsigned long)pmd_cluster_lent(srv->cluster, who),
			 (unsigned long)(d->end_ms - d->t0_ms));
		drain_end(srv, ETIMEDOUT, who);
	}
}

/* ---- another node drains ---- */

void pmd_recall_add(void *arg, pm_node_t lender)
{
	struct pmd_server *srv = arg;
	int free_at = -1;


	for (unsigned i = 0; i < PM_NODES_MAX; i++) {
		if (srv->recall[i].node == lender) {
			srv->recall[i].stuck = 0; /* asked again: try again */
			srv->recall[i].fails = 0;
			return;
		}
		if (!srv->recall[i].node && free_at < 0)
			free_at = (int)i;
	}
	if (free_at < 0)
		return; /* cannot happen: one entry a node */
	srv->recall[free_at] = (struct pmd_recall){ .node = lender };
	srv->recalling = true;
	pmd_info("node %u drains: our frames there come home", lender);
}

#define RECALL_TRIES 3

/* Our frames on rc's node cannot leave it: we stop trying (it asks
 * again to try again), saying why. */
static void recall_give_up(struct pmd_recall *rc, error_t why)
{
	if (rc->stuck)
		return;
	rc->stuck = why;
	if (why == ENOMEM)
		pmd_warn("node %u drains, but there is no room here or on "
			 "another node for our frames there: they stay",
			 rc->node);
	else
		pmd_warn("node %u drains, but our frames there cannot leave "
			 "it (%s, %u times): they stay", rc->node,
			 strerror(why), rc->fails);
}

static void recall_ended(void *arg, error_t status)
{
	struct pmd_recall *rc = arg;

	rc->inflight--;
	rc->fails = status ? rc->fails + 1 : 0;
	if (status == ENOMEM || rc->fails >= RECALL_TRIES)
		recall_give_up(rc, status);
}

/* Starts pulls of our frames on rc's node, one per container that has
 * some and no remote work in flight; false when none is left there. */
static bool recall_step(struct pmd_server *srv, struct pmd_recall *rc)
{
	struct pmd_core *core = srv->core;
	bool left = false;

	for (struct pmd_list *tp = core->tasks.next; tp != &core->tasks;
	     tp = tp->next) {
		struct pmd_task *t = pmd_container_of(tp, struct pmd_task, link);
		for (struct pmd_list *cp = t->containers.next;
		     cp != &t->containers; cp = cp->next) {
			struct pmd_container *c = pmd_container_of(
				cp, struct pmd_container, owner_link);
			error_t err = pmd_remote_recall(srv, c, rc->node,
							recall_ended, rc);
			if (err == ENOENT)
				continue;
			left = true;
			if (!err)
				rc->inflight++;
			else if (err != EBUSY)
				recall_give_up(rc, err);
			if (rc->stuck)
				return true;
		}
	}
	return left;
}

static void recall_turn(struct pmd_server *srv)
{
	srv->recalling = false;
	for (unsigned i = 0; i < PM_NODES_MAX; i++) {
		struct pmd_recall *rc = &srv->recall[i];
		bool up;

		if (!rc->node)
			continue;
		srv->recalling = true; /* (one cleared below: the next turn) */
		up = pmd_cluster_peer_up(srv->cluster, rc->node);
		if (rc->inflight || (rc->stuck && up))
			continue;
		if (!up || !recall_step(srv, rc)) {
			if (up)
				pmd_info("node %u drains: none of our frames "
					 "is there any more", rc->node);
			if (!rc->inflight)
				rc->node = 0;
		}
	}
}

void pmd_drain_turn(struct pmd_server *srv, bool *stop)
{
	if (srv->drain.on)
		drain_check(srv, stop);
	if (srv->recalling)
		recall_turn(srv);
}

int pmd_drain_timeout_ms(const struct pmd_server *srv, int timeout)
{
	bool busy = srv->drain.on;

	for (unsigned i = 0; srv->recalling && i < PM_NODES_MAX && !busy; i++)
		busy = srv->recall[i].node && !srv->recall[i].stuck;
	if (busy && (timeout < 0 || timeout > DRAIN_TICK_MS))
		return DRAIN_TICK_MS;
	return timeout;
}
