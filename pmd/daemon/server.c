/*
 * server.c - the loop (see server.h): the Unix socket, signals, the
 * cluster's descriptors; reading a request (from a task's socket, or
 * handed up by the node layer for another node's task) and running it;
 * running again, in order, the requests that waited.
 */
#include "server.h"

#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "view.h"

/* Changes a view's runs may wait for while the loop is busy. */
#define VIEW_SETTLE_BUSY 64

/* While the loop spins it looks at the rings, the fabric and the store
 * itself each turn; its descriptors (sockets, the listener, signals)
 * wait at most this long between two looks, unless a session's socket
 * had work within SOCKET_HOT_NS (requests that come on sockets, such as
 * forwarded ones, are then looked for every turn, as the rings' are). */
#define SPIN_POLL_NS  16000u
#define SOCKET_HOT_NS 500000u

#define EPOLL_BATCH 64
#define RX_FDS_MAX  16 /* descriptors a task might send; closed unread */

/* ---- running requests ---- */

/* Runs q for s; what its step says happens, but for a reply now, which
 * is returned for the caller to send. true when it replies now. */
bool pmd_request_run(struct pmd_server *srv, struct pmd_session *s,
			const struct pmd_req *q, struct pmd_reply *r)
{
	switch (pmd_dispatch(srv, s, q, r)) {
	case PMD_STEP_WAIT:
		/* Its container has remote work in flight: it runs after. */
		if (pmd_session_wait(srv, s, q))
			return false;
		*r = (struct pmd_reply){ .status = ENOMEM };
		return true;
	case PMD_STEP_PARKED:
		/* Parked until its work ends: read nothing more from it
		 * meanwhile (its input goes off if it sends more). */
		s->parked = true;
		s->parked_type = q->type;
		s->parked_seq = q->seq;
		return false;
	case PMD_STEP_REPLY:
		break;
	}
	pmd_stop_done(srv, s); /* what it stopped goes on */
	s->reclaim_rounds = 0;
	return true;
}

/* The requests that wait run again, in order (each may wait again,
 * park, or be answered): at the loop's turn after a container's remote
 * work ended or a request was handed in to run. */
static void requests_rerun(struct pmd_server *srv)
{
	struct pmd_list todo, *pos;

	srv->rerun = false;
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
		struct pmd_req q = { .type = s->parked_type,
				     .seq = s->parked_seq, .body = s->saved,
				     .len = s->saved_len };
		struct pmd_reply r = { 0 };

		pmd_list_del(pos);
		s->waiting = false;
		if (!pmd_request_run(srv, s, &q, &r)) {
			if (s->waiting)
				continue; /* it waits again, keeping its body */
			free(s->saved); /* parked: its work kept what it needs */
			s->saved = NULL;
			continue;
		}
		free(s->saved);
		s->saved = NULL;
		pmd_session_answer(srv, s, &r);
	}
	/* Slots freed by those requests are punched after their replies. */
	pmd_segtab_flush(&srv->core->segs);
}

/* The node layer's turn ended a batch: what it let run, runs. */
static void requests_rerun_all(void *arg)
{
	struct pmd_server *srv = arg;

	while (srv->rerun)
		requests_rerun(srv);
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
	struct pmd_reply r = { 0 };
	struct pmd_req q;
	ssize_t n;
	bool ok;

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
		static struct pmd_ratelimit rl;
		pmd_log_limited(&rl, PMD_LOG_WARN, "task %#lx sent a malformed "
				"message (%zd bytes); closing it",
				s->task ? (unsigned long)s->task->id : 0ul, n);
		return false;
	}
	if (s->fault && h->type == (PM_MSG_STOP | PM_MSG_REPLY)) {
		/* A library's answer to a STOP of ours. */
		const struct pm_reply *rep = (const struct pm_reply *)(h + 1);
		if ((size_t)n != PM_REPLY_HDR)
			return false;
		pmd_stop_answered(srv, s, h->seq,
				  pm_status_to_errno(rep->status));
		return true;
	}
	if (s->parked)
		return false; /* a fault session asks one thing at a time */
	/* The body sits after a 16-byte header: 8-byte aligned. */
	q = (struct pmd_req){ .type = h->type, .seq = h->seq, .body = h + 1,
			      .len = (uint32_t)n - sizeof(*h) };
	srv->requests++;
	s->req_ns = pmd_now_ns();
	if (!pmd_request_fits(h->type, q.len) ||
	    (!s->task && q.type != PM_MSG_HELLO && q.type != PM_MSG_ATTACH) ||
	    (s->fault && q.type != PM_MSG_RESOLVE && q.type != PM_MSG_BREAK &&
	     q.type != PM_MSG_WHERE) ||
	    (!s->fault && (q.type == PM_MSG_BREAK || q.type == PM_MSG_WHERE)))
		r.status = EPROTO;
	else if (!pmd_request_run(srv, s, &q, &r))
		return true;
	if (r.status == EPROTO)
		pmd_debug("task %#lx: bad request of type %u",
			  s->task ? (unsigned long)s->task->id : 0ul, h->type);
	pmd_metrics_count(srv, h->type, r.status, pmd_now_ns() - s->req_ns);
	ok = pmd_reply_send(srv, s, h->type, h->seq, &r);
	/* Slots freed by the request are punched after the reply is out. */
	pmd_segtab_flush(&srv->core->segs);
	return ok;
}

/* ---- requests of other nodes' tasks (the node layer's upcalls) ---- */

/* A forwarded WRITE's bytes on their way from the forwarder's window. */
struct wfetch {
	struct pmd_pending base;     /* the virtual session, parked */
	struct pmd_server *srv;      /* (C) */
	struct pm_io_req io;         /* (C) the request */
};

static void wfetch_done(void *arg, error_t status, const uint8_t *data,
			uint32_t len)
{
	struct wfetch *f = arg;
	struct pmd_session *vs = f->base.s;
	struct pmd_reply r = { .status = status ? EIO : ENOMEM };
	uint8_t *body;

	if (!vs) {
		free(f);
		return;
	}
	vs->pending = NULL;
	body = status ? NULL : malloc(sizeof(f->io) + len);
	if (body) {
		struct pmd_req q = { .type = PM_MSG_WRITE, .body = body,
				     .len = (uint32_t)(sizeof(f->io) + len) };
		memcpy(body, &f->io, sizeof(f->io));
		memcpy(body + sizeof(f->io), data, len);
		vs->parked = false;
		if (pmd_session_run_later(f->srv, vs, &q, false)) {
			free(body);
			free(f);
			return;
		}
		free(body);
	}
	free(f);
	pmd_session_answer(vs->srv, vs, &r);
}

/* A forwarded READ or WRITE whose bytes go by RDMA to or from the
 * forwarder's window (PMD_FWD_WINDOW): the request and the window's
 * registration checked; a WRITE's bytes fetched first (*fetching), then
 * it runs as any; a READ runs as any with q->len cut to the request, its
 * bytes written to the window before the answer (session.c). EPROTO,
 * ENOMEM, EIO. */
static error_t serve_window(struct pmd_server *srv, struct pmd_session *vs,
			    const void *body, uint32_t len, struct pmd_req *q,
			    bool *fetching)
{
	struct pmd_nreq_window w;
	struct pmd_io_piece piece;
	struct pm_io_req io;
	struct wfetch *f;

	*fetching = false;
	if ((q->type != PM_MSG_READ && q->type != PM_MSG_WRITE) ||
	    len != sizeof(io) + sizeof(w))
		return EPROTO;
	memcpy(&io, body, sizeof(io));
	memcpy(&w, (const uint8_t *)body + sizeof(io), sizeof(w));
	if (io.flags || io.len == 0 || io.len > PM_IO_MAX || w.len < io.len)
		return EPROTO;
	vs->vwin = true;
	vs->vwin_rk = w;
	q->len = sizeof(io);
	if (q->type == PM_MSG_READ)
		return 0;
	f = malloc(sizeof(*f));
	if (!f)
		return ENOMEM;
	*f = (struct wfetch){ .srv = srv, .io = io };
	piece = (struct pmd_io_piece){ .node = vs->vnode, .key = w.key,
				       .base = w.base, .rlen = w.len,
				       .len = io.len };
	if (pmd_cluster_rio(srv->cluster, false, &piece, 1, NULL, io.len,
			    wfetch_done, f)) {
		free(f);
		return EIO;
	}
	vs->parked = true;
	pmd_session_park(vs, &f->base);
	*fetching = true;
	return 0;
}

/* A forwarded request (FWD_OP) from node src for proxy task t: run as a
 * session with no socket, at the loop's next turn, answered to src then
 * or when its work ends. */
static void serve_forwarded(void *arg, pm_node_t src, uint64_t src_inc,
			    uint64_t id, struct pmd_task *t, uint16_t type,
			    uint16_t flags, const void *body, uint32_t len)
{
	struct pmd_server *srv = arg;
	struct pmd_session *vs = calloc(1, sizeof(*vs));
	struct pmd_req q = { .type = type, .body = body, .len = len };
	struct pmd_reply r = { 0 };
	bool fetching = false;

	if (!vs) {
		pmd_cluster_answer(srv->cluster, src, src_inc, PMD_NREQ_FWD_OP,
				   id, ENOMEM, NULL, 0);
		return;
	}
	*vs = (struct pmd_session){ .srv = srv, .fd = -1, .task = t,
				    .virt = true, .vnode = src, .vinc = src_inc,
				    .vid = id, .parked_type = type };
	pmd_list_add(&srv->vsessions, &vs->link);
	if (!pmd_fwd_type(type))
		r.status = EOPNOTSUPP;
	else if ((flags & PMD_FWD_WINDOW) &&
		 (r.status = serve_window(srv, vs, body, len, &q, &fetching)))
		;
	else if (fetching)
		return; /* runs once its bytes are here */
	else if (!pmd_request_fits(type, q.len))
		r.status = EPROTO;
	else if (pmd_session_run_later(srv, vs, &q, false))
		return;
	else
		r.status = ENOMEM;
	pmd_session_answer(srv, vs, &r);
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
			pmd_session_close(srv, vs);
	}
}

/* ---- the socket ---- */

/* Out of descriptors (the pmd's or the system's): the connection that
 * waits is taken with the descriptor kept in reserve and closed at once
 * (its task sees the pmd hang up, not a silence), so the listening socket
 * does not stay readable and the loop does not spin; said once a while.
 * Whether one was taken. */
static bool server_refuse(struct pmd_server *srv, error_t why)
{
	uint64_t now = pmd_now_ns();
	bool took;
	int fd;

	srv->refused++;
	if (now - srv->refused_said_ns > UINT64_C(10000000000)) {
		pmd_warn("out of descriptors (%s): new tasks are refused "
			 "(%lu so far)", strerror(why),
			 (unsigned long)srv->refused);
		srv->refused_said_ns = now;
	}
	if (srv->reserve_fd >= 0) {
		close(srv->reserve_fd);
		srv->reserve_fd = -1;
	}
	/* (accept says EMFILE before it looks for a connection: there may
	 * be none.) */
	fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	took = fd >= 0;
	if (took)
		close(fd);
	srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (srv->reserve_fd < 0 && !srv->accept_off) {
		/* Not even that: the socket is not watched for 100 ms. */
		struct epoll_event off = { .events = 0,
					   .data.ptr = &srv->listen_fd };
		if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, srv->listen_fd,
			      &off) == 0) {
			srv->accept_off = true;
			srv->accept_on_ns = now + 100000000u;
		}
	}
	return took;
}

/* The socket is watched again once its pause is over; the loop's wait
 * ends by then (ms). */
static int server_accept_resume(struct pmd_server *srv, int timeout)
{
	struct epoll_event on = { .events = EPOLLIN,
				  .data.ptr = &srv->listen_fd };
	uint64_t now;
	int left;

	if (!srv->accept_off)
		return timeout;
	now = pmd_now_ns();
	if (now >= srv->accept_on_ns) {
		if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, srv->listen_fd,
			      &on) == 0)
			srv->accept_off = false;
		if (srv->reserve_fd < 0)
			srv->reserve_fd = open("/dev/null",
					       O_RDONLY | O_CLOEXEC);
		return timeout;
	}
	left = (int)((srv->accept_on_ns - now) / 1000000u) + 1;
	return timeout < 0 || timeout > left ? left : timeout;
}

static void server_accept(struct pmd_server *srv)
{
	for (;;) {
		int fd = accept4(srv->listen_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct pmd_session *s;
		struct epoll_event ev = { .events = EPOLLIN };

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* One refused; the next, if any, at once. */
				if (server_refuse(srv, errno) &&
				    srv->reserve_fd >= 0)
					continue;
				return;
			}
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

/* Makes the directory the socket lives in, if need be. */
static error_t server_socket_dir(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		error_t err = errno;
		pmd_err("cannot create %s: %m", dir);
		return err;
	}
	return 0;
}

/* Binds fd to sa, taking the path over from a pmd that did not stop
 * cleanly, never from a live one. */
static error_t server_bind(int fd, const struct sockaddr_un *sa)
{
	int probe;
	bool live;

	if (bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (errno != EADDRINUSE)
		return errno;
	probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	live = probe >= 0 &&
	       connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	if (probe >= 0)
		close(probe);
	if (live) {
		pmd_err("another pmd is serving %s", sa->sun_path);
		return EADDRINUSE;
	}
	unlink(sa->sun_path); /* stale, from a pmd that did not stop cleanly */
	return bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0 ? errno : 0;
}

static error_t server_listen(struct pmd_server *srv, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	error_t err;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		pmd_err("socket path too long: %s", path);
		return ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	err = server_socket_dir(path);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	err = server_bind(fd, &sa);
	if (err == EADDRINUSE)
		goto close_fd; /* said already */
	if (err)
		goto fail;
	/* Who may be a task: the socket's group and mode (tasks are
	 * untrusted anyway, but a local user's sessions cost the node). */
	if (srv->socket_gid != (gid_t)-1 &&
	    chown(path, (uid_t)-1, srv->socket_gid) < 0) {
		err = errno;
		goto fail;
	}
	if (chmod(path, srv->socket_mode) < 0) {
		err = errno;
		goto fail;
	}
	if (listen(fd, 128) < 0) {
		err = errno;
		goto fail;
	}
	srv->listen_fd = fd;
	return 0;
fail:
	pmd_err("cannot listen on %s: %s", path, strerror(err));
close_fd:
	close(fd);
	return err;
}

/* Adds fd to the loop, its events pointing at tag. */
static error_t server_watch(struct pmd_server *srv, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };

	if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0)
		return 0;
	pmd_err("epoll_ctl: %m");
	return errno;
}

static error_t node_stop(void *arg, const struct pmd_stops *st,
			 uint32_t max_ms, void (*done)(void *), void *done_arg)
{
	return pmd_stop_call(arg, st, max_ms, done, done_arg);
}

/* Segments a heartbeat looks at again for its physical figure (a system
 * call each: a node of many segments sweeps them over several beats). */
#define PHYS_SWEEP 64

static uint64_t node_physical_free(void *arg)
{
	const struct pmd_server *srv = arg;

	return pmd_core_physical_free(srv->core, PHYS_SWEEP);
}

static error_t server_join_cluster(struct pmd_server *srv,
				   const struct pmd_config *cfg)
{
	const struct pmd_cluster_upcalls up = { .serve = serve_forwarded,
						.proxy_gone = proxy_gone,
						.batch_done = requests_rerun_all,
						.stop = node_stop,
						.recall = pmd_recall_add,
						.physical_free =
							node_physical_free,
						.arg = srv };
	int fds[2], nfds;
	error_t err;

	srv->poll_ns = (uint64_t)cfg->poll_us * 1000u;
	err = pmd_cluster_start(cfg->cluster_conf, cfg->node_id, srv->core,
				&srv->cluster);
	if (err)
		return err;
	pmd_cluster_set_upcalls(srv->cluster, &up);
	nfds = pmd_cluster_fds(srv->cluster, fds);
	for (int i = 0; i < nfds && !err; i++)
		err = server_watch(srv, fds[i], &srv->cluster_tag);
	return err;
}

error_t pmd_server_create(const struct pmd_config *cfg, struct pmd_core *core,
			  struct pmd_server **srv_out)
{
	struct pmd_server *srv;
	sigset_t mask;
	error_t err;

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return ENOMEM;
	srv->core = core;
	srv->cfg = cfg;
	srv->listen_fd = srv->signal_fd = srv->epoll_fd = srv->reserve_fd = -1;
	srv->metrics_fd = -1;
	pmd_list_init(&srv->sessions);
	pmd_list_init(&srv->waiters);
	pmd_list_init(&srv->vsessions);
	pmd_list_init(&srv->stops);
	pmd_list_init(&srv->rings);
	srv->doorbell_fd = -1;
	srv->stop_ns = (uint64_t)cfg->stop_ms * 1000000u;
	srv->grace_ns = (uint64_t)cfg->reclaim_grace_ms * 1000000u;
	pmd_reclaim_init(srv);
	strcpy(srv->socket_path, cfg->socket);
	srv->socket_mode = cfg->socket_mode;
	srv->socket_gid = cfg->socket_gid;
	srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

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
		goto destroy;
	}
	err = pmd_ring_init(srv);
	if (!err)
		err = pmd_store_open(srv);
	if (!err)
		err = server_listen(srv, cfg->socket);
	if (!err)
		err = server_watch(srv, srv->listen_fd, &srv->listen_fd);
	if (!err)
		err = server_watch(srv, srv->signal_fd, &srv->signal_fd);
	if (!err)
		err = server_watch(srv, srv->doorbell_fd, &srv->doorbell_fd);
	if (!err && cfg->cluster_conf)
		err = server_join_cluster(srv, cfg);
	if (!err && cfg->metrics[0])
		err = pmd_metrics_listen(srv, cfg->metrics);
	if (err)
		goto destroy;
	*srv_out = srv;
	return 0;
destroy:
	pmd_server_destroy(srv);
	return err;
}

/* ---- the loop ---- */

/*
 * In a cluster with poll_ns set (the default: 50 us), the pmd polls the
 * fabric and its sockets instead of sleeping in epoll while it waits for
 * peers (node requests, one-sided reads and writes in flight: its task
 * waits too; up to poll_ns without progress), and for poll_ns after a
 * peer last needed it (a message, or a wake-up by the fabric: over TCP
 * one-sided reads and writes that target this node need its progress and
 * leave no completion). A pmd that sleeps is woken for every message,
 * tens of microseconds across vCPUs; one that polls yields the CPU at
 * every empty poll, so that a peer or a task sharing its CPU runs at once
 * (quiet_poll). Whether to spin now:
 */
static bool loop_spin(struct pmd_server *srv)
{
	uint64_t now;
	bool waiting;

	if (!srv->cluster || !srv->poll_ns)
		return false;
	now = pmd_now_ns();
	waiting = pmd_cluster_waiting(srv->cluster);
	if (waiting && !srv->waiting_peers)
		srv->wait_ns = now;
	srv->waiting_peers = waiting;
	return (waiting && now - srv->wait_ns < srv->poll_ns) ||
	       now - srv->served_ns < srv->poll_ns;
}

/* Drives the cluster: its traffic, then the requests it let run again.
 * Whether to go on spinning. */
static bool loop_cluster(struct pmd_server *srv, bool spin)
{
	unsigned got;

	if (!srv->cluster)
		return spin;
	got = pmd_cluster_run(srv->cluster, srv->core->budget.total,
			      pmd_budget_free(&srv->core->budget), !spin);
	/* A peer's message, or progress of a long wait (bandwidth): go on
	 * polling. */
	if (got && srv->poll_ns) {
		if (got & PMD_CLUSTER_SERVED)
			srv->served_ns = pmd_now_ns();
		else
			srv->wait_ns = pmd_now_ns();
		spin = true;
	}
	return spin;
}

/* An event of a session: a request, or (parked) one request more that
 * must wait, with its input off (a hang-up still shows). */
static void loop_session(struct pmd_server *srv, struct pmd_session *s,
			 uint32_t events)
{
	struct epoll_event off = { .events = 0, .data.ptr = s };

	/* A fault session's answers to our STOPs come while it waits. */
	if (!s->parked || s->fault) {
		if (!session_serve(srv, s))
			pmd_session_close(srv, s);
		return;
	}
	if ((events & (EPOLLHUP | EPOLLERR)) ||
	    (!s->masked &&
	     epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, s->fd, &off) < 0))
		pmd_session_close(srv, s);
	else
		s->masked = true;
}

/* Whether a poll found nothing but the fabric's descriptor: while the
 * pmd spins that descriptor may stay readable (only a wait that could
 * sleep clears it), and it is no work of its own. */
static bool quiet_poll(const struct pmd_server *srv,
		       const struct epoll_event *evs, int n)
{
	for (int i = 0; i < n; i++)
		if (evs[i].data.ptr != &srv->cluster_tag)
			return false;
	return true;
}

error_t pmd_server_turn(struct pmd_server *srv, int max_ms, bool *stop)
{
	struct epoll_event evs[EPOLL_BATCH];
	bool spin = loop_spin(srv), ring_spin;
	uint64_t now;
	int n, timeout;

	*stop = false;
	/* The cluster's turn, unless it has nothing to do: a local request
	 * should not pay the provider's progress. */
	if (srv->cluster &&
	    (srv->woke || spin || !pmd_cluster_quiet(srv->cluster)))
		spin = loop_cluster(srv, spin);
	srv->woke = false;

	pmd_ring_disarm(srv); /* awake: the rings need no doorbell */
	pmd_ring_poll(srv);
	pmd_store_reap(srv);
	pmd_reclaim_turn(srv);
	/* (A request run again may read the store from its page cache:
	 * told in this turn, as one the rings brought is.) */
	do {
		while (srv->rerun)
			requests_rerun(srv);
		pmd_store_reap(srv);
	} while (srv->rerun);
	pmd_drain_turn(srv, stop);
	if (*stop)
		return 0; /* drained */
	pmd_stop_unshared(srv);
	ring_spin = pmd_ring_spin(srv);
	timeout = spin || ring_spin ? 0 : pmd_stop_timeout_ms(srv, srv->cluster
		  ? pmd_cluster_timeout_ms(srv->cluster) : -1);
	timeout = pmd_drain_timeout_ms(srv, timeout);
	timeout = pmd_reclaim_timeout_ms(srv, timeout);
	if (max_ms >= 0 && (timeout < 0 || timeout > max_ms))
		timeout = max_ms;
	timeout = server_accept_resume(srv, timeout);
	/* The views' runs that changes left short are made exact when the
	 * loop would sleep, or once many wait: not while tasks keep it busy
	 * (they read the views then, and short runs only cost a long map
	 * its look-ups, never a message). */
	pmd_view_settle_all(&srv->core->views_unsettled,
			    timeout != 0 ? 1 : VIEW_SETTLE_BUSY);
	if (timeout != 0 && pmd_ring_arm(srv))
		timeout = 0; /* a request came meanwhile */
	if (pmd_store_pending(srv))
		timeout = 0; /* reads the page cache served, to be told */
	now = pmd_now_ns();
	if (timeout == 0 && (spin || ring_spin) &&
	    now - srv->polled_ns < SPIN_POLL_NS &&
	    now - srv->socket_ns > SOCKET_HOT_NS) {
		n = 0; /* (looked a moment ago: spin on) */
	} else {
		n = epoll_wait(srv->epoll_fd, evs, EPOLL_BATCH, timeout);
		srv->polled_ns = pmd_now_ns();
	}
	pmd_stop_expire(srv);
	if (n == 0 && timeout != 0)
		srv->woke = true; /* a deadline (a poll's empty answer is
				   * none: the cluster's turn would cost every
				   * turn of a spin its provider's progress) */
	if ((spin || ring_spin) && quiet_poll(srv, evs, n)) {
		/* Nothing yet: let what shares the CPU run first (a task our
		 * answer woke, a peer pmd whose progress we wait for). */
		sched_yield();
		if (n == 0)
			return 0;
	}
	if (n < 0) {
		error_t err = errno;
		if (err == EINTR)
			return 0;
		pmd_err("epoll_wait: %m");
		return err;
	}
	for (int i = 0; i < n; i++) {
		void *p = evs[i].data.ptr;

		if (p == &srv->signal_fd) {
			struct signalfd_siginfo si;
			if (read(srv->signal_fd, &si, sizeof(si)) > 0)
				pmd_info("signal %u: stopping", si.ssi_signo);
			*stop = true;
			return 0;
		}
		if (p == &srv->listen_fd) {
			server_accept(srv);
		} else if (pmd_metrics_tag(srv, p)) {
			pmd_metrics_event(srv, p);
		} else if (p == &srv->doorbell_fd) {
			pmd_ring_doorbell(srv);
		} else if (p == &srv->store_tag) {
			pmd_store_event(srv);
		} else if (p == &srv->cluster_tag) {
			/* Woken by the fabric: a peer's traffic, also one-sided
			 * reads and writes that leave no completion here but
			 * need our progress; run at the top of the loop. */
			srv->woke = true;
			if (srv->poll_ns && !spin)
				srv->served_ns = pmd_now_ns();
		} else {
			srv->socket_ns = srv->polled_ns;
			loop_session(srv, p, evs[i].events);
		}
	}
	return 0;
}

error_t pmd_server_run(struct pmd_server *srv)
{
	bool stop = false;
	error_t err = 0;

	srv->woke = true;
	while (!err && !stop)
		err = pmd_server_turn(srv, -1, &stop);
	return err;
}

void pmd_server_destroy(struct pmd_server *srv)
{
	struct pmd_list *pos, *tmp;

	if (!srv)
		return;
	pmd_list_for_each_safe(pos, tmp, &srv->sessions)
		pmd_session_close(srv, pmd_container_of(pos, struct pmd_session,
							link));
	if (srv->listen_fd >= 0) {
		close(srv->listen_fd);
		unlink(srv->socket_path);
	}
	pmd_list_for_each_safe(pos, tmp, &srv->vsessions)
		pmd_session_close(srv, pmd_container_of(pos, struct pmd_session,
							link));
	pmd_stop_fini(srv);
	pmd_stops_fini(&srv->unshared);
	pmd_xcopy_fini(srv);
	pmd_ring_fini(srv);
	pmd_store_close(srv);
	pmd_reclaim_fini(srv);
	pmd_metrics_close(srv);
	pmd_cluster_stop(srv->cluster);
	free(srv->busy);
	if (srv->signal_fd >= 0)
		close(srv->signal_fd);
	if (srv->reserve_fd >= 0)
		close(srv->reserve_fd);
	if (srv->epoll_fd >= 0)
		close(srv->epoll_fd);
	free(srv);
}
