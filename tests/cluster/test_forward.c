/*
 * Forwarding to the home: a task on node 2 imports a token of a container
 * homed on node 1 and uses it through its own pmd: reads and writes of
 * every size, stat, lock and unlock, release; what a weak reference may
 * not do stays refused; unshare, a foreign task, an altered token and the
 * home's death give the errors of one node (ENODEV for the dead home);
 * the home forgets its proxy when the task goes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_util.h"

static char dir[] = "/tmp/pmd-forward-XXXXXX";
static char ini[300], key[300];
static struct pmd_proc node[3];
static int nnodes;

static int setup_n(int n)
{
	nnodes = n;
	strcpy(dir, "/tmp/pmd-forward-XXXXXX");
	ct_cluster_files(dir, ini, sizeof(ini), key, sizeof(key), 3);
	for (int i = 0; i < n; i++) {
		char id[16];
		snprintf(id, sizeof(id), "%d", i + 1);
		pmd_proc_start(&node[i], (const char *const[]){ "--node-id", id,
			"--cluster", ini, "--memory", "64M", "--guarantee", "1024",
			NULL });
	}
	ct_wait_state(&node[0], 2, PM_NODE_UP, 6000);
	ct_wait_state(&node[1], 1, PM_NODE_UP, 6000);
	if (n == 3) {
		ct_wait_state(&node[0], 3, PM_NODE_UP, 6000);
		ct_wait_state(&node[2], 1, PM_NODE_UP, 6000);
	}
	return 0;
}

static int setup(void **state)
{
	return setup_n(2);
}

static int setup3(void **state)
{
	return setup_n(3);
}

static int teardown(void **state)
{
	/* What a failed test left running; its logs stay for reading. */
	for (int i = 0; i < 3; i++)
		ct_reap(&node[i]);
	unlink(ini);
	unlink(key);
	rmdir(dir);
	return 0;
}

static uint64_t tasks_on(pm_t *pm)
{
	struct pm_debug_stat st;

	assert_int_equal(pm_debug_stat(pm, &st), 0);
	return st.tasks;
}

static void a_server_on_another_node(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	pm_t *other = test_connect(&node[1]);
	static uint8_t buf[65536], got[65536];
	struct pm_container_stat st;
	pm_cap_token_t tok, bad;
	pm_task_t sid;
	container_t c, weak, ref, ref2;
	uint64_t t0, base_tasks = tasks_on(a);
	int n = 20;
	void *m;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(pm_container_write(a, c, 1, 5, buf, sizeof(buf)), 0);

	/* A task of node 2 is named by its id; the token goes there. */
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(sid >> 48, 2);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	bad = tok;
	bad.bytes[20] ^= 1;
	assert_int_equal(pm_cap_import(s, &bad, &ref), EINVAL);
	assert_int_equal(pm_cap_import(other, &tok, &ref), EACCES);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(tasks_on(a), base_tasks + 1); /* its proxy */

	/* Reads and writes of every size, through node 2's pmd. */
	assert_int_equal(pm_container_read(s, ref, 1, 5, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	assert_int_equal(pm_container_read(s, ref, 1, 5 + 4093, got, 10), 0);
	assert_memory_equal(got, buf + 4093, 10);
	assert_int_equal(pm_container_write(s, ref, 3, 1, "from node 2", 11), 0);
	assert_int_equal(pm_container_read(a, c, 3, 1, got, 11), 0);
	assert_memory_equal(got, "from node 2", 11);
	assert_int_equal(pm_container_read(s, ref, 30, 0, got, 1), ENOENT);
	assert_int_equal(pm_container_stat(s, ref, &st), 0);
	assert_int_equal(st.frames, 20);
	assert_int_equal(st.home, 1);

	/* The server's lock holds the owner off; a weak reference stays
	 * weak; what is not built for another home says so. */
	assert_int_equal(pm_container_lock(s, ref, 5000), 0);
	assert_int_equal(pm_container_deallocate(a, c, 19, 1), EBUSY);
	assert_int_equal(pm_container_unlock(s, ref), 0);
	assert_int_equal(pm_container_deallocate(a, c, 19, 1), 0);
	n = 1;
	assert_int_equal(pm_container_allocate(s, ref, 40, &n, 0), EPERM);
	assert_int_equal(pm_container_destroy(s, ref), EPERM);
	assert_int_equal(pm_container_map(s, ref, 0, 1, CONT_MAP_READ, &m, NULL),
			 EOPNOTSUPP);
	assert_int_equal(pm_container_read(s, ref + 100, 0, 0, got, 1), EBADF);

	/* Released, and imported again; then unshared by the owner. */
	assert_int_equal(pm_cap_release(s, ref), 0);
	assert_int_equal(pm_container_read(s, ref, 0, 0, got, 1), EBADF);
	assert_int_equal(pm_cap_import(s, &tok, &ref2), 0);
	assert_int_equal(pm_container_read(s, ref2, 3, 1, got, 11), 0);
	assert_int_equal(pm_container_unshare(a, c, sid), 0);
	assert_int_equal(pm_container_read(s, ref2, 3, 1, got, 11), ESTALE);
	test_check(a);

	/* The task goes: the home forgets its proxy. */
	pm_disconnect(s);
	t0 = ct_now_ms();
	while (tasks_on(a) != base_tasks && ct_now_ms() - t0 < 3000)
		usleep(20000);
	assert_int_equal(tasks_on(a), base_tasks);

	/* The home dies: its containers fail clearly, at once or by the
	 * deadline. */
	s = test_connect(&node[1]);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	ct_kill(&node[0]);
	pm_disconnect(a); /* its pmd is gone */
	t0 = ct_now_ms();
	error_t err = pm_container_read(s, ref, 3, 1, got, 11);
	if (err != ENODEV && err != ETIMEDOUT)
		fail_msg("read from a dead home: %s", strerror(err));
	assert_true(ct_now_ms() - t0 <= 2500);
	ct_wait_state(&node[1], 1, PM_NODE_DOWN, 6000);
	assert_int_equal(pm_container_read(s, ref, 3, 1, got, 11), ENODEV);
	/* It comes back as a new incarnation: the old handle is stale. */
	pmd_proc_start(&node[0], (const char *const[]){ "--node-id", "1",
		"--cluster", ini, "--memory", "64M", "--guarantee", "1024", NULL });
	ct_wait_state(&node[1], 1, PM_NODE_UP, 6000);
	assert_int_equal(pm_container_read(s, ref, 3, 1, got, 11), ESTALE);
	pm_disconnect(s);
	pmd_proc_stop(&node[0]);
	pm_disconnect(other);
	pmd_proc_stop(&node[1]);
}

/* The task on node 2, the home on node 1, the frames on node 3: reads and
 * writes through the home reach the frames, as on one node. */
static void task_home_and_frames_on_three_nodes(void **state)
{
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	static uint8_t buf[65536], got[65536];
	struct pm_container_stat st;
	container_t c, weak, ref;
	pm_cap_token_t tok;
	pm_task_t sid;
	int n = 20;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_set_policy(a, c, PM_PLACE_NODE, 3), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	assert_int_equal(pm_container_stat(a, c, &st), 0);
	assert_int_equal(st.remote, 20);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	assert_int_equal(pm_container_write(s, ref, 2, 77, buf, sizeof(buf)), 0);
	assert_int_equal(pm_container_read(a, c, 2, 77, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	assert_int_equal(pm_container_read(s, ref, 2, 77, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	test_check(a);
	pm_disconnect(s);
	pm_disconnect(a);
	for (int i = 0; i < 3; i++)
		pmd_proc_stop(&node[i]);
}

static uint32_t rnd(uint64_t *rng, uint32_t k)
{
	*rng ^= *rng << 13;
	*rng ^= *rng >> 7;
	*rng ^= *rng << 17;
	return (uint32_t)(*rng % k);
}

/* Random reads, writes and maps by the owner (node 1) and a server on
 * node 2, of a container homed on node 1 with its frames on node 3 (maps
 * bring them home as they go), all checked against one model. */
static void random_traffic_across_three_nodes(void **state)
{
	enum { NF = 64, STEPS = 400 };
	pm_t *a = test_connect(&node[0]), *s = test_connect(&node[1]);
	static uint8_t model[NF * PM_FRAME_SIZE], buf[65536], got[65536];
	container_t c, weak, ref;
	pm_cap_token_t tok;
	pm_task_t sid;
	const char *seed = getenv("PMD_TEST_SEED");
	uint64_t rng = seed ? strtoull(seed, NULL, 0) : 0x9e3779b97f4a7c15ull;
	unsigned maps = 0;
	int n = NF;

	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_set_policy(a, c, PM_PLACE_NODE, 3), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &n, 0), 0);
	assert_int_equal(pm_self(s, &sid), 0);
	assert_int_equal(pm_container_share(a, c, sid, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(s, &tok, &ref), 0);
	for (int step = 0; step < STEPS; step++) {
		uint32_t len = 1 + rnd(&rng, rnd(&rng, 2) ? 4096 : 65536);
		uint64_t off = rnd(&rng, NF * PM_FRAME_SIZE - len + 1);
		bool server = rnd(&rng, 2);
		pm_t *pm = server ? s : a;
		container_t h = server ? ref : c;

		switch (rnd(&rng, 5)) {
		case 0: case 1:
			for (uint32_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rnd(&rng, 256);
			if (pm_container_write(pm, h, 0, off, buf, len))
				fail_msg("step %d: write of %u at %llu failed", step,
					 len, (unsigned long long)off);
			memcpy(model + off, buf, len);
			break;
		case 2: case 3:
			if (pm_container_read(pm, h, 0, off, got, len))
				fail_msg("step %d: read failed", step);
			if (memcmp(got, model + off, len))
				fail_msg("step %d: %s read of %u at %llu differs",
					 step, server ? "server" : "owner", len,
					 (unsigned long long)off);
			break;
		default: {
			/* The owner maps a few frames: they come home. */
			frame_t f = rnd(&rng, NF - 4);
			uint8_t *m;
			assert_int_equal(pm_container_map(a, c, f, 4, CONT_MAP_READ,
							  (void **)&m, NULL), 0);
			if (memcmp(m, model + f * PM_FRAME_SIZE, 4 * PM_FRAME_SIZE))
				fail_msg("step %d: mapped frames %llu.. differ", step,
					 (unsigned long long)f);
			pm_container_unmap(a, m, 4);
			maps++;
		}
		}
	}
	test_check(a);
	printf("%d steps, %u maps across three nodes (PMD_TEST_SEED to change "
	       "the seed)\n", STEPS, maps);
	pm_disconnect(s);
	pm_disconnect(a);
	for (int i = 0; i < 3; i++)
		pmd_proc_stop(&node[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_server_on_another_node, setup,
						teardown),
		cmocka_unit_test_setup_teardown(task_home_and_frames_on_three_nodes,
						setup3, teardown),
		cmocka_unit_test_setup_teardown(random_traffic_across_three_nodes,
						setup3, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
