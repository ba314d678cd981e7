/* Unit tests of frame accounting (pmd/account.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <cmocka.h>

#include "account.h"

static void admission_reserves_guarantees(void **state)
{
	struct pmd_budget b;
	struct pmd_charge a, c, d;

	pmd_budget_init(&b, 100);
	assert_int_equal(pmd_budget_admit(&b, PMD_ADMIT_REFUSE, 60, 10, &a), 0);
	assert_int_equal(a.guaranteed, 60);
	/* 60 + 60 > 100: refused, or given what is left. */
	assert_int_equal(pmd_budget_admit(&b, PMD_ADMIT_REFUSE, 60, 10, &c), ENOMEM);
	assert_int_equal(b.guaranteed_sum, 60);
	assert_int_equal(pmd_budget_admit(&b, PMD_ADMIT_REMAINDER, 60, 10, &c), 0);
	assert_int_equal(c.guaranteed, 40);
	assert_int_equal(pmd_budget_admit(&b, PMD_ADMIT_REMAINDER, 5, 0, &d), 0);
	assert_int_equal(d.guaranteed, 0);
	assert_true(b.guaranteed_sum <= b.total);
	pmd_budget_leave(&b, &a);
	pmd_budget_leave(&b, &c);
	pmd_budget_leave(&b, &d);
	assert_int_equal(b.guaranteed_sum, 0);
}

static void quota_takes_guaranteed_then_extra(void **state)
{
	struct pmd_budget b;
	struct pmd_charge c;
	struct pmd_quota q;
	bool extra;

	pmd_budget_init(&b, 100);
	pmd_budget_admit(&b, PMD_ADMIT_REFUSE, 2, 3, &c);

	/* Without EXTRA: only the guarantee. */
	pmd_quota_init(&b, &c, false, &q);
	assert_true(pmd_quota_take(&q, &extra));
	assert_false(extra);
	assert_true(pmd_quota_take(&q, &extra));
	assert_false(pmd_quota_take(&q, &extra));

	/* With EXTRA: the guarantee, then up to the extra limit. */
	pmd_quota_init(&b, &c, true, &q);
	for (int i = 0; i < 5; i++) {
		assert_true(pmd_quota_take(&q, &extra));
		assert_int_equal(extra, i >= 2);
		pmd_charge_add(&b, &c, extra);
	}
	assert_false(pmd_quota_take(&q, &extra));
	assert_int_equal(c.allocated, 5);
	assert_int_equal(c.extra_allocated, 3);
	assert_int_equal(b.charged, 5);
	assert_int_equal(b.extra_charged, 3);

	for (int i = 0; i < 5; i++)
		pmd_charge_sub(&b, &c, i >= 2);
	assert_int_equal(b.charged, 0);
	pmd_budget_leave(&b, &c);
}

static void extra_frames_never_eat_guarantees(void **state)
{
	struct pmd_budget b;
	struct pmd_charge a, c;
	struct pmd_quota q;
	bool extra;
	int n = 0;

	pmd_budget_init(&b, 10);
	pmd_budget_admit(&b, PMD_ADMIT_REFUSE, 6, 0, &a);
	pmd_budget_admit(&b, PMD_ADMIT_REFUSE, 0, 100, &c);
	pmd_quota_init(&b, &c, true, &q);
	while (pmd_quota_take(&q, &extra)) {
		assert_true(extra);
		n++;
	}
	/* Only what no guarantee reserves: 10 - 6. */
	assert_int_equal(n, 4);
}

static void squash_returns_the_old_frames_class(void **state)
{
	struct pmd_budget b;
	struct pmd_charge c;
	struct pmd_quota q;
	bool extra;

	pmd_budget_init(&b, 100);
	pmd_budget_admit(&b, PMD_ADMIT_REFUSE, 1, 0, &c);
	pmd_charge_add(&b, &c, false);
	pmd_quota_init(&b, &c, false, &q);
	assert_false(pmd_quota_take(&q, &extra));
	pmd_quota_return(&q, false, false);
	assert_true(pmd_quota_take(&q, &extra));
	assert_false(extra);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(admission_reserves_guarantees),
		cmocka_unit_test(quota_takes_guaranteed_then_extra),
		cmocka_unit_test(extra_frames_never_eat_guarantees),
		cmocka_unit_test(squash_returns_the_old_frames_class),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
