/*
 * The pmd's operating contract: options and configuration file, the ready
 * line, a clean stop on SIGTERM and SIGINT, refusal of bad input with a
 * clear message and a non-zero exit, one pmd per socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static void bad_options_exit_nonzero_with_a_message(void **state)
{
	static const struct {
		const char *args[4];
		const char *says;
	} cases[] = {
		{ { "--memory", "lots" }, "memory" },
		{ { "--memory", "0" }, "memory" },
		{ { "--guarantee", "-3" }, "guarantee" },
		{ { "--node-id", "0" }, "node-id" },
		{ { "--frobnicate" }, "unknown option" },
		{ { "--config", "/nonexistent/pmd.conf" }, "config" },
		{ { "--cluster", "/nonexistent/cluster.ini" }, "cluster.ini: No such file" },
		{ { "--backing-store", "/nonexistent/store" }, "No such file" },
		{ { "--backing-size", "1G" }, "only with --backing-store" },
		{ { "--reclaim-grace-ms", "soon" }, "reclaim-grace-ms" },
		{ { "--max-lock-ms", "0" }, "max-lock-ms" },
		{ { "--stop-ms", "0" }, "stop-ms" },
		{ { "--stop-ms", "60001" }, "stop-ms" },
		{ { "--poll-us", "-1" }, "poll-us" },
		{ { "--ring-spin-us", "lots" }, "ring-spin-us" },
		{ { "--admission", "sometimes" }, "admission" },
		{ { "--ready-fd", "1" }, "ready-fd" },
		{ { "extra-arg" }, "unexpected" },
	};
	char err[2048];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = pmd_run_to_exit(cases[i].args, err, sizeof(err));
		if (rc == 0 || !strstr(err, cases[i].says))
			fail_msg("case %zu: exit %d, stderr: %s", i, rc, err);
	}
}

/* The cluster file is checked whole before pmd starts: a node that is not
 * in it, or a secret file others can read or too short, is refused with
 * the reason. (Valid files: the cluster tests.) */
static void cluster_file_checked_then_refused(void **state)
{
	char dir[] = "/tmp/pmd-test-cluster-XXXXXX";
	char ini[256], key[256], err[2048];
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(ini, sizeof(ini), "%s/cluster.ini", dir);
	snprintf(key, sizeof(key), "%s/cluster.key", dir);
	fd = open(ini, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	dprintf(fd, "[cluster]\nsecret_file = cluster.key\n"
		"[node 1]\naddress = 192.0.2.11:7101\n"
		"[node 2]\naddress = 192.0.2.12:7102\n");
	close(fd);
	fd = open(key, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef", 32), 32);
	close(fd);

	assert_int_not_equal(pmd_run_to_exit((const char *[]){ "--node-id", "3",
		"--cluster", ini, NULL }, err, sizeof(err)), 0);
	if (!strstr(err, "no [node 3] section"))
		fail_msg("stderr: %s", err);

	assert_int_equal(chmod(key, 0644), 0);
	assert_int_not_equal(pmd_run_to_exit((const char *[]){ "--cluster", ini,
		NULL }, err, sizeof(err)), 0);
	if (!strstr(err, "readable by others"))
		fail_msg("stderr: %s", err);

	assert_int_equal(chmod(key, 0600), 0);
	assert_int_equal(truncate(key, 8), 0);
	assert_int_not_equal(pmd_run_to_exit((const char *[]){ "--cluster", ini,
		NULL }, err, sizeof(err)), 0);
	if (!strstr(err, "shorter than 16 bytes"))
		fail_msg("stderr: %s", err);

	unlink(key);
	unlink(ini);
	rmdir(dir);
}

static void help_and_version_exit_zero(void **state)
{
	char err[512];

	assert_int_equal(pmd_run_to_exit((const char *[]){ "--help", NULL },
					 err, sizeof(err)), 0);
	assert_int_equal(pmd_run_to_exit((const char *[]){ "--version", NULL },
					 err, sizeof(err)), 0);
}

static void config_file_sets_and_command_line_wins(void **state)
{
	char conf[] = "/tmp/pmd-test-conf-XXXXXX";
	int fd = mkstemp(conf);
	struct pmd_proc p;
	struct pm_task_stat ts;
	struct pm_node_info node;
	int n = 1;
	pm_t *pm;

	assert_true(fd >= 0);
	dprintf(fd, "; a comment\n[pmd]\nmemory = 32M\nguarantee = 100\n"
		"extra = 7\nnode_id = 9\n");
	close(fd);
	pmd_proc_start(&p, (const char *[]){ "--config", conf, "--extra", "11",
					     NULL });
	pm = test_connect(&p);
	assert_int_equal(pm_task_stat(pm, &ts), 0);
	assert_int_equal(ts.guaranteed, 100);
	assert_int_equal(ts.extra_limit, 11);
	assert_int_equal(ts.task >> 48, 9);
	assert_int_equal(pm_nodes(pm, &node, &n), 0);
	assert_int_equal(node.frames_total, (32u << 20) / PM_FRAME_SIZE);
	pm_disconnect(pm);
	pmd_proc_stop(&p);
	unlink(conf);
}

static void per_user_limits_from_the_config_file(void **state)
{
	char conf[] = "/tmp/pmd-test-conf-XXXXXX";
	int fd = mkstemp(conf);
	struct pmd_proc p;
	struct pm_task_stat ts;
	pm_t *pm;

	assert_true(fd >= 0);
	/* This test's own uid gets its own guarantee; another uid is listed
	 * too and must not matter. */
	dprintf(fd, "[pmd]\nguarantee = 50\nextra = 5\n"
		"[user %u]\nguarantee = 77\n[user %u]\nguarantee = 1\n",
		(unsigned)getuid(), (unsigned)getuid() + 4242);
	close(fd);
	pmd_proc_start(&p, (const char *[]){ "--config", conf, NULL });
	pm = test_connect(&p);
	assert_int_equal(pm_task_stat(pm, &ts), 0);
	assert_int_equal(ts.guaranteed, 77);
	assert_int_equal(ts.extra_limit, 5); /* unset: the node default */
	pm_disconnect(pm);
	pmd_proc_stop(&p);

	/* Unknown users and unknown keys in a [user] section are refused. */
	char err[1024];
	fd = open(conf, O_WRONLY | O_TRUNC);
	dprintf(fd, "[user no-such-user-here]\nguarantee = 1\n");
	close(fd);
	assert_int_not_equal(pmd_run_to_exit((const char *[]){ "--config", conf,
					     NULL }, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "no such user"));
	fd = open(conf, O_WRONLY | O_TRUNC);
	dprintf(fd, "[user 0]\nmemory = 1G\n");
	close(fd);
	assert_int_not_equal(pmd_run_to_exit((const char *[]){ "--config", conf,
					     NULL }, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "unknown setting"));
	unlink(conf);
}

static void admission_never_overcommits_guarantees(void **state)
{
	struct pmd_proc p;
	struct pm_task_stat ts;
	pm_t *a, *b, *c = NULL;

	/* 256 frames; each task asks for 200. */
	pmd_proc_start(&p, (const char *[]){ "--memory", "1M", "--guarantee",
			"200", "--extra", "0", "--admission", "refuse", NULL });
	a = test_connect(&p);
	assert_int_equal(pm_connect(p.socket, &c), ENOMEM);
	assert_null(c);
	pm_disconnect(a);
	/* Once the first task is gone, its guarantee is free again. */
	for (int i = 0; i < 200; i++) {
		if (!pm_connect(p.socket, &c))
			break;
		usleep(10000);
	}
	assert_non_null(c);
	pm_disconnect(c);
	pmd_proc_stop(&p);

	pmd_proc_start(&p, (const char *[]){ "--memory", "1M", "--guarantee",
			"200", "--admission", "remainder", NULL });
	a = test_connect(&p);
	b = test_connect(&p);
	assert_int_equal(pm_task_stat(b, &ts), 0);
	assert_int_equal(ts.guaranteed, 56); /* what was left */
	test_check(a);
	pm_disconnect(a);
	pm_disconnect(b);
	pmd_proc_stop(&p);
}

static void stops_cleanly_on_sigint_with_sessions_open(void **state)
{
	struct pmd_proc p;
	pm_t *pm;
	container_t c;
	int count = 100, status;
	char path[400];

	pmd_proc_start(&p, NULL);
	pm = test_connect(&p);
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), 0);
	assert_int_equal(kill(p.pid, SIGINT), 0);
	assert_int_equal(waitpid(p.pid, &status, 0), p.pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The session sees the pmd gone, as an error and not a crash. */
	assert_int_equal(pm_container_allocate(pm, c, 200, &count, 0), ECONNRESET);
	assert_int_equal(pm_container_destroy(pm, c), ECONNRESET);
	pm_disconnect(pm);
	assert_int_not_equal(access(p.socket, F_OK), 0); /* socket removed */
	snprintf(path, sizeof(path), "%s", p.log);
	unlink(path);
	rmdir(p.dir);
}

static void one_pmd_per_socket_and_stale_sockets_reused(void **state)
{
	struct pmd_proc p;
	char err[2048];
	int rc;

	pmd_proc_start(&p, NULL);
	rc = pmd_run_to_exit((const char *[]){ "--socket", p.socket, NULL },
			     err, sizeof(err));
	assert_int_not_equal(rc, 0);
	assert_non_null(strstr(err, "another pmd"));
	pmd_proc_stop(&p);

	/* A socket file left by a pmd that died is taken over. */
	char dir[] = "/tmp/pmd-test-stale-XXXXXX", sock[300];
	assert_non_null(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/pmd.sock", dir);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	strcpy(sa.sun_path, sock);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd); /* bound, never listened: stale */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(PMD_BIN, PMD_BIN, "--socket", sock, "--log-level", "error",
		      (char *)NULL);
		_exit(127);
	}
	pm_t *pm = NULL;
	for (int i = 0; i < 500 && pm_connect(sock, &pm); i++)
		usleep(10000);
	assert_non_null(pm);
	pm_disconnect(pm);
	kill(pid, SIGTERM);
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	rmdir(dir);
}

static void connect_errors(void **state)
{
	pm_t *pm = NULL;

	assert_int_equal(pm_connect("/nonexistent/dir/pmd.sock", &pm), ENOENT);
	assert_null(pm);
	assert_int_equal(pm_connect(NULL, NULL), EINVAL);
	char longpath[300];
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	assert_int_equal(pm_connect(longpath, &pm), ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bad_options_exit_nonzero_with_a_message),
		cmocka_unit_test(cluster_file_checked_then_refused),
		cmocka_unit_test(help_and_version_exit_zero),
		cmocka_unit_test(config_file_sets_and_command_line_wins),
		cmocka_unit_test(per_user_limits_from_the_config_file),
		cmocka_unit_test(admission_never_overcommits_guarantees),
		cmocka_unit_test(stops_cleanly_on_sigint_with_sessions_open),
		cmocka_unit_test(one_pmd_per_socket_and_stale_sockets_reused),
		cmocka_unit_test(connect_errors),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
