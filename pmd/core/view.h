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

#include "list.h"
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
	/* Runs left short by ends since the last settle (pmd_view_defer):
	 * every one of them is at or after slo, up to shi, or chained to
	 * one there. */
	struct pmd_list *unsettled;   /* (L) where it goes then; NULL: ends
	                              * make every run exact */
	struct pmd_list settle_link;  /* (L) in *unsettled while any */
	frame_t slo, shi;             /* (L) */
	uint64_t sn;                  /* (L) changes they cover */
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

/*
 * Runs, exact later. An end makes every run it shortened right (a run
 * must never say more than the view holds), but a run that a change
 * lengthens (a frame appended after it: page-ins in frame order, a hole
 * made physical) would make the end walk back along it, up to a
 * segment's length of look-ups on the request's path. Once v is
 * deferred, ends leave such runs short (a reader then looks the frames
 * up one by one: never wrong, only slower) and put v on the list
 * unsettled; pmd_view_settle_all makes every run exact again in those
 * views that waited for at least min_changes changes (1: all of them).
 */
void pmd_view_defer(struct pmd_view *v, struct pmd_list *unsettled);
void pmd_view_settle_all(struct pmd_list *unsettled, uint64_t min_changes);

#endif
