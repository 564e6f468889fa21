/* SPDX-License-Identifier: Apache-2.0 */
/* packages: the parameter check and, on a temporary tree, what dpkg's
 * status says is installed.  The stage file is included so its static
 * helpers can be tested. */
#include "stagetest.h"

#include "../../stages/packages.c"

static void test_packages_check(void **state)
{
	json_t *p = load_json("{\"install\": [\"-o\"]}");
	struct af_error *err = NULL;
	assert_int_equal(pkg_check(p, &err), -1);
	af_error_clear(&err);
	json_decref(p);
	p = load_json("{}");
	assert_int_equal(pkg_check(p, &err), -1);
	af_error_clear(&err);
	json_decref(p);
	p = load_json("{\"install\": [\"less\", \"libc6:amd64\", \"vim=2:9.0.1378-2\"]}");
	assert_int_equal(pkg_check(p, &err), 0);
	json_decref(p);
	char *root = test_mkdtemp();
	write_str(root, "var/lib/dpkg/status", "Package: less\nStatus: install ok installed\n\n"
						"Package: vim\nStatus: deinstall ok config-files\n\n");
	assert_true(apt_installed(root, "less"));
	assert_true(apt_installed(root, "less=590-2"));
	assert_false(apt_installed(root, "vim"));
	assert_false(apt_installed(root, "les"));
	json_t *want = load_json("[\"less\", \"vim\", \"curl\"]");
	json_t *missing = apt_missing(root, want);
	assert_int_equal(json_array_size(missing), 2);
	assert_string_equal(json_string_value(json_array_get(missing, 0)), "vim");
	json_decref(missing);
	json_decref(want);
	test_rmdir_r(root);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_packages_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
