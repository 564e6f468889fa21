/* SPDX-License-Identifier: Apache-2.0 */
#include "testutil.h"

#include "amiforge/error.h"
#include "amiforge/when.h"

static time_t span_from(const char *base, const char *span)
{
	time_t t;
	struct when_span s;
	struct af_error *err = NULL;
	assert_int_equal(when_parse_date(base, &t, &err), 0);
	assert_int_equal(when_parse_span(span, &s, &err), 0);
	assert_null(err);
	return when_add(t, &s);
}

static void expect(const char *base, const char *span, const char *want)
{
	char buf[32];
	when_format(span_from(base, span), buf);
	assert_string_equal(buf, want);
}

static void test_spans(void **state)
{
	expect("2026-12-06", "90d", "2027-03-06T00:00:00Z");
	expect("2026-12-06", "2w", "2026-12-20T00:00:00Z");
	expect("2026-12-06", "+1 week", "2026-12-13T00:00:00Z");
	expect("2026-12-06T10:30Z", "12h", "2026-12-06T22:30:00Z");
	expect("2026-11-30", "3mo", "2027-02-28T00:00:00Z");
	expect("2027-11-30", "3 months", "2028-02-29T00:00:00Z");
	expect("2026-12-06T01:02:03Z", "1y", "2027-12-06T01:02:03Z");
	expect("2026-12-06", "45s", "2026-12-06T00:00:45Z");
}

static int span_fails(const char *t)
{
	struct when_span s;
	struct af_error *err = NULL;
	int r = when_parse_span(t, &s, &err);
	if (r < 0) {
		assert_non_null(strstr(af_error_msg(err), "90d"));
		af_error_free(err);
	}
	return r;
}

static int date_fails(const char *t)
{
	time_t v;
	struct af_error *err = NULL;
	int r = when_parse_date(t, &v, &err);
	if (r < 0) {
		assert_non_null(strstr(af_error_msg(err), "2026-12-31"));
		af_error_free(err);
	}
	return r;
}

static void test_refused(void **state)
{
	assert_int_equal(span_fails("week"), -1);
	assert_int_equal(span_fails("3 fortnights"), -1);
	assert_int_equal(span_fails("-3d"), -1);
	assert_int_equal(span_fails(""), -1);
	assert_int_equal(date_fails("2026-13-01"), -1);
	assert_int_equal(date_fails("2026-12-31T10:00+02:00"), -1);
	assert_int_equal(date_fails("tomorrow"), -1);
	assert_int_equal(date_fails("2026-12-31 junk"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spans),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
