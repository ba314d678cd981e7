/*
 * zipf.h - the skewed working set of the pressure figures, shared by
 * pm-bench (frames of a container) and pm-bench-kswap (pages of an
 * anonymous mapping under the kernel's swap), so that both draw the same
 * sequence: ranks from a Zipf law (s = 0.99) over n items, rank r being
 * item (r * ZIPF_STRIDE) mod n (the hottest items scattered, so that
 * placement alone does not decide), seed ZIPF_SEED, ZIPF_WARM draws
 * before ZIPF_MEASURED measured ones.
 */
#ifndef PM_BENCH_ZIPF_H
#define PM_BENCH_ZIPF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define ZIPF_SEED     42u
#define ZIPF_STRIDE   7919u
#define ZIPF_WARM     4000u
#define ZIPF_MEASURED 20000u

/* The cumulative weights of ranks 0..n-1 (malloc'd), NULL: no memory. */
static inline double *zipf_cdf(uint32_t n)
{
	double *cdf = malloc(sizeof(double) * n), sum = 0;

	if (!cdf)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		cdf[i] = sum += 1.0 / pow(i + 1.0, 0.99);
	for (uint32_t i = 0; i < n; i++)
		cdf[i] /= sum;
	return cdf;
}

/* The next item drawn. */
static inline uint64_t zipf_next(const double *cdf, uint32_t n,
				 unsigned *seed)
{
	double u = (double)rand_r(seed) / ((double)RAND_MAX + 1.0);
	uint32_t lo = 0, hi = n - 1;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (uint64_t)lo * ZIPF_STRIDE % n;
}

#endif
