/*
 * reclaim.h - extra frames the pmd takes back (the seed's extra-frame
 * protocol, the core's half).
 *
 * Admission counts extra frames here as reclaimable (account.h), so a
 * guaranteed allocation may find the node full of other tasks' extra
 * frames. The daemon then asks the tasks that hold them to give some
 * back, and when its grace period is over takes what is still missing
 * itself: this file is that taking, by one rule, and what a frame taken
 * so answers afterwards.
 *
 * The rule. Victims are the tasks holding extra frames on this node,
 * largest excess first (the most extra frames here; ties: the older
 * task). From a victim the pmd takes its extra frames here, its
 * containers newest first and each in frame order, skipping a frame
 * that
 *   - lives on another node (taking it would free nothing here),
 *   - shares its slot (copy-on-write, or in another container's
 *     segment: a logical copy; the other frames keep the page anyway),
 *   - belongs to a locked container (the pmd moves nothing under a lock)
 *     or to one the daemon says is busy (remote work in flight),
 *   - lies in a segment that a task which cannot follow moves holds
 *     (its mapping would fill the hole for every other mapper).
 * Guaranteed frames are never taken.
 *
 * A frame taken is *gone*: its charge and its slot go, and its number
 * stays in the container's gone set, so that reads, writes, maps, copies
 * and faults of it answer ESTALE (its contents are lost) until the owner
 * deallocates it or allocates that number again. A slot some task may
 * have mapped retires (punched at once, never used again while its
 * segment lives, forwarding to the gone frame): a mapping of it faults,
 * and the library learns ESTALE, never another frame's bytes.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_RECLAIM_H
#define PMD_RECLAIM_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "core.h"

/* Whether frame f of c was taken back and not forgotten since. */
bool pmd_frame_gone(const struct pmd_container *c, frame_t f);
/* The error for frame f of c, which is not in its table: ESTALE when it
 * was taken back, else ENOENT. */
error_t pmd_frame_missing(const struct pmd_container *c, frame_t f);
/* The owner deallocated f, or allocates it again: it is not gone any
 * more. */
void pmd_frame_forget_gone(struct pmd_container *c, frame_t f);

/* Up to max tasks holding extra frames here, largest excess first, into
 * out; how many. */
uint32_t pmd_reclaim_victims(struct pmd_core *core, struct pmd_task **out,
			     uint32_t max);

/* Whether the daemon keeps the pmd off c's frames now. */
typedef bool pmd_reclaim_busy_fn(void *arg, const struct pmd_container *c);

/* Takes up to want of t's extra frames here by the rule above; how many
 * it took. Frames it cannot record as gone (out of memory) it leaves. */
uint64_t pmd_reclaim_take(struct pmd_core *core, struct pmd_task *t,
			  uint64_t want, pmd_reclaim_busy_fn *busy,
			  void *arg);

#endif
