/* SPDX-License-Identifier: Apache-2.0 */
/* The request module: the signer adds exactly what SigV4 computes, with
 * credentials from the chain; binding sets the hooks; AWS redaction; the
 * session (region, chain, options bounded by the deadline) and a client
 * built from it giving up before the deadline on a server that never
 * answers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

#include "awshome.h"

#include "amiforge/aws/creds.h"
#include "amiforge/aws/ec2.h"
#include "amiforge/aws/request.h"
#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define TOKEN "rEqUeStToKeN//////////wEXAMPLE"

static int setup(void **state)
{
	aws_home_setup(state);
	/* Never wait for 169.254.169.254 here. */
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	return 0;
}

static int teardown(void **state)
{
	aws_home_teardown(state);
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
		.method = "POST", .path = "/", .query = "x=1", .headers = h,
		.n_headers = ARRAY_SIZE(h), .body = body, .body_len = strlen(body),
		.region = "us-east-1", .service = "ec2", .amz_date = "20150830T123600Z",
		.flags = flags,
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
	_cleanup_free_ char *r = aws_request_redact("https://h/k?X-Amz-Signature=abcd&y=1 "
						    "registeredSecret42\nx-amz-security-token: tok");
	assert_string_equal(r, "https://h/k?X-Amz-Signature=[REDACTED]&y=1 [REDACTED]\n"
			       "x-amz-security-token:[REDACTED]");
}

/* ---- sessions ---- */

static void test_session_open(void **state)
{
	_cleanup_error_ struct af_error *err = NULL;
	struct aws_session s;
	setenv("AWS_REGION", "eu-north-1", 1);
	setenv("AWS_ACCESS_KEY_ID", AKID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
	assert_int_equal(aws_session_open(&s, NULL, 0, &err), 0);
	assert_string_equal(s.region, "eu-north-1");
	assert_string_equal(s.region_source, "AWS_REGION");
	assert_true(s.opts.deadline == 0);
	assert_int_equal(s.opts.total_timeout_ms, HTTP_OPTIONS_DEFAULT.total_timeout_ms);
	assert_int_equal(s.opts.max_attempts, HTTP_OPTIONS_DEFAULT.max_attempts);
	const long total = HTTP_OPTIONS_DEFAULT.total_timeout_ms;
	assert_int_equal(http_budget_ms(&s.opts, now_monotonic()), total);
	struct aws_creds c;
	assert_int_equal(aws_creds_chain_get(s.creds, &c, &err), 0);
	assert_string_equal(c.source, "environment");
	aws_creds_release(&c);
	aws_session_close(&s);
	assert_null(s.region);
	assert_null(s.creds);

	/* The recipe's region first; the deadline bounds every request. */
	double deadline = now_monotonic() + 30;
	assert_int_equal(aws_session_open(&s, "us-west-2", deadline, &err), 0);
	assert_string_equal(s.region, "us-west-2");
	assert_string_equal(s.region_source, "recipe");
	assert_true(s.opts.deadline == deadline);
	assert_int_equal(http_budget_ms(&s.opts, deadline - 30), 28000);
	assert_int_equal(http_budget_ms(&s.opts, deadline - 3000), total);
	assert_int_equal(http_budget_ms(&s.opts, deadline + 1), HTTP_MIN_BUDGET_MS);
	aws_session_close(&s);
	aws_session_close(NULL);

	/* No region anywhere: an error that says where it looked, *s untouched. */
	unsetenv("AWS_REGION");
	memset(&s, 0x5a, sizeof(s));
	struct aws_session before = s;
	assert_int_equal(aws_session_open(&s, NULL, deadline, &err), -1);
	assert_true(str_has_prefix(af_error_msg(err), "no AWS region: looked in the recipe, AWS_REGION"));
	assert_memory_equal(&s, &before, sizeof(s));
}

/* A client made from a session gives up before the stage's deadline on a
 * server that takes the connection and never answers, where the default
 * 120 s attempt bound would have waited on. */
static void test_session_caps_requests(void **state)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	_cleanup_free_ char *endpoint = xasprintf("http://127.0.0.1:%d", ntohs(a.sin_port));
	setenv("AWS_ENDPOINT_URL", endpoint, 1);
	setenv("AWS_ACCESS_KEY_ID", AKID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);

	_cleanup_error_ struct af_error *err = NULL;
	struct aws_session s;
	double t0 = now_monotonic();
	assert_int_equal(aws_session_open(&s, "eu-west-1", t0 + 3.5, &err), 0);
	struct ec2_client c;
	ec2_client_init(&c, s.region, s.creds, &s.opts);
	_cleanup_strv_ char **regions = NULL;
	assert_int_equal(ec2_describe_regions(&c, &regions, &err), -1);
	double took = now_monotonic() - t0;
	/* 1.5 s: the deadline less the 2 s margin. */
	assert_true(took >= 1.3 && took < 3.0);
	assert_true(str_has_prefix(af_error_msg(err), "ec2 DescribeRegions: "));
	assert_non_null(strstr(af_error_msg(err), "imed out"));
	ec2_client_release(&c);
	aws_session_close(&s);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sign_is_sigv4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_without_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bind_and_redact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_caps_requests, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
