/*
 * Unit tests of the core's moves between nodes (pmd/core/move.c), with no
 * daemon and no fabric: frames pushed to slots another node keeps for a
 * task's mapping (push plan, push finish), what a pull keeps or takes
 * (pull plan's keep_task, the pushed frames' plan), the owner's fault on a
 * frame that left (resolve says it is remote), and the accounting check
 * throughout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "borrowed.h"
#include "container.h"
#include "core_fixture.h"
#include "io.h"
#include "map.h"
#include "move.h"
#include "task.h"

#define NODE_T 2          /* the task's node */
#define LSEG   7          /* its tagged segment, as its index there */

struct fixture {
	struct pmd_core core;
	struct pmd_task *owner, *proxy;
	container_t h, ph;    /* the owner's handle, the proxy's */
	struct pmd_container *c;
};

static int setup(void **state)
{
	static struct fixture fx;

	memset(&fx, 0, sizeof(fx));
	cf_core_init(&fx.core);
	fx.owner = cf_task(&fx.core);
	assert_int_equal(pmd_task_create_proxy(&fx.core,
		((uint64_t)NODE_T << 48) | 5, &fx.proxy), 0);
	fx.h = cf_container(&fx.core, fx.owner, 8);
	for (frame_t f = 0; f < 8; f++)
		cf_fill(&fx.core, fx.owner, fx.h, f, (uint8_t)(f + 1));
	fx.ph = cf_share(&fx.core, fx.owner, fx.h, fx.proxy);
	fx.c = pmd_container_lookup(fx.owner, fx.h);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	cf_core_fini(&fx->core);
	return 0;
}

/* Slot i of the task's node's tagged segment, for frames of fx's. */
static struct pmd_place place(const struct fixture *fx, uint16_t slot)
{
	return (struct pmd_place){ .node = NODE_T, .seg = LSEG, .slot = slot,
				   .key = 42, .base = 0,
				   .len = (uint64_t)PMD_SEG_SLOTS * PM_FRAME_SIZE,
				   .tag_task = fx->proxy->id,
				   .tag_cont = fx->c->id };
}

/* Pushes frames [0, n) to slots [0, n) of the tagged segment. */
static void push(struct fixture *fx, uint32_t n)
{
	static struct pmd_push_out o;
	struct pmd_place pl[PMD_PUSH_MAX];
	struct pmd_culprit why;

	assert_int_equal(pmd_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, n, CONT_MAP_READ |
						 CONT_MAP_WRITE, NODE_T, &o,
						 &why), 0);
	assert_int_equal(o.npush, n);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(o.push[i].frame, i);
		/* What the server writes there: the frame's bytes. */
		assert_int_equal(pmd_push_bytes(&fx->core, fx->proxy,
			fx->ph, &o.push[i])[0], i + 1);
		pl[i] = place(fx, (uint16_t)i);
	}
	pmd_push_finish(&fx->core, fx->proxy, fx->ph, o.push, n, pl);
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
	cf_check(&fx->core);
	/* In place now: the answer is one run of the lender's slots. */
	assert_int_equal(pmd_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 8, CONT_MAP_READ, NODE_T, &o,
						 &why), 0);
	assert_int_equal(o.npush, 0);
	assert_int_equal(o.done, 8);
	assert_int_equal(o.nruns, 1);
	assert_int_equal(o.runs[0].segment, LSEG);
	assert_int_equal(o.runs[0].slot, 0);
	assert_int_equal(o.runs[0].nframes, 8);
	assert_int_equal(o.granted, CONT_MAP_READ);
	assert_false(o.pull);
	/* For a task of another node they are elsewhere: it pulls first. */
	assert_int_equal(pmd_push_plan(&fx->core, fx->proxy, fx->ph, 0, 8,
				       CONT_MAP_READ, 3, &o, &why), 0);
	assert_true(o.pull);
	assert_int_equal(why.frame, 0);
	/* Arguments and frames as for any map. */
	assert_int_equal(pmd_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 9, CONT_MAP_READ, NODE_T, &o,
						 &why), ENOENT);
	assert_int_equal(why.frame, 8);
	assert_int_equal(pmd_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 8, 0, NODE_T, &o, &why),
			 EINVAL);
	/* Its node goes down: they are lost. */
	pmd_node_lost(&fx->core, NODE_T);
	assert_int_equal(pmd_push_plan(&fx->core, fx->proxy, fx->ph,
						 0, 8, CONT_MAP_READ, NODE_T, &o,
						 &why), EIO);
	cf_check(&fx->core);
}

/* A write to slots of a lender that failed on the fabric: the frames in
 * exactly those slots are lost (EIO), the rest are not; another
 * registration's key names nothing of ours. */
static void a_failed_write_loses_the_frames_it_named(void **state)
{
	struct fixture *fx = *state;
	struct pmd_culprit why;
	struct pmd_io io;

	push(fx, 8);
	pmd_rslots_lost(&fx->core, NODE_T, 43, 0, 8 * PM_FRAME_SIZE);
	/* From 100 bytes into slot 2 to 100 bytes into slot 3. */
	pmd_rslots_lost(&fx->core, NODE_T, 42, 2 * PM_FRAME_SIZE + 100,
			PM_FRAME_SIZE);
	for (frame_t f = 0; f < 8; f++) {
		error_t err = pmd_io_decode(&fx->core, fx->owner, fx->h, false,
					    f, 0, 1, &io, &why);
		assert_int_equal(err, f == 2 || f == 3 ? EIO : 0);
	}
	cf_check(&fx->core);
}

static void pulls_keep_or_take_pushed_frames(void **state)
{
	struct fixture *fx = *state;
	struct pmd_pull pulls[PMD_PULL_MAX];
	static uint8_t data[8 * PM_FRAME_SIZE];
	struct pmd_culprit why;
	uint32_t n, held;
	struct pmd_io io;
	uint8_t b[1];

	push(fx, 8);
	/* A map for that task keeps them where they are... */
	assert_int_equal(pmd_pull_plan(&fx->core, fx->c, 0, 8, fx->proxy->id,
				       pulls, &n, &why), 0);
	assert_int_equal(n, 0);
	/* ...anyone else's brings them here; so does its unshare. */
	assert_int_equal(pmd_pull_plan(&fx->core, fx->c, 0, 8, 0, pulls, &n,
				       &why), 0);
	assert_int_equal(n, 8);
	pmd_pull_plan_pushed(&fx->core, fx->c, fx->proxy->id, pulls, &n);
	assert_int_equal(n, 8);
	assert_int_equal(pulls[3].slot, 3);
	/* They sit in slots their node keeps for the task: it returns them
	 * (no loan to give back here), room for them held meanwhile. */
	for (uint32_t i = 0; i < n; i++)
		assert_true(pulls[i].tagged);
	assert_int_equal(pmd_pull_reserve(&fx->core, fx->c, pulls, n, &held),
			 0);
	/* The bytes that came come home; frame 2 did not (its node no
	 * longer had it for us): it is lost. */
	for (int f = 0; f < 8; f++)
		memset(data + f * PM_FRAME_SIZE, 0x40 + f, PM_FRAME_SIZE);
	fx->core.nrfree = 0;
	assert_int_equal(pmd_pull_finish(&fx->core, fx->owner, fx->h, pulls, n,
					 data, 1u << 2, held), 0);
	assert_int_equal(fx->core.nrfree, 0);
	assert_int_equal(fx->core.budget.held, 0);
	b[0] = cf_byte(&fx->core, fx->owner, fx->h, 5);
	assert_int_equal(b[0], 0x45);
	assert_int_equal(pmd_io_decode(&fx->core, fx->owner, fx->h, false, 2,
				       0, 1, &io, &why), EIO);
	cf_check(&fx->core);
}

static void the_owners_mapping_follows_a_pushed_frame(void **state)
{
	struct fixture *fx = *state;
	static struct pmd_map_out m;
	struct pmd_resolve_out out;
	struct pmd_map map;
	struct pmd_culprit why;
	uint64_t seg;
	uint32_t slot;

	/* The owner maps frame 0: its segment is exposed, so the push
	 * retires the slot rather than freeing it. */
	assert_int_equal(pmd_map_decode(&fx->core, fx->owner, fx->h, 0, 1,
					CONT_MAP_READ, &map, &why), 0);
	assert_int_equal(pmd_map_invoke(&fx->core, fx->owner, &map, &m), 0);
	seg = m.runs[0].segment;
	slot = m.runs[0].slot;
	push(fx, 1);
	/* Its fault there: the frame is on another node now. */
	assert_int_equal(pmd_container_resolve(&fx->core, fx->owner, seg, slot,
					       &out), 0);
	assert_true(out.remote);
	assert_int_equal(out.frame, 0);
	/* The owner's own handle serves the pull, not the weak reference it
	 * made for the proxy (bound to the proxy). */
	assert_int_equal(pmd_container_handle_of(fx->owner, out.cont), fx->h);
	assert_int_equal(pmd_container_handle_of(fx->proxy, out.cont), fx->ph);
	cf_check(&fx->core);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(pushed_frames_are_in_place,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_failed_write_loses_the_frames_it_named, setup,
			teardown),
		cmocka_unit_test_setup_teardown(pulls_keep_or_take_pushed_frames,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			the_owners_mapping_follows_a_pushed_frame, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
