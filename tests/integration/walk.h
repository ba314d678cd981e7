/*
 * walk.h - a seeded random walk against a model (docs/design.md, "The
 * mapping invariant"): an owner and a server map what they may, write
 * through the pmd and through their mappings, copy within and across
 * containers, move frames, lock, unshare and share again; after every
 * step every mapping and the pmd agree with the model, byte for byte.
 */
#ifndef PMD_TEST_WALK_H
#define PMD_TEST_WALK_H

#include <stdbool.h>

#include <pm/pm.h>

/* Runs steps steps of the walk between owner o and server s (each with a
 * library that follows moved frames). s may be a task of another node
 * than o's (its handle is then forwarded, and its maps move the frames to
 * its node); with place_on set, half the shared container's frames start
 * on that node. PM_TEST_SEED picks the seed (printed), PM_TEST_STEPS
 * the number of steps; PM_TEST_TRACE prints every step. */
void test_walk(pm_t *o, pm_t *s, unsigned steps, pm_node_t place_on);
/* The walks that follow run with memory overcommitted (on): the pmd may
 * page any frame out meanwhile, so a move may find its frame away (in a
 * store or on another node: EOPNOTSUPP) or no slot free (ENOMEM). */
void test_walk_paged(bool on);

#endif
