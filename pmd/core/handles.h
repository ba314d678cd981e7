/*
 * handles.h - a task's handle table: container_t values that name the
 * task's capabilities.
 *
 * A handle is an index into the task's own table with a generation in the
 * high half: a value the session was not given, or one it released, never
 * finds a capability (EBADF), and small integers a task might guess are
 * never valid. The table stores pointers; it never looks inside them.
 * Plain data, no I/O. Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_HANDLES_H
#define PMD_HANDLES_H

#include <stdint.h>

#include <pm/pm.h>

struct pmd_cap;

/* A task holds at most this many handles (containers it owns, weak
 * references it made or imported, tombstones it has not released): a
 * task's metadata is bounded like its frames. One more is ENOMEM. */
#define PMD_TASK_HANDLES_MAX 16384u

struct pmd_htab {
	struct pmd_cap **v;         /* (L) by index; NULL: free */
	uint32_t *gen;              /* (L) generation per index, never 0 */
	uint32_t len, cap;          /* (L) indices used so far, allocated */
	uint32_t hint;              /* (L) lowest possibly free index */
	uint32_t count;             /* (L) handles in use */
};

void pmd_htab_init(struct pmd_htab *t);
/* The table must be empty. */
void pmd_htab_fini(struct pmd_htab *t);

/* Gives c a handle, *h_out (written only on success); ENOMEM at
 * PMD_TASK_HANDLES_MAX. */
error_t pmd_htab_insert(struct pmd_htab *t, struct pmd_cap *c,
			container_t *h_out);
/* NULL when h is not a live handle of this table. */
struct pmd_cap *pmd_htab_lookup(const struct pmd_htab *t, container_t h);
/* h must be live; it dies now, not when its index is reused. */
void pmd_htab_remove(struct pmd_htab *t, container_t h);

#endif
