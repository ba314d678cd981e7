/*
 * segment.h - segments: the memory that frames live in.
 *
 * A segment is a memfd of PMD_SEG_SLOTS frame slots, mapped once in the pmd
 * (and, for tasks allowed to map its container, passed to them by
 * SCM_RIGHTS). A segment belongs to one protection domain, a container:
 * whoever may map it may see all of it, so it never holds frames of two
 * containers' own allocations. A slot may still be referenced by frames of
 * other containers for copy-on-write sharing that only the pmd reads through;
 * a segment whose container is destroyed while such references remain is
 * orphaned and freed with its last slot.
 *
 * A slot that is freed is hole-punched at once: its physical page goes back
 * to the kernel and the slot reads as zeros when it is next handed out, so a
 * fresh frame never shows another task's data.
 *
 * Segment ids on the wire are generation << 32 | index and are never reused
 * for another segment during the pmd's life.
 */
#ifndef PMD_SEGMENT_H
#define PMD_SEGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "list.h"
#include "slots.h"

struct pmd_container;

struct pmd_segment {
	struct pmd_slots slots;        /* (L) slot map and COW counts */
	uint8_t *base;                 /* (C) the pmd's mapping */
	int fd;                        /* (C) the memfd */
	uint32_t index;                /* (C) in the segment table */
	uint64_t id;                   /* (C) wire id */
	struct pmd_container *domain;  /* (L) owner; NULL once orphaned */
	bool exposed;                  /* (L) its descriptor went to a task */
	struct pmd_list link;          /* (L) in domain->segments */
};

struct pmd_segtab {
	struct pmd_segment **v;        /* (L) by index; NULL: free */
	uint32_t *gen;                 /* (L) generation of each index */
	uint32_t len;                  /* (L) indices handed out so far */
	uint32_t cap;                  /* (L) allocated length of v, gen */
	uint32_t hint;                 /* (L) lowest possibly free index */
	uint64_t live;                 /* (L) segments in existence */
	uint64_t slots_used;           /* (L) sum of slots.used */
};

void pmd_segtab_init(struct pmd_segtab *t);
/* Every segment must have been destroyed. */
void pmd_segtab_fini(struct pmd_segtab *t);

error_t pmd_segment_create(struct pmd_segtab *t, struct pmd_segment **seg_out);
void pmd_segment_destroy(struct pmd_segtab *t, struct pmd_segment *seg);
/* Empties the memfd itself (not just our view): every mapping of it, in
 * any task, faults from now on instead of showing its contents. */
void pmd_segment_revoke(struct pmd_segment *seg);

static inline struct pmd_segment *pmd_segtab_get(const struct pmd_segtab *t,
						 uint32_t index)
{
	return index < t->len ? t->v[index] : NULL;
}

/* Takes a free slot of seg; -1 when full. */
int pmd_segment_slot_alloc(struct pmd_segtab *t, struct pmd_segment *seg);
/* Drops one reference to slot; frees (and zeroes) the page with the last. */
bool pmd_segment_slot_put(struct pmd_segtab *t, struct pmd_segment *seg,
			  unsigned slot);

static inline void *pmd_segment_frame(const struct pmd_segment *seg,
				      unsigned slot)
{
	return seg->base + (size_t)slot * PM_FRAME_SIZE;
}

#endif
