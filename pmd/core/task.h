/*
 * task.h - tasks: their life (admission, proxies, the end), their names,
 * and the segments they hold descriptors of.
 *
 * A task is one client session, the unit of identity and accounting; a
 * proxy is a task of another node acting here through its pmd (named by
 * its own id, owning nothing, holding the weak references it imported).
 * The struct is in core.h. Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_TASK_H
#define PMD_TASK_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "core.h"
#include "pm_proto.h"

/* A new session: admits its guarantee (ENOMEM when the admission policy
 * refuses). */
error_t pmd_task_create(struct pmd_core *core, uint32_t uid, uint32_t gid,
			uint32_t pid, struct pmd_task **task_out);
/* A task of another node, named by its id (its node in the high bits). */
error_t pmd_task_create_proxy(struct pmd_core *core, pm_task_t id,
			      struct pmd_task **task_out);
/* The session ended or the task died (the seed's task death): the locks
 * it holds end, its containers are freed (servers holding weak references
 * see them revoked), the capabilities it held are released. */
void pmd_task_destroy(struct pmd_core *core, struct pmd_task *task);

struct pmd_task *pmd_task_find(struct pmd_core *core, pm_task_t id);
void pmd_task_stat(const struct pmd_task *task, struct pm_task_stat_rep *out);

/* Whether t holds the descriptor of seg_id (a segment or a view). */
bool pmd_task_has_segment(const struct pmd_task *t, uint64_t seg_id);
/* Records that t now holds seg_id's descriptor. */
error_t pmd_task_add_segment(struct pmd_task *t, uint64_t seg_id);
/* t no longer holds seg_id's descriptor as a right (revoked: its faults
 * there resolve to nothing). */
void pmd_task_del_segment(struct pmd_task *t, uint64_t seg_id);

#endif
