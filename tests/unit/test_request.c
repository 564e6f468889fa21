/* SPDX-License-Identifier: Apache-2.0 */
/* The request module: the signer adds exactly what SigV4 computes, with
 * credentials from the chain; binding sets the hooks; AWS redaction. */
#include <time.h>

#include "testutil.h"

#include "amiforge/aws/creds.h"
#include "amiforge/aws/request.h"
#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define TOKEN "rEqUeStToKeN//////////wEXAMPLE"

static char *home;

static const char *const aws_vars[] = {
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
	"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2",
	"AWS_ENDPOINT_URL_EBS", "AWS_ENDPOINT_URL_S3", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
};

static int setup(void **state)
{
	home = test_mkdtemp();
	setenv("HOME", home, 1);
	for (size_t i = 0; i < ARRAY_SIZE(aws_vars); i++)
		unsetenv(aws_vars[i]);
	/* Never wait for 169.254.169.254 here. */
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	return 0;
}

static int teardown(void **state)
{
	test_rmdir_r(home);
	free(home);
	home = NULL;
	redact_forget_all();
	return 0;
}

/* ---- signing ---- */

static void check_sign(unsigned flags, const char *token)
{
	struct aws_creds c = { .access_key_id = AKID, .secret_access_key = SECRET,
			       .session_token = (char *)token, .source = "test" };
	struct aws_creds_chain *chain = aws_creds_chain_new_static(&c);
	const struct aws_signer s = { .creds = chain, .region = "us-east-1", .service = "ec2",
				      .sigv4_flags = flags, .amz_date = "20150830T123600Z" };
	static const char body[] = "Action=DescribeRegions&Version=2016-11-15";
	const struct sigv4_header h[] = {
		{ "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" },
		{ "Host", "ec2.us-east-1.amazonaws.com" },
	};
	const struct http_sign_input in = {
		.method = "POST", .url = "https://ec2.us-east-1.amazonaws.com/?x=1",
		.host = "ec2.us-east-1.amazonaws.com", .path = "/", .query = "x=1", .headers = h,
		.n_headers = ARRAY_SIZE(h), .body = body, .body_len = strlen(body),
	};
	struct http_header *add = NULL;
	size_t n = 0;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(aws_request_sign((void *)&s, &in, &add, &n, &err), 0);

	/* The same as SigV4 itself gives. */
	const struct sigv4_key key = { AKID, SECRET, token };
	const struct sigv4_request sreq = {
		.method = "POST", .path = "/", .query = "x=1", .headers = h, .n_headers = ARRAY_SIZE(h),
		.body = body, .body_len = strlen(body), .region = "us-east-1", .service = "ec2",
		.amz_date = "20150830T123600Z", .flags = flags,
	};
	struct sigv4_result r;
	assert_int_equal(sigv4_sign(&sreq, &key, &r, &err), 0);
	assert_int_equal(n, r.n_add);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(add[i].name, r.add[i].name);
		assert_string_equal(add[i].value, r.add[i].value);
		free(add[i].name);
		free(add[i].value);
	}
	free(add);
	sigv4_result_release(&r);
	aws_creds_chain_free(chain);
}

static void test_sign_is_sigv4(void **state)
{
	check_sign(0, NULL);
	check_sign(0, TOKEN);
	check_sign(SIGV4_S3, TOKEN);
	check_sign(SIGV4_UNSIGNED_PAYLOAD, NULL);
}

static void test_sign_without_credentials(void **state)
{
	const struct aws_creds_opts co = { .no_imds = true };
	struct aws_creds_chain *chain = aws_creds_chain_new(&co);
	const struct aws_signer s = { .creds = chain, .region = "us-east-1", .service = "ec2" };
	const struct sigv4_header h[] = { { "Host", "h" } };
	const struct http_sign_input in = { .method = "GET", .url = "https://h/", .host = "h",
					    .path = "/", .headers = h, .n_headers = 1 };
	struct http_header *add = NULL;
	size_t n = 0;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(aws_request_sign((void *)&s, &in, &add, &n, &err), -1);
	assert_true(str_has_prefix(af_error_msg(err), "no AWS credentials found: "));
	assert_null(add);
	aws_creds_chain_free(chain);
}

static void test_bind_and_redact(void **state)
{
	const struct aws_signer s = { .region = "eu-west-1", .service = "s3" };
	struct http_request req = { .method = "GET", .url = "https://h/" };
	aws_request_bind(&req, &s);
	assert_ptr_equal(req.sign, aws_request_sign);
	assert_ptr_equal(req.sign_data, &s);
	assert_ptr_equal(req.redact, aws_request_redact);
	redact_add("registeredSecret42");
	_cleanup_free_ char *r = aws_request_redact("https://h/k?X-Amz-Signature=abcd&y=1 registeredSecret42\n"
						    "x-amz-security-token: tok");
	assert_string_equal(r, "https://h/k?X-Amz-Signature=[REDACTED]&y=1 [REDACTED]\n"
			       "x-amz-security-token:[REDACTED]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sign_is_sigv4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_without_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bind_and_redact, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
