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
#include "grow.h"
#include "log.h"
#include "membership.h"

#define NREQ_MAGIC   0x52444d50u /* "PMDR" */
#define NREQ_VERSION 3u /* 2: FWD_OP answers start with the task reply;
                          * 3: tagged loans, forwarded maps */
#define NREQ_REPLY   0x1u
#define NREQ_BODY_MAX (PMD_FWD_IO_MAX + 64u)

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
	uint8_t mac[32];               /* MAC of header (mac zero) and body */
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

/* A loan being asked for (an ALLOC call's argument). */
struct borrow {
	struct pmd_cluster *c;
	pm_node_t node;
	uint64_t tag_task, tag_cont;
	pmd_borrow_done *done;
	void *arg;
};

/* A segment this node lends slots of, and to whom each slot is lent. A
 * tagged one is kept for one task of ours mapping one container of one
 * home (a forwarded map): only that home's frames of that container go
 * there, the task gets its descriptor, and a slot given back retires
 * (punched, never lent again while the segment lives, its frame
 * recorded) so that the task's mapping faults and follows the frame.
 * Once every slot of a tagged segment has retired it is *spent*: the
 * memory, descriptor and registration go, and only the frame records
 * stay (4 KiB), for the task's faults, until the task ends. */
struct lseg {
	struct pmd_segment *seg;       /* NULL: a spent tagged segment */
	uint64_t seg_id;               /* its wire id (kept when spent) */
	struct fab_mr *mr;
	struct fab_rkey rk;
	uint64_t tag_task, tag_cont;   /* 0: lent for any frames */
	container_t tag_handle;        /* the task's proxy's handle there */
	pm_node_t tag_home;
	bool task_gone;                /* its task left: freed when empty */
	uint32_t nlent;
	frame_t *frame;                /* tagged: the frame in each slot */
	pm_node_t owner[PMD_SEG_SLOTS];
};

/* ALLOC request: n slots, for any frames (n alone) or for a task's
 * mapping (tagged, the frames named). */
struct lend_req {
	uint32_t n;
	uint32_t pad;
	uint64_t task, cont;
	container_t handle;
	uint64_t frame[PMD_LEND_MAX];
};
/* ALLOC answer: n places; FREE request: n slots. */
struct lend_entry {
	uint64_t key, base, len;
	uint32_t seg;
	uint16_t slot;
	uint16_t pad;
};
struct lend_rep {
	uint32_t n;
	uint32_t pad;
	struct lend_entry e[PMD_LEND_MAX];
};
struct free_entry {
	uint32_t seg;
	uint16_t slot;
	uint16_t pad;
};
#define FREE_MAX 60

#define BOUNCES 16                 /* remote I/O at once */

/* A read or write touching remote frames. */
struct rio {
	struct pmd_cluster *c;
	bool write;
	int bounce;                    /* -1: queued for one, or windowed */
	uint8_t *buf;                  /* the local side: a bounce buffer or */
	struct fab_mr *mr;             /* the caller's window, and its */
	size_t mr_off;                 /* registration */
	uint32_t len, npieces, left;
	struct pmd_io_piece pieces[PMD_IO_PIECES];
	uint8_t *data;                 /* write: the bytes, while queued */
	error_t status;
	pmd_rio_done *done;            /* NULL once cancelled */
	void *arg;
	struct rio *next;              /* in c->rio_queue or c->rio_window */
	struct rio *ready_next;        /* in c->rio_ready */
};

struct pmd_cluster {
	struct pmd_cluster_conf conf;
	uint8_t nreq_key[32];          /* node requests' MAC key, from the
	                                * secret */
	struct pmd_core *core;
	struct ncall *calls;           /* pending, newest first */
	uint64_t next_id;
	struct lseg **lsegs;           /* segments we lend slots of */
	uint32_t nlsegs, lsegs_cap;
	int prev_state[PMD_CLUSTER_NODES_MAX];  /* by membership peer index */
	uint64_t prev_inc[PMD_CLUSTER_NODES_MAX];
	uint8_t *bounce;               /* BOUNCES * PM_IO_MAX, registered */
	struct fab_mr *bounce_mr;
	struct rio *bounce_user[BOUNCES];
	struct rio *rio_queue, **rio_tail; /* waiting for a bounce */
	struct rio *rio_window;        /* in flight from tasks' windows */
	struct rio *rio_ready;         /* ended while being started: their
	                                * done runs from pmd_cluster_run, never
	                                * from under their caller */
	pmd_fwd_fn *fwd;               /* the server's hooks */
	pmd_proxy_gone_fn *proxy_gone;
	void *hook_arg;
	pm_node_t self;
	struct fab_ep *ep;
	fab_peer_t peer[PMD_CLUSTER_NODES_MAX];   /* by index in conf.nodes */
	struct pmd_mb mb;
	char self_addr[300];
};

/* The fabric's own messages: a peer that is down makes sends fail at the
 * heartbeat pace, which is no news once membership has said so. */
static void fabric_log(int level, const char *msg, void *arg)
{
	static uint64_t last;
	uint64_t now = pmd_core_now_ms();

	(void)arg;
	if (level <= LOG_ERR && now - last >= 10000) {
		last = now;
		pmd_warn("fabric: %s", msg);
	} else {
		pmd_debug("fabric: %s", msg);
	}
}

static void lend_prepare(struct pmd_cluster *c);

error_t pmd_cluster_start(const struct pmd_cluster_conf *conf, pm_node_t self,
			  struct pmd_core *core, struct pmd_cluster **out)
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
	/* Node requests carry up to 64 KiB of data: keyed BLAKE2b is three
	 * times as fast as HMAC-SHA-256 there. Its key is derived from the
	 * secret (of any length), apart from membership's own use of it. */
	{
		crypto_auth_hmacsha256_state st;
		crypto_auth_hmacsha256_init(&st, conf->secret, conf->secret_len);
		crypto_auth_hmacsha256_update(&st,
			(const uint8_t *)"pmd node requests", 17);
		crypto_auth_hmacsha256_final(&st, c->nreq_key);
	}
	c->self = self;
	c->core = core;
	c->rio_tail = &c->rio_queue;
	fab_log_set(fabric_log, NULL);
	attr.provider = conf->provider[0] ? conf->provider : NULL;
	attr.node = me->host;
	attr.service = me->port;
	attr.msg_size = sizeof(struct nreq_hdr) + NREQ_BODY_MAX;
	attr.tx_depth = 512; /* remote I/O: up to 16 x 17 RDMA at once */
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
	/* Bounce buffers for remote I/O, registered once. */
	{
		uint64_t key;
		c->bounce = aligned_alloc(PM_FRAME_SIZE, (size_t)BOUNCES * PM_IO_MAX);
		err = c->bounce ? fab_key_random(c->ep, &key) : ENOMEM;
		if (!err)
			err = fab_mr_reg(c->ep, c->bounce, (size_t)BOUNCES * PM_IO_MAX,
					 FAB_ACCESS_LOCAL, key, &c->bounce_mr);
		if (err) {
			pmd_err("cluster: bounce buffers: %s", strerror(err));
			goto fail;
		}
	}
	/* Incarnations grow across restarts: the wall clock at start. */
	clock_gettime(CLOCK_REALTIME, &ts);
	pmd_mb_init(&c->mb, conf, self,
		    (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
	snprintf(c->self_addr, sizeof(c->self_addr), "%s:%s", me->host, me->port);
	for (unsigned i = 0; i < c->mb.npeers; i++)
		c->prev_state[i] = PM_NODE_DOWN;
	lend_prepare(c); /* the first loans need no registration */
	pmd_info("cluster: node %u of %u at %s, incarnation %#lx", self,
		 conf->nnodes, c->self_addr, (unsigned long)c->mb.inc);
	*out = c;
	return 0;
fail:
	pmd_cluster_stop(c);
	return err;
}

/* ---- lending ---- */

static void lseg_destroy(struct pmd_cluster *c, unsigned i)
{
	struct lseg *l = c->lsegs[i];

	if (l->mr)
		fab_mr_dereg(l->mr);
	pmd_segtab_flush(&c->core->segs);
	if (l->seg)
		pmd_segment_destroy(&c->core->segs, l->seg);
	free(l->frame);
	free(l);
	c->lsegs[i] = c->lsegs[--c->nlsegs];
}

/* A tagged segment whose every slot retired: nothing lives there any
 * more; its frame records alone answer the task's faults. */
static void lseg_spend(struct pmd_cluster *c, struct lseg *l)
{
	if (l->mr)
		fab_mr_dereg(l->mr);
	l->mr = NULL;
	pmd_segtab_flush(&c->core->segs);
	pmd_segment_destroy(&c->core->segs, l->seg);
	l->seg = NULL;
}

/* A lent slot comes back: free for any frames, or retired in a tagged
 * segment (the task's mapping of it faults). */
static void lend_release(struct pmd_cluster *c, struct lseg *l, unsigned slot)
{
	l->owner[slot] = 0;
	l->nlent--;
	if (l->tag_task)
		pmd_segment_slot_retire(&c->core->segs, l->seg, slot, NULL,
					l->frame[slot]);
	else
		pmd_segment_slot_put(&c->core->segs, l->seg, slot); /* punched
								      * later */
	c->core->budget.lent--;
	c->core->segs.slots_lent--;
	if (l->tag_task && !l->nlent && l->seg->nretired == PMD_SEG_SLOTS)
		lseg_spend(c, l);
}

/* Tagged segments whose task left and that lend nothing more go. */
static void lseg_sweep(struct pmd_cluster *c)
{
	for (unsigned i = 0; i < c->nlsegs;) {
		struct lseg *l = c->lsegs[i];
		if (l->tag_task && l->task_gone && !l->nlent)
			lseg_destroy(c, i);
		else
			i++;
	}
}

static struct lseg *lseg_by_index(struct pmd_cluster *c, uint32_t index)
{
	for (unsigned i = 0; i < c->nlsegs; i++)
		if (c->lsegs[i]->seg && c->lsegs[i]->seg->index == index)
			return c->lsegs[i];
	return NULL;
}

/* A new segment to lend from, registered with the fabric; tagged when
 * task is not 0. */
static error_t lseg_new(struct pmd_cluster *c, pm_node_t home, uint64_t task,
			uint64_t cont, container_t handle)
{
	struct lseg *l, **v;
	uint64_t key;
	error_t err;

	l = calloc(1, sizeof(*l));
	v = pmd_grow(c->lsegs, c->nlsegs, &c->lsegs_cap, sizeof(*v), 8);
	if (!l || !v) {
		free(l);
		return ENOMEM;
	}
	c->lsegs = v;
	*l = (struct lseg){ .tag_task = task, .tag_cont = cont,
			    .tag_handle = handle, .tag_home = task ? home : 0 };
	err = pmd_segment_create(&c->core->segs, &l->seg);
	if (!err)
		l->seg_id = l->seg->id;
	if (!err && task) {
		l->frame = calloc(PMD_SEG_SLOTS, sizeof(*l->frame));
		err = l->frame ? pmd_segment_fwd_reserve(l->seg) : ENOMEM;
	}
	if (!err)
		err = fab_key_random(c->ep, &key);
	if (!err)
		err = fab_mr_reg(c->ep, l->seg->base,
				 (size_t)PMD_SEG_SLOTS * PM_FRAME_SIZE,
				 FAB_ACCESS_REMOTE_READ | FAB_ACCESS_REMOTE_WRITE,
				 key, &l->mr);
	if (!err)
		err = fab_mr_rkey(l->mr, &l->rk);
	if (err) {
		if (l->mr)
			fab_mr_dereg(l->mr);
		if (l->seg)
			pmd_segment_destroy(&c->core->segs, l->seg);
		free(l->frame);
		free(l);
		return err;
	}
	c->lsegs[c->nlsegs++] = l;
	return 0;
}

/* Keeps a quarter of a segment's slots ready to lend, made and registered
 * ahead of need (after an answer, not on a request's path). */
static void lend_prepare(struct pmd_cluster *c)
{
	unsigned ready = 0;

	for (unsigned i = 0; i < c->nlsegs; i++)
		if (!c->lsegs[i]->tag_task)
			ready += pmd_slots_free(&c->lsegs[i]->seg->slots);
	/* (a tagged one is never ready for others; a spent one has none) */
	if (ready < PMD_SEG_SLOTS / 4 && lseg_new(c, 0, 0, 0, 0))
		pmd_warn("cluster: no segment to lend from");
}

/* A slot to lend: in a segment we lend from with this tag (a new one
 * only if none has room). */
static error_t lend_slot(struct pmd_cluster *c, pm_node_t home,
			 const struct lend_req *q, struct lseg **out, int *slot)
{
	error_t err;

	for (unsigned i = 0; i < c->nlsegs; i++) {
		struct lseg *l = c->lsegs[i];
		if (!l->seg || l->tag_task != q->task || l->task_gone ||
		    (q->task && (l->tag_home != home || l->tag_cont != q->cont ||
				 l->tag_handle != q->handle)))
			continue;
		*slot = pmd_segment_slot_alloc(&c->core->segs, l->seg);
		if (*slot >= 0) {
			*out = l;
			return 0;
		}
	}
	err = lseg_new(c, home, q->task, q->cont, q->handle);
	if (err)
		return err;
	*out = c->lsegs[c->nlsegs - 1];
	*slot = pmd_segment_slot_alloc(&c->core->segs, (*out)->seg);
	return 0;
}

static void lend_alloc(struct pmd_cluster *c, pm_node_t home,
		       const struct lend_req *q, struct lend_rep *rep)
{
	uint64_t room = pmd_budget_unreserved(&c->core->budget);
	uint32_t want = q->n;

	memset(rep, 0, sizeof(*rep));
	if (want > PMD_LEND_MAX)
		want = PMD_LEND_MAX;
	if (want > room)
		want = (uint32_t)room;
	while (rep->n < want) {
		struct lseg *l = NULL;
		int slot = -1;

		if (lend_slot(c, home, q, &l, &slot) || slot < 0)
			break;
		pmd_segment_populate(l->seg, (unsigned)slot, 1);
		l->owner[slot] = home;
		l->nlent++;
		if (l->tag_task)
			l->frame[slot] = q->frame[rep->n];
		c->core->budget.lent++;
		c->core->segs.slots_lent++;
		rep->e[rep->n++] = (struct lend_entry){ .key = l->rk.key,
			.base = l->rk.base, .len = l->rk.len,
			.seg = l->seg->index, .slot = (uint16_t)slot };
	}
}

static void lend_free(struct pmd_cluster *c, pm_node_t home,
		      const struct free_entry *e, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct lseg *l = lseg_by_index(c, e[i].seg);
		if (l && e[i].slot < PMD_SEG_SLOTS && l->owner[e[i].slot] == home)
			lend_release(c, l, e[i].slot);
	}
	pmd_segtab_flush(&c->core->segs);
	lseg_sweep(c);
}

/* Everything lent to home comes back (it went down or restarted). */
static void lend_forget(struct pmd_cluster *c, pm_node_t home)
{
	unsigned n = 0;

	for (unsigned i = 0; i < c->nlsegs; i++)
		for (unsigned s2 = 0; s2 < PMD_SEG_SLOTS && c->lsegs[i]->seg;
		     s2++)
			if (c->lsegs[i]->owner[s2] == home) {
				lend_release(c, c->lsegs[i], s2);
				n++;
			}
	pmd_segtab_flush(&c->core->segs);
	lseg_sweep(c);
	if (n)
		pmd_info("cluster: %u slots lent to node %u taken back", n, home);
}

void pmd_cluster_task_gone(struct pmd_cluster *c, uint64_t task)
{
	for (unsigned i = 0; i < c->nlsegs; i++)
		if (c->lsegs[i]->tag_task == task)
			c->lsegs[i]->task_gone = true;
	lseg_sweep(c);
}

/* The tagged segment index lent for task by home, or NULL. */
static struct lseg *lseg_tagged(struct pmd_cluster *c, pm_node_t home,
				uint64_t task, uint32_t index)
{
	struct lseg *l = lseg_by_index(c, index);

	return l && l->tag_task == task && l->tag_home == home &&
	       !l->task_gone ? l : NULL;
}

struct pmd_segment *pmd_cluster_pushed_run(struct pmd_cluster *c,
					   pm_node_t home, uint64_t task,
					   uint32_t index, uint32_t slot,
					   uint32_t n)
{
	struct lseg *l = lseg_tagged(c, home, task, index);

	if (!l || n == 0 || slot >= PMD_SEG_SLOTS || n > PMD_SEG_SLOTS - slot)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		if (l->owner[slot + i] != home)
			return NULL;
	return l->seg;
}

error_t pmd_cluster_pushed_where(struct pmd_cluster *c, uint64_t task,
				 uint64_t seg_id, uint32_t slot,
				 pm_node_t *home, container_t *handle,
				 frame_t *frame)
{
	struct lseg *l = NULL;

	for (unsigned i = 0; i < c->nlsegs && !l; i++)
		if (c->lsegs[i]->tag_task && c->lsegs[i]->seg_id == seg_id)
			l = c->lsegs[i];
	if (!l)
		return ENOENT; /* not a segment kept for a task's mapping */
	if (l->tag_task != task)
		return EACCES;
	/* Spent: every slot retired. */
	if (slot >= PMD_SEG_SLOTS ||
	    (l->seg && !pmd_segment_retired(l->seg, slot)))
		return ENOENT; /* never lent: nothing moved from there */
	*home = l->tag_home;
	*handle = l->tag_handle;
	*frame = l->frame[slot];
	return 0;
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
	/* The proxies of other nodes' tasks end with us. */
	if (c->core) {
		struct pmd_list *pos, *tmp;
		pmd_list_for_each_safe(pos, tmp, &c->core->tasks) {
			struct pmd_task *t = pmd_container_of(pos, struct pmd_task,
							      link);
			if (t->proxy)
				pmd_task_destroy(c->core, t);
		}
	}
	while (c->nlsegs) {
		struct lseg *l = c->lsegs[c->nlsegs - 1];
		for (unsigned s2 = 0; s2 < PMD_SEG_SLOTS; s2++)
			if (l->owner[s2])
				lend_release(c, l, s2);
		lseg_destroy(c, c->nlsegs - 1);
	}
	free(c->lsegs);
	while (c->rio_queue) {
		struct rio *r = c->rio_queue;
		c->rio_queue = r->next;
		free(r->data);
		free(r);
	}
	for (unsigned b = 0; b < BOUNCES; b++)
		free(c->bounce_user[b]); /* the endpoint closes below */
	while (c->rio_window) {
		struct rio *r = c->rio_window;
		c->rio_window = r->next;
		free(r);
	}
	if (c->bounce_mr)
		fab_mr_dereg(c->bounce_mr);
	if (c->ep && fab_ep_close(c->ep))
		pmd_warn("cluster: closing the fabric endpoint failed");
	free(c->bounce);
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
	uint64_t now = pmd_core_now_ms(), next = pmd_mb_next_ms(&c->mb);

	for (const struct ncall *k = c->calls; k; k = k->next)
		if (k->deadline_ms < next)
			next = k->deadline_ms;
	int fab = fab_ep_timeout_ms(c->ep);
	int ms = next > now ? (int)(next - now) : 0;

	if (c->rio_ready)
		return 0;
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
	crypto_generichash_state st;
	struct nreq_hdr copy = *h;

	memset(copy.mac, 0, sizeof(copy.mac));
	crypto_generichash_init(&st, c->nreq_key, sizeof(c->nreq_key), 32);
	crypto_generichash_update(&st, (const uint8_t *)&copy, sizeof(copy));
	if (h->len)
		crypto_generichash_update(&st, body, h->len);
	crypto_generichash_final(&st, out, 32);
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
			     .deadline_ms = pmd_core_now_ms() + c->conf.down_ms,
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

static void borrow_answer(void *arg, error_t status, const void *body,
			  size_t len);

void pmd_cluster_cancel(struct pmd_cluster *c, void *arg)
{
	/* A loan being asked for on arg's behalf still comes: it is given
	 * back when it does. */
	for (struct ncall *k = c->calls; k; k = k->next)
		if (k->done == borrow_answer &&
		    ((struct borrow *)k->arg)->arg == arg)
			((struct borrow *)k->arg)->done = NULL;
	for (int b = 0; b < BOUNCES; b++)
		if (c->bounce_user[b] && c->bounce_user[b]->arg == arg)
			c->bounce_user[b]->done = NULL; /* finishes unseen */
	for (struct rio **pp = &c->rio_queue; *pp;) {
		struct rio *r = *pp;
		if (r->arg == arg) {
			*pp = r->next;
			free(r->data);
			free(r);
		} else {
			pp = &r->next;
		}
	}
	c->rio_tail = &c->rio_queue;
	while (*c->rio_tail)
		c->rio_tail = &(*c->rio_tail)->next;
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

static void fwd_serve(struct pmd_cluster *c, pm_node_t src, uint64_t src_inc,
		      const struct nreq_hdr *h, const uint8_t *body);

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
	case PMD_NREQ_ALLOC: {
		struct lend_req q = { 0 };
		struct lend_rep rep;
		struct pmd_task *t;

		if (h.len != sizeof(q.n) && h.len != sizeof(q))
			break;
		memcpy(&q, body, h.len);
		/* Tagged: for a task of ours that follows its mappings. */
		if (h.len == sizeof(q) &&
		    (!q.task || !q.cont || (pm_node_t)(q.task >> 48) != c->self ||
		     (pm_node_t)(q.cont >> 48) != src ||
		     !(t = pmd_core_find_task(c->core, q.task)) || t->proxy ||
		     !t->follows || q.n > PMD_LEND_MAX)) {
			nreq_send(c, src, p->inc, h.type, h.id, NREQ_REPLY,
				  pm_errno_to_status(ESRCH), NULL, 0);
			return;
		}
		lend_alloc(c, src, &q, &rep);
		nreq_send(c, src, p->inc, h.type, h.id, NREQ_REPLY, PM_ST_OK,
			  &rep, sizeof(rep) - sizeof(rep.e) +
				rep.n * sizeof(rep.e[0]));
		lend_prepare(c);
		return;
	}
	case PMD_NREQ_FWD_IMPORT:
	case PMD_NREQ_FWD_OP:
	case PMD_NREQ_FWD_BYE:
		fwd_serve(c, src, p->inc, &h, body);
		return;
	case PMD_NREQ_FREE: {
		uint32_t n;

		if (h.len < sizeof(n))
			break;
		memcpy(&n, body, sizeof(n));
		if (n > FREE_MAX || h.len != sizeof(uint64_t) +
					       n * sizeof(struct free_entry))
			break;
		struct free_entry e[FREE_MAX];
		memcpy(e, body + sizeof(uint64_t), n * sizeof(e[0]));
		lend_free(c, src, e, n);
		nreq_send(c, src, p->inc, h.type, h.id, NREQ_REPLY, PM_ST_OK,
			  NULL, 0);
		return;
	}
	default:
		nreq_send(c, src, p->inc, h.type, h.id, NREQ_REPLY,
			  PM_ST_UNSUPPORTED, NULL, 0);
		return;
	}
	nreq_send(c, src, p->inc, h.type, h.id, NREQ_REPLY, PM_ST_BAD_MESSAGE,
		  NULL, 0);
}

/* ---- forwarded requests, served here as the home ---- */

static struct pmd_task *proxy_of(struct pmd_cluster *c, pm_node_t src,
				 uint64_t task, bool make)
{
	struct pmd_task *t;

	/* A node acts only for its own tasks. */
	if ((pm_node_t)(task >> 48) != src)
		return NULL;
	t = pmd_core_find_task(c->core, task);
	if (t && !t->proxy)
		return NULL;
	if (!t && make && pmd_task_create_proxy(c->core, task, &t))
		return NULL;
	return t;
}

static void proxy_destroy(struct pmd_cluster *c, struct pmd_task *t)
{
	if (c->proxy_gone)
		c->proxy_gone(c->hook_arg, t);
	pmd_task_destroy(c->core, t);
}

/* Every proxy of node's tasks goes (it went down or restarted). */
static void proxies_forget(struct pmd_cluster *c, pm_node_t node)
{
	struct pmd_list *pos, *tmp;

	pmd_list_for_each_safe(pos, tmp, &c->core->tasks) {
		struct pmd_task *t = pmd_container_of(pos, struct pmd_task, link);
		if (t->proxy && (pm_node_t)(t->id >> 48) == node)
			proxy_destroy(c, t);
	}
}

void pmd_cluster_set_hooks(struct pmd_cluster *c, pmd_fwd_fn *fwd,
			   pmd_proxy_gone_fn *gone, void *arg)
{
	c->fwd = fwd;
	c->proxy_gone = gone;
	c->hook_arg = arg;
}

void pmd_cluster_answer(struct pmd_cluster *c, pm_node_t src, uint64_t src_inc,
			uint16_t type, uint64_t id, error_t status,
			const void *body, uint32_t len)
{
	nreq_send(c, src, src_inc, type, id, NREQ_REPLY,
		  pm_errno_to_status(status), body, len);
}

static void fwd_serve(struct pmd_cluster *c, pm_node_t src, uint64_t src_inc,
		      const struct nreq_hdr *h, const uint8_t *body)
{
	uint8_t out[NREQ_BODY_MAX] __attribute__((aligned(8)));
	uint8_t in[NREQ_BODY_MAX] __attribute__((aligned(8)));
	struct pmd_culprit why = { 0 };
	struct pmd_core *core = c->core;
	uint32_t out_len = 0;
	struct pmd_task *t;
	error_t err = EPROTO;

	memcpy(in, body, h->len); /* aligned for the request structs */
	if (h->type == PMD_NREQ_FWD_IMPORT) {
		const struct pmd_fwd_import *q = (const void *)in;
		container_t handle;
		bool fresh;

		if (h->len == sizeof(*q)) {
			fresh = !pmd_core_find_task(core, q->task);
			t = proxy_of(c, src, q->task, true);
			err = t ? pmd_cap_import(core, t,
						 (const struct pm_token *)q->token,
						 &handle, &why)
				: EACCES;
			if (!err) {
				memcpy(out, &handle, sizeof(handle));
				out_len = sizeof(handle);
			} else if (t && fresh) {
				proxy_destroy(c, t); /* made for nothing */
			}
		}
	} else if (h->type == PMD_NREQ_FWD_BYE) {
		uint64_t task;
		if (h->len == sizeof(task)) {
			memcpy(&task, in, sizeof(task));
			if ((t = proxy_of(c, src, task, false)))
				proxy_destroy(c, t);
			err = 0;
		}
	} else {
		const struct pmd_fwd_op *q = (const void *)in;
		if (h->len < sizeof(*q) || q->len != h->len - sizeof(*q)) {
			err = EPROTO;
		} else if (!(t = proxy_of(c, src, q->task, false))) {
			err = EBADF;
		} else if (c->fwd) {
			/* The server runs it as the proxy and answers. */
			c->fwd(c->hook_arg, src, src_inc, h->id, t, q->type,
			       q + 1, q->len);
			pmd_segtab_flush(&core->segs);
			return;
		} else {
			err = EOPNOTSUPP;
		}
	}
	pmd_segtab_flush(&core->segs);
	pmd_cluster_answer(c, src, src_inc, h->type, h->id, err, out, out_len);
}

pm_node_t pmd_cluster_best_lender(const struct pmd_cluster *c)
{
	pm_node_t best = 0, unknown = 0;
	uint64_t most = 0;

	for (unsigned i = 0; i < c->mb.npeers; i++) {
		const struct pmd_mb_peer *p = &c->mb.peers[i];
		if (p->state != PM_NODE_UP)
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

uint64_t pmd_cluster_peer_inc(const struct pmd_cluster *c, pm_node_t node)
{
	const struct pmd_mb_peer *p = pmd_mb_peer((struct pmd_mb *)&c->mb, node);

	return p ? p->inc : 0;
}

bool pmd_cluster_knows(const struct pmd_cluster *c, pm_node_t node)
{
	return node != c->self && pmd_cluster_node(&c->conf, node) != NULL;
}

/* ---- borrowing, and giving back ---- */

static void borrow_answer(void *arg, error_t status, const void *body,
			  size_t len)
{
	struct borrow *b = arg;
	struct pmd_place places[PMD_LEND_MAX];
	struct lend_rep rep;
	uint32_t n = 0;

	if (!status) {
		memset(&rep, 0, sizeof(rep));
		if (len < 8 || len > sizeof(rep))
			status = EPROTO;
		else
			memcpy(&rep, body, len);
		if (!status && (rep.n > PMD_LEND_MAX ||
				len != 8 + rep.n * sizeof(rep.e[0])))
			status = EPROTO;
		for (uint32_t i = 0; !status && i < rep.n; i++) {
			if (rep.e[i].slot >= PMD_SEG_SLOTS ||
			    rep.e[i].len < (uint64_t)(rep.e[i].slot + 1) * PM_FRAME_SIZE) {
				status = EPROTO;
				break;
			}
			places[n++] = (struct pmd_place){ .node = b->node,
				.seg = rep.e[i].seg, .slot = rep.e[i].slot,
				.key = rep.e[i].key, .base = rep.e[i].base,
				.len = rep.e[i].len, .tag_task = b->tag_task,
				.tag_cont = b->tag_cont };
		}
		if (status) {
			pmd_warn("cluster: node %u answered a loan badly", b->node);
			n = 0;
		}
	}
	if (b->done) {
		b->done(b->arg, status, places, n);
	} else if (n) {
		/* Its requester went away: the loan goes back at once. */
		for (uint32_t i = 0; i < n; i++)
			pmd_core_give_back(b->c->core, places[i].node,
					   places[i].seg, places[i].slot);
	}
	free(b);
}

error_t pmd_cluster_borrow(struct pmd_cluster *c, pm_node_t node, uint32_t n,
			   pmd_borrow_done *done, void *arg)
{
	return pmd_cluster_borrow_for(c, node, n, 0, 0, 0, NULL, done, arg);
}

error_t pmd_cluster_borrow_for(struct pmd_cluster *c, pm_node_t node,
			       uint32_t n, uint64_t task, uint64_t cont,
			       container_t handle, const frame_t *frames,
			       pmd_borrow_done *done, void *arg)
{
	struct borrow *b = malloc(sizeof(*b));
	struct lend_req q = { 0 };
	error_t err;

	if (!b)
		return ENOMEM;
	*b = (struct borrow){ .c = c, .node = node, .done = done, .arg = arg,
			      .tag_task = task, .tag_cont = cont };
	if (n > PMD_LEND_MAX)
		n = PMD_LEND_MAX;
	q.n = n;
	if (task) {
		q.task = task;
		q.cont = cont;
		q.handle = handle;
		memcpy(q.frame, frames, n * sizeof(*frames));
	}
	err = pmd_cluster_call(c, node, PMD_NREQ_ALLOC, &q,
			       task ? sizeof(q) : sizeof(q.n), borrow_answer, b);
	if (err)
		free(b);
	return err;
}

static void give_back_answer(void *arg, error_t status, const void *body,
			     size_t len)
{
	(void)arg;
	(void)body;
	(void)len;
	if (status && status != ENODEV)
		pmd_debug("cluster: giving slots back: %s", strerror(status));
}

/* FREE requests for slots v[0..n) (any nodes; the array is used up):
 * up to FREE_MAX of one node a request, done called for each. The number
 * of requests sent. */
static unsigned free_send(struct pmd_cluster *c, struct pmd_rfree *v,
			  uint32_t nv, pmd_ncall_done *done, void *arg)
{
	unsigned calls = 0;

	while (nv) {
		pm_node_t node = v[0].node;
		uint8_t body[8 + FREE_MAX * sizeof(struct free_entry)];
		struct free_entry *e = (struct free_entry *)(body + 8);
		uint32_t n = 0, k = 0;

		for (uint32_t i = 0; i < nv; i++) {
			if (v[i].node == node && n < FREE_MAX)
				e[n++] = (struct free_entry){ .seg = v[i].seg,
							      .slot = v[i].slot };
			else
				v[k++] = v[i];
		}
		nv = k;
		memset(body, 0, 8);
		memcpy(body, &n, sizeof(n));
		/* A node that is down has taken its slots back already. */
		if (pmd_cluster_call(c, node, PMD_NREQ_FREE, body,
				     8 + n * sizeof(*e), done, arg))
			pmd_debug("cluster: %u slots of node %u not given back "
				  "(it is down)", n, node);
		else
			calls++;
	}
	return calls;
}

unsigned pmd_cluster_take_back(struct pmd_cluster *c, struct pmd_rfree *slots,
			       uint32_t n, pmd_ncall_done *done, void *arg)
{
	return free_send(c, slots, n, done, arg);
}

void pmd_cluster_give_back(struct pmd_cluster *c)
{
	free_send(c, c->core->rfree, c->core->nrfree, give_back_answer, c);
	c->core->nrfree = 0;
}

/* ---- remote reads and writes ---- */

static void rio_start(struct pmd_cluster *c, struct rio *r, int b,
		      const uint8_t *data);

static void rio_finish(struct pmd_cluster *c, struct rio *r)
{
	if (r->done)
		r->done(r->arg, r->status, r->write ? NULL : r->buf, r->len);
	if (r->bounce < 0) { /* the caller's window */
		for (struct rio **pp = &c->rio_window; *pp; pp = &(*pp)->next)
			if (*pp == r) {
				*pp = r->next;
				break;
			}
		free(r);
		return;
	}
	c->bounce_user[r->bounce] = NULL;
	/* The next waiting one gets the bounce. */
	if (c->rio_queue) {
		struct rio *n = c->rio_queue;
		c->rio_queue = n->next;
		if (!c->rio_queue)
			c->rio_tail = &c->rio_queue;
		rio_start(c, n, r->bounce, n->data);
	}
	free(r->data);
	free(r);
}

/* Posts r's pieces from bounce buffer b (or the caller's window, b -1);
 * a write's bytes come from data (the caller's, or the copy kept while r
 * waited for a bounce; in the window already). */
static void rio_start(struct pmd_cluster *c, struct rio *r, int b,
		      const uint8_t *data)
{
	uint32_t off = 0;
	uint8_t *buf;

	if (b >= 0) {
		r->buf = c->bounce + (size_t)b * PM_IO_MAX;
		r->mr = c->bounce_mr;
		r->mr_off = (size_t)b * PM_IO_MAX;
		c->bounce_user[b] = r;
	}
	buf = r->buf;
	r->bounce = b;
	r->left = 1; /* held until every piece is posted */
	for (uint32_t i = 0; i < r->npieces; i++) {
		const struct pmd_io_piece *p = &r->pieces[i];
		struct fab_rkey rk = { .key = p->key, .base = p->base, .len = p->rlen };
		int err;

		if (p->local) {
			if (r->write)
				memcpy(p->local, data + off, p->len);
			else
				memcpy(buf + off, p->local, p->len);
		} else {
			if (r->write && buf + off != data + off)
				memcpy(buf + off, data + off, p->len);
			err = (r->write ? fab_write : fab_read)(
				c->ep, peer_of_node(c, p->node), r->mr,
				r->mr_off + off, &rk, p->roff, p->len, r);
			if (err) {
				r->status = EIO;
				break;
			}
			r->left++;
		}
		off += p->len;
	}
	if (--r->left == 0) {
		r->ready_next = c->rio_ready;
		c->rio_ready = r;
	}
}

static void rio_run_ready(struct pmd_cluster *c)
{
	while (c->rio_ready) {
		struct rio *r = c->rio_ready;
		c->rio_ready = r->ready_next;
		rio_finish(c, r);
	}
}

static error_t rio_new(struct pmd_cluster *c, bool write,
		       const struct pmd_io_piece *pieces, uint32_t npieces,
		       uint32_t len, pmd_rio_done *done, void *arg,
		       struct rio **out)
{
	struct rio *r;

	if (npieces > PMD_IO_PIECES || len > PM_IO_MAX)
		return EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return ENOMEM;
	*r = (struct rio){ .c = c, .write = write, .len = len,
			   .npieces = npieces, .done = done, .arg = arg,
			   .bounce = -1 };
	memcpy(r->pieces, pieces, npieces * sizeof(*pieces));
	*out = r;
	return 0;
}

error_t pmd_cluster_rio(struct pmd_cluster *c, bool write,
			const struct pmd_io_piece *pieces, uint32_t npieces,
			const void *data, uint32_t len, pmd_rio_done *done,
			void *arg)
{
	struct rio *r;
	error_t err = rio_new(c, write, pieces, npieces, len, done, arg, &r);

	if (err)
		return err;
	for (int b = 0; b < BOUNCES; b++) {
		if (!c->bounce_user[b]) {
			rio_start(c, r, b, data);
			return 0;
		}
	}
	/* Every bounce is busy: wait for one (a write keeps its bytes). */
	if (write) {
		r->data = malloc(len);
		if (!r->data) {
			free(r);
			return ENOMEM;
		}
		memcpy(r->data, data, len);
	}
	*c->rio_tail = r;
	c->rio_tail = &r->next;
	return 0;
}

error_t pmd_cluster_rio_window(struct pmd_cluster *c, bool write,
			       const struct pmd_io_piece *pieces,
			       uint32_t npieces, uint8_t *win,
			       struct fab_mr *mr, uint32_t len,
			       pmd_rio_done *done, void *arg)
{
	struct rio *r;
	error_t err = rio_new(c, write, pieces, npieces, len, done, arg, &r);

	if (err)
		return err;
	r->buf = win;
	r->mr = mr;
	r->next = c->rio_window;
	c->rio_window = r;
	rio_start(c, r, -1, win);
	return 0;
}

error_t pmd_cluster_mr(struct pmd_cluster *c, void *buf, size_t len,
		       struct fab_mr **out)
{
	uint64_t key;
	error_t err = fab_key_random(c->ep, &key);

	return err ? err : fab_mr_reg(c->ep, buf, len, FAB_ACCESS_LOCAL, key, out);
}

void pmd_cluster_mr_drop(struct fab_mr *mr)
{
	if (fab_mr_dereg(mr))
		pmd_warn("cluster: deregistering a task's I/O window failed");
}

/* A completion of a remote read or write. */
static void rio_done_one(struct pmd_cluster *c, struct rio *r, int status)
{
	if (status && !r->status)
		r->status = EIO;
	if (--r->left == 0)
		rio_finish(c, r);
}

/* Membership moved: slots lent to a node that went down or restarted come
 * back, and frames we had on it are lost. */
static void watch_peers(struct pmd_cluster *c)
{
	for (unsigned i = 0; i < c->mb.npeers; i++) {
		const struct pmd_mb_peer *p = &c->mb.peers[i];
		bool gone = (c->prev_state[i] != PM_NODE_DOWN &&
			     p->state == PM_NODE_DOWN) ||
			    (c->prev_inc[i] && p->inc != c->prev_inc[i]);

		if (gone) {
			lend_forget(c, p->id);
			pmd_core_node_lost(c->core, p->id);
			proxies_forget(c, p->id);
		}
		c->prev_state[i] = p->state;
		c->prev_inc[i] = p->inc;
	}
}

/* Calls whose node went down, restarted, or did not answer in time. */
static void ncall_expire(struct pmd_cluster *c)
{
	uint64_t now = pmd_core_now_ms();

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

unsigned pmd_cluster_run(struct pmd_cluster *c, uint64_t frames_total,
			 uint64_t frames_free, bool sleep)
{
	struct fab_cqe cqe[64];
	unsigned active = 0;
	size_t n;

	c->mb.frames_total = frames_total;
	c->mb.frames_free = frames_free;
	if (c->rio_ready)
		active |= PMD_CLUSTER_PROGRESS;
	rio_run_ready(c);
	do {
		while (fab_ep_poll(c->ep, cqe, 64, &n) == 0 && n) {
			uint64_t now = pmd_core_now_ms();
			for (size_t i = 0; i < n; i++) {
				if ((cqe[i].op == FAB_OP_READ ||
				     cqe[i].op == FAB_OP_WRITE) && cqe[i].ctx) {
					active |= PMD_CLUSTER_PROGRESS;
					rio_done_one(c, cqe[i].ctx, cqe[i].status);
					continue;
				}
				if (cqe[i].op != FAB_OP_RECV || cqe[i].status)
					continue; /* a send to a peer that is gone */
				active |= PMD_CLUSTER_SERVED;
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
		pmd_mb_tick(&c->mb, pmd_core_now_ms());
		send_out(c);
		ncall_expire(c);
		watch_peers(c);
		pmd_cluster_give_back(c);
		rio_run_ready(c);
	} while (sleep && fab_ep_trywait(c->ep) == EAGAIN);
	return active;
}

bool pmd_cluster_waiting(const struct pmd_cluster *c)
{
	if (c->calls || c->rio_queue || c->rio_ready || c->rio_window)
		return true;
	for (unsigned i = 0; i < BOUNCES; i++)
		if (c->bounce_user[i])
			return true;
	return false;
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
