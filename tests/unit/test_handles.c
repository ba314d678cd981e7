/* Unit tests of the handle table (pmd/cap.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cap.h"

static void handles_are_unguessable_and_die_on_remove(void **state)
{
	struct pmd_htab t;
	struct pmd_cap a = { 0 }, b = { 0 };
	container_t ha;

	pmd_htab_init(&t);
	assert_int_equal(pmd_htab_insert(&t, &a), 0);
	ha = a.handle;
	assert_true(ha > UINT32_MAX); /* the generation is in the high half */
	assert_ptr_equal(pmd_htab_lookup(&t, ha), &a);
	for (container_t small = 0; small < 64; small++)
		assert_null(pmd_htab_lookup(&t, small));
	assert_null(pmd_htab_lookup(&t, ha + 1));
	assert_null(pmd_htab_lookup(&t, ha ^ (UINT64_C(1) << 40)));

	pmd_htab_remove(&t, &a);
	assert_null(pmd_htab_lookup(&t, ha));
	/* The index is reused under a new generation: the old handle
	 * stays dead. */
	assert_int_equal(pmd_htab_insert(&t, &b), 0);
	assert_int_equal(b.handle & UINT32_MAX, ha & UINT32_MAX);
	assert_true(b.handle != ha);
	assert_null(pmd_htab_lookup(&t, ha));
	assert_ptr_equal(pmd_htab_lookup(&t, b.handle), &b);
	pmd_htab_remove(&t, &b);
	pmd_htab_fini(&t);
}

static void many_handles(void **state)
{
	enum { N = 1000 };
	static struct pmd_cap caps[N];
	struct pmd_htab t;

	pmd_htab_init(&t);
	for (int i = 0; i < N; i++)
		assert_int_equal(pmd_htab_insert(&t, &caps[i]), 0);
	assert_int_equal(t.count, N);
	for (int i = 0; i < N; i += 2)
		pmd_htab_remove(&t, &caps[i]);
	for (int i = 1; i < N; i += 2)
		assert_ptr_equal(pmd_htab_lookup(&t, caps[i].handle), &caps[i]);
	for (int i = 1; i < N; i += 2)
		pmd_htab_remove(&t, &caps[i]);
	assert_int_equal(t.count, 0);
	pmd_htab_fini(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(handles_are_unguessable_and_die_on_remove),
		cmocka_unit_test(many_handles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
