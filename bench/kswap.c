/*
 * pm-bench-kswap: the kernel's own swap under the pressure figures'
 * skewed working set (zipf.h): an anonymous private mapping of PAGES
 * pages, written whole, then read one byte a page in the Zipf order, as
 * pm-bench reads frames of a container. Run it in a memory cgroup that
 * holds a quarter of the pages, with swap on (bench/run-pressure.sh does
 * both): what it prints is then the kernel's swap at work.
 *
 * Usage: pm-bench-kswap PAGES. Prints one JSON object: accesses per
 * second and major faults (swap-ins) per access, over the measured draws.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "zipf.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long majflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_majflt;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE), flt0 = 0;
	unsigned seed = ZIPF_SEED;
	char *end = NULL;
	unsigned long n;
	uint64_t t0 = 0;
	double *cdf, t;
	volatile uint8_t *m;
	unsigned sum = 0;

	if (argc != 2 || !(n = strtoul(argv[1], &end, 10)) || *end ||
	    n > UINT32_MAX) {
		fprintf(stderr, "usage: pm-bench-kswap PAGES\n");
		return 2;
	}
	cdf = zipf_cdf((uint32_t)n);
	m = mmap(NULL, n * (size_t)page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!cdf || m == MAP_FAILED) {
		fprintf(stderr, "pm-bench-kswap: %s\n", strerror(errno));
		return 1;
	}
	/* Every page holds data (a page never written would cost nothing
	 * to the kernel, a frame never written nothing to the pmd). */
	for (unsigned long i = 0; i < n; i++)
		m[i * (size_t)page] = (uint8_t)(i + 1);
	for (unsigned k = 0; k < ZIPF_WARM + ZIPF_MEASURED; k++) {
		uint64_t p = zipf_next(cdf, (uint32_t)n, &seed);

		if (k == ZIPF_WARM) {
			flt0 = majflt();
			t0 = now_ns();
		}
		sum += m[p * (size_t)page];
	}
	t = (double)(now_ns() - t0) / 1e9;
	printf("{\"pages\": %lu, \"accesses_per_s\": %.1f, "
	       "\"swapins_per_access\": %.4f, \"check\": %u}\n", n,
	       ZIPF_MEASURED / t, (double)(majflt() - flt0) / ZIPF_MEASURED,
	       sum & 1);
	free(cdf);
	return 0;
}
