/* Unit tests of a segment's slot allocator (pmd/slots.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "slots.h"

static void fills_every_slot_once(void **state)
{
	struct pmd_slots s;
	uint8_t seen[PMD_SEG_SLOTS] = { 0 };

	pmd_slots_init(&s);
	for (unsigned i = 0; i < PMD_SEG_SLOTS; i++) {
		int slot = pmd_slots_alloc(&s);
		assert_true(slot >= 0 && slot < (int)PMD_SEG_SLOTS);
		assert_int_equal(seen[slot], 0);
		seen[slot] = 1;
	}
	assert_int_equal(s.used, PMD_SEG_SLOTS);
	assert_int_equal(pmd_slots_alloc(&s), -1);
	assert_int_equal(pmd_slots_free(&s), 0);
}

static void put_frees_and_alloc_reuses(void **state)
{
	struct pmd_slots s;

	pmd_slots_init(&s);
	for (unsigned i = 0; i < PMD_SEG_SLOTS; i++)
		pmd_slots_alloc(&s);
	assert_true(pmd_slots_put(&s, 300));
	assert_int_equal(s.used, PMD_SEG_SLOTS - 1);
	assert_int_equal(pmd_slots_alloc(&s), 300);
}

static void shared_slot_freed_with_last_reference(void **state)
{
	struct pmd_slots s;
	int slot;

	pmd_slots_init(&s);
	slot = pmd_slots_alloc(&s);
	assert_true(pmd_slots_get(&s, (unsigned)slot));
	assert_true(pmd_slots_get(&s, (unsigned)slot));
	assert_int_equal(s.ref[slot], 3);
	assert_false(pmd_slots_put(&s, (unsigned)slot));
	assert_false(pmd_slots_put(&s, (unsigned)slot));
	assert_int_equal(s.used, 1);
	assert_true(pmd_slots_put(&s, (unsigned)slot));
	assert_int_equal(s.used, 0);
}

static void reference_count_saturates(void **state)
{
	struct pmd_slots s;
	int slot;

	pmd_slots_init(&s);
	slot = pmd_slots_alloc(&s);
	s.ref[slot] = UINT16_MAX - 1;
	assert_true(pmd_slots_get(&s, (unsigned)slot));
	/* One more would wrap: refused, so the caller copies instead. */
	assert_false(pmd_slots_get(&s, (unsigned)slot));
	assert_int_equal(s.ref[slot], UINT16_MAX);
}

static void unref_keeps_slot_until_release(void **state)
{
	struct pmd_slots s;
	int slot;

	/* The pmd drops the last reference, punches later, then releases:
	 * until the release the slot must not be handed out again. */
	pmd_slots_init(&s);
	slot = pmd_slots_alloc(&s);
	assert_true(pmd_slots_unref(&s, (unsigned)slot));
	assert_int_equal(s.used, 1);
	assert_int_not_equal(pmd_slots_alloc(&s), slot);
	pmd_slots_release(&s, (unsigned)slot);
	assert_int_equal(s.used, 1);
	assert_int_equal(pmd_slots_alloc(&s), slot);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fills_every_slot_once),
		cmocka_unit_test(put_frees_and_alloc_reuses),
		cmocka_unit_test(shared_slot_freed_with_last_reference),
		cmocka_unit_test(reference_count_saturates),
		cmocka_unit_test(unref_keeps_slot_until_release),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
