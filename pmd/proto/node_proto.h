/*
 * node_proto.h - the wire format between pmds (the node protocol).
 *
 * Transport: one fabric endpoint per node (fabric/: reliable datagrams,
 * ordered per peer), the same for both kinds of message, told apart by
 * their magic:
 *   - membership messages (PMD_MB_MAGIC): the handshake that admits a node
 *     (a challenge, an answer and a confirmation, each proving the cluster
 *     secret) and heartbeats; always one fixed 104-byte layout;
 *   - node requests (PMD_NREQ_MAGIC): a request to another node and its
 *     answer, an 80-byte header, then up to PMD_NREQ_BODY_MAX bytes of
 *     body, under a MAC (keyed BLAKE2b-256 of header, with mac zero, and
 *     body; the key is HMAC-SHA-256 of "pmd node requests" under the
 *     cluster secret).
 * Layouts are fixed-width and little-endian (checked in pm_proto.h), with
 * a static assertion on every offset and size.
 *
 * Rules a receiver applies before acting on anything: the message is
 * whole; magic and version match; it names this node and comes from the
 * node the fabric says it comes from; a node request travels between the
 * current incarnations of two nodes that see each other, and its MAC
 * holds. Anything else is dropped unanswered. A request of an unknown
 * type is answered PM_ST_UNSUPPORTED; a malformed body PM_ST_BAD_MESSAGE.
 *
 * Version history:
 *   membership 1  CHAL/RESP/CONF handshake (HMAC-SHA-256), HB heartbeats.
 *   requests   1  PING, ALLOC/FREE (lent slots), FWD_IMPORT/FWD_OP/FWD_BYE
 *                 (forwarded requests), MAC HMAC-SHA-256, 4 KiB bodies.
 *              2  FWD_OP answers start with the task reply (status and
 *                 culprit, struct pm_reply); MAC keyed BLAKE2b; bodies up
 *                 to 64 KiB and 64 bytes (a forwarded read or write whole).
 *              3  tagged loans (ALLOC naming a task, container, handle and
 *                 frames), forwarded maps.
 *              4  RETURN: tagged slots come back with their bytes, the
 *                 lender's task stopped first (no store lost in a pull);
 *                 FWD_OP's flags (was pad): PMD_FWD_WINDOW, a forwarded
 *                 read's or write's bytes by RDMA to or from the
 *                 forwarder's window; RESET.
 */
#ifndef PMD_NODE_PROTO_H
#define PMD_NODE_PROTO_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "pm_proto.h"

/* ---- membership ---- */

#define PMD_MB_MAGIC   0x43444d50u /* "PMDC" */
#define PMD_MB_VERSION 1u

enum pmd_mb_type {
	PMD_MB_CHAL = 1, /* a challenge: the sender's nonce */
	PMD_MB_RESP = 2, /* its answer: a nonce and a MAC over both nonces,
			  * both ids and both incarnations */
	PMD_MB_CONF = 3, /* the challenger's confirmation: a MAC the other way */
	PMD_MB_HB = 4,   /* a heartbeat: sequence number, frames, MAC */
	PMD_MB_VER = 5,  /* the node requests the sender speaks (node request
			  * version 5 on): nonce[0..1] the lowest, [2..3] the
			  * highest (little-endian), the rest zero; sequence
			  * and MAC as a heartbeat's; frames_total and
			  * frames_free the sender's budget and the frames of
			  * it no physical page takes (zeros from earlier
			  * releases). Sent with every heartbeat; older
			  * nodes ignore it */
};

struct pmd_mb_msg {
	uint32_t magic;               /* PMD_MB_MAGIC */
	uint16_t version;             /* PMD_MB_VERSION */
	uint16_t type;                /* enum pmd_mb_type */
	uint16_t from, to;            /* node ids */
	uint32_t pad;                 /* 0 */
	uint64_t from_inc, to_inc;    /* incarnations (to_inc 0 in CHAL) */
	uint8_t nonce[16];            /* CHAL, RESP: the sender's */
	uint64_t seq;                 /* HB: growing */
	uint64_t frames_total, frames_free; /* HB: the sender's */
	uint8_t mac[32];              /* RESP, CONF, HB */
};
static_assert(sizeof(struct pmd_mb_msg) == 104, "mb size");
static_assert(offsetof(struct pmd_mb_msg, type) == 6, "mb.type");
static_assert(offsetof(struct pmd_mb_msg, from) == 8, "mb.from");
static_assert(offsetof(struct pmd_mb_msg, to) == 10, "mb.to");
static_assert(offsetof(struct pmd_mb_msg, from_inc) == 16, "mb.from_inc");
static_assert(offsetof(struct pmd_mb_msg, to_inc) == 24, "mb.to_inc");
static_assert(offsetof(struct pmd_mb_msg, nonce) == 32, "mb.nonce");
static_assert(offsetof(struct pmd_mb_msg, seq) == 48, "mb.seq");
static_assert(offsetof(struct pmd_mb_msg, frames_total) == 56, "mb.total");
static_assert(offsetof(struct pmd_mb_msg, frames_free) == 64, "mb.free");
static_assert(offsetof(struct pmd_mb_msg, mac) == 72, "mb.mac");

/* ---- node requests ---- */

#define PMD_NREQ_MAGIC    0x52444d50u /* "PMDR" */
/* The node requests this node speaks: from PMD_NREQ_VERSION_MIN (what the
 * previous release speaks, the only one it knows) to PMD_NREQ_VERSION.
 * With a peer, the highest both speak: the peer's highest as its VER
 * messages say, the lowest of ours until one comes (an older node sends
 * none). A node of one release talks to one of the release before: a
 * cluster is upgraded a node at a time. */
#define PMD_NREQ_VERSION_MIN 4u
#define PMD_NREQ_VERSION  5u
#define PMD_NREQ_REPLY    0x1u        /* flags: an answer */
#define PMD_FWD_IO_MAX    65536u      /* bytes of a forwarded read or write */
#define PMD_NREQ_BODY_MAX (PMD_FWD_IO_MAX + 64u)

static_assert(PMD_FWD_IO_MAX >= PM_IO_MAX, "a forwarded read or write whole");

enum pmd_nreq_type {
	PMD_NREQ_PING = 1,       /* empty -> pmd_nreq_ping_rep */
	PMD_NREQ_ALLOC = 2,      /* pmd_nreq_alloc_req -> pmd_nreq_alloc_rep */
	PMD_NREQ_FREE = 3,       /* pmd_nreq_free_req -> empty */
	PMD_NREQ_FWD_IMPORT = 4, /* pmd_nreq_fwd_import -> container_t */
	PMD_NREQ_FWD_OP = 5,     /* pmd_nreq_fwd_op -> pm_reply, reply body */
	PMD_NREQ_FWD_BYE = 6,    /* the task (uint64_t) -> empty */
	PMD_NREQ_RETURN = 7,     /* pmd_nreq_return_req -> pmd_nreq_return_rep,
	                          * then the bytes */
	PMD_NREQ_RESET = 8,      /* empty -> empty: the sender declared the
	                          * receiver down (it was paused or cut off,
	                          * not restarted) and forgot every loan,
	                          * frame and proxy between them; the receiver
	                          * forgets its own. Until it is answered the
	                          * sender makes no call of the receiver and
	                          * answers its requests (but PING) ENODEV:
	                          * nothing is made that one side would
	                          * forget and the other keep */
	PMD_NREQ_RECALL = 9,     /* empty -> empty (version 5 on; an older
	                          * node answers it unsupported): the sender
	                          * drains; the receiver takes its frames
	                          * in the sender's slots home and gives
	                          * the slots back (FREE), in the background:
	                          * the answer only says it will */
};

/* A node request or its answer: this header, then len bytes of body. */
struct pmd_nreq_hdr {
	uint32_t magic;               /* PMD_NREQ_MAGIC */
	uint16_t version;             /* the one spoken with the receiver */
	uint16_t type;                /* enum pmd_nreq_type */
	uint16_t from, to;            /* node ids */
	uint32_t len;                 /* body bytes */
	uint64_t id;                  /* chosen by the requester, echoed */
	uint64_t from_inc, to_inc;    /* both incarnations */
	uint32_t status;              /* answers: enum pm_status */
	uint32_t flags;               /* PMD_NREQ_REPLY */
	uint8_t mac[32];              /* of the header (mac zero) and body */
};
static_assert(sizeof(struct pmd_nreq_hdr) == 80, "nreq hdr size");
static_assert(offsetof(struct pmd_nreq_hdr, type) == 6, "nreq.type");
static_assert(offsetof(struct pmd_nreq_hdr, from) == 8, "nreq.from");
static_assert(offsetof(struct pmd_nreq_hdr, len) == 12, "nreq.len");
static_assert(offsetof(struct pmd_nreq_hdr, id) == 16, "nreq.id");
static_assert(offsetof(struct pmd_nreq_hdr, from_inc) == 24, "nreq.from_inc");
static_assert(offsetof(struct pmd_nreq_hdr, to_inc) == 32, "nreq.to_inc");
static_assert(offsetof(struct pmd_nreq_hdr, status) == 40, "nreq.status");
static_assert(offsetof(struct pmd_nreq_hdr, flags) == 44, "nreq.flags");
static_assert(offsetof(struct pmd_nreq_hdr, mac) == 48, "nreq.mac");

/* PING answer. */
struct pmd_nreq_ping_rep {
	uint64_t incarnation;         /* the answering node's */
	uint64_t frames_free;         /* as its last heartbeat said */
};
static_assert(sizeof(struct pmd_nreq_ping_rep) == 16, "ping rep");

/*
 * ALLOC: up to PMD_LEND_MAX slots of the lender's budget (never what
 * guarantees reserve) for frames of the requesting home. Untagged (the
 * body is n alone, 4 bytes): for any frames. Tagged (the whole struct):
 * for a task of the lender's node mapping container cont of the home
 * through its handle there; frame[i] goes into the i-th slot, from a
 * segment the lender keeps for that task and container (ESRCH: no such
 * task of its own, or one that cannot follow its mappings).
 */
#define PMD_LEND_MAX 15
struct pmd_nreq_alloc_req {
	uint32_t n;                   /* slots wanted, 1 .. PMD_LEND_MAX */
	uint32_t pad;
	uint64_t task;                /* tagged: the lender's task, */
	uint64_t cont;                /*   the home's container, */
	uint64_t handle;              /*   the task's proxy's handle there, */
	uint64_t frame[PMD_LEND_MAX]; /*   the frames */
};
static_assert(sizeof(struct pmd_nreq_alloc_req) == 152, "alloc req");
static_assert(offsetof(struct pmd_nreq_alloc_req, task) == 8, "alloc.task");
static_assert(offsetof(struct pmd_nreq_alloc_req, frame) == 32, "alloc.frame");
#define PMD_NREQ_ALLOC_UNTAGGED sizeof(uint32_t)

/* One lent slot: where it is and the registration to reach it. */
struct pmd_nreq_lent {
	uint64_t key, base, len;      /* the segment's registration */
	uint32_t seg;                 /* segment index at the lender */
	uint16_t slot;
	uint16_t pad;
};
static_assert(sizeof(struct pmd_nreq_lent) == 32, "lent slot");
static_assert(offsetof(struct pmd_nreq_lent, seg) == 24, "lent.seg");

/* ALLOC answer: n slots (the body is 8 + n * 32 bytes). */
struct pmd_nreq_alloc_rep {
	uint32_t n;                   /* 0 .. PMD_LEND_MAX */
	uint32_t pad;
	struct pmd_nreq_lent e[PMD_LEND_MAX];
};
static_assert(offsetof(struct pmd_nreq_alloc_rep, e) == 8, "alloc rep.e");

/* FREE: n slots given back (the body is 8 + n * 8 bytes). A slot of a
 * tagged segment retires (the task's mapping of it faults from then on);
 * the answer says the lender has them. */
#define PMD_NREQ_FREE_MAX 60
struct pmd_nreq_free_slot {
	uint32_t seg;
	uint16_t slot;
	uint16_t pad;
};
static_assert(sizeof(struct pmd_nreq_free_slot) == 8, "free slot");
struct pmd_nreq_free_req {
	uint32_t n;                   /* 1 .. PMD_NREQ_FREE_MAX */
	uint32_t pad;
	struct pmd_nreq_free_slot e[PMD_NREQ_FREE_MAX];
};
static_assert(offsetof(struct pmd_nreq_free_req, e) == 8, "free req.e");

/* RETURN: slots of segments the lender keeps for one task's mappings
 * (tagged) come back to their home with their contents. The lender first
 * stops that task's stores to them (a STOP to its library, waited for at
 * most its stop deadline, and never longer than a quarter of down_ms, so
 * the answer comes in time), copies them, retires the slots (the task's
 * mapping faults from then on and follows the frame) and lets the task
 * go on. With PMD_RETURN_NOSTOP the task is not asked (it is being
 * revoked: its stores reach nobody). The answer: which slots were not
 * lent to the asking home (lost: their frames read EIO from then on; their
 * bytes are zero), then n frames of bytes, in order. */
#define PMD_RETURN_FRAME  4096u       /* bytes of a frame */
#define PMD_RETURN_MAX    (PMD_FWD_IO_MAX / PMD_RETURN_FRAME)
#define PMD_RETURN_NOSTOP 0x1u
struct pmd_nreq_return_req {
	uint32_t n;                   /* 1 .. PMD_RETURN_MAX */
	uint32_t flags;               /* PMD_RETURN_NOSTOP */
	struct pmd_nreq_free_slot e[PMD_RETURN_MAX];
};
static_assert(offsetof(struct pmd_nreq_return_req, e) == 8, "return req.e");
struct pmd_nreq_return_rep {
	uint32_t n;                   /* as asked */
	uint32_t lost;                /* bit i: slot i was not lent to you */
	/* n * PMD_RETURN_FRAME bytes follow */
};
static_assert(sizeof(struct pmd_nreq_return_rep) == 8, "return rep");
static_assert(PMD_RETURN_MAX <= 32, "a bit per slot");
static_assert(sizeof(struct pmd_nreq_return_rep) +
	      PMD_RETURN_MAX * PMD_RETURN_FRAME <= PMD_NREQ_BODY_MAX,
	      "a return's answer in one message");

/* FWD_IMPORT: a task of the requesting node imports a token of a
 * container homed here; the answer is the handle of the task's proxy. */
struct pmd_nreq_fwd_import {
	uint64_t task;
	uint8_t token[32];            /* struct pm_token */
};
static_assert(sizeof(struct pmd_nreq_fwd_import) == 40, "fwd import");

/* FWD_OP: a task request (of a type a weak reference may make) on a
 * handle of the task's proxy here; the answer is the task reply
 * (struct pm_reply) and that request type's reply body. */
struct pmd_nreq_fwd_op {
	uint64_t task;
	uint16_t type;                /* enum pm_msg_type */
	uint16_t flags;               /* PMD_FWD_WINDOW */
	uint32_t len;                 /* request body bytes, which follow */
};
/* A READ or WRITE whose bytes go by RDMA between the home and the
 * forwarder's window (registered for it): the request (struct
 * pm_io_req, no data) is followed by the window's registration; the home
 * reads a WRITE's bytes from there before it runs it, and writes a READ's
 * there before it answers (an answer without bytes). */
#define PMD_FWD_WINDOW 0x1u
struct pmd_nreq_window {
	uint64_t key, base, len;      /* its registration */
};
static_assert(sizeof(struct pmd_nreq_window) == 24, "fwd window");
static_assert(sizeof(struct pmd_nreq_fwd_op) == 16, "fwd op");
static_assert(offsetof(struct pmd_nreq_fwd_op, len) == 12, "fwd op.len");

#endif
