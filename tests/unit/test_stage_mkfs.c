/* SPDX-License-Identifier: Apache-2.0 */
/* mkfs: UUIDs derived from the stage key, option checks and the feature
 * list; then, as root, allocate and a GPT partition, mkfs at the root
 * partition's offset, and fstab from the facts they leave.  The stage file
 * is included so its static helpers can be tested. */
#include "stagetest.h"

#include "../../stages/mkfs.c"

/* ---- UUIDs ---- */

static void test_uuid_derivation(void **state)
{
	char a[37], b[37], c[37];
	uuid_derive("0123abcd", "fs-uuid", a);
	uuid_derive("0123abcd", "fs-uuid", b);
	uuid_derive("0123abce", "fs-uuid", c);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_true(mkfs_uuid_valid(a));
	assert_int_equal(a[14], '4');
	assert_non_null(strchr("89ab", a[19]));
	assert_true(mkfs_uuid_valid("0F2E4C1A-5B6D-4E7F-8A9B-0C1D2E3F4A5B"));
	assert_false(mkfs_uuid_valid("0f2e4c1a5b6d4e7f8a9b0c1d2e3f4a5b"));
	assert_false(mkfs_uuid_valid("0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5g"));
}

static void test_mkfs_options(void **state)
{
	struct stage_ctx ctx = { .key = "k" };
	struct mkfs_opts o;
	struct af_error *err = NULL;
	struct {
		const char *json;
		const char *msg;
	} cases[] = {
		{ "{\"label\": \"a-label-of-17-byte\"}", "at most 16" },
		{ "{\"uuid\": \"nope\"}", "is not a UUID" },
		{ "{\"type\": \"xfs\"}", "use ext2, ext3 or ext4" },
		{ "{\"pvgrub_compatible\": true, \"inode_size\": 256}", "cannot be read by GRUB legacy" },
		{ "{\"pvgrub_compatible\": true, \"features\": [\"64bit\"]}", "feature '64bit'" },
		{ "{\"inode_size\": 100}", "power of two" },
		{ "{\"reserved_percent\": 51}", "out of range" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		json_t *p = json_loads(cases[i].json, 0, NULL);
		ctx.params = p;
		o = (struct mkfs_opts){ 0 };
		assert_int_equal(mkfs_parse_opts(&ctx, &o, &err), -1);
		if (!strstr(af_error_msg(err), cases[i].msg))
			fail_msg("%s: %s", cases[i].json, af_error_msg(err));
		af_error_clear(&err);
		json_decref(p);
	}
	json_t *p = json_loads("{\"pvgrub_compatible\": true, \"features\": [\"^dir_index\"], "
			       "\"uuid\": \"0F2E4C1A-5B6D-4E7F-8A9B-0C1D2E3F4A5B\"}", 0, NULL);
	ctx.params = p;
	o = (struct mkfs_opts){ 0 };
	assert_int_equal(mkfs_parse_opts(&ctx, &o, &err), 0);
	assert_string_equal(o.uuid, "0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b");
	assert_string_equal(o.label, "rootfs");
	assert_int_equal(o.inode_size, 128);
	assert_int_equal(o.reserved, 1);
	char *f = mkfs_features_arg(&o);
	assert_non_null(strstr(f, "^64bit,^metadata_csum,"));
	assert_true(str_has_suffix(f, ",^dir_index"));
	free(f);
	json_decref(p);
}

/* ---- run for real ---- */

static void test_partition_gpt_mkfs_fstab(void **state)
{
	REQUIRE_ROOT();
	struct fixture *f = *state;
	expect_ok(run_stage(f, "allocate", "{\"size\": 268435456}", NULL, NULL));
	expect_ok(run_stage(f, "partition", "{\"table\": \"gpt\", \"bios_boot\": true, \"esp\": 33554432}", NULL, NULL));
	assert_int_equal(fact_int(f, "bios_boot.partnum"), 1);
	assert_int_equal(fact_int(f, "esp.offset"), 2 * MiB);
	assert_int_equal(fact_int(f, "esp.size"), 32 * MiB);
	assert_int_equal(fact_int(f, "esp.partnum"), 2);
	assert_int_equal(fact_int(f, "root.offset"), 34 * MiB);
	assert_int_equal(fact_int(f, "root.size"), 256 * MiB - 35 * MiB);
	assert_int_equal(fact_int(f, "root.partnum"), 3);
	char *table = sh("sfdisk -d %s", f->image);
	assert_non_null(strstr(table, "label: gpt"));
	assert_non_null(strstr(table, "type=21686148-6449-6E6F-744E-656564454649"));
	assert_non_null(strstr(table, "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"));
	assert_non_null(strstr(table, "start=       69632, size=      452608, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"));

	expect_error(run_stage(f, "mkfs", "{\"label\": \"this-label-is-too-long\"}", NULL, NULL), "at most 16");
	expect_ok(run_stage(f, "mkfs", "{\"label\": \"testroot\", \"pvgrub_compatible\": true}", NULL, NULL));
	assert_string_equal(fact_str(f, "root.fstype"), "ext4");
	assert_string_equal(fact_str(f, "root.label"), "testroot");
	assert_true(json_is_true(json_object_get(f->facts, "root.pvgrub_compatible")));
	const char *uuid = fact_str(f, "root.uuid");
	/* mke2fs with an offset must leave the partition table alone. */
	char *table2 = sh("sfdisk -d %s", f->image);
	assert_string_equal(table, table2);
	free(table);
	free(table2);
	char *probe = sh("blkid -p -O %d -o export %s", 34 * MiB, f->image);
	assert_non_null(strstr(probe, "LABEL=testroot"));
	assert_non_null(strstr(probe, "TYPE=ext4"));
	char *u = xasprintf("\nUUID=%s\n", uuid);
	assert_non_null(strstr(probe, u));
	free(u);
	free(probe);
	char *copy = path_join(f->dir, "root.img");
	free(sh("dd if=%s of=%s bs=1M skip=34 count=221 status=none && e2fsck -fn %s >/dev/null 2>&1", f->image, copy,
		copy));
	char *hdr = sh("dumpe2fs -h %s 2>/dev/null", copy);
	assert_non_null(strstr(hdr, "Inode size:\t          128"));
	assert_null(strstr(hdr, " 64bit"));
	assert_null(strstr(hdr, "metadata_csum"));
	assert_non_null(strstr(hdr, "extent"));
	free(hdr);
	free(copy);

	/* fstab into a plain directory standing in for the mounted root. */
	char *root = path_join(f->dir, "root");
	assert_int_equal(mkdir(root, 0755), 0);
	umask(077);
	expect_ok(run_stage(f, "fstab", "{\"swap\": \"/dev/xvdb\"}", NULL, root));
	char *fstab = path_join(root, "etc/fstab");
	struct stat st;
	assert_int_equal(stat(fstab, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	char *text = read_file(fstab, NULL, NULL);
	assert_non_null(strstr(text, "written by amiforge"));
	assert_non_null(strstr(text, "\nLABEL=testroot\t/\text4\tdefaults\t0\t1\n"));
	assert_non_null(strstr(text, "\n/dev/xvdb\tnone\tswap\tsw,nofail\t0\t0\n"));
	free(text);
	expect_ok(run_stage(f, "fstab", "{\"root_by\": \"uuid\", \"proc\": false}", NULL, root));
	text = read_file(fstab, NULL, NULL);
	u = xasprintf("\nUUID=%s\t/\text4", fact_str(f, "root.uuid"));
	assert_non_null(strstr(text, u));
	assert_null(strstr(text, "proc"));
	free(u);
	free(text);
	/* Facts that disagree with the disk are an error. */
	json_object_set_new(f->facts, "root.label", json_string("other"));
	expect_error(run_stage(f, "fstab", "{}", NULL, root), "'testroot' on disk but 'other'");
	free(fstab);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid_derivation),
		cmocka_unit_test(test_mkfs_options),
		cmocka_unit_test_setup_teardown(test_partition_gpt_mkfs_fstab, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
