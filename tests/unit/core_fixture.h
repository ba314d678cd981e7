/*
 * core_fixture.h - a node core for unit tests, with no daemon: made with
 * a small budget, tasks on demand, the accounting check after every
 * step that matters, and the core's I/O for a frame's bytes.
 */
#ifndef PMD_TEST_CORE_FIXTURE_H
#define PMD_TEST_CORE_FIXTURE_H

#include <stdint.h>

#include <pm/pm.h>

#include "core.h"

#define CF_NODE      1
#define CF_FRAMES    4096 /* the node's budget */
#define CF_GUARANTEE 256  /* each task's */
#define CF_EXTRA     256

/* A core of CF_FRAMES frames on node CF_NODE. */
void cf_core_init(struct pmd_core *core);
/* Every task goes, then the core (the check must hold first). */
void cf_core_fini(struct pmd_core *core);
/* A new task (a session of uid 0), following its mappings. */
struct pmd_task *cf_task(struct pmd_core *core);
/* A container of task with frames [0, n) allocated (guaranteed). */
container_t cf_container(struct pmd_core *core, struct pmd_task *task,
			 uint32_t n);
/* The accounting check holds. */
void cf_check(struct pmd_core *core);

/* Frame f of h filled with byte b, through the core's write; and its
 * first byte, through its read. */
void cf_fill(struct pmd_core *core, struct pmd_task *task, container_t h,
	     frame_t f, uint8_t b);
uint8_t cf_byte(struct pmd_core *core, struct pmd_task *task, container_t h,
		frame_t f);
/* A weak reference to owner's c imported by task (through a token). */
container_t cf_share(struct pmd_core *core, struct pmd_task *owner,
		     container_t c, struct pmd_task *task);

#endif
