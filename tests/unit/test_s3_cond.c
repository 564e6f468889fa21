/* SPDX-License-Identifier: Apache-2.0 */
/* S3 conditional writes and batch requests: the headers a batch PUT/GET
 * carries, how its classify hook judges S3's answers (refused, missing,
 * conflict, failure) and what the outcome helpers make of them.  The
 * requests themselves run against s3rver in tests/integration/aws_s3.sh. */
#include "testutil.h"

#include "amiforge/aws/http.h"
#include "amiforge/aws/s3.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#define S3_XML_ERR(code) "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" code \
	"</Code><Message>m</Message><RequestId>r1</RequestId></Error>"

static struct s3_client client(void)
{
	return (struct s3_client){ .region = "eu-west-1", .endpoint = "http://127.0.0.1:4568",
				   .path_style = true };
}

static const char *header(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (!strcasecmp(req->headers[i].name, name))
			return req->headers[i].value;
	return NULL;
}

static void test_put_headers(void **state)
{
	static const struct {
		struct s3_cond cond;
		const char *name, *want;
	} cases[] = {
		{ { .if_none_match_any = true }, "If-None-Match", "*" },
		{ { .if_match = "0123abcd" }, "If-Match", "\"0123abcd\"" },
		/* an ETag given with its quotes is not quoted twice */
		{ { .if_match = "\"0123abcd\"" }, "If-Match", "\"0123abcd\"" },
	};
	struct s3_client c = client();
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct s3_batch_req r;
		s3_batch_put_init(&r, &c, "b", "cas/ab cd", "hello", 5, &cases[i].cond);
		assert_string_equal(r.req.method, "PUT");
		assert_string_equal(r.req.url, "http://127.0.0.1:4568/b/cas/ab%20cd");
		assert_string_equal(r.req.action, "s3 PutObject b/cas/ab cd");
		assert_int_equal(r.req.body_len, 5);
		assert_non_null(r.req.sign);
		assert_string_equal(header(&r.req, "Content-MD5"), "XUFAKrxLKna5cZ2REBfFkg==");
		assert_string_equal(header(&r.req, cases[i].name), cases[i].want);
		assert_int_equal(r.req.n_headers, 3);
		s3_batch_req_release(&r);
	}
	struct s3_batch_req r;
	s3_batch_put_init(&r, &c, "b", "k", "", 0, NULL);
	assert_int_equal(r.req.n_headers, 2);
	assert_null(header(&r.req, "If-None-Match"));
	assert_null(header(&r.req, "If-Match"));
	s3_batch_req_release(&r);
	s3_batch_get_init(&r, &c, "b", "k");
	assert_string_equal(r.req.method, "GET");
	assert_int_equal(r.req.n_headers, 0);
	assert_null(r.req.body);
	s3_batch_req_release(&r);
	s3_batch_req_release(NULL);
}

/* What the item's classify hook and outcome helper make of one answer. */
struct judged {
	bool is_error;
	int retry;
	int outcome;
};

static struct judged judge(const struct s3_batch_req *r, long status, const char *body,
			   int (*outcome)(const struct http_batch_item *))
{
	struct http_batch_item it = { .req = r->req };
	it.resp.status = status;
	it.resp.body = xstrdup(body);
	it.resp.body_len = strlen(body);
	it.resp.error.retry = -1;
	it.req.classify(&it.resp, it.req.classify_data);
	/* as the client does: an error answer leaves item->err set */
	if (it.resp.error.is_error)
		af_error_set(&it.err, 0, "failed");
	struct judged j = { it.resp.error.is_error, it.resp.error.retry, outcome(&it) };
	af_error_free(it.err);
	http_response_release(&it.resp);
	return j;
}

static void assert_judged(size_t i, struct judged got, struct judged want)
{
	if (got.is_error != want.is_error || got.retry != want.retry || got.outcome != want.outcome)
		fail_msg("case %zu: is_error %d, retry %d, outcome %d; want %d, %d, %d", i,
			 got.is_error, got.retry, got.outcome, want.is_error, want.retry,
			 want.outcome);
}

static void test_put_classify(void **state)
{
	static const struct {
		long status;
		const char *body;
		struct judged want;
	} cases[] = {
		{ 200, "", { false, -1, 0 } },
		/* refused: an answer, final */
		{ 412, S3_XML_ERR("PreconditionFailed"), { false, 0, 1 } },
		/* If-Match on a key with no current version */
		{ 404, S3_XML_ERR("NoSuchKey"), { false, 0, 1 } },
		/* a conflicting conditional write in flight: retried */
		{ 409, S3_XML_ERR("ConditionalRequestConflict"), { true, 1, -1 } },
		/* other 4xx: failures, the client's own retry rules */
		{ 409, S3_XML_ERR("OperationAborted"), { true, -1, -1 } },
		{ 404, S3_XML_ERR("NoSuchBucket"), { true, -1, -1 } },
		{ 404, "<html>not found</html>", { true, -1, -1 } },
		{ 403, S3_XML_ERR("AccessDenied"), { true, -1, -1 } },
		{ 503, S3_XML_ERR("SlowDown"), { true, -1, -1 } },
		/* S3's 200 with an <Error> body is still an error */
		{ 200, S3_XML_ERR("InternalError"), { true, 1, -1 } },
	};
	struct s3_client c = client();
	const struct s3_cond cond = { .if_none_match_any = true };
	struct s3_batch_req r;
	s3_batch_put_init(&r, &c, "b", "k", "x", 1, &cond);
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct judged j = judge(&r, cases[i].status, cases[i].body, s3_batch_put_outcome);
		assert_judged(i, j, cases[i].want);
	}
	s3_batch_req_release(&r);
}

static void test_get_classify(void **state)
{
	static const struct {
		long status;
		const char *body;
		struct judged want;
	} cases[] = {
		{ 200, "data", { false, -1, 0 } },
		/* an object that reads like an S3 error is still the object */
		{ 200, S3_XML_ERR("InternalError"), { false, -1, 0 } },
		{ 404, S3_XML_ERR("NoSuchKey"), { false, 0, 1 } },
		{ 404, S3_XML_ERR("NoSuchBucket"), { true, -1, -1 } },
		{ 404, "", { true, -1, -1 } },
		{ 403, S3_XML_ERR("AccessDenied"), { true, -1, -1 } },
		{ 500, S3_XML_ERR("InternalError"), { true, -1, -1 } },
	};
	struct s3_client c = client();
	struct s3_batch_req r;
	s3_batch_get_init(&r, &c, "b", "k");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct judged j = judge(&r, cases[i].status, cases[i].body, s3_batch_get_outcome);
		assert_judged(i, j, cases[i].want);
	}
	s3_batch_req_release(&r);
}

/* An item that never got an answer (transport failure) failed. */
static void test_outcome_without_answer(void **state)
{
	struct http_batch_item it = { 0 };
	af_error_set(&it.err, 0, "s3 GetObject b/k: connection refused");
	assert_int_equal(s3_batch_put_outcome(&it), -1);
	assert_int_equal(s3_batch_get_outcome(&it), -1);
	af_error_free(it.err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_headers),
		cmocka_unit_test(test_put_classify),
		cmocka_unit_test(test_get_classify),
		cmocka_unit_test(test_outcome_without_answer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
