/*
 * container.h - containers and the operations of the container interface.
 *
 * A container is a set of virtual frames (its frame table) with the
 * segments that are its protection domain, owned by one task that pays for
 * every frame, and named by capabilities. Every operation is decode then
 * invoke: decode checks handle, rights, ranges, existence and quota and
 * reserves what it needs (table nodes, segments) with no visible effect;
 * invoke applies the change and cannot fail. So a request that fails has
 * changed nothing, except where the API says otherwise (a partial
 * allocation keeps the frames before the stop).
 *
 * All functions must run on the pmd loop thread, which owns every object
 * here.
 */
#ifndef PMD_CONTAINER_H
#define PMD_CONTAINER_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "pm_proto.h"

#include "cap.h"
#include "frame_table.h"
#include "list.h"

struct pmd_core;
struct pmd_task;
struct pmd_segment;
struct pmd_view;

struct pmd_container {
	uint64_t id;                  /* (C) home node << 48 | serial */
	struct pmd_task *owner;       /* (C) pays for every frame */
	struct pmd_ftab frames;       /* (L) frame_t -> place */
	struct pmd_list segments;     /* (L) its own segments */
	uint64_t free_slots;          /* (L) free slots in those segments */
	struct pmd_list caps;         /* (L) every live capability naming it */
	struct pmd_list shares;       /* (L) its weak references */
	struct pmd_list owner_link;   /* (L) in owner->containers */
	struct pmd_view *view;        /* (L) tasks' read-only view, or NULL */
	struct pmd_task *locker;      /* (L) server holding the lock, or NULL */
	uint64_t lock_until_ms;       /* (L) monotonic expiry of that lock */
	uint32_t policy;              /* (L) PM_PLACE_* */
	pm_node_t policy_node;        /* (L) for PM_PLACE_NODE */
};

/* Which argument or frame a failed request stumbled on. */
struct pmd_culprit {
	uint32_t arg;     /* 1-based argument of the call; 0: none */
	uint64_t frame;   /* the frame, when the error has one */
};

/* What a map gives the task: runs to mmap, and the segments among them
 * whose descriptors it does not hold yet. */
struct pmd_map_out {
	uint32_t granted;
	uint32_t done;
	uint32_t nruns;
	uint32_t nsegs;
	struct pmd_view *view;        /* the container's view */
	bool send_view;               /* the task does not hold it yet */
	struct pm_map_run runs[PM_MAP_MAX];
	struct pmd_segment *segs[PM_MAP_FDS_MAX];
};

error_t pmd_container_create(struct pmd_core *core, struct pmd_task *task,
			     container_t *handle_out);
error_t pmd_container_destroy(struct pmd_core *core, struct pmd_task *task,
			      container_t h, struct pmd_culprit *why);
/* Frees a container and everything under it: every capability naming it
 * dies. Used by destroy and by the owner's death. */
void pmd_container_free(struct pmd_core *core, struct pmd_container *c);

/* A task is going away: the locks it holds end. */
void pmd_container_unlock_all(struct pmd_core *core, struct pmd_task *task);
/* Removes one capability from its holder's table, whatever its state. */
void pmd_cap_free(struct pmd_core *core, struct pmd_cap *cap);

error_t pmd_container_stat(struct pmd_core *core, struct pmd_task *task,
			   container_t h, struct pm_stat_rep *st_out,
			   struct pmd_culprit *why);

/* *done is written on success and on failure (the API's *count). */
error_t pmd_container_allocate(struct pmd_core *core, struct pmd_task *task,
			       container_t h, frame_t start, uint32_t count,
			       uint32_t flags, uint32_t *done,
			       struct pmd_culprit *why);
/* The decode of an allocation alone: *n gets how many frames it would
 * allocate, here (bounded by this node's budget too) or elsewhere (by the
 * task's quota only); returns the stop (as allocate would), changes
 * nothing. */
error_t pmd_container_allocate_plan(struct pmd_core *core,
				    struct pmd_task *task, container_t h,
				    frame_t start, uint32_t count,
				    uint32_t flags, bool here, uint32_t *n,
				    struct pmd_culprit *why);
/* The same for an allocation whose frames go where places (count of
 * them, only their nodes read) say: node 0 here, else on that node. */
struct pmd_place;
error_t pmd_container_allocate_plan_places(struct pmd_core *core,
					   struct pmd_task *task,
					   container_t h, frame_t start,
					   uint32_t count, uint32_t flags,
					   const struct pmd_place *places,
					   uint32_t *n,
					   struct pmd_culprit *why);
/* Allocation into places, one per frame: a lent slot of another node, or
 * (node 0) a slot here; as many frames as places at most (ENOMEM is the
 * stop past them). */
error_t pmd_container_allocate_remote(struct pmd_core *core,
				      struct pmd_task *task, container_t h,
				      frame_t start, uint32_t count,
				      uint32_t flags,
				      const struct pmd_place *places,
				      uint32_t nplaces, uint32_t *done,
				      struct pmd_culprit *why);
/* Where the bytes of a read or write touching remote frames are: up to
 * PM_IO_MAX / PM_FRAME_SIZE + 1 pieces, each in one frame. EIO when a
 * frame is lost. Decode as for read and write. */
struct pmd_io_piece {
	uint8_t *local;               /* a local frame's bytes, or NULL */
	pm_node_t node;               /* remote: where */
	uint64_t key, base, rlen;     /* its lender's registration */
	uint64_t roff;                /* offset in it */
	uint32_t len;
};
#define PMD_IO_PIECES (PM_IO_MAX / PM_FRAME_SIZE + 1)
error_t pmd_container_io_plan(struct pmd_core *core, struct pmd_task *task,
			      container_t h, bool write, frame_t frame,
			      uint64_t offset, uint32_t len,
			      struct pmd_io_piece *pieces, uint32_t *npieces,
			      struct pmd_culprit *why);
/* Mapping or copying remote frames brings them here first (map and copy
 * answer EREMOTE); write: the caller will write them (checks that right):
 * the plan names up to PMD_PULL_MAX remote frames of the range and where
 * their bytes are (EIO: one is lost); the server reads them into data (a
 * frame each, in order) and finish makes each one that is still the same
 * remote frame a local one, giving its loan back. */
#define PMD_PULL_MAX (PM_IO_MAX / PM_FRAME_SIZE)
struct pmd_pull {
	frame_t frame;
	pm_node_t node;
	uint32_t seg;
	uint16_t slot;
	struct pmd_io_piece piece;
};
error_t pmd_container_pull_plan(struct pmd_core *core, struct pmd_task *task,
				container_t h, bool write, frame_t start,
				uint32_t count, uint64_t keep_task,
				struct pmd_pull *pulls, uint32_t *npulls,
				struct pmd_culprit *why);
/* The same over the whole container (owner only), for the frames pushed
 * for for_task (below): they come back before that task is unshared. */
error_t pmd_container_pull_plan_pushed(struct pmd_core *core,
				       struct pmd_task *task, container_t h,
				       uint64_t for_task, struct pmd_pull *pulls,
				       uint32_t *npulls);
error_t pmd_container_pull_finish(struct pmd_core *core, struct pmd_task *task,
				  container_t h, const struct pmd_pull *pulls,
				  uint32_t n, const uint8_t *data);
/*
 * Maps through a forwarded handle: a task of another node (task here is
 * its proxy) maps frames of a container homed here. The frames move into
 * slots that node lends from a segment it keeps for that task and this
 * container (tagged: pmd_rseg), where the task maps them as frames of its
 * own node; the move is recorded here as for any remote frame, so the
 * home still decides everything. push_plan looks at the first
 * PMD_FWD_MAP_MAX frames of the range (keep_task of pull_plan is how the
 * server pulls the others): ENOENT, EIO (lost) as map; EREMOTE when one
 * is remote and not in place (pull it here first, keeping those in
 * place); else out->push lists up to PMD_PUSH_MAX frames here to move:
 * the server borrows as many tagged slots of node, writes the frames'
 * bytes there and calls push_finish, which makes each frame that is still
 * where the plan saw it a remote frame in its place (its slot here
 * retires if a task may have mapped it, so the mapping follows; a copy-on-
 * write share stays with the other frame: the copy is physical from
 * then on) and gives the other places back. With nothing to move, out
 * says where the first out->done frames are (runs of the lender's segment
 * indices and slots) and what is granted: a frame that moved is the
 * task's alone, never copy-on-write.
 */
#define PMD_FWD_MAP_MAX 256
#define PMD_PUSH_MAX    15
struct pmd_push {
	frame_t frame;
	uint32_t seg;                 /* where it is here */
	uint16_t slot;
	uint32_t gen;
};
struct pmd_push_out {
	uint32_t npush;
	struct pmd_push push[PMD_PUSH_MAX];
	uint32_t done, granted, nruns;
	struct pm_map_run runs[PMD_FWD_MAP_MAX];
};
error_t pmd_container_push_plan(struct pmd_core *core, struct pmd_task *task,
				container_t h, frame_t start, uint32_t count,
				uint32_t flags, pm_node_t node,
				struct pmd_push_out *out,
				struct pmd_culprit *why);
/* The bytes of a planned frame, NULL when it is no longer there. */
const uint8_t *pmd_container_push_bytes(struct pmd_core *core,
					struct pmd_task *task, container_t h,
					const struct pmd_push *push);
void pmd_container_push_finish(struct pmd_core *core, struct pmd_task *task,
			       container_t h, const struct pmd_push *push,
			       uint32_t n, const struct pmd_place *places);
/* A handle task holds for c (0: none). */
container_t pmd_container_handle_of(struct pmd_task *task,
				   const struct pmd_container *c);
/* The container id behind a handle (any rights). */
error_t pmd_container_id_of(struct pmd_core *core, struct pmd_task *task,
			    container_t h, uint64_t *id);

/* The container's placement policy (after the usual handle checks). */
error_t pmd_container_policy(struct pmd_core *core, struct pmd_task *task,
			     container_t h, uint32_t *policy, pm_node_t *node);

error_t pmd_container_deallocate(struct pmd_core *core, struct pmd_task *task,
				 container_t h, frame_t start, uint32_t count,
				 struct pmd_culprit *why);

error_t pmd_container_map(struct pmd_core *core, struct pmd_task *task,
			  container_t h, frame_t start, uint32_t count,
			  uint32_t flags, struct pmd_map_out *out,
			  struct pmd_culprit *why);

error_t pmd_container_read(struct pmd_core *core, struct pmd_task *task,
			   container_t h, frame_t frame, uint64_t offset,
			   void *buf, uint32_t len, struct pmd_culprit *why);
error_t pmd_container_write(struct pmd_core *core, struct pmd_task *task,
			    container_t h, frame_t frame, uint64_t offset,
			    const void *buf, uint32_t len,
			    struct pmd_culprit *why);

error_t pmd_container_copy(struct pmd_core *core, struct pmd_task *task,
			   container_t src, frame_t src_start, container_t dst,
			   frame_t dst_start, uint32_t count, uint32_t flags,
			   struct pmd_culprit *why);

error_t pmd_container_share(struct pmd_core *core, struct pmd_task *task,
			    container_t h, pm_task_t remote,
			    container_t *weak_out, struct pmd_culprit *why);
error_t pmd_container_unshare(struct pmd_core *core, struct pmd_task *task,
			      container_t h, pm_task_t remote,
			      struct pmd_culprit *why);
error_t pmd_cap_export(struct pmd_core *core, struct pmd_task *task,
		       container_t h, struct pm_token *token_out,
		       struct pmd_culprit *why);
error_t pmd_cap_import(struct pmd_core *core, struct pmd_task *task,
		       const struct pm_token *token, container_t *h_out,
		       struct pmd_culprit *why);
error_t pmd_cap_release(struct pmd_core *core, struct pmd_task *task,
			container_t h, struct pmd_culprit *why);

error_t pmd_container_lock(struct pmd_core *core, struct pmd_task *task,
			   container_t h, uint32_t msec,
			   struct pmd_culprit *why);
error_t pmd_container_unlock(struct pmd_core *core, struct pmd_task *task,
			     container_t h, struct pmd_culprit *why);
/* Moves frame f to another slot of its container (owner only; the
 * operation the pmd uses to page, reclaim and migrate, and a debug request
 * on its own). EBUSY when the frame may not move: locked, sharing its
 * slot, or mapped by a task that cannot follow it. */
error_t pmd_container_move(struct pmd_core *core, struct pmd_task *task,
			   container_t h, frame_t f, struct pmd_culprit *why);

/* Where the frame that lived at (seg_id, slot) is now, for a task that
 * holds that segment and faulted on the slot. ENOENT: no frame moved
 * from there (or it is gone since); EBUSY: locked against the task;
 * EREMOTE: on another node now (out->cont, out->frame); EIO: lost. */
struct pmd_resolve_out {
	struct pmd_container *cont;   /* EREMOTE: the frame went to another */
	frame_t frame;                /* node; it must come back first */
	struct pmd_segment *seg;
	uint16_t slot;
	bool cow;
	bool send_fd;                 /* the task does not hold seg yet */
};
error_t pmd_container_resolve(struct pmd_core *core, struct pmd_task *task,
			      uint64_t seg_id, uint32_t slot,
			      struct pmd_resolve_out *out);

error_t pmd_container_set_policy(struct pmd_core *core, struct pmd_task *task,
				 container_t h, uint32_t policy,
				 pm_node_t node, struct pmd_culprit *why);

#endif
