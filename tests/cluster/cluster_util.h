/*
 * cluster_util.h - helpers of the cluster tests: free ports of the test
 * address, a clock, and what one node says of another.
 */
#ifndef PM_CLUSTER_UTIL_H
#define PM_CLUSTER_UTIL_H

#include <stdint.h>

#include <pm/pm.h>

#include "harness.h"

/* The address nodes bind: PM_TEST_ADDR (an IPv4 address; a soft-RoCE
 * node sets its device's), else 127.0.0.1. */
const char *ct_addr(void);
/* n different TCP ports on ct_addr() nobody listens on (now), n <= 16. */
void ct_free_ports(int *ports, int n);
uint64_t ct_now_ms(void);
/* The failure detector of the cluster files below. */
#define CT_HEARTBEAT_MS 100
#define CT_SUSPECT_MS   400
#define CT_DOWN_MS      1200

void ct_write_file(const char *path, int mode, const char *text);
/* A cluster file at ini naming nodes 1..n at ports[i] on ct_addr(), with
 * secret_file (relative to ini) and the timings above. */
void ct_cluster_file(const char *ini, const char *secret_file,
		     const int *ports, int n);
/* A fresh directory from the template in dir (…XXXXXX, rewritten), with
 * cluster.key (0600) and cluster.ini naming nodes 1..n on free ports. */
void ct_cluster_files(char *dir, char *ini, size_t ini_len, char *key,
		      size_t key_len, int n);
/* Starts node id of the cluster file ini (64 MiB), with extra arguments
 * (NULL-terminated; NULL: 1024 guaranteed frames a task). */
void ct_start_node(struct pmd_proc *p, int id, const char *ini,
		   const char *const *extra);
/* Starts nodes 1..n of ini and waits until each sees every other up. */
void ct_start_nodes(struct pmd_proc *nodes, int n, const char *ini);
/* The accounting check of every serving node (not stopped, not dead)
 * holds, loans in and out included, and their books agree: what one
 * lends another, that one borrows; nothing is lent to or borrowed from a
 * node that is not serving. Waits for loans on their way back and for
 * nodes to be declared down (fails the test after three down times). */
void ct_check_loans(const struct pmd_proc *nodes, int n);
/* A scenario ends: ct_check_loans, then every node of nodes[0..n) that
 * runs stops (pmd_proc_stop: it must exit cleanly, with no error it was
 * not expected to log). */
void ct_stop_nodes(struct pmd_proc *nodes, int n);
/* After ct_check_loans, what a test left running is reaped (its logs
 * stay, for a failed test to be read) and the cluster files go. */
void ct_cluster_down(struct pmd_proc *nodes, int n, const char *dir,
		     const char *ini, const char *key);
/* SIGKILL p if it runs and reap it; its directory and log stay. */
void ct_reap(struct pmd_proc *p);
/* A node dies: ct_reap, then tidy what the harness made. */
void ct_kill(struct pmd_proc *p);
/* What the pmd p says of node `of` (fails the test if it lists none). */
struct pm_node_info ct_seen(const struct pmd_proc *p, pm_node_t of);
/* p's budget left (pm_debug_stat): what pm_nodes said before it said
 * the frames no physical page takes. */
uint64_t ct_budget_free(const struct pmd_proc *p);
/* Waits until p sees node `of` in state; returns the ms it took, fails the
 * test after max_ms. */
uint64_t ct_wait_state(const struct pmd_proc *p, pm_node_t of, int state,
		       uint64_t max_ms);
/* A weak reference to c of owner, shared with and imported by task s
 * (on any node). */
container_t ct_import(pm_t *owner, container_t c, pm_t *s);

#endif
