/*
 * parse.h - numbers and sizes as operators write them, for the daemon's
 * settings and the cluster file. Plain functions: no I/O, no messages
 * (the caller says what was wrong and where).
 */
#ifndef PMD_PARSE_H
#define PMD_PARSE_H

#include <errno.h>
#include <stdint.h>

/* A decimal number of at most max: EINVAL when s is not one, ERANGE when
 * it is larger. *v_out is written only on success. */
error_t pmd_parse_u64(const char *s, uint64_t max, uint64_t *v_out);

/* "256M", "8G", "4KiB", "4096": bytes (K, M, G, T are powers of 1024).
 * EINVAL when s is not a size, ERANGE when it overflows. */
error_t pmd_parse_size(const char *s, uint64_t *bytes_out);

#endif
