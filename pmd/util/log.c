/* log.c - see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"

enum pmd_log_level pmd_log_verbosity = PMD_LOG_INFO;
unsigned pmd_log_node = 1;

static const char *const level_names[] = {
	[PMD_LOG_ERR] = "error", [PMD_LOG_WARN] = "warning",
	[PMD_LOG_INFO] = "info", [PMD_LOG_DEBUG] = "debug",
};
/* syslog priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
static const int priorities[] = { 3, 4, 6, 7 };

/* Whether stderr is the journal (systemd's JOURNAL_STREAM, dev:ino). */
static bool to_journal(void)
{
	static int known = -1;
	const char *js;
	struct stat st;
	unsigned long dev, ino;

	if (known >= 0)
		return known;
	js = getenv("JOURNAL_STREAM");
	known = js && sscanf(js, "%lu:%lu", &dev, &ino) == 2 &&
		fstat(2, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
	return known;
}

static void log_line(enum pmd_log_level level, const char *fmt, va_list ap)
{
	if (to_journal()) {
		fprintf(stderr, "<%d>pmd[%u] %s: ", priorities[level],
			pmd_log_node, level_names[level]);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ pmd[%u] "
			"%s: ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			pmd_log_node, level_names[level]);
	}
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void pmd_log(enum pmd_log_level level, const char *fmt, ...)
{
	int saved = errno; /* keep %m meaningful for the caller's format */
	va_list ap;

	if (level > pmd_log_verbosity)
		return;
	va_start(ap, fmt);
	errno = saved;
	log_line(level, fmt, ap);
	va_end(ap);
	errno = saved;
}

void pmd_log_limited(struct pmd_ratelimit *rl, enum pmd_log_level level,
		     const char *fmt, ...)
{
	int saved = errno;
	uint64_t now = pmd_now_ms();
	va_list ap;

	if (level > pmd_log_verbosity)
		return;
	if (now - rl->start_ms >= PMD_LOG_WINDOW_MS) {
		if (rl->left_out)
			pmd_log(level, "(%lu lines like the next were left "
				"out in %u s)", (unsigned long)rl->left_out,
				PMD_LOG_WINDOW_MS / 1000);
		*rl = (struct pmd_ratelimit){ .start_ms = now };
	}
	if (rl->lines >= PMD_LOG_BURST) {
		rl->left_out++;
		errno = saved;
		return;
	}
	rl->lines++;
	va_start(ap, fmt);
	errno = saved;
	log_line(level, fmt, ap);
	va_end(ap);
	errno = saved;
}
