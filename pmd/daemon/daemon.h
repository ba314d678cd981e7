/*
 * daemon.h - what the daemon's files share: the server and its sessions,
 * a request and its reply, and the steps each file offers the others.
 * Nothing outside pmd/daemon includes this.
 *
 *   server.c    the loop: the socket, signals, the cluster's descriptors;
 *               reads requests (a task's, or one the node layer hands up
 *               for another node's task) and runs them, and runs again
 *               those that waited: the one place that calls the handlers
 *   handlers.c  every request type: its checks, then the core's decode
 *               and invoke; the table of types
 *   session.c   sessions: replies, parking and answering later, waiting
 *               for a container, the end of a session
 *   window.c    a session's I/O window
 *   metrics.c   what monitoring scrapes: counted as requests are
 *               answered, rendered for METRICS and --metrics (HTTP)
 *   remote.c    remote work on a container (reads and writes of remote
 *               frames, pulls home, pushes to a task's node), one at a
 *               time per container
 *   place.c     allocations whose frames go to other nodes
 *   drain.c     a node leaving without loss (pmctl drain), and the
 *               homes taking their frames back from one that drains
 *   forward.c   requests on handles another home serves
 *   stop.c      the holders of segments stop before frames move
 *   reclaim.c   memory pressure: requests that wait while tasks give
 *               extra frames back, frames page out, or the pmd takes
 *               extra frames
 *   store.c     the backing store's I/O (io_uring), and pmd_rio, which
 *               sends remote pieces to the fabric or the store
 *   ring.c      a session's request ring: requests in shared memory,
 *               several in flight, each run as a sub-request
 *
 * A request that cannot be answered at once parks its session: the
 * pmd reads nothing more from it (its input goes off if it sends more)
 * and serves everyone else. Its asynchronous work has one context object
 * whose first member is struct pmd_pending; the work ends by answering
 * (pmd_session_answer) or by asking to run the request again
 * (pmd_session_run_later). A session that closes first detaches the
 * context: the work ends without it.
 *
 * Lock key: (C) set at creation; (L) the loop thread, which owns the
 * daemon, the core and the cluster.
 */
#ifndef PMD_DAEMON_H
#define PMD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <pm/pm.h>

#include "node.h"
#include "config.h"
#include "core.h"
#include "list.h"
#include "map.h"
#include "move.h"
#include "pm_proto.h"
#include "reclaim.h"

/* A session's I/O window (PM_MSG_WINDOW): shared with the task, and
 * registered with the fabric; held by the session and by its remote
 * reads and writes in flight. */
struct pmd_window {
	uint8_t *base;               /* (C) the pmd's mapping, PM_IO_MAX */
	int fd;                      /* (C) sealed memfd */
	struct fab_mr *mr;           /* (C) our reads and writes through it;
	                              * NULL on a single node */
	struct fab_mr *rmr;          /* (L) other nodes' (a forwarded read's
	                              * or write's home), reached with rk;
	                              * NULL once fenced */
	struct pmd_nreq_window rk;   /* (C) */
	unsigned refs;               /* (L) */
	bool retired;                /* (L) an RDMA through it failed and may
	                              * still land or read: its session
	                              * drops it (window.c) */
};

/* A handle another home serves, in the session's table: its handle is
 * PMD_FWD_BIT | gen << 32 | index + 1. A released entry is used again
 * under the next generation (the old handle finds nothing: EBADF), and
 * the table holds at most PMD_FWD_HANDLES_MAX entries (ENOMEM). */
#define PMD_FWD_BIT (UINT64_C(1) << 62)
#define PMD_FWD_GEN_MASK 0x3fffffffu
#define PMD_FWD_HANDLES_MAX PMD_TASK_HANDLES_MAX
struct pmd_fwd_handle {
	pm_node_t node;              /* (L) the home; 0: a free entry */
	uint32_t gen;                /* (L) of its current handle, never 0 */
	container_t rh;              /* (L) the home's handle */
	uint64_t inc;                /* (L) the home's epoch then (ESTALE after) */
};

/* The base of every asynchronous operation's context. */
struct pmd_pending {
	struct pmd_session *s;       /* (L) NULL once the session is gone */
};

struct pmd_reply;

/* What the metrics count (metrics.c): requests by type, with their
 * errors and a histogram of the time to their answer. */
#define PMD_METRICS_BUCKETS 12
struct pmd_metrics {
	uint64_t requests[PM_MSG_TYPE_MAX];  /* (L) answered */
	uint64_t errors[PM_MSG_TYPE_MAX];    /* (L) of which not 0 */
	uint64_t sum_ns[PM_MSG_TYPE_MAX];    /* (L) their times */
	uint64_t hist[PM_MSG_TYPE_MAX][PMD_METRICS_BUCKETS]; /* (L) by the
	                              * first bucket bound it is within */
};
/* A connection to the metrics endpoint, reading its HTTP request. */
#define PMD_METRICS_CONNS 8
struct pmd_mconn {
	int fd;                      /* (L) -1: free */
	uint32_t len;                /* (L) bytes of request read */
	char req[1024];              /* (L) */
};

struct pmd_session {
	struct pmd_server *srv;      /* (C) */
	int fd;                      /* (C) the connection; -1: virtual */
	struct pmd_task *task;       /* (L) NULL until HELLO (or ATTACH) */
	bool fault;                  /* (L) a task's fault session: RESOLVE only */
	struct pmd_window *win;      /* (L) its I/O window, or NULL */
	struct pmd_ring *ring;       /* (L) its request ring, or NULL */
	bool win_gone;               /* (L) it had one and it was retired:
	                              * requests through it answer
	                              * PM_ST_WINDOW_GONE until a new one */
	struct pmd_fwd_handle *fwd;  /* (L) handles served by other homes */
	uint32_t nfwd, fwd_cap;      /* (L) used, allocated */
	/* The request in hand, while it is not answered at once: */
	bool parked;                 /* (L) it waits for other work */
	uint64_t req_ns;             /* (L) when the request in hand came */
	bool masked;                 /* (L) parked, and sent more meanwhile:
	                              *     its input is off until answered */
	uint16_t parked_type;        /* (L) its type and sequence number */
	uint32_t parked_seq;
	struct pmd_pending *pending; /* (L) its asynchronous work, or NULL */
	bool waiting;                /* (L) it waits to run again */
	struct pmd_stopctx *stop;    /* (L) the stop its request asked for */
	uint8_t reclaim_rounds;      /* (L) rounds of the extra-frame
	                              * protocol it waited through (reclaim.c) */
	uint8_t *saved;              /* (L) then its body, kept */
	uint32_t saved_len;
	struct pmd_list wlink;       /* (L) in srv->waiters */
	struct pmd_list link;        /* (L) in srv->sessions, or srv->vsessions */
	/* A virtual session: a request of another node's task, served here
	 * as its container's home, with no socket. */
	bool virt;                   /* (C) */
	pm_node_t vnode;             /* (C) answered to this node, */
	uint64_t vinc, vid;          /* (C) at its incarnation, request id */
	bool vwin;                   /* (C) a READ or WRITE whose bytes go by
	                              * RDMA to or from vnode's window: */
	struct pmd_nreq_window vwin_rk; /* (C) its registration */
	/* Or a *sub-request*: one the pmd runs for a task of its own (a
	 * copy between homes, xcopy.c; a request from its ring, ring.c),
	 * also virtual, answered here. */
	bool sub;                    /* (C) */
	bool from_ring;              /* (C) from a ring: no descriptors in
	                              * its reply; */
	bool to_socket;              /* (L) its handler wants it sent on the
	                              * socket instead (nothing done) */
	void (*sub_done)(void *arg, const struct pmd_reply *r); /* (L) once;
	                              * r NULL: closed unanswered */
	void *sub_arg;               /* (C) */
};

struct pmd_server {
	const struct pmd_config *cfg; /* (C) its settings (the caller's) */
	struct pmd_core *core;       /* (C) */
	struct pmd_cluster *cluster; /* (C) NULL on a single node */
	int listen_fd;               /* (C) */
	unsigned socket_mode;        /* (C) its mode, */
	gid_t socket_gid;            /*     and group ((gid_t)-1: ours) */
	int reserve_fd;              /* (L) kept to refuse a task when out of
	                              * descriptors; -1 while used */
	uint64_t refused;            /* (L) tasks refused for that */
	uint64_t refused_said_ns;    /* (L) when the log last said so */
	bool accept_off;             /* (L) the socket is not watched (not
	                              * even the reserve could be had) */
	uint64_t accept_on_ns;       /*     until then */
	int signal_fd;               /* (C) SIGTERM, SIGINT */
	int epoll_fd;                /* (C) */
	int cluster_tag;             /* (C) the cluster's epoll events point here */
	char socket_path[108];       /* (C) */
	struct pmd_list sessions;    /* (L) connected sessions */
	struct pmd_list vsessions;   /* (L) forwarded requests in progress */
	struct pmd_list waiters;     /* (L) sessions whose request runs again */
	bool rerun;                  /* (L) run the waiters at the next turn */
	struct pmd_busy {            /* (L) remote work in flight: */
		uint64_t id;         /* on this container, */
		frame_t start, end;  /* these frames (reads and writes), */
		uint8_t mode;        /* PMD_BUSY_* */
	} *busy;
	uint32_t nbusy, busy_cap;    /* (L) used, allocated */
	struct pmd_list stops;       /* (L) stops awaiting answers */
	/* reclaim.c: allocations waiting for extra frames to come back. */
	struct pmd_reclaim_state {
		struct pmd_list waiters; /* (L) struct rwait, in order */
		uint64_t need;       /* (L) frames here they need in all, */
		uint64_t need_u;     /* (L) and room no guarantee reserves */
		uint64_t asked;      /* (L) frames asked back this round */
		uint64_t deadline_ns; /* (L) of the round; 0: none */
		bool forced;         /* (L) the round reached its deadline */
		bool urgent;         /* (L) a waiter may not wait the grace */
		uint32_t paging;     /* (L) page-outs in flight */
		uint64_t paged_batch; /* (L) frames they moved so far */
		bool paging_done;    /* (L) paging made no progress: no more
		                      * this round */
		uint64_t retry_ns;   /* (L) page out again then (the frames
		                      * were busy) */
		uint64_t paged_total; /* (L) the metrics' */
		uint32_t seq;        /* (L) of the last RECLAIM */
		uint64_t rounds_total; /* (L) the metrics' */
		uint64_t asked_total, taken_total;  /* (L) frames */
	} reclaim;
	uint64_t grace_ns;           /* (C) --reclaim-grace-ms */
	struct pmd_storeio *storeio; /* (C) the backing store's I/O, or NULL */
	int store_tag;               /* (C) its completions' epoll events */
	uint32_t stop_seq;           /* (L) the last STOP's seq */
	uint32_t stops_live;         /* (L) stop contexts not yet freed */
	struct pmd_stops unshared;   /* (L) UNSHARED being sent (reused) */
	uint64_t unshared_total;     /* (L) slots told so, the metrics' */
	uint64_t unshared_next_ns;   /* (L) UNSHARED's next round, not before */
	uint64_t unshared_gap_ns;    /* (L) the gap after the last round */
#define PMD_XWINS_MAX 8
	struct pmd_window *xwins[PMD_XWINS_MAX]; /* (L) windows kept for the
	                              * pieces of copies between homes */
	uint32_t nxwins;             /* (L) */
	uint64_t stop_ns;            /* (C) a library's time to answer */
	uint64_t sessions_total;     /* (L) served since start */
	struct pmd_metrics metrics;  /* (L) */
	int metrics_fd;              /* (C) --metrics' listening socket, or -1 */
	struct pmd_mconn mconn[PMD_METRICS_CONNS]; /* (L) */
	struct pmd_ratelimit sessions_said; /* (L) tasks come and go: said */
	uint64_t requests;           /* (L) requests answered since start */
	uint64_t poll_ns;            /* (C) busy-poll this long after activity */
	uint64_t served_ns;          /* (L) when a peer last needed us */
	uint64_t wait_ns;            /* (L) when our wait for peers began */
	bool waiting_peers;          /* (L) we wait for peers */
	bool woke;                   /* (L) by the fabric's descriptor, or a
	                              * deadline: the cluster's turn is due */
	uint64_t polled_ns;          /* (L) the loop's last epoll_wait, */
	uint64_t socket_ns;          /* (L) and the last that found a
	                              * session's socket with work */
	/* ring.c: the sessions' request rings. */
	struct pmd_list rings;       /* (L) struct pmd_ring */
	int doorbell_fd;             /* (C) their doorbell (an eventfd) */
	bool rings_armed;            /* (L) the rings ask for the doorbell */
	uint32_t cpu;                /* (L) where the loop last ran */
	uint64_t ring_spin_ns;       /* (C) --ring-spin-us */
	uint64_t ring_ns;            /* (L) when a ring's request last came */
	bool ring_far;               /* (L) from a task on another CPU */
	uint64_t ring_requests;      /* (L) the metrics' */
	uint64_t ring_doorbells;     /* (L) */
	uint8_t rx[PM_MSG_MAX + 1] __attribute__((aligned(16))); /* (L) one request */
	uint8_t tx[PM_MSG_MAX] __attribute__((aligned(16)));     /* (L) one reply */
	struct pmd_map_out map;      /* (L) scratch for MAP */
	struct pmd_push_out push;    /* (L) scratch for a forwarded MAP */
	/* drain.c: this node draining (an operator's DRAIN), */
	struct pmd_drain {
		struct pmd_pending base; /* (L) its session, parked */
		bool on;             /* (L) */
		uint64_t t0_ms, end_ms; /* (L) began, gives up */
		uint64_t slots;      /* (L) lent when it began */
		uint32_t nhomes;     /* (L) asked to take them back */
		pm_node_t homes[PM_NODES_MAX]; /* (L) */
		error_t failed;      /* (L) a home's answer that ends it */
	} drain;
	/* and nodes that drain, whose slots our frames leave (RECALL). */
	struct pmd_recall {
		pm_node_t node;      /* (L) 0: unused */
		uint32_t inflight;   /* (L) pulls of frames there */
		uint32_t fails;      /* (L) pulls that failed in a row */
		error_t stuck;       /* (L) given up: no room here, or the
		                      * pulls keep failing */
	} recall[PM_NODES_MAX];
	bool recalling;              /* (L) an entry of recall is in use (so
	                              * that the loop's turn skips them all
	                              * otherwise) */
};

/* One request, as the loop read it (or kept it to run again). */
struct pmd_req {
	uint16_t type;               /* enum pm_msg_type, checked */
	uint32_t seq;                /* echoed in the reply */
	const void *body;            /* its size checked, 8-byte aligned */
	uint32_t len;
};

/* A reply, built in srv->tx: header, pm_reply, then the body (or, when
 * body_ext is set, the body is sent from there, uncopied). */
struct pmd_reply {
	error_t status;              /* 0 or a positive errno */
	struct pmd_culprit why;      /* which argument or frame */
	uint32_t body_len;
	const void *body_ext;
	const int *fds;              /* descriptors to pass */
	uint32_t nfds;
};

/* What running a request comes to. */
enum pmd_step {
	PMD_STEP_REPLY,              /* answered now: reply.status */
	PMD_STEP_PARKED,             /* answered when its work ends */
	PMD_STEP_WAIT,               /* a container it names is busy: it runs
	                              * again when that work ends */
};

/* A reply now, with status err. */
static inline enum pmd_step pmd_reply_now(struct pmd_reply *r, error_t err)
{
	r->status = err;
	return PMD_STEP_REPLY;
}

/* server.c */
/* Runs q for s, as the loop does: true when it is answered now (r);
 * false when it waits or parks (answered by pmd_session_answer). */
bool pmd_request_run(struct pmd_server *srv, struct pmd_session *s,
		     const struct pmd_req *q, struct pmd_reply *r);

/* handlers.c */
/* Whether q may run from a request ring: 0, EPROTO (never there), or
 * EXDEV (only on the session's socket: PM_ST_USE_SOCKET). */
error_t pmd_ring_allows(const struct pmd_req *q);
enum pmd_step pmd_dispatch(struct pmd_server *srv, struct pmd_session *s,
			   const struct pmd_req *q, struct pmd_reply *r);
/* Whether a body of len bytes is one a request of type takes (false for
 * unknown types). */
bool pmd_request_fits(uint32_t type, uint32_t len);

/* session.c */
void *pmd_reply_body(struct pmd_server *srv);
/* An allocation's reply body: the frames it allocated, also on error. */
void pmd_alloc_reply(struct pmd_server *srv, struct pmd_reply *r,
		     uint32_t count);
/* Sends the reply to a request (type, seq); false when the session must
 * be closed. A virtual session's goes to the node that forwarded it. */
bool pmd_reply_send(struct pmd_server *srv, struct pmd_session *s,
		    uint16_t type, uint32_t seq, const struct pmd_reply *r);
/* Parks s on pending (its request's type and sequence are in s). */
enum pmd_step pmd_session_park(struct pmd_session *s,
			       struct pmd_pending *pending);
/* The parked request's answer: sent, and s read from again (or closed
 * if that fails; a virtual session ends). */
void pmd_session_answer(struct pmd_server *srv, struct pmd_session *s,
			const struct pmd_reply *r);
/* Keeps q to run again when a container's work ends (false: out of
 * memory). */
bool pmd_session_wait(struct pmd_server *srv, struct pmd_session *s,
		      const struct pmd_req *q);
/* Keeps q to run at the loop's next turn, before any waiter when first
 * (a request whose frames were just brought in runs again before the
 * others). false: out of memory. */
bool pmd_session_run_later(struct pmd_server *srv, struct pmd_session *s,
			   const struct pmd_req *q, bool first);
void pmd_session_close(struct pmd_server *srv, struct pmd_session *s);

/* stop.c */
/* Before the invoke of a request whose decode listed stops (core->stops):
 * *go when every holder stopped (or none holds them); else its step (it
 * parks and runs again once they did, or the reply says ENOMEM). */
enum pmd_step pmd_stop_first(struct pmd_server *srv, struct pmd_session *s,
			     const struct pmd_req *q, struct pmd_reply *r,
			     bool *go);
/* A library's answer to STOP seq, on its fault session fs. */
void pmd_stop_answered(struct pmd_server *srv, struct pmd_session *fs,
		       uint32_t seq, error_t status);
/* Stops whose deadline passed go on without the answers missing. */
void pmd_stop_expire(struct pmd_server *srv);
/* The loop's wait, bounded by the next deadline. */
int pmd_stop_timeout_ms(const struct pmd_server *srv, int timeout);
/* The request of s is answered (or s goes): what it stopped resumes. */
void pmd_stop_done(struct pmd_server *srv, struct pmd_session *s);
/* The node layer's stops (the stop upcall, node.h): done(done_arg) once
 * every holder stopped or min(--stop-ms, max_ms) passed, at once when
 * nobody is to be asked; RESUME after it returns. ENOMEM: done not
 * called. */
error_t pmd_stop_call(struct pmd_server *srv, const struct pmd_stops *st,
		      uint32_t max_ms, void (*done)(void *), void *done_arg);
/* The pmd ends: the node layer's stops still waiting finish now. */
void pmd_stop_fini(struct pmd_server *srv);
/* Tells the holders of segments whose copy-on-write shares ended
 * (segment.h) that those slots take stores again (UNSHARED), once no
 * stop waits for its move. Each turn of the loop. */
void pmd_stop_unshared(struct pmd_server *srv);
/* Sends one message of the pmd's own to t's fault session (false when
 * it has none, or its library does not read: dropped then). */
bool pmd_task_notify(struct pmd_task *t, const void *msg, size_t len);

/* store.c */
/* --backing-store: opens (or makes) the store, its slots in the core's
 * budget; a bad one is said on stderr and its error returned. */
error_t pmd_store_open(struct pmd_server *srv);
/* The pmd ends: what is in flight ends, the store closes. */
void pmd_store_close(struct pmd_server *srv);
/* Completions came (the loop's event). */
void pmd_store_event(struct pmd_server *srv);
/* Those already in the completion queue, without the event (a read the
 * page cache served completes inside its submit): run at the top of the
 * loop, so that a page-in ends in the turn that began it. */
void pmd_store_reap(struct pmd_server *srv);
/* Whether reads the page cache served wait to be told (the loop must
 * not sleep: pmd_store_reap tells them). */
bool pmd_store_pending(const struct pmd_server *srv);
/* Reads and writes of pieces on other nodes, in the backing store or
 * here (pmd_cluster_rio's contract: done later, never before this
 * returns; a read's bytes in piece order; a write's taken now): the
 * store's by io_uring, the others' by the fabric (between the lenders'
 * slots and win, the session's window, when given). */
error_t pmd_rio(struct pmd_server *srv, bool write,
		const struct pmd_io_piece *pieces, uint32_t n, const void *data,
		uint32_t len, struct pmd_window *win, pmd_rio_done *done,
		void *arg);
/* Makes the store slots of places p[0..n) read as zeros (new frames born
 * there): a hole punched in a file, a range zeroed on a device, each run
 * of consecutive slots in one call. An error after logging it. */
error_t pmd_store_zero(struct pmd_server *srv, const struct pmd_place *p,
		       uint32_t n);
/* Frames read from and written to the store (of the reads, those its
 * page cache served at once), and failed operations. */
struct pmd_store_counts {
	uint64_t reads, reads_cached, writes, errors;
};
void pmd_store_counts(const struct pmd_server *srv,
		      struct pmd_store_counts *out);

/* reclaim.c */
void pmd_reclaim_init(struct pmd_server *srv);
/* s's request q lacks `lack` frames here beyond what is free (and
 * lack_u beyond what no guarantee reserves: extra frames): it parks
 * while the pmd makes room (urgent: no grace period for the tasks asked;
 * a map or fault bringing frames home), and runs again then (!*go, its
 * step); *go when nothing could make room (its own answer follows). */
enum pmd_step pmd_reclaim_wait(struct pmd_server *srv, struct pmd_session *s,
			       const struct pmd_req *q, uint64_t lack,
			       uint64_t lack_u, bool urgent, bool *go);
/* The loop's turn: waiters that have room, or whose grace ended (the
 * pmd pages frames out, then takes extra frames), run again. */
void pmd_reclaim_turn(struct pmd_server *srv);
/* The loop's wait, bounded by the round's deadline. */
int pmd_reclaim_timeout_ms(const struct pmd_server *srv, int timeout);
/* Requests waiting now (the metrics'). */
static inline uint32_t pmd_reclaim_waiting(const struct pmd_server *srv)
{
	uint32_t n = 0;

	for (const struct pmd_list *p = srv->reclaim.waiters.next;
	     p != &srv->reclaim.waiters; p = p->next)
		n++;
	return n;
}
/* The pmd ends (its sessions closed): what waited goes. */
void pmd_reclaim_fini(struct pmd_server *srv);

/* ring.c */
error_t pmd_ring_init(struct pmd_server *srv);
/* RING: s's ring, its slots' windows, and the doorbell. */
enum pmd_step pmd_ring_create(struct pmd_server *srv, struct pmd_session *s,
			      const struct pm_ring_req *req,
			      struct pmd_reply *r);
/* Its session ends: requests in flight end unanswered; freed later. */
void pmd_ring_close(struct pmd_server *srv, struct pmd_ring *g);
/* Takes and runs what the rings hold; whether there was any. */
bool pmd_ring_poll(struct pmd_server *srv);
/* Whether the loop polls the rings rather than sleep. */
bool pmd_ring_spin(const struct pmd_server *srv);
/* Before the loop sleeps: the tasks ring the doorbell from now on.
 * true when a request came meanwhile (do not sleep). */
bool pmd_ring_arm(struct pmd_server *srv);
void pmd_ring_disarm(struct pmd_server *srv);
/* The doorbell rang (the loop's event). */
void pmd_ring_doorbell(struct pmd_server *srv);
void pmd_ring_fini(struct pmd_server *srv);

/* xcopy.c */
/* A copy between containers of different homes (checked: handles,
 * flags, count): this pmd copies the bytes, piece by piece, as reads and
 * writes of s's task; s parks until the copy ends. */
enum pmd_step pmd_xcopy(struct pmd_server *srv, struct pmd_session *s,
			const struct pm_copy_req *q, struct pmd_reply *r);
/* The pmd ends: the windows kept for copies go. */
void pmd_xcopy_fini(struct pmd_server *srv);

/* metrics.c */
/* A request of type was answered with status, ns after it came. */
void pmd_metrics_count(struct pmd_server *srv, uint16_t type, error_t status,
		       uint64_t ns);
/* The metrics in Prometheus' text format into buf (cap bytes, cut short
 * at a line's end if need be); their length. */
size_t pmd_metrics_render(struct pmd_server *srv, char *buf, size_t cap);
/* --metrics ADDR:PORT: the HTTP endpoint (GET /metrics). */
error_t pmd_metrics_listen(struct pmd_server *srv, const char *addr);
/* Its events: a connection to take, or one that sent (part of) its
 * request (the loop's tag is the listening descriptor, or an mconn). */
void pmd_metrics_event(struct pmd_server *srv, void *tag);
bool pmd_metrics_tag(const struct pmd_server *srv, const void *tag);
void pmd_metrics_close(struct pmd_server *srv);

/* drain.c */
enum pmd_step pmd_drain_start(struct pmd_server *srv, struct pmd_session *s,
			      uint32_t timeout_ms, struct pmd_reply *r);
/* Each turn of the loop: a drain that ended is answered (*stop: it
 * drained, the pmd stops), recalled frames start home. */
void pmd_drain_turn(struct pmd_server *srv, bool *stop);
/* The longest the loop may sleep while either is under way. */
int pmd_drain_timeout_ms(const struct pmd_server *srv, int timeout);
/* The cluster's upcall: lender drains. */
void pmd_recall_add(void *arg, pm_node_t lender);

/* window.c */
error_t pmd_window_create(struct pmd_server *srv, struct pmd_window **w_out);
void pmd_window_put(struct pmd_window *w);
/* An RDMA through w failed and may still land in it or read it: no
 * request passes through it any more; fence: other nodes lose their way
 * to it now (a forwarded read's or write's home that did not answer). */
void pmd_window_retire(struct pmd_window *w, bool fence);
/* pmd_rio_keep of a window (arg: the window): a held one is kept and
 * retired, and let go once the provider is done. */
void pmd_window_keep(void *arg, enum pmd_keep what);
/* Before a request of s: a retired window leaves the session. */
void pmd_window_check(struct pmd_session *s);
/* A READ's or WRITE's PM_IO_WINDOW flag on session s: 0, EBADFD (its
 * window was retired: PM_ST_WINDOW_GONE, the task sends the bytes in
 * the messages and may ask for a new window), EPROTO (it never had
 * one). */
error_t pmd_window_usable(const struct pmd_session *s, uint32_t io_flags);

/* remote.c */
/* Remote work on a container: a read or a write of some of its frames
 * (others may run beside it: reads of any, writes of other frames), or
 * anything else (a pull, push, page-out, move: the whole container). */
enum { PMD_BUSY_ALL, PMD_BUSY_READ, PMD_BUSY_WRITE };
/* Whether the container has remote work in flight. */
bool pmd_busy_test(const struct pmd_server *srv, uint64_t id);
/* Whether a read (write: a write) of frames [start, end) of it must wait
 * for remote work in flight. */
bool pmd_busy_test_io(const struct pmd_server *srv, uint64_t id,
		      frame_t start, frame_t end, bool write);
/* A read or write touching remote frames (io decoded). */
enum pmd_step pmd_remote_io(struct pmd_server *srv, struct pmd_session *s,
			    const struct pmd_io *io, bool window,
			    const void *data, struct pmd_reply *r);
/* Brings up to PMD_PULL_MAX remote frames of [start, start + count) of c
 * (named h by s's task) here, then runs q again; frames pushed for
 * keep_task stay. With pushed set, every frame pushed for keep_task
 * comes instead. *none when there is nothing to pull (nothing started,
 * the step is a reply with EIO). */
enum pmd_step pmd_remote_pull(struct pmd_server *srv, struct pmd_session *s,
			      struct pmd_container *c, container_t h,
			      frame_t start, uint32_t count, uint64_t keep_task,
			      bool pushed, const struct pmd_req *q, bool *none,
			      struct pmd_reply *r);
/* Frames v[0..n) of c (pmd_pageout_plan, at most PMD_PUSH_MAX) go to
 * slots of the node with the most room, or else of the backing store
 * (its reserve too for a page-in): c is busy until done(arg, how many
 * moved, status) is called, maybe before this returns. ENOMEM: no room
 * anywhere, nothing begun. */
typedef void pmd_pageout_done(void *arg, uint32_t moved, error_t status);
error_t pmd_remote_pageout(struct pmd_server *srv, struct pmd_container *c,
			   const struct pmd_pageout *v, uint32_t n,
			   bool page_in, pmd_pageout_done *done, void *arg);
/* A map through a forwarded handle, at the home, for a task of node s
 * serves (its proxy): the frames go to that node. */
/* A pull of c's frames on node (a node that drains: its slots go back),
 * with no request behind it; ended(arg, status) once it is over (ENOMEM:
 * some found no room here and stay there). ENOENT: c has none there;
 * EBUSY: c has remote work in flight; ENOMEM: no room, or no memory. */
error_t pmd_remote_recall(struct pmd_server *srv, struct pmd_container *c,
			  pm_node_t node, void (*ended)(void *, error_t),
			  void *arg);
enum pmd_step pmd_remote_push(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r);

/* place.c */
/* An allocation into a container whose frames may go to other nodes
 * (policy node, interleave, or a spill). *applies false when its frames
 * all stay here after all (nothing done: allocate here). */
enum pmd_step pmd_place_allocate(struct pmd_server *srv, struct pmd_session *s,
				 const struct pm_alloc_req *req,
				 const struct pmd_container *c, bool *applies,
				 struct pmd_reply *r);
/* A container placed here on a node with a backing store whose memory
 * (and cluster) has no room for every frame asked for, after reclaim:
 * the guaranteed frames that do not fit are born in the store (zero;
 * a read reads them there, a map or fault brings them home), the first
 * ones here; all or nothing without CONT_ALLOC_PARTIAL. *applies false
 * when it does not apply (nothing done). */
enum pmd_step pmd_place_store(struct pmd_server *srv, struct pmd_session *s,
			      const struct pm_alloc_req *req, bool *applies,
			      struct pmd_reply *r);

/* forward.c */
/* Whether a request of this type may go to another home. */
bool pmd_fwd_type(uint32_t type);
/* A request on a handle another home serves (h: the first one). */
enum pmd_step pmd_fwd_request(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, uint64_t h,
			      struct pmd_reply *r);
/* An import of a token of another home's container. */
enum pmd_step pmd_fwd_import(struct pmd_server *srv, struct pmd_session *s,
			     const struct pm_token *tok, pm_node_t home,
			     struct pmd_reply *r);
/* A fault on a frame another home moved away from this node: a map of
 * that one frame, forwarded for the task. */
enum pmd_step pmd_fwd_resolve(struct pmd_server *srv, struct pmd_session *s,
			      pm_node_t home, container_t rh, frame_t f,
			      struct pmd_reply *r);

#endif
