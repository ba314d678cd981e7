/*
 * metrics.c - what an operator's monitoring scrapes: the node's frames by
 * state, its tasks and containers, requests by type with their errors and
 * a histogram of the time to their answer, and in a cluster each peer's
 * state, loans both ways and traffic (messages, bytes, one-sided
 * operations). In Prometheus' text format, through METRICS (pmctl
 * metrics) and, with --metrics ADDR:PORT, over HTTP (GET /metrics).
 *
 * The HTTP side serves one request a connection, at most
 * PMD_METRICS_CONNS at once (more are closed at once), from the loop: a
 * request is read as it comes (1 KiB at most), the answer goes at once,
 * the connection closes.
 */
#include "daemon.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "log.h"

/* Bucket bounds of the time to an answer, seconds (the last: +Inf). */
static const double bounds[PMD_METRICS_BUCKETS - 1] = {
	1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 5e-1, 1.0,
};

static const char *const type_names[PM_MSG_TYPE_MAX] = {
	[PM_MSG_HELLO] = "hello", [PM_MSG_TASK_STAT] = "task_stat",
	[PM_MSG_CREATE] = "create", [PM_MSG_DESTROY] = "destroy",
	[PM_MSG_STAT] = "stat", [PM_MSG_ALLOCATE] = "allocate",
	[PM_MSG_DEALLOCATE] = "deallocate", [PM_MSG_MAP] = "map",
	[PM_MSG_READ] = "read", [PM_MSG_WRITE] = "write",
	[PM_MSG_COPY] = "copy", [PM_MSG_SHARE] = "share",
	[PM_MSG_UNSHARE] = "unshare", [PM_MSG_EXPORT] = "export",
	[PM_MSG_IMPORT] = "import", [PM_MSG_RELEASE] = "release",
	[PM_MSG_LOCK] = "lock", [PM_MSG_UNLOCK] = "unlock",
	[PM_MSG_SET_POLICY] = "set_policy", [PM_MSG_NODES] = "nodes",
	[PM_MSG_DEBUG_STAT] = "debug_stat", [PM_MSG_ATTACH_KEY] = "attach_key",
	[PM_MSG_ATTACH] = "attach", [PM_MSG_RESOLVE] = "resolve",
	[PM_MSG_MOVE] = "move", [PM_MSG_PING_NODE] = "ping_node",
	[PM_MSG_WINDOW] = "window", [PM_MSG_BREAK] = "break",
	[PM_MSG_WHERE] = "where", [PM_MSG_DEBUG_LOANS] = "debug_loans",
	[PM_MSG_METRICS] = "metrics", [PM_MSG_TASKS] = "tasks",
	[PM_MSG_CONTAINERS] = "containers", [PM_MSG_CONFIG] = "config",
	[PM_MSG_DRAIN] = "drain", [PM_MSG_RECLAIM_HANDLER] = "reclaim_handler",
	[PM_MSG_RING] = "ring",
	[PM_MSG_RECLAIM] = "reclaim",
};

void pmd_metrics_count(struct pmd_server *srv, uint16_t type, error_t status,
		       uint64_t ns)
{
	struct pmd_metrics *m = &srv->metrics;
	double s = (double)ns / 1e9;
	unsigned b = 0;

	if (type >= PM_MSG_TYPE_MAX)
		return;
	while (b < PMD_METRICS_BUCKETS - 1 && s > bounds[b])
		b++;
	m->requests[type]++;
	m->errors[type] += status != 0;
	m->sum_ns[type] += ns;
	m->hist[type][b]++;
}

/* Appends to the text; what does not fit is left out, whole lines. */
struct text {
	char *buf;
	size_t cap, len;
	bool full;
};

static void put(struct text *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= t->cap - t->len) {
		t->buf[t->len] = 0;
		t->full = true;
		return;
	}
	t->len += (size_t)n;
}

static void render_node(struct pmd_server *srv, struct text *t)
{
	struct pm_debug_rep rep;
	const struct pmd_budget *b = &srv->core->budget;
	uint64_t phys_free;

	pmd_core_check(srv->core, &rep); /* (slots freed are punched first) */
	/* One look at every segment gives both figures of their memory. */
	phys_free = pmd_core_physical_free(srv->core, UINT32_MAX);
	put(t, "# HELP pmd_frames Frames of this node's budget, by state.\n"
	    "# TYPE pmd_frames gauge\n"
	    "pmd_frames{state=\"total\"} %lu\n"
	    "pmd_frames{state=\"free\"} %lu\n"
	    "pmd_frames{state=\"charged\"} %lu\n"
	    "pmd_frames{state=\"extra\"} %lu\n"
	    "pmd_frames{state=\"guaranteed\"} %lu\n"
	    "pmd_frames{state=\"lent\"} %lu\n"
	    "pmd_frames{state=\"remote\"} %lu\n"
	    "pmd_frames{state=\"resident\"} %lu\n"
	    "pmd_frames{state=\"physical_free\"} %lu\n",
	    (unsigned long)b->total, (unsigned long)rep.frames_free,
	    (unsigned long)b->charged, (unsigned long)b->extra_charged,
	    (unsigned long)b->guaranteed_sum, (unsigned long)b->lent,
	    (unsigned long)b->remote,
	    (unsigned long)(srv->core->segs.resident_seen / PM_FRAME_SIZE),
	    (unsigned long)phys_free);
	put(t, "# HELP pmd_tasks Tasks with a session here (and other nodes' "
	    "tasks served here).\n# TYPE pmd_tasks gauge\npmd_tasks %lu\n"
	    "# HELP pmd_containers Containers homed here.\n"
	    "# TYPE pmd_containers gauge\npmd_containers %lu\n"
	    "# HELP pmd_segments Segments of this node.\n"
	    "# TYPE pmd_segments gauge\npmd_segments %lu\n"
	    "# HELP pmd_sessions_total Sessions since start.\n"
	    "# TYPE pmd_sessions_total counter\npmd_sessions_total %lu\n"
	    "# HELP pmd_sessions_refused_total Connections refused for want "
	    "of descriptors.\n# TYPE pmd_sessions_refused_total counter\n"
	    "pmd_sessions_refused_total %lu\n"
	    "# HELP pmd_accounting_ok 1 when the accounting check holds.\n"
	    "# TYPE pmd_accounting_ok gauge\npmd_accounting_ok %u\n",
	    (unsigned long)rep.tasks, (unsigned long)rep.containers,
	    (unsigned long)rep.segments, (unsigned long)srv->sessions_total,
	    (unsigned long)srv->refused, rep.invariant_ok);
	put(t, "# HELP pmd_reclaim_waiting Allocations waiting for extra "
	    "frames to come back.\n# TYPE pmd_reclaim_waiting gauge\n"
	    "pmd_reclaim_waiting %lu\n"
	    "# HELP pmd_reclaim_rounds_total Rounds of the extra-frame "
	    "protocol.\n# TYPE pmd_reclaim_rounds_total counter\n"
	    "pmd_reclaim_rounds_total %lu\n"
	    "# HELP pmd_reclaim_frames_total Extra frames asked back from "
	    "tasks, taken by the pmd (contents lost), and frames paged out "
	    "to other nodes.\n"
	    "# TYPE pmd_reclaim_frames_total counter\n"
	    "pmd_reclaim_frames_total{kind=\"asked\"} %lu\n"
	    "pmd_reclaim_frames_total{kind=\"taken\"} %lu\n"
	    "pmd_reclaim_frames_total{kind=\"paged\"} %lu\n",
	    (unsigned long)pmd_reclaim_waiting(srv),
	    (unsigned long)srv->reclaim.rounds_total,
	    (unsigned long)srv->reclaim.asked_total,
	    (unsigned long)srv->reclaim.taken_total,
	    (unsigned long)srv->reclaim.paged_total);
	put(t, "# HELP pmd_ring_requests_total Requests answered from the "
	    "tasks' request rings (all requests: pmd_requests_total).\n"
	    "# TYPE pmd_ring_requests_total counter\n"
	    "pmd_ring_requests_total %lu\n"
	    "# HELP pmd_ring_doorbells_total Times a task woke the pmd for "
	    "its ring.\n# TYPE pmd_ring_doorbells_total counter\n"
	    "pmd_ring_doorbells_total %lu\n",
	    (unsigned long)srv->ring_requests,
	    (unsigned long)srv->ring_doorbells);
	put(t, "# HELP pmd_cow_unshared_slots_total Slots whose copy-on-write "
	    "share ended, told to the tasks that held them (UNSHARED).\n"
	    "# TYPE pmd_cow_unshared_slots_total counter\n"
	    "pmd_cow_unshared_slots_total %lu\n",
	    (unsigned long)srv->unshared_total);
	{
		struct pmd_store_counts n;

		pmd_store_counts(srv, &n);
		put(t, "# HELP pmd_store_frames Slots of the backing store.\n"
		    "# TYPE pmd_store_frames gauge\n"
		    "pmd_store_frames{state=\"total\"} %lu\n"
		    "pmd_store_frames{state=\"used\"} %lu\n"
		    "# HELP pmd_store_io_total Frames read from and written to "
		    "the backing store, and operations that failed.\n"
		    "# TYPE pmd_store_io_total counter\n"
		    "pmd_store_io_total{op=\"read\"} %lu\n"
		    "pmd_store_io_total{op=\"write\"} %lu\n"
		    "pmd_store_io_total{op=\"failed\"} %lu\n"
		    "# HELP pmd_store_reads_cached_total Frames of those read "
		    "that the store's page cache held (read at once, not "
		    "through the ring).\n"
		    "# TYPE pmd_store_reads_cached_total counter\n"
		    "pmd_store_reads_cached_total %lu\n",
		    (unsigned long)srv->core->store.nslots,
		    (unsigned long)srv->core->store.used,
		    (unsigned long)n.reads, (unsigned long)n.writes,
		    (unsigned long)n.errors, (unsigned long)n.reads_cached);
	}
}

static void render_requests(struct pmd_server *srv, struct text *t)
{
	const struct pmd_metrics *m = &srv->metrics;

	put(t, "# HELP pmd_requests_total Requests answered, by type.\n"
	    "# TYPE pmd_requests_total counter\n");
	for (unsigned k = 0; k < PM_MSG_TYPE_MAX; k++)
		if (type_names[k] && m->requests[k])
			put(t, "pmd_requests_total{type=\"%s\"} %lu\n",
			    type_names[k], (unsigned long)m->requests[k]);
	put(t, "# HELP pmd_request_errors_total Requests answered with an "
	    "error, by type.\n# TYPE pmd_request_errors_total counter\n");
	for (unsigned k = 0; k < PM_MSG_TYPE_MAX; k++)
		if (type_names[k] && m->errors[k])
			put(t, "pmd_request_errors_total{type=\"%s\"} %lu\n",
			    type_names[k], (unsigned long)m->errors[k]);
	put(t, "# HELP pmd_request_seconds Time from a request to its "
	    "answer, by type.\n# TYPE pmd_request_seconds histogram\n");
	for (unsigned k = 0; k < PM_MSG_TYPE_MAX; k++) {
		uint64_t cum = 0;

		if (!type_names[k] || !m->requests[k])
			continue;
		for (unsigned b = 0; b < PMD_METRICS_BUCKETS; b++) {
			cum += m->hist[k][b];
			if (b < PMD_METRICS_BUCKETS - 1)
				put(t, "pmd_request_seconds_bucket{type=\"%s\","
				    "le=\"%g\"} %lu\n", type_names[k],
				    bounds[b], (unsigned long)cum);
			else
				put(t, "pmd_request_seconds_bucket{type=\"%s\","
				    "le=\"+Inf\"} %lu\n", type_names[k],
				    (unsigned long)cum);
		}
		put(t, "pmd_request_seconds_sum{type=\"%s\"} %.9f\n"
		    "pmd_request_seconds_count{type=\"%s\"} %lu\n",
		    type_names[k], (double)m->sum_ns[k] / 1e9, type_names[k],
		    (unsigned long)m->requests[k]);
	}
}

static void render_cluster(struct pmd_server *srv, struct text *t)
{
	struct pmd_traffic tr[PM_NODES_MAX];
	struct pm_debug_loans_rep *loans = malloc(sizeof(*loans));
	uint64_t held, held_total;
	unsigned n;

	if (!srv->cluster || !loans) {
		free(loans);
		return;
	}
	n = pmd_cluster_traffic(srv->cluster, tr, PM_NODES_MAX);
	pmd_cluster_loans(srv->cluster, loans);
	put(t, "# HELP pmd_peer_up 1 when the peer is up, 0.5 suspect, 0 "
	    "down.\n# TYPE pmd_peer_up gauge\n");
	for (unsigned i = 0; i < n; i++)
		put(t, "pmd_peer_up{peer=\"%u\"} %s\n", tr[i].node,
		    tr[i].state == PM_NODE_UP ? "1" :
		    tr[i].state == PM_NODE_SUSPECT ? "0.5" : "0");
	put(t, "# HELP pmd_loans Slots lent to a peer (out) and the peer's "
	    "slots holding frames of ours (in).\n# TYPE pmd_loans gauge\n");
	for (unsigned i = 0; i < loans->n; i++)
		put(t, "pmd_loans{peer=\"%u\",direction=\"out\"} %lu\n"
		    "pmd_loans{peer=\"%u\",direction=\"in\"} %lu\n",
		    loans->e[i].node, (unsigned long)loans->e[i].lent_to,
		    loans->e[i].node, (unsigned long)loans->e[i].borrowed_from);
	put(t, "# HELP pmd_fabric_messages_total Messages to and from a "
	    "peer.\n# TYPE pmd_fabric_messages_total counter\n");
	for (unsigned i = 0; i < n; i++)
		put(t, "pmd_fabric_messages_total{peer=\"%u\",direction=\"tx\"}"
		    " %lu\npmd_fabric_messages_total{peer=\"%u\","
		    "direction=\"rx\"} %lu\n", tr[i].node,
		    (unsigned long)tr[i].tx_msgs, tr[i].node,
		    (unsigned long)tr[i].rx_msgs);
	put(t, "# HELP pmd_fabric_bytes_total Bytes of messages to and from "
	    "a peer, and of the one-sided reads and writes of ours there.\n"
	    "# TYPE pmd_fabric_bytes_total counter\n");
	for (unsigned i = 0; i < n; i++)
		put(t, "pmd_fabric_bytes_total{peer=\"%u\",kind=\"tx\"} %lu\n"
		    "pmd_fabric_bytes_total{peer=\"%u\",kind=\"rx\"} %lu\n"
		    "pmd_fabric_bytes_total{peer=\"%u\",kind=\"rma\"} %lu\n",
		    tr[i].node, (unsigned long)tr[i].tx_bytes, tr[i].node,
		    (unsigned long)tr[i].rx_bytes, tr[i].node,
		    (unsigned long)tr[i].rma_bytes);
	put(t, "# HELP pmd_fabric_rma_total One-sided reads and writes of "
	    "ours at a peer.\n# TYPE pmd_fabric_rma_total counter\n");
	for (unsigned i = 0; i < n; i++)
		put(t, "pmd_fabric_rma_total{peer=\"%u\"} %lu\n", tr[i].node,
		    (unsigned long)tr[i].rma_ops);
	pmd_cluster_rio_held(srv->cluster, &held, &held_total);
	put(t, "# HELP pmd_rma_held Reads and writes of ours that failed "
	    "while the fabric still held them: their buffers and the slots "
	    "they wrote stay out of use until it lets go.\n"
	    "# TYPE pmd_rma_held gauge\npmd_rma_held %lu\n"
	    "# HELP pmd_rma_held_total The same, ever.\n"
	    "# TYPE pmd_rma_held_total counter\npmd_rma_held_total %lu\n",
	    (unsigned long)held, (unsigned long)held_total);
	free(loans);
}

size_t pmd_metrics_render(struct pmd_server *srv, char *buf, size_t cap)
{
	struct text t = { .buf = buf, .cap = cap };

	if (!cap)
		return 0;
	buf[0] = 0;
	render_node(srv, &t);
	render_requests(srv, &t);
	render_cluster(srv, &t);
	return t.len;
}

/* ---- over HTTP ---- */

error_t pmd_metrics_listen(struct pmd_server *srv, const char *addr)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.ptr = &srv->metrics_fd };
	char host[256];
	const char *colon = strrchr(addr, ':'), *port;
	size_t hl;
	int one = 1, fd = -1, rc;
	error_t err;

	for (unsigned i = 0; i < PMD_METRICS_CONNS; i++)
		srv->mconn[i].fd = -1;
	if (!colon || colon == addr || !colon[1])
		goto bad;
	hl = (size_t)(colon - addr);
	port = colon + 1;
	if (addr[0] == '[') { /* [v6]:port */
		if (hl < 3 || addr[hl - 1] != ']')
			goto bad;
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		goto bad;
	memcpy(host, addr, hl);
	host[hl] = 0;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc)
		goto bad;
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
				 sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0 ||
	    epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		err = errno;
		pmd_err("--metrics %s: %m", colon ? host : addr);
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return err;
	}
	freeaddrinfo(ai);
	srv->metrics_fd = fd;
	pmd_info("metrics on http://%s:%s/metrics", host, port);
	return 0;
bad:
	pmd_err("--metrics: '%s' is not ADDR:PORT (numbers: 127.0.0.1:9464, "
		"[::1]:9464)", addr);
	return EINVAL;
}

static void mconn_close(struct pmd_server *srv, struct pmd_mconn *m)
{
	epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, m->fd, NULL);
	close(m->fd);
	m->fd = -1;
}

/* The request is whole (or all we read of it): the answer, and done. */
static void mconn_answer(struct pmd_server *srv, struct pmd_mconn *m)
{
	static char body[PM_MSG_MAX];
	char head[256];
	size_t len = 0;
	bool ok = !strncmp(m->req, "GET /metrics ", 13) ||
		  !strncmp(m->req, "GET /metrics?", 13);
	int hl;

	if (ok)
		len = pmd_metrics_render(srv, body, sizeof(body));
	else
		len = (size_t)snprintf(body, sizeof(body),
				       "only GET /metrics here\n");
	hl = snprintf(head, sizeof(head), "HTTP/1.0 %s\r\nContent-Type: "
		      "text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
		      "Connection: close\r\n\r\n",
		      ok ? "200 OK" : "404 Not Found", len);
	/* A reader too slow for a loopback socket's buffer gets what fits. */
	if (send(m->fd, head, (size_t)hl, MSG_NOSIGNAL | MSG_DONTWAIT) == hl)
		(void)send(m->fd, body, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(m->fd, SHUT_WR);
	mconn_close(srv, m);
}

bool pmd_metrics_tag(const struct pmd_server *srv, const void *tag)
{
	return srv->metrics_fd >= 0 &&
	       (tag == &srv->metrics_fd ||
		((const char *)tag >= (const char *)srv->mconn &&
		 (const char *)tag < (const char *)(srv->mconn +
						   PMD_METRICS_CONNS)));
}

void pmd_metrics_event(struct pmd_server *srv, void *tag)
{
	struct pmd_mconn *m;
	ssize_t n;

	if (tag == &srv->metrics_fd) {
		int fd = accept4(srv->metrics_fd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct epoll_event ev = { .events = EPOLLIN };

		if (fd < 0)
			return;
		for (m = srv->mconn; m < srv->mconn + PMD_METRICS_CONNS; m++)
			if (m->fd < 0)
				break;
		ev.data.ptr = m;
		if (m == srv->mconn + PMD_METRICS_CONNS ||
		    epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd); /* too many at once */
			return;
		}
		m->fd = fd;
		m->len = 0;
		return;
	}
	m = tag;
	n = recv(m->fd, m->req + m->len, sizeof(m->req) - 1 - m->len,
		 MSG_DONTWAIT);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			mconn_close(srv, m);
		return;
	}
	m->len += (uint32_t)n;
	m->req[m->len] = 0;
	if (strstr(m->req, "\r\n\r\n") || strstr(m->req, "\n\n") ||
	    m->len == sizeof(m->req) - 1)
		mconn_answer(srv, m);
}

void pmd_metrics_close(struct pmd_server *srv)
{
	if (srv->metrics_fd < 0)
		return;
	for (unsigned i = 0; i < PMD_METRICS_CONNS; i++)
		if (srv->mconn[i].fd >= 0)
			mconn_close(srv, &srv->mconn[i]);
	close(srv->metrics_fd);
	srv->metrics_fd = -1;
}
