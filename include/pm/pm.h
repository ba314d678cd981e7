/*
 * pm.h - the client API of pmd, the distributed physical memory server.
 *
 * A session (pm_t) with the local pmd is one task: the unit of identity and
 * of accounting. Tasks hold memory as virtual frames in containers; a
 * container_t is a capability handle local to its session, like a file
 * descriptor. The calls follow the container interface of the Hurd physical
 * memory server design.
 *
 * Every call returns 0 or a positive errno value; out-parameters are written
 * only on success unless a call says otherwise. All calls are thread-safe on
 * one pm_t. See docs/api.md for the reference of each call.
 */
#ifndef PM_PM_H
#define PM_PM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef __error_t_defined
#define __error_t_defined 1
typedef int error_t;
#endif

/* Symbols of the library's interface; everything else stays private. */
#define PM_API __attribute__((visibility("default")))

#define PM_FRAME_SIZE 4096u

/* Where pmd listens and where pm_connect(NULL, ...) looks, unless
 * $PM_ENDPOINT names another socket. */
#define PM_DEFAULT_SOCKET "/run/pmd/pmd.sock"

typedef struct pm pm_t;
typedef uint64_t container_t;
typedef uint64_t frame_t;
typedef uint64_t pm_task_t;   /* node id in the high 16 bits */
typedef uint16_t pm_node_t;

typedef struct pm_cap_token {
	uint8_t bytes[32];
} pm_cap_token_t;

struct pm_task_stat {
	pm_task_t task;
	uint64_t guaranteed;      /* G: frames this task is guaranteed */
	uint64_t extra_limit;     /* E: extra frames it may hold beyond G */
	uint64_t allocated;       /* frames charged to it now (G-part + extra) */
	uint64_t extra_allocated; /* of which beyond the guarantee */
	uint64_t containers;      /* containers it owns */
	uint32_t uid;             /* peer credentials recorded at connect */
	uint32_t pid;
};

struct pm_container_stat {
	pm_node_t home;
	uint64_t frames;          /* allocated virtual frames */
	uint64_t resident;        /* in memory on the home node */
	uint64_t remote;          /* in memory on other nodes */
	uint64_t swapped;         /* on backing store */
	uint64_t cow;             /* sharing a physical frame copy-on-write */
	uint32_t locked_ms_left;  /* 0 when not locked */
};

#define PM_NODE_UP      1
#define PM_NODE_SUSPECT 2
#define PM_NODE_DOWN    3

struct pm_node_info {
	pm_node_t id;
	int state;                /* PM_NODE_UP, PM_NODE_SUSPECT, PM_NODE_DOWN */
	uint64_t frames_total, frames_free; /* its memory, and what of it no
				   * physical page takes (docs/api.md) */
	char address[64];
	uint64_t incarnation;     /* beyond the contract: new at each start of
				   * the node; 0 when never heard from */
	unsigned version;         /* beyond the contract: the node protocol
				   * spoken with it (this node: the highest
				   * it speaks); 0 when never heard from,
				   * or alone */
};

/* Sessions */
PM_API error_t pm_connect(const char *endpoint, pm_t **pm);
PM_API void pm_disconnect(pm_t *pm);
PM_API error_t pm_self(pm_t *pm, pm_task_t *task);
PM_API error_t pm_task_stat(pm_t *pm, struct pm_task_stat *st);

/* Containers */
PM_API error_t pm_container_create(pm_t *pm, container_t *container);
PM_API error_t pm_container_destroy(pm_t *pm, container_t container);
PM_API error_t pm_container_stat(pm_t *pm, container_t container,
			  struct pm_container_stat *st);

#define PM_PLACE_LOCAL      0
#define PM_PLACE_NODE       1
#define PM_PLACE_INTERLEAVE 2
PM_API error_t pm_container_set_policy(pm_t *pm, container_t container, int policy,
				pm_node_t node);

/* Sharing and capabilities */
PM_API error_t pm_container_share(pm_t *pm, container_t container, pm_task_t remote,
			   container_t *weak_ref);
PM_API error_t pm_cap_export(pm_t *pm, container_t ref, pm_cap_token_t *token);
PM_API error_t pm_cap_import(pm_t *pm, const pm_cap_token_t *token, container_t *ref);
PM_API error_t pm_container_unshare(pm_t *pm, container_t container, pm_task_t remote);
PM_API error_t pm_cap_release(pm_t *pm, container_t ref);

/* Frames */
#define CONT_ALLOC_PARTIAL 0x1
#define CONT_ALLOC_SQUASH  0x2
#define CONT_ALLOC_EXTRA   0x4
PM_API error_t pm_container_allocate(pm_t *pm, container_t container, frame_t start,
			      int *count, int flags);
PM_API error_t pm_container_deallocate(pm_t *pm, container_t container, frame_t start,
				int count);

#define CONT_MAP_READ        0x1
#define CONT_MAP_WRITE       0x2
#define CONT_MAP_FORCE_WRITE 0x4
PM_API error_t pm_container_map(pm_t *pm, container_t container, frame_t start,
			 int nr_frames, int flags, void **addr, int *granted);
PM_API error_t pm_container_unmap(pm_t *pm, void *addr, int nr_frames);

PM_API error_t pm_container_read(pm_t *pm, container_t container, frame_t frame,
			  size_t offset, void *buf, size_t len);
PM_API error_t pm_container_write(pm_t *pm, container_t container, frame_t frame,
			   size_t offset, const void *buf, size_t len);
PM_API error_t pm_container_copy(pm_t *pm, container_t src, frame_t src_start,
			  container_t dst, frame_t dst_start, int count,
			  int flags, frame_t *frame_error);

/* Server locks */
PM_API error_t pm_container_lock(pm_t *pm, container_t container, unsigned int msec);
PM_API error_t pm_container_unlock(pm_t *pm, container_t container);

/* The extra-frame protocol: fn is called on a library thread when the pmd
 * wants frames_wanted extra frames back; what is not given back within
 * the pmd's grace period it takes (those frames answer ESTALE, their
 * mappings SIGBUS). fn NULL: no handler. EOPNOTSUPP when the pmd cannot
 * reach the library (no userfaultfd). */
typedef void (*pm_reclaim_fn)(pm_t *pm, unsigned int frames_wanted, void *arg);
PM_API error_t pm_set_reclaim_handler(pm_t *pm, pm_reclaim_fn fn, void *arg);

/* Cluster */
PM_API error_t pm_nodes(pm_t *pm, struct pm_node_info *nodes, int *count);

/* Diagnostics (beyond the contract): the pmd's own accounting check. */
struct pm_debug_stat {
	uint64_t tasks;            /* live sessions */
	uint64_t containers;       /* live containers */
	uint64_t frames;           /* virtual frames in all containers */
	uint64_t charged;          /* sum of every task's allocated frames */
	uint64_t slots_used;       /* physical slots in use (<= frames) */
	uint64_t segments;         /* segments mapped by the pmd */
	uint64_t frames_total;     /* node budget in frames */
	uint64_t frames_free;      /* budget left */
	uint32_t invariant_ok;     /* 1 when every check below held */
	uint32_t reserved;
	uint64_t requests;         /* requests the pmd has served */
};
PM_API error_t pm_debug_stat(pm_t *pm, struct pm_debug_stat *st);

/* Loans between this node and each other one, as this node's books say:
 * slots it lends the node, and slots of the node holding frames of its
 * own (or on their way back). Up to *count entries (nodes with neither
 * are left out); *count gets how many; *ok is 1 when the books agree with
 * themselves. Across two nodes that see each other and are quiet, one's
 * lent_to is the other's borrowed_from. */
struct pm_debug_loan {
	pm_node_t node;
	uint64_t lent_to;
	uint64_t borrowed_from;
};
PM_API error_t pm_debug_loans(pm_t *pm, struct pm_debug_loan *loans,
			      int *count, int *ok);

/* The pmd's metrics in Prometheus' text format (what --metrics serves),
 * NUL-terminated in buf (len bytes); *len_out gets their length.
 * EMSGSIZE: cut short to fit. */
PM_API error_t pm_debug_metrics(pm_t *pm, char *buf, size_t len,
				size_t *len_out);

/* The operator's listings (EPERM unless the caller's user is the pmd's,
 * or root): every task here, every container homed here (of one task, or
 * all: task 0), in id order from after `after` (0: from the first), up to
 * *count a call (*count gets how many; *more is 1 when more follow: ask
 * again from the last id); and the settings in effect, one "key = value"
 * line each, NUL-terminated (EMSGSIZE when cut short). */
struct pm_task_info {
	pm_task_t task;
	uint32_t uid, pid;
	uint64_t guaranteed, extra_limit, allocated, extra_allocated;
	uint64_t containers;
	uint32_t handles;
	int proxy;                 /* another node's task, served here */
};
struct pm_container_info {
	container_t id;            /* the container's id (not a handle) */
	pm_task_t owner;
	uint64_t frames, remote, cow;
	uint32_t shares, locked_ms_left;
};
PM_API error_t pm_debug_tasks(pm_t *pm, uint64_t after,
			      struct pm_task_info *tasks, int *count,
			      int *more);
PM_API error_t pm_debug_containers(pm_t *pm, pm_task_t task, uint64_t after,
				   struct pm_container_info *conts, int *count,
				   int *more);
PM_API error_t pm_debug_config(pm_t *pm, char *buf, size_t len,
			       size_t *len_out);

/* Moves a frame of a container the caller owns to another physical slot,
 * as paging, reclaim and migration do; mappings follow it. EBUSY when it
 * may not move (locked, copy-on-write, or mapped by a task whose mappings
 * cannot follow), ENOENT, EBADF, EPERM as for deallocate. */
PM_API error_t pm_debug_move(pm_t *pm, container_t container, frame_t frame);

/* A round trip from this node's pmd to node `node` and back over the
 * fabric (authenticated node request); *rtt_ns gets the time the pmd
 * measured. ENODEV: not up (or went down meanwhile); ETIMEDOUT: no answer
 * within the cluster's down time; EINVAL: this node, or not clustered. */
PM_API error_t pm_debug_ping(pm_t *pm, pm_node_t node, uint64_t *rtt_ns);

/* Drains this node (the operator's: EPERM for others): it lends no more,
 * every node it lends slots to takes its frames there home, and once
 * nothing is lent the pmd answers and stops, as on SIGTERM (its own
 * tasks' sessions end; no other node loses a frame). timeout_ms (0:
 * 30000) bounds the wait: ETIMEDOUT then; EOPNOTSUPP when a node runs a
 * release that cannot take frames back; after an error the node lends
 * and serves as before, and *node (if not NULL) names a node that still
 * holds slots. *slots (if not NULL): the slots lent when it began. */
PM_API error_t pm_debug_drain(pm_t *pm, unsigned timeout_ms, uint64_t *slots,
			      pm_node_t *node);

/* 1 when this session's mappings follow moved frames (userfaultfd), 0 when
 * not (the reason was printed at connect). */
PM_API int pm_debug_follows(pm_t *pm);

#ifdef __cplusplus
}
#endif
#endif /* PM_PM_H */
