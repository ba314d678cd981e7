/*
 * The local fast path: once a task has mapped a container, maps of its
 * resident frames are answered from the frame view and the segments the
 * task holds, with no message to the pmd, and stay exactly as correct as
 * the pmd's own answers: frames deallocated, destroyed, copied,
 * copy-on-write, locked or revoked send the map back to the pmd.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static uint64_t requests(pm_t *pm)
{
	struct pm_debug_stat st;

	assert_int_equal(pm_debug_stat(pm, &st), 0);
	return st.requests;
}

/* A container that empties and fills again keeps a segment its task
 * holds: the next frame lands there and maps with no message (no new
 * segment, no descriptor to send), showing its own bytes. */
static void an_emptied_container_keeps_a_segment_its_task_holds(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	container_t c;
	uint8_t *m;

	(void)state;
	assert_int_equal(pm_container_create(pm, &c), 0);
	for (int round = 0; round < 8; round++) {
		uint8_t b = (uint8_t)(round + 1);
		int count = 1;
		uint64_t before;

		assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), 0);
		assert_int_equal(pm_container_write(pm, c, 0, 0, &b, 1), 0);
		before = requests(pm);
		assert_int_equal(pm_container_map(pm, c, 0, 1, CONT_MAP_READ,
						  (void **)&m, NULL), 0);
		if (round) /* (the first brings the view) */
			assert_int_equal(requests(pm) - before, 1); /* the stat */
		assert_int_equal(m[0], b);
		assert_int_equal(m[1], 0);
		assert_int_equal(pm_container_unmap(pm, m, 1), 0);
		assert_int_equal(pm_container_deallocate(pm, c, 0, 1), 0);
	}
	pm_disconnect(pm);
}

static void resident_maps_send_no_message(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	container_t c;
	int count = 64, granted;
	uint8_t *m, *m2;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &count, 0), 0);
	/* New frames cost no memory until used: the first map of them goes
	 * to the pmd, which makes them resident, and brings the view. */
	uint64_t before = requests(pm);
	assert_int_equal(pm_container_map(pm, c, 0, 64, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m, NULL), 0);
	assert_int_equal(requests(pm) - before, 2); /* the map, the stat */
	assert_int_equal(pm_container_unmap(pm, m, 64), 0);
	assert_int_equal(pm_container_map(pm, c, 0, 1, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m, NULL), 0);
	m[0] = 'a';
	before = requests(pm);
	for (frame_t f = 0; f < 64; f++) {
		assert_int_equal(pm_container_map(pm, c, f, 1, CONT_MAP_READ |
				 CONT_MAP_WRITE, (void **)&m2, &granted), 0);
		assert_int_equal(granted, CONT_MAP_READ | CONT_MAP_WRITE);
		m2[1] = (uint8_t)f;
		assert_int_equal(pm_container_unmap(pm, m2, 1), 0);
	}
	/* Multi-frame maps too. */
	assert_int_equal(pm_container_map(pm, c, 3, 8, CONT_MAP_READ,
					  (void **)&m2, &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ);
	for (int i = 0; i < 8; i++)
		assert_int_equal(m2[(size_t)i * PM_FRAME_SIZE + 1], 3 + i);
	assert_int_equal(pm_container_unmap(pm, m2, 8), 0);
	/* Only the debug call itself reached the pmd. */
	assert_int_equal(requests(pm) - before, 1);
	/* And what went through the mappings is what the pmd has. */
	for (frame_t f = 0; f < 64; f++) {
		uint8_t b[2];
		assert_int_equal(pm_container_read(pm, c, f, 0, b, 2), 0);
		assert_int_equal(b[1], (uint8_t)f);
	}
	pm_disconnect(pm);
}

static void misses_go_to_the_pmd(void **state)
{
	pm_t *a = test_connect(&test_pmd), *b = test_connect(&test_pmd);
	pm_task_t tb;
	container_t c, weak, ref;
	pm_cap_token_t tok;
	int count = 8, granted;
	uint8_t *m;

	pm_self(b, &tb);
	assert_int_equal(pm_container_create(a, &c), 0);
	assert_int_equal(pm_container_allocate(a, c, 0, &count, 0), 0);
	assert_int_equal(pm_container_map(a, c, 0, 8, CONT_MAP_READ, (void **)&m, NULL), 0);
	pm_container_unmap(a, m, 8);

	/* Deallocated: ENOENT. */
	assert_int_equal(pm_container_deallocate(a, c, 7, 1), 0);
	assert_int_equal(pm_container_map(a, c, 7, 1, CONT_MAP_READ, (void **)&m, NULL),
			 ENOENT);
	/* Copy-on-write: read-only unless forced; forced goes to the pmd,
	 * which makes the copy. */
	assert_int_equal(pm_container_write(a, c, 0, 0, "w", 1), 0);
	/* The copy shares the slot (mapped or not): read-only unless
	 * forced; forced goes to the pmd, which makes the copy. */
	assert_int_equal(pm_container_copy(a, c, 0, c, 1, 1, 0, NULL), 0);
	assert_int_equal(pm_container_map(a, c, 1, 1, CONT_MAP_READ | CONT_MAP_WRITE,
					  (void **)&m, &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ);
	assert_int_equal(m[0], 'w');
	assert_int_equal(pm_container_map(a, c, 1, 1, CONT_MAP_READ | CONT_MAP_WRITE |
					  CONT_MAP_FORCE_WRITE, (void **)&m,
					  &granted), 0);
	assert_int_equal(granted, CONT_MAP_READ | CONT_MAP_WRITE);
	assert_int_equal(m[0], 'w');

	/* A weak reference with the view, then revoked: ESTALE. */
	assert_int_equal(pm_container_share(a, c, tb, &weak), 0);
	assert_int_equal(pm_cap_export(a, weak, &tok), 0);
	assert_int_equal(pm_cap_import(b, &tok, &ref), 0);
	assert_int_equal(pm_container_map(b, ref, 2, 1, CONT_MAP_READ, (void **)&m, NULL), 0);
	assert_int_equal(pm_container_map(b, ref, 3, 1, CONT_MAP_READ, (void **)&m, NULL), 0);
	/* Locked by b: the owner's maps are refused, b's still work. */
	assert_int_equal(pm_container_lock(b, ref, 5000), 0);
	assert_int_equal(pm_container_map(a, c, 2, 1, CONT_MAP_READ, (void **)&m, NULL),
			 EBUSY);
	assert_int_equal(pm_container_map(b, ref, 4, 1, CONT_MAP_READ, (void **)&m, NULL), 0);
	assert_int_equal(pm_container_unlock(b, ref), 0);
	assert_int_equal(pm_container_map(a, c, 2, 1, CONT_MAP_READ, (void **)&m, NULL), 0);
	assert_int_equal(pm_container_unshare(a, c, tb), 0);
	assert_int_equal(pm_container_map(b, ref, 2, 1, CONT_MAP_READ, (void **)&m, NULL),
			 ESTALE);
	/* Destroyed: EBADF for the owner. */
	assert_int_equal(pm_container_destroy(a, c), 0);
	assert_int_equal(pm_container_map(a, c, 0, 1, CONT_MAP_READ, (void **)&m, NULL),
			 EBADF);
	test_check(a);
	pm_disconnect(a);
	pm_disconnect(b);
}

/* Frames whose slots are not consecutive map as one range, one mmap per
 * run of slots, still without a message; each shows its own contents. */
static void scattered_frames_map_in_runs(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	container_t c;
	int n = 4;
	char *m, tag[16];
	uint64_t before;

	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0); /* slots 0-3 */
	assert_int_equal(pm_container_deallocate(pm, c, 1, 1), 0);    /* slot 1 free */
	for (frame_t f = 10; f < 13; f++) {                          /* slots 1, 4, 5 */
		n = 1;
		assert_int_equal(pm_container_allocate(pm, c, f, &n, 0), 0);
		snprintf(tag, sizeof(tag), "frame %u", (unsigned)f);
		assert_int_equal(pm_container_write(pm, c, f, 0, tag, sizeof(tag)), 0);
	}
	/* The first map brings the view and the segment. */
	assert_int_equal(pm_container_map(pm, c, 0, 1, CONT_MAP_READ, (void **)&m, NULL), 0);
	before = requests(pm);
	assert_int_equal(pm_container_map(pm, c, 10, 3, CONT_MAP_READ | CONT_MAP_WRITE,
					  (void **)&m, NULL), 0);
	assert_int_equal(requests(pm), before + 1); /* the stat call only */
	for (frame_t f = 10; f < 13; f++) {
		snprintf(tag, sizeof(tag), "frame %u", (unsigned)f);
		assert_string_equal(m + (f - 10) * PM_FRAME_SIZE, tag);
	}
	strcpy(m + 2 * PM_FRAME_SIZE + 100, "through the run");
	assert_int_equal(pm_container_read(pm, c, 12, 100, tag, 16), 0);
	assert_string_equal(tag, "through the run");
	assert_int_equal(pm_container_unmap(pm, m, 3), 0);
	test_check(pm);
	pm_disconnect(pm);
}

/* Any number of resident frames maps without a message: 1 MiB in one
 * run of slots (a pointer into the segment's mapping), and 3 MiB, which
 * spans segments (512 frames each: an mmap per run); each frame shows its
 * own contents, and stores through the mapping reach the pmd. */
static void large_resident_maps_send_no_message(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	container_t c;
	int n = 768;
	uint8_t *m;
	uint64_t before;

	(void)state;
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	for (frame_t f = 0; f < 768; f++) {
		uint16_t tag = (uint16_t)(f * 7 + 1);
		assert_int_equal(pm_container_write(pm, c, f, 8, &tag,
						    sizeof(tag)), 0);
	}
	assert_int_equal(pm_container_map(pm, c, 0, 1, CONT_MAP_READ,
					  (void **)&m, NULL), 0);
	assert_int_equal(pm_container_unmap(pm, m, 1), 0);
	/* (Frames of the second segment: its descriptor comes once.) */
	assert_int_equal(pm_container_map(pm, c, 600, 1, CONT_MAP_READ,
					  (void **)&m, NULL), 0);
	assert_int_equal(pm_container_unmap(pm, m, 1), 0);
	before = requests(pm);
	assert_int_equal(pm_container_map(pm, c, 0, 256, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m, NULL), 0);
	for (frame_t f = 0; f < 256; f++) {
		uint16_t tag;
		memcpy(&tag, m + f * PM_FRAME_SIZE + 8, sizeof(tag));
		assert_int_equal(tag, (uint16_t)(f * 7 + 1));
	}
	m[200 * PM_FRAME_SIZE] = 'x';
	assert_int_equal(pm_container_unmap(pm, m, 256), 0);
	assert_int_equal(pm_container_map(pm, c, 0, 768, CONT_MAP_READ,
					  (void **)&m, NULL), 0);
	for (frame_t f = 0; f < 768; f++) {
		uint16_t tag;
		memcpy(&tag, m + f * PM_FRAME_SIZE + 8, sizeof(tag));
		assert_int_equal(tag, (uint16_t)(f * 7 + 1));
	}
	assert_int_equal(pm_container_unmap(pm, m, 768), 0);
	assert_int_equal(requests(pm), before + 1); /* the stat call only */
	assert_int_equal(pm_container_read(pm, c, 200, 0, m = (uint8_t[1]){ 0 },
					   1), 0);
	assert_int_equal(m[0], 'x');
	test_check(pm);
	pm_disconnect(pm);
}

/* Frames 0..n-1 of the mapping m show tags f * 3 + 1, but frame `odd`
 * shows tag `odd_tag`. */
static void tags_are(const uint8_t *m, frame_t n, frame_t odd,
		     uint16_t odd_tag)
{
	for (frame_t f = 0; f < n; f++) {
		uint16_t tag;

		memcpy(&tag, m + f * PM_FRAME_SIZE + 8, sizeof(tag));
		assert_int_equal(tag, f == odd ? odd_tag : (uint16_t)(f * 3 + 1));
	}
}

/* A long map is one look-up while its frames lie in one run of slots
 * (the view's runs); a frame moved or shared in the middle ends the run
 * there, and the map then shows every frame where it is now. */
static void runs_end_where_frames_move_or_share(void **state)
{
	pm_t *pm = test_connect(&test_pmd);
	container_t c, d;
	int n = 64;
	uint16_t tag = 999;
	uint8_t *m, *whole;
	uint64_t before;

	(void)state;
	assert_int_equal(pm_container_create(pm, &c), 0);
	assert_int_equal(pm_container_allocate(pm, c, 0, &n, 0), 0);
	for (frame_t f = 0; f < 64; f++) {
		uint16_t t = (uint16_t)(f * 3 + 1);
		assert_int_equal(pm_container_write(pm, c, f, 8, &t,
						    sizeof(t)), 0);
	}
	assert_int_equal(pm_container_map(pm, c, 0, 64, CONT_MAP_READ,
					  (void **)&m, NULL), 0);
	assert_int_equal(pm_container_unmap(pm, m, 64), 0);
	before = requests(pm);
	assert_int_equal(pm_container_map(pm, c, 0, 64, CONT_MAP_READ,
					  (void **)&whole, NULL), 0);
	tags_are(whole, 64, 64, 0);
	assert_int_equal(pm_container_unmap(pm, whole, 64), 0);
	assert_int_equal(requests(pm), before + 1); /* the stat only */
	/* Frame 20 moves: frames 0-19 are still one run, 0-63 are not. */
	assert_int_equal(pm_debug_move(pm, c, 20), 0);
	assert_int_equal(pm_container_map(pm, c, 0, 20, CONT_MAP_READ,
					  (void **)&m, NULL), 0);
	assert_ptr_equal(m, whole);
	assert_int_equal(pm_container_unmap(pm, m, 20), 0);
	assert_int_equal(pm_container_map(pm, c, 0, 64, CONT_MAP_READ,
					  (void **)&m, NULL), 0);
	assert_ptr_not_equal(m, whole);
	tags_are(m, 64, 64, 0);
	assert_int_equal(pm_container_unmap(pm, m, 64), 0);
	/* Frame 40 shares another container's slot (a logical copy): its
	 * bytes, never the slot it had. */
	assert_int_equal(pm_container_create(pm, &d), 0);
	n = 1;
	assert_int_equal(pm_container_allocate(pm, d, 0, &n, 0), 0);
	assert_int_equal(pm_container_write(pm, d, 0, 8, &tag, sizeof(tag)),
			 0);
	assert_int_equal(pm_container_copy(pm, d, 0, c, 40, 1, 0, NULL), 0);
	assert_int_equal(pm_container_map(pm, c, 21, 43, CONT_MAP_READ,
					  (void **)&m, NULL), 0);
	for (frame_t f = 21; f < 64; f++) {
		uint16_t t;
		memcpy(&t, m + (f - 21) * PM_FRAME_SIZE + 8, sizeof(t));
		assert_int_equal(t, f == 40 ? 999 : (uint16_t)(f * 3 + 1));
	}
	assert_int_equal(pm_container_unmap(pm, m, 43), 0);
	/* Written through the pmd, frame 40 has its own slot again, and a
	 * writable map of all 64 shows every store. */
	tag = 40 * 3 + 1;
	assert_int_equal(pm_container_write(pm, c, 40, 8, &tag, sizeof(tag)),
			 0);
	assert_int_equal(pm_container_map(pm, c, 0, 64, CONT_MAP_READ |
					  CONT_MAP_WRITE, (void **)&m, NULL),
			 0);
	tags_are(m, 64, 64, 0);
	m[63 * PM_FRAME_SIZE] = 'y';
	assert_int_equal(pm_container_unmap(pm, m, 64), 0);
	assert_int_equal(pm_container_read(pm, c, 63, 0, &tag, 1), 0);
	assert_int_equal(tag & 0xff, 'y');
	test_check(pm);
	pm_disconnect(pm);
}

struct churn {
	pm_t *pm;
	container_t c;
	bool stop;                     /* atomic */
	int bad;
};

/* Maps frames in a loop and checks that each shows its own tag. */
static void *mapper(void *p)
{
	struct churn *ch = p;

	while (!__atomic_load_n(&ch->stop, __ATOMIC_RELAXED)) {
		for (frame_t f = 0; f < 32; f++) {
			uint8_t *m;
			error_t err = pm_container_map(ch->pm, ch->c, f, 1,
						       CONT_MAP_READ, (void **)&m, NULL);
			if (err == ENOENT)
				continue; /* deallocated just now */
			if (err) {
				ch->bad++;
				continue;
			}
			/* A frame is either its tag or fresh (zero). */
			if (m[8] != 0 && m[8] != (uint8_t)(f + 1))
				ch->bad++;
			pm_container_unmap(ch->pm, m, 1);
		}
	}
	return NULL;
}

static void concurrent_changes_never_show_another_frame(void **state)
{
	struct churn ch = { .pm = test_connect(&test_pmd) };
	pm_t *pm = ch.pm;
	pthread_t th;
	int count = 32;
	uint8_t tag[16];

	assert_int_equal(pm_container_create(pm, &ch.c), 0);
	assert_int_equal(pm_container_allocate(pm, ch.c, 0, &count, 0), 0);
	for (frame_t f = 0; f < 32; f++) {
		memset(tag, (int)(f + 1), sizeof(tag));
		assert_int_equal(pm_container_write(pm, ch.c, f, 0, tag, sizeof(tag)), 0);
	}
	uint8_t *m;
	assert_int_equal(pm_container_map(pm, ch.c, 0, 1, CONT_MAP_READ, (void **)&m, NULL), 0);
	assert_int_equal(pthread_create(&th, NULL, mapper, &ch), 0);
	/* Deallocate and reallocate frames under the mapper: slots are
	 * reused by other frames. */
	for (int round = 0; round < 300; round++) {
		frame_t f = (frame_t)(round * 7) % 32;
		assert_int_equal(pm_container_deallocate(pm, ch.c, f, 1), 0);
		count = 1;
		assert_int_equal(pm_container_allocate(pm, ch.c, f, &count, 0), 0);
		memset(tag, (int)(f + 1), sizeof(tag));
		assert_int_equal(pm_container_write(pm, ch.c, f, 0, tag, sizeof(tag)), 0);
	}
	__atomic_store_n(&ch.stop, true, __ATOMIC_RELAXED);
	pthread_join(th, NULL);
	assert_int_equal(ch.bad, 0);
	pm_disconnect(pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(resident_maps_send_no_message),
		cmocka_unit_test(an_emptied_container_keeps_a_segment_its_task_holds),
		cmocka_unit_test(misses_go_to_the_pmd),
		cmocka_unit_test(scattered_frames_map_in_runs),
		cmocka_unit_test(large_resident_maps_send_no_message),
		cmocka_unit_test(runs_end_where_frames_move_or_share),
		cmocka_unit_test(concurrent_changes_never_show_another_frame),
	};
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--guarantee", "4096", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
