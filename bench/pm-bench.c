/*
 * pm-bench - the benchmark suite of pmd's local paths. Every figure is
 * measured next to its baseline in the same run and reported as a ratio,
 * because the machines are noisy: absolute times are printed but are not
 * the result.
 *
 *   map        map+unmap of a resident frame: fast path, pmd path, and the
 *              baseline mmap+munmap of a memfd page; and of 1 MiB (one
 *              run of slots, and scattered) against the pmd's path
 *   alloc      allocation throughput: batches of 4096 and single frames
 *   rpc        a small request (pm_task_stat) against a round trip on a
 *              Unix SEQPACKET socket pair; the same through the request
 *              ring (the default) against the session's socket
 *              (PM_NO_RING=1); and 4 threads of one session making small
 *              requests at once, through the ring against the socket
 *   io         4 KiB and 64 KiB read and write through the pmd against
 *              memcpy of the same size
 *   cow        a write that breaks a copy-on-write share against a plain
 *              write of the same frame size
 *   sound      the mapping invariant's costs: a logical copy of 1 MiB
 *              between containers against memcpy of 1 MiB; a store
 *              through a mapping that breaks a copy against one that does
 *              not; a move of a frame a writer is storing to (its stores
 *              stopped first) against a move of a frame nobody mapped;
 *              stores through a mapping of 4 MiB whose logical copy by
 *              another task ended against stores never shared
 *   lock       lock+unlock against a small request
 *   fault      fault-in of a mapped frame the pmd moved (through the
 *              library's userfaultfd) against a page-cache fault of a
 *              memfd page plus one small request
 *   remote     (only when named, with --remote-node N, against a pmd in a
 *              cluster) 4 KiB read and write latency and 64 KiB read and
 *              write bandwidth of frames placed on node N, through the API;
 *              bench/run-remote.sh sets the raw fabric beside them
 *   forward    (only when named, with --home-socket PATH, the pmd of
 *              another node of the cluster) 4 KiB and 64 KiB reads and
 *              writes of a container homed there, by a task here through a
 *              forwarded handle, against the same done by its owner on the
 *              home node
 *   pressure   (only when named, with --remote-node N, node 1 small and
 *              N lending) a map of a frame living on node N (a page-in)
 *              against a remote read of 4 KiB, for a frame allocated
 *              each time and along a run of frames written there (steady
 *              page-ins); and a Zipf working set 4x
 *              node 1's memory mapped frame by frame (through the pmd,
 *              then by the fast path): accesses per second and frames
 *              paged out per access (bench/run-pressure.sh runs it under
 *              both page-out policies)
 *   store      (only when named, with --store-file PATH, the pmd's
 *              backing store) a map of a frame living in the store (a
 *              page-in) against a pread of 4 KiB of the same file
 *
 * usage: pm-bench [--socket PATH] [--json FILE] [--quick] [--echo-cpu N]
 *                 [TEST...]
 * --echo-cpu pins the echo process of the rpc baseline to the pmd's CPU,
 * so that the baseline crosses CPUs exactly as the requests do.
 * Output: one line per figure on stdout, and a JSON array (--json).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pm/pm.h>

#include "zipf.h"

static const char *sock_path;
static int echo_cpu = -1;     /* CPU of the rpc baseline's echo process */
static int remote_node;       /* lender of the remote figures; 0: none */
static const char *home_sock; /* the home of the forwarded figures */
static const char *store_file; /* the pmd's backing store (store) */
static int rounds = 201;      /* batches; the median is reported */
static FILE *json;
static int json_count;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static void die(const char *what, int err)
{
	fprintf(stderr, "pm-bench: %s: %s\n", what, strerror(err));
	exit(1);
}

#define CHECK(call) do { int e_ = (call); if (e_) die(#call, e_); } while (0)

/* Reports one figure against its baseline. lower: smaller is better. */
static void report(const char *name, const char *unit, double value,
		   const char *base_name, double base, const char *target)
{
	double ratio = base > 0 ? value / base : 0;

	printf("%-28s %12.1f %-8s baseline %-24s %12.1f  ratio %6.3f%s%s\n",
	       name, value, unit, base_name, base, ratio,
	       target ? "  target " : "", target ? target : "");
	if (json)
		fprintf(json, "%s\n  {\"name\": \"%s\", \"unit\": \"%s\", "
			"\"value\": %.3f, \"baseline\": \"%s\", "
			"\"baseline_value\": %.3f, \"ratio\": %.4f%s%s%s}",
			json_count++ ? "," : "", name, unit, value, base_name,
			base, ratio, target ? ", \"target\": \"" : "",
			target ? target : "", target ? "\"" : "");
}

/* A session without an I/O window nor a ring: reads and writes carry
 * their bytes in the messages (the baseline of the window's figures). */
static pm_t *connect_no_window(void)
{
	pm_t *pm;

	setenv("PM_NO_WINDOW", "1", 1);
	setenv("PM_NO_RING", "1", 1); /* (its slots have windows too) */
	CHECK(pm_connect(sock_path, &pm));
	unsetenv("PM_NO_WINDOW");
	unsetenv("PM_NO_RING");
	return pm;
}

/* A session without a request ring: every request on the socket (the
 * baseline of the ring's figures). */
static pm_t *connect_no_ring(void)
{
	pm_t *pm;

	setenv("PM_NO_RING", "1", 1);
	CHECK(pm_connect(sock_path, &pm));
	unsetenv("PM_NO_RING");
	return pm;
}

static pm_t *connect_fast(bool fast)
{
	pm_t *pm;

	if (fast)
		unsetenv("PM_NO_FASTPATH");
	else
		setenv("PM_NO_FASTPATH", "1", 1);
	CHECK(pm_connect(sock_path, &pm));
	unsetenv("PM_NO_FASTPATH");
	return pm;
}

/* ns per operation, median over rounds of `batch` operations. */
#define MEASURE(out, batch, body) do { \
	double *v_ = malloc(sizeof(double) * (size_t)rounds); \
	for (int r_ = 0; r_ < rounds; r_++) { \
		uint64_t t0_ = now_ns(); \
		for (int i_ = 0; i_ < (batch); i_++) { body; } \
		v_[r_] = (double)(now_ns() - t0_) / (batch); \
	} \
	(out) = median(v_, rounds); \
	free(v_); \
} while (0)

/* Two figures measured in alternating rounds, so that a change in the
 * machine's state (another load, a vCPU descheduled, a frequency change)
 * hits both alike: the ratio is what counts. */
#define MEASURE_PAIR(out_a, batch_a, body_a, out_b, batch_b, body_b) do { \
	double *va_ = malloc(sizeof(double) * (size_t)rounds); \
	double *vb_ = malloc(sizeof(double) * (size_t)rounds); \
	for (int r_ = 0; r_ < rounds; r_++) { \
		uint64_t t0_ = now_ns(); \
		for (int i_ = 0; i_ < (batch_a); i_++) { body_a; } \
		va_[r_] = (double)(now_ns() - t0_) / (batch_a); \
		t0_ = now_ns(); \
		for (int i_ = 0; i_ < (batch_b); i_++) { body_b; } \
		vb_[r_] = (double)(now_ns() - t0_) / (batch_b); \
	} \
	(out_a) = median(va_, rounds); \
	(out_b) = median(vb_, rounds); \
	free(va_); \
	free(vb_); \
} while (0)

/* Map + unmap of frames 0-255 (1 MiB) of cf by fast (batch of them) and
 * of cs by slow, measured in turn. */
static void map_1m_pair(pm_t *fast, container_t cf, int batch, pm_t *slow,
			container_t cs, double *t_fast, double *t_slow)
{
	void *m;

	MEASURE_PAIR(*t_fast, batch, {
		CHECK(pm_container_map(fast, cf, 0, 256, CONT_MAP_READ |
				       CONT_MAP_WRITE, &m, NULL));
		CHECK(pm_container_unmap(fast, m, 256)); },
		     *t_slow, 10, {
		CHECK(pm_container_map(slow, cs, 0, 256, CONT_MAP_READ |
				       CONT_MAP_WRITE, &m, NULL));
		CHECK(pm_container_unmap(slow, m, 256)); });
}

static void bench_map(void)
{
	pm_t *fast = connect_fast(true), *slow = connect_fast(false);
	container_t cf, cs;
	int n = 64;
	void *m;
	double t_fast, t_slow, t_mmap;
	int fd = memfd_create("bench", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, PM_FRAME_SIZE * 64) < 0)
		die("memfd", errno);
	CHECK(pm_container_create(fast, &cf));
	CHECK(pm_container_allocate(fast, cf, 0, &n, 0));
	n = 64;
	CHECK(pm_container_create(slow, &cs));
	CHECK(pm_container_allocate(slow, cs, 0, &n, 0));
	/* Warm: the first map makes the frames resident (new frames cost
	 * memory only once used) and brings the view and the segment. */
	CHECK(pm_container_map(fast, cf, 0, 64, CONT_MAP_READ | CONT_MAP_WRITE, &m, NULL));
	CHECK(pm_container_unmap(fast, m, 64));

	double t_mmap2;
#define MMAP_ONE() do { \
		void *p = mmap(NULL, PM_FRAME_SIZE, PROT_READ | PROT_WRITE, \
			       MAP_SHARED, fd, (off_t)(i_ & 63) * PM_FRAME_SIZE); \
		if (p == MAP_FAILED) \
			die("mmap", errno); \
		munmap(p, PM_FRAME_SIZE); \
	} while (0)
	MEASURE_PAIR(t_fast, 1000, {
		CHECK(pm_container_map(fast, cf, (frame_t)(i_ & 63), 1,
				       CONT_MAP_READ | CONT_MAP_WRITE, &m, NULL));
		CHECK(pm_container_unmap(fast, m, 1));
	}, t_mmap, 100, MMAP_ONE());
	MEASURE_PAIR(t_slow, 20, {
		CHECK(pm_container_map(slow, cs, (frame_t)(i_ & 63), 1,
				       CONT_MAP_READ | CONT_MAP_WRITE, &m, NULL));
		CHECK(pm_container_unmap(slow, m, 1));
	}, t_mmap2, 20, MMAP_ONE());
#undef MMAP_ONE
	report("map.fast", "ns", t_fast, "mmap+munmap memfd page", t_mmap,
	       "<= 100 ns and <= 0.1x");
	report("map.pmd", "ns", t_slow, "mmap+munmap memfd page", t_mmap2, NULL);
	report("map.fast_vs_pmd", "ns", t_fast, "map.pmd", t_slow, NULL);

	/* 1 MiB (256 resident frames) at once: one run of slots (a pointer
	 * into the segment's mapping), and scattered (every other frame
	 * moved: an mmap per frame), against the pmd's path for the same. */
	{
		container_t bf, bs;
		int k = 256;

		CHECK(pm_container_create(fast, &bf));
		CHECK(pm_container_allocate(fast, bf, 0, &k, 0));
		k = 256;
		CHECK(pm_container_create(slow, &bs));
		CHECK(pm_container_allocate(slow, bs, 0, &k, 0));
		CHECK(pm_container_map(fast, bf, 0, 256, CONT_MAP_READ, &m, NULL));
		CHECK(pm_container_unmap(fast, m, 256));
		map_1m_pair(fast, bf, 100, slow, bs, &t_fast, &t_slow);
		report("map.fast_1m", "ns", t_fast, "the pmd's map of 1 MiB",
		       t_slow, NULL);
		/* The same against the map of one of those frames, in
		 * turn: a run of any length is one look-up. */
		{
			double t_run, t_one;

			MEASURE_PAIR(t_run, 1000, {
				CHECK(pm_container_map(fast, bf, 0, 256,
						       CONT_MAP_READ |
						       CONT_MAP_WRITE, &m,
						       NULL));
				CHECK(pm_container_unmap(fast, m, 256)); },
				     t_one, 1000, {
				CHECK(pm_container_map(fast, bf,
						       (frame_t)(i_ & 255), 1,
						       CONT_MAP_READ |
						       CONT_MAP_WRITE, &m,
						       NULL));
				CHECK(pm_container_unmap(fast, m, 1)); });
			report("map.fast_256_vs_one", "ns", t_run,
			       "map.fast of one of them", t_one, "<= 2x");
		}
		for (frame_t f = 1; f < 256; f += 2) {
			CHECK(pm_debug_move(fast, bf, f));
			CHECK(pm_debug_move(slow, bs, f));
		}
		CHECK(pm_container_map(fast, bf, 0, 256, CONT_MAP_READ, &m, NULL));
		CHECK(pm_container_unmap(fast, m, 256));
		map_1m_pair(fast, bf, 10, slow, bs, &t_fast, &t_slow);
		report("map.fast_1m_scattered", "ns", t_fast,
		       "the pmd's map of 1 MiB, scattered", t_slow, NULL);
	}
	close(fd);
	pm_disconnect(fast);
	pm_disconnect(slow);
}

static void bench_alloc(void)
{
	pm_t *pm = connect_fast(true);
	struct pm_task_stat ts;
	container_t c;
	double t_batch, t_single;
	const int batch = 4096;

	CHECK(pm_task_stat(pm, &ts));
	if (ts.guaranteed < (uint64_t)batch)
		die("alloc: the pmd's --guarantee is below 4096 frames", ENOMEM);
	CHECK(pm_container_create(pm, &c));
	MEASURE(t_batch, 1, {
		int n = batch;
		CHECK(pm_container_allocate(pm, c, 0, &n, 0));
		CHECK(pm_container_deallocate(pm, c, 0, batch));
	});
	MEASURE(t_single, 200, {
		int n = 1;
		CHECK(pm_container_allocate(pm, c, 0, &n, 0));
		CHECK(pm_container_deallocate(pm, c, 0, 1));
	});
	/* Frames per second (allocate + deallocate of each). */
	double fps_batch = batch / (t_batch * 1e-9);
	double fps_single = 1 / (t_single * 1e-9);
	report("alloc.batch4096", "frames/s", fps_batch, "alloc.single",
	       fps_single, ">= 1M frames/s");
	pm_disconnect(pm);
}

/* The echo process of the rpc baseline. */
static void echo_loop(int fd)
{
	char buf[64];
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		if (send(fd, buf, (size_t)n, 0) != n)
			break;
}

/* 4 threads each making THREADS_REQS small requests on one session. */
#define THREADS_N    4
#define THREADS_REQS 200
static void *threads_body(void *arg)
{
	struct pm_task_stat ts;

	for (int i = 0; i < THREADS_REQS; i++)
		CHECK(pm_task_stat(arg, &ts));
	return NULL;
}

static void threads_rpc(pm_t *pm)
{
	pthread_t th[THREADS_N];

	for (int i = 0; i < THREADS_N; i++)
		if (pthread_create(&th[i], NULL, threads_body, pm))
			die("pthread_create", EAGAIN);
	for (int i = 0; i < THREADS_N; i++)
		pthread_join(th[i], NULL);
}

/* The baseline of one small request: a round trip on a socket pair to
 * another process that echoes (as the pmd is another process: this is
 * the floor), measured in rounds alternating with the request. */
static void bench_rpc(void)
{
	pm_t *pm = connect_fast(true);
	struct pm_task_stat ts;
	int sv[2];
	pid_t child;
	char buf[64] = { 0 };
	double t, rtt;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0)
		die("socketpair", errno);
	child = fork();
	if (child < 0)
		die("fork", errno);
	if (child == 0) {
		if (echo_cpu >= 0) {
			cpu_set_t set;
			CPU_ZERO(&set);
			CPU_SET(echo_cpu, &set);
			if (sched_setaffinity(0, sizeof(set), &set) < 0)
				die("sched_setaffinity", errno);
		}
		close(sv[0]);
		echo_loop(sv[1]);
		_exit(0);
	}
	close(sv[1]);
	MEASURE_PAIR(t, 100, CHECK(pm_task_stat(pm, &ts)), rtt, 100, {
		if (send(sv[0], buf, 32, 0) != 32 || recv(sv[0], buf, 64, 0) != 32)
			die("echo", errno);
	});
	close(sv[0]);
	waitpid(child, NULL, 0);
	report("rpc.task_stat", "ns", t, "unix seqpacket rtt", rtt, "<= 2x");

	/* The ring against the socket, the same request. */
	pm_t *ns = connect_no_ring();
	double t_sock;
	MEASURE_PAIR(t, 100, CHECK(pm_task_stat(pm, &ts)),
		     t_sock, 100, CHECK(pm_task_stat(ns, &ts)));
	report("rpc.ring", "ns", t, "rpc on the socket", t_sock, NULL);

	/* Several in flight: 4 threads of one session at once. */
	double r_ring, r_sock;
	MEASURE_PAIR(r_ring, 1, threads_rpc(pm), r_sock, 1, threads_rpc(ns));
	r_ring /= THREADS_N * THREADS_REQS;
	r_sock /= THREADS_N * THREADS_REQS;
	report("rpc.threads4", "ns", r_ring, "4 threads on the socket", r_sock,
	       NULL);
	pm_disconnect(ns);
	pm_disconnect(pm);
}

static void bench_io(void)
{
	pm_t *pm = connect_fast(true);
	static uint8_t buf[65536], src[65536];
	container_t c;
	int n = 16;
	double t_w4, t_r4, t_w64, t_r64, t_m4, t_m64;

	CHECK(pm_container_create(pm, &c));
	CHECK(pm_container_allocate(pm, c, 0, &n, 0));
	memset(src, 1, sizeof(src));
	MEASURE_PAIR(t_w4, 100, CHECK(pm_container_write(pm, c, 0, 0, src, 4096)),
		     t_r4, 100, CHECK(pm_container_read(pm, c, 0, 0, buf, 4096)));
	MEASURE_PAIR(t_w64, 50, CHECK(pm_container_write(pm, c, 0, 0, src, 65536)),
		     t_r64, 50, CHECK(pm_container_read(pm, c, 0, 0, buf, 65536)));
	MEASURE(t_m4, 1000, {
		memcpy(buf, src, 4096);
		__asm__ volatile("" ::: "memory");
	});
	MEASURE(t_m64, 100, {
		memcpy(buf, src, 65536);
		__asm__ volatile("" ::: "memory");
	});
	report("io.write4k", "ns", t_w4, "memcpy 4 KiB", t_m4, NULL);
	report("io.read4k", "ns", t_r4, "memcpy 4 KiB", t_m4, NULL);
	report("io.write64k", "ns", t_w64, "memcpy 64 KiB", t_m64, NULL);
	report("io.read64k", "ns", t_r64, "memcpy 64 KiB", t_m64, NULL);

	/* On the socket, writes pass their bytes through the session's
	 * window; the same with them in the message. */
	pm_t *ns = connect_no_ring();
	pm_t *nw = connect_no_window();
	container_t cn, cs;
	double t_nw64, t_s4;
	n = 16;
	CHECK(pm_container_create(nw, &cn));
	CHECK(pm_container_allocate(nw, cn, 0, &n, 0));
	n = 16;
	CHECK(pm_container_create(ns, &cs));
	CHECK(pm_container_allocate(ns, cs, 0, &n, 0));
	MEASURE_PAIR(t_w64, 50, CHECK(pm_container_write(ns, cs, 0, 0, src, 65536)),
		     t_nw64, 50, CHECK(pm_container_write(nw, cn, 0, 0, src, 65536)));
	report("io.write64k_window", "ns", t_w64, "io.write64k in the message",
	       t_nw64, NULL);
	MEASURE_PAIR(t_r64, 50, CHECK(pm_container_read(ns, cs, 0, 0, buf, 65536)),
		     t_nw64, 50, CHECK(pm_container_read(nw, cn, 0, 0, buf, 65536)));
	report("io.read64k_window", "ns", t_r64, "io.read64k in the message",
	       t_nw64, NULL);
	pm_disconnect(nw);

	/* The ring (the default) against the session's socket. */
	MEASURE_PAIR(t_r4, 100, CHECK(pm_container_read(pm, c, 0, 0, buf, 4096)),
		     t_s4, 100, CHECK(pm_container_read(ns, cs, 0, 0, buf, 4096)));
	report("io.read4k_ring", "ns", t_r4, "io.read4k on the socket", t_s4,
	       NULL);
	MEASURE_PAIR(t_w4, 100, CHECK(pm_container_write(pm, c, 0, 0, src, 4096)),
		     t_s4, 100, CHECK(pm_container_write(ns, cs, 0, 0, src, 4096)));
	report("io.write4k_ring", "ns", t_w4, "io.write4k on the socket", t_s4,
	       NULL);
	pm_disconnect(ns);
	pm_disconnect(pm);
}

static void bench_cow(void)
{
	pm_t *pm = connect_fast(true);
	static uint8_t src[4096];
	container_t c;
	int n = 2;
	double t_break, t_plain;

	CHECK(pm_container_create(pm, &c));
	CHECK(pm_container_allocate(pm, c, 0, &n, 0));
	/* Each round: share frame 0 into 1 (no task holds the segment, so
	 * the copy shares the slot), then the write that breaks it, which
	 * takes a fresh slot, copies the page and frees frame 1's old one. */
	/* Baseline: copy then a write of a frame that is not shared (frame
	 * 1's copy goes to frame 2, which nothing writes after). */
	n = 1;
	CHECK(pm_container_allocate(pm, c, 2, &n, 0));
	MEASURE_PAIR(t_break, 50, {
		CHECK(pm_container_copy(pm, c, 0, c, 1, 1, 0, NULL));
		CHECK(pm_container_write(pm, c, 1, 0, src, sizeof(src)));
	}, t_plain, 50, {
		CHECK(pm_container_copy(pm, c, 0, c, 2, 1, 0, NULL));
		CHECK(pm_container_write(pm, c, 1, 0, src, sizeof(src)));
	});
	report("cow.break_write4k", "ns", t_break, "copy + write of an unshared frame",
	       t_plain, NULL);
	pm_disconnect(pm);
}

struct writer_arg {
	volatile uint64_t *p;
	bool stop;                   /* set (atomically) to end it */
	uint64_t stores;
};

static void *writer_main(void *arg)
{
	struct writer_arg *a = arg;

	while (!__atomic_load_n(&a->stop, __ATOMIC_RELAXED)) {
		a->p[a->stores % 512] = a->stores;
		a->stores++;
	}
	return NULL;
}

/* Stores through a writable mapping of 4 MiB into frames whose logical
 * copy (by another task) ended: the copy made the frames shared, then it
 * was destroyed, and the pmd told the mapper; against the same stores
 * into frames never shared. Each round on a fresh container (slots used
 * before): a round must cost what the first did. */
static double store_round(pm_t *o, pm_t *b, bool copy, int round)
{
	enum { FRAMES = 1024 };
	container_t a, weak, ref, d;
	pm_cap_token_t tok;
	pm_task_t bid;
	uint8_t *m;
	uint64_t t0;
	int n = FRAMES;

	CHECK(pm_container_create(o, &a));
	CHECK(pm_container_allocate(o, a, 0, &n, 0));
	CHECK(pm_container_map(o, a, 0, FRAMES, CONT_MAP_READ | CONT_MAP_WRITE,
			       (void **)&m, NULL));
	memset(m, round, (size_t)FRAMES * PM_FRAME_SIZE);
	if (copy) {
		CHECK(pm_self(b, &bid));
		CHECK(pm_container_share(o, a, bid, &weak));
		CHECK(pm_cap_export(o, weak, &tok));
		CHECK(pm_cap_import(b, &tok, &ref));
		n = FRAMES;
		CHECK(pm_container_create(b, &d));
		CHECK(pm_container_allocate(b, d, 0, &n, 0));
		CHECK(pm_container_copy(b, ref, 0, d, 0, FRAMES, 0, NULL));
		CHECK(pm_container_destroy(b, d));
		CHECK(pm_cap_release(b, ref));
	}
	t0 = now_ns();
	for (size_t i = 0; i < FRAMES; i++)
		m[i * PM_FRAME_SIZE + 8] = (uint8_t)(round + 1);
	t0 = now_ns() - t0;
	CHECK(pm_container_unmap(o, m, FRAMES));
	CHECK(pm_container_destroy(o, a));
	return (double)t0;
}

/* The kernel's floor under store_round's figure: stores into 4 MiB of a
 * shared memfd mapping just write-protected and released again through
 * a userfaultfd (the kernel leaves the pages read-only, and the first
 * store to each takes a minor fault). 0 when there is no userfaultfd. */
static double store_floor(int uffd, uint8_t *m, int round)
{
	enum { FRAMES = 1024 };
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)m,
			   .len = (size_t)FRAMES * PM_FRAME_SIZE },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	uint64_t t0;

	if (uffd < 0 || ioctl(uffd, UFFDIO_WRITEPROTECT, &w) < 0)
		return 0;
	w.mode = 0;
	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &w) < 0)
		return 0;
	t0 = now_ns();
	for (size_t i = 0; i < FRAMES; i++)
		m[i * PM_FRAME_SIZE + 8] = (uint8_t)(round + 1);
	return (double)(now_ns() - t0);
}

static void bench_store_after_copy(pm_t *o)
{
	const size_t len = (size_t)1024 * PM_FRAME_SIZE;
	pm_t *b = connect_fast(true);
	int r = rounds < 30 ? rounds : 30;
	double *va = malloc(sizeof(double) * (size_t)r);
	double *vb = malloc(sizeof(double) * (size_t)r);
	double *vf = malloc(sizeof(double) * (size_t)r);
	int fd = memfd_create("pm-bench-floor", MFD_CLOEXEC);
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
	uint8_t *m;

	if (!va || !vb || !vf)
		die("malloc", ENOMEM);
	if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
		die("memfd", errno);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("mmap", errno);
	memset(m, 1, len);
	reg.range = (struct uffdio_range){ .start = (uintptr_t)m, .len = len };
	if (uffd >= 0 && (ioctl(uffd, UFFDIO_API, &api) < 0 ||
			  ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)) {
		close(uffd);
		uffd = -1;
	}
	for (int i = 0; i < r; i++) {
		va[i] = store_round(o, b, true, i);
		vb[i] = store_round(o, b, false, i);
		vf[i] = store_floor(uffd, m, i);
	}
	report("sound.store_after_copy_4m", "ns", median(va, r),
	       "stores, never shared", median(vb, r), NULL);
	if (uffd >= 0)
		report("sound.store_after_copy_floor", "ns", median(va, r),
		       "stores after a uffd WP round", median(vf, r), NULL);
	report("sound.store_after_copy_last", "ns", va[r - 1],
	       "stores, never shared", vb[r - 1], NULL);
	if (uffd >= 0)
		close(uffd);
	munmap(m, len);
	close(fd);
	free(va);
	free(vb);
	free(vf);
	pm_disconnect(b);
}

static void bench_sound(void)
{
	enum { MIB_FRAMES = 256 };
	pm_t *pm = connect_fast(true);
	container_t a, a2, b, c, u;
	int n;
	double t_copy, t_memcpy, t_break, t_plain, t_moved, t_free;
	uint8_t *buf1 = malloc(1 << 20), *buf2 = malloc(1 << 20);
	volatile uint8_t *m, *mb;
	struct writer_arg wa = { 0 };
	pthread_t th;
	int flip = 0;

	if (!buf1 || !buf2)
		die("malloc", ENOMEM);
	memset(buf1, 1, 1 << 20);
	memset(buf2, 2, 1 << 20);
	/* A logical copy of 1 MiB: b's 256 frames take the slots of a's,
	 * then of a2's (alternately, so that each copy moves them all),
	 * against memcpy of 1 MiB. */
	CHECK(pm_container_create(pm, &a));
	CHECK(pm_container_create(pm, &a2));
	CHECK(pm_container_create(pm, &b));
	n = MIB_FRAMES;
	CHECK(pm_container_allocate(pm, a, 0, &n, 0));
	n = MIB_FRAMES;
	CHECK(pm_container_allocate(pm, a2, 0, &n, 0));
	n = MIB_FRAMES;
	CHECK(pm_container_allocate(pm, b, 0, &n, 0));
	MEASURE_PAIR(t_copy, 4, {
		CHECK(pm_container_copy(pm, flip++ & 1 ? a2 : a, 0, b, 0,
					MIB_FRAMES, 0, NULL));
	}, t_memcpy, 4, {
		memcpy(i_ & 1 ? buf1 : buf2, i_ & 1 ? buf2 : buf1, 1 << 20);
	});
	report("sound.copy_1m", "ns", t_copy, "memcpy 1 MiB, in cache",
	       t_memcpy, NULL);
	/* The same against a memcpy out of the caches: 1 MiB at a time
	 * from and to 64 MiB of buffers, as file data mostly is. */
	{
		size_t span = (size_t)64 << 20;
		uint8_t *from = malloc(span), *to = malloc(span);
		size_t at = 0;

		if (!from || !to)
			die("malloc", ENOMEM);
		memset(from, 3, span);
		memset(to, 4, span);
		MEASURE_PAIR(t_copy, 4, {
			CHECK(pm_container_copy(pm, flip++ & 1 ? a2 : a, 0, b,
						0, MIB_FRAMES, 0, NULL));
		}, t_memcpy, 4, {
			memcpy(to + at, from + at, 1 << 20);
			at = (at + (1 << 20)) % span;
		});
		report("sound.copy_1m_cold", "ns", t_copy,
		       "memcpy 1 MiB, out of cache", t_memcpy, "<= 0.25x");
		free(from);
		free(to);
	}

	/* A store through a writable mapping that breaks a copy (the
	 * write-protection faults, the pmd gives the frame its own slot
	 * and takes the mapping away first, the store faults it back in),
	 * against a store through a mapping of a frame nobody shares; each
	 * after a copy that shares a slot. */
	CHECK(pm_container_create(pm, &c));
	n = 4;
	CHECK(pm_container_allocate(pm, c, 0, &n, 0));
	CHECK(pm_container_map(pm, c, 0, 1, CONT_MAP_READ | CONT_MAP_WRITE,
			       (void **)&m, NULL));
	CHECK(pm_container_map(pm, c, 2, 1, CONT_MAP_READ | CONT_MAP_WRITE,
			       (void **)&mb, NULL));
	m[0] = 1;
	mb[0] = 1;
	if (!pm_debug_follows(pm)) {
		printf("sound: store and move figures skipped: no userfaultfd "
		       "for this session\n");
		goto out;
	}
	MEASURE_PAIR(t_break, 20, {
		CHECK(pm_container_copy(pm, c, 0, c, 1, 1, 0, NULL));
		m[8] = (uint8_t)i_;
	}, t_plain, 20, {
		/* (From frame 0 and 3 in turn, so that each copy shares.) */
		CHECK(pm_container_copy(pm, c, i_ & 1 ? 3 : 0, c, 1, 1, 0,
					NULL));
		mb[8] = (uint8_t)i_;
	});
	report("sound.break_mapped_store", "ns", t_break,
	       "copy + store, unshared frame", t_plain, NULL);

	/* A move of a frame a writer thread keeps storing to (its stores
	 * are stopped, the frame copied, the writer let go at the new
	 * place), against a move of a frame nobody ever mapped (no stop at
	 * all: the move as it was before stops). */
	CHECK(pm_container_create(pm, &u));
	n = 1;
	CHECK(pm_container_allocate(pm, u, 0, &n, 0));
	wa.p = (volatile uint64_t *)mb;
	if (pthread_create(&th, NULL, writer_main, &wa))
		die("pthread_create", EAGAIN);
	MEASURE_PAIR(t_moved, 20, {
		CHECK(pm_debug_move(pm, c, 2));
	}, t_free, 20, {
		CHECK(pm_debug_move(pm, u, 0));
	});
	__atomic_store_n(&wa.stop, true, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	report("sound.move_under_writer", "ns", t_moved,
	       "move of an unmapped frame", t_free, NULL);
	bench_store_after_copy(pm);
out:
	free(buf1);
	free(buf2);
	pm_disconnect(pm);
}

static void bench_lock(void)
{
	pm_t *owner = connect_fast(true), *server = connect_fast(true);
	struct pm_task_stat ts;
	pm_task_t sid;
	container_t c, weak, ref;
	pm_cap_token_t tok;
	int n = 1;
	double t_lock, t_rpc;

	pm_self(server, &sid);
	CHECK(pm_container_create(owner, &c));
	CHECK(pm_container_allocate(owner, c, 0, &n, 0));
	CHECK(pm_container_share(owner, c, sid, &weak));
	CHECK(pm_cap_export(owner, weak, &tok));
	CHECK(pm_cap_import(server, &tok, &ref));
	MEASURE_PAIR(t_lock, 50, {
		CHECK(pm_container_lock(server, ref, 1000));
		CHECK(pm_container_unlock(server, ref));
	}, t_rpc, 100, CHECK(pm_task_stat(server, &ts)));
	report("lock.lock_unlock", "ns", t_lock, "2 x rpc.task_stat", 2 * t_rpc,
	       NULL);
	pm_disconnect(server);
	pm_disconnect(owner);
}

/* A touch of the page; returns the ns it took. */
static double touch_ns(volatile uint8_t *p)
{
	uint64_t t0 = now_ns();

	(void)*p;
	return (double)(now_ns() - t0);
}

static void bench_fault_one(bool fast)
{
	pm_t *pm = connect_fast(fast);
	struct pm_task_stat ts;
	volatile uint8_t *m, *page;
	container_t c;
	int n = 1, fd;
	const int batch = 20;
	double *vf = malloc(sizeof(double) * (size_t)rounds);
	double *vk = malloc(sizeof(double) * (size_t)rounds);
	double *vr = malloc(sizeof(double) * (size_t)rounds);

	if (!pm_debug_follows(pm)) {
		printf("fault: skipped: this session's mappings do not follow "
		       "moved frames (no userfaultfd)\n");
		pm_disconnect(pm);
		return;
	}
	CHECK(pm_container_create(pm, &c));
	CHECK(pm_container_allocate(pm, c, 0, &n, 0));
	CHECK(pm_container_map(pm, c, 0, 1, CONT_MAP_READ | CONT_MAP_WRITE,
			       (void **)&m, NULL));
	m[0] = 1;
	/* The baseline page: in the page cache, its mapping dropped before
	 * each touch, so the touch is a minor fault. */
	fd = memfd_create("bench-fault", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, PM_FRAME_SIZE) < 0 ||
	    pwrite(fd, "x", 1, 0) != 1)
		die("memfd", errno);
	page = mmap(NULL, PM_FRAME_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED)
		die("mmap", errno);
	for (int r = 0; r < rounds; r++) {
		double f = 0, k = 0;
		for (int i = 0; i < batch; i++) {
			CHECK(pm_debug_move(pm, c, 0));
			f += touch_ns(m);
			if (madvise((void *)page, PM_FRAME_SIZE, MADV_DONTNEED) < 0)
				die("madvise", errno);
			k += touch_ns(page);
		}
		vf[r] = f / batch;
		vk[r] = k / batch;
		uint64_t t0 = now_ns();
		for (int i = 0; i < batch; i++)
			CHECK(pm_task_stat(pm, &ts));
		vr[r] = (double)(now_ns() - t0) / batch;
	}
	double t_fault = median(vf, rounds), t_kernel = median(vk, rounds);
	double t_rpc = median(vr, rounds);
	if (m[0] != 1)
		die("fault: the moved frame lost its contents", EIO);
	if (fast) {
		report("fault.moved_frame", "ns", t_fault,
		       "page-cache fault + rpc", t_kernel + t_rpc, "<= 2x");
		report("fault.kernel_minor", "ns", t_kernel, "rpc.task_stat",
		       t_rpc, NULL);
	} else {
		report("fault.moved_frame_pmd", "ns", t_fault,
		       "page-cache fault + rpc", t_kernel + t_rpc, NULL);
	}
	munmap((void *)page, PM_FRAME_SIZE);
	close(fd);
	free(vf);
	free(vk);
	free(vr);
	pm_disconnect(pm);
}

/* Resolved from the session's frame view, and (PM_NO_FASTPATH) by the
 * pmd. */
static void bench_fault(void)
{
	bench_fault_one(true);
	bench_fault_one(false);
}

struct bw_arg {
	pm_t *pm;
	container_t c;
	bool write;
	uint64_t end_ns, bytes;
};

static void *bw_worker(void *p)
{
	struct bw_arg *a = p;
	static __thread uint8_t buf[65536];
	frame_t f = 0;

	while (now_ns() < a->end_ns) {
		CHECK(a->write ? pm_container_write(a->pm, a->c, f, 0, buf, sizeof(buf))
			       : pm_container_read(a->pm, a->c, f, 0, buf, sizeof(buf)));
		a->bytes += sizeof(buf);
		f = (f + 16) % 128;
	}
	return NULL;
}

/* MB/s of 64 KiB reads or writes by `threads` sessions at once. */
static double remote_bw(bool write, int threads, bool window)
{
	struct bw_arg a[8];
	pthread_t th[8];
	uint64_t t0 = now_ns(), bytes = 0;

	for (int i = 0; i < threads; i++) {
		int n = 128;
		a[i] = (struct bw_arg){ .pm = window ? connect_fast(true)
						     : connect_no_window(),
					.write = write,
					.end_ns = t0 + 500000000u };
		CHECK(pm_container_create(a[i].pm, &a[i].c));
		CHECK(pm_container_set_policy(a[i].pm, a[i].c, PM_PLACE_NODE,
					      (pm_node_t)remote_node));
		CHECK(pm_container_allocate(a[i].pm, a[i].c, 0, &n, 0));
	}
	t0 = now_ns();
	for (int i = 0; i < threads; i++) {
		a[i].end_ns = t0 + 500000000u;
		pthread_create(&th[i], NULL, bw_worker, &a[i]);
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(th[i], NULL);
		bytes += a[i].bytes;
		pm_disconnect(a[i].pm);
	}
	return (double)bytes / ((double)(now_ns() - t0) / 1e9) / 1e6;
}

struct remote_reader {
	pm_t *pm;
	container_t c;
	frame_t f;
	int ops;
};

static void *remote_reader(void *arg)
{
	struct remote_reader *r = arg;
	uint8_t buf[4096];

	for (int i = 0; i < r->ops; i++)
		CHECK(pm_container_read(r->pm, r->c, r->f, 0, buf, sizeof(buf)));
	return NULL;
}

/* ns an op of k threads of one session reading 4 KiB of their own
 * frames of c (on another node), ops each. */
static double remote_readers(pm_t *pm, container_t c, int k, int ops)
{
	struct remote_reader r[4];
	pthread_t th[4];
	uint64_t t0 = now_ns();

	for (int i = 0; i < k; i++) {
		r[i] = (struct remote_reader){ .pm = pm, .c = c,
					       .f = (frame_t)i, .ops = ops };
		if (pthread_create(&th[i], NULL, remote_reader, &r[i]))
			die("pthread_create", EAGAIN);
	}
	for (int i = 0; i < k; i++)
		pthread_join(th[i], NULL);
	return (double)(now_ns() - t0) / ((double)k * ops);
}

static void bench_remote(void)
{
	pm_t *pm = connect_fast(true);
	static uint8_t buf[4096];
	container_t c, l;
	int n = 16;
	double t_r, t_w, t_lr, t_lw;

	CHECK(pm_container_create(pm, &c));
	CHECK(pm_container_set_policy(pm, c, PM_PLACE_NODE, (pm_node_t)remote_node));
	CHECK(pm_container_allocate(pm, c, 0, &n, 0));
	CHECK(pm_container_create(pm, &l));
	n = 16;
	CHECK(pm_container_allocate(pm, l, 0, &n, 0));
	MEASURE_PAIR(t_r, 50, CHECK(pm_container_read(pm, c, (frame_t)(i_ & 15), 0, buf, 4096)),
		     t_lr, 50, CHECK(pm_container_read(pm, l, (frame_t)(i_ & 15), 0, buf, 4096)));
	MEASURE_PAIR(t_w, 50, CHECK(pm_container_write(pm, c, (frame_t)(i_ & 15), 0, buf, 4096)),
		     t_lw, 50, CHECK(pm_container_write(pm, l, (frame_t)(i_ & 15), 0, buf, 4096)));
	report("remote.read4k", "ns", t_r, "local read4k", t_lr, NULL);
	report("remote.write4k", "ns", t_w, "local write4k", t_lw, NULL);
	/* Several remote reads of one container in flight (each thread
	 * its own frame), against one at a time: time an op. */
	{
		double t4 = 0, t1 = 0;

		for (int round = 0; round < 3; round++) {
			t4 += remote_readers(pm, c, 4, 200);
			t1 += remote_readers(pm, c, 1, 200);
		}
		report("remote.read4k_4threads", "ns", t4 / 3,
		       "remote.read4k, one thread", t1 / 3, NULL);
	}
	pm_disconnect(pm);
	/* Through the sessions' windows (RDMA straight to and from them),
	 * against the bytes in the messages; the raw fabric is in
	 * run-remote.sh. */
	double rb = remote_bw(false, 8, true), wb = remote_bw(true, 8, true);
	double rbn = remote_bw(false, 8, false), wbn = remote_bw(true, 8, false);
	report("remote.read_bw_64k", "MB/s", rb, "read_bw_64k in the messages",
	       rbn, NULL);
	report("remote.write_bw_64k", "MB/s", wb, "write_bw_64k in the messages",
	       wbn, NULL);
}

/* A copy of frames 0-255 (1 MiB) from src to dst in one request,
 * against a read and a write of each 64 KiB piece (buf: 64 KiB). */
static void copy_1m_pair(pm_t *pm, container_t src, container_t dst,
			 uint8_t *buf, double *t_copy, double *t_pieces)
{
	MEASURE_PAIR(*t_copy, 2, CHECK(pm_container_copy(pm, src, 0, dst, 0,
							 256, 0, NULL)),
		     *t_pieces, 2, for (int p_ = 0; p_ < 16; p_++) {
			     CHECK(pm_container_read(pm, src, (frame_t)p_ * 16,
						     0, buf, 65536));
			     CHECK(pm_container_write(pm, dst, (frame_t)p_ * 16,
						      0, buf, 65536)); });
}

static void bench_forward(void)
{
	pm_t *here = connect_fast(true), *home;
	static uint8_t buf[65536];
	pm_cap_token_t tok;
	container_t c, weak, ref;
	pm_task_t sid;
	int n = 16;
	double t_f, t_l;

	CHECK(pm_connect(home_sock, &home));
	CHECK(pm_container_create(home, &c));
	CHECK(pm_container_allocate(home, c, 0, &n, 0));
	CHECK(pm_self(here, &sid));
	CHECK(pm_container_share(home, c, sid, &weak));
	CHECK(pm_cap_export(home, weak, &tok));
	CHECK(pm_cap_import(here, &tok, &ref));
	MEASURE_PAIR(t_f, 20, CHECK(pm_container_read(here, ref, 0, 0, buf, 4096)),
		     t_l, 20, CHECK(pm_container_read(home, c, 0, 0, buf, 4096)));
	report("forward.read4k", "ns", t_f, "owner read4k on the home", t_l, NULL);
	MEASURE_PAIR(t_f, 20, CHECK(pm_container_write(here, ref, 0, 0, buf, 4096)),
		     t_l, 20, CHECK(pm_container_write(home, c, 0, 0, buf, 4096)));
	report("forward.write4k", "ns", t_f, "owner write4k on the home", t_l, NULL);
	MEASURE_PAIR(t_f, 4, CHECK(pm_container_read(here, ref, 0, 0, buf, 65536)),
		     t_l, 4, CHECK(pm_container_read(home, c, 0, 0, buf, 65536)));
	report("forward.read64k", "ns", t_f, "owner read64k on the home", t_l, NULL);
	MEASURE_PAIR(t_f, 4, CHECK(pm_container_write(here, ref, 0, 0, buf, 65536)),
		     t_l, 4, CHECK(pm_container_write(home, c, 0, 0, buf, 65536)));
	report("forward.write64k", "ns", t_f, "owner write64k on the home", t_l,
	       NULL);
	/* Against a direct remote read: a container of this node whose
	 * frames live on the home's node (the same fabric, one RDMA read,
	 * no node request). */
	if (remote_node) {
		container_t d;
		int k = 16;

		CHECK(pm_container_create(here, &d));
		CHECK(pm_container_set_policy(here, d, PM_PLACE_NODE,
					      (pm_node_t)remote_node));
		CHECK(pm_container_allocate(here, d, 0, &k, 0));
		MEASURE_PAIR(t_f, 20, CHECK(pm_container_read(here, ref,
					     (frame_t)(i_ & 15), 0, buf, 4096)),
			     t_l, 20, CHECK(pm_container_read(here, d,
					     (frame_t)(i_ & 15), 0, buf, 4096)));
		report("forward.read4k_vs_remote", "ns", t_f,
		       "remote.read4k (frames on that node)", t_l, "<= 2x");
		CHECK(pm_container_destroy(here, d));
	}

	/* Through the task's window (the home moves the bytes by RDMA to
	 * and from it, the default) against a session without one (the
	 * bytes in the node requests' messages). */
	{
		pm_t *nw = connect_no_window();
		container_t nref;

		CHECK(pm_self(nw, &sid));
		CHECK(pm_container_share(home, c, sid, &weak));
		CHECK(pm_cap_export(home, weak, &tok));
		CHECK(pm_cap_import(nw, &tok, &nref));
		MEASURE_PAIR(t_f, 4, CHECK(pm_container_read(here, ref, 0, 0, buf, 65536)),
			     t_l, 4, CHECK(pm_container_read(nw, nref, 0, 0, buf, 65536)));
		report("forward.read64k_window", "ns", t_f,
		       "forwarded read64k in the messages", t_l, NULL);
		MEASURE_PAIR(t_f, 4, CHECK(pm_container_write(here, ref, 0, 0, buf, 65536)),
			     t_l, 4, CHECK(pm_container_write(nw, nref, 0, 0, buf, 65536)));
		report("forward.write64k_window", "ns", t_f,
		       "forwarded write64k in the messages", t_l, NULL);
		pm_disconnect(nw);
	}

	/* A copy of 1 MiB between homes (here to the home, and back): one
	 * request, the task's pmd moving the bytes through the window,
	 * against what a task (and the library, before) did: a read and a
	 * forwarded write (or the reverse) of each 64 KiB piece. */
	{
		container_t big, mine, bref;
		int k = 256;

		CHECK(pm_container_create(home, &big));
		CHECK(pm_container_allocate(home, big, 0, &k, 0));
		CHECK(pm_self(here, &sid));
		CHECK(pm_container_share(home, big, sid, &weak));
		CHECK(pm_cap_export(home, weak, &tok));
		CHECK(pm_cap_import(here, &tok, &bref));
		CHECK(pm_container_create(here, &mine));
		k = 256;
		CHECK(pm_container_allocate(here, mine, 0, &k, 0));
		copy_1m_pair(here, mine, bref, buf, &t_f, &t_l);
		report("forward.copy_1m_out", "ns", t_f,
		       "read + forwarded write, 64 KiB a piece", t_l, NULL);
		copy_1m_pair(here, bref, mine, buf, &t_f, &t_l);
		report("forward.copy_1m_in", "ns", t_f,
		       "forwarded read + write, 64 KiB a piece", t_l, NULL);
		CHECK(pm_container_destroy(here, mine));
		CHECK(pm_container_destroy(home, big));
	}

	/* A frame both map, touched in turn: it moves to this node (the
	 * task's fault, a map forwarded to the home) and back (the owner's
	 * fault pulls it home), against a forwarded 4 KiB read. */
	volatile uint8_t *tm, *om;
	void *m;
	CHECK(pm_container_map(here, ref, 1, 1, CONT_MAP_READ | CONT_MAP_WRITE,
			       &m, NULL));
	tm = m;
	CHECK(pm_container_map(home, c, 1, 1, CONT_MAP_READ | CONT_MAP_WRITE,
			       &m, NULL));
	om = m;
	MEASURE_PAIR(t_f, 10, { tm[0] = (uint8_t)i_; om[1] = tm[0]; },
		     t_l, 10, CHECK(pm_container_read(here, ref, 0, 0, buf, 4096)));
	report("forward.move_pair", "ns", t_f, "forwarded read4k", t_l, NULL);
	CHECK(pm_container_unmap(here, (void *)tm, 1));
	CHECK(pm_container_unmap(home, (void *)om, 1));
	CHECK(pm_container_destroy(home, c));
	pm_disconnect(here);
	pm_disconnect(home);
}

/* ---- memory pressure (a cluster whose node 1 is small) ---- */

static uint64_t metric_of(pm_t *pm, const char *name)
{
	static char text[1 << 16];
	size_t len;
	const char *p;

	CHECK(pm_debug_metrics(pm, text, sizeof(text), &len));
	p = strstr(text, name);
	return p ? strtoull(p + strlen(name), NULL, 10) : 0;
}

#define PAGED_METRIC "pmd_reclaim_frames_total{kind=\"paged\"}"

/* The median ns of a map of one frame that lives on the remote node
 * (it comes home: a page-in, with room here), against a remote read of
 * 4 KiB in the same rounds (the raw fabric's read is in the script). */
static void pressure_pagein(pm_t *pm)
{
	double *vm = malloc(sizeof(double) * (size_t)rounds);
	double *vr = malloc(sizeof(double) * (size_t)rounds);
	static uint8_t buf[4096];
	container_t c, r;
	int n;
	void *m;

	CHECK(pm_container_create(pm, &c));
	CHECK(pm_container_set_policy(pm, c, PM_PLACE_NODE,
				      (pm_node_t)remote_node));
	CHECK(pm_container_create(pm, &r));
	CHECK(pm_container_set_policy(pm, r, PM_PLACE_NODE,
				      (pm_node_t)remote_node));
	n = 1;
	CHECK(pm_container_allocate(pm, r, 0, &n, 0));
	for (int k = 0; k < rounds; k++) {
		uint64_t t0;

		n = 1;
		CHECK(pm_container_allocate(pm, c, 0, &n, 0));
		t0 = now_ns();
		CHECK(pm_container_map(pm, c, 0, 1, CONT_MAP_READ, &m, NULL));
		vm[k] = (double)(now_ns() - t0);
		if (((volatile uint8_t *)m)[0]) /* (a frame never written) */
			die("pagein: not zeros", EIO);
		CHECK(pm_container_unmap(pm, m, 1));
		CHECK(pm_container_deallocate(pm, c, 0, 1));
		t0 = now_ns();
		CHECK(pm_container_read(pm, r, 0, 0, buf, sizeof(buf)));
		vr[k] = (double)(now_ns() - t0);
	}
	report("pressure.pagein4k", "ns", median(vm, rounds),
	       "remote.read4k", median(vr, rounds), NULL);
	CHECK(pm_container_destroy(pm, c));
	CHECK(pm_container_destroy(pm, r));
	free(vm);
	free(vr);
}

/* The ns of a map of frame f alone (read-only), whose first four bytes
 * must be want (a frame that comes home: a page-in); then unmapped. */
static double map_one_timed(pm_t *pm, container_t c, frame_t f, uint32_t want)
{
	uint64_t t0 = now_ns();
	double ns;
	uint32_t got;
	void *m;

	CHECK(pm_container_map(pm, c, f, 1, CONT_MAP_READ, &m, NULL));
	ns = (double)(now_ns() - t0);
	memcpy(&got, m, sizeof(got));
	if (got != want)
		die("a frame came home with other bytes", EIO);
	CHECK(pm_container_unmap(pm, m, 1));
	return ns;
}

/* The same in steady state: k frames written on the remote node, then
 * each mapped once (it comes home; nothing else runs between the maps
 * but the remote read of a frame that stays there), against that read
 * in the same rounds. */
static void pressure_pagein_steady(pm_t *pm)
{
	int k = rounds * 10 < 1000 ? rounds * 10 : 1000, n = k + 1;
	double *vm = malloc(sizeof(double) * (size_t)k);
	double *vr = malloc(sizeof(double) * (size_t)k);
	static uint8_t buf[4096];
	container_t c;

	if (!vm || !vr)
		die("pagein", ENOMEM);
	CHECK(pm_container_create(pm, &c));
	CHECK(pm_container_set_policy(pm, c, PM_PLACE_NODE,
				      (pm_node_t)remote_node));
	CHECK(pm_container_allocate(pm, c, 0, &n, 0));
	for (int i = 0; i <= k; i++) {
		memcpy(buf, &i, sizeof(i));
		CHECK(pm_container_write(pm, c, (frame_t)i, 0, buf, sizeof(buf)));
	}
	for (int i = 0; i < k; i++) {
		uint64_t t0;

		vm[i] = map_one_timed(pm, c, (frame_t)i, (uint32_t)i);
		t0 = now_ns();
		CHECK(pm_container_read(pm, c, (frame_t)k, 0, buf, sizeof(buf)));
		vr[i] = (double)(now_ns() - t0);
	}
	report("pressure.pagein4k_steady", "ns", median(vm, k),
	       "remote.read4k", median(vr, k), NULL);
	CHECK(pm_container_destroy(pm, c));
	free(vm);
	free(vr);
}

/* A skewed working set four times node 1's memory: maps of single
 * frames drawn from a Zipf law, each read once; the frames that are not
 * here come home, and as many go out. Reports accesses per second and
 * the frames paged out per access (the pmd's policy: the script runs it
 * again with PMD_PAGEOUT_POLICY=random). */
static void pressure_zipf(pm_t *pm, const char *name)
{
	struct pm_node_info nodes[8];
	struct pm_task_stat ts;
	unsigned seed = ZIPF_SEED;
	int count = 8, n;
	uint32_t w;
	double *cdf, t;
	uint64_t paged0 = 0, t0 = 0;
	container_t c;

	CHECK(pm_nodes(pm, nodes, &count));
	w = (uint32_t)(4 * nodes[0].frames_total);
	CHECK(pm_task_stat(pm, &ts));
	if (ts.guaranteed + ts.extra_limit < w)
		die("zipf: the task's guarantee and extra limit are below 4x "
		    "node 1's frames (--guarantee, --extra)", ENOMEM);
	cdf = zipf_cdf(w);
	if (!cdf)
		die("zipf", ENOMEM);
	CHECK(pm_container_create(pm, &c));
	/* Guaranteed (here, or born in the backing store), the rest extra:
	 * spilled to the other node. */
	n = (int)(ts.guaranteed < w ? ts.guaranteed : w);
	CHECK(pm_container_allocate(pm, c, 0, &n, CONT_ALLOC_PARTIAL));
	n = (int)(w - (uint32_t)n);
	if (n)
		CHECK(pm_container_allocate(pm, c, (frame_t)(w - (uint32_t)n),
					    &n, CONT_ALLOC_EXTRA));
	for (unsigned k = 0; k < ZIPF_WARM + ZIPF_MEASURED; k++) {
		frame_t f = zipf_next(cdf, w, &seed);
		volatile uint8_t *m;

		if (k == ZIPF_WARM) {
			paged0 = metric_of(pm, PAGED_METRIC);
			t0 = now_ns();
		}
		CHECK(pm_container_map(pm, c, f, 1, CONT_MAP_READ,
				       (void **)&m, NULL));
		(void)m[0];
		CHECK(pm_container_unmap(pm, (void *)m, 1));
	}
	t = (double)(now_ns() - t0) / 1e9;
	report(name, "accesses/s", ZIPF_MEASURED / t,
	       "frames paged out per access",
	       (double)(metric_of(pm, PAGED_METRIC) - paged0) / ZIPF_MEASURED,
	       NULL);
	CHECK(pm_container_destroy(pm, c));
	free(cdf);
}

static void bench_pressure(void)
{
	pm_t *pm = connect_fast(true);

	pressure_pagein(pm);
	pressure_pagein_steady(pm);
	pm_disconnect(pm);
	/* Maps through the pmd (it sees every use), and by the fast path
	 * (it sees the faults only). */
	pm = connect_fast(false);
	pressure_zipf(pm, "pressure.zipf_pmd_maps");
	pm_disconnect(pm);
	pm = connect_fast(true);
	pressure_zipf(pm, "pressure.zipf_fast_maps");
	pm_disconnect(pm);
}

/* A page-in from the backing store (a pmd with --backing-store
 * store_file and memory of its own): the map of a frame living in the
 * store, with room here for it, against a pread of 4 KiB of the same
 * file where it holds data (where frames are: a read of a hole costs
 * about twice as much, the making of a page of zeros), twice: with the
 * store's page cache holding the frames (as just after their page-out),
 * and from the device, the cache dropped before each. */
#define STORE_SAMPLES 1000
#define STORE_DEVICE_SAMPLES 200

/* The offsets of the store's pages that hold data (SEEK_DATA,
 * SEEK_HOLE), in *pages (*n of them; malloc'd). */
static void store_data_pages(int fd, off_t size, off_t **pages, uint32_t *n)
{
	off_t at = 0, end;

	*n = 0;
	*pages = malloc(sizeof(off_t) * (size_t)(size / 4096));
	if (!*pages)
		die("store", ENOMEM);
	while (at < size && (at = lseek(fd, at, SEEK_DATA)) >= 0) {
		end = lseek(fd, at, SEEK_HOLE);
		if (end < 0)
			end = size;
		for (at -= at % 4096; at < end && at < size; at += 4096)
			(*pages)[(*n)++] = at;
	}
	if (*n == 0)
		die("store: no data in the store file", EIO);
}

static double pread_timed(int fd, const off_t *pages, uint32_t n)
{
	static uint8_t buf[4096];
	uint64_t t0 = now_ns();

	if (pread(fd, buf, sizeof(buf), pages[(uint32_t)rand() % n]) !=
	    (ssize_t)sizeof(buf))
		die("store: pread", errno);
	return (double)(now_ns() - t0);
}

/* The store's pages in the page cache (mincore of a mapping of it). */
static uint64_t store_cached(int fd, off_t size)
{
	size_t pages = (size_t)(size / 4096);
	unsigned char *v = malloc(pages);
	void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	uint64_t in = 0;

	if (!v || m == MAP_FAILED || mincore(m, (size_t)size, v) < 0)
		die("store: mincore", v ? errno : ENOMEM);
	for (size_t i = 0; i < pages; i++)
		in += v[i] & 1;
	munmap(m, (size_t)size);
	free(v);
	return in;
}

/* Written back and dropped from the page cache: false when the kernel
 * keeps it (tmpfs). */
static bool store_drop(int fd, off_t size)
{
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return store_cached(fd, size) == 0;
}

static void bench_store(void)
{
	pm_t *pm = connect_fast(true);
	struct pm_node_info nodes[1];
	struct pm_task_stat ts;
	static uint8_t buf[4096];
	int count = 1, n, k, kd = STORE_DEVICE_SAMPLES, fd;
	struct pm_container_stat cs, cs2;
	double *vm, *vp, *vr;
	uint32_t w, ndata;
	off_t size, *data;
	container_t c;

	CHECK(pm_nodes(pm, nodes, &count));
	CHECK(pm_task_stat(pm, &ts));
	w = (uint32_t)(2 * nodes[0].frames_total);
	if (ts.guaranteed < w)
		die("store: the task's guarantee is below twice the node's "
		    "memory (--guarantee, and a store that large)", ENOMEM);
	fd = open(store_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || (size = lseek(fd, 0, SEEK_END)) < 4096)
		die(store_file, fd < 0 ? errno : EINVAL);
	/* Samples: not the rounds (21 with --quick), whose median would
	 * take in the first maps' one-off work (the segment's descriptor,
	 * the library's first look at it); a page-in costs microseconds. */
	k = STORE_SAMPLES;
	vm = malloc(sizeof(double) * (size_t)k);
	vp = malloc(sizeof(double) * (size_t)k);
	vr = malloc(sizeof(double) * (size_t)k);
	if (!vm || !vp || !vr)
		die("store", ENOMEM);
	CHECK(pm_container_create(pm, &c));
	/* Allocated and written in pieces (an allocation waits for room
	 * that page-outs make): the oldest go to the store as memory
	 * fills. */
	for (uint32_t f = 0; f < w; f++) {
		if (f % 1024 == 0) {
			n = 1024;
			CHECK(pm_container_allocate(pm, c, f, &n, 0));
		}
		CHECK(pm_container_write(pm, c, f, 0, &f, sizeof(f)));
	}
	store_data_pages(fd, size, &data, &ndata);
	/* Reads of frames in the store (the oldest, past those the
	 * page-ins below take; a read leaves a frame where it is), against
	 * a pread of the file. */
	CHECK(pm_container_stat(pm, c, &cs));
	if (cs.swapped < 2 * (uint64_t)k)
		die("store: fewer frames in the store than the bench reads",
		    EIO);
	for (int i = 0; i < k; i++) {
		uint64_t t0 = now_ns();
		uint32_t f;

		CHECK(pm_container_read(pm, c, (frame_t)(k + i), 0, buf,
					sizeof(buf)));
		vr[i] = (double)(now_ns() - t0);
		memcpy(&f, buf, sizeof(f));
		if (f != (uint32_t)(k + i))
			die("store: a frame read from the store has other bytes",
			    EIO);
		vp[i] = pread_timed(fd, data, ndata);
	}
	CHECK(pm_container_stat(pm, c, &cs2));
	if (cs2.swapped != cs.swapped)
		die("store: a read brought a frame home", EIO);
	report("store.read4k", "ns", median(vr, k),
	       "pread 4 KiB of the store's data", median(vp, k), NULL);
	/* Room for the page-ins: the newest (here) go. */
	CHECK(pm_container_deallocate(pm, c, (frame_t)(w - (uint32_t)(k + kd)),
				      k + kd));
	for (int i = 0; i < k; i++) {
		vm[i] = map_one_timed(pm, c, (frame_t)i, (uint32_t)i);
		vp[i] = pread_timed(fd, data, ndata);
	}
	report("store.pagein4k", "ns", median(vm, k),
	       "pread 4 KiB of the store's data", median(vp, k), "<= 1.5x");
	/* From the device: frames the reads above left in the store, in
	 * a random order as the preads go (in frame order the kernel would
	 * read ahead what the drop then throws away). */
	if (!store_drop(fd, size)) {
		printf("store.pagein4k_device: skipped: the store's page cache "
		       "cannot be dropped here (tmpfs?)\n");
	} else {
		uint32_t order[STORE_DEVICE_SAMPLES];

		for (int i = 0; i < kd; i++)
			order[i] = (uint32_t)(k + i);
		for (int i = kd - 1; i > 0; i--) {
			int j = rand() % (i + 1);
			uint32_t t = order[i];

			order[i] = order[j];
			order[j] = t;
		}
		for (int i = 0; i < kd; i++) {
			store_drop(fd, size);
			vm[i] = map_one_timed(pm, c, (frame_t)order[i], order[i]);
			store_drop(fd, size);
			vp[i] = pread_timed(fd, data, ndata);
		}
		report("store.pagein4k_device", "ns", median(vm, kd),
		       "pread 4 KiB of the store's data, uncached",
		       median(vp, kd), "<= 1.5x");
	}
	CHECK(pm_container_destroy(pm, c));
	close(fd);
	free(data);
	free(vm);
	free(vp);
	free(vr);
	/* The skewed working set of four times the node's memory, the
	 * frames not here in the store (bench/run-pressure.sh compares it
	 * with the kernel's swap of an anonymous mapping). */
	pressure_zipf(pm, "store.zipf_fast_maps");
	pm_disconnect(pm);
}

static bool wanted(int argc, char **argv, int first, const char *name)
{
	if (first >= argc)
		return true;
	for (int i = first; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	int i = 1;

	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			sock_path = argv[++i];
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			json = fopen(argv[++i], "w");
			if (!json)
				die(argv[i], errno);
			fputs("[", json);
		} else if (!strcmp(argv[i], "--remote-node") && i + 1 < argc) {
			remote_node = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--home-socket") && i + 1 < argc) {
			home_sock = argv[++i];
		} else if (!strcmp(argv[i], "--store-file") && i + 1 < argc) {
			store_file = argv[++i];
		} else if (!strcmp(argv[i], "--echo-cpu") && i + 1 < argc) {
			echo_cpu = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--quick")) {
			rounds = 21;
		} else {
			fprintf(stderr, "usage: pm-bench [--socket PATH] [--json FILE] "
				"[--quick] [--echo-cpu N] [--remote-node N] "
				"[--home-socket PATH] [--store-file PATH]\n"
				"                [map alloc rpc io cow sound lock "
				"fault remote forward pressure store]...\n");
			return 2;
		}
	}
	for (int k = i; k < argc; k++) {
		static const char *const names[] = { "map", "alloc", "rpc", "io",
						     "cow", "sound", "lock",
						     "fault", "remote",
						     "forward", "pressure",
						     "store" };
		bool ok = false;
		for (size_t j = 0; j < sizeof(names) / sizeof(names[0]); j++)
			ok |= !strcmp(argv[k], names[j]);
		if (!ok) {
			fprintf(stderr, "pm-bench: unknown test '%s'\n", argv[k]);
			return 2;
		}
	}
	if (wanted(argc, argv, i, "map"))
		bench_map();
	if (wanted(argc, argv, i, "alloc"))
		bench_alloc();
	if (wanted(argc, argv, i, "rpc"))
		bench_rpc();
	if (wanted(argc, argv, i, "io"))
		bench_io();
	if (wanted(argc, argv, i, "cow"))
		bench_cow();
	if (wanted(argc, argv, i, "sound"))
		bench_sound();
	if (wanted(argc, argv, i, "lock"))
		bench_lock();
	if (wanted(argc, argv, i, "fault"))
		bench_fault();
	/* Only when asked for by name: it needs a cluster. */
	for (int k = i; k < argc; k++)
		if (!strcmp(argv[k], "remote")) {
			if (!remote_node)
				die("remote: needs --remote-node N", EINVAL);
			bench_remote();
		} else if (!strcmp(argv[k], "forward")) {
			if (!home_sock)
				die("forward: needs --home-socket PATH", EINVAL);
			bench_forward();
		} else if (!strcmp(argv[k], "pressure")) {
			if (!remote_node)
				die("pressure: needs --remote-node N", EINVAL);
			bench_pressure();
		} else if (!strcmp(argv[k], "store")) {
			if (!store_file)
				die("store: needs --store-file PATH", EINVAL);
			bench_store();
		}
	if (json) {
		fputs("\n]\n", json);
		fclose(json);
	}
	return 0;
}
