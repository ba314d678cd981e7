/* core_fixture.c - see core_fixture.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "alloc.h"
#include "check.h"
#include "container.h"
#include "core_fixture.h"
#include "io.h"
#include "share.h"
#include "task.h"

void cf_core_init(struct pmd_core *core)
{
	struct pmd_core_config cfg = { .node = CF_NODE,
				       .frames_total = CF_FRAMES,
				       .guarantee = CF_GUARANTEE,
				       .extra = CF_EXTRA,
				       .admit = PMD_ADMIT_REFUSE,
				       .max_lock_ms = 1000 };

	pmd_core_init(core, &cfg);
}

void cf_core_fini(struct pmd_core *core)
{
	cf_check(core);
	while (!pmd_list_empty(&core->tasks))
		pmd_task_destroy(core, pmd_container_of(core->tasks.next,
							struct pmd_task, link));
	pmd_segtab_flush(&core->segs);
	pmd_core_fini(core);
}

struct pmd_task *cf_task(struct pmd_core *core)
{
	struct pmd_task *t;

	assert_int_equal(pmd_task_create(core, 0, 0, 1, &t), 0);
	t->follows = true;
	return t;
}

container_t cf_container(struct pmd_core *core, struct pmd_task *task,
			 uint32_t n)
{
	struct pmd_culprit why;
	container_t h;
	uint32_t done;

	assert_int_equal(pmd_container_create(core, task, &h), 0);
	if (n)
		assert_int_equal(pmd_container_allocate(core, task, h, 0, n, 0,
							NULL, 0, &done, &why),
				 0);
	return h;
}

void cf_check(struct pmd_core *core)
{
	struct pm_debug_rep d;

	pmd_core_check(core, &d);
	assert_true(d.invariant_ok);
}

void cf_fill(struct pmd_core *core, struct pmd_task *task, container_t h,
	     frame_t f, uint8_t b)
{
	static uint8_t buf[PM_FRAME_SIZE];
	struct pmd_culprit why;
	struct pmd_io io;

	memset(buf, b, sizeof(buf));
	assert_int_equal(pmd_io_decode(core, task, h, true, f, 0, sizeof(buf),
				       &io, &why), 0);
	assert_int_equal(io.nremote, 0);
	pmd_io_write(core, &io, buf);
}

uint8_t cf_byte(struct pmd_core *core, struct pmd_task *task, container_t h,
		frame_t f)
{
	struct pmd_culprit why;
	struct pmd_io io;
	uint8_t b;

	assert_int_equal(pmd_io_decode(core, task, h, false, f, 0, 1, &io,
				       &why), 0);
	assert_int_equal(io.nremote, 0);
	pmd_io_read(core, &io, &b);
	return b;
}

container_t cf_share(struct pmd_core *core, struct pmd_task *owner,
		     container_t c, struct pmd_task *task)
{
	struct pmd_culprit why;
	struct pm_token tok;
	container_t weak, h;

	assert_int_equal(pmd_container_share(core, owner, c, task->id, &weak,
					     &why), 0);
	assert_int_equal(pmd_cap_export(core, owner, weak, &tok, &why), 0);
	assert_int_equal(pmd_cap_import(core, task, &tok, &h, &why), 0);
	return h;
}
