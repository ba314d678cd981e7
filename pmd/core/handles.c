/* handles.c - see handles.h. */
#include "handles.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Handles: generation (never 0) in the high 32 bits, index + 1 in the low,
 * so that 0 and small integers a task might guess are never valid. */
static container_t handle_make(uint32_t gen, uint32_t index)
{
	return (container_t)gen << 32 | (container_t)(index + 1);
}

void pmd_htab_init(struct pmd_htab *t)
{
	memset(t, 0, sizeof(*t));
}

void pmd_htab_fini(struct pmd_htab *t)
{
	assert(t->count == 0);
	free(t->v);
	free(t->gen);
	memset(t, 0, sizeof(*t));
}

error_t pmd_htab_insert(struct pmd_htab *t, struct pmd_cap *c,
			container_t *h_out)
{
	uint32_t i = t->hint;

	if (t->count >= PMD_TASK_HANDLES_MAX)
		return ENOMEM;
	while (i < t->len && t->v[i])
		i++;
	if (i == t->len) {
		if (t->len == t->cap) {
			uint32_t ncap = t->cap ? t->cap * 2 : 16;
			if (ncap > UINT32_MAX / 2)
				return ENOMEM;
			struct pmd_cap **v = realloc(t->v, ncap * sizeof(*v));
			if (!v)
				return ENOMEM;
			t->v = v;
			uint32_t *gen = realloc(t->gen, ncap * sizeof(*gen));
			if (!gen)
				return ENOMEM;
			t->gen = gen;
			t->cap = ncap;
		}
		t->gen[t->len] = 0;
		t->v[t->len++] = NULL;
	}
	if (++t->gen[i] == 0)
		t->gen[i] = 1;
	t->v[i] = c;
	t->hint = i + 1;
	t->count++;
	*h_out = handle_make(t->gen[i], i);
	return 0;
}

struct pmd_cap *pmd_htab_lookup(const struct pmd_htab *t, container_t h)
{
	uint64_t low = h & UINT32_MAX;
	uint32_t gen = (uint32_t)(h >> 32);

	if (low == 0 || low > t->len)
		return NULL;
	if (t->gen[low - 1] != gen)
		return NULL;
	return t->v[low - 1];
}

void pmd_htab_remove(struct pmd_htab *t, container_t h)
{
	uint32_t i = (uint32_t)(h & UINT32_MAX) - 1;

	assert(pmd_htab_lookup(t, h));
	t->v[i] = NULL;
	t->gen[i]++; /* the old handle dies now, not at reuse */
	if (i < t->hint)
		t->hint = i;
	t->count--;
}
