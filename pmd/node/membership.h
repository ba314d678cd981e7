/*
 * membership.h - who is in the cluster, authenticated and alive: the node
 * protocol's logic, with no I/O (the daemon's cluster.c moves the bytes).
 *
 * Every node knows every other from the cluster file. A node that is not
 * up is challenged (CHAL, a fresh nonce) at every retry; a challenged node
 * answers (RESP: its nonce and a MAC over both nonces, both ids and both
 * incarnations, under the cluster secret); the challenger checks it, marks
 * the peer up and confirms (CONF: a MAC over the same in the other order),
 * which the other checks before it marks the challenger up. Both sides may
 * challenge at once; either handshake suffices. A node without the secret
 * cannot answer or confirm: it is refused and logged, and stays down.
 *
 * Up peers send heartbeats (HB: a sequence number and their free frames,
 * under a MAC); a peer not heard from for suspect_ms is suspect, for
 * down_ms down. An incarnation (set at start, growing) tells a restarted
 * node from its former self: heartbeats of an old incarnation are ignored,
 * and a node that comes back is challenged afresh and rejoins under its
 * new incarnation.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_MEMBERSHIP_H
#define PMD_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pm/pm.h>

#include "cluster_conf.h"
#include "node_proto.h"

struct pmd_mb_peer {
	pm_node_t id;                 /* (C) */
	int state;                    /* (L) PM_NODE_* */
	uint64_t inc;                 /* (L) its incarnation once authenticated */
	uint64_t last_heard_ms;       /* (L) last valid message */
	uint64_t next_chal_ms;        /* (L) when to challenge again */
	uint8_t chal_nonce[16];       /* (L) our last challenge to it */
	bool chal_pending;            /* (L) and it is unanswered */
	uint8_t resp_nonce[16];       /* (L) our last answer's nonce, for CONF */
	uint64_t resp_inc;            /* (L) its incarnation in that challenge */
	bool resp_pending;            /* (L) and it is unconfirmed */
	uint64_t hb_seq_in;           /* (L) highest sequence heard */
	uint64_t frames_total, frames_free; /* (L) as its heartbeats say */
	uint64_t phys_free;           /* (L) as its VER says (pm_nodes'
	                              * free frames) ... */
	bool phys_known;              /* (L) ... if it said (older nodes do
	                              * not), reset when it restarts */
	uint16_t nreq_min, nreq_max;  /* (L) the node requests it speaks, as
	                              * its VER says; 0: it said nothing
	                              * (an older node), reset when it
	                              * restarts */
	uint64_t ver_seq_in;          /* (L) highest VER sequence heard */
	uint64_t refused;             /* (L) failed authentications */
};

struct pmd_mb {
	pm_node_t self;               /* (C) */
	uint64_t inc;                 /* (C) ours */
	uint8_t secret[PMD_SECRET_MAX]; /* (C) the cluster secret */
	size_t secret_len;            /* (C) */
	uint32_t heartbeat_ms, suspect_ms, down_ms; /* (C) */
	uint64_t hb_seq;              /* (L) our heartbeats */
	uint64_t next_hb_ms;          /* (L) when the next one goes */
	unsigned npeers;              /* (C) */
	struct pmd_mb_peer peers[PMD_CLUSTER_NODES_MAX]; /* (L) */
	/* What the daemon sends: filled by the calls below, drained by it. */
	struct pmd_mb_out {
		pm_node_t to;
		struct pmd_mb_msg msg;
	} out[3 * PMD_CLUSTER_NODES_MAX];               /* (L) HB, VER
	                                                 * and CHAL each */
	unsigned nout;                /* (L) */
	/* Our own frames, for heartbeats (the daemon keeps them current):
	 * the budget's, and those no physical page takes (for VER). */
	uint64_t frames_total, frames_free, phys_free;  /* (L) */
};

/* Every node but self is a peer, down. inc must grow across restarts. */
void pmd_mb_init(struct pmd_mb *mb, const struct pmd_cluster_conf *conf,
		 pm_node_t self, uint64_t inc);
/* Time passes: challenges, heartbeats, suspect/down. */
void pmd_mb_tick(struct pmd_mb *mb, uint64_t now_ms);
/* A message from the transport (len bytes, from the peer the transport
 * says it came from: 0 when unknown). Bad ones are dropped. */
void pmd_mb_receive(struct pmd_mb *mb, uint64_t now_ms, pm_node_t src,
		    const void *data, size_t len);
/* The next deadline worth waking up for. */
uint64_t pmd_mb_next_ms(const struct pmd_mb *mb);

struct pmd_mb_peer *pmd_mb_peer(struct pmd_mb *mb, pm_node_t id);
/* The node-request version to speak with p: the highest both speak; 0
 * when none (it said it speaks only versions we do not). */
uint16_t pmd_mb_nreq_version(const struct pmd_mb_peer *p);
/* Whether a node request of version v is one we take. */
static inline bool pmd_nreq_version_ok(uint16_t v)
{
	return v >= PMD_NREQ_VERSION_MIN && v <= PMD_NREQ_VERSION;
}

#endif
