/*
 * fabric_raw.c - pm-bench-fabric-raw: the ceiling. The same figures as
 * pm-bench-fabric, written directly on libfabric with nothing of the
 * project's transport: one FI_EP_RDM endpoint with the same capabilities,
 * ordering and completion semantics (FI_DELIVERY_COMPLETE when offered),
 * one completion queue (without a wait object unless --wait-fd), busy
 * polling.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "bench_fabric.h"

#define RAW_RX 64
#define RAW_NAME_MAX 256

struct hello {
    uint8_t  name[RAW_NAME_MAX];
    size_t   name_len;
    uint64_t key;
    uint64_t base;              /* remote address of offset 0 */
};

struct raw {
    struct fi_info    *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_av     *av;
    struct fid_cq     *cq;
    struct fid_ep     *ep;
    struct fid_mr     *mr, *msg_mr;
    uint8_t           *buf;
    void              *desc, *msg_desc;
    uint8_t           *msg;     /* RAW_RX receive buffers, then one send buffer */
    fi_addr_t          peer;
    uint64_t           rkey, rbase;
};

static int raw_fail(const char *what, ssize_t rc)
{
    fprintf(stderr, "%s: %s\n", what, fi_strerror((int)-rc));
    return rc == -FI_ENODATA ? 77 : 1;
}

static int raw_open(struct raw *r, const char *prov, bool wait_fd)
{
    struct fi_info *hints = fi_allocinfo();
    struct fi_av_attr av_attr = { .type = FI_AV_TABLE };
    struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_MSG, .size = 1024,
                                  .wait_obj = FI_WAIT_NONE };
    int rc;

    if (!hints)
        return 1;
    if (wait_fd)
        cq_attr.wait_obj = FI_WAIT_FD;
    hints->ep_attr->type = FI_EP_RDM;
    hints->caps = FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_SEND | FI_RECV |
                  FI_REMOTE_READ | FI_REMOTE_WRITE | FI_SOURCE;
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR |
                                  FI_MR_ALLOCATED | FI_MR_PROV_KEY |
                                  FI_MR_ENDPOINT;
    hints->domain_attr->threading = FI_THREAD_DOMAIN;
    hints->tx_attr->msg_order = FI_ORDER_SAS;
    hints->rx_attr->msg_order = FI_ORDER_SAS;
    hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
    hints->fabric_attr->prov_name = strdup(prov);
    /* As the layer does: rxm's default queues exceed soft-RoCE's. */
    if (strstr(prov, "verbs"))
        setenv("FI_UNIVERSE_SIZE", "32", 0);
    rc = fi_getinfo(FI_VERSION(1, 14), bench_addr(), NULL, FI_SOURCE, hints,
                    &r->info);
    if (rc == -FI_ENODATA) {
        hints->tx_attr->op_flags = 0;
        rc = fi_getinfo(FI_VERSION(1, 14), bench_addr(), NULL, FI_SOURCE,
                        hints, &r->info);
    }
    fi_freeinfo(hints);
    if (rc)
        return raw_fail("fi_getinfo", rc);
    if ((rc = fi_fabric(r->info->fabric_attr, &r->fabric, NULL)))
        return raw_fail("fi_fabric", rc);
    if ((rc = fi_domain(r->fabric, r->info, &r->domain, NULL)))
        return raw_fail("fi_domain", rc);
    if ((rc = fi_av_open(r->domain, &av_attr, &r->av, NULL)))
        return raw_fail("fi_av_open", rc);
    if ((rc = fi_cq_open(r->domain, &cq_attr, &r->cq, NULL)))
        return raw_fail("fi_cq_open", rc);
    if ((rc = fi_endpoint(r->domain, r->info, &r->ep, NULL)))
        return raw_fail("fi_endpoint", rc);
    if ((rc = fi_ep_bind(r->ep, &r->av->fid, 0)) ||
        (rc = fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV)) ||
        (rc = fi_enable(r->ep)))
        return raw_fail("endpoint setup", rc);
    return 0;
}

static int raw_reg(struct raw *r, void *buf, size_t len, uint64_t access,
                   uint64_t key, struct fid_mr **mr)
{
    int rc = fi_mr_reg(r->domain, buf, len, access, 0, key, 0, mr, NULL);

    if (rc)
        return raw_fail("fi_mr_reg", rc);
    if (r->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
        if ((rc = fi_mr_bind(*mr, &r->ep->fid, 0)) || (rc = fi_mr_enable(*mr)))
            return raw_fail("fi_mr_bind", rc);
    }
    return 0;
}

static int raw_post_recv(struct raw *r, uint8_t *buf)
{
    return (int)-fi_recv(r->ep, buf, BENCH_MSG_SIZE, r->msg_desc,
                         FI_ADDR_UNSPEC, buf);
}

static int raw_post_rma(void *h, bool write, size_t off, size_t len)
{
    struct raw *r = h;
    ssize_t rc;

    rc = write ? fi_write(r->ep, r->buf + off, len, r->desc, r->peer,
                          r->rbase + off, r->rkey, NULL)
               : fi_read(r->ep, r->buf + off, len, r->desc, r->peer,
                         r->rbase + off, r->rkey, NULL);
    return rc == -FI_EAGAIN ? EAGAIN : (int)-rc;
}

static int raw_send(void *h, size_t len)
{
    struct raw *r = h;
    ssize_t rc = fi_send(r->ep, r->msg + RAW_RX * BENCH_MSG_SIZE, len,
                         r->msg_desc, r->peer, NULL);

    return rc == -FI_EAGAIN ? EAGAIN : (int)-rc;
}

/* Reaps completions; a receive is reposted at once and, in the server,
 * echoed. */
static int raw_reap(struct raw *r, unsigned *tx, unsigned *rx, bool echo)
{
    struct fi_cq_msg_entry e[64];
    struct fi_cq_err_entry err = { 0 };
    ssize_t n, i, rc;

    n = fi_cq_read(r->cq, e, 64);
    if (n == -FI_EAGAIN)
        return 0;
    if (n == -FI_EAVAIL) {
        fi_cq_readerr(r->cq, &err, 0);
        fprintf(stderr, "operation failed: %s\n", fi_strerror(err.err));
        return EIO;
    }
    if (n < 0)
        return raw_fail("fi_cq_read", n);
    for (i = 0; i < n; i++) {
        if (!(e[i].flags & FI_RECV)) {
            (*tx)++;
            continue;
        }
        (*rx)++;
        if (echo) {
            /* Copied out so the receive buffer can go back at once; one
             * send buffer is enough for a ping-pong. */
            memcpy(r->msg + RAW_RX * BENCH_MSG_SIZE, e[i].op_context, e[i].len);
            do {
                rc = fi_send(r->ep, r->msg + RAW_RX * BENCH_MSG_SIZE,
                             e[i].len, r->msg_desc, r->peer, NULL);
            } while (rc == -FI_EAGAIN);
            if (rc)
                return raw_fail("fi_send", rc);
        }
        rc = raw_post_recv(r, e[i].op_context);
        if (rc)
            return raw_fail("fi_recv", -rc);
    }
    return 0;
}

static int raw_progress(void *h, unsigned *tx, unsigned *rx)
{
    return raw_reap(h, tx, rx, false);
}

int main(int argc, char **argv)
{
    struct bench_conf conf;
    struct raw r = { 0 };
    struct hello mine = { 0 }, theirs;
    int fd, pid, rc, i;
    unsigned tx, rx;
    uint64_t access = FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;

    if (bench_conf_parse(argc, argv, &conf))
        return 2;
    if (bench_fork(&pid, &fd, !conf.unpinned))
        return 1;
    r.buf = aligned_alloc(4096, BENCH_REGION);
    r.msg = aligned_alloc(4096, (RAW_RX + 1) * BENCH_MSG_SIZE);
    if (!r.buf || !r.msg)
        return 1;
    memset(r.buf, pid ? 0x33 : 0xCC, BENCH_REGION);
    memset(r.msg, 0, (RAW_RX + 1) * BENCH_MSG_SIZE);
    if ((rc = raw_open(&r, conf.provider, conf.wait_fd)))
        return rc;
    if ((rc = raw_reg(&r, r.buf, BENCH_REGION, access, pid ? 1 : 2, &r.mr)) ||
        (rc = raw_reg(&r, r.msg, (RAW_RX + 1) * BENCH_MSG_SIZE,
                      FI_SEND | FI_RECV, pid ? 3 : 4, &r.msg_mr)))
        return rc;
    r.desc = fi_mr_desc(r.mr);
    r.msg_desc = fi_mr_desc(r.msg_mr);
    for (i = 0; i < RAW_RX; i++)
        if ((rc = raw_post_recv(&r, r.msg + i * BENCH_MSG_SIZE)))
            return raw_fail("fi_recv", -rc);

    mine.name_len = sizeof(mine.name);
    if ((rc = fi_getname(&r.ep->fid, mine.name, &mine.name_len)))
        return raw_fail("fi_getname", rc);
    mine.key = fi_mr_key(r.mr);
    mine.base = r.info->domain_attr->mr_mode & FI_MR_VIRT_ADDR ?
                (uint64_t)(uintptr_t)r.buf : 0;
    if (bench_xchg(fd, &mine, sizeof(mine), &theirs, sizeof(theirs)))
        return 1;
    if (fi_av_insert(r.av, theirs.name, 1, &r.peer, 0, NULL) != 1)
        return 1;
    r.rkey = theirs.key;
    r.rbase = theirs.base;

    if (!pid) {
        for (;;) {
            tx = rx = 0;
            if (raw_reap(&r, &tx, &rx, true))
                _exit(1);
            /* Sharing CPUs, as a pmd does, it gives way when idle (a
             * one-sided operation leaves no completion here). */
            if (conf.unpinned && !tx && !rx)
                sched_yield();
        }
    }
    rc = bench_run("raw", r.info->fabric_attr->prov_name, &conf,
                   &(struct bench_xport){ .h = &r, .post_rma = raw_post_rma,
                                          .send = raw_send,
                                          .progress = raw_progress });
    bench_reap(pid);
    fi_close(&r.ep->fid);
    fi_close(&r.mr->fid);
    fi_close(&r.msg_mr->fid);
    fi_close(&r.cq->fid);
    fi_close(&r.av->fid);
    fi_close(&r.domain->fid);
    fi_close(&r.fabric->fid);
    fi_freeinfo(r.info);
    free(r.buf);
    free(r.msg);
    return rc ? 1 : 0;
}
