/* SPDX-License-Identifier: Apache-2.0 */
/* partition: the geometry planned for mbr and gpt, the parameter check;
 * then, as root, an MBR written for real (the GPT case is in
 * test_stage_mkfs.c, before mkfs).  The stage file is included so its
 * static helpers can be tested. */
#include "stagetest.h"

#include "../../stages/partition.c"

/* ---- geometry ---- */

static void test_partition_plan(void **state)
{
	struct part_plan p;
	struct af_error *err = NULL;
	assert_int_equal(partition_plan(false, 2 * GiB, 0, false, 0, &p, &err), 0);
	assert_int_equal(p.root_off, MiB);
	assert_int_equal(p.root_size, 2 * GiB - MiB);
	assert_int_equal(p.bios_size + p.esp_size, 0);
	/* GPT keeps its backup at the end: the root ends one MiB earlier. */
	assert_int_equal(partition_plan(true, 2 * GiB, 256 * MiB, true, 0, &p, &err), 0);
	assert_int_equal(p.bios_off, MiB);
	assert_int_equal(p.bios_size, MiB);
	assert_int_equal(p.esp_off, 2 * MiB);
	assert_int_equal(p.esp_size, 256 * MiB);
	assert_int_equal(p.root_off, 258 * MiB);
	assert_int_equal(p.root_size, 2 * GiB - 259 * MiB);
	/* root_size and an unaligned ESP are rounded up to whole MiB. */
	assert_int_equal(partition_plan(true, GiB, 100 * MiB + 1, false, 512 * MiB - 5, &p, &err), 0);
	assert_int_equal(p.esp_size, 101 * MiB);
	assert_int_equal(p.root_off, 102 * MiB);
	assert_int_equal(p.root_size, 512 * MiB);
	assert_int_equal(partition_plan(false, GiB, 0, false, GiB, &p, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "does not fit"));
	af_error_clear(&err);
	assert_int_equal(partition_plan(true, 2 * MiB, 0, true, 0, &p, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "at least 1MiB"));
	af_error_clear(&err);
	/* An ESP needs a GPT. */
	json_t *params = json_pack("{s:s, s:i}", "table", "mbr", "esp", 1);
	assert_int_equal(partition_check(params, &err), -1);
	af_error_clear(&err);
	json_decref(params);
	/* Disk ids: the UUID derived from the key, in upper case. */
	char a[37], P[37];
	uuid_derive("0123abcd", "fs-uuid", a);
	uuid_derive_upper("0123abcd", "fs-uuid", P);
	assert_true(strcasecmp(P, a) == 0);
}

/* ---- run for real ---- */

static void test_partition_mbr(void **state)
{
	REQUIRE_ROOT();
	struct fixture *f = *state;
	expect_ok(run_stage(f, "allocate", "{\"size\": 268435456}", NULL, NULL));
	expect_ok(run_stage(f, "partition", "{\"table\": \"mbr\"}", NULL, NULL));
	assert_int_equal(fact_int(f, "root.offset"), MiB);
	assert_int_equal(fact_int(f, "root.size"), 255 * MiB);
	assert_int_equal(fact_int(f, "root.partnum"), 1);
	char *out = sh("sfdisk -d %s", f->image);
	assert_non_null(strstr(out, "label: dos"));
	assert_non_null(strstr(out, "start=        2048, size=      522240, type=83, bootable"));
	assert_non_null(strstr(out, fact_str(f, "disk.id")));
	free(out);
	/* Same key, same bytes. */
	char *img2 = path_join(f->dir, "disk2.img");
	expect_ok(run_stage(f, "allocate", "{\"size\": 268435456}", img2, NULL));
	expect_ok(run_stage(f, "partition", "{\"table\": \"mbr\"}", img2, NULL));
	free(sh("cmp -n 1048576 %s %s", f->image, img2));
	free(img2);
	expect_error(run_stage(f, "partition", "{\"table\": \"mbr\", \"root_size\": 536870912}", NULL, NULL),
		     "does not fit");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_partition_plan),
		cmocka_unit_test_setup_teardown(test_partition_mbr, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
