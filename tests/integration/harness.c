/* harness.c - see harness.h. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pm_proto.h"

static void exec_pmd(const char *const *args, int ready_fd, const char *sock,
		     const char *log)
{
	char *argv[64];
	char fdbuf[16];
	int n = 0;

	/* A daemon never outlives its test, even one that failed half way. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	argv[n++] = (char *)PMD_BIN;
	if (sock) {
		argv[n++] = (char *)"--socket";
		argv[n++] = (char *)sock;
	}
	if (ready_fd >= 0) {
		snprintf(fdbuf, sizeof(fdbuf), "%d", ready_fd);
		argv[n++] = (char *)"--ready-fd";
		argv[n++] = fdbuf;
	}
	for (; args && *args && n < 60; args++)
		argv[n++] = (char *)*args;
	/* PM_TEST_LOG_LEVEL=debug: every pmd of a test logs more. */
	if (getenv("PM_TEST_LOG_LEVEL")) {
		argv[n++] = (char *)"--log-level";
		argv[n++] = getenv("PM_TEST_LOG_LEVEL");
	}
	argv[n] = NULL;
	if (log) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
	}
	execv(PMD_BIN, argv);
	_exit(127);
}

void pmd_proc_start(struct pmd_proc *p, const char *const *args)
{
	int pipefd[2];
	struct pollfd pfd;
	char c;

	memset(p, 0, sizeof(*p));
	strcpy(p->dir, "/tmp/pmd-test-XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	snprintf(p->socket, sizeof(p->socket), "%s/pmd.sock", p->dir);
	snprintf(p->log, sizeof(p->log), "%s/pmd.log", p->dir);
	assert_int_equal(pipe(pipefd), 0);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		close(pipefd[0]);
		/* Keep stdout quiet: the ready line goes to the log. */
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 1);
		exec_pmd(args, pipefd[1], p->socket, p->log);
	}
	close(pipefd[1]);
	pfd.fd = pipefd[0];
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 10000) != 1 || read(pipefd[0], &c, 1) != 1) {
		close(pipefd[0]);
		kill(p->pid, SIGKILL);
		waitpid(p->pid, NULL, 0);
		fail_msg("pmd did not become ready; see %s", p->log);
	}
	close(pipefd[0]);
}

static void remove_dir(const char *dir)
{
	char path[400];
	static const char *const files[] = { "pmd.sock", "pmd.log" };

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

void pmd_proc_stop(struct pmd_proc *p)
{
	int status = 0;
	char line[512];
	FILE *f;
	bool bad = false;

	if (p->pid <= 0)
		return;
	assert_int_equal(kill(p->pid, SIGTERM), 0);
	for (int i = 0; i < 1000; i++) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);
		if (r == p->pid)
			break;
		if (i == 999) {
			kill(p->pid, SIGKILL);
			waitpid(p->pid, &status, 0);
			fail_msg("pmd did not stop within 10 s of SIGTERM");
		}
		usleep(10000);
	}
	p->pid = 0;
	f = fopen(p->log, "r");
	while (f && fgets(line, sizeof(line), f)) {
		bool err = strstr(line, "] error: ") || strstr(line, "Sanitizer") ||
			   strstr(line, "runtime error");
		if (err && (!p->errors_expected || !strstr(line, "] error: "))) {
			fprintf(stderr, "pmd log: %s", line);
			bad = true;
		}
	}
	if (f)
		fclose(f);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "pmd exit status %#x; log kept in %s\n", status,
			p->log);
		fail_msg("pmd did not exit cleanly");
	}
	if (bad)
		fail_msg("pmd logged errors; log kept in %s", p->log);
	remove_dir(p->dir);
}

int pmd_run_to_exit(const char *const *args, char *err, size_t len)
{
	char log[] = "/tmp/pmd-test-out-XXXXXX";
	int fd = mkstemp(log), status = 0;
	pid_t pid;
	ssize_t n;

	assert_true(fd >= 0);
	close(fd);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 1);
		exec_pmd(args, -1, NULL, log);
	}
	for (int i = 0; i < 500; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		if (i == 499) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			unlink(log);
			fail_msg("pmd with bad arguments did not exit");
		}
		usleep(10000);
	}
	fd = open(log, O_RDONLY);
	n = fd >= 0 ? read(fd, err, len - 1) : 0;
	err[n > 0 ? n : 0] = 0;
	if (fd >= 0)
		close(fd);
	unlink(log);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

pm_t *test_connect(const struct pmd_proc *p)
{
	pm_t *pm = NULL;

	assert_int_equal(pm_connect(p->socket, &pm), 0);
	assert_non_null(pm);
	return pm;
}

pm_t *test_follower(pm_t *pm)
{
	if (!pm_debug_follows(pm)) {
		pm_disconnect(pm);
		fprintf(stderr, "no userfaultfd for this process (see the "
			"libpmclient message above): skipped\n");
		skip();
	}
	return pm;
}

int test_raw_connect(const struct pmd_proc *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_true(strlen(p->socket) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, p->socket, strlen(p->socket) + 1);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

uint32_t test_raw_call(int fd, uint16_t type, const void *body, uint32_t len,
		       void *out, uint32_t out_len)
{
	uint8_t buf[256] __attribute__((aligned(8)));
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)buf;
	const struct pm_reply *rep = (const struct pm_reply *)(h + 1);
	ssize_t n;

	assert_true(sizeof(*h) + len <= sizeof(buf));
	pm_msg_hdr_init(h, type, (uint32_t)sizeof(*h) + len, 7);
	if (len)
		memcpy(h + 1, body, len);
	assert_int_equal(send(fd, buf, sizeof(*h) + len, 0),
			 (ssize_t)(sizeof(*h) + len));
	n = recv(fd, buf, sizeof(buf), 0);
	assert_true(n >= (ssize_t)PM_REPLY_HDR);
	assert_int_equal(h->type, type | PM_MSG_REPLY);
	if (out && rep->status == PM_ST_OK) {
		assert_int_equal((size_t)n, PM_REPLY_HDR + out_len);
		memcpy(out, rep + 1, out_len);
	}
	return rep->status;
}

uint64_t test_ms_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

uint64_t test_metric(pm_t *pm, const char *name)
{
	static char text[1 << 16];
	size_t len;
	const char *p;

	assert_int_equal(pm_debug_metrics(pm, text, sizeof(text), &len), 0);
	/* The sample's line: the name at a line's start, then a space
	 * (not its HELP or TYPE line). */
	for (p = strstr(text, name); p; p = strstr(p + 1, name))
		if ((p == text || p[-1] == '\n') && p[strlen(name)] == ' ')
			return strtoull(p + strlen(name), NULL, 10);
	return 0;
}

void test_pattern(frame_t f, uint32_t round, uint8_t *buf)
{
	for (size_t i = 0; i < PM_FRAME_SIZE; i += 8) {
		uint64_t w = (uint64_t)f << 40 | (uint64_t)round << 32 | i;
		memcpy(buf + i, &w, 8);
	}
}

container_t test_fill(pm_t *pm, uint32_t g, uint32_t e)
{
	static uint8_t buf[PM_FRAME_SIZE];
	container_t c;
	int n = (int)g;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	n = (int)e;
	if (e)
		assert_int_equal(pm_container_allocate(pm, c, g, &n,
						       CONT_ALLOC_EXTRA), 0);
	for (frame_t f = 0; f < g + e; f++) {
		test_pattern(f, 0, buf);
		assert_int_equal(pm_container_write(pm, c, f, 0, buf,
						    sizeof(buf)), 0);
	}
	return c;
}

void test_intact(pm_t *pm, container_t c, frame_t from, frame_t to,
		 uint32_t round)
{
	static uint8_t want[PM_FRAME_SIZE], got[PM_FRAME_SIZE];

	for (frame_t f = from; f < to; f++) {
		test_pattern(f, round, want);
		assert_int_equal(pm_container_read(pm, c, f, 0, got,
						   sizeof(got)), 0);
		if (memcmp(want, got, sizeof(got))) {
			fprintf(stderr, "frame %lu: not its bytes\n",
				(unsigned long)f);
			fail();
		}
	}
}

struct test_storer {
	pthread_t thread;
	volatile uint64_t *m;
	uint32_t frames;
	bool stop;
	uint64_t last[64];
};

static void *storer_main(void *arg)
{
	struct test_storer *w = arg;

	for (uint64_t k = 1; !__atomic_load_n(&w->stop, __ATOMIC_RELAXED); k++) {
		uint32_t f = (uint32_t)(k % w->frames);

		w->m[(size_t)f * (PM_FRAME_SIZE / 8)] = k;
		w->last[f] = k;
	}
	return NULL;
}

struct test_storer *test_storer_start(void *m, uint32_t n)
{
	struct test_storer *w = calloc(1, sizeof(*w));

	assert_non_null(w);
	assert_true(n >= 1 && n <= 64);
	w->m = m;
	w->frames = n;
	assert_int_equal(pthread_create(&w->thread, NULL, storer_main, w), 0);
	return w;
}

void test_storer_end(struct test_storer *w, pm_t *pm, container_t c)
{
	__atomic_store_n(&w->stop, true, __ATOMIC_RELAXED);
	pthread_join(w->thread, NULL);
	for (uint32_t f = 0; f < w->frames; f++) {
		uint64_t got;

		assert_int_equal(pm_container_read(pm, c, f, 0, &got,
						   sizeof(got)), 0);
		if (w->last[f] && got != w->last[f]) {
			fprintf(stderr, "frame %u: %lu, the last store was "
				"%lu\n", f, (unsigned long)got,
				(unsigned long)w->last[f]);
			fail();
		}
	}
	free(w);
}

struct pm_debug_stat test_check(pm_t *pm)
{
	struct pm_debug_stat st;

	assert_int_equal(pm_debug_stat(pm, &st), 0);
	assert_int_equal(st.invariant_ok, 1);
	assert_int_equal(st.frames, st.charged);
	assert_true(st.slots_used <= st.frames);
	return st;
}

struct pmd_proc test_pmd;
const char *const *test_pmd_args;

int test_group_setup(void **state)
{
	(void)state;
	pmd_proc_start(&test_pmd, test_pmd_args);
	return 0;
}

int test_group_teardown(void **state)
{
	(void)state;
	pmd_proc_stop(&test_pmd);
	return 0;
}

void test_clean(const struct pmd_proc *p)
{
	pm_t *pm = test_connect(p);
	struct pm_debug_stat st = test_check(pm);

	for (int i = 0; i < 300 && st.tasks != 1; i++) {
		usleep(10000);
		st = test_check(pm);
	}
	assert_int_equal(st.tasks, 1);
	assert_int_equal(st.containers, 0);
	assert_int_equal(st.frames, 0);
	assert_int_equal(st.segments, 0);
	pm_disconnect(pm);
}

int test_clean_teardown(void **state)
{
	(void)state;
	test_clean(&test_pmd);
	return 0;
}

unsigned test_log_grep(const struct pmd_proc *p, const char *text)
{
	FILE *f = fopen(p->log, "r");
	char line[512];
	unsigned n = 0;

	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, text)) {
			fprintf(stderr, "pmd log: %s", line);
			n++;
		}
	if (f)
		fclose(f);
	return n;
}
