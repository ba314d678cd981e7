/*
 * log.h - the pmd's log: one line per event on stderr, lowercase, prefixed
 * with the program name and the level. Errors are logged where they are
 * first decided.
 */
#ifndef PMD_LOG_H
#define PMD_LOG_H

enum pmd_log_level { PMD_LOG_ERR, PMD_LOG_WARN, PMD_LOG_INFO, PMD_LOG_DEBUG };

extern enum pmd_log_level pmd_log_verbosity; /* (C) set once at start-up */

void pmd_log(enum pmd_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define pmd_err(...)   pmd_log(PMD_LOG_ERR, __VA_ARGS__)
#define pmd_warn(...)  pmd_log(PMD_LOG_WARN, __VA_ARGS__)
#define pmd_info(...)  pmd_log(PMD_LOG_INFO, __VA_ARGS__)
#define pmd_debug(...) pmd_log(PMD_LOG_DEBUG, __VA_ARGS__)

#endif
