/* stop.c - see stop.h. */
#include "stop.h"

#include <errno.h>
#include <stdlib.h>

#include "pm_proto.h"
#include "segment.h"

void pmd_stops_fini(struct pmd_stops *st)
{
	free(st->v);
	*st = (struct pmd_stops){ 0 };
}

error_t pmd_stops_add(struct pmd_stops *st, const struct pmd_segment *seg,
		      unsigned slot, unsigned n, unsigned kind, frame_t frame)
{
	struct pmd_stop_ent *last = st->n ? &st->v[st->n - 1] : NULL;

	if (last && last->seg == seg->index && last->kind == kind &&
	    kind != PM_STOP_DROP && last->slot + last->nslots == slot &&
	    last->nslots + n <= PMD_SEG_SLOTS) {
		last->nslots = (uint16_t)(last->nslots + n);
		return 0;
	}
	if (st->n == st->cap) {
		uint32_t cap = st->cap ? st->cap * 2 : 16;
		struct pmd_stop_ent *v = realloc(st->v, cap * sizeof(*v));
		if (!v)
			return ENOMEM;
		st->v = v;
		st->cap = cap;
	}
	st->v[st->n++] = (struct pmd_stop_ent){
		.seg = seg->index, .slot = (uint16_t)slot, .nslots = (uint16_t)n,
		.kind = (uint16_t)kind, .frame = frame };
	return 0;
}

error_t pmd_stops_add_drop(struct pmd_stops *st, const struct pmd_segment *seg,
			   unsigned slot, frame_t f,
			   const struct pmd_container *c)
{
	error_t err = pmd_stops_add(st, seg, slot, 1, PM_STOP_DROP, f);

	if (!err)
		st->v[st->n - 1].cont = c;
	return err;
}
