/* SPDX-License-Identifier: Apache-2.0 */
/* S3: addressing styles, Content-MD5, ListObjectsV2 parsing. */
#include "testutil.h"

#include "amiforge/aws/s3.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

static void test_urls(void **state)
{
	static const struct {
		const char *endpoint;
		bool path_style;
		const char *bucket, *key, *query, *want;
	} cases[] = {
		{ "https://s3.eu-west-1.amazonaws.com", false, "my-bucket", "a/b c+d.img", NULL,
		  "https://my-bucket.s3.eu-west-1.amazonaws.com/a/b%20c%2Bd.img" },
		{ "https://s3.eu-west-1.amazonaws.com", false, "my-bucket", NULL, "list-type=2",
		  "https://my-bucket.s3.eu-west-1.amazonaws.com/?list-type=2" },
		/* dots break the TLS wildcard, upper case is not DNS: path-style */
		{ "https://s3.eu-west-1.amazonaws.com", false, "my.bucket", "k", NULL,
		  "https://s3.eu-west-1.amazonaws.com/my.bucket/k" },
		{ "https://s3.eu-west-1.amazonaws.com", false, "MyBucket", "k", NULL,
		  "https://s3.eu-west-1.amazonaws.com/MyBucket/k" },
		{ "http://127.0.0.1:4568", true, "b", "x/y.part.0", "uploads",
		  "http://127.0.0.1:4568/b/x/y.part.0?uploads" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct s3_client c = { .region = "eu-west-1", .endpoint = (char *)cases[i].endpoint,
				       .path_style = cases[i].path_style };
		_cleanup_free_ char *u = s3_url(&c, cases[i].bucket, cases[i].key, cases[i].query);
		assert_string_equal(u, cases[i].want);
	}
}

static void test_content_md5(void **state)
{
	char md5[25];
	s3_content_md5("hello", 5, md5);
	assert_string_equal(md5, "XUFAKrxLKna5cZ2REBfFkg==");
}

static void test_parse_list(void **state)
{
	static const char p1[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
		"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
		"<IsTruncated>true</IsTruncated><NextContinuationToken>tok/1=</NextContinuationToken>"
		"<Contents><Key>img/a.part.0</Key><Size>10485760</Size><ETag>&quot;abc&quot;</ETag>"
		"<LastModified>2024-01-01T00:00:00.000Z</LastModified></Contents>"
		"<Contents><Key>Code</Key><Size>0</Size></Contents></ListBucketResult>";
	static const char p2[] = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
	static const char bad[] = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
	_cleanup_error_ struct af_error *err = NULL;
	struct s3_object_list l = { 0 };
	char *next = NULL;
	assert_int_equal(s3_parse_list_page(p1, strlen(p1), &l, &next, &err), 0);
	assert_string_equal(next, "tok/1=");
	free(next);
	assert_int_equal(s3_parse_list_page(p2, strlen(p2), &l, &next, &err), 0);
	assert_null(next);
	assert_int_equal(l.n, 2);
	assert_string_equal(l.v[0].key, "img/a.part.0");
	assert_int_equal(l.v[0].size, 10485760);
	assert_string_equal(l.v[0].etag, "abc");
	assert_string_equal(l.v[1].key, "Code");
	assert_int_equal(s3_parse_list_page(bad, strlen(bad), &l, &next, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "without NextContinuationToken"));
	s3_object_list_release(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_content_md5),
		cmocka_unit_test(test_parse_list),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
