/* The cluster file: parsing and checking (see cluster_conf.h). */
#include "cluster_conf.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "parse.h"

#define DEF_HEARTBEAT_MS 200
#define DEF_SUSPECT_MS   1000
#define DEF_DOWN_MS      3000
#define TIMING_MAX_MS    600000

struct parse_ctx {
	struct pmd_cluster_conf *c;
	uint8_t seen[65536 / 8];       /* node ids defined, a bit each */
	char *err;
	size_t errlen;
};

static void fail(struct parse_ctx *x, const char *fmt, ...)
{
	va_list ap;

	if (x->err[0])
		return; /* keep the first */
	va_start(ap, fmt);
	vsnprintf(x->err, x->errlen, fmt, ap);
	va_end(ap);
}

/* "host:port", "[v6]:port". */
static bool parse_address(const char *s, struct pmd_cluster_node *n)
{
	const char *colon, *host = s;
	size_t hlen;
	uint64_t port;

	if (*s == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':')
			return false;
		host = s + 1;
		hlen = (size_t)(end - host);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return false; /* v6 needs brackets */
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(n->host) || strlen(colon + 1) >= sizeof(n->port))
		return false;
	for (size_t i = 0; i < hlen; i++)
		if (host[i] == ' ' || host[i] == '\t' || host[i] == '/')
			return false;
	if (pmd_parse_u64(colon + 1, 65535, &port) || port == 0)
		return false;
	memcpy(n->host, host, hlen);
	n->host[hlen] = 0;
	snprintf(n->port, sizeof(n->port), "%u", (unsigned)port);
	return true;
}

static bool parse_ms(const char *v, uint32_t *out)
{
	uint64_t ms;

	if (pmd_parse_u64(v, TIMING_MAX_MS, &ms) || ms == 0)
		return false;
	*out = (uint32_t)ms;
	return true;
}

bool pmd_transport_valid(const char *t, bool provider)
{
	const char *p = t;

	if (!provider) {
		if (!strcmp(t, "tcp") || !strcmp(t, "verbs"))
			return true;
		if (strncmp(t, "ofi:", 4))
			return false;
		p = t + 4;
	}
	return *p && strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_;") ==
			     strlen(p);
}

/* A key of [cluster]; false (x says why) when it is bad. */
static bool on_cluster_key(struct parse_ctx *x, const char *name,
			   const char *value)
{
	struct pmd_cluster_conf *c = x->c;
	bool ok;

	if (!strcmp(name, "secret_file")) {
		ok = *value && strlen(value) < sizeof(c->secret_file);
		if (ok)
			strcpy(c->secret_file, value);
	} else if (!strcmp(name, "transport") || !strcmp(name, "provider")) {
		/* provider: a libfabric provider, as earlier files named it */
		bool old = name[0] == 'p';

		ok = pmd_transport_valid(value, old) &&
		     strlen(value) + (old ? 4 : 0) < sizeof(c->transport);
		if (ok)
			snprintf(c->transport, sizeof(c->transport), "%s%s",
				 old ? "ofi:" : "", value);
	} else if (!strcmp(name, "heartbeat_ms")) {
		ok = parse_ms(value, &c->heartbeat_ms);
	} else if (!strcmp(name, "suspect_ms")) {
		ok = parse_ms(value, &c->suspect_ms);
	} else if (!strcmp(name, "down_ms")) {
		ok = parse_ms(value, &c->down_ms);
	} else {
		fail(x, "unknown key '%s' in [cluster]", name);
		return false;
	}
	if (!ok)
		fail(x, "bad value '%s' for %s in [cluster]", value, name);
	return ok;
}

/* The key of a [node N] section: its address. */
static bool on_node_key(struct parse_ctx *x, const char *section,
			const char *name, const char *value)
{
	struct pmd_cluster_conf *c = x->c;
	struct pmd_cluster_node *n;
	uint64_t id;

	if (pmd_parse_u64(section + 5, 65534, &id) || id == 0) {
		fail(x, "[%s]: a node id is 1 to 65534", section);
		return false;
	}
	if (strcmp(name, "address")) {
		fail(x, "unknown key '%s' in [%s] (nodes have an address)", name,
		     section);
		return false;
	}
	/* One section per node; a repeated section repeats the key. */
	if (x->seen[id / 8] & (1u << (id % 8))) {
		fail(x, "node %u is defined twice", (unsigned)id);
		return false;
	}
	if (c->nnodes == PMD_CLUSTER_NODES_MAX) {
		fail(x, "more than %d nodes", PMD_CLUSTER_NODES_MAX);
		return false;
	}
	n = &c->nodes[c->nnodes];
	memset(n, 0, sizeof(*n));
	n->id = (pm_node_t)id;
	if (!parse_address(value, n)) {
		fail(x, "[%s]: address '%s' is not host:port or [v6]:port",
		     section, value);
		return false;
	}
	x->seen[id / 8] |= (uint8_t)(1u << (id % 8));
	c->nnodes++;
	return true;
}

static int on_entry(void *user, const char *section, const char *name,
		    const char *value)
{
	struct parse_ctx *x = user;

	if (!strcmp(section, "cluster"))
		return on_cluster_key(x, name, value);
	if (!strncmp(section, "node ", 5))
		return on_node_key(x, section, name, value);
	fail(x, "unknown section [%s] (sections are [cluster] and [node N])",
	     section);
	return 0;
}

static int node_cmp(const void *a, const void *b)
{
	const struct pmd_cluster_node *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

/* The file as a whole: a secret, nodes sorted by id at different
 * addresses, this node among them, timings that grow. */
static bool check_whole(struct pmd_cluster_conf *c, const char *path,
			pm_node_t self, char *err, size_t errlen)
{
	if (!c->secret_file[0]) {
		snprintf(err, errlen, "%s: [cluster] needs secret_file", path);
		return false;
	}
	if (c->nnodes == 0) {
		snprintf(err, errlen, "%s: no [node N] sections", path);
		return false;
	}
	if (!(c->heartbeat_ms < c->suspect_ms && c->suspect_ms < c->down_ms)) {
		snprintf(err, errlen, "%s: timings must grow: heartbeat_ms %u < "
			 "suspect_ms %u < down_ms %u", path, c->heartbeat_ms,
			 c->suspect_ms, c->down_ms);
		return false;
	}
	qsort(c->nodes, c->nnodes, sizeof(c->nodes[0]), node_cmp);
	for (unsigned i = 0; i < c->nnodes; i++)
		for (unsigned k = i + 1; k < c->nnodes; k++)
			if (!strcmp(c->nodes[i].host, c->nodes[k].host) &&
			    !strcmp(c->nodes[i].port, c->nodes[k].port)) {
				snprintf(err, errlen, "%s: nodes %u and %u have the "
					 "same address %s:%s", path, c->nodes[i].id,
					 c->nodes[k].id, c->nodes[i].host,
					 c->nodes[i].port);
				return false;
			}
	if (!pmd_cluster_node(c, self)) {
		snprintf(err, errlen, "%s: this node (--node-id %u) has no "
			 "[node %u] section", path, self, self);
		return false;
	}
	return true;
}

/* A relative secret_file is relative to the cluster file. */
static bool resolve_secret_file(struct pmd_cluster_conf *c, const char *path,
				char *err, size_t errlen)
{
	const char *slash = strrchr(path, '/');
	char joined[sizeof(c->secret_file)];
	int n;

	if (c->secret_file[0] == '/')
		return true;
	n = slash ? snprintf(joined, sizeof(joined), "%.*s/%s",
			     (int)(slash - path), path, c->secret_file)
		  : snprintf(joined, sizeof(joined), "%s", c->secret_file);
	if (n < 0 || (size_t)n >= sizeof(joined)) {
		snprintf(err, errlen, "%s: secret_file path too long", path);
		return false;
	}
	strcpy(c->secret_file, joined);
	return true;
}

error_t pmd_cluster_parse(const char *text, const char *path, pm_node_t self,
			  struct pmd_cluster_conf *out, char *err, size_t errlen)
{
	struct pmd_cluster_conf *c = calloc(1, sizeof(*c));
	struct parse_ctx *x = calloc(1, sizeof(*x));
	error_t rc = EINVAL;
	char reason[512] = "";
	int line;

	if (!c || !x) {
		snprintf(err, errlen, "%s: out of memory", path);
		rc = ENOMEM;
		goto free_all;
	}
	c->heartbeat_ms = DEF_HEARTBEAT_MS;
	c->suspect_ms = DEF_SUSPECT_MS;
	c->down_ms = DEF_DOWN_MS;
	x->c = c;
	x->err = reason;
	x->errlen = sizeof(reason);
	line = ini_parse_string(text, on_entry, x);
	if (line) {
		if (reason[0])
			snprintf(err, errlen, "%s:%d: %s", path, line, reason);
		else
			snprintf(err, errlen, "%s:%d: not an INI line", path, line);
		goto free_all;
	}
	if (!check_whole(c, path, self, err, errlen) ||
	    !resolve_secret_file(c, path, err, errlen))
		goto free_all;
	*out = *c;
	rc = 0;
free_all:
	if (c)
		sodium_memzero(c, sizeof(*c));
	free(c);
	free(x);
	return rc;
}

static error_t read_secret(struct pmd_cluster_conf *c, char *err, size_t errlen)
{
	struct stat st;
	ssize_t n;
	int fd = open(c->secret_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0) {
		snprintf(err, errlen, "secret_file %s: %s", c->secret_file,
			 strerror(errno));
		return EINVAL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "secret_file %s: not a regular file",
			 c->secret_file);
		goto bad;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "secret_file %s: readable by others "
			 "(mode %03o); chmod 600 it", c->secret_file,
			 (unsigned)(st.st_mode & 0777));
		goto bad;
	}
	n = read(fd, c->secret, sizeof(c->secret));
	if (n < PMD_SECRET_MIN) {
		snprintf(err, errlen, "secret_file %s: %s", c->secret_file,
			 n < 0 ? strerror(errno) : "shorter than 16 bytes");
		sodium_memzero(c->secret, sizeof(c->secret));
		goto bad;
	}
	c->secret_len = (size_t)n;
	close(fd);
	return 0;
bad:
	close(fd);
	return EINVAL;
}

error_t pmd_cluster_load(const char *path, pm_node_t self,
			 struct pmd_cluster_conf *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t cap = 0;
	ssize_t len;
	error_t rc;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return EINVAL;
	}
	len = getdelim(&text, &cap, '\0', f);
	fclose(f);
	if (len < 0) {
		free(text);
		snprintf(err, errlen, "%s: empty or unreadable", path);
		return EINVAL;
	}
	if ((size_t)len != strlen(text)) {
		free(text);
		snprintf(err, errlen, "%s: contains a NUL byte", path);
		return EINVAL;
	}
	rc = pmd_cluster_parse(text, path, self, out, err, errlen);
	free(text);
	if (rc)
		return rc;
	rc = read_secret(out, err, errlen);
	if (rc)
		sodium_memzero(out, sizeof(*out));
	return rc;
}

const struct pmd_cluster_node *
pmd_cluster_node(const struct pmd_cluster_conf *c, pm_node_t id)
{
	for (unsigned i = 0; i < c->nnodes; i++)
		if (c->nodes[i].id == id)
			return &c->nodes[i];
	return NULL;
}
