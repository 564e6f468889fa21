/* SPDX-License-Identifier: Apache-2.0 */
/* files: the parameter check, template expansion at load time, and, on a
 * temporary tree (no root needed), destinations resolved and written inside
 * an image.  The stage file is included so its static helpers can be
 * tested. */
#include "stagetest.h"

#include "../../stages/files.c"

static void test_files_check(void **state)
{
	static const char *const bad[] = {
		"{\"source\": \"/r/a\", \"destination\": \"etc/motd\"}",
		"{\"source\": \"/r/a\", \"destination\": \"/etc/../../tmp/x\"}",
		"{\"source\": \"/r/a\", \"destination\": \"/etc/..\"}",
		"{\"source\": \"/r/a\", \"destination\": \"/etc/motd\", \"mode\": \"0689\"}",
		"{\"source\": \"/r/a\", \"destination\": \"/etc/motd\", \"owner\": \":adm\"}",
		"{\"source\": \"/r/a\", \"items\": [{\"source\": \"/r/a\", \"destination\": \"/x\"}]}",
		"{\"items\": []}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *p = load_json(bad[i]);
		struct af_error *err = NULL;
		assert_int_equal(files_check(p, &err), -1);
		af_error_free(err);
		json_decref(p);
	}
	json_t *p = load_json("{\"source\": \"/r/a\", \"destination\": \"/etc/a..b/\", \"mode\": \"0640\", \"owner\": \"admin:adm\"}");
	struct af_error *err = NULL;
	assert_int_equal(files_check(p, &err), 0);
	json_decref(p);
}

static void test_files_template(void **state)
{
	char *dir = test_mkdtemp();
	write_str(dir, "motd", "host ${HOST}, $$literal, $HOME, ${MISSING:-fallback}\n");
	char *src = path_join(dir, "motd");
	struct vars v;
	vars_init(&v);
	vars_add_default(&v, "HOST", "web-1");
	json_t *p = json_pack("{s:s, s:s, s:b}", "source", src, "destination", "/etc/motd", "template", 1);
	struct af_error *err = NULL;
	assert_int_equal(files_expand(p, &v, &err), 0);
	assert_string_equal(json_string_value(json_object_get(p, FILES_TEXT_KEY)),
			    "host web-1, $literal, $HOME, fallback\n");
	json_decref(p);
	/* An undefined variable is an error at load time, naming the file. */
	write_str(dir, "bad", "${AMIFORGE_TEST_UNDEFINED_VAR}\n");
	char *bad = path_join(dir, "bad");
	p = json_pack("{s:[{s:s, s:s, s:b}]}", "items", "source", bad, "destination", "/x", "template", 1);
	assert_int_equal(files_expand(p, &v, &err), -1);
	assert_non_null(strstr(af_error_msg(err), bad));
	af_error_clear(&err);
	json_decref(p);
	vars_release(&v);
	free(src);
	free(bad);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- destinations inside the image ---- */

static void test_resolve_in_root(void **state)
{
	char *dir = test_mkdtemp();
	char *root = path_join(dir, "root");
	char *outside = path_join(dir, "outside");
	assert_int_equal(mkdir(root, 0755), 0);
	assert_int_equal(mkdir(outside, 0755), 0);
	write_str(root, "usr/lib/x", "x");
	char *p1 = path_join(root, "lib");
	assert_int_equal(symlink("usr/lib", p1), 0);
	char *p2 = path_join(root, "up");
	assert_int_equal(symlink("../../../../../../outside", p2), 0);
	char *p3 = path_join(root, "abs");
	assert_int_equal(symlink(outside, p3), 0);
	int rootfd = open(root, O_PATH | O_DIRECTORY);
	assert_true(rootfd >= 0);
	struct af_error *err = NULL;

	char *r = inroot_resolve(rootfd, "/lib/new/file", &err);
	assert_string_equal(r, "/usr/lib/new/file");
	free(r);
	/* An absolute symlink leads where it would in the booted image. */
	r = inroot_resolve(rootfd, "/abs/file", &err);
	char *want = xasprintf("%s/file", outside);
	assert_string_equal(r, want);
	free(want);
	free(r);
	r = inroot_resolve(rootfd, "/abs", &err);
	free(r);

	r = inroot_resolve(rootfd, "/up/file", &err);
	assert_null(r);
	assert_int_equal(af_error_errno(err), EXDEV);
	assert_non_null(strstr(af_error_msg(err), "the symlink '/up' in the image points outside the image"));
	af_error_clear(&err);
	r = inroot_resolve(rootfd, "/etc/../x", &err);
	assert_null(r);
	af_error_clear(&err);

	/* Writing through the absolute symlink never reaches the host's
	 * directory; where openat2 exists it lands inside the image. */
	int w = inroot_write(rootfd, root, "/abs/planted", "x", 1, 0644, getuid(), getgid(), &err);
	af_error_clear(&err);
	assert_false(exists_at(outside, "planted"));
	if (w == 0) {
		char *inside = xasprintf("%s%s/planted", root, outside);
		struct stat st;
		assert_int_equal(stat(inside, &st), 0);
		free(inside);
	}
	/* A symlink at the destination itself is replaced, not followed. */
	assert_int_equal(inroot_write(rootfd, root, "/up", "y", 1, 0600, getuid(), getgid(), &err), 0);
	struct stat st;
	assert_int_equal(lstat(p2, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	close(rootfd);
	free(p1);
	free(p2);
	free(p3);
	free(root);
	free(outside);
	test_rmdir_r(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_files_check),
		cmocka_unit_test(test_files_template),
		cmocka_unit_test(test_resolve_in_root),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
