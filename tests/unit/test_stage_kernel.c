/* SPDX-License-Identifier: Apache-2.0 */
/* kernel: which installed kernel is picked, and the default package per
 * architecture.  The stage file is included so its static helpers can be
 * tested. */
#include "stagetest.h"

#include "../../stages/kernel.c"

static void test_kernel_pick(void **state)
{
	char *names[] = { "config-6.1.0-18-amd64", "vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-18-amd64",
			  "initrd.img-6.1.0-18-amd64", "vmlinuz-6.1.0-20-amd64.dpkg-tmp", "vmlinuz" };
	assert_string_equal(kernel_pick(names, ARRAY_SIZE(names)), "6.1.0-18-amd64");
	assert_null(kernel_pick(names, 1));
	assert_string_equal(kernel_default_package("arm64"), "linux-image-arm64");
	assert_string_equal(kernel_default_package("x86_64"), "linux-image-amd64");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_pick),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
