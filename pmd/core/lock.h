/*
 * lock.h - the seed's server lock: the holder of a weak reference locks
 * the container for a bounded time (the pmd's --max-lock-ms), during
 * which the owner can neither destroy it, deallocate or squash its
 * frames, unshare the locker, nor reach it through the pmd (EBUSY), and
 * the pmd moves none of its frames. The lock ends at unlock, at expiry,
 * or when its holder goes. The state is in the container
 * (pmd_container_locked, container.h).
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
