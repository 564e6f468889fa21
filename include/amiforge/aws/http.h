/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP client for AWS (DESIGN §8), over libcurl's multi interface.
 *
 * - TLS peer and host verification are always on; opts->ca_bundle (or
 *   AWS_CA_BUNDLE) adds a CA file for private endpoints.
 * - Every attempt is bounded (connect timeout, low-speed limit, per-attempt
 *   timeout) and the whole call is bounded (total_timeout_ms).
 * - Retries: transport errors (connect, reset, timeout), HTTP 5xx, 429, and
 *   error codes Throttling, ThrottlingException, RequestLimitExceeded,
 *   RequestThrottledException, SlowDown, TooManyRequests,
 *   TooManyRequestsException, RequestTimeout, InternalError,
 *   ServiceUnavailable; capped exponential backoff with full jitter
 *   (sleep = random(0, min(cap, base * 2^attempt))), at most max_attempts.
 * - Signing is not done here: a request may carry a signer (a function and
 *   its data, see struct http_request), called before every attempt with
 *   the request exactly as it will be sent, so that each attempt carries a
 *   fresh date and fresh credentials.  engine/aws/request.c binds AWS's
 *   (credentials and SigV4) to a request.
 * - One log_warn line per retry, redacted (the request's redact hook, else
 *   redact_text(), the engine's one rule for credentials in text):
 *     ec2 RegisterImage: attempt 2 of 8 failed (HTTP 503 RequestLimitExceeded,
 *     request id 1234); retrying in 0.7 s
 * - The final error message names the action, HTTP status, AWS error code,
 *   message and request id:
 *     ec2 RegisterImage: InvalidAMIName.Malformed: name is bad (HTTP 400,
 *     request id 59dbff89-...) after 1 attempt
 *
 * Threads: a call uses its own curl handles; different threads may call
 * concurrently.  http_global_init() must have run once (it is called
 * lazily by the first request, guarded by pthread_once). */
#ifndef AMIFORGE_AWS_HTTP_H
#define AMIFORGE_AWS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* struct sigv4_header: the (name, value) pair of request headers.  Only the
 * type: nothing here signs. */
#include "amiforge/aws/sigv4.h"

struct af_error;

/* Per-call options; NULL anywhere means HTTP_OPTIONS_DEFAULT. */
struct http_options {
	long connect_timeout_ms;   /* default 5000 */
	long attempt_timeout_ms;   /* whole attempt, default 120000 */
	long low_speed_secs;       /* abort an attempt slower than 1 byte/s for this long, default 30 */
	long total_timeout_ms;     /* all attempts and sleeps of one request, default 600000 */
	int max_attempts;          /* default 8 (1 = no retry) */
	long backoff_base_ms;      /* default 200 */
	long backoff_cap_ms;       /* default 20000 */
	const char *ca_bundle;     /* extra CA file; NULL: AWS_CA_BUNDLE or the system store */
	size_t max_body;           /* response bodies larger than this fail; default 64 MiB */
	/* A bound for every request, in now_monotonic() seconds; 0: none.  A
	 * request starting at NOW is bounded by http_budget_ms(): no request
	 * outlives the deadline (a stage's timeout then gives a clear HTTP
	 * error, not a kill). */
	double deadline;
};
extern const struct http_options HTTP_OPTIONS_DEFAULT;

/* What O allows a request starting at NOW (now_monotonic()): total_timeout_ms,
 * cut to end HTTP_DEADLINE_MARGIN_MS before o->deadline when there is one,
 * but never below HTTP_MIN_BUDGET_MS (a request is always tried). */
#define HTTP_DEADLINE_MARGIN_MS 2000
#define HTTP_MIN_BUDGET_MS 1000
long http_budget_ms(const struct http_options *o, double now);

/* A response header (owned).  Names as received; match case-insensitively. */
struct http_header {
	char *name;
	char *value;
};

/* How a service turned a response into an error (filled by the classifier).
 * All strings owned by the response. */
struct http_error_info {
	bool is_error;     /* the response is a failure (default: status >= 300) */
	char *code;        /* AWS error code ("RequestLimitExceeded"), or NULL */
	char *message;     /* AWS error message, or NULL */
	char *request_id;  /* or NULL */
	/* -1: let the client decide from status and code (the lists above);
	 * 0: never retry; 1: retry. */
	int retry;
};

struct http_response {
	long status;                 /* HTTP status of the last attempt; 0 if none arrived */
	struct http_header *headers; /* of the last attempt */
	size_t n_headers;
	char *body;                  /* NUL-terminated (not counted in body_len); may be "" */
	size_t body_len;
	struct http_error_info error; /* filled for every response by the classifier */
	int attempts;                /* attempts made */
};

/* Fills resp->error from RESP (status, headers, body).  Called after every
 * attempt that got a response.  The default, http_classify_default, sets
 * is_error = status >= 300 and extracts code/message/request id from:
 * XML anywhere in the body (<Code>, <Message>, <RequestId> or <RequestID>:
 * EC2 <Response><Errors><Error>..., S3 <Error>...), JSON (__type, code or
 * Code; message or Message; the part of __type after '#'), headers
 * x-amzn-ErrorType, x-amzn-RequestId, x-amz-request-id.  A service hook may
 * call it first and then adjust (e.g. S3 CompleteMultipartUpload: a 200 with
 * an <Error> body is an error and retryable). */
typedef void (*http_classify_fn)(struct http_response *resp, void *data);
void http_classify_default(struct http_response *resp, void *data);

/* One attempt as it will be sent, for a signer.  Everything is borrowed for
 * the duration of the call. */
struct http_sign_input {
	const char *method;
	const char *url;
	const char *host;                   /* the Host header's value (host[:port]) */
	const char *path;                   /* percent-encoded, as on the request line */
	const char *query;                  /* without '?', or NULL */
	const struct sigv4_header *headers; /* every header sent, Host included */
	size_t n_headers;
	const void *body;
	size_t body_len;
	const char *payload_hash;           /* the caller's hex SHA-256 of body, or NULL */
};

/* Signs one attempt: returns 0 and sets *add to n_add headers to send as
 * well (an array the client frees with every name and value; values are
 * wiped first, they may hold a session token), or -1 + err (the attempt
 * then fails without being sent, and is not retried). */
typedef int (*http_sign_fn)(void *data, const struct http_sign_input *in, struct http_header **add,
			    size_t *n_add, struct af_error **err);

/* Returns a copy of TEXT (caller frees) safe to log. */
typedef char *(*http_redact_fn)(const char *text);

struct http_request {
	/* For messages: "ec2 RegisterImage", "s3 PutObject bucket/key".  Never
	 * put a secret here.  NULL: "METHOD URL-without-query". */
	const char *action;
	const char *method;             /* "GET", "PUT", "POST", "HEAD", "DELETE" */
	/* Full URL; path and query already percent-encoded
	 * (sigv4_uri_encode).  The Host header is derived from it. */
	const char *url;
	const struct sigv4_header *headers; /* extra request headers (borrowed) */
	size_t n_headers;
	const void *body;               /* borrowed; must stay valid during the call */
	size_t body_len;
	const char *payload_hash;       /* optional precomputed hex SHA-256 of body */
	/* Called before every attempt with sign_data; NULL: unsigned. */
	http_sign_fn sign;
	void *sign_data;                /* borrowed; must stay valid during the call */
	/* For the retry log lines and the final error; NULL: redact_text(). */
	http_redact_fn redact;
	http_classify_fn classify;      /* NULL: http_classify_default */
	void *classify_data;
	const struct http_options *opts;
};

/* Sends REQ, retrying as described above.
 * Returns 0 when the final response is not an error (resp->error.is_error
 * false, normally 2xx).  Returns -1 + err otherwise; resp is then still
 * filled with the last response when one arrived (status != 0), so callers
 * may test resp->status (HeadObject 404) or resp->error.code
 * (DryRunOperation) and af_error_clear(err).  In both cases the caller
 * calls http_response_release(resp).  resp need not be initialised. */
int http_request_do(const struct http_request *req, struct http_response *resp,
		    struct af_error **err);

void http_response_release(struct http_response *resp);
/* First header named NAME (case-insensitive), or NULL.  Borrowed. */
const char *http_response_header(const struct http_response *resp, const char *name);

/* Many requests in parallel over at most max_parallel connections (curl
 * multi; connections are reused).  Each item is retried on its own as in
 * http_request_do.  Items are produced on demand so that a million
 * 512 KiB blocks need not sit in memory at once. */
struct http_batch_item {
	struct http_request req;   /* filled by the producer */
	struct http_response resp; /* filled by the client */
	struct af_error *err;      /* NULL, or why this item failed (owned by the item) */
	void *user;                /* the producer's */
};

struct http_batch {
	int max_parallel;          /* connections and requests in flight; default 16 if <= 0 */
	/* Returns 1 and sets *item (owned by the producer, must stay valid until
	 * done() is called for it), 0 when there are no more, or -1 + err to
	 * stop the batch. */
	int (*next)(void *data, struct http_batch_item **item, struct af_error **err);
	/* Called once per item when it finished (item->err set on failure).
	 * After it returns the client no longer touches the item (the producer
	 * may free it).  Returns 0 to go on, or -1 + err to stop the batch
	 * (in-flight requests are abandoned, done() is not called for them). */
	int (*done)(void *data, struct http_batch_item *item, struct af_error **err);
	void *data;
};

/* Runs the batch to completion.  Returns 0 when every item succeeded and
 * no callback failed; otherwise -1 + err (the first item failure, wrapped
 * as "N of M requests failed: ...", or the callback's error). */
int http_batch_run(const struct http_batch *batch, struct af_error **err);

/* Convenience: n ready items.  Each items[i].resp and .err are filled
 * (release both).  0 when all succeeded, else -1 + err (first failure). */
int http_batch_run_items(struct http_batch_item *items, size_t n, int max_parallel,
			 struct af_error **err);

/* Splits URL as the client sends it: *host is the Host header value
 * (host[:port], the port only when not the scheme's default), *path the
 * percent-encoded path as given ("/" at least), *query the query without
 * '?' or NULL.  0 and all set (caller frees), or -1 + err for a malformed
 * URL. */
int http_url_split(const char *url, char **host, char **path, char **query,
		   struct af_error **err);

/* Calls curl_global_init once.  Safe to call many times. */
void http_global_init(void);

/* Test hook: the random source for jitter (returns [0, 1)).  NULL restores. */
void http_set_jitter_fn(double (*fn)(void));

#endif
