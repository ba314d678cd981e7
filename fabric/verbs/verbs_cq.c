/*
 * verbs_cq.c - the data path of the native verbs backend: posting work on
 * a peer's connection, reaping the completion queue, and the check before
 * sleeping. While busy nothing here makes a system call per operation
 * beyond the device's own doorbell: completions are polled from the
 * queue, the channel is read and re-armed only before sleeping, and
 * rdma_cm events are looked at no more than every FVB_CM_CHECK_MS.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "fab_verbs.h"

/* Error completions: the operation's own failure (the queue pair is
 * replaced and what followed goes again) or the link's. */
static bool fvb_wc_own(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_LOC_LEN_ERR:
	case IBV_WC_LOC_QP_OP_ERR:
	case IBV_WC_LOC_PROT_ERR:
	case IBV_WC_LOC_ACCESS_ERR:
	case IBV_WC_MW_BIND_ERR:
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_REM_OP_ERR:
		return true;
	default:
		return false;
	}
}

static error_t fvb_wc_errno(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS: return 0;
	case IBV_WC_LOC_LEN_ERR: return EMSGSIZE;
	case IBV_WC_LOC_PROT_ERR:
	case IBV_WC_LOC_ACCESS_ERR: return EFAULT;
	case IBV_WC_REM_ACCESS_ERR: return EACCES;
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_REM_OP_ERR: return EREMOTEIO;
	case IBV_WC_WR_FLUSH_ERR: return ECANCELED;
	case IBV_WC_RETRY_EXC_ERR: return EHOSTUNREACH;
	case IBV_WC_REM_ABORT_ERR: return ECONNABORTED;
	case IBV_WC_LOC_QP_OP_ERR:
	case IBV_WC_MW_BIND_ERR: return EIO;
	default: return ECONNRESET;
	}
}

static error_t fvb_post(struct fab_ep *ep, struct fab_op *op)
{
	struct fvb_ep *vep = fvb_ep(ep);
	struct fvb_av *e = fvb_av_get(vep, op->addr);

	if (!e)
		return ENOTCONN; /* a stale address: fabric.c inserts again */
	if (op->type != FAB_OP_SEND &&
	    (op->rkey > UINT32_MAX || op->len > vep->max_msg)) {
		/* No key of this device, or longer than RC carries: refused
		 * as the target would refuse it. */
		fab_log(LOG_WARNING, "%s refused: %s",
			op->type == FAB_OP_READ ? "read" : "write",
			op->rkey > UINT32_MAX ? "not a key of a verbs device"
					      : "longer than a transfer can be");
		fvb_done(vep, op, op->rkey > UINT32_MAX ? EACCES : EMSGSIZE);
		return 0;
	}
	if (!e->conn) {
		if (fvb_now() >= e->retry_at)
			fvb_conn_connect(vep, (uint32_t)(e - vep->av), NULL);
		return EAGAIN;
	}
	if (e->conn->state != FVB_UP)
		return EAGAIN;
	return fvb_post_op(e->conn, op);
}

error_t fvb_post_read(struct fab_ep *ep, struct fab_op *op)
{
	return fvb_post(ep, op);
}

error_t fvb_post_write(struct fab_ep *ep, struct fab_op *op)
{
	return fvb_post(ep, op);
}

error_t fvb_post_send(struct fab_ep *ep, struct fab_op *op)
{
	return fvb_post(ep, op);
}

error_t fvb_post_recv(struct fab_ep *ep, struct fab_op *op)
{
	struct fvb_ep *vep = fvb_ep(ep);
	struct ibv_sge sge = {
		.addr = (uintptr_t)op->local,
		.length = (uint32_t)op->len,
		.lkey = ((struct ibv_mr *)op->desc)->lkey,
	};
	struct ibv_recv_wr wr = { .wr_id = (uintptr_t)op, .sg_list = &sge,
				  .num_sge = 1 },
			   *bad;
	int rc = ibv_post_srq_recv(vep->srq, &wr, &bad);

	if (rc == ENOMEM || rc == EAGAIN)
		return EAGAIN;
	if (rc)
		fab_log(LOG_ERR, "ibv_post_srq_recv: %s", strerror(rc));
	return rc;
}

/* The table address of a receive's sender, from the connection it came on. */
static uint64_t fvb_src(struct fvb_ep *vep, uint32_t qp_num)
{
	struct fvb_conn *conn = vep->last_rx;
	size_t i;

	if (!conn || conn->qp_num != qp_num || !conn->qp) {
		for (conn = vep->conns; conn; conn = conn->next)
			if (conn->qp && conn->qp_num == qp_num)
				break;
		if (!conn)
			return FAB_PEER_NONE;
		vep->last_rx = conn;
	}
	if (conn->outgoing)
		return conn->peer == FVB_NO_PEER ? FAB_PEER_NONE
						  : fvb_av_addr(vep, conn->peer);
	if (conn->src_epoch != vep->av_epoch) {
		conn->src_addr = FAB_PEER_NONE;
		for (i = 0; i < vep->nav; i++) {
			if (vep->av[i].used &&
			    fvb_sa_equal(&vep->av[i].sa, vep->av[i].len,
					 &conn->src, conn->src_len)) {
				conn->src_addr = fvb_av_addr(vep, (uint32_t)i);
				break;
			}
		}
		conn->src_epoch = vep->av_epoch;
	}
	return conn->src_addr;
}

/* One work completion; returns 1 when it fills *comp, 0 when the
 * operation was kept to be posted again. */
static int fvb_wc(struct fvb_ep *vep, const struct ibv_wc *wc,
		  struct fab_comp *comp)
{
	struct fab_op *op = (struct fab_op *)(uintptr_t)wc->wr_id;
	struct fvb_conn *conn;
	error_t status = fvb_wc_errno(wc->status);
	char buf[80];

	if (op->type == FAB_OP_RECV) {
		if (wc->status && wc->status != IBV_WC_WR_FLUSH_ERR)
			fab_log(LOG_WARNING, "receive failed: %s",
				ibv_wc_status_str(wc->status));
		*comp = (struct fab_comp){ .op = op, .status = status,
					   .len = wc->byte_len,
					   .src = fvb_src(vep, wc->qp_num) };
		return 1;
	}
	conn = op->bconn;
	op->bconn = NULL;
	conn->posted--;
	if (wc->status == IBV_WC_WR_FLUSH_ERR) {
		switch (conn->state) {
		case FVB_RECOVER:
			if (op->state == FAB_OPS_POSTED) {
				fvb_redo_push(conn, op);
				fvb_conn_check(conn);
				return 0;
			}
			break;
		case FVB_CLOSING: break;
		case FVB_UP:
			/* In error with no failure of its own: the link. */
			fab_log(LOG_INFO, "connection to %s lost",
				fvb_sa_str(&vep->av[conn->peer].sa, buf,
					   sizeof(buf)));
			conn->state = FVB_BROKEN;
			status = ECONNRESET;
			break;
		default: status = ECONNRESET; break;
		}
	} else if (wc->status) {
		bool own = fvb_wc_own(wc->status);

		fab_log(LOG_WARNING, "%s to %s failed: %s%s",
			op->type == FAB_OP_READ	   ? "read"
			: op->type == FAB_OP_WRITE ? "write"
						   : "send",
			conn->peer == FVB_NO_PEER
				? "a removed peer"
				: fvb_sa_str(&vep->av[conn->peer].sa, buf,
					     sizeof(buf)),
			ibv_wc_status_str(wc->status),
			own ? "" : " (the connection is down)");
		if (conn->state == FVB_UP)
			conn->state = own ? FVB_RECOVER : FVB_BROKEN;
		else if (conn->state == FVB_RECOVER && !own)
			conn->state = FVB_BROKEN;
	}
	*comp = (struct fab_comp){ .op = op, .status = status, .len = op->len,
				   .src = FAB_PEER_NONE };
	fvb_conn_check(conn);
	return 1;
}

static size_t fvb_take_done(struct fvb_ep *vep, struct fab_comp *comps,
			    size_t max)
{
	size_t n = 0;

	while (n < max && vep->done_n) {
		comps[n++] = vep->done[vep->done_head];
		vep->done_head = (vep->done_head + 1) % vep->done_cap;
		vep->done_n--;
	}
	return n;
}

error_t fvb_cq_read(struct fab_ep *ep, struct fab_comp *comps, size_t max,
		    size_t *n_out)
{
	struct fvb_ep *vep = fvb_ep(ep);
	struct ibv_wc wc[64];
	size_t n = fvb_take_done(vep, comps, max);
	int want, got, i;

	while (n < max && vep->stash_pos < vep->stash_n)
		n += fvb_wc(vep, &vep->stash[vep->stash_pos++], &comps[n]);
	if (n < max) {
		want = max - n < 64 ? (int)(max - n) : 64;
		got = ibv_poll_cq(vep->cq, want, wc);
		if (got < 0) {
			fab_log(LOG_ERR, "ibv_poll_cq: %s", strerror(-got));
			return EIO;
		}
		for (i = 0; i < got; i++)
			n += fvb_wc(vep, &wc[i], &comps[n]);
		if (got < want && vep->stash_pos == vep->stash_n)
			fvb_conns_bury(vep);
	}
	/* rdma_cm: a system call, so not on every poll while busy. */
	if (fvb_now() - vep->cm_checked >= (uint64_t)FVB_CM_CHECK_MS * 1000000u)
		fvb_cm_events(vep);
	n += fvb_take_done(vep, comps + n, max - n);
	*n_out = n;
	return 0;
}

/*
 * Before sleeping: rdma_cm events are handled, the channel's events are
 * consumed and the CQ re-armed, then polled once more so that nothing
 * that completed before the arming is slept over (found work is stashed
 * for the next cq_read).
 */
error_t fvb_trywait(struct fab_ep *ep)
{
	struct fvb_ep *vep = fvb_ep(ep);
	struct ibv_cq *cq;
	void *cq_ctx;
	unsigned events = 0;
	int got;

	if (vep->done_n || vep->stash_pos < vep->stash_n || vep->kick) {
		vep->kick = false;
		return EAGAIN;
	}
	/* rdma_cm's channel is in the wait set too: an event that comes
	 * while we sleep wakes us, and one that came since the last look is
	 * taken within FVB_CM_CHECK_MS. */
	if (fvb_now() - vep->cm_checked >= (uint64_t)FVB_CM_CHECK_MS * 1000000u)
		fvb_cm_events(vep);
	if (vep->kick) {
		vep->kick = false;
		return EAGAIN;
	}
	if (!vep->comp_ch)
		return 0;
	/* One event at most: the queue was armed once since the last. */
	if (!ibv_get_cq_event(vep->comp_ch, &cq, &cq_ctx))
		events++;
	if (events)
		ibv_ack_cq_events(vep->cq, events);
	if (ibv_req_notify_cq(vep->cq, 0)) {
		fab_log(LOG_ERR, "ibv_req_notify_cq failed");
		return EIO;
	}
	got = ibv_poll_cq(vep->cq, FVB_STASH, vep->stash);
	if (got < 0) {
		fab_log(LOG_ERR, "ibv_poll_cq: %s", strerror(-got));
		return EIO;
	}
	vep->stash_n = (unsigned)got;
	vep->stash_pos = 0;
	return got ? EAGAIN : 0;
}

error_t fvb_wait_fd(const struct fab_ep *ep, int *fd_out)
{
	const struct fvb_ep *vep = fvb_ep(ep);

	if (vep->epfd < 0)
		return EOPNOTSUPP;
	*fd_out = vep->epfd;
	return 0;
}
