/* frame_table.c - see frame_table.h. */
#include "frame_table.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FT_BITS   6
#define FT_FANOUT (1u << FT_BITS)
#define FT_MASK   (FT_FANOUT - 1)
#define FT_MAX_HEIGHT 11 /* 11 * 6 = 66 >= 64 key bits */

/* (Leaves are struct pmd_ftab_leaf, in the header: the cursor's inline
 * look-up reads them.) */
_Static_assert(FT_FANOUT == 64, "a leaf holds 64 entries");

struct ft_node {
	uint32_t count;                   /* non-NULL children */
	void *child[FT_FANOUT];           /* ft_node, or a leaf one level up */
};

static uint64_t ft_max_key(unsigned height)
{
	if (height == 0)
		return 0;
	if (height >= FT_MAX_HEIGHT)
		return UINT64_MAX;
	return (UINT64_C(1) << (FT_BITS * height)) - 1;
}

static unsigned ft_index(frame_t f, unsigned level)
{
	return (unsigned)(f >> (FT_BITS * level)) & FT_MASK;
}

void pmd_ftab_init(struct pmd_ftab *t)
{
	memset(t, 0, sizeof(*t));
}

static void ft_free(void *n, unsigned level)
{
	struct ft_node *node = n;

	if (!n)
		return;
	if (level > 0)
		for (unsigned i = 0; i < FT_FANOUT; i++)
			ft_free(node->child[i], level - 1);
	free(n);
}

void pmd_ftab_fini(struct pmd_ftab *t)
{
	if (t->height)
		ft_free(t->root, t->height - 1);
	pmd_ftab_init(t);
}

struct pmd_frame *pmd_ftab_lookup_slow(const struct pmd_ftab *t,
				       struct pmd_ftab_cursor *cur, frame_t f)
{
	void *n = t->root;
	struct pmd_ftab_leaf *leaf;
	unsigned i;

	if (!n || f > ft_max_key(t->height))
		return NULL;
	for (unsigned level = t->height - 1; level > 0; level--) {
		n = ((struct ft_node *)n)->child[ft_index(f, level)];
		if (!n)
			return NULL;
	}
	leaf = n;
	cur->leaf = leaf;
	cur->base = f & ~(frame_t)FT_MASK;
	i = ft_index(f, 0);
	return (leaf->present >> i) & 1 ? &leaf->e[i] : NULL;
}

struct pmd_frame *pmd_ftab_lookup(const struct pmd_ftab *t, frame_t f)
{
	struct pmd_ftab_cursor once;

	return pmd_ftab_lookup_slow(t, &once, f);
}

error_t pmd_ftab_reserve(struct pmd_ftab *t, frame_t f)
{
	void **slot;

	/* Grow: the old root becomes child 0 of a new root. */
	while (t->height == 0 || f > ft_max_key(t->height)) {
		if (!t->root) {
			t->height++;
			continue;
		}
		struct ft_node *top = calloc(1, sizeof(*top));
		if (!top)
			return ENOMEM;
		top->child[0] = t->root;
		top->count = 1;
		t->root = top;
		t->height++;
	}

	slot = &t->root;
	for (unsigned level = t->height - 1;; level--) {
		if (!*slot) {
			*slot = level ? calloc(1, sizeof(struct ft_node))
				      : calloc(1, sizeof(struct pmd_ftab_leaf));
			if (!*slot)
				return ENOMEM;
			/* parent counts were bumped below when we descended */
		}
		if (level == 0)
			break;
		struct ft_node *node = *slot;
		void **next = &node->child[ft_index(f, level)];
		if (!*next) {
			*next = level > 1 ? calloc(1, sizeof(struct ft_node))
					  : calloc(1, sizeof(struct pmd_ftab_leaf));
			if (!*next)
				return ENOMEM;
			node->count++;
		}
		slot = next;
	}
	return 0;
}

struct pmd_frame *pmd_ftab_insert(struct pmd_ftab *t, frame_t f)
{
	void *n = t->root;
	struct pmd_ftab_leaf *leaf;
	unsigned i;

	assert(n && f <= ft_max_key(t->height));
	for (unsigned level = t->height - 1; level > 0; level--) {
		n = ((struct ft_node *)n)->child[ft_index(f, level)];
		assert(n);
	}
	leaf = n;
	i = ft_index(f, 0);
	assert(!((leaf->present >> i) & 1));
	leaf->present |= UINT64_C(1) << i;
	memset(&leaf->e[i], 0, sizeof(leaf->e[i]));
	t->count++;
	return &leaf->e[i];
}

void pmd_ftab_remove(struct pmd_ftab *t, frame_t f)
{
	struct ft_node *path[FT_MAX_HEIGHT];
	void *n = t->root;
	struct pmd_ftab_leaf *leaf;
	unsigned i;

	assert(n && f <= ft_max_key(t->height));
	for (unsigned level = t->height - 1; level > 0; level--) {
		path[level] = n;
		n = ((struct ft_node *)n)->child[ft_index(f, level)];
		assert(n);
	}
	leaf = n;
	i = ft_index(f, 0);
	assert((leaf->present >> i) & 1);
	leaf->present &= ~(UINT64_C(1) << i);
	t->count--;
	if (leaf->present)
		return;

	/* Prune the nodes this removal emptied, bottom-up. */
	free(leaf);
	for (unsigned level = 1; level < t->height; level++) {
		struct ft_node *node = path[level];
		node->child[ft_index(f, level)] = NULL;
		if (--node->count)
			return;
		free(node);
	}
	t->root = NULL;
	t->height = 0;
}

/* First present key >= lo in the subtree n at `level` covering keys with
 * the given prefix; writes it to *out. */
static bool ft_next(void *n, unsigned level, frame_t prefix, frame_t lo,
		    frame_t *out, struct pmd_frame **e)
{
	if (level == 0) {
		struct pmd_ftab_leaf *leaf = n;
		unsigned start = (lo > prefix) ? (unsigned)(lo - prefix) : 0;
		uint64_t bits = start >= FT_FANOUT ? 0 : leaf->present >> start;

		if (!bits)
			return false;
		unsigned i = start + (unsigned)__builtin_ctzll(bits);
		*out = prefix + i;
		*e = &leaf->e[i];
		return true;
	}

	struct ft_node *node = n;
	unsigned shift = FT_BITS * level;
	unsigned start = lo > prefix ? ft_index(lo, level) : 0;
	for (unsigned i = start; i < FT_FANOUT; i++) {
		if (!node->child[i])
			continue;
		frame_t child_prefix = prefix | ((frame_t)i << shift);
		if (ft_next(node->child[i], level - 1, child_prefix,
			    i == start ? lo : child_prefix, out, e))
			return true;
	}
	return false;
}

bool pmd_ftab_next(const struct pmd_ftab *t, frame_t *f, struct pmd_frame **e)
{
	frame_t found;
	struct pmd_frame *entry;

	if (!t->root || *f > ft_max_key(t->height))
		return false;
	if (!ft_next(t->root, t->height - 1, 0, *f, &found, &entry))
		return false;
	*f = found;
	*e = entry;
	return true;
}
