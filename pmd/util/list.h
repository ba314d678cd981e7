/*
 * list.h - an intrusive circular doubly-linked list (the element embeds a
 * struct pmd_list and gets back to itself with pmd_container_of).
 */
#ifndef PMD_LIST_H
#define PMD_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct pmd_list {
	struct pmd_list *next, *prev;
};

#define pmd_container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

static inline void pmd_list_init(struct pmd_list *h)
{
	h->next = h->prev = h;
}

static inline bool pmd_list_empty(const struct pmd_list *h)
{
	return h->next == h;
}

static inline void pmd_list_add(struct pmd_list *h, struct pmd_list *n)
{
	n->next = h->next;
	n->prev = h;
	h->next->prev = n;
	h->next = n;
}

static inline void pmd_list_del(struct pmd_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

#define pmd_list_for_each_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
