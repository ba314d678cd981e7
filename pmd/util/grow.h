/*
 * grow.h - room for one more element at the end of a realloc'd array.
 */
#ifndef PMD_GROW_H
#define PMD_GROW_H

#include <stdint.h>
#include <stdlib.h>

/*
 * The array v (n used of *cap elements of size bytes) with room for one
 * more: v itself while it has room, else v moved to a doubled allocation
 * (first elements the first time) and *cap raised. NULL when out of
 * memory, and then v and *cap are as they were.
 */
static inline void *pmd_grow(void *v, uint32_t n, uint32_t *cap, size_t size,
			     uint32_t first)
{
	uint32_t ncap;

	if (n < *cap)
		return v;
	ncap = *cap ? *cap * 2 : first;
	if (ncap <= *cap)
		return NULL;
	v = realloc(v, (size_t)ncap * size);
	if (v)
		*cap = ncap;
	return v;
}

#endif
