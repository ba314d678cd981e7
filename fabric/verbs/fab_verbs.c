/*
 * fab_verbs.c - the native verbs backend's endpoint: opening it on the
 * RDMA device that serves the node's address, the address table, memory
 * regions, and the ops table (see fab_verbs.h for the design).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include <rdma/fabric.h> /* FI_MR_* bits, for fab_info only */

#include "fab_verbs.h"

static error_t fvb_nonblock(int fd, const char *what)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		fab_log(LOG_ERR, "%s: fcntl: %m", what);
		return errno;
	}
	return 0;
}

/* The address to listen on: the node's, never a wildcard (the device is
 * found from it). */
static error_t fvb_bind_addr(const struct fab_attr *attr,
			     struct sockaddr_storage *sa_out, socklen_t *len_out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	error_t err = ENOENT;
	int rc;

	if (!attr->node || !*attr->node) {
		fab_log(LOG_ERR, "the verbs transport needs the address of an RDMA "
				 "device to bind (fab_attr.node)");
		return EINVAL;
	}
	rc = getaddrinfo(attr->node, attr->service ? attr->service : "0", &hints,
			 &res);
	if (rc) {
		fab_log(LOG_ERR, "address %s: %s", attr->node, gai_strerror(rc));
		return ENOENT;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		memset(sa_out, 0, sizeof(*sa_out));
		memcpy(sa_out, ai->ai_addr, ai->ai_addrlen);
		*len_out = ai->ai_addrlen;
		err = 0;
		break;
	}
	freeaddrinfo(res);
	if (err)
		fab_log(LOG_ERR, "address %s: no IPv4 or IPv6 address", attr->node);
	return err;
}

/* Everything ep_close releases; safe on a half-open endpoint, and twice. */
static void fvb_close_all(struct fvb_ep *vep)
{
	while (vep->conns)
		fvb_conn_free(vep->conns);
	if (vep->listen) {
		rdma_destroy_id(vep->listen);
		vep->listen = NULL;
	}
	if (vep->srq) {
		if (ibv_destroy_srq(vep->srq))
			fab_log(LOG_WARNING, "ibv_destroy_srq: %m");
		vep->srq = NULL;
	}
	vep->closed = true;
}

/* Everything ep_free releases, once regions are gone. */
static void fvb_free_all(struct fvb_ep *vep)
{
	fvb_close_all(vep);
	if (vep->cq && ibv_destroy_cq(vep->cq))
		fab_log(LOG_WARNING, "ibv_destroy_cq: %m");
	if (vep->comp_ch && ibv_destroy_comp_channel(vep->comp_ch))
		fab_log(LOG_WARNING, "ibv_destroy_comp_channel: %m");
	if (vep->pd && ibv_dealloc_pd(vep->pd))
		fab_log(LOG_WARNING, "ibv_dealloc_pd: %m");
	if (vep->cm_ch)
		rdma_destroy_event_channel(vep->cm_ch);
	if (vep->epfd >= 0)
		close(vep->epfd);
	free(vep->av);
	free(vep->done);
	free(vep);
}

static error_t fvb_epoll_add(struct fvb_ep *vep, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (epoll_ctl(vep->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		fab_log(LOG_ERR, "epoll_ctl: %m");
		return errno;
	}
	return 0;
}

/* The device's limits against what the endpoint needs. */
static error_t fvb_device_fit(struct fvb_ep *vep, const struct fab_attr *attr,
			      int *cqe_out)
{
	struct ibv_device_attr dev;
	int cqe = (int)(attr->tx_depth + attr->rx_depth + 16);

	if (ibv_query_device(vep->ctx, &dev)) {
		fab_log(LOG_ERR, "ibv_query_device: %m");
		return errno ? errno : EIO;
	}
	if (cqe > dev.max_cqe || (int)attr->rx_depth > dev.max_srq_wr ||
	    dev.max_srq_wr <= 0 || dev.max_qp_wr <= 0) {
		fab_log(LOG_ERR, "device %s too small: completion queue %d of %d, "
				 "shared receives %u of %d",
			ibv_get_device_name(vep->ctx->device), cqe, dev.max_cqe,
			attr->rx_depth, dev.max_srq_wr);
		return EINVAL;
	}
	vep->max_send_wr = attr->tx_depth < (unsigned)dev.max_qp_wr
				   ? attr->tx_depth
				   : (uint32_t)dev.max_qp_wr;
	vep->max_msg = 1u << 31; /* RC's limit; devices report theirs per port */
	vep->rd_init = dev.max_qp_init_rd_atom > 16 ? 16
						     : (uint8_t)dev.max_qp_init_rd_atom;
	vep->rd_resp = dev.max_qp_rd_atom > 16 ? 16 : (uint8_t)dev.max_qp_rd_atom;
	*cqe_out = cqe;
	return 0;
}

/* The device side: protection domain, completion queue and channel,
 * shared receive queue. */
static error_t fvb_device_open(struct fvb_ep *vep, const struct fab_attr *attr)
{
	struct ibv_srq_init_attr srq_attr = {
		.attr = { .max_wr = attr->rx_depth, .max_sge = 1 },
	};
	int cqe;
	error_t err;

	err = fvb_device_fit(vep, attr, &cqe);
	if (err)
		return err;
	vep->pd = ibv_alloc_pd(vep->ctx);
	if (!vep->pd) {
		fab_log(LOG_ERR, "ibv_alloc_pd: %m");
		return errno ? errno : ENOMEM;
	}
	if (!attr->busy_poll) {
		vep->comp_ch = ibv_create_comp_channel(vep->ctx);
		if (!vep->comp_ch) {
			fab_log(LOG_ERR, "ibv_create_comp_channel: %m");
			return errno ? errno : ENOMEM;
		}
		err = fvb_nonblock(vep->comp_ch->fd, "completion channel");
		if (err)
			return err;
	}
	vep->cq = ibv_create_cq(vep->ctx, cqe, NULL, vep->comp_ch, 0);
	if (!vep->cq) {
		fab_log(LOG_ERR, "ibv_create_cq(%d): %m", cqe);
		return errno ? errno : ENOMEM;
	}
	vep->srq = ibv_create_srq(vep->pd, &srq_attr);
	if (!vep->srq) {
		fab_log(LOG_ERR, "ibv_create_srq(%u): %m", attr->rx_depth);
		return errno ? errno : ENOMEM;
	}
	return 0;
}

/* The rdma_cm side: the event channel and the listening id, whose
 * address names the device. */
static error_t fvb_listen(struct fvb_ep *vep, const struct fab_attr *attr)
{
	struct sockaddr_storage sa;
	socklen_t len;
	char buf[80];
	error_t err;

	err = fvb_bind_addr(attr, &sa, &len);
	if (err)
		return err;
	vep->cm_ch = rdma_create_event_channel();
	if (!vep->cm_ch) {
		err = errno ? errno : ENODEV;
		fab_log(LOG_ERR, "no RDMA connection manager: rdma_create_event_"
				 "channel: %s",
			strerror(err));
		return err == ENOENT || err == ENODEV ? ENODEV : err;
	}
	err = fvb_nonblock(vep->cm_ch->fd, "rdma_cm channel");
	if (err)
		return err;
	if (rdma_create_id(vep->cm_ch, &vep->listen, NULL, RDMA_PS_TCP)) {
		err = errno;
		fab_log(LOG_ERR, "rdma_create_id: %m");
		return err;
	}
	if (rdma_bind_addr(vep->listen, (struct sockaddr *)&sa)) {
		err = errno;
		fab_log(LOG_ERR, "rdma_bind_addr %s: %m",
			fvb_sa_str(&sa, buf, sizeof(buf)));
		return err == EADDRNOTAVAIL || err == ENODEV ? ENODEV : err;
	}
	vep->ctx = vep->listen->verbs;
	if (!vep->ctx) {
		fab_log(LOG_ERR, "no RDMA device serves %s",
			fvb_sa_str(&sa, buf, sizeof(buf)));
		return ENODEV;
	}
	return 0;
}

static error_t fvb_listen_start(struct fvb_ep *vep)
{
	const struct sockaddr *sa;
	char buf[80];
	error_t err;

	if (rdma_listen(vep->listen, 64)) {
		err = errno;
		fab_log(LOG_ERR, "rdma_listen: %m");
		return err;
	}
	sa = rdma_get_local_addr(vep->listen);
	err = fvb_sa_parse(sa, sa->sa_family == AF_INET6
				       ? sizeof(struct sockaddr_in6)
				       : sizeof(struct sockaddr_in),
			   &vep->self, &vep->self_len);
	if (err)
		fab_log(LOG_ERR, "listening address %s unusable",
			fvb_sa_str((const void *)sa, buf, sizeof(buf)));
	return err;
}

static error_t fvb_ep_open(const struct fab_attr *attr, struct fab_ep **ep_out)
{
	struct fvb_ep *vep;
	error_t err;

	vep = calloc(1, sizeof(*vep));
	if (!vep)
		return ENOMEM;
	vep->epfd = -1;
	vep->done_cap = attr->tx_depth;
	vep->done = calloc(vep->done_cap, sizeof(*vep->done));
	if (!vep->done) {
		err = ENOMEM;
		goto free_ep;
	}
	if (getrandom(&vep->nonce, sizeof(vep->nonce), 0) != sizeof(vep->nonce)) {
		fab_log(LOG_ERR, "getrandom: %m");
		err = EIO;
		goto free_ep;
	}
	vep->nonce |= 1; /* never 0, which means "unknown" */
	err = fvb_listen(vep, attr);
	if (err)
		goto free_ep;
	err = fvb_device_open(vep, attr);
	if (err)
		goto free_ep;
	err = fvb_listen_start(vep);
	if (err)
		goto free_ep;
	if (vep->comp_ch) {
		vep->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (vep->epfd < 0) {
			err = errno;
			fab_log(LOG_ERR, "epoll_create1: %m");
			goto free_ep;
		}
		err = fvb_epoll_add(vep, vep->comp_ch->fd);
		if (!err)
			err = fvb_epoll_add(vep, vep->cm_ch->fd);
		if (!err && ibv_req_notify_cq(vep->cq, 0)) {
			fab_log(LOG_ERR, "ibv_req_notify_cq: %m");
			err = EIO;
		}
		if (err)
			goto free_ep;
	}
	vep->av_epoch = 1;
	vep->super.ops = &fab_verbs_ops;
	snprintf(vep->super.info.provider, sizeof(vep->super.info.provider),
		 "verbs:%s", ibv_get_device_name(vep->ctx->device));
	vep->super.info.mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR |
				  FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	vep->super.info.key_size = sizeof(uint32_t);
	vep->super.info.prov_key = 1;
	vep->super.info.delivery_complete = 1; /* RC: acked once placed */
	vep->super.info.wait_fd = vep->epfd >= 0;
	*ep_out = &vep->super;
	return 0;

free_ep:
	fvb_free_all(vep);
	return err;
}

static error_t fvb_ep_close(struct fab_ep *ep)
{
	fvb_close_all(fvb_ep(ep));
	return 0;
}

static void fvb_ep_free(struct fab_ep *ep)
{
	fvb_free_all(fvb_ep(ep));
}

static error_t fvb_ep_name(const struct fab_ep *ep, struct fab_name *name_out)
{
	const struct fvb_ep *vep = fvb_ep(ep);

	name_out->len = vep->self_len;
	memcpy(name_out->data, &vep->self, vep->self_len);
	return 0;
}

static error_t fvb_name_resolve(const struct fab_ep *ep, const char *node,
				const char *service, struct fab_name *name_out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL, *ai;
	struct sockaddr_storage sa;
	socklen_t len;
	error_t err = ENOENT;
	int rc;

	(void)ep;
	rc = getaddrinfo(node, service, &hints, &res);
	if (rc) {
		fab_log(LOG_ERR, "resolving %s:%s: %s", node, service,
			gai_strerror(rc));
		return ENOENT;
	}
	for (ai = res; ai && err; ai = ai->ai_next)
		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			err = fvb_sa_parse(ai->ai_addr, ai->ai_addrlen, &sa, &len);
	freeaddrinfo(res);
	if (err) {
		fab_log(LOG_ERR, "resolving %s:%s: no usable address", node, service);
		return ENOENT;
	}
	name_out->len = len;
	memcpy(name_out->data, &sa, len);
	return 0;
}

static error_t fvb_av_insert(struct fab_ep *ep, const struct fab_name *name,
			     uint64_t *addr_out)
{
	struct fvb_ep *vep = fvb_ep(ep);
	struct sockaddr_storage sa;
	struct fvb_av *e, *av;
	socklen_t len;
	size_t i;

	if (fvb_sa_parse(name->data, name->len, &sa, &len)) {
		fab_log(LOG_ERR, "not a verbs endpoint address (%u bytes)",
			name->len);
		return EINVAL;
	}
	for (i = 0; i < vep->nav; i++)
		if (!vep->av[i].used)
			break;
	if (i == vep->nav) {
		if (i >= FVB_NO_PEER)
			return ENOSPC;
		av = realloc(vep->av, (i + 1) * sizeof(*av));
		if (!av)
			return ENOMEM;
		vep->av = av;
		vep->av[i] = (struct fvb_av){ 0 };
		vep->nav++;
	}
	e = &vep->av[i];
	*e = (struct fvb_av){ .sa = sa, .len = len, .gen = e->gen + 1,
			      .used = true };
	vep->av_epoch++;
	*addr_out = fvb_av_addr(vep, (uint32_t)i);
	return 0;
}

static error_t fvb_av_remove(struct fab_ep *ep, uint64_t addr)
{
	struct fvb_ep *vep = fvb_ep(ep);
	struct fvb_av *e = fvb_av_get(vep, addr);

	if (!e)
		return EINVAL;
	if (e->conn)
		fvb_conn_detach(e->conn);
	e->conn = NULL;
	e->used = false;
	vep->av_epoch++;
	return 0;
}

struct fvb_mr {
	struct fab_mr super;
	struct ibv_mr *mr; /* (C) */
};

static error_t fvb_mr_reg(struct fab_ep *ep, void *buf, size_t len,
			  unsigned access, uint64_t key, struct fab_mr **mr_out)
{
	struct fvb_ep *vep = fvb_ep(ep);
	/* Local write always: a region is the target of our reads too, and
	 * remote write needs it. */
	int acc = IBV_ACCESS_LOCAL_WRITE;
	struct fvb_mr *vmr;
	struct rlimit rl;
	error_t err;

	(void)key; /* the device picks keys */
	if (access & FAB_ACCESS_REMOTE_READ)
		acc |= IBV_ACCESS_REMOTE_READ;
	if (access & FAB_ACCESS_REMOTE_WRITE)
		acc |= IBV_ACCESS_REMOTE_WRITE;
	vmr = calloc(1, sizeof(*vmr));
	if (!vmr)
		return ENOMEM;
	vmr->mr = ibv_reg_mr(vep->pd, buf, len, acc);
	if (!vmr->mr) {
		err = errno ? errno : ENOMEM;
		if (err == ENOMEM && !getrlimit(RLIMIT_MEMLOCK, &rl) &&
		    rl.rlim_cur != RLIM_INFINITY)
			fab_log(LOG_ERR, "ibv_reg_mr of %zu bytes: %s (locked memory "
					 "is limited to %llu bytes: raise "
					 "RLIMIT_MEMLOCK, e.g. LimitMEMLOCK=infinity)",
				len, strerror(err), (unsigned long long)rl.rlim_cur);
		else
			fab_log(LOG_ERR, "ibv_reg_mr of %zu bytes: %s", len,
				strerror(err));
		free(vmr);
		return err;
	}
	vmr->super.ep = ep;
	vmr->super.buf = buf;
	vmr->super.len = len;
	vmr->super.access = access;
	vmr->super.key = vmr->mr->rkey;
	vmr->super.base = (uint64_t)(uintptr_t)buf;
	vmr->super.desc = vmr->mr;
	*mr_out = &vmr->super;
	return 0;
}

static error_t fvb_mr_dereg(struct fab_mr *mr)
{
	struct fvb_mr *vmr = fab_container_of(mr, struct fvb_mr, super);
	int rc = ibv_dereg_mr(vmr->mr);

	if (rc) {
		fab_log(LOG_ERR, "ibv_dereg_mr: %s", strerror(rc));
		return rc;
	}
	free(vmr);
	return 0;
}

const struct fab_ops fab_verbs_ops = {
	.size = sizeof(struct fab_ops),
	.name = "verbs",
	.av_insert = fvb_av_insert,
	.av_remove = fvb_av_remove,
	.cq_read = fvb_cq_read,
	.ep_close = fvb_ep_close,
	.ep_free = fvb_ep_free,
	.ep_name = fvb_ep_name,
	.ep_open = fvb_ep_open,
	.mr_dereg = fvb_mr_dereg,
	.name_resolve = fvb_name_resolve,
	.mr_reg = fvb_mr_reg,
	.post_read = fvb_post_read,
	.post_recv = fvb_post_recv,
	.post_send = fvb_post_send,
	.post_write = fvb_post_write,
	.trywait = fvb_trywait,
	.wait_fd = fvb_wait_fd,
};
