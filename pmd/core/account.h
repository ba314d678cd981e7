/*
 * account.h - frame accounting: the node's budget and each task's charge.
 *
 * Every virtual frame is charged to exactly one task (its container's
 * owner), at the one place where frames are allocated, as guaranteed (G) or
 * extra (E). Invariants, checked by pmd_core_check (check.h):
 *   - sum of admitted guarantees <= budget total (and backing store);
 *   - charged = sum of every task's allocated <= total;
 *   - a task's G-part (allocated - extra_allocated) <= its guarantee and its
 *     extra_allocated <= its extra limit.
 * Guarantees are reserved at admission against what is neither reserved
 * nor lent: extra frames here count as reclaimable, so a task that comes
 * to a node full of extra frames still gets its guarantee, and its
 * guaranteed allocation may then find the node full until the pmd takes
 * extra frames back (the extra-frame protocol, reclaim.h). Extra frames
 * come out of what no guarantee reserves. Plain data, no I/O.
 *
 * Lock key: (L) the pmd loop thread, (C) constant once admitted; a quota
 * is a decode's local tally.
 */
#ifndef PMD_ACCOUNT_H
#define PMD_ACCOUNT_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

struct pmd_budget {
	uint64_t total;          /* (C) frames this node may hold (--memory) */
	uint64_t store;          /* (C) slots of its backing store: what
				  * guarantees may reserve beyond memory */
	uint64_t guaranteed_sum; /* (L) sum of admitted tasks' guarantees */
	uint64_t charged;        /* (L) frames charged to all tasks */
	uint64_t extra_charged;  /* (L) of which extra frames */
	uint64_t lent;           /* (L) slots lent to other nodes' frames */
	uint64_t remote;         /* (L) frames charged to tasks here that live
				  * on other nodes (not in charged) */
	uint64_t held;           /* (L) room kept for frames on their way
				  * here (pmd_pull_reserve) */
};

struct pmd_charge {
	uint64_t guaranteed;      /* (C) G, set at admission */
	uint64_t extra_limit;     /* (C) E */
	uint64_t allocated;       /* (L) frames charged now, G-part + extra */
	uint64_t extra_allocated; /* (L) of which extra */
	uint64_t extra_here;      /* (L) of those, frames on this node (what
				   * reclaiming them gives this node) */
};

/* What admission does when a new task's guarantee does not fit. */
enum pmd_admit_policy {
	PMD_ADMIT_REMAINDER, /* grant what is left (possibly 0) */
	PMD_ADMIT_REFUSE,    /* refuse the session: ENOMEM */
};

void pmd_budget_init(struct pmd_budget *b, uint64_t total);

/* Admits a task asking for `want` guaranteed frames: sets c->guaranteed
 * and c->extra_limit and reserves the guarantee. */
error_t pmd_budget_admit(struct pmd_budget *b, enum pmd_admit_policy policy,
			 uint64_t want, uint64_t extra, struct pmd_charge *c);
/* The task is gone; its charge must be zero. */
void pmd_budget_leave(struct pmd_budget *b, struct pmd_charge *c);

/* A running tally used by an allocation's decode step: how many frames a
 * task may still take in each class, given the flags. */
struct pmd_quota {
	uint64_t g_left; /* guaranteed frames still free for the task */
	uint64_t e_left; /* extra frames it may still take (0 without EXTRA) */
};
void pmd_quota_init(const struct pmd_budget *b, const struct pmd_charge *c,
		    bool extra_ok, struct pmd_quota *q);
/* Takes one frame from q; *extra_out says which class. false: ENOMEM. */
bool pmd_quota_take(struct pmd_quota *q, bool *extra_out);
/* Gives back one frame of a class (a squashed frame's charge). */
void pmd_quota_return(struct pmd_quota *q, bool extra, bool extra_ok);

void pmd_charge_add(struct pmd_budget *b, struct pmd_charge *c, bool extra);
void pmd_charge_sub(struct pmd_budget *b, struct pmd_charge *c, bool extra);

/* Frames placed on other nodes count against the task's quota, not this
 * node's budget (the lender's budget carries them). */
void pmd_quota_init_remote(const struct pmd_charge *c, bool extra_ok,
			   struct pmd_quota *q);
void pmd_charge_add_remote(struct pmd_budget *b, struct pmd_charge *c,
			   bool extra);
void pmd_charge_sub_remote(struct pmd_budget *b, struct pmd_charge *c,
			   bool extra);

/* What may still be lent or taken as extra: no guarantee is eaten. */
uint64_t pmd_budget_unreserved(const struct pmd_budget *b);
/* What a new guarantee may reserve: the frames of memory and backing
 * store neither reserved nor lent (extra frames here are reclaimable). */
uint64_t pmd_budget_admissible(const struct pmd_budget *b);

/* Frames the node has free now for a frame to come: neither charged,
 * lent nor held for frames on their way here. A guaranteed frame was
 * reserved at admission, but extra frames may fill its room until they
 * are taken back (reclaim.h). */
uint64_t pmd_budget_room(const struct pmd_budget *b);

static inline uint64_t pmd_budget_free(const struct pmd_budget *b)
{
	return b->total - b->charged - b->lent;
}

#endif
