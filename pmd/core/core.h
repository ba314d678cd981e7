/*
 * core.h - the state of one pmd node: its budget, segments, tasks and
 * containers, and the life of tasks. No I/O beyond the segments' memory;
 * the server module drives it from the one loop thread that owns it.
 */
#ifndef PMD_CORE_H
#define PMD_CORE_H

#include <stdint.h>

#include <pm/pm.h>

#include "pm_proto.h"

#include "account.h"
#include "list.h"
#include "segment.h"
#include "task.h"

#define PMD_SHARE_BUCKETS 1024
#define PMD_USER_OVERRIDES_MAX 64

#define PMD_LIMIT_DEFAULT UINT64_MAX /* a [user] value left unset */

/* Per-user guarantee and extra limit, from the configuration file. */
struct pmd_user_limits {
	uint32_t uid;
	uint64_t guarantee;
	uint64_t extra;
};

struct pmd_core_config {
	pm_node_t node;                 /* this node's id */
	uint64_t frames_total;          /* budget in frames */
	uint64_t guarantee;             /* default G per task */
	uint64_t extra;                 /* default E per task */
	enum pmd_admit_policy admit;    /* when a guarantee does not fit */
	uint32_t max_lock_ms;           /* longest server lock */
	struct pmd_user_limits users[PMD_USER_OVERRIDES_MAX];
	uint32_t nusers;                /* entries in users */
};

struct pmd_core {
	struct pmd_core_config cfg;     /* (C) */
	struct pmd_budget budget;       /* (L) */
	struct pmd_segtab segs;         /* (L) */
	struct pmd_list tasks;          /* (L) live tasks */
	uint64_t ntasks;                /* (L) */
	uint64_t ncontainers;           /* (L) live containers */
	uint64_t nframes;               /* (L) frames in all containers */
	uint64_t next_task;             /* (L) serial of the next task */
	uint64_t next_container;        /* (L) serial of the next container */
	uint8_t secret[32];             /* (C) MAC key of capability tokens */
	struct pmd_rseg *rsegs;         /* (L) lenders' segments we use */
	uint32_t nrsegs, rsegs_cap;     /* (L) */
	struct pmd_rfree *rfree;        /* (L) remote slots to give back */
	uint32_t nrfree, rfree_cap;     /* (L) */
	struct pmd_share *shares[PMD_SHARE_BUCKETS]; /* (L) by id */
	uint64_t nshares;               /* (L) */
};

/* A segment another node lent us slots of: how to reach it. A segment
 * that node keeps for one of its tasks' mappings of one container of ours
 * (a forwarded map put the frames there) is tagged with both. */
struct pmd_rseg {
	pm_node_t node;
	uint32_t seg;
	uint64_t key, base, len;        /* its fabric registration */
	uint64_t tag_task, tag_cont;    /* 0: lent for any frames */
};
/* A lent slot we no longer use, to be given back. */
struct pmd_rfree {
	pm_node_t node;
	uint32_t seg;
	uint16_t slot;
};
/* Where remote frames go: one lent slot each. */
struct pmd_place {
	pm_node_t node;
	uint32_t seg;
	uint16_t slot;
	uint64_t key, base, len;
	uint64_t tag_task, tag_cont;    /* its segment's tag (pmd_rseg) */
};

const struct pmd_rseg *pmd_core_rseg(const struct pmd_core *core,
				     pm_node_t node, uint32_t seg);
error_t pmd_core_rseg_add(struct pmd_core *core, const struct pmd_place *p);
/* Queues a lent slot to be given back to its node (the server sends the
 * frees). Out of memory, it stays lent until that node restarts (logged). */
void pmd_core_give_back(struct pmd_core *core, pm_node_t node, uint32_t seg,
			uint16_t slot);
/* Node went down (or restarted): its frames are lost, nothing is given
 * back to it. */
void pmd_core_node_lost(struct pmd_core *core, pm_node_t node);

struct pmd_task *pmd_core_find_task(struct pmd_core *core, pm_task_t id);
uint64_t pmd_core_now_ms(void);

void pmd_share_insert(struct pmd_core *core, struct pmd_share *sh);
struct pmd_share *pmd_share_lookup(struct pmd_core *core, uint64_t id);
void pmd_share_remove(struct pmd_core *core, struct pmd_share *sh);

void pmd_core_init(struct pmd_core *core, const struct pmd_core_config *cfg);
/* Every task must have been destroyed. */
void pmd_core_fini(struct pmd_core *core);

/* A new session: admits its guarantee (ENOMEM when the admission policy
 * refuses). */
error_t pmd_task_create(struct pmd_core *core, uint32_t uid, uint32_t gid,
			uint32_t pid, struct pmd_task **task_out);
/* The session ended or the task died: its containers are freed, the
 * capabilities it held released. */
void pmd_task_destroy(struct pmd_core *core, struct pmd_task *task);
/* A task of another node acting here through its pmd (forwarded
 * requests): named by its own id, owning nothing, holding the weak
 * references it imported. */
error_t pmd_task_create_proxy(struct pmd_core *core, pm_task_t id,
			      struct pmd_task **task_out);

void pmd_task_stat(const struct pmd_task *task, struct pm_task_stat_rep *out);

/* Counts and cross-checks the node's accounting; invariant_ok says whether
 * every check held (failures are logged). */
void pmd_core_debug(struct pmd_core *core, struct pm_debug_rep *out);

#endif
