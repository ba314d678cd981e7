/*
 * fab_verbs.h - the native verbs backend (private to fabric/verbs/).
 *
 * One endpoint is a listening rdma_cm id on the node's address, one
 * protection domain, one completion queue (with a completion channel when
 * the caller sleeps) and one shared receive queue. Every peer gets one
 * reliable connection (an RC queue pair) that this endpoint opens, on its
 * first post, and uses for everything it sends that peer: messages, reads
 * and writes. What peers send us arrives on the connections they opened,
 * into the shared receive queue. Two connections per pair, each used in
 * one direction, keep per-peer order without a connection race.
 *
 * Failure model (what the libfabric route cannot do on rxe):
 *  - An operation the peer refuses on its own (a wrong key, a range
 *    outside the region, a message too long) ends that operation with its
 *    error. The queue pair is then in error and flushes what followed, so
 *    the connection is replaced: flushed work is kept, in order, and
 *    posted again on the new queue pair, unless the peer's endpoint is no
 *    longer the one first reached (its nonce changed: it restarted), in
 *    which case that work fails with ECONNRESET.
 *  - A link failure (retries exhausted, the peer disconnected) fails the
 *    operations of the connection with a link error (fabric.c then puts
 *    the peer back in the table, and the next post reconnects).
 *  - A peer that cannot be reached is tried again at most every
 *    FVB_BACKOFF_MS; posts wait on fabric.c's backlog meanwhile. A
 *    connection not up within FVB_CONNECT_MS is tried anew (a lost
 *    connect request would wait out rdma_cm's timeouts, seconds long).
 *  - A disconnect puts the queue pair in error, so its work is flushed.
 *
 * Files, each using only those after it: fab_verbs.c (the endpoint, the
 * address table, regions, the ops table), verbs_cq.c (posting,
 * completions, sleeping), verbs_conn.c (connections, rdma_cm events,
 * posting on a connection), verbs_util.c (clock, addresses, table
 * lookups, completions made here).
 *
 * Lock key: (C) constant after open, (L) the endpoint's owning thread.
 */
#ifndef PM_FAB_VERBS_H
#define PM_FAB_VERBS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "fab_ops.h"

#define FVB_BACKOFF_MS   100  /* between connection attempts to a peer */
#define FVB_CONNECT_MS   1000 /* a connection not up by then is tried anew */
#define FVB_RESOLVE_MS   2000 /* rdma_cm address and route resolution */
#define FVB_CM_CHECK_MS  1    /* rdma_cm events looked at while busy */
#define FVB_INLINE       256  /* inline message bytes asked of a QP */
#define FVB_STASH        64   /* completions found by trywait */
#define FVB_MIN_RNR_TIMER 12  /* IB code: 0.64 ms before a sender retries */
#define FVB_NO_PEER      UINT32_MAX
#define FVB_HELLO_MAGIC  0x42564d50u /* "PMVB", little-endian */
#define FVB_HELLO_VERSION 1

/* Private data of a connect and of its accept: who is calling, and which
 * instance of an endpoint answers. 44 bytes, within rdma_cm's 56. */
struct fvb_hello {
	uint32_t magic;     /* FVB_HELLO_MAGIC */
	uint16_t version;   /* FVB_HELLO_VERSION */
	uint16_t addr_len;  /* bytes of addr: a sockaddr_in or _in6 */
	uint64_t nonce;     /* the sender's endpoint instance */
	uint8_t addr[28];   /* connect: the caller's listening address */
};

enum fvb_state {
	FVB_RESOLVING,  /* outgoing: address, then route, being resolved */
	FVB_CONNECTING, /* connect (or accept) sent, not established */
	FVB_UP,         /* established */
	FVB_RECOVER,    /* an operation failed alone; the QP is in error, and
	                 * flushed work waits (redo) for a new QP */
	FVB_BROKEN,     /* the link failed: flushed work fails */
	FVB_CLOSING,    /* the peer was removed: flushed work is cancelled */
};

struct fvb_ep;

/* One RC connection. Freed only when no work posted on it is pending, so
 * a completion always finds its connection (op->bconn). */
struct fvb_conn {
	struct fvb_ep *vep;          /* (C) */
	struct fvb_conn *next;       /* (L) the endpoint's list */
	struct rdma_cm_id *id;       /* (L) */
	struct ibv_qp *qp;           /* (L) id->qp once created */
	uint32_t qp_num;             /* (L) */
	uint32_t max_inline;         /* (L) inline bytes the QP takes */
	enum fvb_state state;        /* (L) */
	bool outgoing;               /* (C) we connected (else accepted) */
	bool dead;                   /* (L) incoming, disconnected: freed when
	                              * the CQ was last seen empty */
	uint32_t peer;               /* (L) outgoing: address-table index, or
	                              * FVB_NO_PEER once removed */
	unsigned posted;             /* (L) send-queue work not completed */
	struct fab_op *redo;         /* (L) flushed work to post again, in order */
	struct fab_op *redo_tail;    /* (L) */
	struct sockaddr_storage src; /* (C) incoming: the caller's listening
	                              * address, from its hello */
	socklen_t src_len;           /* (C) */
	uint64_t src_addr;           /* (L) incoming: its address-table entry */
	uint64_t src_epoch;          /* (L) table epoch src_addr was found in */
	uint64_t give_up_at;         /* (L) outgoing, not up: ns to try anew */
};

/* One address-table entry: fab_peer_t's backend address is
 * gen << 32 | index, so a stale address never names a new entry. */
struct fvb_av {
	struct sockaddr_storage sa;  /* (L) the peer's listening address */
	socklen_t len;               /* (L) */
	uint32_t gen;                /* (L) bumped at every insert */
	bool used;                   /* (L) */
	struct fvb_conn *conn;       /* (L) our connection to it, or NULL */
	uint64_t retry_at;           /* (L) ns: no new connect before this */
	uint64_t nonce;              /* (L) its endpoint instance, 0 if unknown */
};

struct fvb_ep {
	struct fab_ep super;
	struct rdma_event_channel *cm_ch; /* (C) non-blocking */
	struct rdma_cm_id *listen;   /* (C) bound to the node's address */
	struct ibv_context *ctx;     /* (C) listen->verbs: the device */
	struct ibv_pd *pd;           /* (C) */
	struct ibv_comp_channel *comp_ch; /* (C) NULL with busy_poll */
	struct ibv_cq *cq;           /* (C) sends and receives of all QPs */
	struct ibv_srq *srq;         /* (C) every QP's receives */
	int epfd;                    /* (C) comp_ch and cm_ch, -1 if none */
	uint32_t max_send_wr;        /* (C) per outgoing QP */
	uint32_t max_msg;            /* (C) device's largest transfer */
	uint8_t rd_init, rd_resp;    /* (C) RDMA reads in flight, each way */
	uint64_t nonce;              /* (C) this endpoint's instance */
	struct sockaddr_storage self; /* (C) listening address, real port */
	socklen_t self_len;          /* (C) */
	struct fvb_av *av;           /* (L) address table */
	size_t nav;                  /* (L) */
	uint64_t av_epoch;           /* (L) bumped at every insert and remove */
	struct fvb_conn *conns;      /* (L) every connection */
	struct fvb_conn *last_rx;    /* (L) the last receive's connection */
	struct fab_comp *done;       /* (L) ring of completions made here */
	size_t done_cap, done_head, done_n; /* (L) */
	struct ibv_wc stash[FVB_STASH]; /* (L) found by trywait, not reaped */
	unsigned stash_n, stash_pos; /* (L) */
	uint64_t cm_checked;         /* (L) ns of the last look at cm_ch */
	bool kick;                   /* (L) state moved: poll before sleeping */
	bool closed;                 /* (L) ep_close done */
};

static inline struct fvb_ep *fvb_ep(const struct fab_ep *ep)
{
	return fab_container_of(ep, struct fvb_ep, super);
}

/* verbs_util.c */
uint64_t fvb_now(void);
/* "host:port" of an address, for logs. */
const char *fvb_sa_str(const struct sockaddr_storage *sa, char *buf,
		       size_t len);
/* A peer's listening address from its bytes: only AF_INET/AF_INET6,
 * written out canonically; EINVAL otherwise. */
error_t fvb_sa_parse(const void *data, size_t len,
		     struct sockaddr_storage *sa_out, socklen_t *len_out);
bool fvb_sa_equal(const struct sockaddr_storage *a, socklen_t alen,
		  const struct sockaddr_storage *b, socklen_t blen);
struct fvb_av *fvb_av_get(struct fvb_ep *vep, uint64_t addr);
uint64_t fvb_av_addr(const struct fvb_ep *vep, uint32_t index);
/* Queues a completion made here (not by the device). */
void fvb_done(struct fvb_ep *vep, struct fab_op *op, error_t status);

/* verbs_conn.c */
error_t fvb_conn_connect(struct fvb_ep *vep, uint32_t peer,
			 struct fab_op *redo);
void fvb_conn_check(struct fvb_conn *conn);
void fvb_conn_detach(struct fvb_conn *conn);
void fvb_conn_free(struct fvb_conn *conn);
/* Keeps a flushed operation to post again, after those kept before. */
void fvb_redo_push(struct fvb_conn *conn, struct fab_op *op);
void fvb_cm_events(struct fvb_ep *vep);
void fvb_conns_expire(struct fvb_ep *vep);
void fvb_conns_bury(struct fvb_ep *vep);
error_t fvb_post_op(struct fvb_conn *conn, struct fab_op *op);

/* verbs_cq.c */
error_t fvb_post_read(struct fab_ep *ep, struct fab_op *op);
error_t fvb_post_write(struct fab_ep *ep, struct fab_op *op);
error_t fvb_post_send(struct fab_ep *ep, struct fab_op *op);
error_t fvb_post_recv(struct fab_ep *ep, struct fab_op *op);
error_t fvb_cq_read(struct fab_ep *ep, struct fab_comp *comps, size_t max,
		    size_t *n_out);
error_t fvb_trywait(struct fab_ep *ep);
error_t fvb_wait_fd(const struct fab_ep *ep, int *fd_out);

#endif /* PM_FAB_VERBS_H */
