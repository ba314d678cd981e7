/*
 * pm_proto.h - the wire format between a task (libpmclient) and its pmd.
 *
 * Transport: a Unix SOCK_SEQPACKET socket, so each message is one datagram
 * and framing is the kernel's. Every message starts with struct pm_msg_hdr
 * (magic, version, type, total length, sequence number); every reply also
 * carries struct pm_reply (a wire status and the culprit: which argument or
 * which frame). Layouts are fixed-width, little-endian (the only byte order
 * pmd runs on, checked below), with a static assertion on every offset.
 * Segment descriptors for mappings travel as SCM_RIGHTS ancillary data.
 *
 * Rules a receiver applies before acting on anything:
 *   - the datagram was not truncated and hdr.length equals its size;
 *   - magic and version match (else the session is closed: its framing
 *     cannot be trusted any more);
 *   - the type is known and the body has exactly the size of that type
 *     (READ/WRITE/MAP replies: at least the fixed part, then what the
 *     fixed part announces, bounded by PM_MSG_MAX).
 *
 * Version history (a version changes when a layout or meaning does;
 * types and statuses added alongside are listed under the version they
 * joined, and a pmd answers a type it does not know with EPROTO):
 *   1  sessions, containers, frames, maps, read/write, copy, sharing,
 *      locks, stats, nodes, the accounting check (DEBUG_STAT);
 *      then added: ATTACH_KEY, ATTACH, RESOLVE, MOVE (mappings that follow
 *      their frames, the fault session), the frame view (MAP's view and
 *      view_fd), PING_NODE, WINDOW and PM_IO_WINDOW (the I/O window), the
 *      status CROSS_HOME (a copy between homes); STOP and RESUME,
 *      the pmd's messages to a task's library on its fault session, and
 *      BREAK (a store to a copy-on-write frame through a mapping) and
 *      WHERE (a fault on a mapping the pmd took away, by frame);
 *      DEBUG_LOANS (slots lent to and borrowed from each node, checked);
 *      the status USER_LIMIT (a user's sessions); METRICS; TASKS,
 *      CONTAINERS and CONFIG (the operator's: EPERM for others);
 *      DRAIN; RECLAIM_HANDLER and RECLAIM (the extra-frame protocol);
 *      RING and the status USE_SOCKET (requests in shared memory).
 */
#ifndef PM_PROTO_H
#define PM_PROTO_H

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the pmd wire format is little-endian and so far so is every host it runs on"
#endif

#define PM_PROTO_MAGIC   0x31444d50u /* "PMD1" */
#define PM_PROTO_VERSION 1u

#define PM_IO_MAX        (64u * 1024u)       /* data bytes in one READ/WRITE */
#define PM_MSG_MAX       (PM_IO_MAX + 256u)  /* largest datagram, either way */
#define PM_MAP_MAX       4096u                /* frames in one MAP request */
#define PM_MAP_FDS_MAX   32u                  /* segment fds in one MAP reply */
#define PM_NODES_MAX     64u                  /* nodes in one NODES reply */
#define PM_SEGMENT_SLOTS 512u                 /* frames in a segment */

enum pm_msg_type {
	PM_MSG_HELLO = 1,
	PM_MSG_TASK_STAT = 2,
	PM_MSG_CREATE = 3,
	PM_MSG_DESTROY = 4,
	PM_MSG_STAT = 5,
	PM_MSG_ALLOCATE = 6,
	PM_MSG_DEALLOCATE = 7,
	PM_MSG_MAP = 8,
	PM_MSG_READ = 9,
	PM_MSG_WRITE = 10,
	PM_MSG_COPY = 11,
	PM_MSG_SHARE = 12,
	PM_MSG_UNSHARE = 13,
	PM_MSG_EXPORT = 14,
	PM_MSG_IMPORT = 15,
	PM_MSG_RELEASE = 16,
	PM_MSG_LOCK = 17,
	PM_MSG_UNLOCK = 18,
	PM_MSG_SET_POLICY = 19,
	PM_MSG_NODES = 20,
	PM_MSG_DEBUG_STAT = 21,
	PM_MSG_ATTACH_KEY = 22,
	PM_MSG_ATTACH = 23,
	PM_MSG_RESOLVE = 24,
	PM_MSG_MOVE = 25,
	PM_MSG_PING_NODE = 26,
	PM_MSG_WINDOW = 27,
	PM_MSG_STOP = 28,   /* pmd to library, on the fault session */
	PM_MSG_RESUME = 29, /* pmd to library, on the fault session */
	PM_MSG_BREAK = 30,  /* library to pmd, on the fault session */
	PM_MSG_WHERE = 31,  /* library to pmd, on the fault session */
	PM_MSG_DEBUG_LOANS = 32,
	PM_MSG_METRICS = 33,  /* empty -> the metrics, Prometheus text */
	PM_MSG_TASKS = 34,    /* the operator's: pm_list_req -> tasks */
	PM_MSG_CONTAINERS = 35, /* the operator's: pm_list_req -> containers */
	PM_MSG_CONFIG = 36,   /* the operator's: empty -> settings, text */
	PM_MSG_DRAIN = 37,    /* the operator's: pm_drain_req -> pm_drain_rep,
	                       * then the pmd stops */
	PM_MSG_RECLAIM_HANDLER = 38, /* pm_reclaim_handler_req -> empty */
	PM_MSG_RECLAIM = 39,  /* pmd to library, on the fault session */
	PM_MSG_RING = 40,     /* pm_ring_req -> pm_ring_rep + descriptors */
	PM_MSG_UNSHARED = 41, /* pmd to library, on the fault session */
	PM_MSG_TYPE_MAX,
	PM_MSG_REPLY = 0x8000, /* or-ed into the type of a reply */
};

/*
 * Wire status: fixed values, grouped by what failed so a peer knows what to
 * tear down. Translated to and from errno only by the two functions below.
 */
enum pm_status {
	PM_ST_OK = 0,
	/* the request itself */
	PM_ST_BAD_MESSAGE = 0x100,  /* malformed: EPROTO */
	PM_ST_BAD_ARGUMENT = 0x101, /* an argument out of range: EINVAL */
	PM_ST_UNSUPPORTED = 0x102,  /* not implemented here: EOPNOTSUPP */
	PM_ST_TOO_BIG = 0x103,      /* exceeds a protocol limit: EMSGSIZE */
	PM_ST_WINDOW_GONE = 0x104,  /* the session's I/O window was retired
	                             * (an RDMA through it failed and may
	                             * still happen): nothing was done; send
	                             * the bytes in the messages, or ask for
	                             * a new window (the library's: EBADFD,
	                             * never given to the task) */
	PM_ST_USE_SOCKET = 0x105,   /* a request in the ring that the pmd
	                             * serves only on the socket: nothing
	                             * was done, send it there (the
	                             * library's, never given to the task) */
	/* capabilities */
	PM_ST_BAD_HANDLE = 0x200,   /* not a handle of this session: EBADF */
	PM_ST_NO_RIGHT = 0x201,     /* handle lacks the right: EPERM */
	PM_ST_NOT_YOURS = 0x202,    /* bound to another task: EACCES */
	PM_ST_BAD_TOKEN = 0x203,    /* forged or altered token: EINVAL */
	PM_ST_NO_TASK = 0x204,      /* no such task: ESRCH */
	PM_ST_REVOKED = 0x205,      /* the capability was revoked: ESTALE */
	/* containers and frames */
	PM_ST_NO_FRAME = 0x300,     /* ENOENT */
	PM_ST_FRAME_EXISTS = 0x301, /* EEXIST */
	PM_ST_NO_MEMORY = 0x302,    /* memory or the task's limit: ENOMEM */
	PM_ST_BUSY = 0x303,         /* locked: EBUSY */
	PM_ST_FRAME_LOST = 0x304,   /* reclaimed or on a lost node: ESTALE */
	PM_ST_INTERNAL = 0x305,     /* the pmd failed (logged there): EIO */
	PM_ST_USER_LIMIT = 0x306,   /* the user's sessions: EUSERS */
	/* nodes */
	PM_ST_NODE_DOWN = 0x400,    /* ENODEV */
	PM_ST_NODE_IO = 0x401,      /* EIO */
	PM_ST_TIMEOUT = 0x402,      /* ETIMEDOUT */
	PM_ST_CROSS_HOME = 0x403,   /* no longer sent (the pmd copies between
	                             * homes): EXDEV */
};

/* The other way: an errno value to the wire status (EIO-like for the
 * unknown). */
static inline uint32_t pm_errno_to_status(int err)
{
	switch (err) {
	case 0: return PM_ST_OK;
	case EPROTO: return PM_ST_BAD_MESSAGE;
	case EINVAL: return PM_ST_BAD_ARGUMENT;
	case EOPNOTSUPP: return PM_ST_UNSUPPORTED;
	case EMSGSIZE: return PM_ST_TOO_BIG;
	case EBADFD: return PM_ST_WINDOW_GONE;
	case EBADF: return PM_ST_BAD_HANDLE;
	case EPERM: return PM_ST_NO_RIGHT;
	case EACCES: return PM_ST_NOT_YOURS;
	case ESRCH: return PM_ST_NO_TASK;
	case ENOENT: return PM_ST_NO_FRAME;
	case EEXIST: return PM_ST_FRAME_EXISTS;
	case ENOMEM: return PM_ST_NO_MEMORY;
	case EBUSY: return PM_ST_BUSY;
	case ESTALE: return PM_ST_FRAME_LOST;
	/* (The pmd's own names for two kinds of ESTALE and EINVAL, so that
	 * a peer can tell them apart: API errnos on the task's side.) */
	case EKEYREVOKED: return PM_ST_REVOKED;
	case EKEYREJECTED: return PM_ST_BAD_TOKEN;
	case ENODEV: return PM_ST_NODE_DOWN;
	case ETIMEDOUT: return PM_ST_TIMEOUT;
	case EIO: return PM_ST_NODE_IO;
	case EXDEV: return PM_ST_CROSS_HOME;
	case EUSERS: return PM_ST_USER_LIMIT;
	default: return PM_ST_INTERNAL;
	}
}

/* Between pmds: the same, but a revoked capability and a bad token keep
 * their own names (EKEYREVOKED, EKEYREJECTED), as a forwarded answer
 * passes them on to the task's pmd, which sends them on as they came. */
static inline int pm_status_to_errno(uint32_t st);
static inline int pmd_status_to_errno(uint32_t st)
{
	return st == PM_ST_REVOKED ? EKEYREVOKED
	       : st == PM_ST_BAD_TOKEN ? EKEYREJECTED : pm_status_to_errno(st);
}

static inline int pm_status_to_errno(uint32_t st)
{
	switch (st) {
	case PM_ST_OK: return 0;
	case PM_ST_BAD_MESSAGE: return EPROTO;
	case PM_ST_BAD_ARGUMENT: return EINVAL;
	case PM_ST_UNSUPPORTED: return EOPNOTSUPP;
	case PM_ST_TOO_BIG: return EMSGSIZE;
	case PM_ST_WINDOW_GONE: return EBADFD;
	case PM_ST_BAD_HANDLE: return EBADF;
	case PM_ST_NO_RIGHT: return EPERM;
	case PM_ST_NOT_YOURS: return EACCES;
	case PM_ST_BAD_TOKEN: return EINVAL;
	case PM_ST_NO_TASK: return ESRCH;
	case PM_ST_REVOKED: return ESTALE;
	case PM_ST_NO_FRAME: return ENOENT;
	case PM_ST_FRAME_EXISTS: return EEXIST;
	case PM_ST_NO_MEMORY: return ENOMEM;
	case PM_ST_BUSY: return EBUSY;
	case PM_ST_FRAME_LOST: return ESTALE;
	case PM_ST_INTERNAL: return EIO;
	case PM_ST_USER_LIMIT: return EUSERS;
	case PM_ST_NODE_DOWN: return ENODEV;
	case PM_ST_NODE_IO: return EIO;
	case PM_ST_TIMEOUT: return ETIMEDOUT;
	case PM_ST_CROSS_HOME: return EXDEV;
	default: return EPROTO;
	}
}

/* Header of every message. */
struct pm_msg_hdr {
	uint32_t magic;   /* PM_PROTO_MAGIC */
	uint16_t version; /* PM_PROTO_VERSION */
	uint16_t type;    /* enum pm_msg_type, | PM_MSG_REPLY in replies */
	uint32_t length;  /* whole datagram, header included, bytes */
	uint32_t seq;     /* chosen by the task, echoed in the reply */
};
static_assert(sizeof(struct pm_msg_hdr) == 16, "hdr size");
static_assert(offsetof(struct pm_msg_hdr, type) == 6, "hdr.type");
static_assert(offsetof(struct pm_msg_hdr, length) == 8, "hdr.length");
static_assert(offsetof(struct pm_msg_hdr, seq) == 12, "hdr.seq");

/* Follows the header in every reply; the reply body follows it. */
struct pm_reply {
	uint32_t status;  /* enum pm_status */
	uint32_t arg;     /* culprit argument, 1-based; 0: none */
	uint64_t culprit; /* culprit frame (or count), when the status has one */
};
static_assert(sizeof(struct pm_reply) == 16, "reply size");
static_assert(offsetof(struct pm_reply, culprit) == 8, "reply.culprit");

#define PM_REPLY_HDR (sizeof(struct pm_msg_hdr) + sizeof(struct pm_reply))

/* ---- request and reply bodies ---- */

struct pm_hello_req {
	uint32_t version; /* highest version the task speaks */
	uint32_t flags;   /* 0 */
};
/* A HELLO version of 2 or more: the library takes UNSHARED on its fault
 * session (below). Headers stay at PM_PROTO_VERSION either way, so that
 * a pmd of an earlier release serves such a library as before. */
#define PM_HELLO_UNSHARED 2u
static_assert(sizeof(struct pm_hello_req) == 8, "hello req");

struct pm_hello_rep {
	uint64_t task;        /* the session's pm_task_t */
	uint16_t node;        /* this pmd's node id */
	uint16_t pad;
	uint32_t frame_size;  /* PM_FRAME_SIZE */
	uint32_t io_max;      /* PM_IO_MAX */
	uint32_t map_max;     /* PM_MAP_MAX */
};
static_assert(sizeof(struct pm_hello_rep) == 24, "hello rep");
static_assert(offsetof(struct pm_hello_rep, frame_size) == 12, "hello.fs");

/* TASK_STAT: empty request. */
struct pm_task_stat_rep {
	uint64_t task;
	uint64_t guaranteed;
	uint64_t extra_limit;
	uint64_t allocated;
	uint64_t extra_allocated;
	uint64_t containers;
	uint32_t uid;
	uint32_t pid;
};
static_assert(sizeof(struct pm_task_stat_rep) == 56, "task stat rep");

/* Requests naming one handle: DESTROY, STAT, UNLOCK, RELEASE, EXPORT. */
struct pm_handle_req {
	uint64_t handle;
};
static_assert(sizeof(struct pm_handle_req) == 8, "handle req");

/* CREATE: empty request; SHARE and IMPORT reply with a handle too. */
struct pm_handle_rep {
	uint64_t handle;
};
static_assert(sizeof(struct pm_handle_rep) == 8, "handle rep");

struct pm_stat_rep {
	uint64_t frames;
	uint64_t resident;
	uint64_t remote;
	uint64_t swapped;
	uint64_t cow;
	uint32_t locked_ms_left;
	uint16_t home;
	uint16_t pad;
};
static_assert(sizeof(struct pm_stat_rep) == 48, "stat rep");

struct pm_alloc_req {
	uint64_t handle;
	uint64_t start;   /* first frame */
	uint32_t count;   /* frames wanted, >= 1 */
	uint32_t flags;   /* CONT_ALLOC_* */
};
static_assert(sizeof(struct pm_alloc_req) == 24, "alloc req");
static_assert(offsetof(struct pm_alloc_req, count) == 16, "alloc.count");

/* ALLOCATE replies with this body whatever the status: *count is written
 * also on error. */
struct pm_alloc_rep {
	uint32_t count;   /* frames allocated */
	uint32_t pad;
};
static_assert(sizeof(struct pm_alloc_rep) == 8, "alloc rep");

struct pm_dealloc_req {
	uint64_t handle;
	uint64_t start;
	uint32_t count;
	uint32_t pad;
};
static_assert(sizeof(struct pm_dealloc_req) == 24, "dealloc req");

struct pm_map_req {
	uint64_t handle;
	uint64_t start;
	uint32_t count;   /* 1 .. PM_MAP_MAX */
	uint32_t flags;   /* CONT_MAP_* */
};
static_assert(sizeof(struct pm_map_req) == 24, "map req");

/* One mmap: nframes consecutive slots of one segment. */
struct pm_map_run {
	uint64_t segment; /* segment id, stable for the segment's life */
	uint32_t slot;    /* first slot */
	uint16_t nframes; /* >= 1 */
	uint16_t prot;    /* CONT_MAP_READ | CONT_MAP_WRITE */
};
static_assert(sizeof(struct pm_map_run) == 16, "map run");

/*
 * MAP reply: the fixed part, then nruns runs covering the first `done`
 * frames of the request in order, then nsegs segment ids whose descriptors
 * ride along as SCM_RIGHTS in the same order (segments the session had not
 * been given yet), then, when view_fd is 1, the descriptor of the
 * container's frame view (last). done < count when the pmd stopped early
 * to bound the reply; the task asks again for the rest.
 */
struct pm_map_rep {
	uint32_t granted; /* CONT_MAP_* granted on every frame of the reply */
	uint32_t done;    /* frames covered */
	uint32_t nruns;
	uint32_t nsegs;
	uint64_t view;    /* id of the container's current view; 0: none */
	uint32_t view_fd; /* 1: its descriptor follows the segments' */
	uint32_t pad;
};
static_assert(sizeof(struct pm_map_rep) == 32, "map rep");
static_assert(offsetof(struct pm_map_rep, view) == 16, "map rep view");

/*
 * The frame view: shared memory, written by the pmd only (the memfd is
 * sealed against writable mappings before any task gets it), read by the
 * tasks that may map the container, so that mapping a resident frame needs
 * no message. A header, then nbuckets entries of an open-addressing hash
 * table (linear probing from pm_view_hash(frame), no tombstones: the pmd
 * deletes by backward shift). The pmd brackets every change with the
 * seqlock: seq is odd while it writes; a reader copies what it needs and
 * retries while seq was odd or changed. A view whose state is not LIVE has
 * been replaced (grown, or revoked): ask the pmd.
 */
#define PM_VIEW_MAGIC 0x57454956u /* "VIEW" */
#define PM_VIEW_LIVE  1u
#define PM_VIEW_DEAD  2u

struct pm_view_hdr {
	uint32_t magic;
	uint32_t state;       /* PM_VIEW_LIVE or PM_VIEW_DEAD */
	uint64_t seq;         /* seqlock, accessed atomically */
	uint64_t id;          /* this view's id */
	uint32_t nbuckets;    /* a power of two */
	uint32_t pad;
	uint64_t count;       /* entries in use */
	uint64_t locker;      /* task holding a server lock, 0: none; while
			       * set, the owner's maps go to the pmd */
	uint64_t reserved[2];
};
static_assert(sizeof(struct pm_view_hdr) == 64, "view hdr");

#define PM_VIEW_USED 0x1  /* bucket holds an entry */
#define PM_VIEW_COW  0x2  /* the frame shares its slot: never map writable */
#define PM_VIEW_HOLE 0x4  /* its slot is not physical yet: a map asks the
                           * pmd, which makes it so first */
/* The flags' top ten bits: the frame's *run*, how many frames from this
 * one on (this one included) are in the view in consecutive slots of this
 * segment, none COW nor HOLE (0 for a frame that is either). At every
 * even seq it says no more than that (it may say less for a while: the
 * pmd lengthens runs later, in place, when it is idle), so a reader that
 * sees run >= n maps n frames from one look-up; a smaller run says
 * nothing about the others. */
#define PM_VIEW_RUN_SHIFT 6
#define PM_VIEW_RUN_MAX   1023u
#define PM_VIEW_RUN(flags) ((unsigned)(flags) >> PM_VIEW_RUN_SHIFT)

struct pm_view_entry {
	uint64_t frame;
	uint64_t segment;     /* segment id */
	uint16_t slot;
	uint16_t flags;       /* PM_VIEW_* */
	uint32_t gen;
};
static_assert(sizeof(struct pm_view_entry) == 24, "view entry");

static inline uint32_t pm_view_hash(uint64_t frame, uint32_t nbuckets)
{
	frame *= 0x9e3779b97f4a7c15ull;
	return (uint32_t)(frame >> 32) & (nbuckets - 1);
}

struct pm_io_req {
	uint64_t handle;
	uint64_t frame;
	uint64_t offset;  /* bytes from the start of frame; may pass its end */
	uint32_t len;     /* 1 .. PM_IO_MAX */
	uint32_t flags;   /* PM_IO_WINDOW */
	/* WRITE: len bytes of data follow, or none with PM_IO_WINDOW */
};
static_assert(sizeof(struct pm_io_req) == 32, "io req");
/* READ reply: len bytes of data; with PM_IO_WINDOW none when the bytes
 * are in the window (local and remote frames), or len bytes (a handle
 * another home serves). WRITE reply: empty. */
#define PM_IO_WINDOW 0x1u /* the data is in the session's I/O window */

/*
 * WINDOW: empty request; the reply is pm_window_rep and the window's
 * descriptor: PM_IO_MAX bytes of shared memory (a memfd sealed against
 * resizing) through which the session's READ and WRITE may pass their
 * data (PM_IO_WINDOW), so that the pmd reads and writes remote frames
 * by RDMA straight to and from it. One a session (EEXIST after).
 */
struct pm_window_rep {
	uint64_t size;    /* PM_IO_MAX */
};

struct pm_copy_req {
	uint64_t src;
	uint64_t src_start;
	uint64_t dst;
	uint64_t dst_start;
	uint32_t count;
	uint32_t flags;
};
static_assert(sizeof(struct pm_copy_req) == 40, "copy req");
/* COPY reply: empty; on ENOENT/ENOMEM reply.culprit is frame_error. */

struct pm_share_req {
	uint64_t handle;
	uint64_t task;    /* the remote pm_task_t */
};
static_assert(sizeof(struct pm_share_req) == 16, "share req");
/* UNSHARE uses pm_share_req too. */

struct pm_token {
	uint8_t bytes[32];
};
static_assert(sizeof(struct pm_token) == 32, "token");
/* EXPORT: pm_handle_req -> pm_token. IMPORT: pm_token -> pm_handle_rep. */

struct pm_lock_req {
	uint64_t handle;
	uint32_t msec;
	uint32_t pad;
};
static_assert(sizeof(struct pm_lock_req) == 16, "lock req");

struct pm_policy_req {
	uint64_t handle;
	uint32_t policy;
	uint16_t node;
	uint16_t pad;
};
static_assert(sizeof(struct pm_policy_req) == 16, "policy req");

/* NODES: empty request; reply is the fixed part then count entries. */
struct pm_nodes_rep {
	uint32_t count;
	uint32_t pad;
};
struct pm_node_entry {
	uint16_t id;
	uint16_t version; /* the node requests spoken with it (this node:
	                   * its highest); 0: never heard from, or none in
	                   * common (a library that predates it reads 0) */
	uint32_t state;   /* PM_NODE_* */
	uint64_t frames_total;
	uint64_t frames_free;
	char address[64]; /* NUL-terminated */
	uint64_t incarnation; /* 0: never heard from */
};
static_assert(sizeof(struct pm_node_entry) == 96, "node entry");
static_assert(offsetof(struct pm_node_entry, address) == 24, "node.address");

/*
 * Mappings that follow frames. A task's library opens a second connection,
 * its fault session, which serves only RESOLVE: ATTACH_KEY (empty request)
 * on the task's session returns a one-time key; the fault session's first
 * message is ATTACH with the task and the key (instead of HELLO), from the
 * same process. RESOLVE asks where the frame that lived at (segment, slot)
 * is now; the reply carries the segment's descriptor when the task does
 * not hold it yet. MOVE (owner only) moves a frame to another slot.
 */
struct pm_attach_key_rep {
	uint8_t key[16];
};
static_assert(sizeof(struct pm_attach_key_rep) == 16, "attach key rep");

struct pm_attach_req {
	uint64_t task;
	uint8_t key[16];
};
static_assert(sizeof(struct pm_attach_req) == 24, "attach req");

struct pm_resolve_req {
	uint64_t segment;
	uint32_t slot;
	uint32_t pad;     /* 0 */
};
static_assert(sizeof(struct pm_resolve_req) == 16, "resolve req");

struct pm_resolve_rep {
	uint64_t segment; /* where the frame is now */
	uint32_t slot;
	uint16_t flags;   /* PM_VIEW_COW: never map it writable */
	uint16_t fd;      /* 1: the segment's descriptor is attached */
};
static_assert(sizeof(struct pm_resolve_rep) == 16, "resolve rep");

/*
 * STOP and RESUME: the pmd's messages to a task's library, on its fault
 * session (the only messages that flow that way unasked). Before frames
 * move, the pmd sends STOP (a header with seq of the pmd's own counting,
 * then struct pm_stop and its entries) to every task that holds a
 * segment they live in; the library
 *   - PM_STOP_WP: write-protects every mapping it has of those slots, so
 *     that stores to them wait (reads go on);
 *   - PM_STOP_DROP: takes away its mappings of those slots that stand for
 *     the frame named (PM_STOP_ANY: for any frame), so that touches of
 *     them fault;
 * and answers with an empty reply (type STOP | PM_MSG_REPLY, the same
 * seq) once done. Faults on what a STOP names wait until the RESUME with
 * the same seq (no body, no reply): then stores go on, and faults find
 * the frames where they are now. A library that does not answer by the
 * pmd's deadline has only its own stores and view at stake: the move
 * goes on without it.
 */
#define PM_STOP_WP    1u
#define PM_STOP_DROP  2u
#define PM_STOP_COW   3u
#define PM_STOP_ANY   UINT64_MAX

struct pm_stop {
	uint32_t count;   /* entries that follow */
	uint32_t pad;     /* 0 */
};
static_assert(sizeof(struct pm_stop) == 8, "stop");

struct pm_stop_ent {
	uint64_t segment;
	uint32_t slot;    /* the first slot, */
	uint16_t nslots;  /* and how many, 1..PMD's segment size */
	uint16_t kind;    /* PM_STOP_WP, PM_STOP_DROP or PM_STOP_COW */
	uint64_t frame;   /* DROP: the frame (or PM_STOP_ANY); else 0 */
};
static_assert(sizeof(struct pm_stop_ent) == 24, "stop entry");

#define PM_STOP_MAX ((PM_MSG_MAX - 16u - sizeof(struct pm_stop)) / \
		     sizeof(struct pm_stop_ent))

/*
 * PM_STOP_COW names slots that became shared copy-on-write (a logical
 * copy): the library write-protects its writable mappings of them and
 * keeps them so (no RESUME undoes it). A store there faults; the library
 * then sends BREAK on the fault session, naming the mapping's slot and
 * the frame it stands for: the pmd gives that frame a private slot
 * (first taking its mappings away with a STOP) and answers BREAK_BROKEN,
 * so that the store retries and faults the frame in where it is now; or
 * it answers 0 (the slot is not shared any more: the store may go on)
 * or ESTALE (the frame is elsewhere: the mapping is stale).
 *
 * UNSHARED (the same body as STOP: struct pm_stop, then entries of kind
 * PM_STOP_COW; no reply) tells a library that said PM_HELLO_UNSHARED in
 * its HELLO that the slots named are no longer shared: one frame holds
 * each. Its writable mappings of them take stores again, but where a
 * stop in force still holds them. The pmd sends it only while no STOP
 * waits for its move, so that it never overtakes a share whose STOP
 * went out first; a slot shared again after it gets a new PM_STOP_COW.
 * It may come twice for a slot (a round some library could not take
 * whole is said again).
 * A library that never hears it pays one BREAK per page instead.
 */
#define PM_BREAK_BROKEN 1u

struct pm_break_req {
	uint64_t segment;
	uint32_t slot;
	uint32_t pad;     /* 0 */
	uint64_t handle;  /* the container, as the task holds it */
	uint64_t frame;
};
static_assert(sizeof(struct pm_break_req) == 32, "break req");

struct pm_break_rep {
	uint32_t flags;   /* PM_BREAK_BROKEN, or 0 */
	uint32_t pad;
};
static_assert(sizeof(struct pm_break_rep) == 8, "break rep");

/* WHERE: like RESOLVE, but by frame (a mapping the pmd took away with
 * PM_STOP_DROP: its slot lives on, for other frames); the same reply. */
struct pm_where_req {
	uint64_t handle;  /* the container, as the task holds it */
	uint64_t frame;
};
static_assert(sizeof(struct pm_where_req) == 16, "where req");

struct pm_move_req {
	uint64_t handle;
	uint64_t frame;
};
static_assert(sizeof(struct pm_move_req) == 16, "move req");

/* PING_NODE: a round trip from this node's pmd to another over the
 * fabric (the node request layer), answered when the other node answers. */
struct pm_ping_req {
	uint16_t node;
	uint16_t pad;
	uint32_t pad2;
};
static_assert(sizeof(struct pm_ping_req) == 8, "ping req");

struct pm_ping_rep {
	uint64_t incarnation; /* the other node's */
	uint64_t frames_free; /* as it says */
	uint64_t rtt_ns;      /* measured by this node's pmd */
};
static_assert(sizeof(struct pm_ping_rep) == 24, "ping rep");

/* DEBUG_STAT: empty request. */
struct pm_debug_rep {
	uint64_t tasks;
	uint64_t containers;
	uint64_t frames;
	uint64_t charged;
	uint64_t slots_used;
	uint64_t segments;
	uint64_t frames_total;
	uint64_t frames_free;
	uint32_t invariant_ok;
	uint32_t pad;
	uint64_t requests;     /* requests served since start */
};
static_assert(sizeof(struct pm_debug_rep) == 80, "debug rep");

/* DEBUG_LOANS: empty request. What this node lends each other node and
 * borrows from it, as its own books say; ok when they agree with
 * themselves (what the lender side records slot by slot, the budget and
 * the frames that live elsewhere). Nodes that lend or borrow nothing
 * are left out. */
struct pm_debug_loan_ent {
	uint16_t node;
	uint16_t pad;
	uint32_t pad2;
	uint64_t lent_to;       /* our slots that hold its frames */
	uint64_t borrowed_from; /* its slots that hold frames of ours, or
	                         * are on their way back to it */
};
static_assert(sizeof(struct pm_debug_loan_ent) == 24, "debug loan");
struct pm_debug_loans_rep {
	uint32_t n;
	uint32_t ok;
	struct pm_debug_loan_ent e[PM_NODES_MAX];
};
static_assert(sizeof(struct pm_debug_loans_rep) == 8 + 24 * PM_NODES_MAX,
	      "debug loans rep");

/* TASKS and CONTAINERS list in id order from after `after`, a page a
 * reply; `more` says whether another page follows. Only a session of the
 * pmd's own user (or root) may ask: EPERM otherwise. */
struct pm_list_req {
	uint64_t after;         /* the last id of the previous page; 0 first */
	uint64_t task;          /* CONTAINERS: this task's only; 0: all */
};
static_assert(sizeof(struct pm_list_req) == 16, "list req");
struct pm_list_rep {
	uint32_t n;
	uint32_t more;
	/* n entries follow */
};
struct pm_task_ent {
	uint64_t task;
	uint32_t uid, pid;
	uint64_t guaranteed, extra_limit, allocated, extra_allocated;
	uint64_t containers;
	uint32_t handles;
	uint32_t flags;         /* PM_TASK_PROXY: another node's task */
};
static_assert(sizeof(struct pm_task_ent) == 64, "task ent");
#define PM_TASK_PROXY 0x1u
struct pm_container_ent {
	uint64_t id;            /* home << 48 | serial */
	uint64_t owner;         /* its owner task */
	uint64_t frames, remote, cow;
	uint32_t shares;        /* weak references */
	uint32_t locked_ms_left;
};
static_assert(sizeof(struct pm_container_ent) == 48, "container ent");
#define PM_LIST_PAGE 512u   /* entries a reply at most */

/* DRAIN (the operator's): this node lends no more, every home it lends
 * slots to takes its frames back (home, by RDMA), and once nothing is
 * lent the answer comes and the pmd stops. ETIMEDOUT when timeout_ms
 * passed first (culprit: a node that still holds slots), EOPNOTSUPP when
 * a home runs a release without RECALL (culprit: that node); either way
 * the node goes on lending and serving, nothing lost. */
struct pm_drain_req {
	uint32_t timeout_ms;    /* 0: 30000 */
	uint32_t pad;
};
static_assert(sizeof(struct pm_drain_req) == 8, "drain req");
struct pm_drain_rep {
	uint64_t slots;         /* slots lent when it began */
	uint32_t homes;         /* the homes asked for them */
	uint32_t ms;            /* how long it took */
};
static_assert(sizeof(struct pm_drain_rep) == 16, "drain rep");

/*
 * The extra-frame protocol. RECLAIM_HANDLER (on the task's session) says
 * whether the task has a reclaim handler (on = 1) or no more (0); the pmd
 * asks only such tasks, and only over their fault session (EOPNOTSUPP
 * without one: the library has no thread that hears the pmd). RECLAIM is
 * the pmd's request to such a library, unasked, on the fault session:
 * give back `frames` extra frames (the library calls the handler on a
 * thread of its own). No reply: the pmd watches its budget, and after
 * its grace period takes what is still missing.
 */
struct pm_reclaim_handler_req {
	uint32_t on;            /* 1: a handler is set; 0: none */
	uint32_t pad;           /* 0 */
};
static_assert(sizeof(struct pm_reclaim_handler_req) == 8, "reclaim handler");
struct pm_reclaim {
	uint32_t frames;        /* extra frames wanted back, >= 1 */
	uint32_t pad;
};
static_assert(sizeof(struct pm_reclaim) == 8, "reclaim");

/*
 * The request ring (RING): requests and their replies in memory the task
 * and its pmd share, so that a request costs no system call while the
 * pmd is awake, and the task's threads have several in flight.
 *
 * The request: pm_ring_req (slots: PM_RING_SLOTS). The reply: pm_ring_rep
 * and 2 + slots descriptors: the ring (a memfd sealed against resizing,
 * PM_RING_BYTES), the doorbell (an eventfd), then one I/O window per slot
 * (as WINDOW's). One ring a session (EEXIST after); a fault session and
 * a session without HELLO have none (EPROTO).
 *
 * Layout: a header page, then the slots. A slot is the task's while FREE
 * (claimed among its threads as the library likes), holds a request
 * once SUBMITTED (msg: the header and body as on the socket, len bytes),
 * and is the pmd's until DONE (msg: the reply, as on the socket, without
 * descriptors). A request may be any type but HELLO, ATTACH_KEY,
 * ATTACH, WINDOW, RING and the fault session's; a READ or WRITE through
 * the ring names its slot's window (PM_IO_WINDOW), never the session's.
 * The pmd answers PM_ST_USE_SOCKET to those it serves only on the socket
 * (a handle another home serves, IMPORT, the operator's, a MAP whose
 * reply would bring descriptors): nothing done (a MAP may have brought
 * its frames home first). The pmd copies
 * a request out before it looks at it, and trusts nothing in the ring: a
 * slot it serves is its own until it writes DONE, whatever the task
 * writes meanwhile.
 *
 * Waking. The task counts its submissions (submitted, after the slot's
 * state) and, when the pmd set `armed` (it is about to sleep, or
 * sleeps), writes 1 to the doorbell. A task that waits for DONE sets its
 * slot's `waiters` and sleeps on `state` (a futex on the shared page):
 * the pmd wakes it after DONE when waiters is set. Both sides may spin a
 * while before they sleep: pmd_cpu (the CPU the pmd runs on, or
 * PM_RING_NO_CPU while it sleeps) and a slot's cpu (its submitter's)
 * tell whether the other side runs on another CPU, the only case where
 * spinning can pay.
 */
#define PM_RING_SLOTS      8u
#define PM_RING_SLOT_BYTES 4096u
#define PM_RING_MSG_MAX    (PM_RING_SLOT_BYTES - 64u)
#define PM_RING_BYTES      (4096u + PM_RING_SLOTS * PM_RING_SLOT_BYTES)
#define PM_RING_NO_CPU     UINT32_MAX
enum pm_ring_state {
	PM_RING_FREE = 0,
	PM_RING_SUBMITTED = 1,
	PM_RING_DONE = 2,
};
struct pm_ring_req {
	uint32_t slots;         /* PM_RING_SLOTS */
	uint32_t pad;           /* 0 */
};
static_assert(sizeof(struct pm_ring_req) == 8, "ring req");
struct pm_ring_rep {
	uint32_t slots;         /* PM_RING_SLOTS */
	uint32_t slot_bytes;    /* PM_RING_SLOT_BYTES */
	uint64_t size;          /* PM_RING_BYTES */
	uint64_t window;        /* each slot's window: PM_IO_MAX */
};
static_assert(sizeof(struct pm_ring_rep) == 24, "ring rep");
struct pm_ring_hdr {
	/* The pmd's line. */
	uint32_t armed;         /* 1: ring the doorbell after a submission */
	uint32_t pmd_cpu;       /* where the pmd polls, or PM_RING_NO_CPU */
	uint8_t pad0[56];
	/* The task's line. */
	uint32_t submitted;     /* submissions so far (wraps) */
	uint8_t pad1[60];
};
static_assert(sizeof(struct pm_ring_hdr) == 128, "ring hdr");
struct pm_ring_slot {
	uint32_t state;         /* enum pm_ring_state */
	uint32_t waiters;       /* the task sleeps on state: wake it */
	uint32_t len;           /* of msg: the request, then the reply */
	uint32_t cpu;           /* the submitter's CPU */
	uint8_t pad[48];
	uint8_t msg[PM_RING_MSG_MAX] __attribute__((aligned(16)));
};
static_assert(sizeof(struct pm_ring_slot) == PM_RING_SLOT_BYTES, "ring slot");
static_assert(offsetof(struct pm_ring_slot, msg) == 64, "ring slot msg");

static inline void pm_msg_hdr_init(struct pm_msg_hdr *h, uint16_t type,
				   uint32_t length, uint32_t seq)
{
	h->magic = PM_PROTO_MAGIC;
	h->version = PM_PROTO_VERSION;
	h->type = type;
	h->length = length;
	h->seq = seq;
}

#endif /* PM_PROTO_H */
