/* task.c - see task.h. */
#include "task.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "grow.h"
#include "lock.h"
#include "log.h"

/* t joins the node's tasks, with an empty handle table. */
static void task_link(struct pmd_core *core, struct pmd_task *t)
{
	pmd_htab_init(&t->handles);
	pmd_list_init(&t->containers);
	pmd_list_add(&core->tasks, &t->link);
	core->ntasks++;
}

error_t pmd_task_create(struct pmd_core *core, uint32_t uid, uint32_t gid,
			uint32_t pid, struct pmd_task **task_out)
{
	struct pmd_task *t;
	uint64_t guarantee = core->cfg.guarantee, extra = core->cfg.extra;
	uint64_t sessions = core->cfg.user_sessions;
	uint64_t handles = core->cfg.user_handles;
	struct pmd_user *user = NULL;
	error_t err;

	for (uint32_t i = 0; i < core->cfg.nusers; i++) {
		const struct pmd_user_limits *u = &core->cfg.users[i];
		if (u->uid != uid)
			continue;
		if (u->guarantee != PMD_LIMIT_DEFAULT)
			guarantee = u->guarantee;
		if (u->extra != PMD_LIMIT_DEFAULT)
			extra = u->extra;
		if (u->sessions != PMD_LIMIT_DEFAULT)
			sessions = u->sessions;
		if (u->handles != PMD_LIMIT_DEFAULT)
			handles = u->handles;
	}
	for (struct pmd_list *l = core->users.next; l != &core->users;
	     l = l->next) {
		struct pmd_user *u = pmd_container_of(l, struct pmd_user, link);
		if (u->uid == uid)
			user = u;
	}
	/* A user's sessions are bounded (each costs the node memory and
	 * descriptors whatever its frames): its record counts them. */
	if (sessions && user && user->ntasks >= sessions) {
		pmd_log_limited(&core->refusals_said, PMD_LOG_WARN,
				"refusing a session of uid %u pid %u: it has %u, "
				"its limit", uid, pid, user->ntasks);
		return EUSERS;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return ENOMEM;
	if (!user) {
		user = calloc(1, sizeof(*user));
		if (!user) {
			free(t);
			return ENOMEM;
		}
		*user = (struct pmd_user){ .uid = uid, .max_handles = handles };
		pmd_list_add(&core->users, &user->link);
	}
	err = pmd_budget_admit(&core->budget, core->cfg.admit, guarantee,
			       extra, &t->charge);
	if (err) {
		pmd_log_limited(&core->refusals_said, PMD_LOG_WARN,
				"refusing a session of uid %u pid %u: its "
				"guarantee of %lu frames does not fit", uid, pid,
				(unsigned long)guarantee);
		free(t);
		if (!user->ntasks) {
			pmd_list_del(&user->link);
			free(user);
		}
		return err;
	}
	t->id = (pm_task_t)core->cfg.node << 48 | ++core->next_task;
	t->user = user;
	user->ntasks++;
	t->uid = uid;
	t->gid = gid;
	t->pid = pid;
	task_link(core, t);
	*task_out = t;
	return 0;
}

error_t pmd_task_create_proxy(struct pmd_core *core, pm_task_t id,
			      struct pmd_task **task_out)
{
	struct pmd_task *t = calloc(1, sizeof(*t));

	if (!t)
		return ENOMEM;
	/* It owns nothing here: no guarantee, no extra frames. */
	t->id = id;
	t->proxy = true;
	task_link(core, t);
	*task_out = t;
	return 0;
}

void pmd_task_destroy(struct pmd_core *core, struct pmd_task *task)
{
	struct pmd_list *pos, *tmp;

	pmd_lock_end_all(task);
	pmd_list_for_each_safe(pos, tmp, &task->containers)
		pmd_container_free(core, pmd_container_of(
			pos, struct pmd_container, owner_link));
	for (uint32_t i = 0; i < task->handles.len; i++)
		if (task->handles.v[i])
			pmd_cap_free(core, task->handles.v[i]);
	pmd_htab_fini(&task->handles);
	pmd_budget_leave(&core->budget, &task->charge);
	if (task->user && !--task->user->ntasks) {
		pmd_list_del(&task->user->link);
		free(task->user);
	}
	pmd_list_del(&task->link);
	core->ntasks--;
	free(task->segs_given);
	free(task);
}

struct pmd_task *pmd_task_find(struct pmd_core *core, pm_task_t id)
{
	for (struct pmd_list *p = core->tasks.next; p != &core->tasks; p = p->next) {
		struct pmd_task *t = pmd_container_of(p, struct pmd_task, link);
		if (t->id == id)
			return t;
	}
	return NULL;
}

void pmd_task_stat(const struct pmd_task *task, struct pm_task_stat_rep *out)
{
	memset(out, 0, sizeof(*out));
	out->task = task->id;
	out->guaranteed = task->charge.guaranteed;
	out->extra_limit = task->charge.extra_limit;
	out->allocated = task->charge.allocated;
	out->extra_allocated = task->charge.extra_allocated;
	out->containers = task->ncontainers;
	out->uid = task->uid;
	out->pid = task->pid;
}

/* ---- the segments a task holds ---- */

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

void pmd_task_del_segment(struct pmd_task *t, uint64_t seg_id)
{
	uint32_t i = segs_lower_bound(t, seg_id);

	if (i == t->nsegs_given || t->segs_given[i] != seg_id)
		return;
	memmove(&t->segs_given[i], &t->segs_given[i + 1],
		(t->nsegs_given - i - 1) * sizeof(*t->segs_given));
	t->nsegs_given--;
}
