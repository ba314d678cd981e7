/* Unit tests of the handle table (pmd/core/handles.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "handles.h"

static void handles_are_unguessable_and_die_on_remove(void **state)
{
	struct pmd_htab t;
	/* The table stores pointers it never follows: any will do. */
	static char objs[2];
	struct pmd_cap *a = (struct pmd_cap *)&objs[0];
	struct pmd_cap *b = (struct pmd_cap *)&objs[1];
	container_t ha, hb;

	pmd_htab_init(&t);
	assert_int_equal(pmd_htab_insert(&t, a, &ha), 0);
	assert_true(ha > UINT32_MAX); /* the generation is in the high half */
	assert_ptr_equal(pmd_htab_lookup(&t, ha), a);
	for (container_t small = 0; small < 64; small++)
		assert_null(pmd_htab_lookup(&t, small));
	assert_null(pmd_htab_lookup(&t, ha + 1));
	assert_null(pmd_htab_lookup(&t, ha ^ (UINT64_C(1) << 40)));

	pmd_htab_remove(&t, ha);
	assert_null(pmd_htab_lookup(&t, ha));
	/* The index is reused under a new generation: the old handle
	 * stays dead. */
	assert_int_equal(pmd_htab_insert(&t, b, &hb), 0);
	assert_int_equal(hb & UINT32_MAX, ha & UINT32_MAX);
	assert_true(hb != ha);
	assert_null(pmd_htab_lookup(&t, ha));
	assert_ptr_equal(pmd_htab_lookup(&t, hb), b);
	pmd_htab_remove(&t, hb);
	pmd_htab_fini(&t);
}

static void many_handles(void **state)
{
	enum { N = 1000 };
	static char objs[N];
	static container_t h[N];
	struct pmd_htab t;

	pmd_htab_init(&t);
	for (int i = 0; i < N; i++)
		assert_int_equal(pmd_htab_insert(&t, (struct pmd_cap *)&objs[i],
						 &h[i]), 0);
	assert_int_equal(t.count, N);
	for (int i = 0; i < N; i += 2)
		pmd_htab_remove(&t, h[i]);
	for (int i = 1; i < N; i += 2)
		assert_ptr_equal(pmd_htab_lookup(&t, h[i]), &objs[i]);
	for (int i = 1; i < N; i += 2)
		pmd_htab_remove(&t, h[i]);
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
