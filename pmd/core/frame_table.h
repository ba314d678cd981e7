/*
 * frame_table.h - a container's sparse map from virtual frame (frame_t) to
 * where its contents are.
 *
 * A radix tree of 64-way nodes whose height grows with the largest frame
 * identifier in use; leaves hold 64 entries inline with a presence bitmap, so
 * a dense run of frames costs 16 bytes per frame plus 1/64 of a leaf header.
 * Empty leaves and interior nodes are freed as the last entry under them
 * goes. Plain data: no I/O, no locks; the container's owner (the pmd loop
 * thread) is the only user: lock key (L).
 *
 * Two-step insertion keeps request handling decode-then-invoke:
 * pmd_ftab_reserve() allocates the nodes on a key's path (it may fail and
 * changes nothing visible), after which pmd_ftab_insert() for that key
 * cannot fail.
 */
#ifndef PMD_FRAME_TABLE_H
#define PMD_FRAME_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

/* (Copy-on-write is no flag: a frame is copy-on-write while its slot's
 * reference count is above one.) */
#define PMD_FRAME_EXTRA  0x1 /* charged as an extra frame (beyond G) */
#define PMD_FRAME_REMOTE 0x4 /* lives on another node: node lent it, seg
			      * and slot are that node's */
#define PMD_FRAME_LOST   0x8 /* remote, and its node went down */

/* Where one virtual frame's contents are. 16 bytes. */
struct pmd_frame {
	uint32_t seg;   /* segment index: in this node's segment table, or
			 * (remote) in the lender's */
	uint16_t slot;  /* slot within that segment */
	uint16_t flags; /* PMD_FRAME_* */
	uint32_t gen;   /* bumped whenever the frame changes place */
	pm_node_t node; /* remote: the node that lent the slot; else 0 */
	uint16_t used;  /* when the pmd last saw it used (pmd_frame_touch) */
};
_Static_assert(sizeof(struct pmd_frame) == 16, "16 bytes a frame");

struct pmd_ftab {
	void *root;      /* (L) leaf when height == 1, interior node above */
	unsigned height; /* (L) 0: empty; levels of nodes, leaves included */
	uint64_t count;  /* (L) present entries */
};

void pmd_ftab_init(struct pmd_ftab *t);
void pmd_ftab_fini(struct pmd_ftab *t);

struct pmd_frame *pmd_ftab_lookup(const struct pmd_ftab *t, frame_t f);

/* Makes room for key f; ENOMEM leaves the table as it was (as seen by
 * lookups: an empty node may stay until the table is finalised). */
error_t pmd_ftab_reserve(struct pmd_ftab *t, frame_t f);

/* Marks f present and returns its zeroed entry. f must not be present and
 * must have been reserved since the last removal. */
struct pmd_frame *pmd_ftab_insert(struct pmd_ftab *t, frame_t f);

/* Removes f, which must be present. */
void pmd_ftab_remove(struct pmd_ftab *t, frame_t f);

/* A look-up cursor for walks over neighbouring frames: it keeps the last
 * leaf a look-up went through, so the frames of one leaf (64 aligned
 * keys) cost one walk down the tree. Valid while no frame is removed from
 * the table (a removal may free the leaf); start it zeroed. */
struct pmd_ftab_leaf {
	uint64_t present;            /* bit i: e[i] is in use */
	struct pmd_frame e[64];
};
struct pmd_ftab_cursor {
	const struct pmd_ftab_leaf *leaf; /* NULL: none yet */
	frame_t base;                     /* its first key */
};
struct pmd_frame *pmd_ftab_lookup_slow(const struct pmd_ftab *t,
				       struct pmd_ftab_cursor *cur, frame_t f);
static inline struct pmd_frame *pmd_ftab_lookup_at(const struct pmd_ftab *t,
						   struct pmd_ftab_cursor *cur,
						   frame_t f)
{
	const struct pmd_ftab_leaf *l = cur->leaf;
	unsigned i = (unsigned)(f & 63);

	if (l && (f & ~(frame_t)63) == cur->base)
		return (l->present >> i) & 1 ? (struct pmd_frame *)&l->e[i]
					     : NULL;
	return pmd_ftab_lookup_slow(t, cur, f);
}
/* Finds the first present frame >= *f; true and *f, *e set when found. */
bool pmd_ftab_next(const struct pmd_ftab *t, frame_t *f, struct pmd_frame **e);

#endif
