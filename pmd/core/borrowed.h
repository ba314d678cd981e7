/*
 * borrowed.h - what other nodes lent this node: slots in their segments
 * that hold frames homed here (remote frames), how to reach those
 * segments by RDMA, and the slots to give back.
 *
 * The core only keeps the books; the node layer moves the bytes and sends
 * the requests (it drains core->rfree). When a lender goes down or
 * restarts, every frame it held is lost (PMD_FRAME_LOST: EIO on access)
 * and nothing is given back to it.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_BORROWED_H
#define PMD_BORROWED_H

#include <stdint.h>

#include <pm/pm.h>

#include "core.h"

/* A segment another node lent us slots of: how to reach it. A segment
 * that node keeps for one of its tasks' mappings of one container of
 * ours (a forwarded map put the frames there) is tagged with both. */
struct pmd_rseg {
	pm_node_t node;                 /* (L) the lender */
	uint32_t seg;                   /* (L) its index there */
	uint64_t key, base, len;        /* (L) its fabric registration */
	uint64_t tag_task, tag_cont;    /* (L) 0: lent for any frames */
};

/* A lent slot we no longer use, to be given back. */
struct pmd_rfree {
	pm_node_t node;
	uint32_t seg;
	uint16_t slot;
};

/* Where a frame goes: here (node 0), or one slot a node lent. */
struct pmd_place {
	pm_node_t node;                 /* 0: here */
	uint32_t seg;                   /* lent: the lender's segment, */
	uint16_t slot;                  /*       slot, */
	uint64_t key, base, len;        /*       registration (len 0: no
	                                 *       slot yet) */
	uint64_t tag_task, tag_cont;    /*       and tag (pmd_rseg) */
};

/* The lender's segment seg of node, or NULL when we use none. */
const struct pmd_rseg *pmd_rseg_find(const struct pmd_core *core,
				     pm_node_t node, uint32_t seg);
/* Records (or refreshes) the segment of a lent place. */
error_t pmd_rseg_add(struct pmd_core *core, const struct pmd_place *p);

/* Queues a lent slot to be given back to its node. Out of memory, it
 * stays lent until that node restarts (logged). */
void pmd_rslot_give_back(struct pmd_core *core, pm_node_t node, uint32_t seg,
			 uint16_t slot);
/* The same for places that hold a lent slot (others are skipped). */
void pmd_places_give_back(struct pmd_core *core, const struct pmd_place *p,
			  uint32_t n);

/* Node went down (or restarted): its frames are lost, nothing is given
 * back to it, and its segments are forgotten. */
void pmd_node_lost(struct pmd_core *core, pm_node_t node);

/* The frames in the slots at [roff, roff + len) of node's registration
 * key (a write to them failed on the fabric) are lost: EIO until
 * deallocated. A walk of every frame (failures are rare). */
void pmd_rslots_lost(struct pmd_core *core, pm_node_t node, uint64_t key,
		     uint64_t roff, uint64_t len);
/* The segment of node registered with key, or NULL. */
const struct pmd_rseg *pmd_rseg_by_key(const struct pmd_core *core,
				       pm_node_t node, uint64_t key);

#endif
