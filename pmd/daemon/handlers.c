/*
 * handlers.c - every request type a task sends: its own checks, then the
 * core's decode and invoke; remote work, placed allocations and
 * forwarding where a decoded request needs them. The table at the end
 * says each type's handler and body size; pmd_dispatch is the one place
 * that reads a request's handles, forwards those another home serves,
 * and makes a request wait while its container has remote work in
 * flight.
 */
#include "daemon.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "alloc.h"
#include "check.h"
#include "clock.h"
#include "container.h"
#include "copy.h"
#include "io.h"
#include "lock.h"
#include "log.h"
#include "share.h"
#include "task.h"
#include "view.h"

typedef enum pmd_step handler_fn(struct pmd_server *srv,
				 struct pmd_session *s,
				 const struct pmd_req *q, struct pmd_reply *r);

/* ---- sessions ---- */

static enum pmd_step do_hello(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_hello_req *req = q->body;
	struct pm_hello_rep *rep = pmd_reply_body(srv);
	struct ucred cred = { 0 };
	socklen_t len = sizeof(cred);
	error_t err;

	if (s->task)
		return pmd_reply_now(r, EPROTO);
	if (req->flags) {
		r->why.arg = PMD_ARG_HELLO_FLAGS;
		return pmd_reply_now(r, EINVAL);
	}
	if (req->version < PM_PROTO_VERSION) {
		r->why.arg = PMD_ARG_HELLO_VERSION;
		return pmd_reply_now(r, EPROTO);
	}
	if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		pmd_warn("SO_PEERCRED: %m");
	err = pmd_task_create(srv->core, cred.uid, cred.gid, (uint32_t)cred.pid,
			      &s->task);
	if (err)
		return pmd_reply_now(r, err);
	s->task->hears_unshared = req->version >= PM_HELLO_UNSHARED;
	pmd_log_limited(&srv->sessions_said, PMD_LOG_INFO,
			"task %#lx connected: uid %u pid %u",
			(unsigned long)s->task->id, cred.uid, cred.pid);
	*rep = (struct pm_hello_rep){ .task = s->task->id,
				      .node = srv->core->cfg.node,
				      .frame_size = PM_FRAME_SIZE,
				      .io_max = PM_IO_MAX,
				      .map_max = PM_MAP_MAX };
	r->body_len = sizeof(*rep);
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_task_stat(struct pmd_server *srv,
				  struct pmd_session *s,
				  const struct pmd_req *q, struct pmd_reply *r)
{
	pmd_task_stat(s->task, pmd_reply_body(srv));
	r->body_len = sizeof(struct pm_task_stat_rep);
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_window(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, struct pmd_reply *r)
{
	static int fd;
	struct pm_window_rep *rep = pmd_reply_body(srv);
	error_t err;

	if (s->fault || s->virt)
		return pmd_reply_now(r, EPROTO);
	if (s->win)
		return pmd_reply_now(r, EEXIST);
	err = pmd_window_create(srv, &s->win);
	if (err)
		return pmd_reply_now(r, err);
	s->win_gone = false;
	rep->size = PM_IO_MAX;
	r->body_len = sizeof(*rep);
	fd = s->win->fd;
	r->fds = &fd;
	r->nfds = 1;
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_attach_key(struct pmd_server *srv,
				   struct pmd_session *s,
				   const struct pmd_req *q,
				   struct pmd_reply *r)
{
	struct pm_attach_key_rep *rep = pmd_reply_body(srv);
	struct pmd_task *t = s->task;

	if (s->fault)
		return pmd_reply_now(r, EPROTO);
	if (t->fault_session)
		return pmd_reply_now(r, EBUSY); /* one fault session a task */
	do
		randombytes_buf(t->attach_key, sizeof(t->attach_key));
	while (sodium_is_zero(t->attach_key, sizeof(t->attach_key)));
	memcpy(rep->key, t->attach_key, sizeof(rep->key));
	r->body_len = sizeof(*rep);
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_attach(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_attach_req *req = q->body;
	struct ucred cred = { 0 };
	socklen_t len = sizeof(cred);
	struct pmd_task *t;

	if (s->task)
		return pmd_reply_now(r, EPROTO);
	r->why.arg = PMD_ARG_ATTACH_TASK;
	t = pmd_task_find(srv->core, req->task);
	if (!t)
		return pmd_reply_now(r, ESRCH);
	r->why.arg = PMD_ARG_ATTACH_KEY;
	if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (uint32_t)cred.pid != t->pid ||
	    sodium_is_zero(t->attach_key, sizeof(t->attach_key)) ||
	    sodium_memcmp(req->key, t->attach_key, sizeof(req->key)) != 0)
		return pmd_reply_now(r, EACCES);
	if (t->fault_session)
		return pmd_reply_now(r, EBUSY);
	r->why.arg = PMD_ARG_NONE;
	sodium_memzero(t->attach_key, sizeof(t->attach_key)); /* one time */
	s->task = t;
	s->fault = true;
	t->follows = true;
	t->fault_session = s;
	pmd_debug("task %#lx: fault session attached", (unsigned long)t->id);
	return pmd_reply_now(r, 0);
}

/* ---- containers ---- */

static enum pmd_step do_create(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, struct pmd_reply *r)
{
	struct pm_handle_rep *rep = pmd_reply_body(srv);
	error_t err = pmd_container_create(srv->core, s->task, &rep->handle);

	if (!err)
		r->body_len = sizeof(*rep);
	return pmd_reply_now(r, err);
}

/* A request waiting for slots of a task's mapping to be retired. */
struct tctx {
	struct pmd_pending base;
	struct pmd_server *srv;      /* (C) */
	uint32_t taking;             /* (L) answers still awaited */
	error_t status;              /* (C) the request's answer then */
};

static void taken_back(void *arg, error_t status, const void *body,
		       size_t len)
{
	struct tctx *x = arg;
	struct pmd_reply r = { .status = x->status };
	struct pmd_session *s = x->base.s;

	(void)status; /* down: nobody there sees the slot any more */
	(void)body;
	(void)len;
	if (--x->taking)
		return;
	if (s) {
		s->pending = NULL;
		pmd_session_answer(x->srv, s, &r);
	}
	free(x);
}

/* Frames this request let go of that lived in slots another node keeps
 * for a task's mapping (a forwarded map put them there): those slots are
 * retired before the answer (err), so the task sees nothing of them
 * after it. */
static enum pmd_step take_back_first(struct pmd_server *srv,
				     struct pmd_session *s, error_t err,
				     struct pmd_reply *r)
{
	struct pmd_core *core = srv->core;
	struct tctx *x;
	uint32_t k = 0;

	if (!srv->cluster)
		return pmd_reply_now(r, err);
	/* Those slots to the end of the queue, and off it now. */
	for (uint32_t i = 0; i < core->nrfree; i++) {
		const struct pmd_rseg *g = pmd_rseg_find(core,
							 core->rfree[i].node,
							 core->rfree[i].seg);
		if (!g || !g->tag_task) {
			struct pmd_rfree t = core->rfree[k];
			core->rfree[k++] = core->rfree[i];
			core->rfree[i] = t;
		}
	}
	if (k == core->nrfree)
		return pmd_reply_now(r, err);
	x = calloc(1, sizeof(*x));
	if (!x)
		return pmd_reply_now(r, err); /* given back unawaited */
	*x = (struct tctx){ .srv = srv, .status = err };
	x->taking = pmd_cluster_take_back(srv->cluster, core->rfree + k,
					  core->nrfree - k, taken_back, x);
	core->nrfree = k;
	if (!x->taking) {
		free(x);
		return pmd_reply_now(r, err);
	}
	return pmd_session_park(s, &x->base);
}

static enum pmd_step do_destroy(struct pmd_server *srv, struct pmd_session *s,
				const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_handle_req *req = q->body;
	enum pmd_step step;
	error_t err;
	bool go;

	err = pmd_release_stops(srv->core, s->task, req->handle, 0, UINT64_MAX);
	if (err)
		return pmd_reply_now(r, err);
	step = pmd_stop_first(srv, s, q, r, &go);
	if (!go)
		return step;
	err = pmd_container_destroy(srv->core, s->task, req->handle, &r->why);
	return err ? pmd_reply_now(r, err) : take_back_first(srv, s, 0, r);
}

static enum pmd_step do_stat(struct pmd_server *srv, struct pmd_session *s,
			     const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_handle_req *req = q->body;
	error_t err = pmd_container_stat(srv->core, s->task, req->handle,
					 pmd_reply_body(srv), &r->why);

	if (!err)
		r->body_len = sizeof(struct pm_stat_rep);
	return pmd_reply_now(r, err);
}

static enum pmd_step do_set_policy(struct pmd_server *srv,
				   struct pmd_session *s,
				   const struct pmd_req *q,
				   struct pmd_reply *r)
{
	const struct pm_policy_req *req = q->body;
	struct pmd_cap *cap;
	error_t err;

	if (req->pad)
		return pmd_reply_now(r, EPROTO);
	/* Another node must be in the cluster. */
	if (req->policy == PM_PLACE_NODE && req->node != srv->core->cfg.node &&
	    (!srv->cluster || !pmd_cluster_knows(srv->cluster, req->node))) {
		err = pmd_cap_decode(s->task, req->handle, 0, 0, &cap, &r->why);
		if (err)
			return pmd_reply_now(r, err);
		r->why.arg = PMD_ARG_POLICY_NODE;
		return pmd_reply_now(r, ENODEV);
	}
	return pmd_reply_now(r, pmd_container_set_policy(srv->core, s->task,
							 req->handle,
							 req->policy,
							 req->node, &r->why));
}

/* ---- frames ---- */

/* Frames of c are placed here (its policy). */
static bool placed_here(const struct pmd_server *srv,
			const struct pmd_container *c)
{
	return c->policy == PM_PLACE_LOCAL ||
	       (c->policy == PM_PLACE_NODE &&
		c->policy_node == srv->core->cfg.node);
}

static enum pmd_step do_allocate(struct pmd_server *srv, struct pmd_session *s,
				 const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_alloc_req *req = q->body;
	const struct pmd_container *c = pmd_container_lookup(s->task,
							     req->handle);
	uint32_t done = 0;
	enum pmd_step step;
	bool placed, go;

	/* Guaranteed frames that find the node full of extra frames wait
	 * for some to come back, before any spill to another node (a look
	 * only when the node may lack room). */
	if (c && placed_here(srv, c) &&
	    pmd_budget_room(&srv->core->budget) < req->count) {
		struct pmd_culprit why;
		struct pmd_alloc a;

		if (!pmd_alloc_decode(srv->core, s->task, req->handle,
				      req->start, req->count, req->flags,
				      PMD_ALLOC_HERE, NULL, 0, &a, &why) &&
		    a.reclaim) {
			step = pmd_reclaim_wait(srv, s, q, a.reclaim, 0, false,
						&go);
			if (!go)
				return step;
		}
	}
	if (srv->cluster && c) {
		step = pmd_place_allocate(srv, s, req, c, &placed, r);
		if (placed)
			return step;
	}
	if (c && placed_here(srv, c)) {
		step = pmd_place_store(srv, s, req, &placed, r);
		if (placed)
			return step;
	}
	r->status = pmd_container_allocate(srv->core, s->task, req->handle,
					   req->start, req->count, req->flags,
					   NULL, 0, &done, &r->why);
	pmd_alloc_reply(srv, r, done);
	return PMD_STEP_REPLY;
}

/* The task has a reclaim handler (on), or no more: the pmd asks it for
 * extra frames back (RECLAIM, on its fault session). */
static enum pmd_step do_reclaim_handler(struct pmd_server *srv,
					struct pmd_session *s,
					const struct pmd_req *q,
					struct pmd_reply *r)
{
	const struct pm_reclaim_handler_req *req = q->body;

	(void)srv;
	if (s->fault || s->virt || req->pad || req->on > 1)
		return pmd_reply_now(r, EPROTO);
	if (req->on && !s->task->fault_session)
		return pmd_reply_now(r, EOPNOTSUPP); /* nobody hears RECLAIM */
	s->task->reclaim_asks = req->on;
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_deallocate(struct pmd_server *srv,
				   struct pmd_session *s,
				   const struct pmd_req *q,
				   struct pmd_reply *r)
{
	const struct pm_dealloc_req *req = q->body;
	enum pmd_step step;
	error_t err;
	bool go;

	err = pmd_release_stops(srv->core, s->task, req->handle, req->start,
				req->count);
	if (err)
		return pmd_reply_now(r, err);
	step = pmd_stop_first(srv, s, q, r, &go);
	if (!go)
		return step;
	err = pmd_container_deallocate(srv->core, s->task, req->handle,
				       req->start, req->count, &r->why);
	return err ? pmd_reply_now(r, err) : take_back_first(srv, s, 0, r);
}

/* The map's reply: runs, segment ids, and their descriptors (and the
 * view's, the first time). */
static enum pmd_step map_reply(struct pmd_server *srv,
			       const struct pmd_map_out *m,
			       struct pmd_reply *r)
{
	static int fds[PM_MAP_FDS_MAX + 1];
	struct pm_map_rep *rep = pmd_reply_body(srv);
	uint8_t *p = (uint8_t *)(rep + 1);

	*rep = (struct pm_map_rep){ .granted = m->granted, .done = m->done,
				    .nruns = m->nruns, .nsegs = m->nsegs,
				    .view = m->view->id,
				    .view_fd = m->send_view };
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
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_map(struct pmd_server *srv, struct pmd_session *s,
			    const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_map_req *req = q->body;
	struct pmd_map m;
	enum pmd_step step;
	error_t err;
	bool none, go;

	if (s->virt && !s->sub) /* another node's task: the frames go there */
		return pmd_remote_push(srv, s, q, r);
	err = pmd_map_decode(srv->core, s->task, req->handle, req->start,
			     req->count, req->flags, &m, &r->why);
	if (err)
		return pmd_reply_now(r, err);
	if (m.remote) /* here first, a batch at a time; then the map again */
		return pmd_remote_pull(srv, s, m.cont, req->handle, req->start,
				       req->count, 0, false, q, &none, r);
	/* From a ring, a map that would give descriptors goes to the
	 * socket (before anything is done but the frames brought home). */
	if (s->from_ring && pmd_map_sends_fds(srv->core, s->task, &m)) {
		s->to_socket = true;
		return pmd_reply_now(r, 0);
	}
	step = pmd_stop_first(srv, s, q, r, &go);
	if (!go)
		return step;
	err = pmd_map_invoke(srv->core, s->task, &m, &srv->map);
	if (err)
		return pmd_reply_now(r, err);
	return map_reply(srv, &srv->map, r);
}

/* Flags of a READ or WRITE: the window only for a session that has one
 * (EBADFD: it had one, retired). */
static error_t io_flags_check(const struct pmd_session *s,
			      const struct pm_io_req *q)
{
	return (q->flags & ~PM_IO_WINDOW) ? EPROTO
					  : pmd_window_usable(s, q->flags);
}

static enum pmd_step do_read(struct pmd_server *srv, struct pmd_session *s,
			     const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_io_req *req = q->body;
	bool window = req->flags & PM_IO_WINDOW;
	struct pmd_io io;
	error_t err;

	if ((err = io_flags_check(s, req)))
		return pmd_reply_now(r, err);
	err = pmd_io_decode(srv->core, s->task, req->handle, false, req->frame,
			    req->offset, req->len, &io, &r->why);
	if (err)
		return pmd_reply_now(r, err);
	if (io.nremote)
		return pmd_remote_io(srv, s, &io, window, NULL, r);
	pmd_io_read(srv->core, &io, window ? s->win->base
					   : pmd_reply_body(srv));
	if (!window)
		r->body_len = req->len;
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_write(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_io_req *req = q->body;
	bool window = req->flags & PM_IO_WINDOW;
	const void *data = req + 1;
	struct pmd_io io;
	enum pmd_step step;
	error_t err;
	bool go;

	if ((err = io_flags_check(s, req)))
		return pmd_reply_now(r, err);
	if (q->len != sizeof(*req) + (window ? 0 : (uint64_t)req->len))
		return pmd_reply_now(r, EPROTO);
	if (window)
		data = s->win->base; /* checked: the session has one */
	err = pmd_io_decode(srv->core, s->task, req->handle, true, req->frame,
			    req->offset, req->len, &io, &r->why);
	if (err)
		return pmd_reply_now(r, err);
	/* (Copies it breaks here stop their mappings first, whether or
	 * not it also writes frames on other nodes.) */
	step = pmd_stop_first(srv, s, q, r, &go);
	if (!go)
		return step;
	if (io.nremote)
		return pmd_remote_io(srv, s, &io, window, data, r);
	pmd_io_write(srv->core, &io, data);
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_copy(struct pmd_server *srv, struct pmd_session *s,
			     const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_copy_req *req = q->body;
	struct pmd_copy cp;
	enum pmd_step step;
	error_t err;
	bool none, go;

	err = pmd_copy_decode(srv->core, s->task, req->src, req->src_start,
			      req->dst, req->dst_start, req->count, req->flags,
			      &cp, &r->why);
	if (err)
		return pmd_reply_now(r, err);
	if (!cp.remote) {
		step = pmd_stop_first(srv, s, q, r, &go);
		if (!go)
			return step;
		return pmd_reply_now(r, pmd_copy_invoke(srv->core, &cp));
	}
	/* Remote frames are brought here (sources first), then the copy
	 * runs again: a copy across nodes is a copy here. */
	step = pmd_remote_pull(srv, s, cp.src, req->src, req->src_start,
			       req->count, 0, false, q, &none, r);
	if (none)
		step = pmd_remote_pull(srv, s, cp.dst, req->dst,
				       req->dst_start, req->count, 0, false, q,
				       &none, r);
	return step;
}

static enum pmd_step do_move(struct pmd_server *srv, struct pmd_session *s,
			     const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_move_req *req = q->body;
	struct pmd_move mv;
	enum pmd_step step;
	error_t err;
	bool go;

	err = pmd_move_decode(srv->core, s->task, req->handle, req->frame,
			      &mv, &r->why);
	if (err)
		return pmd_reply_now(r, err);
	step = pmd_stop_first(srv, s, q, r, &go);
	if (!go)
		return step;
	pmd_move_invoke(srv->core, &mv);
	return pmd_reply_now(r, 0);
}

/* A store through a mapping to a frame shared copy-on-write: the frame
 * gets a private slot (its mappings of the shared one go first). */
static enum pmd_step do_break(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_break_req *req = q->body;
	struct pm_break_rep *rep = pmd_reply_body(srv);
	struct pmd_break bk;
	enum pmd_step step;
	error_t err;
	bool go;

	if (req->pad)
		return pmd_reply_now(r, EPROTO);
	err = pmd_break_decode(srv->core, s->task, req->handle, req->frame,
			       req->segment, req->slot, &bk, &r->why);
	if (err)
		return pmd_reply_now(r, err);
	*rep = (struct pm_break_rep){ .flags = bk.shared ? PM_BREAK_BROKEN : 0 };
	r->body_len = sizeof(*rep);
	if (!bk.shared)
		return pmd_reply_now(r, 0);
	step = pmd_stop_first(srv, s, q, r, &go);
	if (!go)
		return step;
	pmd_break_invoke(srv->core, &bk);
	rep = pmd_reply_body(srv);
	*rep = (struct pm_break_rep){ .flags = PM_BREAK_BROKEN };
	r->body_len = sizeof(*rep);
	return pmd_reply_now(r, 0);
}

/* The answer to RESOLVE or WHERE (out from the core). */
static enum pmd_step resolve_answer(struct pmd_server *srv,
				    struct pmd_session *s,
				    const struct pmd_req *q, error_t err,
				    struct pmd_resolve_out *out,
				    struct pmd_reply *r)
{
	static int fd;
	struct pm_resolve_rep *rep = pmd_reply_body(srv);

	if (err)
		return pmd_reply_now(r, err);
	if (out->remote) {
		/* It went to another node: back here first, as the task's
		 * own handle may bring it. */
		container_t h = pmd_container_handle_of(s->task, out->cont);
		struct pmd_cap *cap;
		enum pmd_step step;
		bool none;

		if (!h)
			return pmd_reply_now(r, ENOENT);
		err = pmd_cap_decode(s->task, h, PMD_RIGHT_READ, PMD_USE_ALL,
				     &cap, &r->why);
		if (err)
			return pmd_reply_now(r, err);
		step = pmd_remote_pull(srv, s, out->cont, h, out->frame, 1, 0,
				       false, q, &none, r);
		return none ? pmd_reply_now(r, ENOENT) : step;
	}
	*rep = (struct pm_resolve_rep){ .segment = out->seg->id,
					.slot = out->slot,
					.flags = out->cow ? PM_VIEW_COW : 0,
					.fd = out->send_fd };
	r->body_len = sizeof(*rep);
	if (out->send_fd) {
		fd = out->seg->fd;
		r->fds = &fd;
		r->nfds = 1;
	}
	return pmd_reply_now(r, 0);
}

/* A frame in another container's segment gets a slot of its own first
 * (its mappings there go before): then where it is. */
static error_t resolve_own(struct pmd_server *srv, struct pmd_session *s,
			   const struct pmd_req *q, struct pmd_reply *r,
			   struct pmd_resolve_out *out, enum pmd_step *step)
{
	bool go;

	*step = pmd_stop_first(srv, s, q, r, &go);
	if (!go)
		return EINPROGRESS;
	pmd_resolve_own(srv->core, out);
	return 0;
}

/* A fault on a frame that moved: where it is now (its new segment's
 * descriptor if the task lacks it); a frame of another home that this
 * node held for the task's mapping asks that home; one that went to
 * another node comes back here first. */
static enum pmd_step do_resolve(struct pmd_server *srv, struct pmd_session *s,
				const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_resolve_req *req = q->body;
	struct pmd_resolve_out out;
	enum pmd_step step;
	error_t err;

	if (req->pad)
		return pmd_reply_now(r, EPROTO);
	if (srv->cluster) {
		pm_node_t home;
		container_t rh;
		frame_t f;

		err = pmd_cluster_pushed_where(srv->cluster, s->task->id,
					       req->segment, req->slot, &home,
					       &rh, &f);
		if (!err)
			return pmd_fwd_resolve(srv, s, home, rh, f, r);
		if (err != ENOENT)
			return pmd_reply_now(r, err);
	}
	err = pmd_container_resolve(srv->core, s->task, req->segment,
				    req->slot, &out);
	if (!err && out.foreign) {
		if (resolve_own(srv, s, q, r, &out, &step))
			return step;
		err = pmd_container_resolve(srv->core, s->task, req->segment,
					    req->slot, &out);
	}
	return resolve_answer(srv, s, q, err, &out, r);
}

/* A fault on a mapping the pmd took away: where the frame is now. */
static enum pmd_step do_where(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_where_req *req = q->body;
	struct pmd_resolve_out out;
	enum pmd_step step;
	error_t err;

	err = pmd_container_where(srv->core, s->task, req->handle, req->frame,
				  &out);
	if (!err && out.foreign) {
		if (resolve_own(srv, s, q, r, &out, &step))
			return step;
		err = pmd_container_where(srv->core, s->task, req->handle,
					  req->frame, &out);
	}
	return resolve_answer(srv, s, q, err, &out, r);
}

/* ---- sharing ---- */

static enum pmd_step do_share(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_share_req *req = q->body;
	struct pm_handle_rep *rep = pmd_reply_body(srv);
	error_t err = pmd_container_share(srv->core, s->task, req->handle,
					  req->task, &rep->handle, &r->why);

	if (!err)
		r->body_len = sizeof(*rep);
	return pmd_reply_now(r, err);
}

static enum pmd_step do_unshare(struct pmd_server *srv, struct pmd_session *s,
				const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_share_req *req = q->body;
	struct pmd_task *rt = pmd_task_find(srv->core, req->task);
	struct pmd_culprit why = { 0 };
	struct pmd_cap *cap;
	enum pmd_step step;
	error_t err;
	bool go;

	/* Frames a forwarded map put on that task's node come back first:
	 * it must see nothing more. (A handle that unshare refuses says so
	 * with unshare's words, below.) */
	if (rt && rt->proxy && srv->cluster &&
	    !pmd_cap_decode(s->task, req->handle, PMD_RIGHT_OWNER, 0, &cap,
			    &why)) {
		bool none;

		step = pmd_remote_pull(srv, s, cap->cont, req->handle, 0, 0,
				       req->task, true, q, &none, r);
		if (!none)
			return step;
		*r = (struct pmd_reply){ 0 };
	}
	err = pmd_unshare_plan(srv->core, s->task, req->handle, req->task,
			       &r->why);
	if (err)
		return pmd_reply_now(r, err);
	step = pmd_stop_first(srv, s, q, r, &go);
	if (!go)
		return step;
	return pmd_reply_now(r, pmd_container_unshare(srv->core, s->task,
						       req->handle, req->task,
						       &r->why));
}

static enum pmd_step do_export(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_handle_req *req = q->body;
	error_t err = pmd_cap_export(srv->core, s->task, req->handle,
				     pmd_reply_body(srv), &r->why);

	if (!err)
		r->body_len = sizeof(struct pm_token);
	return pmd_reply_now(r, err);
}

static enum pmd_step do_import(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, struct pmd_reply *r)
{
	struct pm_handle_rep *rep = pmd_reply_body(srv);
	const struct pm_token *tok = q->body;
	uint64_t share;
	pm_node_t home;
	error_t err;

	/* The share id names its home in its high bits. */
	memcpy(&share, tok->bytes, sizeof(share));
	home = (pm_node_t)(share >> 48);
	if (home && home != srv->core->cfg.node && srv->cluster &&
	    pmd_cluster_knows(srv->cluster, home))
		return pmd_fwd_import(srv, s, tok, home, r);
	err = pmd_cap_import(srv->core, s->task, tok, &rep->handle, &r->why);
	if (!err)
		r->body_len = sizeof(*rep);
	return pmd_reply_now(r, err);
}

static enum pmd_step do_release(struct pmd_server *srv, struct pmd_session *s,
				const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_handle_req *req = q->body;

	return pmd_reply_now(r, pmd_cap_release(srv->core, s->task, req->handle,
						&r->why));
}

static enum pmd_step do_lock(struct pmd_server *srv, struct pmd_session *s,
			     const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_lock_req *req = q->body;

	if (req->pad)
		return pmd_reply_now(r, EPROTO);
	return pmd_reply_now(r, pmd_container_lock(srv->core, s->task,
						   req->handle, req->msec,
						   &r->why));
}

static enum pmd_step do_unlock(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_handle_req *req = q->body;

	return pmd_reply_now(r, pmd_container_unlock(srv->core, s->task,
						     req->handle, &r->why));
}

/* ---- the node and the cluster ---- */

static enum pmd_step do_nodes(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	struct pm_nodes_rep *rep = pmd_reply_body(srv);
	struct pm_node_entry *n = (struct pm_node_entry *)(rep + 1);
	struct pmd_core *core = srv->core;

	memset(rep, 0, sizeof(*rep) + sizeof(*n));
	rep->count = 1;
	n->id = core->cfg.node;
	n->state = PM_NODE_UP;
	n->frames_total = core->budget.total;
	n->frames_free = pmd_core_physical_free(core, UINT32_MAX);
	if (srv->cluster) {
		n->version = PMD_NREQ_VERSION;
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
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_debug_stat(struct pmd_server *srv,
				   struct pmd_session *s,
				   const struct pmd_req *q,
				   struct pmd_reply *r)
{
	struct pm_debug_rep *rep = pmd_reply_body(srv);
	struct pm_debug_loans_rep *loans;

	pmd_core_check(srv->core, rep);
	rep->requests = srv->requests;
	r->body_len = sizeof(*rep);
	/* The books of loans in and out are part of the node's. */
	if (srv->cluster && (loans = malloc(sizeof(*loans))) != NULL) {
		pmd_cluster_loans(srv->cluster, loans);
		rep->invariant_ok &= loans->ok;
		free(loans);
	}
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_debug_loans(struct pmd_server *srv,
				    struct pmd_session *s,
				    const struct pmd_req *q,
				    struct pmd_reply *r)
{
	struct pm_debug_loans_rep *rep = pmd_reply_body(srv);
	struct pm_debug_rep check;

	memset(rep, 0, sizeof(*rep));
	if (srv->cluster)
		pmd_cluster_loans(srv->cluster, rep);
	else
		rep->ok = 1;
	pmd_core_check(srv->core, &check);
	rep->ok &= check.invariant_ok;
	r->body_len = sizeof(*rep);
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_metrics(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, struct pmd_reply *r)
{
	r->body_len = (uint32_t)pmd_metrics_render(srv, pmd_reply_body(srv),
						   PM_MSG_MAX - PM_REPLY_HDR);
	return pmd_reply_now(r, 0);
}

/* ---- the operator's listings ---- */

/* Tasks and containers of everyone, and the settings: for the pmd's own
 * user (or root) only. */
static bool operator_asks(const struct pmd_session *s)
{
	return s->task && (s->task->uid == 0 || s->task->uid == geteuid());
}

/* Ids after `after`, smallest first, at most PM_LIST_PAGE of them (the
 * lists are in no id order: tasks and containers come and go). */
struct listed {
	uint64_t id;
	void *obj;
};

static int listed_cmp(const void *a, const void *b)
{
	const struct listed *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Sorts v[0..n) and says how many go in the page, *more set when some
 * stay out. */
static uint32_t listed_page(struct listed *v, size_t n, uint32_t *more)
{
	qsort(v, n, sizeof(*v), listed_cmp);
	*more = n > PM_LIST_PAGE;
	return n > PM_LIST_PAGE ? PM_LIST_PAGE : (uint32_t)n;
}

static enum pmd_step do_tasks(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_list_req *req = q->body;
	struct pm_list_rep *rep = pmd_reply_body(srv);
	struct pm_task_ent *e = (struct pm_task_ent *)(rep + 1);
	struct listed *v;
	size_t n = 0;

	if (!operator_asks(s))
		return pmd_reply_now(r, EPERM);
	v = malloc((srv->core->ntasks + 1) * sizeof(*v));
	if (!v)
		return pmd_reply_now(r, ENOMEM);
	for (struct pmd_list *l = srv->core->tasks.next;
	     l != &srv->core->tasks; l = l->next) {
		struct pmd_task *t = pmd_container_of(l, struct pmd_task, link);
		if (t->id > req->after)
			v[n++] = (struct listed){ .id = t->id, .obj = t };
	}
	*rep = (struct pm_list_rep){ 0 };
	rep->n = listed_page(v, n, &rep->more);
	for (uint32_t i = 0; i < rep->n; i++) {
		const struct pmd_task *t = v[i].obj;
		e[i] = (struct pm_task_ent){ .task = t->id, .uid = t->uid,
			.pid = t->pid, .guaranteed = t->charge.guaranteed,
			.extra_limit = t->charge.extra_limit,
			.allocated = t->charge.allocated,
			.extra_allocated = t->charge.extra_allocated,
			.containers = t->ncontainers,
			.handles = t->handles.count,
			.flags = t->proxy ? PM_TASK_PROXY : 0 };
	}
	free(v);
	r->body_len = (uint32_t)(sizeof(*rep) + rep->n * sizeof(*e));
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_containers(struct pmd_server *srv,
				   struct pmd_session *s,
				   const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_list_req *req = q->body;
	struct pm_list_rep *rep = pmd_reply_body(srv);
	struct pm_container_ent *e = (struct pm_container_ent *)(rep + 1);
	struct listed *v;
	size_t n = 0;

	if (!operator_asks(s))
		return pmd_reply_now(r, EPERM);
	v = malloc((srv->core->ncontainers + 1) * sizeof(*v));
	if (!v)
		return pmd_reply_now(r, ENOMEM);
	for (struct pmd_list *l = srv->core->tasks.next;
	     l != &srv->core->tasks; l = l->next) {
		struct pmd_task *t = pmd_container_of(l, struct pmd_task, link);

		if (req->task && t->id != req->task)
			continue;
		for (struct pmd_list *cl = t->containers.next;
		     cl != &t->containers; cl = cl->next) {
			struct pmd_container *c = pmd_container_of(
				cl, struct pmd_container, owner_link);
			if (c->id > req->after)
				v[n++] = (struct listed){ .id = c->id,
							  .obj = c };
		}
	}
	*rep = (struct pm_list_rep){ 0 };
	rep->n = listed_page(v, n, &rep->more);
	for (uint32_t i = 0; i < rep->n; i++) {
		struct pmd_container *c = v[i].obj;
		struct pm_stat_rep st;
		uint32_t shares = 0;

		pmd_container_describe(srv->core, c, &st);
		for (struct pmd_list *sl = c->shares.next; sl != &c->shares;
		     sl = sl->next)
			shares++;
		e[i] = (struct pm_container_ent){ .id = c->id,
			.owner = c->owner->id, .frames = st.frames,
			.remote = st.remote, .cow = st.cow, .shares = shares,
			.locked_ms_left = st.locked_ms_left };
	}
	free(v);
	r->body_len = (uint32_t)(sizeof(*rep) + rep->n * sizeof(*e));
	return pmd_reply_now(r, 0);
}

static enum pmd_step do_config(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, struct pmd_reply *r)
{
	if (!operator_asks(s))
		return pmd_reply_now(r, EPERM);
	r->body_len = (uint32_t)pmd_config_render(srv->cfg,
						  pmd_reply_body(srv),
						  PM_MSG_MAX - PM_REPLY_HDR);
	return pmd_reply_now(r, 0);
}

/* Draining: answered once every slot lent came back (then the pmd
 * stops), or when that cannot be. */
static enum pmd_step do_drain(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_drain_req *req = q->body;

	if (!operator_asks(s))
		return pmd_reply_now(r, EPERM);
	if (req->pad || s->virt)
		return pmd_reply_now(r, EINVAL);
	return pmd_drain_start(srv, s, req->timeout_ms, r);
}

/* A ping to another node, answered when it answers. */
struct pctx {
	struct pmd_pending base;
	struct pmd_server *srv;      /* (C) */
	uint64_t t0;                 /* (C) when it went, ns */
};

static void ping_done(void *arg, error_t status, const void *body, size_t len)
{
	struct pctx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_session *s = x->base.s;
	struct pm_ping_rep *rep = pmd_reply_body(srv);
	struct pmd_reply r = { 0 };

	if (s && !status && len == sizeof(struct pmd_nreq_ping_rep)) {
		const struct pmd_nreq_ping_rep *p = body;
		*rep = (struct pm_ping_rep){ .incarnation = p->incarnation,
					     .frames_free = p->frames_free,
					     .rtt_ns = pmd_now_ns() - x->t0 };
		r.body_len = sizeof(*rep);
	} else if (!status) {
		status = EPROTO;
	}
	if (s) {
		s->pending = NULL;
		r.status = status;
		pmd_session_answer(srv, s, &r);
	}
	free(x);
}

static enum pmd_step do_ping_node(struct pmd_server *srv,
				  struct pmd_session *s,
				  const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_ping_req *req = q->body;
	struct pctx *x;
	error_t err;

	if (req->pad || req->pad2)
		return pmd_reply_now(r, EPROTO);
	r->why.arg = PMD_ARG_PING_NODE;
	if (!srv->cluster)
		return pmd_reply_now(r, EINVAL);
	x = calloc(1, sizeof(*x));
	if (!x)
		return pmd_reply_now(r, ENOMEM);
	*x = (struct pctx){ .srv = srv, .t0 = pmd_now_ns() };
	err = pmd_cluster_call(srv->cluster, req->node, PMD_NREQ_PING, NULL, 0,
			       ping_done, x);
	if (err) {
		free(x);
		return pmd_reply_now(r, err);
	}
	r->why.arg = PMD_ARG_NONE;
	return pmd_session_park(s, &x->base);
}

static enum pmd_step do_ring(struct pmd_server *srv, struct pmd_session *s,
			     const struct pmd_req *q, struct pmd_reply *r)
{
	return pmd_ring_create(srv, s, q->body, r);
}

/* ---- the table ---- */

/* Each type: its handler, the body size it takes (exact, or at least for
 * variable bodies), and whether the body starts with a container handle
 * (COPY has two). Every type but HELLO and ATTACH needs HELLO first. */
static const struct {
	handler_fn *fn;
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
	[PM_MSG_BREAK] = { do_break, sizeof(struct pm_break_req), false, false },
	[PM_MSG_WHERE] = { do_where, sizeof(struct pm_where_req), false, false },
	[PM_MSG_PING_NODE] = { do_ping_node, sizeof(struct pm_ping_req), false, false },
	[PM_MSG_WINDOW] = { do_window, 0, false, false },
	[PM_MSG_DEBUG_LOANS] = { do_debug_loans, 0, false, false },
	[PM_MSG_METRICS] = { do_metrics, 0, false, false },
	[PM_MSG_TASKS] = { do_tasks, sizeof(struct pm_list_req), false, false },
	[PM_MSG_CONTAINERS] = { do_containers, sizeof(struct pm_list_req), false, false },
	[PM_MSG_CONFIG] = { do_config, 0, false, false },
	[PM_MSG_DRAIN] = { do_drain, sizeof(struct pm_drain_req), false, false },
	[PM_MSG_RECLAIM_HANDLER] = { do_reclaim_handler,
				     sizeof(struct pm_reclaim_handler_req),
				     false, false },
	[PM_MSG_RING] = { do_ring, sizeof(struct pm_ring_req), false, false },
};

error_t pmd_ring_allows(const struct pmd_req *q)
{
	uint64_t h[2] = { 0, 0 };

	switch (q->type) {
	case PM_MSG_HELLO: case PM_MSG_ATTACH_KEY:
	case PM_MSG_ATTACH: case PM_MSG_RESOLVE: case PM_MSG_BREAK:
	case PM_MSG_WHERE: case PM_MSG_WINDOW: case PM_MSG_RING:
		return EPROTO; /* descriptors, or not the task's session's
		                * (a MAP that would bring some: to_socket) */
	case PM_MSG_IMPORT: /* may make a handle another home serves */
	case PM_MSG_RECLAIM_HANDLER: case PM_MSG_METRICS: case PM_MSG_TASKS:
	case PM_MSG_CONTAINERS: case PM_MSG_CONFIG: case PM_MSG_DRAIN:
		return EXDEV; /* the session's own, or long replies */
	}
	if (handlers[q->type].handle) {
		memcpy(&h[0], q->body, sizeof(h[0]));
		if (q->type == PM_MSG_COPY)
			memcpy(&h[1], (const uint8_t *)q->body +
			       offsetof(struct pm_copy_req, dst), sizeof(h[1]));
	}
	/* (The session's table of handles other homes serve.) */
	return (h[0] | h[1]) & PMD_FWD_BIT ? EXDEV : 0;
}

bool pmd_request_fits(uint32_t type, uint32_t len)
{
	if (type == 0 || type >= PM_MSG_TYPE_MAX || !handlers[type].fn)
		return false;
	return handlers[type].variable ? len >= handlers[type].body
				       : len == handlers[type].body;
}

/* Whether a READ or WRITE q of c must wait for its remote work: the
 * frames its bytes touch (a range that cannot be, all of them). */
static bool io_busy(const struct pmd_server *srv,
		    const struct pmd_container *c, const struct pmd_req *q)
{
	const struct pm_io_req *io = q->body;
	frame_t first, last;

	if (!io->len || io->offset > UINT64_MAX - io->len ||
	    io->offset / PM_FRAME_SIZE > UINT64_MAX - io->frame)
		return pmd_busy_test(srv, c->id); /* (refused in its decode) */
	first = io->frame + io->offset / PM_FRAME_SIZE;
	last = io->frame + (io->offset + io->len - 1) / PM_FRAME_SIZE;
	if (last < first || last == UINT64_MAX)
		return pmd_busy_test(srv, c->id);
	return pmd_busy_test_io(srv, c->id, first, last + 1,
				q->type == PM_MSG_WRITE);
}

enum pmd_step pmd_dispatch(struct pmd_server *srv, struct pmd_session *s,
			   const struct pmd_req *q, struct pmd_reply *r)
{
	uint64_t h[2] = { 0, 0 };

	pmd_window_check(s);
	if (handlers[q->type].handle) {
		memcpy(&h[0], q->body, sizeof(h[0]));
		if (q->type == PM_MSG_COPY) /* the other handle too */
			memcpy(&h[1], (const uint8_t *)q->body +
			       offsetof(struct pm_copy_req, dst), sizeof(h[1]));
	}
	/* Handles another home serves go there. */
	if (s->nfwd && ((h[0] | h[1]) & PMD_FWD_BIT))
		return pmd_fwd_request(srv, s, q, h[0], r);
	/* A container with remote work in flight (frames on their way in
	 * or out) is left alone until it ends; but a read or write waits
	 * only for work on its frames that conflicts (pmd_busy_test_io). */
	for (int i = 0; i < 2 && srv->nbusy; i++) {
		const struct pmd_container *c = h[i] ?
			pmd_container_lookup(s->task, h[i]) : NULL;
		if (c && (q->type == PM_MSG_READ || q->type == PM_MSG_WRITE)) {
			if (io_busy(srv, c, q))
				return PMD_STEP_WAIT;
		} else if (c && pmd_busy_test(srv, c->id)) {
			return PMD_STEP_WAIT;
		}
	}
	return handlers[q->type].fn(srv, s, q, r);
}
