/*
 * remote.c - remote work on a container: reads and writes of its frames
 * on other nodes (RDMA between the lenders' slots and the task's window
 * or a bounce buffer), pulls that bring remote frames home before a map,
 * copy or fault, and pushes that move frames to the node of a task that
 * maps them through a forwarded handle.
 *
 * While remote work on a container is in flight the container is busy:
 * every request naming it waits (pmd_dispatch) and runs again when the
 * work ends, so a pull never races a write; but reads and writes of its
 * frames keep only their frames busy, so reads of any frames and writes
 * of other frames run beside them (several remote operations per
 * container in flight, none overlapping a write). A pull or push ends by
 * running its request again, first (the frames are where it wants them
 * now).
 */
#include "daemon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "grow.h"
#include "io.h"
#include "task.h"

static_assert(PMD_PULL_MAX <= PMD_RETURN_MAX, "a tagged pull in one RETURN");
static_assert(PMD_RETURN_FRAME == PM_FRAME_SIZE, "the frame size");

/* ---- remote work in flight, by container ---- */

bool pmd_busy_test(const struct pmd_server *srv, uint64_t id)
{
	for (uint32_t i = 0; i < srv->nbusy; i++)
		if (srv->busy[i].id == id)
			return true;
	return false;
}

bool pmd_busy_test_io(const struct pmd_server *srv, uint64_t id,
		      frame_t start, frame_t end, bool write)
{
	for (uint32_t i = 0; i < srv->nbusy; i++) {
		const struct pmd_busy *b = &srv->busy[i];

		if (b->id != id)
			continue;
		if (b->mode == PMD_BUSY_ALL)
			return true;
		if (b->start < end && start < b->end &&
		    (write || b->mode == PMD_BUSY_WRITE))
			return true;
	}
	return false;
}

static error_t busy_add_range(struct pmd_server *srv, uint64_t id,
			      frame_t start, frame_t end, uint8_t mode)
{
	struct pmd_busy *v = pmd_grow(srv->busy, srv->nbusy, &srv->busy_cap,
				      sizeof(*v), 16);

	if (!v)
		return ENOMEM;
	srv->busy = v;
	srv->busy[srv->nbusy++] = (struct pmd_busy){ .id = id, .start = start,
						     .end = end, .mode = mode };
	return 0;
}

static error_t busy_add(struct pmd_server *srv, uint64_t id)
{
	return busy_add_range(srv, id, 0, 0, PMD_BUSY_ALL);
}

/* That work ended: the requests that wait run again. */
static void busy_done_range(struct pmd_server *srv, uint64_t id,
			    frame_t start, frame_t end, uint8_t mode)
{
	for (uint32_t i = 0; i < srv->nbusy; i++) {
		const struct pmd_busy *b = &srv->busy[i];

		if (b->id == id && b->start == start && b->end == end &&
		    b->mode == mode) {
			srv->busy[i] = srv->busy[--srv->nbusy];
			break;
		}
	}
	srv->rerun = true;
}

static void busy_done(struct pmd_server *srv, uint64_t id)
{
	busy_done_range(srv, id, 0, 0, PMD_BUSY_ALL);
}

/* ---- the work ---- */

enum rctx_kind {
	RCTX_IO,                     /* a read or write of remote frames */
	RCTX_PULL,                   /* frames brought home, then the request */
	RCTX_PUSH,                   /* frames sent out, then the request */
};

/* Remote work of one request; it outlives its session if need be (the
 * RDMA still lands in its buffer). */
struct rctx {
	struct pmd_pending base;
	struct pmd_server *srv;      /* (C) */
	enum rctx_kind kind;         /* (C) */
	uint64_t id;                 /* (C) the container, busy meanwhile: */
	frame_t busy_start, busy_end; /* (C) reads and writes: these frames */
	uint8_t busy_mode;           /* (C) PMD_BUSY_* */
	container_t handle;          /* (C) pulls, pushes: its handle */
	uint32_t redo_len;           /* (C) then the request again: its body */
	uint8_t redo[64] __attribute__((aligned(8)));
	struct pmd_pull pulls[PMD_PULL_MAX]; /* (C) */
	uint32_t npulls;             /* (C) */
	pm_node_t node;              /* (C) pushes: to this node, */
	uint32_t npush;              /* (L) these frames, */
	struct pmd_push pushes[PMD_PUSH_MAX];  /* (L) */
	struct pmd_place places[PMD_PUSH_MAX]; /* (L) into these slots */
	struct pmd_window *win;      /* (C) reads and writes through it */
	uint8_t *data;               /* (L) pushes: the bytes written */
	uint64_t owner;              /* (C) pulls: the container's owner, */
	container_t owner_handle;    /* (C) its handle, */
	uint32_t held;               /* (C) room held here for pulls, */
	uint32_t lost;               /* (L) and the pulls that did not come */
	void (*ended)(void *arg, error_t status); /* (C) a recall's: told */
	void *ended_arg;             /* (C) */
	bool write;                  /* (C) a write of remote frames: */
	uint32_t npieces;            /* (C) where it wrote */
	struct pmd_io_piece pieces[PMD_IO_PIECES]; /* (C) */
};

static void rctx_free(struct rctx *x)
{
	free(x->data);
	pmd_window_put(x->win);
	free(x);
}

/* The pulled frames' bytes are here (data, or none for those in
 * x->lost): the frames live here from now on, whether or not the
 * request that pulled them is still there (a returned frame has no other
 * place left). Through the owner, who names the container as long as it
 * lives. */
static error_t pull_in(struct pmd_server *srv, struct rctx *x,
		       const uint8_t *data)
{
	struct pmd_task *o = pmd_task_find(srv->core, x->owner);

	if (!o) { /* the container went with its owner */
		pmd_pull_unreserve(srv->core, x->held);
		return 0;
	}
	return pmd_pull_finish(srv->core, o, x->owner_handle, x->pulls,
			       x->npulls, data, x->lost, x->held);
}

/* The work of a pull or push is done (status 0): the request runs
 * again, first (the frames are where it wants them now). ENOMEM. */
static error_t rctx_redo(struct pmd_server *srv, struct pmd_session *s,
			 struct rctx *x)
{
	struct pmd_req q = { .type = s->parked_type, .seq = s->parked_seq,
			     .body = x->redo, .len = x->redo_len };

	return pmd_session_run_later(srv, s, &q, true) ? 0 : ENOMEM;
}

/* The end of remote work: the container is free again; the request is
 * answered, or runs again. */
static void rio_answer(void *arg, error_t status, const uint8_t *data,
		       uint32_t len)
{
	struct rctx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_session *s = x->base.s;
	struct pmd_reply r = { 0 };

	if (x->kind == RCTX_PULL && !status)
		status = pull_in(srv, x, data);
	else if (x->kind == RCTX_PULL)
		pmd_pull_unreserve(srv->core, x->held);
	/* A write that failed on the fabric may have landed in part, or
	 * may land yet (with whatever its buffer holds then): its frames
	 * are lost. */
	for (uint32_t i = 0; status && x->write && i < x->npieces; i++)
		if (!x->pieces[i].local)
			pmd_rslots_lost(srv->core, x->pieces[i].node,
					x->pieces[i].key, x->pieces[i].roff,
					x->pieces[i].len);
	busy_done_range(srv, x->id, x->busy_start, x->busy_end, x->busy_mode);
	if (x->kind == RCTX_PUSH) {
		/* Written there: the frames live there from now on. */
		if (s && !status)
			pmd_push_finish(srv->core, s->task, x->handle,
					x->pushes, x->npush, x->places);
		else
			pmd_places_give_back(srv->core, x->places, x->npush);
	}
	if (s) {
		s->pending = NULL;
		if (x->kind != RCTX_IO && !status) {
			status = rctx_redo(srv, s, x);
			if (!status) {
				rctx_free(x);
				return;
			}
		} else if (!status && data && !x->win) {
			/* Sent from the bounce buffer, which stays ours
			 * until this returns. */
			r.body_ext = data;
			r.body_len = len;
		} /* (through the window: the bytes are there, no body) */
		r.status = status;
		pmd_session_answer(srv, s, &r);
	}
	if (x->ended)
		x->ended(x->ended_arg, status);
	rctx_free(x);
}

/* A tagged pull's node returned the frames (its task stopped first). A
 * call that timed out may have been served all the same, the slots
 * retired: those frames are lost (their slots are given back, in case it
 * was not). */
static void pull_returned(void *arg, error_t status, uint32_t lost,
			  const uint8_t *data)
{
	struct rctx *x = arg;

	if (status == ETIMEDOUT || status == EPROTO) {
		pmd_warn("node %u did not return %u frames (%s): they are lost",
			 x->pulls[0].node, x->npulls, strerror(status));
		lost = (1u << x->npulls) - 1;
		data = NULL;
		status = 0;
	}
	x->lost = lost;
	rio_answer(x, status, data, x->npulls * PM_FRAME_SIZE);
}

/* Starts x's reads or writes (through x->win when set, else a bounce
 * buffer) on its container, busy until they end. On an error nothing
 * is left busy (x stays the caller's). */
static error_t rctx_go(struct pmd_server *srv, struct rctx *x, bool write,
		       const struct pmd_io_piece *pieces, uint32_t n,
		       const void *data, uint32_t len)
{
	error_t err = busy_add_range(srv, x->id, x->busy_start, x->busy_end,
				     x->busy_mode);

	if (err)
		return err;
	err = pmd_rio(srv, write, pieces, n, data, len, x->win, rio_answer, x);
	if (err)
		busy_done_range(srv, x->id, x->busy_start, x->busy_end,
				x->busy_mode);
	return err;
}

/* The same for the request of session s, parked until they end. */
static enum pmd_step rctx_start(struct pmd_server *srv, struct pmd_session *s,
				struct rctx *x, bool write,
				const struct pmd_io_piece *pieces, uint32_t n,
				const void *data, uint32_t len,
				struct pmd_reply *r)
{
	error_t err = rctx_go(srv, x, write, pieces, n, data, len);

	if (err) {
		rctx_free(x);
		return pmd_reply_now(r, err);
	}
	return pmd_session_park(s, &x->base);
}

/* The RDMA reads of x's first n pulls. */
static void pull_pieces(const struct rctx *x, uint32_t n,
			struct pmd_io_piece *pieces)
{
	for (uint32_t i = 0; i < n; i++)
		pieces[i] = x->pulls[i].piece;
}

/* Where a lent place is reached by RDMA: its whole frame. */
static struct pmd_io_piece place_piece(const struct pmd_place *p)
{
	return (struct pmd_io_piece){ .node = p->node, .key = p->key,
		.base = p->base, .rlen = p->len,
		.roff = (uint64_t)p->slot * PM_FRAME_SIZE,
		.len = PM_FRAME_SIZE };
}

static struct rctx *rctx_new(struct pmd_server *srv, enum rctx_kind kind,
			     uint64_t id)
{
	struct rctx *x = calloc(1, sizeof(*x));

	if (x)
		*x = (struct rctx){ .srv = srv, .kind = kind, .id = id };
	return x;
}

/* Keeps the request's body to run it again. */
static bool rctx_keep(struct rctx *x, const struct pmd_req *q)
{
	if (q->len > sizeof(x->redo))
		return false;
	memcpy(x->redo, q->body, q->len);
	x->redo_len = q->len;
	return true;
}

enum pmd_step pmd_remote_io(struct pmd_server *srv, struct pmd_session *s,
			    const struct pmd_io *io, bool window,
			    const void *data, struct pmd_reply *r)
{
	struct pmd_io_piece pieces[PMD_IO_PIECES];
	struct rctx *x;
	uint32_t n = 0;

	if (!srv->cluster && !srv->storeio)
		return pmd_reply_now(r, EIO);
	x = rctx_new(srv, RCTX_IO, io->cont->id);
	if (!x)
		return pmd_reply_now(r, ENOMEM);
	/* Only these frames: reads of any and writes of others run
	 * beside it (pmd_busy_test_io). */
	x->busy_start = io->first;
	x->busy_end = io->first + io->nframes;
	x->busy_mode = io->write ? PMD_BUSY_WRITE : PMD_BUSY_READ;
	pmd_io_plan(srv->core, io, pieces, &n);
	if (io->write) {
		x->write = true;
		x->npieces = n;
		memcpy(x->pieces, pieces, n * sizeof(pieces[0]));
	}
	if (window) {
		/* Straight between the task's window and the frames. */
		x->win = s->win;
		x->win->refs++;
	}
	return rctx_start(srv, s, x, io->write, pieces, n, data, io->len, r);
}

/* Frames in the slots a node keeps for one task's mappings: that node
 * returns them (its task stopped first, unless it is being revoked:
 * nostop), room for them held here meanwhile. On an error nothing is
 * left held or busy (x stays the caller's). */
static error_t pull_return_go(struct pmd_server *srv, struct pmd_container *c,
			      struct rctx *x, bool nostop)
{
	struct pmd_rfree slots[PMD_PULL_MAX];
	error_t err;

	for (uint32_t i = 0; i < x->npulls; i++)
		slots[i] = (struct pmd_rfree){ .node = x->pulls[i].node,
			.seg = x->pulls[i].seg, .slot = x->pulls[i].slot };
	err = pmd_pull_reserve(srv->core, c, x->pulls, x->npulls, &x->held);
	if (!err)
		err = busy_add(srv, x->id);
	if (!err) {
		err = pmd_cluster_return(srv->cluster, x->pulls[0].node, slots,
					 x->npulls, nostop, pull_returned, x);
		if (err)
			busy_done(srv, x->id);
	}
	if (err)
		pmd_pull_unreserve(srv->core, x->held);
	return err;
}

/* The same for the request of session s, parked until they come. */
static enum pmd_step pull_return(struct pmd_server *srv, struct pmd_session *s,
				 struct pmd_container *c, struct rctx *x,
				 bool nostop, struct pmd_reply *r)
{
	error_t err = pull_return_go(srv, c, x, nostop);

	if (err) {
		rctx_free(x);
		return pmd_reply_now(r, err);
	}
	return pmd_session_park(s, &x->base);
}

/* Extra frames among the pulls: each needs room here that no guarantee
 * reserves. */
static uint32_t pulls_extra(const struct pmd_container *c,
			    const struct pmd_pull *pulls, uint32_t n)
{
	uint32_t extra = 0;

	for (uint32_t i = 0; i < n; i++) {
		const struct pmd_frame *e = pmd_ftab_lookup(&c->frames,
							    pulls[i].frame);
		extra += e && (e->flags & PMD_FRAME_EXTRA);
	}
	return extra;
}

/* Room here for x's pulls (untagged), held from now until they are in,
 * so that a fault that waited for it does not find it gone to another
 * request when its frame arrives. Without it, s's request q waits while
 * the pmd makes some (cold frames go out): false, and *step. */
static bool pull_room(struct pmd_server *srv, struct pmd_session *s,
		      const struct pmd_req *q, const struct pmd_container *c,
		      struct rctx *x, enum pmd_step *step)
{
	uint64_t room = pmd_budget_room(&srv->core->budget);
	uint64_t u = pmd_budget_unreserved(&srv->core->budget);
	uint32_t extra = pulls_extra(c, x->pulls, x->npulls);
	bool go = true;

	if (room < x->npulls || u < extra)
		*step = pmd_reclaim_wait(srv, s, q,
					 room < x->npulls ? x->npulls - room : 0,
					 u < extra ? extra - u : 0, true, &go);
	if (!go)
		return false;
	x->held = room < x->npulls ? (uint32_t)room : x->npulls;
	srv->core->budget.held += x->held;
	return true;
}

enum pmd_step pmd_remote_pull(struct pmd_server *srv, struct pmd_session *s,
			      struct pmd_container *c, container_t h,
			      frame_t start, uint32_t count, uint64_t keep_task,
			      bool pushed, const struct pmd_req *q, bool *none,
			      struct pmd_reply *r)
{
	struct pmd_io_piece pieces[PMD_PULL_MAX];
	enum pmd_step step;
	struct rctx *x;
	error_t err = 0;

	*none = false;
	if (!srv->cluster && !srv->storeio)
		return pmd_reply_now(r, EIO);
	if (pmd_busy_test(srv, c->id))
		return PMD_STEP_WAIT;
	x = rctx_new(srv, RCTX_PULL, c->id);
	if (!x || !rctx_keep(x, q)) {
		free(x);
		return pmd_reply_now(r, ENOMEM);
	}
	x->handle = h;
	if (pushed)
		pmd_pull_plan_pushed(srv->core, c, keep_task, x->pulls,
				     &x->npulls);
	else
		err = pmd_pull_plan(srv->core, c, start, count, keep_task,
				    x->pulls, &x->npulls, &r->why);
	if (!err && !x->npulls) {
		*none = true;
		err = EIO;
	}
	if (err) {
		free(x);
		return pmd_reply_now(r, err);
	}
	x->owner = c->owner->id;
	x->owner_handle = pmd_container_handle_of(c->owner, c);
	if (x->pulls[0].tagged)
		return pull_return(srv, s, c, x, pushed, r);
	if (!pull_room(srv, s, q, c, x, &step)) {
		free(x);
		return step;
	}
	pull_pieces(x, x->npulls, pieces);
	err = rctx_go(srv, x, false, pieces, x->npulls, NULL,
		      x->npulls * PM_FRAME_SIZE);
	if (err) {
		pmd_pull_unreserve(srv->core, x->held);
		rctx_free(x);
		return pmd_reply_now(r, err);
	}
	return pmd_session_park(s, &x->base);
}

/* ---- a draining node's frames to a third node (no room at home) ---- */

static void move_end(struct rctx *x, error_t status)
{
	busy_done(x->srv, x->id);
	if (x->ended)
		x->ended(x->ended_arg, status);
	rctx_free(x);
}

/* Written to the new slots: the frames live there now. */
static void move_written(void *arg, error_t status, const uint8_t *data,
			 uint32_t len)
{
	struct rctx *x = arg;
	struct pmd_core *core = x->srv->core;
	struct pmd_task *o = pmd_task_find(core, x->owner);

	(void)data;
	(void)len;
	if (!status && o)
		pmd_move_remote_finish(core, o, x->owner_handle, x->pulls,
				       x->npush, x->places);
	else
		pmd_places_give_back(core, x->places, x->npush);
	move_end(x, status);
}

/* Read from the draining node: written to the new slots. */
static void move_read(void *arg, error_t status, const uint8_t *data,
		      uint32_t len)
{
	struct pmd_io_piece pieces[PMD_PUSH_MAX];
	struct rctx *x = arg;

	(void)len;
	if (!status) {
		memcpy(x->data, data, (size_t)x->npush * PM_FRAME_SIZE);
		for (uint32_t i = 0; i < x->npush; i++)
			pieces[i] = place_piece(&x->places[i]);
		status = pmd_cluster_rio(x->srv->cluster, true, pieces,
					 x->npush, x->data,
					 x->npush * PM_FRAME_SIZE, move_written,
					 x);
		if (!status)
			return;
	}
	pmd_places_give_back(x->srv->core, x->places, x->npush);
	move_end(x, status);
}

/* Slots of the third node came (or not): read the frames. */
static void move_borrowed(void *arg, error_t status,
			  const struct pmd_place *places, uint32_t n)
{
	struct pmd_io_piece pieces[PMD_PUSH_MAX];
	struct rctx *x = arg;
	struct pmd_core *core = x->srv->core;

	if (n > x->npulls) {
		pmd_places_give_back(core, places + x->npulls, n - x->npulls);
		n = x->npulls; /* not more than asked */
	}
	if (!status && !n)
		status = ENOMEM; /* it lends nothing now */
	if (!status && !(x->data = malloc((size_t)n * PM_FRAME_SIZE)))
		status = ENOMEM;
	if (!status) {
		memcpy(x->places, places, n * sizeof(*places));
		x->npush = n;
		pull_pieces(x, n, pieces);
		status = pmd_cluster_rio(x->srv->cluster, false, pieces, n,
					 NULL, n * PM_FRAME_SIZE, move_read, x);
		if (!status)
			return;
	}
	pmd_places_give_back(core, places, n);
	move_end(x, status);
}

/* No room here for x's pulls: they go to the node with the most room
 * (never back to `from`, the one that drains). On an error nothing is
 * left busy (x stays the caller's). */
static error_t move_go(struct pmd_server *srv, struct rctx *x, pm_node_t from)
{
	pm_node_t to = pmd_cluster_best_lender(srv->cluster, from);
	error_t err;

	if (!to)
		return ENOMEM;
	if (x->npulls > PMD_PUSH_MAX)
		x->npulls = PMD_PUSH_MAX;
	err = busy_add(srv, x->id);
	if (err)
		return err;
	err = pmd_cluster_borrow(srv->cluster, to, x->npulls, move_borrowed, x);
	if (err)
		busy_done(srv, x->id);
	return err;
}

error_t pmd_remote_recall(struct pmd_server *srv, struct pmd_container *c,
			  pm_node_t node, void (*ended)(void *, error_t),
			  void *arg)
{
	struct pmd_io_piece pieces[PMD_PULL_MAX];
	struct rctx *x;
	error_t err;

	if (pmd_busy_test(srv, c->id))
		return EBUSY;
	x = rctx_new(srv, RCTX_PULL, c->id);
	if (!x)
		return ENOMEM;
	pmd_pull_plan_node(srv->core, c, node, x->pulls, &x->npulls);
	if (!x->npulls) {
		free(x);
		return ENOENT;
	}
	x->owner = c->owner->id;
	x->owner_handle = pmd_container_handle_of(c->owner, c);
	x->ended = ended;
	x->ended_arg = arg;
	if (x->pulls[0].tagged) { /* kept for a task of that node */
		err = pull_return_go(srv, c, x, false);
	} else if (pulls_extra(c, x->pulls, x->npulls) >
		   pmd_budget_unreserved(&srv->core->budget)) {
		err = move_go(srv, x, node);
	} else {
		pull_pieces(x, x->npulls, pieces);
		err = rctx_go(srv, x, false, pieces, x->npulls, NULL,
			      x->npulls * PM_FRAME_SIZE);
	}
	if (err)
		rctx_free(x);
	return err;
}

/* The tagged slots for a push came (or not): write the frames there. */
static void push_borrowed(void *arg, error_t status,
			  const struct pmd_place *places, uint32_t n)
{
	struct pmd_io_piece pieces[PMD_PUSH_MAX];
	struct rctx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_session *s = x->base.s;
	uint32_t k = 0;

	if (n > x->npush)
		n = x->npush; /* not more than asked */
	for (uint32_t i = 0; s && !status && i < n; i++) {
		const uint8_t *bytes = pmd_push_bytes(srv->core, s->task,
						      x->handle, &x->pushes[i]);
		if (!bytes) { /* gone meanwhile: its slot goes back */
			pmd_places_give_back(srv->core, &places[i], 1);
			continue;
		}
		memcpy(x->data + (size_t)k * PM_FRAME_SIZE, bytes, PM_FRAME_SIZE);
		x->pushes[k] = x->pushes[i];
		x->places[k] = places[i];
		pieces[k] = place_piece(&places[i]);
		k++;
	}
	x->npush = k;
	if (s && !status && n == 0)
		status = ENOMEM; /* that node lends nothing now */
	if (!s || status) {
		pmd_places_give_back(srv->core, places, n);
		x->npush = 0;
	} else if (k) {
		status = pmd_cluster_rio(srv->cluster, true, pieces, k, x->data,
					 k * PM_FRAME_SIZE, rio_answer, x);
		if (!status)
			return;
		pmd_places_give_back(srv->core, x->places, k);
		x->npush = 0;
	}
	/* Nothing to write after all: done (the request runs again). */
	rio_answer(x, status, NULL, 0);
}

/* Every frame of the forwarded map is in place: the runs of the
 * lender's slots answer it. */
static enum pmd_step push_answer(struct pmd_server *srv,
				 const struct pmd_push_out *o,
				 struct pmd_reply *r)
{
	struct pm_map_rep *rep = pmd_reply_body(srv);

	*rep = (struct pm_map_rep){ .granted = o->granted, .done = o->done,
				    .nruns = o->nruns };
	memcpy(rep + 1, o->runs, o->nruns * sizeof(o->runs[0]));
	r->body_len = (uint32_t)(sizeof(*rep) + o->nruns * sizeof(o->runs[0]));
	return pmd_reply_now(r, 0);
}

enum pmd_step pmd_remote_push(struct pmd_server *srv, struct pmd_session *s,
			      const struct pmd_req *q, struct pmd_reply *r)
{
	const struct pm_map_req *req = q->body;
	struct pmd_push_out *o = &srv->push;
	frame_t frames[PMD_PUSH_MAX];
	struct pmd_container *c;
	struct rctx *x;
	error_t err;
	bool none;

	static_assert(PMD_PUSH_MAX <= PMD_LEND_MAX, "a push is one loan");
	/* (dispatch made it wait while the container had remote work) */
	err = pmd_push_plan(srv->core, s->task, req->handle, req->start,
			    req->count, req->flags, s->vnode, o, &r->why);
	if (err)
		return pmd_reply_now(r, err);
	c = pmd_container_lookup(s->task, req->handle);
	if (o->pull) /* frames elsewhere come here first */
		return pmd_remote_pull(srv, s, c, req->handle, req->start,
				       req->count < PMD_FWD_MAP_MAX ? req->count
								    : PMD_FWD_MAP_MAX,
				       s->task->id, false, q, &none, r);
	if (!o->npush)
		return push_answer(srv, o, r);
	/* The holders of the frames' slots stop first (they go on when
	 * the push is answered). */
	{
		enum pmd_step step;
		bool go;

		step = pmd_stop_first(srv, s, q, r, &go);
		if (!go)
			return step;
	}
	x = rctx_new(srv, RCTX_PUSH, c->id);
	if (x)
		x->data = malloc((size_t)o->npush * PM_FRAME_SIZE);
	if (!x || !x->data || !rctx_keep(x, q)) {
		if (x)
			rctx_free(x);
		return pmd_reply_now(r, ENOMEM);
	}
	x->handle = req->handle;
	x->node = s->vnode;
	x->npush = o->npush;
	memcpy(x->pushes, o->push, o->npush * sizeof(o->push[0]));
	for (uint32_t i = 0; i < o->npush; i++)
		frames[i] = o->push[i].frame;
	err = busy_add(srv, c->id);
	if (!err) {
		err = pmd_cluster_borrow_for(srv->cluster, s->vnode, o->npush,
					     s->task->id, c->id, req->handle,
					     frames, push_borrowed, x);
		if (err)
			busy_done(srv, c->id);
	}
	if (err) {
		rctx_free(x);
		return pmd_reply_now(r, err);
	}
	return pmd_session_park(s, &x->base);
}

/* ---- paging out under memory pressure (reclaim.c decides) ---- */

/* Frames of one container on their way to slots another node lends. */
struct pagectx {
	struct pmd_server *srv;      /* (C) */
	uint64_t id;                 /* (C) the container, busy meanwhile */
	uint64_t owner;              /* (C) its owner, */
	container_t owner_handle;    /* (C) and the owner's handle */
	uint32_t n;                  /* (L) frames */
	struct pmd_pageout v[PMD_PUSH_MAX];    /* (L) */
	struct pmd_place places[PMD_PUSH_MAX]; /* (L) their new slots */
	uint8_t *data;               /* (L) their bytes, written there */
	pmd_pageout_done *done;      /* (C) told once */
	void *done_arg;              /* (C) */
	uint32_t pending;            /* (L) store slots taken, their frames
	                              * not in them yet (store.pending) */
};

/* The store slots x took hold their frames now, or went back. */
static void pageout_settled(struct pagectx *x)
{
	x->srv->core->store.pending -= x->pending;
	x->pending = 0;
}

static void pageout_end(struct pagectx *x, uint32_t moved, error_t status)
{
	pageout_settled(x);
	busy_done(x->srv, x->id);
	x->done(x->done_arg, moved, status);
	free(x->data);
	free(x);
}

/* The container, if it is still there. */
static struct pmd_container *pageout_cont(const struct pagectx *x)
{
	struct pmd_task *o = pmd_task_find(x->srv->core, x->owner);

	return o ? pmd_container_lookup(o, x->owner_handle) : NULL;
}

/* Written there (or not: those frames are lost, EIO, as for any remote
 * write that fails). */
static void pageout_written(void *arg, error_t status, const uint8_t *data,
			    uint32_t len)
{
	struct pagectx *x = arg;

	(void)data;
	(void)len;
	if (status) {
		pmd_warn("paging out %u frames to node %u failed (%s): they "
			 "are lost", x->n, x->places[0].node, strerror(status));
		for (uint32_t i = 0; i < x->n; i++)
			pmd_rslots_lost(x->srv->core, x->places[i].node,
					x->places[i].key,
					(uint64_t)x->places[i].slot * PM_FRAME_SIZE,
					PM_FRAME_SIZE);
	}
	pageout_end(x, status ? 0 : x->n, status);
}

/* The frames' mappers stopped (or the deadline passed): the frames move
 * now, their bytes go out, and the mappers go on (they fault the frames
 * home, which waits while the container is busy). */
static void pageout_stopped(void *arg)
{
	struct pmd_io_piece pieces[PMD_PUSH_MAX];
	struct pagectx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_container *c = pageout_cont(x);
	error_t err;

	if (!c) {
		pmd_places_give_back(srv->core, x->places, x->n);
		pageout_end(x, 0, 0);
		return;
	}
	x->n = pmd_pageout_repoint(srv->core, c, x->v, x->places, x->n,
				   x->data);
	pageout_settled(x);
	pmd_segtab_flush(&srv->core->segs);
	if (!x->n) {
		pageout_end(x, 0, 0);
		return;
	}
	for (uint32_t i = 0; i < x->n; i++)
		pieces[i] = place_piece(&x->places[i]);
	err = pmd_rio(srv, true, pieces, x->n, x->data, x->n * PM_FRAME_SIZE,
		      NULL, pageout_written, x);
	if (err)
		pageout_written(x, err, NULL, 0);
}

/* The lender's slots came (or not): the mappers stop first. */
static void pageout_borrowed(void *arg, error_t status,
			     const struct pmd_place *places, uint32_t n)
{
	struct pagectx *x = arg;
	struct pmd_server *srv = x->srv;
	struct pmd_container *c;

	if (n > x->n) {
		pmd_places_give_back(srv->core, places + x->n, n - x->n);
		n = x->n;
	}
	if (!status && !n)
		status = ENOMEM; /* it lends nothing now */
	c = status ? NULL : pageout_cont(x);
	if (!c) {
		pmd_places_give_back(srv->core, places, n);
		pageout_end(x, 0, status);
		return;
	}
	x->n = n;
	memcpy(x->places, places, n * sizeof(*places));
	status = pmd_pageout_stops(srv->core, c, x->v, x->n);
	if (!status)
		status = pmd_stop_call(srv, &srv->core->stops,
				       srv->cfg->stop_ms, pageout_stopped, x);
	if (status) {
		pmd_places_give_back(srv->core, x->places, x->n);
		pageout_end(x, 0, status);
	}
}

error_t pmd_remote_pageout(struct pmd_server *srv, struct pmd_container *c,
			   const struct pmd_pageout *v, uint32_t n,
			   bool page_in, pmd_pageout_done *done, void *arg)
{
	pm_node_t to = srv->cluster ? pmd_cluster_best_lender(srv->cluster, 0)
				    : 0;
	struct pmd_place places[PMD_PUSH_MAX];
	struct pagectx *x;
	uint8_t *data;
	error_t err;

	/* Another node's memory first, then the backing store. */
	if (!to && pmd_store_free(&srv->core->store, page_in))
		to = PMD_NODE_STORE;
	if (!to)
		return ENOMEM;
	if (n > PMD_PUSH_MAX)
		n = PMD_PUSH_MAX;
	if (to == PMD_NODE_STORE && n > pmd_store_free(&srv->core->store,
						       page_in))
		n = (uint32_t)pmd_store_free(&srv->core->store, page_in);
	x = calloc(1, sizeof(*x));
	data = malloc((size_t)n * PM_FRAME_SIZE);
	if (!x || !data) {
		free(x);
		free(data);
		return ENOMEM;
	}
	*x = (struct pagectx){ .srv = srv, .id = c->id, .owner = c->owner->id,
			       .owner_handle = pmd_container_handle_of(c->owner,
								       c),
			       .n = n, .data = data, .done = done,
			       .done_arg = arg };
	memcpy(x->v, v, n * sizeof(*v));
	err = busy_add(srv, c->id);
	if (!err && to == PMD_NODE_STORE) {
		/* The store's slots are ours: at once (done comes later,
		 * from the write); in use, their frames not yet there. */
		x->pending = pmd_store_take(&srv->core->store, x->n, places);
		srv->core->store.pending += x->pending;
		pageout_borrowed(x, 0, places, x->pending);
		return 0;
	}
	if (!err) {
		err = pmd_cluster_borrow(srv->cluster, to, n, pageout_borrowed,
					 x);
		if (err)
			busy_done(srv, c->id);
	}
	if (err) {
		free(x->data);
		free(x);
	}
	return err;
}
