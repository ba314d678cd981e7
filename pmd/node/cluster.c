/*
 * cluster.c - this node in a cluster (see node.h): the endpoint and
 * its peers, the progress loop that drives every file of the node layer,
 * membership's glue to the fabric, and what it says of the other nodes.
 */
#include "node_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include <sodium.h>

#include "borrowed.h"
#include "clock.h"
#include "log.h"

/* The fabric's own messages: a peer that is down makes sends fail at the
 * heartbeat pace, which is no news once membership has said so. */
static void fabric_log(int level, const char *msg, void *arg)
{
	static uint64_t last;
	uint64_t now = pmd_now_ms();

	(void)arg;
	if (level <= LOG_ERR && now - last >= 10000) {
		last = now;
		pmd_warn("fabric: %s", msg);
	} else {
		pmd_debug("fabric: %s", msg);
	}
}

/* The endpoint at this node's address, every peer in its table. */
static error_t cluster_open(struct pmd_cluster *c)
{
	const struct pmd_cluster_node *me = pmd_cluster_node(&c->conf, c->self);
	struct fab_attr attr = { 0 };
	error_t err;

	fab_log_set(fabric_log, NULL);
	attr.provider = c->conf.transport[0] ? c->conf.transport : NULL;
	attr.node = me->host;
	attr.service = me->port;
	attr.msg_size = sizeof(struct pmd_nreq_hdr) + PMD_NREQ_BODY_MAX;
	attr.tx_depth = 512; /* remote I/O: up to 16 x 17 RDMA at once */
	attr.timeout_ms = c->conf.down_ms;
	attr.report_release = 1; /* rio.c holds what the provider holds */
	err = fab_ep_open(&attr, &c->ep);
	if (err) {
		pmd_err("cluster: cannot open the fabric endpoint at %s:%s: %s",
			me->host, me->port, strerror(err));
		return err;
	}
	snprintf(c->self_addr, sizeof(c->self_addr), "%s:%s", me->host,
		 me->port);
	for (unsigned i = 0; i < c->conf.nnodes; i++) {
		const struct pmd_cluster_node *n = &c->conf.nodes[i];
		struct fab_name name;

		c->peer[i] = FAB_PEER_NONE;
		if (n->id == c->self)
			continue;
		err = fab_name_resolve(c->ep, n->host, n->port, &name);
		if (!err)
			err = fab_peer_insert(c->ep, &name, &c->peer[i]);
		if (err) {
			pmd_err("cluster: node %u at %s:%s: %s", n->id, n->host,
				n->port, strerror(err));
			return err;
		}
	}
	return 0;
}

error_t pmd_cluster_start(const struct pmd_cluster_conf *conf, pm_node_t self,
			  struct pmd_core *core, struct pmd_cluster **out)
{
	struct pmd_cluster *c;
	struct timespec ts;
	error_t err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	c->conf = *conf;
	c->self = self;
	c->core = core;
	err = pmd_nreq_init(c);
	if (!err)
		err = cluster_open(c);
	if (!err) {
		err = pmd_rio_init(c);
		if (err)
			pmd_err("cluster: bounce buffers: %s", strerror(err));
	}
	if (err)
		goto stop;
	/* Incarnations grow across restarts: the wall clock at start. */
	clock_gettime(CLOCK_REALTIME, &ts);
	pmd_mb_init(&c->mb, conf, self,
		    (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
	for (unsigned i = 0; i < c->mb.npeers; i++)
		c->prev_state[i] = PM_NODE_DOWN;
	pmd_lend_prepare(c); /* the first loans need no registration */
	{
		struct fab_info fi = { 0 };

		fab_ep_info(c->ep, &fi);
		pmd_info("cluster: node %u of %u at %s over %s, incarnation %#lx",
			 self, conf->nnodes, c->self_addr, fi.provider,
			 (unsigned long)c->mb.inc);
	}
	*out = c;
	return 0;
stop:
	pmd_cluster_stop(c);
	return err;
}

void pmd_cluster_stop(struct pmd_cluster *c)
{
	if (!c)
		return;
	pmd_nreq_stop(c);
	/* The proxies of other nodes' tasks end with us. */
	pmd_proxy_stop(c);
	pmd_lend_stop(c);
	pmd_rio_stop(c);
	if (c->ep && fab_ep_close(c->ep))
		pmd_warn("cluster: closing the fabric endpoint failed");
	pmd_rio_free(c);
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
	uint64_t now = pmd_now_ms(), next = pmd_mb_next_ms(&c->mb);
	uint64_t call = pmd_nreq_next_deadline(c);
	int fab = fab_ep_timeout_ms(c->ep);
	int ms;

	if (call < next)
		next = call;
	ms = next > now ? (int)(next - now) : 0;
	if (c->rio_ready)
		return 0;
	return fab >= 0 && fab < ms ? fab : ms;
}

/* Everything between us and node goes: slots lent to it come back,
 * frames we had on it are lost, its tasks' proxies go, and handles of
 * ours that it served are stale (the epoch). */
static void forget_node(struct pmd_cluster *c, unsigned i, pm_node_t node)
{
	pmd_lend_forget(c, node);
	pmd_node_lost(c->core, node);
	pmd_proxy_forget(c, node);
	c->epoch[i]++;
}

/* Its answer: told (else the next turn tells it again). */
static void reset_answered(void *arg, error_t status, const void *body,
			   size_t len)
{
	struct pmd_reset *r = arg;

	(void)body;
	(void)len;
	r->busy = false;
	if (!status) {
		r->c->forgot_inc[r->peer] = 0;
		pmd_lend_forgotten(r->c, r->c->mb.peers[r->peer].id);
	}
}

void pmd_cluster_serve_reset(struct pmd_cluster *c,
			     const struct pmd_nreq_in *in,
			     struct pmd_nreq_out *out)
{
	if (in->hdr->len) {
		out->status = EPROTO;
		return;
	}
	for (unsigned i = 0; i < c->mb.npeers; i++)
		if (c->mb.peers[i].id == in->src) {
			pmd_info("cluster: node %u had declared us down: what "
				 "we held with it goes", in->src);
			forget_node(c, i, in->src);
			pmd_lend_forgotten(c, in->src);
		}
}

/* Membership moved: a node that went down or restarted is forgotten
 * (forget_node); one that comes back under the incarnation we forgot
 * (paused, or cut off) is told to forget us too. */
static void watch_peers(struct pmd_cluster *c)
{
	for (unsigned i = 0; i < c->mb.npeers; i++) {
		const struct pmd_mb_peer *p = &c->mb.peers[i];
		bool gone = (c->prev_state[i] != PM_NODE_DOWN &&
			     p->state == PM_NODE_DOWN) ||
			    (c->prev_inc[i] && p->inc != c->prev_inc[i]);

		if (gone) {
			forget_node(c, i, p->id);
			/* Only the incarnation we forgot under is told: one
			 * that restarted forgot us by itself. */
			c->forgot_inc[i] = !c->prev_inc[i] ||
					   p->inc == c->prev_inc[i] ? p->inc : 0;
			if (!c->forgot_inc[i]) /* a new incarnation */
				pmd_lend_forgotten(c, p->id);
		}
		if (p->state == PM_NODE_UP && c->forgot_inc[i] &&
		    !c->resets[i].busy) {
			c->resets[i] = (struct pmd_reset){ .c = c, .peer = i };
			if (p->inc != c->forgot_inc[i]) {
				c->forgot_inc[i] = 0; /* it restarted: forgot */
				pmd_lend_forgotten(c, p->id);
			}
			else if (!pmd_cluster_call(c, p->id, PMD_NREQ_RESET,
						   NULL, 0, reset_answered,
						   &c->resets[i]))
				c->resets[i].busy = true;
		}
		c->prev_state[i] = p->state;
		c->prev_inc[i] = p->inc;
	}
}

/* Sends what the protocol said to send. A send the fabric refuses (its
 * queue full) is dropped: the protocol repeats itself. */
static void send_out(struct pmd_cluster *c)
{
	for (unsigned k = 0; k < c->mb.nout; k++) {
		struct pmd_traffic *t = pmd_traffic_of(c, c->mb.out[k].to);

		if (!fab_send(c->ep, pmd_peer_of_node(c, c->mb.out[k].to),
			      &c->mb.out[k].msg, sizeof(c->mb.out[k].msg),
			      NULL) && t) {
			t->tx_msgs++;
			t->tx_bytes += sizeof(c->mb.out[k].msg);
		}
	}
	c->mb.nout = 0;
}

/* One completion: ours (a read or write), or a peer's message. */
static unsigned cluster_complete(struct pmd_cluster *c,
				 const struct fab_cqe *e, uint64_t now)
{
	struct pmd_traffic *t;
	uint32_t magic = 0;

	if ((e->op == FAB_OP_READ || e->op == FAB_OP_WRITE) && e->ctx) {
		pmd_rio_complete(c, e->ctx, e->status, e->held, e->released);
		return PMD_CLUSTER_PROGRESS;
	}
	if (e->op != FAB_OP_RECV || e->status)
		return 0; /* a send to a peer that is gone */
	if ((t = pmd_traffic_of(c, pmd_node_of_peer(c, e->peer)))) {
		t->rx_msgs++;
		t->rx_bytes += e->len;
	}
	if (e->len >= sizeof(magic))
		memcpy(&magic, e->data, sizeof(magic));
	if (magic == PMD_NREQ_MAGIC)
		pmd_nreq_receive(c, pmd_node_of_peer(c, e->peer), e->data,
				 e->len);
	else
		pmd_mb_receive(&c->mb, now, pmd_node_of_peer(c, e->peer),
			       e->data, e->len);
	return PMD_CLUSTER_SERVED;
}

/* The daemon runs what the batch let run (its upcall). */
static void batch_done(struct pmd_cluster *c)
{
	if (c->up.batch_done)
		c->up.batch_done(c->up.arg);
}

unsigned pmd_cluster_run(struct pmd_cluster *c, uint64_t frames_total,
			 uint64_t frames_free, bool sleep)
{
	struct fab_cqe cqe[64];
	unsigned active = 0;
	size_t n;

	c->mb.frames_total = frames_total;
	c->mb.frames_free = c->draining ? 0 : frames_free; /* (lends none) */
	if (c->rio_ready)
		active |= PMD_CLUSTER_PROGRESS;
	pmd_rio_run_ready(c);
	batch_done(c);
	do {
		uint64_t now;

		while (fab_ep_poll(c->ep, cqe, 64, &n) == 0 && n) {
			now = pmd_now_ms();
			for (size_t i = 0; i < n; i++)
				active |= cluster_complete(c, &cqe[i], now);
			send_out(c); /* answers go out at once */
			batch_done(c);
		}
		now = pmd_now_ms();
		if (now >= c->mb.next_hb_ms && c->up.physical_free)
			c->mb.phys_free = c->up.physical_free(c->up.arg);
		pmd_mb_tick(&c->mb, now);
		send_out(c);
		pmd_nreq_expire(c);
		watch_peers(c);
		pmd_cluster_give_back(c);
		pmd_rio_run_ready(c);
		batch_done(c);
		if (c->lend_low)
			pmd_lend_prepare(c);
	} while (sleep && fab_ep_trywait(c->ep) == EAGAIN);
	c->slept = sleep; /* trywait said sleeping is safe */
	c->posts_seen = fab_ep_posts(c->ep);
	return active;
}

bool pmd_cluster_quiet(const struct pmd_cluster *c)
{
	return c->slept && c->posts_seen == fab_ep_posts(c->ep) &&
	       fab_ep_wakes(c->ep) && !c->rio_ready &&
	       pmd_cluster_timeout_ms(c) != 0;
}

bool pmd_cluster_waiting(const struct pmd_cluster *c)
{
	return c->calls || pmd_rio_busy(c);
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
		/* Its frames no physical page takes, as pm_nodes says of
		 * this node; an older node says only its budget's. */
		out[k].frames_free = p->phys_known ? p->phys_free :
						     p->frames_free;
		out[k].incarnation = p->inc;
		out[k].version = p->inc ? pmd_mb_nreq_version(p) : 0;
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

uint64_t pmd_cluster_peer_epoch(const struct pmd_cluster *c, pm_node_t node)
{
	for (unsigned i = 0; i < c->mb.npeers; i++)
		if (c->mb.peers[i].id == node)
			return c->epoch[i] + 1;
	return 0;
}

bool pmd_cluster_peer_up(const struct pmd_cluster *c, pm_node_t node)
{
	const struct pmd_mb_peer *p = pmd_mb_peer((struct pmd_mb *)&c->mb, node);

	return p && p->state != PM_NODE_DOWN;
}

bool pmd_cluster_knows(const struct pmd_cluster *c, pm_node_t node)
{
	return node != c->self && pmd_cluster_node(&c->conf, node) != NULL;
}

pm_node_t pmd_cluster_best_lender(const struct pmd_cluster *c,
				   pm_node_t except)
{
	pm_node_t best = 0, unknown = 0;
	uint64_t most = 0;

	for (unsigned i = 0; i < c->mb.npeers; i++) {
		const struct pmd_mb_peer *p = &c->mb.peers[i];
		if (p->state != PM_NODE_UP || p->id == except)
			continue;
		if (p->frames_free > most) {
			most = p->frames_free;
			best = p->id;
		} else if (!p->hb_seq_in && !unknown) {
			unknown = p->id; /* just joined: no heartbeat yet */
		}
	}
	return best ? best : unknown;
}

unsigned pmd_cluster_up_nodes(const struct pmd_cluster *c, pm_node_t *out,
			      unsigned max)
{
	unsigned k = 0;

	/* The cluster file's nodes are sorted by id. */
	for (unsigned i = 0; i < c->conf.nnodes && k < max; i++) {
		pm_node_t id = c->conf.nodes[i].id;
		const struct pmd_mb_peer *p;

		if (id != c->self) {
			p = pmd_mb_peer((struct pmd_mb *)&c->mb, id);
			if (!p || p->state != PM_NODE_UP)
				continue;
		}
		out[k++] = id;
	}
	return k;
}

void pmd_cluster_loans(struct pmd_cluster *c, struct pm_debug_loans_rep *out)
{
	uint64_t lent[PMD_CLUSTER_NODES_MAX] = { 0 };
	uint64_t borrowed[PMD_CLUSTER_NODES_MAX] = { 0 };
	bool ok = true;

	pmd_lend_count(c, lent, &ok);
	pmd_borrow_count(c, borrowed, &ok);
	out->n = 0;
	for (unsigned i = 0; i < c->conf.nnodes && out->n < PM_NODES_MAX; i++)
		if (lent[i] || borrowed[i])
			out->e[out->n++] = (struct pm_debug_loan_ent){
				.node = c->conf.nodes[i].id,
				.lent_to = lent[i], .borrowed_from = borrowed[i] };
	out->ok = ok;
}

unsigned pmd_cluster_traffic(const struct pmd_cluster *c,
			     struct pmd_traffic *out, unsigned max)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->conf.nnodes && n < max; i++) {
		const struct pmd_mb_peer *p;

		if (c->conf.nodes[i].id == c->self)
			continue;
		out[n] = c->traffic[i];
		out[n].node = c->conf.nodes[i].id;
		p = pmd_mb_peer((struct pmd_mb *)&c->mb, out[n].node);
		out[n].state = p ? p->state : PM_NODE_DOWN;
		n++;
	}
	return n;
}
