/*
 * config.h - the pmd's settings: defaults, then the configuration file,
 * then the command line, which wins. Every value is checked; a bad one is
 * reported with where it came from (option, or file and line) and pmd
 * exits non-zero before it touches anything.
 */
#ifndef PMD_CONFIG_H
#define PMD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "account.h"
#include "cluster_conf.h"
#include "core.h"
#include "log.h"

/* Lock key: (C) filled at start, then read only. */
struct pmd_config {
	char socket[108];            /* Unix socket tasks connect to */
	unsigned socket_mode;        /* its permission bits */
	gid_t socket_gid;            /* its group; (gid_t)-1: the pmd's */
	uint64_t user_sessions;      /* a user's sessions at once; 0: any */
	uint64_t user_handles;       /* its tasks' handles together; 0: any */
	char metrics[300];           /* ADDR:PORT of the metrics; "" none */
	uint64_t memory;             /* node budget, bytes */
	uint64_t guarantee;          /* default G per task, frames */
	uint64_t extra;              /* default E per task, frames */
	uint32_t max_lock_ms;        /* longest server lock */
	uint32_t stop_ms;            /* a library's time to stop its stores */
	uint32_t reclaim_grace_ms;   /* a task's time to give back extra
	                              * frames before the pmd takes them */
	uint32_t poll_us;            /* busy-poll this long after activity */
	uint32_t ring_spin_us;       /* poll the request rings this long
	                              * after a request (0: never) */
	uint16_t node_id;            /* this node's id */
	char cluster[4096];          /* cluster file; "" on a single node */
	struct pmd_cluster_conf *cluster_conf; /* loaded from it, or NULL */
	char transport[64];          /* over the cluster file's; "" for its */
	char backing_store[4096];    /* paging target; "" for none */
	uint64_t backing_size;       /* bytes to make it; 0: its own size */
	char config[4096];           /* the configuration file read, if any */
	enum pmd_admit_policy admit; /* guarantees that do not fit */
	enum pmd_log_level log_level; /* what the log says */
	int ready_fd;                /* -1: none */
	struct pmd_user_limits users[PMD_USER_OVERRIDES_MAX]; /* [user X] */
	uint32_t nusers;             /* entries in users */
};

/* Fills cfg from defaults, the file named by --config and the command
 * line, and reads the cluster file it names. 0 to run (or, with *served,
 * to exit: --help or --version was served), or a positive errno after
 * printing what was wrong. */
error_t pmd_config_load(struct pmd_config *cfg, int argc, char **argv,
			bool *served);
/* The settings in effect, one "key = value" line each (the file's keys;
 * the secret never), and the version; their length (cut at cap). */
size_t pmd_config_render(const struct pmd_config *cfg, char *buf, size_t cap);
/* Forgets what load read (the cluster's secret first). */
void pmd_config_fini(struct pmd_config *cfg);

#endif
