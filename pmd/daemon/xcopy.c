/*
 * xcopy.c - a copy between containers of different homes (a container of
 * this node and one another home serves, or two homes): no frame can be
 * shared across nodes, so this pmd copies the bytes for its task, node to
 * node, in pieces of up to PM_IO_MAX: a READ of a source piece, then a
 * WRITE of it to the destination. Each runs as a request of the task's
 * own (a *sub-request*: a session with no socket, the task's forwarded
 * handles copied, answered here), so it goes wherever its container
 * lives (here, the frames' lenders by RDMA, or its home in one node
 * request) and waits, parks, stops mappers and fails exactly as the
 * task's own read or write would.
 *
 * Up to XCOPY_AHEAD pieces are in flight at once, each with a window of
 * its own (a pmd's I/O window, window.c, from a small pool the server
 * keeps): its READ fills it (a home by RDMA), and its WRITE goes from it
 * as soon as the READ is back (a home fetching it by RDMA). Where no
 * window can be had, the piece's bytes ride in the answer and the request
 * (a copy of their own). The copy's progress is its written pieces in
 * frame order; the first piece not written that failed stops it: done
 * again frame by frame, one frame at a time, so that the error is the
 * first frame's that stops it, with the frames before it copied (as any
 * copy); the other pieces' work in flight is dropped as it comes back,
 * and up to XCOPY_AHEAD - 1 pieces after the culprit may have been
 * written (docs/api.md). The task's session is parked meanwhile; if it
 * goes, the copy ends with its work in flight, and the state goes once
 * the last of it is back.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XCOPY_PIECE (PM_IO_MAX / PM_FRAME_SIZE)
#define XCOPY_AHEAD 4   /* pieces in flight at once */

enum xstate {
	XP_FREE,
	XP_READING,                  /* its READ in flight */
	XP_READ,                     /* its bytes here, to be written */
	XP_WRITING,                  /* its WRITE in flight */
	XP_WRITTEN,                  /* written; counts once those before are */
	XP_FAILED,                   /* its READ or WRITE failed */
	XP_DROPPED,                  /* in flight, its answer unwanted */
};

struct xcopy;

/* One piece: frames [at, at + n) of the copy (relative to its starts). */
struct xpiece {
	struct xcopy *x;             /* (C) */
	enum xstate state;           /* (L) */
	uint32_t at, n;              /* (L) */
	error_t status;              /* (L) XP_FAILED: why, */
	uint32_t why_arg;            /* (L) */
	bool wrote;                  /* (L) and whether its WRITE failed */
	struct pmd_window *win;      /* (L) its bytes, or NULL: */
	uint8_t *data;               /* (L) PM_IO_MAX: the bytes read */
};

struct xcopy {
	struct pmd_pending base;     /* the task's session, parked */
	struct pmd_server *srv;      /* (C) */
	struct pm_copy_req q;        /* (C) the copy asked */
	uint32_t done;               /* (L) frames written */
	uint32_t next;               /* (L) frames whose read was asked */
	uint32_t single_end;         /* (L) frame by frame up to here */
	uint32_t inflight;           /* (L) sub-requests not answered */
	bool answered;               /* (L) the task had its answer (or went) */
	struct xpiece p[XCOPY_AHEAD];
	/* (L) a WRITE's body, when there is no window */
	uint8_t buf[sizeof(struct pm_io_req) + PM_IO_MAX]
		__attribute__((aligned(8)));
};

static void xcopy_answer(void *arg, const struct pmd_reply *r);

/* ---- the server's pool of windows for copies ---- */

/* A window for a piece: one of the pool, or a new one; NULL when none
 * can be had (the bytes then go in the messages). */
static struct pmd_window *xwin_get(struct pmd_server *srv)
{
	struct pmd_window *w;

	if (srv->nxwins)
		return srv->xwins[--srv->nxwins];
	return pmd_window_create(srv, &w) ? NULL : w;
}

/* Back to the pool; a retired one (an RDMA through it failed and may
 * still land) or one too many goes. (A sub-request that answered may
 * still hold a reference for a moment, until it is closed: it does
 * nothing with the window any more.) */
static void xwin_put(struct pmd_server *srv, struct pmd_window *w)
{
	if (!w)
		return;
	if (w->retired || srv->nxwins == PMD_XWINS_MAX)
		pmd_window_put(w);
	else
		srv->xwins[srv->nxwins++] = w;
}

void pmd_xcopy_fini(struct pmd_server *srv)
{
	while (srv->nxwins)
		pmd_window_put(srv->xwins[--srv->nxwins]);
}

/* Runs q as a sub-request of the task, for piece p (its bytes through
 * window w, or in the messages). ENOMEM. */
static error_t sub_run(struct xpiece *p, const struct pmd_req *q,
		       struct pmd_window *w)
{
	struct xcopy *x = p->x;
	struct pmd_server *srv = x->srv;
	struct pmd_session *s = x->base.s;
	struct pmd_session *sub = calloc(1, sizeof(*sub));

	if (!sub)
		return ENOMEM;
	*sub = (struct pmd_session){ .srv = srv, .fd = -1, .task = s->task,
				     .virt = true, .sub = true,
				     .sub_done = xcopy_answer,
				     .sub_arg = p, .parked_type = q->type };
	if (w) {
		sub->win = w;
		w->refs++;
	}
	if (s->nfwd) {
		sub->fwd = malloc(s->nfwd * sizeof(*sub->fwd));
		if (!sub->fwd) {
			pmd_window_put(sub->win);
			free(sub);
			return ENOMEM;
		}
		memcpy(sub->fwd, s->fwd, s->nfwd * sizeof(*sub->fwd));
		sub->nfwd = sub->fwd_cap = s->nfwd;
	}
	pmd_list_add(&srv->vsessions, &sub->link);
	if (!pmd_session_run_later(srv, sub, q, false)) {
		sub->sub_done = NULL; /* nothing to answer */
		pmd_session_close(srv, sub);
		return ENOMEM;
	}
	x->inflight++;
	return 0;
}

/* Piece p's READ: frames [at, at + n), into its window (or its buffer:
 * the answer carries the bytes). ENOMEM. */
static error_t read_piece(struct xcopy *x, struct xpiece *p, uint32_t at,
			  uint32_t n)
{
	struct pm_io_req io = { .handle = x->q.src,
				.frame = x->q.src_start + at,
				.len = n * PM_FRAME_SIZE };
	struct pmd_req q = { .type = PM_MSG_READ, .body = &io,
			     .len = sizeof(io) };
	error_t err;

	if (p->win && p->win->retired) {
		xwin_put(x->srv, p->win);
		p->win = NULL;
	}
	if (!p->win && !p->data)
		p->win = xwin_get(x->srv);
	if (!p->win && !p->data && !(p->data = malloc(PM_IO_MAX)))
		return ENOMEM;
	if (p->win)
		io.flags = PM_IO_WINDOW;
	p->at = at;
	p->n = n;
	p->state = XP_READING;
	err = sub_run(p, &q, p->win);
	if (err)
		p->state = XP_FREE;
	return err;
}

/* Reads as far ahead as pieces are free (one frame at a time, and only
 * once the reads ahead are back, while frame by frame). Out of memory
 * with a sub-request in flight, it tries again when one is back; ENOMEM
 * with none. */
static error_t read_ahead(struct xcopy *x)
{
	for (int i = 0; i < XCOPY_AHEAD && x->next < x->q.count; i++) {
		struct xpiece *p = &x->p[i];
		uint32_t left = x->q.count - x->next, n;

		if (p->state != XP_FREE)
			continue;
		if (x->next < x->single_end) {
			if (x->inflight || x->done != x->next)
				return 0;
			n = 1;
		} else {
			n = left < XCOPY_PIECE ? left : XCOPY_PIECE;
		}
		if (read_piece(x, p, x->next, n))
			return x->inflight ? 0 : ENOMEM;
		x->next += n;
	}
	return 0;
}

static void xcopy_free(struct xcopy *x)
{
	for (int i = 0; i < XCOPY_AHEAD; i++) {
		xwin_put(x->srv, x->p[i].win);
		free(x->p[i].data);
	}
	free(x);
}

/* The copy's answer to the task (if it is still there); x goes once no
 * sub-request of it is in flight. */
static void xcopy_end(struct xcopy *x, error_t status, uint32_t arg,
		      frame_t culprit)
{
	struct pmd_session *s = x->base.s;

	if (!x->answered && s) {
		/* (A window retired under it: an RDMA failed, which is EIO
		 * to a COPY; the task hears of the window at its next read
		 * or write.) */
		struct pmd_reply r = { .status = status == EBADFD ? EIO
								  : status,
				       .why = { .arg = arg, .frame = culprit } };

		x->base.s = NULL;
		pmd_session_answer(x->srv, s, &r);
	}
	x->answered = true; /* (answers still in flight are dropped) */
	x->base.s = NULL;
	if (!x->inflight)
		xcopy_free(x);
}

/* Piece p failed: it is done again frame by frame (the first frame that
 * fails says why, the ones before it are copied); the other pieces'
 * work in flight is dropped as it comes back. */
static void again_by_frame(struct xcopy *x, struct xpiece *p)
{
	x->single_end = p->at + p->n;
	x->next = p->at;
	for (int i = 0; i < XCOPY_AHEAD; i++)
		if (x->p[i].state == XP_READING || x->p[i].state == XP_WRITING)
			x->p[i].state = XP_DROPPED;
		else if (x->p[i].state != XP_DROPPED)
			x->p[i].state = XP_FREE;
}

/* Piece p's WRITE, from its window (or in the request). ENOMEM. */
static error_t write_piece(struct xcopy *x, struct xpiece *p)
{
	struct pm_io_req *io = (struct pm_io_req *)x->buf;
	struct pmd_req q = { .type = PM_MSG_WRITE, .body = x->buf,
			     .len = sizeof(*io) };
	error_t err;

	*io = (struct pm_io_req){ .handle = x->q.dst,
				  .frame = x->q.dst_start + p->at,
				  .len = p->n * PM_FRAME_SIZE,
				  .flags = p->win ? PM_IO_WINDOW : 0 };
	if (!p->win) {
		memcpy(io + 1, p->data, io->len);
		q.len += io->len;
	}
	p->state = XP_WRITING;
	err = sub_run(p, &q, p->win); /* (the body is kept: x->buf is free) */
	if (err)
		p->state = XP_READ;
	return err;
}

/* The piece of frame at, if it is in state st. */
static struct xpiece *piece_at(struct xcopy *x, uint32_t at, enum xstate st)
{
	for (int i = 0; i < XCOPY_AHEAD; i++)
		if (x->p[i].state == st && x->p[i].at == at)
			return &x->p[i];
	return NULL;
}

/* After any answer: the written pieces in order make the copy's progress;
 * the first piece not written that failed stops it (or is done again
 * frame by frame); pieces read go to be written, and more are read. */
static void xcopy_progress(struct xcopy *x)
{
	struct xpiece *p;
	error_t err = 0;

	while ((p = piece_at(x, x->done, XP_WRITTEN))) {
		x->done += p->n;
		p->state = XP_FREE;
	}
	if (x->done == x->q.count) {
		xcopy_end(x, 0, 0, 0);
		return;
	}
	p = piece_at(x, x->done, XP_FAILED);
	if (p && p->n > 1) {
		again_by_frame(x, p);
	} else if (p) {
		if (p->status == ENOENT && !p->wrote) /* no such source */
			xcopy_end(x, ENOENT, PMD_ARG_COPY_SRC,
				  x->q.src_start + p->at);
		else if (p->status == ENOENT) /* no such destination */
			xcopy_end(x, ENOMEM, PMD_ARG_COPY_DST,
				  x->q.dst_start + p->at);
		else
			xcopy_end(x, p->status, p->why_arg, 0);
		return;
	}
	for (int i = 0; i < XCOPY_AHEAD && !err; i++)
		if (x->p[i].state == XP_READ)
			err = write_piece(x, &x->p[i]);
	if (!err)
		err = read_ahead(x);
	/* Out of memory: what is in flight goes on, and this is tried
	 * again when it is back; with nothing in flight, the copy ends. */
	if (err && !x->inflight)
		xcopy_end(x, err, 0, 0);
}

/* A sub-request's answer (NULL: it was closed unanswered). */
static void xcopy_answer(void *arg, const struct pmd_reply *r)
{
	struct xpiece *p = arg;
	struct xcopy *x = p->x;
	enum xstate was = p->state;

	x->inflight--;
	if (x->answered || !x->base.s || !r) {
		/* The copy ended (or the task went, or the sub-request
		 * with it). */
		p->state = XP_FREE;
		if (!x->answered)
			xcopy_end(x, EIO, 0, 0);
		else if (!x->inflight)
			xcopy_free(x);
		return;
	}
	if (was == XP_DROPPED) {
		p->state = XP_FREE;
	} else if (r->status) {
		p->state = XP_FAILED;
		p->status = r->status == EBADFD ? EIO : r->status;
		p->why_arg = r->why.arg;
		p->wrote = was == XP_WRITING;
	} else if (was == XP_READING) {
		const void *data = r->body_ext ? r->body_ext
					       : pmd_reply_body(x->srv);
		uint32_t len = p->n * PM_FRAME_SIZE;

		/* The bytes are in the window, or in the answer (a small
		 * read, or no window). */
		p->state = XP_READ;
		if (r->body_len == len) {
			memcpy(p->win ? p->win->base : p->data, data, len);
		} else if (!(p->win && r->body_len == 0)) {
			p->state = XP_FAILED;
			p->status = EPROTO;
			p->wrote = false;
		}
	} else {
		p->state = XP_WRITTEN;
	}
	xcopy_progress(x);
}

enum pmd_step pmd_xcopy(struct pmd_server *srv, struct pmd_session *s,
			const struct pm_copy_req *q, struct pmd_reply *r)
{
	struct xcopy *x = calloc(1, sizeof(*x));
	error_t err;

	if (!x)
		return pmd_reply_now(r, ENOMEM);
	x->srv = srv;
	x->q = *q;
	for (int i = 0; i < XCOPY_AHEAD; i++)
		x->p[i].x = x;
	x->base.s = s; /* (parked below: the reads run later) */
	err = read_ahead(x);
	if (err) {
		xcopy_free(x);
		return pmd_reply_now(r, err);
	}
	return pmd_session_park(s, &x->base);
}
