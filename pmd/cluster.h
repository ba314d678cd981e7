/*
 * cluster.h - this node in a cluster: its fabric endpoint, its peers, and
 * the membership protocol (membership.h) driven from the pmd's loop.
 *
 * Built so far: membership (authentication, heartbeats, up/suspect/down,
 * incarnations) and pm_nodes. Home nodes and remote frames come next; until
 * then a node serves its own tasks as a single node does.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_CLUSTER_H
#define PMD_CLUSTER_H

#include <stdint.h>

#include <pm/pm.h>

#include "cluster_conf.h"
#include "pm_proto.h"

struct pmd_cluster;

/* Opens the endpoint at this node's address and adds every peer. */
error_t pmd_cluster_start(const struct pmd_cluster_conf *conf, pm_node_t self,
			  struct pmd_cluster **out);
void pmd_cluster_stop(struct pmd_cluster *c);

/* Descriptors for the loop's epoll (EPOLLIN); when one is ready, or at the
 * latest after pmd_cluster_timeout_ms, call pmd_cluster_run. */
int pmd_cluster_fds(const struct pmd_cluster *c, int fds[2]);
int pmd_cluster_timeout_ms(const struct pmd_cluster *c);
/* Reaps the fabric, runs the protocol, sends what it says. Our own frames
 * go into heartbeats. */
void pmd_cluster_run(struct pmd_cluster *c, uint64_t frames_total,
		     uint64_t frames_free);

/* Every node of the cluster file but self, for pm_nodes: up to max. */
unsigned pmd_cluster_nodes(const struct pmd_cluster *c,
			   struct pm_node_entry *out, unsigned max);
uint64_t pmd_cluster_incarnation(const struct pmd_cluster *c);

/*
 * Node requests: a request to another node and its answer, authenticated
 * (HMAC under the cluster secret, both incarnations checked), with a
 * deadline. done runs exactly once, from pmd_cluster_run or from
 * pmd_cluster_stop: with 0 and the answer's body, or ENODEV (not up, or
 * went down), ETIMEDOUT (no answer in time), or the peer's error.
 * Types so far: PMD_NREQ_PING (empty; answer: pmd_nreq_ping_rep).
 */
#define PMD_NREQ_PING 1
struct pmd_nreq_ping_rep {
	uint64_t incarnation;
	uint64_t frames_free;
};
typedef void pmd_ncall_done(void *arg, error_t status, const void *body,
			    size_t len);
error_t pmd_cluster_call(struct pmd_cluster *c, pm_node_t to, uint16_t type,
			 const void *body, size_t len, pmd_ncall_done *done,
			 void *arg);
/* Forgets the calls made with arg (its requester went away): their done
 * will not run. */
void pmd_cluster_cancel(struct pmd_cluster *c, void *arg);
const char *pmd_cluster_self_address(const struct pmd_cluster *c);

#endif
