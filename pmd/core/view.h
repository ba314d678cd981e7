/*
 * view.h - a container's frame view: the read-only copy of its frame table
 * that tasks allowed to map the container read without asking the pmd
 * (the layout is in pm_proto.h).
 *
 * The pmd is the only writer. Every change is bracketed by
 * pmd_view_begin/end (a seqlock), and a view whose table would grow too
 * full is replaced by a bigger one whose id differs; the old one is marked
 * dead and left to the tasks that still map it. The view is made when the
 * container is first mapped and dies with it.
 */
#ifndef PMD_VIEW_H
#define PMD_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "pm_proto.h"

struct pmd_view {
	uint64_t id;                  /* (C) view id (high bit set) */
	int fd;                       /* (C) sealed memfd */
	struct pm_view_hdr *hdr;      /* (C) the pmd's writable mapping */
	struct pm_view_entry *e;      /* (C) the buckets */
	uint32_t nbuckets;            /* (C) */
	size_t bytes;                 /* (C) mapping length */
	/* Frames set or deleted since begin, whose runs (and their
	 * predecessors') pmd_view_end makes right again. */
	frame_t dlo, dhi;             /* (L) their range, */
	uint64_t dn;                  /* (L) and how many changes (0: none) */
};

/* A view with room for at least `want` entries. */
error_t pmd_view_create(uint64_t want, struct pmd_view **view_out);
/* Marks it dead for its readers and drops the pmd's side. */
void pmd_view_destroy(struct pmd_view *v);

/* Whether v can take `count` entries without growing. */
bool pmd_view_fits(const struct pmd_view *v, uint64_t count);

void pmd_view_begin(struct pmd_view *v);
void pmd_view_end(struct pmd_view *v);

/* Inside begin/end (end also makes the runs of what changed right, see
 * PM_VIEW_RUN in pm_proto.h): */
void pmd_view_set(struct pmd_view *v, frame_t f, uint64_t segment,
		  uint16_t slot, uint16_t flags, uint32_t gen);
void pmd_view_del(struct pmd_view *v, frame_t f);
void pmd_view_set_locker(struct pmd_view *v, pm_task_t locker);

#endif
