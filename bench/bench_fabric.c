/*
 * bench_fabric.c - see bench_fabric.h.
 */
#include <errno.h>
#include <sched.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "bench_fabric.h"

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *bench_addr(void)
{
    const char *a = getenv("PM_TEST_ADDR");

    return a && *a ? a : "127.0.0.1";
}

int bench_conf_parse(int argc, char **argv, struct bench_conf *conf)
{
    static const struct option opts[] = {
        { "provider", required_argument, NULL, 'p' },
        { "iters", required_argument, NULL, 'n' },
        { "seconds", required_argument, NULL, 's' },
        { "wait-fd", no_argument, NULL, 'w' },
        { "unpinned", no_argument, NULL, 'u' },
        { "relay", no_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    int c;

    *conf = (struct bench_conf){ .lat_iters = 20000, .bw_seconds = 1.0 };
    while ((c = getopt_long(argc, argv, "p:n:s:wurh", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            conf->provider = optarg;
            break;
        case 'n':
            conf->lat_iters = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 's':
            conf->bw_seconds = strtod(optarg, NULL);
            break;
        case 'w':
            conf->wait_fd = true;
            break;
        case 'u':
            conf->unpinned = true;
            break;
        case 'r':
            conf->relay = true;
            break;
        default:
            fprintf(stderr, "usage: %s [--provider P] [--iters N] "
                    "[--seconds S] [--wait-fd] [--unpinned] [--relay]\n",
                    argv[0]);
            return EINVAL;
        }
    }
    if (!conf->lat_iters || conf->bw_seconds <= 0)
        return EINVAL;
    if (!conf->provider)
        conf->provider = getenv("PM_FABRIC_PROVIDER");
    if (!conf->provider || !*conf->provider)
        conf->provider = "tcp;ofi_rxm";
    return 0;
}

int bench_fork(int *pid_out, int *fd, bool pin)
{
    int sv[2];
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
        return errno;
    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return errno;
    /* One core each when there are two: less noise from migrations. */
    if (pin && sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(pid == 0 ? 1 : 0, &set);
        sched_setaffinity(0, sizeof(set), &set);
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(sv[0]);
        *fd = sv[1];
        *pid_out = 0;
        return 0;
    }
    close(sv[1]);
    *fd = sv[0];
    *pid_out = pid;
    return 0;
}

void bench_reap(int pid)
{
    int st;

    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

int bench_xchg(int fd, const void *out, size_t out_len, void *in, size_t in_len)
{
    if (write(fd, out, out_len) != (ssize_t)out_len)
        return EIO;
    if (in_len && read(fd, in, in_len) != (ssize_t)in_len)
        return EIO;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void print_lat(const char *name, uint64_t *ns, unsigned n, bool last)
{
    qsort(ns, n, sizeof(*ns), cmp_u64);
    printf("    \"%s\": {\"median_us\": %.2f, \"p99_us\": %.2f, \"iters\": %u}%s\n",
           name, ns[n / 2] / 1e3, ns[(size_t)n * 99 / 100] / 1e3, n,
           last ? "" : ",");
}

/* One operation in flight, n times; ns[i] per operation. */
static int lat_rma(const struct bench_xport *x, bool write, size_t len,
                   uint64_t *ns, unsigned n)
{
    unsigned i, tx, rx;
    uint64_t t0;
    int err;

    for (i = 0; i < n; i++) {
        t0 = bench_now_ns();
        for (;;) {
            err = x->post_rma(x->h, write, (i % 64) * len, len);
            if (err != EAGAIN)
                break;
            if ((err = x->progress(x->h, &tx, &rx)))
                return err;
        }
        if (err)
            return err;
        tx = rx = 0;
        while (!tx)
            if ((err = x->progress(x->h, &tx, &rx)))
                return err;
        ns[i] = bench_now_ns() - t0;
    }
    return 0;
}

static int lat_msg(const struct bench_xport *x, uint64_t *ns, unsigned n)
{
    unsigned i, tx, rx;
    uint64_t t0;
    int err;

    for (i = 0; i < n; i++) {
        t0 = bench_now_ns();
        while ((err = x->send(x->h, BENCH_MSG_LEN)) == EAGAIN)
            if ((err = x->progress(x->h, &tx, &rx)))
                return err;
        if (err)
            return err;
        tx = rx = 0;
        while (!rx || !tx)
            if ((err = x->progress(x->h, &tx, &rx)))
                return err;
        ns[i] = bench_now_ns() - t0;
    }
    return 0;
}

/* A window of operations in flight for seconds; returns MB/s (1e6). */
static int bw_rma(const struct bench_xport *x, bool write, size_t len,
                  double seconds, double *mbps)
{
    uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    uint64_t done = 0, posted = 0, t1;
    unsigned tx, rx, inflight = 0;
    size_t slots = BENCH_REGION / len;
    int err;

    for (;;) {
        t1 = bench_now_ns();
        while (t1 < end && inflight < BENCH_WINDOW) {
            err = x->post_rma(x->h, write, (posted % slots) * len, len);
            if (err == EAGAIN)
                break;
            if (err)
                return err;
            posted++;
            inflight++;
        }
        if (t1 >= end && !inflight)
            break;
        tx = rx = 0;
        if ((err = x->progress(x->h, &tx, &rx)))
            return err;
        done += tx;
        inflight -= tx;
    }
    t1 = bench_now_ns();
    *mbps = (double)done * (double)len / ((double)(t1 - t0) / 1e9) / 1e6;
    return 0;
}

/* The relay's mailbox, shared with the asking process. */
struct relay_box {
    uint64_t req;               /* requests asked for (the asker's) */
    uint64_t _pad[7];
    uint64_t done;              /* requests answered (ours) */
    uint64_t _pad2[7];
    uint64_t ns[];              /* each request's time, the asker's */
};

/* relay_read_lat_4k (bench_fabric.h): n reads asked for by a child. */
static int lat_relay(const struct bench_xport *x, uint64_t *ns, unsigned n)
{
    size_t size = sizeof(struct relay_box) + (size_t)n * sizeof(uint64_t);
    struct relay_box *box = mmap(NULL, size, PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    unsigned tx, rx;
    int err = 0, st;
    pid_t pid;

    if (box == MAP_FAILED)
        return errno;
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        err = errno;
        munmap(box, size);
        return err;
    }
    if (pid == 0) { /* the asker */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (unsigned i = 0; i < n; i++) {
            uint64_t t0 = bench_now_ns();
            unsigned polls = 0;

            __atomic_store_n(&box->req, i + 1, __ATOMIC_RELEASE);
            while (__atomic_load_n(&box->done, __ATOMIC_ACQUIRE) != i + 1)
                if (++polls % 16 == 0)
                    sched_yield();
            box->ns[i] = bench_now_ns() - t0;
        }
        _exit(0);
    }
    for (unsigned i = 0; i < n && !err; i++) {
        while (__atomic_load_n(&box->req, __ATOMIC_ACQUIRE) == i)
            sched_yield(); /* nothing asked for yet */
        while ((err = x->post_rma(x->h, false, (i % 64) * 4096, 4096)) ==
               EAGAIN)
            if ((err = x->progress(x->h, &tx, &rx)))
                break;
        tx = rx = 0;
        while (!err && !tx)
            if (!(err = x->progress(x->h, &tx, &rx)) && !tx)
                sched_yield();
        __atomic_store_n(&box->done, i + 1, __ATOMIC_RELEASE);
    }
    if (err)
        kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    if (!err && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        err = EIO;
    if (!err)
        memcpy(ns, box->ns, (size_t)n * sizeof(uint64_t));
    munmap(box, size);
    return err;
}

int bench_run(const char *mode, const char *provider, const struct bench_conf *conf,
              const struct bench_xport *x)
{
    enum { WARM_UP = 200 };
    unsigned n = conf->lat_iters > WARM_UP ? conf->lat_iters : WARM_UP;
    uint64_t *ns = calloc(n, sizeof(*ns));
    double bw[4];
    int err = ENOMEM;

    if (!ns)
        return err;
    /* Warm up: connection, caches, page faults. */
    if ((err = lat_rma(x, false, 4096, ns, WARM_UP)) ||
        (err = lat_rma(x, true, 4096, ns, WARM_UP)) ||
        (err = lat_msg(x, ns, WARM_UP)))
        goto out;

    printf("{\n  \"bench\": \"fabric\",\n  \"mode\": \"%s\",\n"
           "  \"provider\": \"%s\",\n  \"wait_fd\": %s,\n  \"window\": %d,\n"
           "  \"figures\": {\n", mode, provider,
           conf->wait_fd ? "true" : "false", BENCH_WINDOW);
    if ((err = lat_rma(x, false, 4096, ns, conf->lat_iters)))
        goto out;
    print_lat("read_lat_4k", ns, conf->lat_iters, false);
    if ((err = lat_rma(x, true, 4096, ns, conf->lat_iters)))
        goto out;
    print_lat("write_lat_4k", ns, conf->lat_iters, false);
    if ((err = lat_msg(x, ns, conf->lat_iters)))
        goto out;
    print_lat("msg_rtt_64", ns, conf->lat_iters, false);
    if (conf->relay) {
        if ((err = lat_relay(x, ns, conf->lat_iters)))
            goto out;
        print_lat("relay_read_lat_4k", ns, conf->lat_iters, false);
    }
    if ((err = bw_rma(x, false, 4096, conf->bw_seconds, &bw[0])) ||
        (err = bw_rma(x, true, 4096, conf->bw_seconds, &bw[1])) ||
        (err = bw_rma(x, false, 65536, conf->bw_seconds, &bw[2])) ||
        (err = bw_rma(x, true, 65536, conf->bw_seconds, &bw[3])))
        goto out;
    printf("    \"read_bw_4k\": {\"MBps\": %.1f},\n", bw[0]);
    printf("    \"write_bw_4k\": {\"MBps\": %.1f},\n", bw[1]);
    printf("    \"read_bw_64k\": {\"MBps\": %.1f},\n", bw[2]);
    printf("    \"write_bw_64k\": {\"MBps\": %.1f}\n", bw[3]);
    printf("  }\n}\n");
    fflush(stdout);
out:
    free(ns);
    return err;
}
