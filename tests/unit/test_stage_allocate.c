/* SPDX-License-Identifier: Apache-2.0 */
/* allocate: its parameter check; then, as root, a sparse image file made
 * for real, and the files and devices it refuses. */
#include "stagetest.h"

static void test_allocate(void **state)
{
	/* The parameter check needs no root. */
	struct af_error *err = NULL;
	json_t *params = json_pack("{s:i, s:s}", "size", 1, "device", "/dev/x");
	assert_int_equal(registry_find("allocate")->check(params, &err), -1);
	assert_string_equal(af_error_msg(err), "allocate takes size or device, not both");
	af_error_clear(&err);
	json_decref(params);
	REQUIRE_ROOT();
	struct fixture *f = *state;
	expect_ok(run_stage(f, "allocate", "{\"size\": 268435456}", NULL, NULL));
	struct stat st;
	assert_int_equal(stat(f->image, &st), 0);
	assert_int_equal(st.st_size, 256 * MiB);
	assert_int_equal(st.st_blocks, 0);
	assert_int_equal(fact_int(f, "disk.size"), 256 * MiB);
	assert_int_equal(fact_int(f, "root.offset"), 0);
	assert_string_equal(fact_str(f, "partition.table"), "none");
	assert_false(json_is_true(json_object_get(f->facts, "disk.is_device")));
	/* A directory in the way cannot be replaced. */
	char *d = path_join(f->dir, "adir");
	assert_int_equal(mkdir(d, 0755), 0);
	expect_error(run_stage(f, "allocate", "{\"size\": 268435456}", d, NULL), "is not a regular file");
	free(d);
	expect_error(run_stage(f, "allocate", "{\"device\": \"/dev/null\"}", NULL, NULL), "is not a block device");
	/* The disk holding / is mounted: refused. */
	char *src = sh("findmnt -n -o SOURCE / | sed 's/\\[.*//'");
	src[strcspn(src, "\n")] = '\0';
	if (stat(src, &st) == 0 && S_ISBLK(st.st_mode)) {
		char *p = xasprintf("{\"device\": \"%s\"}", src);
		expect_error(run_stage(f, "allocate", p, NULL, NULL), "is in use");
		free(p);
	}
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_allocate, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
