/*
 * Unit tests of the core's moves between nodes (pmd/container.c), with no
 * daemon and no fabric: frames pushed to slots another node keeps for a
 * task's mapping (push_plan, push_finish), what a pull keeps or takes
 * (pull_plan's keep_task, pull_plan_pushed), the owner's fault on a frame
 * that left (resolve says EREMOTE), and the accounting check throughout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "container.h"
#include "core.h"
#include "segment.h"
#include "task.h"

#define NODE_T 2          /* the task's node */
#define LSEG   7          /* its tagged segment, as its index there */

struct fixture {
	struct pmd_core core;
	struct pmd_task *owner, *proxy;
	container_t h, ph;    /* the owner's handle, the proxy's */
	uint64_t id;          /* the container */
};

static void check_books(struct pmd_core *core)
{
	struct pm_debug_rep d;

	pmd_core_debug(core, &d);
	assert_true(d.invariant_ok);
}

static int setup(void **state)
{
	static struct fixture fx;
	struct pmd_core_config cfg = { .node = 1, .frames_total = 4096,
				       .guarantee = 256, .extra = 256,
				       .admit = PMD_ADMIT_REFUSE,
				       .max_lock_ms = 1000 };
	struct pmd_culprit why;
	struct pm_token tok;
	container_t weak;
	uint32_t done;
	uint8_t b[PM_FRAME_SIZE];

	memset(&fx, 0, sizeof(fx));
	pmd_core_init(&fx.core, &cfg);
	assert_int_equal(pmd_task_create(&fx.core, 0, 0, 1, &fx.owner), 0);
	fx.owner->follows = true;
	assert_int_equal(pmd_task_create_proxy(&fx.core,
		((uint64_t)NODE_T << 48) | 5, &fx.proxy), 0);
	assert_int_equal(pmd_container_create(&fx.core, fx.owner, &fx.h), 0);
	assert_int_equal(pmd_container_allocate(&fx.core, fx.owner, fx.h, 0, 8,
						0, &done, &why), 0);
	for (frame_t f = 0; f < 8; f++) {
		memset(b, (int)f + 1, sizeof(b));
		assert_int_equal(pmd_container_write(&fx.core, fx.owner, fx.h, f,
						     0, b, sizeof(b), &why), 0);
	}
	assert_int_equal(pmd_container_share(&fx.core, fx.owner, fx.h,
					     fx.proxy->id, &weak, &why), 0);
	assert_int_equal(pmd_cap_export(&fx.core, fx.owner, weak, &tok, &why), 0);
	assert_int_equal(pmd_cap_import(&fx.core, fx.proxy, &tok, &fx.ph, &why),
			 0);
	assert_int_equal(pmd_container_id_of(&fx.core, fx.owner, fx.h, &fx.id), 0);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	pmd_task_destroy(&fx->core, fx->proxy);
	pmd_task_destroy(&fx->core, fx->owner);
	pmd_segtab_flush(&fx->core.segs);
	pmd_core_fini(&fx->core);
	return 0;
}

/* Slot i of the task's node's tagged segment, for frames of fx's. */
static struct pmd_place place(const struct fixture *fx, uint16_t slot)
{
	return (struct pmd_place){ .node = NODE_T, .seg = LSEG, .slot = slot,
				   .key = 42, .base = 0,
				   .len = (uint64_t)PMD_SEG_SLOTS * PM_FRAME_SIZE,
				   .tag_task = fx->proxy->id, .tag_cont = fx->id };
}

/* Pushes frames [0, n) to slots [0, n) of the tagged segment. */
static void push(struct fixture *fx, uint32_t n)
{
	static struct pmd_push_out o;
	struct pmd_place pl[PMD_PUSH_MAX];
	struct pmd_culprit why;

	assert_int_equal(pmd_container_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, n, CONT_MAP_READ |
						 CONT_MAP_WRITE, NODE_T, &o,
						 &why), 0);
	assert_int_equal(o.npush, n);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(o.push[i].frame, i);
		/* What the server writes there: the frame's bytes. */
		assert_int_equal(pmd_container_push_bytes(&fx->core, fx->proxy,
			fx->ph, &o.push[i])[0], i + 1);
		pl[i] = place(fx, (uint16_t)i);
	}
	pmd_container_push_finish(&fx->core, fx->proxy, fx->ph, o.push, n, pl);
	pmd_segtab_flush(&fx->core.segs);
}

static void pushed_frames_are_in_place(void **state)
{
	struct fixture *fx = *state;
	static struct pmd_push_out o;
	struct pm_stat_rep st;
	struct pmd_culprit why;

	push(fx, 8);
	assert_int_equal(pmd_container_stat(&fx->core, fx->owner, fx->h, &st,
					    &why), 0);
	assert_int_equal(st.remote, 8);
	check_books(&fx->core);
	/* In place now: the answer is one run of the lender's slots. */
	assert_int_equal(pmd_container_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 8, CONT_MAP_READ, NODE_T, &o,
						 &why), 0);
	assert_int_equal(o.npush, 0);
	assert_int_equal(o.done, 8);
	assert_int_equal(o.nruns, 1);
	assert_int_equal(o.runs[0].segment, LSEG);
	assert_int_equal(o.runs[0].slot, 0);
	assert_int_equal(o.runs[0].nframes, 8);
	assert_int_equal(o.granted, CONT_MAP_READ);
	/* For a task of another node they are elsewhere: it pulls first. */
	assert_int_equal(pmd_container_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 8, CONT_MAP_READ, 3, &o, &why),
			 EREMOTE);
	/* Arguments and frames as for any map. */
	assert_int_equal(pmd_container_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 9, CONT_MAP_READ, NODE_T, &o,
						 &why), ENOENT);
	assert_int_equal(why.frame, 8);
	assert_int_equal(pmd_container_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 8, 0, NODE_T, &o, &why),
			 EINVAL);
	/* Its node goes down: they are lost. */
	pmd_core_node_lost(&fx->core, NODE_T);
	assert_int_equal(pmd_container_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 8, CONT_MAP_READ, NODE_T, &o,
						 &why), EIO);
	check_books(&fx->core);
}

static void pulls_keep_or_take_pushed_frames(void **state)
{
	struct fixture *fx = *state;
	struct pmd_pull pulls[PMD_PULL_MAX];
	static uint8_t data[8 * PM_FRAME_SIZE];
	struct pmd_culprit why;
	uint32_t n;
	uint8_t b[4];

	push(fx, 8);
	/* A map for that task keeps them where they are... */
	assert_int_equal(pmd_container_pull_plan(&fx->core, fx->owner, fx->h,
						 false, 0, 8, fx->proxy->id,
						 pulls, &n, &why), 0);
	assert_int_equal(n, 0);
	/* ...anyone else's brings them here; so does its unshare. */
	assert_int_equal(pmd_container_pull_plan(&fx->core, fx->owner, fx->h,
						 false, 0, 8, 0, pulls, &n,
						 &why), 0);
	assert_int_equal(n, 8);
	assert_int_equal(pmd_container_pull_plan_pushed(&fx->core, fx->owner,
							fx->h, fx->proxy->id,
							pulls, &n), 0);
	assert_int_equal(n, 8);
	assert_int_equal(pulls[3].slot, 3);
	assert_int_equal(pmd_container_pull_plan_pushed(&fx->core, fx->proxy,
							fx->ph, fx->proxy->id,
							pulls, &n), EPERM);
	/* The bytes read there come home; the loans go back. */
	for (int f = 0; f < 8; f++)
		memset(data + f * PM_FRAME_SIZE, 0x40 + f, PM_FRAME_SIZE);
	assert_int_equal(pmd_container_pull_plan_pushed(&fx->core, fx->owner,
							fx->h, fx->proxy->id,
							pulls, &n), 0);
	fx->core.nrfree = 0;
	assert_int_equal(pmd_container_pull_finish(&fx->core, fx->owner, fx->h,
						   pulls, n, data), 0);
	assert_int_equal(fx->core.nrfree, 8);
	assert_int_equal(fx->core.rfree[0].node, NODE_T);
	assert_int_equal(pmd_container_read(&fx->core, fx->owner, fx->h, 5, 0,
					    b, sizeof(b), &why), 0);
	assert_int_equal(b[0], 0x45);
	check_books(&fx->core);
}

static void the_owners_mapping_follows_a_pushed_frame(void **state)
{
	struct fixture *fx = *state;
	static struct pmd_map_out m;
	struct pmd_resolve_out out;
	struct pmd_culprit why;
	uint64_t seg;
	uint32_t slot;

	/* The owner maps frame 0: its segment is exposed, so the push
	 * retires the slot rather than freeing it. */
	assert_int_equal(pmd_container_map(&fx->core, fx->owner, fx->h, 0, 1,
					   CONT_MAP_READ, &m, &why), 0);
	seg = m.runs[0].segment;
	slot = m.runs[0].slot;
	push(fx, 1);
	/* Its fault there: the frame is on another node now. */
	assert_int_equal(pmd_container_resolve(&fx->core, fx->owner, seg, slot,
					       &out), EREMOTE);
	assert_int_equal(out.frame, 0);
	/* The owner's own handle serves the pull, not the weak reference it
	 * made for the proxy (bound to the proxy). */
	assert_int_equal(pmd_container_handle_of(fx->owner, out.cont), fx->h);
	assert_int_equal(pmd_container_handle_of(fx->proxy, out.cont), fx->ph);
	check_books(&fx->core);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(pushed_frames_are_in_place,
						setup, teardown),
		cmocka_unit_test_setup_teardown(pulls_keep_or_take_pushed_frames,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			the_owners_mapping_follows_a_pushed_frame, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
