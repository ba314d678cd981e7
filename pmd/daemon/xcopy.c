/*
 * xcopy.c - a copy between containers of different homes (a container of
 * this node and one another home serves, or two homes): no frame can be
 * shared across nodes, so this pmd copies the bytes for its task, node to
 * node, in pieces of up to PM_IO_MAX in frame order: a READ of the
 * source piece into the task's window, then a WRITE of it from there to
 * the destination (a home moves the bytes to and from the window by
 * RDMA; a session without a window carries them in the requests). Each
 * runs as a request of the task's own (a *sub-request*: a session with
 * no socket, the task's forwarded handles copied, answered here), so it
 * goes wherever its container lives (here, the frames' lenders by RDMA,
 * or its home in one node request) and waits, parks, stops mappers and
 * fails exactly as the task's own read or write would. A piece that
 * fails is done again frame by frame, so that the error is the first
 * frame's that stops it, with the frames before it copied (as any copy).
 * The task's session is parked meanwhile (it uses its window for nothing
 * else); if it goes, the copy ends with the piece in flight.
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define XCOPY_PIECE (PM_IO_MAX / PM_FRAME_SIZE)

struct xcopy {
	struct pmd_pending base;     /* the task's session, parked */
	struct pmd_server *srv;      /* (C) */
	struct pm_copy_req q;        /* (C) the copy asked */
	uint32_t done;               /* (L) frames copied */
	uint32_t n;                  /* (L) frames of the piece in flight */
	uint32_t single_end;         /* (L) frame by frame up to here */
	bool writing;                /* (L) its WRITE is in flight */
	struct pmd_session *sub;     /* (L) the sub-request in flight */
	struct pmd_window *win;      /* (C) the task's window, or NULL */
	uint8_t buf[sizeof(struct pm_io_req) + PM_IO_MAX] /* (L) no window */
		__attribute__((aligned(8)));
};

static void xcopy_answer(void *arg, const struct pmd_reply *r);

/* Runs q as a sub-request of s's task. ENOMEM. */
static error_t sub_run(struct xcopy *x, struct pmd_session *s,
		       const struct pmd_req *q)
{
	struct pmd_server *srv = x->srv;
	struct pmd_session *sub = calloc(1, sizeof(*sub));

	if (!sub)
		return ENOMEM;
	*sub = (struct pmd_session){ .srv = srv, .fd = -1, .task = s->task,
				     .virt = true, .sub = true,
				     .sub_done = xcopy_answer,
				     .sub_arg = x, .parked_type = q->type };
	if (x->win) {
		sub->win = x->win;
		sub->win->refs++;
	}
	if (s->nfwd) {
		sub->fwd = malloc(s->nfwd * sizeof(*sub->fwd));
		if (!sub->fwd) {
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
	x->sub = sub;
	return 0;
}

/* The next piece's READ (or the end). ENOMEM. */
static error_t xcopy_next(struct xcopy *x, struct pmd_session *s)
{
	uint32_t left = x->q.count - x->done;
	struct pm_io_req io;
	struct pmd_req q = { .type = PM_MSG_READ, .body = &io,
			     .len = sizeof(io) };

	x->n = x->done < x->single_end ? 1
	       : left < XCOPY_PIECE ? left : XCOPY_PIECE;
	x->writing = false;
	io = (struct pm_io_req){ .handle = x->q.src,
				 .frame = x->q.src_start + x->done,
				 .len = x->n * PM_FRAME_SIZE,
				 .flags = x->win ? PM_IO_WINDOW : 0 };
	return sub_run(x, s, &q);
}

static void xcopy_free(struct xcopy *x)
{
	pmd_window_put(x->win);
	free(x);
}

/* The copy's answer to the task. */
static void xcopy_end(struct xcopy *x, struct pmd_session *s, error_t status,
		      uint32_t arg, frame_t culprit)
{
	/* (A window retired under it: an RDMA failed, which is EIO to a
	 * COPY; the task hears of the window at its next read or write.) */
	struct pmd_reply r = { .status = status == EBADFD ? EIO : status,
			       .why = { .arg = arg, .frame = culprit } };

	pmd_session_answer(x->srv, s, &r);
	xcopy_free(x);
}

/* A sub-request's answer (NULL: it was closed unanswered). */
static void xcopy_answer(void *arg, const struct pmd_reply *r)
{
	struct xcopy *x = arg;
	struct pmd_session *s = x->base.s;
	error_t err;

	x->sub = NULL;
	if (!s || !r) { /* the task went (or the sub-request with it) */
		if (s)
			xcopy_end(x, s, EIO, 0, 0);
		else
			xcopy_free(x);
		return;
	}
	if (r->status) {
		if (x->done >= x->single_end && x->n > 1) {
			/* Again frame by frame: the first that fails
			 * says why, the ones before it are copied. */
			x->single_end = x->done + x->n;
			err = xcopy_next(x, s);
			if (err)
				xcopy_end(x, s, err, 0, 0);
			return;
		}
		if (r->status == ENOENT && !x->writing) /* no such source */
			xcopy_end(x, s, ENOENT, PMD_ARG_COPY_SRC,
				  x->q.src_start + x->done);
		else if (r->status == ENOENT) /* no such destination */
			xcopy_end(x, s, ENOMEM, PMD_ARG_COPY_DST,
				  x->q.dst_start + x->done);
		else
			xcopy_end(x, s, r->status, r->why.arg, 0);
		return;
	}
	if (!x->writing) {
		/* The source's bytes (in the window, or in the answer): to
		 * the destination. */
		struct pm_io_req *io = (struct pm_io_req *)x->buf;
		const void *data = r->body_ext ? r->body_ext
					       : pmd_reply_body(x->srv);
		uint32_t len = x->n * PM_FRAME_SIZE;
		struct pmd_req q = { .type = PM_MSG_WRITE, .body = x->buf,
				     .len = sizeof(*io) };

		if (r->body_len != len && !(x->win && r->body_len == 0)) {
			xcopy_end(x, s, EPROTO, 0, 0);
			return;
		}
		if (x->win && r->body_len) /* (a small one, in the answer) */
			memcpy(x->win->base, data, len);
		*io = (struct pm_io_req){ .handle = x->q.dst,
					  .frame = x->q.dst_start + x->done,
					  .len = len,
					  .flags = x->win ? PM_IO_WINDOW : 0 };
		if (!x->win) {
			memcpy(io + 1, data, len);
			q.len += len;
		}
		x->writing = true;
		err = sub_run(x, s, &q);
		if (err)
			xcopy_end(x, s, err, 0, 0);
		return;
	}
	x->done += x->n;
	if (x->done == x->q.count) {
		xcopy_end(x, s, 0, 0, 0);
		return;
	}
	err = xcopy_next(x, s);
	if (err)
		xcopy_end(x, s, err, 0, 0);
}

enum pmd_step pmd_xcopy(struct pmd_server *srv, struct pmd_session *s,
			const struct pm_copy_req *q, struct pmd_reply *r)
{
	struct xcopy *x = malloc(sizeof(*x));
	error_t err;

	if (!x)
		return pmd_reply_now(r, ENOMEM);
	*x = (struct xcopy){ .srv = srv, .q = *q, .win = s->win };
	if (x->win)
		x->win->refs++;
	err = xcopy_next(x, s);
	if (err) {
		xcopy_free(x);
		return pmd_reply_now(r, err);
	}
	return pmd_session_park(s, &x->base);
}
