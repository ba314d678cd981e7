/* account.c - see account.h. */
#include "account.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

void pmd_budget_init(struct pmd_budget *b, uint64_t total)
{
	memset(b, 0, sizeof(*b));
	b->total = total;
}

/* Frames that are neither reserved by a guarantee, nor charged as extra,
 * nor lent to another node. */
uint64_t pmd_budget_unreserved(const struct pmd_budget *b)
{
	uint64_t used = b->guaranteed_sum + b->extra_charged + b->lent +
			b->held;

	return used >= b->total ? 0 : b->total - used;
}

uint64_t pmd_budget_room(const struct pmd_budget *b)
{
	uint64_t used = b->charged + b->lent + b->held;

	return used >= b->total ? 0 : b->total - used;
}

uint64_t pmd_budget_admissible(const struct pmd_budget *b)
{
	uint64_t used = b->guaranteed_sum + b->lent + b->held;

	return used >= b->total + b->store ? 0 : b->total + b->store - used;
}

error_t pmd_budget_admit(struct pmd_budget *b, enum pmd_admit_policy policy,
			 uint64_t want, uint64_t extra, struct pmd_charge *c)
{
	uint64_t left = pmd_budget_admissible(b);
	uint64_t grant = want;

	if (want > left) {
		if (policy == PMD_ADMIT_REFUSE)
			return ENOMEM;
		grant = left;
	}
	memset(c, 0, sizeof(*c));
	c->guaranteed = grant;
	c->extra_limit = extra;
	b->guaranteed_sum += grant;
	return 0;
}

void pmd_budget_leave(struct pmd_budget *b, struct pmd_charge *c)
{
	assert(c->allocated == 0 && c->extra_allocated == 0);
	assert(b->guaranteed_sum >= c->guaranteed);
	b->guaranteed_sum -= c->guaranteed;
	c->guaranteed = 0;
}

void pmd_quota_init(const struct pmd_budget *b, const struct pmd_charge *c,
		    bool extra_ok, struct pmd_quota *q)
{
	uint64_t g_used = c->allocated - c->extra_allocated;

	q->g_left = c->guaranteed - g_used;
	q->e_left = 0;
	if (extra_ok) {
		uint64_t e = c->extra_limit > c->extra_allocated
				     ? c->extra_limit - c->extra_allocated : 0;
		uint64_t node = pmd_budget_unreserved(b);
		q->e_left = e < node ? e : node;
	}
}

bool pmd_quota_take(struct pmd_quota *q, bool *extra_out)
{
	if (q->g_left) {
		q->g_left--;
		*extra_out = false;
		return true;
	}
	if (q->e_left) {
		q->e_left--;
		*extra_out = true;
		return true;
	}
	return false;
}

void pmd_quota_return(struct pmd_quota *q, bool extra, bool extra_ok)
{
	if (!extra)
		q->g_left++;
	else if (extra_ok)
		q->e_left++;
}

void pmd_charge_add(struct pmd_budget *b, struct pmd_charge *c, bool extra)
{
	c->allocated++;
	b->charged++;
	if (extra) {
		c->extra_allocated++;
		c->extra_here++;
		b->extra_charged++;
	}
	assert(b->charged + b->lent <= b->total);
	assert(c->allocated - c->extra_allocated <= c->guaranteed);
}

void pmd_charge_sub(struct pmd_budget *b, struct pmd_charge *c, bool extra)
{
	assert(c->allocated > 0 && b->charged > 0);
	c->allocated--;
	b->charged--;
	if (extra) {
		assert(c->extra_allocated > 0 && c->extra_here > 0 &&
		       b->extra_charged > 0);
		c->extra_allocated--;
		c->extra_here--;
		b->extra_charged--;
	}
}

void pmd_quota_init_remote(const struct pmd_charge *c, bool extra_ok,
			   struct pmd_quota *q)
{
	uint64_t g_used = c->allocated - c->extra_allocated;

	q->g_left = c->guaranteed - g_used;
	q->e_left = extra_ok && c->extra_limit > c->extra_allocated
			    ? c->extra_limit - c->extra_allocated : 0;
}

void pmd_charge_add_remote(struct pmd_budget *b, struct pmd_charge *c,
			   bool extra)
{
	c->allocated++;
	b->remote++;
	if (extra)
		c->extra_allocated++;
	assert(c->allocated - c->extra_allocated <= c->guaranteed);
}

void pmd_charge_sub_remote(struct pmd_budget *b, struct pmd_charge *c,
			   bool extra)
{
	assert(c->allocated > 0 && b->remote > 0);
	c->allocated--;
	b->remote--;
	if (extra) {
		assert(c->extra_allocated > 0);
		c->extra_allocated--;
	}
}
