/*
 * fab_test.h - helpers shared by the fabric tests: endpoints on the test
 * address (PM_TEST_ADDR, else 127.0.0.1; a soft-RoCE node sets its
 * device's), bounded progress loops, a log hook that counts unexpected
 * errors, and the loud skip (exit 77) when the transport is missing.
 */
#ifndef PM_FAB_TEST_H
#define PM_FAB_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fabric.h"

#define FT_SKIP 77

extern unsigned ft_log_errors;      /* LOG_WARNING or worse since reset */

void ft_log_install(void);
/* The address endpoints bind: PM_TEST_ADDR, else 127.0.0.1. */
const char *ft_addr(void);
/* Fills attr for ft_addr() with the given timeout and depths. */
void ft_attr(struct fab_attr *attr, unsigned timeout_ms, unsigned tx_depth,
             size_t msg_size);
/* Opens an endpoint or exits 77 with the reason when the provider is absent. */
struct fab_ep *ft_ep_open_or_skip(const struct fab_attr *attr);
uint64_t ft_now_ms(void);
/* Fills buf with a pattern derived from seed. */
void ft_fill(void *buf, size_t len, uint32_t seed);

/*
 * Polls every endpoint in eps until eps[0] reported want completions or
 * timeout_ms passed; returns how many it got into out. A RECV's data is
 * valid until eps[0] is polled again, so ask for one at a time for those.
 */
size_t ft_collect(struct fab_ep *const *eps, size_t neps, struct fab_cqe *out,
                  size_t want, unsigned timeout_ms);

/* Polls eps for ms milliseconds, dropping completions of all but eps[0]. */
void ft_spin(struct fab_ep *const *eps, size_t neps, unsigned ms);

#endif
