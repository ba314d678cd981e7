/*
 * node.h - this node in a cluster: the node layer as the daemon sees
 * it. One fabric endpoint carries everything between pmds (node_proto.h):
 *
 *   cluster.c     the endpoint, its peers, the progress loop, membership
 *                 (membership.c: who is up, authenticated) and what it
 *                 says of the other nodes
 *   nreq.c        node requests: calls with a deadline, and their answers
 *   lend.c        slots this node lends to other homes' frames, among them
 *                 segments kept for one task's forwarded mappings
 *   borrow.c      slots this node borrows for its own frames, and gives back
 *   rio.c         one-sided reads and writes of remote frames
 *   proxy.c       requests of other nodes' tasks served here (proxy tasks)
 *
 * Every call of this layer ends exactly once: a node request with its
 * answer, ENODEV (the node is or goes down, or restarts) or ETIMEDOUT (no
 * answer in down_ms); a remote read or write with its completion or EIO.
 * Callbacks run from pmd_cluster_run (or, with ENODEV, from
 * pmd_cluster_stop), never from under the call that started the work.
 *
 * Lock key: (L) the pmd loop thread, which owns the cluster and calls
 * every function here.
 */
#ifndef PMD_NODE_H
#define PMD_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pm/pm.h>

#include "borrowed.h"
#include "cluster_conf.h"
#include "core.h"
#include "io.h"
#include "node_proto.h"
#include "pm_proto.h"

struct pmd_cluster;
struct fab_mr;

/* ---- the node (cluster.c) ---- */

/* Opens the endpoint at this node's address and adds every peer. The core
 * lends slots of its budget to other nodes' frames. */
error_t pmd_cluster_start(const struct pmd_cluster_conf *conf, pm_node_t self,
			  struct pmd_core *core, struct pmd_cluster **out);
/* Every call still pending ends with ENODEV; proxies of other nodes'
 * tasks go; lent slots come back. */
void pmd_cluster_stop(struct pmd_cluster *c);

/* Descriptors for the loop's epoll (EPOLLIN); when one is ready, or at the
 * latest after pmd_cluster_timeout_ms, call pmd_cluster_run. */
int pmd_cluster_fds(const struct pmd_cluster *c, int fds[2]);
int pmd_cluster_timeout_ms(const struct pmd_cluster *c);
/* Whether running the cluster now would find nothing to do: the last run
 * ended ready to sleep, nothing was posted since, and no deadline is due
 * (its descriptor shows anything else that comes). The daemon's loop then
 * skips the run unless the descriptor woke it (a provider's progress is
 * several system calls: each local request paid them). */
bool pmd_cluster_quiet(const struct pmd_cluster *c);
/* Reaps the fabric, runs the protocol, sends what it says; our frames go
 * into heartbeats. Says what came in: PMD_CLUSTER_SERVED, a peer's
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
/* What went between this node and each other one since start (for the
 * metrics): messages and their bytes each way, and one-sided reads and
 * writes this node posted, with their bytes. */
struct pmd_traffic {
	pm_node_t node;
	int state;                     /* PM_NODE_* */
	uint64_t tx_msgs, tx_bytes, rx_msgs, rx_bytes, rma_ops, rma_bytes;
};
/* Remote reads and writes that failed while the fabric still held them
 * (rio.c): held now, and ever. */
void pmd_cluster_rio_held(const struct pmd_cluster *c, uint64_t *now,
			  uint64_t *total);
/* Up to max entries, one per other node of the cluster file; how many. */
unsigned pmd_cluster_traffic(const struct pmd_cluster *c,
			     struct pmd_traffic *out, unsigned max);
/* The accounting check of loans in and out (DEBUG_LOANS): what this
 * node lends and borrows, by node, and whether its books agree. */
void pmd_cluster_loans(struct pmd_cluster *c, struct pm_debug_loans_rep *out);

/* Every node of the cluster file but self, for pm_nodes: up to max. */
unsigned pmd_cluster_nodes(const struct pmd_cluster *c,
			   struct pm_node_entry *out, unsigned max);
uint64_t pmd_cluster_incarnation(const struct pmd_cluster *c);
const char *pmd_cluster_self_address(const struct pmd_cluster *c);
/* Changes each time this node and node forget each other (it went down
 * or restarted, or told us it had declared us down): what one of them
 * handed the other before (a forwarded handle) is stale then. 0: not a
 * node of the cluster. */
uint64_t pmd_cluster_peer_epoch(const struct pmd_cluster *c, pm_node_t node);
/* Whether node is up (or suspect: not declared down). */
bool pmd_cluster_peer_up(const struct pmd_cluster *c, pm_node_t node);
/* Whether node is in the cluster (and not this node). */
bool pmd_cluster_knows(const struct pmd_cluster *c, pm_node_t node);
/* The up node but except with the most free frames (as its heartbeats
 * say: a draining one says none; one just joined counts as unknown), 0
 * when none has any. */
pm_node_t pmd_cluster_best_lender(const struct pmd_cluster *c,
				   pm_node_t except);
/* This node and the peers that are up, in id order: up to max. */
unsigned pmd_cluster_up_nodes(const struct pmd_cluster *c, pm_node_t *out,
			      unsigned max);

/* ---- node requests (nreq.c) ---- */

/* done runs exactly once: with 0 and the answer's body, or ENODEV,
 * ETIMEDOUT, or the peer's error. */
typedef void pmd_ncall_done(void *arg, error_t status, const void *body,
			    size_t len);
/* A request of type to node `to`. ENODEV: it is down (or unknown);
 * ENOBUFS: the fabric's queue is full. */
error_t pmd_cluster_call(struct pmd_cluster *c, pm_node_t to, uint16_t type,
			 const void *body, size_t len, pmd_ncall_done *done,
			 void *arg);
/* The answer to node request id of node src (at incarnation src_inc). */
void pmd_cluster_answer(struct pmd_cluster *c, pm_node_t src, uint64_t src_inc,
			uint16_t type, uint64_t id, error_t status,
			const void *body, uint32_t len);

/* ---- forwarded requests served here (proxy.c) ---- */

/*
 * The node layer calls the daemon only through this table: a forwarded
 * request (FWD_OP) from node src for proxy task t, which the daemon
 * answers with pmd_cluster_answer (now or later); a proxy task about to
 * be destroyed (its node said goodbye, or is gone); and the end of a
 * batch of completions, after which the daemon runs what they let run
 * (a request handed up, one whose remote work ended), before the next
 * batch is reaped; and stops of this node's tasks' stores before frames
 * they map go back to their home (RETURN).
 */
struct pmd_cluster_upcalls {
	void (*serve)(void *arg, pm_node_t src, uint64_t src_inc, uint64_t id,
		      struct pmd_task *t, uint16_t type, uint16_t flags,
		      const void *body, uint32_t len);
	void (*proxy_gone)(void *arg, struct pmd_task *t);
	void (*batch_done)(void *arg);
	/* Stops the stores of every task here that holds a segment st
	 * names, then calls done(done_arg) once all answered or max_ms
	 * passed (at once when nobody is to be asked); the tasks asked go
	 * on after done returns. ENOMEM: nothing asked, done not called. */
	error_t (*stop)(void *arg, const struct pmd_stops *st, uint32_t max_ms,
			void (*done)(void *done_arg), void *done_arg);
	/* Node lender drains (RECALL): take the frames in its slots home. */
	void (*recall)(void *arg, pm_node_t lender);
	/* The node's frames no physical page takes (pmd_core_physical_free),
	 * asked once a heartbeat, for the VER messages that go with it. */
	uint64_t (*physical_free)(void *arg);
	void *arg;
};
void pmd_cluster_set_upcalls(struct pmd_cluster *c,
			     const struct pmd_cluster_upcalls *up);

/* ---- lending (lend.c) ---- */

/* Draining: this node lends no more (an ALLOC gets no slot, no segment
 * is made ahead); off again, it lends as before. */
void pmd_cluster_drain(struct pmd_cluster *c, bool on);
/* Slots lent now to node (0: to every node). */
uint64_t pmd_cluster_lent(struct pmd_cluster *c, pm_node_t node);
/* Asks every node we lend slots to for them back (RECALL), done called
 * for each with its answer (ENODEV: it is down; EOPNOTSUPP: its release
 * has no RECALL). The homes asked go in homes[] (at most max); how
 * many. */
unsigned pmd_cluster_recall(struct pmd_cluster *c, pm_node_t *homes,
			    unsigned max, pmd_ncall_done *done, void *arg);

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

/* ---- borrowing (borrow.c) ---- */

/* done runs once with the places lent (n of them, maybe fewer than asked,
 * status 0), or none and the call's error. */
typedef void pmd_borrow_done(void *arg, error_t status,
			     const struct pmd_place *places, uint32_t n);
/* Up to PMD_LEND_MAX slots of node for any frames. */
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
/* Gives slots (of any nodes; the array is used up) back now, one request
 * a node (or more, PMD_NREQ_FREE_MAX slots a request), done called as
 * each node has them: a slot of a segment a node keeps for a task's
 * mapping is then retired (the task's mapping faults from then on). The
 * number of requests sent (a node that is down sends none: nobody there
 * sees the slots). */
unsigned pmd_cluster_take_back(struct pmd_cluster *c, struct pmd_rfree *slots,
			       uint32_t n, pmd_ncall_done *done, void *arg);
/* done runs once: status 0 with the bytes of every slot asked, in
 * order (valid until it returns), and in lost the bit of each that node
 * no longer had lent to us; or the call's error (ETIMEDOUT: node may
 * have retired them all the same). */
typedef void pmd_return_done(void *arg, error_t status, uint32_t lost,
			     const uint8_t *data);
/* Slots that node keeps for a task's mappings (tagged) come back with
 * their bytes (RETURN in node_proto.h): node stops that task's stores to
 * them first, unless nostop (the task is being revoked). Up to
 * PMD_RETURN_MAX slots, all of node. ENODEV: it is down. */
error_t pmd_cluster_return(struct pmd_cluster *c, pm_node_t node,
			   const struct pmd_rfree *slots, uint32_t n,
			   bool nostop, pmd_return_done *done, void *arg);
/* Sends back what the core queued (core->rfree). */
void pmd_cluster_give_back(struct pmd_cluster *c);

/* ---- remote reads and writes (rio.c) ---- */

/* done gets the status and, for a read, the bytes in order (valid until
 * it returns). */
typedef void pmd_rio_done(void *arg, error_t status, const uint8_t *data,
			  uint32_t len);
/* One-sided RDMA between a registered bounce buffer and the lenders'
 * slots; local pieces are copied at once. A write's bytes are taken
 * now. */
error_t pmd_cluster_rio(struct pmd_cluster *c, bool write,
			const struct pmd_io_piece *pieces, uint32_t npieces,
			const void *data, uint32_t len, pmd_rio_done *done,
			void *arg);
/* A window's owner hears that a request through it failed while the
 * provider still held some of it (PMD_KEEP_HELD: a late read may yet
 * land in the window, a late write yet read it; called before done), and
 * later that the provider let go (PMD_KEEP_RELEASED). At shutdown, before
 * the endpoint closes, PMD_KEEP_CLOSING: the window's registrations go
 * (pmd_cluster_mr_abandon), its memory stays until RELEASED, after. */
enum pmd_keep { PMD_KEEP_HELD, PMD_KEEP_RELEASED, PMD_KEEP_CLOSING };
typedef void pmd_rio_keep(void *keep_arg, enum pmd_keep what);
/* The same between a task's I/O window (registered with pmd_cluster_mr,
 * mapped here at win) and the lenders' slots, with no bounce buffer: a
 * read lands in the window, a write's bytes are read from it. The
 * window must stay until done has run, and while held after. */
error_t pmd_cluster_rio_window(struct pmd_cluster *c, bool write,
			       const struct pmd_io_piece *pieces,
			       uint32_t npieces, uint8_t *win,
			       struct fab_mr *mr, uint32_t len,
			       pmd_rio_done *done, void *arg,
			       pmd_rio_keep *keep, void *keep_arg);
/* Whether [roff, roff + len) of node's registration key is named by a
 * write that failed while the provider still holds it: what is there is
 * in doubt (a late write may still land) until the provider lets go. */
bool pmd_rio_in_doubt(const struct pmd_cluster *c, pm_node_t node,
		      uint64_t key, uint64_t roff, uint64_t len);
/* Registers buf as a local buffer of our reads and writes; drop undoes
 * it. */
error_t pmd_cluster_mr(struct pmd_cluster *c, void *buf, size_t len,
		       struct fab_mr **out);
/* The same, and other nodes may read and write it too, reaching it with
 * *rk (a task's I/O window, which the home of a forwarded read or write
 * fills or reads by RDMA). */
error_t pmd_cluster_mr_remote(struct pmd_cluster *c, void *buf, size_t len,
			      struct fab_mr **out, struct pmd_nreq_window *rk);
void pmd_cluster_mr_drop(struct fab_mr *mr);
/* The same at shutdown, for a region a held transfer may still use: the
 * endpoint's close releases it if it cannot go now. */
void pmd_cluster_mr_abandon(struct fab_mr *mr);

#endif
