/*
 * The extra-frame protocol (API.md; docs/design.md, "Memory pressure"),
 * with a real pmd of 1024 frames, 256 guaranteed to each task: task A
 * fills the node with extra frames, task B connects (admission counts
 * A's extra frames as reclaimable: B gets its whole guarantee) and
 * allocates guaranteed frames, which only reclaim can give. A gives
 * frames back when asked; or has no handler (the pmd takes them at
 * once); or has one that does nothing (the pmd waits the grace period,
 * then takes them). Frames taken answer ESTALE, their mappings SIGBUS;
 * guaranteed frames and the rest stay intact, byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include "harness.h"
#include "pm_proto.h"
#include "walk.h"

#define NODE_FRAMES 1024u
#define G 256u                    /* each task's guarantee */
#define E (NODE_FRAMES - G)       /* A's extra frames: the rest of it */
#define GRACE_MS 1500u

/* Task A: frames 0..G-1 guaranteed, G..G+E-1 extra, each holding its
 * pattern; the node is full. */
static container_t fill(pm_t *a)
{
	struct pm_task_stat ts;
	container_t c = test_fill(a, G, E);

	assert_int_equal(pm_task_stat(a, &ts), 0);
	assert_int_equal(ts.extra_allocated, E);
	return c;
}

static void intact(pm_t *a, container_t c, frame_t from, frame_t to)
{
	test_intact(a, c, from, to, 0);
}

/* Task B, connecting to the full node: its whole guarantee. */
static pm_t *newcomer(void)
{
	pm_t *b = test_connect(&test_pmd);
	struct pm_task_stat ts;

	assert_int_equal(pm_task_stat(b, &ts), 0);
	assert_int_equal(ts.guaranteed, G);
	return b;
}

/* B's guaranteed allocation of n frames: ms it took. */
static uint64_t b_allocates(pm_t *b, container_t *c, unsigned n)
{
	uint64_t t0 = test_ms_now();
	int done = (int)n;

	assert_int_equal(pm_container_create(b, c), 0);
	assert_int_equal(pm_container_allocate(b, *c, 0, &done, 0), 0);
	assert_int_equal(done, n);
	return test_ms_now() - t0;
}

/* ---- a task that gives frames back ---- */

struct giver {
	pm_t *pm;
	container_t c;
	frame_t next;                /* the highest extra frame it holds + 1 */
	unsigned asked, calls;
};

static void give_back(pm_t *pm, unsigned int wanted, void *arg)
{
	struct giver *g = arg;

	frame_t next;

	/* (Atomics: the test's thread sees these through the pmd only,
	 * which a race detector cannot know.) */
	assert_ptr_equal(pm, g->pm);
	__atomic_add_fetch(&g->asked, wanted, __ATOMIC_SEQ_CST);
	next = __atomic_sub_fetch(&g->next, wanted, __ATOMIC_SEQ_CST);
	assert_int_equal(pm_container_deallocate(pm, g->c, next, wanted), 0);
	__atomic_add_fetch(&g->calls, 1, __ATOMIC_SEQ_CST);
}

static void a_task_gives_frames_back_when_asked(void **state)
{
	pm_t *a = test_follower(test_connect(&test_pmd)), *b;
	uint64_t taken0 = test_metric(a, "pmd_reclaim_frames_total{kind=\"taken\"}");
	struct giver g = { .pm = a };
	struct pm_task_stat ts;
	container_t cb;
	uint64_t ms;

	(void)state;
	g.c = fill(a);
	g.next = G + E;
	assert_int_equal(pm_set_reclaim_handler(a, give_back, &g), 0);
	b = newcomer();
	ms = b_allocates(b, &cb, 200);
	/* Given back well before the grace period, and only what was
	 * asked: nothing taken, A's other frames intact. */
	fprintf(stderr, "B's 200 frames came in %lu ms; A was asked for %u "
		"in %u calls\n", (unsigned long)ms,
		__atomic_load_n(&g.asked, __ATOMIC_SEQ_CST),
		__atomic_load_n(&g.calls, __ATOMIC_SEQ_CST));
	assert_true(ms < GRACE_MS);
	assert_int_equal(__atomic_load_n(&g.asked, __ATOMIC_SEQ_CST), 200);
	assert_int_equal(test_metric(a, "pmd_reclaim_frames_total{kind=\"taken\"}"),
			 taken0);
	assert_int_equal(pm_task_stat(a, &ts), 0);
	assert_int_equal(ts.extra_allocated, E - 200);
	intact(a, g.c, 0, __atomic_load_n(&g.next, __ATOMIC_SEQ_CST));
	/* The handler goes: the pmd asks A no more. */
	assert_int_equal(pm_set_reclaim_handler(a, NULL, NULL), 0);
	test_check(a);
	pm_disconnect(b);
	pm_disconnect(a);
}

/* ---- a task the pmd takes frames from ---- */

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_seen;

static void on_sigbus(int sig)
{
	(void)sig;
	bus_seen = 1;
	siglongjmp(bus_jmp, 1);
}

/* Whether a load from p raises SIGBUS. */
static bool load_faults(volatile const uint8_t *p)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	bool faulted;

	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGBUS, &sa, &old), 0);
	bus_seen = 0;
	if (!sigsetjmp(bus_jmp, 1))
		(void)*p;
	faulted = bus_seen;
	sigaction(SIGBUS, &old, NULL);
	return faulted;
}

/* B took n frames from A, which could not or did not give them back:
 * exactly A's first n extra frames are gone (the rule: the newest
 * container first, in frame order), ESTALE everywhere, a mapping of one
 * faults; every other frame is intact; A deallocates and allocates the
 * gone ones again. */
static void check_taken(pm_t *a, container_t c, unsigned n, uint8_t *map)
{
	static uint8_t buf[PM_FRAME_SIZE];
	struct pm_task_stat ts;
	struct pm_container_stat st;
	void *addr;
	int done = 1, granted, err;

	assert_int_equal(pm_task_stat(a, &ts), 0);
	assert_int_equal(ts.extra_allocated, E - n);
	assert_int_equal(ts.allocated, G + E - n);
	assert_int_equal(pm_container_stat(a, c, &st), 0);
	assert_int_equal(st.frames, G + E - n);
	for (frame_t f = G; f < G + n; f++) {
		err = pm_container_read(a, c, f, 0, buf, sizeof(buf));
		assert_int_equal(err, ESTALE);
	}
	assert_int_equal(pm_container_write(a, c, G, 0, buf, 8), ESTALE);
	assert_int_equal(pm_container_map(a, c, G, 1, CONT_MAP_READ, &addr,
					  &granted), ESTALE);
	assert_int_equal(pm_container_copy(a, c, G, c, 0, 1, 0, NULL), ESTALE);
	intact(a, c, 0, G);
	intact(a, c, G + n, G + E);
	/* The mapping made before: the taken frame faults, the next
	 * (kept) one reads its bytes. */
	if (map) {
		test_pattern(G + n, 0, buf);
		assert_true(load_faults(map));
		assert_false(load_faults(map + (size_t)n * PM_FRAME_SIZE));
		assert_memory_equal(map + (size_t)n * PM_FRAME_SIZE, buf, 64);
	}
	/* Deallocated: forgotten (ENOENT after); allocated again (in the
	 * room of a guaranteed frame given up: the node is full): a frame. */
	assert_int_equal(pm_container_deallocate(a, c, G, 1), 0);
	assert_int_equal(pm_container_read(a, c, G, 0, buf, 8), ENOENT);
	assert_int_equal(pm_container_deallocate(a, c, G, 1), ENOENT);
	assert_int_equal(pm_container_deallocate(a, c, 0, 1), 0);
	assert_int_equal(pm_container_allocate(a, c, G, &done, 0), 0);
	assert_int_equal(pm_container_read(a, c, G, 0, buf, 8), 0);
	assert_int_equal(pm_container_deallocate(a, c, G, n), 0);
	test_check(a);
}

static void without_a_handler_extra_frames_go_at_once(void **state)
{
	pm_t *a = test_follower(test_connect(&test_pmd)), *b;
	uint64_t taken0 = test_metric(a, "pmd_reclaim_frames_total{kind=\"taken\"}");
	container_t c, cb;
	void *map;
	uint64_t ms;
	int granted;

	(void)state;
	c = fill(a);
	/* A maps the first extra frames and the one after them. */
	assert_int_equal(pm_container_map(a, c, G, 101, CONT_MAP_READ, &map,
					  &granted), 0);
	b = newcomer();
	ms = b_allocates(b, &cb, 100);
	fprintf(stderr, "B's 100 frames came in %lu ms (nobody to ask)\n",
		(unsigned long)ms);
	assert_true(ms < GRACE_MS);
	assert_int_equal(test_metric(a, "pmd_reclaim_frames_total{kind=\"taken\"}"),
			 taken0 + 100);
	check_taken(a, c, 100, map);
	assert_int_equal(pm_container_unmap(a, map, 101), 0);
	assert_int_equal(test_log_grep(&test_pmd, "it has no reclaim handler") >=
			 1, 1);
	test_check(b);
	pm_disconnect(b);
	pm_disconnect(a);
}

static void ignore(pm_t *pm, unsigned int wanted, void *arg)
{
	unsigned *asked = arg;

	(void)pm;
	__atomic_add_fetch(asked, wanted, __ATOMIC_SEQ_CST);
}

static void a_task_that_does_not_give_back_loses_them_after_the_grace(
	void **state)
{
	pm_t *a = test_follower(test_connect(&test_pmd)), *b;
	unsigned asked = 0;
	container_t c, cb;
	uint64_t ms;

	(void)state;
	c = fill(a);
	assert_int_equal(pm_set_reclaim_handler(a, ignore, &asked), 0);
	b = newcomer();
	ms = b_allocates(b, &cb, 50);
	fprintf(stderr, "B's 50 frames came in %lu ms (grace %u ms)\n",
		(unsigned long)ms, GRACE_MS);
	assert_true(ms + 50 >= GRACE_MS);
	assert_int_equal(__atomic_load_n(&asked, __ATOMIC_SEQ_CST), 50);
	check_taken(a, c, 50, NULL);
	assert_true(test_log_grep(&test_pmd, "did not give them back in time")
		    >= 1);
	pm_disconnect(b);
	pm_disconnect(a);
}

/* Guaranteed frames are never taken: with every extra frame of the node
 * in a locked container (the pmd moves nothing under a lock), B's
 * allocation answers ENOMEM after two rounds, and A loses nothing. */
static void frames_under_a_lock_are_not_taken(void **state)
{
	pm_t *a = test_connect(&test_pmd), *b, *s;
	container_t c, cb, ref;
	pm_cap_token_t tok;
	pm_task_t sid;
	int done = 10;
	uint64_t t0;

	(void)state;
	c = fill(a);
	s = test_connect(&test_pmd);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &ref), 0);
	assert_int_equal(pm_cap_export(a, ref, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(pm_container_lock(s, ref, 8000), 0);
	b = newcomer();
	assert_int_equal(pm_container_create(b, &cb), 0);
	t0 = test_ms_now();
	assert_int_equal(pm_container_allocate(b, cb, 0, &done, 0), ENOMEM);
	fprintf(stderr, "ENOMEM after %lu ms\n", (unsigned long)(test_ms_now() - t0));
	assert_int_equal(pm_container_unlock(s, ref), 0);
	intact(a, c, 0, G + E);
	test_check(a);
	pm_disconnect(s);
	pm_disconnect(b);
	pm_disconnect(a);
}

/* ---- frames that cost memory only once used ---- */

/* The node's resident frames, as the kernel counts its segments' pages. */
static uint64_t resident(pm_t *pm)
{
	return test_metric(pm, "pmd_frames{state=\"resident\"}");
}

static void frames_cost_memory_only_once_used(void **state)
{
	static uint8_t buf[PM_FRAME_SIZE];
	pm_t *a = test_connect(&test_pmd);
	uint64_t r0 = resident(a), r;
	container_t c;
	int n = G, granted;
	uint8_t *m;

	(void)state;
	/* 256 frames allocated: no memory yet. */
	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	r = resident(a);
	fprintf(stderr, "resident frames: %lu before, %lu after allocating "
		"%u\n", (unsigned long)r0, (unsigned long)r, G);
	assert_true(r < r0 + 8);
	/* 10 written through the pmd: 10 frames of memory. */
	memset(buf, 0x5a, sizeof(buf));
	for (frame_t f = 0; f < 10; f++)
		assert_int_equal(pm_container_write(a, c, f, 0, buf,
						    sizeof(buf)), 0);
	r = resident(a);
	assert_true(r >= r0 + 10 && r < r0 + 18);
	/* A map of 100 makes them resident before the task may touch
	 * them; what was written is there, the rest reads zeros. */
	assert_int_equal(pm_container_map(a, c, 0, 100, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m,
					  &granted), 0);
	r = resident(a);
	assert_true(r >= r0 + 100 && r < r0 + 108);
	assert_int_equal(m[9 * PM_FRAME_SIZE], 0x5a);
	assert_int_equal(m[10 * PM_FRAME_SIZE], 0);
	m[99 * PM_FRAME_SIZE + 1] = 7;
	assert_int_equal(pm_container_read(a, c, 99, 1, buf, 1), 0);
	assert_int_equal(buf[0], 7);
	/* A read of a frame never written reads zeros. */
	assert_int_equal(pm_container_read(a, c, 200, 0, buf, 8), 0);
	assert_memory_equal(buf, "\0\0\0\0\0\0\0\0", 8);
	assert_int_equal(pm_container_unmap(a, m, 100), 0);
	/* Deallocated: their memory goes back. */
	assert_int_equal(pm_container_deallocate(a, c, 0, G), 0);
	r = resident(a);
	assert_true(r < r0 + 8);
	test_check(a);
	pm_disconnect(a);
}

/* ---- the backing store ---- */

#define SG 1024u  /* each task's guarantee: the node's memory */

static char store_dir[] = "/tmp/pmd-store-XXXXXX";
static char store_path[300];

/* A pmd of 1024 frames of memory, a guarantee of `guarantee` frames a
 * task, and a store of `size` made for it. */
static void store_pmd_of(struct pmd_proc *p, const char *guarantee,
			 const char *size)
{
	strcpy(store_dir, "/tmp/pmd-store-XXXXXX");
	assert_non_null(mkdtemp(store_dir));
	snprintf(store_path, sizeof(store_path), "%s/store", store_dir);
	pmd_proc_start(p, (const char *const[]){ "--memory", "4M",
		"--guarantee", guarantee, "--extra", "0", "--backing-store",
		store_path, "--backing-size", size, "--reclaim-grace-ms", "50",
		NULL });
}

/* The same with a store of 2048 frames that guarantees may reserve
 * (and the 64 kept for page-ins), each task the node's memory. */
static void store_pmd(struct pmd_proc *p)
{
	store_pmd_of(p, "1024", "8448K");
}

static void store_gone(struct pmd_proc *p)
{
	pmd_proc_stop(p);
	unlink(store_path);
	rmdir(store_dir);
}

/* store_pmd with two tasks, each holding a container of the node's
 * memory (SG frames, patterns of round 0): at least `out` frames of the
 * older, c[0], are in the store. */
static void store_two_filled(struct pmd_proc *p, pm_t *t[2],
			     container_t c[2], uint64_t out)
{
	struct pm_container_stat st;

	store_pmd(p);
	for (int i = 0; i < 2; i++) {
		t[i] = test_follower(test_connect(p));
		c[i] = test_fill(t[i], SG, 0);
	}
	assert_int_equal(pm_container_stat(t[0], c[0], &st), 0);
	assert_true(st.swapped >= out);
}

/* The accounting checked, the tasks gone, then the pmd and its store. */
static void store_two_gone(struct pmd_proc *p, pm_t *t[2])
{
	for (int i = 0; i < 2; i++) {
		test_check(t[i]);
		pm_disconnect(t[i]);
	}
	store_gone(p);
}

/* Admission counts the store: three tasks get a guarantee of the whole
 * memory each, and all their frames hold their bytes, read, written,
 * mapped and copied, while the pmd pages the coldest out to the store
 * and back (a thread storing into mapped frames meanwhile loses
 * nothing). */
static void guaranteed_frames_go_to_the_backing_store(void **state)
{
	static uint8_t want[PM_FRAME_SIZE];
	struct pmd_proc p;
	pm_t *t[3], *late;
	container_t c[3];
	struct pm_task_stat ts;
	struct pm_container_stat st;
	struct test_storer *w;
	uint64_t swapped = 0;
	int granted;
	uint8_t *m;

	(void)state;
	store_pmd(&p);
	for (int i = 0; i < 3; i++) {
		t[i] = test_follower(test_connect(&p));
		assert_int_equal(pm_task_stat(t[i], &ts), 0);
		assert_int_equal(ts.guaranteed, SG);
	}
	late = test_connect(&p);
	assert_int_equal(pm_task_stat(late, &ts), 0);
	assert_int_equal(ts.guaranteed, 0); /* memory and store reserved */
	pm_disconnect(late);
	/* 3072 frames on a node of 1024: two thirds of them in the store. */
	for (int i = 0; i < 3; i++)
		c[i] = test_fill(t[i], SG, 0);
	for (int i = 0; i < 3; i++) {
		test_intact(t[i], c[i], 0, SG, 0);
		assert_int_equal(pm_container_stat(t[i], c[i], &st), 0);
		assert_int_equal(st.frames, SG);
		swapped += st.swapped;
	}
	fprintf(stderr, "3 x %u frames: %lu in the store, %lu written, %lu "
		"read\n", SG, (unsigned long)swapped,
		(unsigned long)test_metric(t[0], "pmd_store_io_total{op=\"write\"}"),
		(unsigned long)test_metric(t[0], "pmd_store_io_total{op=\"read\"}"));
	assert_true(swapped >= 2 * SG);
	assert_int_equal(test_metric(t[0], "pmd_store_frames{state=\"used\"}"),
			 swapped);
	/* Task 0 maps its first 64 frames (they come back from the store)
	 * and stores into 16 of them while task 1 maps 256 of its frames
	 * in turns (each comes back, others go out, task 0's too). */
	assert_int_equal(pm_container_map(t[0], c[0], 0, 64, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m,
					  &granted), 0);
	test_pattern(5, 0, want);
	assert_memory_equal(m + 5 * PM_FRAME_SIZE + 8, want + 8, 64);
	w = test_storer_start(m, 16);
	for (frame_t f = 0; f < 256; f += 64) {
		uint64_t t0 = test_ms_now();
		void *m1;

		error_t err = pm_container_map(t[1], c[1], f, 64,
					       CONT_MAP_READ, &m1, &granted);
		if (err)
			fprintf(stderr, "map of frames %lu..: %s\n",
				(unsigned long)f, strerror(err));
		assert_int_equal(err, 0);
		test_pattern(f + 63, 0, want);
		assert_memory_equal((uint8_t *)m1 + 63 * PM_FRAME_SIZE, want,
				    PM_FRAME_SIZE);
		assert_int_equal(pm_container_unmap(t[1], m1, 64), 0);
		fprintf(stderr, "task 1 mapped frames %lu-%lu in %lu ms\n",
			(unsigned long)f, (unsigned long)f + 63,
			(unsigned long)(test_ms_now() - t0));
	}
	test_storer_end(w, t[0], c[0]);
	/* A frame in the store copied, written through the pmd. */
	assert_int_equal(pm_container_copy(t[2], c[2], 7, c[2], 8, 1, 0, NULL),
			 0);
	test_pattern(7, 0, want);
	assert_int_equal(pm_container_read(t[2], c[2], 8, 0, want + 1, 1), 0);
	assert_int_equal(want[1], want[0]);
	test_pattern(8, 0, want);
	assert_int_equal(pm_container_write(t[2], c[2], 8, 0, want,
					    PM_FRAME_SIZE), 0);
	test_intact(t[2], c[2], 0, SG, 0);
	test_intact(t[1], c[1], 0, SG, 0);
	for (int i = 0; i < 3; i++) {
		test_check(t[i]);
		pm_disconnect(t[i]);
	}
	late = test_connect(&p);
	for (int i = 0; i < 300 && test_check(late).tasks != 1; i++)
		usleep(10000);
	assert_int_equal(test_metric(late, "pmd_store_frames{state=\"used\"}"),
			 0);
	pm_disconnect(late);
	store_gone(&p);
}

/* A page-in that needs room pages out more than it needs, so that the
 * page-ins after it find room at once: 32 maps of frames in the store,
 * one at a time, start a few reclaim rounds, not one each; every frame
 * comes back with its bytes, at the address the fast path gives it (the
 * same map again, which sends no message, answers the same: no range of
 * its own was made). */
static void page_ins_find_room_made_ahead(void **state)
{
	static uint8_t want[PM_FRAME_SIZE];
	struct pmd_proc p;
	pm_t *t[2];
	container_t c[2];
	uint64_t rounds0, rounds;

	(void)state;
	store_two_filled(&p, t, c, 32); /* the older container went out */
	rounds0 = test_metric(t[0], "pmd_reclaim_rounds_total");
	for (frame_t f = 0; f < 32; f++) {
		uint8_t *m, *again;

		assert_int_equal(pm_container_map(t[0], c[0], f, 1,
						  CONT_MAP_READ, (void **)&m,
						  NULL), 0);
		test_pattern(f, 0, want);
		assert_memory_equal(m, want, PM_FRAME_SIZE);
		assert_int_equal(pm_container_map(t[0], c[0], f, 1,
						  CONT_MAP_READ,
						  (void **)&again, NULL), 0);
		assert_ptr_equal(again, m);
		assert_int_equal(pm_container_unmap(t[0], again, 1), 0);
		assert_int_equal(pm_container_unmap(t[0], m, 1), 0);
	}
	rounds = test_metric(t[0], "pmd_reclaim_rounds_total") - rounds0;
	fprintf(stderr, "32 page-ins: %lu reclaim rounds\n",
		(unsigned long)rounds);
	assert_true(rounds <= 4);
	test_intact(t[1], c[1], 0, SG, 0);
	store_two_gone(&p, t);
}

/* Pages of the store file the kernel's page cache holds now. */
static size_t store_cached_pages(void)
{
	int fd = open(store_path, O_RDONLY | O_CLOEXEC);
	off_t size = lseek(fd, 0, SEEK_END);
	size_t pages = (size_t)size / PM_FRAME_SIZE, n = 0;
	unsigned char *vec = calloc(pages, 1);
	void *m;

	assert_true(fd >= 0 && size > 0);
	assert_non_null(vec);
	m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mincore(m, (size_t)size, vec), 0);
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	munmap(m, (size_t)size);
	free(vec);
	close(fd);
	return n;
}

/* The store's page cache written back and dropped; false when the
 * kernel keeps it all the same (a store on tmpfs, whose pages are the
 * file). */
static bool store_cache_dropped(void)
{
	int fd = open(store_path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
	return store_cached_pages() == 0;
}

/* A frame in the store is read at once when the store's page cache holds
 * it, through the ring (asynchronously, from the device) when it does
 * not: reads that leave it there and maps that bring it home give the
 * same bytes either way, and the metrics tell the two apart. */
static void store_reads_with_and_without_the_page_cache(void **state)
{
	static uint8_t want[PM_FRAME_SIZE], got[PM_FRAME_SIZE];
	struct pmd_proc p;
	uint64_t reads0, cached0, reads, cached;
	pm_t *t[2];
	container_t c[2];

	(void)state;
	store_two_filled(&p, t, c, 64); /* the older container went out */
	/* Just written, the store's pages are in its cache. */
	reads0 = test_metric(t[0], "pmd_store_io_total{op=\"read\"}");
	cached0 = test_metric(t[0], "pmd_store_reads_cached_total");
	for (frame_t f = 0; f < 16; f++) {
		assert_int_equal(pm_container_read(t[0], c[0], f, 0, got,
						   sizeof(got)), 0);
		test_pattern(f, 0, want);
		assert_memory_equal(got, want, PM_FRAME_SIZE);
	}
	reads = test_metric(t[0], "pmd_store_io_total{op=\"read\"}") - reads0;
	cached = test_metric(t[0], "pmd_store_reads_cached_total") - cached0;
	fprintf(stderr, "16 reads of frames in the store: %lu read, %lu of "
		"them from its page cache\n", (unsigned long)reads,
		(unsigned long)cached);
	assert_int_equal(reads, 16);
	assert_int_equal(cached, 16);
	/* Then from the device: the cache dropped, 8 reads and 8 maps
	 * (page-ins); once more with the next 16 frames if the cache held
	 * them all the same (something brought the pages back meanwhile),
	 * at most three times. */
	reads = cached = 0;
	for (frame_t from = 16; from < 64 && reads == cached; from += 16) {
		if (!store_cache_dropped()) {
			fprintf(stderr, "the kernel keeps the store's pages "
				"after POSIX_FADV_DONTNEED (%zu cached; tmpfs?): "
				"reads through the ring not checked\n",
				store_cached_pages());
			break;
		}
		reads0 = test_metric(t[0], "pmd_store_io_total{op=\"read\"}");
		cached0 = test_metric(t[0], "pmd_store_reads_cached_total");
		for (frame_t f = from; f < from + 16; f++) {
			uint8_t *m;

			test_pattern(f, 0, want);
			if (f < from + 8) {
				assert_int_equal(pm_container_read(t[0], c[0],
					f, 0, got, sizeof(got)), 0);
				assert_memory_equal(got, want, PM_FRAME_SIZE);
				continue;
			}
			assert_int_equal(pm_container_map(t[0], c[0], f, 1,
							  CONT_MAP_READ,
							  (void **)&m, NULL), 0);
			assert_memory_equal(m, want, PM_FRAME_SIZE);
			assert_int_equal(pm_container_unmap(t[0], m, 1), 0);
		}
		reads = test_metric(t[0],
				    "pmd_store_io_total{op=\"read\"}") - reads0;
		cached = test_metric(t[0], "pmd_store_reads_cached_total") -
			 cached0;
		fprintf(stderr, "the cache dropped, 8 reads and 8 page-ins "
			"from frame %u: %lu read, %lu of them from the page "
			"cache (the kernel reads ahead)\n", (unsigned)from,
			(unsigned long)reads, (unsigned long)cached);
		assert_true(reads >= 16);
	}
	if (reads)
		assert_true(reads - cached >= 1);
	assert_int_equal(test_metric(t[0], "pmd_store_io_total{op=\"failed\"}"),
			 0);
	test_intact(t[0], c[0], 0, SG, 0);
	test_intact(t[1], c[1], 0, SG, 0);
	store_two_gone(&p, t);
}

/* Frames [from, to) of c read as zeros. */
static void all_zero(pm_t *pm, container_t c, frame_t from, frame_t to)
{
	static uint8_t zero[PM_FRAME_SIZE], got[PM_FRAME_SIZE];

	for (frame_t f = from; f < to; f++) {
		memset(got, 0xa5, sizeof(got));
		assert_int_equal(pm_container_read(pm, c, f, 0, got,
						   sizeof(got)), 0);
		if (memcmp(got, zero, sizeof(got))) {
			fprintf(stderr, "frame %lu: not zeros\n",
				(unsigned long)f);
			fail();
		}
	}
}

/* One guaranteed allocation larger than the node's memory: what does
 * not fit is born in the store, zeros even in slots that held other
 * frames before, and holds what is written through the pmd and through
 * a mapping. */
static void born_in_the_store(struct pmd_proc *p)
{
	enum { N = 3000 }; /* memory 1024, store 2112 (64 kept) */
	static uint8_t want[PM_FRAME_SIZE];
	struct pm_container_stat st;
	container_t c;
	uint8_t *m;
	int n, granted;
	pm_t *t;

	t = test_follower(test_connect(p));
	for (int round = 0; round < 2; round++) {
		uint64_t t0 = test_ms_now();

		assert_int_equal(pm_container_create(t, &c), 0);
		n = N;
		assert_int_equal(pm_container_allocate(t, c, 0, &n, 0), 0);
		assert_int_equal(n, N);
		assert_int_equal(pm_container_stat(t, c, &st), 0);
		fprintf(stderr, "round %d: %d frames allocated in %lu ms, "
			"%lu here, %lu in the store\n", round, N,
			(unsigned long)(test_ms_now() - t0),
			(unsigned long)st.resident,
			(unsigned long)st.swapped);
		assert_int_equal(st.frames, N);
		assert_true(st.swapped >= N - 1024);
		assert_int_equal(st.resident + st.swapped, N);
		/* (Round 1: the store's slots held round 0's bytes.) */
		all_zero(t, c, 0, N);
		for (frame_t f = 0; f < N; f++) {
			test_pattern(f, (uint32_t)round, want);
			assert_int_equal(pm_container_write(t, c, f, 0, want,
							    sizeof(want)), 0);
		}
		test_intact(t, c, 0, N, (uint32_t)round);
		/* The last frames, from the store, mapped and stored to. */
		assert_int_equal(pm_container_map(t, c, N - 16, 16,
						  CONT_MAP_READ |
						  CONT_MAP_WRITE,
						  (void **)&m, &granted), 0);
		test_pattern(N - 1, (uint32_t)round, want);
		assert_memory_equal(m + 15 * PM_FRAME_SIZE, want,
				    PM_FRAME_SIZE);
		m[15 * PM_FRAME_SIZE] ^= 0xff;
		assert_int_equal(pm_container_unmap(t, m, 16), 0);
		assert_int_equal(pm_container_read(t, c, N - 1, 0, want + 1,
						   1), 0);
		assert_int_equal(want[1], want[0] ^ 0xff);
		test_check(t);
		assert_int_equal(pm_container_destroy(t, c), 0);
	}
	test_check(t);
	assert_int_equal(test_metric(t, "pmd_store_frames{state=\"used\"}"),
			 0);
	assert_int_equal(test_metric(t, "pmd_store_io_total{op=\"failed\"}"),
			 0);
	fprintf(stderr, "the store: %lu frames read, %lu of them from its "
		"page cache\n",
		(unsigned long)test_metric(t, "pmd_store_io_total{op=\"read\"}"),
		(unsigned long)test_metric(t, "pmd_store_reads_cached_total"));
	pm_disconnect(t);
}

static void an_allocation_larger_than_memory_is_born_in_the_store(
	void **state)
{
	struct pmd_proc p;

	(void)state;
	store_pmd_of(&p, "3000", "8448K");
	born_in_the_store(&p);
	store_gone(&p);
}

/* A loop device over a file of `bytes` in store_dir (store_path), gone
 * with its last close; its descriptor, or -1 after saying why not. */
static int loop_device(off_t bytes, char *dev, size_t devlen)
{
	struct loop_config cfg = { .info.lo_flags = LO_FLAGS_AUTOCLEAR };
	int ctl, fd, lfd = -1;

	strcpy(store_dir, "/tmp/pmd-store-XXXXXX");
	assert_non_null(mkdtemp(store_dir));
	snprintf(store_path, sizeof(store_path), "%s/device", store_dir);
	fd = open(store_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, bytes), 0);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		fprintf(stderr, "/dev/loop-control: %s\n", strerror(errno));
	/* (Another process may take the free one first: try again.) */
	for (int i = 0; ctl >= 0 && lfd < 0 && i < 8; i++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);

		if (n < 0) {
			fprintf(stderr, "LOOP_CTL_GET_FREE: %s\n",
				strerror(errno));
			break;
		}
		snprintf(dev, devlen, "/dev/loop%d", n);
		lfd = open(dev, O_RDWR | O_CLOEXEC);
		cfg.fd = (uint32_t)fd;
		if (lfd >= 0 && ioctl(lfd, LOOP_CONFIGURE, &cfg) < 0) {
			fprintf(stderr, "%s: LOOP_CONFIGURE: %s\n", dev,
				strerror(errno));
			close(lfd);
			lfd = -1;
		}
	}
	if (ctl >= 0)
		close(ctl);
	close(fd);
	if (lfd < 0) {
		unlink(store_path);
		rmdir(store_dir);
	}
	return lfd;
}

/* A block device as the store (a loop device the test makes): used at
 * its full size, or at a smaller --backing-size, never a larger one;
 * frames born there read zeros (a range zeroed on the device, or
 * discarded) even where other frames were, and every frame comes back
 * with its bytes. Needs root. */
static void a_block_device_serves_as_the_store(void **state)
{
	char dev[64], err[4096];
	struct pmd_proc p;
	int lfd;

	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "skipped: a loop device needs root\n");
		skip();
	}
	lfd = loop_device(8448 * 1024, dev, sizeof(dev));
	if (lfd < 0) {
		fprintf(stderr, "skipped: no loop device could be made\n");
		skip();
	}
	assert_int_not_equal(pmd_run_to_exit((const char *[]){
		"--backing-store", dev, "--backing-size", "9M", NULL },
		err, sizeof(err)), 0);
	assert_non_null(strstr(err, "a device is not extended"));
	pmd_proc_start(&p, (const char *const[]){ "--memory", "4M",
		"--guarantee", "3000", "--extra", "0", "--backing-store", dev,
		"--reclaim-grace-ms", "50", NULL });
	born_in_the_store(&p);
	pmd_proc_stop(&p);
	/* A part of it: 1024 frames, too few for that guarantee, which
	 * admission cuts to memory and store less the 64 kept. */
	pmd_proc_start(&p, (const char *const[]){ "--memory", "4M",
		"--guarantee", "2048", "--extra", "0", "--backing-store", dev,
		"--backing-size", "4M", NULL });
	{
		pm_t *t = test_connect(&p);
		struct pm_task_stat ts;

		assert_int_equal(pm_task_stat(t, &ts), 0);
		fprintf(stderr, "a store of 1024 frames (64 kept): a "
			"guarantee of %lu\n", (unsigned long)ts.guaranteed);
		assert_int_equal(ts.guaranteed, 1024 + 1024 - 64);
		assert_int_equal(test_metric(t, "pmd_store_frames{state=\"total\"}"),
				 1024);
		pm_disconnect(t);
	}
	pmd_proc_stop(&p);
	close(lfd);
	unlink(store_path);
	rmdir(store_dir);
}

struct filler {
	pm_t *pm;
	container_t c;
	uint32_t frames;
	bool stop;                    /* atomic */
	unsigned maps;
	error_t err;
};

/* Maps the filler's frames in turn: those in the store come home, and
 * as many go out. */
static void *filler_main(void *arg)
{
	struct filler *fl = arg;

	for (uint32_t k = 0; !__atomic_load_n(&fl->stop, __ATOMIC_RELAXED) &&
	     !fl->err; k++) {
		frame_t f = (frame_t)((k * 37u) % fl->frames);
		void *m;

		fl->err = pm_container_map(fl->pm, fl->c, f, 1, CONT_MAP_READ,
					   &m, NULL);
		if (!fl->err) {
			if (((volatile uint8_t *)m)[0] != (uint8_t)(f + 1))
				fl->err = EBADMSG;
			fl->err = fl->err ? fl->err
					  : pm_container_unmap(fl->pm, m, 1);
		}
		fl->maps++;
	}
	return NULL;
}

/* The model's walk with memory at 3x overcommit over a backing store: a
 * task holds three times the node's memory (most born in the store in
 * one allocation, each frame then written) and maps its frames in turn,
 * so that they come home and others go out, while the owner and server
 * of the walk map, write, copy, move, lock and unshare; every mapping
 * and the pmd agree with the model after every step, and every frame of
 * the filler holds its byte. */
static void the_model_walk_over_a_backing_store(void **state)
{
	/* (Static: should the walk fail, the filler thread, never joined,
	 * must not go on reading a stack frame that the next test reuses.) */
	static struct filler fl;
	struct pmd_proc p;
	pthread_t th;
	pm_t *o, *s;
	int n;

	(void)state;
	fl = (struct filler){ .frames = 3 * 1024 };
	store_pmd_of(&p, "3072", "16M");
	fl.pm = test_follower(test_connect(&p));
	assert_int_equal(pm_container_create(fl.pm, &fl.c), 0);
	n = (int)fl.frames;
	assert_int_equal(pm_container_allocate(fl.pm, fl.c, 0, &n, 0), 0);
	for (frame_t f = 0; f < fl.frames; f++) {
		uint8_t b = (uint8_t)(f + 1);
		assert_int_equal(pm_container_write(fl.pm, fl.c, f, 0, &b, 1),
				 0);
	}
	o = test_follower(test_connect(&p));
	s = test_follower(test_connect(&p));
	assert_int_equal(pthread_create(&th, NULL, filler_main, &fl), 0);
	test_walk_paged(true);
	test_walk(o, s, 150, 0);
	test_walk_paged(false);
	__atomic_store_n(&fl.stop, true, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	fprintf(stderr, "%u maps of the filler, %lu frames paged out, %lu in "
		"the store\n", fl.maps,
		(unsigned long)test_metric(o, "pmd_reclaim_frames_total{kind=\"paged\"}"),
		(unsigned long)test_metric(o, "pmd_store_frames{state=\"used\"}"));
	assert_int_equal(fl.err, 0);
	assert_true(test_metric(o, "pmd_reclaim_frames_total{kind=\"paged\"}")
		    > 0);
	for (frame_t f = 0; f < fl.frames; f += 97) {
		uint8_t b;
		assert_int_equal(pm_container_read(fl.pm, fl.c, f, 0, &b, 1),
				 0);
		assert_int_equal(b, (uint8_t)(f + 1));
	}
	test_check(o);
	pm_disconnect(s);
	pm_disconnect(o);
	pm_disconnect(fl.pm);
	store_gone(&p);
}

static void the_backing_store_options_refuse_bad_input(void **state)
{
	char err[4096], path[300], empty[300];
	int fd;

	(void)state;
	strcpy(store_dir, "/tmp/pmd-store-XXXXXX");
	assert_non_null(mkdtemp(store_dir));
	snprintf(path, sizeof(path), "%s/none", store_dir);
	snprintf(empty, sizeof(empty), "%s/empty", store_dir);
	fd = open(empty, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_not_equal(pmd_run_to_exit((const char *[]){
		"--backing-size", "8M", NULL }, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "--backing-store"));
	assert_int_not_equal(pmd_run_to_exit((const char *[]){
		"--backing-store", path, NULL }, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "--backing-size SIZE creates it"));
	assert_int_not_equal(pmd_run_to_exit((const char *[]){
		"--backing-store", path, "--backing-size", "5000", NULL },
		err, sizeof(err)), 0);
	assert_non_null(strstr(err, "whole 4K frames"));
	assert_int_not_equal(pmd_run_to_exit((const char *[]){
		"--backing-store", empty, NULL }, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "smaller than one frame"));
	assert_int_not_equal(pmd_run_to_exit((const char *[]){
		"--backing-store", store_dir, NULL }, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "Is a directory"));
	/* Nothing was made of the missing one. */
	assert_int_equal(access(path, F_OK), -1);
	unlink(empty);
	rmdir(store_dir);
}

/* ---- bad input ---- */

static void the_handler_request_refuses_bad_input(void **state)
{
	struct pm_hello_req hello = { .version = PM_PROTO_VERSION };
	struct pm_reclaim_handler_req rq = { .on = 1 };
	struct pm_hello_rep hrep;
	int fd = test_raw_connect(&test_pmd);
	pm_t *plain;

	(void)state;
	assert_int_equal(test_raw_call(fd, PM_MSG_HELLO, &hello, sizeof(hello),
				       &hrep, sizeof(hrep)), PM_ST_OK);
	/* No fault session: nobody would hear RECLAIM. */
	assert_int_equal(test_raw_call(fd, PM_MSG_RECLAIM_HANDLER, &rq,
				       sizeof(rq), NULL, 0), PM_ST_UNSUPPORTED);
	rq = (struct pm_reclaim_handler_req){ .on = 2 };
	assert_int_equal(test_raw_call(fd, PM_MSG_RECLAIM_HANDLER, &rq,
				       sizeof(rq), NULL, 0), PM_ST_BAD_MESSAGE);
	rq = (struct pm_reclaim_handler_req){ .on = 0, .pad = 1 };
	assert_int_equal(test_raw_call(fd, PM_MSG_RECLAIM_HANDLER, &rq,
				       sizeof(rq), NULL, 0), PM_ST_BAD_MESSAGE);
	assert_int_equal(test_raw_call(fd, PM_MSG_RECLAIM_HANDLER, &rq, 4,
				       NULL, 0), PM_ST_BAD_MESSAGE);
	rq.pad = 0;
	assert_int_equal(test_raw_call(fd, PM_MSG_RECLAIM_HANDLER, &rq,
				       sizeof(rq), NULL, 0), PM_ST_OK);
	close(fd);
	/* The library without a fault session says so. */
	setenv("PM_NO_USERFAULTFD", "1", 1);
	plain = test_connect(&test_pmd);
	unsetenv("PM_NO_USERFAULTFD");
	assert_int_equal(pm_set_reclaim_handler(plain, ignore, NULL),
			 EOPNOTSUPP);
	assert_int_equal(pm_set_reclaim_handler(NULL, ignore, NULL), EINVAL);
	assert_int_equal(pm_set_reclaim_handler(plain, NULL, NULL), 0);
	test_check(plain);
	pm_disconnect(plain);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(a_task_gives_frames_back_when_asked,
					  test_clean_teardown),
		cmocka_unit_test_teardown(
			without_a_handler_extra_frames_go_at_once,
			test_clean_teardown),
		cmocka_unit_test_teardown(
			a_task_that_does_not_give_back_loses_them_after_the_grace,
			test_clean_teardown),
		cmocka_unit_test_teardown(frames_under_a_lock_are_not_taken,
					  test_clean_teardown),
		cmocka_unit_test_teardown(the_handler_request_refuses_bad_input,
					  test_clean_teardown),
		cmocka_unit_test_teardown(frames_cost_memory_only_once_used,
					  test_clean_teardown),
		cmocka_unit_test(guaranteed_frames_go_to_the_backing_store),
		cmocka_unit_test(page_ins_find_room_made_ahead),
		cmocka_unit_test(store_reads_with_and_without_the_page_cache),
		cmocka_unit_test(an_allocation_larger_than_memory_is_born_in_the_store),
		cmocka_unit_test(a_block_device_serves_as_the_store),
		cmocka_unit_test(the_model_walk_over_a_backing_store),
		cmocka_unit_test(the_backing_store_options_refuse_bad_input),
	};
	test_pmd_args = (const char *const[]){ "--memory", "4M",
		"--guarantee", "256", "--extra", "1024",
		"--reclaim-grace-ms", "1500", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
