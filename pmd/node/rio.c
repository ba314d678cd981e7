/*
 * rio.c - reads and writes of remote frames: one-sided RDMA between the
 * lenders' slots and a local buffer, either one of PMD_BOUNCES registered
 * bounce buffers (waiting in order for one when all are busy) or a task's
 * I/O window, registered by the daemon. Local pieces of the same request
 * are copied at once. A request ends when its last piece completes (EIO
 * when any failed); one whose posts all failed or had no remote piece
 * ends from the progress loop, never from under its caller.
 *
 * Held requests. A piece that failed by its deadline, or because its node
 * was declared down, may still be in the provider's hands: a late read
 * still lands in the local buffer, a late write still sends what the
 * buffer holds then, to the slot it named. Such a request ends for its
 * caller (EIO) but is kept (c->rio_held) until the provider lets go of
 * every piece: its bounce buffer goes with it (the bounce is made anew
 * for others), a window's owner is told (pmd_rio_keep) so that nothing
 * else passes through that window meanwhile, and the slots a held write
 * named are in doubt (pmd_rio_in_doubt): their frames answer EIO and
 * their slots are not given back to their lender until it is over.
 */
#include "node_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* A read or write touching remote frames. */
struct pmd_rio {
	struct pmd_cluster *c;         /* (C) */
	bool write;                    /* (C) */
	int bounce;                    /* (L) its bounce buffer; -1: queued
	                                * for one, or through a window */
	uint8_t *buf;                  /* (L) the local side: a bounce buffer
	                                * or the caller's window, */
	struct fab_mr *mr;             /* (L) and its registration, */
	size_t mr_off;                 /* (L) at this offset */
	uint32_t len, npieces;         /* (C) */
	uint32_t left;                 /* (L) completions still to come */
	uint32_t held;                 /* (L) pieces the provider still holds
	                                * after failing them */
	bool ended;                    /* (L) done has run */
	struct pmd_io_piece pieces[PMD_IO_PIECES]; /* (C) */
	uint8_t *data;                 /* (L) write: the bytes, while queued */
	error_t status;                /* (L) */
	pmd_rio_done *done;            /* (C) */
	void *arg;                     /* (C) */
	pmd_rio_keep *keep;            /* (C) a window's: told of a hold */
	void *keep_arg;                /* (C) */
	struct pmd_rio *next;          /* (L) in c->rio_queue, c->rio_window
	                                * or c->rio_held */
	struct pmd_rio *ready_next;    /* (L) in c->rio_ready */
};

/* Makes bounce b's buffer (again, after a held request took it). */
static error_t bounce_make(struct pmd_cluster *c, unsigned b)
{
	struct pmd_bounce *x = &c->bounce[b];
	uint64_t key;
	error_t err;

	x->buf = aligned_alloc(PM_FRAME_SIZE, PM_IO_MAX);
	if (!x->buf)
		return ENOMEM;
	err = fab_key_random(c->ep, &key);
	if (!err)
		err = fab_mr_reg(c->ep, x->buf, PM_IO_MAX, FAB_ACCESS_LOCAL,
				 key, &x->mr);
	if (err) {
		free(x->buf);
		x->buf = NULL;
		x->mr = NULL;
	}
	return err;
}

error_t pmd_rio_init(struct pmd_cluster *c)
{
	c->rio_tail = &c->rio_queue;
	for (unsigned b = 0; b < PMD_BOUNCES; b++) {
		error_t err = bounce_make(c, b);
		if (err)
			return err;
	}
	return 0;
}

/* A free bounce with its buffer (made again if a held request took
 * it), or -1. */
static int bounce_get(struct pmd_cluster *c)
{
	for (unsigned b = 0; b < PMD_BOUNCES; b++)
		if (!c->bounce[b].user &&
		    (c->bounce[b].buf || !bounce_make(c, b)))
			return (int)b;
	return -1;
}

static void rio_start(struct pmd_cluster *c, struct pmd_rio *r, int b,
		      const uint8_t *data);

/* Requests waiting for a bounce start on those free now. */
static void rio_kick(struct pmd_cluster *c)
{
	int b;

	while (c->rio_queue && (b = bounce_get(c)) >= 0) {
		struct pmd_rio *n = c->rio_queue;
		c->rio_queue = n->next;
		if (!c->rio_queue)
			c->rio_tail = &c->rio_queue;
		rio_start(c, n, b, n->data);
	}
}

/* Takes r out of the list at *pp. */
static void rio_unlink(struct pmd_rio **pp, struct pmd_rio *r)
{
	for (; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			return;
		}
}

/* The provider let go of every piece of held request r: its buffer is
 * free (back to a bounce that has none, else freed), its window's owner
 * hears so, its slots are no longer in doubt. */
static void rio_release(struct pmd_cluster *c, struct pmd_rio *r)
{
	rio_unlink(&c->rio_held, r);
	if (r->bounce < 0) {
		if (r->keep)
			r->keep(r->keep_arg, PMD_KEEP_RELEASED);
	} else {
		unsigned b;
		for (b = 0; b < PMD_BOUNCES; b++)
			if (!c->bounce[b].buf && !c->bounce[b].user)
				break;
		if (b < PMD_BOUNCES) {
			c->bounce[b].buf = r->buf;
			c->bounce[b].mr = r->mr;
		} else {
			if (fab_mr_dereg(r->mr))
				pmd_warn("cluster: deregistering a bounce "
					 "buffer failed");
			free(r->buf);
		}
		rio_kick(c);
	}
	free(r);
}

static void rio_finish(struct pmd_cluster *c, struct pmd_rio *r)
{
	if (r->held) {
		/* Before done: the window must outlive its caller's hold. */
		if (r->keep)
			r->keep(r->keep_arg, PMD_KEEP_HELD);
		c->rio_held_total++;
	}
	r->done(r->arg, r->status, r->write ? NULL : r->buf, r->len);
	r->ended = true;
	if (r->bounce < 0) { /* the caller's window */
		rio_unlink(&c->rio_window, r);
	} else {
		struct pmd_bounce *x = &c->bounce[r->bounce];
		x->user = NULL;
		if (r->held) { /* the buffer stays with r */
			x->buf = NULL;
			x->mr = NULL;
		}
		/* The next waiting one gets a bounce. */
		rio_kick(c);
	}
	free(r->data);
	r->data = NULL;
	if (!r->held) {
		free(r);
		return;
	}
	r->next = c->rio_held;
	c->rio_held = r;
}

/* Posts r's pieces from bounce buffer b (or the caller's window, b -1);
 * a write's bytes come from data (the caller's, or the copy kept while r
 * waited for a bounce; in the window already). */
static void rio_start(struct pmd_cluster *c, struct pmd_rio *r, int b,
		      const uint8_t *data)
{
	struct pmd_traffic *t;
	uint32_t off = 0;
	uint8_t *buf;

	if (b >= 0) {
		r->buf = c->bounce[b].buf;
		r->mr = c->bounce[b].mr;
		r->mr_off = 0;
		c->bounce[b].user = r;
	}
	buf = r->buf;
	r->bounce = b;
	r->left = 1; /* held until every piece is posted */
	for (uint32_t i = 0; i < r->npieces; i++) {
		const struct pmd_io_piece *p = &r->pieces[i];
		struct fab_rkey rk = { .key = p->key, .base = p->base,
				       .len = p->rlen };
		error_t err;

		if (p->local) {
			if (r->write)
				memcpy(p->local, data + off, p->len);
			else
				memcpy(buf + off, p->local, p->len);
		} else {
			if (r->write && buf + off != data + off)
				memcpy(buf + off, data + off, p->len);
			err = (r->write ? fab_write : fab_read)(
				c->ep, pmd_peer_of_node(c, p->node), r->mr,
				r->mr_off + off, &rk, p->roff, p->len, r);
			if (err) {
				r->status = EIO;
				break;
			}
			if ((t = pmd_traffic_of(c, p->node))) {
				t->rma_ops++;
				t->rma_bytes += p->len;
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

void pmd_rio_run_ready(struct pmd_cluster *c)
{
	while (c->rio_ready) {
		struct pmd_rio *r = c->rio_ready;
		c->rio_ready = r->ready_next;
		rio_finish(c, r);
	}
}

static error_t rio_new(struct pmd_cluster *c, bool write,
		       const struct pmd_io_piece *pieces, uint32_t npieces,
		       uint32_t len, pmd_rio_done *done, void *arg,
		       struct pmd_rio **out)
{
	struct pmd_rio *r;

	if (npieces > PMD_IO_PIECES || len > PM_IO_MAX)
		return EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return ENOMEM;
	*r = (struct pmd_rio){ .c = c, .write = write, .len = len,
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
	struct pmd_rio *r;
	error_t err = rio_new(c, write, pieces, npieces, len, done, arg, &r);
	int b;

	if (err)
		return err;
	if (!c->rio_queue && (b = bounce_get(c)) >= 0) {
		rio_start(c, r, b, data);
		return 0;
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
			       pmd_rio_done *done, void *arg,
			       pmd_rio_keep *keep, void *keep_arg)
{
	struct pmd_rio *r;
	error_t err = rio_new(c, write, pieces, npieces, len, done, arg, &r);

	if (err)
		return err;
	r->buf = win;
	r->mr = mr;
	r->keep = keep;
	r->keep_arg = keep_arg;
	r->next = c->rio_window;
	c->rio_window = r;
	rio_start(c, r, -1, win);
	return 0;
}

bool pmd_rio_in_doubt(const struct pmd_cluster *c, pm_node_t node,
		      uint64_t key, uint64_t roff, uint64_t len)
{
	for (const struct pmd_rio *r = c->rio_held; r; r = r->next) {
		if (!r->write)
			continue;
		for (uint32_t i = 0; i < r->npieces; i++) {
			const struct pmd_io_piece *p = &r->pieces[i];
			if (!p->local && p->node == node && p->key == key &&
			    p->roff < roff + len && roff < p->roff + p->len)
				return true;
		}
	}
	return false;
}

error_t pmd_cluster_mr(struct pmd_cluster *c, void *buf, size_t len,
		       struct fab_mr **out)
{
	uint64_t key;
	error_t err = fab_key_random(c->ep, &key);

	return err ? err : fab_mr_reg(c->ep, buf, len, FAB_ACCESS_LOCAL, key,
				      out);
}

error_t pmd_cluster_mr_remote(struct pmd_cluster *c, void *buf, size_t len,
			      struct fab_mr **out, struct pmd_nreq_window *rk)
{
	struct fab_rkey k;
	uint64_t key;
	error_t err = fab_key_random(c->ep, &key);

	if (!err)
		err = fab_mr_reg(c->ep, buf, len, FAB_ACCESS_LOCAL |
				 FAB_ACCESS_REMOTE_READ | FAB_ACCESS_REMOTE_WRITE,
				 key, out);
	if (!err && (err = fab_mr_rkey(*out, &k)))
		fab_mr_dereg(*out);
	if (!err)
		*rk = (struct pmd_nreq_window){ .key = k.key, .base = k.base,
						.len = k.len };
	return err;
}

void pmd_cluster_mr_drop(struct fab_mr *mr)
{
	if (fab_mr_dereg(mr))
		pmd_warn("cluster: deregistering a task's I/O window failed");
}

void pmd_cluster_mr_abandon(struct fab_mr *mr)
{
	(void)fab_mr_dereg(mr); /* EBUSY: the endpoint's close */
}

void pmd_rio_complete(struct pmd_cluster *c, void *ctx, int status,
		      bool held, bool released)
{
	struct pmd_rio *r = ctx;

	if (released) {
		if (--r->held == 0 && r->ended)
			rio_release(c, r);
		return;
	}
	if (held)
		r->held++;
	if (status && !r->status)
		r->status = EIO;
	if (--r->left == 0)
		rio_finish(c, r);
}

void pmd_cluster_rio_held(const struct pmd_cluster *c, uint64_t *now,
			  uint64_t *total)
{
	*now = 0;
	for (const struct pmd_rio *r = c->rio_held; r; r = r->next)
		(*now)++;
	*total = c->rio_held_total;
}

bool pmd_rio_busy(const struct pmd_cluster *c)
{
	if (c->rio_queue || c->rio_ready || c->rio_window)
		return true;
	for (unsigned i = 0; i < PMD_BOUNCES; i++)
		if (c->bounce[i].user)
			return true;
	return false;
}

void pmd_rio_stop(struct pmd_cluster *c)
{
	while (c->rio_queue) {
		struct pmd_rio *r = c->rio_queue;
		c->rio_queue = r->next;
		free(r->data);
		free(r);
	}
	for (unsigned b = 0; b < PMD_BOUNCES; b++) {
		free(c->bounce[b].user); /* the endpoint closes after */
		c->bounce[b].user = NULL;
		if (c->bounce[b].mr) /* (EBUSY while in flight: the close) */
			fab_mr_dereg(c->bounce[b].mr);
		c->bounce[b].mr = NULL;
	}
	while (c->rio_window) {
		struct pmd_rio *r = c->rio_window;
		c->rio_window = r->next;
		free(r);
	}
	/* Held ones: their regions are the provider's until the endpoint
	 * closes (which releases them); their buffers go after
	 * (pmd_rio_free). */
	for (struct pmd_rio *r = c->rio_held; r; r = r->next)
		if (r->bounce < 0 && r->keep)
			r->keep(r->keep_arg, PMD_KEEP_CLOSING);
}

void pmd_rio_free(struct pmd_cluster *c)
{
	for (unsigned b = 0; b < PMD_BOUNCES; b++) {
		free(c->bounce[b].buf);
		c->bounce[b].buf = NULL;
	}
	while (c->rio_held) {
		struct pmd_rio *r = c->rio_held;
		c->rio_held = r->next;
		if (r->bounce >= 0)
			free(r->buf);
		else if (r->keep)
			r->keep(r->keep_arg, PMD_KEEP_RELEASED);
		free(r);
	}
}
