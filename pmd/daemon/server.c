/* server.c - see server.h. */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cluster.h"
#include "container.h"
#include "core.h"
#include "grow.h"
#include "task.h"
#include "log.h"
#include "pm_proto.h"
#include "view.h"

#define EPOLL_BATCH 64
#define RX_FDS_MAX  16 /* descriptors a task might send; closed unread */

/* A session's I/O window (PM_MSG_WINDOW): shared with the task, and
 * registered with the fabric; held by the session and by its remote
 * reads and writes in flight. */
struct pmd_window {
	uint8_t *base;
	int fd;
	struct fab_mr *mr;           /* NULL on a single node */
	unsigned refs;
};

struct pmd_session {
	int fd;                      /* (L) the connection */
	struct pmd_window *win;      /* (L) its I/O window, or NULL */
	struct pmd_task *task;       /* (L) NULL until HELLO (or ATTACH) */
	bool fault;                  /* (L) a task's fault session: RESOLVE only */
	bool parked;                 /* (L) its request waits on another node */
	bool masked;                 /* (L) parked, and sent more meanwhile:
	                              *     its input is off until unparked */
	uint16_t parked_type;        /* (L) that request's type and sequence */
	uint32_t parked_seq;
	uint64_t parked_t0;          /* (L) when it was sent on, ns */
	struct pm_alloc_req palloc;  /* (L) a parked remote allocation: */
	uint32_t pplan;              /*     frames it may allocate, */
	error_t pstop;               /*     and why not more */
	pm_node_t pnode;             /*     the lender borrowed from now */
	uint32_t pasked;             /*     frames planned first */
	bool pnamed;                 /*     the policy named the node */
	uint32_t pscan;              /*     pnode's next frame in pplaces, */
	struct pmd_place *pplaces;   /*     a place per frame planned */
	uint32_t npplaces, pplaces_cap;
	struct rctx *rctx;           /* (L) its remote read, write or pull */
	struct fctx *fctx;           /* (L) its forwarded request */
	struct fwd_h {               /* (L) handles served by other homes */
		pm_node_t node;      /*     0: a free entry */
		container_t rh;      /*     the home's handle */
		uint64_t inc;        /*     the home's incarnation then */
	} *fwd;
	uint32_t nfwd, fwd_cap;
	uint32_t taking;             /* (L) its answer waits for slots of a */
	error_t taking_status;       /*     task's mapping to be retired */
	bool waiting;                /* (L) its request waits for a container */
	uint8_t *saved;              /* (L) that request's body */
	uint32_t saved_len;
	struct pmd_list wlink;       /* (L) in srv->waiters */
	struct pmd_server *srv;      /* (C) */
	struct pmd_list link;        /* (L) in srv->sessions, or srv->vsessions */
	bool virt;                   /* (C) a forwarded request: no socket, */
	pm_node_t vnode;             /*     answered to this node */
	uint64_t vinc, vid;          /*     (its incarnation, request id) */
};

struct pmd_server {
	int listen_fd;               /* (C) */
	int signal_fd;               /* (C) SIGTERM, SIGINT */
	int epoll_fd;                /* (C) */
	struct pmd_core *core;       /* (C) */
	struct pmd_list sessions;    /* (L) */
	char socket_path[108];       /* (C) */
	uint64_t sessions_total;     /* (L) served since start */
	uint64_t requests;           /* (L) requests answered since start */
	uint8_t rx[PM_MSG_MAX + 1] __attribute__((aligned(16))); /* (L) one request */
	uint8_t tx[PM_MSG_MAX] __attribute__((aligned(16)));     /* (L) one reply */
	struct pmd_map_out map;      /* (L) scratch for MAP */
	struct pmd_push_out push;    /* (L) scratch for a forwarded MAP */
	struct pmd_cluster *cluster; /* (L) NULL on a single node */
	struct pmd_list waiters;     /* (L) sessions waiting for a container */
	struct pmd_list vsessions;   /* (L) forwarded requests in progress */
	uint64_t *busy;              /* (L) containers with remote work in
	                              * flight, by id */
	uint32_t nbusy, busy_cap;
	int cluster_tag;             /* (C) its epoll events point here */
	uint64_t poll_ns;            /* (C) busy-poll this long after activity */
	uint64_t served_ns;          /* (L) when a peer last needed us */
	uint64_t wait_ns;            /* (L) when our wait for peers began */
	bool waiting;                /* (L) we wait for peers */
};

/* Replies are built in srv->tx: header, pm_reply, then the body (or,
 * when body_ext is set, the body is sent from there, uncopied). */
struct reply {
	uint32_t body_len;
	const int *fds;
	uint32_t nfds;
	struct pmd_culprit why;
	const void *body_ext;
};

/* A remote read, write or pull in flight; outlives its session if need be
 * (the RDMA still lands in its bounce buffer). */
struct rctx {
	struct pmd_server *srv;
	struct pmd_session *s;       /* NULL once the session is gone */
	uint64_t id;                 /* the container */
	bool pull;
	container_t pull_handle;     /* pulls: from this container, */
	uint16_t redo_type;          /* then this request again */
	uint32_t redo_len;
	uint8_t redo[64] __attribute__((aligned(8)));
	struct pmd_pull pulls[PMD_PULL_MAX];
	uint32_t npulls;
	bool push;                   /* pushes (a forwarded map): */
	pm_node_t node;              /*     to this node, */
	uint32_t npush;              /*     these frames, */
	struct pmd_push pushes[PMD_PUSH_MAX];
	struct pmd_place places[PMD_PUSH_MAX]; /* into these slots */
	struct pmd_window *win;      /* reads and writes through the window */
	uint8_t *data;               /*     their bytes (pulls: kept while */
	uint32_t taking;             /*     their tagged slots are taken */
	bool taken;                  /*     back: answers awaited, done) */
};

static void unpark(struct pmd_server *srv, struct pmd_session *s, error_t err,
		   struct reply *r);
static error_t alloc_remote(struct pmd_server *srv, struct pmd_session *s,
			    const struct pm_alloc_req *req, pm_node_t node,
			    struct reply *r);
static error_t alloc_spill(struct pmd_server *srv, struct pmd_session *s,
			   const struct pm_alloc_req *req, struct reply *r);
static error_t alloc_interleave(struct pmd_server *srv,
			       struct pmd_session *s,
			       const struct pm_alloc_req *req, struct reply *r);
static error_t io_remote(struct pmd_server *srv, struct pmd_session *s,
			 const struct pm_io_req *req, const void *data,
			 bool write, struct reply *r);
static error_t map_pull(struct pmd_server *srv, struct pmd_session *s,
			const struct pm_map_req *req, struct reply *r);
static error_t map_push(struct pmd_server *srv, struct pmd_session *s,
			const struct pm_map_req *req, struct reply *r);
static error_t pull_then_redo(struct pmd_server *srv, struct pmd_session *s,
			      container_t h, bool write, frame_t start,
			      uint32_t count, uint64_t keep_task, uint16_t type,
			      const void *body, uint32_t len, bool *none,
			      struct reply *r);

static void *reply_body(struct pmd_server *srv)
{
	return srv->tx + PM_REPLY_HDR;
}

/* An allocation's reply: the frames it allocated, also on error. */
static void alloc_reply(struct pmd_server *srv, struct reply *r,
			uint32_t count)
{
	struct pm_alloc_rep *rep = reply_body(srv);

	rep->count = count;
	rep->pad = 0;
	r->body_len = sizeof(*rep);
}

/* Flags of a READ or WRITE: the window only for a session that has one
 * (s->win is then set). */
static bool io_flags_ok(const struct pmd_session *s, const struct pm_io_req *q)
{
	return !(q->flags & ~PM_IO_WINDOW) &&
	       (!(q->flags & PM_IO_WINDOW) || s->win);
}

/* ---- requests forwarded to the container's home ---- */

#define FWD_BIT (UINT64_C(1) << 62) /* in handles served by another home */

/* A forwarded request in flight: its own, whatever becomes of the session. */
struct fctx {
	struct pmd_server *srv;
	struct pmd_session *s;       /* NULL once the session is gone */
	pm_node_t node;
	uint16_t type;
	bool resolve;                /* a MAP for a fault (RESOLVE) */
	uint32_t fwd_index;          /* the handle's entry (RELEASE) */
	struct pm_io_req io;         /* READ/WRITE: the request (whole: one
	                              * node request carries PM_IO_MAX) */
	uint8_t body[64] __attribute__((aligned(8))); /* other types */
	uint32_t body_len;
};
static_assert(PMD_FWD_IO_MAX >= PM_IO_MAX, "a forwarded read or write whole");

static void fwd_noop(void *arg, error_t status, const void *body, size_t len)
{
	(void)arg;
	(void)status;
	(void)body;
	(void)len;
}

/* The session ends: every home it used forgets its proxy. */
static void fwd_bye(struct pmd_server *srv, struct pmd_session *s)
{
	if (s->fctx)
		s->fctx->s = NULL;
	for (uint32_t i = 0; i < s->nfwd && srv->cluster && s->task; i++) {
		pm_node_t node = s->fwd[i].node;
		bool sent = false;

		for (uint32_t k = 0; k < i && !sent; k++)
			sent = s->fwd[k].node == node;
		if (node && !sent)
			pmd_cluster_call(srv->cluster, node, PMD_NREQ_FWD_BYE,
					 &s->task->id, sizeof(s->task->id),
					 fwd_noop, NULL);
	}
	free(s->fwd);
	s->fwd = NULL;
	s->nfwd = s->fwd_cap = 0;
}

static void fwd_answer(void *arg, error_t status, const void *body,
		       size_t len);

/* Sends x (one node request); a WRITE's bytes come from data. */
static error_t fwd_send(struct fctx *x, const void *data)
{
	uint8_t buf[sizeof(struct pmd_fwd_op) + sizeof(struct pm_io_req) +
		    PMD_FWD_IO_MAX] __attribute__((aligned(8)));
	struct pmd_fwd_op *op = (struct pmd_fwd_op *)buf;
	uint32_t len = x->body_len;

	memset(op, 0, sizeof(*op));
	op->task = x->s->task->id;
	op->type = x->type;
	if (x->type == PM_MSG_READ || x->type == PM_MSG_WRITE) {
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

static void fwd_end(struct fctx *x, error_t status, struct reply *r)
{
	struct pmd_session *s = x->s;

	if (s) {
		s->fctx = NULL;
		unpark(x->srv, s, status, r);
	}
	free(x);
}

/* The home's answer to a forwarded map (or fault): its runs are slots of
 * segments this node keeps for the task (checked), which the task maps
 * as any of this node's segments. */
static error_t fwd_map_answer(struct pmd_server *srv, struct fctx *x,
			      const void *body, size_t len, struct reply *r)
{
	static int fds[PM_MAP_FDS_MAX];
	const struct pm_map_req *q = (const struct pm_map_req *)x->body;
	struct pmd_task *t = x->s->task;
	struct pm_map_rep hr, *rep = reply_body(srv);
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
		struct pm_resolve_rep *rr = reply_body(srv);
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

static void fwd_answer(void *arg, error_t status, const void *body,
		       size_t len)
{
	struct fctx *x = arg;
	struct pmd_server *srv = x->srv;
	struct reply r = { 0 };

	if (!x->s) {
		fwd_end(x, status, &r);
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
	if (!status && x->type == PM_MSG_READ) {
		if (len != x->io.len) {
			fwd_end(x, EPROTO, &r);
			return;
		}
		/* Sent from the node request's buffer, ours until this
		 * returns. */
		r.body_ext = body;
		r.body_len = x->io.len;
	} else if (!status && x->type == PM_MSG_IMPORT) {
		struct pm_handle_rep *rep = reply_body(srv);
		container_t rh;
		struct fwd_h *v;

		if (len != sizeof(rh)) {
			fwd_end(x, EPROTO, &r);
			return;
		}
		memcpy(&rh, body, sizeof(rh));
		v = pmd_grow(x->s->fwd, x->s->nfwd, &x->s->fwd_cap, sizeof(*v),
			     4);
		if (!v) {
			fwd_end(x, ENOMEM, &r);
			return;
		}
		x->s->fwd = v;
		v[x->s->nfwd] = (struct fwd_h){ .node = x->node, .rh = rh,
			.inc = pmd_cluster_peer_inc(srv->cluster, x->node) };
		rep->handle = FWD_BIT | (x->s->nfwd + 1);
		x->s->nfwd++;
		r.body_len = sizeof(*rep);
	} else if (!status && x->type == PM_MSG_MAP) {
		status = fwd_map_answer(srv, x, body, len, &r);
	} else if (!status && x->type == PM_MSG_EXPORT) {
		/* A token the home made (for this task: only it imports). */
		if (len != sizeof(struct pm_token)) {
			fwd_end(x, EPROTO, &r);
			return;
		}
		memcpy(reply_body(srv), body, len);
		r.body_len = (uint32_t)len;
	} else if (!status && x->type == PM_MSG_STAT) {
		if (len != sizeof(struct pm_stat_rep)) {
			fwd_end(x, EPROTO, &r);
			return;
		}
		memcpy(reply_body(srv), body, len);
		r.body_len = (uint32_t)len;
	}
	if (x->type == PM_MSG_RELEASE && (!status || status == ESTALE ||
					  status == EBADF))
		x->s->fwd[x->fwd_index].node = 0; /* the handle is gone */
	fwd_end(x, status, &r);
}

/* What a request on a handle another home serves is forwarded for. */
static bool fwd_type(uint32_t type)
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

static error_t fwd_start(struct pmd_server *srv, struct pmd_session *s,
			 struct fctx *x, const void *data)
{
	error_t err = fwd_send(x, data);

	if (err) {
		free(x);
		return err;
	}
	s->fctx = x;
	return EINPROGRESS;
}

/* The entry of forwarded handle h: EBADF when there is none, ESTALE
 * when its home restarted (and has forgotten it). */
static error_t fwd_entry(struct pmd_server *srv, const struct pmd_session *s,
			 uint64_t h, uint32_t *index)
{
	uint64_t i = (h & ~FWD_BIT) - 1;

	if ((h & ~FWD_BIT) == 0 || i >= s->nfwd || !s->fwd[i].node)
		return EBADF;
	if (pmd_cluster_peer_inc(srv->cluster, s->fwd[i].node) !=
	    s->fwd[i].inc)
		return ESTALE;
	*index = (uint32_t)i;
	return 0;
}

/* A copy with a handle another home serves: when both handles are served
 * by one home, it decides (copy-on-write where it can); else the frames
 * are on different homes and the task's library copies their bytes
 * (EXDEV, after the checks that need no home). */
static error_t fwd_copy(struct pmd_server *srv, struct pmd_session *s,
			const struct pm_copy_req *q, struct reply *r)
{
	uint32_t si = 0, di = 0;
	error_t err;

	if ((q->src & FWD_BIT) && (err = fwd_entry(srv, s, q->src, &si))) {
		r->why.arg = 1;
		return err;
	}
	if ((q->dst & FWD_BIT) && (err = fwd_entry(srv, s, q->dst, &di))) {
		r->why.arg = 3;
		return err;
	}
	if (q->flags) {
		r->why.arg = 6;
		return EINVAL;
	}
	if (q->count == 0 || q->src_start + q->count < q->src_start ||
	    q->dst_start + q->count < q->dst_start) {
		r->why.arg = 5;
		return EINVAL;
	}
	if (!(q->src & FWD_BIT) || !(q->dst & FWD_BIT) ||
	    s->fwd[si].node != s->fwd[di].node)
		return EXDEV;
	return EINPROGRESS; /* forward it */
}

/* A request on a handle another home serves: forwarded, or refused when
 * a weak reference may not do it. */
static error_t fwd_request(struct pmd_server *srv, struct pmd_session *s,
			   uint32_t type, const void *body, uint32_t len,
			   uint64_t h, struct reply *r)
{
	const void *data = NULL;
	uint32_t index;
	struct fctx *x;
	error_t err;

	if (type == PM_MSG_COPY) {
		struct pm_copy_req q;
		memcpy(&q, body, sizeof(q));
		err = fwd_copy(srv, s, &q, r);
		if (err != EINPROGRESS)
			return err;
		h = (q.src & FWD_BIT) ? q.src : q.dst;
	}
	r->why.arg = 1;
	err = fwd_entry(srv, s, h, &index);
	if (err)
		return err;
	if (type == PM_MSG_MAP && !s->task->follows)
		return EOPNOTSUPP; /* their frames move: it must follow them */
	if (!fwd_type(type)) {
		if (type == PM_MSG_ALLOCATE)
			alloc_reply(srv, r, 0);
		return EPERM; /* what a weak reference may not do */
	}
	r->why.arg = 0;
	x = calloc(1, sizeof(*x));
	if (!x)
		return ENOMEM;
	*x = (struct fctx){ .srv = srv, .s = s, .node = s->fwd[index].node,
			    .type = (uint16_t)type, .fwd_index = (uint32_t)index };
	if (type == PM_MSG_READ || type == PM_MSG_WRITE) {
		memcpy(&x->io, body, sizeof(x->io));
		x->io.handle = s->fwd[index].rh;
		if (!io_flags_ok(s, &x->io) || x->io.len == 0 ||
		    x->io.len > PM_IO_MAX ||
		    (type == PM_MSG_WRITE && len != sizeof(x->io) +
		     ((x->io.flags & PM_IO_WINDOW) ? 0 : x->io.len))) {
			free(x);
			return EPROTO;
		}
		data = (x->io.flags & PM_IO_WINDOW) ?
			(const void *)s->win->base :
			(const void *)((const uint8_t *)body + sizeof(x->io));
		x->io.flags = 0; /* the home has its own; reads answer here */
	} else {
		if (len > sizeof(x->body)) {
			free(x);
			return EPROTO;
		}
		memcpy(x->body, body, len);
		memcpy(x->body, &s->fwd[index].rh, sizeof(container_t));
		if (type == PM_MSG_COPY) { /* the other handle too */
			uint64_t dh, di;
			memcpy(&dh, (const uint8_t *)body +
			       offsetof(struct pm_copy_req, dst), sizeof(dh));
			di = (dh & ~FWD_BIT) - 1;
			memcpy(x->body + offsetof(struct pm_copy_req, dst),
			       &s->fwd[di].rh, sizeof(container_t));
		}
		x->body_len = len;
	}
	return fwd_start(srv, s, x, data);
}

/* An import of a token whose container is homed on another node. */
static error_t fwd_import(struct pmd_server *srv, struct pmd_session *s,
			  const struct pm_token *tok, pm_node_t node)
{
	struct pmd_fwd_import q;
	struct fctx *x = calloc(1, sizeof(*x));

	if (!x)
		return ENOMEM;
	*x = (struct fctx){ .srv = srv, .s = s, .node = node,
			    .type = PM_MSG_IMPORT };
	q.task = s->task->id;
	memcpy(q.token, tok->bytes, sizeof(q.token));
	if (pmd_cluster_call(srv->cluster, node, PMD_NREQ_FWD_IMPORT, &q,
			     sizeof(q), fwd_answer, x)) {
		free(x);
		return ENODEV;
	}
	s->fctx = x;
	return EINPROGRESS;
}

/* ---- one remote operation at a time per container ---- */

/* A container's remote reads, writes and pulls run one at a time, in the
 * order they came, so that a pull never races a write. */
static bool busy_test(const struct pmd_server *srv, uint64_t id)
{
	for (uint32_t i = 0; i < srv->nbusy; i++)
		if (srv->busy[i] == id)
			return true;
	return false;
}

static error_t busy_add(struct pmd_server *srv, uint64_t id)
{
	uint64_t *v = pmd_grow(srv->busy, srv->nbusy, &srv->busy_cap,
			       sizeof(*v), 16);

	if (!v)
		return ENOMEM;
	srv->busy = v;
	srv->busy[srv->nbusy++] = id;
	return 0;
}

static void busy_done(struct pmd_server *srv, uint64_t id)
{
	for (uint32_t i = 0; i < srv->nbusy; i++)
		if (srv->busy[i] == id) {
			srv->busy[i] = srv->busy[--srv->nbusy];
			return;
		}
}

/* A request that must wait for its container: kept, and the session
 * parked, until redispatch runs it again. */
static bool wait_for_container(struct pmd_server *srv, struct pmd_session *s,
			       uint16_t type, uint32_t seq, const void *body,
			       uint32_t len)
{
	s->saved = malloc(len ? len : 1);
	if (!s->saved)
		return false;
	memcpy(s->saved, body, len);
	s->saved_len = len;
	s->parked = true; /* (its input goes off if it sends more) */
	s->parked_type = type;
	s->parked_seq = seq;
	s->waiting = true;
	pmd_list_add(srv->waiters.prev, &s->wlink);
	return true;
}

static error_t dispatch(struct pmd_server *srv, struct pmd_session *s,
			uint32_t type, const void *body, uint32_t len,
			struct reply *r);

/* A container's remote work ended: the waiting requests run again, in
 * order (each may wait again, park, or be answered). */
static void redispatch(struct pmd_server *srv)
{
	struct pmd_list todo, *pos;

	if (pmd_list_empty(&srv->waiters))
		return;
	/* Take the list as it is: what waits again joins a new one. */
	todo = srv->waiters;
	todo.next->prev = &todo;
	todo.prev->next = &todo;
	pmd_list_init(&srv->waiters);
	while ((pos = todo.next) != &todo) {
		struct pmd_session *s = pmd_container_of(pos, struct pmd_session,
							 wlink);
		uint8_t *body = s->saved;
		struct reply r = { 0 };
		error_t err;

		pmd_list_del(pos);
		s->waiting = false;
		s->saved = NULL;
		err = dispatch(srv, s, s->parked_type, body, s->saved_len, &r);
		if (err == EAGAIN) {
			s->saved = body;
			s->waiting = true;
			pmd_list_add(srv->waiters.prev, &s->wlink);
			continue;
		}
		free(body);
		if (err != EINPROGRESS)
			unpark(srv, s, err, &r);
	}
}

/* Borrowed slots not used after all go back to their node (places that
 * name no node, or no slot yet, are skipped). */
static void give_back(struct pmd_server *srv, const struct pmd_place *p,
		      uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i].node && p[i].len)
			pmd_core_give_back(srv->core, p[i].node, p[i].seg,
					   p[i].slot);
}

static void window_put(struct pmd_window *w)
{
	if (!w || --w->refs)
		return;
	if (w->mr)
		pmd_cluster_mr_drop(w->mr);
	munmap(w->base, PM_IO_MAX);
	close(w->fd);
	free(w);
}

static void session_close(struct pmd_server *srv, struct pmd_session *s)
{
	if (s->parked && srv->cluster)
		pmd_cluster_cancel(srv->cluster, s);
	if (s->npplaces)
		give_back(srv, s->pplaces, s->npplaces);
	free(s->pplaces);
	if (s->rctx)
		s->rctx->s = NULL; /* it finishes without us */
	window_put(s->win);
	fwd_bye(srv, s);
	if (s->waiting)
		pmd_list_del(&s->wlink);
	free(s->saved);
	if (s->virt) {
		pmd_list_del(&s->link);
		free(s);
		return;
	}
	epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	if (s->fault && s->task) {
		/* The task stays; it just cannot follow moved frames now. */
		pmd_debug("task %#lx: fault session ends",
			  (unsigned long)s->task->id);
		s->task->follows = false;
		s->task->fault_session = NULL;
	} else if (s->task) {
		struct pmd_session *fs = s->task->fault_session;

		pmd_debug("task %#lx leaves", (unsigned long)s->task->id);
		/* Its fault session goes too, through its own hang-up event
		 * (it may be further down this epoll batch). */
		if (fs) {
			fs->task = NULL;
			shutdown(fs->fd, SHUT_RDWR);
		}
		if (srv->cluster)
			pmd_cluster_task_gone(srv->cluster, s->task->id);
		pmd_task_destroy(srv->core, s->task);
	}
	pmd_segtab_flush(&srv->core->segs);
	pmd_list_del(&s->link);
	free(s);
}

/* Sends the reply; false when the session must be closed. */
static bool reply_send(struct pmd_server *srv, struct pmd_session *s,
		       const struct pm_msg_hdr *req, error_t err,
		       const struct reply *r)
{
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)srv->tx;
	struct pm_reply *rep = (struct pm_reply *)(h + 1);
	uint32_t len = (uint32_t)PM_REPLY_HDR + r->body_len;

	if (r->body_ext && s->virt)
		memcpy(srv->tx + PM_REPLY_HDR, r->body_ext, r->body_len);
	if (s->virt) { /* back to the node that forwarded it: the reply
			* (status, culprit) and its body */
		rep->status = pm_errno_to_status(err);
		rep->arg = r->why.arg;
		rep->culprit = r->why.frame;
		pmd_cluster_answer(srv->cluster, s->vnode, s->vinc,
				   PMD_NREQ_FWD_OP, s->vid, err, rep,
				   (uint32_t)sizeof(*rep) + r->body_len);
		return true;
	}
	union {
		char buf[CMSG_SPACE(sizeof(int) * (PM_MAP_FDS_MAX + 1))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov[2] = { { .iov_base = srv->tx, .iov_len = len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 1 };

	if (r->body_ext) { /* the header here, the body where it is */
		iov[0].iov_len = PM_REPLY_HDR;
		iov[1] = (struct iovec){ .iov_base = (void *)r->body_ext,
					 .iov_len = r->body_len };
		msg.msg_iovlen = 2;
	}

	assert(len <= sizeof(srv->tx) && r->nfds <= PM_MAP_FDS_MAX + 1);
	pm_msg_hdr_init(h, req->type | PM_MSG_REPLY, len, req->seq);
	rep->status = pm_errno_to_status(err);
	rep->arg = r->why.arg;
	rep->culprit = r->why.frame;
	if (r->nfds) {
		struct cmsghdr *c;
		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * r->nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * r->nfds);
		memcpy(CMSG_DATA(c), r->fds, sizeof(int) * r->nfds);
	}
	if (sendmsg(s->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)len)
		return true;
	/* One request, one reply: a task that leaves replies unread or has
	 * gone away loses its session rather than stall the pmd. */
	if (errno == EAGAIN)
		pmd_warn("task %#lx does not read its replies; closing it",
			 s->task ? (unsigned long)s->task->id : 0ul);
	else if (errno != EPIPE && errno != ECONNRESET)
		pmd_warn("reply to a task: %m");
	return false;
}

/* ---- request handlers: body checked for size by the dispatcher ---- */

typedef error_t (*handler_fn)(struct pmd_server *srv, struct pmd_session *s,
			      const void *body, uint32_t body_len,
			      struct reply *r);

static error_t do_hello(struct pmd_server *srv, struct pmd_session *s,
			const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_hello_req *req = body;
	struct pm_hello_rep *rep = reply_body(srv);
	struct ucred cred = { 0 };
	socklen_t len = sizeof(cred);
	error_t err;

	if (s->task || req->flags) {
		r->why.arg = s->task ? 0 : 2;
		return s->task ? EPROTO : EINVAL;
	}
	if (req->version < PM_PROTO_VERSION) {
		r->why.arg = 1;
		return EPROTO;
	}
	if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		pmd_warn("SO_PEERCRED: %m");
	err = pmd_task_create(srv->core, cred.uid, cred.gid, (uint32_t)cred.pid,
			      &s->task);
	if (err)
		return err;
	pmd_debug("task %#lx: uid %u pid %u", (unsigned long)s->task->id,
		  cred.uid, cred.pid);
	rep->task = s->task->id;
	rep->node = srv->core->cfg.node;
	rep->pad = 0;
	rep->frame_size = PM_FRAME_SIZE;
	rep->io_max = PM_IO_MAX;
	rep->map_max = PM_MAP_MAX;
	r->body_len = sizeof(*rep);
	return 0;
}

static error_t do_task_stat(struct pmd_server *srv, struct pmd_session *s,
			    const void *body, uint32_t body_len, struct reply *r)
{
	pmd_task_stat(s->task, reply_body(srv));
	r->body_len = sizeof(struct pm_task_stat_rep);
	return 0;
}

static error_t do_create(struct pmd_server *srv, struct pmd_session *s,
			 const void *body, uint32_t body_len, struct reply *r)
{
	struct pm_handle_rep *rep = reply_body(srv);
	error_t err = pmd_container_create(srv->core, s->task, &rep->handle);

	if (!err)
		r->body_len = sizeof(*rep);
	return err;
}

static void taken_back(void *arg, error_t status, const void *body,
		       size_t len)
{
	struct pmd_session *s = arg;
	struct reply r = { 0 };

	(void)status; /* down: nobody there sees the slot any more */
	(void)body;
	(void)len;
	if (--s->taking == 0)
		unpark(s->srv, s, s->taking_status, &r);
}

/* Frames this request let go of that lived in slots another node keeps
 * for a task's mapping (a forwarded map put them there): those slots are
 * retired before the answer, so the task sees nothing of them after it.
 * err is the answer; EINPROGRESS while the slots go. */
static error_t take_back_first(struct pmd_server *srv, struct pmd_session *s,
			       error_t err)
{
	struct pmd_core *core = srv->core;
	uint32_t k = 0;

	if (!srv->cluster)
		return err;
	/* Those slots to the end of the queue, and off it now. */
	for (uint32_t i = 0; i < core->nrfree; i++) {
		const struct pmd_rseg *g = pmd_core_rseg(core, core->rfree[i].node,
							 core->rfree[i].seg);
		if (!g || !g->tag_task) {
			struct pmd_rfree t = core->rfree[k];
			core->rfree[k++] = core->rfree[i];
			core->rfree[i] = t;
		}
	}
	s->taking = pmd_cluster_take_back(srv->cluster, core->rfree + k,
					  core->nrfree - k, taken_back, s);
	core->nrfree = k;
	if (!s->taking)
		return err;
	s->taking_status = err;
	return EINPROGRESS;
}

static error_t do_destroy(struct pmd_server *srv, struct pmd_session *s,
			  const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_handle_req *req = body;
	error_t err = pmd_container_destroy(srv->core, s->task, req->handle,
					    &r->why);

	return err ? err : take_back_first(srv, s, 0);
}

static error_t do_stat(struct pmd_server *srv, struct pmd_session *s,
		       const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_handle_req *req = body;
	error_t err = pmd_container_stat(srv->core, s->task, req->handle,
					 reply_body(srv), &r->why);

	if (!err)
		r->body_len = sizeof(struct pm_stat_rep);
	return err;
}

static error_t do_allocate(struct pmd_server *srv, struct pmd_session *s,
			   const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_alloc_req *req = body;
	uint32_t done = 0, policy;
	pm_node_t node;
	error_t err;

	if (srv->cluster &&
	    !pmd_container_policy(srv->core, s->task, req->handle, &policy,
				  &node)) {
		if (policy == PM_PLACE_NODE && node != srv->core->cfg.node)
			return alloc_remote(srv, s, req, node, r);
		if (policy == PM_PLACE_INTERLEAVE) {
			err = alloc_interleave(srv, s, req, r);
			if (err != ENOENT)
				return err;
		}
		/* Local placement spills when this node's budget is spent. */
		err = alloc_spill(srv, s, req, r);
		if (err != ENOENT)
			return err;
	}
	err = pmd_container_allocate(srv->core, s->task, req->handle,
				     req->start, req->count, req->flags, &done,
				     &r->why);
	alloc_reply(srv, r, done);
	return err;
}

static error_t do_deallocate(struct pmd_server *srv, struct pmd_session *s,
			     const void *body, uint32_t body_len,
			     struct reply *r)
{
	const struct pm_dealloc_req *req = body;
	error_t err = pmd_container_deallocate(srv->core, s->task, req->handle,
					       req->start, req->count, &r->why);

	return err ? err : take_back_first(srv, s, 0);
}

static error_t do_map(struct pmd_server *srv, struct pmd_session *s,
		      const void *body, uint32_t body_len, struct reply *r)
{
	static int fds[PM_MAP_FDS_MAX + 1];
	const struct pm_map_req *req = body;
	struct pmd_map_out *m = &srv->map;
	struct pm_map_rep *rep = reply_body(srv);
	uint8_t *p = (uint8_t *)(rep + 1);
	error_t err;

	if (s->virt) /* a task of another node: the frames go there */
		return map_push(srv, s, req, r);
	err = pmd_container_map(srv->core, s->task, req->handle, req->start,
				req->count, req->flags, m, &r->why);
	if (err == EREMOTE)
		return map_pull(srv, s, req, r);
	if (err)
		return err;
	rep->granted = m->granted;
	rep->done = m->done;
	rep->nruns = m->nruns;
	rep->nsegs = m->nsegs;
	rep->view = m->view->id;
	rep->view_fd = m->send_view;
	rep->pad = 0;
	memcpy(p, m->runs, m->nruns * sizeof(m->runs[0]));
	p += m->nruns * sizeof(m->runs[0]);
	for (uint32_t i = 0; i < m->nsegs; i++) {
		memcpy(p, &m->segs[i]->id, sizeof(uint64_t));
		p += sizeof(uint64_t);
		fds[i] = m->segs[i]->fd;
	}
	if (m->send_view)
		fds[m->nsegs] = m->view->fd;
	r->body_len = (uint32_t)(p - (uint8_t *)rep);
	r->fds = fds;
	r->nfds = m->nsegs + m->send_view;
	return 0;
}

static error_t do_window(struct pmd_server *srv, struct pmd_session *s,
			 const void *body, uint32_t body_len, struct reply *r)
{
	static int fd;
	struct pm_window_rep *rep = reply_body(srv);
	struct pmd_window *w;
	error_t err = 0;

	if (s->fault || s->virt)
		return EPROTO;
	if (s->win)
		return EEXIST;
	w = calloc(1, sizeof(*w));
	if (!w)
		return ENOMEM;
	w->base = MAP_FAILED;
	/* Sealed against resizing: the task cannot pull it from under us. */
	w->fd = memfd_create("pm-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (w->fd < 0 || ftruncate(w->fd, PM_IO_MAX) < 0 ||
	    fcntl(w->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
				      F_SEAL_SEAL) < 0 ||
	    (w->base = mmap(NULL, PM_IO_MAX, PROT_READ | PROT_WRITE, MAP_SHARED,
			    w->fd, 0)) == MAP_FAILED)
		err = errno;
	if (!err && srv->cluster)
		err = pmd_cluster_mr(srv->cluster, w->base, PM_IO_MAX, &w->mr);
	if (err) {
		if (w->base != MAP_FAILED)
			munmap(w->base, PM_IO_MAX);
		if (w->fd >= 0)
			close(w->fd);
		free(w);
		pmd_warn("an I/O window: %s", strerror(err));
		return ENOMEM;
	}
	w->refs = 1;
	s->win = w;
	rep->size = PM_IO_MAX;
	r->body_len = sizeof(*rep);
	fd = w->fd;
	r->fds = &fd;
	r->nfds = 1;
	return 0;
}

static error_t do_read(struct pmd_server *srv, struct pmd_session *s,
		       const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_io_req *req = body;
	error_t err;

	if (!io_flags_ok(s, req)) {
		r->why.arg = 0;
		return EPROTO;
	}
	bool win = req->flags & PM_IO_WINDOW;

	err = pmd_container_read(srv->core, s->task, req->handle, req->frame,
				 req->offset, win ? s->win->base : reply_body(srv),
				 req->len, &r->why);
	if (err == EREMOTE)
		return io_remote(srv, s, req, NULL, false, r);
	if (!err && !win)
		r->body_len = req->len;
	return err;
}

static error_t do_write(struct pmd_server *srv, struct pmd_session *s,
			const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_io_req *req = body;
	bool win = req->flags & PM_IO_WINDOW;
	const void *data = req + 1;
	error_t err;

	if (!io_flags_ok(s, req) ||
	    body_len != sizeof(*req) + (win ? 0 : (uint64_t)req->len))
		return EPROTO;
	if (win)
		data = s->win->base; /* checked: the session has one */
	err = pmd_container_write(srv->core, s->task, req->handle, req->frame,
				  req->offset, data, req->len, &r->why);
	if (err == EREMOTE)
		return io_remote(srv, s, req, data, true, r);
	return err;
}

static error_t do_nodes(struct pmd_server *srv, struct pmd_session *s,
			const void *body, uint32_t body_len, struct reply *r)
{
	struct pm_nodes_rep *rep = reply_body(srv);
	struct pm_node_entry *n = (struct pm_node_entry *)(rep + 1);
	struct pmd_core *core = srv->core;

	memset(rep, 0, sizeof(*rep) + sizeof(*n));
	rep->count = 1;
	n->id = core->cfg.node;
	n->state = PM_NODE_UP;
	n->frames_total = core->budget.total;
	n->frames_free = pmd_budget_free(&core->budget);
	if (srv->cluster) {
		n->incarnation = pmd_cluster_incarnation(srv->cluster);
		snprintf(n->address, sizeof(n->address), "%.63s",
			 pmd_cluster_self_address(srv->cluster));
		rep->count += pmd_cluster_nodes(srv->cluster, n + 1,
						PM_NODES_MAX - 1);
	} else {
		snprintf(n->address, sizeof(n->address), "unix:%.58s",
			 srv->socket_path);
	}
	r->body_len = sizeof(*rep) + rep->count * sizeof(*n);
	return 0;
}

static error_t do_debug_stat(struct pmd_server *srv, struct pmd_session *s,
			     const void *body, uint32_t body_len,
			     struct reply *r)
{
	struct pm_debug_rep *rep = reply_body(srv);

	pmd_core_debug(srv->core, rep);
	rep->requests = srv->requests;
	r->body_len = sizeof(*rep);
	return 0;
}

static error_t do_attach_key(struct pmd_server *srv, struct pmd_session *s,
			     const void *body, uint32_t body_len,
			     struct reply *r)
{
	struct pm_attach_key_rep *rep = reply_body(srv);
	struct pmd_task *t = s->task;

	if (s->fault)
		return EPROTO;
	if (t->fault_session)
		return EBUSY; /* one fault session a task */
	do
		randombytes_buf(t->attach_key, sizeof(t->attach_key));
	while (sodium_is_zero(t->attach_key, sizeof(t->attach_key)));
	memcpy(rep->key, t->attach_key, sizeof(rep->key));
	r->body_len = sizeof(*rep);
	return 0;
}

static error_t do_attach(struct pmd_server *srv, struct pmd_session *s,
			 const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_attach_req *q = body;
	struct ucred cred = { 0 };
	socklen_t len = sizeof(cred);
	struct pmd_task *t;

	if (s->task)
		return EPROTO;
	r->why.arg = 1;
	t = pmd_core_find_task(srv->core, q->task);
	if (!t)
		return ESRCH;
	r->why.arg = 2;
	if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (uint32_t)cred.pid != t->pid ||
	    sodium_is_zero(t->attach_key, sizeof(t->attach_key)) ||
	    sodium_memcmp(q->key, t->attach_key, sizeof(q->key)) != 0)
		return EACCES;
	if (t->fault_session)
		return EBUSY;
	r->why.arg = 0;
	sodium_memzero(t->attach_key, sizeof(t->attach_key)); /* one time */
	s->task = t;
	s->fault = true;
	t->follows = true;
	t->fault_session = s;
	pmd_debug("task %#lx: fault session attached", (unsigned long)t->id);
	return 0;
}

/* A fault on a frame another home moved away from this node: a map of
 * that one frame, forwarded for the task (fwd_map_answer answers). */
static error_t fwd_resolve(struct pmd_server *srv, struct pmd_session *s,
			   pm_node_t home, container_t rh, frame_t f)
{
	struct pm_map_req q = { .handle = rh, .start = f, .count = 1,
				.flags = CONT_MAP_READ | CONT_MAP_WRITE };
	struct fctx *x = calloc(1, sizeof(*x));

	if (!x)
		return ENOMEM;
	*x = (struct fctx){ .srv = srv, .s = s, .node = home,
			    .type = PM_MSG_MAP, .resolve = true,
			    .body_len = sizeof(q) };
	memcpy(x->body, &q, sizeof(q));
	return fwd_start(srv, s, x, NULL);
}

static error_t do_resolve(struct pmd_server *srv, struct pmd_session *s,
			  const void *body, uint32_t body_len, struct reply *r)
{
	static int fd;
	const struct pm_resolve_req *q = body;
	struct pm_resolve_rep *rep = reply_body(srv);
	struct pmd_resolve_out out;
	error_t err;

	if (q->pad)
		return EPROTO;
	if (srv->cluster) {
		/* A frame of another home that this node held for the task's
		 * mapping: that home says where it is now. */
		pm_node_t home;
		container_t rh;
		frame_t f;

		err = pmd_cluster_pushed_where(srv->cluster, s->task->id,
					       q->segment, q->slot, &home, &rh,
					       &f);
		if (err != ENOENT)
			return err ? err : fwd_resolve(srv, s, home, rh, f);
	}
	err = pmd_container_resolve(srv->core, s->task, q->segment, q->slot,
				    &out);
	if (err == EREMOTE) {
		/* It went to another node: back here first. */
		container_t h = pmd_container_handle_of(s->task, out.cont);
		bool none;

		if (!h)
			return ENOENT;
		err = pull_then_redo(srv, s, h, false, out.frame, 1, 0,
				     PM_MSG_RESOLVE, q, sizeof(*q), &none, r);
		return none ? ENOENT : err;
	}
	if (err)
		return err;
	rep->segment = out.seg->id;
	rep->slot = out.slot;
	rep->flags = out.cow ? PM_VIEW_COW : 0;
	rep->fd = out.send_fd;
	r->body_len = sizeof(*rep);
	if (out.send_fd) {
		fd = out.seg->fd;
		r->fds = &fd;
		r->nfds = 1;
	}
	return 0;
}

static error_t do_move(struct pmd_server *srv, struct pmd_session *s,
		       const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_move_req *q = body;

	return pmd_container_move(srv->core, s->task, q->handle, q->frame,
				  &r->why);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The other node answered (or not): the parked session gets its reply and
 * is read from again. */
static void ping_done(void *arg, error_t status, const void *body, size_t len)
{
	struct pmd_session *s = arg;
	struct pmd_server *srv = s->srv;
	struct pm_ping_rep *rep = reply_body(srv);
	struct reply r = { 0 };

	if (!status && len == sizeof(struct pmd_nreq_ping_rep)) {
		const struct pmd_nreq_ping_rep *p = body;
		rep->incarnation = p->incarnation;
		rep->frames_free = p->frames_free;
		rep->rtt_ns = mono_ns() - s->parked_t0;
		r.body_len = sizeof(*rep);
	} else if (!status) {
		status = EPROTO;
	}
	unpark(srv, s, status, &r);
}

static error_t do_ping_node(struct pmd_server *srv, struct pmd_session *s,
			    const void *body, uint32_t body_len,
			    struct reply *r)
{
	const struct pm_ping_req *q = body;
	error_t err;

	if (q->pad || q->pad2)
		return EPROTO;
	r->why.arg = 1;
	if (!srv->cluster)
		return EINVAL;
	s->parked_t0 = mono_ns();
	err = pmd_cluster_call(srv->cluster, q->node, PMD_NREQ_PING, NULL, 0,
			       ping_done, s);
	if (err)
		return err;
	r->why.arg = 0;
	return EINPROGRESS;
}

/* Sends a parked session its reply and reads from it again. */
static void unpark(struct pmd_server *srv, struct pmd_session *s, error_t err,
		   struct reply *r)
{
	struct pm_msg_hdr h = { .type = s->parked_type, .seq = s->parked_seq };
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };

	s->parked = false;
	if (s->virt) {
		reply_send(srv, s, &h, err, r);
		session_close(srv, s);
		return;
	}
	if (!reply_send(srv, s, &h, err, r) ||
	    (s->masked &&
	     epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, s->fd, &ev) < 0))
		session_close(srv, s);
	s->masked = false;
}

/* ---- remote frames ---- */

/*
 * Allocation into frames placed on other nodes, by any policy: the plan
 * gives each planned frame its place in s->pplaces (node 0: here); the
 * slots are borrowed node after node, in id order; a node that cannot
 * lend all its share ends the plan at its first frame without a slot
 * (ENOMEM, or ENODEV when the policy named that node and it is down);
 * then one allocation runs over the mixed places, all or nothing without
 * CONT_ALLOC_PARTIAL, as any allocation, and what it did not use goes
 * back.
 */
static void place_borrowed(void *arg, error_t status,
			   const struct pmd_place *places, uint32_t n);

/* Frames of the plan from `from` on that go to node and have no slot. */
static uint32_t place_need(const struct pmd_session *s, pm_node_t node,
			   uint32_t from)
{
	uint32_t need = 0;

	for (uint32_t i = from; i < s->pplan; i++)
		need += s->pplaces[i].node == node && !s->pplaces[i].len;
	return need;
}

/* pnode lends no more (why: the borrow's error): the plan ends at its
 * first frame without a slot. */
static void place_short(struct pmd_session *s, error_t why)
{
	for (uint32_t i = s->pscan; i < s->pplan; i++) {
		if (s->pplaces[i].node == s->pnode && !s->pplaces[i].len) {
			s->pplan = i;
			s->pstop = why == ENODEV && s->pnamed ? ENODEV : ENOMEM;
			return;
		}
	}
}

/* The allocation once every share is borrowed (or no more come). */
static error_t place_allocate(struct pmd_server *srv, struct pmd_session *s,
			      struct reply *r)
{
	const struct pm_alloc_req *q = &s->palloc;
	bool partial = q->flags & CONT_ALLOC_PARTIAL;
	uint32_t done = 0;
	error_t err;

	if (s->pplan < s->pasked && (!partial || s->pplan == 0)) {
		err = s->pstop; /* not all of it: nothing at all */
		r->why.frame = q->start + s->pplan;
	} else {
		err = pmd_container_allocate_remote(srv->core, s->task,
						    q->handle, q->start,
						    s->pplan, q->flags,
						    s->pplaces, s->pplan,
						    &done, &r->why);
		if (!err && done < q->count) {
			err = s->pstop; /* as planned: the stop of the plan */
			r->why.frame = q->start + done;
		}
	}
	give_back(srv, s->pplaces + done, s->npplaces - done);
	s->npplaces = 0;
	alloc_reply(srv, r, done);
	return err;
}

/* Borrows the share of the next node that has one: true when a borrow
 * is under way, false when every share is in (or cannot be had). */
static bool place_next(struct pmd_server *srv, struct pmd_session *s)
{
	for (;;) {
		pm_node_t next = 0;
		error_t err;

		for (uint32_t i = 0; i < s->pplan; i++) {
			pm_node_t node = s->pplaces[i].node;
			if (node > s->pnode && (!next || node < next))
				next = node;
		}
		if (!next)
			return false;
		s->pnode = next;
		s->pscan = 0;
		err = pmd_cluster_borrow(srv->cluster, next,
					 place_need(s, next, 0), place_borrowed, s);
		if (!err)
			return true;
		place_short(s, err);
	}
}

static void place_borrowed(void *arg, error_t status,
			   const struct pmd_place *places, uint32_t n)
{
	struct pmd_session *s = arg;
	struct pmd_server *srv = s->srv;
	uint32_t k = 0, i, need;

	for (i = s->pscan; i < s->pplan && k < n; i++)
		if (s->pplaces[i].node == s->pnode)
			s->pplaces[i] = places[k++];
	s->pscan = i;
	if (k < n)
		give_back(srv, places + k, n - k);
	need = place_need(s, s->pnode, s->pscan);
	if (need && !status && n &&
	    !pmd_cluster_borrow(srv->cluster, s->pnode, need, place_borrowed, s))
		return;
	if (need)
		place_short(s, status);
	if (!place_next(srv, s)) {
		struct reply r = { 0 };
		error_t err = place_allocate(srv, s, &r);
		unpark(srv, s, err, &r);
	}
}

/* Room for n places, all here until the caller names their nodes. */
static error_t place_room(struct pmd_session *s, uint32_t n)
{
	if (n > s->pplaces_cap) {
		struct pmd_place *v = realloc(s->pplaces, n * sizeof(*v));
		if (!v)
			return ENOMEM;
		s->pplaces = v;
		s->pplaces_cap = n;
	}
	memset(s->pplaces, 0, n * sizeof(*s->pplaces));
	return 0;
}

/* Starts the placed allocation of req's first n frames, whose places
 * s->pplaces names; stop: why not more. EINPROGRESS when parked. */
static error_t place_start(struct pmd_server *srv, struct pmd_session *s,
			   const struct pm_alloc_req *req, uint32_t n,
			   error_t stop, bool named, struct reply *r)
{
	s->palloc = *req;
	s->pplan = s->pasked = n;
	s->pstop = stop;
	s->pnamed = named;
	s->pnode = 0;
	s->npplaces = n;
	if (place_next(srv, s))
		return EINPROGRESS;
	return place_allocate(srv, s, r); /* no node could lend */
}

/* The decode of an allocation whose frames may live on other nodes,
 * bounded by the task's quota alone: *n frames, *stop why not more, and
 * room for their places. 0 to go on; else it stops before any frame (or,
 * without CONT_ALLOC_PARTIAL, at all) and the error and the reply are the
 * answer. */
static error_t plan_elsewhere(struct pmd_server *srv, struct pmd_session *s,
			      const struct pm_alloc_req *req, struct reply *r,
			      uint32_t *n, error_t *stop)
{
	*n = 0;
	*stop = pmd_container_allocate_plan(srv->core, s->task, req->handle,
					    req->start, req->count, req->flags,
					    false, n, &r->why);
	if (*n == 0 || (*stop && !(req->flags & CONT_ALLOC_PARTIAL))) {
		alloc_reply(srv, r, 0);
		return *stop ? *stop : EINVAL;
	}
	if (place_room(s, *n)) {
		alloc_reply(srv, r, 0);
		return ENOMEM;
	}
	return 0;
}

/* A container placed here whose node budget is spent: the frames that do
 * not fit go to the node with the most room, the first ones here.
 * EINPROGRESS when parked; ENOENT (nothing done) when a spill does not
 * apply. */
static error_t alloc_spill(struct pmd_server *srv, struct pmd_session *s,
			   const struct pm_alloc_req *req, struct reply *r)
{
	struct pmd_culprit why;
	uint32_t n_here = 0, n_any = 0;
	error_t stop_here, stop_any;
	pm_node_t lender;

	/* Room here for every frame asked for: nothing to plan (guaranteed
	 * frames always fit, extra ones while no guarantee is eaten). */
	if (pmd_budget_unreserved(&srv->core->budget) >= req->count)
		return ENOENT;
	stop_here = pmd_container_allocate_plan(srv->core, s->task, req->handle,
						req->start, req->count,
						req->flags, true, &n_here, &why);
	if (stop_here != ENOMEM)
		return ENOENT;
	stop_any = pmd_container_allocate_plan(srv->core, s->task, req->handle,
					       req->start, req->count, req->flags,
					       false, &n_any, &why);
	lender = pmd_cluster_best_lender(srv->cluster);
	if (n_any <= n_here || !lender)
		return ENOENT; /* the task's own quota stops it, or no room */
	if (stop_any && !(req->flags & CONT_ALLOC_PARTIAL)) {
		/* Not all of it even with other nodes: nothing at all. */
		alloc_reply(srv, r, 0);
		r->why.frame = req->start + n_any;
		return stop_any;
	}
	if (place_room(s, n_any))
		return ENOENT;
	for (uint32_t i = n_here; i < n_any; i++)
		s->pplaces[i].node = lender;
	return place_start(srv, s, req, n_any, stop_any, false, r);
}

/* An allocation into a container placed on another node. */
static error_t alloc_remote(struct pmd_server *srv, struct pmd_session *s,
			    const struct pm_alloc_req *req, pm_node_t node,
			    struct reply *r)
{
	uint32_t n;
	error_t stop, err;

	err = plan_elsewhere(srv, s, req, r, &n, &stop);
	if (err)
		return err;
	for (uint32_t i = 0; i < n; i++)
		s->pplaces[i].node = node;
	return place_start(srv, s, req, n, stop, true, r);
}

/* Interleave: frame f of the container goes to the (f mod k)-th of the k
 * nodes that are up (this one among them), in id order, so that frames
 * next to each other are on different nodes whatever the calls.
 * ENOENT (nothing done) when this node is the only one up: the frames
 * are all here. */
static error_t alloc_interleave(struct pmd_server *srv,
			       struct pmd_session *s,
			       const struct pm_alloc_req *req, struct reply *r)
{
	pm_node_t nodes[PMD_CLUSTER_NODES_MAX];
	pm_node_t self = srv->core->cfg.node;
	unsigned k = pmd_cluster_up_nodes(srv->cluster, nodes,
					  PMD_CLUSTER_NODES_MAX);
	uint32_t n, m = 0;
	error_t stop, err;

	if (k < 2)
		return ENOENT;
	/* The task's quota bounds the plan, and so the places it needs. */
	err = plan_elsewhere(srv, s, req, r, &n, &stop);
	if (err)
		return err;
	for (uint32_t i = 0; i < n; i++) {
		pm_node_t node = nodes[(req->start + i) % k];
		s->pplaces[i].node = node == self ? 0 : node;
	}
	/* Now with each frame's node: extra frames here need room here. */
	err = pmd_container_allocate_plan_places(srv->core, s->task,
						 req->handle, req->start, n,
						 req->flags, s->pplaces, &m,
						 &r->why);
	if (err) {
		n = m;
		stop = err;
	}
	if (n == 0 || (stop && !(req->flags & CONT_ALLOC_PARTIAL))) {
		alloc_reply(srv, r, 0);
		return stop;
	}
	return place_start(srv, s, req, n, stop, false, r);
}

static void rio_answer(void *arg, error_t status, const uint8_t *data,
		       uint32_t len);

static void pull_taken(void *arg, error_t status, const void *body,
		       size_t len)
{
	struct rctx *x = arg;

	(void)status; /* down: nobody there sees the slot any more */
	(void)body;
	(void)len;
	if (--x->taking == 0) {
		x->taken = true;
		rio_answer(x, 0, x->data, x->npulls * PM_FRAME_SIZE);
	}
}

/* Frames pulled out of slots that their node keeps for a task's mapping
 * (a forwarded map put them there): the node retires those slots before
 * the frames live here, so that the task never sees a stale copy.
 * EINPROGRESS while that is under way. */
static error_t pull_take_back(struct pmd_server *srv, struct rctx *x,
			      const uint8_t *data)
{
	struct pmd_rfree slots[PMD_PULL_MAX];
	uint32_t n = 0;

	for (uint32_t i = 0; i < x->npulls; i++) {
		const struct pmd_pull *p = &x->pulls[i];
		const struct pmd_rseg *g = pmd_core_rseg(srv->core, p->node,
							 p->seg);
		if (g && g->tag_task)
			slots[n++] = (struct pmd_rfree){ .node = p->node,
				.seg = p->seg, .slot = p->slot };
	}
	if (!n)
		return 0;
	x->data = malloc((size_t)x->npulls * PM_FRAME_SIZE);
	if (!x->data)
		return ENOMEM;
	memcpy(x->data, data, (size_t)x->npulls * PM_FRAME_SIZE);
	x->taking = pmd_cluster_take_back(srv->cluster, slots, n, pull_taken, x);
	return x->taking ? EINPROGRESS : 0;
}

static void rio_answer(void *arg, error_t status, const uint8_t *data,
		       uint32_t len)
{
	struct rctx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_session *s = x->s;
	struct reply r = { 0 };

	if (x->pull && !status && !x->taken) {
		status = pull_take_back(srv, x, data);
		if (status == EINPROGRESS)
			return; /* still busy; runs again when taken back */
	}
	busy_done(srv, x->id);
	if (x->push) {
		/* Written there: the frames live there from now on. */
		if (s && !status)
			pmd_container_push_finish(srv->core, s->task,
						  x->pull_handle, x->pushes,
						  x->npush, x->places);
		else
			give_back(srv, x->places, x->npush);
	}
	if (s) {
		s->rctx = NULL;
		if ((x->pull || x->push) && !status) {
			/* Bring the frames in (or send them out), then the
			 * request again. */
			if (x->pull)
				status = pmd_container_pull_finish(
					srv->core, s->task, x->pull_handle,
					x->pulls, x->npulls, data);
			if (!status)
				status = dispatch(srv, s, x->redo_type, x->redo,
						  x->redo_len, &r);
			if (status == EAGAIN &&
			    !wait_for_container(srv, s, x->redo_type,
						s->parked_seq, x->redo,
						x->redo_len))
				status = ENOMEM;
		} else if (!status && data && !x->win) {
			/* Sent from the bounce buffer, which stays ours
			 * until this returns. */
			r.body_ext = data;
			r.body_len = len;
		} /* (through the window: the bytes are there, no body) */
		if (status != EINPROGRESS && status != EAGAIN)
			unpark(srv, s, status, &r);
	}
	free(x->data);
	window_put(x->win);
	free(x);
	redispatch(srv);
}

/* Starts remote work on container id for s (through x->win when set,
 * else a bounce buffer); EINPROGRESS when started. */
static error_t rctx_start(struct pmd_server *srv, struct pmd_session *s,
			  struct rctx *x, bool write,
			  const struct pmd_io_piece *pieces, uint32_t n,
			  const void *data, uint32_t len)
{
	error_t err = busy_add(srv, x->id);

	if (!err && x->win)
		err = pmd_cluster_rio_window(srv->cluster, write, pieces, n,
					     x->win->base, x->win->mr, len,
					     rio_answer, x);
	else if (!err)
		err = pmd_cluster_rio(srv->cluster, write, pieces, n, data, len,
				      rio_answer, x);
	if (err) {
		busy_done(srv, x->id);
		window_put(x->win);
		free(x);
		return err;
	}
	s->rctx = x;
	return EINPROGRESS;
}

/* A read or write touching remote frames: parked until the RDMA ends
 * (dispatch made it wait while its container had remote work). */
static error_t io_remote(struct pmd_server *srv, struct pmd_session *s,
			 const struct pm_io_req *req, const void *data,
			 bool write, struct reply *r)
{
	struct pmd_io_piece pieces[PMD_IO_PIECES];
	struct rctx *x;
	uint32_t n = 0;
	uint64_t id;
	error_t err;

	if (!srv->cluster)
		return EIO;
	err = pmd_container_id_of(srv->core, s->task, req->handle, &id);
	if (!err)
		err = pmd_container_io_plan(srv->core, s->task, req->handle,
					    write, req->frame, req->offset,
					    req->len, pieces, &n, &r->why);
	if (err)
		return err;
	x = calloc(1, sizeof(*x));
	if (!x)
		return ENOMEM;
	*x = (struct rctx){ .srv = srv, .s = s, .id = id };
	if (req->flags & PM_IO_WINDOW) {
		/* Straight between the task's window and the frames. */
		x->win = s->win;
		x->win->refs++;
	}
	return rctx_start(srv, s, x, write, pieces, n, data, req->len);
}

/* Brings up to PMD_PULL_MAX remote frames of [start, start + count) of
 * container h here, then runs the request (type, body) again. *none when
 * the range has no remote frame (nothing started). */
static error_t pull_then_redo(struct pmd_server *srv, struct pmd_session *s,
			      container_t h, bool write, frame_t start,
			      uint32_t count, uint64_t keep_task, uint16_t type,
			      const void *body, uint32_t len, bool *none,
			      struct reply *r)
{
	struct pmd_io_piece pieces[PMD_PULL_MAX];
	struct rctx *x;
	uint64_t id;
	error_t err;

	*none = false;
	if (!srv->cluster)
		return EIO;
	err = pmd_container_id_of(srv->core, s->task, h, &id);
	if (err)
		return err;
	if (busy_test(srv, id))
		return EAGAIN;
	x = calloc(1, sizeof(*x));
	if (!x || len > sizeof(x->redo)) {
		free(x);
		return ENOMEM;
	}
	*x = (struct rctx){ .srv = srv, .s = s, .id = id, .pull = true,
			    .pull_handle = h, .redo_type = type, .redo_len = len };
	memcpy(x->redo, body, len);
	if (type == PM_MSG_UNSHARE) /* all that was pushed for that task */
		err = pmd_container_pull_plan_pushed(srv->core, s->task, h,
						     keep_task, x->pulls,
						     &x->npulls);
	else
		err = pmd_container_pull_plan(srv->core, s->task, h, write,
					      start, count, keep_task, x->pulls,
					      &x->npulls, &r->why);
	if (!err && !x->npulls) {
		*none = true;
		err = EIO;
	}
	if (err) {
		free(x);
		return err;
	}
	for (uint32_t i = 0; i < x->npulls; i++)
		pieces[i] = x->pulls[i].piece;
	return rctx_start(srv, s, x, false, pieces, x->npulls, NULL,
			  x->npulls * PM_FRAME_SIZE);
}

/* A map of remote frames: they are brought here first, a batch at a
 * time, then the map runs again. */
static error_t map_pull(struct pmd_server *srv, struct pmd_session *s,
			const struct pm_map_req *req, struct reply *r)
{
	bool none;

	return pull_then_redo(srv, s, req->handle, false, req->start,
			      req->count, 0, PM_MSG_MAP, req, sizeof(*req),
			      &none, r);
}

/* The tagged slots for a push came (or not): write the frames there. */
static void push_borrowed(void *arg, error_t status,
			  const struct pmd_place *places, uint32_t n)
{
	struct pmd_io_piece pieces[PMD_PUSH_MAX];
	struct rctx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_session *s = x->s;
	uint32_t k = 0;

	if (n > x->npush)
		n = x->npush; /* not more than asked */
	for (uint32_t i = 0; s && !status && i < n; i++) {
		const uint8_t *bytes = pmd_container_push_bytes(
			srv->core, s->task, x->pull_handle, &x->pushes[i]);
		if (!bytes) { /* gone meanwhile: its slot goes back */
			give_back(srv, &places[i], 1);
			continue;
		}
		memcpy(x->data + (size_t)k * PM_FRAME_SIZE, bytes, PM_FRAME_SIZE);
		x->pushes[k] = x->pushes[i];
		x->places[k] = places[i];
		pieces[k] = (struct pmd_io_piece){ .node = places[i].node,
			.key = places[i].key, .base = places[i].base,
			.rlen = places[i].len,
			.roff = (uint64_t)places[i].slot * PM_FRAME_SIZE,
			.len = PM_FRAME_SIZE };
		k++;
	}
	x->npush = k;
	if (s && !status && n == 0)
		status = ENOMEM; /* that node lends nothing now */
	if (!s || status) {
		give_back(srv, places, s && !status ? 0 : n);
		x->npush = 0;
	} else if (k) {
		status = pmd_cluster_rio(srv->cluster, true, pieces, k, x->data,
					 k * PM_FRAME_SIZE, rio_answer, x);
		if (!status)
			return;
		give_back(srv, x->places, k);
		x->npush = 0;
	}
	/* Nothing to write after all: done (the request runs again). */
	rio_answer(x, status, NULL, 0);
}

/* A map through a forwarded handle, at the home for the task's proxy:
 * the frames go to the task's node first, a batch at a time (those on
 * other nodes come here first), then the answer says where they are. */
static error_t map_push(struct pmd_server *srv, struct pmd_session *s,
			const struct pm_map_req *req, struct reply *r)
{
	struct pmd_push_out *o = &srv->push;
	struct pm_map_rep *rep = reply_body(srv);
	frame_t frames[PMD_PUSH_MAX];
	struct rctx *x;
	uint64_t id;
	bool none;
	error_t err;

	static_assert(PMD_PUSH_MAX <= PMD_LEND_MAX, "a push is one loan");
	/* (dispatch made it wait while the container had remote work) */
	err = pmd_container_id_of(srv->core, s->task, req->handle, &id);
	if (!err)
		err = pmd_container_push_plan(srv->core, s->task, req->handle,
					      req->start, req->count,
					      req->flags, s->vnode, o,
					      &r->why);
	if (err == EREMOTE)
		return pull_then_redo(srv, s, req->handle, false, req->start,
				      req->count < PMD_FWD_MAP_MAX ? req->count
								   : PMD_FWD_MAP_MAX,
				      s->task->id, PM_MSG_MAP, req, sizeof(*req),
				      &none, r);
	if (err)
		return err;
	if (!o->npush) {
		*rep = (struct pm_map_rep){ .granted = o->granted,
					    .done = o->done, .nruns = o->nruns };
		memcpy(rep + 1, o->runs, o->nruns * sizeof(o->runs[0]));
		r->body_len = (uint32_t)(sizeof(*rep) +
					 o->nruns * sizeof(o->runs[0]));
		return 0;
	}
	x = calloc(1, sizeof(*x));
	if (x)
		x->data = malloc((size_t)o->npush * PM_FRAME_SIZE);
	if (!x || !x->data) {
		free(x);
		return ENOMEM;
	}
	*x = (struct rctx){ .srv = srv, .s = s, .id = id, .push = true,
			    .pull_handle = req->handle, .redo_type = PM_MSG_MAP,
			    .redo_len = sizeof(*req), .node = s->vnode,
			    .npush = o->npush, .data = x->data };
	memcpy(x->redo, req, sizeof(*req));
	memcpy(x->pushes, o->push, o->npush * sizeof(o->push[0]));
	for (uint32_t i = 0; i < o->npush; i++)
		frames[i] = o->push[i].frame;
	err = busy_add(srv, id);
	if (err) {
		free(x->data);
		free(x);
		return err;
	}
	err = pmd_cluster_borrow_for(srv->cluster, s->vnode, o->npush,
				     s->task->id, id, req->handle, frames,
				     push_borrowed, x);
	if (err) {
		busy_done(srv, id);
		free(x->data);
		free(x);
		return err;
	}
	s->rctx = x;
	return EINPROGRESS;
}

static error_t do_copy(struct pmd_server *srv, struct pmd_session *s,
		       const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_copy_req *q = body;
	error_t err;
	bool none;

	err = pmd_container_copy(srv->core, s->task, q->src, q->src_start,
				 q->dst, q->dst_start, q->count, q->flags,
				 &r->why);
	if (err != EREMOTE)
		return err;
	/* Remote frames are brought here (sources first), then the copy
	 * runs again: a copy across nodes is a copy here. */
	err = pull_then_redo(srv, s, q->src, false, q->src_start, q->count, 0,
			     PM_MSG_COPY, q, sizeof(*q), &none, r);
	if (none)
		err = pull_then_redo(srv, s, q->dst, true, q->dst_start,
				     q->count, 0, PM_MSG_COPY, q, sizeof(*q),
				     &none, r);
	return err;
}

static error_t do_share(struct pmd_server *srv, struct pmd_session *s,
			const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_share_req *q = body;
	struct pm_handle_rep *rep = reply_body(srv);
	error_t err = pmd_container_share(srv->core, s->task, q->handle,
					  q->task, &rep->handle, &r->why);

	if (!err)
		r->body_len = sizeof(*rep);
	return err;
}

static error_t do_unshare(struct pmd_server *srv, struct pmd_session *s,
			  const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_share_req *q = body;
	struct pmd_task *rt = pmd_core_find_task(srv->core, q->task);

	/* Frames a forwarded map put on that task's node come back first:
	 * it must see nothing more. */
	if (rt && rt->proxy && srv->cluster) {
		bool none;
		error_t err = pull_then_redo(srv, s, q->handle, false, 0, 0,
					     q->task, PM_MSG_UNSHARE, q,
					     sizeof(*q), &none, r);
		/* A handle unshare refuses says so with unshare's words. */
		if (!none && err != EBADF && err != EPERM && err != ESTALE)
			return err;
	}
	return pmd_container_unshare(srv->core, s->task, q->handle, q->task,
				     &r->why);
}

static error_t do_export(struct pmd_server *srv, struct pmd_session *s,
			 const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_handle_req *q = body;
	error_t err = pmd_cap_export(srv->core, s->task, q->handle,
				     reply_body(srv), &r->why);

	if (!err)
		r->body_len = sizeof(struct pm_token);
	return err;
}

static error_t do_import(struct pmd_server *srv, struct pmd_session *s,
			 const void *body, uint32_t body_len, struct reply *r)
{
	struct pm_handle_rep *rep = reply_body(srv);
	const struct pm_token *tok = body;
	uint64_t share;
	pm_node_t home;
	error_t err;

	/* The share id names its home in its high bits. */
	memcpy(&share, tok->bytes, sizeof(share));
	home = (pm_node_t)(share >> 48);
	if (home && home != srv->core->cfg.node && srv->cluster &&
	    pmd_cluster_knows(srv->cluster, home))
		return fwd_import(srv, s, tok, home);
	err = pmd_cap_import(srv->core, s->task, body, &rep->handle, &r->why);
	if (!err)
		r->body_len = sizeof(*rep);
	return err;
}

static error_t do_release(struct pmd_server *srv, struct pmd_session *s,
			  const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_handle_req *q = body;

	return pmd_cap_release(srv->core, s->task, q->handle, &r->why);
}

static error_t do_lock(struct pmd_server *srv, struct pmd_session *s,
		       const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_lock_req *q = body;

	if (q->pad)
		return EPROTO;
	return pmd_container_lock(srv->core, s->task, q->handle, q->msec,
				  &r->why);
}

static error_t do_unlock(struct pmd_server *srv, struct pmd_session *s,
			 const void *body, uint32_t body_len, struct reply *r)
{
	const struct pm_handle_req *q = body;

	return pmd_container_unlock(srv->core, s->task, q->handle, &r->why);
}

static error_t do_set_policy(struct pmd_server *srv, struct pmd_session *s,
			     const void *body, uint32_t body_len,
			     struct reply *r)
{
	const struct pm_policy_req *q = body;

	if (q->pad)
		return EPROTO;
	/* Another node must be in the cluster. */
	if (q->policy == PM_PLACE_NODE && q->node != srv->core->cfg.node &&
	    (!srv->cluster || !pmd_cluster_knows(srv->cluster, q->node))) {
		uint32_t policy;
		pm_node_t node;
		error_t err = pmd_container_policy(srv->core, s->task, q->handle,
						   &policy, &node);
		if (err) {
			r->why.arg = 1;
			return err;
		}
		r->why.arg = 4;
		return ENODEV;
	}
	return pmd_container_set_policy(srv->core, s->task, q->handle,
					q->policy, q->node, &r->why);
}

/* Each type: its handler, the body size it takes (exact, or at least for
 * variable bodies), and whether the body starts with a container handle.
 * Every type but HELLO needs HELLO first. */
static const struct {
	handler_fn fn;
	uint32_t body;
	bool variable;
	bool handle;
} handlers[PM_MSG_TYPE_MAX] = {
	[PM_MSG_HELLO] = { do_hello, sizeof(struct pm_hello_req), false, false },
	[PM_MSG_TASK_STAT] = { do_task_stat, 0, false, false },
	[PM_MSG_CREATE] = { do_create, 0, false, false },
	[PM_MSG_DESTROY] = { do_destroy, sizeof(struct pm_handle_req), false, true },
	[PM_MSG_STAT] = { do_stat, sizeof(struct pm_handle_req), false, true },
	[PM_MSG_ALLOCATE] = { do_allocate, sizeof(struct pm_alloc_req), false, true },
	[PM_MSG_DEALLOCATE] = { do_deallocate, sizeof(struct pm_dealloc_req), false, true },
	[PM_MSG_MAP] = { do_map, sizeof(struct pm_map_req), false, true },
	[PM_MSG_READ] = { do_read, sizeof(struct pm_io_req), false, true },
	[PM_MSG_WRITE] = { do_write, sizeof(struct pm_io_req), true, true },
	[PM_MSG_COPY] = { do_copy, sizeof(struct pm_copy_req), false, true },
	[PM_MSG_SHARE] = { do_share, sizeof(struct pm_share_req), false, true },
	[PM_MSG_UNSHARE] = { do_unshare, sizeof(struct pm_share_req), false, true },
	[PM_MSG_EXPORT] = { do_export, sizeof(struct pm_handle_req), false, true },
	[PM_MSG_IMPORT] = { do_import, sizeof(struct pm_token), false, false },
	[PM_MSG_RELEASE] = { do_release, sizeof(struct pm_handle_req), false, true },
	[PM_MSG_LOCK] = { do_lock, sizeof(struct pm_lock_req), false, true },
	[PM_MSG_UNLOCK] = { do_unlock, sizeof(struct pm_handle_req), false, true },
	[PM_MSG_SET_POLICY] = { do_set_policy, sizeof(struct pm_policy_req), false, true },
	[PM_MSG_NODES] = { do_nodes, 0, false, false },
	[PM_MSG_DEBUG_STAT] = { do_debug_stat, 0, false, false },
	[PM_MSG_ATTACH_KEY] = { do_attach_key, 0, false, false },
	[PM_MSG_ATTACH] = { do_attach, sizeof(struct pm_attach_req), false, false },
	[PM_MSG_RESOLVE] = { do_resolve, sizeof(struct pm_resolve_req), false, false },
	[PM_MSG_MOVE] = { do_move, sizeof(struct pm_move_req), false, true },
	[PM_MSG_PING_NODE] = { do_ping_node, sizeof(struct pm_ping_req), false, false },
	[PM_MSG_WINDOW] = { do_window, 0, false, false },
};

/* Whether a body of len bytes is one a request of (known) type takes. */
static bool body_fits(uint32_t type, uint32_t len)
{
	return handlers[type].variable ? len >= handlers[type].body
				       : len == handlers[type].body;
}

static error_t dispatch(struct pmd_server *srv, struct pmd_session *s,
			uint32_t type, const void *body, uint32_t len,
			struct reply *r)
{
	uint64_t h[2] = { 0, 0 }, id;

	if (handlers[type].handle) {
		memcpy(&h[0], body, sizeof(h[0]));
		if (type == PM_MSG_COPY) /* the other handle too */
			memcpy(&h[1], (const uint8_t *)body +
			       offsetof(struct pm_copy_req, dst), sizeof(h[1]));
	}
	/* Handles another home serves go there. */
	if (s->nfwd && ((h[0] | h[1]) & FWD_BIT))
		return fwd_request(srv, s, type, body, len, h[0], r);
	/* A container with remote work in flight (frames on their way in
	 * or out) is left alone until it ends. */
	for (int i = 0; i < 2 && srv->nbusy; i++)
		if (h[i] && !pmd_container_id_of(srv->core, s->task, h[i], &id) &&
		    busy_test(srv, id))
			return EAGAIN;
	return handlers[type].fn(srv, s, body, len, r);
}

/* A forwarded request (FWD_OP) from node src for proxy task t: run as a
 * session with no socket, answered to src now or when it ends. */
static void serve_forwarded(void *arg, pm_node_t src, uint64_t src_inc,
			    uint64_t id, struct pmd_task *t, uint16_t type,
			    const void *body, uint32_t len)
{
	struct pmd_server *srv = arg;
	struct pmd_session *vs = calloc(1, sizeof(*vs));
	struct reply r = { 0 };
	error_t err;

	if (!vs) {
		pmd_cluster_answer(srv->cluster, src, src_inc, PMD_NREQ_FWD_OP,
				   id, ENOMEM, NULL, 0);
		return;
	}
	*vs = (struct pmd_session){ .fd = -1, .task = t, .srv = srv,
				    .virt = true, .vnode = src, .vinc = src_inc,
				    .vid = id, .parked_type = type };
	pmd_list_add(&srv->vsessions, &vs->link);
	if (!fwd_type(type))
		err = EOPNOTSUPP;
	else if (!body_fits(type, len))
		err = EPROTO;
	else
		err = dispatch(srv, vs, type, body, len, &r);
	if (err == EAGAIN) {
		if (wait_for_container(srv, vs, type, 0, body, len))
			return;
		err = ENOMEM;
	}
	if (err == EINPROGRESS) {
		vs->parked = true;
		return;
	}
	reply_send(srv, vs, NULL, err, &r);
	session_close(srv, vs);
}

/* A proxy task goes: its forwarded requests end unanswered (its node
 * said goodbye, or is gone). */
static void proxy_gone(void *arg, struct pmd_task *t)
{
	struct pmd_server *srv = arg;
	struct pmd_list *pos, *tmp;

	pmd_list_for_each_safe(pos, tmp, &srv->vsessions) {
		struct pmd_session *vs = pmd_container_of(pos, struct pmd_session,
							  link);
		if (vs->task == t)
			session_close(srv, vs); /* cancels its call too */
	}
}

/* Reads and serves one request; false when the session must close. */
static bool session_serve(struct pmd_server *srv, struct pmd_session *s)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * RX_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = srv->rx, .iov_len = sizeof(srv->rx) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.buf,
			      .msg_controllen = sizeof(ctl.buf) };
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)srv->rx;
	struct reply r = { 0 };
	ssize_t n;
	error_t err;

	n = recvmsg(s->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	/* A task has no business sending descriptors: close them unread. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
	     c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int fds[RX_FDS_MAX];
		memcpy(fds, CMSG_DATA(c), sizeof(int) * (size_t)nfds);
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
	}
	if (n == 0)
		return false; /* the task hung up */
	if ((msg.msg_flags & MSG_TRUNC) || (size_t)n < sizeof(*h) ||
	    h->magic != PM_PROTO_MAGIC || h->version != PM_PROTO_VERSION ||
	    h->length != (uint32_t)n) {
		pmd_warn("task %#lx sent a malformed message (%zd bytes); "
			 "closing it", s->task ? (unsigned long)s->task->id : 0ul,
			 n);
		return false;
	}

	uint32_t type = h->type, body_len = (uint32_t)n - sizeof(*h);
	if (type == 0 || type >= PM_MSG_TYPE_MAX || !handlers[type].fn) {
		err = EPROTO;
	} else if (!body_fits(type, body_len)) {
		err = EPROTO;
	} else if (!s->task && type != PM_MSG_HELLO && type != PM_MSG_ATTACH) {
		err = EPROTO;
	} else if (s->fault && type != PM_MSG_RESOLVE) {
		err = EPROTO;
	} else {
		/* The body sits after a 16-byte header: 8-byte aligned. */
		err = dispatch(srv, s, type, h + 1, body_len, &r);
	}
	srv->requests++;
	if (err == EAGAIN) {
		/* Its container has remote work in flight: it runs after. */
		if (wait_for_container(srv, s, (uint16_t)type, h->seq, h + 1,
				       body_len))
			return true;
		err = ENOMEM;
	}
	if (err == EINPROGRESS) {
		/* Parked until another node answers: read nothing more from
		 * it meanwhile (its input goes off if it sends more). */
		s->parked = true;
		s->parked_type = (uint16_t)type;
		s->parked_seq = h->seq;
		return true;
	}
	if (err == EPROTO)
		pmd_debug("task %#lx: bad request of type %u",
			  s->task ? (unsigned long)s->task->id : 0ul, type);
	bool ok = reply_send(srv, s, h, err, &r);
	/* Slots freed by the request are punched after the reply is out. */
	pmd_segtab_flush(&srv->core->segs);
	return ok;
}

static void server_accept(struct pmd_server *srv)
{
	for (;;) {
		int fd = accept4(srv->listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct pmd_session *s;
		struct epoll_event ev = { .events = EPOLLIN };

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				pmd_warn("accept: %m");
			return;
		}
		s = calloc(1, sizeof(*s));
		if (!s) {
			pmd_warn("no memory for a new session");
			close(fd);
			continue;
		}
		s->fd = fd;
		s->srv = srv;
		ev.data.ptr = s;
		if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			pmd_warn("epoll_ctl: %m");
			close(fd);
			free(s);
			continue;
		}
		pmd_list_add(&srv->sessions, &s->link);
		srv->sessions_total++;
	}
}

/* Binds the socket, refusing to take it over from a live pmd. */
static error_t server_listen(struct pmd_server *srv, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[sizeof(sa.sun_path)];
	char *slash;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		pmd_err("socket path too long: %s", path);
		return ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = 0;
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			error_t err = errno;
			pmd_err("cannot create %s: %m", dir);
			return err;
		}
	}

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int probe;
		bool live;

		if (errno != EADDRINUSE)
			goto fail;
		probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		live = probe >= 0 &&
		       connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			pmd_err("another pmd is serving %s", path);
			close(fd);
			return EADDRINUSE;
		}
		unlink(path); /* stale, from a pmd that did not stop cleanly */
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			goto fail;
	}
	/* Any local user may be a task: tasks are untrusted anyway. */
	if (chmod(path, 0666) < 0)
		pmd_warn("chmod %s: %m", path);
	if (listen(fd, 128) < 0)
		goto fail;
	srv->listen_fd = fd;
	return 0;
fail:;
	error_t err = errno;
	pmd_err("cannot listen on %s: %m", path);
	close(fd);
	return err;
}

error_t pmd_server_create(const struct pmd_config *cfg, struct pmd_core *core,
			  struct pmd_server **srv_out)
{
	struct pmd_server *srv;
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t mask;
	error_t err;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return ENOMEM;
	srv->core = core;
	srv->listen_fd = srv->signal_fd = srv->epoll_fd = -1;
	pmd_list_init(&srv->sessions);
	pmd_list_init(&srv->waiters);
	pmd_list_init(&srv->vsessions);
	strcpy(srv->socket_path, cfg->socket);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	srv->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (srv->signal_fd < 0 || srv->epoll_fd < 0) {
		err = errno;
		pmd_err("signalfd/epoll: %m");
		goto fail;
	}
	err = server_listen(srv, cfg->socket);
	if (err)
		goto fail;
	ev.data.ptr = &srv->listen_fd;
	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->listen_fd, &ev) < 0)
		goto fail_errno;
	ev.data.ptr = &srv->signal_fd;
	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->signal_fd, &ev) < 0)
		goto fail_errno;
	if (cfg->cluster_conf) {
		int fds[2], nfds;

		srv->poll_ns = (uint64_t)cfg->poll_us * 1000u;
		err = pmd_cluster_start(cfg->cluster_conf, cfg->node_id, core,
					&srv->cluster);
		if (err)
			goto fail;
		pmd_cluster_set_hooks(srv->cluster, serve_forwarded, proxy_gone,
				      srv);
		nfds = pmd_cluster_fds(srv->cluster, fds);
		ev.data.ptr = &srv->cluster_tag;
		for (int i = 0; i < nfds; i++)
			if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fds[i], &ev) < 0)
				goto fail_errno;
	}
	*srv_out = srv;
	return 0;

fail_errno:
	err = errno;
	pmd_err("epoll_ctl: %m");
fail:
	pmd_server_destroy(srv);
	return err;
}

/*
 * The loop. In a cluster with poll_ns set, the pmd busy-polls the fabric
 * and its sockets instead of sleeping in epoll while it waits for peers
 * (node requests, one-sided reads and writes in flight: its task waits
 * too; up to poll_ns without progress), and for poll_ns after a peer
 * last needed it (a message, or a wake-up by the fabric: over TCP
 * one-sided reads and writes that target this node need its progress
 * and leave no completion). A pmd that sleeps is woken for every
 * message, tens of microseconds across vCPUs; one that spins needs a
 * core of its own (on a CPU shared with its peer it holds the peer off
 * for up to poll_ns an operation, yielding or not), so it is off by
 * default.
 */
error_t pmd_server_run(struct pmd_server *srv)
{
	struct epoll_event evs[EPOLL_BATCH];

	for (;;) {
		bool spin = false;
		int n;

		if (srv->cluster && srv->poll_ns) {
			uint64_t now = mono_ns();
			bool waiting = pmd_cluster_waiting(srv->cluster);
			if (waiting && !srv->waiting)
				srv->wait_ns = now;
			srv->waiting = waiting;
			spin = (waiting && now - srv->wait_ns < srv->poll_ns) ||
			       now - srv->served_ns < srv->poll_ns;
		}
		if (srv->cluster) {
			unsigned got = pmd_cluster_run(srv->cluster,
				srv->core->budget.total,
				pmd_budget_free(&srv->core->budget), !spin);
			/* A peer's message, or progress of a long wait
			 * (bandwidth): go on polling. */
			if (got && srv->poll_ns) {
				if (got & PMD_CLUSTER_SERVED)
					srv->served_ns = mono_ns();
				else
					srv->wait_ns = mono_ns();
				spin = true;
			}
		}
		n = epoll_wait(srv->epoll_fd, evs, EPOLL_BATCH,
			       spin ? 0 : srv->cluster
			       ? pmd_cluster_timeout_ms(srv->cluster) : -1);
		if (spin && n == 0) {
			/* Nothing yet. Unless our own task waits with us,
			 * let what shares the CPU run (a task our answer
			 * woke, a peer pmd). */
			if (!srv->waiting)
				sched_yield();
			continue;
		}

		if (n < 0) {
			if (errno == EINTR)
				continue;
			error_t err = errno;
			pmd_err("epoll_wait: %m");
			return err;
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &srv->signal_fd) {
				struct signalfd_siginfo si;
				if (read(srv->signal_fd, &si, sizeof(si)) > 0)
					pmd_info("signal %u: stopping",
						 si.ssi_signo);
				return 0;
			}
			if (p == &srv->listen_fd) {
				server_accept(srv);
				continue;
			}
			if (p == &srv->cluster_tag) {
				/* Woken by the fabric: a peer's traffic, also
				 * one-sided reads and writes that leave no
				 * completion here but need our progress. */
				if (srv->poll_ns && !spin)
					srv->served_ns = mono_ns();
				continue; /* run at the top of the loop */
			}
			struct pmd_session *s = p;
			if (s->parked) {
				/* One request at a time: more waits, with
				 * its input off (a hang-up still shows). */
				struct epoll_event off = { .events = 0,
							   .data.ptr = s };
				if ((evs[i].events & (EPOLLHUP | EPOLLERR)) ||
				    (!s->masked &&
				     epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD,
					       s->fd, &off) < 0))
					session_close(srv, s);
				else
					s->masked = true;
				continue;
			}
			if (!session_serve(srv, s))
				session_close(srv, s);
		}
	}
}

void pmd_server_destroy(struct pmd_server *srv)
{
	struct pmd_list *pos, *tmp;

	if (!srv)
		return;
	pmd_list_for_each_safe(pos, tmp, &srv->sessions)
		session_close(srv, pmd_container_of(pos, struct pmd_session,
						    link));
	if (srv->listen_fd >= 0) {
		close(srv->listen_fd);
		unlink(srv->socket_path);
	}
	pmd_list_for_each_safe(pos, tmp, &srv->vsessions)
		session_close(srv, pmd_container_of(pos, struct pmd_session,
						    link));
	pmd_cluster_stop(srv->cluster);
	free(srv->busy);
	if (srv->signal_fd >= 0)
		close(srv->signal_fd);
	if (srv->epoll_fd >= 0)
		close(srv->epoll_fd);
	free(srv);
}
