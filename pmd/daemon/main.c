/*
 * main.c - pmd, the physical memory server of one node: reads its
 * settings, builds the node core, serves tasks until SIGTERM or SIGINT,
 * and tears everything down on the way out.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "config.h"
#include "core.h"
#include "log.h"
#include "server.h"

/* Every segment is a descriptor: allow as many as the hard limit does. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			pmd_warn("raising the descriptor limit: %m");
	}
}

/* What the core takes of the settings. */
static void core_config(const struct pmd_config *cfg,
			struct pmd_core_config *out)
{
	memset(out, 0, sizeof(*out));
	out->node = cfg->node_id;
	out->frames_total = cfg->memory / PM_FRAME_SIZE;
	out->guarantee = cfg->guarantee;
	out->extra = cfg->extra;
	out->admit = cfg->admit;
	out->max_lock_ms = cfg->max_lock_ms;
	out->user_sessions = cfg->user_sessions;
	out->user_handles = cfg->user_handles;
	memcpy(out->users, cfg->users, sizeof(cfg->users[0]) * cfg->nusers);
	out->nusers = cfg->nusers;
}

/* Tells systemd (Type=notify) what the pmd is doing: the datagram
 * protocol of sd_notify(3), to $NOTIFY_SOCKET (a path, or an abstract
 * name after '@'); nothing when it is not set. */
static void notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, path);
	if (path[0] == '@')
		sa.sun_path[0] = 0;
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || sendto(fd, state, strlen(state), MSG_NOSIGNAL,
			     (struct sockaddr *)&sa, len) < 0)
		pmd_warn("telling systemd '%s': %m", state);
	if (fd >= 0)
		close(fd);
}

/* One line on stdout, a byte to --ready-fd, and READY=1 to systemd:
 * tasks may come. */
static void say_ready(const struct pmd_config *cfg, uint64_t frames)
{
	char state[160];

	printf("pmd: ready: node %u, %lu frames (%lu MiB), socket %s%s\n",
	       cfg->node_id, (unsigned long)frames,
	       (unsigned long)(frames * PM_FRAME_SIZE >> 20), cfg->socket,
	       cfg->cluster_conf ? ", in a cluster" : "");
	fflush(stdout);
	if (cfg->ready_fd >= 0) {
		if (write(cfg->ready_fd, "r", 1) != 1)
			pmd_warn("--ready-fd %d: %m", cfg->ready_fd);
		close(cfg->ready_fd);
	}
	snprintf(state, sizeof(state), "READY=1\nSTATUS=node %u serving "
		 "%lu frames on %s", cfg->node_id, (unsigned long)frames,
		 cfg->socket);
	notify_systemd(state);
}

int main(int argc, char **argv)
{
	struct pmd_server *srv = NULL;
	struct pmd_core_config ccfg;
	struct pmd_config cfg;
	struct pmd_core core;
	const char *policy;
	bool served;
	error_t err;
	int rc = 1;

	err = pmd_config_load(&cfg, argc, argv, &served);
	if (err || served) {
		pmd_config_fini(&cfg);
		return err ? 2 : 0;
	}
	pmd_log_verbosity = cfg.log_level;
	pmd_log_node = cfg.node_id;
	raise_fd_limit();
	if (sodium_init() < 0) {
		fprintf(stderr, "pmd: cannot initialise libsodium\n");
		goto fini_config;
	}
	core_config(&cfg, &ccfg);
	pmd_core_init(&core, &ccfg);
	/* For measurement only: page out at random, not the coldest. */
	policy = getenv("PMD_PAGEOUT_POLICY");
	core.pageout_random = policy && !strcmp(policy, "random");
	err = pmd_segtab_guard(&core.segs);
	if (err)
		fprintf(stderr, "pmd: no guard against truncated segments: %s\n",
			strerror(err));
	err = pmd_server_create(&cfg, &core, &srv);
	if (err) {
		fprintf(stderr, "pmd: cannot start: %s\n", strerror(err));
		goto fini_core;
	}
	say_ready(&cfg, ccfg.frames_total);
	err = pmd_server_run(srv);
	notify_systemd("STOPPING=1");
	pmd_server_destroy(srv);
	rc = err ? 1 : 0;
	pmd_info("stopped");
fini_core:
	pmd_core_fini(&core);
fini_config:
	pmd_config_fini(&cfg);
	return rc;
}
