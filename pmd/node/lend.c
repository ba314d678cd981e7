/*
 * lend.c - slots this node lends to other homes' frames (ALLOC, FREE).
 *
 * A node lends slots of its own budget, never what guarantees reserve,
 * from segments made and registered with the fabric ahead of need (a
 * quarter of a segment's slots stays ready, made after an answer, never
 * on a request's path), the slots made physical and zero; every loan
 * comes back when the home frees it, goes down or restarts. A segment
 * lends to one home only: when we forget that home (it went down,
 * restarted, or told us it forgot us) the segment's registration goes
 * with its loans, so that a home that did not forget us (paused, or cut
 * off) reaches nothing with its one-sided reads and writes, never a slot
 * lent since to another.
 *
 * A *tagged* segment is kept for one task of ours mapping one container
 * of one home (a forwarded map): only that home's frames of that
 * container go there, the task gets its descriptor, and a slot given back
 * retires (punched, never lent again while the segment lives, its frame
 * recorded) so that the task's mapping faults and follows the frame. The
 * home takes such frames back with RETURN: the task's stores to them stop
 * (through the daemon's stop upcall), the bytes go in the answer, the
 * slots retire, and the task goes on. Once
 * every slot of a tagged segment has retired it is *spent*: the memory,
 * descriptor and registration go, and only the frame records stay (4
 * KiB), for the task's faults, until the task ends.
 */
#include "node_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "log.h"
#include "stop.h"
#include "task.h"

/* A segment this node lends slots of, and to whom each slot is lent. */
struct pmd_lseg {
	struct pmd_segment *seg;       /* (L) NULL: a spent tagged segment */
	uint64_t seg_id;               /* (C) its wire id (kept when spent) */
	struct fab_mr *mr;             /* (L) its registration; NULL: spent */
	struct fab_rkey rk;            /* (C) what borrowers reach it with */
	uint64_t tag_task, tag_cont;   /* (C) 0: lent for any frames */
	container_t tag_handle;        /* (C) the task's proxy's handle there */
	pm_node_t tag_home;            /* (C) */
	pm_node_t home;                /* (L) the one home it lends to (0: none
	                                * yet; set at the first loan) */
	bool closed;                   /* (L) we forgot its home: its
	                                * registration is gone, it lends no
	                                * more */
	bool task_gone;                /* (L) its task left: freed when empty */
	uint32_t nlent;                /* (L) slots lent now */
	frame_t *frame;                /* (L) tagged: the frame in each slot */
	pm_node_t owner[PMD_SEG_SLOTS];/* (L) the home each slot is lent to */
};

static void lseg_destroy(struct pmd_cluster *c, unsigned i)
{
	struct pmd_lseg *l = c->lsegs[i];

	if (l->mr)
		fab_mr_dereg(l->mr);
	pmd_segtab_flush(&c->core->segs);
	if (l->seg)
		pmd_segment_destroy(&c->core->segs, l->seg);
	free(l->frame);
	free(l);
	c->lsegs[i] = c->lsegs[--c->nlsegs];
}

/* A tagged segment whose every slot retired: nothing lives there any
 * more; its frame records alone answer the task's faults. */
static void lseg_spend(struct pmd_cluster *c, struct pmd_lseg *l)
{
	if (l->mr)
		fab_mr_dereg(l->mr);
	l->mr = NULL;
	pmd_segtab_flush(&c->core->segs);
	pmd_segment_destroy(&c->core->segs, l->seg);
	l->seg = NULL;
}

/* A lent slot comes back: free for any frames, or retired in a tagged
 * segment (the task's mapping of it faults). */
static void lend_release(struct pmd_cluster *c, struct pmd_lseg *l,
			 unsigned slot)
{
	l->owner[slot] = 0;
	l->nlent--;
	if (l->tag_task)
		pmd_segment_slot_retire(&c->core->segs, l->seg, slot, NULL,
					l->frame[slot]);
	else /* punched at the next flush */
		pmd_segment_slot_put(&c->core->segs, l->seg, slot);
	c->core->budget.lent--;
	c->core->segs.slots_lent--;
	if (l->tag_task && !l->nlent && l->seg->nretired == PMD_SEG_SLOTS)
		lseg_spend(c, l);
}

/* Tagged segments whose task left and that lend nothing more go. */
static void lseg_sweep(struct pmd_cluster *c)
{
	for (unsigned i = 0; i < c->nlsegs;) {
		struct pmd_lseg *l = c->lsegs[i];
		if (l->tag_task && l->task_gone && !l->nlent)
			lseg_destroy(c, i);
		else
			i++;
	}
}

static struct pmd_lseg *lseg_by_index(struct pmd_cluster *c, uint32_t index)
{
	for (unsigned i = 0; i < c->nlsegs; i++)
		if (c->lsegs[i]->seg && c->lsegs[i]->seg->index == index)
			return c->lsegs[i];
	return NULL;
}

/* A new segment to lend from, registered with the fabric; tagged when
 * task is not 0. */
static error_t lseg_new(struct pmd_cluster *c, pm_node_t home, uint64_t task,
			uint64_t cont, container_t handle)
{
	struct pmd_lseg *l, **v;
	uint64_t key;
	error_t err;

	l = calloc(1, sizeof(*l));
	v = pmd_grow(c->lsegs, c->nlsegs, &c->lsegs_cap, sizeof(*v), 8);
	if (!l || !v) {
		free(l);
		return ENOMEM;
	}
	c->lsegs = v;
	*l = (struct pmd_lseg){ .tag_task = task, .tag_cont = cont,
				.tag_handle = handle,
				.tag_home = task ? home : 0, .home = home };
	err = pmd_segment_create(&c->core->segs, &l->seg);
	if (err)
		goto free_lseg;
	/* Its pages stay what the registration found (segment.h). */
	pmd_segment_pin(l->seg);
	l->seg_id = l->seg->id;
	if (task) {
		l->frame = calloc(PMD_SEG_SLOTS, sizeof(*l->frame));
		err = l->frame ? pmd_segment_fwd_reserve(l->seg) : ENOMEM;
		if (err)
			goto destroy_segment;
	}
	err = fab_key_random(c->ep, &key);
	if (!err)
		err = fab_mr_reg(c->ep, l->seg->base,
				 (size_t)PMD_SEG_SLOTS * PM_FRAME_SIZE,
				 FAB_ACCESS_REMOTE_READ | FAB_ACCESS_REMOTE_WRITE,
				 key, &l->mr);
	if (err)
		goto destroy_segment;
	err = fab_mr_rkey(l->mr, &l->rk);
	if (err)
		goto dereg;
	c->lsegs[c->nlsegs++] = l;
	return 0;

dereg:
	fab_mr_dereg(l->mr);
destroy_segment:
	pmd_segment_destroy(&c->core->segs, l->seg);
free_lseg:
	free(l->frame);
	free(l);
	return err;
}

void pmd_lend_prepare(struct pmd_cluster *c)
{
	unsigned ready = 0;

	c->lend_low = false;
	if (c->draining)
		return; /* nothing made to lend from */
	for (unsigned i = 0; i < c->nlsegs; i++)
		if (!c->lsegs[i]->tag_task && !c->lsegs[i]->home)
			ready += pmd_slots_free(&c->lsegs[i]->seg->slots);
	/* (a tagged one, or one a home has, is never ready for others; a
	 * spent one has none) */
	if (ready < PMD_SEG_SLOTS / 4 && lseg_new(c, 0, 0, 0, 0))
		pmd_warn("cluster: no segment to lend from");
}

/* A slot to lend: in a segment we lend from with this tag (a new one
 * only if none has room). */
static error_t lend_slot(struct pmd_cluster *c, pm_node_t home,
			 const struct pmd_nreq_alloc_req *q,
			 struct pmd_lseg **out, int *slot)
{
	error_t err;

	for (unsigned i = 0; i < c->nlsegs; i++) {
		struct pmd_lseg *l = c->lsegs[i];
		if (!l->seg || l->closed || l->tag_task != q->task ||
		    l->task_gone || (l->home && l->home != home) ||
		    (q->task && (l->tag_home != home || l->tag_cont != q->cont ||
				 l->tag_handle != q->handle)))
			continue;
		*slot = pmd_segment_slot_alloc(&c->core->segs, l->seg);
		if (*slot >= 0) {
			l->home = home;
			*out = l;
			return 0;
		}
	}
	err = lseg_new(c, home, q->task, q->cont, q->handle);
	if (err)
		return err;
	*out = c->lsegs[c->nlsegs - 1];
	*slot = pmd_segment_slot_alloc(&c->core->segs, (*out)->seg);
	return 0;
}

/* Lends what it can of q->n slots to home. */
static void lend_alloc(struct pmd_cluster *c, pm_node_t home,
		       const struct pmd_nreq_alloc_req *q,
		       struct pmd_nreq_alloc_rep *rep)
{
	uint64_t room = pmd_budget_unreserved(&c->core->budget);
	uint32_t want = q->n;

	memset(rep, 0, sizeof(*rep));
	if (c->draining)
		return; /* no slot: the home looks elsewhere */
	if (want > PMD_LEND_MAX)
		want = PMD_LEND_MAX;
	if (want > room)
		want = (uint32_t)room;
	while (rep->n < want) {
		struct pmd_lseg *l = NULL;
		int slot = -1;

		if (lend_slot(c, home, q, &l, &slot) || slot < 0)
			break;
		pmd_segment_populate(l->seg, (unsigned)slot, 1);
		l->owner[slot] = home;
		l->nlent++;
		if (l->tag_task)
			l->frame[slot] = q->frame[rep->n];
		c->core->budget.lent++;
		c->core->segs.slots_lent++;
		rep->e[rep->n++] = (struct pmd_nreq_lent){ .key = l->rk.key,
			.base = l->rk.base, .len = l->rk.len,
			.seg = l->seg->index, .slot = (uint16_t)slot };
	}
}

/* A tagged loan is only for a task of ours that follows its mappings,
 * of a container of the asking home. */
static bool lend_tag_ok(struct pmd_cluster *c, pm_node_t home,
			const struct pmd_nreq_alloc_req *q)
{
	struct pmd_task *t;

	return q->task && q->cont && (pm_node_t)(q->task >> 48) == c->self &&
	       (pm_node_t)(q->cont >> 48) == home &&
	       (t = pmd_task_find(c->core, q->task)) && !t->proxy &&
	       t->follows && q->n <= PMD_LEND_MAX;
}

void pmd_lend_serve_alloc(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			  struct pmd_nreq_out *out)
{
	struct pmd_nreq_alloc_req q = { 0 };
	struct pmd_nreq_alloc_rep rep;
	uint32_t len = in->hdr->len;

	if (len != PMD_NREQ_ALLOC_UNTAGGED && len != sizeof(q)) {
		out->status = EPROTO;
		return;
	}
	memcpy(&q, in->body, len);
	if (len == sizeof(q) && !lend_tag_ok(c, in->src, &q)) {
		out->status = ESRCH;
		return;
	}
	lend_alloc(c, in->src, &q, &rep);
	out->len = (uint32_t)(offsetof(struct pmd_nreq_alloc_rep, e) +
			      rep.n * sizeof(rep.e[0]));
	memcpy(out->body, &rep, out->len);
	c->lend_low = true; /* made ready again after the answer */
}

void pmd_lend_serve_free(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			 struct pmd_nreq_out *out)
{
	const struct pmd_nreq_free_req *q = (const void *)in->body;

	if (in->hdr->len < sizeof(q->n) || q->n > PMD_NREQ_FREE_MAX ||
	    in->hdr->len != offsetof(struct pmd_nreq_free_req, e) +
			    q->n * sizeof(q->e[0])) {
		out->status = EPROTO;
		return;
	}
	for (uint32_t i = 0; i < q->n; i++) {
		struct pmd_lseg *l = lseg_by_index(c, q->e[i].seg);
		if (l && q->e[i].slot < PMD_SEG_SLOTS &&
		    l->owner[q->e[i].slot] == in->src)
			lend_release(c, l, q->e[i].slot);
	}
	pmd_segtab_flush(&c->core->segs);
	lseg_sweep(c);
}

/* A RETURN being served: the task's stores stop, then the bytes go. */
struct lend_return {
	struct pmd_cluster *c;         /* (C) */
	pm_node_t src;                 /* (C) the home asking */
	uint64_t src_inc, id;          /* (C) its incarnation, the call's id */
	uint32_t n;                    /* (C) */
	struct pmd_nreq_free_slot e[PMD_RETURN_MAX]; /* (C) */
};

/* The tagged segment whose slot is lent to src, or NULL. */
static struct pmd_lseg *return_lseg(struct pmd_cluster *c, pm_node_t src,
				    const struct pmd_nreq_free_slot *e)
{
	struct pmd_lseg *l = lseg_by_index(c, e->seg);

	return l && l->tag_task && e->slot < PMD_SEG_SLOTS &&
	       l->owner[e->slot] == src ? l : NULL;
}

/* Every holder stopped (or the deadline passed): copy, retire, answer.
 * The task goes on after this returns. */
static void lend_return_done(void *arg)
{
	struct lend_return *k = arg;
	struct pmd_cluster *c = k->c;
	struct pmd_nreq_return_rep *rep = (void *)c->nreq_out;
	uint8_t *data = c->nreq_out + sizeof(*rep);

	*rep = (struct pmd_nreq_return_rep){ .n = k->n };
	for (uint32_t i = 0; i < k->n; i++) {
		struct pmd_lseg *l = return_lseg(c, k->src, &k->e[i]);
		uint8_t *to = data + (size_t)i * PM_FRAME_SIZE;

		if (!l) { /* given back meanwhile, or never lent to src */
			rep->lost |= 1u << i;
			memset(to, 0, PM_FRAME_SIZE);
			continue;
		}
		memcpy(to, pmd_segment_frame(l->seg, k->e[i].slot),
		       PM_FRAME_SIZE);
		lend_release(c, l, k->e[i].slot);
	}
	pmd_segtab_flush(&c->core->segs);
	lseg_sweep(c);
	pmd_cluster_answer(c, k->src, k->src_inc, PMD_NREQ_RETURN, k->id, 0,
			   c->nreq_out,
			   (uint32_t)(sizeof(*rep) + k->n * PM_FRAME_SIZE));
	free(k);
}

void pmd_lend_serve_return(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			   struct pmd_nreq_out *out)
{
	const struct pmd_nreq_return_req *q = (const void *)in->body;
	struct pmd_stops st = { 0 };
	struct lend_return *k;
	error_t err = 0;

	if (in->hdr->len < offsetof(struct pmd_nreq_return_req, e) ||
	    q->n == 0 || q->n > PMD_RETURN_MAX ||
	    (q->flags & ~PMD_RETURN_NOSTOP) ||
	    in->hdr->len != offsetof(struct pmd_nreq_return_req, e) +
			    q->n * sizeof(q->e[0])) {
		out->status = EPROTO;
		return;
	}
	k = malloc(sizeof(*k));
	if (!k) {
		out->status = ENOMEM;
		return;
	}
	k->c = c;
	k->src = in->src;
	k->src_inc = in->src_inc;
	k->id = in->hdr->id;
	k->n = q->n;
	memcpy(k->e, q->e, q->n * sizeof(q->e[0]));
	/* The task mapping a slot stops its stores there first. */
	for (uint32_t i = 0; i < q->n && !err; i++) {
		struct pmd_lseg *l = return_lseg(c, in->src, &q->e[i]);
		if (l && !(q->flags & PMD_RETURN_NOSTOP) &&
		    pmd_stop_needed(l->seg))
			err = pmd_stops_add(&st, l->seg, q->e[i].slot, 1,
					    PM_STOP_WP, l->frame[q->e[i].slot]);
	}
	if (!err && st.n && c->up.stop)
		err = c->up.stop(c->up.arg, &st, c->conf.down_ms / 4,
				 lend_return_done, k);
	else if (!err)
		lend_return_done(k);
	pmd_stops_fini(&st);
	if (err) {
		free(k);
		out->status = err;
		return;
	}
	out->later = true;
}

void pmd_lend_forget(struct pmd_cluster *c, pm_node_t home)
{
	unsigned n = 0;

	/* A home we forget may not have forgotten us (it was paused, or
	 * cut off): its one-sided reads and writes must find nothing, never
	 * a slot lent since to another. Each segment lends to one home
	 * only: its registration goes. Its memory stays out of use (never
	 * lent again, never back in the pool) until that home is known to
	 * have forgotten us too (pmd_lend_forgotten): a write of its that
	 * the provider took before the registration went may still land
	 * there (the chaos test saw one land in a slot lent since). */
	for (unsigned i = 0; i < c->nlsegs;) {
		struct pmd_lseg *l = c->lsegs[i];

		if (l->home != home || l->closed) {
			i++;
			continue;
		}
		for (unsigned s = 0; s < PMD_SEG_SLOTS && l->seg; s++)
			if (l->owner[s] == home) {
				lend_release(c, l, s);
				n++;
			}
		l->closed = true;
		if (l->mr)
			fab_mr_dereg(l->mr);
		l->mr = NULL;
		i++;
	}
	pmd_segtab_flush(&c->core->segs);
	lseg_sweep(c);
	if (n)
		pmd_info("cluster: %u slots lent to node %u taken back", n, home);
}

void pmd_lend_forgotten(struct pmd_cluster *c, pm_node_t home)
{
	for (unsigned i = 0; i < c->nlsegs;) {
		struct pmd_lseg *l = c->lsegs[i];
		if (l->closed && l->home == home && !l->tag_task && !l->nlent)
			lseg_destroy(c, i); /* (the last one takes its place) */
		else
			i++;
	}
}

void pmd_lend_stop(struct pmd_cluster *c)
{
	while (c->nlsegs) {
		struct pmd_lseg *l = c->lsegs[c->nlsegs - 1];
		for (unsigned s = 0; s < PMD_SEG_SLOTS && l->seg; s++)
			if (l->owner[s])
				lend_release(c, l, s);
		lseg_destroy(c, c->nlsegs - 1);
	}
	free(c->lsegs);
	c->lsegs = NULL;
}

void pmd_cluster_task_gone(struct pmd_cluster *c, uint64_t task)
{
	for (unsigned i = 0; i < c->nlsegs; i++)
		if (c->lsegs[i]->tag_task == task)
			c->lsegs[i]->task_gone = true;
	lseg_sweep(c);
}

/* The tagged segment index lent for task by home, or NULL. */
static struct pmd_lseg *lseg_tagged(struct pmd_cluster *c, pm_node_t home,
				    uint64_t task, uint32_t index)
{
	struct pmd_lseg *l = lseg_by_index(c, index);

	return l && l->tag_task == task && l->tag_home == home &&
	       !l->task_gone ? l : NULL;
}

struct pmd_segment *pmd_cluster_pushed_run(struct pmd_cluster *c,
					   pm_node_t home, uint64_t task,
					   uint32_t index, uint32_t slot,
					   uint32_t n)
{
	struct pmd_lseg *l = lseg_tagged(c, home, task, index);

	if (!l || n == 0 || slot >= PMD_SEG_SLOTS || n > PMD_SEG_SLOTS - slot)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		if (l->owner[slot + i] != home)
			return NULL;
	return l->seg;
}

error_t pmd_cluster_pushed_where(struct pmd_cluster *c, uint64_t task,
				 uint64_t seg_id, uint32_t slot,
				 pm_node_t *home, container_t *handle,
				 frame_t *frame)
{
	struct pmd_lseg *l = NULL;

	for (unsigned i = 0; i < c->nlsegs && !l; i++)
		if (c->lsegs[i]->tag_task && c->lsegs[i]->seg_id == seg_id)
			l = c->lsegs[i];
	if (!l)
		return ENOENT; /* not a segment kept for a task's mapping */
	if (l->tag_task != task)
		return EACCES;
	/* A spent one: every slot retired. */
	if (slot >= PMD_SEG_SLOTS ||
	    (l->seg && !pmd_segment_retired(l->seg, slot)))
		return ENOENT; /* never lent: nothing moved from there */
	*home = l->tag_home;
	*handle = l->tag_handle;
	*frame = l->frame[slot];
	return 0;
}

void pmd_lend_count(struct pmd_cluster *c, uint64_t *by_index, bool *ok)
{
	uint64_t total = 0;

	for (uint32_t k = 0; k < c->nlsegs; k++) {
		const struct pmd_lseg *l = c->lsegs[k];
		uint32_t n = 0;

		for (unsigned s = 0; s < PMD_SEG_SLOTS; s++) {
			int i;

			if (!l->owner[s])
				continue;
			n++;
			i = pmd_node_index(c, l->owner[s]);
			if (i < 0 || l->owner[s] == c->self) {
				pmd_err("check: slot %u of lent segment %lu is "
					"lent to node %u, not one of ours", s,
					(unsigned long)l->seg_id, l->owner[s]);
				*ok = false;
			} else {
				by_index[i]++;
			}
		}
		if (n != l->nlent) {
			pmd_err("check: lent segment %lu says %u slots are "
				"lent, its slots say %u",
				(unsigned long)l->seg_id, l->nlent, n);
			*ok = false;
		}
		total += n;
	}
	if (total != c->core->budget.lent ||
	    total != c->core->segs.slots_lent) {
		pmd_err("check: %lu slots lent, the budget says %lu and the "
			"segments %lu", (unsigned long)total,
			(unsigned long)c->core->budget.lent,
			(unsigned long)c->core->segs.slots_lent);
		*ok = false;
	}
}

/* ---- draining ---- */

void pmd_cluster_drain(struct pmd_cluster *c, bool on)
{
	c->draining = on;
	if (!on)
		c->lend_low = true; /* segments ready to lend again */
}

uint64_t pmd_cluster_lent(struct pmd_cluster *c, pm_node_t node)
{
	uint64_t n = 0;

	if (!node)
		return c->core->budget.lent;
	for (uint32_t k = 0; k < c->nlsegs; k++) /* (one home a segment) */
		if (c->lsegs[k]->home == node)
			n += c->lsegs[k]->nlent;
	return n;
}

unsigned pmd_cluster_recall(struct pmd_cluster *c, pm_node_t *homes,
			    unsigned max, pmd_ncall_done *done, void *arg)
{
	unsigned k = 0;

	for (unsigned i = 0; i < c->conf.nnodes && k < max; i++) {
		pm_node_t id = c->conf.nodes[i].id;
		error_t err;

		if (id == c->self || !pmd_cluster_lent(c, id))
			continue;
		homes[k++] = id;
		/* (A release without RECALL answers it "unsupported".) */
		err = pmd_cluster_call(c, id, PMD_NREQ_RECALL, NULL, 0, done,
				       arg);
		if (err)
			done(arg, err, NULL, 0);
	}
	return k;
}

void pmd_lend_serve_recall(struct pmd_cluster *c, const struct pmd_nreq_in *in,
			   struct pmd_nreq_out *out)
{
	if (in->hdr->len) {
		out->status = EPROTO;
		return;
	}
	if (!c->up.recall) {
		out->status = EOPNOTSUPP;
		return;
	}
	c->up.recall(c->up.arg, in->src);
}
