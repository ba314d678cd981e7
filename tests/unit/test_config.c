/* Unit tests of option and configuration-file parsing (pmd/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "parse.h"

static void sizes(void **state)
{
	uint64_t v;

	assert_int_equal(pmd_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(pmd_parse_size("256M", &v), 0);
	assert_int_equal(v, UINT64_C(256) << 20);
	assert_int_equal(pmd_parse_size("8G", &v), 0);
	assert_int_equal(v, UINT64_C(8) << 30);
	assert_int_equal(pmd_parse_size("2GiB", &v), 0);
	assert_int_equal(v, UINT64_C(2) << 30);
	assert_int_equal(pmd_parse_size("", &v), EINVAL);
	assert_int_equal(pmd_parse_size("-1G", &v), EINVAL);
	assert_int_equal(pmd_parse_size("12Q", &v), EINVAL);
	assert_int_equal(pmd_parse_size("1G junk", &v), EINVAL);
	assert_int_equal(pmd_parse_size("99999999999999999999", &v), ERANGE);
	assert_int_equal(pmd_parse_size("99999999999T", &v), ERANGE);
}

static error_t load(struct pmd_config *cfg, const char *const *args)
{
	char *argv[16];
	int argc = 0;
	bool served;
	error_t err;

	argv[argc++] = (char *)"pmd";
	for (; *args; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	err = pmd_config_load(cfg, argc, argv, &served);
	if (!err)
		assert_false(served);
	return err;
}

static void defaults_and_options(void **state)
{
	struct pmd_config cfg;

	assert_int_equal(load(&cfg, (const char *[]){ NULL }), 0);
	assert_int_equal(cfg.memory, UINT64_C(1) << 30);
	assert_int_equal(cfg.node_id, 1);
	assert_int_equal(load(&cfg, (const char *[]){ "--memory", "64M",
			"--guarantee", "10", "--extra", "5", "--socket",
			"/tmp/x.sock", "--admission", "refuse", NULL }), 0);
	assert_int_equal(cfg.memory, UINT64_C(64) << 20);
	assert_int_equal(cfg.guarantee, 10);
	assert_int_equal(cfg.extra, 5);
	assert_int_equal(cfg.admit, PMD_ADMIT_REFUSE);
	assert_string_equal(cfg.socket, "/tmp/x.sock");
	assert_int_equal(cfg.poll_us, 50); /* polls briefly, then sleeps */
	assert_int_equal(load(&cfg, (const char *[]){ "--poll-us", "500", NULL }), 0);
	assert_int_equal(cfg.poll_us, 500);
	assert_int_equal(load(&cfg, (const char *[]){ NULL }), 0);
	assert_int_equal(cfg.ring_spin_us, 50); /* polls the rings a while */
	assert_int_equal(load(&cfg, (const char *[]){ "--ring-spin-us", "0",
						     NULL }), 0);
	assert_int_equal(cfg.ring_spin_us, 0);
}

static void bad_options_are_refused(void **state)
{
	struct pmd_config cfg;

	assert_int_not_equal(load(&cfg, (const char *[]){ "--memory", "lots", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--memory", "0", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--bogus", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--node-id", "0", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--node-id", "70000", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--max-lock-ms", "-5", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--stop-ms", "soon", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--poll-us", "2000000", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--poll-us", "soon", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--ring-spin-us", "10001", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--ring-spin-us", "-1", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--config", "/nonexistent/pmd.conf", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "stray", NULL }), 0);
	assert_int_not_equal(load(&cfg, (const char *[]){ "--memory", NULL }), 0);
}

static void write_file(char *path, const char *text)
{
	int fd = mkstemp(path);
	FILE *f;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void config_file_and_precedence(void **state)
{
	char path[] = "/tmp/pmd-test-conf-XXXXXX";
	struct pmd_config cfg;

	write_file(path, "[pmd]\nmemory = 32M\nguarantee = 7\nlog_level = debug\n");
	assert_int_equal(load(&cfg, (const char *[]){ "--config", path, NULL }), 0);
	assert_int_equal(cfg.memory, UINT64_C(32) << 20);
	assert_int_equal(cfg.guarantee, 7);
	assert_int_equal(cfg.log_level, PMD_LOG_DEBUG);
	/* The command line wins, wherever it stands. */
	assert_int_equal(load(&cfg, (const char *[]){ "--memory", "16M",
			"--config", path, NULL }), 0);
	assert_int_equal(cfg.memory, UINT64_C(16) << 20);
	assert_int_equal(cfg.guarantee, 7);
	unlink(path);
}

static void transport_option_wins_over_the_cluster_file(void **state)
{
	char key[] = "/tmp/pmd-test-key-XXXXXX";
	char ini[] = "/tmp/pmd-test-ini-XXXXXX";
	char text[256];
	struct pmd_config cfg;

	write_file(key, "0123456789abcdef0123456789abcdef");
	snprintf(text, sizeof(text), "[cluster]\nsecret_file = %s\n"
		 "transport = verbs\n[node 1]\naddress = 10.0.0.1:7100\n", key);
	write_file(ini, text);
	assert_int_equal(load(&cfg, (const char *[]){ "--cluster", ini, NULL }), 0);
	assert_string_equal(cfg.cluster_conf->transport, "verbs");
	pmd_config_fini(&cfg);
	assert_int_equal(load(&cfg, (const char *[]){ "--cluster", ini,
			"--transport", "ofi:tcp;ofi_rxm", NULL }), 0);
	assert_string_equal(cfg.cluster_conf->transport, "ofi:tcp;ofi_rxm");
	pmd_config_fini(&cfg);
	assert_int_equal(load(&cfg, (const char *[]){ "--cluster", ini,
			"--transport", "rdma", NULL }), EINVAL);
	/* A single node has no transport to choose. */
	assert_int_equal(load(&cfg, (const char *[]){ "--transport", "tcp",
			NULL }), EINVAL);
	unlink(ini);
	unlink(key);
}

static void bad_config_files_are_refused(void **state)
{
	static const char *const bad[] = {
		"[pmd]\nmemory = huge\n",
		"[pmd]\nno_such_key = 1\n",
		"[other]\nmemory = 1G\n",
		"[pmd\nmemory = 1G\n",
		"[pmd]\nadmission = maybe\n",
	};
	struct pmd_config cfg;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char path[] = "/tmp/pmd-test-conf-XXXXXX";
		write_file(path, bad[i]);
		assert_int_not_equal(load(&cfg, (const char *[]){ "--config",
				path, NULL }), 0);
		unlink(path);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes),
		cmocka_unit_test(defaults_and_options),
		cmocka_unit_test(bad_options_are_refused),
		cmocka_unit_test(config_file_and_precedence),
		cmocka_unit_test(transport_option_wins_over_the_cluster_file),
		cmocka_unit_test(bad_config_files_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
