/*
 * cluster.h - this node in a cluster: its fabric endpoint, its peers, and
 * the membership protocol (membership.h) driven from the pmd's loop.
 *
 * Built so far: membership (authentication, heartbeats, up/suspect/down,
 * incarnations) and pm_nodes. Home nodes and remote frames come next; until
 * then a node serves its own tasks as a single node does.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_CLUSTER_H
#define PMD_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "cluster_conf.h"
#include "container.h"
#include "core.h"
#include "pm_proto.h"

struct pmd_cluster;

/* Opens the endpoint at this node's address and adds every peer. The core
 * lends slots of its budget to other nodes' frames. */
error_t pmd_cluster_start(const struct pmd_cluster_conf *conf, pm_node_t self,
			  struct pmd_core *core, struct pmd_cluster **out);
void pmd_cluster_stop(struct pmd_cluster *c);

/* Descriptors for the loop's epoll (EPOLLIN); when one is ready, or at the
 * latest after pmd_cluster_timeout_ms, call pmd_cluster_run. */
int pmd_cluster_fds(const struct pmd_cluster *c, int fds[2]);
int pmd_cluster_timeout_ms(const struct pmd_cluster *c);
/* Reaps the fabric, runs the protocol, sends what it says. Our own frames
 * go into heartbeats. Says what came in: PMD_CLUSTER_SERVED, a peer's
 * message; PMD_CLUSTER_PROGRESS, a completion of our own reads and
 * writes. With sleep false the caller polls again soon and does not wait
 * on the fds. */
#define PMD_CLUSTER_SERVED   1u
#define PMD_CLUSTER_PROGRESS 2u
unsigned pmd_cluster_run(struct pmd_cluster *c, uint64_t frames_total,
			 uint64_t frames_free, bool sleep);
/* Whether node requests or one-sided reads and writes of ours are in
 * flight. */
bool pmd_cluster_waiting(const struct pmd_cluster *c);

/* Every node of the cluster file but self, for pm_nodes: up to max. */
unsigned pmd_cluster_nodes(const struct pmd_cluster *c,
			   struct pm_node_entry *out, unsigned max);
uint64_t pmd_cluster_incarnation(const struct pmd_cluster *c);

/*
 * Node requests: a request to another node and its answer, authenticated
 * (HMAC under the cluster secret, both incarnations checked), with a
 * deadline. done runs exactly once, from pmd_cluster_run or from
 * pmd_cluster_stop: with 0 and the answer's body, or ENODEV (not up, or
 * went down), ETIMEDOUT (no answer in time), or the peer's error.
 * Types so far: PMD_NREQ_PING (empty; answer: pmd_nreq_ping_rep).
 */
#define PMD_NREQ_PING 1
struct pmd_nreq_ping_rep {
	uint64_t incarnation;
	uint64_t frames_free;
};
typedef void pmd_ncall_done(void *arg, error_t status, const void *body,
			    size_t len);
error_t pmd_cluster_call(struct pmd_cluster *c, pm_node_t to, uint16_t type,
			 const void *body, size_t len, pmd_ncall_done *done,
			 void *arg);
/* Forgets the calls and remote I/O started with arg (its requester went
 * away): their done will not run. */
void pmd_cluster_cancel(struct pmd_cluster *c, void *arg);

/* The up node with the most free frames (as its heartbeats say), 0 when
 * none has any. */
pm_node_t pmd_cluster_best_lender(const struct pmd_cluster *c);

/* This node and the peers that are up, in id order: up to max. */
unsigned pmd_cluster_up_nodes(const struct pmd_cluster *c, pm_node_t *out,
			      unsigned max);

/* The incarnation of node as membership knows it (0: never heard). */
uint64_t pmd_cluster_peer_inc(const struct pmd_cluster *c, pm_node_t node);

/* Whether node is in the cluster (and not this node). */
bool pmd_cluster_knows(const struct pmd_cluster *c, pm_node_t node);

/*
 * Lent slots. A node lends slots of its own budget (never what guarantees
 * reserve) to frames of other homes: PMD_NREQ_ALLOC asks for up to
 * PMD_LEND_MAX, PMD_NREQ_FREE gives them back. Slots lent to a node that
 * goes down or restarts are taken back; frames a home had on a node that
 * did so are lost (pmd_core_node_lost).
 */
#define PMD_NREQ_ALLOC 2
#define PMD_NREQ_FREE  3
#define PMD_LEND_MAX   15
typedef void pmd_borrow_done(void *arg, error_t status,
			     const struct pmd_place *places, uint32_t n);
error_t pmd_cluster_borrow(struct pmd_cluster *c, pm_node_t node, uint32_t n,
			   pmd_borrow_done *done, void *arg);
/* Slots for frames of container cont (ours) that task of node maps
 * through its handle there: from a segment node keeps for that task and
 * container (tagged); frames[i] goes into the i-th slot. ESRCH from node:
 * no such task of its own, or one that cannot follow its mappings. */
error_t pmd_cluster_borrow_for(struct pmd_cluster *c, pm_node_t node,
			       uint32_t n, uint64_t task, uint64_t cont,
			       container_t handle, const frame_t *frames,
			       pmd_borrow_done *done, void *arg);
/* Where a home's answer to a forwarded map of task points: the tagged
 * segment index lent for task by home, with slots [slot, slot + n) lent to
 * home; NULL when it is not so. */
struct pmd_segment *pmd_cluster_pushed_run(struct pmd_cluster *c,
					   pm_node_t home, uint64_t task,
					   uint32_t index, uint32_t slot,
					   uint32_t n);
/* A fault of task on slot of segment seg_id: when that is a tagged
 * segment of task's and the slot retired, the frame that was there (of
 * home, reached with the proxy's handle there). ENOENT: not such a
 * segment or slot; EACCES: another task's. */
error_t pmd_cluster_pushed_where(struct pmd_cluster *c, uint64_t task,
				 uint64_t seg_id, uint32_t slot,
				 pm_node_t *home, container_t *handle,
				 frame_t *frame);
/* A task of ours ended: segments kept for its mappings go once empty. */
void pmd_cluster_task_gone(struct pmd_cluster *c, uint64_t task);
/* Gives slots (of any nodes; the array is used up) back now, one
 * request a node (or more, 60 slots a request), done called as each node
 * has them: a slot of a segment a node keeps for a task's mapping is then
 * retired (the task's mapping faults from then on). The number of
 * requests sent (a node that is down sends none: nobody there sees the
 * slots). */
unsigned pmd_cluster_take_back(struct pmd_cluster *c, struct pmd_rfree *slots,
			       uint32_t n, pmd_ncall_done *done, void *arg);
/* Sends back what the core queued (core->rfree). */
void pmd_cluster_give_back(struct pmd_cluster *c);

/*
 * Forwarding: a task of this node that imports a token of a container
 * homed elsewhere gets a handle served by the home, through its own pmd.
 * The home keeps a proxy task per forwarding task (same id), made by the
 * first import and gone with FWD_BYE or the forwarding node's death.
 * FWD_IMPORT: {task, token} -> {handle}; FWD_OP: {task, type, len, body}
 * -> the reply body of that request type; FWD_BYE: {task}.
 */
#define PMD_NREQ_FWD_IMPORT 4
#define PMD_NREQ_FWD_OP     5
#define PMD_NREQ_FWD_BYE    6
#define PMD_FWD_IO_MAX      65536  /* bytes of a forwarded read or write */
struct pmd_fwd_import {
	uint64_t task;
	uint8_t token[32];
};
struct pmd_fwd_op {
	uint64_t task;
	uint16_t type;
	uint16_t pad;
	uint32_t len;
	/* then len bytes: the request body */
};
/* The server serves forwarded requests (FWD_OP) for proxy task t and
 * answers them with pmd_cluster_answer (at once or later); proxy_gone
 * runs before a proxy task is destroyed. */
typedef void pmd_fwd_fn(void *arg, pm_node_t src, uint64_t src_inc,
			uint64_t id, struct pmd_task *t, uint16_t type,
			const void *body, uint32_t len);
typedef void pmd_proxy_gone_fn(void *arg, struct pmd_task *t);
void pmd_cluster_set_hooks(struct pmd_cluster *c, pmd_fwd_fn *fwd,
			   pmd_proxy_gone_fn *gone, void *arg);
/* The answer to node request id of node src (at incarnation src_inc). */
void pmd_cluster_answer(struct pmd_cluster *c, pm_node_t src, uint64_t src_inc,
			uint16_t type, uint64_t id, error_t status,
			const void *body, uint32_t len);

/*
 * Reads and writes touching remote frames: one-sided RDMA between a
 * registered bounce buffer and the lenders' slots; local pieces are copied
 * at once. done gets the status and, for a read, the bytes in order.
 */
typedef void pmd_rio_done(void *arg, error_t status, const uint8_t *data,
			  uint32_t len);
error_t pmd_cluster_rio(struct pmd_cluster *c, bool write,
			const struct pmd_io_piece *pieces, uint32_t npieces,
			const void *data, uint32_t len, pmd_rio_done *done,
			void *arg);
/* The same between a task's I/O window (registered with pmd_cluster_mr,
 * mapped here at win) and the lenders' slots, with no bounce buffer: a
 * read lands in the window, a write's bytes are read from it. The
 * window must stay until done has run. */
struct fab_mr;
error_t pmd_cluster_rio_window(struct pmd_cluster *c, bool write,
			       const struct pmd_io_piece *pieces,
			       uint32_t npieces, uint8_t *win,
			       struct fab_mr *mr, uint32_t len,
			       pmd_rio_done *done, void *arg);
/* Registers buf as a local buffer of our reads and writes; drop undoes
 * it. */
error_t pmd_cluster_mr(struct pmd_cluster *c, void *buf, size_t len,
		       struct fab_mr **out);
void pmd_cluster_mr_drop(struct fab_mr *mr);
const char *pmd_cluster_self_address(const struct pmd_cluster *c);

#endif
