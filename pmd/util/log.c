/* log.c - see log.h. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

enum pmd_log_level pmd_log_verbosity = PMD_LOG_INFO;

static const char *const level_names[] = {
	[PMD_LOG_ERR] = "error", [PMD_LOG_WARN] = "warning",
	[PMD_LOG_INFO] = "info", [PMD_LOG_DEBUG] = "debug",
};

void pmd_log(enum pmd_log_level level, const char *fmt, ...)
{
	int saved = errno; /* keep %m meaningful for the caller's format */
	va_list ap;

	if (level > pmd_log_verbosity)
		return;
	fprintf(stderr, "pmd: %s: ", level_names[level]);
	va_start(ap, fmt);
	errno = saved;
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	errno = saved;
}
