/* SPDX-License-Identifier: Apache-2.0 */
/* The register stage's expire_after: the spans `ami --expire-after` takes
 * (when.h), refused at load time when unreadable, counted from the AMI's
 * creation (calendar months clamped to the month's last day). */
#include "testutil.h"

#include "../../stages/register.c"

static void test_check_spans(void **state)
{
	(void)state;
	static const struct {
		const char *after;
		bool ok;
	} cases[] = {
		{ "90d", true }, { "2w", true }, { "3mo", true }, { "1y", true }, { "+1 week", true },
		{ "+3 months", true }, { "12h", true }, { "3 fortnights", false }, { "soon", false },
		{ "", false }, { "2026-12-31", false },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *text = xasprintf("{\"expire_after\": \"%s\"}", cases[i].after);
		json_t *p = test_json(text);
		struct af_error *e = NULL;
		int rc = reg_check(p, &e);
		if ((rc == 0) != cases[i].ok)
			fail_msg("expire_after '%s': %s", cases[i].after, e ? af_error_msg(e) : "accepted");
		if (rc < 0)
			assert_non_null(strstr(af_error_msg(e), "expire_after"));
		af_error_free(e);
		json_decref(p);
	}
}

/* The expiry reg_set_expiry computes for AFTER from an AMI created at CREATED. */
static void expect_expiry(const char *after, const char *created, const char *want)
{
	_cleanup_free_ char *text = xasprintf("{\"expire_after\": \"%s\"}", after);
	json_t *p = test_json(text);
	struct aws_tag tags[2];
	struct reg r = { .p = p, .tags = tags };
	struct ec2_image img = { .creation_date = (char *)created };
	reg_set_expiry(&r, &img);
	if (!want) {
		assert_int_equal(r.n_tags, 0);
		assert_int_equal(r.expires, 0);
	} else {
		assert_int_equal(r.n_tags, 1);
		assert_string_equal(tags[0].key, "amiforge:expires");
		assert_string_equal(tags[0].value, want);
	}
	json_decref(p);
}

static void test_expiry_from_creation(void **state)
{
	(void)state;
	expect_expiry("2w", "2026-11-30T10:00:00.000Z", "2026-12-14T10:00:00Z");
	expect_expiry("+1 week", "2026-11-30T10:00:00.000Z", "2026-12-07T10:00:00Z");
	expect_expiry("3mo", "2026-11-30T10:00:00.000Z", "2027-02-28T10:00:00Z");
	expect_expiry("1y", "2028-02-29T00:00:00.000Z", "2029-02-28T00:00:00Z");
	expect_expiry("90d", "2026-01-01T00:00:00.000Z", "2026-04-01T00:00:00Z");
	expect_expiry("0d", "2026-01-01T00:00:00.000Z", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_spans),
		cmocka_unit_test(test_expiry_from_creation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
