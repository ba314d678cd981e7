/*
 * fab_ops.h - the seam between the endpoint logic (fabric.c) and a backend.
 *
 * fabric.c owns what every backend shares: the operation slots, deadlines,
 * message buffers, argument checks and the public entry points. A backend
 * (fab_ofi.c for libfabric, fab_verbs.c for libibverbs and librdmacm)
 * only posts work and reports raw completions, through the const ops
 * table below. Backend objects embed struct fab_ep / struct fab_mr.
 *
 * Lock key: (C) constant after open, (L) endpoint's owning thread.
 */
#ifndef PM_FAB_OPS_H
#define PM_FAB_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fabric.h"

#define fab_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum fab_op_state {
	FAB_OPS_FREE = 0,  /* on the free list */
	FAB_OPS_QUEUED,    /* on the deadline list, not yet with the provider */
	FAB_OPS_POSTED,    /* with the provider, on the deadline list */
	FAB_OPS_ABANDONED, /* reported to the caller, provider not done */
	FAB_OPS_RX_READY,  /* receive: delivered, to be reposted */
};

/* One operation slot. tx slots own a message buffer each, rx slots too. */
struct fab_op {
	struct fab_op *next;     /* (L) deadline, free or repost list */
	struct fab_op *prev;     /* (L) deadline list only */
	struct fab_op *qnext;    /* (L) backlog (QUEUED only), NULL when not on it */
	struct fab_op *qprev;    /* (L) */
	void *ctx;               /* (L) caller's context */
	uint64_t deadline;       /* (L) CLOCK_MONOTONIC ns; 0 = fail now */
	fab_peer_t peer;         /* (L) caller's peer index */
	uint64_t addr;           /* (L) backend address of the peer at post time */
	struct fab_mr *mr;       /* (L) local region, held busy; NULL for messages */
	void *local;             /* (L) local address of the transfer */
	void *desc;              /* (L) provider descriptor of local, or NULL */
	uint64_t raddr;          /* (L) remote address (RMA) */
	uint64_t rkey;           /* (L) remote key (RMA) */
	size_t len;              /* (L) bytes */
	int status;              /* (L) status reported when abandoned */
	enum fab_op_type type;   /* (L) */
	enum fab_op_state state; /* (L) */
	bool held;               /* (L) ABANDONED, its release to be reported */
	void *msg;               /* (C) this slot's message buffer */
	/* The backend's own, while the slot is with it (POSTED, ABANDONED). */
	void *bconn;             /* (L) connection it was posted on */
	struct fab_op *bnext;    /* (L) backend's list (e.g. to post again) */
};

/* A completion as a backend reports it. */
struct fab_comp {
	struct fab_op *op; /* the slot given to post_* */
	error_t status;    /* 0 or positive errno */
	size_t len;        /* bytes (receives) */
	uint64_t src;      /* backend address of a receive's sender, or
	                    * FAB_PEER_NONE */
};

/* A peer: the caller's fab_peer_t is its index in ep->peers. */
struct fab_peer {
	struct fab_name name; /* (L) as inserted */
	uint64_t addr;        /* (L) backend address, FAB_PEER_NONE if none */
	bool used;            /* (L) the slot holds a peer */
	bool reset;           /* (L) connection failed: re-insert before next post */
	unsigned queued;      /* (L) its slots on the backlog */
	uint64_t blocked;     /* (L) flush pass in which the provider refused it */
};

struct fab_mr {
	struct fab_ep *ep;   /* (C) */
	struct fab_mr *next; /* (L) the endpoint's list of caller regions */
	struct fab_mr *prev; /* (L) */
	void *buf;           /* (C) */
	size_t len;          /* (C) bytes */
	unsigned access;     /* (C) FAB_ACCESS_* */
	uint64_t key;        /* (C) effective remote key */
	uint64_t base;       /* (C) remote address of offset 0 */
	void *desc;          /* (C) local descriptor, NULL if not needed */
	unsigned busy;       /* (L) slots (posted or abandoned) using it */
	bool internal;       /* (C) the endpoint's own message buffers */
};

struct fab_ops;

struct fab_ep {
	const struct fab_ops *ops; /* (C) backend */
	struct fab_info info;      /* (C) except inflight/abandoned (L) */
	uint64_t timeout_ns;       /* (C) */
	bool report_release;       /* (C) fab_attr.report_release */
	struct fab_op *tx;         /* (C) tx_depth slots */
	struct fab_op *rx;         /* (C) rx_depth slots */
	struct fab_op *tx_free;    /* (L) free tx slots */
	struct fab_op pending;     /* (L) queued + posted tx slots, oldest
	                            * deadline first (sentinel) */
	struct fab_op backlog;     /* (L) slots the provider refused with
	                            * EAGAIN, in post order (sentinel) */
	uint64_t posts;            /* (L) sends, reads and writes submitted */
	uint64_t flush_pass;       /* (L) backlog flushes so far */
	struct fab_op *rx_repost;  /* (L) receives delivered by the last poll */
	void *msg_buf;             /* (C) (tx_depth + rx_depth) * msg_size bytes */
	struct fab_mr *msg_mr;     /* (C) its registration */
	struct fab_mr mrs;         /* (L) caller's regions (sentinel) */
	struct fab_peer *peers;    /* (L) nr_peers slots, grown by fab_peer_insert */
	size_t nr_peers;           /* (L) */
	size_t last_src;           /* (L) index of the last sender looked up */
};

/* The backend's table; entries sorted, size first. */
struct fab_ops {
	size_t size;
	const char *name;
	error_t (*av_insert)(struct fab_ep *ep, const struct fab_name *name,
			     uint64_t *addr_out);
	error_t (*av_remove)(struct fab_ep *ep, uint64_t addr);
	error_t (*cq_read)(struct fab_ep *ep, struct fab_comp *comps, size_t max,
			   size_t *n_out);
	/* Closes the endpoint proper: no completion is reported afterwards. */
	error_t (*ep_close)(struct fab_ep *ep);
	/* Frees what is left once regions are gone. */
	void (*ep_free)(struct fab_ep *ep);
	error_t (*ep_name)(const struct fab_ep *ep, struct fab_name *name_out);
	/* Allocates the backend endpoint, fills ops and the static info. */
	error_t (*ep_open)(const struct fab_attr *attr, struct fab_ep **ep_out);
	error_t (*mr_dereg)(struct fab_mr *mr);
	/* The provider's address of node:service, in this endpoint's format. */
	error_t (*name_resolve)(const struct fab_ep *ep, const char *node,
				const char *service, struct fab_name *name_out);
	error_t (*mr_reg)(struct fab_ep *ep, void *buf, size_t len, unsigned access,
			  uint64_t key, struct fab_mr **mr_out);
	error_t (*post_read)(struct fab_ep *ep, struct fab_op *op);
	error_t (*post_recv)(struct fab_ep *ep, struct fab_op *op);
	error_t (*post_send)(struct fab_ep *ep, struct fab_op *op);
	error_t (*post_write)(struct fab_ep *ep, struct fab_op *op);
	error_t (*trywait)(struct fab_ep *ep);
	error_t (*wait_fd)(const struct fab_ep *ep, int *fd_out);
};

extern const struct fab_ops fab_ofi_ops;
#ifdef FAB_HAVE_VERBS
extern const struct fab_ops fab_verbs_ops;
#endif

/* Logging for fabric/ files; printf-style, no trailing newline. */
void fab_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* PM_FAB_OPS_H */
