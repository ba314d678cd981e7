/*
 * map.h - mappings: what a task needs to map frames of a container into
 * its address space (runs of slots of segments, the segments'
 * descriptors it does not hold yet, the container's frame view), and,
 * for the seed's rule, never a writable mapping of a copy-on-write frame
 * (CONT_MAP_FORCE_WRITE breaks the copy first).
 *
 * Mapping a frame that lives on another node brings it here first: the
 * decode says so (m->remote) and the daemon pulls it (move.h), then maps
 * again.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_MAP_H
#define PMD_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "core.h"
#include "pm_proto.h"

struct pmd_segment;
struct pmd_view;

/* One map, decoded. */
struct pmd_map {
	struct pmd_container *cont;
	frame_t start;
	uint32_t count;
	uint32_t flags;               /* CONT_MAP_* */
	uint64_t ncow;                /* copy-on-write frames of the range */
	uint64_t nforeign;            /* of which in another container's
	                               * segment (a logical copy): they get
	                               * slots of their own, mapped or not */
	bool remote;                  /* a frame of the range is on another
	                               * node (why->frame): pull, then map */
};

/* What a map gives the task: runs to mmap, and the segments among them
 * whose descriptors it does not hold yet. */
struct pmd_map_out {
	uint32_t granted;             /* CONT_MAP_* on every run */
	uint32_t done;                /* frames covered (the task asks
	                               * again for the rest) */
	uint32_t nruns;
	uint32_t nsegs;
	struct pmd_view *view;        /* the container's view */
	bool send_view;               /* the task does not hold it yet */
	struct pm_map_run runs[PM_MAP_MAX];
	struct pmd_segment *segs[PM_MAP_FDS_MAX];
};

/* The checks of a map's arguments alone: rights (map, read, and write
 * for CONT_MAP_WRITE), range, flags. */
error_t pmd_map_check(struct pmd_task *task, container_t h, frame_t start,
		      uint32_t count, uint32_t flags, struct pmd_container **c,
		      struct pmd_culprit *why);
/* Decode: the checks, then every frame present (ENOENT), up to the first
 * remote one (m->remote; EIO when its node went down). */
error_t pmd_map_decode(struct pmd_core *core, struct pmd_task *task,
		       container_t h, frame_t start, uint32_t count,
		       uint32_t flags, struct pmd_map *m,
		       struct pmd_culprit *why);
/* Whether invoking m would give the task descriptors (the view, or a
 * segment it does not hold; conservatively, whenever frames get new
 * slots): a map from a request ring, which cannot carry them, goes to
 * the socket then. m has no remote frame. */
bool pmd_map_sends_fds(const struct pmd_core *core,
		       const struct pmd_task *task, const struct pmd_map *m);
/* Invoke (m has no remote frame): the view made if it is the first map,
 * the copies FORCE_WRITE breaks, the runs; the task now holds what out
 * sends. ENOMEM when what it reserves cannot be had. */
error_t pmd_map_invoke(struct pmd_core *core, struct pmd_task *task,
		       const struct pmd_map *m, struct pmd_map_out *out);

#endif
