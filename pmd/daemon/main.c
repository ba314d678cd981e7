/*
 * main.c - pmd, the physical memory server of one node: reads its
 * settings, builds the node core, serves tasks until SIGTERM or SIGINT, and
 * tears everything down on the way out.
 */
#include <errno.h>
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

static void config_fini(struct pmd_config *cfg)
{
	if (cfg->cluster_conf)
		sodium_memzero(cfg->cluster_conf, sizeof(*cfg->cluster_conf));
	free(cfg->cluster_conf);
	cfg->cluster_conf = NULL;
}

int main(int argc, char **argv)
{
	struct pmd_server *srv = NULL;
	struct pmd_core_config ccfg;
	struct pmd_config cfg;
	struct pmd_core core;
	error_t err;

	err = pmd_config_load(&cfg, argc, argv);
	if (err == 1)
		return 0;
	if (err)
		return 2;
	pmd_log_verbosity = cfg.log_level;
	raise_fd_limit();
	if (sodium_init() < 0) {
		fprintf(stderr, "pmd: cannot initialise libsodium\n");
		return 1;
	}

	memset(&ccfg, 0, sizeof(ccfg));
	ccfg.node = cfg.node_id;
	ccfg.frames_total = cfg.memory / PM_FRAME_SIZE;
	ccfg.guarantee = cfg.guarantee;
	ccfg.extra = cfg.extra;
	ccfg.admit = cfg.admit;
	ccfg.max_lock_ms = cfg.max_lock_ms;
	memcpy(ccfg.users, cfg.users, sizeof(cfg.users[0]) * cfg.nusers);
	ccfg.nusers = cfg.nusers;
	pmd_core_init(&core, &ccfg);
	err = pmd_segtab_guard(&core.segs);
	if (err)
		fprintf(stderr, "pmd: no guard against truncated segments: %s\n",
			strerror(err));

	err = pmd_server_create(&cfg, &core, &srv);
	if (err) {
		fprintf(stderr, "pmd: cannot start: %s\n", strerror(err));
		pmd_core_fini(&core);
		config_fini(&cfg);
		return 1;
	}
	printf("pmd: ready: node %u, %lu frames (%lu MiB), socket %s%s\n",
	       cfg.node_id, (unsigned long)ccfg.frames_total,
	       (unsigned long)(ccfg.frames_total * PM_FRAME_SIZE >> 20),
	       cfg.socket, cfg.cluster_conf ? ", in a cluster" : "");
	fflush(stdout);
	if (cfg.ready_fd >= 0) {
		if (write(cfg.ready_fd, "r", 1) != 1)
			pmd_warn("--ready-fd %d: %m", cfg.ready_fd);
		close(cfg.ready_fd);
	}

	err = pmd_server_run(srv);
	pmd_server_destroy(srv);
	pmd_core_fini(&core);
	config_fini(&cfg);
	pmd_info("stopped");
	return err ? 1 : 0;
}
