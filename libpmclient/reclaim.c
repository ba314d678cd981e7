/*
 * reclaim.c - the task's half of the extra-frame protocol.
 *
 * pm_set_reclaim_handler tells the pmd that the task has a handler (so
 * that it is asked, and given the grace period) and starts the reclaim
 * thread. The pmd's RECLAIM comes to the fault thread, which only notes
 * how many frames are wanted and wakes the reclaim thread; that thread
 * calls the handler, never inside a signal handler or the fault path, so
 * the handler may call the library (deallocate, above all) like any other
 * thread. Requests that come while the handler runs add up, and the
 * handler is called again with their sum.
 */
#include <errno.h>
#include <string.h>

#include "client.h"
#include "pm_proto.h"

static void *reclaim_main(void *arg)
{
	struct pm *pm = arg;
	struct pmc_reclaim *rc = &pm->reclaim;

	pthread_mutex_lock(&rc->lock);
	for (;;) {
		pm_reclaim_fn fn;
		void *fn_arg;
		uint64_t n;

		while (!rc->stop && (!rc->wanted || !rc->fn))
			pthread_cond_wait(&rc->cond, &rc->lock);
		if (rc->stop)
			break;
		n = rc->wanted > UINT32_MAX ? UINT32_MAX : rc->wanted;
		rc->wanted -= n;
		fn = rc->fn;
		fn_arg = rc->arg;
		pthread_mutex_unlock(&rc->lock);
		fn(pm, (unsigned int)n, fn_arg);
		pthread_mutex_lock(&rc->lock);
	}
	pthread_mutex_unlock(&rc->lock);
	return NULL;
}

void pmc_reclaim_init(struct pm *pm)
{
	struct pmc_reclaim *rc = &pm->reclaim;

	memset(rc, 0, sizeof(*rc));
	pthread_mutex_init(&rc->lock, NULL);
	pthread_cond_init(&rc->cond, NULL);
}

void pmc_reclaim_post(void *arg, uint32_t frames)
{
	struct pm *pm = arg;
	struct pmc_reclaim *rc = &pm->reclaim;

	pthread_mutex_lock(&rc->lock);
	if (rc->fn) { /* (else cleared meanwhile: nobody to ask) */
		rc->wanted += frames;
		pthread_cond_broadcast(&rc->cond);
	}
	pthread_mutex_unlock(&rc->lock);
}

void pmc_reclaim_fini(struct pm *pm)
{
	struct pmc_reclaim *rc = &pm->reclaim;
	bool running;

	pthread_mutex_lock(&rc->lock);
	rc->stop = true;
	running = rc->running;
	pthread_cond_broadcast(&rc->cond);
	pthread_mutex_unlock(&rc->lock);
	if (running) {
		if (pthread_equal(pthread_self(), rc->thread))
			pthread_detach(rc->thread); /* the handler disconnects */
		else
			pthread_join(rc->thread, NULL);
	}
	pthread_cond_destroy(&rc->cond);
	pthread_mutex_destroy(&rc->lock);
}

error_t pm_set_reclaim_handler(pm_t *pm, pm_reclaim_fn fn, void *arg)
{
	struct pm_reclaim_handler_req req = { .on = fn != NULL };
	struct pmc_reclaim *rc;
	pm_reclaim_fn old_fn;
	void *old_arg;
	error_t err;

	if (!pm)
		return EINVAL;
	rc = &pm->reclaim;
	/* The pmd reaches the library only through the fault session. */
	if (fn && pm->follow.sock < 0)
		return EOPNOTSUPP;
	/* Before the pmd may ask, the thread runs and the handler is in
	 * place (an older pmd that knows no RECLAIM_HANDLER never asks:
	 * EOPNOTSUPP). */
	pthread_mutex_lock(&rc->lock);
	if (fn && !rc->running) {
		err = pthread_create(&rc->thread, NULL, reclaim_main, pm);
		if (err) {
			pthread_mutex_unlock(&rc->lock);
			return err;
		}
		rc->running = true;
	}
	old_fn = rc->fn;
	old_arg = rc->arg;
	rc->fn = fn;
	rc->arg = arg;
	if (!fn)
		rc->wanted = 0;
	pthread_mutex_unlock(&rc->lock);
	err = pmc_call(pm, PM_MSG_RECLAIM_HANDLER, &req, sizeof(req), NULL, 0,
		       NULL);
	if (err == EPROTO)
		err = EOPNOTSUPP;
	if (err) { /* the pmd did not take it: as before */
		pthread_mutex_lock(&rc->lock);
		rc->fn = old_fn;
		rc->arg = old_arg;
		pthread_mutex_unlock(&rc->lock);
	}
	return err;
}
