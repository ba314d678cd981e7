/*
 * proto.h - pmfs's control protocol, between a mount (pmfs) and the file
 * server (pmfsd), over one TCP connection a mount.
 *
 * It carries requests, attributes, names and capability tokens; file data
 * never travels in it. To read, a mount shares one of its own containers
 * with the server and sends the token: the server copies the file's frames
 * into it (a logical copy when both containers have one home, else the
 * pmds move the bytes node to node) and the mount unshares and maps them.
 * To write back, the mount shares the container holding its writes and the
 * server copies those frames into the file's container.
 *
 * A message is a header then `len` bytes of payload; every request has
 * exactly one reply, with the request's op and seq, in order. Fields are
 * fixed-width little-endian, in the order given for each op below;
 * a string is a u16 length then its bytes (no NUL). A reply's status is
 * 0 or a positive errno; a reply that is not 0 has no payload.
 *
 * Version history: 1, the first.
 */
#ifndef PMFS_PROTO_H
#define PMFS_PROTO_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pm/pm.h>

#define PMFS_MAGIC       0x73666d70u   /* "pmfs" */
#define PMFS_VERSION     1
#define PMFS_MSG_MAX     (256 * 1024)  /* payload bytes; more: the peer is cut off */
#define PMFS_NAME_MAX    255
#define PMFS_TARGET_MAX  4095          /* a symbolic link's target */
#define PMFS_RANGES_MAX  4096          /* ranges of one COMMIT */
#define PMFS_FETCH_MAX   65536         /* frames of one FETCH or range */
#define PMFS_READDIR_MAX (32 * 1024)   /* payload bytes of a READDIR reply */
#define PMFS_ROOT_INO    1
#define PMFS_FIRST_COOKIE 3            /* readdir: 1 and 2 are . and .. */

struct pmfs_hdr {
	uint32_t magic;   /* PMFS_MAGIC */
	uint16_t version; /* PMFS_VERSION */
	uint16_t op;      /* enum pmfs_op */
	uint32_t len;     /* payload bytes that follow, <= PMFS_MSG_MAX */
	uint32_t seq;     /* the request's; echoed by its reply */
	int32_t status;   /* replies: 0 or a positive errno */
	uint32_t pad;     /* 0 */
};
static_assert(offsetof(struct pmfs_hdr, op) == 6, "pmfs_hdr.op");
static_assert(offsetof(struct pmfs_hdr, len) == 8, "pmfs_hdr.len");
static_assert(offsetof(struct pmfs_hdr, seq) == 12, "pmfs_hdr.seq");
static_assert(offsetof(struct pmfs_hdr, status) == 16, "pmfs_hdr.status");
static_assert(sizeof(struct pmfs_hdr) == 24, "pmfs_hdr size");

/* Requests, with their payloads (request -> reply). "attr" is the file's
 * attributes as pmfs_attr_put writes them. */
enum pmfs_op {
	PMFS_HELLO = 1,  /* u64 task -> u64 server task, u64 generation */
	PMFS_LOOKUP,     /* u64 dir, str name -> attr */
	PMFS_GETATTR,    /* u64 ino -> attr */
	PMFS_SETATTR,    /* u64 ino, u32 valid (PMFS_SET_*), u32 mode, u32 uid,
			  * u32 gid, u64 size, i64 atime s, u32 ns, i64 mtime
			  * s, u32 ns -> attr */
	PMFS_MAKE,       /* u64 dir, u32 mode (with the type), u32 uid, u32
			  * gid, u32 flags (PMFS_MAKE_OPEN), str name, str
			  * target (symbolic links) -> attr */
	PMFS_UNLINK,     /* u64 dir, str name -> nothing */
	PMFS_RMDIR,      /* u64 dir, str name -> nothing */
	PMFS_RENAME,     /* u64 dir, str name, u64 new dir, str new name,
			  * u32 flags (0 or PMFS_RENAME_NOREPLACE) -> nothing */
	PMFS_READDIR,    /* u64 dir, u64 cookie -> u32 n, n x (u64 ino, u32
			  * mode, u64 cookie, str name), u8 end */
	PMFS_READLINK,   /* u64 ino -> str target */
	PMFS_OPEN,       /* u64 ino -> attr; the server counts the open */
	PMFS_RELEASE,    /* u64 ino -> nothing; one open less */
	PMFS_FETCH,      /* u64 ino, u64 start, u32 count, token -> attr:
			  * frames start..start+count-1 (cut at the file's
			  * end) copied into the token's container, at the
			  * same frame numbers */
	PMFS_COMMIT,     /* u64 ino, u64 size, token, u32 n, n x (u64 start,
			  * u32 count) -> attr: the file grows to size if
			  * shorter, and takes the ranges' frames from the
			  * token's container */
	PMFS_COPY,       /* u64 ino in, u64 offset in, u64 ino out, u64
			  * offset out, u64 len -> u64 copied, attr (out) */
	PMFS_STATFS,     /* nothing -> u64 frames total, u64 frames free,
			  * u64 frames the server may still take, u64 files */
	PMFS_SETPLACE,   /* u64 ino, u32 policy (PM_PLACE_*), u32 node ->
			  * nothing */
	PMFS_INFO,       /* u64 ino -> str (where the file's frames are) */
	PMFS_OP_MAX
};

#define PMFS_SET_MODE      0x01
#define PMFS_SET_UID       0x02
#define PMFS_SET_GID       0x04
#define PMFS_SET_SIZE      0x08
#define PMFS_SET_ATIME     0x10
#define PMFS_SET_MTIME     0x20
#define PMFS_SET_ATIME_NOW 0x40
#define PMFS_SET_MTIME_NOW 0x80
#define PMFS_SET_ALL       0xff

#define PMFS_MAKE_OPEN 0x1           /* the new file is opened (create) */
#define PMFS_RENAME_NOREPLACE 0x1

/* A file's attributes. version changes whenever its data does. */
struct pmfs_attr {
	uint64_t ino;
	uint64_t size;     /* bytes */
	uint64_t version;  /* of the data: one more at each change */
	uint64_t frames;   /* frames the file's container holds */
	uint32_t mode, nlink, uid, gid;
	int64_t atime, mtime, ctime;      /* seconds */
	uint32_t atime_ns, mtime_ns, ctime_ns;
};

/* A message being built or read: a cursor over a buffer. Reading past
 * the end, or writing past the capacity, sets bad and reads zeros. */
struct pmfs_buf {
	uint8_t *p;   /* the payload */
	size_t len;   /* bytes in it (reading) or written (building) */
	size_t cap;   /* capacity (building) */
	size_t off;   /* read cursor */
	bool bad;     /* overrun, or a string too long */
};

void pmfs_buf_init(struct pmfs_buf *b, void *p, size_t cap);
void pmfs_buf_reader(struct pmfs_buf *b, const void *p, size_t len);
void pmfs_put_u8(struct pmfs_buf *b, uint8_t v);
void pmfs_put_u32(struct pmfs_buf *b, uint32_t v);
void pmfs_put_u64(struct pmfs_buf *b, uint64_t v);
void pmfs_put_bytes(struct pmfs_buf *b, const void *p, size_t n);
void pmfs_put_str(struct pmfs_buf *b, const char *s, size_t n);
void pmfs_put_attr(struct pmfs_buf *b, const struct pmfs_attr *a);
uint8_t pmfs_get_u8(struct pmfs_buf *b);
uint32_t pmfs_get_u32(struct pmfs_buf *b);
uint64_t pmfs_get_u64(struct pmfs_buf *b);
void pmfs_get_bytes(struct pmfs_buf *b, void *p, size_t n);
/* A string of at most max bytes into s (NUL-terminated, max + 1 bytes);
 * its length, or bad. */
size_t pmfs_get_str(struct pmfs_buf *b, char *s, size_t max);
void pmfs_get_attr(struct pmfs_buf *b, struct pmfs_attr *a);
/* A name a directory may hold: 1..PMFS_NAME_MAX bytes, no '/', no NUL,
 * not "." or "..". */
bool pmfs_name_ok(const char *s, size_t n);

/* Frames that hold bytes bytes. */
static inline uint64_t pmfs_frames(uint64_t bytes)
{
	return (bytes + PM_FRAME_SIZE - 1) / PM_FRAME_SIZE;
}

/* A line on stderr, after the program's name (each program defines
 * pmfs_prog). */
extern const char *pmfs_prog;
void pmfs_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Buckets of tables of size (a power of two): by inode, by (directory,
 * name). */
size_t pmfs_hash_ino(uint64_t ino, size_t size);
size_t pmfs_hash_name(uint64_t dir, const char *name, size_t size);

/* Whole messages on a blocking socket: 0, or an errno (EPROTO: not a
 * pmfs message, or longer than PMFS_MSG_MAX; ECONNRESET: the peer closed).
 * pmfs_recv fills hdr and up to cap payload bytes into p. */
int pmfs_send(int fd, uint16_t op, uint32_t seq, int32_t status,
	      const void *p, uint32_t len);
int pmfs_recv(int fd, struct pmfs_hdr *hdr, void *p, size_t cap);

#endif
