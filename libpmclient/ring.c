/*
 * ring.c - the session's request ring (RING, pm_proto.h): requests and
 * replies in memory shared with the pmd, with no system call while the
 * pmd is awake, and one request in flight per slot, so that a task's
 * threads do not wait for each other. The socket stays for what the
 * ring does not carry (descriptors, long replies, what the pmd sends
 * back to it), and for everything when there is no ring (PM_NO_RING=1, a
 * pmd without rings) or no free slot.
 *
 * A thread takes a free slot, writes its request there and counts it in
 * the header; it rings the doorbell only when the pmd armed the ring (it
 * is about to sleep). Then it waits for the answer: spinning only while
 * the pmd runs on another CPU, for at most PM_RING_SPIN_US (default 50)
 * and not much longer than requests take (an average of theirs), and
 * never when the pmd runs on this CPU (it could not answer while we
 * spin); then sleeping on the slot (a futex), woken by the pmd. A pmd
 * that dies leaves the slot unanswered: a sleeper looks at the socket
 * every 200 ms and gives up with ECONNRESET once the pmd hung up.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define RING_SPIN_US_DEFAULT 50u
#define RING_CHECK_NS        200000000L /* a sleeper looks at the pmd */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static uint32_t my_cpu(void)
{
	int c = sched_getcpu();

	return c < 0 ? PM_RING_NO_CPU - 1 : (uint32_t)c;
}

void pmc_ring_open(struct pm *pm)
{
	const char *env = getenv("PM_NO_RING");
	const char *spin = getenv("PM_RING_SPIN_US");
	struct pmc_ring *g = &pm->ring;
	struct pm_ring_req req = { .slots = PM_RING_SLOTS };
	struct pm_ring_rep rep;
	int fds[2 + PM_RING_SLOTS];
	struct pmc_rpc r = { .type = PM_MSG_RING, .req = &req,
			     .req_len = sizeof(req), .body = &rep,
			     .body_max = sizeof(rep), .fds = fds,
			     .fds_max = 2 + PM_RING_SLOTS };
	uint32_t i;
	void *m;

	if (env && *env && strcmp(env, "0"))
		return;
	if (pmc_rpc(pm, &r) || r.body_len != sizeof(rep) ||
	    r.nfds != 2 + PM_RING_SLOTS || rep.slots != PM_RING_SLOTS ||
	    rep.slot_bytes != PM_RING_SLOT_BYTES ||
	    rep.size != PM_RING_BYTES || rep.window != PM_IO_MAX)
		goto fail;
	m = mmap(NULL, PM_RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fds[0], 0);
	if (m == MAP_FAILED)
		goto fail;
	g->base = m;
	for (i = 0; i < PM_RING_SLOTS; i++) {
		m = mmap(NULL, PM_IO_MAX, PROT_READ | PROT_WRITE, MAP_SHARED,
			 fds[2 + i], 0);
		if (m == MAP_FAILED)
			goto fail;
		g->win[i] = m;
	}
	close(fds[0]);
	for (i = 0; i < PM_RING_SLOTS; i++)
		close(fds[2 + i]);
	g->hdr = (struct pm_ring_hdr *)g->base;
	g->slots = (struct pm_ring_slot *)(g->base + 4096);
	g->bell = fds[1];
	g->free = (1u << PM_RING_SLOTS) - 1;
	g->spin_ns = (uint64_t)(spin && *spin ? strtoul(spin, NULL, 10)
					      : RING_SPIN_US_DEFAULT) * 1000u;
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		g->spin_ns = 0; /* nobody else could answer while we spin */
	return;
fail:
	pmc_close_fds(fds, r.nfds);
	pmc_ring_close(pm);
}

void pmc_ring_close(struct pm *pm)
{
	struct pmc_ring *g = &pm->ring;

	for (uint32_t i = 0; i < PM_RING_SLOTS; i++)
		if (g->win[i])
			munmap(g->win[i], PM_IO_MAX);
	if (g->base)
		munmap(g->base, PM_RING_BYTES);
	if (g->bell > 0)
		close(g->bell);
	memset(g, 0, sizeof(*g));
}

int pmc_ring_get(struct pm *pm)
{
	struct pmc_ring *g = &pm->ring;
	uint32_t m;

	if (!g->base)
		return -1;
	m = __atomic_load_n(&g->free, __ATOMIC_RELAXED);
	while (m) {
		uint32_t b = (uint32_t)__builtin_ctz(m);
		if (__atomic_compare_exchange_n(&g->free, &m, m & ~(1u << b),
						false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return (int)b;
	}
	return -1;
}

void pmc_ring_put(struct pm *pm, int i)
{
	__atomic_fetch_or(&pm->ring.free, 1u << i, __ATOMIC_RELEASE);
}

error_t pmc_ring_call(struct pm *pm, struct pmc_rpc *r)
{
	int i = pmc_ring_get(pm);
	error_t err;

	if (i < 0)
		return PMC_USE_SOCKET;
	err = pmc_ring_rpc(pm, i, r);
	pmc_ring_put(pm, i);
	return err;
}

/* Whether the pmd hung up on the session. */
static bool pmd_gone(struct pm *pm)
{
	struct pollfd p = { .fd = pm->fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 &&
	       (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL));
}

/* Waits for slot sl's answer (see the top). ECONNRESET: the pmd died. */
static error_t ring_wait(struct pm *pm, struct pm_ring_slot *sl, uint64_t t0)
{
	struct pmc_ring *g = &pm->ring;
	uint64_t avg = __atomic_load_n(&g->avg_ns, __ATOMIC_RELAXED);
	uint64_t budget = g->spin_ns;
	uint32_t cpu;

	/* Spin no longer than about twice a request's time; not at all
	 * when requests take longer than the whole budget. */
	if (avg > 2 * budget)
		budget = 0;
	else if (2 * avg + 2000 < budget)
		budget = 2 * avg + 2000;
	if (budget) {
		cpu = my_cpu();
		for (unsigned k = 0;; k++) {
			uint32_t pc;

			if (__atomic_load_n(&sl->state, __ATOMIC_ACQUIRE) ==
			    PM_RING_DONE)
				return 0;
			pc = __atomic_load_n(&g->hdr->pmd_cpu,
					     __ATOMIC_RELAXED);
			if (pc == cpu)
				break; /* it runs here: let it */
			if (pc == PM_RING_NO_CPU)
				sched_yield(); /* it may wake here */
			else
				cpu_relax();
			if ((k & 15) != 15)
				continue;
			if (now_ns() - t0 >= budget)
				break;
			sched_yield(); /* who the answer waits for may run here */
		}
	}
	for (;;) {
		struct timespec ts = { 0, RING_CHECK_NS };

		__atomic_store_n(&sl->waiters, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&sl->state, __ATOMIC_SEQ_CST) ==
		    PM_RING_DONE)
			return 0;
		if (syscall(SYS_futex, &sl->state, FUTEX_WAIT,
			    PM_RING_SUBMITTED, &ts, NULL, 0) < 0 &&
		    errno == ETIMEDOUT && pmd_gone(pm))
			return ECONNRESET;
	}
}

error_t pmc_ring_rpc(struct pm *pm, int i, struct pmc_rpc *r)
{
	struct pmc_ring *g = &pm->ring;
	struct pm_ring_slot *sl = &g->slots[i];
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)sl->msg;
	uint32_t len = (uint32_t)sizeof(*h) + r->req_len + r->data_len;
	struct pm_msg_hdr rh;
	struct pm_reply rep;
	uint32_t seq, rlen;
	uint64_t t0, dt;
	error_t err;

	r->nfds = 0;
	r->body_len = 0;
	if (__atomic_load_n(&pm->broken, __ATOMIC_RELAXED))
		return ECONNRESET;
	if (r->fds_max || len > PM_RING_MSG_MAX ||
	    PM_REPLY_HDR + (uint64_t)r->body_max > PM_RING_MSG_MAX)
		return PMC_USE_SOCKET;
	seq = __atomic_add_fetch(&g->seq, 1, __ATOMIC_RELAXED);
	pm_msg_hdr_init(h, r->type, len, seq);
	if (r->req_len)
		memcpy(h + 1, r->req, r->req_len);
	if (r->data_len)
		memcpy((uint8_t *)(h + 1) + r->req_len, r->data, r->data_len);
	sl->len = len;
	sl->cpu = my_cpu();
	sl->waiters = 0;
	t0 = now_ns();
	__atomic_store_n(&sl->state, PM_RING_SUBMITTED, __ATOMIC_RELEASE);
	/* (Against the pmd's armed, then its look at submitted.) */
	__atomic_add_fetch(&g->hdr->submitted, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&g->hdr->armed, __ATOMIC_SEQ_CST)) {
		uint64_t one = 1;
		if (write(g->bell, &one, sizeof(one)) < 0 && errno != EAGAIN)
			goto broken;
	}
	err = ring_wait(pm, sl, t0);
	if (err)
		goto broken;
	dt = now_ns() - t0;
	__atomic_store_n(&g->avg_ns, (__atomic_load_n(&g->avg_ns,
			 __ATOMIC_RELAXED) * 7 + dt) / 8, __ATOMIC_RELAXED);
	/* The answer, checked as strictly as one on the socket. */
	rlen = __atomic_load_n(&sl->len, __ATOMIC_RELAXED);
	if (rlen < PM_REPLY_HDR || rlen > PM_RING_MSG_MAX)
		goto proto;
	memcpy(&rh, sl->msg, sizeof(rh));
	memcpy(&rep, sl->msg + sizeof(rh), sizeof(rep));
	if (!pmc_reply_hdr_ok(&rh, rlen, r->type, seq))
		goto proto;
	r->culprit = rep.culprit;
	if (rep.status == PM_ST_USE_SOCKET) {
		__atomic_store_n(&sl->state, PM_RING_FREE, __ATOMIC_RELAXED);
		return PMC_USE_SOCKET;
	}
	r->body_len = rlen - (uint32_t)PM_REPLY_HDR;
	if (r->body_len > r->body_max)
		goto proto;
	if (r->body && r->body_len)
		memcpy(r->body, sl->msg + PM_REPLY_HDR, r->body_len);
	__atomic_store_n(&sl->state, PM_RING_FREE, __ATOMIC_RELAXED);
	return pm_status_to_errno(rep.status);
proto:
	__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED);
	return EPROTO;
broken:
	__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED);
	return ECONNRESET;
}
