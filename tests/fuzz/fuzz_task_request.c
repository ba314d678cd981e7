/*
 * fuzz_task_request.c - tasks' requests, as a pmd reads them from its
 * socket: the framing, every request type's decoder and what it does.
 *
 * An input is a series of records, each sent as one datagram on one of
 * two connections to a pmd in this process; after each, the pmd runs
 * until it answers (or a little while, when the request waits):
 *
 *   u8 flags    bit 0: the second connection; bit 1: raw (the bytes go
 *               as they are, header included); bit 2: a second datagram
 *               is sent before the first's answer is read
 *   u8 type     the request type (enum pm_msg_type)
 *   u16 len     body bytes that follow (cut to what is left)
 *
 * Otherwise the target writes the header. So that inputs reach past the
 * capability checks, small values stand for what the pmd gave: a handle
 * field below 64 becomes the n-th handle the connections were given, a
 * task field below 64 a task of this input, an IMPORT whose token starts
 * with a zero byte the last token exported, an ATTACH with task 0 the
 * first connection's task and key.
 *
 * After the input both connections close: the pmd must end their tasks
 * and come back to holding nothing, its accounting exact.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "pm_proto.h"

#define HANDLES_MAX 64

static struct fuzz_pmd *pmd;

struct state {
	int fd[2];
	bool open[2];
	bool replied;                /* the awaited reply came (or the
	                              * connection closed) */
	int awaited;                 /* connection that waits for one */
	uint64_t handles[HANDLES_MAX];
	unsigned nhandles;
	uint64_t tasks[2];
	struct pm_token token;
	bool have_token;
	uint8_t key[16];
	uint32_t seq;
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	pmd = fuzz_pmd_start(false);
	return 0;
}

/* Takes in one reply of connection i (closing the descriptors it
 * carries) and keeps what later requests may name. */
static void reply_take(struct state *st, int i)
{
	static uint8_t buf[PM_MSG_MAX + 1];
	union {
		char b[CMSG_SPACE(sizeof(int) * 64)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.b,
			      .msg_controllen = sizeof(ctl.b) };
	const struct pm_msg_hdr *h = (const struct pm_msg_hdr *)buf;
	const struct pm_reply *r = (const struct pm_reply *)(h + 1);
	const uint8_t *body = buf + PM_REPLY_HDR;
	ssize_t n = recvmsg(st->fd[i], &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			st->open[i] = false;
			if (i == st->awaited)
				st->replied = true;
		}
		return;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
	     c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		     k++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(fd));
			close(fd);
		}
	}
	if ((size_t)n < PM_REPLY_HDR || !(h->type & PM_MSG_REPLY))
		return; /* a STOP or RESUME of the pmd's: left unanswered */
	if (i == st->awaited)
		st->replied = true;
	if (getenv("PMD_FUZZ_VERBOSE"))
		fprintf(stderr, "conn %d: reply to type %u: status %u\n", i,
			h->type & ~PM_MSG_REPLY, r->status);
	if (r->status != PM_ST_OK)
		return;
	n -= (ssize_t)PM_REPLY_HDR;
	switch (h->type & ~PM_MSG_REPLY) {
	case PM_MSG_HELLO:
		if (n >= 8)
			memcpy(&st->tasks[i], body, 8);
		break;
	case PM_MSG_CREATE:
	case PM_MSG_SHARE:
	case PM_MSG_IMPORT:
		if (n >= 8 && st->nhandles < HANDLES_MAX)
			memcpy(&st->handles[st->nhandles++], body, 8);
		break;
	case PM_MSG_EXPORT:
		if ((size_t)n >= sizeof(st->token)) {
			memcpy(&st->token, body, sizeof(st->token));
			st->have_token = true;
		}
		break;
	case PM_MSG_ATTACH_KEY:
		if ((size_t)n >= sizeof(st->key))
			memcpy(st->key, body, sizeof(st->key));
		break;
	}
}

static bool replied(void *arg)
{
	struct state *st = arg;
	struct pollfd pf[2];
	int n = 0;

	for (int i = 0; i < 2; i++)
		if (st->open[i])
			pf[n++] = (struct pollfd){ .fd = st->fd[i],
						   .events = POLLIN };
	if (poll(pf, (nfds_t)n, 0) > 0)
		for (int k = 0; k < n; k++)
			if (pf[k].revents)
				reply_take(st, pf[k].fd == st->fd[0] ? 0 : 1);
	return st->replied;
}

/* The handle a small value stands for. */
static void handle_fix(const struct state *st, uint8_t *field)
{
	uint64_t v;

	memcpy(&v, field, sizeof(v));
	if (v < 64 && st->nhandles) {
		v = st->handles[v % st->nhandles];
		memcpy(field, &v, sizeof(v));
	}
}

static void body_fix(const struct state *st, uint16_t type, uint8_t *b,
		     size_t len)
{
	uint64_t v;

	if (len >= 8 && type != PM_MSG_HELLO && type != PM_MSG_IMPORT &&
	    type != PM_MSG_ATTACH && type != PM_MSG_RESOLVE &&
	    type != PM_MSG_PING_NODE && type != PM_MSG_BREAK)
		handle_fix(st, b);
	if (type == PM_MSG_BREAK && len >= offsetof(struct pm_break_req, frame))
		handle_fix(st, b + offsetof(struct pm_break_req, handle));
	if (type == PM_MSG_COPY && len >= offsetof(struct pm_copy_req, dst) + 8)
		handle_fix(st, b + offsetof(struct pm_copy_req, dst));
	if ((type == PM_MSG_SHARE || type == PM_MSG_UNSHARE) && len >= 16) {
		memcpy(&v, b + 8, 8);
		if (v < 64) {
			v = st->tasks[v & 1];
			memcpy(b + 8, &v, 8);
		}
	}
	if (type == PM_MSG_IMPORT && len >= sizeof(st->token) && !b[0] &&
	    st->have_token)
		memcpy(b, &st->token, sizeof(st->token));
	if (type == PM_MSG_ATTACH && len >= sizeof(struct pm_attach_req)) {
		memcpy(&v, b, 8);
		if (!v) {
			memcpy(b, &st->tasks[0], 8);
			memcpy(b + 8, st->key, sizeof(st->key));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg[PM_MSG_MAX];
	struct fuzz_in in = { data, size };
	struct state st = { .awaited = -1 };

	if (!pmd)
		LLVMFuzzerInitialize(NULL, NULL);
	st.fd[0] = fuzz_pmd_connect(pmd);
	st.open[0] = true;
	st.fd[1] = -1;
	while (in.left >= 4) {
		unsigned flags = fuzz_take(&in, 1);
		uint16_t type = (uint16_t)fuzz_take(&in, 1);
		size_t len = fuzz_take(&in, 2);
		int i = flags & 1;
		size_t n;

		if (len > in.left)
			len = in.left;
		if (i && st.fd[1] < 0) {
			st.fd[1] = fuzz_pmd_connect(pmd);
			st.open[1] = true;
		}
		if (!st.open[i])
			break;
		if (flags & 2) {
			n = len < sizeof(msg) ? len : sizeof(msg);
			memcpy(msg, in.p, n);
		} else {
			n = sizeof(struct pm_msg_hdr) +
			    (len < sizeof(msg) - 16 ? len : sizeof(msg) - 16);
			memcpy(msg + 16, in.p, n - 16);
			body_fix(&st, type, msg + 16, n - 16);
			pm_msg_hdr_init((struct pm_msg_hdr *)msg, type,
					(uint32_t)n, ++st.seq);
		}
		in.p += len;
		in.left -= len;
		/* DRAIN ends the pmd by design (its tests are the cluster's):
		 * not sent here. */
		if (n >= 8 && (uint16_t)(msg[6] | msg[7] << 8) == PM_MSG_DRAIN)
			continue;
		if (send(st.fd[i], msg, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			st.open[i] = false;
		if (flags & 4)
			continue; /* another before this one's answer */
		st.awaited = i;
		st.replied = false;
		/* A request that waits (a lock, a stop nobody answers) has
		 * its answer after its deadline: the pmd's are short here. */
		fuzz_pmd_run(pmd, 50, replied, &st);
	}
	for (int i = 0; i < 2; i++)
		if (st.fd[i] >= 0)
			close(st.fd[i]);
	fuzz_pmd_idle(pmd);
	return 0;
}
