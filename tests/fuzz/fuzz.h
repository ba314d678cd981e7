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
/* The accounting self-check holds, and, with idle, nothing is held by
 * anyone (every task gone): aborts, after saying why, otherwise. */
void fuzz_pmd_check(struct fuzz_pmd *p, bool idle);

/* A connection to p's socket (non-blocking), aborting on failure. */
int fuzz_pmd_connect(const struct fuzz_pmd *p);

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
