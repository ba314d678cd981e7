/* lock.c - see lock.h. */
#include "lock.h"

#include <errno.h>

#include "clock.h"
#include "container.h"

error_t pmd_container_lock(struct pmd_core *core, struct pmd_task *task,
			   container_t h, uint32_t msec,
			   struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = pmd_cap_decode(task, h, PMD_RIGHT_LOCK, PMD_USE_BOUND,
				     &cap, why);

	if (err)
		return err;
	if (msec == 0 || msec > core->cfg.max_lock_ms) {
		why->arg = PMD_ARG_LOCK_MSEC;
		return EINVAL;
	}
	if (pmd_container_locked(cap->cont) && cap->cont->locker != task)
		return EBUSY;
	if (cap->cont->fenced == task->id &&
	    pmd_now_ms() < cap->cont->fence_until_ms)
		return EBUSY; /* it refused its owner: the owner's turn */
	pmd_container_set_locker(cap->cont, task, pmd_now_ms() + msec);
	cap->cont->lock_max_ms = core->cfg.max_lock_ms;
	return 0;
}


error_t pmd_container_unlock(struct pmd_core *core, struct pmd_task *task,
			     container_t h, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = pmd_cap_decode(task, h, PMD_RIGHT_LOCK, PMD_USE_BOUND,
				     &cap, why);

	(void)core;
	if (err)
		return err;
	if (cap->cont->locker == task) {
		pmd_container_set_locker(cap->cont, NULL, 0);
		return 0;
	}
	if (!pmd_container_locked(cap->cont) && !cap->cont->locker)
		return 0;
	return EPERM; /* another server's lock */
}

void pmd_lock_end_all(struct pmd_task *task)
{
	for (uint32_t i = 0; i < task->handles.len; i++) {
		struct pmd_cap *cap = task->handles.v[i];
		if (cap && cap->cont && cap->cont->locker == task)
			pmd_container_set_locker(cap->cont, NULL, 0);
	}
}
