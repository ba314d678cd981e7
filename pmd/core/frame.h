/*
 * frame.h - a container's frames as the operations see them: which slot
 * holds each, whether it is copy-on-write or on another node, getting and
 * giving up slots, breaking a copy, and keeping the tasks' frame view in
 * step with every change.
 *
 * These are the steps that the container operations (alloc.c, map.c,
 * io.c, copy.c, share.c, move.c) are made of; the daemon never calls them.
 * Functions that "must be reserved" are invoke steps: their decode made
 * room first (pmd_container_slots_reserve, pmd_cview_reserve), so they
 * cannot fail.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_FRAME_H
#define PMD_FRAME_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "core.h"

/* Frames start .. start+count-1 are a valid range: count >= 1 and no
 * identifier wraps. */
static inline bool pmd_range_ok(frame_t start, uint64_t count)
{
	return count >= 1 && start <= UINT64_MAX - (count - 1);
}

static inline bool pmd_frame_remote(const struct pmd_frame *e)
{
	return e->flags & PMD_FRAME_REMOTE;
}

/* The pmd saw frame e used (a read, write, map, copy or fault through
 * it): its stamp is the clock of coldness now, in units of 64 uses. */
static inline void pmd_frame_touch(struct pmd_core *core,
				   struct pmd_frame *e)
{
	e->used = (uint16_t)(++core->touches >> 6);
}
/* How long ago, on that clock (wraps after 4 M uses). */
static inline uint16_t pmd_frame_age(const struct pmd_core *core,
				     const struct pmd_frame *e)
{
	return (uint16_t)((uint16_t)(core->touches >> 6) - e->used);
}

/* The segment of a frame here (not remote). (Inline: every frame of a
 * request asks it, several times.) */
static inline struct pmd_segment *pmd_frame_seg(const struct pmd_core *core,
						const struct pmd_frame *e)
{
	struct pmd_segment *seg = pmd_segtab_get(&core->segs, e->seg);

	assert(seg && !pmd_frame_remote(e));
	return seg;
}
/* A frame is copy-on-write while its slot is shared. */
static inline bool pmd_frame_cow(const struct pmd_core *core,
				 const struct pmd_frame *e)
{
	return !pmd_frame_remote(e) &&
	       pmd_frame_seg(core, e)->slots.ref[e->slot] > 1;
}
/* Whether frame e of c must move to a slot of its own before it is
 * written: its slot is shared, or lies in another container's segment (a
 * logical copy put it there, and the other container, or its owner, may
 * be gone: whoever held that segment must not see this frame's new
 * bytes). */
static inline bool pmd_frame_borrowed_slot(const struct pmd_core *core,
					   const struct pmd_container *c,
					   const struct pmd_frame *e)
{
	const struct pmd_segment *seg;

	if (pmd_frame_remote(e))
		return false;
	seg = pmd_frame_seg(core, e);
	return seg->slots.ref[e->slot] > 1 || seg->domain != c;
}
/* Whether frame f of c was taken back by the pmd (reclaim.h) and not
 * forgotten since: its number answers ESTALE. */
bool pmd_frame_gone(const struct pmd_container *c, frame_t f);
/* The error for frame f of c, which is not in its table: ESTALE when it
 * was taken back, else ENOENT. */
error_t pmd_frame_missing(const struct pmd_container *c, frame_t f);
/* The owner deallocated f, or allocates it again: it is not gone any
 * more. */
void pmd_frame_forget_gone(struct pmd_container *c, frame_t f);
/* The bytes of a frame here. */
uint8_t *pmd_frame_bytes(const struct pmd_core *core, const struct pmd_frame *e);

/* Gives up what a frame holds, its slot reference (or its loan) and its
 * charge, but not its table entry. */
void pmd_frame_release(struct pmd_core *core, struct pmd_container *c,
		       struct pmd_frame *e);
/* Drops one frame: what it holds and its table entry. */
void pmd_frame_drop(struct pmd_core *core, struct pmd_container *c, frame_t f,
		    struct pmd_frame *e);
/* Takes one free slot of c's own segments into e (a new place: gen
 * bumped). A slot must have been reserved. */
void pmd_frame_take_slot(struct pmd_core *core, struct pmd_container *c,
			 struct pmd_frame *e);
/* The stops of a copy-on-write frame f (entry e) of container c about
 * to leave its shared slot for a private one: its mappings there go (the
 * slot stays, for the other frames); asked of the holders that may have
 * mapped c's frames. ENOMEM. */
error_t pmd_frame_break_stops(struct pmd_core *core,
			      const struct pmd_container *c,
			      const struct pmd_frame *e, frame_t f);
/* Gives e a private slot holding its current contents (breaks the copy).
 * A slot must have been reserved; inside a view change. */
void pmd_frame_break_cow(struct pmd_core *core, struct pmd_container *c,
			 frame_t f, struct pmd_frame *e);

/* Drops one reference to a slot here; a segment orphaned by its
 * container's end goes with its last slot. */
void pmd_slot_put(struct pmd_core *core, uint32_t segi, uint16_t slot);

/* Makes sure c has at least `need` free slots in its own segments. On
 * failure the segments made so far stay with c (empty, harmless). */
error_t pmd_container_slots_reserve(struct pmd_core *core,
				    struct pmd_container *c, uint64_t need);
/* The free slots of c's segments, a freed one not punched yet among
 * them; whether c->free_slots says so (check.h). */
uint64_t pmd_container_slots_free(const struct pmd_container *c);
bool pmd_container_slots_ok(const struct pmd_container *c);
/* Empty segments of c beyond one go back to the kernel, so that
 * deallocating many frames releases descriptors and address space too;
 * the one kept (one its tasks hold, if any) spares the next frames a new
 * segment and its descriptor's trip to the tasks. */
void pmd_container_trim(struct pmd_core *core, struct pmd_container *c);

/* The container's view (view.h): every change to c's frames that a task
 * might read happens between begin and end, and publishes each frame it
 * touched. */
void pmd_cview_begin(struct pmd_container *c);
void pmd_cview_end(struct pmd_container *c);
/* Publishes frame f's place (a remote frame leaves the view: it is not
 * for the fast path). */
void pmd_cview_put(struct pmd_core *core, struct pmd_container *c, frame_t f,
		   const struct pmd_frame *e);
/* Frames [start, start + count) of c that are here get physical slots
 * (segment.h, pmd_segment_ready), before a task may touch them through
 * a mapping; their view entries say so. Missing frames are skipped. */
void pmd_frames_make_physical(struct pmd_core *core, struct pmd_container *c,
			      frame_t start, uint32_t count);
/* Decode step of anything that adds frames: room for `count` in the view
 * (a bigger one replaces it when needed). */
error_t pmd_cview_reserve(struct pmd_core *core, struct pmd_container *c,
			  uint64_t count);
/* Makes a view with room for `count` frames, filled from the frame table,
 * c's view: the first one, or a new one that tasks which held the old do
 * not have. On failure the old view stays. */
error_t pmd_cview_remake(struct pmd_core *core, struct pmd_container *c,
			 uint64_t count);
/* Fills v from c's frame table and makes it c's view; cannot fail. */
void pmd_cview_install(struct pmd_core *core, struct pmd_container *c,
		       struct pmd_view *v);

#endif
