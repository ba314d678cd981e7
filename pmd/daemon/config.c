/* config.c - see config.h. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <ini.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <pm/pm.h>

#include "cluster_conf.h"
#include "parse.h"

#define MEMORY_MAX (UINT64_C(1) << 46)   /* 64 TiB: 16 Gi frames */
#define FRAMES_MAX (MEMORY_MAX / PM_FRAME_SIZE)
#define LOCK_MS_MAX (24u * 3600u * 1000u)
#define POLL_US_MAX 1000000u

/* ---- the settings, one setter each; `where` names the value's origin
 * (an option, or the file and its section) for messages ---- */

typedef error_t setter_fn(struct pmd_config *cfg, const char *val,
			  const char *where);

/* A path; "" only where it may be (no cluster, no backing store). */
static error_t set_path(char *dst, size_t size, const char *name,
			const char *val, const char *where, bool empty_ok)
{
	if ((!empty_ok && !*val) || strlen(val) >= size) {
		fprintf(stderr, "pmd: %s: %s: empty or longer than %zu bytes\n",
			where, name, size - 1);
		return EINVAL;
	}
	strcpy(dst, val);
	return 0;
}

static error_t set_socket(struct pmd_config *cfg, const char *val,
			  const char *where)
{
	return set_path(cfg->socket, sizeof(cfg->socket), "socket path", val,
			where, false);
}

/* The socket's mode: octal permission bits, never world-writable
 * (any local user could then make the pmd hold sessions). */
static error_t set_socket_mode(struct pmd_config *cfg, const char *val,
			       const char *where)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(val, &end, 8);
	if (errno || end == val || *end || v > 0777 || (v & 0002)) {
		fprintf(stderr, "pmd: %s: socket-mode '%s': want octal "
			"permission bits that are not world-writable, e.g. "
			"0660\n", where, val);
		return EINVAL;
	}
	cfg->socket_mode = (unsigned)v;
	return 0;
}

/* The socket's group: a name or a number. */
static error_t set_socket_group(struct pmd_config *cfg, const char *val,
				const char *where)
{
	uint64_t gid;

	if (pmd_parse_u64(val, UINT32_MAX - 1, &gid)) {
		struct group *gr = getgrnam(val);
		if (!gr) {
			fprintf(stderr, "pmd: %s: socket-group: no such group "
				"'%s'\n", where, val);
			return EINVAL;
		}
		gid = gr->gr_gid;
	}
	cfg->socket_gid = (gid_t)gid;
	return 0;
}

static error_t set_cluster(struct pmd_config *cfg, const char *val,
			   const char *where)
{
	return set_path(cfg->cluster, sizeof(cfg->cluster), "cluster file", val,
			where, true);
}

static error_t set_transport(struct pmd_config *cfg, const char *val,
			     const char *where)
{
	if (!pmd_transport_valid(val, false) ||
	    strlen(val) >= sizeof(cfg->transport)) {
		fprintf(stderr, "pmd: %s: transport '%s': want tcp, verbs or "
			"ofi:PROVIDER\n", where, val);
		return EINVAL;
	}
	strcpy(cfg->transport, val);
	return 0;
}

static error_t set_backing_store(struct pmd_config *cfg, const char *val,
				 const char *where)
{
	return set_path(cfg->backing_store, sizeof(cfg->backing_store),
			"backing store", val, where, true);
}

static error_t set_backing_size(struct pmd_config *cfg, const char *val,
				const char *where)
{
	uint64_t v;
	error_t err = pmd_parse_size(val, &v);

	if (err || v < PM_FRAME_SIZE || v > MEMORY_MAX || v % PM_FRAME_SIZE) {
		fprintf(stderr, "pmd: %s: backing size '%s': want a size of "
			"whole 4K frames, at least 4K and at most 64T, e.g. 1G\n",
			where, val);
		return EINVAL;
	}
	cfg->backing_size = v;
	return 0;
}

static error_t set_memory(struct pmd_config *cfg, const char *val,
			  const char *where)
{
	uint64_t v;
	error_t err = pmd_parse_size(val, &v);

	if (err || v < PM_FRAME_SIZE || v > MEMORY_MAX) {
		fprintf(stderr, "pmd: %s: memory '%s': want a size of at least "
			"4K and at most 64T, e.g. 256M or 8G\n", where, val);
		return EINVAL;
	}
	cfg->memory = v;
	return 0;
}

/* A number of frames: a guarantee or an extra limit. */
static error_t set_frames(uint64_t *dst, const char *name, const char *val,
			  const char *where)
{
	uint64_t v;

	if (pmd_parse_u64(val, FRAMES_MAX, &v)) {
		fprintf(stderr, "pmd: %s: %s '%s': want a number of frames\n",
			where, name, val);
		return EINVAL;
	}
	*dst = v;
	return 0;
}

static error_t set_guarantee(struct pmd_config *cfg, const char *val,
			     const char *where)
{
	return set_frames(&cfg->guarantee, "guarantee", val, where);
}

static error_t set_extra(struct pmd_config *cfg, const char *val,
			 const char *where)
{
	return set_frames(&cfg->extra, "extra", val, where);
}

/* A number from min to max, or the message that says so. */
static error_t set_number(uint64_t *v, uint64_t min, uint64_t max,
			  const char *name, const char *want, const char *val,
			  const char *where)
{
	if (pmd_parse_u64(val, max, v) || *v < min) {
		fprintf(stderr, "pmd: %s: %s '%s': want %s\n", where, name, val,
			want);
		return EINVAL;
	}
	return 0;
}

static error_t set_metrics(struct pmd_config *cfg, const char *val,
			   const char *where)
{
	if (strlen(val) >= sizeof(cfg->metrics) || !strchr(val, ':')) {
		fprintf(stderr, "pmd: %s: metrics '%s': want ADDR:PORT, e.g. "
			"127.0.0.1:9464\n", where, val);
		return EINVAL;
	}
	strcpy(cfg->metrics, val);
	return 0;
}

/* What a user's tasks may hold together: handles (0: no limit). */
static error_t set_user_handles(struct pmd_config *cfg, const char *val,
				const char *where)
{
	uint64_t v;
	error_t err = set_number(&v, 0, UINT32_MAX, "user-handles",
				 "0 (no limit) to 4294967295", val, where);

	if (!err)
		cfg->user_handles = v;
	return err;
}

/* A user's sessions at once (0: no limit). */
static error_t set_user_sessions(struct pmd_config *cfg, const char *val,
				 const char *where)
{
	uint64_t v;
	error_t err = set_number(&v, 0, UINT32_MAX, "user-sessions",
				 "0 (no limit) to 4294967295", val, where);

	if (!err)
		cfg->user_sessions = v;
	return err;
}

static error_t set_max_lock_ms(struct pmd_config *cfg, const char *val,
			       const char *where)
{
	uint64_t v;
	error_t err = set_number(&v, 1, LOCK_MS_MAX, "max-lock-ms",
				 "1 to 86400000", val, where);

	if (!err)
		cfg->max_lock_ms = (uint32_t)v;
	return err;
}

static error_t set_stop_ms(struct pmd_config *cfg, const char *val,
			   const char *where)
{
	uint64_t v;
	error_t err = set_number(&v, 1, 60000, "stop-ms", "1 to 60000", val,
				 where);

	if (!err)
		cfg->stop_ms = (uint32_t)v;
	return err;
}

static error_t set_reclaim_grace_ms(struct pmd_config *cfg, const char *val,
				    const char *where)
{
	uint64_t v;
	error_t err = set_number(&v, 0, 60000, "reclaim-grace-ms", "0 to 60000",
				 val, where);

	if (!err)
		cfg->reclaim_grace_ms = (uint32_t)v;
	return err;
}

static error_t set_ring_spin_us(struct pmd_config *cfg, const char *val,
				const char *where)
{
	uint64_t v;
	error_t err = set_number(&v, 0, 10000, "ring-spin-us",
				 "0 (never) to 10000 microseconds", val, where);

	if (!err)
		cfg->ring_spin_us = (uint32_t)v;
	return err;
}

static error_t set_poll_us(struct pmd_config *cfg, const char *val,
			   const char *where)
{
	uint64_t v;
	error_t err = set_number(&v, 0, POLL_US_MAX, "poll-us",
				 "0 (never busy-poll) to 1000000 microseconds",
				 val, where);

	if (!err)
		cfg->poll_us = (uint32_t)v;
	return err;
}

static error_t set_node_id(struct pmd_config *cfg, const char *val,
			   const char *where)
{
	uint64_t v;
	error_t err = set_number(&v, 1, UINT16_MAX, "node-id", "1 to 65535",
				 val, where);

	if (!err)
		cfg->node_id = (uint16_t)v;
	return err;
}

static error_t set_admission(struct pmd_config *cfg, const char *val,
			     const char *where)
{
	if (!strcmp(val, "remainder")) {
		cfg->admit = PMD_ADMIT_REMAINDER;
	} else if (!strcmp(val, "refuse")) {
		cfg->admit = PMD_ADMIT_REFUSE;
	} else {
		fprintf(stderr, "pmd: %s: admission '%s': want 'remainder' or "
			"'refuse'\n", where, val);
		return EINVAL;
	}
	return 0;
}

static error_t set_log_level(struct pmd_config *cfg, const char *val,
			     const char *where)
{
	static const char *const names[] = { "error", "warning", "info",
					     "debug" };

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(val, names[i])) {
			cfg->log_level = (enum pmd_log_level)i;
			return 0;
		}
	}
	fprintf(stderr, "pmd: %s: log-level '%s': want error, warning, info "
		"or debug\n", where, val);
	return EINVAL;
}

/* Every setting of section [pmd], also an option of the same name. */
static const struct setting {
	const char *name;             /* the option, and the file's key */
	const char *alias;            /* the file's key with '_', or NULL */
	setter_fn *set;
} settings[] = {
	{ "socket", NULL, set_socket },
	{ "socket-mode", "socket_mode", set_socket_mode },
	{ "socket-group", "socket_group", set_socket_group },
	{ "user-sessions", "user_sessions", set_user_sessions },
	{ "user-handles", "user_handles", set_user_handles },
	{ "metrics", NULL, set_metrics },
	{ "memory", NULL, set_memory },
	{ "guarantee", NULL, set_guarantee },
	{ "extra", NULL, set_extra },
	{ "admission", NULL, set_admission },
	{ "max-lock-ms", "max_lock_ms", set_max_lock_ms },
	{ "stop-ms", "stop_ms", set_stop_ms },
	{ "reclaim-grace-ms", "reclaim_grace_ms", set_reclaim_grace_ms },
	{ "poll-us", "poll_us", set_poll_us },
	{ "ring-spin-us", "ring_spin_us", set_ring_spin_us },
	{ "node-id", "node_id", set_node_id },
	{ "cluster", NULL, set_cluster },
	{ "transport", NULL, set_transport },
	{ "backing-store", "backing_store", set_backing_store },
	{ "backing-size", "backing_size", set_backing_size },
	{ "log-level", "log_level", set_log_level },
};
#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

/* Applies one setting by its name. */
static error_t config_set(struct pmd_config *cfg, const char *key,
			  const char *val, const char *where)
{
	for (unsigned i = 0; i < NSETTINGS; i++)
		if (!strcmp(key, settings[i].name) ||
		    (settings[i].alias && !strcmp(key, settings[i].alias)))
			return settings[i].set(cfg, val, where);
	fprintf(stderr, "pmd: %s: unknown setting '%s'\n", where, key);
	return EINVAL;
}

/* [user NAME] or [user UID]: guarantee and extra for that user's tasks. */
static error_t config_user_set(struct pmd_config *cfg, const char *user,
			       const char *key, const char *val,
			       const char *where)
{
	struct pmd_user_limits *u = NULL;
	uint64_t uid;

	if (strcmp(key, "guarantee") && strcmp(key, "extra") &&
	    strcmp(key, "sessions") && strcmp(key, "handles")) {
		fprintf(stderr, "pmd: %s: unknown setting '%s' (a [user] "
			"section takes guarantee, extra, sessions and "
			"handles)\n", where, key);
		return EINVAL;
	}
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
		/* unset: the node default */
		*u = (struct pmd_user_limits){ .uid = (uint32_t)uid,
					       .guarantee = PMD_LIMIT_DEFAULT,
					       .extra = PMD_LIMIT_DEFAULT,
					       .sessions = PMD_LIMIT_DEFAULT,
					       .handles = PMD_LIMIT_DEFAULT };
	}
	if (key[0] == 's' || key[0] == 'h')
		return set_number(key[0] == 's' ? &u->sessions : &u->handles, 0,
				  UINT32_MAX, key, "0 (no limit) to 4294967295",
				  val, where);
	return set_frames(key[0] == 'g' ? &u->guarantee : &u->extra, key, val,
			  where);
}

/* ---- the configuration file ---- */

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
	if (!strncmp(section, "user ", 5))
		ctx->err = config_user_set(ctx->cfg, section + 5, name, value,
					   where);
	else if (strcmp(section, "pmd")) {
		fprintf(stderr, "pmd: %s: unknown section (settings go in "
			"[pmd] or [user NAME])\n", where);
		ctx->err = EINVAL;
	} else {
		ctx->err = config_set(ctx->cfg, name, value, where);
	}
	return !ctx->err;
}

static error_t config_read_file(struct pmd_config *cfg, const char *file)
{
	struct ini_ctx ctx = { .cfg = cfg, .file = file };
	int rc;

	if (strlen(file) >= sizeof(cfg->config)) {
		fprintf(stderr, "pmd: --config: a path of at most %zu bytes\n",
			sizeof(cfg->config) - 1);
		return EINVAL;
	}
	strcpy(cfg->config, file);
	rc = ini_parse(file, config_ini_entry, &ctx);
	if (rc < 0) {
		fprintf(stderr, "pmd: cannot read config file '%s'\n", file);
		return ENOENT;
	}
	if (rc > 0 && !ctx.err)
		fprintf(stderr, "pmd: %s:%d: syntax error\n", file, rc);
	return rc > 0 || ctx.err ? EINVAL : 0;
}

/* ---- the command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: pmd [options]\n"
"  --socket PATH        Unix socket tasks connect to (default %s)\n"
"  --socket-mode MODE   its permission bits, octal, not world-writable\n"
"                       (default 0660: its owner and group may be tasks)\n"
"  --socket-group GROUP its group (default: the pmd's)\n"
"  --user-sessions N    sessions a user may have at once (default 1024;\n"
"                       0: no limit; [user X] sessions = N for one user)\n"
"  --metrics ADDR:PORT  serve Prometheus metrics over HTTP there (GET\n"
"                       /metrics; e.g. 127.0.0.1:9464); pmctl metrics\n"
"                       prints the same\n"
"  --user-handles N     handles a user's tasks may hold together: their\n"
"                       containers and weak references (default 262144;\n"
"                       0: no limit; [user X] handles = N)\n"
"  --memory SIZE        the node's frame budget, e.g. 256M, 8G (default 1G)\n"
"  --guarantee N        default guaranteed frames per task (default 16384)\n"
"  --extra N            default extra frames per task (default 16384)\n"
"  --admission POLICY   remainder | refuse: a guarantee that does not fit\n"
"  --max-lock-ms N      the longest lock a server may take (default 10000)\n"
"  --stop-ms N          how long a task's library has to stop its stores to\n"
"                       frames about to move (default 200)\n"
"  --reclaim-grace-ms N how long a task asked to give extra frames back has\n"
"                       before the pmd takes them (default 100)\n"
"  --poll-us N          in a cluster, poll the fabric rather than sleep\n"
"                       while waiting for peers and for N us after a peer's\n"
"                       traffic, yielding the CPU between polls (default\n"
"                       50; 0: always sleep)\n"
"  --ring-spin-us N     after a task's request through its request ring,\n"
"                       poll the rings rather than sleep for up to N us, only\n"
"                       while the task runs on another CPU (default 50;\n"
"                       0: never)\n"
"  --config FILE        configuration file (INI, section [pmd])\n"
"  --node-id N          this node's id (default 1)\n"
"  --cluster FILE       the cluster file (several nodes)\n"
"  --transport T        between nodes: tcp, verbs or ofi:PROVIDER (default:\n"
"                       the cluster file's, else tcp)\n"
"  --backing-store PATH where frames are paged out when neither memory nor\n"
"                       other nodes have room: an existing file or block\n"
"                       device, used whole (guarantees may reserve it too)\n"
"  --backing-size SIZE  with --backing-store: create or extend that file to\n"
"                       SIZE (whole 4K frames, e.g. 1G) and use SIZE of it\n"
"  --ready-fd N         write one byte to fd N when ready\n"
"  --log-level LEVEL    error | warning | info | debug\n"
"  --help, --version\n", PM_DEFAULT_SOCKET);
}

enum { OPT_CONFIG = 'c', OPT_READY_FD = 'r', OPT_HELP = 'h',
       OPT_VERSION = 'V' };

/* The options: every setting (val 0, index i: settings[i]), then the
 * command line's own. */
static void config_options(struct option *opts)
{
	unsigned i;

	for (i = 0; i < NSETTINGS; i++)
		opts[i] = (struct option){ settings[i].name, required_argument,
					   NULL, 0 };
	opts[i++] = (struct option){ "config", required_argument, NULL,
				     OPT_CONFIG };
	opts[i++] = (struct option){ "ready-fd", required_argument, NULL,
				     OPT_READY_FD };
	opts[i++] = (struct option){ "help", no_argument, NULL, OPT_HELP };
	opts[i++] = (struct option){ "version", no_argument, NULL, OPT_VERSION };
	opts[i] = (struct option){ NULL, 0, NULL, 0 };
}

/* The first pass: --config, --ready-fd, --help, --version, and whether
 * every option is known. */
static error_t config_first_pass(struct pmd_config *cfg, int argc,
				 char **argv, const struct option *opts,
				 const char **file, bool *served)
{
	uint64_t v;
	int ch, idx;

	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		switch (ch) {
		case OPT_CONFIG:
			*file = optarg;
			break;
		case OPT_READY_FD:
			if (pmd_parse_u64(optarg, INT32_MAX, &v) || v < 3) {
				fprintf(stderr, "pmd: --ready-fd '%s': want a "
					"descriptor number >= 3\n", optarg);
				return EINVAL;
			}
			cfg->ready_fd = (int)v;
			break;
		case OPT_HELP:
			usage(stdout);
			*served = true;
			return 0;
		case OPT_VERSION:
			printf("pmd %s\n", PMD_VERSION);
			*served = true;
			return 0;
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
	return 0;
}

/* The second pass: the settings on the command line win over the file. */
static error_t config_second_pass(struct pmd_config *cfg, int argc,
				  char **argv, const struct option *opts)
{
	int ch, idx;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		char where[64];

		if (ch != 0)
			continue;
		snprintf(where, sizeof(where), "--%s", opts[idx].name);
		if (settings[idx].set(cfg, optarg, where))
			return EINVAL;
	}
	return 0;
}

/* What the settings ask for as a whole: what is not built says so, and
 * the cluster file is read whole. */
static error_t config_finish(struct pmd_config *cfg)
{
	struct pmd_cluster_conf *cc;
	char why[1024];
	error_t err;

	if (cfg->backing_size && !cfg->backing_store[0]) {
		fprintf(stderr, "pmd: --backing-size: only with --backing-store "
			"PATH (the file to create or extend)\n");
		return EINVAL;
	}
	if (!cfg->cluster[0]) {
		if (!cfg->transport[0])
			return 0;
		fprintf(stderr, "pmd: --transport: only a node of a cluster "
			"(--cluster) has one\n");
		return EINVAL;
	}
	cc = malloc(sizeof(*cc));
	if (!cc)
		return ENOMEM;
	err = pmd_cluster_load(cfg->cluster, cfg->node_id, cc, why, sizeof(why));
	if (err) {
		fprintf(stderr, "pmd: cluster file: %s\n", why);
		sodium_memzero(cc, sizeof(*cc));
		free(cc);
		return err;
	}
	if (cfg->transport[0])
		strcpy(cc->transport, cfg->transport);
	cfg->cluster_conf = cc;
	return 0;
}

static void config_defaults(struct pmd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	strcpy(cfg->socket, PM_DEFAULT_SOCKET);
	cfg->socket_mode = 0660;
	cfg->user_sessions = 1024;
	cfg->user_handles = 262144;
	cfg->socket_gid = (gid_t)-1;
	cfg->memory = UINT64_C(1) << 30;
	cfg->guarantee = 16384;
	cfg->extra = 16384;
	cfg->max_lock_ms = 10000;
	cfg->stop_ms = 200;
	cfg->reclaim_grace_ms = 100;
	cfg->poll_us = 50;
	cfg->ring_spin_us = 50;
	cfg->node_id = 1;
	cfg->admit = PMD_ADMIT_REMAINDER;
	cfg->log_level = PMD_LOG_INFO;
	cfg->ready_fd = -1;
}

error_t pmd_config_load(struct pmd_config *cfg, int argc, char **argv,
			bool *served)
{
	struct option opts[NSETTINGS + 5];
	const char *file = NULL;
	error_t err;

	*served = false;
	config_defaults(cfg);
	config_options(opts);
	err = config_first_pass(cfg, argc, argv, opts, &file, served);
	if (err || *served)
		return err;
	if (file && (err = config_read_file(cfg, file)))
		return err;
	err = config_second_pass(cfg, argc, argv, opts);
	if (!err)
		err = config_finish(cfg);
	return err;
}

void pmd_config_fini(struct pmd_config *cfg)
{
	if (cfg->cluster_conf)
		sodium_memzero(cfg->cluster_conf, sizeof(*cfg->cluster_conf));
	free(cfg->cluster_conf);
	cfg->cluster_conf = NULL;
}

size_t pmd_config_render(const struct pmd_config *cfg, char *buf, size_t cap)
{
	static const char *const levels[] = { "error", "warning", "info",
					      "debug" };
	int n;

	n = snprintf(buf, cap,
		     "version = %s\n"
		     "socket = %s\n"
		     "socket_mode = %04o\n"
		     "socket_group = %ld\n"
		     "memory = %lu\n"
		     "guarantee = %lu\n"
		     "extra = %lu\n"
		     "admission = %s\n"
		     "user_sessions = %lu\n"
		     "user_handles = %lu\n"
		     "max_lock_ms = %u\n"
		     "stop_ms = %u\n"
		     "reclaim_grace_ms = %u\n"
		     "poll_us = %u\n"
		     "ring_spin_us = %u\n"
		     "node_id = %u\n"
		     "cluster = %s\n"
		     "transport = %s\n"
		     "backing_store = %s\n"
		     "backing_size = %lu\n"
		     "metrics = %s\n"
		     "log_level = %s\n"
		     "config = %s\n"
		     "user_sections = %u\n",
		     PMD_VERSION, cfg->socket, cfg->socket_mode,
		     cfg->socket_gid == (gid_t)-1 ? -1L : (long)cfg->socket_gid,
		     (unsigned long)cfg->memory, (unsigned long)cfg->guarantee,
		     (unsigned long)cfg->extra,
		     cfg->admit == PMD_ADMIT_REFUSE ? "refuse" : "remainder",
		     (unsigned long)cfg->user_sessions,
		     (unsigned long)cfg->user_handles, cfg->max_lock_ms,
		     cfg->stop_ms, cfg->reclaim_grace_ms, cfg->poll_us,
		     cfg->ring_spin_us,
		     cfg->node_id, cfg->cluster,
		     cfg->transport, cfg->backing_store,
		     (unsigned long)cfg->backing_size, cfg->metrics,
		     levels[cfg->log_level <= PMD_LOG_DEBUG ? cfg->log_level
							    : PMD_LOG_DEBUG],
		     cfg->config, cfg->nusers);
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
