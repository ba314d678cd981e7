/*
 * store.h - the backing store's slots (plain data; the daemon does the
 * I/O, pmd/daemon/store.c).
 *
 * A frame paged out to the backing store is a remote frame of a pseudo
 * node, PMD_NODE_STORE, whose "segments" are consecutive ranges of
 * PMD_SEG_SLOTS slots of the store file (segment k starts at byte
 * k * PMD_SEG_SLOTS * PM_FRAME_SIZE): every path that reads, writes,
 * pulls home, gives back or loses remote frames serves it as it serves
 * frames another node lends, and the daemon's I/O sends the pieces of
 * that node to the file instead of the fabric. The store never goes
 * down; a write to it that fails loses its frames (EIO), as a remote
 * write that fails does.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_STORE_H
#define PMD_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#define PMD_NODE_STORE 0xffffu /* no node of a cluster (PM_NODES_MAX) */

struct pmd_place;

/* Slots kept free for frames that must come home from a full store: a
 * page-in takes memory, which a page-out into the store frees, and
 * only the page-in's end frees its slot there. Guarantees never reserve
 * them, and only a page-out for a page-in uses them. */
#define PMD_STORE_RESERVE 64u

struct pmd_store {
	uint64_t nslots;             /* (C) 0: no backing store */
	uint64_t reserve;            /* (C) of them, kept for page-ins */
	uint64_t used;               /* (L) slots holding frames, */
	uint64_t pending;            /* (L) of them, taken by page-outs
	                              * whose frames are not there yet (their
	                              * mappers stopping) */
	uint64_t *bits;              /* (L) one per slot, set: in use */
	uint64_t hint;               /* (L) where the next search begins */
};

/* A store of nslots slots (0: none). ENOMEM. */
error_t pmd_store_init(struct pmd_store *s, uint64_t nslots);
void pmd_store_fini(struct pmd_store *s);

/* Free slots, apart from the reserve unless for a page-in. */
static inline uint64_t pmd_store_free(const struct pmd_store *s,
				      bool page_in)
{
	uint64_t keep = page_in ? 0 : s->reserve;

	return s->nslots - s->used > keep ? s->nslots - s->used - keep : 0;
}

/* Up to n free slots, as places of PMD_NODE_STORE; how many. */
uint32_t pmd_store_take(struct pmd_store *s, uint32_t n,
			struct pmd_place *out);
/* Slot (seg, slot) is free again. */
void pmd_store_put(struct pmd_store *s, uint32_t seg, uint16_t slot);

#endif
