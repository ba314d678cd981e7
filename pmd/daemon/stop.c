/*
 * stop.c - the holders of segments stop before frames move (the core's
 * stop.h says why): STOP to each holder's library on its fault session,
 * its answers, the deadline, and RESUME once the request that moved ran.
 *
 * A request whose decode listed stops parks on a stop context; every
 * task that holds one of the segments and follows moves gets one STOP
 * (the same seq for all). When all answered, or the deadline passed (a
 * library that does not answer has only its own stores and view at
 * stake), the request runs again, first; its decode lists the same stops,
 * all of whose holders stopped, and it moves. A holder that appeared in
 * between (a map or a fault gave it the segment) is asked in a second
 * round. After the request's answer, every asked task gets RESUME.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "log.h"
#include "segment.h"
#include "task.h"

struct stop_task {
	uint64_t id;                 /* (C) */
	uint32_t awaited;            /* (L) answers still to come */
};

struct pmd_stopctx {
	struct pmd_pending base;     /* the session whose request waits */
	struct pmd_server *srv;      /* (C) */
	uint32_t seq;                /* (C) of its STOPs and RESUMEs */
	struct stop_task *tasks;     /* (L) every task asked */
	uint32_t ntasks, cap;        /* (L) */
	uint32_t awaited;            /* (L) answers still to come, in all */
	uint64_t deadline_ns;        /* (L) */
	bool ready;                  /* (L) the request runs (again) */
	struct pmd_list link;        /* (L) in srv->stops while awaited */
	struct pmd_req q;            /* (C) the request, its body kept */
	uint8_t *body;               /* (C) */
	void (*done)(void *);        /* (C) the node layer's stops (no
	                              * session): called instead */
	void *done_arg;              /* (C) */
};

static struct pmd_task *task_by_id(struct pmd_core *core, uint64_t id)
{
	for (struct pmd_list *p = core->tasks.next; p != &core->tasks; p = p->next) {
		struct pmd_task *t = pmd_container_of(p, struct pmd_task, link);
		if (t->id == id)
			return t;
	}
	return NULL;
}

static struct stop_task *ctx_task(struct pmd_stopctx *x, uint64_t id)
{
	for (uint32_t i = 0; i < x->ntasks; i++)
		if (x->tasks[i].id == id)
			return &x->tasks[i];
	return NULL;
}

/* Whether t holds a capability of c (only such a task can have mapped
 * one of c's frames). */
static bool task_may_map(const struct pmd_task *t,
			 const struct pmd_container *c)
{
	for (const struct pmd_list *p = c->caps.next; p != &c->caps; p = p->next)
		if (pmd_container_of(p, struct pmd_cap, cont_link)->holder == t)
			return true;
	return false;
}

/* The segment of entry e, if t is to hear e: it holds the segment and,
 * for a DROP of a container's frame, may have mapped that container's
 * frames; else NULL. */
static const struct pmd_segment *entry_for(struct pmd_core *core,
					   const struct pmd_task *t,
					   const struct pmd_stop_ent *e)
{
	const struct pmd_segment *seg = pmd_segtab_get(&core->segs, e->seg);

	if (!seg || !pmd_task_has_segment(t, seg->id) ||
	    (e->cont && !task_may_map(t, e->cont)))
		return NULL;
	return seg;
}

/* Whether t is to hear any of the stops. */
static bool task_holds(struct pmd_core *core, const struct pmd_task *t,
		       const struct pmd_stops *st)
{
	for (uint32_t i = 0; i < st->n; i++)
		if (entry_for(core, t, &st->v[i]))
			return true;
	return false;
}

bool pmd_task_notify(struct pmd_task *t, const void *msg, size_t len)
{
	struct pmd_session *fs = t->fault_session;

	return fs && fs->fd >= 0 &&
	       send(fs->fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL) ==
		       (ssize_t)len;
}

/* STOP (or type) to t: the entries of st for segments t holds, in
 * messages of at most PM_STOP_MAX entries. How many went out; *lost (if
 * not NULL) is set when one did not. */
static uint32_t stop_send(struct pmd_core *core, struct pmd_task *t,
			  const struct pmd_stops *st, uint16_t type,
			  uint32_t seq, uint8_t *buf, bool *lost)
{
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)buf;
	struct pm_stop *sp = (struct pm_stop *)(h + 1);
	struct pm_stop_ent *e = (struct pm_stop_ent *)(sp + 1);
	uint32_t sent = 0, n = 0;

	for (uint32_t i = 0; i <= st->n; i++) {
		const struct pmd_segment *seg = i < st->n
			? entry_for(core, t, &st->v[i]) : NULL;

		if (seg)
			e[n++] = (struct pm_stop_ent){
				.segment = seg->id, .slot = st->v[i].slot,
				.nslots = st->v[i].nslots,
				.kind = st->v[i].kind, .frame = st->v[i].frame };
		if (n && (n == PM_STOP_MAX || i == st->n)) {
			size_t len = sizeof(*h) + sizeof(*sp) + n * sizeof(*e);

			pm_msg_hdr_init(h, type, (uint32_t)len, seq);
			*sp = (struct pm_stop){ .count = n };
			if (pmd_task_notify(t, buf, len))
				sent++;
			else if (lost)
				*lost = true;
			n = 0;
		}
	}
	return sent;
}

static void ctx_resume(struct pmd_server *srv, struct pmd_stopctx *x)
{
	struct pm_msg_hdr h;

	pm_msg_hdr_init(&h, PM_MSG_RESUME, sizeof(h), x->seq);
	for (uint32_t i = 0; i < x->ntasks; i++) {
		struct pmd_task *t = task_by_id(srv->core, x->tasks[i].id);
		if (t && !pmd_task_notify(t, &h, sizeof(h)))
			pmd_warn("task %#lx: its library takes no RESUME; its "
				 "stores to moved frames wait until it ends",
				 (unsigned long)t->id);
	}
}

static void ctx_free(struct pmd_stopctx *x)
{
	x->srv->stops_live--;
	free(x->tasks);
	free(x->body);
	free(x);
}

/* All answered, or the deadline passed: the request runs again (the
 * node layer's work goes on). */
static void ctx_ready(struct pmd_server *srv, struct pmd_stopctx *x)
{
	struct pmd_session *s = x->base.s;

	pmd_list_del(&x->link);
	x->ready = true;
	if (x->done) {
		x->done(x->done_arg);
		ctx_resume(srv, x);
		ctx_free(x);
		return;
	}
	if (!s) { /* its session is gone: nothing will move */
		ctx_resume(srv, x);
		ctx_free(x);
		return;
	}
	s->pending = NULL;
	s->parked = false;
	if (!pmd_session_run_later(srv, s, &x->q, true)) {
		struct pmd_reply r = { .status = ENOMEM };
		s->parked = true;
		pmd_session_answer(srv, s, &r); /* resumes */
	}
}

/* Out of memory while asking: the request answers ENOMEM, and whoever
 * was asked resumes after that answer. */
static enum pmd_step stop_nomem(struct pmd_stopctx *x, bool *go,
				struct pmd_reply *r)
{
	if (x)
		x->ready = true;
	*go = false;
	return pmd_reply_now(r, ENOMEM);
}

/* Whether t is to be asked to stop for st (and was not yet, by x). */
static bool stop_wanted(struct pmd_core *core, const struct pmd_task *t,
			const struct pmd_stops *st, struct pmd_stopctx *x)
{
	return t->follows && t->fault_session && t->id != st->except &&
	       !(x && ctx_task(x, t->id)) && task_holds(core, t, st);
}

static struct pmd_stopctx *ctx_new(struct pmd_server *srv)
{
	struct pmd_stopctx *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->srv = srv;
	x->seq = ++srv->stop_seq;
	srv->stops_live++;
	pmd_list_init(&x->link);
	return x;
}

/* STOP to every task st wants stopped that x did not ask yet; x->awaited
 * counts the answers. The STOPs sent; ENOMEM (some may have been). */
static error_t ctx_ask(struct pmd_server *srv, struct pmd_stopctx *x,
		       const struct pmd_stops *st, uint32_t *asked)
{
	struct pmd_core *core = srv->core;
	uint8_t *buf = NULL;
	error_t err = 0;

	*asked = 0;
	for (struct pmd_list *p = core->tasks.next; p != &core->tasks; p = p->next) {
		struct pmd_task *t = pmd_container_of(p, struct pmd_task, link);
		uint32_t sent;

		if (!stop_wanted(core, t, st, x))
			continue;
		if (x->ntasks == x->cap) {
			uint32_t cap = x->cap ? x->cap * 2 : 4;
			struct stop_task *v = realloc(x->tasks, cap * sizeof(*v));
			if (!v) {
				err = ENOMEM;
				break;
			}
			x->tasks = v;
			x->cap = cap;
		}
		if (!buf && !(buf = malloc(PM_MSG_MAX))) {
			err = ENOMEM;
			break;
		}
		sent = stop_send(core, t, st, PM_MSG_STOP, x->seq, buf, NULL);
		x->tasks[x->ntasks++] = (struct stop_task){ .id = t->id,
							    .awaited = sent };
		x->awaited += sent;
		*asked += sent;
	}
	free(buf);
	return err;
}

/* Whether anybody is to be asked. */
static bool ctx_wanted(struct pmd_server *srv, const struct pmd_stops *st,
		       struct pmd_stopctx *x)
{
	struct pmd_core *core = srv->core;

	for (struct pmd_list *p = core->tasks.next; p != &core->tasks; p = p->next)
		if (stop_wanted(core, pmd_container_of(p, struct pmd_task, link),
				st, x))
			return true;
	return false;
}

/* Waits for x's answers until now + ns. */
static void ctx_wait(struct pmd_server *srv, struct pmd_stopctx *x,
		     uint64_t ns)
{
	x->ready = false;
	x->deadline_ns = pmd_now_ns() + ns;
	pmd_list_add(srv->stops.prev, &x->link);
}

enum pmd_step pmd_stop_first(struct pmd_server *srv, struct pmd_session *s,
			     const struct pmd_req *q, struct pmd_reply *r,
			     bool *go)
{
	const struct pmd_stops *st = &srv->core->stops;
	struct pmd_stopctx *x = s->stop;
	uint32_t asked;

	*go = true;
	if (!st->n || !ctx_wanted(srv, st, x)) {
		if (x)
			x->ready = true; /* resumed after the answer */
		return PMD_STEP_REPLY; /* everyone who holds them stopped */
	}
	if (!x) {
		x = ctx_new(srv);
		if (!x || !(x->body = malloc(q->len ? q->len : 1))) {
			if (x)
				ctx_free(x);
			return stop_nomem(NULL, go, r);
		}
		memcpy(x->body, q->body, q->len);
		x->q = (struct pmd_req){ .type = q->type, .seq = q->seq,
					 .body = x->body, .len = q->len };
		s->stop = x;
	}
	if (ctx_ask(srv, x, st, &asked))
		return stop_nomem(x, go, r);
	if (!asked) { /* none could be sent to: they read nothing */
		x->ready = true;
		return PMD_STEP_REPLY;
	}
	*go = false;
	ctx_wait(srv, x, srv->stop_ns);
	return pmd_session_park(s, &x->base);
}

error_t pmd_stop_call(struct pmd_server *srv, const struct pmd_stops *st,
		      uint32_t max_ms, void (*done)(void *), void *done_arg)
{
	struct pmd_stopctx *x;
	uint64_t ns = srv->stop_ns;
	uint32_t asked;

	if (!st->n || !ctx_wanted(srv, st, NULL)) {
		done(done_arg);
		return 0;
	}
	x = ctx_new(srv);
	if (!x)
		return ENOMEM;
	x->done = done;
	x->done_arg = done_arg;
	if (ctx_ask(srv, x, st, &asked)) {
		ctx_resume(srv, x); /* whoever was asked */
		ctx_free(x);
		return ENOMEM;
	}
	if (!asked) {
		x->ready = true;
		ctx_ready(srv, x);
		return 0;
	}
	if ((uint64_t)max_ms * 1000000u < ns)
		ns = (uint64_t)max_ms * 1000000u;
	ctx_wait(srv, x, ns);
	return 0;
}

void pmd_stop_fini(struct pmd_server *srv)
{
	struct pmd_list *p, *n;

	pmd_list_for_each_safe(p, n, &srv->stops) {
		struct pmd_stopctx *x = pmd_container_of(p, struct pmd_stopctx,
							 link);
		if (x->done)
			ctx_ready(srv, x);
	}
}

void pmd_stop_answered(struct pmd_server *srv, struct pmd_session *fs,
		       uint32_t seq, error_t status)
{
	struct pmd_list *p;

	for (p = srv->stops.next; p != &srv->stops; p = p->next) {
		struct pmd_stopctx *x = pmd_container_of(p, struct pmd_stopctx,
							 link);
		struct stop_task *k;

		if (x->seq != seq)
			continue;
		k = fs->task ? ctx_task(x, fs->task->id) : NULL;
		if (!k || !k->awaited)
			break;
		if (status)
			pmd_warn("task %#lx: its library could not stop (%s)",
				 (unsigned long)fs->task->id, strerror(status));
		k->awaited--;
		if (!--x->awaited)
			ctx_ready(srv, x);
		return;
	}
	pmd_debug("a stop answer nobody waits for (seq %u)", seq);
}

void pmd_stop_expire(struct pmd_server *srv)
{
	uint64_t now = pmd_now_ns();
	struct pmd_list *p, *n;

	pmd_list_for_each_safe(p, n, &srv->stops) {
		struct pmd_stopctx *x = pmd_container_of(p, struct pmd_stopctx,
							 link);
		if (x->deadline_ns > now)
			continue;
		for (uint32_t i = 0; i < x->ntasks; i++)
			if (x->tasks[i].awaited)
				pmd_warn("task %#lx did not stop its stores "
					 "within %lu ms: frames it maps move "
					 "without it",
					 (unsigned long)x->tasks[i].id,
					 (unsigned long)(srv->stop_ns / 1000000));
		ctx_ready(srv, x);
	}
}

int pmd_stop_timeout_ms(const struct pmd_server *srv, int timeout)
{
	uint64_t now = pmd_now_ns(), first = UINT64_MAX;

	if (pmd_segtab_unshared_any(&srv->core->segs) && !srv->stops_live)
		first = srv->unshared_next_ns; /* UNSHARED's next round */
	for (struct pmd_list *p = srv->stops.next; p != &srv->stops; p = p->next) {
		const struct pmd_stopctx *x =
			pmd_container_of(p, struct pmd_stopctx, link);
		if (x->deadline_ns < first)
			first = x->deadline_ns;
	}
	if (first == UINT64_MAX)
		return timeout;
	first = first > now ? (first - now + 999999) / 1000000 : 0;
	return timeout < 0 || (uint64_t)timeout > first ? (int)first : timeout;
}

void pmd_stop_done(struct pmd_server *srv, struct pmd_session *s)
{
	struct pmd_stopctx *x = s->stop;

	if (!x)
		return;
	if (!x->ready) {
		/* Still asking (the session goes): it ends by itself. */
		x->base.s = NULL;
		s->stop = NULL;
		return;
	}
	s->stop = NULL;
	ctx_resume(srv, x);
	ctx_free(x);
}

/* ---- the end of copy-on-write shares ---- */

static void unshared_add(void *arg, const struct pmd_segment *seg,
			  unsigned slot, unsigned n)
{
	struct pmd_server *srv = arg;

	if (pmd_stops_add(&srv->unshared, seg, slot, n, PM_STOP_COW, 0))
		pmd_debug("no memory to tell the holders of segment %#lx that "
			  "slots %u.. are shared no more: their stores there "
			  "ask the pmd (BREAK)", (unsigned long)seg->id, slot);
	else
		srv->unshared_total += n;
}

/* The slots of st noted again: they go out at a later turn. */
static void unshared_requeue(struct pmd_server *srv,
			     const struct pmd_stops *st)
{
	for (uint32_t i = 0; i < st->n; i++) {
		struct pmd_segment *seg = pmd_segtab_get(&srv->core->segs,
							 st->v[i].seg);
		if (seg)
			pmd_segtab_unshared_note(&srv->core->segs, seg,
						 st->v[i].slot, st->v[i].nslots);
	}
}

/* The least and most time between two rounds of UNSHARED. */
#define UNSHARED_GAP_NS     1000000ull     /* 1 ms */
#define UNSHARED_GAP_MAX_NS 1000000000ull  /* 1 s */

void pmd_stop_unshared(struct pmd_server *srv)
{
	struct pmd_core *core = srv->core;
	struct pmd_stops *st = &srv->unshared;
	uint64_t now;
	bool lost = false;
	uint8_t *buf;

	/* A STOP that waits for its move may name a slot that this would
	 * call unshared and that the move then shares: the library must
	 * hear UNSHARED before that STOP, or not at all. So not while a
	 * stop context lives; the slots keep until then. Between rounds,
	 * a gap: a burst of ends (a copy broken a frame at a time) goes
	 * out in few messages rather than one per request. */
	if (!pmd_segtab_unshared_any(&core->segs) || srv->stops_live)
		return;
	now = pmd_now_ns();
	if (now < srv->unshared_next_ns)
		return;
	pmd_stops_reset(st);
	pmd_segtab_unshared_take(&core->segs, unshared_add, srv);
	if (!st->n)
		return;
	buf = malloc(PM_MSG_MAX);
	if (!buf) {
		unshared_requeue(srv, st);
		srv->unshared_next_ns = now + UNSHARED_GAP_MAX_NS;
		return;
	}
	for (struct pmd_list *p = core->tasks.next; p != &core->tasks; p = p->next) {
		struct pmd_task *t = pmd_container_of(p, struct pmd_task, link);

		if (t->follows && t->fault_session && t->hears_unshared &&
		    task_holds(core, t, st))
			stop_send(core, t, st, PM_MSG_UNSHARED, 0, buf, &lost);
	}
	free(buf);
	/* A library that did not take it all (its socket full: it reads
	 * slowly) hears all of it again later, as does everyone else (it
	 * changes nothing twice), each time after a longer gap. */
	if (lost) {
		unshared_requeue(srv, st);
		srv->unshared_gap_ns = srv->unshared_gap_ns
			? srv->unshared_gap_ns * 2 : 2 * UNSHARED_GAP_NS;
		if (srv->unshared_gap_ns > UNSHARED_GAP_MAX_NS)
			srv->unshared_gap_ns = UNSHARED_GAP_MAX_NS;
	} else {
		srv->unshared_gap_ns = UNSHARED_GAP_NS;
	}
	srv->unshared_next_ns = now + srv->unshared_gap_ns;
}
