/* Unit tests of the frame table (pmd/frame_table.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "frame_table.h"

static int setup(void **state)
{
	struct pmd_ftab *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	pmd_ftab_init(t);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	pmd_ftab_fini(*state);
	free(*state);
	return 0;
}

static struct pmd_frame *put(struct pmd_ftab *t, frame_t f, uint32_t tag)
{
	struct pmd_frame *e;

	assert_int_equal(pmd_ftab_reserve(t, f), 0);
	e = pmd_ftab_insert(t, f);
	assert_non_null(e);
	e->seg = tag;
	return e;
}

static void empty_table_finds_nothing(void **state)
{
	struct pmd_ftab *t = *state;
	frame_t f = 0;
	struct pmd_frame *e;

	assert_null(pmd_ftab_lookup(t, 0));
	assert_null(pmd_ftab_lookup(t, UINT64_MAX));
	assert_false(pmd_ftab_next(t, &f, &e));
	assert_int_equal(t->count, 0);
}

static void insert_lookup_remove_sparse_keys(void **state)
{
	static const frame_t keys[] = { 0, 1, 63, 64, 4095, 4096, 1u << 20,
					UINT64_C(1) << 40, UINT64_MAX - 1,
					UINT64_MAX };
	struct pmd_ftab *t = *state;
	size_t n = sizeof(keys) / sizeof(keys[0]);

	for (size_t i = 0; i < n; i++)
		put(t, keys[i], (uint32_t)i + 100);
	assert_int_equal(t->count, n);
	for (size_t i = 0; i < n; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(t, keys[i]);
		assert_non_null(e);
		assert_int_equal(e->seg, i + 100);
	}
	/* Neighbours of present keys are absent. */
	assert_null(pmd_ftab_lookup(t, 2));
	assert_null(pmd_ftab_lookup(t, 65));
	assert_null(pmd_ftab_lookup(t, (UINT64_C(1) << 40) + 1));

	for (size_t i = 0; i < n; i++) {
		pmd_ftab_remove(t, keys[i]);
		assert_null(pmd_ftab_lookup(t, keys[i]));
	}
	assert_int_equal(t->count, 0);
	/* The last removal pruned every node. */
	assert_null(t->root);
	assert_int_equal(t->height, 0);
}

static void next_walks_in_order(void **state)
{
	struct pmd_ftab *t = *state;
	frame_t want[] = { 3, 64, 65, 1000, 70000, UINT64_C(1) << 33 };
	frame_t f = 0;
	struct pmd_frame *e;
	size_t i = 0;

	for (size_t k = sizeof(want) / sizeof(want[0]); k-- > 0;)
		put(t, want[k], (uint32_t)k);
	while (pmd_ftab_next(t, &f, &e)) {
		assert_true(i < sizeof(want) / sizeof(want[0]));
		assert_int_equal(f, want[i]);
		assert_int_equal(e->seg, i);
		i++;
		f++;
	}
	assert_int_equal(i, sizeof(want) / sizeof(want[0]));

	f = 66;
	assert_true(pmd_ftab_next(t, &f, &e));
	assert_int_equal(f, 1000);
	f = (UINT64_C(1) << 33) + 1;
	assert_false(pmd_ftab_next(t, &f, &e));
}

static void insert_zeroes_a_reused_entry(void **state)
{
	struct pmd_ftab *t = *state;
	struct pmd_frame *e = put(t, 7, 42);

	e->flags = 3;
	e->gen = 9;
	put(t, 8, 1); /* keeps the leaf alive */
	pmd_ftab_remove(t, 7);
	e = put(t, 7, 0);
	assert_int_equal(e->flags, 0);
	assert_int_equal(e->gen, 0);
}

static void dense_run_against_model(void **state)
{
	struct pmd_ftab *t = *state;
	enum { N = 5000 };
	static uint8_t model[N];
	unsigned seed = 12345;

	for (int round = 0; round < 40000; round++) {
		seed = seed * 1103515245u + 12345u;
		frame_t f = (seed >> 8) % N;
		if (model[f]) {
			pmd_ftab_remove(t, f);
			model[f] = 0;
		} else {
			put(t, f, (uint32_t)f);
			model[f] = 1;
		}
	}
	uint64_t count = 0;
	for (frame_t f = 0; f < N; f++) {
		struct pmd_frame *e = pmd_ftab_lookup(t, f);
		assert_int_equal(!!e, model[f]);
		if (e) {
			assert_int_equal(e->seg, f);
			count++;
		}
	}
	assert_int_equal(t->count, count);
}

/* Look-ups through a cursor find what plain look-ups find, walking up,
 * down and jumping, over dense runs, holes, leaf edges and keys far
 * apart (the tree grows under the cursor between walks). */
static void cursor_agrees_with_lookup(void **state)
{
	struct pmd_ftab *t = *state;
	const frame_t far[] = { 0, 63, 64, 127, 4095, 4096, 1u << 20,
				(frame_t)1 << 40, UINT64_MAX - 64,
				UINT64_MAX };
	unsigned seed = 7;

	for (frame_t f = 0; f < 300; f++)
		if (f % 7 != 3)
			put(t, f, (uint32_t)f + 1);
	for (int round = 0; round < 3; round++) {
		struct pmd_ftab_cursor cur = { 0 };

		for (frame_t f = 0; f < 320; f++)
			assert_ptr_equal(pmd_ftab_lookup_at(t, &cur, f),
					 pmd_ftab_lookup(t, f));
		for (frame_t f = 320; f-- > 0;)
			assert_ptr_equal(pmd_ftab_lookup_at(t, &cur, f),
					 pmd_ftab_lookup(t, f));
		for (int i = 0; i < 2000; i++) {
			frame_t f = i % 3 ? (frame_t)rand_r(&seed) % 400
					  : far[rand_r(&seed) % 10];
			assert_ptr_equal(pmd_ftab_lookup_at(t, &cur, f),
					 pmd_ftab_lookup(t, f));
		}
		put(t, far[2 * round + 5], 99); /* the next round's tree */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(empty_table_finds_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(insert_lookup_remove_sparse_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(next_walks_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(insert_zeroes_a_reused_entry, setup, teardown),
		cmocka_unit_test_setup_teardown(dense_run_against_model, setup, teardown),
		cmocka_unit_test_setup_teardown(cursor_agrees_with_lookup, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
