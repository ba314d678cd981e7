/* fuzz_pmd.c - see fuzz.h. */
#include "fuzz.h"

#include <arpa/inet.h>
#include <netinet/in.h>
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
	pmd_log_verbosity = PMD_LOG_ERR;
	cc.node = p->cfg.node_id;
	cc.frames_total = p->cfg.memory / PM_FRAME_SIZE;
	cc.guarantee = p->cfg.guarantee;
	cc.extra = p->cfg.extra;
	cc.admit = p->cfg.admit;
	cc.max_lock_ms = p->cfg.max_lock_ms;
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
