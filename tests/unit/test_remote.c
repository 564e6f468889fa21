/* SPDX-License-Identifier: Apache-2.0 */
/* The remote store's address: s3://BUCKET[/PREFIX], and what is refused. */
#include "testutil.h"

#include "amiforge/error.h"
#include "amiforge/remote.h"

static void parses(const char *url, const char *bucket, const char *prefix)
{
	char *b = NULL, *p = NULL;
	struct af_error *err = NULL;
	assert_int_equal(remote_parse_url(url, &b, &p, &err), 0);
	assert_null(err);
	assert_string_equal(b, bucket);
	assert_string_equal(p, prefix);
	free(b);
	free(p);
}

static void refused(const char *url, const char *words)
{
	char *b = NULL, *p = NULL;
	struct af_error *err = NULL;
	assert_int_equal(remote_parse_url(url, &b, &p, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(af_error_msg(err), words));
	assert_non_null(strstr(af_error_msg(err), "s3://BUCKET/PREFIX"));
	assert_null(b);
	af_error_free(err);
}

static void test_urls(void **state)
{
	parses("s3://my-bucket", "my-bucket", "");
	parses("s3://my-bucket/", "my-bucket", "");
	parses("s3://my.bucket/ci", "my.bucket", "ci/");
	parses("s3://abc/ci/amiforge/", "abc", "ci/amiforge/");
	/* Empty segments name the same prefix: keys never hold "//". */
	parses("s3://abc//ci///x", "abc", "ci/x/");
}

static void test_refused(void **state)
{
	refused("https://abc/x", "not an s3:// URL");
	refused("abc/x", "not an s3:// URL");
	refused("s3://", "not a valid S3 bucket name");
	refused("s3://ab/x", "not a valid S3 bucket name");
	refused("s3://My_Bucket/x", "not a valid S3 bucket name");
	refused("s3://abc/ci/../other", "'..' in the prefix");
}

static void test_name(void **state)
{
	struct remote r = { .prefix = (char *)"ci/" };
	char *n = remote_name(&r, "states/%s/journal", "web");
	assert_string_equal(n, "ci/states/web/journal");
	free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
