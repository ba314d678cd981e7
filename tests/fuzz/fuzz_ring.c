/*
 * fuzz_ring.c - a task's request ring, as the pmd reads it: whatever the
 * task writes into the shared slots and header (framing, every type the
 * ring carries or refuses, requests submitted again while served, states
 * and counters scribbled).
 *
 * One task (HELLO, then RING, its ring mapped here) and a pmd in this
 * process. An input is a series of records:
 *
 *   u8 op     bits 0-1: 0 a request, 1 raw bytes, 2 a scribble, 3 a
 *             request not waited for (several in flight); bits 4-6: the
 *             slot
 *   request:  u8 type, u16 len, then len body bytes (the target writes
 *             the header; a body's first field below 64 becomes the n-th
 *             handle the ring's CREATE and SHARE answers gave)
 *   raw:      u16 len, u16 declared length, then len bytes: the slot's
 *             message as they are
 *   scribble: u8 what (0 a slot's state, 1 its len, 2 the header's
 *             count, 3 armed, 4 pmd_cpu, 5 a slot's waiters), u32 value;
 *             nothing is submitted (a count that moves makes the pmd
 *             look)
 *
 * After a submission the pmd runs until the slot is answered (or 50 ms).
 * After the input the task hangs up: the pmd must end it and come back to
 * holding nothing, its accounting exact, whatever the ring held.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "pm_proto.h"

#define HANDLES_MAX 64

static struct fuzz_pmd *pmd;

struct ring {
	struct fuzz_task t;
	uint8_t *base;
	struct pm_ring_hdr *hdr;
	struct pm_ring_slot *slots;
	uint8_t *win[PM_RING_SLOTS];
	int bell;
	bool got;                    /* RING's reply came */
	bool closed;                 /* the pmd hung up */
	uint64_t handles[HANDLES_MAX];
	unsigned nhandles;
	uint32_t seq;
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	pmd = fuzz_pmd_start(false);
	return 0;
}

/* RING's reply, its descriptors mapped. */
static bool ring_reply(void *arg)
{
	struct ring *g = arg;
	uint8_t buf[256] __attribute__((aligned(8)));
	const struct pm_reply *rep = (const struct pm_reply *)
				     (buf + sizeof(struct pm_msg_hdr));
	union {
		char b[CMSG_SPACE(sizeof(int) * (2 + PM_RING_SLOTS))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.b,
			      .msg_controllen = sizeof(ctl.b) };
	struct cmsghdr *c;
	int fds[2 + PM_RING_SLOTS];
	ssize_t n = recvmsg(g->t.fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return false;
	g->got = true;
	c = CMSG_FIRSTHDR(&msg);
	if (n < (ssize_t)PM_REPLY_HDR || rep->status != PM_ST_OK || !c ||
	    c->cmsg_len != CMSG_LEN(sizeof(fds))) {
		fprintf(stderr, "fuzz: RING refused\n");
		abort();
	}
	memcpy(fds, CMSG_DATA(c), sizeof(fds));
	g->base = mmap(NULL, PM_RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
		       fds[0], 0);
	if (g->base == MAP_FAILED)
		abort();
	g->hdr = (struct pm_ring_hdr *)g->base;
	g->slots = (struct pm_ring_slot *)(g->base + 4096);
	g->bell = fds[1];
	for (int i = 0; i < (int)PM_RING_SLOTS; i++) {
		g->win[i] = mmap(NULL, PM_IO_MAX, PROT_READ | PROT_WRITE,
				 MAP_SHARED, fds[2 + i], 0);
		if (g->win[i] == MAP_FAILED)
			abort();
		close(fds[2 + i]);
	}
	close(fds[0]);
	return true;
}

static void ring_open(struct ring *g)
{
	struct pm_ring_req req = { .slots = PM_RING_SLOTS };

	memset(g, 0, sizeof(*g));
	fuzz_task_open(pmd, &g->t, false);
	fuzz_task_send(pmd, &g->t, PM_MSG_RING, &req, sizeof(req));
	fuzz_pmd_run(pmd, 2000, ring_reply, g);
	if (!g->got)
		abort();
}

static void ring_close(struct ring *g)
{
	for (int i = 0; i < (int)PM_RING_SLOTS; i++)
		munmap(g->win[i], PM_IO_MAX);
	munmap(g->base, PM_RING_BYTES);
	close(g->bell);
	fuzz_task_close(&g->t);
}

static void submit(struct ring *g, unsigned i)
{
	uint64_t one = 1;

	__atomic_store_n(&g->slots[i].state, PM_RING_SUBMITTED,
			 __ATOMIC_RELEASE);
	__atomic_add_fetch(&g->hdr->submitted, 1, __ATOMIC_SEQ_CST);
	if (write(g->bell, &one, sizeof(one)) < 0 && errno != EAGAIN)
		abort();
}

struct wait {
	struct ring *g;
	unsigned slot;
};

/* The slot answered (its answer taken), or the session closed. */
static bool answered(void *arg)
{
	struct wait *w = arg;
	struct ring *g = w->g;
	struct pm_ring_slot *sl = &g->slots[w->slot];
	const struct pm_msg_hdr *h = (const struct pm_msg_hdr *)sl->msg;
	const struct pm_reply *rep = (const struct pm_reply *)(h + 1);
	char b;
	ssize_t n = recv(g->t.fd, &b, 1, MSG_DONTWAIT | MSG_PEEK);

	if (n == 0) {
		g->closed = true;
		return true;
	}
	if (__atomic_load_n(&sl->state, __ATOMIC_ACQUIRE) != PM_RING_DONE)
		return false;
	/* The pmd's answer is well formed, whatever we asked. */
	if (sl->len < PM_REPLY_HDR || sl->len > PM_RING_MSG_MAX ||
	    h->magic != PM_PROTO_MAGIC || h->length != sl->len ||
	    !(h->type & PM_MSG_REPLY)) {
		fprintf(stderr, "fuzz: a malformed answer in the ring\n");
		abort();
	}
	if (rep->status == PM_ST_OK && sl->len >= PM_REPLY_HDR + 8 &&
	    g->nhandles < HANDLES_MAX &&
	    ((h->type & ~PM_MSG_REPLY) == PM_MSG_CREATE ||
	     (h->type & ~PM_MSG_REPLY) == PM_MSG_SHARE))
		memcpy(&g->handles[g->nhandles++], sl->msg + PM_REPLY_HDR, 8);
	sl->state = PM_RING_FREE;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct ring g;

	if (!pmd)
		LLVMFuzzerInitialize(NULL, NULL);
	ring_open(&g);
	while (in.left >= 2 && !g.closed) {
		unsigned op = fuzz_take(&in, 1);
		unsigned slot = (op >> 4) % PM_RING_SLOTS;
		struct pm_ring_slot *sl = &g.slots[slot];
		struct wait w = { &g, slot };

		switch (op & 3) {
		case 0:
		case 3: {
			uint16_t type = (uint16_t)fuzz_take(&in, 1);
			size_t len = fuzz_take(&in, 2);
			struct pm_msg_hdr *h = (struct pm_msg_hdr *)sl->msg;
			uint64_t v;

			if (len > in.left)
				len = in.left;
			if (len > PM_RING_MSG_MAX - sizeof(*h))
				len = PM_RING_MSG_MAX - sizeof(*h);
			memcpy(h + 1, in.p, len);
			in.p += len;
			in.left -= len;
			if (len >= 8 && g.nhandles) {
				memcpy(&v, h + 1, 8);
				if (v < 64) {
					v = g.handles[v % g.nhandles];
					memcpy(h + 1, &v, 8);
				}
			}
			pm_msg_hdr_init(h, type, (uint32_t)(sizeof(*h) + len),
					++g.seq);
			sl->len = (uint32_t)(sizeof(*h) + len);
			submit(&g, slot);
			if ((op & 3) == 0)
				fuzz_pmd_run(pmd, 50, answered, &w);
			else
				fuzz_pmd_run(pmd, 1, NULL, NULL);
			break;
		}
		case 1: {
			size_t len = fuzz_take(&in, 2);
			uint32_t declared = fuzz_take(&in, 2);

			if (len > in.left)
				len = in.left;
			memcpy(sl->msg, in.p, len < PM_RING_MSG_MAX ? len
							: PM_RING_MSG_MAX);
			in.p += len;
			in.left -= len;
			sl->len = declared;
			submit(&g, slot);
			fuzz_pmd_run(pmd, 50, answered, &w);
			break;
		}
		case 2: {
			unsigned what = fuzz_take(&in, 1) % 6;
			uint32_t v = fuzz_take(&in, 4);

			if (what == 0)
				sl->state = v;
			else if (what == 1)
				sl->len = v;
			else if (what == 2)
				g.hdr->submitted = v;
			else if (what == 3)
				g.hdr->armed = v;
			else if (what == 4)
				g.hdr->pmd_cpu = v;
			else
				sl->waiters = v;
			fuzz_pmd_run(pmd, 1, NULL, NULL);
			break;
		}
		}
	}
	ring_close(&g);
	fuzz_pmd_idle(pmd);
	return 0;
}
