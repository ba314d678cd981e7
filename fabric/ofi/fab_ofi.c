/*
 * fab_ofi.c - the libfabric backend: one FI_EP_RDM endpoint with FI_MSG and
 * FI_RMA, an address table, one completion queue (with a wait descriptor
 * where the provider has one) and memory regions registered as the
 * provider's FI_MR_* mode bits ask.
 *
 * libfabric returns negative codes, some beyond errno's range; they become
 * positive errno values in fab_ofi_err() and nowhere else.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "fab_ops.h"

#define FAB_OFI_VERSION FI_VERSION(1, 14)

/* The registration modes this backend knows how to honour. */
#define FAB_OFI_MR_MODES (FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | \
			  FI_MR_PROV_KEY | FI_MR_ENDPOINT)

struct fab_ofi_ep {
	struct fab_ep super;
	struct fi_info *info;      /* (C) what fi_getinfo chose */
	struct fid_fabric *fabric; /* (C) */
	struct fid_domain *domain; /* (C) */
	struct fid_av *av;         /* (C) */
	struct fid_cq *cq;         /* (C) */
	struct fid_ep *ep;         /* (C) NULL once closed */
	int wait_fd;               /* (C) CQ wait descriptor, -1 if none */
};

struct fab_ofi_mr {
	struct fab_mr super;
	struct fid_mr *mr; /* (C) */
};

static inline struct fab_ofi_ep *fab_ofi_ep(const struct fab_ep *ep)
{
	return fab_container_of(ep, struct fab_ofi_ep, super);
}

/* The one place where libfabric's negative codes become errno values. */
static error_t fab_ofi_err(ssize_t rc)
{
	int e;

	if (rc >= 0)
		return 0;
	e = (int)-rc;
	if (e < FI_ERRNO_OFFSET)
		return e;
	switch (e) {
	case FI_ETRUNC: return EMSGSIZE;
	case FI_ETOOSMALL: return ENOBUFS;
	case FI_EBADFLAGS: return EINVAL;
	case FI_ENOEQ: return ENOENT;
	case FI_EDOMAIN: return EINVAL;
	case FI_ENOCQ: return ENOENT;
	case FI_ECRC: return EBADMSG;
	case FI_EOPBADSTATE: return EPROTO;
	case FI_EOVERRUN: return EOVERFLOW;
	default: return EIO;
	}
}

static error_t fab_ofi_check(ssize_t rc, const char *what)
{
	error_t err = fab_ofi_err(rc);

	if (err && err != EAGAIN)
		fab_log(LOG_ERR, "%s: %s", what, fi_strerror((int)-rc));
	return err;
}

static struct fi_info *fab_ofi_hints(const struct fab_attr *attr,
				     bool delivery_complete)
{
	struct fi_info *hints = fi_allocinfo();

	if (!hints)
		return NULL;
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_SEND | FI_RECV |
		      FI_REMOTE_READ | FI_REMOTE_WRITE | FI_SOURCE;
	hints->mode = 0; /* we offer no FI_CONTEXT space */
	hints->domain_attr->mr_mode = FAB_OFI_MR_MODES;
	hints->domain_attr->threading = FI_THREAD_DOMAIN;
	hints->tx_attr->msg_order = FI_ORDER_SAS;
	hints->rx_attr->msg_order = FI_ORDER_SAS;
	if (delivery_complete)
		hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
	hints->fabric_attr->prov_name = strdup(attr->provider);
	if (!hints->fabric_attr->prov_name) {
		fi_freeinfo(hints);
		return NULL;
	}
	return hints;
}

/*
 * ofi_rxm sizes its completion queues by the universe size (default 256
 * peers), beyond what soft-RoCE (rxe) gives a queue, and then fails
 * fi_enable with EINVAL. pmd clusters are far smaller: unless the user
 * chose, ask for 32. libfabric reads it when its providers first load,
 * so this runs before the first fi_getinfo of the process.
 */
static void fab_ofi_universe(const char *provider)
{
	if (!strstr(provider, "verbs") || getenv("FI_UNIVERSE_SIZE"))
		return;
	if (setenv("FI_UNIVERSE_SIZE", "32", 0) == 0)
		fab_log(LOG_NOTICE, "FI_UNIVERSE_SIZE=32 for %s (rxm's default "
				    "queues exceed what soft-RoCE allows)",
			provider);
}

static error_t fab_ofi_getinfo(const struct fab_attr *attr,
			       struct fi_info **info_out, bool *dc_out)
{
	struct fi_info *hints, *info = NULL;
	bool dc;
	int rc = -FI_ENODATA;

	fab_ofi_universe(attr->provider);

	for (dc = true;; dc = false) {
		hints = fab_ofi_hints(attr, dc);
		if (!hints)
			return ENOMEM;
		rc = fi_getinfo(FAB_OFI_VERSION, attr->node, attr->service,
				attr->node || attr->service ? FI_SOURCE : 0, hints,
				&info);
		fi_freeinfo(hints);
		if (rc != -FI_ENODATA || !dc)
			break;
	}
	if (rc == -FI_ENODATA) {
		fab_log(LOG_ERR, "provider \"%s\" unavailable, or without FI_EP_RDM "
				 "with FI_MSG, FI_RMA and ordered messages",
			attr->provider);
		return ENODEV;
	}
	if (rc)
		return fab_ofi_check(rc, "fi_getinfo");
	if (!dc)
		fab_log(LOG_NOTICE, "provider \"%s\" lacks FI_DELIVERY_COMPLETE: "
				    "a write completion does not prove remote visibility",
			attr->provider);
	*info_out = info;
	*dc_out = dc;
	return 0;
}

static error_t fab_ofi_cq_open(struct fab_ofi_ep *oep, size_t size,
			       bool busy_poll)
{
	struct fi_cq_attr cq_attr = {
		.size = size,
		.format = FI_CQ_FORMAT_MSG,
		.wait_obj = FI_WAIT_FD,
	};
	int fd = -1;
	int rc = -FI_ENOSYS;

	if (!busy_poll)
		rc = fi_cq_open(oep->domain, &cq_attr, &oep->cq, NULL);
	if (rc == 0) {
		rc = fi_control(&oep->cq->fid, FI_GETWAIT, &fd);
		if (rc == 0) {
			oep->wait_fd = fd;
			return 0;
		}
		fi_close(&oep->cq->fid);
		oep->cq = NULL;
	}
	/* No descriptor: the caller polls at a bounded interval. */
	cq_attr.wait_obj = FI_WAIT_NONE;
	rc = fi_cq_open(oep->domain, &cq_attr, &oep->cq, NULL);
	oep->wait_fd = -1;
	return fab_ofi_check(rc, "fi_cq_open");
}

static error_t fab_ofi_ep_open(const struct fab_attr *attr,
			       struct fab_ep **ep_out)
{
	struct fab_ofi_ep *oep;
	struct fi_av_attr av_attr = { .type = FI_AV_TABLE };
	struct fi_info *info = NULL;
	bool dc = false;
	error_t err;

	err = fab_ofi_getinfo(attr, &info, &dc);
	if (err)
		return err;
	oep = calloc(1, sizeof(*oep));
	if (!oep) {
		err = ENOMEM;
		goto free_info;
	}
	oep->info = info;
	oep->wait_fd = -1;

	err = fab_ofi_check(fi_fabric(info->fabric_attr, &oep->fabric, NULL),
			    "fi_fabric");
	if (err)
		goto free_ep;
	err = fab_ofi_check(fi_domain(oep->fabric, info, &oep->domain, NULL),
			    "fi_domain");
	if (err)
		goto close_fabric;
	err = fab_ofi_check(fi_av_open(oep->domain, &av_attr, &oep->av, NULL),
			    "fi_av_open");
	if (err)
		goto close_domain;
	err = fab_ofi_cq_open(oep, (size_t)attr->tx_depth + attr->rx_depth,
			      attr->busy_poll);
	if (err)
		goto close_av;
	err = fab_ofi_check(fi_endpoint(oep->domain, info, &oep->ep, NULL),
			    "fi_endpoint");
	if (err)
		goto close_cq;
	err = fab_ofi_check(fi_ep_bind(oep->ep, &oep->av->fid, 0), "fi_ep_bind av");
	if (err)
		goto close_ep;
	err = fab_ofi_check(fi_ep_bind(oep->ep, &oep->cq->fid,
				       FI_TRANSMIT | FI_RECV),
			    "fi_ep_bind cq");
	if (err)
		goto close_ep;
	err = fab_ofi_check(fi_enable(oep->ep), "fi_enable");
	if (err)
		goto close_ep;

	oep->super.ops = &fab_ofi_ops;
	snprintf(oep->super.info.provider, sizeof(oep->super.info.provider), "%s",
		 info->fabric_attr->prov_name);
	oep->super.info.mr_mode = info->domain_attr->mr_mode;
	oep->super.info.key_size = info->domain_attr->mr_key_size < 8
					   ? info->domain_attr->mr_key_size
					   : 8;
	oep->super.info.prov_key = !!(info->domain_attr->mr_mode & FI_MR_PROV_KEY);
	oep->super.info.delivery_complete = dc;
	oep->super.info.wait_fd = oep->wait_fd >= 0;
	*ep_out = &oep->super;
	return 0;

close_ep:
	fi_close(&oep->ep->fid);
close_cq:
	fi_close(&oep->cq->fid);
close_av:
	fi_close(&oep->av->fid);
close_domain:
	fi_close(&oep->domain->fid);
close_fabric:
	fi_close(&oep->fabric->fid);
free_ep:
	free(oep);
free_info:
	fi_freeinfo(info);
	return err;
}

static error_t fab_ofi_ep_close(struct fab_ep *ep)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);
	error_t err;

	if (!oep->ep)
		return 0;
	err = fab_ofi_check(fi_close(&oep->ep->fid), "closing the endpoint");
	if (err)
		return err;
	oep->ep = NULL;
	return 0;
}

static void fab_ofi_ep_free(struct fab_ep *ep)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);

	fab_ofi_check(fi_close(&oep->cq->fid), "closing the completion queue");
	fab_ofi_check(fi_close(&oep->av->fid), "closing the address vector");
	fab_ofi_check(fi_close(&oep->domain->fid), "closing the domain");
	fab_ofi_check(fi_close(&oep->fabric->fid), "closing the fabric");
	fi_freeinfo(oep->info);
	free(oep);
}

static error_t fab_ofi_ep_name(const struct fab_ep *ep,
			       struct fab_name *name_out)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);
	uint8_t buf[FAB_NAME_MAX];
	size_t len = sizeof(buf);
	error_t err;

	err = fab_ofi_check(fi_getname(&oep->ep->fid, buf, &len), "fi_getname");
	if (err)
		return err;
	name_out->len = (uint32_t)len;
	memcpy(name_out->data, buf, len);
	return 0;
}

static error_t fab_ofi_av_insert(struct fab_ep *ep, const struct fab_name *name,
				 uint64_t *addr_out)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);
	fi_addr_t addr = FI_ADDR_NOTAVAIL;
	int rc;

	rc = fi_av_insert(oep->av, name->data, 1, &addr, 0, NULL);
	if (rc != 1) {
		fab_log(LOG_ERR, "fi_av_insert: %s",
			rc < 0 ? fi_strerror(-rc) : "address refused");
		return rc < 0 ? fab_ofi_err(rc) : EINVAL;
	}
	*addr_out = addr;
	return 0;
}

static error_t fab_ofi_av_remove(struct fab_ep *ep, uint64_t peer)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);
	fi_addr_t addr = peer;

	return fab_ofi_check(fi_av_remove(oep->av, &addr, 1, 0), "fi_av_remove");
}

static error_t fab_ofi_mr_reg(struct fab_ep *ep, void *buf, size_t len,
			      unsigned access, uint64_t key, struct fab_mr **mr_out)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);
	uint64_t mode = oep->info->domain_attr->mr_mode;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	struct fi_mr_attr attr = {
		.mr_iov = &iov,
		.iov_count = 1,
		.requested_key = key,
		/* Without FI_MR_VIRT_ADDR peers address the region by offset. */
		.offset = 0,
	};
	struct fab_ofi_mr *omr;
	error_t err;
	int rc;

	if (access & FAB_ACCESS_LOCAL)
		attr.access |= FI_READ | FI_WRITE | FI_SEND | FI_RECV;
	if (access & FAB_ACCESS_REMOTE_READ)
		attr.access |= FI_REMOTE_READ;
	if (access & FAB_ACCESS_REMOTE_WRITE)
		attr.access |= FI_REMOTE_WRITE;

	omr = calloc(1, sizeof(*omr));
	if (!omr)
		return ENOMEM;
	rc = fi_mr_regattr(oep->domain, &attr, 0, &omr->mr);
	if (rc == -FI_ENOKEY) {
		fab_log(LOG_ERR, "memory key already in use");
		err = EEXIST;
		goto free_mr;
	}
	err = fab_ofi_check(rc, "fi_mr_regattr");
	if (err)
		goto free_mr;
	if (mode & FI_MR_ENDPOINT) {
		err = fab_ofi_check(fi_mr_bind(omr->mr, &oep->ep->fid, 0), "fi_mr_bind");
		if (err)
			goto close_mr;
		err = fab_ofi_check(fi_mr_enable(omr->mr), "fi_mr_enable");
		if (err)
			goto close_mr;
	}

	omr->super.ep = ep;
	omr->super.buf = buf;
	omr->super.len = len;
	omr->super.access = access;
	omr->super.key = mode & FI_MR_PROV_KEY ? fi_mr_key(omr->mr) : key;
	omr->super.base = mode & FI_MR_VIRT_ADDR ? (uint64_t)(uintptr_t)buf : 0;
	omr->super.desc = fi_mr_desc(omr->mr);
	*mr_out = &omr->super;
	return 0;

close_mr:
	fi_close(&omr->mr->fid);
free_mr:
	free(omr);
	return err;
}

static error_t fab_ofi_mr_dereg(struct fab_mr *mr)
{
	struct fab_ofi_mr *omr = fab_container_of(mr, struct fab_ofi_mr, super);
	error_t err;

	err = fab_ofi_check(fi_close(&omr->mr->fid), "closing a memory region");
	if (err)
		return err;
	free(omr);
	return 0;
}

static error_t fab_ofi_name_resolve(const struct fab_ep *ep, const char *node,
				    const char *service, struct fab_name *name_out)
{
	const struct fab_ofi_ep *oep = fab_container_of(ep, struct fab_ofi_ep, super);
	struct fi_info *hints, *info = NULL;
	error_t err = 0;
	int rc;

	/* The same provider and capabilities, asked about the peer's address. */
	hints = fi_dupinfo(oep->info);
	if (!hints)
		return ENOMEM;
	free(hints->src_addr);
	hints->src_addr = NULL;
	hints->src_addrlen = 0;
	free(hints->dest_addr);
	hints->dest_addr = NULL;
	hints->dest_addrlen = 0;
	rc = fi_getinfo(FAB_OFI_VERSION, node, service, 0, hints, &info);
	fi_freeinfo(hints);
	if (rc) {
		fab_log(LOG_ERR, "resolving %s:%s: %s", node, service, fi_strerror(-rc));
		return rc == -FI_ENODATA ? ENOENT : fab_ofi_err(rc);
	}
	if (!info->dest_addr || !info->dest_addrlen ||
	    info->dest_addrlen > sizeof(name_out->data)) {
		fab_log(LOG_ERR, "resolving %s:%s: the provider gave no address", node,
			service);
		err = EINVAL;
	} else {
		name_out->len = (uint32_t)info->dest_addrlen;
		memcpy(name_out->data, info->dest_addr, info->dest_addrlen);
	}
	fi_freeinfo(info);
	return err;
}

static error_t fab_ofi_post_read(struct fab_ep *ep, struct fab_op *op)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);

	return fab_ofi_check(fi_read(oep->ep, op->local, op->len, op->desc,
				     op->addr, op->raddr, op->rkey, op),
			     "fi_read");
}

static error_t fab_ofi_post_write(struct fab_ep *ep, struct fab_op *op)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);

	return fab_ofi_check(fi_write(oep->ep, op->local, op->len, op->desc,
				      op->addr, op->raddr, op->rkey, op),
			     "fi_write");
}

static error_t fab_ofi_post_send(struct fab_ep *ep, struct fab_op *op)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);

	return fab_ofi_check(fi_send(oep->ep, op->local, op->len, op->desc,
				     op->addr, op),
			     "fi_send");
}

static error_t fab_ofi_post_recv(struct fab_ep *ep, struct fab_op *op)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);

	return fab_ofi_check(fi_recv(oep->ep, op->local, op->len, op->desc,
				     FI_ADDR_UNSPEC, op),
			     "fi_recv");
}

static error_t fab_ofi_cq_read(struct fab_ep *ep, struct fab_comp *comps,
			       size_t max, size_t *n_out)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);
	struct fi_cq_msg_entry ent[64]; /* FAB_POLL_BATCH */
	fi_addr_t src[64];
	struct fi_cq_err_entry e = { 0 };
	char msg[256];
	ssize_t rc;
	size_t i;

	if (max > 64)
		max = 64;
	rc = fi_cq_readfrom(oep->cq, ent, max, src);
	if (rc > 0) {
		for (i = 0; i < (size_t)rc; i++) {
			comps[i].op = ent[i].op_context;
			comps[i].status = 0;
			comps[i].len = ent[i].len;
			comps[i].src = src[i];
		}
		*n_out = (size_t)rc;
		return 0;
	}
	if (rc == -FI_EAGAIN) {
		*n_out = 0;
		return 0;
	}
	if (rc != -FI_EAVAIL)
		return fab_ofi_check(rc, "fi_cq_readfrom");

	rc = fi_cq_readerr(oep->cq, &e, 0);
	if (rc == -FI_EAGAIN) {
		*n_out = 0;
		return 0;
	}
	if (rc < 0)
		return fab_ofi_check(rc, "fi_cq_readerr");
	comps[0].op = e.op_context;
	comps[0].status = fab_ofi_err(-(ssize_t)e.err);
	if (!comps[0].status)
		comps[0].status = EIO;
	comps[0].len = e.len;
	comps[0].src = FAB_PEER_NONE;
	fab_log(LOG_WARNING, "operation failed: %s (%s)", fi_strerror(e.err),
		fi_cq_strerror(oep->cq, e.prov_errno, e.err_data, msg,
			       sizeof(msg)));
	*n_out = 1;
	return 0;
}

static error_t fab_ofi_trywait(struct fab_ep *ep)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);
	struct fid *fids[1] = { &oep->cq->fid };

	if (oep->wait_fd < 0)
		return 0;
	return fab_ofi_check(fi_trywait(oep->fabric, fids, 1), "fi_trywait");
}

static error_t fab_ofi_wait_fd(const struct fab_ep *ep, int *fd_out)
{
	struct fab_ofi_ep *oep = fab_ofi_ep(ep);

	if (oep->wait_fd < 0)
		return EOPNOTSUPP;
	*fd_out = oep->wait_fd;
	return 0;
}

const struct fab_ops fab_ofi_ops = {
	.size = sizeof(struct fab_ops),
	.name = "ofi",
	.av_insert = fab_ofi_av_insert,
	.av_remove = fab_ofi_av_remove,
	.cq_read = fab_ofi_cq_read,
	.ep_close = fab_ofi_ep_close,
	.ep_free = fab_ofi_ep_free,
	.ep_name = fab_ofi_ep_name,
	.ep_open = fab_ofi_ep_open,
	.mr_dereg = fab_ofi_mr_dereg,
	.name_resolve = fab_ofi_name_resolve,
	.mr_reg = fab_ofi_mr_reg,
	.post_read = fab_ofi_post_read,
	.post_recv = fab_ofi_post_recv,
	.post_send = fab_ofi_post_send,
	.post_write = fab_ofi_post_write,
	.trywait = fab_ofi_trywait,
	.wait_fd = fab_ofi_wait_fd,
};
