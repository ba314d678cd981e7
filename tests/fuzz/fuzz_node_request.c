/*
 * fuzz_node_request.c - requests another node makes, past their MAC: the
 * decoders of ALLOC, FREE, RETURN, RESET, PING and the forwarded requests
 * (FWD_IMPORT, FWD_OP, FWD_BYE), and answers to calls of ours.
 *
 * A pmd runs in this process as node 1 of a two-node cluster; the target
 * speaks for node 2, which is up under a fresh incarnation for each input.
 * Nothing leaves the process: fab_send is wrapped (what the pmd sends to
 * node 2 is read here: lent slots and proxy handles, for later requests
 * to name) and one-sided reads and writes fail at once (EIO), as to a
 * node that vanished.
 *
 * An input is a series of records, each one node request delivered as
 * from node 2 and then served:
 *
 *   u8 type     enum pmd_nreq_type
 *   u8 flags    bit 0: an answer (PMD_NREQ_REPLY); bit 1: raw (the bytes
 *               go as they are, header included, unsigned)
 *   u16 len     body bytes that follow (cut to what is left)
 *
 * Otherwise the target writes the header and signs it. Small values stand
 * for what node 1 gave: in a tagged ALLOC a task below 64 is node 1's
 * local task, a container below 64 one of node 2's; in FREE and RETURN a segment below 64 is the n-th slot
 * lent; in FWD_IMPORT a token starting with a zero byte is the local
 * task's container (shared with node 2's task 7); in the forwarded
 * requests a task below 64 is that serial of node 2; in FWD_OP a handle
 * below 64 the n-th proxy handle.
 *
 * After the input node 2 goes down: node 1 must forget everything it
 * held for it (loans, proxies) and, once its local task is gone too, hold
 * nothing, its accounting exact. Node 2 comes back under a new
 * incarnation: node 1 must not send it a RESET (that is for a node that
 * was only paused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "node2.h"
#include "pm_proto.h"

#define KEPT_MAX 64
/* The task of node 2 the local task shares its container with. */
#define NODE2_TASK ((pm_task_t)2 << 48 | 7)

static struct fuzz_pmd *pmd;

/* What node 1 gave node 2 during this input. */
static struct {
	struct pmd_nreq_free_slot lent[KEPT_MAX];
	unsigned nlent;
	uint64_t handles[KEPT_MAX];
	unsigned nhandles;
} kept;

/* Keeps what node 1's answers give node 2. */
static void heard(const struct pmd_nreq_hdr *h, const uint8_t *body,
		  void *arg)
{
	(void)arg;
	/* Node 2 only ever restarts here (a fresh incarnation each input):
	 * it forgot us by itself, and is never told to. */
	if (h->type == PMD_NREQ_RESET && !(h->flags & PMD_NREQ_REPLY)) {
		fprintf(stderr, "fuzz: a RESET to a node that restarted\n");
		abort();
	}
	if (!(h->flags & PMD_NREQ_REPLY) || h->status != PM_ST_OK)
		return;
	if (h->type == PMD_NREQ_ALLOC && h->len >= 8) {
		struct pmd_nreq_alloc_rep rep = { 0 };
		memcpy(&rep, body, h->len < sizeof(rep) ? h->len : sizeof(rep));
		for (uint32_t i = 0; i < rep.n && i < PMD_LEND_MAX &&
		     kept.nlent < KEPT_MAX; i++)
			kept.lent[kept.nlent++] = (struct pmd_nreq_free_slot){
				.seg = rep.e[i].seg, .slot = rep.e[i].slot };
	}
	if (h->type == PMD_NREQ_FWD_IMPORT && h->len >= 8 &&
	    kept.nhandles < KEPT_MAX)
		memcpy(&kept.handles[kept.nhandles++], body, 8);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	pmd = fuzz_pmd_start(true);
	node2_listen(heard, NULL);
	return 0;
}

/* ---- node 1's own task, whose container node 2 imports ---- */

struct local {
	struct fuzz_task t;
	struct pm_token token;
};

/* A local request that must succeed. */
static void local_call(struct local *l, uint16_t type, const void *body,
		       uint32_t len, void *out, size_t out_len)
{
	if (fuzz_task_call(pmd, &l->t, type, body, len, out, out_len)) {
		fprintf(stderr, "fuzz: the local task's request %u failed\n",
			type);
		abort();
	}
}

static void local_start(struct local *l)
{
	struct pm_alloc_req alloc = { .count = 8 };
	struct pm_alloc_rep arep;
	struct pm_share_req share = { .task = NODE2_TASK };
	container_t h, weak;

	/* With a fault session: loans for its mappings need one. */
	fuzz_task_open(pmd, &l->t, true);
	local_call(l, PM_MSG_CREATE, NULL, 0, &h, sizeof(h));
	alloc.handle = h;
	local_call(l, PM_MSG_ALLOCATE, &alloc, sizeof(alloc), &arep,
		   sizeof(arep));
	share.handle = h;
	local_call(l, PM_MSG_SHARE, &share, sizeof(share), &weak, sizeof(weak));
	local_call(l, PM_MSG_EXPORT, &weak, sizeof(weak), &l->token,
		   sizeof(l->token));
}

/* ---- node 2 ---- */

static void body_fix(const struct local *l, uint16_t type, uint8_t *b,
		     uint32_t len)
{
	uint64_t v;
	uint32_t n;

	/* A task of node 2: small values are its serial. */
	if ((type == PMD_NREQ_FWD_IMPORT || type == PMD_NREQ_FWD_OP ||
	     type == PMD_NREQ_FWD_BYE) && len >= 8) {
		memcpy(&v, b, 8);
		if (v < 64) {
			v |= (uint64_t)2 << 48;
			memcpy(b, &v, 8);
		}
	}
	switch (type) {
	case PMD_NREQ_ALLOC:
		if (len >= offsetof(struct pmd_nreq_alloc_req, cont)) {
			memcpy(&v, b + offsetof(struct pmd_nreq_alloc_req, task),
			       8);
			if (v < 64)
				memcpy(b + offsetof(struct pmd_nreq_alloc_req,
						    task), &l->t.id, 8);
		}
		if (len >= offsetof(struct pmd_nreq_alloc_req, handle)) {
			uint8_t *cf = b + offsetof(struct pmd_nreq_alloc_req,
						   cont);
			memcpy(&v, cf, 8);
			if (v < 64) {
				v |= (uint64_t)2 << 48; /* node 2's */
				memcpy(cf, &v, 8);
			}
		}
		break;
	case PMD_NREQ_FREE:
	case PMD_NREQ_RETURN:
		n = (len - 8) / sizeof(struct pmd_nreq_free_slot);
		for (uint32_t i = 0; len >= 8 && i < n && kept.nlent; i++) {
			struct pmd_nreq_free_slot *e =
				(struct pmd_nreq_free_slot *)(b + 8) + i;
			if (e->seg < 64) {
				e->seg = kept.lent[e->slot % kept.nlent].seg;
				e->slot = kept.lent[e->slot % kept.nlent].slot;
			}
		}
		break;
	case PMD_NREQ_FWD_IMPORT:
		if (len >= sizeof(struct pmd_nreq_fwd_import) && !b[8])
			memcpy(b + 8, &l->token, sizeof(l->token));
		break;
	case PMD_NREQ_FWD_OP:
		if (len >= sizeof(struct pmd_nreq_fwd_op) + 8 && kept.nhandles) {
			uint8_t *hf = b + sizeof(struct pmd_nreq_fwd_op);
			memcpy(&v, hf, 8);
			if (v < 64)
				memcpy(hf, &kept.handles[v % kept.nhandles], 8);
		}
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t body[PMD_NREQ_BODY_MAX] __attribute__((aligned(8)));
	struct fuzz_in in = { data, size };
	struct local l = { 0 };
	uint64_t id = 0;

	if (!pmd)
		LLVMFuzzerInitialize(NULL, NULL);
	memset(&kept, 0, sizeof(kept));
	node2_up(pmd);
	local_start(&l);
	while (in.left >= 4) {
		uint16_t type = (uint16_t)fuzz_take(&in, 1);
		unsigned flags = fuzz_take(&in, 1);
		size_t len = fuzz_take(&in, 2);

		if (len > in.left)
			len = in.left;
		if (flags & 2) {
			node2_send_raw(pmd, in.p, len, 50);
		} else {
			uint32_t blen = (uint32_t)(len < PMD_NREQ_BODY_MAX
						   ? len : PMD_NREQ_BODY_MAX);
			memcpy(body, in.p, blen);
			body_fix(&l, type, body, blen);
			node2_send(pmd, type, flags & 1 ? PMD_NREQ_REPLY : 0,
				   ++id, 0, body, blen, 50);
		}
		in.p += len;
		in.left -= len;
	}
	/* Node 2 goes: node 1 forgets what it held for it. */
	fuzz_task_close(&l.t);
	node2_down(pmd);
	fuzz_pmd_idle(pmd);
	return 0;
}
