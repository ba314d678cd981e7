/*
 * container.h - containers and the capabilities that name them: their
 * life (create, destroy, the owner's death), the checks every operation
 * starts with (pmd_cap_decode), revocation, and the lock state.
 *
 * The operations on a container's frames are in their own files:
 * alloc.h (allocate, deallocate), map.h (map, resolve), io.h (read,
 * write), copy.h (logical copy), share.h (share, unshare, tokens),
 * lock.h (server locks), move.h (moves, here and between nodes). Every
 * one is decode (check everything and reserve what the change needs, with
 * no visible effect) then invoke (cannot fail): a request that fails has
 * changed nothing, except where the API says otherwise (a partial
 * allocation keeps the frames before the stop).
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_CONTAINER_H
#define PMD_CONTAINER_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "core.h"
#include "pm_proto.h"

error_t pmd_container_create(struct pmd_core *core, struct pmd_task *task,
			     container_t *handle_out);
error_t pmd_container_destroy(struct pmd_core *core, struct pmd_task *task,
			      container_t h, struct pmd_culprit *why);
/* Frees a container and everything under it: every capability naming it
 * dies (weak references become tombstones). Used by destroy and by the
 * owner's death. */
void pmd_container_free(struct pmd_core *core, struct pmd_container *c);

error_t pmd_container_stat(struct pmd_core *core, struct pmd_task *task,
			   container_t h, struct pm_stat_rep *st_out,
			   struct pmd_culprit *why);
/* What stat says of c, with no capability (the operator's listing). */
void pmd_container_describe(struct pmd_core *core, struct pmd_container *c,
			    struct pm_stat_rep *st_out);
error_t pmd_container_set_policy(struct pmd_core *core, struct pmd_task *task,
				 container_t h, uint32_t policy,
				 pm_node_t node, struct pmd_culprit *why);

/* The container a live handle of task names (any rights; NULL for a
 * handle that is not live or was revoked): what the daemon schedules by.
 * Operations check rights in their own decode. */
struct pmd_container *pmd_container_lookup(const struct pmd_task *task,
					   container_t h);
/* A handle task holds for c and may use itself (0: none). */
container_t pmd_container_handle_of(const struct pmd_task *task,
				    const struct pmd_container *c);

/* c's lock refuses its owner something: the holder is fenced (lock.h). */
void pmd_lock_refused(struct pmd_container *c);
/* Whether c is locked now; an expired lock ends here. */
bool pmd_container_locked(struct pmd_container *c);
/* Sets or clears (task NULL) the lock, in the view too: while a lock
 * holds, the owner's maps must come to the pmd. */
void pmd_container_set_locker(struct pmd_container *c, struct pmd_task *task,
			      uint64_t until_ms);

/* ---- capabilities ---- */

/* What a decode checks besides handle and rights. */
#define PMD_USE_BOUND 0x1 /* a weak reference works only for its task: EACCES */
#define PMD_USE_DATA  0x2 /* touches contents: the owner is EBUSY under a lock */
#define PMD_USE_ALL   (PMD_USE_BOUND | PMD_USE_DATA)

/* The first decode step of every operation: h names a live capability of
 * task with the rights asked for, usable by it (use), and not blocked by
 * a server's lock. why->arg names the handle on failure. */
error_t pmd_cap_decode(struct pmd_task *task, container_t h, uint32_t rights,
		       unsigned use, struct pmd_cap **cap_out,
		       struct pmd_culprit *why);
/* A new capability of holder naming c (a weak reference when sh). */
error_t pmd_cap_new(struct pmd_task *holder, struct pmd_container *c,
		    struct pmd_share *sh, uint32_t rights,
		    struct pmd_cap **cap_out);
/* Turns a capability into a tombstone: its handle stays, and every use
 * but release answers ESTALE. */
void pmd_cap_revoke(struct pmd_cap *cap);
/* Removes one capability from its holder's table, whatever its state; a
 * share nobody holds any more goes too. */
void pmd_cap_free(struct pmd_core *core, struct pmd_cap *cap);
/* A share leaves the node's table and its container, and is freed. */
void pmd_share_free(struct pmd_core *core, struct pmd_share *sh);

#endif
