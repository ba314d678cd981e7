/*
 * proto.c - the codec of pmfs's control protocol (see proto.h): cursors
 * that never read or write out of bounds, and whole messages on sockets.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"

void pmfs_buf_init(struct pmfs_buf *b, void *p, size_t cap)
{
	*b = (struct pmfs_buf){ .p = p, .cap = cap };
}

void pmfs_buf_reader(struct pmfs_buf *b, const void *p, size_t len)
{
	*b = (struct pmfs_buf){ .p = (uint8_t *)p, .len = len, .cap = len };
}

void pmfs_put_bytes(struct pmfs_buf *b, const void *p, size_t n)
{
	if (b->bad || n > b->cap - b->len) {
		b->bad = true;
		return;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* The hosts are little-endian (x86-64, arm64 as Linux runs them): the
 * wire's byte order is theirs. */
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian");

void pmfs_put_u8(struct pmfs_buf *b, uint8_t v)
{
	pmfs_put_bytes(b, &v, 1);
}

void pmfs_put_u32(struct pmfs_buf *b, uint32_t v)
{
	pmfs_put_bytes(b, &v, 4);
}

void pmfs_put_u64(struct pmfs_buf *b, uint64_t v)
{
	pmfs_put_bytes(b, &v, 8);
}

void pmfs_put_str(struct pmfs_buf *b, const char *s, size_t n)
{
	uint16_t n16 = (uint16_t)n;

	if (n > UINT16_MAX) {
		b->bad = true;
		return;
	}
	pmfs_put_bytes(b, &n16, 2);
	pmfs_put_bytes(b, s, n);
}

void pmfs_put_attr(struct pmfs_buf *b, const struct pmfs_attr *a)
{
	pmfs_put_u64(b, a->ino);
	pmfs_put_u64(b, a->size);
	pmfs_put_u64(b, a->version);
	pmfs_put_u64(b, a->frames);
	pmfs_put_u32(b, a->mode);
	pmfs_put_u32(b, a->nlink);
	pmfs_put_u32(b, a->uid);
	pmfs_put_u32(b, a->gid);
	pmfs_put_u64(b, (uint64_t)a->atime);
	pmfs_put_u64(b, (uint64_t)a->mtime);
	pmfs_put_u64(b, (uint64_t)a->ctime);
	pmfs_put_u32(b, a->atime_ns);
	pmfs_put_u32(b, a->mtime_ns);
	pmfs_put_u32(b, a->ctime_ns);
}

void pmfs_get_bytes(struct pmfs_buf *b, void *p, size_t n)
{
	if (b->bad || n > b->len - b->off) {
		b->bad = true;
		memset(p, 0, n);
		return;
	}
	memcpy(p, b->p + b->off, n);
	b->off += n;
}

uint8_t pmfs_get_u8(struct pmfs_buf *b)
{
	uint8_t v;

	pmfs_get_bytes(b, &v, 1);
	return v;
}

uint32_t pmfs_get_u32(struct pmfs_buf *b)
{
	uint32_t v;

	pmfs_get_bytes(b, &v, 4);
	return v;
}

uint64_t pmfs_get_u64(struct pmfs_buf *b)
{
	uint64_t v;

	pmfs_get_bytes(b, &v, 8);
	return v;
}

size_t pmfs_get_str(struct pmfs_buf *b, char *s, size_t max)
{
	uint16_t n;

	pmfs_get_bytes(b, &n, 2);
	if (b->bad || n > max || n > b->len - b->off) {
		b->bad = true;
		s[0] = '\0';
		return 0;
	}
	memcpy(s, b->p + b->off, n);
	s[n] = '\0';
	b->off += n;
	return n;
}

void pmfs_get_attr(struct pmfs_buf *b, struct pmfs_attr *a)
{
	a->ino = pmfs_get_u64(b);
	a->size = pmfs_get_u64(b);
	a->version = pmfs_get_u64(b);
	a->frames = pmfs_get_u64(b);
	a->mode = pmfs_get_u32(b);
	a->nlink = pmfs_get_u32(b);
	a->uid = pmfs_get_u32(b);
	a->gid = pmfs_get_u32(b);
	a->atime = (int64_t)pmfs_get_u64(b);
	a->mtime = (int64_t)pmfs_get_u64(b);
	a->ctime = (int64_t)pmfs_get_u64(b);
	a->atime_ns = pmfs_get_u32(b);
	a->mtime_ns = pmfs_get_u32(b);
	a->ctime_ns = pmfs_get_u32(b);
}

void pmfs_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", pmfs_prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

size_t pmfs_hash_ino(uint64_t ino, size_t size)
{
	return (size_t)((ino * 0x9e3779b97f4a7c15ull) >> 20) & (size - 1);
}

size_t pmfs_hash_name(uint64_t dir, const char *name, size_t size)
{
	uint64_t h = 1469598103934665603ull ^ dir;

	for (; *name; name++)
		h = (h ^ (uint8_t)*name) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29)) & (size - 1);
}

bool pmfs_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > PMFS_NAME_MAX || memchr(s, '/', n) ||
	    memchr(s, '\0', n))
		return false;
	return !(n == 1 && s[0] == '.') &&
	       !(n == 2 && s[0] == '.' && s[1] == '.');
}

static int io_all(int fd, void *p, size_t n, bool out)
{
	uint8_t *q = p;

	while (n) {
		ssize_t r = out ? send(fd, q, n, MSG_NOSIGNAL) : read(fd, q, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		if (r == 0)
			return ECONNRESET;
		q += r;
		n -= (size_t)r;
	}
	return 0;
}

int pmfs_send(int fd, uint16_t op, uint32_t seq, int32_t status,
	      const void *p, uint32_t len)
{
	struct pmfs_hdr h = { .magic = PMFS_MAGIC, .version = PMFS_VERSION,
			      .op = op, .len = len, .seq = seq,
			      .status = status };
	struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)p, len } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	size_t total = sizeof(h) + len, done = 0;

	if (len > PMFS_MSG_MAX)
		return EMSGSIZE;
	while (done < total) {
		ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		done += (size_t)r;
		/* A short send: on from where it stopped. */
		while (r > 0 && m.msg_iovlen) {
			size_t n = (size_t)r < m.msg_iov->iov_len ?
					   (size_t)r : m.msg_iov->iov_len;

			m.msg_iov->iov_base = (uint8_t *)m.msg_iov->iov_base + n;
			m.msg_iov->iov_len -= n;
			r -= (ssize_t)n;
			if (!m.msg_iov->iov_len) {
				m.msg_iov++;
				m.msg_iovlen--;
			}
		}
	}
	return 0;
}

int pmfs_recv(int fd, struct pmfs_hdr *hdr, void *p, size_t cap)
{
	int err = io_all(fd, hdr, sizeof(*hdr), false);

	if (err)
		return err;
	if (hdr->magic != PMFS_MAGIC || hdr->version != PMFS_VERSION ||
	    hdr->len > PMFS_MSG_MAX || hdr->len > cap)
		return EPROTO;
	return io_all(fd, p, hdr->len, false);
}
