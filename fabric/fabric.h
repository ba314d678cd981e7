/*
 * fabric.h - the transport seen by pmd: one endpoint, registered memory,
 * one-sided RMA and bounded messages, driven from one event loop.
 *
 * An endpoint (struct fab_ep) reaches every peer it is given, with
 * messages and one-sided reads and writes of registered memory. Behind
 * this header sit backends (fab_ops.h): libfabric (an FI_EP_RDM endpoint
 * with FI_MSG and FI_RMA, e.g. tcp;ofi_rxm) and native verbs (RC queue
 * pairs through rdma_cm). The transport is configuration ("tcp", "verbs",
 * "ofi:PROVIDER"); PM_FABRIC_PROVIDER in the environment overrides it.
 *
 * Guarantees:
 *  - Every call returns 0 or a positive errno value; nothing aborts. The
 *    provider's own message is logged through the fab_log hook.
 *  - Out-parameters are written only on success.
 *  - Every read, write and send completes exactly once through
 *    fab_ep_poll(): with status 0, with the provider's error, or with
 *    ETIMEDOUT once attr.timeout_ms has passed since it was posted (a dead
 *    or silent peer never holds a caller). The endpoint stays usable for
 *    other peers after any per-operation error.
 *  - Messages between two endpoints are delivered in the order they were
 *    sent (the provider must offer FI_ORDER_SAS, or open fails). A write's
 *    successful completion means the data is visible at the target
 *    (FI_DELIVERY_COMPLETE where the provider offers it; see
 *    fab_ep_info()). No ordering is promised between RMA operations in
 *    flight at the same time, nor between RMA and messages in flight:
 *    wait for the completion first.
 *  - A message longer than attr.msg_size is refused with EMSGSIZE; any
 *    size from 0 to attr.msg_size is delivered whole.
 *
 * After ETIMEDOUT (or ECANCELED from fab_peer_remove()) the provider may
 * still finish the transfer late: the slot stays reserved and its region
 * busy (fab_mr_dereg() says EBUSY) until the provider lets go (the peer
 * answers, or its connection breaks) or until fab_ep_close().
 *
 * A remote access with a wrong or revoked key is refused by the target
 * and nothing is written. Over tcp the target also drops the connection:
 * other operations in flight to that peer fail with a link error, and the
 * next post reconnects. The verbs transport replaces the queue pair the
 * refusal left in error and posts again what it flushed: only the refused
 * operation fails. Check keys before posting either way.
 *
 * Lock key: an endpoint and everything made from it belong to the one
 * thread that calls fab_ep_poll() on it, (L). No call takes a lock.
 */
#ifndef PM_FABRIC_H
#define PM_FABRIC_H

#include <errno.h> /* error_t (_GNU_SOURCE) */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FAB_PROVIDER_ENV      "PM_FABRIC_PROVIDER"
#define FAB_TRANSPORT_DEFAULT "tcp"         /* libfabric's tcp;ofi_rxm */
#define FAB_PROVIDER_DEFAULT  "tcp;ofi_rxm"
#define FAB_NAME_MAX         256 /* bytes of an endpoint name */

/* A peer in the endpoint's address table; FAB_PEER_NONE when unknown. */
typedef uint64_t fab_peer_t;
#define FAB_PEER_NONE UINT64_MAX

/* Configuration of fab_ep_open(). Zero fields take the defaults. */
struct fab_attr {
	const char *provider; /* the transport: "tcp" (default; libfabric's
	                       * tcp;ofi_rxm), "verbs" (native), or
	                       * "ofi:PROVIDER"; a bare libfabric provider
	                       * name ("verbs;ofi_rxm") is taken too */
	const char *node;     /* local address to bind, e.g. "192.0.2.11";
	                       * verbs: an address of the RDMA device */
	const char *service;  /* local port; NULL picks one */
	size_t msg_size;      /* largest message, bytes (default 4096) */
	unsigned tx_depth;    /* reads + writes + sends in flight (default 256) */
	unsigned rx_depth;    /* receive buffers posted (default 64) */
	unsigned timeout_ms;  /* per-operation deadline (default 5000) */
	int busy_poll;        /* no wait descriptor: the caller only polls
	                       * (saves a wake-up per completion on rxm) */
	int report_release;   /* a read or write reported failed (ETIMEDOUT,
	                       * ECANCELED) while the provider still holds it
	                       * comes with cqe.held set, and once the
	                       * provider has let go of its local buffer, a
	                       * second completion says so (cqe.released) */
};

/* An endpoint's address, as exchanged between nodes (opaque bytes). */
struct fab_name {
	uint32_t len; /* bytes used in data */
	uint8_t data[FAB_NAME_MAX];
};

/* What a peer needs to reach a registered region: sent to it by the owner. */
struct fab_rkey {
	uint64_t key;  /* the region's remote key */
	uint64_t base; /* remote address of offset 0 (0 unless FI_MR_VIRT_ADDR) */
	uint64_t len;  /* bytes in the region */
};

/* What the endpoint ended up with, for logs and for an info command. */
struct fab_info {
	char provider[64];     /* provider chain actually opened */
	uint64_t mr_mode;      /* FI_MR_* bits the provider asked for */
	size_t key_size;       /* bytes of a remote key the caller may choose */
	int prov_key;          /* keys are chosen by the provider, not the caller */
	int delivery_complete; /* write completion = visible at the target */
	int wait_fd;           /* fab_ep_wait_fd() has a descriptor */
	size_t msg_size;       /* effective attr values */
	unsigned tx_depth, rx_depth, timeout_ms;
	unsigned inflight;  /* operations posted and not yet reported */
	unsigned abandoned; /* reported (ETIMEDOUT/ECANCELED), provider not done */
};

enum fab_op_type {
	FAB_OP_READ = 1,
	FAB_OP_WRITE,
	FAB_OP_SEND,
	FAB_OP_RECV,
};

/* Access rights of a region (fab_mr_reg). */
/* local buffer of this endpoint's reads and writes */
#define FAB_ACCESS_LOCAL        0x1u
#define FAB_ACCESS_REMOTE_READ  0x2u /* peers may read it */
#define FAB_ACCESS_REMOTE_WRITE 0x4u /* peers may write it */

/* One completion. */
struct fab_cqe {
	void *ctx;      /* the caller's context from the post; NULL for RECV */
	error_t status; /* 0 or a positive errno */
	enum fab_op_type op;
	fab_peer_t peer;  /* peer of the operation; sender of a RECV if known */
	size_t len;       /* bytes transferred (RECV: message length) */
	const void *data; /* RECV: the message, valid until the next fab_ep_poll() */
	bool held;        /* READ/WRITE reported failed before the provider
	                   * was done: it may still read or write the local
	                   * buffer, until a completion with released comes
	                   * (only with fab_attr.report_release) */
	bool released;    /* that later completion: the buffer is the
	                   * caller's again (status: what the provider said) */
};

struct fab_ep;
struct fab_mr;

/* Logging hook; level is a syslog(3) priority. Default: stderr for
 * LOG_WARNING and worse. fn NULL restores the default. Process-wide. */
typedef void fab_log_fn(int level, const char *msg, void *arg);
void fab_log_set(fab_log_fn *fn, void *arg);

/* Endpoints. fab_ep_close() fails with EBUSY while a region nothing uses is
 * still registered; regions held only by abandoned operations (dereg said
 * EBUSY) are released by the close, after the provider has let go. */
error_t fab_ep_open(const struct fab_attr *attr, struct fab_ep **ep_out);
error_t fab_ep_close(struct fab_ep *ep);
error_t fab_ep_info(const struct fab_ep *ep, struct fab_info *info_out);
error_t fab_ep_name(const struct fab_ep *ep, struct fab_name *name_out);

/* The address of the endpoint another node opened at node:service (its
 * fab_attr.node and .service), as the provider names it; ENOENT when the
 * provider cannot resolve it. */
error_t fab_name_resolve(const struct fab_ep *ep, const char *node,
			 const char *service, struct fab_name *name_out);

/* Peers. Removing a peer fails its operations in flight with ECANCELED. */
error_t fab_peer_insert(struct fab_ep *ep, const struct fab_name *name,
			fab_peer_t *peer_out);
error_t fab_peer_remove(struct fab_ep *ep, fab_peer_t peer);

/* Memory regions. key is the caller's choice (use fab_key_random()); a
 * provider with FI_MR_PROV_KEY picks its own, which fab_mr_rkey() reports.
 * EEXIST: key already in use. EBUSY from dereg: operations still use it. */
error_t fab_key_random(const struct fab_ep *ep, uint64_t *key_out);
error_t fab_mr_reg(struct fab_ep *ep, void *buf, size_t len, unsigned access,
		   uint64_t key, struct fab_mr **mr_out);
error_t fab_mr_dereg(struct fab_mr *mr);
error_t fab_mr_rkey(const struct fab_mr *mr, struct fab_rkey *rkey_out);

/* One-sided operations: local range [off, off+len) of mr (FAB_ACCESS_LOCAL)
 * to or from remote range [roff, roff+len) of the region rkey names.
 * EAGAIN: tx_depth operations in flight; poll and retry. */
error_t fab_read(struct fab_ep *ep, fab_peer_t peer, struct fab_mr *mr,
		 size_t off, const struct fab_rkey *rkey, uint64_t roff,
		 size_t len, void *ctx);
error_t fab_write(struct fab_ep *ep, fab_peer_t peer, struct fab_mr *mr,
		  size_t off, const struct fab_rkey *rkey, uint64_t roff,
		  size_t len, void *ctx);

/* Messages. buf is copied before fab_send() returns. */
error_t fab_send(struct fab_ep *ep, fab_peer_t peer, const void *buf,
		 size_t len, void *ctx);

/* Progress: drives the provider, reaps up to max completions and fails
 * operations whose deadline has passed. *n_out may be 0. */
error_t fab_ep_poll(struct fab_ep *ep, struct fab_cqe *cqes, size_t max,
		    size_t *n_out);

/*
 * Event loop integration. fab_ep_wait_fd() gives a descriptor to put in
 * epoll (EPOLLIN) or EOPNOTSUPP when the provider has none; then poll at
 * most every fab_ep_timeout_ms() milliseconds. Before sleeping, call
 * fab_ep_trywait(): 0 means sleeping is safe, EAGAIN means poll again
 * first. Sleep no longer than fab_ep_timeout_ms() so that deadlines fire
 * on time: -1 when nothing waits on a deadline and the provider has a wait
 * descriptor, otherwise a bounded number of milliseconds.
 */
error_t fab_ep_wait_fd(const struct fab_ep *ep, int *fd_out);
error_t fab_ep_trywait(struct fab_ep *ep);
int fab_ep_timeout_ms(const struct fab_ep *ep);
/* How many sends, reads and writes were submitted so far: a caller that
 * polled, slept safely (trywait 0) and sees no event on the descriptor
 * and no new post since has nothing to poll for. */
uint64_t fab_ep_posts(const struct fab_ep *ep);
/* Whether all it waits for shows on its descriptor: it has one, and no
 * backlog to retry (else poll every fab_ep_timeout_ms()). */
bool fab_ep_wakes(const struct fab_ep *ep);

#ifdef __cplusplus
}
#endif

#endif /* PM_FABRIC_H */
