/* core.c - see core.h. */
#include "core.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

void pmd_core_init(struct pmd_core *core, const struct pmd_core_config *cfg)
{
	memset(core, 0, sizeof(*core));
	core->cfg = *cfg;
	pmd_budget_init(&core->budget, cfg->frames_total);
	pmd_segtab_init(&core->segs);
	pmd_list_init(&core->tasks);
	pmd_list_init(&core->users);
	pmd_list_init(&core->views_unsettled);
	/* Tokens are valid for this pmd's life; a restart makes old ones
	 * fail their MAC. */
	randombytes_buf(core->secret, sizeof(core->secret));
}

void pmd_core_fini(struct pmd_core *core)
{
	assert(pmd_list_empty(&core->tasks));
	assert(pmd_list_empty(&core->views_unsettled));
	pmd_segtab_fini(&core->segs);
	free(core->rsegs);
	free(core->rfree);
	pmd_stops_fini(&core->stops);
	pmd_store_fini(&core->store);
	sodium_memzero(core->secret, sizeof(core->secret));
}

uint64_t pmd_core_physical_free(struct pmd_core *core, uint32_t max)
{
	uint64_t used = pmd_segtab_resident_sweep(&core->segs, max) /
			PM_FRAME_SIZE + core->budget.held;

	return used < core->budget.total ? core->budget.total - used : 0;
}

void pmd_share_insert(struct pmd_core *core, struct pmd_share *sh)
{
	struct pmd_share **b = &core->shares[sh->id % PMD_SHARE_BUCKETS];

	sh->hash_next = *b;
	*b = sh;
	core->nshares++;
}

struct pmd_share *pmd_share_lookup(struct pmd_core *core, uint64_t id)
{
	struct pmd_share *sh = core->shares[id % PMD_SHARE_BUCKETS];

	while (sh && sh->id != id)
		sh = sh->hash_next;
	return sh;
}

void pmd_share_remove(struct pmd_core *core, struct pmd_share *sh)
{
	struct pmd_share **p = &core->shares[sh->id % PMD_SHARE_BUCKETS];

	while (*p != sh)
		p = &(*p)->hash_next;
	*p = sh->hash_next;
	core->nshares--;
}
