/*
 * forward.c - requests on handles another home serves. A task of this
 * node that imports a token of a container homed elsewhere gets a
 * forwarded handle (an entry of its session's table, daemon.h); its
 * reads and writes (whole, in one node request, so the home decides them
 * as one), stats, locks, exports, releases, copies and maps go to the
 * home as FWD_OP and are answered with the home's answer. What a weak
 * reference may not do stays EPERM here. A map's answer names slots of
 * segments this node keeps for the task (lend.c): checked, and handed to
 * the task as any of this node's segments.
 */
#include "daemon.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "task.h"

/* A forwarded request in flight: its own, whatever becomes of the
 * session. */
struct fctx {
	struct pmd_pending base;
	struct pmd_server *srv;      /* (C) */
	pm_node_t node;              /* (C) the home */
	uint16_t type;               /* (C) the request's type */
	bool resolve;                /* (C) a MAP for a fault (RESOLVE) */
	uint32_t fwd_index;          /* (C) the handle's entry (RELEASE) */
	struct pm_io_req io;         /* (C) READ/WRITE: the request (whole:
	                              * one node request carries PM_IO_MAX) */
	uint8_t body[64] __attribute__((aligned(8))); /* (C) other types */
	uint32_t body_len;           /* (C) */
	struct pmd_window *win;      /* (C) READ/WRITE: the home moves the
	                              * bytes by RDMA to or from this window
	                              * (held meanwhile); NULL: in messages */
};

static void fctx_free(struct fctx *x)
{
	pmd_window_put(x->win);
	free(x);
}

bool pmd_fwd_type(uint32_t type)
{
	switch (type) {
	case PM_MSG_READ: case PM_MSG_WRITE: case PM_MSG_STAT:
	case PM_MSG_LOCK: case PM_MSG_UNLOCK: case PM_MSG_RELEASE:
	case PM_MSG_COPY: case PM_MSG_MAP: case PM_MSG_EXPORT:
		return true;
	default:
		return false;
	}
}

static void fwd_answer(void *arg, error_t status, const void *body,
		       size_t len);

/* Sends x (one node request); a WRITE's bytes come from data. */
static error_t fwd_send(struct fctx *x, struct pmd_session *s,
			const void *data)
{
	uint8_t buf[sizeof(struct pmd_nreq_fwd_op) + sizeof(struct pm_io_req) +
		    PMD_FWD_IO_MAX] __attribute__((aligned(8)));
	struct pmd_nreq_fwd_op *op = (struct pmd_nreq_fwd_op *)buf;
	uint32_t len = x->body_len;

	memset(op, 0, sizeof(*op));
	op->task = s->task->id;
	op->type = x->type;
	if (x->win) { /* the bytes by RDMA, the window named */
		struct pmd_nreq_window w = x->win->rk;
		op->flags = PMD_FWD_WINDOW;
		memcpy(op + 1, &x->io, sizeof(x->io));
		memcpy((uint8_t *)(op + 1) + sizeof(x->io), &w, sizeof(w));
		len = sizeof(x->io) + sizeof(w);
	} else if (x->type == PM_MSG_READ || x->type == PM_MSG_WRITE) {
		memcpy(op + 1, &x->io, sizeof(x->io));
		len = sizeof(x->io);
		if (x->type == PM_MSG_WRITE) {
			memcpy((uint8_t *)(op + 1) + len, data, x->io.len);
			len += x->io.len;
		}
	} else {
		memcpy(op + 1, x->body, len);
	}
	op->len = len;
	return pmd_cluster_call(x->srv->cluster, x->node, PMD_NREQ_FWD_OP, buf,
				sizeof(*op) + len, fwd_answer, x);
}

/* Sends x for s and parks s on it. */
static enum pmd_step fwd_start(struct pmd_session *s, struct fctx *x,
			       const void *data, struct pmd_reply *r)
{
	error_t err = fwd_send(x, s, data);

	if (err) {
		fctx_free(x);
		return pmd_reply_now(r, err);
	}
	return pmd_session_park(s, &x->base);
}

/* The home's answer to a forwarded map (or fault): its runs are slots of
 * segments this node keeps for the task (checked), which the task maps
 * as any of this node's segments. */
static error_t fwd_map_answer(struct pmd_server *srv, struct pmd_session *s,
			      struct fctx *x, const void *body, size_t len,
			      struct pmd_reply *r)
{
	static int fds[PM_MAP_FDS_MAX];
	const struct pm_map_req *q = (const struct pm_map_req *)x->body;
	struct pmd_task *t = s->task;
	struct pm_map_rep hr, *rep = pmd_reply_body(srv);
	struct pm_map_run *runs = (struct pm_map_run *)(rep + 1);
	struct pmd_segment *segs[PM_MAP_FDS_MAX];
	uint32_t nsegs = 0, covered = 0, k = 0;

	if (len < sizeof(hr))
		return EPROTO;
	memcpy(&hr, body, sizeof(hr));
	if (hr.nsegs || hr.view || hr.view_fd || hr.nruns == 0 ||
	    hr.nruns > PMD_FWD_MAP_MAX || hr.done == 0 || hr.done > q->count ||
	    len != sizeof(hr) + (size_t)hr.nruns * sizeof(runs[0]) ||
	    (hr.granted & ~(uint32_t)(CONT_MAP_READ | CONT_MAP_WRITE)))
		return EPROTO;
	for (k = 0; k < hr.nruns; k++) {
		struct pm_map_run run;
		struct pmd_segment *seg;
		bool listed = false;

		memcpy(&run, (const uint8_t *)body + sizeof(hr) + k * sizeof(run),
		       sizeof(run));
		seg = run.segment <= UINT32_MAX && !(run.prot & ~hr.granted) ?
			pmd_cluster_pushed_run(srv->cluster, x->node, t->id,
					       (uint32_t)run.segment, run.slot,
					       run.nframes) : NULL;
		if (!seg || covered + run.nframes > hr.done)
			return EPROTO;
		if (!pmd_task_has_segment(t, seg->id)) {
			for (uint32_t i = 0; i < nsegs; i++)
				listed |= segs[i] == seg;
			if (!listed && nsegs == PM_MAP_FDS_MAX)
				break; /* the task asks again for the rest */
			if (!listed)
				segs[nsegs++] = seg;
		}
		run.segment = seg->id;
		runs[k] = run;
		covered += run.nframes;
	}
	if (k == hr.nruns && covered != hr.done)
		return EPROTO;
	for (uint32_t i = 0; i < nsegs; i++) {
		error_t err = pmd_task_add_segment(t, segs[i]->id);
		if (err)
			return err;
		segs[i]->exposed = true;
		fds[i] = segs[i]->fd;
		memcpy((uint8_t *)(runs + k) + i * sizeof(uint64_t),
		       &segs[i]->id, sizeof(uint64_t));
	}
	r->fds = fds;
	r->nfds = nsegs;
	if (x->resolve) {
		struct pm_resolve_rep *rr = pmd_reply_body(srv);
		struct pm_map_run run = runs[0];

		*rr = (struct pm_resolve_rep){ .segment = run.segment,
			.slot = run.slot,
			.flags = (run.prot & CONT_MAP_WRITE) ? 0 : PM_VIEW_COW,
			.fd = nsegs };
		r->body_len = sizeof(*rr);
		return 0;
	}
	*rep = (struct pm_map_rep){ .granted = hr.granted, .done = covered,
				    .nruns = k, .nsegs = nsegs };
	r->body_len = (uint32_t)(sizeof(*rep) + k * sizeof(runs[0]) +
				 nsegs * sizeof(uint64_t));
	return 0;
}

/* The home's token, handle or stat, as the reply's body. */
static error_t fwd_copy_body(struct pmd_server *srv, const void *body,
			     size_t len, size_t want, struct pmd_reply *r)
{
	if (len != want)
		return EPROTO;
	memcpy(pmd_reply_body(srv), body, len);
	r->body_len = (uint32_t)len;
	return 0;
}

/* A free entry of the session's table of forwarded handles, *i (a
 * released one first; the table grows to PMD_FWD_HANDLES_MAX, then
 * ENOMEM). */
static error_t fwd_room(struct pmd_session *s, uint32_t *i)
{
	struct pmd_fwd_handle *v;

	for (uint32_t k = 0; k < s->nfwd; k++) {
		if (!s->fwd[k].node) {
			*i = k;
			return 0;
		}
	}
	if (s->nfwd >= PMD_FWD_HANDLES_MAX)
		return ENOMEM;
	v = pmd_grow(s->fwd, s->nfwd, &s->fwd_cap, sizeof(*v), 4);
	if (!v)
		return ENOMEM;
	s->fwd = v;
	v[s->nfwd] = (struct pmd_fwd_handle){ 0 };
	*i = s->nfwd++;
	return 0;
}

/* An imported handle: an entry in the session's table of handles that
 * other homes serve. */
static error_t fwd_imported(struct pmd_server *srv, struct pmd_session *s,
			    struct fctx *x, const void *body, size_t len,
			    struct pmd_reply *r)
{
	struct pm_handle_rep *rep = pmd_reply_body(srv);
	struct pmd_fwd_handle *e;
	container_t rh;
	uint32_t i;
	error_t err;

	if (len != sizeof(rh))
		return EPROTO;
	memcpy(&rh, body, sizeof(rh));
	err = fwd_room(s, &i);
	if (err)
		return err; /* (the home forgets it with the session's BYE) */
	e = &s->fwd[i];
	e->node = x->node;
	e->gen = (e->gen + 1) & PMD_FWD_GEN_MASK;
	e->gen += !e->gen;
	e->rh = rh;
	e->inc = pmd_cluster_peer_epoch(srv->cluster, x->node);
	rep->handle = PMD_FWD_BIT | (uint64_t)e->gen << 32 | (i + 1);
	r->body_len = sizeof(*rep);
	return 0;
}

/* What the home's successful answer (body, len) gives the task. */
static error_t fwd_answered(struct pmd_server *srv, struct pmd_session *s,
			    struct fctx *x, const void *body, size_t len,
			    struct pmd_reply *r)
{
	switch (x->type) {
	case PM_MSG_READ:
		if (x->win) /* the home wrote the bytes into the window */
			return len ? EPROTO : 0;
		if (len != x->io.len)
			return EPROTO;
		/* Sent from the node request's buffer, ours until the
		 * answer's callback returns. */
		r->body_ext = body;
		r->body_len = x->io.len;
		return 0;
	case PM_MSG_IMPORT:
		return fwd_imported(srv, s, x, body, len, r);
	case PM_MSG_MAP:
		return fwd_map_answer(srv, s, x, body, len, r);
	case PM_MSG_EXPORT:
		/* A token the home made (for this task: only it imports). */
		return fwd_copy_body(srv, body, len, sizeof(struct pm_token), r);
	case PM_MSG_STAT:
		return fwd_copy_body(srv, body, len, sizeof(struct pm_stat_rep),
				     r);
	default:
		return 0;
	}
}

/* Whether a forwarded read or write through the window that ended so
 * may still have its home touch the window: no answer (it may run yet),
 * or an RDMA of the home's that failed (and may still happen). */
static bool fwd_window_in_doubt(error_t status)
{
	return status == ETIMEDOUT || status == ENODEV || status == EIO ||
	       status == ECONNRESET || status == EPROTO;
}

static void fwd_answer(void *arg, error_t status, const void *body,
		       size_t len)
{
	struct fctx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_session *s = x->base.s;
	struct pmd_reply r = { 0 };

	if (!s) {
		if (x->win && fwd_window_in_doubt(status))
			pmd_window_retire(x->win, true);
		fctx_free(x);
		return;
	}
	/* An operation's answer starts with the home's reply (its culprit);
	 * one the home's cluster layer refused has none. */
	if (x->type != PM_MSG_IMPORT && len >= sizeof(struct pm_reply)) {
		struct pm_reply hr;
		memcpy(&hr, body, sizeof(hr));
		r.why.arg = hr.arg;
		r.why.frame = hr.culprit;
		body = (const uint8_t *)body + sizeof(hr);
		len -= sizeof(hr);
	} else if (x->type != PM_MSG_IMPORT && !status) {
		status = EPROTO;
	}
	if (!status)
		status = fwd_answered(srv, s, x, body, len, &r);
	if (x->type == PM_MSG_RELEASE && (!status || status == ESTALE ||
					  status == EKEYREVOKED ||
					  status == EBADF))
		s->fwd[x->fwd_index].node = 0; /* the handle is gone */
	if (x->win && fwd_window_in_doubt(status))
		pmd_window_retire(x->win, true);
	fctx_free(x);
	r.status = status;
	pmd_session_answer(srv, s, &r);
}

/* The entry of forwarded handle h: EBADF when there is none; ENODEV
 * while its home is down; ESTALE once the home forgot it (it restarted,
 * or one of the two nodes declared the other down). */
static error_t fwd_entry(struct pmd_server *srv, const struct pmd_session *s,
			 uint64_t h, uint32_t *index)
{
	uint64_t i = (h & UINT32_MAX) - 1;

	if ((h & UINT32_MAX) == 0 || i >= s->nfwd || !s->fwd[i].node ||
	    (h & ~PMD_FWD_BIT) >> 32 != s->fwd[i].gen)
		return EBADF;
	if (pmd_cluster_peer_epoch(srv->cluster, s->fwd[i].node) !=
	    s->fwd[i].inc)
		return pmd_cluster_peer_up(srv->cluster, s->fwd[i].node)
		       ? EKEYREVOKED : ENODEV;
	*index = (uint32_t)i;
	return 0;
}

/* A copy with a handle another home serves: when both handles are served
 * by one home, it decides (copy-on-write where it can); else the frames
 * are on different homes and this pmd copies their bytes (EXDEV, after
 * the checks that need no home: xcopy.c). 0: forward it. */
static error_t fwd_copy_check(struct pmd_server *srv, struct pmd_session *s,
			      const struct pm_copy_req *q, struct pmd_reply *r)
{
	uint32_t si = 0, di = 0;
	error_t err;

	if ((q->src & PMD_FWD_BIT) && (err = fwd_entry(srv, s, q->src, &si))) {
		r->why.arg = PMD_ARG_COPY_SRC;
		return err;
	}
	if ((q->dst & PMD_FWD_BIT) && (err = fwd_entry(srv, s, q->dst, &di))) {
		r->why.arg = PMD_ARG_COPY_DST;
		return err;
	}
	if (q->flags) {
		r->why.arg = PMD_ARG_COPY_FLAGS;
		return EINVAL;
	}
	if (q->count == 0 || q->src_start + q->count < q->src_start ||
	    q->dst_start + q->count < q->dst_start) {
		r->why.arg = PMD_ARG_COPY_COUNT;
		return EINVAL;
	}
	if (!(q->src & PMD_FWD_BIT) || !(q->dst & PMD_FWD_BIT) ||
	    s->fwd[si].node != s->fwd[di].node)
		return EXDEV;
	return 0;
}

/* From this size on, a forwarded read or write through the window has
 * the home move its bytes by RDMA; below, they ride in the messages (one
 * RDMA operation and its completion more cost about as much as 10 KiB
 * more in a message over tcp on loopback: docs/benchmarks.md). */
#define PMD_FWD_RDMA_MIN (3u * PM_FRAME_SIZE)

/* A read or write: the request whole in x->io, its bytes (a WRITE's) at
 * *data; through the task's window, registered for other nodes, the home
 * moves larger ones by RDMA (x->win). EPROTO when it breaks the rules of
 * its type, EBADFD when it names a window that was retired. */
static error_t fwd_io(struct pmd_session *s, const struct pmd_req *q,
		      struct fctx *x, const void **data)
{
	bool window;
	error_t err;

	memcpy(&x->io, q->body, sizeof(x->io));
	window = x->io.flags & PM_IO_WINDOW;
	err = pmd_window_usable(s, x->io.flags);
	if (err)
		return err;
	if ((x->io.flags & ~PM_IO_WINDOW) || x->io.len == 0 ||
	    x->io.len > PM_IO_MAX ||
	    (q->type == PM_MSG_WRITE &&
	     q->len != sizeof(x->io) + (window ? 0 : x->io.len)))
		return EPROTO;
	*data = window ? (const void *)s->win->base
		       : (const void *)((const uint8_t *)q->body + sizeof(x->io));
	if (window && s->win->rmr && x->io.len >= PMD_FWD_RDMA_MIN) {
		x->win = s->win;
		x->win->refs++;
	}
	x->io.flags = 0; /* the home has its own window */
	return 0;
}

/* Any other type: its body, with the home's handles for ours. */
static error_t fwd_body(struct pmd_session *s, const struct pmd_req *q,
			struct fctx *x)
{
	if (q->len > sizeof(x->body))
		return EPROTO;
	memcpy(x->body, q->body, q->len);
	memcpy(x->body, &s->fwd[x->fwd_index].rh, sizeof(container_t));
	if (q->type == PM_MSG_COPY) { /* the other handle too */
		uint64_t dh, di;
		memcpy(&dh, (const uint8_t *)q->body +
		       offsetof(struct pm_copy_req, dst), sizeof(dh));
		di = (dh & UINT32_MAX) - 1; /* checked by fwd_copy_check */
		memcpy(x->body + offsetof(struct pm_copy_req, dst),
		       &s->fwd[di].rh, sizeof(container_t));
	}
	x->body_len = q->len;
	return 0;
}

enum pmd_step pmd_fwd_request(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, uint64_t h,
			      struct pmd_reply *r)
{
	const void *data = NULL;
	uint32_t index;
	struct fctx *x;
	error_t err;

	if (q->type == PM_MSG_COPY) {
		struct pm_copy_req c;
		memcpy(&c, q->body, sizeof(c));
		err = fwd_copy_check(srv, s, &c, r);
		if (err == EXDEV)
			return pmd_xcopy(srv, s, &c, r);
		if (err)
			return pmd_reply_now(r, err);
		h = (c.src & PMD_FWD_BIT) ? c.src : c.dst;
	}
	r->why.arg = PMD_ARG_HANDLE;
	err = fwd_entry(srv, s, h, &index);
	if (err)
		return pmd_reply_now(r, err);
	if (q->type == PM_MSG_MAP && !s->task->follows)
		return pmd_reply_now(r, EOPNOTSUPP); /* these frames move: it
						      * must follow them */
	if (!pmd_fwd_type(q->type)) {
		if (q->type == PM_MSG_ALLOCATE)
			pmd_alloc_reply(srv, r, 0);
		return pmd_reply_now(r, EPERM); /* what a weak reference may
						 * not do */
	}
	r->why.arg = PMD_ARG_NONE;
	x = calloc(1, sizeof(*x));
	if (!x)
		return pmd_reply_now(r, ENOMEM);
	*x = (struct fctx){ .srv = srv, .node = s->fwd[index].node,
			    .type = q->type, .fwd_index = index };
	if (q->type == PM_MSG_READ || q->type == PM_MSG_WRITE) {
		err = fwd_io(s, q, x, &data);
		x->io.handle = s->fwd[index].rh;
	} else {
		err = fwd_body(s, q, x);
	}
	if (err) {
		fctx_free(x);
		return pmd_reply_now(r, err);
	}
	return fwd_start(s, x, data, r);
}

enum pmd_step pmd_fwd_import(struct pmd_server *srv, struct pmd_session *s,
			     const struct pm_token *tok, pm_node_t home,
			     struct pmd_reply *r)
{
	struct pmd_nreq_fwd_import q;
	struct fctx *x = calloc(1, sizeof(*x));
	uint32_t room;

	if (!x)
		return pmd_reply_now(r, ENOMEM);
	/* Room for its handle first: the home would keep a proxy's. */
	if (fwd_room(s, &room)) {
		free(x);
		return pmd_reply_now(r, ENOMEM);
	}
	*x = (struct fctx){ .srv = srv, .node = home, .type = PM_MSG_IMPORT };
	q.task = s->task->id;
	memcpy(q.token, tok->bytes, sizeof(q.token));
	if (pmd_cluster_call(srv->cluster, home, PMD_NREQ_FWD_IMPORT, &q,
			     sizeof(q), fwd_answer, x)) {
		fctx_free(x);
		return pmd_reply_now(r, ENODEV);
	}
	return pmd_session_park(s, &x->base);
}

enum pmd_step pmd_fwd_resolve(struct pmd_server *srv, struct pmd_session *s,
			      pm_node_t home, container_t rh, frame_t f,
			      struct pmd_reply *r)
{
	struct pm_map_req q = { .handle = rh, .start = f, .count = 1,
				.flags = CONT_MAP_READ | CONT_MAP_WRITE };
	struct fctx *x = calloc(1, sizeof(*x));

	if (!x)
		return pmd_reply_now(r, ENOMEM);
	*x = (struct fctx){ .srv = srv, .node = home, .type = PM_MSG_MAP,
			    .resolve = true, .body_len = sizeof(q) };
	memcpy(x->body, &q, sizeof(q));
	return fwd_start(s, x, NULL, r);
}
