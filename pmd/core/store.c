/* store.c - see store.h. */
#include "store.h"

#include <errno.h>
#include <stdlib.h>

#include "borrowed.h"
#include "log.h"
#include "segment.h"

#define SEG_BYTES ((uint64_t)PMD_SEG_SLOTS * PM_FRAME_SIZE)

error_t pmd_store_init(struct pmd_store *s, uint64_t nslots)
{
	*s = (struct pmd_store){ .nslots = nslots,
				 .reserve = nslots / 4 < PMD_STORE_RESERVE
					    ? nslots / 4 : PMD_STORE_RESERVE };
	if (!nslots)
		return 0;
	s->bits = calloc((nslots + 63) / 64, sizeof(*s->bits));
	if (!s->bits) {
		s->nslots = 0;
		return ENOMEM;
	}
	return 0;
}

void pmd_store_fini(struct pmd_store *s)
{
	free(s->bits);
	*s = (struct pmd_store){ 0 };
}

uint32_t pmd_store_take(struct pmd_store *s, uint32_t n,
			struct pmd_place *out)
{
	uint32_t k = 0;

	for (uint64_t scanned = 0; k < n && scanned < s->nslots; scanned++) {
		uint64_t i = s->hint;

		s->hint = i + 1 == s->nslots ? 0 : i + 1;
		if (s->bits[i / 64] & (UINT64_C(1) << (i % 64)))
			continue;
		s->bits[i / 64] |= UINT64_C(1) << (i % 64);
		s->used++;
		out[k++] = (struct pmd_place){
			.node = PMD_NODE_STORE,
			.seg = (uint32_t)(i / PMD_SEG_SLOTS),
			.slot = (uint16_t)(i % PMD_SEG_SLOTS), .key = 1,
			.base = i / PMD_SEG_SLOTS * SEG_BYTES,
			.len = SEG_BYTES };
	}
	return k;
}

void pmd_store_put(struct pmd_store *s, uint32_t seg, uint16_t slot)
{
	uint64_t i = (uint64_t)seg * PMD_SEG_SLOTS + slot;

	if (i >= s->nslots || !(s->bits[i / 64] & (UINT64_C(1) << (i % 64)))) {
		pmd_err("the backing store's slot %lu given back twice",
			(unsigned long)i);
		return;
	}
	s->bits[i / 64] &= ~(UINT64_C(1) << (i % 64));
	s->used--;
}
