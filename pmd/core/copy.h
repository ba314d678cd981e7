/*
 * copy.h - the logical copy (the design's later revision): the contents
 * of count frames of src become those of dst's frames from dst_start.
 * The destination frames must exist (its owner has paid for them): the
 * first missing source frame (ENOENT) or destination frame (ENOMEM)
 * stops the copy, the frames before it are copied, and the culprit names
 * that frame. Overlapping ranges of one container copy like memmove.
 *
 * Exactly when the copy is physical is in docs/design.md: the slot is
 * shared (copy-on-write) within one container while no task holds a
 * segment of either side; otherwise the bytes are copied. Frames on
 * other nodes are brought here first: the decode says so (cp->remote).
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_COPY_H
#define PMD_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "core.h"

/* One copy, decoded. */
struct pmd_copy {
	struct pmd_container *src, *dst;
	frame_t src_start, dst_start;
	uint32_t n;                   /* frames it copies */
	error_t stop;                 /* why not more (0: all of count) */
	bool remote;                  /* a frame before the stop is on
	                               * another node: bring it here first */
};

/* Decode: rights (read src, write dst), ranges, flags (0), the stop, and
 * the slots of the destination frames that may need a private one. */
error_t pmd_copy_decode(struct pmd_core *core, struct pmd_task *task,
			container_t src, frame_t src_start, container_t dst,
			frame_t dst_start, uint32_t count, uint32_t flags,
			struct pmd_copy *cp, struct pmd_culprit *why);
/* Invoke (cp has no remote frame): copies cp->n frames; returns the
 * stop. */
error_t pmd_copy_invoke(struct pmd_core *core, const struct pmd_copy *cp);

/* A store through a mapping of frame f (of h), at slot of segment seg_id,
 * decoded: ESTALE when the frame is not there any more; shared when it
 * is copy-on-write (its stops then in core->stops). */
struct pmd_break {
	struct pmd_container *c;
	struct pmd_frame *e;
	frame_t f;
	bool shared;
};
error_t pmd_break_decode(struct pmd_core *core, struct pmd_task *task,
			 container_t h, frame_t f, uint64_t seg_id,
			 uint32_t slot, struct pmd_break *bk,
			 struct pmd_culprit *why);
/* The frame gets a private slot holding its contents. */
void pmd_break_invoke(struct pmd_core *core, const struct pmd_break *bk);

#endif
