/*
 * move.h - frames that change place: a move to another slot here, the
 * move of everything a revoked task could see (unshare), where a moved
 * frame is now (a task's fault on its old slot), and moves between nodes:
 * pulls that bring remote frames home and pushes that send frames to the
 * node of a task that maps them through a forwarded handle.
 *
 * A move out of a segment some task holds *retires* the old slot (punched,
 * never reused while the segment lives, with a forwarding record), so
 * that the task's mapping faults and follows the frame; the pmd moves no
 * frame out from under a task whose library cannot follow (EBUSY), none
 * under a lock, and none that shares its slot (it moves when its copy
 * breaks).
 *
 * The core decides and keeps the books; the daemon moves the bytes
 * between nodes (by RDMA) and calls the finish steps when they are there.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_MOVE_H
#define PMD_MOVE_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "borrowed.h"
#include "core.h"
#include "io.h"
#include "pm_proto.h"

struct pmd_segment;

/* Whether every task holding seg (but except) can follow a frame moved
 * out of it. */
bool pmd_holders_follow(const struct pmd_core *core,
			const struct pmd_segment *seg,
			const struct pmd_task *except);

/* A move of frame f to another slot of its container (owner only; the
 * move that paging, reclaim and migration make, and a debug request of
 * its own), decoded: EBUSY when the frame may not move; EOPNOTSUPP when
 * it is on another node. Its stops (stop.h) are in core->stops. */
struct pmd_move {
	struct pmd_container *c;
	struct pmd_frame *e;
	frame_t f;
};
error_t pmd_move_decode(struct pmd_core *core, struct pmd_task *task,
			container_t h, frame_t f, struct pmd_move *mv,
			struct pmd_culprit *why);
/* Once its stops are done: the copy, the new place in the view, and the
 * old slot retired (or freed). */
void pmd_move_invoke(struct pmd_core *core, const struct pmd_move *mv);

/* Moves every frame of c living in a segment t holds into the fresh
 * segments (made by the caller's decode, as many as t holds, the old
 * ones' forwarding records reserved), with the same slot numbers, once
 * every other holder dropped its mappings of them (unshare's stops):
 * the old segments retire whole, so t's mappings fault into nothing
 * (it holds them no more) and the others' follow the frames. */
void pmd_move_segments(struct pmd_core *core, struct pmd_container *c,
		       struct pmd_task *t, struct pmd_segment **fresh,
		       uint32_t nfresh);

/* Where the frame that lived at (seg_id, slot) is now, for a task that
 * holds that segment and faulted on the slot. ENOENT: no frame moved
 * from there (or it is gone since); EACCES: the task does not hold the
 * segment; EBUSY: locked against the owner; EIO: lost. With out->remote
 * the frame is on another node now (out->cont, out->frame): it must come
 * back first. */
struct pmd_resolve_out {
	bool remote;
	struct pmd_container *cont;   /* remote: the frame's container */
	frame_t frame;                /*         and number */
	struct pmd_segment *seg;      /* else where it is */
	uint16_t slot;
	bool cow;
	bool send_fd;                 /* the task does not hold seg yet */
	bool foreign;                 /* in another container's segment:
	                               * pmd_resolve_own after the stops */
	struct pmd_frame *e;          /* foreign: the frame */
};
error_t pmd_container_resolve(struct pmd_core *core, struct pmd_task *task,
			      uint64_t seg_id, uint32_t slot,
			      struct pmd_resolve_out *out);
/* Where frame f of container h (as task holds it) is now: for a fault
 * on a mapping the pmd took away (its slot lives on, for other frames). */
error_t pmd_container_where(struct pmd_core *core, struct pmd_task *task,
			    container_t h, frame_t f,
			    struct pmd_resolve_out *out);
/* A foreign frame (out->foreign) gets a slot of its container's own. */
void pmd_resolve_own(struct pmd_core *core, const struct pmd_resolve_out *out);

/*
 * Pulls: remote frames brought here (a map or copy of them, a fault on a
 * frame that left, an unshare). The plan names up to PMD_PULL_MAX remote
 * frames of the range of c and where their bytes are (EIO: one is lost),
 * all of one kind: in slots lent for any frames (the daemon reads them by
 * RDMA and gives the loans back), or all in slots one node keeps for a
 * task's mappings (*tagged*: that node returns them with their bytes,
 * its task stopped first). The daemon brings them into data (a frame
 * each, in order) and finish makes each one that is still the same
 * remote frame a local one. Frames pushed for keep_task (below) stay
 * where they are.
 */
#define PMD_PULL_MAX (PM_IO_MAX / PM_FRAME_SIZE)
struct pmd_pull {
	frame_t frame;
	pm_node_t node;
	uint32_t seg;
	uint16_t slot;
	bool tagged;                 /* the node returns it (no loan to give) */
	struct pmd_io_piece piece;
};
error_t pmd_pull_plan(struct pmd_core *core, struct pmd_container *c,
		      frame_t start, uint32_t count, uint64_t keep_task,
		      struct pmd_pull *pulls, uint32_t *npulls,
		      struct pmd_culprit *why);
/* The same over the whole container, for the frames pushed for for_task:
 * they come back before that task is unshared (a lost one stays lost). */
void pmd_pull_plan_pushed(struct pmd_core *core, struct pmd_container *c,
			  uint64_t for_task, struct pmd_pull *pulls,
			  uint32_t *npulls);
/* The same over the whole container, for its frames on node (not lost):
 * a node that drains takes its slots back. */
void pmd_pull_plan_node(struct pmd_core *core, struct pmd_container *c,
			pm_node_t node, struct pmd_pull *pulls,
			uint32_t *npulls);
/* Remote frames that moved to other slots of another node (a node that
 * drains, whose home has no room for them here): each pull's frame, if
 * it is still where it was read from, lives at its place from now on
 * and its old slot goes back; the other places go back. Charges stay
 * (remote before and after). */
void pmd_move_remote_finish(struct pmd_core *core, struct pmd_task *task,
			    container_t h, const struct pmd_pull *pulls,
			    uint32_t n, const struct pmd_place *places);
/* Tagged pulls cannot stay where they are once returned: room here for
 * their frames is kept from now until finish (*held of it; 0 for other
 * pulls). ENOMEM: there is none (extra frames need room no guarantee
 * reserves; guaranteed ones, room that extra frames do not fill). */
error_t pmd_pull_reserve(struct pmd_core *core, struct pmd_container *c,
			 const struct pmd_pull *pulls, uint32_t n,
			 uint32_t *held);
/* Room kept for pulls that did not come after all. */
void pmd_pull_unreserve(struct pmd_core *core, uint32_t held);
/* task's handle h names the container again (it may have gone meanwhile:
 * then nothing comes in). Pulls whose bit is set in lost did not come
 * (their node no longer had them for us): those frames are lost (EIO).
 * ENOMEM: an extra frame found no room here and stays where it is (a
 * tagged one has room held: held, released here). */
error_t pmd_pull_finish(struct pmd_core *core, struct pmd_task *task,
			container_t h, const struct pmd_pull *pulls,
			uint32_t n, const uint8_t *data, uint32_t lost,
			uint32_t held);

/*
 * Pushes: a map through a forwarded handle. A task of another node (task
 * here is its proxy) maps frames of a container homed here: they move
 * into slots that node lends from a segment it keeps for that task and
 * this container (tagged: pmd_rseg), where the task maps them as frames
 * of its own node; the move is recorded here as for any remote frame,
 * so the home still decides everything. The plan looks at the first
 * PMD_FWD_MAP_MAX frames of the range: ENOENT, EIO (lost) as a map;
 * out->pull when one is remote and not in place (pull it here first,
 * keeping those in place: pmd_pull_plan's keep_task); else out->push
 * lists up to PMD_PUSH_MAX frames here to move: the daemon borrows as
 * many tagged slots of node, writes the frames' bytes there and calls
 * finish, which makes each frame that is still where the plan saw it a
 * remote frame in its place (its slot here retires if a task may have
 * mapped it, so the mapping follows; a copy-on-write share stays with the
 * other frame: the copy is physical from then on) and gives the other
 * places back. With nothing to move, out says where the first out->done
 * frames are (runs of the lender's segment indices and slots) and what
 * is granted: a frame that moved is the task's alone, never
 * copy-on-write.
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
	bool pull;                    /* bring remote frames here first */
	uint32_t npush;
	struct pmd_push push[PMD_PUSH_MAX];
	uint32_t done, granted, nruns;
	struct pm_map_run runs[PMD_FWD_MAP_MAX];
};
error_t pmd_push_plan(struct pmd_core *core, struct pmd_task *task,
		      container_t h, frame_t start, uint32_t count,
		      uint32_t flags, pm_node_t node, struct pmd_push_out *out,
		      struct pmd_culprit *why);
/* Frame f (entry e, here) of c lives in lent place p from now on (its
 * segment recorded): its charge moves to the remote count, its old slot
 * retires when a task may have mapped it and no other frame shares it,
 * else it gives its reference up. Inside a view change. */
void pmd_frame_goes_to(struct pmd_core *core, struct pmd_container *c,
		       frame_t f, struct pmd_frame *e,
		       const struct pmd_place *p);
/* The bytes of a planned frame, NULL when it is no longer there. */
const uint8_t *pmd_push_bytes(struct pmd_core *core, struct pmd_task *task,
			      container_t h, const struct pmd_push *push);
void pmd_push_finish(struct pmd_core *core, struct pmd_task *task,
		     container_t h, const struct pmd_push *push, uint32_t n,
		     const struct pmd_place *places);

#endif
