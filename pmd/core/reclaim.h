/*
 * reclaim.h - memory pressure, the core's half: extra frames the pmd
 * takes back (the seed's extra-frame protocol), and cold frames it pages
 * out to other nodes.
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
 * deallocates it or allocates that number again (frame.h:
 * pmd_frame_gone, pmd_frame_missing). A slot some task may
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

struct pmd_place;

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

/*
 * Paging out to other nodes. Before any frame is dropped, cold frames
 * (guaranteed or extra) move to slots another node lends, as remote
 * frames of their container: reads and writes reach them by RDMA, a map
 * or a fault brings them home (making room the same way). Coldness is
 * what the pmd sees: every read, write, map, copy and fault of a frame
 * stamps it (pmd_frame_touch); frames no task holds a mapping of come
 * first (the pmd cannot see stores through a mapping), then the oldest
 * stamp. A frame may be paged out on the terms of the rule above, but
 * of any class, and also from a segment tasks hold (their mappings are
 * stopped first, and fault the frame home after).
 */
struct pmd_pageout {
	frame_t frame;
	uint32_t seg;                /* where it was when planned */
	uint16_t slot;
	uint32_t gen;
	uint32_t holders;            /* tasks holding its segment when their
	                              * stops were listed */
};

/* The container holding the coldest frame that may be paged out now
 * (extra frames only: extra_only; *c_out NULL: none; *busy_skipped when
 * a container was passed over for being busy), and up to max of its
 * coldest such frames into out; how many. */
uint32_t pmd_pageout_plan(struct pmd_core *core, uint32_t max,
			  bool extra_only, pmd_reclaim_busy_fn *busy, void *arg,
			  struct pmd_container **c_out,
			  struct pmd_pageout *out, bool *busy_skipped);
/* The stops of the mappers of those of v[0..n) still where planned
 * (write-protection), in core->stops, and who holds their segments now.
 * ENOMEM. */
error_t pmd_pageout_stops(struct pmd_core *core, struct pmd_container *c,
			  struct pmd_pageout *v, uint32_t n);
/* Once the mappers stopped: each planned frame of c that is still where
 * it was, and whose segment no task took meanwhile (it was not stopped),
 * moves to places[i] (lent slots): its bytes into data (the k-th
 * moved at k * PM_FRAME_SIZE), then pmd_frame_goes_to. Frames that moved
 * meanwhile give their place back and drop out (v and places are
 * compacted). How many moved. */
uint32_t pmd_pageout_repoint(struct pmd_core *core, struct pmd_container *c,
			     struct pmd_pageout *v, struct pmd_place *places,
			     uint32_t n, uint8_t *data);

#endif
