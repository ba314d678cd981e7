/*
 * Conformance: one test per rule of the container interface (API contract
 * and the seed's design notes), with several tasks as several sessions of
 * this process, against a real pmd. Each test ends with the accounting
 * check and leaves nothing behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define MAX_LOCK_MS 2000

/* A client with a container of n frames and a server session. */
struct pair {
	pm_t *client, *server;
	pm_task_t client_id, server_id;
	container_t c;
};

static void pair_open(struct pair *p, int n)
{
	p->client = test_connect(&test_pmd);
	p->server = test_connect(&test_pmd);
	pm_self(p->client, &p->client_id);
	pm_self(p->server, &p->server_id);
	assert_int_equal(pm_container_create(p->client, &p->c), 0);
	if (n)
		assert_int_equal(pm_container_allocate(p->client, p->c, 0, &n, 0), 0);
}

/* Shares p->c with the server and returns the server's handle. */
static container_t pair_share(struct pair *p)
{
	container_t weak, ref;
	pm_cap_token_t tok;

	assert_int_equal(pm_container_share(p->client, p->c, p->server_id, &weak), 0);
	assert_int_equal(pm_cap_export(p->client, weak, &tok), 0);
	assert_int_equal(pm_cap_import(p->server, &tok, &ref), 0);
	return ref;
}

static void pair_close(struct pair *p)
{
	test_check(p->client);
	pm_disconnect(p->server);
	pm_disconnect(p->client);
}

static void read_byte(pm_t *pm, container_t c, frame_t f, uint8_t want)
{
	uint8_t b = (uint8_t)~want;

	assert_int_equal(pm_container_read(pm, c, f, 0, &b, 1), 0);
	assert_int_equal(b, want);
}

/* ---- sharing ---- */

static void weak_ref_reads_and_writes_what_the_owner_sees(void **state)
{
	struct pair p;
	container_t ref;
	struct pm_container_stat cs;

	pair_open(&p, 4);
	ref = pair_share(&p);
	assert_int_equal(pm_container_write(p.server, ref, 2, 0, "\x42", 1), 0);
	read_byte(p.client, p.c, 2, 0x42);
	assert_int_equal(pm_container_write(p.client, p.c, 3, 0, "\x17", 1), 0);
	read_byte(p.server, ref, 3, 0x17);
	assert_int_equal(pm_container_stat(p.server, ref, &cs), 0);
	assert_int_equal(cs.frames, 4);
	/* Real sharing through maps too: both see each other's stores. */
	uint8_t *a, *b;
	assert_int_equal(pm_container_map(p.client, p.c, 0, 4, CONT_MAP_READ |
			 CONT_MAP_WRITE, (void **)&a, NULL), 0);
	assert_int_equal(pm_container_map(p.server, ref, 0, 4, CONT_MAP_READ |
			 CONT_MAP_WRITE, (void **)&b, NULL), 0);
	a[10] = 'x';
	assert_int_equal(b[10], 'x');
	b[PM_FRAME_SIZE + 1] = 'y';
	assert_int_equal(a[PM_FRAME_SIZE + 1], 'y');
	pm_container_unmap(p.client, a, 4);
	pm_container_unmap(p.server, b, 4);
	pair_close(&p);
}

static void weak_ref_may_not_allocate_deallocate_share_or_destroy(void **state)
{
	struct pair p;
	container_t ref, weak2;
	int count = 1;

	pair_open(&p, 2);
	ref = pair_share(&p);
	assert_int_equal(pm_container_allocate(p.server, ref, 10, &count, 0), EPERM);
	assert_int_equal(count, 0);
	assert_int_equal(pm_container_deallocate(p.server, ref, 0, 1), EPERM);
	assert_int_equal(pm_container_share(p.server, ref, p.client_id, &weak2), EPERM);
	assert_int_equal(pm_container_destroy(p.server, ref), EPERM);
	assert_int_equal(pm_container_unshare(p.server, ref, p.server_id), EPERM);
	assert_int_equal(pm_container_set_policy(p.server, ref, PM_PLACE_LOCAL, 0), EPERM);
	/* Nothing changed. */
	struct pm_container_stat cs;
	assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
	assert_int_equal(cs.frames, 2);
	pair_close(&p);
}

static void only_the_bound_task_can_import(void **state)
{
	struct pair p;
	pm_t *other = test_connect(&test_pmd);
	container_t weak, ref;
	pm_cap_token_t tok;

	pair_open(&p, 1);
	assert_int_equal(pm_container_share(p.client, p.c, p.server_id, &weak), 0);
	assert_int_equal(pm_cap_export(p.client, weak, &tok), 0);
	assert_int_equal(pm_cap_import(other, &tok, &ref), EACCES);
	assert_int_equal(pm_cap_import(p.client, &tok, &ref), EACCES);
	/* The sharer's own handle is for passing on, not for use. */
	char b;
	assert_int_equal(pm_container_read(p.client, weak, 0, 0, &b, 1), EACCES);
	assert_int_equal(pm_container_lock(p.client, weak, 10), EACCES);
	assert_int_equal(pm_cap_import(p.server, &tok, &ref), 0);
	pm_disconnect(other);
	pair_close(&p);
}

static void altered_tokens_are_einval(void **state)
{
	struct pair p;
	container_t weak, ref;
	pm_cap_token_t tok, bad;

	pair_open(&p, 1);
	assert_int_equal(pm_container_share(p.client, p.c, p.server_id, &weak), 0);
	assert_int_equal(pm_cap_export(p.client, weak, &tok), 0);
	for (size_t i = 0; i < sizeof(tok.bytes); i++) {
		bad = tok;
		bad.bytes[i] ^= 0x01;
		assert_int_equal(pm_cap_import(p.server, &bad, &ref), EINVAL);
	}
	memset(&bad, 0, sizeof(bad));
	assert_int_equal(pm_cap_import(p.server, &bad, &ref), EINVAL);
	/* Exporting the owner's capability is refused: share first. */
	assert_int_equal(pm_cap_export(p.client, p.c, &bad), EPERM);
	pair_close(&p);
}

static void share_with_unknown_task_is_esrch(void **state)
{
	struct pair p;
	container_t weak;

	pair_open(&p, 1);
	assert_int_equal(pm_container_share(p.client, p.c, p.server_id + 1000, &weak),
			 ESRCH);
	pair_close(&p);
}

static void unshare_revokes_every_reference_at_once(void **state)
{
	struct pair p;
	container_t weak, ref1, ref2;
	pm_cap_token_t tok;
	char b;

	pair_open(&p, 2);
	assert_int_equal(pm_container_share(p.client, p.c, p.server_id, &weak), 0);
	assert_int_equal(pm_cap_export(p.client, weak, &tok), 0);
	assert_int_equal(pm_cap_import(p.server, &tok, &ref1), 0);
	assert_int_equal(pm_cap_import(p.server, &tok, &ref2), 0);
	assert_int_equal(pm_container_unshare(p.client, p.c, p.server_id), 0);
	assert_int_equal(pm_container_read(p.server, ref1, 0, 0, &b, 1), ESTALE);
	assert_int_equal(pm_container_write(p.server, ref2, 0, 0, &b, 1), ESTALE);
	assert_int_equal(pm_cap_import(p.server, &tok, &ref1), ESTALE);
	assert_int_equal(pm_cap_export(p.client, weak, &tok), ESTALE);
	/* Tombstones go with release. */
	assert_int_equal(pm_cap_release(p.server, ref2), 0);
	assert_int_equal(pm_container_read(p.server, ref2, 0, 0, &b, 1), EBADF);
	/* The owner is unaffected; unshare again is harmless. */
	read_byte(p.client, p.c, 1, 0);
	assert_int_equal(pm_container_unshare(p.client, p.c, p.server_id), 0);
	/* The owner's capability is released by destroy, not release. */
	assert_int_equal(pm_cap_release(p.client, p.c), EINVAL);
	pair_close(&p);
}

static sigjmp_buf bus_jump;
static void on_sigbus(int sig)
{
	siglongjmp(bus_jump, 1);
}

/* Reads one byte through a mapping; false when the access faulted. */
static bool probe(volatile uint8_t *addr, uint8_t *out)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	bool ok = false;

	sigaction(SIGBUS, &sa, &old);
	if (!sigsetjmp(bus_jump, 1)) {
		*out = *addr;
		ok = true;
	}
	sigaction(SIGBUS, &old, NULL);
	return ok;
}

static void unshare_cuts_off_the_servers_mappings(void **state)
{
	struct pair p;
	container_t ref;
	uint8_t *smap, *cmap, b = 0;

	pair_open(&p, 3);
	assert_int_equal(pm_container_write(p.client, p.c, 1, 0, "secret", 6), 0);
	ref = pair_share(&p);
	assert_int_equal(pm_container_map(p.server, ref, 0, 3, CONT_MAP_READ,
					  (void **)&smap, NULL), 0);
	assert_true(probe(smap + PM_FRAME_SIZE, &b));
	assert_int_equal(b, 's');
	assert_int_equal(pm_container_unshare(p.client, p.c, p.server_id), 0);
	/* The revoked task sees nothing more through its old mapping: it
	 * reads zeros (its segments were emptied; no SIGBUS either). */
	assert_true(probe(smap + PM_FRAME_SIZE, &b));
	assert_int_equal(b, 0);
	pm_container_unmap(p.server, smap, 3);
	/* The owner's data moved with the frames and is intact. */
	read_byte(p.client, p.c, 1, 's');
	assert_int_equal(pm_container_map(p.client, p.c, 0, 3, CONT_MAP_READ,
					  (void **)&cmap, NULL), 0);
	assert_memory_equal(cmap + PM_FRAME_SIZE, "secret", 6);
	pm_container_unmap(p.client, cmap, 3);
	pair_close(&p);
}

/* ---- admission and per-task limits are in test_daemon/test_api ---- */

/* ---- copy and copy-on-write ---- */

static void fill(pm_t *pm, container_t c, frame_t f, uint8_t v)
{
	uint8_t buf[PM_FRAME_SIZE];

	memset(buf, v, sizeof(buf));
	assert_int_equal(pm_container_write(pm, c, f, 0, buf, sizeof(buf)), 0);
}

static void check_frame(pm_t *pm, container_t c, frame_t f, uint8_t v)
{
	uint8_t buf[PM_FRAME_SIZE];

	assert_int_equal(pm_container_read(pm, c, f, 0, buf, sizeof(buf)), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i] != v)
			fail_msg("frame %lu byte %zu: %#x, want %#x",
				 (unsigned long)f, i, buf[i], v);
}

static void copy_within_a_container_shares_then_breaks(void **state)
{
	struct pair p;
	struct pm_container_stat cs;
	frame_t ferr = 77;

	pair_open(&p, 8);
	for (frame_t f = 0; f < 4; f++)
		fill(p.client, p.c, f, (uint8_t)(0x10 + f));
	assert_int_equal(pm_container_copy(p.client, p.c, 0, p.c, 4, 4, 0, &ferr), 0);
	assert_int_equal(ferr, 77); /* untouched on success */
	for (frame_t f = 0; f < 4; f++)
		check_frame(p.client, p.c, 4 + f, (uint8_t)(0x10 + f));
	assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
	assert_int_equal(cs.cow, 8);
	struct pm_debug_stat st = test_check(p.client);
	assert_true(st.slots_used < st.frames); /* really shared */

	/* A write to either side never shows in the other. */
	fill(p.client, p.c, 0, 0xaa);
	check_frame(p.client, p.c, 4, 0x10);
	fill(p.client, p.c, 5, 0xbb);
	check_frame(p.client, p.c, 1, 0x11);
	assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
	assert_int_equal(cs.cow, 4);
	pair_close(&p);
}

static void copy_stops_at_a_missing_frame(void **state)
{
	struct pair p;
	frame_t ferr = 0;
	int n = 2;

	pair_open(&p, 4);          /* frames 0..3 */
	assert_int_equal(pm_container_allocate(p.client, p.c, 10, &n, 0), 0); /* 10, 11 */
	fill(p.client, p.c, 0, 1);
	fill(p.client, p.c, 1, 2);
	/* Destination 10, 11, 12: 12 is missing -> ENOMEM, names dst 12. */
	assert_int_equal(pm_container_copy(p.client, p.c, 0, p.c, 10, 3, 0, &ferr),
			 ENOMEM);
	assert_int_equal(ferr, 12);
	check_frame(p.client, p.c, 10, 1); /* frames before the stop copied */
	check_frame(p.client, p.c, 11, 2);
	/* Source 2, 3, 4: 4 is missing -> ENOENT, names src 4. */
	assert_int_equal(pm_container_copy(p.client, p.c, 2, p.c, 10, 3, 0, &ferr),
			 ENOENT);
	assert_int_equal(ferr, 4);
	check_frame(p.client, p.c, 10, 0);
	check_frame(p.client, p.c, 11, 0);
	assert_int_equal(pm_container_copy(p.client, p.c, 0, p.c, 1, 0, 0, &ferr), EINVAL);
	assert_int_equal(pm_container_copy(p.client, p.c, 0, p.c, 1, 1, 0x8, &ferr), EINVAL);
	pair_close(&p);
}

static void copy_with_overlap_moves_like_memmove(void **state)
{
	struct pair p;

	pair_open(&p, 6);
	for (frame_t f = 0; f < 6; f++)
		fill(p.client, p.c, f, (uint8_t)f);
	assert_int_equal(pm_container_copy(p.client, p.c, 0, p.c, 2, 4, 0, NULL), 0);
	for (frame_t f = 2; f < 6; f++)
		check_frame(p.client, p.c, f, (uint8_t)(f - 2));
	assert_int_equal(pm_container_copy(p.client, p.c, 2, p.c, 0, 4, 0, NULL), 0);
	for (frame_t f = 0; f < 4; f++)
		check_frame(p.client, p.c, f, (uint8_t)f);
	pair_close(&p);
}

static void copy_across_containers_is_logical(void **state)
{
	struct pair p;
	struct pm_container_stat cs;
	container_t d;
	int n = 2;

	pair_open(&p, 2);
	fill(p.client, p.c, 0, 9);
	assert_int_equal(pm_container_create(p.client, &d), 0);
	assert_int_equal(pm_container_allocate(p.client, d, 0, &n, 0), 0);
	assert_int_equal(pm_container_copy(p.client, p.c, 0, d, 0, 2, 0, NULL), 0);
	check_frame(p.client, d, 0, 9);
	/* Both sides share the frames copy-on-write... */
	assert_int_equal(pm_container_stat(p.client, d, &cs), 0);
	assert_int_equal(cs.cow, 2);
	assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
	assert_int_equal(cs.cow, 2);
	/* ...until one is written: the other never shows it. */
	fill(p.client, p.c, 0, 3);
	check_frame(p.client, d, 0, 9);
	check_frame(p.client, p.c, 0, 3);
	fill(p.client, d, 1, 4);
	check_frame(p.client, p.c, 1, 0);
	assert_int_equal(pm_container_stat(p.client, d, &cs), 0);
	assert_int_equal(cs.cow, 0);
	pair_close(&p);
}

static void server_copies_into_the_clients_container(void **state)
{
	struct pair p;
	container_t ref, own;
	int n = 2;

	pair_open(&p, 2);
	ref = pair_share(&p);
	assert_int_equal(pm_container_create(p.server, &own), 0);
	assert_int_equal(pm_container_allocate(p.server, own, 0, &n, 0), 0);
	fill(p.server, own, 1, 0x5e);
	/* Read access to the source, write access to the destination. */
	assert_int_equal(pm_container_copy(p.server, own, 1, ref, 0, 1, 0, NULL), 0);
	check_frame(p.client, p.c, 0, 0x5e);
	assert_int_equal(pm_container_copy(p.server, ref, 0, own, 0, 1, 0, NULL), 0);
	check_frame(p.server, own, 0, 0x5e);
	pair_close(&p);
}

static void cow_frames_map_read_only_unless_forced(void **state)
{
	struct pair p;
	struct pm_container_stat cs;
	uint8_t *m;
	int granted;

	pair_open(&p, 2);
	fill(p.client, p.c, 0, 0x21);
	assert_int_equal(pm_container_copy(p.client, p.c, 0, p.c, 1, 1, 0, NULL), 0);
	assert_int_equal(pm_container_map(p.client, p.c, 1, 1, CONT_MAP_READ |
			 CONT_MAP_WRITE, (void **)&m, &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ);
	assert_int_equal(m[0], 0x21);
	pm_container_unmap(p.client, m, 1);
	/* FORCE_WRITE alone is ignored without WRITE. */
	assert_int_equal(pm_container_map(p.client, p.c, 1, 1, CONT_MAP_READ |
			 CONT_MAP_FORCE_WRITE, (void **)&m, &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ);
	pm_container_unmap(p.client, m, 1);
	assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
	assert_int_equal(cs.cow, 2);
	/* Forced: the copy is made and the mapping is writable. */
	assert_int_equal(pm_container_map(p.client, p.c, 1, 1, CONT_MAP_READ |
			 CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE, (void **)&m,
			 &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ | CONT_MAP_WRITE);
	assert_int_equal(m[0], 0x21);
	m[0] = 0x22;
	check_frame(p.client, p.c, 0, 0x21);
	assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
	assert_int_equal(cs.cow, 0);
	pm_container_unmap(p.client, m, 1);
	pair_close(&p);
}

static void copy_from_a_writably_mapped_frame_stays_exact(void **state)
{
	struct pair p;
	uint8_t *m;

	pair_open(&p, 2);
	assert_int_equal(pm_container_map(p.client, p.c, 0, 1, CONT_MAP_READ |
			 CONT_MAP_WRITE, (void **)&m, NULL), 0);
	memset(m, 0x31, PM_FRAME_SIZE);
	assert_int_equal(pm_container_copy(p.client, p.c, 0, p.c, 1, 1, 0, NULL), 0);
	/* A store through the old writable mapping never reaches the copy,
	 * and does reach the frame. */
	m[0] = 0x32;
	read_byte(p.client, p.c, 1, 0x31);
	read_byte(p.client, p.c, 0, 0x32);
	assert_int_equal(m[0], 0x32);
	pm_container_unmap(p.client, m, 1);
	pair_close(&p);
}

/* ---- locks ---- */

static void lock_keeps_the_owner_out(void **state)
{
	struct pair p;
	struct pm_container_stat cs;
	container_t ref;
	void *m;
	int n = 1;
	char b;

	pair_open(&p, 4);
	ref = pair_share(&p);
	assert_int_equal(pm_container_lock(p.server, ref, MAX_LOCK_MS), 0);
	assert_int_equal(pm_container_destroy(p.client, p.c), EBUSY);
	assert_int_equal(pm_container_deallocate(p.client, p.c, 0, 1), EBUSY);
	assert_int_equal(pm_container_read(p.client, p.c, 0, 0, &b, 1), EBUSY);
	assert_int_equal(pm_container_write(p.client, p.c, 0, 0, &b, 1), EBUSY);
	assert_int_equal(pm_container_map(p.client, p.c, 0, 1, CONT_MAP_READ, &m, NULL),
			 EBUSY);
	assert_int_equal(pm_container_copy(p.client, p.c, 0, p.c, 1, 1, 0, NULL), EBUSY);
	assert_int_equal(pm_container_unshare(p.client, p.c, p.server_id), EBUSY);
	n = 1;
	assert_int_equal(pm_container_allocate(p.client, p.c, 0, &n, CONT_ALLOC_SQUASH),
			 EBUSY);
	/* New frames do not touch the server's data: allowed. */
	n = 1;
	assert_int_equal(pm_container_allocate(p.client, p.c, 100, &n, 0), 0);
	assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
	assert_true(cs.locked_ms_left > 0 && cs.locked_ms_left <= MAX_LOCK_MS);
	/* The server works under its lock. */
	assert_int_equal(pm_container_write(p.server, ref, 0, 0, "L", 1), 0);
	assert_int_equal(pm_container_unlock(p.server, ref), 0);
	read_byte(p.client, p.c, 0, 'L');
	assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
	assert_int_equal(cs.locked_ms_left, 0);
	assert_int_equal(pm_container_unshare(p.client, p.c, p.server_id), 0);
	pair_close(&p);
}

static void lock_ends_by_itself(void **state)
{
	struct pair p;
	container_t ref;

	pair_open(&p, 1);
	ref = pair_share(&p);
	assert_int_equal(pm_container_lock(p.server, ref, 150), 0);
	assert_int_equal(pm_container_unshare(p.client, p.c, p.server_id), EBUSY);
	usleep(250000);
	/* After expiry the client may cancel the server's access. */
	read_byte(p.client, p.c, 0, 0);
	assert_int_equal(pm_container_unshare(p.client, p.c, p.server_id), 0);
	char b;
	assert_int_equal(pm_container_read(p.server, ref, 0, 0, &b, 1), ESTALE);
	pair_close(&p);
}

/* A server that relocks before each expiry cannot keep its owner out:
 * once its lock refused the owner, it can neither extend that lock nor
 * take a new one until one --max-lock-ms after the lock ends; the owner
 * then reads and unshares. */
static void relocking_cannot_keep_the_owner_out(void **state)
{
	struct pair p;
	container_t ref;
	char b;

	pair_open(&p, 1);
	ref = pair_share(&p);
	assert_int_equal(pm_container_lock(p.server, ref, 300), 0);
	assert_int_equal(pm_container_lock(p.server, ref, 300), 0); /* extends */
	assert_int_equal(pm_container_read(p.client, p.c, 0, 0, &b, 1), EBUSY);
	/* Refused: no more extensions, and the lock runs out. */
	assert_int_equal(pm_container_lock(p.server, ref, 300), EBUSY);
	usleep(350000);
	assert_int_equal(pm_container_lock(p.server, ref, 300), EBUSY);
	read_byte(p.client, p.c, 0, 0);
	assert_int_equal(pm_container_unshare(p.client, p.c, p.server_id), 0);
	assert_int_equal(pm_container_read(p.server, ref, 0, 0, &b, 1), ESTALE);
	pair_close(&p);
}

static void lock_limits(void **state)
{
	struct pair p;
	pm_t *other = test_connect(&test_pmd);
	pm_task_t other_id;
	container_t ref, weak, ref2;
	pm_cap_token_t tok;

	pair_open(&p, 1);
	pm_self(other, &other_id);
	ref = pair_share(&p);
	assert_int_equal(pm_container_lock(p.server, ref, MAX_LOCK_MS + 1), EINVAL);
	assert_int_equal(pm_container_lock(p.server, ref, 0), EINVAL);
	/* Only servers lock: the owner's capability has no lock right. */
	assert_int_equal(pm_container_lock(p.client, p.c, 10), EPERM);
	/* One lock at a time. */
	assert_int_equal(pm_container_share(p.client, p.c, other_id, &weak), 0);
	assert_int_equal(pm_cap_export(p.client, weak, &tok), 0);
	assert_int_equal(pm_cap_import(other, &tok, &ref2), 0);
	assert_int_equal(pm_container_lock(p.server, ref, 1000), 0);
	assert_int_equal(pm_container_lock(other, ref2, 1000), EBUSY);
	assert_int_equal(pm_container_unlock(other, ref2), EPERM);
	/* Unsharing another server would move frames under the lock only
	 * if it had mapped them; it has not, so this succeeds. */
	assert_int_equal(pm_container_unshare(p.client, p.c, other_id), 0);
	assert_int_equal(pm_container_unlock(p.server, ref), 0);
	assert_int_equal(pm_container_lock(p.server, ref, 1000), 0);
	pm_disconnect(other);
	pair_close(&p);
}

/* ---- death ---- */

static void server_death_ends_its_lock_and_keeps_the_data(void **state)
{
	struct pair p;
	container_t ref;
	struct pm_container_stat cs;

	pair_open(&p, 2);
	ref = pair_share(&p);
	assert_int_equal(pm_container_lock(p.server, ref, MAX_LOCK_MS), 0);
	assert_int_equal(pm_container_write(p.server, ref, 1, 0, "D", 1), 0);
	pm_disconnect(p.server);
	p.server = test_connect(&test_pmd);
	/* The lock went with its holder (give the pmd a moment to see the
	 * hang-up). */
	for (int i = 0; i < 200; i++) {
		assert_int_equal(pm_container_stat(p.client, p.c, &cs), 0);
		if (!cs.locked_ms_left)
			break;
		usleep(10000);
	}
	assert_int_equal(cs.locked_ms_left, 0);
	read_byte(p.client, p.c, 1, 'D');
	assert_int_equal(cs.frames, 2);
	pair_close(&p);
}

static void client_death_invalidates_server_references(void **state)
{
	struct pair p;
	container_t ref;
	char b;
	error_t err = 0;

	pair_open(&p, 2);
	ref = pair_share(&p);
	pm_disconnect(p.client);
	for (int i = 0; i < 200; i++) {
		err = pm_container_read(p.server, ref, 0, 0, &b, 1);
		if (err)
			break;
		usleep(10000);
	}
	assert_int_equal(err, ESTALE);
	assert_int_equal(pm_cap_release(p.server, ref), 0);
	test_check(p.server);
	pm_disconnect(p.server);
}

static void set_policy_on_one_node(void **state)
{
	struct pair p;

	pair_open(&p, 0);
	assert_int_equal(pm_container_set_policy(p.client, p.c, PM_PLACE_LOCAL, 0), 0);
	assert_int_equal(pm_container_set_policy(p.client, p.c, PM_PLACE_NODE, 1), 0);
	assert_int_equal(pm_container_set_policy(p.client, p.c, PM_PLACE_NODE, 2), ENODEV);
	assert_int_equal(pm_container_set_policy(p.client, p.c, 99, 0), EINVAL);
	pair_close(&p);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, test_clean_teardown)
	const struct CMUnitTest tests[] = {
		T(weak_ref_reads_and_writes_what_the_owner_sees),
		T(weak_ref_may_not_allocate_deallocate_share_or_destroy),
		T(only_the_bound_task_can_import),
		T(altered_tokens_are_einval),
		T(share_with_unknown_task_is_esrch),
		T(unshare_revokes_every_reference_at_once),
		T(unshare_cuts_off_the_servers_mappings),
		T(copy_within_a_container_shares_then_breaks),
		T(copy_stops_at_a_missing_frame),
		T(copy_with_overlap_moves_like_memmove),
		T(copy_across_containers_is_logical),
		T(server_copies_into_the_clients_container),
		T(cow_frames_map_read_only_unless_forced),
		T(copy_from_a_writably_mapped_frame_stays_exact),
		T(lock_keeps_the_owner_out),
		T(lock_ends_by_itself),
		T(relocking_cannot_keep_the_owner_out),
		T(lock_limits),
		T(server_death_ends_its_lock_and_keeps_the_data),
		T(client_death_invalidates_server_references),
		T(set_policy_on_one_node),
	};
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--guarantee", "1024", "--extra", "256", "--max-lock-ms",
		"2000", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
