/* SPDX-License-Identifier: Apache-2.0 */
/* Every stage type is complete and the registry is sorted (git's t1517). */
#include "testutil.h"

#include "amiforge/stage.h"

static void test_sorted_and_complete(void **state)
{
	(void)state;
	size_t n = 0;
	const struct stage_type *const *all = registry_all(&n);
	assert_true(n >= 7);
	for (size_t i = 0; i < n; i++) {
		const struct stage_type *t = all[i];
		assert_non_null(t->name);
		assert_non_null(t->summary);
		assert_non_null(t->params);
		assert_non_null(t->run);
		assert_non_null(t->describe); /* what plan says it will do */
		if (i > 0)
			assert_true(strcmp(all[i - 1]->name, t->name) < 0);
		assert_ptr_equal(registry_find(t->name), t);
		/* mounting implies the image; a chroot implies the mount */
		if (t->flags & STAGE_NEEDS_MOUNT)
			assert_true(t->flags & STAGE_NEEDS_IMAGE);
		if (t->flags & STAGE_NEEDS_CHROOT)
			assert_true(t->flags & STAGE_NEEDS_MOUNT);
		for (const struct param_spec *p = t->params; p->name; p++) {
			assert_non_null(p->help);
			if (p->type == PT_ENUM)
				assert_non_null(p->choices);
			if (p->type == PT_LIST || p->type == PT_OBJECT)
				assert_non_null(p->sub);
		}
	}
	assert_null(registry_find("no-such-stage"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sorted_and_complete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
