/* share.c - see share.h. */
#include "share.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "container.h"
#include "frame.h"
#include "move.h"
#include "task.h"
#include "view.h"

#define SHARE_SERIAL_MASK ((UINT64_C(1) << 48) - 1)

error_t pmd_container_share(struct pmd_core *core, struct pmd_task *task,
			    container_t h, pm_task_t remote,
			    container_t *weak_out, struct pmd_culprit *why)
{
	struct pmd_share *sh;
	struct pmd_cap *cap, *weak;
	error_t err;

	err = pmd_cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
	if (err)
		return err;
	/* A task of another node is named by its id (node in the high bits);
	 * its node checks it when the token comes through. */
	if ((pm_node_t)(remote >> 48) == core->cfg.node &&
	    !pmd_task_find(core, remote)) {
		why->arg = PMD_ARG_SHARE_TASK;
		return ESRCH;
	}
	if (!(remote >> 48)) {
		why->arg = PMD_ARG_SHARE_TASK;
		return ESRCH;
	}
	if (task->nshares >= PMD_TASK_SHARES_MAX)
		return ENOMEM;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return ENOMEM;
	/* The home node in the high bits (tokens find their way home), 48
	 * random bits below (the MAC makes it unforgeable). */
	do {
		randombytes_buf(&sh->id, sizeof(sh->id));
		sh->id = (uint64_t)core->cfg.node << 48 |
			 (sh->id & SHARE_SERIAL_MASK);
	} while (!(sh->id & SHARE_SERIAL_MASK) ||
		 pmd_share_lookup(core, sh->id));
	sh->bound = remote;
	sh->cont = cap->cont;
	err = pmd_cap_new(task, cap->cont, sh, PMD_RIGHTS_WEAK, &weak);
	if (err) {
		free(sh);
		return err;
	}
	pmd_list_add(&cap->cont->shares, &sh->cont_link);
	pmd_share_insert(core, sh);
	task->nshares++;
	*weak_out = weak->handle;
	return 0;
}

/* The segments of c that task t holds descriptors for. */
static uint32_t exposed_to(struct pmd_container *c, const struct pmd_task *t)
{
	uint32_t n = 0;

	for (struct pmd_list *p = c->segments.next; p != &c->segments; p = p->next)
		n += pmd_task_has_segment(t, pmd_container_of(
			p, struct pmd_segment, link)->id);
	return n;
}

/* Revokes every capability of the shares of c bound to remote. */
static void unshare_revoke(struct pmd_core *core, struct pmd_container *c,
			   pm_task_t remote)
{
	struct pmd_list *pos, *tmp;

	pmd_list_for_each_safe(pos, tmp, &c->caps) {
		struct pmd_cap *k = pmd_container_of(pos, struct pmd_cap,
						     cont_link);
		if (k->share && k->share->bound == remote)
			pmd_cap_revoke(k);
	}
	pmd_list_for_each_safe(pos, tmp, &c->shares) {
		struct pmd_share *sh = pmd_container_of(pos, struct pmd_share,
							cont_link);
		if (sh->bound == remote)
			pmd_share_free(core, sh);
	}
}

error_t pmd_unshare_plan(struct pmd_core *core, struct pmd_task *task,
			 container_t h, pm_task_t remote,
			 struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_task *rt;
	struct pmd_cap *cap;
	error_t err;

	pmd_stops_reset(&core->stops);
	err = pmd_cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
	if (err)
		return err;
	c = cap->cont;
	rt = pmd_task_find(core, remote);
	if (!rt)
		return 0;
	/* Every other holder drops its mappings of the segments that move
	 * (they fault, and wait, until the frames are in the new ones);
	 * the revoked task is not asked. */
	core->stops.except = rt->id;
	for (struct pmd_list *p = c->segments.next; p != &c->segments; p = p->next) {
		struct pmd_segment *seg = pmd_container_of(p, struct pmd_segment,
							   link);
		if (!pmd_task_has_segment(rt, seg->id))
			continue;
		/* A holder that cannot follow would keep its mappings of
		 * the emptied segment, whose holes the revoked task could
		 * fill: the frames may not move out from under it. */
		if (!pmd_holders_follow(core, seg, rt))
			return EBUSY;
		err = pmd_segment_fwd_reserve(seg);
		if (!err)
			err = pmd_stops_add(&core->stops, seg, 0, PMD_SEG_SLOTS,
					    PM_STOP_DROP, PM_STOP_ANY);
		if (err)
			return err;
	}
	return 0;
}

error_t pmd_container_unshare(struct pmd_core *core, struct pmd_task *task,
			      container_t h, pm_task_t remote,
			      struct pmd_culprit *why)
{
	struct pmd_segment *fresh[64], **segs = fresh;
	struct pmd_view *nview = NULL;
	struct pmd_container *c;
	struct pmd_task *rt;
	struct pmd_cap *cap;
	uint32_t nmove = 0, made = 0;
	error_t err;

	err = pmd_cap_decode(task, h, PMD_RIGHT_OWNER, 0, &cap, why);
	if (err)
		return err;
	c = cap->cont;
	if (pmd_container_locked(c) && c->locker->id == remote) {
		pmd_lock_refused(c);
		return EBUSY; /* the server's lock holds until it expires */
	}
	rt = pmd_task_find(core, remote);
	if (rt)
		nmove = exposed_to(c, rt);

	/* Decode: make the segments the move needs, and a new view when the
	 * revoked task holds the current one (it must learn nothing more). */
	if (c->view && rt && (nmove || pmd_task_has_segment(rt, c->view->id))) {
		err = pmd_view_create(c->frames.count * 2, &nview);
		if (err)
			return err;
	}
	if (nmove > sizeof(fresh) / sizeof(fresh[0])) {
		segs = calloc(nmove, sizeof(*segs));
		if (!segs) {
			err = ENOMEM;
			goto destroy_view;
		}
	}
	for (struct pmd_list *p = c->segments.next; nmove && p != &c->segments;
	     p = p->next) {
		struct pmd_segment *seg = pmd_container_of(p, struct pmd_segment,
							   link);
		if (pmd_task_has_segment(rt, seg->id) &&
		    (err = pmd_segment_fwd_reserve(seg)))
			goto destroy_segments;
	}
	for (; made < nmove; made++) {
		err = pmd_segment_create(&core->segs, &segs[made]);
		if (err)
			goto destroy_segments;
	}

	/* Invoke: revoke, then move the frames remote could see. */
	unshare_revoke(core, c, remote);
	if (nmove) {
		pmd_segtab_flush(&core->segs); /* slot maps move as they are */
		pmd_move_segments(core, c, rt, segs, nmove);
	}
	if (nview)
		pmd_cview_install(core, c, nview);
	if (segs != fresh)
		free(segs);
	return 0;

destroy_segments:
	while (made)
		pmd_segment_destroy(&core->segs, segs[--made]);
	if (segs != fresh)
		free(segs);
destroy_view:
	pmd_view_destroy(nview);
	return err;
}

/* Token layout: share id (8), bound task (8), MAC of both (16). */
static void token_mac(const struct pmd_core *core, const uint8_t *msg,
		      uint8_t mac[16])
{
	uint8_t full[crypto_auth_hmacsha256_BYTES];

	crypto_auth_hmacsha256(full, msg, 16, core->secret);
	memcpy(mac, full, 16);
}

error_t pmd_cap_export(struct pmd_core *core, struct pmd_task *task,
		       container_t h, struct pm_token *token_out,
		       struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = pmd_cap_decode(task, h, 0, 0, &cap, why);

	if (err)
		return err;
	if (!cap->share) {
		why->arg = PMD_ARG_EXPORT_REF;
		return EPERM; /* only weak references travel: share first */
	}
	memcpy(token_out->bytes, &cap->share->id, 8);
	memcpy(token_out->bytes + 8, &cap->share->bound, 8);
	token_mac(core, token_out->bytes, token_out->bytes + 16);
	return 0;
}

error_t pmd_cap_import(struct pmd_core *core, struct pmd_task *task,
		       const struct pm_token *token, container_t *h_out,
		       struct pmd_culprit *why)
{
	uint8_t mac[16];
	struct pmd_share *sh;
	struct pmd_cap *cap;
	uint64_t id;
	pm_task_t bound;
	error_t err;

	why->arg = PMD_ARG_IMPORT_TOKEN;
	token_mac(core, token->bytes, mac);
	if (sodium_memcmp(mac, token->bytes + 16, sizeof(mac)) != 0)
		return EKEYREJECTED; /* forged or altered (EINVAL to the
				      * task) */
	memcpy(&id, token->bytes, 8);
	memcpy(&bound, token->bytes + 8, 8);
	if (bound != task->id)
		return EACCES;
	sh = pmd_share_lookup(core, id);
	if (!sh)
		return EKEYREVOKED; /* unshared, released, or the container
				     * is gone (ESTALE to the task) */
	err = pmd_cap_new(task, sh->cont, sh, PMD_RIGHTS_WEAK, &cap);
	if (err)
		return err;
	why->arg = PMD_ARG_NONE;
	*h_out = cap->handle;
	return 0;
}

error_t pmd_cap_release(struct pmd_core *core, struct pmd_task *task,
			container_t h, struct pmd_culprit *why)
{
	struct pmd_cap *cap = pmd_htab_lookup(&task->handles, h);

	why->arg = PMD_ARG_HANDLE;
	if (!cap)
		return EBADF;
	if (cap->cont && !cap->share)
		return EINVAL; /* the owner's capability goes with destroy */
	pmd_cap_free(core, cap);
	return 0;
}
