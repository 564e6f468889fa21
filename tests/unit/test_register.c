/* SPDX-License-Identifier: Apache-2.0 */
/* The register stage's pure parts: parameter checks, share entries, AMI
 * names, the journaled ids a resumed stage reuses, copy tokens, the block
 * device mapping, defaults taken from earlier stages' facts.  The calls
 * against EC2 are covered by tests/integration/out_register.sh. */
#include "testutil.h"

#include "../../stages/register.c"

static void test_share_kinds(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		enum reg_share_kind k;
	} cases[] = {
		{ "111122223333", REG_SHARE_ACCOUNT },
		{ "11112222333", REG_SHARE_BAD },
		{ "1111222233334", REG_SHARE_BAD },
		{ "11112222333a", REG_SHARE_BAD },
		{ "public", REG_SHARE_PUBLIC },
		{ "all", REG_SHARE_BAD },
		{ "arn:aws:organizations::123456789012:organization/o-abc123", REG_SHARE_ORG },
		{ "arn:aws-us-gov:organizations::123456789012:organization/o-abc123", REG_SHARE_ORG },
		{ "arn:aws:organizations::123456789012:ou/o-abc123/ou-ab12-cd34", REG_SHARE_OU },
		{ "arn:aws:organizations::123456789012:organization/", REG_SHARE_BAD },
		{ "arn:aws:organizations::12345:organization/o-abc123", REG_SHARE_BAD },
		{ "arn:aws:iam::123456789012:root", REG_SHARE_BAD },
		{ "", REG_SHARE_BAD },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		if (reg_share_kind(cases[i].s) != cases[i].k)
			fail_msg("share '%s': got %d, want %d", cases[i].s, reg_share_kind(cases[i].s), cases[i].k);
	}
}

static void test_names(void **state)
{
	(void)state;
	assert_true(reg_name_valid("debian-12-20240101"));
	assert_true(reg_name_valid("my image (v1) [x86_64] @ team/a.b'c_d"));
	assert_false(reg_name_valid("ab"));
	assert_false(reg_name_valid("debian:12"));
	assert_false(reg_name_valid("name*glob"));
	char long_name[130];
	memset(long_name, 'a', 129);
	long_name[129] = '\0';
	assert_false(reg_name_valid(long_name));
	long_name[128] = '\0';
	assert_true(reg_name_valid(long_name));
}

static void test_check(void **state)
{
	(void)state;
	static const struct {
		const char *params;
		const char *error; /* substring, NULL: accepted */
	} cases[] = {
		{ "{}", NULL },
		{ "{\"virtualization\":\"hvm\",\"ena\":true,\"sriov\":true,\"boot_mode\":\"uefi\",\"tpm\":true}", NULL },
		{ "{\"virtualization\":\"paravirtual\",\"kernel_id\":\"aki-1\"}", NULL },
		{ "{\"virtualization\":\"paravirtual\",\"ena\":true}", "ena and sriov need virtualization: hvm" },
		{ "{\"virtualization\":\"paravirtual\",\"boot_mode\":\"uefi\"}", "boot_mode and tpm need" },
		{ "{\"kernel_id\":\"aki-1\"}", "kernel_id is for virtualization: paravirtual" },
		{ "{\"tpm\":true,\"boot_mode\":\"legacy-bios\"}", "tpm needs boot_mode: uefi" },
		{ "{\"snapshot_id\":\"snap-1\",\"image_location\":\"b/x.manifest.xml\"}", "not both" },
		{ "{\"ephemeral\":25}", "ephemeral must be 0 to 24" },
		{ "{\"name\":\"a:b\"}", "name 'a:b' is not a valid AMI name" },
		{ "{\"share\":[\"111122223333\",\"public\"]}", NULL },
		{ "{\"share\":[\"111122223333\",\"everyone\"]}", "share: 'everyone'" },
		{ "{\"copy_to\":[\"us-east-1\",\"eu-west-2\"],\"kms_keys\":{\"eu-west-2\":\"alias/x\"}}", NULL },
		{ "{\"copy_to\":[\"us-east-1\"],\"kms_keys\":{\"eu-west-2\":\"alias/x\"}}",
		  "kms_keys: region 'eu-west-2' is not in copy_to" },
		{ "{\"copy_to\":[\"US East\"]}", "copy_to: 'US East' is not a region name" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		json_t *p = test_json(cases[i].params);
		struct af_error *err = NULL;
		int rc = reg_check(p, &err);
		if (!cases[i].error && rc != 0)
			fail_msg("%s refused: %s", cases[i].params, af_error_msg(err));
		if (cases[i].error && (rc == 0 || !strstr(af_error_msg(err), cases[i].error)))
			fail_msg("%s: got %s, want an error with '%s'", cases[i].params,
				 rc == 0 ? "success" : af_error_msg(err), cases[i].error);
		af_error_free(err);
		json_decref(p);
	}
}

static void test_journaled(void **state)
{
	(void)state;
	json_t *res = test_json("[{\"kind\":\"ami\",\"region\":\"eu-west-1\",\"image_id\":\"ami-1\"},"
			"{\"kind\":\"ami-copy\",\"region\":\"us-east-1\",\"image_id\":\"ami-2\"},"
			"{\"kind\":\"ami\",\"region\":\"eu-west-1\",\"image_id\":\"ami-3\"},"
			"{\"blocks\":[1,2,3]}]");
	assert_string_equal(reg_journaled(res, "ami", "eu-west-1"), "ami-3");
	assert_string_equal(reg_journaled(res, "ami-copy", "us-east-1"), "ami-2");
	assert_null(reg_journaled(res, "ami", "us-east-1"));
	assert_null(reg_journaled(res, "ami-copy", "eu-west-1"));
	assert_null(reg_journaled(NULL, "ami", "eu-west-1"));
	json_decref(res);
}

static void test_copy_token(void **state)
{
	(void)state;
	char a[37], b[37], c[37], d[37];
	const char *k1 = "1ed9a2f0cd7213d81c98f97c89425dcae4c18cfaa1eba2bb4178b588efb4ec6c";
	const char *k2 = "2ed9a2f0cd7213d81c98f97c89425dcae4c18cfaa1eba2bb4178b588efb4ec6c";
	reg_copy_token(k1, "us-east-1", a);
	reg_copy_token(k1, "us-east-1", b);
	reg_copy_token(k1, "us-west-2", c);
	reg_copy_token(k2, "us-east-1", d);
	assert_int_equal(strlen(a), 36); /* ClientToken: at most 64 ASCII characters */
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_string_not_equal(a, d);
}

static void test_times(void **state)
{
	(void)state;
	assert_int_equal(reg_parse_time("2024-05-01T12:00:00.000Z"), 1714564800);
	assert_int_equal(reg_parse_time("2024-05-01T12:00:00Z"), 1714564800);
	assert_int_equal(reg_parse_time("yesterday"), 0);
	assert_int_equal(reg_parse_time(NULL), 0);
	char buf[32];
	reg_format_time(1714564800 + 90 * 86400, buf);
	assert_string_equal(buf, "2024-07-30T12:00:00Z");
}

static void test_facts_defaults(void **state)
{
	(void)state;
	json_t *f = test_json("{\"bootloader.type\":\"grub\",\"bootloader.firmware\":\"both\"}");
	json_t *none = test_json("{}");
	json_t *pv = test_json("{\"virtualization\":\"paravirtual\"}");
	json_t *hvm = test_json("{\"virtualization\":\"hvm\"}");
	json_t *pvf = test_json("{\"bootloader.type\":\"pvgrub\"}");
	assert_string_equal(reg_default_boot_mode(f), "uefi-preferred");
	assert_null(reg_default_boot_mode(none));
	assert_false(reg_is_pv(none, f));
	assert_true(reg_is_pv(none, pvf));
	assert_false(reg_is_pv(hvm, pvf));
	assert_true(reg_is_pv(pv, none));
	json_decref(f);
	json_decref(none);
	json_decref(pv);
	json_decref(hvm);
	json_decref(pvf);
}

static void test_bdm(void **state)
{
	(void)state;
	json_t *p = test_json("{\"volume_size\":1610612736,\"ephemeral\":2,\"delete_on_termination\":false,"
		      "\"volume_type\":\"io2\",\"iops\":3000}");
	struct stage_ctx ctx = { .params = p };
	struct reg r = { .ctx = &ctx, .p = p, .snapshot_id = "snap-1" };
	struct ec2_block_device bdm[1 + REG_MAX_EPHEMERAL];
	char names[REG_MAX_EPHEMERAL][2][16];
	assert_int_equal(reg_bdm(&r, bdm, names), 3);
	assert_string_equal(bdm[0].device_name, "/dev/xvda");
	assert_string_equal(bdm[0].snapshot_id, "snap-1");
	assert_string_equal(bdm[0].volume_type, "io2");
	assert_int_equal(bdm[0].volume_size, 2); /* 1.5 GiB rounded up */
	assert_int_equal(bdm[0].iops, 3000);
	assert_int_equal(bdm[0].delete_on_termination, 0);
	assert_string_equal(bdm[1].device_name, "/dev/sdb");
	assert_string_equal(bdm[1].virtual_name, "ephemeral0");
	assert_string_equal(bdm[2].device_name, "/dev/sdc");
	assert_string_equal(bdm[2].virtual_name, "ephemeral1");
	assert_null(bdm[2].snapshot_id);

	/* paravirtual: /dev/sda1; instance-store: no EBS root mapping */
	r.pv = true;
	json_t *q = test_json("{}");
	r.p = q;
	assert_int_equal(reg_bdm(&r, bdm, names), 1);
	assert_string_equal(bdm[0].device_name, "/dev/sda1");
	assert_int_equal(bdm[0].volume_size, 0);
	assert_string_equal(bdm[0].volume_type, "gp3");
	assert_int_equal(bdm[0].delete_on_termination, 1);
	r.snapshot_id = NULL;
	r.location = "bucket/x/img.manifest.xml";
	assert_int_equal(reg_bdm(&r, bdm, names), 0);
	json_decref(p);
	json_decref(q);
}

static void test_registered(void **state)
{
	(void)state;
	const struct stage_type *t = registry_find("register");
	assert_non_null(t);
	assert_ptr_equal(t, &stage_register);
	assert_true(t->flags & STAGE_REMOTE);
	assert_true(t->flags & STAGE_NETWORK);
	assert_false(t->flags & STAGE_NEEDS_MOUNT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_share_kinds), cmocka_unit_test(test_names),
		cmocka_unit_test(test_check),       cmocka_unit_test(test_journaled),
		cmocka_unit_test(test_copy_token),  cmocka_unit_test(test_times),
		cmocka_unit_test(test_facts_defaults), cmocka_unit_test(test_bdm),
		cmocka_unit_test(test_registered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
