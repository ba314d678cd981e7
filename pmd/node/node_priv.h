/*
 * node_priv.h - what the node layer's files share: the cluster's own
 * state, and the steps each file offers the others (cluster.c drives
 * them from its progress loop). Nothing outside pmd/node includes this.
 *
 * Lock key: (C) set at start; (L) the pmd loop thread.
 */
#ifndef PMD_NODE_PRIV_H
#define PMD_NODE_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "node.h"
#include "fabric.h"
#include "membership.h"

#define PMD_BOUNCES 16                 /* remote I/O through bounce
                                        * buffers at once */

struct pmd_ncall;
struct pmd_lseg;
struct pmd_rio;

/* A bounce buffer of remote I/O (rio.c). */
struct pmd_bounce {
	uint8_t *buf;                  /* (L) PM_IO_MAX bytes; NULL: taken
	                                * by a held request, made again when
	                                * needed */
	struct fab_mr *mr;             /* (L) its registration */
	struct pmd_rio *user;          /* (L) NULL: free */
};

struct pmd_cluster {
	struct pmd_cluster_conf conf;  /* (C) the cluster file, secret too */
	pm_node_t self;                /* (C) */
	char self_addr[300];           /* (C) host:port */
	struct pmd_core *core;         /* (C) the node's core */
	struct fab_ep *ep;             /* (C) the one endpoint */
	fab_peer_t peer[PMD_CLUSTER_NODES_MAX]; /* (C) by index in conf.nodes */
	struct pmd_mb mb;              /* (L) membership */
	int prev_state[PMD_CLUSTER_NODES_MAX];  /* (L) by membership peer
	                                * index: what watch_peers saw last */
	uint64_t prev_inc[PMD_CLUSTER_NODES_MAX]; /* (L) */
	/* A peer we declared down forgot nothing of us if it was only
	 * paused or cut off: once it is back under the same incarnation we
	 * tell it (RESET) to forget what it holds with us, as we did. */
	uint64_t forgot_inc[PMD_CLUSTER_NODES_MAX]; /* (L) 0: nothing to tell */
	struct pmd_reset {                          /* (L) a RESET in flight */
		struct pmd_cluster *c;              /* (its call's argument) */
		unsigned peer;                      /* membership peer index */
		bool busy;
	} resets[PMD_CLUSTER_NODES_MAX];
	uint64_t epoch[PMD_CLUSTER_NODES_MAX];      /* (L) + 1 each time one of
	                                * us forgot the other (down, restart,
	                                * RESET) */
	struct pmd_cluster_upcalls up; /* (C) the daemon's (proxy.c) */
	struct pmd_traffic traffic[PMD_CLUSTER_NODES_MAX]; /* (L) by index in
	                                * conf.nodes */
	bool slept;                    /* (L) the last run ended ready to sleep */
	uint64_t posts_seen;           /* (L) the fabric's posts then */
	/* nreq.c */
	uint8_t nreq_key[32];          /* (C) node requests' MAC key */
	struct pmd_ncall *calls;       /* (L) pending, newest first */
	uint64_t next_id;              /* (L) of our next request */
	uint8_t nreq_in[PMD_NREQ_BODY_MAX]   /* (L) a request's body, aligned */
		__attribute__((aligned(8)));
	uint8_t nreq_out[PMD_NREQ_BODY_MAX]  /* (L) the answer's */
		__attribute__((aligned(8)));
	/* lend.c */
	struct pmd_lseg **lsegs;       /* (L) segments we lend slots of */
	uint32_t nlsegs, lsegs_cap;    /* (L) used, allocated */
	bool lend_low;                 /* (L) a loan was made: check that
	                                * enough slots stay ready */
	bool draining;                 /* (L) lending no more */
	/* rio.c */
	struct pmd_bounce bounce[PMD_BOUNCES]; /* (L) */
	struct pmd_rio *rio_queue;     /* (L) waiting for a bounce, */
	struct pmd_rio **rio_tail;     /*     in order */
	struct pmd_rio *rio_window;    /* (L) in flight from tasks' windows */
	struct pmd_rio *rio_ready;     /* (L) ended while being started: their
	                                * done runs from pmd_cluster_run, never
	                                * from under their caller */
	struct pmd_rio *rio_held;      /* (L) ended, the provider still
	                                * holding pieces: rio.c */
	uint64_t rio_held_total;       /* (L) requests ever held */
};

/* The index of node in c->conf.nodes, or -1. */
static inline int pmd_node_index(const struct pmd_cluster *c, pm_node_t node)
{
	for (unsigned i = 0; i < c->conf.nnodes; i++)
		if (c->conf.nodes[i].id == node)
			return (int)i;
	return -1;
}

/* The traffic counters of node (NULL: not one of ours). */
static inline struct pmd_traffic *pmd_traffic_of(struct pmd_cluster *c,
						 pm_node_t node)
{
	int i = pmd_node_index(c, node);

	return i < 0 ? NULL : &c->traffic[i];
}

/* The node behind a fabric peer (0: none of ours), and back. */
static inline pm_node_t pmd_node_of_peer(const struct pmd_cluster *c,
					 fab_peer_t peer)
{
	for (unsigned i = 0; i < c->conf.nnodes; i++)
		if (c->peer[i] == peer && peer != FAB_PEER_NONE)
			return c->conf.nodes[i].id;
	return 0;
}

static inline fab_peer_t pmd_peer_of_node(const struct pmd_cluster *c,
					  pm_node_t id)
{
	for (unsigned i = 0; i < c->conf.nnodes; i++)
		if (c->conf.nodes[i].id == id)
			return c->peer[i];
	return FAB_PEER_NONE;
}

/* A node request that came in, checked (whole, authentic, between the
 * current incarnations): what a server of its type reads. */
struct pmd_nreq_in {
	pm_node_t src;
	uint64_t src_inc;
	const struct pmd_nreq_hdr *hdr;
	const uint8_t *body;          /* hdr->len bytes (a request's: 8-byte
	                               * aligned) */
};
/* What the server answers: status and len bytes of body (into the
 * buffer given), or nothing now (later: the answer goes with
 * pmd_cluster_answer). */
struct pmd_nreq_out {
	error_t status;
	bool later;
	uint32_t len;
	uint8_t *body;                /* PMD_NREQ_BODY_MAX bytes */
};

/* nreq.c */
error_t pmd_nreq_init(struct pmd_cluster *c);
/* The MAC of a node request (header h, its mac ignored, and body). */
void pmd_nreq_mac(const struct pmd_cluster *c, const struct pmd_nreq_hdr *h,
		  const void *body, uint8_t out[32]);
/* A node request or answer from node src (data from the fabric). */
void pmd_nreq_receive(struct pmd_cluster *c, pm_node_t src, const void *data,
		      size_t len);
/* Calls whose node went down, restarted, or did not answer in time. */
void pmd_nreq_expire(struct pmd_cluster *c);
/* The nearest deadline of a pending call (UINT64_MAX: none). */
uint64_t pmd_nreq_next_deadline(const struct pmd_cluster *c);
/* Every pending call ends with ENODEV. */
void pmd_nreq_stop(struct pmd_cluster *c);

/* borrow.c */
/* A loan's answer that came after its call had ended (ETIMEDOUT): nobody
 * uses those slots, so they go back. */
void pmd_borrow_late(struct pmd_cluster *c, pm_node_t lender, const void *body,
		     size_t len);
/* The accounting check of loans in: slots of each node (by index in
 * c->conf.nodes) that hold frames of ours or go back to it; *ok false
 * (and a line logged) for a frame said to live on no node of ours or in
 * a segment we have no record of. */
void pmd_borrow_count(struct pmd_cluster *c, uint64_t *by_index, bool *ok);

/* lend.c */
void pmd_lend_prepare(struct pmd_cluster *c);
void pmd_lend_serve_alloc(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			  struct pmd_nreq_out *out);
void pmd_lend_serve_free(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			 struct pmd_nreq_out *out);
/* RETURN: tagged slots come back with their bytes (answered later, once
 * the task mapping them stopped). */
void pmd_lend_serve_return(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			   struct pmd_nreq_out *out);
/* cluster.c: RESET: the asking node had declared us down and forgot all
 * it held with us; we forget ours with it. */
/* RECALL: the sender drains (lend.c). */
void pmd_lend_serve_recall(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			   struct pmd_nreq_out *out);
void pmd_cluster_serve_reset(struct pmd_cluster *c,
			     const struct pmd_nreq_in *in,
			     struct pmd_nreq_out *out);
/* The accounting check of loans out: our slots lent to each node (by
 * index in c->conf.nodes); *ok false (and a line logged) when a
 * segment's count, the budget and the slot records disagree. */
void pmd_lend_count(struct pmd_cluster *c, uint64_t *by_index, bool *ok);
/* home is known to have forgotten us (it told us with a RESET, answered
 * ours, or restarted): the memory of the segments we lent it goes. */
void pmd_lend_forgotten(struct pmd_cluster *c, pm_node_t home);
/* Everything lent to home comes back (it went down or restarted). */
void pmd_lend_forget(struct pmd_cluster *c, pm_node_t home);
void pmd_lend_stop(struct pmd_cluster *c);

/* proxy.c */
void pmd_proxy_serve(struct pmd_cluster *c, const struct pmd_nreq_in *in,
		     struct pmd_nreq_out *out);
/* Every proxy of node's tasks goes (it went down or restarted). */
void pmd_proxy_forget(struct pmd_cluster *c, pm_node_t node);
void pmd_proxy_stop(struct pmd_cluster *c);

/* rio.c */
error_t pmd_rio_init(struct pmd_cluster *c);
/* A completion of one of our reads or writes (ctx: its pmd_rio): held
 * and released as the fabric says (fab_cqe). */
void pmd_rio_complete(struct pmd_cluster *c, void *ctx, int status,
		      bool held, bool released);
/* Finishes what ended while being started. */
void pmd_rio_run_ready(struct pmd_cluster *c);
bool pmd_rio_busy(const struct pmd_cluster *c);
void pmd_rio_stop(struct pmd_cluster *c);
/* After the endpoint closed: the buffers. */
void pmd_rio_free(struct pmd_cluster *c);

#endif
