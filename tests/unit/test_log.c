/*
 * The log's lines: time, node and level; the journal's form under
 * systemd; and the rate limit a task or a peer cannot push past.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

/* Runs fn in a child whose stderr is a file; returns what it wrote. */
static char *logged(void (*fn)(void), bool journal)
{
	static char out[16384];
	FILE *f = tmpfile();
	pid_t pid;
	size_t n;

	assert_non_null(f);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stat st;
		char js[64];

		dup2(fileno(f), 2);
		if (journal && fstat(2, &st) == 0) {
			snprintf(js, sizeof(js), "%lu:%lu",
				 (unsigned long)st.st_dev,
				 (unsigned long)st.st_ino);
			setenv("JOURNAL_STREAM", js, 1);
		} else {
			unsetenv("JOURNAL_STREAM");
		}
		pmd_log_node = 7;
		fn();
		fflush(stderr);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	rewind(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = 0;
	fclose(f);
	return out;
}

static void one_warning(void)
{
	pmd_warn("node %u is down", 2u);
}

static void a_line_has_time_node_and_level(void **state)
{
	regex_t re;
	char *s = logged(one_warning, false);

	assert_int_equal(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:"
				 "[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z pmd\\[7\\] "
				 "warning: node 2 is down\n$",
				 REG_EXTENDED | REG_NOSUB), 0);
	if (regexec(&re, s, 0, NULL, 0))
		fail_msg("not a log line: '%s'", s);
	regfree(&re);
	/* To the journal: its priority, no time of ours. */
	assert_string_equal(logged(one_warning, true),
			    "<4>pmd[7] warning: node 2 is down\n");
}

static void many(void)
{
	struct pmd_ratelimit rl = { 0 };

	for (int i = 0; i < 100; i++)
		pmd_log_limited(&rl, PMD_LOG_WARN, "flood %d", i);
	/* A window later, the count of what was left out, then the line. */
	rl.start_ms -= PMD_LOG_WINDOW_MS;
	pmd_log_limited(&rl, PMD_LOG_WARN, "flood again");
}

static void a_flood_is_cut_short(void **state)
{
	char *s = logged(many, true);
	unsigned lines = 0;

	for (char *p = s; (p = strchr(p, '\n')); p++)
		lines++;
	assert_int_equal(lines, PMD_LOG_BURST + 2);
	assert_non_null(strstr(s, "flood 9\n"));
	assert_null(strstr(s, "flood 10\n"));
	assert_non_null(strstr(s, "(90 lines like the next were left out"));
	assert_non_null(strstr(s, "flood again\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_line_has_time_node_and_level),
		cmocka_unit_test(a_flood_is_cut_short),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
