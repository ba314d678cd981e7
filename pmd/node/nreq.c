/*
 * nreq.c - node requests: a request to another node and its answer
 * (node_proto.h), under a MAC, accepted only between the current
 * incarnations of two nodes that see each other; each call ends exactly
 * once, with its answer, ENODEV or ETIMEDOUT (see node.h).
 */
#include "node_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "clock.h"
#include "log.h"

/* A call of ours waiting for its answer. */
struct pmd_ncall {
	uint64_t id;                   /* (C) the request's id */
	pm_node_t to;                  /* (C) */
	uint64_t to_inc;               /* (C) its incarnation then */
	uint64_t deadline_ms;          /* (C) */
	pmd_ncall_done *done;          /* (C) */
	void *arg;                     /* (C) */
	struct pmd_ncall *next;        /* (L) in c->calls */
};

error_t pmd_nreq_init(struct pmd_cluster *c)
{
	crypto_auth_hmacsha256_state st;

	/* Node requests carry up to 64 KiB of data: keyed BLAKE2b is three
	 * times as fast as HMAC-SHA-256 there. Its key is derived from the
	 * secret (of any length), apart from membership's own use of it. */
	crypto_auth_hmacsha256_init(&st, c->conf.secret, c->conf.secret_len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)"pmd node requests",
				      17);
	crypto_auth_hmacsha256_final(&st, c->nreq_key);
	return 0;
}

void pmd_nreq_mac(const struct pmd_cluster *c, const struct pmd_nreq_hdr *h,
		  const void *body, uint8_t out[32])
{
	crypto_generichash_state st;
	struct pmd_nreq_hdr copy = *h;

	memset(copy.mac, 0, sizeof(copy.mac));
	crypto_generichash_init(&st, c->nreq_key, sizeof(c->nreq_key), 32);
	crypto_generichash_update(&st, (const uint8_t *)&copy, sizeof(copy));
	if (h->len)
		crypto_generichash_update(&st, body, h->len);
	crypto_generichash_final(&st, out, 32);
}

static error_t nreq_send(struct pmd_cluster *c, pm_node_t to, uint64_t to_inc,
			 uint16_t type, uint64_t id, uint32_t flags,
			 uint32_t status, const void *body, size_t len)
{
	struct pmd_traffic *t;
	error_t err;
	uint8_t buf[sizeof(struct pmd_nreq_hdr) + PMD_NREQ_BODY_MAX];
	struct pmd_nreq_hdr *h = (struct pmd_nreq_hdr *)buf;
	const struct pmd_mb_peer *p = pmd_mb_peer(&c->mb, to);
	uint16_t version = p ? pmd_mb_nreq_version(p) : PMD_NREQ_VERSION_MIN;

	if (len > PMD_NREQ_BODY_MAX)
		return EMSGSIZE;
	if (!version)
		return ENODEV; /* no version we both speak */
	*h = (struct pmd_nreq_hdr){ .magic = PMD_NREQ_MAGIC,
		.version = version, .type = type, .from = c->self,
		.to = to, .len = (uint32_t)len, .id = id,
		.from_inc = c->mb.inc, .to_inc = to_inc, .status = status,
		.flags = flags };
	if (len)
		memcpy(h + 1, body, len);
	pmd_nreq_mac(c, h, h + 1, h->mac);
	err = fab_send(c->ep, pmd_peer_of_node(c, to), buf, sizeof(*h) + len,
		       NULL);
	if (!err && (t = pmd_traffic_of(c, to))) {
		t->tx_msgs++;
		t->tx_bytes += sizeof(*h) + len;
	}
	return err;
}

/* We forgot peer p's current incarnation (it was paused, or cut off)
 * and have not told it yet (RESET, answered): nothing new is made with it
 * meanwhile, either way, for its RESET or ours would forget that too (a
 * loan one side keeps and the other does not). */
static bool owes_reset(const struct pmd_cluster *c, const struct pmd_mb_peer *p)
{
	unsigned i = (unsigned)(p - c->mb.peers);

	return c->forgot_inc[i] && c->forgot_inc[i] == p->inc;
}

error_t pmd_cluster_call(struct pmd_cluster *c, pm_node_t to, uint16_t type,
			 const void *body, size_t len, pmd_ncall_done *done,
			 void *arg)
{
	struct pmd_mb_peer *p = pmd_mb_peer(&c->mb, to);
	struct pmd_ncall *k;
	error_t err;

	if (!p)
		return to == c->self ? EINVAL : ENODEV;
	if (p->state == PM_NODE_DOWN ||
	    (type != PMD_NREQ_RESET && owes_reset(c, p)))
		return ENODEV;
	k = calloc(1, sizeof(*k));
	if (!k)
		return ENOMEM;
	*k = (struct pmd_ncall){ .id = ++c->next_id, .to = to, .to_inc = p->inc,
				 .deadline_ms = pmd_now_ms() + c->conf.down_ms,
				 .done = done, .arg = arg };
	err = nreq_send(c, to, p->inc, type, k->id, 0, 0, body, len);
	if (err) {
		free(k);
		return err == EAGAIN ? ENOBUFS : err;
	}
	k->next = c->calls;
	c->calls = k;
	return 0;
}

void pmd_cluster_answer(struct pmd_cluster *c, pm_node_t src, uint64_t src_inc,
			uint16_t type, uint64_t id, error_t status,
			const void *body, uint32_t len)
{
	nreq_send(c, src, src_inc, type, id, PMD_NREQ_REPLY,
		  pm_errno_to_status(status), body, len);
}

/* Ends call k (unlinked by the caller) with status and body. */
static void ncall_end(struct pmd_ncall *k, error_t status, const void *body,
		      size_t len)
{
	k->done(k->arg, status, body, len);
	free(k);
}

/* The answer to one of our calls (a late one: its caller was told). */
static void nreq_answered(struct pmd_cluster *c, const struct pmd_nreq_in *in)
{
	for (struct pmd_ncall **pp = &c->calls; *pp; pp = &(*pp)->next) {
		struct pmd_ncall *k = *pp;
		if (k->id != in->hdr->id || k->to != in->src)
			continue;
		*pp = k->next;
		ncall_end(k, pmd_status_to_errno(in->hdr->status), in->body,
			  in->hdr->len);
		return;
	}
	pmd_debug("cluster: a late answer (type %u, id %lu) from node %u",
		  in->hdr->type, (unsigned long)in->hdr->id, in->src);
	/* Its caller was told ETIMEDOUT: what the answer gave goes back. */
	if (in->hdr->type == PMD_NREQ_ALLOC && in->hdr->status == PM_ST_OK)
		pmd_borrow_late(c, in->src, in->body, in->hdr->len);
}

static void serve_ping(struct pmd_cluster *c, const struct pmd_nreq_in *in,
		       struct pmd_nreq_out *out)
{
	struct pmd_nreq_ping_rep rep = { .incarnation = c->mb.inc,
					 .frames_free = c->mb.frames_free };

	(void)in;
	memcpy(out->body, &rep, sizeof(rep));
	out->len = sizeof(rep);
}

/* The servers of the requests other nodes make, by type. */
typedef void nreq_serve_fn(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			   struct pmd_nreq_out *out);
static nreq_serve_fn *const nreq_served[] = {
	[PMD_NREQ_PING] = serve_ping,
	[PMD_NREQ_ALLOC] = pmd_lend_serve_alloc,
	[PMD_NREQ_FREE] = pmd_lend_serve_free,
	[PMD_NREQ_FWD_IMPORT] = pmd_proxy_serve,
	[PMD_NREQ_FWD_OP] = pmd_proxy_serve,
	[PMD_NREQ_FWD_BYE] = pmd_proxy_serve,
	[PMD_NREQ_RETURN] = pmd_lend_serve_return,
	[PMD_NREQ_RESET] = pmd_cluster_serve_reset,
	[PMD_NREQ_RECALL] = pmd_lend_serve_recall,
};

/* Whole, ours, between the current incarnations of both, authentic. */
static bool nreq_check(struct pmd_cluster *c, pm_node_t src,
		       const struct pmd_nreq_hdr *h, const uint8_t *body,
		       size_t len, uint64_t *src_inc)
{
	struct pmd_mb_peer *p = pmd_mb_peer(&c->mb, src);
	uint8_t want[32];

	if (h->magic != PMD_NREQ_MAGIC || !pmd_nreq_version_ok(h->version) ||
	    h->to != c->self || h->from != src || !p ||
	    h->len != len - sizeof(*h) || h->len > PMD_NREQ_BODY_MAX ||
	    p->state == PM_NODE_DOWN || h->from_inc != p->inc ||
	    h->to_inc != c->mb.inc)
		return false;
	pmd_nreq_mac(c, h, body, want);
	*src_inc = p->inc;
	return sodium_memcmp(want, h->mac, sizeof(want)) == 0;
}

void pmd_nreq_receive(struct pmd_cluster *c, pm_node_t src, const void *data,
		      size_t len)
{
	struct pmd_nreq_out out = { .body = c->nreq_out };
	struct pmd_nreq_in in = { .src = src };
	struct pmd_nreq_hdr h;

	if (len < sizeof(h))
		return;
	memcpy(&h, data, sizeof(h));
	in.hdr = &h;
	in.body = (const uint8_t *)data + sizeof(h);
	if (!nreq_check(c, src, &h, in.body, len, &in.src_inc)) {
		pmd_debug("cluster: dropped a node request (type %u) said to be "
			  "from node %u, received from node %u", h.type, h.from,
			  src);
		return;
	}
	if (h.flags & PMD_NREQ_REPLY) {
		nreq_answered(c, &in);
		return;
	}
	if (h.type != PMD_NREQ_RESET && h.type != PMD_NREQ_PING &&
	    owes_reset(c, pmd_mb_peer(&c->mb, src))) {
		pmd_cluster_answer(c, src, in.src_inc, h.type, h.id, ENODEV,
				   NULL, 0);
		return;
	}
	/* A request's body, aligned for its server's structs. */
	memcpy(c->nreq_in, in.body, h.len);
	in.body = c->nreq_in;
	if (h.type < sizeof(nreq_served) / sizeof(nreq_served[0]) &&
	    nreq_served[h.type])
		nreq_served[h.type](c, &in, &out);
	else
		out.status = EOPNOTSUPP;
	if (!out.later)
		pmd_cluster_answer(c, src, in.src_inc, h.type, h.id, out.status,
				   out.body, out.len);
}

void pmd_nreq_expire(struct pmd_cluster *c)
{
	uint64_t now = pmd_now_ms();

	for (struct pmd_ncall **pp = &c->calls; *pp;) {
		struct pmd_ncall *k = *pp;
		struct pmd_mb_peer *p = pmd_mb_peer(&c->mb, k->to);
		error_t why = p->state == PM_NODE_DOWN || p->inc != k->to_inc
			      ? ENODEV
			      : now >= k->deadline_ms ? ETIMEDOUT : 0;
		if (!why) {
			pp = &k->next;
			continue;
		}
		*pp = k->next;
		if (why == ETIMEDOUT)
			pmd_debug("cluster: call %lu to node %u timed out",
				  (unsigned long)k->id, k->to);
		ncall_end(k, why, NULL, 0);
	}
}

uint64_t pmd_nreq_next_deadline(const struct pmd_cluster *c)
{
	uint64_t next = UINT64_MAX;

	for (const struct pmd_ncall *k = c->calls; k; k = k->next)
		if (k->deadline_ms < next)
			next = k->deadline_ms;
	return next;
}

void pmd_nreq_stop(struct pmd_cluster *c)
{
	while (c->calls) {
		struct pmd_ncall *k = c->calls;
		c->calls = k->next;
		ncall_end(k, ENODEV, NULL, 0);
	}
}
