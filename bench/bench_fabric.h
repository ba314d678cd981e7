/*
 * bench_fabric.h - the measurement loops shared by pm-bench-fabric-raw
 * (libfabric directly) and pm-bench-fabric (through fabric/). Both
 * programs fork: the child serves (progresses and echoes messages), the
 * parent measures through a small table of callbacks, so that the two
 * sides run exactly the same loops and differ only in the transport.
 */
#ifndef PM_BENCH_FABRIC_H
#define PM_BENCH_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_REGION   ((size_t)8 << 20)  /* registered on each side */
#define BENCH_MSG_SIZE 4096
#define BENCH_MSG_LEN  64                 /* round-trip message, bytes */
#define BENCH_WINDOW   64                 /* operations in flight for bandwidth */

struct bench_conf {
    const char *provider;       /* NULL: PM_FABRIC_PROVIDER or tcp;ofi_rxm;
                                 * the layer takes a transport (verbs) */
    unsigned    lat_iters;      /* per latency figure */
    double      bw_seconds;     /* per bandwidth figure */
    bool        wait_fd;        /* completion queue with a wait descriptor */
    bool        unpinned;       /* --unpinned: no process pinned to a CPU,
                                 * and the serving one yields when idle */
    bool        relay;          /* --relay: also the relayed read figure */
};

/* The transport as the loops see it. Everything returns 0 or an errno. */
struct bench_xport {
    void *h;
    /* Posts one read or write of len bytes at off (both sides); EAGAIN
     * when the provider is full. */
    int (*post_rma)(void *h, bool write, size_t off, size_t len);
    int (*send)(void *h, size_t len);
    /* Drives progress; adds completed operations (RMA and sends) to *tx
     * and received messages to *rx. */
    int (*progress)(void *h, unsigned *tx, unsigned *rx);
};

uint64_t bench_now_ns(void);
/* The address both processes bind: PM_TEST_ADDR (a soft-RoCE node sets
 * its device's), else 127.0.0.1. */
const char *bench_addr(void);
int bench_conf_parse(int argc, char **argv, struct bench_conf *conf);

/* Parent/child plumbing: bench_fork() returns in both, *pid is the
 * child's in the parent and 0 in the child, fd connects the two; with
 * pin, the parent runs on CPU 0 and the child on CPU 1 (when there are
 * two). The child dies with its parent. bench_reap() kills and waits
 * for it. */
int bench_fork(int *pid, int *fd, bool pin);
void bench_reap(int pid);
int bench_xchg(int fd, const void *out, size_t out_len, void *in, size_t in_len);

/* Runs every figure and prints the JSON report. With conf->relay, also
 * relay_read_lat_4k: each 4 KiB read asked for by a third process
 * through shared memory (it spins for the answer, yielding every 16
 * polls; the measuring process polls for requests and completions and
 * yields whenever a poll finds nothing): the shape of a task's remote
 * read through its pmd (the task, its pmd, the peer) with none of the
 * pmd's work. */
int bench_run(const char *mode, const char *provider, const struct bench_conf *conf,
              const struct bench_xport *x);

#endif
