/*
 * check.h - the node's accounting self-check (pm_debug_stat): walks every
 * task and container and checks that each frame here holds a live slot,
 * each task's charge equals the frames it owns and stays within its
 * limits, each container's count of free slots is what its segments
 * have free, and the node's totals add up (frames, charges, guarantees,
 * slot references, lent slots). Failures are logged, one line each.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_CHECK_H
#define PMD_CHECK_H

#include "core.h"
#include "pm_proto.h"

/* Counts and cross-checks; out->invariant_ok says whether every check
 * held. Punches what is pending first (freed slots count as used until
 * then). */
void pmd_core_check(struct pmd_core *core, struct pm_debug_rep *out);

#endif
