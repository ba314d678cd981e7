/*
 * fabric_layer.c - pm-bench-fabric: the fabric figures measured through
 * the project's transport (fabric/fabric.h). Same loops as
 * pm-bench-fabric-raw; the ratio of the two is the layer's overhead.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_fabric.h"
#include "fabric.h"

struct hello {
    struct fab_name name;
    struct fab_rkey rkey;
};

struct layer {
    struct fab_ep  *ep;
    struct fab_mr  *mr;
    fab_peer_t      peer;
    struct fab_rkey rkey;       /* the other side's region */
    uint8_t         msg[BENCH_MSG_SIZE];
};

static int layer_post_rma(void *h, bool write, size_t off, size_t len)
{
    struct layer *l = h;

    return write ? fab_write(l->ep, l->peer, l->mr, off, &l->rkey, off, len, NULL)
                 : fab_read(l->ep, l->peer, l->mr, off, &l->rkey, off, len, NULL);
}

static int layer_send(void *h, size_t len)
{
    struct layer *l = h;

    return fab_send(l->ep, l->peer, l->msg, len, NULL);
}

static int layer_progress(void *h, unsigned *tx, unsigned *rx)
{
    struct layer *l = h;
    struct fab_cqe c[64];
    size_t n, i;
    int err;

    err = fab_ep_poll(l->ep, c, 64, &n);
    if (err)
        return err;
    for (i = 0; i < n; i++) {
        if (c[i].status) {
            fprintf(stderr, "operation failed: %s\n", strerror(c[i].status));
            return c[i].status;
        }
        if (c[i].op == FAB_OP_RECV)
            (*rx)++;
        else
            (*tx)++;
    }
    return 0;
}

/* The child: progress and echo until killed. */
static int serve(struct layer *l, bool yield)
{
    struct fab_cqe c[64];
    size_t n, i;
    int err;

    for (;;) {
        err = fab_ep_poll(l->ep, c, 64, &n);
        if (err)
            return err;
        if (yield && !n)
            sched_yield(); /* sharing CPUs, as a pmd does */
        for (i = 0; i < n; i++) {
            if (c[i].op != FAB_OP_RECV || c[i].status)
                continue;
            err = fab_send(l->ep, l->peer, c[i].data, c[i].len, NULL);
            if (err)
                return err;
        }
    }
}

int main(int argc, char **argv)
{
    struct bench_conf conf;
    struct fab_attr attr = { .msg_size = BENCH_MSG_SIZE, .timeout_ms = 10000 };
    struct fab_info info;
    struct layer l = { 0 };
    struct hello mine, theirs;
    uint8_t *buf;
    uint64_t key;
    int fd, err, pid;

    if (bench_conf_parse(argc, argv, &conf))
        return 2;
    setenv("PM_FABRIC_PROVIDER", conf.provider, 1);
    attr.node = bench_addr();
    attr.busy_poll = !conf.wait_fd;
    err = bench_fork(&pid, &fd, !conf.unpinned);
    if (err)
        return 1;
    buf = aligned_alloc(4096, BENCH_REGION);
    if (!buf)
        return 1;
    memset(buf, pid ? 0x33 : 0xCC, BENCH_REGION);
    err = fab_ep_open(&attr, &l.ep);
    if (err) {
        fprintf(stderr, "fab_ep_open(%s): %s\n", conf.provider, strerror(err));
        return err == ENODEV ? 77 : 1;
    }
    if ((err = fab_key_random(l.ep, &key)) ||
        (err = fab_mr_reg(l.ep, buf, BENCH_REGION, FAB_ACCESS_LOCAL |
                          FAB_ACCESS_REMOTE_READ | FAB_ACCESS_REMOTE_WRITE,
                          key, &l.mr)) ||
        (err = fab_mr_rkey(l.mr, &mine.rkey)) ||
        (err = fab_ep_name(l.ep, &mine.name)) ||
        (err = bench_xchg(fd, &mine, sizeof(mine), &theirs, sizeof(theirs))) ||
        (err = fab_peer_insert(l.ep, &theirs.name, &l.peer))) {
        fprintf(stderr, "setup: %s\n", strerror(err));
        return 1;
    }
    l.rkey = theirs.rkey;
    if (!pid)
        _exit(serve(&l, conf.unpinned) ? 1 : 0);

    fab_ep_info(l.ep, &info);
    err = bench_run("layer", info.provider, &conf,
                    &(struct bench_xport){ .h = &l, .post_rma = layer_post_rma,
                                           .send = layer_send,
                                           .progress = layer_progress });
    bench_reap(pid);
    fab_mr_dereg(l.mr);
    fab_ep_close(l.ep);
    free(buf);
    return err ? 1 : 0;
}
