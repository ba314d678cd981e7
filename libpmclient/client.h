/*
 * client.h - what the library's files share (private: only pm.h is
 * installed): the session, and the steps each file offers the others.
 *
 *   session.c   the connection: one request and its reply (rpc), connect
 *               and disconnect, the fault session and the I/O window
 *   fastpath.c  the segments and frame views the pmd gave us, mapped once,
 *               and the map of resident frames with no message
 *   map.c       maps through the pmd, and unmap
 *   api.c       every other call of pm.h
 *   follow.c    mappings that follow their frames (userfaultfd)
 *   ring.c      the request ring: requests in shared memory, one in
 *               flight per slot
 *
 * Lock key: (C) set at connect, read-only after; (M) pm->lock, which
 * keeps one request in flight on the socket and serialises every change
 * to the session's tables (requests through the ring take a slot
 * instead); (A) written under pm->lock with release
 * stores, read lock-free with acquire loads (the fast path), never freed
 * before pm_disconnect; (F) pm->follow.lock.
 */
#ifndef PMC_CLIENT_H
#define PMC_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pm/pm.h>

#include "follow.h"
#include "pm_proto.h"

#define PMC_SEG_BYTES ((size_t)PM_SEGMENT_SLOTS * PM_FRAME_SIZE)
#define PMC_DIR_BITS  12                          /* two-level directories */
#define PMC_DIR_SIZE  (1u << PMC_DIR_BITS)
#define PMC_DIR_MAX   (PMC_DIR_SIZE * PMC_DIR_SIZE) /* indices they hold */
/* Whole-segment views live in one reserved range (address space only),
 * so that telling them apart at unmap is one comparison, without a lock. */
#define PMC_VIEW_PAIRS 16384u                     /* segments: 32 GiB */
#define PMC_VIEW_SPAN  ((size_t)PMC_VIEW_PAIRS * 2 * PMC_SEG_BYTES)

/* The frame the fast path last gave out a slot's address for. */
struct pmc_rev {
	container_t cont;     /* (F) */
	frame_t frame;        /* (F) */
};

/* A segment we hold, mapped whole. Never freed before disconnect. */
struct pmc_seg {
	uint64_t id;          /* (C) segment id */
	int fd;               /* (C) our descriptor of its memfd */
	uint8_t *ro, *rw;     /* (C) read-only and read/write views */
	struct pmc_rev *rev;  /* (F) by slot, when following; NULL: none yet */
	/* The last note made in rev (slots slot.. stand for frames
	 * start.. of cont, n of them): a run noted again finds it here,
	 * with no look at each slot. A seqlock: odd while written (F). */
	struct {
		uint64_t seq;
		container_t cont;
		frame_t start;
		uint32_t slot, n;
	} last;
	struct pmc_seg *next; /* (M) in pm->all_segs */
};

/* A container's frame view, mapped read-only. */
struct pmc_view {
	uint64_t id;                   /* (C) view id */
	const struct pm_view_hdr *hdr; /* (C) the pmd writes it (seqlock) */
	size_t bytes;                  /* (C) */
	struct pmc_view *next;         /* (M) in pm->all_views */
};

/* handle -> view, at the handle's index. */
struct pmc_hview {
	container_t handle;           /* (A) */
	struct pmc_view *view;        /* (A) */
};

/* The task's reclaim handler and the thread that calls it (reclaim.c).
 * Lock key: (R) reclaim.lock. */
struct pmc_reclaim {
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* (R) wanted, stop */
	pm_reclaim_fn fn;              /* (R) NULL: none */
	void *arg;                     /* (R) */
	uint64_t wanted;               /* (R) frames asked for, not yet
	                                * passed to the handler */
	bool running, stop;            /* (R) the thread */
	pthread_t thread;              /* (R) */
};

/* The request ring (ring.c). Lock key: (S) atomic. */
struct pmc_ring {
	uint8_t *base;                 /* (C) the shared memory; NULL: none */
	struct pm_ring_hdr *hdr;       /* (C) in it */
	struct pm_ring_slot *slots;    /* (C) in it */
	uint8_t *win[PM_RING_SLOTS];   /* (C) each slot's I/O window */
	int bell;                      /* (C) the doorbell */
	uint32_t free;                 /* (S) slots free, by bit */
	uint32_t seq;                  /* (S) last request's sequence number */
	uint64_t spin_ns;              /* (C) the longest spin; 0: never */
	uint64_t avg_ns;               /* (S) a request's time, averaged */
};
/* pmc_ring_rpc's answer for a request the ring does not carry. */
#define PMC_USE_SOCKET (-1)

struct pm {
	int fd;                        /* (C) the connection */
	pthread_mutex_t lock;          /* the session lock, (M) */
	uint32_t seq;                  /* (M) last request's sequence number */
	bool broken;                   /* (S) the connection failed: ECONNRESET */
	pm_task_t task;                /* (C) after HELLO */
	pm_node_t node;                /* (C) */
	uint32_t io_max, map_max;      /* (C) */
	struct pmc_seg **segdir[PMC_DIR_SIZE]; /* (A) by segment index */
	struct pmc_hview *hdir[PMC_DIR_SIZE];  /* (A) by handle index */
	struct pmc_seg *all_segs;      /* (M) every segment we hold */
	struct pmc_view *all_views;    /* (M) every view we hold */
	bool fastpath;                 /* (C) off with PM_NO_FASTPATH=1 */
	uint8_t *vbase;                /* (A) reserved range for segment views */
	size_t vnext;                  /* (M) next free view pair in it */
	bool views_outside;            /* (A) some views had to go elsewhere */
	struct pmc_follow follow;      /* mappings that follow frames */
	uint8_t *win;                  /* (M) the session's I/O window, or
	                                * NULL: reads and writes then carry
	                                * their bytes in the messages */
	struct pmc_ring ring;          /* the request ring */
	char path[108];                /* (C) the pmd's socket */
	struct pmc_reclaim reclaim;    /* the extra-frame protocol's */
	uint8_t tx[PM_MSG_MAX] __attribute__((aligned(16)));     /* (M) */
	uint8_t rx[PM_MSG_MAX + 1] __attribute__((aligned(16))); /* (M) */
};

/* One request and its reply. body/fds describe the reply's payload;
 * culprit receives reply.culprit whatever the status. */
struct pmc_rpc {
	uint16_t type;
	const void *req;
	uint32_t req_len;
	const void *data;      /* appended after req (WRITE) */
	uint32_t data_len;
	void *body;            /* copy of the reply body, up to body_max */
	uint32_t body_max;
	uint32_t body_len;     /* out */
	int *fds;              /* received descriptors, up to fds_max */
	uint32_t fds_max;
	uint32_t nfds;         /* out */
	uint64_t culprit;      /* out */
};

/* session.c */
/* Whether h heads the reply of length len to request (type, seq). */
bool pmc_reply_hdr_ok(const struct pm_msg_hdr *h, uint32_t len,
		      uint16_t type, uint32_t seq);
/* The exchange; a reply that breaks the wire format breaks the session
 * (EPROTO), a pmd gone makes it ECONNRESET from then on. Must hold
 * pm->lock. */
error_t pmc_rpc(struct pm *pm, struct pmc_rpc *r);
/* The I/O window (pm->lock held): a new one (none with PM_NO_WINDOW=1 or
 * when the pmd cannot make one), or the one the pmd retired dropped
 * (PM_ST_WINDOW_GONE: EBADFD). */
void pmc_window_open(struct pm *pm);
void pmc_window_drop(struct pm *pm);
/* The exchange through the ring, or (not carried there, no free slot)
 * on the socket, taking the lock. */
error_t pmc_request(struct pm *pm, struct pmc_rpc *r);
/* A request with a fixed reply body (or none), through pmc_request. */
error_t pmc_call(pm_t *pm, uint16_t type, const void *req, uint32_t req_len,
		 void *body, uint32_t body_len, uint64_t *culprit);
/* A request naming one handle, with no reply body. */
error_t pmc_call_handle(pm_t *pm, uint16_t type, container_t c);
void pmc_close_fds(int *fds, uint32_t n);

/* ring.c */
/* The session's ring (pm->lock held at connect), unless PM_NO_RING=1 or
 * the pmd has none to give. */
void pmc_ring_open(struct pm *pm);
void pmc_ring_close(struct pm *pm);
/* A free slot, or -1 (none free, or no ring). */
int pmc_ring_get(struct pm *pm);
void pmc_ring_put(struct pm *pm, int i);
/* The exchange through slot i (pmc_rpc's contract, no descriptors):
 * PMC_USE_SOCKET when the ring does not carry it (nothing done). */
error_t pmc_ring_rpc(struct pm *pm, int i, struct pmc_rpc *r);
/* The same through any free slot (PMC_USE_SOCKET when none is). */
error_t pmc_ring_call(struct pm *pm, struct pmc_rpc *r);

/* reclaim.c */
void pmc_reclaim_init(struct pm *pm);
/* RECLAIM from the pmd (the fault thread's callback): frames wanted. */
void pmc_reclaim_post(void *arg, uint32_t frames);
/* Ends the thread (after a handler call in progress returns). */
void pmc_reclaim_fini(struct pm *pm);

/* fastpath.c */
/* The segment with this id, or NULL. Lock-free. */
struct pmc_seg *pmc_seg_get(struct pm *pm, uint64_t id);
/* Takes fd as segment id's descriptor and maps the segment whole
 * (closing fd if we hold the segment already). Must hold pm->lock. */
error_t pmc_seg_add(struct pm *pm, uint64_t id, int fd);
/* The view with this id among those we hold, mapping fd (>= 0) if new.
 * Must hold pm->lock. */
struct pmc_view *pmc_view_add(struct pm *pm, uint64_t id, int fd);
/* Records v as h's view (NULL: forget). Must hold pm->lock. */
void pmc_hview_set(struct pm *pm, container_t h, struct pmc_view *v);
/* The fast path: maps frames start.. from the view and the segments we
 * hold, without a message. False (nothing done) whenever any frame needs
 * the pmd. */
bool pmc_map_fast(struct pm *pm, container_t c, frame_t start, int n,
		  int flags, void **addr, int *granted);
/* Whether addr lies in the whole-segment views (maps of the fast path,
 * released with the session, not by unmap). */
bool pmc_in_segment_view(struct pm *pm, const uint8_t *addr);
/* pmc_seg_fd_fn and pmc_local_fn (follow.h) for the fault thread. */
int pmc_seg_fd(void *arg, uint64_t id);
bool pmc_local_place(void *arg, uint64_t seg, uint32_t slot, container_t c,
		     frame_t f, struct pmc_place *out);
/* Unmaps and frees every segment and view (pm_disconnect). */
void pmc_fast_fini(struct pm *pm);

#endif
