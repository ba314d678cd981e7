/*
 * log.h - the pmd's log: one line per event on stderr, lowercase: the
 * time (UTC, milliseconds), the program and this node's id, the level,
 * the message:
 *
 *     2026-12-02T00:09:01.123Z pmd[1] warning: node 2 is down (...)
 *
 * Under systemd (stderr is the journal: JOURNAL_STREAM names it) a line is
 * "<P>pmd[1] level: message", P the syslog priority, for the journal to
 * keep the level and add the time. Errors are logged where they are first
 * decided. What a task or a peer can make happen again and again is
 * logged through a rate limit: a burst, then one line saying how many
 * were left out.
 */
#ifndef PMD_LOG_H
#define PMD_LOG_H

#include <stdint.h>

enum pmd_log_level { PMD_LOG_ERR, PMD_LOG_WARN, PMD_LOG_INFO, PMD_LOG_DEBUG };

extern enum pmd_log_level pmd_log_verbosity; /* (C) set once at start-up */
extern unsigned pmd_log_node;                /* (C) this node's id */

void pmd_log(enum pmd_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define pmd_err(...)   pmd_log(PMD_LOG_ERR, __VA_ARGS__)
#define pmd_warn(...)  pmd_log(PMD_LOG_WARN, __VA_ARGS__)
#define pmd_info(...)  pmd_log(PMD_LOG_INFO, __VA_ARGS__)
#define pmd_debug(...) pmd_log(PMD_LOG_DEBUG, __VA_ARGS__)

/* A rate limit: PMD_LOG_BURST lines every PMD_LOG_WINDOW_MS, then
 * silence until the window ends, and one line counting what was left
 * out. Lock key: (L) the pmd loop thread. */
#define PMD_LOG_BURST     10
#define PMD_LOG_WINDOW_MS 5000
struct pmd_ratelimit {
	uint64_t start_ms;           /* (L) the window's start */
	unsigned lines;              /* (L) logged in it */
	uint64_t left_out;           /* (L) not logged in it */
};

void pmd_log_limited(struct pmd_ratelimit *rl, enum pmd_log_level level,
		     const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
