/*
 * alloc.h - allocating and deallocating a container's frames, with the
 * seed's stop rule: frames are allocated in order from start; the first
 * that cannot be (EEXIST: in use without CONT_ALLOC_SQUASH; EBUSY: a
 * squash under a server's lock; ENOMEM: the task's quota or the node's
 * room) stops the allocation; without CONT_ALLOC_PARTIAL nothing stays.
 *
 * A frame goes here (a slot of the container's own segments) or into a
 * slot another node lent (a place, borrowed.h). It is charged to the
 * container's owner either way: against this node's budget here, against
 * the task's quota alone elsewhere (the lender's budget carries it). An
 * extra frame kept here also needs room that no guarantee reserves.
 *
 * The steps are public because the daemon plans allocations on other
 * nodes with the decode alone, before it borrows their slots.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_ALLOC_H
#define PMD_ALLOC_H

#include <stdint.h>

#include <pm/pm.h>

#include "borrowed.h"
#include "core.h"

/* Where an allocation's frames go. */
enum pmd_alloc_where {
	PMD_ALLOC_HERE,     /* every frame here */
	PMD_ALLOC_ANYWHERE, /* not decided: the task's quota alone bounds it */
	PMD_ALLOC_PLACES,   /* frame i where places[i] says (node 0: here);
			     * frames past the places have none (ENOMEM) */
};

/* One allocation, decoded: what its decode found and its invoke does. */
struct pmd_alloc {
	struct pmd_container *cont;
	struct pmd_task *task;          /* the owner, who pays */
	frame_t start;
	uint32_t count;                 /* frames asked for */
	uint32_t flags;                 /* CONT_ALLOC_* */
	enum pmd_alloc_where where;
	const struct pmd_place *places; /* PMD_ALLOC_PLACES (for the decode
	                                 * only their nodes are read) */
	uint32_t nplaces;
	uint32_t n;                     /* frames it allocates */
	error_t stop;                   /* why not more; 0: all of them */
	uint32_t reclaim;               /* stopped (ENOMEM) where the node has
	                                 * no free frame for a guaranteed one:
	                                 * how many more guaranteed frames
	                                 * here the request asks for (what the
	                                 * extra-frame protocol could find) */
};

/* Decode: handle, rights, arguments, then the walk in order to the first
 * frame that cannot be allocated (a->n, a->stop, why->frame). The error
 * returned stops it before any frame (a bad handle or argument); nothing
 * changes. */
error_t pmd_alloc_decode(struct pmd_core *core, struct pmd_task *task,
			 container_t h, frame_t start, uint32_t count,
			 uint32_t flags, enum pmd_alloc_where where,
			 const struct pmd_place *places, uint32_t nplaces,
			 struct pmd_alloc *a, struct pmd_culprit *why);
/* Decode, continued: reserves the slots, table nodes, view room and lent
 * segments' records the a->n frames need; running out is one more stop
 * (a->n smaller, ENOMEM). Nothing visible changes. */
void pmd_alloc_reserve(struct pmd_core *core, struct pmd_alloc *a,
		       struct pmd_culprit *why);
/* Invoke: allocates the a->n frames (squashing as decoded); cannot fail. */
void pmd_alloc_invoke(struct pmd_core *core, const struct pmd_alloc *a);

/* The whole allocation (PMD_ALLOC_HERE, or into places when places is
 * not NULL): *done is written on success and on failure (the API's
 * *count). */
error_t pmd_container_allocate(struct pmd_core *core, struct pmd_task *task,
			       container_t h, frame_t start, uint32_t count,
			       uint32_t flags, const struct pmd_place *places,
			       uint32_t nplaces, uint32_t *done,
			       struct pmd_culprit *why);

/* ENOENT (naming the frame) when a frame of the range does not exist:
 * nothing is deallocated then. */
/* The stops (stop.h) of releasing frames start.. (count of them; all:
 * UINT64_MAX) of h: those that leave a slot another frame shares have
 * their mappings there taken away first. Into core->stops. */
error_t pmd_release_stops(struct pmd_core *core, struct pmd_task *task,
			  container_t h, frame_t start, uint64_t count);
error_t pmd_container_deallocate(struct pmd_core *core, struct pmd_task *task,
				 container_t h, frame_t start, uint32_t count,
				 struct pmd_culprit *why);

#endif
