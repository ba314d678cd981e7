/* container.c - see container.h. */
#include "container.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "frame.h"
#include "view.h"

/* ---- life ---- */

error_t pmd_container_create(struct pmd_core *core, struct pmd_task *task,
			     container_t *handle_out)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	error_t err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	pmd_ftab_init(&c->frames);
	pmd_ftab_init(&c->gone);
	pmd_list_init(&c->segments);
	pmd_list_init(&c->caps);
	pmd_list_init(&c->shares);
	err = pmd_cap_new(task, c, NULL, PMD_RIGHTS_OWNER, &cap);
	if (err) {
		free(c);
		return err;
	}
	c->id = (uint64_t)core->cfg.node << 48 | ++core->next_container;
	c->owner = task;
	c->policy = PM_PLACE_LOCAL;
	pmd_list_add(&task->containers, &c->owner_link);
	task->ncontainers++;
	core->ncontainers++;
	*handle_out = cap->handle;
	return 0;
}

void pmd_container_free(struct pmd_core *core, struct pmd_container *c)
{
	struct pmd_list *pos, *tmp;
	frame_t f = 0;
	struct pmd_frame *e;

	if (core->cold.c == c)
		core->cold.c = NULL;
	/* Every capability naming it dies: the owner's goes, weak
	 * references become tombstones (ESTALE) in their holders' tables. */
	pmd_list_for_each_safe(pos, tmp, &c->caps) {
		struct pmd_cap *cap =
			pmd_container_of(pos, struct pmd_cap, cont_link);
		if (cap->share)
			pmd_cap_revoke(cap);
		else
			pmd_cap_free(core, cap);
	}
	pmd_list_for_each_safe(pos, tmp, &c->shares)
		pmd_share_free(core, pmd_container_of(pos, struct pmd_share,
						      cont_link));
	pmd_view_destroy(c->view);
	c->view = NULL;
	while (pmd_ftab_next(&c->frames, &f, &e))
		pmd_frame_drop(core, c, f, e);
	pmd_ftab_fini(&c->frames);
	pmd_ftab_fini(&c->gone);
	pmd_segtab_flush(&core->segs); /* freed slots count as used until then */

	/* Segments with slots still referenced elsewhere outlive it,
	 * orphaned; the rest go now. Retired slots forward to c: they go
	 * with it. */
	pmd_list_for_each_safe(pos, tmp, &c->segments) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		pmd_segment_release_retired(&core->segs, seg);
		if (seg->slots.used) {
			pmd_list_del(&seg->link);
			seg->domain = NULL;
			seg->orphaned = true;
		} else {
			pmd_segment_destroy(&core->segs, seg);
		}
	}
	pmd_list_del(&c->owner_link);
	c->owner->ncontainers--;
	core->ncontainers--;
	free(c);
}

error_t pmd_container_destroy(struct pmd_core *core, struct pmd_task *task,
			      container_t h, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = pmd_cap_decode(task, h, PMD_RIGHT_OWNER, PMD_USE_DATA,
				     &cap, why);

	if (err)
		return err;
	pmd_container_free(core, cap->cont);
	return 0;
}

error_t pmd_container_stat(struct pmd_core *core, struct pmd_task *task,
			   container_t h, struct pm_stat_rep *st_out,
			   struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = pmd_cap_decode(task, h, 0, 0, &cap, why);

	if (err)
		return err;
	pmd_container_describe(core, cap->cont, st_out);
	return 0;
}

void pmd_container_describe(struct pmd_core *core, struct pmd_container *c,
			    struct pm_stat_rep *st_out)
{
	struct pmd_frame *e;
	frame_t f = 0;

	memset(st_out, 0, sizeof(*st_out));
	while (pmd_ftab_next(&c->frames, &f, &e)) {
		st_out->cow += pmd_frame_cow(core, e);
		if (pmd_frame_remote(e) && e->node == PMD_NODE_STORE)
			st_out->swapped++;
		else if (pmd_frame_remote(e))
			st_out->remote++;
		if (f++ == UINT64_MAX)
			break;
	}
	st_out->frames = c->frames.count;
	st_out->resident = c->frames.count - st_out->remote - st_out->swapped;
	st_out->home = (uint16_t)(c->id >> 48);
	if (pmd_container_locked(c)) {
		uint64_t left = c->lock_until_ms - pmd_now_ms();
		st_out->locked_ms_left = left ? (uint32_t)left : 1;
	}
}

error_t pmd_container_set_policy(struct pmd_core *core, struct pmd_task *task,
				 container_t h, uint32_t policy,
				 pm_node_t node, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = pmd_cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);

	(void)core;
	if (err)
		return err;
	if (policy > PM_PLACE_INTERLEAVE) {
		why->arg = PMD_ARG_POLICY;
		return EINVAL;
	}
	/* A named node other than this one was checked by the daemon
	 * against the cluster (ENODEV when unknown). */
	cap->cont->policy = policy;
	cap->cont->policy_node = node;
	return 0;
}

struct pmd_container *pmd_container_lookup(const struct pmd_task *task,
					   container_t h)
{
	struct pmd_cap *cap = pmd_htab_lookup(&task->handles, h);

	return cap ? cap->cont : NULL;
}

container_t pmd_container_handle_of(const struct pmd_task *task,
				    const struct pmd_container *c)
{
	for (struct pmd_list *p = c->caps.next; p != &c->caps; p = p->next) {
		struct pmd_cap *k = pmd_container_of(p, struct pmd_cap,
						     cont_link);
		/* Not a weak reference it made for another task. */
		if (k->holder == task &&
		    (!k->share || k->share->bound == task->id))
			return k->handle;
	}
	return 0;
}

/* ---- the lock state ---- */

void pmd_container_set_locker(struct pmd_container *c, struct pmd_task *task,
			      uint64_t until_ms)
{
	c->locker = task;
	c->lock_until_ms = until_ms;
	if (c->view)
		pmd_view_set_locker(c->view, task ? task->id : 0);
}

void pmd_lock_refused(struct pmd_container *c)
{
	if (!c->locker)
		return;
	c->fenced = c->locker->id;
	c->fence_until_ms = c->lock_until_ms + c->lock_max_ms;
}

bool pmd_container_locked(struct pmd_container *c)
{
	if (!c->locker)
		return false;
	if (pmd_now_ms() >= c->lock_until_ms) {
		pmd_container_set_locker(c, NULL, 0);
		return false;
	}
	return true;
}

/* ---- capabilities ---- */

error_t pmd_cap_decode(struct pmd_task *task, container_t h, uint32_t rights,
		       unsigned use, struct pmd_cap **cap_out,
		       struct pmd_culprit *why)
{
	struct pmd_cap *cap = pmd_htab_lookup(&task->handles, h);

	why->arg = PMD_ARG_HANDLE;
	if (!cap)
		return EBADF;
	if (!cap->cont)
		return EKEYREVOKED; /* revoked: unshared, or the container
				     * is gone (ESTALE to the task) */
	if ((cap->rights & rights) != rights)
		return EPERM;
	if ((use & PMD_USE_BOUND) && cap->share && cap->share->bound != task->id)
		return EACCES;
	if ((use & PMD_USE_DATA) && (cap->rights & PMD_RIGHT_OWNER) &&
	    pmd_container_locked(cap->cont) && cap->cont->locker != task) {
		pmd_lock_refused(cap->cont);
		return EBUSY;
	}
	why->arg = PMD_ARG_NONE;
	*cap_out = cap;
	return 0;
}

error_t pmd_cap_new(struct pmd_task *holder, struct pmd_container *c,
		    struct pmd_share *sh, uint32_t rights,
		    struct pmd_cap **cap_out)
{
	struct pmd_cap *cap;
	error_t err;

	/* The user's tasks together hold a bounded number too. */
	if (holder->user && holder->user->max_handles &&
	    holder->user->handles >= holder->user->max_handles)
		return ENOMEM;
	cap = calloc(1, sizeof(*cap));
	if (!cap)
		return ENOMEM;
	err = pmd_htab_insert(&holder->handles, cap, &cap->handle);
	if (err) {
		free(cap);
		return err;
	}
	if (holder->user)
		holder->user->handles++;
	cap->cont = c;
	cap->share = sh;
	cap->holder = holder;
	cap->rights = rights;
	pmd_list_add(&c->caps, &cap->cont_link);
	if (sh)
		sh->ncaps++;
	*cap_out = cap;
	return 0;
}

void pmd_share_free(struct pmd_core *core, struct pmd_share *sh)
{
	pmd_share_remove(core, sh);
	pmd_list_del(&sh->cont_link);
	sh->cont->owner->nshares--;
	free(sh);
}

void pmd_cap_revoke(struct pmd_cap *cap)
{
	if (!cap->cont)
		return;
	if (cap->cont->locker == cap->holder && cap->share)
		pmd_container_set_locker(cap->cont, NULL, 0);
	pmd_list_del(&cap->cont_link);
	cap->cont = NULL;
	if (cap->share)
		cap->share->ncaps--;
	cap->share = NULL;
}

void pmd_cap_free(struct pmd_core *core, struct pmd_cap *cap)
{
	struct pmd_share *sh = cap->share;

	pmd_cap_revoke(cap);
	/* A share nobody holds any more can never be used again. */
	if (sh && sh->ncaps == 0)
		pmd_share_free(core, sh);
	pmd_htab_remove(&cap->holder->handles, cap->handle);
	if (cap->holder->user)
		cap->holder->user->handles--;
	free(cap);
}
