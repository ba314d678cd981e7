/* fuzz_pmd.c - see fuzz.h. */
#include "fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "clock.h"
#include "log.h"
#include "pm_proto.h"
#include "server.h"

#define FUZZ_SECRET "fuzzing-secret-0123456789abcdef"

/* A loopback TCP port nobody uses now. */
static unsigned free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("fuzz: a free port");
		abort();
	}
	close(fd);
	return ntohs(sa.sin_port);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f || fchmod(fileno(f), 0600) < 0 || fputs(text, f) < 0 || fclose(f) != 0) {
		perror(path);
		abort();
	}
}

static struct fuzz_pmd *started;

/* At exit: the pmd stops, its files go. */
static void fuzz_pmd_stop(void)
{
	struct fuzz_pmd *p = started;
	char path[128];

	pmd_server_destroy(p->srv);
	pmd_core_fini(&p->core);
	pmd_config_fini(&p->cfg);
	snprintf(path, sizeof(path), "%s/cluster.key", p->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/cluster.conf", p->dir);
	unlink(path);
	rmdir(p->dir);
	free(p);
}

struct fuzz_pmd *fuzz_pmd_start(bool cluster)
{
	struct fuzz_pmd *p = calloc(1, sizeof(*p));
	char sock[128], conf[128], key[128], text[512];
	char *argv[24];
	int argc = 0;
	struct pmd_core_config cc = { 0 };
	struct pm_debug_rep rep;
	bool served;

	if (!p)
		abort();
	strcpy(p->dir, "/tmp/pmd-fuzz-XXXXXX");
	if (!mkdtemp(p->dir) || sodium_init() < 0)
		abort();
	snprintf(sock, sizeof(sock), "%s/pmd.sock", p->dir);
	argv[argc++] = (char *)"pmd";
	argv[argc++] = (char *)"--socket";
	argv[argc++] = sock;
	argv[argc++] = (char *)"--memory";
	argv[argc++] = (char *)"16M";
	argv[argc++] = (char *)"--guarantee";
	argv[argc++] = (char *)"512";
	argv[argc++] = (char *)"--extra";
	argv[argc++] = (char *)"512";
	argv[argc++] = (char *)"--max-lock-ms";
	argv[argc++] = (char *)"20";
	argv[argc++] = (char *)"--stop-ms";
	argv[argc++] = (char *)"5";
	if (cluster) {
		snprintf(key, sizeof(key), "%s/cluster.key", p->dir);
		write_file(key, FUZZ_SECRET "\n");
		snprintf(conf, sizeof(conf), "%s/cluster.conf", p->dir);
		snprintf(text, sizeof(text),
			 "[cluster]\nsecret_file = cluster.key\n"
			 "transport = tcp\nheartbeat_ms = 100\n"
			 "suspect_ms = 60000\ndown_ms = 120000\n"
			 "[node 1]\naddress = 127.0.0.1:%u\n"
			 "[node 2]\naddress = 127.0.0.1:%u\n",
			 free_port(), free_port());
		write_file(conf, text);
		argv[argc++] = (char *)"--cluster";
		argv[argc++] = conf;
		argv[argc++] = (char *)"--node-id";
		argv[argc++] = (char *)"1";
	}
	argv[argc] = NULL;
	if (pmd_config_load(&p->cfg, argc, argv, &served) || served)
		abort();
	/* What a fuzzer provokes is refused and logged: keep quiet but
	 * for errors (the self-check's among them). */
	pmd_log_verbosity = getenv("PMD_FUZZ_VERBOSE") ? PMD_LOG_DEBUG
						       : PMD_LOG_ERR;
	cc.node = p->cfg.node_id;
	cc.frames_total = p->cfg.memory / PM_FRAME_SIZE;
	cc.guarantee = p->cfg.guarantee;
	cc.extra = p->cfg.extra;
	cc.admit = p->cfg.admit;
	cc.max_lock_ms = p->cfg.max_lock_ms;
	cc.user_sessions = p->cfg.user_sessions;
	cc.user_handles = p->cfg.user_handles;
	pmd_core_init(&p->core, &cc);
	if (pmd_server_create(&p->cfg, &p->core, &p->srv)) {
		fprintf(stderr, "fuzz: the pmd does not start\n");
		abort();
	}
	pmd_core_check(&p->core, &rep);
	p->frames_free = rep.frames_free;
	started = p;
	atexit(fuzz_pmd_stop);
	return p;
}

void fuzz_pmd_run(struct fuzz_pmd *p, int ms, bool (*done)(void *), void *arg)
{
	uint64_t end = pmd_now_ms() + (uint64_t)ms;
	bool stop;

	while (!(done && done(arg)) && pmd_now_ms() < end) {
		if (pmd_server_turn(p->srv, 1, &stop) || stop)
			abort();
	}
}

int fuzz_pmd_connect(const struct fuzz_pmd *p)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC,
			0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->cfg.socket);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("fuzz: connect to the pmd");
		abort();
	}
	return fd;
}

static bool no_tasks(void *arg)
{
	return ((struct fuzz_pmd *)arg)->core.ntasks == 0;
}

void fuzz_pmd_idle(struct fuzz_pmd *p)
{
	fuzz_pmd_run(p, 2000, no_tasks, p);
	fuzz_pmd_check(p, true);
}

void fuzz_pmd_check(struct fuzz_pmd *p, bool idle)
{
	struct pm_debug_rep rep;
	const struct pmd_budget *b = &p->core.budget;

	pmd_core_check(&p->core, &rep);
	if (!rep.invariant_ok) {
		fprintf(stderr, "fuzz: the accounting self-check failed\n");
		abort();
	}
	if (idle && (rep.tasks || rep.containers || rep.frames ||
		     rep.charged || rep.slots_used || b->guaranteed_sum ||
		     b->lent || b->held || p->core.nshares ||
		     rep.frames_free != p->frames_free)) {
		fprintf(stderr, "fuzz: the pmd holds something with nobody "
			"left: %lu tasks, %lu containers, %lu frames, %lu "
			"charged, %lu slots, %lu guaranteed, %lu lent, %lu "
			"held, %lu shares, %lu of %lu frames free\n",
			(unsigned long)rep.tasks, (unsigned long)rep.containers,
			(unsigned long)rep.frames, (unsigned long)rep.charged,
			(unsigned long)rep.slots_used,
			(unsigned long)b->guaranteed_sum,
			(unsigned long)b->lent, (unsigned long)b->held,
			(unsigned long)p->core.nshares,
			(unsigned long)rep.frames_free,
			(unsigned long)p->frames_free);
		abort();
	}
}

/* ---- a task ---- */

static bool readable(void *arg)
{
	struct pollfd pf = { .fd = *(int *)arg, .events = POLLIN };

	return poll(&pf, 1, 0) > 0;
}

/* The reply to seq on fd (STOPs and RESUMEs of the pmd skipped). */
static error_t reply_take(struct fuzz_pmd *p, int fd, uint32_t seq,
			  void *out, size_t out_len)
{
	static uint8_t buf[PM_MSG_MAX];
	union {
		char b[CMSG_SPACE(sizeof(int) * 64)];
		struct cmsghdr align;
	} ctl;
	const struct pm_msg_hdr *h = (const struct pm_msg_hdr *)buf;
	const struct pm_reply *r = (const struct pm_reply *)(h + 1);
	uint64_t end = pmd_now_ms() + 2000;

	for (;;) {
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = ctl.b,
				      .msg_controllen = sizeof(ctl.b) };
		ssize_t n;

		fuzz_pmd_run(p, (int)(end - pmd_now_ms()), readable, &fd);
		n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return n == 0 ? ECONNRESET : ETIMEDOUT;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
		     c = CMSG_NXTHDR(&msg, c)) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; c->cmsg_type == SCM_RIGHTS && i < k;
			     i++) {
				int cfd;
				memcpy(&cfd, CMSG_DATA(c) + i * sizeof(int),
				       sizeof(cfd));
				close(cfd);
			}
		}
		if ((size_t)n < PM_REPLY_HDR || !(h->type & PM_MSG_REPLY) ||
		    h->seq != seq)
			continue;
		n -= (ssize_t)PM_REPLY_HDR;
		if (out_len)
			memcpy(out, buf + PM_REPLY_HDR,
			       (size_t)n < out_len ? (size_t)n : out_len);
		return pm_status_to_errno(r->status);
	}
}

static error_t send_on(int fd, uint32_t seq, uint16_t type, const void *body,
		       uint32_t len)
{
	static uint8_t buf[PM_MSG_MAX] __attribute__((aligned(8)));

	if (len > sizeof(buf) - 16)
		abort();
	pm_msg_hdr_init((struct pm_msg_hdr *)buf, type, 16 + len, seq);
	if (len)
		memcpy(buf + 16, body, len);
	return send(fd, buf, 16 + len, MSG_NOSIGNAL) < 0 ? ECONNRESET : 0;
}

static error_t call_on(struct fuzz_pmd *p, int fd, uint32_t seq,
		       uint16_t type, const void *body, uint32_t len,
		       void *out, size_t out_len)
{
	error_t err = send_on(fd, seq, type, body, len);

	return err ? err : reply_take(p, fd, seq, out, out_len);
}

uint32_t fuzz_task_send(struct fuzz_pmd *p, struct fuzz_task *t, uint16_t type,
			const void *body, uint32_t len)
{
	(void)p;
	if (send_on(t->fd, ++t->seq, type, body, len))
		abort();
	return t->seq;
}

error_t fuzz_task_reply(struct fuzz_pmd *p, struct fuzz_task *t, uint32_t seq,
			void *out, size_t out_len)
{
	return reply_take(p, t->fd, seq, out, out_len);
}

error_t fuzz_task_call(struct fuzz_pmd *p, struct fuzz_task *t, uint16_t type,
		       const void *body, uint32_t len, void *out,
		       size_t out_len)
{
	return call_on(p, t->fd, ++t->seq, type, body, len, out, out_len);
}

void fuzz_task_open(struct fuzz_pmd *p, struct fuzz_task *t, bool fault)
{
	struct pm_hello_req hello = { .version = PM_PROTO_VERSION };
	struct pm_hello_rep hrep;
	struct pm_attach_req attach;

	*t = (struct fuzz_task){ .fd = fuzz_pmd_connect(p), .fault_fd = -1 };
	if (fuzz_task_call(p, t, PM_MSG_HELLO, &hello, sizeof(hello), &hrep,
			   sizeof(hrep)))
		abort();
	t->id = hrep.task;
	if (!fault)
		return;
	/* A fault session, as the library opens one (its STOPs go
	 * unanswered here: their deadline passes). */
	if (fuzz_task_call(p, t, PM_MSG_ATTACH_KEY, NULL, 0, attach.key,
			   sizeof(attach.key)))
		abort();
	attach.task = t->id;
	t->fault_fd = fuzz_pmd_connect(p);
	if (call_on(p, t->fault_fd, 1, PM_MSG_ATTACH, &attach, sizeof(attach),
		    NULL, 0))
		abort();
}

void fuzz_task_close(struct fuzz_task *t)
{
	if (t->fd >= 0)
		close(t->fd);
	if (t->fault_fd >= 0)
		close(t->fault_fd);
	t->fd = t->fault_fd = -1;
}
