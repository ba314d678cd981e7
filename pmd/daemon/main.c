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
#include <sys/resource.h>
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
	memcpy(out->users, cfg->users, sizeof(cfg->users[0]) * cfg->nusers);
	out->nusers = cfg->nusers;
}

/* One line on stdout, and a byte to --ready-fd: tasks may come. */
static void say_ready(const struct pmd_config *cfg, uint64_t frames)
{
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
}

int main(int argc, char **argv)
{
	struct pmd_server *srv = NULL;
	struct pmd_core_config ccfg;
	struct pmd_config cfg;
	struct pmd_core core;
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
	pmd_server_destroy(srv);
	rc = err ? 1 : 0;
	pmd_info("stopped");
fini_core:
	pmd_core_fini(&core);
fini_config:
	pmd_config_fini(&cfg);
	return rc;
}
