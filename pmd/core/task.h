/*
 * task.h - a task: one client session, the unit of identity and accounting.
 *
 * The task owns its handle table and its containers, and carries its charge
 * (guaranteed and extra frames). It also remembers which segments it has
 * been given descriptors for, so a map sends each segment once and a later
 * revocation knows who could see a segment. Owned by the pmd loop thread.
 */
#ifndef PMD_TASK_H
#define PMD_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "account.h"
#include "cap.h"
#include "list.h"

struct pmd_task {
	pm_task_t id;                /* (C) node << 48 | serial */
	uint32_t uid, gid, pid;      /* (C) peer credentials at connect */
	struct pmd_charge charge;    /* (L) frames charged to it */
	struct pmd_htab handles;     /* (L) its capabilities */
	struct pmd_list containers;  /* (L) containers it owns */
	uint64_t ncontainers;        /* (L) length of that list */
	uint64_t *segs_given;        /* (L) sorted ids of segments it holds */
	uint32_t nsegs_given;        /* (L) */
	uint32_t segs_given_cap;     /* (L) */
	bool follows;                /* (L) its library follows moved frames */
	bool proxy;                  /* (C) a task of another node */
	void *fault_session;         /* (L) the server's session serving that */
	uint8_t attach_key[16];      /* (L) for that session; zero: none */
	struct pmd_list link;        /* (L) in the core's task list */
};

bool pmd_task_has_segment(const struct pmd_task *t, uint64_t seg_id);
/* Records that t now holds seg_id's descriptor. */
error_t pmd_task_add_segment(struct pmd_task *t, uint64_t seg_id);

#endif
