/*
 * fabric.c - the endpoint logic every backend shares: configuration,
 * operation slots, per-operation deadlines, message buffers and the public
 * entry points of fabric.h. Arguments are checked here (decode) before a
 * backend is asked to post anything (invoke).
 *
 * Deadlines: every endpoint has one timeout, so slots posted later expire
 * later and the pending list is kept in post order; checking for expiry is
 * a look at its head. An expired slot is reported with ETIMEDOUT and kept
 * (abandoned) until the provider hands it back, so the provider never
 * completes into a slot that was reused. The caller's buffer of an
 * abandoned read or write is in the provider's hands just as long (a
 * late read still lands in it, a late write still sends what it holds
 * then): with report_release the caller is told both moments.
 *
 * Backlog: a provider may refuse a post for a while (EAGAIN while it
 * connects to a new peer, or while its queues are full). Such a slot is
 * queued, in order, and posted again from fab_ep_poll(); while a peer has
 * queued slots, every new post to it joins them, so messages to each peer
 * keep their order, and a peer that cannot be reached holds up no other.
 * A queued slot has a deadline like any other.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>

#include "fab_ops.h"

#define FAB_DEF_MSG_SIZE   4096
#define FAB_DEF_TX_DEPTH   256
#define FAB_DEF_RX_DEPTH   64
#define FAB_DEF_TIMEOUT_MS 5000
#define FAB_MAX_DEPTH      65536
#define FAB_MAX_MSG_SIZE   (1u << 20)
#define FAB_POLL_MS        1 /* sleep bound without a wait fd */
/* Completions reaped per provider call. Each call also drives a
 * software provider's progress (tcp;ofi_rxm): reaping a window of 64 in
 * two calls rather than one made the loopback TCP connection settle in
 * its slow state twice as often for 64 KiB reads (docs/benchmarks.md). */
#define FAB_POLL_BATCH     64

static fab_log_fn *fab_log_hook; /* process-wide, set before use */
static void *fab_log_arg;

void fab_log_set(fab_log_fn *fn, void *arg)
{
	fab_log_hook = fn;
	fab_log_arg = arg;
}

void fab_log(int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (fab_log_hook)
		fab_log_hook(level, msg, fab_log_arg);
	else if (level <= LOG_WARNING)
		fprintf(stderr, "fabric: %s\n", msg);
}

static uint64_t fab_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Pending list: a circular list around ep->pending, oldest first. */
static void fab_pending_push(struct fab_ep *ep, struct fab_op *op)
{
	op->prev = ep->pending.prev;
	op->next = &ep->pending;
	ep->pending.prev->next = op;
	ep->pending.prev = op;
}

static void fab_pending_push_front(struct fab_ep *ep, struct fab_op *op)
{
	op->next = ep->pending.next;
	op->prev = &ep->pending;
	ep->pending.next->prev = op;
	ep->pending.next = op;
}

static void fab_pending_del(struct fab_op *op)
{
	op->prev->next = op->next;
	op->next->prev = op->prev;
	op->next = op->prev = NULL;
}

static bool fab_backlog_empty(const struct fab_ep *ep)
{
	return ep->backlog.qnext == &ep->backlog;
}

static void fab_backlog_push(struct fab_ep *ep, struct fab_op *op)
{
	ep->peers[op->peer].queued++;
	op->qprev = ep->backlog.qprev;
	op->qnext = &ep->backlog;
	ep->backlog.qprev->qnext = op;
	ep->backlog.qprev = op;
}

static void fab_backlog_del(struct fab_ep *ep, struct fab_op *op)
{
	ep->peers[op->peer].queued--;
	op->qprev->qnext = op->qnext;
	op->qnext->qprev = op->qprev;
	op->qnext = op->qprev = NULL;
}

static struct fab_op *fab_tx_get(struct fab_ep *ep)
{
	struct fab_op *op = ep->tx_free;

	if (op) {
		ep->tx_free = op->next;
		op->next = NULL;
	}
	return op;
}

/* The slot is back from the provider: free it and release its region. */
static void fab_tx_put(struct fab_ep *ep, struct fab_op *op)
{
	if (op->mr)
		op->mr->busy--;
	if (op->state == FAB_OPS_ABANDONED)
		ep->info.abandoned--;
	ep->info.inflight--;
	op->mr = NULL;
	op->ctx = NULL;
	op->held = false;
	op->state = FAB_OPS_FREE;
	op->next = ep->tx_free;
	ep->tx_free = op;
}

/*
 * The transport a configuration names: "tcp" (libfabric's tcp;ofi_rxm),
 * "verbs" (the native backend), "ofi:PROVIDER" (any libfabric provider),
 * or a bare libfabric provider name as earlier configurations gave it.
 */
static error_t fab_transport(const char *t, const struct fab_ops **ops_out,
			     const char **provider_out)
{
	const char *p = t;

	if (!strcmp(t, "verbs")) {
#ifdef FAB_HAVE_VERBS
		*ops_out = &fab_verbs_ops;
		*provider_out = t;
		return 0;
#else
		fab_log(LOG_ERR, "transport \"verbs\": this build has no "
				 "libibverbs and librdmacm");
		return ENODEV;
#endif
	}
	if (!strcmp(t, "tcp"))
		p = FAB_PROVIDER_DEFAULT;
	else if (!strncmp(t, "ofi:", 4))
		p = t + 4;
	if (!*p || strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_;") !=
			   strlen(p)) {
		fab_log(LOG_ERR, "unknown transport \"%s\" (tcp, verbs, "
				 "ofi:PROVIDER)",
			t);
		return EINVAL;
	}
	*ops_out = &fab_ofi_ops;
	*provider_out = p;
	return 0;
}

static error_t fab_attr_fill(const struct fab_attr *in, struct fab_attr *out,
			     const struct fab_ops **ops_out)
{
	const char *env = getenv(FAB_PROVIDER_ENV);
	error_t err;

	*out = in ? *in : (struct fab_attr){ 0 };
	if (env && *env)
		out->provider = env;
	if (!out->provider || !*out->provider)
		out->provider = FAB_TRANSPORT_DEFAULT;
	if (!out->msg_size)
		out->msg_size = FAB_DEF_MSG_SIZE;
	if (!out->tx_depth)
		out->tx_depth = FAB_DEF_TX_DEPTH;
	if (!out->rx_depth)
		out->rx_depth = FAB_DEF_RX_DEPTH;
	if (!out->timeout_ms)
		out->timeout_ms = FAB_DEF_TIMEOUT_MS;
	if (out->msg_size > FAB_MAX_MSG_SIZE || out->tx_depth > FAB_MAX_DEPTH ||
	    out->rx_depth > FAB_MAX_DEPTH) {
		fab_log(LOG_ERR, "endpoint attributes out of range (msg_size %zu, "
				 "tx_depth %u, rx_depth %u)",
			out->msg_size, out->tx_depth,
			out->rx_depth);
		return EINVAL;
	}
	err = fab_transport(out->provider, ops_out, &out->provider);
	return err;
}

static error_t fab_rx_post(struct fab_ep *ep, struct fab_op *op)
{
	op->len = ep->info.msg_size;
	op->local = op->msg;
	op->desc = ep->msg_mr->desc;
	op->peer = FAB_PEER_NONE;
	op->state = FAB_OPS_POSTED;
	return ep->ops->post_recv(ep, op);
}

error_t fab_ep_open(const struct fab_attr *attr, struct fab_ep **ep_out)
{
	const struct fab_ops *ops = NULL;
	struct fab_attr a;
	struct fab_ep *ep = NULL;
	size_t nslots, buf_len, i;
	uint64_t key;
	error_t err;

	if (!ep_out)
		return EINVAL;
	err = fab_attr_fill(attr, &a, &ops);
	if (err)
		return err;

	err = ops->ep_open(&a, &ep);
	if (err)
		return err;
	ep->info.msg_size = a.msg_size;
	ep->info.tx_depth = a.tx_depth;
	ep->info.rx_depth = a.rx_depth;
	ep->info.timeout_ms = a.timeout_ms;
	ep->timeout_ns = (uint64_t)a.timeout_ms * 1000000u;
	ep->report_release = a.report_release;
	ep->pending.next = ep->pending.prev = &ep->pending;
	ep->backlog.qnext = ep->backlog.qprev = &ep->backlog;
	ep->mrs.next = ep->mrs.prev = &ep->mrs;

	ep->tx = calloc(a.tx_depth, sizeof(*ep->tx));
	ep->rx = calloc(a.rx_depth, sizeof(*ep->rx));
	nslots = (size_t)a.tx_depth + a.rx_depth;
	/* 64 spare bytes: never empty, even with msg_size 0. */
	buf_len = ((nslots * a.msg_size + 63) & ~(size_t)63) + 64;
	ep->msg_buf = aligned_alloc(64, buf_len);
	if (!ep->tx || !ep->rx || !ep->msg_buf) {
		fab_log(LOG_ERR, "cannot allocate %zu operation slots", nslots);
		err = ENOMEM;
		goto close_ep;
	}

	err = fab_key_random(ep, &key);
	if (err)
		goto close_ep;
	err = ep->ops->mr_reg(ep, ep->msg_buf, buf_len, FAB_ACCESS_LOCAL, key,
			      &ep->msg_mr);
	if (err)
		goto close_ep;
	ep->msg_mr->internal = true;

	for (i = a.tx_depth; i-- > 0;) {
		ep->tx[i].msg = (char *)ep->msg_buf + i * a.msg_size;
		ep->tx[i].next = ep->tx_free;
		ep->tx_free = &ep->tx[i];
	}
	for (i = 0; i < a.rx_depth; i++) {
		ep->rx[i].type = FAB_OP_RECV;
		ep->rx[i].msg = (char *)ep->msg_buf + (a.tx_depth + i) * a.msg_size;
		err = fab_rx_post(ep, &ep->rx[i]);
		if (err) {
			fab_log(LOG_ERR, "cannot post receive buffer %zu: %s", i,
				strerror(err));
			goto dereg_msg;
		}
	}

	*ep_out = ep;
	return 0;

dereg_msg:
	ep->ops->ep_close(ep); /* drops the posted receives first */
	ep->ops->mr_dereg(ep->msg_mr);
close_ep:
	ep->ops->ep_close(ep); /* idempotent */
	free(ep->msg_buf);
	free(ep->rx);
	free(ep->tx);
	ep->ops->ep_free(ep);
	return err;
}

/*
 * Regions that only abandoned operations still hold cannot be deregistered
 * while the provider may touch them; closing the endpoint ends that, so
 * close releases them. A region nothing holds must be deregistered first.
 */
error_t fab_ep_close(struct fab_ep *ep)
{
	struct fab_mr *mr, *next;
	void *buf, *tx, *rx;
	unsigned idle = 0;
	error_t err;

	if (!ep)
		return EINVAL;
	for (mr = ep->mrs.next; mr != &ep->mrs; mr = mr->next)
		if (!mr->busy)
			idle++;
	if (idle) {
		fab_log(LOG_ERR, "endpoint close: %u memory regions still registered",
			idle);
		return EBUSY;
	}
	err = ep->ops->ep_close(ep);
	if (err)
		return err;
	/* No completion can arrive any more: slots and buffers are ours. */
	for (mr = ep->mrs.next; mr != &ep->mrs; mr = next) {
		next = mr->next;
		err = ep->ops->mr_dereg(mr);
		if (err)
			fab_log(LOG_WARNING, "endpoint close: region: %s", strerror(err));
	}
	buf = ep->msg_buf;
	tx = ep->tx;
	rx = ep->rx;
	err = ep->ops->mr_dereg(ep->msg_mr);
	if (err)
		fab_log(LOG_WARNING, "endpoint close: message buffers: %s",
			strerror(err));
	free(ep->peers);
	ep->ops->ep_free(ep);
	free(buf);
	free(tx);
	free(rx);
	return 0;
}

error_t fab_ep_info(const struct fab_ep *ep, struct fab_info *info_out)
{
	if (!ep || !info_out)
		return EINVAL;
	*info_out = ep->info;
	return 0;
}

error_t fab_ep_name(const struct fab_ep *ep, struct fab_name *name_out)
{
	if (!ep || !name_out)
		return EINVAL;
	return ep->ops->ep_name(ep, name_out);
}

error_t fab_name_resolve(const struct fab_ep *ep, const char *node,
			 const char *service, struct fab_name *name_out)
{
	struct fab_name n = { 0 };
	error_t err;

	if (!ep || !node || !service || !name_out)
		return EINVAL;
	err = ep->ops->name_resolve(ep, node, service, &n);
	if (!err)
		*name_out = n;
	return err;
}

error_t fab_peer_insert(struct fab_ep *ep, const struct fab_name *name,
			fab_peer_t *peer_out)
{
	struct fab_peer *peers;
	uint64_t addr;
	size_t i;
	error_t err;

	if (!ep || !name || !peer_out || !name->len || name->len > FAB_NAME_MAX)
		return EINVAL;
	for (i = 0; i < ep->nr_peers; i++)
		if (!ep->peers[i].used)
			break;
	if (i == ep->nr_peers) {
		peers = realloc(ep->peers, (i + 1) * sizeof(*peers));
		if (!peers)
			return ENOMEM;
		ep->peers = peers;
		ep->peers[i].addr = FAB_PEER_NONE;
		ep->peers[i].used = false;
		ep->peers[i].queued = 0;
		ep->peers[i].blocked = 0;
		ep->nr_peers++;
	}
	err = ep->ops->av_insert(ep, name, &addr);
	if (err)
		return err;
	ep->peers[i].name = *name;
	ep->peers[i].addr = addr;
	ep->peers[i].used = true;
	ep->peers[i].reset = false;
	*peer_out = i;
	return 0;
}

static bool fab_peer_valid(const struct fab_ep *ep, fab_peer_t peer)
{
	return peer < ep->nr_peers && ep->peers[peer].used;
}

error_t fab_peer_remove(struct fab_ep *ep, fab_peer_t peer)
{
	struct fab_op *op, *next;
	error_t err;

	if (!ep || !fab_peer_valid(ep, peer))
		return EINVAL;
	if (ep->peers[peer].addr != FAB_PEER_NONE) {
		err = ep->ops->av_remove(ep, ep->peers[peer].addr);
		if (err)
			return err;
	}
	ep->peers[peer].addr = FAB_PEER_NONE;
	ep->peers[peer].used = false;
	/* Fail what is in flight to it at the next poll, head first so the
	 * list stays in deadline order. */
	for (op = ep->pending.next; op != &ep->pending; op = next) {
		next = op->next;
		if (op->peer != peer || op->deadline == 0)
			continue;
		fab_pending_del(op);
		op->deadline = 0;
		op->status = ECANCELED;
		fab_pending_push_front(ep, op);
	}
	return 0;
}

/* A failed connection is dropped and the peer inserted again, so that the
 * next operation reconnects (rxm does not recover a broken connection by
 * itself). Operations still on the old connection are flushed by the
 * provider. */
static error_t fab_peer_reconnect(struct fab_ep *ep, struct fab_peer *p)
{
	uint64_t addr;
	error_t err;

	if (p->addr != FAB_PEER_NONE) {
		err = ep->ops->av_remove(ep, p->addr);
		if (err)
			return err;
		p->addr = FAB_PEER_NONE; /* the next post retries the insert */
	}
	err = ep->ops->av_insert(ep, &p->name, &addr);
	if (err)
		return err;
	p->addr = addr;
	p->reset = false;
	fab_log(LOG_INFO, "reconnecting to a peer after a connection failure");
	return 0;
}

static bool fab_status_is_link(int status)
{
	switch (status) {
	case ECANCELED:
	case ENOTCONN:
	case ECONNRESET:
	case ECONNABORTED:
	case ECONNREFUSED:
	case EPIPE:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return true;
	default:
		return false;
	}
}

/* Backend address of a receive's sender to the caller's peer index. */
static fab_peer_t fab_peer_lookup(struct fab_ep *ep, uint64_t addr)
{
	size_t i;

	if (addr == FAB_PEER_NONE)
		return FAB_PEER_NONE;
	if (ep->last_src < ep->nr_peers && ep->peers[ep->last_src].addr == addr)
		return ep->last_src;
	for (i = 0; i < ep->nr_peers; i++) {
		if (ep->peers[i].addr == addr) {
			ep->last_src = i;
			return i;
		}
	}
	return FAB_PEER_NONE;
}

error_t fab_key_random(const struct fab_ep *ep, uint64_t *key_out)
{
	uint64_t key;
	ssize_t n;

	if (!ep || !key_out)
		return EINVAL;
	do {
		n = getrandom(&key, sizeof(key), 0);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(key)) {
		fab_log(LOG_ERR, "getrandom: %m");
		return EIO;
	}
	if (ep->info.key_size < sizeof(key))
		key &= (UINT64_C(1) << (8 * ep->info.key_size)) - 1;
	*key_out = key;
	return 0;
}

error_t fab_mr_reg(struct fab_ep *ep, void *buf, size_t len, unsigned access,
		   uint64_t key, struct fab_mr **mr_out)
{
	const unsigned all = FAB_ACCESS_LOCAL | FAB_ACCESS_REMOTE_READ |
			     FAB_ACCESS_REMOTE_WRITE;
	struct fab_mr *mr;
	error_t err;

	if (!ep || !buf || !len || !access || (access & ~all) || !mr_out)
		return EINVAL;
	if (ep->info.key_size < sizeof(key) &&
	    key >> (8 * ep->info.key_size) != 0) {
		fab_log(LOG_ERR, "memory key wider than the provider's %zu bytes",
			ep->info.key_size);
		return EINVAL;
	}
	err = ep->ops->mr_reg(ep, buf, len, access, key, &mr);
	if (err)
		return err;
	mr->prev = ep->mrs.prev;
	mr->next = &ep->mrs;
	ep->mrs.prev->next = mr;
	ep->mrs.prev = mr;
	*mr_out = mr;
	return 0;
}

error_t fab_mr_dereg(struct fab_mr *mr)
{
	struct fab_mr *prev, *next;
	struct fab_ep *ep;
	error_t err;

	if (!mr || mr->internal)
		return EINVAL;
	if (mr->busy)
		return EBUSY;
	ep = mr->ep;
	prev = mr->prev;
	next = mr->next;
	err = ep->ops->mr_dereg(mr);
	if (err)
		return err;
	prev->next = next;
	next->prev = prev;
	return 0;
}

error_t fab_mr_rkey(const struct fab_mr *mr, struct fab_rkey *rkey_out)
{
	if (!mr || !rkey_out)
		return EINVAL;
	rkey_out->key = mr->key;
	rkey_out->base = mr->base;
	rkey_out->len = mr->len;
	return 0;
}

static error_t fab_tx_post(struct fab_ep *ep, struct fab_op *op)
{
	struct fab_peer *p = &ep->peers[op->peer];
	error_t err;

	if (!p->used)
		return ECANCELED; /* removed while queued */
	if (p->reset || p->addr == FAB_PEER_NONE) {
		err = fab_peer_reconnect(ep, p);
		if (err)
			return err;
	}
	op->addr = p->addr;
	switch (op->type) {
	case FAB_OP_READ:
		err = ep->ops->post_read(ep, op);
		break;
	case FAB_OP_WRITE:
		err = ep->ops->post_write(ep, op);
		break;
	default:
		err = ep->ops->post_send(ep, op);
		break;
	}
	if (fab_status_is_link(err)) {
		/* A broken connection: queue, reconnect at the next poll. */
		p->reset = true;
		err = EAGAIN;
	}
	return err;
}

/* Hands a prepared slot to the provider, or queues it behind the backlog. */
static error_t fab_tx_submit(struct fab_ep *ep, struct fab_op *op)
{
	error_t err = EAGAIN;

	if (!ep->peers[op->peer].queued)
		err = fab_tx_post(ep, op);
	if (err && err != EAGAIN) {
		op->mr = NULL;
		op->next = ep->tx_free;
		ep->tx_free = op;
		return err;
	}
	if (op->mr)
		op->mr->busy++;
	ep->info.inflight++;
	ep->posts++;
	op->status = 0;
	op->deadline = fab_now() + ep->timeout_ns;
	fab_pending_push(ep, op);
	if (err == EAGAIN) {
		op->state = FAB_OPS_QUEUED;
		fab_backlog_push(ep, op);
	} else {
		op->state = FAB_OPS_POSTED;
	}
	return 0;
}

/* Posts the backlog in order until the provider refuses again. A post that
 * fails outright is reported at once with its error. */
static void fab_backlog_flush(struct fab_ep *ep)
{
	struct fab_op *op, *next;
	error_t err;

	ep->flush_pass++;
	for (op = ep->backlog.qnext; op != &ep->backlog; op = next) {
		struct fab_peer *p = &ep->peers[op->peer];

		next = op->qnext;
		if (p->blocked == ep->flush_pass)
			continue; /* an earlier slot to this peer is still refused */
		err = fab_tx_post(ep, op);
		if (err == EAGAIN) {
			p->blocked = ep->flush_pass;
			continue;
		}
		fab_backlog_del(ep, op);
		if (!err) {
			op->state = FAB_OPS_POSTED;
			continue;
		}
		fab_pending_del(op);
		op->deadline = 0;
		op->status = err;
		fab_pending_push_front(ep, op);
	}
}

static error_t fab_rma_post(struct fab_ep *ep, enum fab_op_type type,
			    fab_peer_t peer, struct fab_mr *mr, size_t off,
			    const struct fab_rkey *rkey, uint64_t roff, size_t len,
			    void *ctx)
{
	struct fab_op *op;

	/* decode */
	if (!ep || !mr || !rkey || !fab_peer_valid(ep, peer) || mr->ep != ep ||
	    !(mr->access & FAB_ACCESS_LOCAL))
		return EINVAL;
	if (off > mr->len || len > mr->len - off || roff > rkey->len ||
	    len > rkey->len - roff)
		return ERANGE;
	op = fab_tx_get(ep);
	if (!op)
		return EAGAIN;

	/* invoke */
	op->type = type;
	op->ctx = ctx;
	op->peer = peer;
	op->mr = mr;
	op->local = (char *)mr->buf + off;
	op->desc = mr->desc;
	op->raddr = rkey->base + roff;
	op->rkey = rkey->key;
	op->len = len;
	op->status = 0;
	return fab_tx_submit(ep, op);
}

error_t fab_read(struct fab_ep *ep, fab_peer_t peer, struct fab_mr *mr,
		 size_t off, const struct fab_rkey *rkey, uint64_t roff,
		 size_t len, void *ctx)
{
	return fab_rma_post(ep, FAB_OP_READ, peer, mr, off, rkey, roff, len, ctx);
}

error_t fab_write(struct fab_ep *ep, fab_peer_t peer, struct fab_mr *mr,
		  size_t off, const struct fab_rkey *rkey, uint64_t roff,
		  size_t len, void *ctx)
{
	return fab_rma_post(ep, FAB_OP_WRITE, peer, mr, off, rkey, roff, len, ctx);
}

error_t fab_send(struct fab_ep *ep, fab_peer_t peer, const void *buf,
		 size_t len, void *ctx)
{
	struct fab_op *op;

	if (!ep || !fab_peer_valid(ep, peer) || (len && !buf))
		return EINVAL;
	if (len > ep->info.msg_size)
		return EMSGSIZE;
	op = fab_tx_get(ep);
	if (!op)
		return EAGAIN;

	if (len)
		memcpy(op->msg, buf, len);
	op->type = FAB_OP_SEND;
	op->ctx = ctx;
	op->peer = peer;
	op->mr = NULL;
	op->local = op->msg;
	op->desc = ep->msg_mr->desc;
	op->len = len;
	op->status = 0;
	return fab_tx_submit(ep, op);
}

/* Give back the receive buffers the caller has seen. Stops at EAGAIN. */
static error_t fab_rx_repost(struct fab_ep *ep)
{
	struct fab_op *op;
	error_t err;

	while ((op = ep->rx_repost)) {
		err = fab_rx_post(ep, op);
		if (err) {
			op->state = FAB_OPS_RX_READY;
			if (err == EAGAIN)
				return 0;
			fab_log(LOG_ERR, "cannot repost a receive buffer: %s",
				strerror(err));
			return err;
		}
		ep->rx_repost = op->next;
		op->next = NULL;
	}
	return 0;
}

static void fab_cqe_from(struct fab_cqe *cqe, const struct fab_op *op,
			 int status)
{
	cqe->ctx = op->ctx;
	cqe->status = status;
	cqe->op = op->type;
	cqe->peer = op->peer;
	cqe->len = op->len;
	cqe->data = NULL;
	cqe->held = false;
	cqe->released = false;
}

error_t fab_ep_poll(struct fab_ep *ep, struct fab_cqe *cqes, size_t max,
		    size_t *n_out)
{
	struct fab_comp comps[FAB_POLL_BATCH];
	struct fab_op *op;
	size_t n = 0, got, i;
	uint64_t now;
	error_t err;

	if (!ep || !n_out || (max && !cqes))
		return EINVAL;
	err = fab_rx_repost(ep);
	if (err)
		return err;
	fab_backlog_flush(ep);

	while (n < max) {
		size_t want = max - n < FAB_POLL_BATCH ? max - n : FAB_POLL_BATCH;

		err = ep->ops->cq_read(ep, comps, want, &got);
		if (err)
			return err;
		for (i = 0; i < got; i++) {
			op = comps[i].op;
			if (op->type == FAB_OP_RECV) {
				if (op->state != FAB_OPS_POSTED)
					continue; /* cancelled at close */
				op->state = FAB_OPS_RX_READY;
				op->next = ep->rx_repost;
				ep->rx_repost = op;
				cqes[n].ctx = NULL;
				cqes[n].status = comps[i].status;
				cqes[n].op = FAB_OP_RECV;
				cqes[n].peer = fab_peer_lookup(ep, comps[i].src);
				cqes[n].len = comps[i].status ? 0 : comps[i].len;
				cqes[n].data = op->msg;
				cqes[n].held = false;
				cqes[n].released = false;
				n++;
				continue;
			}
			if (comps[i].status && fab_status_is_link(comps[i].status) &&
			    ep->peers[op->peer].addr == op->addr)
				ep->peers[op->peer].reset = true;
			if (op->state == FAB_OPS_POSTED) {
				fab_pending_del(op);
				fab_cqe_from(&cqes[n++], op, comps[i].status);
			} else if (op->held) {
				/* Reported failed earlier: now its buffer is
				 * free, the caller hears so. */
				fab_cqe_from(&cqes[n], op, comps[i].status);
				cqes[n++].released = true;
			}
			fab_tx_put(ep, op);
		}
		if (got < want)
			break;
	}

	/* Deadlines: the head is the oldest post (or one failed by
	 * fab_peer_remove). */
	now = n < max && ep->pending.next != &ep->pending ? fab_now() : 0;
	while (n < max && (op = ep->pending.next) != &ep->pending &&
	       op->deadline <= now) {
		fab_pending_del(op);
		fab_cqe_from(&cqes[n++], op, op->deadline ? ETIMEDOUT : op->status);
		if (op->deadline)
			fab_log(LOG_INFO, "operation to peer %" PRIu64 " timed out after "
					  "%u ms",
				op->peer, ep->info.timeout_ms);
		if (op->state == FAB_OPS_QUEUED) {
			/* Never reached the provider: the slot is free again. */
			if (op->qnext)
				fab_backlog_del(ep, op);
			fab_tx_put(ep, op);
			continue;
		}
		op->state = FAB_OPS_ABANDONED;
		ep->info.abandoned++;
		if (ep->report_release && op->type != FAB_OP_SEND) {
			/* The provider may still touch the caller's buffer. */
			op->held = true;
			cqes[n - 1].held = true;
		}
	}
	*n_out = n;
	return 0;
}

error_t fab_ep_wait_fd(const struct fab_ep *ep, int *fd_out)
{
	if (!ep || !fd_out)
		return EINVAL;
	return ep->ops->wait_fd(ep, fd_out);
}

error_t fab_ep_trywait(struct fab_ep *ep)
{
	if (!ep)
		return EINVAL;
	if (ep->rx_repost)
		return EAGAIN;
	if (ep->pending.next != &ep->pending && ep->pending.next->deadline == 0)
		return EAGAIN;
	return ep->ops->trywait(ep);
}

uint64_t fab_ep_posts(const struct fab_ep *ep)
{
	return ep ? ep->posts : 0;
}

bool fab_ep_wakes(const struct fab_ep *ep)
{
	return ep && ep->info.wait_fd && fab_backlog_empty(ep);
}

int fab_ep_timeout_ms(const struct fab_ep *ep)
{
	uint64_t now, left;
	/* A backlog is retried by polling: the provider may not wake us. */
	int ms = ep->info.wait_fd && fab_backlog_empty(ep) ? -1 : FAB_POLL_MS;

	if (ep->pending.next == &ep->pending)
		return ms;
	now = fab_now();
	if (ep->pending.next->deadline <= now)
		return 0;
	left = (ep->pending.next->deadline - now + 999999) / 1000000;
	if (ms < 0 || left < (uint64_t)ms)
		ms = left > INT32_MAX ? INT32_MAX : (int)left;
	return ms;
}
