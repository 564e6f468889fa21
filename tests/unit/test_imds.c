/* SPDX-License-Identifier: Apache-2.0 */
/* IMDS: role credential documents; a disabled or unreachable service is
 * "not available" quickly, not an error. */
#include "testutil.h"

#include "amiforge/aws/creds.h"
#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

static void test_parse_credentials(void **state)
{
	static const char doc[] = "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : "
		"\"2017-05-17T09:09:54Z\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAX\",\n"
		"  \"SecretAccessKey\" : \"sek\",\n  \"Token\" : \"tok\",\n  \"Expiration\" : "
		"\"2017-05-17T15:09:54Z\"\n}";
	_cleanup_error_ struct af_error *err = NULL;
	struct aws_creds c;
	assert_int_equal(imds_parse_credentials(doc, "r", &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAX");
	assert_string_equal(c.secret_access_key, "sek");
	assert_string_equal(c.session_token, "tok");
	assert_int_equal((long long)c.expiration, 1495033794LL);
	assert_string_equal(c.source, "instance metadata role 'r'");
	aws_creds_release(&c);

	static const char *const bad[] = {
		"{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\"}",
		"{\"AccessKeyId\":\"a\"}",
		"{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Expiration\":\"soon\"}",
		"[]",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(imds_parse_credentials(bad[i], "r", &c, &err), -1);
		assert_non_null(strstr(af_error_msg(err), "role 'r'"));
		af_error_clear(&err);
	}
}

static void test_unavailable(void **state)
{
	_cleanup_error_ struct af_error *err = NULL;
	char *body = NULL;
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	struct imds_client *cl = imds_client_new("http://127.0.0.1:9");
	assert_int_equal(imds_get(cl, "meta-data/instance-id", &body, &err), 1);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	/* port 9 (discard) refuses at once on 127.0.0.1 */
	double t0 = now_monotonic();
	assert_int_equal(imds_get(cl, "meta-data/instance-id", &body, &err), 1);
	assert_true(now_monotonic() - t0 < 5);
	assert_null(err);
	imds_client_free(cl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_credentials),
		cmocka_unit_test(test_unavailable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
