/* Unit tests of the node protocol's logic (pmd/membership.c), two or three
 * nodes in one process exchanging messages by hand; no I/O. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "membership.h"

static struct pmd_cluster_conf conf;
static struct pmd_mb nodes[3];
static uint64_t now;
static bool older[3];   /* a node of the release before VER: sends none */

static void setup_conf(void)
{
	memset(&conf, 0, sizeof(conf));
	conf.heartbeat_ms = 100;
	conf.suspect_ms = 500;
	conf.down_ms = 1500;
	conf.nnodes = 3;
	for (unsigned i = 0; i < 3; i++) {
		conf.nodes[i].id = (pm_node_t)(i + 1);
		snprintf(conf.nodes[i].host, sizeof(conf.nodes[i].host), "10.0.0.%u", i + 1);
	}
	memcpy(conf.secret, "0123456789abcdef0123456789abcdef", 32);
	conf.secret_len = 32;
}

static void start(unsigned i, uint64_t inc, const char *secret)
{
	struct pmd_cluster_conf c = conf;

	if (secret)
		memcpy(c.secret, secret, 32);
	pmd_mb_init(&nodes[i], &c, (pm_node_t)(i + 1), inc);
}

/* Delivers every pending message; dead nodes (alive[i] false) neither
 * send nor receive. Returns the messages delivered. */
static unsigned deliver(const bool alive[3])
{
	unsigned n = 0;
	bool more = true;

	while (more) {
		more = false;
		for (unsigned i = 0; i < 3; i++) {
			struct pmd_mb *mb = &nodes[i];
			unsigned k = mb->nout;
			struct pmd_mb_out out[sizeof(mb->out) / sizeof(mb->out[0])];

			memcpy(out, mb->out, sizeof(out[0]) * k);
			mb->nout = 0;
			for (unsigned j = 0; j < k && alive[i]; j++) {
				unsigned to = out[j].to - 1u;
				if (!alive[to] || (older[i] &&
				    out[j].msg.type == PMD_MB_VER))
					continue;
				pmd_mb_receive(&nodes[to], now, (pm_node_t)(i + 1),
					       &out[j].msg, sizeof(out[j].msg));
				n++;
				more = true;
			}
		}
	}
	return n;
}

static void run(unsigned ms, const bool alive[3])
{
	for (unsigned t = 0; t < ms; t += 10) {
		now += 10;
		for (unsigned i = 0; i < 3; i++)
			if (alive[i])
				pmd_mb_tick(&nodes[i], now);
		deliver(alive);
	}
}

static int state(unsigned at, pm_node_t of)
{
	return pmd_mb_peer(&nodes[at], of)->state;
}

static int setup(void **s)
{
	setup_conf();
	now = 1000;
	memset(older, 0, sizeof(older));
	for (unsigned i = 0; i < 3; i++)
		start(i, 100 + i, NULL);
	return 0;
}

static void nodes_come_up_and_stay_up(void **s)
{
	const bool all[3] = { true, true, true };

	for (unsigned i = 0; i < 3; i++)
		for (pm_node_t j = 1; j <= 3; j++)
			if (j != i + 1)
				assert_int_equal(state(i, j), PM_NODE_DOWN);
	run(300, all);
	for (unsigned i = 0; i < 3; i++)
		for (pm_node_t j = 1; j <= 3; j++)
			if (j != i + 1)
				assert_int_equal(state(i, j), PM_NODE_UP);
	nodes[1].frames_free = 77;
	run(5000, all);
	assert_int_equal(state(0, 2), PM_NODE_UP);
	assert_int_equal(pmd_mb_peer(&nodes[0], 2)->frames_free, 77);
	assert_int_equal(pmd_mb_peer(&nodes[0], 2)->inc, 101);
}

/* Heartbeats carry the budget left (placement and lending go by it);
 * VER messages the frames no physical page takes (what pm_nodes says);
 * a node that sends no VER, or one of zeros, is known by its budget. */
static void physical_free_frames_go_with_ver(void **s)
{
	const bool all[3] = { true, true, true };
	struct pmd_mb_peer *p;

	run(300, all);
	nodes[1].frames_total = 1000;
	nodes[1].frames_free = 77;
	nodes[1].phys_free = 900;
	nodes[2].frames_total = 1000;
	nodes[2].frames_free = 55;
	nodes[2].phys_free = 0; /* every page taken */
	run(300, all);
	p = pmd_mb_peer(&nodes[0], 2);
	assert_int_equal(p->frames_free, 77);
	assert_true(p->phys_known);
	assert_int_equal(p->phys_free, 900);
	p = pmd_mb_peer(&nodes[0], 3);
	assert_int_equal(p->frames_free, 55);
	assert_true(p->phys_known);
	assert_int_equal(p->phys_free, 0);
	/* More than its total is not believed. */
	nodes[1].phys_free = 5000;
	run(300, all);
	assert_int_equal(pmd_mb_peer(&nodes[0], 2)->phys_free, 1000);

	/* Node 2 restarts as a release that sends no VER: what it said
	 * before goes with its old incarnation. */
	older[1] = true;
	start(1, 700, NULL);
	nodes[1].frames_total = 1000;
	nodes[1].frames_free = 66;
	run(300, all);
	p = pmd_mb_peer(&nodes[0], 2);
	assert_int_equal(state(0, 2), PM_NODE_UP);
	assert_int_equal(p->inc, 700);
	assert_int_equal(p->frames_free, 66);
	assert_false(p->phys_known);
}

static void a_silent_node_is_suspect_then_down_then_rejoins(void **s)
{
	const bool all[3] = { true, true, true }, no3[3] = { true, true, false };

	run(300, all);
	run(600, no3);
	assert_int_equal(state(0, 3), PM_NODE_SUSPECT);
	assert_int_equal(state(1, 3), PM_NODE_SUSPECT);
	assert_int_equal(state(0, 2), PM_NODE_UP);
	run(1000, no3);
	assert_int_equal(state(0, 3), PM_NODE_DOWN);
	/* It comes back under a new incarnation. */
	start(2, 900, NULL);
	run(300, all);
	assert_int_equal(state(0, 3), PM_NODE_UP);
	assert_int_equal(pmd_mb_peer(&nodes[0], 3)->inc, 900);
	assert_int_equal(state(2, 1), PM_NODE_UP);
}

static void a_restart_is_seen_before_the_old_self_times_out(void **s)
{
	const bool all[3] = { true, true, true };

	run(300, all);
	start(2, 901, NULL); /* restarted at once: its peers think it is up */
	run(300, all);
	assert_int_equal(state(0, 3), PM_NODE_UP);
	assert_int_equal(pmd_mb_peer(&nodes[0], 3)->inc, 901);
	assert_int_equal(state(2, 1), PM_NODE_UP);
}

static void a_node_without_the_secret_is_refused(void **s)
{
	const bool all[3] = { true, true, true };

	start(2, 102, "this is not the cluster secret!!");
	run(2000, all);
	assert_int_equal(state(0, 3), PM_NODE_DOWN);
	assert_int_equal(state(1, 3), PM_NODE_DOWN);
	assert_int_equal(state(2, 1), PM_NODE_DOWN);
	assert_true(pmd_mb_peer(&nodes[0], 3)->refused > 0);
	assert_true(pmd_mb_peer(&nodes[2], 1)->refused > 0);
	assert_int_equal(state(0, 2), PM_NODE_UP);
}

static uint16_t version(unsigned at, pm_node_t of)
{
	return pmd_mb_nreq_version(pmd_mb_peer(&nodes[at], of));
}

/* A VER from node `from` to node 1 with versions lo..hi, signed (or not). */
static void ver_to_1(unsigned from, uint16_t lo, uint16_t hi, uint64_t seq,
		     bool sign)
{
	struct pmd_mb_msg m = { .magic = PMD_MB_MAGIC, .version = PMD_MB_VERSION,
				.type = PMD_MB_VER, .from = (pm_node_t)from,
				.to = 1, .from_inc = nodes[from - 1].inc,
				.to_inc = nodes[0].inc, .seq = seq };
	crypto_auth_hmacsha256_state st;

	m.nonce[0] = (uint8_t)lo;
	m.nonce[1] = (uint8_t)(lo >> 8);
	m.nonce[2] = (uint8_t)hi;
	m.nonce[3] = (uint8_t)(hi >> 8);
	crypto_auth_hmacsha256_init(&st, conf.secret, conf.secret_len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)&m, sizeof(m));
	crypto_auth_hmacsha256_final(&st, m.mac);
	if (!sign)
		m.mac[0] ^= 1;
	pmd_mb_receive(&nodes[0], now, (pm_node_t)from, &m, sizeof(m));
}

/* Each pair speaks the highest node-request version both do: a node that
 * sends no VER (the previous release) is spoken to in the lowest; a
 * restart starts over; VERs that are forged, replayed or make no sense
 * change nothing; a peer with no version in common cannot be spoken to. */
static void node_request_versions_are_agreed(void **s)
{
	static const bool all[3] = { true, true, true };

	(void)s;
	older[2] = true;
	run(1000, all);
	assert_int_equal(version(0, 2), PMD_NREQ_VERSION);
	assert_int_equal(version(1, 1), PMD_NREQ_VERSION);
	assert_int_equal(version(0, 3), PMD_NREQ_VERSION_MIN);
	assert_int_equal(version(1, 3), PMD_NREQ_VERSION_MIN);
	assert_true(pmd_nreq_version_ok(PMD_NREQ_VERSION_MIN));
	assert_true(pmd_nreq_version_ok(PMD_NREQ_VERSION));
	assert_false(pmd_nreq_version_ok(PMD_NREQ_VERSION + 1));
	assert_false(pmd_nreq_version_ok(PMD_NREQ_VERSION_MIN - 1));

	/* Node 3 is upgraded (restarts as this release). */
	older[2] = false;
	start(2, 300, NULL);
	run(1000, all);
	assert_int_equal(version(0, 3), PMD_NREQ_VERSION);
	/* Node 2 goes back to the older release: a restart, then no VER. */
	older[1] = true;
	start(1, 400, NULL);
	run(1000, all);
	assert_int_equal(version(0, 2), PMD_NREQ_VERSION_MIN);

	/* Forged, replayed, nonsense: ignored. */
	ver_to_1(3, 6, 7, 1u << 30, false);
	assert_int_equal(version(0, 3), PMD_NREQ_VERSION);
	ver_to_1(3, 7, 6, 1u << 30, true);
	assert_int_equal(version(0, 3), PMD_NREQ_VERSION);
	ver_to_1(3, 0, 6, 1u << 30, true);
	assert_int_equal(version(0, 3), PMD_NREQ_VERSION);
	ver_to_1(3, PMD_NREQ_VERSION_MIN, PMD_NREQ_VERSION_MIN, 1, true);
	assert_int_equal(version(0, 3), PMD_NREQ_VERSION);
	/* A later release that speaks only newer versions: none in common. */
	ver_to_1(3, PMD_NREQ_VERSION + 1, PMD_NREQ_VERSION + 2, 1u << 30, true);
	assert_int_equal(version(0, 3), 0);
	/* One that still speaks ours too: ours. */
	ver_to_1(3, PMD_NREQ_VERSION, PMD_NREQ_VERSION + 2, (1u << 30) + 1,
		 true);
	assert_int_equal(version(0, 3), PMD_NREQ_VERSION);
}

static void forged_and_replayed_messages_change_nothing(void **s)
{
	const bool all[3] = { true, true, true }, none[3] = { false, false, false };
	struct pmd_mb_msg hb;
	bool got = false;

	run(300, all);
	/* Catch one heartbeat from 2 to 1. */
	now += 200;
	pmd_mb_tick(&nodes[1], now);
	for (unsigned j = 0; j < nodes[1].nout; j++)
		if (nodes[1].out[j].to == 1 && nodes[1].out[j].msg.type == PMD_MB_HB) {
			hb = nodes[1].out[j].msg;
			got = true;
		}
	assert_true(got);
	nodes[1].nout = 0;
	pmd_mb_receive(&nodes[0], now, 2, &hb, sizeof(hb));
	/* Node 2 falls silent: replaying its heartbeat, or forging one, or
	 * sending one from the wrong address keeps nothing alive. */
	for (int i = 0; i < 300; i++) {
		now += 10;
		pmd_mb_tick(&nodes[0], now);
		nodes[0].nout = 0;
		pmd_mb_receive(&nodes[0], now, 2, &hb, sizeof(hb));
		struct pmd_mb_msg f = hb;
		f.seq = hb.seq + 1 + (uint64_t)i;
		pmd_mb_receive(&nodes[0], now, 2, &f, sizeof(f));
		f = hb;
		pmd_mb_receive(&nodes[0], now, 3, &f, sizeof(f));
		pmd_mb_receive(&nodes[0], now, 2, &f, sizeof(f) - 1);
	}
	assert_int_equal(state(0, 2), PM_NODE_DOWN);
	(void)none;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(nodes_come_up_and_stay_up, setup),
		cmocka_unit_test_setup(physical_free_frames_go_with_ver, setup),
		cmocka_unit_test_setup(a_silent_node_is_suspect_then_down_then_rejoins, setup),
		cmocka_unit_test_setup(a_restart_is_seen_before_the_old_self_times_out, setup),
		cmocka_unit_test_setup(a_node_without_the_secret_is_refused, setup),
		cmocka_unit_test_setup(forged_and_replayed_messages_change_nothing, setup),
		cmocka_unit_test_setup(node_request_versions_are_agreed, setup),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests_name("membership", tests, NULL, NULL);
}
