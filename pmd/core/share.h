/*
 * share.h - weak references and the tokens they travel in.
 *
 * pm_container_share makes a share record {random id, container, bound
 * task} and a weak capability in the sharer's table; weak capabilities
 * read, write, map and lock, never what only the owner does (EPERM), and
 * work only for their bound task (EACCES). A token is id | bound task |
 * a MAC of both under the node's secret: an altered one is EINVAL, one
 * for another task EACCES, one whose share is gone ESTALE. Unshare
 * revokes every capability of the shares bound to a task, at once; if
 * that task holds descriptors of the container's segments, the frames
 * move to fresh segments first and the old ones are emptied, so it sees
 * nothing more.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_SHARE_H
#define PMD_SHARE_H

#include <stdint.h>

#include <pm/pm.h>

#include "core.h"
#include "pm_proto.h"

error_t pmd_container_share(struct pmd_core *core, struct pmd_task *task,
			    container_t h, pm_task_t remote,
			    container_t *weak_out, struct pmd_culprit *why);
/* Unshare's stops (stop.h): the other holders of the segments remote
 * holds drop their mappings of them, into core->stops. */
error_t pmd_unshare_plan(struct pmd_core *core, struct pmd_task *task,
			 container_t h, pm_task_t remote,
			 struct pmd_culprit *why);
/* EBUSY while remote holds a lock. When remote was given segments of
 * the container, their frames move to fresh ones (after the plan's
 * stops): see pmd_move_segments. */
error_t pmd_container_unshare(struct pmd_core *core, struct pmd_task *task,
			      container_t h, pm_task_t remote,
			      struct pmd_culprit *why);
error_t pmd_cap_export(struct pmd_core *core, struct pmd_task *task,
		       container_t h, struct pm_token *token_out,
		       struct pmd_culprit *why);
error_t pmd_cap_import(struct pmd_core *core, struct pmd_task *task,
		       const struct pm_token *token, container_t *h_out,
		       struct pmd_culprit *why);
/* The owner's capability goes with destroy (EINVAL here). */
error_t pmd_cap_release(struct pmd_core *core, struct pmd_task *task,
			container_t h, struct pmd_culprit *why);

#endif
