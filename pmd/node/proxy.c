/*
 * proxy.c - requests of other nodes' tasks, served here as their
 * containers' home. A task of another node that imports a token of a
 * container homed here is represented by a proxy task (its own id,
 * owning nothing), made by its first import and destroyed by FWD_BYE or
 * when its node goes down or restarts; a node may act only for its own
 * tasks (the id's node bits). FWD_OP requests run in the daemon, as the
 * proxy (the upcall), which answers them.
 */
#include "node_priv.h"

#include <errno.h>
#include <string.h>

#include "share.h"
#include "task.h"

void pmd_cluster_set_upcalls(struct pmd_cluster *c,
			     const struct pmd_cluster_upcalls *up)
{
	c->up = *up;
}

/* The proxy of task (of node src), made if asked; NULL when src may not
 * act for it. */
static struct pmd_task *proxy_of(struct pmd_cluster *c, pm_node_t src,
				 uint64_t task, bool make)
{
	struct pmd_task *t;

	if ((pm_node_t)(task >> 48) != src)
		return NULL;
	t = pmd_task_find(c->core, task);
	if (t && !t->proxy)
		return NULL;
	if (!t && make && pmd_task_create_proxy(c->core, task, &t))
		return NULL;
	return t;
}

static void proxy_destroy(struct pmd_cluster *c, struct pmd_task *t)
{
	if (c->up.proxy_gone)
		c->up.proxy_gone(c->up.arg, t);
	pmd_task_destroy(c->core, t);
}

void pmd_proxy_forget(struct pmd_cluster *c, pm_node_t node)
{
	struct pmd_list *pos, *tmp;

	pmd_list_for_each_safe(pos, tmp, &c->core->tasks) {
		struct pmd_task *t = pmd_container_of(pos, struct pmd_task, link);
		if (t->proxy && (pm_node_t)(t->id >> 48) == node)
			proxy_destroy(c, t);
	}
}

void pmd_proxy_stop(struct pmd_cluster *c)
{
	struct pmd_list *pos, *tmp;

	pmd_list_for_each_safe(pos, tmp, &c->core->tasks) {
		struct pmd_task *t = pmd_container_of(pos, struct pmd_task, link);
		if (t->proxy)
			pmd_task_destroy(c->core, t);
	}
}

static void serve_import(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			 struct pmd_nreq_out *out)
{
	const struct pmd_nreq_fwd_import *q = (const void *)in->body;
	struct pmd_culprit why = { 0 };
	container_t handle;
	struct pmd_task *t;
	bool fresh;

	if (in->hdr->len != sizeof(*q)) {
		out->status = EPROTO;
		return;
	}
	fresh = !pmd_task_find(c->core, q->task);
	t = proxy_of(c, in->src, q->task, true);
	out->status = t ? pmd_cap_import(c->core, t,
					 (const struct pm_token *)q->token,
					 &handle, &why)
			: EACCES;
	if (!out->status) {
		memcpy(out->body, &handle, sizeof(handle));
		out->len = sizeof(handle);
	} else if (t && fresh) {
		proxy_destroy(c, t); /* made for nothing */
	}
}

static void serve_bye(struct pmd_cluster *c, const struct pmd_nreq_in *in,
		      struct pmd_nreq_out *out)
{
	struct pmd_task *t;
	uint64_t task;

	if (in->hdr->len != sizeof(task)) {
		out->status = EPROTO;
		return;
	}
	memcpy(&task, in->body, sizeof(task));
	if ((t = proxy_of(c, in->src, task, false)))
		proxy_destroy(c, t);
}

static void serve_op(struct pmd_cluster *c, const struct pmd_nreq_in *in,
		     struct pmd_nreq_out *out)
{
	const struct pmd_nreq_fwd_op *q = (const void *)in->body;
	struct pmd_task *t;

	if (in->hdr->len < sizeof(*q) || q->len != in->hdr->len - sizeof(*q) ||
	    (q->flags & ~PMD_FWD_WINDOW)) {
		out->status = EPROTO;
	} else if (!(t = proxy_of(c, in->src, q->task, false))) {
		out->status = EBADF;
	} else if (!c->up.serve) {
		out->status = EOPNOTSUPP;
	} else {
		/* The daemon runs it as the proxy and answers. */
		c->up.serve(c->up.arg, in->src, in->src_inc, in->hdr->id, t,
			    q->type, q->flags, q + 1, q->len);
		out->later = true;
	}
}

void pmd_proxy_serve(struct pmd_cluster *c, const struct pmd_nreq_in *in,
		     struct pmd_nreq_out *out)
{
	switch (in->hdr->type) {
	case PMD_NREQ_FWD_IMPORT:
		serve_import(c, in, out);
		break;
	case PMD_NREQ_FWD_BYE:
		serve_bye(c, in, out);
		break;
	default:
		serve_op(c, in, out);
		break;
	}
	/* Slots the request freed are punched (after its answer, for an
	 * operation that answers later). */
	pmd_segtab_flush(&c->core->segs);
}
