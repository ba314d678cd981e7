/*
 * node2.h - node 2 of the two-node cluster fuzz_pmd_start(true) makes:
 * nothing of it runs, its test or fuzz target speaks for it, rightly or
 * wrongly. Link with -Wl,--wrap=fab_send,--wrap=fab_read,--wrap=fab_write,
 * --wrap=fab_mr_dereg:
 * what node 1 sends goes to the listener, nothing leaves the process, and
 * one-sided reads and writes fail at once (EIO), as to a node that
 * vanished.
 */
#ifndef PMD_FUZZ_NODE2_H
#define PMD_FUZZ_NODE2_H

#include <stdbool.h>
#include <stdint.h>

#include "fuzz.h"
#include "node_proto.h"

/* What node 1 sent node 2: a node request or answer (membership messages
 * are not passed on). */
typedef void node2_hear_fn(const struct pmd_nreq_hdr *h, const uint8_t *body,
			   void *arg);
void node2_listen(node2_hear_fn *fn, void *arg);

/* Node 2 comes up under a fresh incarnation (node 1 forgets the last). */
void node2_up(struct fuzz_pmd *p);
/* Node 2 goes down; node 1 must forget all it held for it (loans,
 * proxies, calls) within 2 s, or the process aborts. */
void node2_down(struct fuzz_pmd *p);
/* Node 2 was only paused or cut off: down (node 1 forgets it, as above),
 * then up again under the same incarnation (node 1 owes it a RESET). */
void node2_back(struct fuzz_pmd *p);
/* Whether node 1 deregistered the memory region of this key (since the
 * start; fab_mr_dereg is wrapped too). */
bool node2_key_gone(uint64_t key);
/* A node request from node 2 (flags PMD_NREQ_REPLY: an answer), signed,
 * delivered, and served: the loop runs until node 1 has no forwarded
 * request in progress and no call waiting, at most wait_ms. */
void node2_send(struct fuzz_pmd *p, uint16_t type, uint32_t flags,
		uint64_t id, uint32_t status, const void *body, uint32_t len,
		int wait_ms);
/* Bytes as they come from node 2, unsigned and unchecked. */
void node2_send_raw(struct fuzz_pmd *p, const void *msg, size_t len,
		    int wait_ms);

#endif
