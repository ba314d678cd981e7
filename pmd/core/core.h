/*
 * core.h - the objects of one node's core, and the node that holds them.
 *
 * The node (struct pmd_core) has a frame budget, the segments its frames
 * live in, its tasks, the shares that weak references come from, and what
 * other nodes lent it. A task owns containers and a handle table; a
 * container owns its frame table, its segments (its protection domain),
 * its frame view and its shares, and lists every capability naming it; a
 * capability sits in its holder's handle table. This header is the one
 * place where these structs are laid out; the operations on them are in
 * the files named after what they do (task.c, container.c, alloc.c,
 * map.c, io.c, copy.c, share.c, lock.c, move.c), each with its header.
 *
 * The core does no I/O beyond the memory of its segments and views: no
 * socket, no thread, no network. The daemon's loop thread owns it.
 *
 * Lock key: (C) constant once made; (L) the pmd loop thread, the only
 * thread that touches the core.
 */
#ifndef PMD_CORE_H
#define PMD_CORE_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "account.h"
#include "frame_table.h"
#include "handles.h"
#include "list.h"
#include "log.h"
#include "segment.h"
#include "stop.h"
#include "store.h"

#define PMD_SHARE_BUCKETS      1024
/* Weak references a task's containers may have at once (a share lives as
 * long as any task holds it: its importers' tables too); one more is
 * ENOMEM. With PMD_TASK_HANDLES_MAX, this bounds a task's metadata. */
#define PMD_TASK_SHARES_MAX    4096u
#define PMD_USER_OVERRIDES_MAX 64
#define PMD_LIMIT_DEFAULT      UINT64_MAX /* a [user] value left unset */

/* Per-user guarantee and extra limit, from the configuration file. */
struct pmd_user_limits {
	uint32_t uid;                   /* (C) */
	uint64_t guarantee;             /* (C) frames, or PMD_LIMIT_DEFAULT */
	uint64_t extra;                 /* (C) frames, or PMD_LIMIT_DEFAULT */
	uint64_t sessions;              /* (C) at once, or PMD_LIMIT_DEFAULT */
	uint64_t handles;               /* (C) all its tasks', or
	                                 * PMD_LIMIT_DEFAULT */
};

/* A user with tasks here: what its tasks hold together, against its
 * limits (a user's metadata is bounded, not only a task's). Owned by the
 * core; lives while it has tasks. */
struct pmd_user {
	uint32_t uid;                   /* (C) */
	uint32_t ntasks;                /* (L) its live tasks */
	uint64_t handles;               /* (L) they hold */
	uint64_t max_handles;           /* (C) 0: no limit */
	struct pmd_list link;           /* (L) in core->users */
};

struct pmd_core_config {
	pm_node_t node;                 /* this node's id */
	uint64_t frames_total;          /* budget in frames */
	uint64_t guarantee;             /* default G per task */
	uint64_t extra;                 /* default E per task */
	enum pmd_admit_policy admit;    /* when a guarantee does not fit */
	uint32_t max_lock_ms;           /* longest server lock */
	uint64_t user_sessions;         /* a user's sessions at once; 0: any */
	uint64_t user_handles;          /* its tasks' handles together; 0: any */
	struct pmd_user_limits users[PMD_USER_OVERRIDES_MAX];
	uint32_t nusers;                /* entries in users */
};

struct pmd_rseg;
struct pmd_rfree;

struct pmd_container;
/* The coldest frames of one container, as a page-out plan found them
 * (pmd_pageout_plan): later plans hand them out while they are still
 * where, and as cold as, they were. */
#define PMD_COLDLIST_MAX 256
struct pmd_coldlist {
	struct pmd_container *c;        /* (L) whose; NULL: empty (a
	                                 * container freed clears it) */
	bool extra_only;                /* (L) the plan's class */
	uint32_t n, next;               /* (L) frames, next to hand out */
	struct {
		frame_t frame;
		uint32_t gen;           /* its place then */
		uint16_t used;          /* its use stamp then */
	} v[PMD_COLDLIST_MAX];          /* (L) coldest first */
};

/* One node. */
struct pmd_core {
	struct pmd_core_config cfg;     /* (C) */
	struct pmd_budget budget;       /* (L) frames: charged, reserved, lent */
	struct pmd_segtab segs;         /* (L) every segment of this node */
	struct pmd_list tasks;          /* (L) live tasks (pmd_task.link) */
	struct pmd_list users;          /* (L) users with tasks (pmd_user) */
	struct pmd_list views_unsettled; /* (L) views whose runs wait to be
	                                 * made exact (view.h, defer) */
	uint64_t ntasks;                /* (L) length of tasks */
	uint64_t ncontainers;           /* (L) live containers */
	uint64_t nframes;               /* (L) frames in all containers */
	uint64_t touches;               /* (L) frames the pmd saw used: its
	                                 * clock of coldness (reclaim.h) */
	bool pageout_random;            /* (C) page out frames at random, not
	                                 * the coldest (for measurement) */
	uint64_t next_task;             /* (L) serial of the next task */
	uint64_t next_container;        /* (L) serial of the next container */
	uint8_t secret[32];             /* (C) MAC key of capability tokens */
	struct pmd_share *shares[PMD_SHARE_BUCKETS]; /* (L) by id */
	uint64_t nshares;               /* (L) in shares */
	struct pmd_rseg *rsegs;         /* (L) lenders' segments we use */
	uint32_t nrsegs, rsegs_cap;     /* (L) used, allocated */
	struct pmd_rfree *rfree;        /* (L) lent slots to give back */
	uint32_t nrfree, rfree_cap;     /* (L) used, allocated */
	struct pmd_ratelimit refusals_said; /* (L) sessions refused: said */
	struct pmd_stops stops;         /* (L) what the last decode needs
	                                 * stopped before its invoke (stop.h) */
	struct pmd_store store;         /* (L) the backing store's slots */
	struct pmd_coldlist cold;       /* (L) the last page-out plan's
	                                 * frames not handed out (reclaim.h) */
};

/* Rights of a capability. The owner does everything but lock: locks are
 * the servers' guarantee against the owner. */
#define PMD_RIGHT_OWNER 0x01 /* allocate, deallocate, share, destroy, ... */
#define PMD_RIGHT_READ  0x02
#define PMD_RIGHT_WRITE 0x04
#define PMD_RIGHT_MAP   0x08
#define PMD_RIGHT_LOCK  0x10
#define PMD_RIGHTS_OWNER (PMD_RIGHT_OWNER | PMD_RIGHT_READ | PMD_RIGHT_WRITE | \
			  PMD_RIGHT_MAP)
#define PMD_RIGHTS_WEAK (PMD_RIGHT_READ | PMD_RIGHT_WRITE | PMD_RIGHT_MAP | \
			 PMD_RIGHT_LOCK)

/*
 * A share: the weak reference pm_container_share makes for one task. Every
 * capability derived from it (the sharer's handle, each import) points to
 * it; unsharing or destroying the container deletes the share and turns
 * those capabilities into tombstones. Owned by its container.
 */
struct pmd_share {
	uint64_t id;                /* (C) home << 48 | random; names it in tokens */
	pm_task_t bound;            /* (C) the only task that may use it */
	struct pmd_container *cont; /* (C) */
	uint32_t ncaps;             /* (L) capabilities derived from it */
	struct pmd_list cont_link;  /* (L) in cont->shares */
	struct pmd_share *hash_next;/* (L) in core->shares */
};

/* A capability: a container and rights, held in one task's handle table
 * and linked into the container while it is not revoked. */
struct pmd_cap {
	struct pmd_container *cont; /* (L) what it names; NULL: revoked */
	struct pmd_share *share;    /* (L) weak references: their share */
	struct pmd_task *holder;    /* (C) whose table holds it */
	uint32_t rights;            /* (C) PMD_RIGHT_* */
	container_t handle;         /* (C) its handle in holder's table */
	struct pmd_list cont_link;  /* (L) in cont->caps while not revoked */
};

/*
 * A task: one client session, the unit of identity and accounting (or, as
 * a proxy, a task of another node acting here through its pmd). It owns
 * its handle table and its containers and carries its charge. It also
 * remembers which segments (and views) it was given descriptors of, so a
 * map sends each once and a revocation knows who could see a segment.
 */
struct pmd_task {
	pm_task_t id;                /* (C) node << 48 | serial */
	uint32_t uid, gid, pid;      /* (C) peer credentials at connect */
	struct pmd_user *user;       /* (C) its user; NULL for a proxy */
	struct pmd_charge charge;    /* (L) frames charged to it */
	struct pmd_htab handles;     /* (L) its capabilities */
	struct pmd_list containers;  /* (L) containers it owns (owner_link) */
	uint64_t ncontainers;        /* (L) length of that list */
	uint32_t nshares;            /* (L) weak references its containers
	                              * have (PMD_TASK_SHARES_MAX at most) */
	uint64_t *segs_given;        /* (L) sorted ids of segments it holds */
	uint32_t nsegs_given;        /* (L) used */
	uint32_t segs_given_cap;     /* (L) allocated */
	bool follows;                /* (L) its library follows moved frames */
	bool hears_unshared;         /* (L) its library takes UNSHARED
	                              * (HELLO version PM_HELLO_UNSHARED) */
	bool proxy;                  /* (C) a task of another node */
	void *fault_session;         /* (L) the daemon's session serving its
	                              * faults; NULL: none */
	bool reclaim_asks;           /* (L) its library has a reclaim handler
	                              * and hears RECLAIM there */
	uint8_t attach_key[16];      /* (L) for that session; zero: none */
	struct pmd_list link;        /* (L) in core->tasks */
};

struct pmd_view;

/*
 * A container: a set of virtual frames with the segments that are its
 * protection domain, owned by one task that pays for every frame, named
 * by capabilities.
 */
struct pmd_container {
	uint64_t id;                  /* (C) home node << 48 | serial */
	struct pmd_task *owner;       /* (C) pays for every frame */
	struct pmd_ftab frames;       /* (L) frame_t -> place */
	struct pmd_ftab gone;         /* (L) frames the pmd took back
	                               * (reclaim.h): ESTALE until the owner
	                               * deallocates or allocates them */
	struct pmd_list segments;     /* (L) its own segments */
	uint64_t free_slots;          /* (L) free slots in those segments */
	struct pmd_list caps;         /* (L) every live capability naming it */
	struct pmd_list shares;       /* (L) its weak references */
	struct pmd_list owner_link;   /* (L) in owner->containers */
	struct pmd_view *view;        /* (L) tasks' read-only view, or NULL */
	struct pmd_task *locker;      /* (L) server holding the lock, or NULL */
	uint64_t lock_until_ms;       /* (L) monotonic expiry of that lock */
	uint64_t lock_max_ms;         /* (L) the pmd's --max-lock-ms then */
	pm_task_t fenced;             /* (L) a locker that refused its owner:
	                               * it may not lock again (nor extend) */
	uint64_t fence_until_ms;      /* (L) until then (lock.h) */
	uint32_t policy;              /* (L) PM_PLACE_* */
	pm_node_t policy_node;        /* (L) for PM_PLACE_NODE */
};

/* Which argument or frame a failed request stumbled on (the reply's
 * culprit). Arguments count from 1 in the order of the public call,
 * without the session: PMD_ARG_* below name them. */
struct pmd_culprit {
	uint32_t arg;     /* 1-based argument of the call; 0: none */
	uint64_t frame;   /* the frame, when the error has one */
};

/* Culprit arguments, by call. */
enum {
	PMD_ARG_NONE = 0,
	PMD_ARG_HANDLE = 1,           /* every call on a container */
	/* allocate(container, start, count, flags), deallocate */
	PMD_ARG_ALLOC_COUNT = 3,      /* also: the range wraps */
	PMD_ARG_ALLOC_FLAGS = 4,
	/* map(container, start, nr_frames, flags) */
	PMD_ARG_MAP_COUNT = 3,
	PMD_ARG_MAP_FLAGS = 4,
	/* read, write(container, frame, offset, buf, len) */
	PMD_ARG_IO_OFFSET = 3,        /* also: the range wraps */
	PMD_ARG_IO_LEN = 5,
	/* copy(src, src_start, dst, dst_start, count, flags) */
	PMD_ARG_COPY_SRC = 1,
	PMD_ARG_COPY_DST = 3,
	PMD_ARG_COPY_COUNT = 5,       /* also: a range wraps */
	PMD_ARG_COPY_FLAGS = 6,
	/* share, unshare(container, remote) */
	PMD_ARG_SHARE_TASK = 2,
	/* export(ref, token), import(token, ref) */
	PMD_ARG_EXPORT_REF = 1,
	PMD_ARG_IMPORT_TOKEN = 1,
	/* lock(container, msec) */
	PMD_ARG_LOCK_MSEC = 2,
	/* set_policy(container, policy, node) */
	PMD_ARG_POLICY = 2,
	PMD_ARG_POLICY_NODE = 3,
	/* requests with no public call: hello(version, flags),
	 * attach(task, key), ping(node) */
	PMD_ARG_HELLO_VERSION = 1,
	PMD_ARG_HELLO_FLAGS = 2,
	PMD_ARG_ATTACH_TASK = 1,
	PMD_ARG_ATTACH_KEY = 2,
	PMD_ARG_PING_NODE = 1,
};

void pmd_core_init(struct pmd_core *core, const struct pmd_core_config *cfg);
/* Every task must have been destroyed. */
void pmd_core_fini(struct pmd_core *core);

/*
 * Frames of the node's memory that no physical page takes: the budget
 * (--memory) less the pages its segments hold now (the kernel's count:
 * frames written or mapped, slots lent, pinned segments whole) and the
 * room kept for frames on their way in. A frame that was never written
 * or mapped takes none (segment.h), so this is usually more than the
 * budget left (pmd_budget_free). What pm_nodes says is free; admission,
 * lending and placement go by the budget. Up to max segments are looked
 * at again (a system call each), the others counted as last seen: a
 * request for it looks at all, a heartbeat at a few
 * (pmd_segtab_resident_sweep).
 */
uint64_t pmd_core_physical_free(struct pmd_core *core, uint32_t max);

/* The node's table of shares, by id. */
void pmd_share_insert(struct pmd_core *core, struct pmd_share *sh);
struct pmd_share *pmd_share_lookup(struct pmd_core *core, uint64_t id);
void pmd_share_remove(struct pmd_core *core, struct pmd_share *sh);

#endif
