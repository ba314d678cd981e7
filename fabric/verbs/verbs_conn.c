/*
 * verbs_conn.c - connections of the native verbs backend: made with
 * rdma_cm, replaced when an operation leaves their queue pair in error,
 * and freed once no work posted on them is pending (see fab_verbs.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "fab_verbs.h"

static struct fvb_conn *fvb_conn_new(struct fvb_ep *vep, bool outgoing)
{
	struct fvb_conn *conn = calloc(1, sizeof(*conn));

	if (!conn)
		return NULL;
	conn->vep = vep;
	conn->outgoing = outgoing;
	conn->peer = FVB_NO_PEER;
	conn->src_addr = FAB_PEER_NONE;
	conn->next = vep->conns;
	vep->conns = conn;
	return conn;
}

/* Destroys the queue pair and the id. Must not be called while work
 * posted on the connection is pending. */
void fvb_conn_free(struct fvb_conn *conn)
{
	struct fvb_ep *vep = conn->vep;
	struct fvb_conn **pp;

	if (conn->qp)
		rdma_destroy_qp(conn->id);
	if (conn->id)
		rdma_destroy_id(conn->id);
	if (conn->peer != FVB_NO_PEER && vep->av[conn->peer].conn == conn)
		vep->av[conn->peer].conn = NULL;
	for (pp = &vep->conns; *pp; pp = &(*pp)->next) {
		if (*pp == conn) {
			*pp = conn->next;
			break;
		}
	}
	if (vep->last_rx == conn)
		vep->last_rx = NULL;
	free(conn);
}

void fvb_redo_push(struct fvb_conn *conn, struct fab_op *op)
{
	op->bnext = NULL;
	if (conn->redo_tail)
		conn->redo_tail->bnext = op;
	else
		conn->redo = op;
	conn->redo_tail = op;
}

/* Reports every operation of a list with status. */
static void fvb_fail_list(struct fvb_ep *vep, struct fab_op *op, error_t status)
{
	struct fab_op *next;

	for (; op; op = next) {
		next = op->bnext;
		op->bnext = NULL;
		fvb_done(vep, op, status);
	}
}

static const char *fvb_conn_name(const struct fvb_conn *conn, char *buf,
				 size_t len)
{
	if (conn->outgoing && conn->peer != FVB_NO_PEER)
		return fvb_sa_str(&conn->vep->av[conn->peer].sa, buf, len);
	if (!conn->outgoing && conn->src_len)
		return fvb_sa_str(&conn->src, buf, len);
	snprintf(buf, len, "a removed peer");
	return buf;
}

/* The peer is gone from the table: cancel what waits, let the queue pair
 * flush what it holds (rdma_disconnect puts it in error), free it then. */
void fvb_conn_detach(struct fvb_conn *conn)
{
	struct fab_op *redo = conn->redo;

	conn->redo = conn->redo_tail = NULL;
	fvb_fail_list(conn->vep, redo, ECANCELED);
	conn->peer = FVB_NO_PEER;
	if (!conn->posted) {
		fvb_conn_free(conn);
		return;
	}
	if (conn->state == FVB_UP)
		rdma_disconnect(conn->id);
	conn->state = FVB_CLOSING;
}

/* A connection that failed before it was up, or whose queue pair drained
 * after a failure: free it; after an operation's own failure, connect
 * again for what it flushed. */
static void fvb_conn_retire(struct fvb_conn *conn, error_t status)
{
	struct fvb_ep *vep = conn->vep;
	struct fab_op *redo = conn->redo;
	uint32_t peer = conn->peer;
	bool again = conn->state == FVB_RECOVER && peer != FVB_NO_PEER;

	conn->redo = conn->redo_tail = NULL;
	if (conn->state == FVB_RECOVER || conn->state == FVB_BROKEN)
		rdma_disconnect(conn->id); /* tells the peer to drop its side */
	fvb_conn_free(conn);
	if (again) {
		fvb_conn_connect(vep, peer, redo);
		return;
	}
	if (peer != FVB_NO_PEER && status)
		vep->av[peer].retry_at = fvb_now() +
					 (uint64_t)FVB_BACKOFF_MS * 1000000u;
	fvb_fail_list(vep, redo, status ? status : ECANCELED);
}

void fvb_conn_check(struct fvb_conn *conn)
{
	if (conn->posted)
		return;
	switch (conn->state) {
	case FVB_RECOVER: fvb_conn_retire(conn, 0); break;
	case FVB_BROKEN: fvb_conn_retire(conn, ECONNRESET); break;
	case FVB_CLOSING: fvb_conn_retire(conn, ECANCELED); break;
	default: break;
	}
}

/* Starts a connection to the peer; redo is work a replaced queue pair
 * flushed, posted first once up. On error redo has failed. */
error_t fvb_conn_connect(struct fvb_ep *vep, uint32_t peer,
			 struct fab_op *redo)
{
	struct fvb_av *e = &vep->av[peer];
	struct sockaddr_storage src = vep->self;
	struct fvb_conn *conn;
	char buf[80];
	error_t err;

	/* Our own address, any port: the device is the listening one. */
	if (src.ss_family == AF_INET)
		((struct sockaddr_in *)&src)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&src)->sin6_port = 0;
	conn = fvb_conn_new(vep, true);
	if (!conn) {
		err = ENOMEM;
		goto fail;
	}
	conn->peer = peer;
	conn->state = FVB_RESOLVING;
	conn->give_up_at = fvb_now() + (uint64_t)FVB_CONNECT_MS * 1000000u;
	if (rdma_create_id(vep->cm_ch, &conn->id, conn, RDMA_PS_TCP)) {
		err = errno;
		fab_log(LOG_ERR, "rdma_create_id: %m");
		goto free_conn;
	}
	if (rdma_resolve_addr(conn->id, (struct sockaddr *)&src,
			      (struct sockaddr *)&e->sa, FVB_RESOLVE_MS)) {
		err = errno;
		fab_log(LOG_WARNING, "connecting to %s: rdma_resolve_addr: %m",
			fvb_sa_str(&e->sa, buf, sizeof(buf)));
		goto free_conn;
	}
	e->conn = conn;
	conn->redo = redo;
	for (conn->redo_tail = redo; conn->redo_tail && conn->redo_tail->bnext;)
		conn->redo_tail = conn->redo_tail->bnext;
	return 0;

free_conn:
	fvb_conn_free(conn);
fail:
	e->retry_at = fvb_now() + (uint64_t)FVB_BACKOFF_MS * 1000000u;
	fvb_fail_list(vep, redo, ECONNREFUSED);
	return err;
}

static error_t fvb_qp_create(struct fvb_conn *conn)
{
	struct fvb_ep *vep = conn->vep;
	struct ibv_qp_init_attr a = {
		.send_cq = vep->cq,
		.recv_cq = vep->cq,
		.srq = vep->srq,
		.cap = {
			/* Incoming connections never send: the peer reads
			 * and writes through them, we only receive. */
			.max_send_wr = conn->outgoing ? vep->max_send_wr : 1,
			.max_send_sge = 1,
			.max_recv_sge = 1,
			.max_inline_data = FVB_INLINE,
		},
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 1,
	};

	if (rdma_create_qp(conn->id, vep->pd, &a)) {
		/* Some devices take no inline data. */
		a.cap.max_inline_data = 0;
		if (rdma_create_qp(conn->id, vep->pd, &a)) {
			/* Incoming: the caller may have gone meanwhile. */
			fab_log(conn->outgoing ? LOG_ERR : LOG_NOTICE,
				"rdma_create_qp (%s): %m",
				conn->outgoing ? "connecting" : "accepting");
			return errno ? errno : ENOMEM;
		}
	}
	conn->qp = conn->id->qp;
	conn->qp_num = conn->qp->qp_num;
	conn->max_inline = a.cap.max_inline_data;
	return 0;
}

/*
 * How long a sender that found no receive buffer waits before it tries
 * again: rdma_cm leaves the queue pair's minimum at its largest (655 ms,
 * the IB code 0), longer than a deadline. A receiver reposts its buffers
 * at its next poll; 0.64 ms (code 12) lets the sender come back soon
 * without spinning.
 */
static void fvb_qp_rnr(struct fvb_conn *conn)
{
	struct ibv_qp_attr attr = { .min_rnr_timer = FVB_MIN_RNR_TIMER };
	int rc = ibv_modify_qp(conn->qp, &attr, IBV_QP_MIN_RNR_TIMER);

	if (rc)
		fab_log(LOG_NOTICE, "cannot shorten the receive-not-ready wait: %s",
			strerror(rc));
}

static void fvb_hello_fill(const struct fvb_ep *vep, struct fvb_hello *h)
{
	*h = (struct fvb_hello){ .magic = FVB_HELLO_MAGIC,
				 .version = FVB_HELLO_VERSION,
				 .addr_len = (uint16_t)vep->self_len,
				 .nonce = vep->nonce };
	memcpy(h->addr, &vep->self, vep->self_len);
}

/* The private data of a connect or an accept, if it is a hello. */
static bool fvb_hello_read(const struct rdma_cm_event *ev, struct fvb_hello *h)
{
	if (!ev->param.conn.private_data ||
	    ev->param.conn.private_data_len < sizeof(*h))
		return false;
	memcpy(h, ev->param.conn.private_data, sizeof(*h));
	return h->magic == FVB_HELLO_MAGIC && h->version == FVB_HELLO_VERSION &&
	       h->addr_len <= sizeof(h->addr) && h->nonce;
}

static void fvb_on_addr_resolved(struct fvb_conn *conn)
{
	char buf[80];
	error_t err;

	if (conn->id->verbs != conn->vep->ctx) {
		fab_log(LOG_ERR, "%s is reached through another RDMA device than "
				 "the one this node listens on",
			fvb_conn_name(conn, buf, sizeof(buf)));
		fvb_conn_retire(conn, EHOSTUNREACH);
		return;
	}
	err = fvb_qp_create(conn);
	if (!err && rdma_resolve_route(conn->id, FVB_RESOLVE_MS)) {
		err = errno;
		fab_log(LOG_WARNING, "rdma_resolve_route to %s: %m",
			fvb_conn_name(conn, buf, sizeof(buf)));
	}
	if (err)
		fvb_conn_retire(conn, ECONNREFUSED);
}

static void fvb_on_route_resolved(struct fvb_conn *conn)
{
	struct fvb_hello hello;
	struct rdma_conn_param param = {
		.private_data = &hello,
		.private_data_len = sizeof(hello),
		.responder_resources = conn->vep->rd_resp,
		.initiator_depth = conn->vep->rd_init,
		.flow_control = 1,
		.retry_count = 7,
		.rnr_retry_count = 7, /* a busy receiver holds us, never fails */
	};
	char buf[80];

	fvb_hello_fill(conn->vep, &hello);
	if (rdma_connect(conn->id, &param)) {
		fab_log(LOG_WARNING, "rdma_connect to %s: %m",
			fvb_conn_name(conn, buf, sizeof(buf)));
		fvb_conn_retire(conn, ECONNREFUSED);
		return;
	}
	conn->state = FVB_CONNECTING;
}

/* Up: post again what the queue pair it replaces flushed, if the peer's
 * endpoint is still the one that accepted first. */
static void fvb_on_established(struct fvb_conn *conn,
			       const struct rdma_cm_event *ev)
{
	struct fvb_ep *vep = conn->vep;
	struct fab_op *op, *next;
	struct fvb_hello hello;
	error_t fail = 0;
	char buf[80];

	conn->state = FVB_UP;
	if (!conn->outgoing) {
		fvb_qp_rnr(conn);
		return;
	}
	if (conn->peer == FVB_NO_PEER)
		return;
	if (fvb_hello_read(ev, &hello)) {
		struct fvb_av *e = &vep->av[conn->peer];

		if (e->nonce && e->nonce != hello.nonce && conn->redo) {
			fab_log(LOG_WARNING, "%s restarted: its pending operations "
					     "fail",
				fvb_conn_name(conn, buf, sizeof(buf)));
			fail = ECONNRESET;
		}
		e->nonce = hello.nonce;
	}
	op = conn->redo;
	conn->redo = conn->redo_tail = NULL;
	for (; op; op = next) {
		next = op->bnext;
		op->bnext = NULL;
		if (op->state != FAB_OPS_POSTED) {
			fvb_done(vep, op, ECANCELED); /* given up meanwhile */
			continue;
		}
		/* Once one fails, the rest would pass it: they fail too. */
		if (!fail)
			fail = fvb_post_op(conn, op);
		if (fail)
			fvb_done(vep, op, fail == EAGAIN ? ECONNRESET : fail);
	}
}

/*
 * A peer keeps one connection to us at a time: it opens a new one only
 * once the old one has drained (a replaced queue pair), or after it
 * restarted, when the old one may never hear a disconnect (nothing is
 * sent our way on it). So a new connection from the same caller ends the
 * older ones, which go once the CQ has been seen empty (their last
 * messages still name their sender).
 */
static void fvb_conns_supersede(struct fvb_conn *fresh)
{
	struct fvb_conn *c;

	for (c = fresh->vep->conns; c; c = c->next) {
		if (c == fresh || c->outgoing || c->dead ||
		    !fvb_sa_equal(&c->src, c->src_len, &fresh->src,
				  fresh->src_len))
			continue;
		rdma_disconnect(c->id);
		c->dead = true;
		c->state = FVB_CLOSING;
	}
}

static void fvb_on_connect_request(struct fvb_ep *vep,
				   const struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	struct fvb_hello hello, mine;
	struct rdma_conn_param param = {
		.private_data = &mine,
		.private_data_len = sizeof(mine),
		.rnr_retry_count = 7,
	};
	struct fvb_conn *conn = NULL;
	char buf[80];

	if (!fvb_hello_read(ev, &hello)) {
		fab_log(LOG_NOTICE, "refused a connection that did not say hello");
		goto reject;
	}
	if (id->verbs != vep->ctx) {
		fab_log(LOG_NOTICE, "refused a connection on another RDMA device");
		goto reject;
	}
	conn = fvb_conn_new(vep, false);
	if (!conn)
		goto reject;
	conn->id = id;
	id->context = conn;
	if (fvb_sa_parse(hello.addr, hello.addr_len, &conn->src, &conn->src_len)) {
		fab_log(LOG_NOTICE, "refused a connection: bad caller address");
		goto reject;
	}
	if (fvb_qp_create(conn))
		goto reject;
	/* Never more reads in flight than either side can hold. */
	param.responder_resources = ev->param.conn.initiator_depth < vep->rd_resp
					    ? ev->param.conn.initiator_depth
					    : vep->rd_resp;
	param.initiator_depth = ev->param.conn.responder_resources < vep->rd_init
					? ev->param.conn.responder_resources
					: vep->rd_init;
	fvb_hello_fill(vep, &mine);
	if (rdma_accept(id, &param)) {
		fab_log(LOG_WARNING, "rdma_accept from %s: %m",
			fvb_conn_name(conn, buf, sizeof(buf)));
		fvb_conn_free(conn);
		return;
	}
	conn->state = FVB_CONNECTING;
	fvb_conns_supersede(conn);
	return;

reject:
	rdma_reject(id, NULL, 0);
	if (conn)
		fvb_conn_free(conn); /* destroys id */
	else
		rdma_destroy_id(id);
}

static void fvb_on_disconnected(struct fvb_conn *conn)
{
	char buf[80];

	if (!conn->outgoing) {
		/* Kept until the CQ is drained: its last messages still name
		 * their sender by this connection. */
		conn->dead = true;
		conn->state = FVB_CLOSING;
		return;
	}
	if (conn->state == FVB_UP) {
		fab_log(LOG_INFO, "%s disconnected",
			fvb_conn_name(conn, buf, sizeof(buf)));
		conn->state = FVB_BROKEN;
		/* The queue pair goes to error, so that what it holds is
		 * flushed (and the connection freed) whatever the library
		 * did on the event. */
		if (conn->posted)
			rdma_disconnect(conn->id);
	}
	fvb_conn_check(conn);
}

static void fvb_on_failed(struct fvb_conn *conn, const struct rdma_cm_event *ev)
{
	char buf[80];

	if (!conn->outgoing) {
		if (!conn->posted)
			fvb_conn_free(conn);
		return;
	}
	fab_log(LOG_INFO, "connecting to %s: %s (status %d)",
		fvb_conn_name(conn, buf, sizeof(buf)), rdma_event_str(ev->event),
		ev->status);
	if (conn->posted) { /* not expected before up; let the QP drain */
		conn->state = FVB_BROKEN;
		return;
	}
	fvb_conn_retire(conn, ECONNREFUSED);
}

static void fvb_cm_event(struct fvb_ep *vep, const struct rdma_cm_event *ev)
{
	struct fvb_conn *conn = ev->id ? ev->id->context : NULL;

	if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
		fvb_on_connect_request(vep, ev);
		return;
	}
	if (ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL) {
		fab_log(LOG_ERR, "the RDMA device went away");
		return;
	}
	if (!conn)
		return; /* the listening id */
	switch (ev->event) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (conn->state == FVB_RESOLVING)
			fvb_on_addr_resolved(conn);
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED:
		if (conn->state == FVB_RESOLVING)
			fvb_on_route_resolved(conn);
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		if (conn->state == FVB_CONNECTING)
			fvb_on_established(conn, ev);
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		fvb_on_disconnected(conn);
		break;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_REJECTED:
		if (conn->state == FVB_RESOLVING || conn->state == FVB_CONNECTING)
			fvb_on_failed(conn, ev);
		break;
	default:
		break;
	}
}

/* Handles every rdma_cm event waiting; never blocks. Each event is copied
 * and acknowledged first, so that handling it may destroy its id. */
void fvb_cm_events(struct fvb_ep *vep)
{
	struct rdma_cm_event *ev, copy;
	uint8_t priv[sizeof(struct fvb_hello)];

	vep->cm_checked = fvb_now();
	fvb_conns_expire(vep);
	while (!rdma_get_cm_event(vep->cm_ch, &ev)) {
		copy = *ev;
		if (ev->param.conn.private_data &&
		    (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST ||
		     ev->event == RDMA_CM_EVENT_ESTABLISHED) &&
		    ev->param.conn.private_data_len >= sizeof(priv)) {
			memcpy(priv, ev->param.conn.private_data, sizeof(priv));
			copy.param.conn.private_data = priv;
			copy.param.conn.private_data_len = sizeof(priv);
		} else {
			copy.param.conn.private_data = NULL;
			copy.param.conn.private_data_len = 0;
		}
		rdma_ack_cm_event(ev);
		fvb_cm_event(vep, &copy);
		vep->kick = true;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		fab_log(LOG_ERR, "rdma_get_cm_event: %m");
}

/*
 * A connection that is not up within FVB_CONNECT_MS is tried anew: the
 * connection manager's own retries take seconds (a lost request waits
 * out its response timeout), longer than deadlines.
 */
void fvb_conns_expire(struct fvb_ep *vep)
{
	struct fvb_conn *conn, *next;
	uint64_t now = fvb_now();
	char buf[80];

	for (conn = vep->conns; conn; conn = next) {
		next = conn->next;
		if (!conn->outgoing || conn->posted || now < conn->give_up_at ||
		    (conn->state != FVB_RESOLVING &&
		     conn->state != FVB_CONNECTING))
			continue;
		fab_log(LOG_INFO, "connecting to %s: not up in %u ms, trying again",
			fvb_conn_name(conn, buf, sizeof(buf)), FVB_CONNECT_MS);
		fvb_conn_retire(conn, ECONNREFUSED);
	}
}

/* Frees incoming connections that were disconnected; called when the CQ
 * has been seen empty, so no message of theirs waits to be named. */
void fvb_conns_bury(struct fvb_ep *vep)
{
	struct fvb_conn *conn, *next;

	for (conn = vep->conns; conn; conn = next) {
		next = conn->next;
		if (conn->dead && !conn->posted)
			fvb_conn_free(conn);
	}
}

/* Posts one operation on an established connection. EAGAIN: the send
 * queue is full, or the queue pair refused it and is being replaced. */
error_t fvb_post_op(struct fvb_conn *conn, struct fab_op *op)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)op->local,
		.length = (uint32_t)op->len,
		.lkey = ((struct ibv_mr *)op->desc)->lkey,
	};
	struct ibv_send_wr wr = {
		.wr_id = (uintptr_t)op,
		.sg_list = &sge,
		.num_sge = op->len ? 1 : 0,
		.send_flags = IBV_SEND_SIGNALED,
	}, *bad;
	char buf[80];
	int rc;

	switch (op->type) {
	case FAB_OP_READ: wr.opcode = IBV_WR_RDMA_READ; break;
	case FAB_OP_WRITE: wr.opcode = IBV_WR_RDMA_WRITE; break;
	default: wr.opcode = IBV_WR_SEND; break;
	}
	if (wr.opcode == IBV_WR_SEND) {
		if (op->len <= conn->max_inline)
			wr.send_flags |= IBV_SEND_INLINE;
	} else {
		wr.wr.rdma.remote_addr = op->raddr;
		wr.wr.rdma.rkey = (uint32_t)op->rkey;
	}
	rc = ibv_post_send(conn->qp, &wr, &bad);
	if (rc == ENOMEM || rc == EAGAIN)
		return EAGAIN; /* the send queue is full for now */
	if (rc) {
		fab_log(LOG_WARNING, "ibv_post_send to %s: %s: replacing the "
				     "connection",
			fvb_sa_str(&conn->vep->av[conn->peer].sa, buf,
				   sizeof(buf)),
			strerror(rc));
		conn->state = FVB_RECOVER;
		fvb_conn_check(conn);
		return EAGAIN;
	}
	conn->posted++;
	op->bconn = conn;
	return 0;
}
