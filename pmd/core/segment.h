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
 * A slot whose last frame goes is hole-punched before it can be handed out
 * again: its physical page goes back to the kernel and the slot reads as
 * zeros, so a fresh frame never shows another frame's data. Punching is
 * deferred to the end of the request (pmd_segtab_flush), which punches
 * runs of slots with one call; until then the slot stays in use.
 *
 * A frame moved out of an exposed segment *retires* its slot: punched at
 * once, so a task's mapping of it faults (to the task's userfaultfd, which
 * asks where the frame went), and never handed out again while the
 * segment lives, with a forwarding record slot -> (container, frame).
 * Retired slots count as used until their container goes.
 *
 * Empty segments that no task was ever given are kept in a small pool and
 * reused, so that a container that shrinks and grows does not pay for
 * memfd_create and mmap each time.
 *
 * A *pinned* segment is one whose memory is registered with an RDMA
 * device, which holds on to the pages it found at registration: a page
 * replaced behind its back (a hole punched, then filled by a later touch)
 * would leave the device reading and writing the old page while the pmd
 * and the tasks use the new one. So a pinned segment is made physical
 * whole before it is registered, and its slots are cleared in place
 * (zeroed) when freed or made ready, never punched. A slot that retires
 * is still punched (a task's mapping of it must fault); the registration
 * keeps the old page until the segment goes, and no RDMA reaches it any
 * more (a retired slot is never lent again while the segment lives). It
 * is zeroed first only while no task was given the segment: a task that
 * maps it may be reading the slot right then (a stop holds its stores,
 * not its loads) and must see the frame or fault, never zeros; the old
 * page it leaves behind holds only what the one home whose frames the
 * segment kept may read anyway.
 *
 * Segment ids on the wire are generation << 32 | index and are never reused
 * for another segment during the pmd's life.
 */
#ifndef PMD_SEGMENT_H
#define PMD_SEGMENT_H

#include <signal.h>
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
	bool orphaned;                 /* (L) its container is gone: it goes
	                                * with its last slot */
	struct pmd_list link;          /* (L) in domain->segments, or the pool */
	uint64_t pending[PMD_SEG_SLOTS / 64]; /* (L) freed, not yet punched */
	uint64_t retired[PMD_SEG_SLOTS / 64]; /* (L) moved away, see above */
	uint64_t physical[PMD_SEG_SLOTS / 64]; /* (L) made physical by the
	                                * pmd (see pmd_segment_ready) */
	struct pmd_fwd *fwd;           /* (L) per slot once one is retired */
	uint32_t nretired;             /* (L) */
	struct pmd_list dirty_link;    /* (L) in segtab->dirty while pending */
	uint64_t unshared[PMD_SEG_SLOTS / 64]; /* (L) slots whose copy-on-write
	                                * share ended (one frame left) since
	                                * the holders were last told */
	struct pmd_list unshared_link; /* (L) in segtab->unshared while any */
	bool pinned;                   /* (L) registered with the fabric: its
	                                * pages are never replaced (above) */
	volatile sig_atomic_t broken;  /* (L) a task truncated its memfd: our
	                                * view is private memory from then on */
	bool broken_said;              /* (L) and the log said so */
	uint64_t resident_seen;        /* (L) its bytes of memory at the
	                                * last look (pmd_segtab_resident_sweep) */
};

#define PMD_SEG_POOL_MAX 32 /* empty segments kept for reuse */

struct pmd_container;

/* Where the frame that lived in a retired slot went. */
struct pmd_fwd {
	struct pmd_container *cont;    /* (L) NULL once the container is gone */
	frame_t frame;                 /* (L) */
};

struct pmd_segtab {
	struct pmd_segment **v;        /* (L) by index; NULL: free */
	uint32_t *gen;                 /* (L) generation of each index */
	uint32_t len;                  /* (L) indices handed out so far */
	uint32_t cap;                  /* (L) allocated length of v, gen */
	uint32_t hint;                 /* (L) lowest possibly free index */
	uint64_t live;                 /* (L) segments in use (pool apart) */
	uint64_t slots_used;           /* (L) sum of slots.used */
	uint64_t slots_retired;        /* (L) of which retired by moves */
	uint64_t slots_lent;           /* (L) of which lent to other nodes */
	struct pmd_list dirty;         /* (L) segments with pending punches */
	struct pmd_list unshared;      /* (L) segments with unshared slots */
	struct pmd_list pool;          /* (L) empty segments kept for reuse */
	uint32_t npool;                /* (L) */
	uint64_t resident_seen;        /* (L) sum of the segments' */
	uint32_t sweep;                /* (L) the next index to look at */
};

void pmd_segtab_init(struct pmd_segtab *t);
/*
 * A task given a segment's descriptor could truncate the memfd (segments
 * are not sealed: revocation truncates them), and the pmd's next access
 * to it would die of SIGBUS. The guard is a SIGBUS handler for t's
 * segments: it puts private zero pages in place of the pmd's view of the
 * segment and marks it broken, and the access goes on. A broken
 * segment's frames (also new ones in its free slots) work through the
 * pmd on its private view, which holds zeros where the task cut, and
 * mappings of it fault: harm to that container's data that the task
 * could have done as well by writing through its own mapping. Any other
 * SIGBUS stays fatal. One table per process.
 */
error_t pmd_segtab_guard(struct pmd_segtab *t);
/* Every segment must have been destroyed. */
void pmd_segtab_fini(struct pmd_segtab *t);

error_t pmd_segment_create(struct pmd_segtab *t, struct pmd_segment **seg_out);
void pmd_segment_destroy(struct pmd_segtab *t, struct pmd_segment *seg);
/* Every slot of seg retires at once (its frames moved to another
 * segment, the caller having noted where in seg->fwd): the memfd is
 * punched whole, so every mapping of it faults, and nothing is ever
 * placed in it again while it lives. */
void pmd_segment_retire_all(struct pmd_segtab *t, struct pmd_segment *seg);

static inline struct pmd_segment *pmd_segtab_get(const struct pmd_segtab *t,
						 uint32_t index)
{
	return index < t->len ? t->v[index] : NULL;
}

/* Takes a free slot of seg; -1 when full. */
int pmd_segment_slot_alloc(struct pmd_segtab *t, struct pmd_segment *seg);
/* Drops one reference to slot; true with the last, after which the slot
 * is free for accounting, and punched and reusable after the next flush. */
bool pmd_segment_slot_put(struct pmd_segtab *t, struct pmd_segment *seg,
			  unsigned slot);
/* Punches every pending slot (runs at once) and frees them. */
void pmd_segtab_flush(struct pmd_segtab *t);
/*
 * Shares that ended. A holder of an exposed segment write-protects its
 * writable mappings of a slot shared copy-on-write (PM_STOP_COW) and
 * keeps them so; when the share ends (a put leaves the slot one frame)
 * the holders can take stores there again, and are told so. Puts note
 * such slots; pmd_segtab_unshared_take hands out, and forgets, those
 * still held by exactly one frame (a later copy may have shared one
 * again, a later put freed it): fn gets each run of them.
 */
typedef void pmd_unshared_fn(void *arg, const struct pmd_segment *seg,
			     unsigned slot, unsigned n);
static inline bool pmd_segtab_unshared_any(const struct pmd_segtab *t)
{
	return !pmd_list_empty(&t->unshared);
}
void pmd_segtab_unshared_take(struct pmd_segtab *t, pmd_unshared_fn *fn,
			      void *arg);
/* Notes slots slot.. of seg again (taken, but not told to everyone). */
void pmd_segtab_unshared_note(struct pmd_segtab *t, struct pmd_segment *seg,
			      unsigned slot, unsigned n);

/* Room for forwarding records; decode step of a retirement. */
error_t pmd_segment_fwd_reserve(struct pmd_segment *seg);
/* Drops the last reference to slot and retires it (see above). */
void pmd_segment_slot_retire(struct pmd_segtab *t, struct pmd_segment *seg,
			     unsigned slot, struct pmd_container *cont,
			     frame_t frame);
static inline bool pmd_segment_retired(const struct pmd_segment *seg,
				       unsigned slot)
{
	return slot < PMD_SEG_SLOTS &&
	       (seg->retired[slot / 64] & (UINT64_C(1) << (slot % 64)));
}
/* Frees every retired slot of seg (its container is going). */
void pmd_segment_release_retired(struct pmd_segtab *t, struct pmd_segment *seg);

/* Makes slots [first, first + n) physical and zero: punched (whatever a
 * stray store left there goes) then allocated, so that a task's first
 * touch is an ordinary page-cache fault. A pinned segment's are zeroed in
 * place. */
void pmd_segment_populate(struct pmd_segment *seg, unsigned first, unsigned n);
/* Makes slot physical holding the frame at src (PM_FRAME_SIZE bytes; not
 * in the slot itself): written through the segment's descriptor, one
 * copy into a new page and no fault in our mapping (a page-in or move
 * costs that alone); a pinned or broken segment's in place. Whatever the
 * slot held goes. */
void pmd_segment_fill(struct pmd_segment *seg, unsigned slot, const void *src);
/*
 * Frames cost memory only once used. A new frame's slots are made
 * *ready*: zero, but not physical (punched: whatever a stray store left
 * goes; a pinned segment's are zeroed in place, physical already). They
 * become physical when the pmd writes them (the kernel gives the page) or
 * when a task is to map them: the pmd then makes them physical first
 * (pmd_segment_make_physical), so that a slot a task may touch through a
 * mapping is never a hole unless its frame was freed or moved away (the
 * library's fault path relies on it). seg->physical has a bit for each
 * slot the pmd made physical so (a slot the pmd wrote may be physical
 * without its bit: the bit only ever errs towards asking).
 */
void pmd_segment_ready(struct pmd_segment *seg, unsigned first, unsigned n);
/* Makes slots [first, first + n) physical, their contents kept (no
 * punch). Out of memory leaves them to be found at first touch. */
void pmd_segment_make_physical(struct pmd_segment *seg, unsigned first,
			       unsigned n);
static inline bool pmd_segment_physical(const struct pmd_segment *seg,
					unsigned slot)
{
	return seg->physical[slot / 64] & (UINT64_C(1) << (slot % 64));
}
/* The pmd wrote into slot through its mapping: the kernel gave it a
 * page (no system call). */
void pmd_segment_written(struct pmd_segment *seg, unsigned slot);
/* Bytes of the node's memory seg's memfd holds now (the kernel's count). */
uint64_t pmd_segment_resident(const struct pmd_segment *seg);
/* The same for every segment of t (the pool's are holes). */
uint64_t pmd_segtab_resident(const struct pmd_segtab *t);
/* The same as last seen, looking again at up to max segments (from where
 * the last sweep stopped, round the table): a figure that costs a
 * bounded number of system calls (a heartbeat's), exact once every
 * segment was looked at since its last change. */
uint64_t pmd_segtab_resident_sweep(struct pmd_segtab *t, uint32_t max);
/* Makes the whole segment physical and zero, and pinned from now on:
 * before its memory is registered with the fabric. No slot may be in use
 * yet. */
void pmd_segment_pin(struct pmd_segment *seg);

static inline void *pmd_segment_frame(const struct pmd_segment *seg,
				      unsigned slot)
{
	return seg->base + (size_t)slot * PM_FRAME_SIZE;
}

#endif
