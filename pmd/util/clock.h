/*
 * clock.h - the daemon's one clock: CLOCK_MONOTONIC, in the units each
 * use wants (deadlines and locks in ms, latencies in ns).
 */
#ifndef PMD_CLOCK_H
#define PMD_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t pmd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t pmd_now_ms(void)
{
	return pmd_now_ns() / 1000000u;
}

#endif
