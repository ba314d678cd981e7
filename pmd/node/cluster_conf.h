/*
 * cluster_conf.h - the cluster file: every node of the cluster and the
 * shared secret, one INI file used unchanged by all nodes.
 *
 *   [cluster]
 *   secret_file = cluster.key      ; relative to this file's directory
 *   transport = verbs              ; optional: tcp (default), verbs, or
 *                                  ;   ofi:PROVIDER (any libfabric one);
 *                                  ;   pmd --transport and then
 *                                  ;   PM_FABRIC_PROVIDER win over it
 *                                  ;   (provider = NAME: ofi:NAME, older)
 *   heartbeat_ms = 200             ; optional failure-detector timings:
 *   suspect_ms = 1000              ;   heartbeat < suspect < down
 *   down_ms = 3000
 *   [node 1]
 *   address = 192.0.2.11:7100      ; fabric address, host:port or [v6]:port
 *
 * Parsing (pmd_cluster_parse) does no I/O beyond the text it is given, so
 * the unit tests drive it; loading (pmd_cluster_load) reads the file and
 * the secret. Every error names the file and line or key; nothing is
 * half-filled on failure. Lock key: (C) filled once at start, then read
 * only.
 */
#ifndef PMD_CLUSTER_CONF_H
#define PMD_CLUSTER_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pm/pm.h>

#define PMD_CLUSTER_NODES_MAX 64      /* nodes in one cluster */
#define PMD_SECRET_MIN        16      /* bytes of secret at least */
#define PMD_SECRET_MAX        256     /* bytes read from the secret file */

struct pmd_cluster_node {
	pm_node_t id;                 /* (C) 1 .. 65534 */
	char host[256];               /* (C) name or address, brackets removed */
	char port[6];                 /* (C) 1 .. 65535, digits */
};

struct pmd_cluster_conf {
	char secret_file[4096];       /* (C) resolved against the file's
	                               * directory */
	char transport[64];           /* (C) "" : the fabric's default (tcp) */
	uint32_t heartbeat_ms, suspect_ms, down_ms; /* (C) failure detector */
	struct pmd_cluster_node nodes[PMD_CLUSTER_NODES_MAX]; /* (C) by id */
	unsigned nnodes;              /* (C) */
	uint8_t secret[PMD_SECRET_MAX]; /* (C) the cluster secret */
	size_t secret_len;            /* (C) 0 until loaded */
};

/* Parses the text of a cluster file named `path` (for messages and for
 * resolving secret_file) and checks that node `self` is in it. On error
 * writes one line to err and returns EINVAL. */
error_t pmd_cluster_parse(const char *text, const char *path, pm_node_t self,
			  struct pmd_cluster_conf *out, char *err, size_t errlen);

/* Reads and parses the file, then reads the secret: it must be a regular
 * file of PMD_SECRET_MIN bytes or more that only its owner can read. */
error_t pmd_cluster_load(const char *path, pm_node_t self,
			 struct pmd_cluster_conf *out, char *err, size_t errlen);

/* A transport as [cluster] names it: tcp, verbs or ofi:PROVIDER; with
 * provider set, a bare libfabric provider name (the older key). */
bool pmd_transport_valid(const char *t, bool provider);

/* The entry of node id, or NULL. */
const struct pmd_cluster_node *
pmd_cluster_node(const struct pmd_cluster_conf *c, pm_node_t id);

#endif
