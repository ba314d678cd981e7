/*
 * Bad input on the task socket: garbage, truncated and oversized messages,
 * wrong magic or version, unknown types, descriptors sent to the pmd, a
 * task that does not read its replies, tasks killed mid-request, a task
 * that truncates the segment descriptors it was given, one that asks
 * for more metadata than a task may hold, a user over its session limit,
 * and a pmd out of descriptors. After each,
 * the pmd still serves, its accounting holds and nothing is left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "pm_proto.h"

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	strcpy(sa.sun_path, test_pmd.socket);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Waits for one reply; returns its size, 0 when the pmd closed us. */
static ssize_t raw_reply(int fd, void *buf, size_t len)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&p, 1, 5000), 1);
	return recv(fd, buf, len, 0);
}

static void raw_hello(int fd)
{
	struct {
		struct pm_msg_hdr h;
		struct pm_hello_req b;
	} m = { .b = { .version = PM_PROTO_VERSION } };
	uint8_t rep[256];

	pm_msg_hdr_init(&m.h, PM_MSG_HELLO, sizeof(m), 1);
	assert_int_equal(send(fd, &m, sizeof(m), 0), sizeof(m));
	assert_true(raw_reply(fd, rep, sizeof(rep)) >= (ssize_t)PM_REPLY_HDR);
	assert_int_equal(((struct pm_reply *)(rep + 16))->status, PM_ST_OK);
}

/* The pmd serves a fresh session and its books balance, with no task but
 * the checker's left. */
static void check_still_serving(void)
{
	pm_t *pm;
	container_t c;
	int count = 4;

	test_clean(&test_pmd);
	pm = test_connect(&test_pmd);
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), 0);
	assert_int_equal(pm_container_write(pm, c, 0, 0, "ok", 2), 0);
	pm_disconnect(pm);
}

static void garbage_closes_the_session(void **state)
{
	static const size_t sizes[] = { 1, 7, 15, 16, 17, 100, 4096 };
	uint8_t junk[4096], rep[64];

	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 131 + 17);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int fd = raw_connect();
		assert_int_equal(send(fd, junk, sizes[i], 0), (ssize_t)sizes[i]);
		assert_int_equal(raw_reply(fd, rep, sizeof(rep)), 0);
		close(fd);
	}
	check_still_serving();
}

static void framing_errors_close_the_session(void **state)
{
	struct {
		struct pm_msg_hdr h;
		struct pm_hello_req b;
	} m;
	uint8_t rep[64];
	int fd;

	/* Wrong magic, wrong version, length that lies either way. */
	for (int variant = 0; variant < 4; variant++) {
		memset(&m, 0, sizeof(m));
		m.b.version = PM_PROTO_VERSION;
		pm_msg_hdr_init(&m.h, PM_MSG_HELLO, sizeof(m), 1);
		if (variant == 0)
			m.h.magic ^= 1;
		if (variant == 1)
			m.h.version = 99;
		if (variant == 2)
			m.h.length = sizeof(m) + 8;
		if (variant == 3)
			m.h.length = sizeof(m) - 8;
		fd = raw_connect();
		assert_int_equal(send(fd, &m, sizeof(m), 0), sizeof(m));
		assert_int_equal(raw_reply(fd, rep, sizeof(rep)), 0);
		close(fd);
	}
	/* A datagram larger than any message. */
	uint8_t *big = calloc(1, PM_MSG_MAX + 100);
	assert_non_null(big);
	pm_msg_hdr_init((struct pm_msg_hdr *)big, PM_MSG_WRITE, PM_MSG_MAX + 100, 1);
	fd = raw_connect();
	assert_int_equal(send(fd, big, PM_MSG_MAX + 100, 0), PM_MSG_MAX + 100);
	assert_int_equal(raw_reply(fd, rep, sizeof(rep)), 0);
	close(fd);
	free(big);
	check_still_serving();
}

static void bad_requests_get_error_replies(void **state)
{
	uint8_t msg[256], rep[256];
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)msg;
	const struct pm_reply *r = (const struct pm_reply *)(rep + 16);
	int fd = raw_connect();
	ssize_t n;

	/* Before HELLO, anything else is refused but the session stays. */
	pm_msg_hdr_init(h, PM_MSG_CREATE, 16, 7);
	assert_int_equal(send(fd, msg, 16, 0), 16);
	n = raw_reply(fd, rep, sizeof(rep));
	assert_int_equal(n, PM_REPLY_HDR);
	assert_int_equal(((struct pm_msg_hdr *)rep)->seq, 7);
	assert_int_equal(r->status, PM_ST_BAD_MESSAGE);
	raw_hello(fd);

	/* Unknown types, a reply type, wrong body sizes, a second HELLO. */
	const struct { uint16_t type; uint32_t body; uint32_t status; } cases[] = {
		{ 0, 0, PM_ST_BAD_MESSAGE },
		{ PM_MSG_TYPE_MAX, 0, PM_ST_BAD_MESSAGE },
		{ 999, 8, PM_ST_BAD_MESSAGE },
		/* (the pmd's own messages to a library, never requests) */
		{ PM_MSG_UNSHARED, 8, PM_ST_BAD_MESSAGE },
		{ PM_MSG_RECLAIM, 8, PM_ST_BAD_MESSAGE },
		{ PM_MSG_CREATE | PM_MSG_REPLY, 0, PM_ST_BAD_MESSAGE },
		{ PM_MSG_CREATE, 8, PM_ST_BAD_MESSAGE },
		{ PM_MSG_ALLOCATE, 8, PM_ST_BAD_MESSAGE },
		{ PM_MSG_ALLOCATE, 25, PM_ST_BAD_MESSAGE },
		{ PM_MSG_READ, 31, PM_ST_BAD_MESSAGE },
		{ PM_MSG_WRITE, 40, PM_ST_BAD_MESSAGE }, /* len 0 vs 8 bytes */
		{ PM_MSG_HELLO, 8, PM_ST_BAD_MESSAGE },
		{ PM_MSG_DESTROY, 8, PM_ST_BAD_HANDLE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(msg, 0, sizeof(msg));
		pm_msg_hdr_init(h, cases[i].type, 16 + cases[i].body, 100 + (uint32_t)i);
		assert_int_equal(send(fd, msg, 16 + cases[i].body, 0),
				 16 + cases[i].body);
		n = raw_reply(fd, rep, sizeof(rep));
		assert_true(n >= (ssize_t)PM_REPLY_HDR);
		assert_int_equal(((struct pm_msg_hdr *)rep)->seq, 100 + i);
		assert_int_equal(r->status, cases[i].status);
	}
	close(fd);
	check_still_serving();
}

/* One request on a raw session: its reply's status and culprit, and up
 * to len bytes of its body into body. */
static struct pm_reply raw_call(int fd, uint16_t type, const void *req,
				uint32_t req_len, void *body, size_t len)
{
	static uint32_t seq = 1000;
	uint8_t msg[256], rep[256];
	struct pm_reply r;
	ssize_t n;

	assert_true(req_len <= sizeof(msg) - sizeof(struct pm_msg_hdr));
	pm_msg_hdr_init((struct pm_msg_hdr *)msg, type,
			(uint32_t)sizeof(struct pm_msg_hdr) + req_len, ++seq);
	if (req_len)
		memcpy(msg + sizeof(struct pm_msg_hdr), req, req_len);
	assert_int_equal(send(fd, msg, sizeof(struct pm_msg_hdr) + req_len, 0),
			 (ssize_t)(sizeof(struct pm_msg_hdr) + req_len));
	n = raw_reply(fd, rep, sizeof(rep));
	assert_true(n >= (ssize_t)PM_REPLY_HDR);
	memcpy(&r, rep + sizeof(struct pm_msg_hdr), sizeof(r));
	if (body)
		memcpy(body, rep + PM_REPLY_HDR,
		       len < n - PM_REPLY_HDR ? len : n - PM_REPLY_HDR);
	return r;
}

/* The wire says what kind of failure it was: a forged token is
 * BAD_TOKEN and a revoked capability REVOKED (the library gives both the
 * API's errno: EINVAL, ESTALE), not a bad argument or a lost frame. */
static void revoked_and_forged_have_their_statuses(void **state)
{
	struct {
		struct pm_msg_hdr h;
		struct pm_hello_req b;
	} m = { .b = { .version = PM_PROTO_VERSION } };
	uint8_t rep[256];
	struct pm_hello_rep hello;
	struct pm_handle_rep ref;
	struct pm_token forged;
	pm_cap_token_t tok;
	pm_t *o = test_connect(&test_pmd);
	container_t c, weak;
	int fd = raw_connect(), n = 1;

	(void)state;
	pm_msg_hdr_init(&m.h, PM_MSG_HELLO, sizeof(m), 1);
	assert_int_equal(send(fd, &m, sizeof(m), 0), sizeof(m));
	assert_true(raw_reply(fd, rep, sizeof(rep)) >=
		    (ssize_t)(PM_REPLY_HDR + sizeof(hello)));
	memcpy(&hello, rep + PM_REPLY_HDR, sizeof(hello));
	assert_int_equal(pm_container_create(o, &c), 0);
	assert_int_equal(pm_container_allocate(o, c, 0, &n, 0), 0);
	assert_int_equal(pm_container_share(o, c, hello.task, &weak), 0);
	assert_int_equal(pm_cap_export(o, weak, &tok), 0);
	static_assert(sizeof(forged) == sizeof(tok), "token size");
	memcpy(&forged, &tok, sizeof(forged));
	forged.bytes[20] ^= 1;
	assert_int_equal(raw_call(fd, PM_MSG_IMPORT, &forged, sizeof(forged),
				  NULL, 0).status, PM_ST_BAD_TOKEN);
	assert_int_equal(raw_call(fd, PM_MSG_IMPORT, &tok, sizeof(tok), &ref,
				  sizeof(ref)).status, PM_ST_OK);
	assert_int_equal(pm_container_unshare(o, c, hello.task), 0);
	struct pm_io_req io = { .handle = ref.handle, .len = 1 };
	assert_int_equal(raw_call(fd, PM_MSG_READ, &io, sizeof(io), NULL,
				  0).status, PM_ST_REVOKED);
	close(fd);
	pm_disconnect(o);
}

/* A reply names its culprit as the public call's argument, counted from
 * 1 without the session: pm_container_map(pm, container, start,
 * nr_frames, flags, ...)'s flags are argument 4. */
static void replies_name_the_culprit_argument(void **state)
{
	struct pm_handle_rep h;
	struct pm_alloc_req alloc;
	struct pm_map_req map;
	struct pm_io_req io;
	struct pm_policy_req pol;
	struct pm_handle_req href;
	struct pm_copy_req copy;
	struct pm_token tok = { .bytes = { 1, 2, 3 } };
	struct pm_reply r;
	int fd = raw_connect();

	raw_hello(fd);
	r = raw_call(fd, PM_MSG_CREATE, NULL, 0, &h, sizeof(h));
	assert_int_equal(r.status, PM_ST_OK);
	alloc = (struct pm_alloc_req){ .handle = h.handle, .count = 2 };
	assert_int_equal(raw_call(fd, PM_MSG_ALLOCATE, &alloc, sizeof(alloc),
				  NULL, 0).status, PM_ST_OK);

	alloc.flags = 0x80;
	r = raw_call(fd, PM_MSG_ALLOCATE, &alloc, sizeof(alloc), NULL, 0);
	assert_int_equal(r.status, PM_ST_BAD_ARGUMENT);
	assert_int_equal(r.arg, 4); /* (container, start, count, flags) */
	map = (struct pm_map_req){ .handle = h.handle, .count = 1 };
	r = raw_call(fd, PM_MSG_MAP, &map, sizeof(map), NULL, 0);
	assert_int_equal(r.status, PM_ST_BAD_ARGUMENT);
	assert_int_equal(r.arg, 4); /* (container, start, nr_frames, flags) */
	map = (struct pm_map_req){ .handle = h.handle, .flags = CONT_MAP_READ };
	r = raw_call(fd, PM_MSG_MAP, &map, sizeof(map), NULL, 0);
	assert_int_equal(r.arg, 3);
	io = (struct pm_io_req){ .handle = h.handle };
	r = raw_call(fd, PM_MSG_READ, &io, sizeof(io), NULL, 0);
	assert_int_equal(r.status, PM_ST_BAD_ARGUMENT);
	assert_int_equal(r.arg, 5); /* (container, frame, offset, buf, len) */
	pol = (struct pm_policy_req){ .handle = h.handle, .policy = 99 };
	r = raw_call(fd, PM_MSG_SET_POLICY, &pol, sizeof(pol), NULL, 0);
	assert_int_equal(r.status, PM_ST_BAD_ARGUMENT);
	assert_int_equal(r.arg, 2); /* (container, policy, node) */
	pol = (struct pm_policy_req){ .handle = h.handle,
				      .policy = PM_PLACE_NODE, .node = 77 };
	r = raw_call(fd, PM_MSG_SET_POLICY, &pol, sizeof(pol), NULL, 0);
	assert_int_equal(r.status, PM_ST_NODE_DOWN);
	assert_int_equal(r.arg, 3);
	href = (struct pm_handle_req){ .handle = h.handle };
	r = raw_call(fd, PM_MSG_EXPORT, &href, sizeof(href), NULL, 0);
	assert_int_equal(r.status, PM_ST_NO_RIGHT);
	assert_int_equal(r.arg, 1); /* (ref, token): the owner's ref */
	r = raw_call(fd, PM_MSG_IMPORT, &tok, sizeof(tok), NULL, 0);
	assert_int_equal(r.status, PM_ST_BAD_TOKEN); /* (EINVAL to the API) */
	assert_int_equal(r.arg, 1); /* (token, ref) */
	copy = (struct pm_copy_req){ .src = h.handle, .dst = h.handle + 1,
				     .count = 1 };
	r = raw_call(fd, PM_MSG_COPY, &copy, sizeof(copy), NULL, 0);
	assert_int_equal(r.status, PM_ST_BAD_HANDLE);
	assert_int_equal(r.arg, 3); /* (src, src_start, dst, ...) */
	copy.dst = h.handle;
	copy.flags = 1;
	r = raw_call(fd, PM_MSG_COPY, &copy, sizeof(copy), NULL, 0);
	assert_int_equal(r.arg, 6);
	/* A missing frame is named by the culprit frame, no argument. */
	io = (struct pm_io_req){ .handle = h.handle, .frame = 1,
				 .offset = PM_FRAME_SIZE, .len = 1 };
	r = raw_call(fd, PM_MSG_READ, &io, sizeof(io), NULL, 0);
	assert_int_equal(r.status, PM_ST_NO_FRAME);
	assert_int_equal(r.arg, 0);
	assert_int_equal(r.culprit, 2);
	close(fd);
	check_still_serving();
}

/* The I/O window: only with one, sealed against resizing, one a
 * session; reads and writes give the same bytes with it or without. */
static void io_window_misuse(void **state)
{
	uint8_t msg[128], rep[256];
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)msg;
	struct pm_io_req *q = (struct pm_io_req *)(h + 1);
	const struct pm_reply *r = (const struct pm_reply *)(rep + 16);
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = rep, .iov_len = sizeof(rep) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	int fd = raw_connect(), wfd = -1;
	struct cmsghdr *c;

	raw_hello(fd);
	/* No window yet; unknown flags; bytes inline with the window flag. */
	const struct { uint16_t type; uint32_t flags; uint32_t body; } bad[] = {
		{ PM_MSG_READ, PM_IO_WINDOW, sizeof(*q) },
		{ PM_MSG_WRITE, PM_IO_WINDOW, sizeof(*q) },
		{ PM_MSG_READ, 0x2, sizeof(*q) },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(msg, 0, sizeof(msg));
		pm_msg_hdr_init(h, bad[i].type, 16 + bad[i].body, 10 + (uint32_t)i);
		q->len = 1;
		q->flags = bad[i].flags;
		assert_int_equal(send(fd, msg, 16 + bad[i].body, 0),
				 16 + bad[i].body);
		assert_true(raw_reply(fd, rep, sizeof(rep)) >= (ssize_t)PM_REPLY_HDR);
		assert_int_equal(r->status, PM_ST_BAD_MESSAGE);
	}
	pm_msg_hdr_init(h, PM_MSG_WINDOW, 16, 20);
	assert_int_equal(send(fd, msg, 16, 0), 16);
	assert_int_equal(recvmsg(fd, &mh, 0),
			 PM_REPLY_HDR + sizeof(struct pm_window_rep));
	assert_int_equal(r->status, PM_ST_OK);
	c = CMSG_FIRSTHDR(&mh);
	assert_non_null(c);
	memcpy(&wfd, CMSG_DATA(c), sizeof(wfd));
	assert_int_equal(ftruncate(wfd, 0), -1); /* sealed */
	assert_int_equal(errno, EPERM);
	close(wfd);
	assert_int_equal(send(fd, msg, 16, 0), 16);
	assert_true(raw_reply(fd, rep, sizeof(rep)) >= (ssize_t)PM_REPLY_HDR);
	assert_int_equal(r->status, pm_errno_to_status(EEXIST));
	memset(msg, 0, sizeof(msg));
	pm_msg_hdr_init(h, PM_MSG_WRITE, 16 + sizeof(*q) + 8, 21);
	q->len = 8;
	q->flags = PM_IO_WINDOW;
	assert_int_equal(send(fd, msg, 16 + sizeof(*q) + 8, 0),
			 16 + sizeof(*q) + 8);
	assert_true(raw_reply(fd, rep, sizeof(rep)) >= (ssize_t)PM_REPLY_HDR);
	assert_int_equal(r->status, PM_ST_BAD_MESSAGE);
	close(fd);

	/* The same bytes either way, every size around the window's. */
	setenv("PM_NO_WINDOW", "1", 1);
	pm_t *nw = test_connect(&test_pmd);
	unsetenv("PM_NO_WINDOW");
	pm_t *w = test_connect(&test_pmd);
	static uint8_t src[3 * 65536], got[3 * 65536];
	const size_t lens[] = { 1, 4095, 65535, 65536, 65537, 3 * 65536 - 9 };
	container_t cw, cn;
	int n = 64, m = 64;

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 29 + 5);
	assert_int_equal(pm_container_create(w, &cw), 0);
	assert_int_equal(pm_container_allocate(w, cw, 0, &n, 0), 0);
	assert_int_equal(pm_container_create(nw, &cn), 0);
	assert_int_equal(pm_container_allocate(nw, cn, 0, &m, 0), 0);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		assert_int_equal(pm_container_write(w, cw, 1, 7, src, lens[i]), 0);
		assert_int_equal(pm_container_write(nw, cn, 1, 7, src, lens[i]), 0);
		memset(got, 0, sizeof(got));
		assert_int_equal(pm_container_read(nw, cn, 1, 7, got, lens[i]), 0);
		assert_memory_equal(got, src, lens[i]);
		memset(got, 0, sizeof(got));
		assert_int_equal(pm_container_read(w, cw, 1, 7, got, lens[i]), 0);
		assert_memory_equal(got, src, lens[i]);
	}
	pm_disconnect(w);
	pm_disconnect(nw);
	check_still_serving();
}

static int count_fds(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void descriptors_sent_to_pmd_are_closed(void **state)
{
	int fd = raw_connect(), pass[4];
	struct {
		struct pm_msg_hdr h;
		struct pm_hello_req b;
	} m = { .b = { .version = PM_PROTO_VERSION } };
	union {
		char buf[CMSG_SPACE(sizeof(pass))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.buf,
			      .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *c;
	uint8_t rep[64];
	char path[64];
	int before, after;

	snprintf(path, sizeof(path), "/proc/%d/fd", test_pmd.pid);
	before = count_fds(path);
	for (int i = 0; i < 4; i++)
		pass[i] = open("/dev/null", O_RDONLY);
	memset(&ctl, 0, sizeof(ctl));
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(pass));
	memcpy(CMSG_DATA(c), pass, sizeof(pass));
	pm_msg_hdr_init(&m.h, PM_MSG_HELLO, sizeof(m), 1);
	for (int round = 0; round < 50; round++) {
		m.h.type = round ? PM_MSG_TASK_STAT : PM_MSG_HELLO;
		m.h.length = round ? 16 : sizeof(m);
		iov.iov_len = m.h.length;
		assert_int_equal(sendmsg(fd, &msg, 0), (ssize_t)m.h.length);
		assert_true(raw_reply(fd, rep, sizeof(rep)) > 0);
	}
	after = count_fds(path);
	/* The session's own socket is the only new descriptor. */
	assert_true(after <= before + 1);
	for (int i = 0; i < 4; i++)
		close(pass[i]);
	close(fd);
	check_still_serving();
}

static void task_that_does_not_read_is_dropped(void **state)
{
	int fd = raw_connect();
	struct {
		struct pm_msg_hdr h;
		struct pm_io_req b;
	} m;
	int sent = 0;

	raw_hello(fd);
	/* A READ of an unknown handle gets a small error reply; flood
	 * requests without reading until the pmd gives up on us. */
	memset(&m, 0, sizeof(m));
	m.b.len = 1;
	pm_msg_hdr_init(&m.h, PM_MSG_READ, sizeof(m), 1);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	for (int i = 0; i < 200000; i++) {
		if (send(fd, &m, sizeof(m), 0) < 0) {
			if (errno == EAGAIN) {
				usleep(1000);
				continue;
			}
			break; /* EPIPE/ECONNRESET: dropped */
		}
		sent++;
	}
	assert_true(sent > 0);
	close(fd);
	check_still_serving();
}

static void task_killed_mid_request(void **state)
{
	for (int round = 0; round < 5; round++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			pm_t *pm;
			container_t c;
			int count = 1500;
			static uint8_t buf[PM_IO_MAX];
			if (pm_connect(test_pmd.socket, &pm))
				_exit(1);
			if (pm_container_create(pm, &c) ||
			    pm_container_allocate(pm, c, 0, &count, 0))
				_exit(2);
			for (;;) { /* keep requests in flight until killed */
				pm_container_write(pm, c, 0, 0, buf, sizeof(buf));
				void *map;
				if (!pm_container_map(pm, c, 0, 1000, CONT_MAP_READ |
						      CONT_MAP_WRITE, &map, NULL))
					pm_container_unmap(pm, map, 1000);
			}
		}
		usleep(20000 + round * 15000);
		kill(pid, SIGKILL);
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		check_still_serving();
	}
}

/* Tries to truncate (or grow) every pmd segment descriptor this process
 * holds; how many gave in (*seen: how many there were). */
static int cut_segments(int *seen)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int cut = 0;

	assert_non_null(d);
	while ((e = readdir(d))) {
		char path[300], link[256];
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		/* Cut, or grown: either succeeding is a failure. */
		if (strstr(link, "memfd:pmd-segment"))
			(*seen)++;
		if (strstr(link, "memfd:pmd-segment") &&
		    (ftruncate(atoi(e->d_name), 0) == 0 ||
		     ftruncate(atoi(e->d_name), 64 << 20) == 0))
			cut++;
	}
	closedir(d);
	return cut;
}

/* A task that may map a container is given its segments' descriptors and
 * tries to cut or grow them: the segments are sealed, so nothing changes;
 * its own mapping and everyone's frames keep working and the books
 * balance. */
static void a_task_that_truncates_its_segments(void **state)
{
	pm_t *pm = test_connect(&test_pmd), *other = test_connect(&test_pmd);
	container_t c, d;
	uint8_t b[8];
	int n = 8;
	char *m;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, c, 2, 0, "before", 7), 0);
	assert_int_equal(pm_container_map(pm, c, 0, 8, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m, NULL), 0);
	int seen = 0;

	assert_int_equal(cut_segments(&seen), 0);
	assert_true(seen > 0);
	assert_string_equal(m + 2 * PM_FRAME_SIZE, "before");
	strcpy(m + 3 * PM_FRAME_SIZE, "mapped");
	assert_int_equal(pm_container_read(pm, c, 3, 0, b, 7), 0);
	assert_memory_equal(b, "mapped", 7);
	assert_int_equal(pm_container_write(pm, c, 2, 0, "after", 6), 0);
	assert_string_equal(m + 2 * PM_FRAME_SIZE, "after");
	n = 4;
	assert_int_equal(pm_container_allocate(pm, c, 100, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, c, 101, 0, "fresh", 6), 0);
	assert_int_equal(pm_container_read(pm, c, 101, 0, b, 6), 0);
	assert_memory_equal(b, "fresh", 6);
	test_check(pm);
	/* Someone else's container is served as ever. */
	n = 2;
	assert_int_equal(pm_container_create(other, &d), 0);
	assert_int_equal(pm_container_allocate(other, d, 0, &n, 0), 0);
	assert_int_equal(pm_container_write(other, d, 1, 0, "other", 6), 0);
	assert_int_equal(pm_container_read(other, d, 1, 0, b, 6), 0);
	assert_memory_equal(b, "other", 6);
	assert_int_equal(pm_container_destroy(pm, c), 0);
	pm_disconnect(pm);
	pm_disconnect(other);
	check_still_serving();
}


/* A task's metadata is bounded (docs/api.md, "Limits"): containers and
 * weak references count against 16384 handles, and one more is ENOMEM,
 * changing nothing; the pmd stays small and serves on. */
#define HANDLES_MAX 16384
static void a_tasks_metadata_is_bounded(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	pm_t *other = test_connect(&test_pmd);
	container_t c, first = 0, weak;
	pm_cap_token_t tok;
	pm_task_t me;
	unsigned n = 0;
	error_t err;

	assert_int_equal(pm_self(pm, &me), 0);
	while ((err = pm_container_create(pm, &c)) == 0) {
		if (!first)
			first = c;
		if (++n > HANDLES_MAX)
			break;
	}
	assert_int_equal(err, ENOMEM);
	assert_int_equal(n, HANDLES_MAX);
	/* An import is a handle too; a destroy makes room. */
	assert_int_equal(pm_container_create(other, &c), 0);
	assert_int_equal(pm_container_share(other, c, me, &weak), 0);
	assert_int_equal(pm_cap_export(other, weak, &tok), 0);
	assert_int_equal(pm_cap_import(pm, &tok, &weak), ENOMEM);
	assert_int_equal(pm_container_destroy(pm, first), 0);
	assert_int_equal(pm_cap_import(pm, &tok, &weak), 0);
	test_check(pm);
	pm_disconnect(pm);
	pm_disconnect(other);
	check_still_serving();
}

/* A user's sessions are bounded (--user-sessions): one more gets EUSERS
 * at connect, others are served, and one that ends makes room. */
static void a_user_over_its_session_limit(void **state)
{
	struct pmd_proc p;
	pm_t *pm[4];
	pid_t child;
	int status;

	if (geteuid() != 0) {
		print_message("skipped: another user's task needs root\n");
		skip();
	}
	pmd_proc_start(&p, (const char *const[]){ "--memory", "16M",
		"--guarantee", "16", "--user-sessions", "3",
		"--socket-group", "65534", NULL });
	for (int i = 0; i < 3; i++)
		assert_int_equal(pm_connect(p.socket, &pm[i]), 0);
	assert_int_equal(pm_connect(p.socket, &pm[3]), EUSERS);
	/* Another user (nobody, in the socket's group) is served. */
	assert_int_equal(chmod(p.dir, 0755), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		pm_t *o;
		_exit(setgid(65534) || setuid(65534) ||
		      pm_connect(p.socket, &o) ? 1 : 0);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	pm_disconnect(pm[1]);
	assert_int_equal(pm_connect(p.socket, &pm[1]), 0);
	for (int i = 0; i < 3; i++)
		pm_disconnect(pm[i]);
	assert_int_equal(test_log_grep(&p, "refusing a session of uid 0"), 1);
	pmd_proc_stop(&p);
}

/* The pmd out of descriptors: each task that connects meanwhile is
 * hung up on at once, the pmd does not spin (its CPU time stays low) nor
 * flood its log, and once descriptors are back it serves again. */
static void descriptors_run_out(void **state)
{
	struct rlimit low = { .rlim_cur = 48, .rlim_max = 48 };
	struct pmd_proc p;
	int fds[200], n = 0, hung_up = 0;
	unsigned long cpu0 = 0, cpu1 = 0;
	char path[64], buf[512];
	FILE *f;
	pm_t *pm;

	pmd_proc_start(&p, (const char *const[]){ "--memory", "16M",
		"--guarantee", "16", NULL });
	/* (Its own limit, lowered under it: a process of ours.) */
	if (prlimit(p.pid, RLIMIT_NOFILE, &low, NULL) < 0) {
		print_message("skipped: cannot lower the pmd's descriptor "
			      "limit: %s\n", strerror(errno));
		pmd_proc_stop(&p);
		skip();
	}
	while (n < 200) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

		assert_true(fd >= 0);
		strcpy(sa.sun_path, p.socket);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(fd);
			break; /* the backlog is full */
		}
		fds[n++] = fd;
	}
	usleep(300 * 1000);
	/* CPU time of the pmd over one second, connections waiting. */
	for (int k = 0; k < 2; k++) {
		unsigned long ut = 0, st = 0;
		char *rp;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)p.pid);
		f = fopen(path, "r");
		assert_non_null(f);
		assert_non_null(fgets(buf, sizeof(buf), f));
		fclose(f);
		rp = strrchr(buf, ')');
		assert_non_null(rp);
		assert_int_equal(sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u "
					"%*u %*u %*u %*u %lu %lu", &ut, &st), 2);
		*(k ? &cpu1 : &cpu0) = ut + st;
		if (!k)
			sleep(1);
	}
	for (int i = 0; i < n; i++) {
		struct pollfd pf = { .fd = fds[i], .events = POLLIN };
		char c;
		hung_up += poll(&pf, 1, 0) == 1 && recv(fds[i], &c, 1,
							MSG_DONTWAIT) == 0;
	}
	print_message("%d connections, %d hung up on; the pmd used %lu "
		      "ticks in a second\n", n, hung_up, cpu1 - cpu0);
	assert_true(hung_up > 0);
	assert_true(cpu1 - cpu0 < 30); /* under 0.3 s of a 1 s wait */
	assert_true(test_log_grep(&p, "out of descriptors") <= 2);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	usleep(200 * 1000);
	assert_int_equal(pm_connect(p.socket, &pm), 0);
	test_check(pm);
	pm_disconnect(pm);
	pmd_proc_stop(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(garbage_closes_the_session),
		cmocka_unit_test(framing_errors_close_the_session),
		cmocka_unit_test(bad_requests_get_error_replies),
		cmocka_unit_test(replies_name_the_culprit_argument),
		cmocka_unit_test(revoked_and_forged_have_their_statuses),
		cmocka_unit_test(io_window_misuse),
		cmocka_unit_test(descriptors_sent_to_pmd_are_closed),
		cmocka_unit_test(task_that_does_not_read_is_dropped),
		cmocka_unit_test(task_killed_mid_request),
		cmocka_unit_test(a_task_that_truncates_its_segments),
		cmocka_unit_test(a_tasks_metadata_is_bounded),
		cmocka_unit_test(a_user_over_its_session_limit),
		cmocka_unit_test(descriptors_run_out),
	};
	signal(SIGPIPE, SIG_IGN);
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--guarantee", "2048", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
