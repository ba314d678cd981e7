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

struct pmd_cluster {
	struct pmd_cluster_conf conf;
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
	attr.msg_size = sizeof(struct pmd_mb_msg);
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
				pmd_mb_receive(&c->mb, now,
					       node_of_peer(c, cqe[i].peer),
					       cqe[i].data, cqe[i].len);
			}
			send_out(c); /* answers go out at once */
		}
		pmd_mb_tick(&c->mb, now_ms());
		send_out(c);
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
