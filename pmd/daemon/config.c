/* config.c - see config.h. */
#include "config.h"

#include "cluster_conf.h"
#include "parse.h"

#include <sodium.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pm/pm.h>

#define MEMORY_MAX (UINT64_C(1) << 46)   /* 64 TiB: 16 Gi frames */
#define LOCK_MS_MAX (24u * 3600u * 1000u)
#define POLL_US_MAX 1000000u

/* Applies one setting; `where` names its origin for messages. */
static error_t config_set(struct pmd_config *cfg, const char *key,
			  const char *val, const char *where)
{
	uint64_t v;
	error_t err = 0;

	if (!strcmp(key, "socket")) {
		if (!*val || strlen(val) >= sizeof(cfg->socket)) {
			fprintf(stderr, "pmd: %s: socket path empty or longer "
				"than %zu bytes\n", where, sizeof(cfg->socket) - 1);
			return EINVAL;
		}
		strcpy(cfg->socket, val);
	} else if (!strcmp(key, "memory")) {
		err = pmd_parse_size(val, &v);
		if (!err && (v < PM_FRAME_SIZE || v > MEMORY_MAX))
			err = ERANGE;
		if (err) {
			fprintf(stderr, "pmd: %s: memory '%s': want a size of at "
				"least 4K and at most 64T, e.g. 256M or 8G\n",
				where, val);
			return EINVAL;
		}
		cfg->memory = v;
	} else if (!strcmp(key, "guarantee") || !strcmp(key, "extra")) {
		err = pmd_parse_u64(val, MEMORY_MAX / PM_FRAME_SIZE, &v);
		if (err) {
			fprintf(stderr, "pmd: %s: %s '%s': want a number of "
				"frames\n", where, key, val);
			return EINVAL;
		}
		*(key[0] == 'g' ? &cfg->guarantee : &cfg->extra) = v;
	} else if (!strcmp(key, "max-lock-ms") || !strcmp(key, "max_lock_ms")) {
		err = pmd_parse_u64(val, LOCK_MS_MAX, &v);
		if (err || v == 0) {
			fprintf(stderr, "pmd: %s: max-lock-ms '%s': want 1 to %u\n",
				where, val, LOCK_MS_MAX);
			return EINVAL;
		}
		cfg->max_lock_ms = (uint32_t)v;
	} else if (!strcmp(key, "poll-us") || !strcmp(key, "poll_us")) {
		err = pmd_parse_u64(val, POLL_US_MAX, &v);
		if (err) {
			fprintf(stderr, "pmd: %s: poll-us '%s': want 0 (never "
				"busy-poll) to %u microseconds\n", where, val,
				POLL_US_MAX);
			return EINVAL;
		}
		cfg->poll_us = (uint32_t)v;
	} else if (!strcmp(key, "node-id") || !strcmp(key, "node_id")) {
		err = pmd_parse_u64(val, UINT16_MAX, &v);
		if (err || v == 0) {
			fprintf(stderr, "pmd: %s: node-id '%s': want 1 to %u\n",
				where, val, UINT16_MAX);
			return EINVAL;
		}
		cfg->node_id = (uint16_t)v;
	} else if (!strcmp(key, "cluster")) {
		if (strlen(val) >= sizeof(cfg->cluster))
			return ENAMETOOLONG;
		strcpy(cfg->cluster, val);
	} else if (!strcmp(key, "backing-store") || !strcmp(key, "backing_store")) {
		if (strlen(val) >= sizeof(cfg->backing_store))
			return ENAMETOOLONG;
		strcpy(cfg->backing_store, val);
	} else if (!strcmp(key, "admission")) {
		if (!strcmp(val, "remainder"))
			cfg->admit = PMD_ADMIT_REMAINDER;
		else if (!strcmp(val, "refuse"))
			cfg->admit = PMD_ADMIT_REFUSE;
		else {
			fprintf(stderr, "pmd: %s: admission '%s': want "
				"'remainder' or 'refuse'\n", where, val);
			return EINVAL;
		}
	} else if (!strcmp(key, "log-level") || !strcmp(key, "log_level")) {
		static const char *const names[] = { "error", "warning", "info",
						     "debug" };
		unsigned i;
		for (i = 0; i < 4 && strcmp(val, names[i]); i++)
			;
		if (i == 4) {
			fprintf(stderr, "pmd: %s: log-level '%s': want error, "
				"warning, info or debug\n", where, val);
			return EINVAL;
		}
		cfg->log_level = (enum pmd_log_level)i;
	} else {
		fprintf(stderr, "pmd: %s: unknown setting '%s'\n", where, key);
		return EINVAL;
	}
	return 0;
}

/* [user NAME] or [user UID]: guarantee and extra for that user's tasks. */
static error_t config_user_set(struct pmd_config *cfg, const char *user,
			       const char *key, const char *val,
			       const char *where)
{
	struct pmd_user_limits *u = NULL;
	uint64_t uid, v;

	if (pmd_parse_u64(user, UINT32_MAX - 1, &uid)) {
		struct passwd *pw = getpwnam(user);
		if (!pw) {
			fprintf(stderr, "pmd: %s: no such user '%s'\n", where, user);
			return EINVAL;
		}
		uid = pw->pw_uid;
	}
	for (uint32_t i = 0; i < cfg->nusers; i++)
		if (cfg->users[i].uid == uid)
			u = &cfg->users[i];
	if (!u) {
		if (cfg->nusers == PMD_USER_OVERRIDES_MAX) {
			fprintf(stderr, "pmd: %s: more than %u [user] sections\n",
				where, PMD_USER_OVERRIDES_MAX);
			return EINVAL;
		}
		u = &cfg->users[cfg->nusers++];
		u->uid = (uint32_t)uid;
		u->guarantee = PMD_LIMIT_DEFAULT; /* unset: the node default */
		u->extra = PMD_LIMIT_DEFAULT;
	}
	if (strcmp(key, "guarantee") && strcmp(key, "extra")) {
		fprintf(stderr, "pmd: %s: unknown setting '%s' (a [user] "
			"section takes guarantee and extra)\n", where, key);
		return EINVAL;
	}
	if (pmd_parse_u64(val, MEMORY_MAX / PM_FRAME_SIZE, &v)) {
		fprintf(stderr, "pmd: %s: %s '%s': want a number of frames\n",
			where, key, val);
		return EINVAL;
	}
	*(key[0] == 'g' ? &u->guarantee : &u->extra) = v;
	return 0;
}

struct ini_ctx {
	struct pmd_config *cfg;
	const char *file;
	error_t err;
};

static int config_ini_entry(void *user, const char *section, const char *name,
		       const char *value)
{
	struct ini_ctx *ctx = user;
	char where[4200];

	snprintf(where, sizeof(where), "%s, section [%s]", ctx->file, section);
	if (!strncmp(section, "user ", 5)) {
		if (config_user_set(ctx->cfg, section + 5, name, value, where)) {
			ctx->err = EINVAL;
			return 0;
		}
		return 1;
	}
	if (strcmp(section, "pmd")) {
		fprintf(stderr, "pmd: %s: unknown section (settings go in "
			"[pmd] or [user NAME])\n", where);
		ctx->err = EINVAL;
		return 0;
	}
	if (config_set(ctx->cfg, name, value, where)) {
		ctx->err = EINVAL;
		return 0;
	}
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: pmd [options]\n"
"  --socket PATH        Unix socket tasks connect to (default %s)\n"
"  --memory SIZE        the node's frame budget, e.g. 256M, 8G (default 1G)\n"
"  --guarantee N        default guaranteed frames per task (default 16384)\n"
"  --extra N            default extra frames per task (default 16384)\n"
"  --admission POLICY   remainder | refuse: a guarantee that does not fit\n"
"  --max-lock-ms N      the longest lock a server may take (default 10000)\n"
"  --poll-us N          in a cluster, busy-poll rather than sleep while\n"
"                       waiting for peers and for N us after a peer's\n"
"                       traffic (default 0: sleep; wants a core per pmd)\n"
"  --config FILE        configuration file (INI, section [pmd])\n"
"  --node-id N          this node's id (default 1)\n"
"  --cluster FILE       the cluster file (several nodes)\n"
"  --backing-store PATH where frames are paged out\n"
"  --ready-fd N         write one byte to fd N when ready\n"
"  --log-level LEVEL    error | warning | info | debug\n"
"  --help, --version\n", PM_DEFAULT_SOCKET);
}

error_t pmd_config_load(struct pmd_config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 0 },
		{ "memory", required_argument, NULL, 0 },
		{ "guarantee", required_argument, NULL, 0 },
		{ "extra", required_argument, NULL, 0 },
		{ "admission", required_argument, NULL, 0 },
		{ "max-lock-ms", required_argument, NULL, 0 },
		{ "poll-us", required_argument, NULL, 0 },
		{ "node-id", required_argument, NULL, 0 },
		{ "cluster", required_argument, NULL, 0 },
		{ "backing-store", required_argument, NULL, 0 },
		{ "log-level", required_argument, NULL, 0 },
		{ "config", required_argument, NULL, 'c' },
		{ "ready-fd", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_file = NULL;
	int ch, idx;
	uint64_t v;

	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->socket, PM_DEFAULT_SOCKET);
	cfg->memory = UINT64_C(1) << 30;
	cfg->guarantee = 16384;
	cfg->extra = 16384;
	cfg->max_lock_ms = 10000;
	cfg->poll_us = 0;
	cfg->node_id = 1;
	cfg->admit = PMD_ADMIT_REMAINDER;
	cfg->log_level = PMD_LOG_INFO;
	cfg->ready_fd = -1;

	/* First pass: only --config, --ready-fd, --help, --version and a
	 * check that every option is known. */
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		switch (ch) {
		case 'c':
			config_file = optarg;
			break;
		case 'r':
			if (pmd_parse_u64(optarg, INT32_MAX, &v) || v < 3) {
				fprintf(stderr, "pmd: --ready-fd '%s': want a "
					"descriptor number >= 3\n", optarg);
				return EINVAL;
			}
			cfg->ready_fd = (int)v;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("pmd %s\n", PMD_VERSION);
			return 1;
		case '?':
			if (optopt)
				fprintf(stderr, "pmd: option '%s' needs an "
					"argument or takes none\n", argv[optind - 1]);
			else
				fprintf(stderr, "pmd: unknown option '%s'\n",
					argv[optind - 1]);
			usage(stderr);
			return EINVAL;
		default:
			break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pmd: unexpected argument '%s'\n", argv[optind]);
		return EINVAL;
	}

	if (config_file) {
		struct ini_ctx ctx = { .cfg = cfg, .file = config_file };
		int rc;

		if (strlen(config_file) >= sizeof(cfg->config))
			return ENAMETOOLONG;
		strcpy(cfg->config, config_file);
		rc = ini_parse(config_file, config_ini_entry, &ctx);
		if (rc < 0) {
			fprintf(stderr, "pmd: cannot read config file '%s'\n",
				config_file);
			return ENOENT;
		}
		if (rc > 0 && !ctx.err)
			fprintf(stderr, "pmd: %s:%d: syntax error\n",
				config_file, rc);
		if (rc > 0 || ctx.err)
			return EINVAL;
	}

	/* Second pass: the command line wins over the file. */
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		char where[64];

		if (ch != 0)
			continue;
		snprintf(where, sizeof(where), "--%s", opts[idx].name);
		if (config_set(cfg, opts[idx].name, optarg, where))
			return EINVAL;
	}

	if (cfg->memory / PM_FRAME_SIZE < 1) {
		fprintf(stderr, "pmd: memory: less than one frame\n");
		return EINVAL;
	}
	/* Say loudly what is configured but not built yet, rather than run
	 * without it. */
	if (cfg->backing_store[0]) {
		fprintf(stderr, "pmd: --backing-store: paging to a backing store "
			"is not supported by this build yet\n");
		return ENOTSUP;
	}
	if (cfg->cluster[0]) {
		struct pmd_cluster_conf *cc = malloc(sizeof(*cc));
		char why[1024];
		error_t err;

		if (!cc)
			return ENOMEM;
		err = pmd_cluster_load(cfg->cluster, cfg->node_id, cc, why,
				       sizeof(why));
		if (err) {
			fprintf(stderr, "pmd: cluster file: %s\n", why);
			sodium_memzero(cc, sizeof(*cc));
			free(cc);
			return err;
		}
		cfg->cluster_conf = cc;
	}
	return 0;
}
