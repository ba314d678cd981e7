/* node2.c - see node2.h. */
#include "node2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "daemon.h"
#include "node_priv.h"

static node2_hear_fn *hear;
static void *hear_arg;
static uint64_t inc2 = 1000;       /* node 2's incarnation */

error_t __wrap_fab_send(struct fab_ep *ep, fab_peer_t peer, const void *buf,
			size_t len, void *ctx);
error_t __real_fab_mr_dereg(struct fab_mr *mr);
error_t __wrap_fab_mr_dereg(struct fab_mr *mr);

/* Keys of regions node 1 deregistered (the last ones). */
static uint64_t gone_keys[256];
static unsigned ngone;

error_t __wrap_fab_mr_dereg(struct fab_mr *mr)
{
	struct fab_rkey rk;

	if (mr && !fab_mr_rkey(mr, &rk))
		gone_keys[ngone++ % 256] = rk.key;
	return __real_fab_mr_dereg(mr);
}

bool node2_key_gone(uint64_t key)
{
	for (unsigned i = 0; i < 256 && i < ngone; i++)
		if (gone_keys[i] == key)
			return true;
	return false;
}
error_t __wrap_fab_read(struct fab_ep *ep, fab_peer_t peer, struct fab_mr *mr,
			size_t off, const struct fab_rkey *rkey, uint64_t roff,
			size_t len, void *ctx);
error_t __wrap_fab_write(struct fab_ep *ep, fab_peer_t peer, struct fab_mr *mr,
			 size_t off, const struct fab_rkey *rkey, uint64_t roff,
			 size_t len, void *ctx);

error_t __wrap_fab_send(struct fab_ep *ep, fab_peer_t peer, const void *buf,
			size_t len, void *ctx)
{
	struct pmd_nreq_hdr h;

	(void)ep;
	(void)peer;
	(void)ctx;
	if (len < sizeof(h))
		return 0;
	memcpy(&h, buf, sizeof(h));
	if (h.magic != PMD_NREQ_MAGIC || h.len != len - sizeof(h))
		return 0;
	if (getenv("PMD_FUZZ_VERBOSE"))
		fprintf(stderr, "node 1 sends %s type %u, status %u\n",
			h.flags & PMD_NREQ_REPLY ? "an answer of" : "a request of",
			h.type, h.status);
	if (hear)
		hear(&h, (const uint8_t *)buf + sizeof(h), hear_arg);
	return 0;
}

error_t __wrap_fab_read(struct fab_ep *ep, fab_peer_t peer, struct fab_mr *mr,
			size_t off, const struct fab_rkey *rkey, uint64_t roff,
			size_t len, void *ctx)
{
	return EIO;
}

error_t __wrap_fab_write(struct fab_ep *ep, fab_peer_t peer, struct fab_mr *mr,
			 size_t off, const struct fab_rkey *rkey, uint64_t roff,
			 size_t len, void *ctx)
{
	return EIO;
}

void node2_listen(node2_hear_fn *fn, void *arg)
{
	hear = fn;
	hear_arg = arg;
}

static struct pmd_cluster *cluster_of(struct fuzz_pmd *p)
{
	return p->srv->cluster;
}

void node2_up(struct fuzz_pmd *p)
{
	struct pmd_mb_peer *p2 = pmd_mb_peer(&cluster_of(p)->mb, 2);

	p2->state = PM_NODE_UP;
	p2->inc = ++inc2;
	p2->last_heard_ms = pmd_now_ms();
	fuzz_pmd_run(p, 5, NULL, NULL);
}

static bool settled(void *arg)
{
	struct fuzz_pmd *p = arg;

	return pmd_list_empty(&p->srv->vsessions) && !cluster_of(p)->calls;
}

static bool forgotten(void *arg)
{
	struct fuzz_pmd *p = arg;
	struct pm_debug_loans_rep *rep = malloc(sizeof(*rep));
	bool none;

	if (!rep)
		abort();
	pmd_cluster_loans(cluster_of(p), rep);
	none = rep->n == 0 && rep->ok;
	free(rep);
	return none && settled(p);
}

void node2_down(struct fuzz_pmd *p)
{
	pmd_mb_peer(&cluster_of(p)->mb, 2)->state = PM_NODE_DOWN;
	fuzz_pmd_run(p, 5, NULL, NULL); /* (node 1 sees it, whatever it had) */
	fuzz_pmd_run(p, 2000, forgotten, p);
	if (!forgotten(p)) {
		fprintf(stderr, "fuzz: node 1 still holds something of node 2, "
			"or its books disagree\n");
		abort();
	}
}

void node2_back(struct fuzz_pmd *p)
{
	struct pmd_mb_peer *p2 = pmd_mb_peer(&cluster_of(p)->mb, 2);

	node2_down(p);
	p2->state = PM_NODE_UP;
	p2->last_heard_ms = pmd_now_ms();
	fuzz_pmd_run(p, 5, NULL, NULL);
}

void node2_send_raw(struct fuzz_pmd *p, const void *msg, size_t len,
		    int wait_ms)
{
	pmd_mb_peer(&cluster_of(p)->mb, 2)->last_heard_ms = pmd_now_ms();
	pmd_nreq_receive(cluster_of(p), 2, msg, len);
	fuzz_pmd_run(p, wait_ms, settled, p);
}

void node2_send(struct fuzz_pmd *p, uint16_t type, uint32_t flags,
		uint64_t id, uint32_t status, const void *body, uint32_t len,
		int wait_ms)
{
	static uint8_t msg[sizeof(struct pmd_nreq_hdr) + PMD_NREQ_BODY_MAX]
		__attribute__((aligned(8)));
	struct pmd_cluster *c = cluster_of(p);
	struct pmd_nreq_hdr *h = (struct pmd_nreq_hdr *)msg;

	if (len > PMD_NREQ_BODY_MAX)
		len = PMD_NREQ_BODY_MAX;
	*h = (struct pmd_nreq_hdr){ .magic = PMD_NREQ_MAGIC,
		.version = PMD_NREQ_VERSION, .type = type, .from = 2, .to = 1,
		.len = len, .id = id,
		.from_inc = pmd_mb_peer(&c->mb, 2)->inc, .to_inc = c->mb.inc,
		.status = status, .flags = flags };
	if (len)
		memcpy(h + 1, body, len);
	pmd_nreq_mac(c, h, h + 1, h->mac);
	node2_send_raw(p, msg, sizeof(*h) + len, wait_ms);
}
