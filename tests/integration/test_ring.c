/*
 * The request ring (pm_proto.h, RING; docs/design.md, "The request
 * ring"), with a real pmd of 1024 frames, 256 guaranteed to each task:
 * requests go through it by default and not with PM_NO_RING=1; threads
 * of one session have several requests in flight, every byte checked;
 * a request that parks (a guaranteed allocation waiting for reclaim)
 * holds up nothing else of its session; a task killed with requests in
 * its ring (running and parked) leaves nothing behind and takes nothing
 * from others; a task waiting in the ring on a pmd that dies hears
 * ECONNRESET; and whatever a task writes into its ring (bad framing,
 * types the ring does not carry, slots and counters scribbled) gets an
 * error or closes that session, never more.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pm_proto.h"

#define G 256u
#define E (1024u - G)
#define GRACE_MS 1500u

static uint64_t ring_requests(pm_t *pm)
{
	return test_metric(pm, "pmd_ring_requests_total");
}

/* ---- requests go through the ring, by default ---- */

static void requests_go_through_the_ring(void **state)
{
	pm_t *pm = test_connect(&test_pmd), *ns;
	struct pm_task_stat ts;
	uint64_t before, after;

	(void)state;
	before = ring_requests(pm);
	for (int i = 0; i < 100; i++)
		assert_int_equal(pm_task_stat(pm, &ts), 0);
	after = ring_requests(pm);
	assert_true(after - before >= 100);

	/* PM_NO_RING=1: none. */
	setenv("PM_NO_RING", "1", 1);
	ns = test_connect(&test_pmd);
	unsetenv("PM_NO_RING");
	before = ring_requests(pm);
	for (int i = 0; i < 100; i++)
		assert_int_equal(pm_task_stat(ns, &ts), 0);
	assert_int_equal(ring_requests(pm), before);
	pm_disconnect(ns);
	pm_disconnect(pm);
}

/* ---- maps through the pmd: the ring when they bring no descriptor ---- */

static void maps_go_through_the_ring_when_they_can(void **state)
{
	pm_t *pm, *chk = test_connect(&test_pmd);
	uint8_t out[PM_FRAME_SIZE], *m;
	uint64_t before, after;
	container_t c;
	int n = 64;

	(void)state;
	setenv("PM_NO_FASTPATH", "1", 1); /* every map asks the pmd */
	pm = test_connect(&test_pmd);
	unsetenv("PM_NO_FASTPATH");
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	for (frame_t f = 0; f < 64; f++) {
		test_pattern(f, 3, out);
		assert_int_equal(pm_container_write(pm, c, f, 0, out,
						    sizeof(out)), 0);
	}
	/* The first map brings the view and the segment: the socket. */
	assert_int_equal(pm_container_map(pm, c, 0, 64, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m, NULL),
			 0);
	assert_int_equal(pm_container_unmap(pm, m, 64), 0);
	/* Then maps of frames in that segment: the ring, every byte the
	 * frame's, stores through them in the frames. */
	before = ring_requests(chk);
	for (frame_t f = 0; f < 64; f++) {
		assert_int_equal(pm_container_map(pm, c, f, 1, CONT_MAP_READ |
						  CONT_MAP_WRITE, (void **)&m,
						  NULL), 0);
		test_pattern(f, 3, out);
		assert_memory_equal(m, out, sizeof(out));
		m[5] = (uint8_t)(f + 1);
		assert_int_equal(pm_container_unmap(pm, m, 1), 0);
	}
	after = ring_requests(chk);
	assert_true(after - before >= 64);
	for (frame_t f = 0; f < 64; f++) {
		assert_int_equal(pm_container_read(pm, c, f, 5, out, 1), 0);
		assert_int_equal(out[0], (uint8_t)(f + 1));
	}
	test_check(chk);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	pm_disconnect(pm);
	pm_disconnect(chk);
}

/* ---- several in flight: threads of one session ---- */

#define THREADS 12 /* more than the ring's slots: some use the socket */
#define ROUNDS 300

struct worker {
	pm_t *pm;
	container_t c;
	frame_t first;     /* its own 4 frames */
	int failed;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	static __thread uint8_t out[4 * PM_FRAME_SIZE], in[4 * PM_FRAME_SIZE];

	for (uint32_t r = 0; r < ROUNDS && !w->failed; r++) {
		size_t len = (r % 4 + 1) * PM_FRAME_SIZE - r % 97;
		struct pm_task_stat ts;

		for (size_t i = 0; i < len; i++)
			out[i] = (uint8_t)(w->first * 31 + r * 7 + i);
		if (pm_container_write(w->pm, w->c, w->first, r % 97, out,
				       len) ||
		    pm_container_read(w->pm, w->c, w->first, r % 97, in, len) ||
		    memcmp(in, out, len) || pm_task_stat(w->pm, &ts))
			w->failed = 1;
	}
	return NULL;
}

static void threads_have_several_requests_in_flight(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	struct worker w[THREADS];
	pthread_t th[THREADS];
	container_t c;
	int n = THREADS * 4;

	(void)state;
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .pm = pm, .c = c, .first = 4u * i };
		assert_int_equal(pthread_create(&th[i], NULL, worker_run,
						&w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failed, 0);
	}
	test_check(pm);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	pm_disconnect(pm);
}

/* ---- a request that parks holds up nothing else ---- */

static void ignore(pm_t *pm, unsigned int frames, void *arg)
{
	(void)pm;
	(void)frames;
	(void)arg;
}

struct parked {
	pm_t *pm;
	container_t c;
	error_t err;
	uint64_t done_ms;
};

/* A guaranteed allocation that only reclaim can give: it parks until
 * the grace period ends. */
static void *allocate_parked(void *arg)
{
	struct parked *p = arg;
	int n = 16;

	p->err = pm_container_allocate(p->pm, p->c, 0, &n, 0);
	p->done_ms = test_ms_now();
	return NULL;
}

static void a_parked_request_holds_up_nothing_else(void **state)
{
	pm_t *a = test_connect(&test_pmd), *b;
	struct parked p;
	struct pm_task_stat ts;
	uint64_t t0, stats_ms;
	pthread_t th;
	container_t ca;

	(void)state;
	/* A fills the node with extra frames, then B connects. */
	ca = test_fill(a, G, E);
	assert_int_equal(pm_set_reclaim_handler(a, ignore, NULL), 0);
	b = test_connect(&test_pmd);
	p = (struct parked){ .pm = b };
	assert_int_equal(pm_container_create(b, &p.c), 0);
	t0 = test_ms_now();
	assert_int_equal(pthread_create(&th, NULL, allocate_parked, &p), 0);
	usleep(100000); /* it is parked by now */
	/* The same session's other requests run meanwhile. */
	for (int i = 0; i < 200; i++)
		assert_int_equal(pm_task_stat(b, &ts), 0);
	stats_ms = test_ms_now();
	pthread_join(th, NULL);
	assert_int_equal(p.err, 0);
	assert_true(stats_ms - t0 < GRACE_MS / 2);
	assert_true(p.done_ms - t0 >= GRACE_MS - 50);
	test_check(a);
	(void)ca;
	pm_disconnect(b);
	pm_disconnect(a);
}

/* ---- a task killed with requests in its ring ---- */

static void child_hammers(const struct pmd_proc *p)
{
	pm_t *pm = test_connect(p);
	struct worker w[THREADS];
	pthread_t th[THREADS];
	container_t c;
	int n = THREADS * 4;

	if (pm_container_create(pm, &c) ||
	    pm_container_allocate(pm, c, 0, &n, 0))
		_exit(2);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .pm = pm, .c = c, .first = 4u * i };
		pthread_create(&th[i], NULL, worker_run, &w[i]);
	}
	for (;;)
		pause();
}

static void child_parks(const struct pmd_proc *p)
{
	pm_t *pm = test_connect(p);
	struct parked q = { .pm = pm };
	struct pm_task_stat ts;
	pthread_t th;

	if (pm_container_create(pm, &q.c))
		_exit(2);
	pthread_create(&th, NULL, allocate_parked, &q);
	for (;;)
		pm_task_stat(pm, &ts);
}

static void a_task_killed_with_requests_in_its_ring(void **state)
{
	pm_t *a;
	struct pm_task_stat ts;
	container_t ca;
	pid_t child;
	int status;

	(void)state;
	/* Busy threads, killed mid-request. */
	for (int k = 0; k < 5; k++) {
		child = fork();
		assert_true(child >= 0);
		if (child == 0)
			child_hammers(&test_pmd);
		usleep(100000 + 50000 * (useconds_t)k);
		assert_int_equal(kill(child, SIGKILL), 0);
		assert_int_equal(waitpid(child, &status, 0), child);
		assert_true(WIFSIGNALED(status));
	}
	test_clean(&test_pmd);

	/* A request parked for reclaim, killed: nobody needs A's frames any
	 * more, and none is taken, even after the grace period. */
	a = test_connect(&test_pmd);
	ca = test_fill(a, G, E);
	assert_int_equal(pm_set_reclaim_handler(a, ignore, NULL), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0)
		child_parks(&test_pmd);
	usleep(300000);
	assert_int_equal(kill(child, SIGKILL), 0);
	assert_int_equal(waitpid(child, &status, 0), child);
	usleep((GRACE_MS + 500) * 1000);
	assert_int_equal(pm_task_stat(a, &ts), 0);
	assert_int_equal(ts.extra_allocated, E);
	test_intact(a, ca, 0, G + E, 0);
	test_check(a);
	assert_int_equal(pm_container_destroy(a, ca), 0);
	pm_disconnect(a);
}

/* ---- a pmd that dies under a waiting request ---- */

static void a_pmd_that_dies_answers_econnreset(void **state)
{
	static const char *const args[] = { "--memory", "4M", "--guarantee",
		"256", "--extra", "1024", "--reclaim-grace-ms", "60000", NULL };
	struct pmd_proc p = { 0 };
	pm_t *a, *b;
	struct parked q;
	pthread_t th;
	uint64_t t0;
	char cmd[400];

	(void)state;
	pmd_proc_start(&p, args);
	a = test_connect(&p);
	test_fill(a, G, E);
	assert_int_equal(pm_set_reclaim_handler(a, ignore, NULL), 0);
	b = test_connect(&p);
	q = (struct parked){ .pm = b };
	assert_int_equal(pm_container_create(b, &q.c), 0);
	assert_int_equal(pthread_create(&th, NULL, allocate_parked, &q), 0);
	usleep(200000);
	t0 = test_ms_now();
	assert_int_equal(kill(p.pid, SIGKILL), 0);
	waitpid(p.pid, NULL, 0);
	pthread_join(th, NULL);
	assert_int_equal(q.err, ECONNRESET);
	assert_true(test_ms_now() - t0 < 2000);
	pm_disconnect(b);
	pm_disconnect(a);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p.dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- whatever a task writes into its ring ---- */

struct raw_ring {
	int fd;                      /* the session */
	struct pm_ring_hdr *hdr;
	struct pm_ring_slot *slots;
	uint8_t *win[PM_RING_SLOTS];
	int bell;
};

/* A bare session with HELLO done, RING asked with req: the status; the
 * ring mapped into r when OK. */
static uint32_t raw_ring_open(const struct pmd_proc *p, struct raw_ring *r,
			      const struct pm_ring_req *req, bool hello)
{
	struct pm_hello_req hr = { .version = PM_PROTO_VERSION };
	struct pm_hello_rep hp;
	uint8_t buf[256] __attribute__((aligned(8)));
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)buf;
	const struct pm_reply *rep = (const struct pm_reply *)(h + 1);
	union {
		char b[CMSG_SPACE(sizeof(int) * (2 + PM_RING_SLOTS))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.b,
			      .msg_controllen = sizeof(ctl.b) };
	int fds[2 + PM_RING_SLOTS];
	struct cmsghdr *c;
	void *m;

	memset(r, 0, sizeof(*r));
	r->fd = test_raw_connect(p);
	if (hello)
		assert_int_equal(test_raw_call(r->fd, PM_MSG_HELLO, &hr,
					       sizeof(hr), &hp, sizeof(hp)),
				 PM_ST_OK);
	pm_msg_hdr_init(h, PM_MSG_RING, sizeof(*h) + sizeof(*req), 9);
	memcpy(h + 1, req, sizeof(*req));
	assert_int_equal(send(r->fd, buf, sizeof(*h) + sizeof(*req), 0),
			 (ssize_t)(sizeof(*h) + sizeof(*req)));
	assert_true(recvmsg(r->fd, &msg, MSG_CMSG_CLOEXEC) >=
		    (ssize_t)PM_REPLY_HDR);
	assert_int_equal(h->type, PM_MSG_RING | PM_MSG_REPLY);
	c = CMSG_FIRSTHDR(&msg);
	if (rep->status != PM_ST_OK) {
		assert_null(c);
		return rep->status;
	}
	assert_non_null(c);
	assert_int_equal(c->cmsg_len, CMSG_LEN(sizeof(fds)));
	memcpy(fds, CMSG_DATA(c), sizeof(fds));
	m = mmap(NULL, PM_RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
		 fds[0], 0);
	assert_true(m != MAP_FAILED);
	/* Sealed: the task cannot shrink it under the pmd. */
	assert_int_equal(ftruncate(fds[0], 4096), -1);
	r->hdr = m;
	r->slots = (struct pm_ring_slot *)((uint8_t *)m + 4096);
	r->bell = fds[1];
	for (uint32_t i = 0; i < PM_RING_SLOTS; i++) {
		r->win[i] = mmap(NULL, PM_IO_MAX, PROT_READ | PROT_WRITE,
				 MAP_SHARED, fds[2 + i], 0);
		assert_true(r->win[i] != MAP_FAILED);
		close(fds[2 + i]);
	}
	close(fds[0]);
	return PM_ST_OK;
}

static void raw_ring_close(struct raw_ring *r)
{
	if (r->hdr) {
		munmap(r->hdr, PM_RING_BYTES);
		for (uint32_t i = 0; i < PM_RING_SLOTS; i++)
			munmap(r->win[i], PM_IO_MAX);
		close(r->bell);
	}
	close(r->fd);
}

/* Puts a message of len bytes (header first; msg NULL: the slot's as it
 * is) into slot i, submits it and rings the doorbell. */
static void raw_submit(struct raw_ring *r, uint32_t i, const void *msg,
		       uint32_t len)
{
	uint64_t one = 1;

	if (msg)
		memcpy(r->slots[i].msg, msg, len);
	r->slots[i].len = len;
	__atomic_store_n(&r->slots[i].state, PM_RING_SUBMITTED,
			 __ATOMIC_RELEASE);
	__atomic_add_fetch(&r->hdr->submitted, 1, __ATOMIC_SEQ_CST);
	assert_int_equal(write(r->bell, &one, sizeof(one)), sizeof(one));
}

static void raw_submit_bell(struct raw_ring *r)
{
	uint64_t one = 1;

	assert_int_equal(write(r->bell, &one, sizeof(one)), sizeof(one));
}

/* A request of type with body in slot i: the wire status of its answer
 * (within 5 s). */
static uint32_t raw_ring_call(struct raw_ring *r, uint32_t i, uint16_t type,
			      const void *body, uint32_t len)
{
	uint8_t buf[512] __attribute__((aligned(8)));
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)buf;
	const struct pm_msg_hdr *rh = (const struct pm_msg_hdr *)
				      r->slots[i].msg;
	const struct pm_reply *rep = (const struct pm_reply *)(rh + 1);

	pm_msg_hdr_init(h, type, (uint32_t)sizeof(*h) + len, 1000 + i);
	if (len)
		memcpy(h + 1, body, len);
	raw_submit(r, i, buf, (uint32_t)sizeof(*h) + len);
	for (int k = 0; k < 5000; k++) {
		if (__atomic_load_n(&r->slots[i].state, __ATOMIC_ACQUIRE) ==
		    PM_RING_DONE)
			break;
		usleep(1000);
	}
	assert_int_equal(r->slots[i].state, PM_RING_DONE);
	assert_int_equal(rh->type, type | PM_MSG_REPLY);
	assert_int_equal(rh->seq, 1000 + i);
	assert_int_equal(r->slots[i].len, rh->length);
	r->slots[i].state = PM_RING_FREE;
	return rep->status;
}

/* Whether the pmd closed the session (within 5 s). */
static bool raw_closed(struct raw_ring *r)
{
	char b;

	for (int k = 0; k < 500; k++) {
		ssize_t n = recv(r->fd, &b, 1, MSG_DONTWAIT);
		if (n == 0)
			return true;
		usleep(10000);
	}
	return false;
}

/* Requests in every slot at once, one doorbell: each answered, with no
 * submission after it to make the pmd look again. */
static void every_slot_submitted_at_once_is_answered(void **state)
{
	struct pm_ring_req ok = { .slots = PM_RING_SLOTS };
	struct raw_ring r;

	(void)state;
	assert_int_equal(raw_ring_open(&test_pmd, &r, &ok, true), PM_ST_OK);
	for (int round = 0; round < 50; round++) {
		uint32_t first = (uint32_t)round % PM_RING_SLOTS;
		uint32_t n = 2 + (uint32_t)round % (PM_RING_SLOTS - 1);

		for (uint32_t k = 0; k < n; k++) {
			uint32_t i = (first + k) % PM_RING_SLOTS;
			struct pm_msg_hdr *h = (struct pm_msg_hdr *)
					       r.slots[i].msg;

			pm_msg_hdr_init(h, PM_MSG_TASK_STAT, sizeof(*h), i);
			r.slots[i].len = sizeof(*h);
			__atomic_store_n(&r.slots[i].state, PM_RING_SUBMITTED,
					 __ATOMIC_RELEASE);
		}
		__atomic_add_fetch(&r.hdr->submitted, n, __ATOMIC_SEQ_CST);
		raw_submit_bell(&r);
		for (uint32_t k = 0; k < n; k++) {
			uint32_t i = (first + k) % PM_RING_SLOTS;

			for (int t = 0; t < 2000 &&
			     __atomic_load_n(&r.slots[i].state,
					     __ATOMIC_ACQUIRE) != PM_RING_DONE;
			     t++)
				usleep(1000);
			assert_int_equal(r.slots[i].state, PM_RING_DONE);
			r.slots[i].state = PM_RING_FREE;
		}
	}
	raw_ring_close(&r);
}

static void the_ring_refuses_bad_input(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	struct pm_ring_req ok = { .slots = PM_RING_SLOTS };
	struct pm_ring_req bad_slots = { .slots = 4 };
	struct pm_ring_req bad_pad = { .slots = PM_RING_SLOTS, .pad = 1 };
	struct pm_handle_req hr = { .handle = 12345 };
	struct pm_map_req mr = { 0 };
	struct pm_token tok = { 0 };
	struct pm_task_stat ts;
	struct raw_ring r;
	uint8_t junk[64];

	(void)state;
	/* RING itself. */
	assert_int_equal(raw_ring_open(&test_pmd, &r, &ok, false),
			 PM_ST_BAD_MESSAGE); /* no HELLO */
	raw_ring_close(&r);
	assert_int_equal(raw_ring_open(&test_pmd, &r, &bad_slots, true),
			 PM_ST_BAD_ARGUMENT);
	raw_ring_close(&r);
	assert_int_equal(raw_ring_open(&test_pmd, &r, &bad_pad, true),
			 PM_ST_BAD_ARGUMENT);
	raw_ring_close(&r);
	assert_int_equal(raw_ring_open(&test_pmd, &r, &ok, true), PM_ST_OK);
	assert_int_equal(test_raw_call(r.fd, PM_MSG_RING, &ok, sizeof(ok),
				       NULL, 0), PM_ST_FRAME_EXISTS);

	/* Requests: good, refused, sent back to the socket. */
	assert_int_equal(raw_ring_call(&r, 0, PM_MSG_TASK_STAT, NULL, 0),
			 PM_ST_OK);
	assert_int_equal(raw_ring_call(&r, 1, PM_MSG_STAT, &hr, sizeof(hr)),
			 PM_ST_BAD_HANDLE);
	assert_int_equal(raw_ring_call(&r, 2, PM_MSG_MAP, &mr, sizeof(mr)),
			 PM_ST_BAD_HANDLE);
	assert_int_equal(raw_ring_call(&r, 3, PM_MSG_RING, &ok, sizeof(ok)),
			 PM_ST_BAD_MESSAGE);
	assert_int_equal(raw_ring_call(&r, 4, PM_MSG_IMPORT, &tok,
				       sizeof(tok)), PM_ST_USE_SOCKET);
	assert_int_equal(raw_ring_call(&r, 5, PM_MSG_STAT, &hr, 3),
			 PM_ST_BAD_MESSAGE); /* the wrong size */
	assert_int_equal(raw_ring_call(&r, 6, 999, NULL, 0),
			 PM_ST_BAD_MESSAGE); /* no such type */
	/* Scribbles: states the pmd does not look for, a count that jumps
	 * about; then a good request still works. */
	for (uint32_t i = 0; i < PM_RING_SLOTS; i++)
		r.slots[i].state = 77 + i;
	r.hdr->submitted += 12345;
	r.hdr->armed = 5;
	r.hdr->pmd_cpu = 3;
	usleep(20000);
	r.slots[7].state = PM_RING_FREE;
	assert_int_equal(raw_ring_call(&r, 7, PM_MSG_TASK_STAT, NULL, 0),
			 PM_ST_OK);
	raw_ring_close(&r);

	/* Requests submitted again and again while the pmd may be writing
	 * their answers there: whatever it answers (or, if the slot holds
	 * garbage when it looks, closing the session), others go on. */
	assert_int_equal(raw_ring_open(&test_pmd, &r, &ok, true), PM_ST_OK);
	for (int k = 0; k < 200; k++) {
		struct pm_msg_hdr h;

		pm_msg_hdr_init(&h, PM_MSG_TASK_STAT, sizeof(h), 1);
		raw_submit(&r, 5, &h, sizeof(h));
		raw_submit(&r, 6, NULL, sizeof(h));
	}
	usleep(100000);
	raw_ring_close(&r);
	assert_int_equal(pm_task_stat(pm, &ts), 0);

	/* Bad framing closes that session, and only it. */
	for (int k = 0; k < 3; k++) {
		struct pm_msg_hdr *h = (struct pm_msg_hdr *)junk;

		assert_int_equal(raw_ring_open(&test_pmd, &r, &ok, true),
				 PM_ST_OK);
		pm_msg_hdr_init(h, PM_MSG_TASK_STAT, sizeof(*h), 1);
		if (k == 0)
			h->magic ^= 1;
		else if (k == 1)
			h->length = 40; /* not the length in the slot */
		if (k < 2)
			raw_submit(&r, 0, junk, sizeof(*h));
		else /* a length beyond the slot */
			raw_submit(&r, 1, NULL, PM_RING_SLOT_BYTES);
		assert_true(raw_closed(&r));
		raw_ring_close(&r);
		assert_int_equal(pm_task_stat(pm, &ts), 0);
	}
	test_check(pm);
	pm_disconnect(pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(requests_go_through_the_ring,
					  test_clean_teardown),
		cmocka_unit_test_teardown(
			maps_go_through_the_ring_when_they_can,
			test_clean_teardown),
		cmocka_unit_test_teardown(
			threads_have_several_requests_in_flight,
			test_clean_teardown),
		cmocka_unit_test_teardown(
			a_parked_request_holds_up_nothing_else,
			test_clean_teardown),
		cmocka_unit_test_teardown(
			a_task_killed_with_requests_in_its_ring,
			test_clean_teardown),
		cmocka_unit_test_teardown(
			every_slot_submitted_at_once_is_answered,
			test_clean_teardown),
		cmocka_unit_test_teardown(the_ring_refuses_bad_input,
					  test_clean_teardown),
		cmocka_unit_test(a_pmd_that_dies_answers_econnreset),
	};
	test_pmd_args = (const char *const[]){ "--memory", "4M",
		"--guarantee", "256", "--extra", "1024",
		"--reclaim-grace-ms", "1500", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
