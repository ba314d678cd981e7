/*
 * fuzz.h - what the fuzz targets share: a pmd running in the target's own
 * process (its loop driven turn by turn), and the accounting check each
 * target runs after every input.
 *
 * Each target defines LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize
 * where it keeps state across inputs). Built with PMD_FUZZING (clang),
 * libFuzzer drives it; otherwise replay.c's main runs it on every file of
 * a corpus, which is how CTest replays the checked-in corpora.
 */
#ifndef PMD_FUZZ_H
#define PMD_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "core.h"

struct pmd_server;

/* libFuzzer's entry points, which every target defines (Initialize where
 * it keeps state across inputs). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A pmd in this process. */
struct fuzz_pmd {
	struct pmd_config cfg;
	struct pmd_core core;
	struct pmd_server *srv;
	char dir[64];                /* its socket's directory */
	uint64_t frames_free;        /* free frames when idle */
};

/* Starts one (aborts if it cannot): a single node, or with cluster node
 * 1 of a two-node cluster over TCP on loopback whose node 2 never runs
 * (the target speaks for it). */
struct fuzz_pmd *fuzz_pmd_start(bool cluster);
/* Runs the loop until done(arg) or ms milliseconds passed. */
void fuzz_pmd_run(struct fuzz_pmd *p, int ms, bool (*done)(void *), void *arg);
/* Runs the loop until every task is gone (2 s at most), then
 * fuzz_pmd_check(p, true). */
void fuzz_pmd_idle(struct fuzz_pmd *p);
/* The accounting self-check holds, and, with idle, nothing is held by
 * anyone (every task gone): aborts, after saying why, otherwise. */
void fuzz_pmd_check(struct fuzz_pmd *p, bool idle);

/* A connection to p's socket (non-blocking), aborting on failure. */
int fuzz_pmd_connect(const struct fuzz_pmd *p);

/* A task of that pmd, spoken for in its wire protocol (the pmd runs in
 * this thread: the library's blocking calls cannot be used). */
struct fuzz_task {
	int fd;
	int fault_fd;                /* its fault session, or -1 */
	uint32_t seq;
	uint64_t id;                 /* its pm_task_t */
};
/* HELLO (and with fault, a fault session: ATTACH_KEY, ATTACH); aborts if
 * refused. */
void fuzz_task_open(struct fuzz_pmd *p, struct fuzz_task *t, bool fault);
void fuzz_task_close(struct fuzz_task *t);
/* A request sent (its seq returned), and its reply taken later: for a
 * caller that must act between the two (answer for another node). */
uint32_t fuzz_task_send(struct fuzz_pmd *p, struct fuzz_task *t, uint16_t type,
			const void *body, uint32_t len);
error_t fuzz_task_reply(struct fuzz_pmd *p, struct fuzz_task *t, uint32_t seq,
			void *out, size_t out_len);
/* One request: the reply's status as an errno (ETIMEDOUT: no reply in
 * 2 s), its body in out (up to out_len bytes), descriptors closed. */
error_t fuzz_task_call(struct fuzz_pmd *p, struct fuzz_task *t, uint16_t type,
		       const void *body, uint32_t len, void *out,
		       size_t out_len);

/* Little-endian reads of the input. */
struct fuzz_in {
	const uint8_t *p;
	size_t left;
};
static inline uint32_t fuzz_take(struct fuzz_in *in, unsigned nbytes)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < nbytes && in->left; i++, in->left--)
		v |= (uint32_t)*in->p++ << (8 * i);
	return v;
}

#endif
