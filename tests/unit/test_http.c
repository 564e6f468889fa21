/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP client against tests/servers/httpfaults.py on 127.0.0.1:
 * signing (request.h's signer and the signer hook: once per attempt, each
 * with its own time), retries on throttling / 5xx / resets, giving up with
 * a clear message, timeouts within the bound and the deadline, parallel
 * batches, redacted logs. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"

#include "amiforge/aws/creds.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/request.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

#define SECRET "hTtPsEcReT/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define TOKEN "hTtPtOkEn//////////wEXAMPLEtc764"

static pid_t server_pid = -1;
static int server_port;
static struct aws_creds_chain *chain;

static double zero_jitter(void)
{
	return 0.0;
}

static int start_server(void **state)
{
	const char *top = getenv("TOP");
	_cleanup_free_ char *script = xasprintf("%s/tests/servers/httpfaults.py", top && *top ? top : ".");
	int p[2];
	if (pipe(p) < 0)
		return -1;
	server_pid = fork();
	if (server_pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		execl("/usr/bin/python3", "python3", script, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	_cleanup_file_ FILE *f = fdopen(p[0], "r");
	char line[128] = "";
	if (!f || !fgets(line, sizeof(line), f) || sscanf(line, "httpfaults listening on 127.0.0.1:%d",
							  &server_port) != 1) {
		fprintf(stderr, "httpfaults.py did not start\n");
		return -1;
	}
	struct aws_creds c = { .access_key_id = "AKIDHTTPTEST", .secret_access_key = SECRET,
			       .session_token = TOKEN, .source = "test" };
	chain = aws_creds_chain_new_static(&c);
	http_set_jitter_fn(zero_jitter);
	log_init(LOG_LEVEL_INFO, false);
	return 0;
}

static int stop_server(void **state)
{
	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		waitpid(server_pid, NULL, 0);
	}
	aws_creds_chain_free(chain);
	return 0;
}

static char *url(const char *path)
{
	return xasprintf("http://127.0.0.1:%d%s", server_port, path);
}

static struct http_options fast_opts(int attempts)
{
	struct http_options o = HTTP_OPTIONS_DEFAULT;
	o.max_attempts = attempts;
	o.backoff_base_ms = 1;
	o.backoff_cap_ms = 5;
	o.connect_timeout_ms = 2000;
	o.attempt_timeout_ms = 5000;
	o.total_timeout_ms = 20000;
	return o;
}

static const struct aws_signer ec2_sign = { .region = "us-east-1", .service = "ec2" };

/* Runs REQ; returns the result code, fills resp and replaces *msg (NULL or
 * allocated; caller frees). */
static int run(const char *path, const char *action, const struct http_options *o,
	       struct http_response *resp, char **msg)
{
	struct aws_signer s = ec2_sign;
	s.creds = chain;
	_cleanup_free_ char *u = url(path);
	struct http_request req = { .action = action, .method = "POST", .url = u,
				    .body = "Action=DescribeImages", .body_len = 21, .opts = o };
	aws_request_bind(&req, &s);
	_cleanup_error_ struct af_error *err = NULL;
	int r = http_request_do(&req, resp, &err);
	free(*msg);
	*msg = xstrdup(err ? af_error_msg(err) : "");
	return r;
}

static void test_signed_ok(void **state)
{
	struct http_options o = fast_opts(1);
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	assert_int_equal(run("/ok", "ec2 DescribeImages", &o, &resp, &msg), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.attempts, 1);
	_cleanup_json_ json_t *j = json_loads(resp.body, 0, NULL);
	json_t *h = json_object_get(j, "headers");
	const char *auth = json_string_value(json_object_get(h, "authorization"));
	assert_non_null(auth);
	assert_true(str_has_prefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDHTTPTEST/"));
	assert_non_null(strstr(auth, "/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date;"
				     "x-amz-security-token, Signature="));
	assert_string_equal(json_string_value(json_object_get(h, "x-amz-security-token")), TOKEN);
	_cleanup_free_ char *host = xasprintf("127.0.0.1:%d", server_port);
	assert_string_equal(json_string_value(json_object_get(h, "host")), host);
	/* Nothing curl would add behind the signer's back. */
	assert_null(json_object_get(h, "content-type"));
	assert_null(json_object_get(h, "expect"));
	assert_null(json_object_get(h, "accept"));
	assert_int_equal(json_integer_value(json_object_get(j, "body_len")), 21);
	assert_non_null(http_response_header(&resp, "content-type"));
	http_response_release(&resp);
}

static void test_throttled_then_ok(void **state)
{
	struct http_options o = fast_opts(5);
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	assert_int_equal(run("/throttle/3/t1", "ec2 DescribeImages", &o, &resp, &msg), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.attempts, 4);
	assert_string_equal(resp.body, "done after 4");
	http_response_release(&resp);
	/* S3's SlowDown (503) likewise. */
	assert_int_equal(run("/slowdown/2/t2", "s3 PutObject", &o, &resp, &msg), 0);
	assert_int_equal(resp.attempts, 3);
	http_response_release(&resp);
}

static void test_always_500_gives_up(void **state)
{
	struct http_options o = fast_opts(4);
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	assert_int_equal(run("/status/500", "ec2 RegisterImage", &o, &resp, &msg), -1);
	assert_string_equal(msg, "ec2 RegisterImage: InternalError: An internal error has occurred "
				 "(HTTP 500, request id req-500) after 4 attempts");
	assert_int_equal(resp.status, 500);
	assert_int_equal(resp.attempts, 4);
	assert_string_equal(resp.error.code, "InternalError");
	http_response_release(&resp);
}

static void test_client_error_not_retried(void **state)
{
	struct http_options o = fast_opts(4);
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	assert_int_equal(run("/badreq", "ec2 CreateTags", &o, &resp, &msg), -1);
	assert_int_equal(resp.attempts, 1);
	assert_string_equal(msg, "ec2 CreateTags: InvalidParameterValue: Value (x) is bad "
				 "(HTTP 400, request id bad-rid) after 1 attempt");
	http_response_release(&resp);
}

static void test_json_error(void **state)
{
	struct http_options o = fast_opts(2);
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	assert_int_equal(run("/json/400", "ebs PutSnapshotBlock", &o, &resp, &msg), -1);
	/* RequestThrottledException is retryable: both attempts were made. */
	assert_string_equal(msg, "ebs PutSnapshotBlock: RequestThrottledException: Throttled. "
				 "(HTTP 400, request id json-rid) after 2 attempts");
	http_response_release(&resp);
}

static void test_reset_retried(void **state)
{
	struct http_options o = fast_opts(3);
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	assert_int_equal(run("/reset/1/r1", "ec2 DescribeImages", &o, &resp, &msg), 0);
	assert_int_equal(resp.attempts, 2);
	http_response_release(&resp);
	/* Reset every time: a transport error after the maximum. */
	assert_int_equal(run("/reset/99/r2", "ec2 DescribeImages", &o, &resp, &msg), -1);
	assert_true(str_has_prefix(msg, "ec2 DescribeImages: "));
	assert_non_null(strstr(msg, "after 3 attempts"));
	assert_int_equal(resp.status, 0);
	http_response_release(&resp);
}

static void test_stall_times_out(void **state)
{
	struct http_options o = fast_opts(2);
	o.attempt_timeout_ms = 700;
	o.total_timeout_ms = 1200;
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	double t0 = now_monotonic();
	assert_int_equal(run("/stall", "ec2 DescribeImages", &o, &resp, &msg), -1);
	double took = now_monotonic() - t0;
	/* Two attempts, the second cut short by the 1.2 s bound. */
	assert_true(took >= 1.0 && took < 2.5);
	assert_non_null(strstr(msg, "imed out"));
	http_response_release(&resp);
}

static void test_connection_refused(void **state)
{
	struct http_options o = fast_opts(2);
	_cleanup_free_ char *u = xstrdup("http://127.0.0.1:1/x");
	struct http_request req = { .method = "GET", .url = u, .opts = &o };
	struct http_response resp;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(http_request_do(&req, &resp, &err), -1);
	assert_true(str_has_prefix(af_error_msg(err), "GET http://127.0.0.1:1/x: "));
	assert_non_null(strstr(af_error_msg(err), "after 2 attempts"));
	http_response_release(&resp);
}

/* A service hook: a 200 whose body says error (S3 CompleteMultipartUpload). */
static void classify_body_error(struct http_response *resp, void *data)
{
	http_classify_default(resp, data);
	if (resp->status == 200 && strstr(resp->body, "\"method\"")) {
		resp->error.is_error = true;
		resp->error.code = xstrdup("InternalError");
		resp->error.retry = 0;
	}
}

static void test_classify_hook(void **state)
{
	struct http_options o = fast_opts(3);
	_cleanup_free_ char *u = url("/ok");
	struct http_request req = { .action = "s3 CompleteMultipartUpload", .method = "POST",
				    .url = u, .classify = classify_body_error, .opts = &o };
	struct http_response resp;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(http_request_do(&req, &resp, &err), -1);
	assert_int_equal(resp.attempts, 1);
	assert_non_null(strstr(af_error_msg(err), "InternalError"));
	http_response_release(&resp);
}

struct batch_state {
	struct http_batch_item items[40];
	char *urls[40];
	size_t next, done_ok, done_fail;
	struct http_options o;
	struct aws_signer s;
};

static int batch_next(void *data, struct http_batch_item **item, struct af_error **err)
{
	struct batch_state *b = data;
	if (b->next >= ARRAY_SIZE(b->items))
		return 0;
	size_t i = b->next++;
	/* Every fourth block is throttled once; the rest go straight through. */
	b->urls[i] = i % 4 ? url("/ok") : xasprintf("http://127.0.0.1:%d/throttle/1/batch%zu",
						      server_port, i);
	b->items[i].req = (struct http_request){ .action = "ebs PutSnapshotBlock", .method = "PUT",
						 .url = b->urls[i], .body = "x", .body_len = 1,
						 .opts = &b->o };
	aws_request_bind(&b->items[i].req, &b->s);
	*item = &b->items[i];
	return 1;
}

static int batch_done(void *data, struct http_batch_item *item, struct af_error **err)
{
	struct batch_state *b = data;
	if (item->err)
		b->done_fail++;
	else
		b->done_ok++;
	http_response_release(&item->resp);
	af_error_clear(&item->err);
	return 0;
}

static void test_batch_parallel(void **state)
{
	struct batch_state *b = xcalloc(1, sizeof(*b));
	b->o = fast_opts(3);
	b->s = (struct aws_signer){ .creds = chain, .region = "eu-west-1", .service = "ebs",
				    .sigv4_flags = SIGV4_UNSIGNED_PAYLOAD };
	struct http_batch batch = { .max_parallel = 4, .next = batch_next, .done = batch_done, .data = b };
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(http_batch_run(&batch, &err), 0);
	assert_int_equal(b->done_ok, 40);
	assert_int_equal(b->done_fail, 0);
	for (size_t i = 0; i < 40; i++)
		free(b->urls[i]);
	free(b);
}

static void test_batch_failure_reported(void **state)
{
	struct http_options o = fast_opts(1);
	struct http_batch_item items[3] = { 0 };
	_cleanup_free_ char *ok = url("/ok"), *bad = url("/badreq");
	for (int i = 0; i < 3; i++)
		items[i].req = (struct http_request){ .action = "ec2 CreateTags", .method = "GET",
						      .url = i == 1 ? bad : ok, .opts = &o };
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(http_batch_run_items(items, 3, 2, &err), -1);
	assert_true(str_has_prefix(af_error_msg(err), "1 of 3 requests failed, the first: ec2 CreateTags: "
						      "InvalidParameterValue"));
	assert_null(items[0].err);
	assert_non_null(items[1].err);
	for (int i = 0; i < 3; i++) {
		http_response_release(&items[i].resp);
		af_error_clear(&items[i].err);
	}
}

/* Retry log lines go to stderr: capture them, check the line's form and
 * that no secret reached it. */
static void test_retry_log_redacted(void **state)
{
	_cleanup_free_ char *dir = test_mkdtemp();
	_cleanup_free_ char *logf = path_join(dir, "stderr");
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, STDERR_FILENO);
	close(fd);
	struct http_options o = fast_opts(3);
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	/* The URL carries a presigned-style token: it must not be logged. */
	_cleanup_free_ char *path = xasprintf("/throttle/1/log1?X-Amz-Security-Token=%s", "QUERYTOKEN1234");
	int r = run(path, NULL, &o, &resp, &msg);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	assert_int_equal(r, 0);
	http_response_release(&resp);
	_cleanup_free_ char *text = read_file(logf, NULL, NULL);
	assert_non_null(text);
	assert_non_null(strstr(text, "/throttle/1/log1: attempt 1 of 3 failed (HTTP 400 "
				     "RequestLimitExceeded, request id rid-1); retrying in 0.0 s"));
	assert_null(strstr(text, SECRET));
	assert_null(strstr(text, TOKEN));
	assert_null(strstr(text, "QUERYTOKEN1234"));
	test_rmdir_r(dir);
}

/* ---- the signer hook ---- */

/* Records every call; adds X-Test-Attempt: N, or wraps request.h's signer
 * (aws.creds set) and keeps each attempt's X-Amz-Date. */
struct sign_log {
	int calls;
	int fail_on;            /* this call fails (1-based), 0: none */
	struct aws_signer aws;
	char dates[8][17];
	char path[64], query[64], host[64];
	bool saw_host, saw_caller;
	size_t body_len;
};

static int logging_sign(void *data, const struct http_sign_input *in, struct http_header **add,
			size_t *n_add, struct af_error **err)
{
	struct sign_log *l = data;
	int n = l->calls++;
	snprintf(l->path, sizeof(l->path), "%s", in->path);
	snprintf(l->query, sizeof(l->query), "%s", in->query ? in->query : "");
	snprintf(l->host, sizeof(l->host), "%s", in->host);
	l->body_len = in->body_len;
	for (size_t i = 0; i < in->n_headers; i++) {
		l->saw_host |= !strcasecmp(in->headers[i].name, "host") &&
			       !strcmp(in->headers[i].value, in->host);
		l->saw_caller |= !strcmp(in->headers[i].name, "X-Caller");
	}
	if (l->fail_on == l->calls)
		return af_error_set(err, 0, "no signature today");
	if (l->aws.creds) {
		if (aws_request_sign(&l->aws, in, add, n_add, err) < 0)
			return -1;
		for (size_t i = 0; n < 8 && i < *n_add; i++)
			if (!strcasecmp((*add)[i].name, "X-Amz-Date"))
				snprintf(l->dates[n], sizeof(l->dates[n]), "%s", (*add)[i].value);
		return 0;
	}
	*add = xcalloc(1, sizeof(**add));
	(*add)[0].name = xstrdup("X-Test-Attempt");
	(*add)[0].value = xasprintf("%d", l->calls);
	*n_add = 1;
	return 0;
}

static void test_signer_once_per_attempt(void **state)
{
	struct http_options o = fast_opts(5);
	struct sign_log l = { 0 };
	_cleanup_free_ char *u = url("/throttle/2/sig1?a=b");
	const struct sigv4_header h[] = { { "X-Caller", "yes" } };
	struct http_request req = {
		.action = "ec2 DescribeImages", .method = "POST", .url = u, .headers = h,
		.n_headers = 1, .body = "Action=DescribeImages", .body_len = 21,
		.sign = logging_sign, .sign_data = &l, .opts = &o,
	};
	struct http_response resp;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(http_request_do(&req, &resp, &err), 0);
	assert_int_equal(resp.attempts, 3);
	assert_int_equal(l.calls, 3);
	assert_string_equal(l.path, "/throttle/2/sig1");
	assert_string_equal(l.query, "a=b");
	_cleanup_free_ char *host = xasprintf("127.0.0.1:%d", server_port);
	assert_string_equal(l.host, host);
	assert_true(l.saw_host);
	assert_true(l.saw_caller);
	assert_int_equal(l.body_len, 21);
	http_response_release(&resp);

	/* What the signer adds is sent. */
	_cleanup_free_ char *ok = url("/ok");
	req.url = ok;
	assert_int_equal(http_request_do(&req, &resp, &err), 0);
	_cleanup_json_ json_t *j = json_loads(resp.body, 0, NULL);
	json_t *hh = json_object_get(j, "headers");
	assert_string_equal(json_string_value(json_object_get(hh, "x-test-attempt")), "4");
	http_response_release(&resp);
}

static double one_jitter(void)
{
	return 1.0;
}

/* Each attempt is signed at its own time: a retry after a 1.1 s and a 2.2 s
 * sleep carries a later X-Amz-Date than the attempt before it. */
static void test_signer_fresh_time(void **state)
{
	struct http_options o = fast_opts(3);
	o.backoff_base_ms = 1100;
	o.backoff_cap_ms = 5000;
	struct sign_log l = { .aws = { .creds = chain, .region = "us-east-1", .service = "ec2" } };
	_cleanup_free_ char *u = url("/throttle/2/fresh1");
	struct http_request req = { .action = "ec2 DescribeImages", .method = "POST", .url = u,
				    .body = "Action=DescribeImages", .body_len = 21,
				    .sign = logging_sign, .sign_data = &l, .opts = &o };
	struct http_response resp;
	_cleanup_error_ struct af_error *err = NULL;
	http_set_jitter_fn(one_jitter);
	int r = http_request_do(&req, &resp, &err);
	http_set_jitter_fn(zero_jitter);
	assert_int_equal(r, 0);
	assert_int_equal(resp.attempts, 3);
	assert_int_equal(l.calls, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(strlen(l.dates[i]), 16);
	assert_true(strcmp(l.dates[0], l.dates[1]) < 0);
	assert_true(strcmp(l.dates[1], l.dates[2]) < 0);
	http_response_release(&resp);
}

/* A signer that fails: the attempt is not sent, the message names the action. */
static void test_signer_failure(void **state)
{
	struct http_options o = fast_opts(3);
	struct sign_log l = { .fail_on = 1 };
	_cleanup_free_ char *u = url("/throttle/1/nosend"), *count = url("/count/nosend");
	struct http_request req = { .action = "ec2 DescribeImages", .method = "GET", .url = u,
				    .sign = logging_sign, .sign_data = &l, .opts = &o };
	struct http_response resp;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(http_request_do(&req, &resp, &err), -1);
	assert_string_equal(af_error_msg(err), "ec2 DescribeImages: no signature today");
	assert_int_equal(resp.status, 0);
	assert_int_equal(l.calls, 1);
	http_response_release(&resp);
	af_error_clear(&err);
	/* The server never saw it. */
	req.sign = NULL;
	req.url = count;
	assert_int_equal(http_request_do(&req, &resp, &err), 0);
	assert_string_equal(resp.body, "0");
	http_response_release(&resp);
}

/* ---- the deadline ---- */

static void test_budget(void **state)
{
	struct http_options o = HTTP_OPTIONS_DEFAULT;
	const double now = 1000.0;
	static const struct {
		double deadline;
		long want;
	} cases[] = {
		{ 0, 600000 },          /* none: the total bound */
		{ now + 5000, 600000 }, /* far: the total bound */
		{ now + 10, 8000 },     /* near: up to 2 s before it */
		{ now + 2.5, 1000 },    /* nearer than the margin: still one second */
		{ now - 60, 1000 },     /* passed: still one second */
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		o.deadline = cases[i].deadline;
		assert_int_equal(http_budget_ms(&o, now), cases[i].want);
	}
}

static void test_deadline_bounds_request(void **state)
{
	struct http_options o = fast_opts(2);
	o.deadline = now_monotonic() + 3.2;
	struct http_response resp;
	_cleanup_free_ char *msg = NULL;
	double t0 = now_monotonic();
	assert_int_equal(run("/stall", "ec2 DescribeImages", &o, &resp, &msg), -1);
	double took = now_monotonic() - t0;
	/* 1.2 s: the stage's deadline less the margin, not the 5 s attempt bound. */
	assert_true(took >= 1.0 && took < 2.5);
	assert_non_null(strstr(msg, "imed out"));
	http_response_release(&resp);
}

/* ---- redaction ---- */

static char *hooked_redact(const char *text)
{
	_cleanup_free_ char *r = redact_text(text, NULL, 0);
	return xasprintf("hooked<%s>", r);
}

static void test_redact_default_and_hook(void **state)
{
	struct http_options o = fast_opts(1);
	redact_add("pathSecret12345");
	struct http_request req = { .method = "GET", .url = "http://127.0.0.1:1/pathSecret12345",
				    .opts = &o };
	struct http_response resp;
	_cleanup_error_ struct af_error *err = NULL;
	/* No hook: the engine's rule. */
	assert_int_equal(http_request_do(&req, &resp, &err), -1);
	assert_true(str_has_prefix(af_error_msg(err), "GET http://127.0.0.1:1/[REDACTED]: "));
	http_response_release(&resp);
	af_error_clear(&err);
	req.redact = hooked_redact;
	assert_int_equal(http_request_do(&req, &resp, &err), -1);
	assert_true(str_has_prefix(af_error_msg(err), "hooked<GET http://127.0.0.1:1/[REDACTED]: "));
	http_response_release(&resp);
	redact_forget_all();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signed_ok),
		cmocka_unit_test(test_throttled_then_ok),
		cmocka_unit_test(test_always_500_gives_up),
		cmocka_unit_test(test_client_error_not_retried),
		cmocka_unit_test(test_json_error),
		cmocka_unit_test(test_reset_retried),
		cmocka_unit_test(test_stall_times_out),
		cmocka_unit_test(test_connection_refused),
		cmocka_unit_test(test_classify_hook),
		cmocka_unit_test(test_batch_parallel),
		cmocka_unit_test(test_batch_failure_reported),
		cmocka_unit_test(test_retry_log_redacted),
		cmocka_unit_test(test_signer_once_per_attempt),
		cmocka_unit_test(test_signer_fresh_time),
		cmocka_unit_test(test_signer_failure),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_deadline_bounds_request),
		cmocka_unit_test(test_redact_default_and_hook),
	};
	return cmocka_run_group_tests(tests, start_server, stop_server);
}
