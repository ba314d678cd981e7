/*
 * ring.c - a session's request ring (PM_MSG_RING, pm_proto.h): requests
 * and replies in memory the task shares with the pmd, so that a request
 * costs no system call while the pmd is awake and a task's threads have
 * several in flight.
 *
 * Each request taken from a slot runs as a *sub-request* of the task
 * (a session with no socket, answered here: xcopy.c's kind), with the
 * slot's own I/O window, so requests of different slots park, wait and
 * finish independently; the answer is written into the slot, and the
 * task woken if it sleeps. The ring is untrusted memory: a request is
 * copied out before it is checked, the slot's state is read only to
 * find new requests, and a slot the pmd serves is its own (busy) until
 * it writes the answer, whatever the task writes there meanwhile. A ring
 * whose task breaks the framing closes its session, as a bad datagram
 * does.
 *
 * Waking and spinning. Before the loop sleeps it arms every ring (the
 * task then rings the doorbell, one eventfd for all rings) and looks at
 * them once more. After a request taken from a ring, the loop polls the
 * rings instead of sleeping for up to --ring-spin-us, but only while the
 * last task it served runs on another CPU, yielding at every turn: a pmd
 * that shares its CPU with its tasks never spins against them.
 *
 * A closed ring is freed at the loop's next poll (it may be closed from
 * within a request another ring's slot runs).
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* A slot being served. */
struct ring_slot {
	struct pmd_ring *ring;       /* (C) */
	uint32_t index;              /* (C) */
	struct pmd_session *sub;     /* (L) its sub-request, or NULL: free */
	uint16_t type;               /* (L) its request's type, */
	uint32_t seq;                /*     sequence number */
	uint64_t t0;                 /*     and arrival */
};

struct pmd_ring {
	struct pmd_server *srv;      /* (C) */
	struct pmd_session *s;       /* (L) its session; NULL once closed */
	int fd;                      /* (C) the shared memory (memfd) */
	struct pm_ring_hdr *hdr;     /* (C) our mapping of it */
	struct pm_ring_slot *slots;  /* (C) */
	struct pmd_window *win[PM_RING_SLOTS]; /* (C) each slot's window */
	struct ring_slot slot[PM_RING_SLOTS];  /* (L) */
	int fds[2 + PM_RING_SLOTS];  /* (C) given to the task in the reply */
	uint32_t seen;               /* (L) hdr->submitted when last looked */
	uint32_t next;               /* (L) the slot the next look starts at */
	struct pmd_list link;        /* (L) in srv->rings */
};

static void futex_wake(uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

error_t pmd_ring_init(struct pmd_server *srv)
{
	srv->ring_spin_ns = (uint64_t)srv->cfg->ring_spin_us * 1000u;
	srv->doorbell_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (srv->doorbell_fd < 0) {
		pmd_err("eventfd: %m");
		return errno;
	}
	return 0;
}

static void ring_free(struct pmd_ring *g)
{
	for (uint32_t i = 0; i < PM_RING_SLOTS; i++)
		pmd_window_put(g->win[i]);
	if (g->hdr)
		munmap(g->hdr, PM_RING_BYTES);
	if (g->fd >= 0)
		close(g->fd);
	free(g);
}

void pmd_ring_fini(struct pmd_server *srv)
{
	struct pmd_list *pos, *tmp;

	pmd_list_for_each_safe(pos, tmp, &srv->rings) {
		struct pmd_ring *g = pmd_container_of(pos, struct pmd_ring,
						      link);
		pmd_ring_close(srv, g);
		pmd_list_del(pos);
		ring_free(g);
	}
	if (srv->doorbell_fd >= 0)
		close(srv->doorbell_fd);
	srv->doorbell_fd = -1;
}

enum pmd_step pmd_ring_create(struct pmd_server *srv, struct pmd_session *s,
			      const struct pm_ring_req *req,
			      struct pmd_reply *r)
{
	struct pm_ring_rep *rep = pmd_reply_body(srv);
	struct pmd_ring *g;
	void *m;

	if (s->fault || s->virt)
		return pmd_reply_now(r, EPROTO);
	if (req->slots != PM_RING_SLOTS || req->pad)
		return pmd_reply_now(r, EINVAL);
	if (s->ring)
		return pmd_reply_now(r, EEXIST);
	g = calloc(1, sizeof(*g));
	if (!g)
		return pmd_reply_now(r, ENOMEM);
	g->fd = memfd_create("pm-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (g->fd < 0 || ftruncate(g->fd, PM_RING_BYTES) < 0 ||
	    fcntl(g->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
				      F_SEAL_SEAL) < 0)
		goto fail;
	m = mmap(NULL, PM_RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
		 g->fd, 0);
	if (m == MAP_FAILED)
		goto fail;
	g->hdr = m;
	g->slots = (struct pm_ring_slot *)((uint8_t *)m + 4096);
	g->hdr->pmd_cpu = PM_RING_NO_CPU;
	for (uint32_t i = 0; i < PM_RING_SLOTS; i++) {
		if (pmd_window_create(srv, &g->win[i]))
			goto fail_quiet;
		g->slot[i] = (struct ring_slot){ .ring = g, .index = i };
		g->fds[2 + i] = g->win[i]->fd;
	}
	g->srv = srv;
	g->fds[0] = g->fd;
	g->fds[1] = srv->doorbell_fd;
	g->s = s;
	s->ring = g;
	pmd_list_add(&srv->rings, &g->link);
	*rep = (struct pm_ring_rep){ .slots = PM_RING_SLOTS,
				     .slot_bytes = PM_RING_SLOT_BYTES,
				     .size = PM_RING_BYTES,
				     .window = PM_IO_MAX };
	r->body_len = sizeof(*rep);
	r->fds = g->fds;
	r->nfds = 2 + PM_RING_SLOTS;
	return pmd_reply_now(r, 0);
fail:
	pmd_warn("a request ring: %m");
fail_quiet:
	ring_free(g);
	return pmd_reply_now(r, ENOMEM);
}

void pmd_ring_close(struct pmd_server *srv, struct pmd_ring *g)
{
	if (!g || !g->s)
		return;
	g->s->ring = NULL;
	g->s = NULL;
	/* Requests in flight end unanswered: their work finishes without
	 * them, nothing is written to the ring any more. */
	for (uint32_t i = 0; i < PM_RING_SLOTS; i++) {
		struct pmd_session *sub = g->slot[i].sub;

		g->slot[i].sub = NULL;
		if (sub) {
			sub->sub_done = NULL;
			pmd_session_close(srv, sub);
		}
	}
}

/* Writes r into slot rs (the task is woken if it sleeps); to_socket:
 * PM_ST_USE_SOCKET instead. */
static void ring_write(struct pmd_server *srv, struct ring_slot *rs,
		       const struct pmd_reply *r, bool to_socket)
{
	struct pm_ring_slot *sl = &rs->ring->slots[rs->index];
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)sl->msg;
	struct pm_reply *rep = (struct pm_reply *)(h + 1);
	uint32_t body_len = r->body_len;
	error_t status = r->status;

	/* (No reply a ring carries has descriptors: the ring refuses the
	 * types that send them, and a MAP that would goes to the socket.) */
	if (r->nfds && !to_socket) {
		pmd_err("a reply with descriptors from a ring (type %u)",
			rs->type);
		status = EIO;
		body_len = 0;
	}
	if (to_socket || PM_REPLY_HDR + (uint64_t)body_len > PM_RING_MSG_MAX) {
		status = to_socket ? 0 : EMSGSIZE;
		body_len = 0;
	}
	pm_msg_hdr_init(h, rs->type | PM_MSG_REPLY,
			(uint32_t)PM_REPLY_HDR + body_len, rs->seq);
	rep->status = to_socket ? PM_ST_USE_SOCKET
				: pm_errno_to_status(status);
	rep->arg = r->why.arg;
	rep->culprit = r->why.frame;
	if (body_len)
		memcpy(rep + 1, r->body_ext ? r->body_ext
					    : pmd_reply_body(srv), body_len);
	sl->len = (uint32_t)PM_REPLY_HDR + body_len;
	__atomic_store_n(&sl->state, PM_RING_DONE, __ATOMIC_RELEASE);
	/* (Against the task's waiters, then its look at state.) */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&sl->waiters, __ATOMIC_RELAXED))
		futex_wake(&sl->state);
	if (!to_socket) { /* (one sent to the socket counts there) */
		srv->requests++;
		srv->ring_requests++;
		pmd_metrics_count(srv, rs->type, status,
				  pmd_now_ns() - rs->t0);
	}
}

/* A slot's sub-request answered (NULL: closed unanswered). */
static void ring_answer(void *arg, const struct pmd_reply *r)
{
	struct ring_slot *rs = arg;
	struct pmd_ring *g = rs->ring;
	bool to_socket = rs->sub && rs->sub->to_socket;

	rs->sub = NULL;
	if (r && g->s)
		ring_write(g->srv, rs, r, to_socket);
}

/* Runs slot i's request. false when the ring's session must close (the
 * task broke the framing). */
static bool ring_take(struct pmd_server *srv, struct pmd_ring *g, uint32_t i)
{
	struct pm_ring_slot *sl = &g->slots[i];
	struct ring_slot *rs = &g->slot[i];
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)srv->rx;
	struct pmd_session *s = g->s, *sub;
	struct pmd_reply r = { 0 };
	struct pmd_req q;
	uint32_t len, cpu;
	error_t why;

	len = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
	cpu = __atomic_load_n(&sl->cpu, __ATOMIC_RELAXED);
	if (len < sizeof(*h) || len > PM_RING_MSG_MAX)
		goto bad;
	memcpy(srv->rx, sl->msg, len); /* once: the task may write on */
	if (h->magic != PM_PROTO_MAGIC || h->version != PM_PROTO_VERSION ||
	    h->length != len)
		goto bad;
	srv->ring_ns = pmd_now_ns();
	srv->ring_far = cpu != srv->cpu;
	q = (struct pmd_req){ .type = h->type, .seq = h->seq, .body = h + 1,
			      .len = len - (uint32_t)sizeof(*h) };
	*rs = (struct ring_slot){ .ring = g, .index = i, .type = q.type,
				  .seq = q.seq, .t0 = srv->ring_ns };
	why = pmd_request_fits(q.type, q.len) ? pmd_ring_allows(&q) : EPROTO;
	if (why == EPROTO)
		pmd_debug("task %#lx: bad request of type %u in its ring",
			  (unsigned long)s->task->id, q.type);
	sub = why ? NULL : calloc(1, sizeof(*sub));
	if (!sub) {
		/* Refused, or no memory: answered without running. */
		r.status = why ? why : ENOMEM;
		ring_write(srv, rs, &r, why == EXDEV);
		return true;
	}
	*sub = (struct pmd_session){ .srv = srv, .fd = -1, .task = s->task,
				     .virt = true, .sub = true, .from_ring = true,
				     .sub_done = ring_answer, .sub_arg = rs,
				     .parked_type = q.type,
				     .req_ns = srv->ring_ns,
				     .win = g->win[i] };
	g->win[i]->refs++;
	pmd_list_add(&srv->vsessions, &sub->link);
	rs->sub = sub;
	if (!pmd_request_run(srv, sub, &q, &r))
		return true; /* answered when its work ends */
	pmd_reply_send(srv, sub, q.type, q.seq, &r);
	pmd_session_close(srv, sub);
	pmd_segtab_flush(&srv->core->segs);
	return true;
bad:
	{
		static struct pmd_ratelimit rl;
		pmd_log_limited(&rl, PMD_LOG_WARN, "task %#lx broke the "
				"framing of its request ring; closing it",
				(unsigned long)s->task->id);
	}
	return false;
}

/* Looks at ring g: takes the requests submitted. Whether the session
 * must close. */
static bool ring_look(struct pmd_server *srv, struct pmd_ring *g, bool *any)
{
	uint32_t n = __atomic_load_n(&g->hdr->submitted, __ATOMIC_ACQUIRE);

	if (n == g->seen)
		return true;
	g->seen = n;
	/* Every slot once, from where the last look stopped (fairness). */
	for (uint32_t k = 0, start = g->next; k < PM_RING_SLOTS && g->s; k++) {
		uint32_t i = (start + k) % PM_RING_SLOTS;

		if (g->slot[i].sub ||
		    __atomic_load_n(&g->slots[i].state, __ATOMIC_ACQUIRE) !=
		    PM_RING_SUBMITTED)
			continue;
		*any = true;
		g->next = (i + 1) % PM_RING_SLOTS;
		if (!ring_take(srv, g, i))
			return false;
	}
	return true;
}

bool pmd_ring_poll(struct pmd_server *srv)
{
	struct pmd_list *pos, *tmp;
	bool any = false;

	if (pmd_list_empty(&srv->rings))
		return false;
	srv->cpu = (uint32_t)sched_getcpu();
	pmd_list_for_each_safe(pos, tmp, &srv->rings) {
		struct pmd_ring *g = pmd_container_of(pos, struct pmd_ring,
						      link);
		if (!g->s) { /* closed: gone now */
			pmd_list_del(pos);
			ring_free(g);
			continue;
		}
		if (g->hdr->pmd_cpu != srv->cpu)
			g->hdr->pmd_cpu = srv->cpu;
		if (!ring_look(srv, g, &any) && g->s)
			pmd_session_close(srv, g->s);
	}
	return any;
}

bool pmd_ring_spin(const struct pmd_server *srv)
{
	return srv->ring_spin_ns && srv->ring_far &&
	       pmd_now_ns() - srv->ring_ns < srv->ring_spin_ns;
}

bool pmd_ring_arm(struct pmd_server *srv)
{
	struct pmd_list *pos;
	bool any = false;

	for (pos = srv->rings.next; pos != &srv->rings; pos = pos->next) {
		struct pmd_ring *g = pmd_container_of(pos, struct pmd_ring,
						      link);
		if (!g->s)
			continue;
		__atomic_store_n(&g->hdr->armed, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&g->hdr->pmd_cpu, PM_RING_NO_CPU,
				 __ATOMIC_RELAXED);
		srv->rings_armed = true;
	}
	/* (Against the task's count, then its look at armed.) */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (pos = srv->rings.next; pos != &srv->rings; pos = pos->next) {
		struct pmd_ring *g = pmd_container_of(pos, struct pmd_ring,
						      link);
		if (g->s && __atomic_load_n(&g->hdr->submitted,
					    __ATOMIC_RELAXED) != g->seen)
			any = true;
	}
	return any;
}

void pmd_ring_disarm(struct pmd_server *srv)
{
	struct pmd_list *pos;

	if (!srv->rings_armed)
		return;
	srv->rings_armed = false;
	for (pos = srv->rings.next; pos != &srv->rings; pos = pos->next) {
		struct pmd_ring *g = pmd_container_of(pos, struct pmd_ring,
						      link);
		if (g->s)
			__atomic_store_n(&g->hdr->armed, 0, __ATOMIC_RELAXED);
	}
}

void pmd_ring_doorbell(struct pmd_server *srv)
{
	uint64_t v;

	if (read(srv->doorbell_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		srv->ring_doorbells++;
}
