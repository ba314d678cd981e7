/*
 * cap.h - capabilities and each task's handle table.
 *
 * A capability names one container with a set of rights. The owner's
 * capability is made with the container; weak references are derived from
 * it for one task each. Every capability is linked into its container's
 * list, so destroying or unsharing reaches every descendant at once.
 *
 * A task holds capabilities through handles (container_t), indices into its
 * own table with a generation in the high half: a value the session was not
 * given, or one it released, never finds a capability (EBADF).
 */
#ifndef PMD_CAP_H
#define PMD_CAP_H

#include <stdint.h>

#include <pm/pm.h>

#include "list.h"

#define PMD_RIGHT_OWNER 0x01 /* allocate, deallocate, share, destroy, ... */
#define PMD_RIGHT_READ  0x02
#define PMD_RIGHT_WRITE 0x04
#define PMD_RIGHT_MAP   0x08
#define PMD_RIGHT_LOCK  0x10
/* The owner does everything but lock: locks are the servers' guarantee
 * against the owner. */
#define PMD_RIGHTS_OWNER (PMD_RIGHT_OWNER | PMD_RIGHT_READ | PMD_RIGHT_WRITE | \
			  PMD_RIGHT_MAP)
#define PMD_RIGHTS_WEAK (PMD_RIGHT_READ | PMD_RIGHT_WRITE | PMD_RIGHT_MAP | \
			 PMD_RIGHT_LOCK)

struct pmd_container;
struct pmd_task;

/*
 * A share: the weak reference pm_container_share makes for one task. Every
 * capability derived from it (the sharer's handle, each import) points to
 * it; unsharing or destroying the container deletes the share and turns
 * those capabilities into tombstones.
 */
struct pmd_share {
	uint64_t id;                /* (C) random; names it in tokens */
	pm_task_t bound;            /* (C) the only task that may use it */
	struct pmd_container *cont; /* (C) */
	uint32_t ncaps;             /* (L) capabilities derived from it */
	struct pmd_list cont_link;  /* (L) in cont->shares */
	struct pmd_share *hash_next;/* (L) in the core's share table */
};

struct pmd_cap {
	struct pmd_container *cont; /* (L) what it names; NULL: revoked */
	struct pmd_share *share;    /* (L) weak refs: their share */
	struct pmd_task *holder;    /* (L) whose table holds it */
	uint32_t rights;            /* (C) PMD_RIGHT_* */
	container_t handle;         /* (L) its handle in holder's table */
	struct pmd_list cont_link;  /* (L) in cont->caps while not revoked */
};

struct pmd_htab {
	struct pmd_cap **v;         /* (L) by index; NULL: free */
	uint32_t *gen;              /* (L) generation per index */
	uint32_t len, cap;          /* (L) indices used so far, allocated */
	uint32_t hint;              /* (L) lowest possibly free index */
	uint32_t count;             /* (L) handles in use */
};

void pmd_htab_init(struct pmd_htab *t);
/* The table must be empty. */
void pmd_htab_fini(struct pmd_htab *t);

/* Gives c a handle (c->handle is set). */
error_t pmd_htab_insert(struct pmd_htab *t, struct pmd_cap *c);
/* NULL when h is not a live handle of this table. */
struct pmd_cap *pmd_htab_lookup(const struct pmd_htab *t, container_t h);
void pmd_htab_remove(struct pmd_htab *t, struct pmd_cap *c);

#endif
