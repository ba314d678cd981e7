/* task.c - see task.h. */
#include "task.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

/* Index of the first id >= seg_id. */
static uint32_t segs_lower_bound(const struct pmd_task *t, uint64_t seg_id)
{
	uint32_t lo = 0, hi = t->nsegs_given;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (t->segs_given[mid] < seg_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool pmd_task_has_segment(const struct pmd_task *t, uint64_t seg_id)
{
	uint32_t i = segs_lower_bound(t, seg_id);

	return i < t->nsegs_given && t->segs_given[i] == seg_id;
}

error_t pmd_task_add_segment(struct pmd_task *t, uint64_t seg_id)
{
	uint32_t i = segs_lower_bound(t, seg_id);
	uint64_t *v;

	if (i < t->nsegs_given && t->segs_given[i] == seg_id)
		return 0;
	v = pmd_grow(t->segs_given, t->nsegs_given, &t->segs_given_cap,
		     sizeof(*v), 16);
	if (!v)
		return ENOMEM;
	t->segs_given = v;
	memmove(&t->segs_given[i + 1], &t->segs_given[i],
		(t->nsegs_given - i) * sizeof(*t->segs_given));
	t->segs_given[i] = seg_id;
	t->nsegs_given++;
	return 0;
}
