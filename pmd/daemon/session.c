/*
 * session.c - sessions: replies (over the socket, or to the node that
 * forwarded a request), parking a request until its work ends and
 * answering it then, keeping a request to run again, and the end of a
 * session (its task dies with it, as the seed's task death).
 */
#include "daemon.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "task.h"

void *pmd_reply_body(struct pmd_server *srv)
{
	return srv->tx + PM_REPLY_HDR;
}

void pmd_alloc_reply(struct pmd_server *srv, struct pmd_reply *r,
		     uint32_t count)
{
	struct pm_alloc_rep *rep = pmd_reply_body(srv);

	rep->count = count;
	rep->pad = 0;
	r->body_len = sizeof(*rep);
}

/* A READ's bytes on their way to the forwarder's window: the answer
 * goes once they are there. */
struct wsend {
	struct pmd_server *srv;      /* (C) */
	pm_node_t node;              /* (C) */
	uint64_t inc, id;            /* (C) */
	struct pm_reply rep;         /* (C) */
};

static void wsend_done(void *arg, error_t status, const uint8_t *data,
		       uint32_t len)
{
	struct wsend *w = arg;

	(void)data;
	(void)len;
	if (status)
		w->rep.status = pm_errno_to_status(EIO);
	pmd_cluster_answer(w->srv->cluster, w->node, w->inc, PMD_NREQ_FWD_OP,
			   w->id, status ? EIO : 0, &w->rep, sizeof(w->rep));
	free(w);
}

/* A virtual session's reply goes back to the node that forwarded it: the
 * task reply (status, culprit) and its body (a READ through the
 * forwarder's window: the bytes written there first, by RDMA). */
static void reply_forwarded(struct pmd_server *srv, struct pmd_session *s,
			    const struct pmd_reply *r)
{
	struct pm_reply *rep = (struct pm_reply *)(srv->tx +
						   sizeof(struct pm_msg_hdr));
	const uint8_t *data = r->body_ext ? r->body_ext
					  : srv->tx + PM_REPLY_HDR;

	rep->status = pm_errno_to_status(r->status);
	rep->arg = r->why.arg;
	rep->culprit = r->why.frame;
	if (s->vwin && s->parked_type == PM_MSG_READ && !r->status &&
	    r->body_len) {
		struct pmd_io_piece piece = { .node = s->vnode,
			.key = s->vwin_rk.key, .base = s->vwin_rk.base,
			.rlen = s->vwin_rk.len, .len = r->body_len };
		struct wsend *w = malloc(sizeof(*w));

		if (w) {
			*w = (struct wsend){ .srv = srv, .node = s->vnode,
					     .inc = s->vinc, .id = s->vid,
					     .rep = *rep };
			if (!pmd_cluster_rio(srv->cluster, true, &piece, 1, data,
					     r->body_len, wsend_done, w))
				return; /* (the bytes were taken) */
			free(w);
		}
		rep->status = pm_errno_to_status(EIO);
		pmd_cluster_answer(srv->cluster, s->vnode, s->vinc,
				   PMD_NREQ_FWD_OP, s->vid, EIO, rep,
				   sizeof(*rep));
		return;
	}
	if (r->body_ext)
		memcpy(srv->tx + PM_REPLY_HDR, r->body_ext, r->body_len);
	pmd_cluster_answer(srv->cluster, s->vnode, s->vinc, PMD_NREQ_FWD_OP,
			   s->vid, r->status, rep,
			   (uint32_t)sizeof(*rep) + r->body_len);
}

bool pmd_reply_send(struct pmd_server *srv, struct pmd_session *s,
		    uint16_t type, uint32_t seq, const struct pmd_reply *r)
{
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)srv->tx;
	struct pm_reply *rep = (struct pm_reply *)(h + 1);
	uint32_t len = (uint32_t)PM_REPLY_HDR + r->body_len;
	union {
		char buf[CMSG_SPACE(sizeof(int) * (PM_MAP_FDS_MAX + 1))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov[2] = { { .iov_base = srv->tx, .iov_len = len } };
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 1 };

	if (s->sub) { /* answered here, once */
		void (*done)(void *, const struct pmd_reply *) = s->sub_done;
		s->sub_done = NULL;
		if (done)
			done(s->sub_arg, r);
		return true;
	}
	if (s->virt) {
		reply_forwarded(srv, s, r);
		return true;
	}
	if (r->body_ext) { /* the header here, the body where it is */
		iov[0].iov_len = PM_REPLY_HDR;
		iov[1] = (struct iovec){ .iov_base = (void *)r->body_ext,
					 .iov_len = r->body_len };
		msg.msg_iovlen = 2;
	}
	assert(len <= sizeof(srv->tx) && r->nfds <= PM_MAP_FDS_MAX + 1);
	pm_msg_hdr_init(h, type | PM_MSG_REPLY, len, seq);
	rep->status = pm_errno_to_status(r->status);
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

enum pmd_step pmd_session_park(struct pmd_session *s,
			       struct pmd_pending *pending)
{
	pending->s = s;
	s->pending = pending;
	return PMD_STEP_PARKED;
}

void pmd_session_answer(struct pmd_server *srv, struct pmd_session *s,
			const struct pmd_reply *r)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
	bool masked = s->masked;

	s->parked = s->masked = false;
	s->pending = NULL;
	pmd_stop_done(srv, s); /* what its request stopped goes on */
	s->reclaim_rounds = 0;
	if (s->virt) {
		pmd_reply_send(srv, s, s->parked_type, s->parked_seq, r);
		pmd_session_close(srv, s);
		return;
	}
	pmd_metrics_count(srv, s->parked_type, r->status,
			  pmd_now_ns() - s->req_ns);
	if (!pmd_reply_send(srv, s, s->parked_type, s->parked_seq, r) ||
	    (masked && epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, s->fd, &ev) < 0))
		pmd_session_close(srv, s);
}

/* Keeps q (its body, unless it is the one kept already) in the waiters,
 * at the head or the tail. */
static bool session_keep(struct pmd_server *srv, struct pmd_session *s,
			 const struct pmd_req *q, bool first)
{
	if (q->body != s->saved) {
		uint8_t *body = malloc(q->len ? q->len : 1);
		if (!body)
			return false;
		memcpy(body, q->body, q->len);
		free(s->saved);
		s->saved = body;
		s->saved_len = q->len;
	}
	s->parked = true; /* (its input goes off if it sends more) */
	s->parked_type = q->type;
	s->parked_seq = q->seq;
	s->waiting = true;
	pmd_list_add(first ? &srv->waiters : srv->waiters.prev, &s->wlink);
	return true;
}

bool pmd_session_wait(struct pmd_server *srv, struct pmd_session *s,
		      const struct pmd_req *q)
{
	return session_keep(srv, s, q, false);
}

bool pmd_session_run_later(struct pmd_server *srv, struct pmd_session *s,
			   const struct pmd_req *q, bool first)
{
	if (!session_keep(srv, s, q, first))
		return false;
	srv->rerun = true;
	return true;
}

static void bye_answered(void *arg, error_t status, const void *body,
			 size_t len)
{
	(void)arg;
	(void)status; /* a home that is down has forgotten the proxy too */
	(void)body;
	(void)len;
}

/* The session's forwarded handles end: every home it used forgets its
 * proxy. */
static void session_fwd_bye(struct pmd_server *srv, struct pmd_session *s)
{
	/* (A sub-request's handles are its task's copies: nothing to say.) */
	for (uint32_t i = 0; i < s->nfwd && srv->cluster && s->task && !s->sub;
	     i++) {
		pm_node_t node = s->fwd[i].node;
		bool sent = false;

		for (uint32_t k = 0; k < i && !sent; k++)
			sent = s->fwd[k].node == node;
		if (node && !sent)
			pmd_cluster_call(srv->cluster, node, PMD_NREQ_FWD_BYE,
					 &s->task->id, sizeof(s->task->id),
					 bye_answered, NULL);
	}
	free(s->fwd);
	s->fwd = NULL;
	s->nfwd = s->fwd_cap = 0;
}

/* Sub-requests the pmd runs for task t (a copy between homes) end with
 * it (their copies learn it: sub_done with no reply). One being answered
 * right now (sub_done taken) closes itself after. */
static void subs_close(struct pmd_server *srv, struct pmd_task *t)
{
	struct pmd_list *pos, *tmp;

	pmd_list_for_each_safe(pos, tmp, &srv->vsessions) {
		struct pmd_session *sub = pmd_container_of(pos,
							   struct pmd_session,
							   link);
		if (sub->sub && sub->sub_done && sub->task == t)
			pmd_session_close(srv, sub);
	}
}

/* A socket session's task ends with it; a fault session's task stays,
 * but cannot follow moved frames any more. */
static void session_task_end(struct pmd_server *srv, struct pmd_session *s)
{
	struct pmd_session *fs;

	if (s->fault) {
		pmd_debug("task %#lx: fault session ends",
			  (unsigned long)s->task->id);
		s->task->follows = false;
		s->task->fault_session = NULL;
		return;
	}
	pmd_log_limited(&srv->sessions_said, PMD_LOG_INFO, "task %#lx left",
			(unsigned long)s->task->id);
	/* Its fault session goes too, through its own hang-up event (it may
	 * be further down this epoll batch). */
	fs = s->task->fault_session;
	if (fs) {
		fs->task = NULL;
		shutdown(fs->fd, SHUT_RDWR);
	}
	if (srv->cluster)
		pmd_cluster_task_gone(srv->cluster, s->task->id);
	subs_close(srv, s->task);
	pmd_task_destroy(srv->core, s->task);
}

void pmd_session_close(struct pmd_server *srv, struct pmd_session *s)
{
	pmd_ring_close(srv, s->ring); /* its requests in flight first */
	if (s->pending)
		s->pending->s = NULL; /* it finishes without us */
	if (s->sub && s->sub_done) { /* its copy learns it went */
		void (*done)(void *, const struct pmd_reply *) = s->sub_done;
		s->sub_done = NULL;
		done(s->sub_arg, NULL);
	}
	pmd_stop_done(srv, s);
	pmd_window_put(s->win);
	session_fwd_bye(srv, s);
	if (s->waiting)
		pmd_list_del(&s->wlink);
	free(s->saved);
	pmd_list_del(&s->link);
	if (!s->virt) {
		epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, s->fd, NULL);
		close(s->fd);
		if (s->task)
			session_task_end(srv, s);
		pmd_segtab_flush(&srv->core->segs);
	}
	free(s);
}
