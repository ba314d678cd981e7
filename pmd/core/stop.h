/*
 * stop.h - what must stop before frames move.
 *
 * A task that holds a segment's descriptor may have mapped any of its
 * slots, and stores through a mapping are invisible to the pmd. So before
 * a frame leaves a slot that such a task may see, every holder's library
 * stops its stores to that slot (userfaultfd write-protection: STOP in
 * pm_proto.h), and before a frame leaves a slot that stays in use (a
 * copy-on-write share breaks), every holder takes away its mappings of
 * that frame there; only then are the bytes copied, and the holders go on
 * (RESUME) once the frame lives in its new place. A decode that plans a
 * move lists these *stops* (struct pmd_stops); the daemon asks the
 * holders and runs the request again once all answered or its deadline
 * passed; the invoke then moves. A stop is needed only for segments that
 * were exposed to a task that can follow moves: others are never mapped.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_STOP_H
#define PMD_STOP_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "segment.h"

struct pmd_container;

struct pmd_stop_ent {
	uint32_t seg;                /* segment index */
	uint16_t slot, nslots;       /* slots slot.. */
	uint16_t kind;               /* PM_STOP_WP, _DROP or _COW */
	uint64_t frame;              /* DROP: the frame, or PM_STOP_ANY */
	const struct pmd_container *cont; /* DROP of a frame: its container;
	                              * only holders that may have mapped its
	                              * frames are asked (NULL: every one) */
};

struct pmd_stops {
	struct pmd_stop_ent *v;      /* (L) */
	uint32_t n, cap;             /* (L) used, allocated */
	uint64_t except;             /* (L) a task not to ask (0: none) */
};

void pmd_stops_fini(struct pmd_stops *st);
static inline void pmd_stops_reset(struct pmd_stops *st)
{
	st->n = 0;
	st->except = 0;
}
/* Whether frames leaving seg need its holders to stop first: it went to
 * a task (which may have mapped it). */
static inline bool pmd_stop_needed(const struct pmd_segment *seg)
{
	return seg->exposed;
}
/* Adds slots slot.. of seg (runs of one kind merge). ENOMEM. */
error_t pmd_stops_add(struct pmd_stops *st, const struct pmd_segment *seg,
		      unsigned slot, unsigned n, unsigned kind, frame_t frame);
/* A DROP of frame f of container c at slot of seg: mappings that stand
 * for c's frame f there go. Only a task that holds a capability of c
 * can have mapped one of its frames (through the pmd or its view), so
 * other holders of seg are not asked: their mappings there stand for
 * the frames that keep the slot. ENOMEM. */
error_t pmd_stops_add_drop(struct pmd_stops *st, const struct pmd_segment *seg,
			   unsigned slot, frame_t f,
			   const struct pmd_container *c);

#endif
