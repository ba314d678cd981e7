/*
 * reclaim.c - memory pressure: a request that needs frames here the node
 * does not have free waits while the pmd makes room (the core's
 * reclaim.h says which frames, and what a frame taken answers).
 *
 * Who waits: a guaranteed allocation that finds the node full of other
 * tasks' extra frames (the extra-frame protocol), and a map, copy or
 * fault that must bring frames home from another node (they are
 * *urgent*: nobody is given a grace period for them).
 *
 * One *round* at a time. It begins when a request parks here: the pmd
 * asks the tasks that hold extra frames here and said they have a
 * reclaim handler (RECLAIM_HANDLER), largest excess first, for what the
 * waiters lack (RECLAIM on each one's fault session: "give back N"), and
 * sets the deadline, --reclaim-grace-ms on (at once when nobody could be
 * asked or a waiter is urgent). A request that parks during a round asks
 * for what it adds. Whenever the node has room for the first waiter,
 * every waiter runs again (first in the loop's order). At the deadline
 * the pmd pages cold frames out to other nodes, or to the backing store
 * when none has room (remote.c), batch after batch while that makes
 * progress; then it takes the extra frames still missing itself,
 * largest excess first, and the waiters run again. A
 * request that still finds no room after two rounds that reached their
 * deadline answers ENOMEM.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "reclaim.h"

/* Rounds that reached their deadline after which a waiter gives up
 * (ENOMEM). */
#define RECLAIM_ROUNDS_MAX 2

/* A request that waits for frames. */
struct rwait {
	struct pmd_pending base;     /* its session, parked */
	struct pmd_req q;            /* (C) the request, its body kept */
	uint8_t *body;               /* (C) */
	uint64_t need;               /* (C) the room it needs, */
	uint64_t need_u;             /* (C) and of it, room no guarantee
	                              * reserves (extra frames coming home) */
	struct pmd_list link;        /* (L) in srv->reclaim.waiters */
};

void pmd_reclaim_init(struct pmd_server *srv)
{
	memset(&srv->reclaim, 0, sizeof(srv->reclaim));
	pmd_list_init(&srv->reclaim.waiters);
}

/* What the waiters lack now: room, and room no guarantee reserves. */
static uint64_t reclaim_short(const struct pmd_server *srv)
{
	uint64_t room = pmd_budget_room(&srv->core->budget);

	return srv->reclaim.need > room ? srv->reclaim.need - room : 0;
}

static uint64_t reclaim_short_u(const struct pmd_server *srv)
{
	uint64_t u = pmd_budget_unreserved(&srv->core->budget);

	return srv->reclaim.need_u > u ? srv->reclaim.need_u - u : 0;
}

/* Whether w has what it waits for. */
static bool has_room(const struct pmd_server *srv, const struct rwait *w)
{
	return pmd_budget_room(&srv->core->budget) >= w->need &&
	       pmd_budget_unreserved(&srv->core->budget) >= w->need_u;
}

/* The tasks holding extra frames here, largest excess first (malloc'd;
 * NULL with *n 0 when out of memory or none). */
static struct pmd_task **victims(struct pmd_server *srv, uint32_t *n)
{
	struct pmd_core *core = srv->core;
	struct pmd_task **v;

	*n = 0;
	if (!core->ntasks || !(v = malloc(core->ntasks * sizeof(*v))))
		return NULL;
	*n = pmd_reclaim_victims(core, v, (uint32_t)core->ntasks);
	return v;
}

/* RECLAIM for up to want frames to the tasks that can hear it; how
 * many frames were asked for. */
static uint64_t reclaim_ask(struct pmd_server *srv, uint64_t want)
{
	struct {
		struct pm_msg_hdr h;
		struct pm_reclaim body;
	} msg;
	struct pmd_task **v;
	uint64_t asked = 0;
	uint32_t n;

	v = victims(srv, &n);
	for (uint32_t i = 0; i < n && asked < want; i++) {
		uint64_t k = v[i]->charge.extra_here;

		if (!v[i]->reclaim_asks)
			continue;
		if (k > want - asked)
			k = want - asked;
		if (k > UINT32_MAX)
			k = UINT32_MAX;
		pm_msg_hdr_init(&msg.h, PM_MSG_RECLAIM, sizeof(msg),
				++srv->reclaim.seq);
		msg.body = (struct pm_reclaim){ .frames = (uint32_t)k };
		if (!pmd_task_notify(v[i], &msg, sizeof(msg)))
			continue;
		pmd_debug("task %#lx: asked for %lu extra frames back",
			  (unsigned long)v[i]->id, (unsigned long)k);
		asked += k;
	}
	free(v);
	srv->reclaim.asked += asked;
	srv->reclaim.asked_total += asked;
	return asked;
}

/* Whether the pmd leaves c alone now (remote work in flight). */
static bool container_busy(void *arg, const struct pmd_container *c)
{
	return pmd_busy_test(arg, c->id);
}

/* Whether another node, or the backing store, may take frames of ours
 * now. */
static bool can_page(const struct pmd_server *srv, bool page_in)
{
	return (srv->cluster && pmd_cluster_best_lender(srv->cluster, 0)) ||
	       pmd_store_free(&srv->core->store, page_in);
}

/* A batch of page-outs ended (moved of its frames moved). */
static void paged(void *arg, uint32_t moved, error_t status)
{
	struct pmd_server *srv = arg;
	struct pmd_reclaim_state *rc = &srv->reclaim;

	(void)status; /* (said where it failed) */
	rc->paging--;
	rc->paged_batch += moved;
	rc->paged_total += moved;
	if (!rc->paging) {
		if (!rc->paged_batch)
			rc->paging_done = true; /* no progress: stop trying */
		rc->paged_batch = 0;
	}
}

/* Frames paged out beyond what the waiters lack, so that the requests
 * after them find room without a page-out of their own on their path (a
 * round trip to the mapping task's library and a write before each
 * page-in; the kernel's watermarks do the same): a 128th of the node's
 * memory, one batch at least, sixteen at most. */
static uint64_t pageout_slack(const struct pmd_server *srv)
{
	uint64_t s = srv->core->budget.total / 128;

	if (s < PMD_PUSH_MAX)
		return PMD_PUSH_MAX;
	return s < 16 * PMD_PUSH_MAX ? s : 16 * PMD_PUSH_MAX;
}

/* Pages out up to want cold frames (extra ones only: what comes home is
 * extra, and needs room no guarantee reserves), a batch of page-outs,
 * one per container; whether any began, or the pmd waits for busy
 * containers (a retry in a millisecond). */
static bool reclaim_pageout(struct pmd_server *srv, uint64_t want,
			    bool extra_only)
{
	struct pmd_reclaim_state *rc = &srv->reclaim;
	struct pmd_pageout v[PMD_PUSH_MAX];
	uint64_t started = 0;
	bool busy = false;

	while (started < want) {
		struct pmd_container *c;
		uint32_t n = pmd_pageout_plan(srv->core,
					      want - started < PMD_PUSH_MAX
					      ? (uint32_t)(want - started)
					      : PMD_PUSH_MAX, extra_only,
					      container_busy, srv, &c, v,
					      &busy);

		if (!n)
			break;
		rc->paging++; /* (done may come before this returns) */
		if (pmd_remote_pageout(srv, c, v, n, rc->urgent, paged, srv)) {
			rc->paging--;
			break;
		}
		started += n;
	}
	if (started)
		return true;
	if (busy) { /* (their remote work ends soon) */
		rc->retry_ns = pmd_now_ns() + 1000000;
		return true;
	}
	rc->paging_done = true;
	return false;
}

/* The deadline: the pmd takes what the waiters still lack. */
static void reclaim_force(struct pmd_server *srv)
{
	uint64_t want = reclaim_short(srv), want_u = reclaim_short_u(srv);
	uint64_t taken = 0;
	struct pmd_task **v;
	uint32_t n;

	if (want_u > want)
		want = want_u; /* (an extra frame taken gives both) */
	v = victims(srv, &n);
	for (uint32_t i = 0; i < n && taken < want; i++) {
		uint64_t k = pmd_reclaim_take(srv->core, v[i], want - taken,
					      container_busy, srv);
		if (!k)
			continue;
		taken += k;
		pmd_warn("task %#lx: took %lu of its extra frames back (%s); "
			 "their contents are lost", (unsigned long)v[i]->id,
			 (unsigned long)k, v[i]->reclaim_asks
			 ? "it did not give them back in time"
			 : "it has no reclaim handler");
	}
	free(v);
	pmd_segtab_flush(&srv->core->segs);
	srv->reclaim.taken_total += taken;
	srv->reclaim.forced = true; /* (taken or not: the waiters' round) */
	if (taken < want)
		pmd_info("reclaim: %lu frames still missing (the rest of the "
			 "extra frames here may not be taken now)",
			 (unsigned long)(want - taken));
}

/* Every waiter runs again, first (the round ends). */
static void reclaim_wake(struct pmd_server *srv)
{
	struct pmd_reclaim_state *rc = &srv->reclaim;
	struct pmd_list *p, *n;

	/* Backwards, each to the head: they run in the order they came. */
	for (p = rc->waiters.prev; p != &rc->waiters; p = n) {
		struct rwait *x = pmd_container_of(p, struct rwait, link);
		struct pmd_session *s = x->base.s;

		n = p->prev;
		pmd_list_del(p);
		if (s) {
			s->pending = NULL;
			s->parked = false;
			s->reclaim_rounds += rc->forced;
			if (!pmd_session_run_later(srv, s, &x->q, true)) {
				struct pmd_reply r = { .status = ENOMEM };
				s->parked = true;
				pmd_session_answer(srv, s, &r);
			}
		}
		free(x->body);
		free(x);
	}
	rc->need = 0;
	rc->need_u = 0;
	rc->asked = 0;
	rc->deadline_ns = 0;
	rc->forced = false;
	rc->urgent = false;
	rc->paging_done = false;
}

enum pmd_step pmd_reclaim_wait(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, uint64_t lack,
			       uint64_t lack_u, bool urgent, bool *go)
{
	struct pmd_reclaim_state *rc = &srv->reclaim;
	uint64_t room = pmd_budget_room(&srv->core->budget), want;
	uint64_t u = pmd_budget_unreserved(&srv->core->budget);
	struct rwait *x;

	*go = true;
	/* Only what extra frames here or other nodes can give, and not
	 * forever. */
	if ((!lack && !lack_u) ||
	    (!srv->core->budget.extra_charged &&
	     !can_page(srv, urgent || rc->urgent)) ||
	    s->reclaim_rounds >= RECLAIM_ROUNDS_MAX)
		return PMD_STEP_REPLY;
	x = calloc(1, sizeof(*x));
	if (!x || !(x->body = malloc(q->len ? q->len : 1))) {
		free(x);
		return PMD_STEP_REPLY; /* its ENOMEM, as without the protocol */
	}
	memcpy(x->body, q->body, q->len);
	x->q = (struct pmd_req){ .type = q->type, .seq = q->seq,
				 .body = x->body, .len = q->len };
	/* It lacks that many frames beyond what is free now. */
	x->need = room + lack;
	x->need_u = lack_u ? u + lack_u : 0;
	/* (What is free now counts once, for the first.) */
	rc->need += pmd_list_empty(&rc->waiters) ? x->need : lack;
	rc->need_u += pmd_list_empty(&rc->waiters) ? x->need_u : lack_u;
	pmd_list_add(rc->waiters.prev, &x->link);
	want = reclaim_short(srv);
	if (reclaim_short_u(srv) > want)
		want = reclaim_short_u(srv);
	if (!rc->deadline_ns) { /* a new round */
		rc->rounds_total++;
		rc->deadline_ns = pmd_now_ns() + srv->grace_ns;
		if (!reclaim_ask(srv, want))
			rc->deadline_ns = pmd_now_ns(); /* nobody to wait for */
	} else if (want > rc->asked) {
		reclaim_ask(srv, want - rc->asked);
	}
	if (urgent) { /* (a map or a fault waits: no grace) */
		rc->urgent = true;
		rc->deadline_ns = pmd_now_ns();
	}
	*go = false;
	return pmd_session_park(s, &x->base);
}

void pmd_reclaim_turn(struct pmd_server *srv)
{
	struct pmd_reclaim_state *rc = &srv->reclaim;
	struct rwait *first;

	if (pmd_list_empty(&rc->waiters) || rc->paging ||
	    pmd_now_ns() < rc->retry_ns)
		return; /* (page-outs in flight: their end comes first) */
	first = pmd_container_of(rc->waiters.next, struct rwait, link);
	if (first->base.s && !has_room(srv, first) &&
	    pmd_now_ns() < rc->deadline_ns)
		return; /* given back meanwhile: not enough yet */
	if ((reclaim_short(srv) || reclaim_short_u(srv)) &&
	    pmd_now_ns() >= rc->deadline_ns) {
		/* Other nodes first: nothing is lost there. Extra frames
		 * coming home need extra frames going out. */
		uint64_t short_u = reclaim_short_u(srv);

		if (!rc->paging_done && can_page(srv, rc->urgent) &&
		    reclaim_pageout(srv, (short_u ? short_u
					  : reclaim_short(srv)) +
					 pageout_slack(srv), short_u > 0))
			return;
		reclaim_force(srv);
	}
	reclaim_wake(srv);
}

int pmd_reclaim_timeout_ms(const struct pmd_server *srv, int timeout)
{
	uint64_t now = pmd_now_ns(), d = srv->reclaim.deadline_ns, ms;

	if (pmd_list_empty(&srv->reclaim.waiters) || srv->reclaim.paging)
		return timeout; /* (page-outs end by the fabric's events) */
	if (srv->reclaim.retry_ns > d)
		d = srv->reclaim.retry_ns;
	ms = d > now ? (d - now + 999999) / 1000000 : 0;
	return timeout < 0 || (uint64_t)timeout > ms ? (int)ms : timeout;
}

void pmd_reclaim_fini(struct pmd_server *srv)
{
	struct pmd_list *p, *n;

	pmd_list_for_each_safe(p, n, &srv->reclaim.waiters) {
		struct rwait *x = pmd_container_of(p, struct rwait, link);
		pmd_list_del(p);
		free(x->body);
		free(x);
	}
}
