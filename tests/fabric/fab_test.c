/*
 * fab_test.c - see fab_test.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "fab_test.h"

unsigned ft_log_errors;

static void ft_log(int level, const char *msg, void *arg)
{
    (void)arg;
    if (level <= LOG_WARNING) {
        ft_log_errors++;
        fprintf(stderr, "fabric log: %s\n", msg);
    }
}

void ft_log_install(void)
{
    fab_log_set(ft_log, NULL);
}

const char *ft_addr(void)
{
    const char *a = getenv("PM_TEST_ADDR");

    return a && *a ? a : "127.0.0.1";
}

void ft_attr(struct fab_attr *attr, unsigned timeout_ms, unsigned tx_depth,
             size_t msg_size)
{
    *attr = (struct fab_attr){
        .node = ft_addr(),
        .timeout_ms = timeout_ms,
        .tx_depth = tx_depth,
        .msg_size = msg_size,
    };
}

struct fab_ep *ft_ep_open_or_skip(const struct fab_attr *attr)
{
    struct fab_ep *ep = NULL;
    int err = fab_ep_open(attr, &ep);

    if (err == ENODEV) {
        printf("SKIP: fabric transport \"%s\" is not available at %s\n",
               getenv(FAB_PROVIDER_ENV) ? getenv(FAB_PROVIDER_ENV)
                                        : FAB_TRANSPORT_DEFAULT, ft_addr());
        exit(FT_SKIP);
    }
    if (err) {
        fprintf(stderr, "fab_ep_open: %s\n", strerror(err));
        exit(1);
    }
    return ep;
}

uint64_t ft_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ft_fill(void *buf, size_t len, uint32_t seed)
{
    uint8_t *p = buf;
    uint32_t x = seed * 2654435761u + 1;
    size_t i;

    for (i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

size_t ft_collect(struct fab_ep *const *eps, size_t neps, struct fab_cqe *out,
                  size_t want, unsigned timeout_ms)
{
    uint64_t end = ft_now_ms() + timeout_ms;
    struct fab_cqe junk[16];
    size_t got = 0, n, i;

    while (got < want && ft_now_ms() < end) {
        for (i = 1; i < neps; i++)
            if (fab_ep_poll(eps[i], junk, 16, &n))
                return got;
        if (fab_ep_poll(eps[0], out + got, want - got, &n))
            return got;
        got += n;
    }
    return got;
}

void ft_spin(struct fab_ep *const *eps, size_t neps, unsigned ms)
{
    uint64_t end = ft_now_ms() + ms;
    struct fab_cqe junk[16];
    size_t n, i;

    while (ft_now_ms() < end)
        for (i = 0; i < neps; i++)
            fab_ep_poll(eps[i], junk, 16, &n);
}
