/* SPDX-License-Identifier: Apache-2.0 */
/* user: the sudoers drop-in and its name, the parameter check and the
 * passwd lookups.  The stage file is included so its static helpers can be
 * tested. */
#include "stagetest.h"

#include "../../stages/user.c"

static void test_sudoers(void **state)
{
	char *t = user_render_sudoers("admin", "nopasswd");
	assert_string_equal(t, "# written by amiforge (user stage)\nadmin ALL=(ALL:ALL) NOPASSWD: ALL\n");
	free(t);
	t = user_render_sudoers("ops", "password");
	assert_string_equal(t, "# written by amiforge (user stage)\nops ALL=(ALL:ALL) ALL\n");
	free(t);
	assert_null(user_render_sudoers("admin", "none"));
	t = user_sudoers_name("admin");
	/* sudo skips files in sudoers.d whose names hold a '.' or end in '~'. */
	assert_string_equal(t, "/etc/sudoers.d/90-amiforge-admin");
	free(t);
}

static void test_user_check(void **state)
{
	static const char *const bad[] = {
		"{\"name\": \"Admin\"}", "{\"name\": \"ad.min\"}", "{\"name\": \"1admin\"}",
		"{\"name\": \"admin\", \"shell\": \"bash\"}", "{\"name\": \"admin\", \"groups\": [\"wheel x\"]}",
		"{\"name\": \"admin\", \"comment\": \"a:b\"}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *p = load_json(bad[i]);
		struct af_error *err = NULL;
		assert_int_equal(user_check(p, &err), -1);
		af_error_free(err);
		json_decref(p);
	}
	const char *passwd = "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n";
	const char *line = user_db_find(passwd, "admin");
	assert_non_null(line);
	char *home = user_db_field(line, 5);
	assert_string_equal(home, "/home/admin");
	free(home);
	assert_null(user_db_find(passwd, "adm"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sudoers),
		cmocka_unit_test(test_user_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
