/*
 * slots.h - the slot allocator of one segment: which of its frame slots are
 * in use and how many virtual frames share each (copy-on-write).
 *
 * Plain data, no I/O: the segment module pairs it with the memory. A slot is
 * free exactly when its reference count is zero. Lock key: (L) the pmd
 * loop thread.
 */
#ifndef PMD_SLOTS_H
#define PMD_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

#define PMD_SEG_SLOTS 512u /* 512 x 4 KiB = 2 MiB, one huge page */

struct pmd_slots {
	uint64_t used_map[PMD_SEG_SLOTS / 64]; /* (L) bit set: slot in use */
	uint16_t ref[PMD_SEG_SLOTS];          /* (L) frames sharing the slot */
	uint32_t used;                        /* (L) slots in use */
	uint32_t hint;                        /* (L) where the next search starts */
};

void pmd_slots_init(struct pmd_slots *s);

/* Takes a free slot with one reference; -1 when the segment is full. */
int pmd_slots_alloc(struct pmd_slots *s);

/* One more frame shares slot (copy-on-write). False when the count would
 * overflow: the caller then copies instead of sharing. */
bool pmd_slots_get(struct pmd_slots *s, unsigned slot);

/* Drops one reference; true when that freed the slot. */
bool pmd_slots_put(struct pmd_slots *s, unsigned slot);

/* The two halves of put, for callers that release later (after zeroing):
 * unref drops a reference and says whether it was the last one, leaving
 * the slot in use; release then makes it free. */
bool pmd_slots_unref(struct pmd_slots *s, unsigned slot);
void pmd_slots_release(struct pmd_slots *s, unsigned slot);

static inline unsigned pmd_slots_free(const struct pmd_slots *s)
{
	return PMD_SEG_SLOTS - s->used;
}

#endif
