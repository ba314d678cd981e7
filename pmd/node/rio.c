/*
 * rio.c - reads and writes of remote frames: one-sided RDMA between the
 * lenders' slots and a local buffer, either one of PMD_BOUNCES registered
 * bounce buffers (waiting in order for one when all are busy) or a task's
 * I/O window, registered by the daemon. Local pieces of the same request
 * are copied at once. A request ends when its last piece completes (EIO
 * when any failed); one whose posts all failed or had no remote piece
 * ends from the progress loop, never from under its caller.
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
	struct pmd_io_piece pieces[PMD_IO_PIECES]; /* (C) */
	uint8_t *data;                 /* (L) write: the bytes, while queued */
	error_t status;                /* (L) */
	pmd_rio_done *done;            /* (C) */
	void *arg;                     /* (C) */
	struct pmd_rio *next;          /* (L) in c->rio_queue or c->rio_window */
	struct pmd_rio *ready_next;    /* (L) in c->rio_ready */
};

error_t pmd_rio_init(struct pmd_cluster *c)
{
	uint64_t key;
	error_t err;

	c->rio_tail = &c->rio_queue;
	c->bounce = aligned_alloc(PM_FRAME_SIZE, (size_t)PMD_BOUNCES * PM_IO_MAX);
	if (!c->bounce)
		return ENOMEM;
	err = fab_key_random(c->ep, &key);
	if (!err)
		err = fab_mr_reg(c->ep, c->bounce,
				 (size_t)PMD_BOUNCES * PM_IO_MAX,
				 FAB_ACCESS_LOCAL, key, &c->bounce_mr);
	return err;
}

static void rio_start(struct pmd_cluster *c, struct pmd_rio *r, int b,
		      const uint8_t *data);

static void rio_finish(struct pmd_cluster *c, struct pmd_rio *r)
{
	r->done(r->arg, r->status, r->write ? NULL : r->buf, r->len);
	if (r->bounce < 0) { /* the caller's window */
		for (struct pmd_rio **pp = &c->rio_window; *pp;
		     pp = &(*pp)->next)
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
		struct pmd_rio *n = c->rio_queue;
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
static void rio_start(struct pmd_cluster *c, struct pmd_rio *r, int b,
		      const uint8_t *data)
{
	struct pmd_traffic *t;
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

	if (err)
		return err;
	for (int b = 0; b < PMD_BOUNCES; b++) {
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
	struct pmd_rio *r;
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

void pmd_rio_complete(struct pmd_cluster *c, void *ctx, int status)
{
	struct pmd_rio *r = ctx;

	if (status && !r->status)
		r->status = EIO;
	if (--r->left == 0)
		rio_finish(c, r);
}

bool pmd_rio_busy(const struct pmd_cluster *c)
{
	if (c->rio_queue || c->rio_ready || c->rio_window)
		return true;
	for (unsigned i = 0; i < PMD_BOUNCES; i++)
		if (c->bounce_user[i])
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
	for (unsigned b = 0; b < PMD_BOUNCES; b++)
		free(c->bounce_user[b]); /* the endpoint closes after */
	while (c->rio_window) {
		struct pmd_rio *r = c->rio_window;
		c->rio_window = r->next;
		free(r);
	}
	if (c->bounce_mr)
		fab_mr_dereg(c->bounce_mr);
	/* (the bounce buffers themselves go after the endpoint) */
}
