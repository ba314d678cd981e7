/* slots.c - see slots.h. */
#include "slots.h"

#include <assert.h>
#include <string.h>

void pmd_slots_init(struct pmd_slots *s)
{
	memset(s, 0, sizeof(*s));
}

int pmd_slots_alloc(struct pmd_slots *s)
{
	const unsigned words = PMD_SEG_SLOTS / 64;

	if (s->used == PMD_SEG_SLOTS)
		return -1;
	for (unsigned n = 0; n < words; n++) {
		unsigned w = (s->hint / 64 + n) % words;
		uint64_t freebits = ~s->used_map[w];

		if (!freebits)
			continue;
		unsigned slot = w * 64 + (unsigned)__builtin_ctzll(freebits);
		s->used_map[w] |= UINT64_C(1) << (slot % 64);
		assert(s->ref[slot] == 0);
		s->ref[slot] = 1;
		s->used++;
		s->hint = slot;
		return (int)slot;
	}
	assert(!"used count and map disagree");
	return -1;
}

bool pmd_slots_get(struct pmd_slots *s, unsigned slot)
{
	assert(slot < PMD_SEG_SLOTS && s->ref[slot] > 0);
	if (s->ref[slot] == UINT16_MAX)
		return false;
	s->ref[slot]++;
	return true;
}

bool pmd_slots_unref(struct pmd_slots *s, unsigned slot)
{
	assert(slot < PMD_SEG_SLOTS && s->ref[slot] > 0);
	return --s->ref[slot] == 0;
}

void pmd_slots_release(struct pmd_slots *s, unsigned slot)
{
	assert(slot < PMD_SEG_SLOTS && s->ref[slot] == 0);
	assert(s->used_map[slot / 64] & (UINT64_C(1) << (slot % 64)));
	s->used_map[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
	s->used--;
}

bool pmd_slots_put(struct pmd_slots *s, unsigned slot)
{
	if (!pmd_slots_unref(s, slot))
		return false;
	pmd_slots_release(s, slot);
	return true;
}
