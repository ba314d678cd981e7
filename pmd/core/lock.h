/*
 * lock.h - the seed's server lock: the holder of a weak reference locks
 * the container for a bounded time (the pmd's --max-lock-ms), during
 * which the owner can neither destroy it, deallocate or squash its
 * frames, unshare the locker, nor reach it through the pmd (EBUSY), and
 * the pmd moves none of its frames. The lock ends at unlock, at expiry,
 * or when its holder goes. The state is in the container
 * (pmd_container_locked, container.h).
 *
 * A bounded lock must not become an endless one by relocking before each
 * expiry: once the lock has refused its owner anything (EBUSY: access
 * through the pmd, unshare of the locker, destroy, deallocation,
 * squashing), its holder is *fenced*: it can neither extend that lock
 * nor take a new one on that container until one --max-lock-ms after the
 * lock ends. The lock it holds runs its course (the seed's promise to the
 * server); the owner gets the container back within --max-lock-ms of
 * asking, and a turn as long to use it (unshare, read, destroy). Each
 * refusal calls pmd_lock_refused (container.h).
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_LOCK_H
#define PMD_LOCK_H

#include <stdint.h>

#include <pm/pm.h>

#include "core.h"

error_t pmd_container_lock(struct pmd_core *core, struct pmd_task *task,
			   container_t h, uint32_t msec,
			   struct pmd_culprit *why);
/* Unlocking a lock that just expired is not an error; another server's
 * lock is EPERM. */
error_t pmd_container_unlock(struct pmd_core *core, struct pmd_task *task,
			     container_t h, struct pmd_culprit *why);
/* A task is going away: the locks it holds end. */
void pmd_lock_end_all(struct pmd_task *task);

#endif
