/* This node in a cluster (see cluster.h). */
#include "cluster.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <sodium.h>

#include "fabric.h"
#include "log.h"
#include "membership.h"

#define NREQ_MAGIC   0x52444d50u /* "PMDR" */
#define NREQ_VERSION 1u
#define NREQ_REPLY   0x1u
#define NREQ_BODY_MAX 512u

/* A node request or its answer: this header, then len bytes of body. */
struct nreq_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint16_t from, to;
	uint32_t len;                  /* body bytes */
	uint64_t id;                   /* chosen by the requester */
	uint64_t from_inc, to_inc;
	uint32_t status;               /* answers: wire status */
	uint32_t flags;                /* NREQ_REPLY */
	uint8_t mac[32];               /* HMAC of header (mac zero) and body */
};
_Static_assert(sizeof(struct nreq_hdr) == 80, "node request header");

struct ncall {
	uint64_t id;
	pm_node_t to;
	uint64_t to_inc;
	uint64_t deadline_ms;
	pmd_ncall_done *done;
	void *arg;
	struct ncall *next;
};

struct pmd_cluster {
	struct pmd_cluster_conf conf;
	struct ncall *calls;           /* pending, newest first */
	uint64_t next_id;
	pm_node_t self;
	struct fab_ep *ep;
	fab_peer_t peer[PMD_CLUSTER_NODES_MAX];   /* by index in conf.nodes */
	struct pmd_mb mb;
	char self_addr[300];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The fabric's own messages: a peer that is down makes sends fail at the
 * heartbeat pace, which is no news once membership has said so. */
static void fabric_log(int level, const char *msg, void *arg)
{
	static uint64_t last;
	uint64_t now = now_ms();

	(void)arg;
	if (level <= LOG_ERR && now - last >= 10000) {
		last = now;
		pmd_warn("fabric: %s", msg);
	} else {
		pmd_debug("fabric: %s", msg);
	}
}

error_t pmd_cluster_start(const struct pmd_cluster_conf *conf, pm_node_t self,
			  struct pmd_cluster **out)
{
	const struct pmd_cluster_node *me = pmd_cluster_node(conf, self);
	struct fab_attr attr = { 0 };
	struct pmd_cluster *c;
	struct timespec ts;
	error_t err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	c->conf = *conf;
	c->self = self;
	fab_log_set(fabric_log, NULL);
	attr.provider = conf->provider[0] ? conf->provider : NULL;
	attr.node = me->host;
	attr.service = me->port;
	attr.msg_size = sizeof(struct nreq_hdr) + NREQ_BODY_MAX;
	attr.timeout_ms = conf->down_ms;
	err = fab_ep_open(&attr, &c->ep);
	if (err) {
		pmd_err("cluster: cannot open the fabric endpoint at %s:%s: %s",
			me->host, me->port, strerror(err));
		goto fail;
	}
	for (unsigned i = 0; i < conf->nnodes; i++) {
		const struct pmd_cluster_node *n = &conf->nodes[i];
		struct fab_name name;

		c->peer[i] = FAB_PEER_NONE;
		if (n->id == self)
			continue;
		err = fab_name_resolve(c->ep, n->host, n->port, &name);
		if (!err)
			err = fab_peer_insert(c->ep, &name, &c->peer[i]);
		if (err) {
			pmd_err("cluster: node %u at %s:%s: %s", n->id, n->host,
				n->port, strerror(err));
			goto fail;
		}
	}
	/* Incarnations grow across restarts: the wall clock at start. */
	clock_gettime(CLOCK_REALTIME, &ts);
	pmd_mb_init(&c->mb, conf, self,
		    (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
	snprintf(c->self_addr, sizeof(c->self_addr), "%s:%s", me->host, me->port);
	pmd_info("cluster: node %u of %u at %s, incarnation %#lx", self,
		 conf->nnodes, c->self_addr, (unsigned long)c->mb.inc);
	*out = c;
	return 0;
fail:
	pmd_cluster_stop(c);
	return err;
}

void pmd_cluster_stop(struct pmd_cluster *c)
{
	if (!c)
		return;
	while (c->calls) {
		struct ncall *k = c->calls;
		c->calls = k->next;
		k->done(k->arg, ENODEV, NULL, 0);
		free(k);
	}
	if (c->ep && fab_ep_close(c->ep))
		pmd_warn("cluster: closing the fabric endpoint failed");
	sodium_memzero(c, sizeof(*c));
	free(c);
}

int pmd_cluster_fds(const struct pmd_cluster *c, int fds[2])
{
	int fd;

	if (fab_ep_wait_fd(c->ep, &fd) == 0) {
		fds[0] = fd;
		return 1;
	}
	return 0;
}

int pmd_cluster_timeout_ms(const struct pmd_cluster *c)
{
	uint64_t now = now_ms(), next = pmd_mb_next_ms(&c->mb);

	for (const struct ncall *k = c->calls; k; k = k->next)
		if (k->deadline_ms < next)
			next = k->deadline_ms;
	int fab = fab_ep_timeout_ms(c->ep);
	int ms = next > now ? (int)(next - now) : 0;

	return fab >= 0 && fab < ms ? fab : ms;
}

static pm_node_t node_of_peer(const struct pmd_cluster *c, fab_peer_t peer)
{
	for (unsigned i = 0; i < c->conf.nnodes; i++)
		if (c->peer[i] == peer && peer != FAB_PEER_NONE)
			return c->conf.nodes[i].id;
	return 0;
}

static fab_peer_t peer_of_node(const struct pmd_cluster *c, pm_node_t id)
{
	for (unsigned i = 0; i < c->conf.nnodes; i++)
		if (c->conf.nodes[i].id == id)
			return c->peer[i];
	return FAB_PEER_NONE;
}

static void nreq_mac(const struct pmd_cluster *c, const struct nreq_hdr *h,
		     const void *body, uint8_t out[32])
{
	crypto_auth_hmacsha256_state st;
	struct nreq_hdr copy = *h;

	memset(copy.mac, 0, sizeof(copy.mac));
	crypto_auth_hmacsha256_init(&st, c->conf.secret, c->conf.secret_len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)&copy, sizeof(copy));
	if (h->len)
		crypto_auth_hmacsha256_update(&st, body, h->len);
	crypto_auth_hmacsha256_final(&st, out);
}

static int nreq_send(struct pmd_cluster *c, pm_node_t to, uint64_t to_inc,
		     uint16_t type, uint64_t id, uint32_t flags, uint32_t status,
		     const void *body, size_t len)
{
	uint8_t buf[sizeof(struct nreq_hdr) + NREQ_BODY_MAX];
	struct nreq_hdr *h = (struct nreq_hdr *)buf;

	if (len > NREQ_BODY_MAX)
		return EMSGSIZE;
	memset(h, 0, sizeof(*h));
	h->magic = NREQ_MAGIC;
	h->version = NREQ_VERSION;
	h->type = type;
	h->from = c->self;
	h->to = to;
	h->len = (uint32_t)len;
	h->id = id;
	h->from_inc = c->mb.inc;
	h->to_inc = to_inc;
	h->status = status;
	h->flags = flags;
	if (len)
		memcpy(h + 1, body, len);
	nreq_mac(c, h, h + 1, h->mac);
	return fab_send(c->ep, peer_of_node(c, to), buf, sizeof(*h) + len, NULL);
}

error_t pmd_cluster_call(struct pmd_cluster *c, pm_node_t to, uint16_t type,
			 const void *body, size_t len, pmd_ncall_done *done,
			 void *arg)
{
	struct pmd_mb_peer *p = pmd_mb_peer(&c->mb, to);
	struct ncall *k;
	error_t err;

	if (!p)
		return to == c->self ? EINVAL : ENODEV;
	if (p->state == PM_NODE_DOWN)
		return ENODEV;
	k = calloc(1, sizeof(*k));
	if (!k)
		return ENOMEM;
	*k = (struct ncall){ .id = ++c->next_id, .to = to, .to_inc = p->inc,
			     .deadline_ms = now_ms() + c->conf.down_ms,
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

void pmd_cluster_cancel(struct pmd_cluster *c, void *arg)
{
	for (struct ncall **pp = &c->calls; *pp;) {
		struct ncall *k = *pp;
		if (k->arg == arg) {
			*pp = k->next;
			free(k);
		} else {
			pp = &k->next;
		}
	}
}

/* Ends call k (unlinked by the caller) with status and body. */
static void ncall_end(struct ncall *k, error_t status, const void *body,
		      size_t len)
{
	k->done(k->arg, status, body, len);
	free(k);
}

/* A node request or answer from node src; dropped unless it is whole,
 * authentic, and between the current incarnations of both. */
static void nreq_receive(struct pmd_cluster *c, pm_node_t src,
			 const void *data, size_t len)
{
	struct nreq_hdr h;
	const uint8_t *body = (const uint8_t *)data + sizeof(h);
	struct pmd_mb_peer *p;
	uint8_t want[32];

	if (len < sizeof(h))
		return;
	memcpy(&h, data, sizeof(h));
	if (h.magic != NREQ_MAGIC || h.version != NREQ_VERSION ||
	    h.to != c->self || h.from != src || !(p = pmd_mb_peer(&c->mb, src)) ||
	    h.len != len - sizeof(h) || h.len > NREQ_BODY_MAX ||
	    p->state == PM_NODE_DOWN || h.from_inc != p->inc ||
	    h.to_inc != c->mb.inc)
		return;
	nreq_mac(c, &h, body, want);
	if (sodium_memcmp(want, h.mac, sizeof(want)) != 0)
		return;
	if (h.flags & NREQ_REPLY) {
		for (struct ncall **pp = &c->calls; *pp; pp = &(*pp)->next) {
			struct ncall *k = *pp;
			if (k->id != h.id || k->to != src)
				continue;
			*pp = k->next;
			ncall_end(k, pm_status_to_errno(h.status), body, h.len);
			return;
		}
		return; /* late: its caller was told already */
	}
	switch (h.type) {
	case PMD_NREQ_PING: {
		struct pmd_nreq_ping_rep rep = { .incarnation = c->mb.inc,
						 .frames_free = c->mb.frames_free };
		nreq_send(c, src, p->inc, h.type, h.id, NREQ_REPLY, PM_ST_OK,
			  &rep, sizeof(rep));
		return;
	}
	default:
		nreq_send(c, src, p->inc, h.type, h.id, NREQ_REPLY,
			  PM_ST_UNSUPPORTED, NULL, 0);
		return;
	}
}

/* Calls whose node went down, restarted, or did not answer in time. */
static void ncall_expire(struct pmd_cluster *c)
{
	uint64_t now = now_ms();

	for (struct ncall **pp = &c->calls; *pp;) {
		struct ncall *k = *pp;
		struct pmd_mb_peer *p = pmd_mb_peer(&c->mb, k->to);
		error_t why = p->state == PM_NODE_DOWN || p->inc != k->to_inc ? ENODEV
			      : now >= k->deadline_ms ? ETIMEDOUT : 0;
		if (!why) {
			pp = &k->next;
			continue;
		}
		*pp = k->next;
		ncall_end(k, why, NULL, 0);
	}
}

/* Sends what the protocol said to send. A send the fabric refuses (its
 * queue full) is dropped: the protocol repeats itself. */
static void send_out(struct pmd_cluster *c)
{
	for (unsigned k = 0; k < c->mb.nout; k++)
		fab_send(c->ep, peer_of_node(c, c->mb.out[k].to), &c->mb.out[k].msg,
			 sizeof(c->mb.out[k].msg), NULL);
	c->mb.nout = 0;
}

void pmd_cluster_run(struct pmd_cluster *c, uint64_t frames_total,
		     uint64_t frames_free)
{
	struct fab_cqe cqe[32];
	size_t n;

	c->mb.frames_total = frames_total;
	c->mb.frames_free = frames_free;
	do {
		while (fab_ep_poll(c->ep, cqe, 32, &n) == 0 && n) {
			uint64_t now = now_ms();
			for (size_t i = 0; i < n; i++) {
				if (cqe[i].op != FAB_OP_RECV || cqe[i].status)
					continue; /* a send to a peer that is gone */
				uint32_t magic = 0;
				if (cqe[i].len >= sizeof(magic))
					memcpy(&magic, cqe[i].data, sizeof(magic));
				if (magic == NREQ_MAGIC)
					nreq_receive(c, node_of_peer(c, cqe[i].peer),
						     cqe[i].data, cqe[i].len);
				else
					pmd_mb_receive(&c->mb, now,
						       node_of_peer(c, cqe[i].peer),
						       cqe[i].data, cqe[i].len);
			}
			send_out(c); /* answers go out at once */
		}
		pmd_mb_tick(&c->mb, now_ms());
		send_out(c);
		ncall_expire(c);
	} while (fab_ep_trywait(c->ep) == EAGAIN);
}

unsigned pmd_cluster_nodes(const struct pmd_cluster *c,
			   struct pm_node_entry *out, unsigned max)
{
	unsigned k = 0;

	for (unsigned i = 0; i < c->conf.nnodes && k < max; i++) {
		const struct pmd_cluster_node *n = &c->conf.nodes[i];
		const struct pmd_mb_peer *p;

		if (n->id == c->self)
			continue;
		p = pmd_mb_peer((struct pmd_mb *)&c->mb, n->id);
		memset(&out[k], 0, sizeof(out[k]));
		out[k].id = n->id;
		out[k].state = (uint32_t)p->state;
		out[k].frames_total = p->frames_total;
		out[k].frames_free = p->frames_free;
		out[k].incarnation = p->inc;
		snprintf(out[k].address, sizeof(out[k].address), "%.50s:%s",
			 n->host, n->port);
		k++;
	}
	return k;
}

uint64_t pmd_cluster_incarnation(const struct pmd_cluster *c)
{
	return c->mb.inc;
}

const char *pmd_cluster_self_address(const struct pmd_cluster *c)
{
	return c->self_addr;
}
