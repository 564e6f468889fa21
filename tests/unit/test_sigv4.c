/* SPDX-License-Identifier: Apache-2.0 */
/* SigV4: every case of the AWS test suite (tests/vectors/aws-sig-v4-test-suite:
 * .req -> .creq, .sts, .authz), then S3 and EBS specifics and encoding. */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

/* The suite's parameters (its index.json config, reference/FORMATS.md §2.2). */
#define SUITE_AKID "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE "20150830T123600Z"

struct parsed_req {
	char *method, *path, *query;
	struct sigv4_header h[32];
	size_t nh;
	char *body;
	size_t body_len;
	char *token; /* X-Amz-Security-Token from the .req */
	char *buf;
};

/* "METHOD PATH[?QUERY] HTTP/1.1", header lines (continuation lines, which
 * start with a space, are further values of the previous header), an empty
 * line, the body.  The path may contain spaces (get-space). */
static void parse_req(char *text, struct parsed_req *r)
{
	memset(r, 0, sizeof(*r));
	r->buf = text;
	char *line_end = strchr(text, '\n');
	if (line_end)
		*line_end = '\0';
	char *sp = strchr(text, ' ');
	assert_non_null(sp);
	*sp = '\0';
	r->method = text;
	char *target = sp + 1;
	char *proto = strrchr(target, ' ');
	assert_non_null(proto);
	*proto = '\0';
	char *q = strchr(target, '?');
	if (q) {
		*q = '\0';
		r->query = q + 1;
	}
	r->path = target;
	char *p = line_end ? line_end + 1 : NULL;
	const char *last_name = NULL;
	while (p && *p) {
		char *e = strchr(p, '\n');
		if (e)
			*e = '\0';
		if (*p == '\0') {
			p = e ? e + 1 : NULL;
			break;
		}
		if ((*p == ' ' || *p == '\t') && last_name) {
			r->h[r->nh++] = (struct sigv4_header){ last_name, p };
		} else {
			char *colon = strchr(p, ':');
			assert_non_null(colon);
			*colon = '\0';
			if (!strcasecmp(p, "X-Amz-Security-Token"))
				r->token = colon + 1;
			r->h[r->nh++] = (struct sigv4_header){ p, colon + 1 };
			last_name = p;
		}
		assert_true(r->nh < ARRAY_SIZE(r->h));
		p = e ? e + 1 : NULL;
	}
	r->body = p ? p : (char *)"";
	r->body_len = strlen(r->body);
}

static char *slurp(const char *dir, const char *name, const char *ext)
{
	_cleanup_free_ char *path = xasprintf("%s/%s.%s", dir, name, ext);
	_cleanup_error_ struct af_error *err = NULL;
	char *s = read_file(path, NULL, &err);
	if (!s)
		fail_msg("%s", af_error_msg(err));
	return s;
}

static int vectors_run;

static void check_case(const char *dir, const char *name)
{
	char *req_text = slurp(dir, name, "req");
	_cleanup_free_ char *creq = slurp(dir, name, "creq");
	_cleanup_free_ char *sts = slurp(dir, name, "sts");
	_cleanup_free_ char *authz = slurp(dir, name, "authz");
	struct parsed_req pr;
	parse_req(req_text, &pr);
	struct sigv4_request req = {
		.method = pr.method, .path = pr.path, .query = pr.query,
		.headers = pr.h, .n_headers = pr.nh,
		.body = pr.body, .body_len = pr.body_len,
		.region = "us-east-1", .service = "service", .amz_date = SUITE_DATE,
	};
	struct sigv4_key key = { SUITE_AKID, SUITE_SECRET, pr.token };
	/* post-sts-header-after: the token is added after signing, unsigned;
	 * its .req (the signed part) does not carry it. */
	if (!strcmp(name, "post-sts-header-after")) {
		key.session_token = "AQoDYXdzEPT//////////wEXAMPLE";
		req.flags |= SIGV4_TOKEN_UNSIGNED;
	}
	struct sigv4_result r;
	_cleanup_error_ struct af_error *err = NULL;
	if (sigv4_sign(&req, &key, &r, &err) < 0)
		fail_msg("%s: %s", name, af_error_msg(err));
	if (strcmp(r.canonical_request, creq))
		fail_msg("%s: canonical request differs:\n--- ours\n%s\n--- suite\n%s", name,
			 r.canonical_request, creq);
	if (strcmp(r.string_to_sign, sts))
		fail_msg("%s: string to sign differs:\n%s\n---\n%s", name, r.string_to_sign, sts);
	if (strcmp(r.authorization, authz))
		fail_msg("%s: authorization differs:\n%s\n---\n%s", name, r.authorization, authz);
	/* The secret never appears in what we hand back. */
	assert_null(strstr(r.canonical_request, SUITE_SECRET));
	assert_null(strstr(r.authorization, SUITE_SECRET));
	sigv4_result_release(&r);
	free(req_text);
	vectors_run++;
}

static void walk(const char *dir)
{
	_cleanup_dir_ DIR *d = opendir(dir);
	if (!d)
		fail_msg("cannot open %s", dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *p = path_join(dir, de->d_name);
		struct stat st;
		assert_int_equal(stat(p, &st), 0);
		if (!S_ISDIR(st.st_mode))
			continue;
		_cleanup_free_ char *req = xasprintf("%s/%s.req", p, de->d_name);
		if (access(req, R_OK) == 0)
			check_case(p, de->d_name);
		walk(p);
	}
}

static void test_suite_vectors(void **state)
{
	const char *top = getenv("TOP");
	_cleanup_free_ char *dir = xasprintf("%s/tests/vectors/aws-sig-v4-test-suite",
					     top && *top ? top : ".");
	vectors_run = 0;
	walk(dir);
	/* 31 cases: a silently empty walk must not pass. */
	assert_int_equal(vectors_run, 31);
}

static const struct sigv4_key test_key = { "AKIDEXAMPLE", SUITE_SECRET, NULL };

static struct sigv4_result sign_or_fail(const struct sigv4_request *req, const struct sigv4_key *k)
{
	struct sigv4_result r;
	_cleanup_error_ struct af_error *err = NULL;
	if (sigv4_sign(req, k, &r, &err) < 0)
		fail_msg("%s", af_error_msg(err));
	return r;
}

static const char *added(const struct sigv4_result *r, const char *name)
{
	for (size_t i = 0; i < r->n_add; i++)
		if (!strcasecmp(r->add[i].name, name))
			return r->add[i].value;
	return NULL;
}

static void test_s3_path_and_content_sha(void **state)
{
	struct sigv4_header h[] = { { "Host", "bucket.s3.amazonaws.com" } };
	struct sigv4_request req = {
		.method = "PUT", .path = "/a/./b//c%20d", .headers = h, .n_headers = 1,
		.body = "hello", .body_len = 5, .region = "us-east-1", .service = "s3",
		.amz_date = SUITE_DATE, .flags = SIGV4_S3,
	};
	struct sigv4_result r = sign_or_fail(&req, &test_key);
	/* S3: no normalisation, no second encoding. */
	assert_true(str_has_prefix(r.canonical_request, "PUT\n/a/./b//c%20d\n\n"));
	assert_string_equal(r.payload_hash,
			    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
	assert_string_equal(added(&r, "X-Amz-Content-SHA256"), r.payload_hash);
	assert_string_equal(r.signed_headers, "host;x-amz-content-sha256;x-amz-date");
	sigv4_result_release(&r);

	/* Non-S3: dot segments and empty segments go, '%' is encoded again. */
	req.flags = 0;
	req.service = "ec2";
	r = sign_or_fail(&req, &test_key);
	assert_true(str_has_prefix(r.canonical_request, "PUT\n/a/b/c%2520d\n\n"));
	assert_null(added(&r, "X-Amz-Content-SHA256"));
	sigv4_result_release(&r);
}

static void test_unsigned_payload_and_token(void **state)
{
	struct sigv4_header h[] = {
		{ "Host", "ebs.eu-west-1.amazonaws.com" },
		{ "x-amz-Data-Length", "524288" },
		{ "User-Agent", "amiforge" },          /* never signed */
		{ "X-Amz-Date", "19990101T000000Z" },  /* replaced */
	};
	struct sigv4_key k = { "AKIDEXAMPLE", SUITE_SECRET, "TOKEN123" };
	struct sigv4_request req = {
		.method = "PUT", .path = "/snapshots/snap-1/blocks/0", .headers = h, .n_headers = 4,
		.body = "data", .body_len = 4, .region = "eu-west-1", .service = "ebs",
		.amz_date = SUITE_DATE, .flags = SIGV4_UNSIGNED_PAYLOAD,
	};
	struct sigv4_result r = sign_or_fail(&req, &k);
	assert_string_equal(r.payload_hash, "UNSIGNED-PAYLOAD");
	assert_true(str_has_suffix(r.canonical_request, "\nUNSIGNED-PAYLOAD"));
	assert_string_equal(r.signed_headers,
			    "host;x-amz-content-sha256;x-amz-data-length;x-amz-date;x-amz-security-token");
	assert_string_equal(added(&r, "X-Amz-Security-Token"), "TOKEN123");
	assert_string_equal(added(&r, "X-Amz-Date"), SUITE_DATE);
	assert_non_null(strstr(r.canonical_request, "x-amz-date:" SUITE_DATE "\n"));
	assert_true(str_has_prefix(r.authorization,
				   "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/ebs/aws4_request, "));
	assert_string_equal(r.add[r.n_add - 1].name, "Authorization");
	sigv4_result_release(&r);
}

static void test_query_encoding(void **state)
{
	struct sigv4_header h[] = { { "Host", "example.amazonaws.com" } };
	struct sigv4_request req = {
		.method = "GET", .path = "/", .headers = h, .n_headers = 1,
		.region = "us-east-1", .service = "service", .amz_date = SUITE_DATE,
	};
	/* Raw and pre-encoded forms sign the same; sort by key then value;
	 * a key without '=' gets an empty value. */
	req.query = "b=2&a=x y&a=%2F&flag&c=a+b";
	struct sigv4_result r1 = sign_or_fail(&req, &test_key);
	assert_true(str_has_prefix(r1.canonical_request, "GET\n/\na=%2F&a=x%20y&b=2&c=a%2Bb&flag=\n"));
	req.query = "a=x%20y&b=2&a=/&flag=&c=a%2Bb";
	struct sigv4_result r2 = sign_or_fail(&req, &test_key);
	assert_string_equal(r1.signature, r2.signature);
	sigv4_result_release(&r1);
	sigv4_result_release(&r2);
}

static void test_encode_decode(void **state)
{
	_cleanup_free_ char *a = sigv4_uri_encode("a b/c~d+é", false);
	assert_string_equal(a, "a%20b%2Fc~d%2B%C3%A9");
	_cleanup_free_ char *b = sigv4_uri_encode("a b/c", true);
	assert_string_equal(b, "a%20b/c");
	size_t n;
	_cleanup_free_ char *c = sigv4_uri_decode("a%20b%2fc%zz%4", 14, &n);
	assert_string_equal(c, "a b/c%zz%4");
	assert_int_equal(n, 10);
	char now[17];
	sigv4_now(now);
	assert_int_equal(strlen(now), 16);
	assert_int_equal(now[8], 'T');
}

static void test_errors(void **state)
{
	struct sigv4_header h[] = { { "Host", "example.amazonaws.com" } };
	struct sigv4_request req = {
		.method = "GET", .path = "/", .headers = h, .n_headers = 1,
		.region = "us-east-1", .service = "service", .amz_date = "2015-08-30",
	};
	struct sigv4_result r;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(sigv4_sign(&req, &test_key, &r, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "not YYYYMMDDTHHMMSSZ"));
	af_error_clear(&err);
	req.amz_date = SUITE_DATE;
	req.n_headers = 0;
	assert_int_equal(sigv4_sign(&req, &test_key, &r, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "no Host header"));
	af_error_clear(&err);
	req.n_headers = 1;
	req.region = NULL;
	assert_int_equal(sigv4_sign(&req, &test_key, &r, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "no region"));
	af_error_clear(&err);
	req.region = "us-east-1";
	struct sigv4_key nokey = { "AKID", "", NULL };
	assert_int_equal(sigv4_sign(&req, &nokey, &r, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "secret access key"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_suite_vectors),
		cmocka_unit_test(test_s3_path_and_content_sha),
		cmocka_unit_test(test_unsigned_payload_and_token),
		cmocka_unit_test(test_query_encoding),
		cmocka_unit_test(test_encode_decode),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
