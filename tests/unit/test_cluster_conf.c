/* Unit tests of the cluster file parser (pmd/cluster_conf.c); no I/O. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cluster_conf.h"

static struct pmd_cluster_conf conf;
static char err[1024];

static error_t parse(const char *text, pm_node_t self)
{
	memset(&conf, 0x5a, sizeof(conf));
	err[0] = 0;
	return pmd_cluster_parse(text, "/etc/pmd/cluster.ini", self, &conf,
				 err, sizeof(err));
}

/* A bad file fails with EINVAL and a message that contains `what`. */
static void expect_bad(const char *text, pm_node_t self, const char *what)
{
	assert_int_equal(parse(text, self), EINVAL);
	if (!strstr(err, what))
		fail_msg("error '%s' lacks '%s'", err, what);
}

static void the_example_of_the_api(void **state)
{
	assert_int_equal(parse("[cluster]\n"
			       "secret_file = /etc/pmd/cluster.key   ; shared\n"
			       "[node 1]\n"
			       "address = 192.0.2.11:7100\n"
			       "[node 2]\n"
			       "address = 192.0.2.12:7100\n", 2), 0);
	assert_int_equal(conf.nnodes, 2);
	assert_string_equal(conf.secret_file, "/etc/pmd/cluster.key");
	assert_int_equal(conf.nodes[0].id, 1);
	assert_string_equal(conf.nodes[1].host, "192.0.2.12");
	assert_string_equal(conf.nodes[1].port, "7100");
	assert_string_equal(pmd_cluster_node(&conf, 2)->host, "192.0.2.12");
	assert_null(pmd_cluster_node(&conf, 3));
	assert_int_equal(conf.secret_len, 0);
	assert_true(conf.heartbeat_ms < conf.suspect_ms &&
		    conf.suspect_ms < conf.down_ms);
	assert_string_equal(conf.transport, "");
}

static void relative_secret_and_options(void **state)
{
	assert_int_equal(parse("[node 7]\naddress = [fe80::1]:9\n"
			       "[cluster]\nsecret_file = keys/c.key\n"
			       "provider = verbs;ofi_rxm\n"
			       "heartbeat_ms = 50\nsuspect_ms = 300\n"
			       "down_ms = 900\n"
			       "[node 3]\naddress = node3.example:7100\n", 7), 0);
	assert_string_equal(conf.secret_file, "/etc/pmd/keys/c.key");
	assert_string_equal(conf.transport, "ofi:verbs;ofi_rxm");
	assert_int_equal(conf.down_ms, 900);
	/* Sorted by id. */
	assert_int_equal(conf.nodes[0].id, 3);
	assert_string_equal(conf.nodes[1].host, "fe80::1");
	assert_string_equal(conf.nodes[1].port, "9");
}

static void transports(void **state)
{
	static const char *const good[][2] = {
		{ "transport = tcp", "tcp" },
		{ "transport = verbs", "verbs" },
		{ "transport = ofi:verbs;ofi_rxm", "ofi:verbs;ofi_rxm" },
		{ "provider = tcp;ofi_rxm", "ofi:tcp;ofi_rxm" },
		{ "provider = verbs", "ofi:verbs" },
	};
	static const char *const bad[] = {
		"transport = rdma", "transport = ofi:", "transport = tcp;ofi_rxm",
		"transport = ofi:TCP", "transport = verbs x", "provider = a b",
		"transport = ofi:../x",
	};
	char buf[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(buf, sizeof(buf), "[cluster]\nsecret_file = k\n%s\n"
			 "[node 1]\naddress = a:1\n", good[i][0]);
		assert_int_equal(parse(buf, 1), 0);
		assert_string_equal(conf.transport, good[i][1]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(buf, sizeof(buf), "[cluster]\nsecret_file = k\n%s\n"
			 "[node 1]\naddress = a:1\n", bad[i]);
		expect_bad(buf, 1, "bad value");
	}
}

static void bad_files(void **state)
{
	const char *node1 = "[node 1]\naddress = 10.0.0.1:7100\n";
	const char *key = "[cluster]\nsecret_file = k\n";
	char buf[512];

	expect_bad(node1, 1, "needs secret_file");
	expect_bad(key, 1, "no [node N]");
	snprintf(buf, sizeof(buf), "%s%s", key, node1);
	expect_bad(buf, 2, "--node-id 2");
	expect_bad("[cluster]\nsecret_file = k\nsecret = x\n", 1, "unknown key");
	expect_bad("[clusters]\nsecret_file = k\n", 1, "unknown section");
	expect_bad("[cluster]\nsecret_file = k\n[node 0]\naddress = a:1\n", 1,
		   "1 to 65534");
	expect_bad("[cluster]\nsecret_file = k\n[node 65535]\naddress = a:1\n",
		   1, "1 to 65534");
	expect_bad("[cluster]\nsecret_file = k\n[node x]\naddress = a:1\n", 1,
		   "1 to 65534");
	expect_bad("[cluster]\nsecret_file = k\n[node 1]\nport = 1\n", 1,
		   "unknown key");
	expect_bad("[cluster]\nsecret_file = k\n[node 1]\naddress = a:1\n"
		   "[node 1]\naddress = b:1\n", 1, "defined twice");
	expect_bad("[cluster]\nsecret_file = k\n[node 1]\naddress = a:1\n"
		   "[node 2]\naddress = a:1\n", 1, "same address");
	expect_bad("[cluster]\nsecret_file = k\nheartbeat_ms = 500\n"
		   "suspect_ms = 400\n[node 1]\naddress = a:1\n", 1,
		   "timings must grow");
	expect_bad("[cluster]\nsecret_file = k\ndown_ms = 0\n", 1, "bad value");
	expect_bad("[cluster]\nsecret_file = k\ndown_ms = 9999999\n", 1,
		   "bad value");
	expect_bad("garbage\n", 1, "cluster.ini:1");
	static const char *const addrs[] = {
		"a", "a:", ":7100", "a:0", "a:65536", "a:7x", "fe80::1:7100",
		"[fe80::1]7100", "[]:1", "a b:1", "a:-1",
	};
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		snprintf(buf, sizeof(buf), "%s[node 1]\naddress = %s\n", key,
			 addrs[i]);
		expect_bad(buf, 1, "is not host:port");
	}
}

static void error_names_the_line(void **state)
{
	expect_bad("[cluster]\nsecret_file = k\n\n[node 1]\nadress = a:1\n", 1,
		   "/etc/pmd/cluster.ini:5: unknown key 'adress'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_example_of_the_api),
		cmocka_unit_test(relative_secret_and_options),
		cmocka_unit_test(transports),
		cmocka_unit_test(bad_files),
		cmocka_unit_test(error_names_the_line),
	};
	return cmocka_run_group_tests_name("cluster_conf", tests, NULL, NULL);
}
