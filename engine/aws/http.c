/* SPDX-License-Identifier: Apache-2.0 */
/* The retrying HTTP client over libcurl's multi interface
 * (include/amiforge/aws/http.h has the contract).  Signing and the
 * AWS-specific redaction come in through each request's hooks. */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "amiforge/aws/http.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

const struct http_options HTTP_OPTIONS_DEFAULT = {
	.connect_timeout_ms = 5000,
	.attempt_timeout_ms = 120000,
	.low_speed_secs = 30,
	.total_timeout_ms = 600000,
	.max_attempts = 8,
	.backoff_base_ms = 200,
	.backoff_cap_ms = 20000,
	.ca_bundle = NULL,
	.max_body = 64u << 20,
	.deadline = 0,
};

long http_budget_ms(const struct http_options *o, double now)
{
	long budget = o->total_timeout_ms;
	if (o->deadline > 0) {
		double left = (o->deadline - now) * 1000 - HTTP_DEADLINE_MARGIN_MS;
		if (left < budget)
			budget = left > HTTP_MIN_BUDGET_MS ? (long)left : HTTP_MIN_BUDGET_MS;
	}
	return budget;
}

/* Throttling and transient service codes that AWS documents as retryable
 * (botocore's _retry.json "throttling" and "general_server_error" groups,
 * EBS: RequestThrottledException, S3: SlowDown). */
static const char *const http_retry_codes[] = {
	"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
	"RequestThrottled", "RequestThrottledException", "SlowDown", "TooManyRequests",
	"TooManyRequestsException", "ProvisionedThroughputExceededException",
	"BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException",
	"InternalError", "InternalFailure", "InternalServerException", "ServiceUnavailable",
	"PriorRequestNotComplete", "EC2ThrottledException",
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;

static void http_do_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	xmlInitParser();
}

void http_global_init(void)
{
	pthread_once(&http_once, http_do_global_init);
}

static double http_jitter_default(void)
{
	uint32_t v;
	if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
		return 0.5;
	return v / 4294967296.0;
}

static double (*http_jitter)(void) = http_jitter_default;

void http_set_jitter_fn(double (*fn)(void))
{
	http_jitter = fn ? fn : http_jitter_default;
}

/* ---- responses ---- */

static void http_error_info_release(struct http_error_info *e)
{
	free(e->code);
	free(e->message);
	free(e->request_id);
	memset(e, 0, sizeof(*e));
	e->retry = -1;
}

static void http_headers_free(struct http_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	free(h);
}

void http_response_release(struct http_response *resp)
{
	if (!resp)
		return;
	http_headers_free(resp->headers, resp->n_headers);
	free(resp->body);
	http_error_info_release(&resp->error);
	memset(resp, 0, sizeof(*resp));
	resp->error.retry = -1;
}

const char *http_response_header(const struct http_response *resp, const char *name)
{
	for (size_t i = 0; i < resp->n_headers; i++)
		if (!strcasecmp(resp->headers[i].name, name))
			return resp->headers[i].value;
	return NULL;
}

/* ---- the default classifier ---- */

static const xmlNode *http_xml_find(const xmlNode *n, const char *name)
{
	for (; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (!strcmp((const char *)n->name, name))
			return n;
		const xmlNode *c = http_xml_find(n->children, name);
		if (c)
			return c;
	}
	return NULL;
}

static char *http_xml_text(const xmlNode *root, const char *name)
{
	const xmlNode *n = http_xml_find(root, name);
	if (!n)
		return NULL;
	xmlChar *t = xmlNodeGetContent(n);
	char *s = t ? xstrdup((const char *)t) : NULL;
	xmlFree(t);
	return s;
}

static void http_classify_xml(struct http_response *resp)
{
	xmlDoc *doc = xmlReadMemory(resp->body, (int)resp->body_len, "response.xml", NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc)
		return;
	const xmlNode *root = xmlDocGetRootElement(doc);
	/* Only look inside an error element: a successful S3 listing may well
	 * hold a key named "Code". */
	const xmlNode *e = root && !strcmp((const char *)root->name, "Error") ? root :
			   http_xml_find(root, "Error");
	if (e) {
		if (!resp->error.code)
			resp->error.code = http_xml_text(e->children, "Code");
		if (!resp->error.message)
			resp->error.message = http_xml_text(e->children, "Message");
		if (!resp->error.request_id)
			resp->error.request_id = http_xml_text(e->children, "RequestId");
	}
	/* EC2: <Response><Errors>...</Errors><RequestID>; others <RequestId>. */
	if (!resp->error.request_id)
		resp->error.request_id = http_xml_text(root, "RequestID");
	if (!resp->error.request_id)
		resp->error.request_id = http_xml_text(root, "RequestId");
	xmlFreeDoc(doc);
}

static void http_classify_json(struct http_response *resp)
{
	json_error_t jerr;
	_cleanup_json_ json_t *j = json_loadb(resp->body, resp->body_len, 0, &jerr);
	if (!json_is_object(j))
		return;
	const char *code = json_string_value(json_object_get(j, "__type")) ?:
			   json_string_value(json_object_get(j, "code")) ?:
			   json_string_value(json_object_get(j, "Code"));
	const char *msg = json_string_value(json_object_get(j, "message")) ?:
			  json_string_value(json_object_get(j, "Message"));
	if (code && !resp->error.code) {
		const char *hash = strrchr(code, '#');
		resp->error.code = xstrdup(hash ? hash + 1 : code);
	}
	if (msg && !resp->error.message)
		resp->error.message = xstrdup(msg);
}

void http_classify_default(struct http_response *resp, void *data)
{
	resp->error.is_error = resp->status >= 300;
	if (!resp->error.is_error)
		return;
	const char *b = resp->body ? resp->body : "";
	while (isspace((unsigned char)*b))
		b++;
	if (*b == '<')
		http_classify_xml(resp);
	else if (*b == '{')
		http_classify_json(resp);
	/* rest-json services also name the error in a header: "Code:..." */
	const char *t = http_response_header(resp, "x-amzn-ErrorType");
	if (t && !resp->error.code)
		resp->error.code = xstrndup(t, strcspn(t, ":"));
	const char *rid = http_response_header(resp, "x-amzn-RequestId") ?:
			  http_response_header(resp, "x-amz-request-id");
	if (rid && !resp->error.request_id)
		resp->error.request_id = xstrdup(rid);
}

/* ---- one transfer ---- */

struct http_xfer {
	struct http_batch_item *item;
	const struct http_options *o;
	CURL *easy;
	struct curl_slist *hdrs;
	char errbuf[CURL_ERROR_SIZE];
	struct strbuf body;
	struct http_header *rh;
	size_t n_rh;
	bool too_big;
	int attempt;
	double deadline;     /* monotonic: the whole request's bound */
	long budget_ms;      /* its length, for messages */
	double ready_at;     /* monotonic: when the next attempt may start */
	char *last_failure;  /* the last attempt's failure, for the final message */
	char *action;        /* owned, for messages */
};

/* TEXT as it may be logged: the request's redaction, else the engine's. */
static char *http_redact(const struct http_xfer *x, const char *text)
{
	if (x->item->req.redact)
		return x->item->req.redact(text);
	return redact_text(text, NULL, 0);
}

static size_t http_write_cb(char *data, size_t size, size_t n, void *p)
{
	struct http_xfer *x = p;
	size_t len = size * n;
	if (x->body.len + len > x->o->max_body) {
		x->too_big = true;
		return 0;
	}
	strbuf_add(&x->body, data, len);
	return len;
}

static size_t http_header_cb(char *data, size_t size, size_t n, void *p)
{
	struct http_xfer *x = p;
	size_t len = size * n;
	/* A new status line (e.g. after 100 Continue): forget earlier headers. */
	if (len >= 5 && !strncmp(data, "HTTP/", 5)) {
		http_headers_free(x->rh, x->n_rh);
		x->rh = NULL;
		x->n_rh = 0;
		return len;
	}
	const char *colon = memchr(data, ':', len);
	if (!colon)
		return len;
	const char *v = colon + 1, *end = data + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	x->rh = xreallocarray(x->rh, x->n_rh + 1, sizeof(*x->rh));
	x->rh[x->n_rh].name = xstrndup(data, (size_t)(colon - data));
	x->rh[x->n_rh].value = xstrndup(v, (size_t)(end - v));
	x->n_rh++;
	return len;
}

/* Host header value and path/query from the URL, as curl will send them. */
struct http_url_parts {
	char *host, *path, *query;
};

static int http_split_url(const char *url, struct http_url_parts *u, struct af_error **err)
{
	CURLU *h = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL;
	int r = 0;
	if (curl_url_set(h, CURLUPART_URL, url, CURLU_PATH_AS_IS) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
		r = af_error_set(err, 0, "malformed URL '%.*s' (give scheme://host[:port]/path, "
				 "percent-encoded)", (int)strcspn(url, "?"), url);
		goto out;
	}
	curl_url_get(h, CURLUPART_PORT, &port, 0);
	curl_url_get(h, CURLUPART_QUERY, &query, 0);
	bool default_port = !port || (!strcasecmp(scheme, "https") && !strcmp(port, "443")) ||
			    (!strcasecmp(scheme, "http") && !strcmp(port, "80"));
	u->host = default_port ? xstrdup(host) : xasprintf("%s:%s", host, port);
	u->path = xstrdup(path);
	u->query = query ? xstrdup(query) : NULL;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(h);
	return r;
}

static void http_url_parts_release(struct http_url_parts *u)
{
	free(u->host);
	free(u->path);
	free(u->query);
}

int http_url_split(const char *url, char **host, char **path, char **query,
		   struct af_error **err)
{
	struct http_url_parts u = { 0 };
	if (http_split_url(url, &u, err) < 0)
		return -1;
	*host = u.host;
	*path = u.path;
	*query = u.query;
	return 0;
}

static bool http_caller_has(const struct http_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (!strcasecmp(req->headers[i].name, name))
			return true;
	return false;
}

static void http_slist_add(struct curl_slist **l, const char *name, const char *value)
{
	_cleanup_free_ char *line = *value ? xasprintf("%s: %s", name, value) : xasprintf("%s;", name);
	struct curl_slist *n = curl_slist_append(*l, line);
	if (!n)
		BUG("out of memory");
	*l = n;
	if (line)
		OPENSSL_cleanse(line, strlen(line));
}

/* The signer's headers for this attempt, added to the list. */
static int http_sign(struct http_xfer *x, const struct http_url_parts *u,
		     const struct sigv4_header *all, size_t n, struct af_error **err)
{
	const struct http_request *req = &x->item->req;
	const struct http_sign_input in = {
		.method = req->method, .url = req->url, .host = u->host, .path = u->path,
		.query = u->query, .headers = all, .n_headers = n, .body = req->body,
		.body_len = req->body_len, .payload_hash = req->payload_hash,
	};
	struct http_header *add = NULL;
	size_t n_add = 0;
	if (req->sign(req->sign_data, &in, &add, &n_add, err) < 0)
		return -1;
	for (size_t i = 0; i < n_add; i++) {
		http_slist_add(&x->hdrs, add[i].name, add[i].value);
		OPENSSL_cleanse(add[i].value, strlen(add[i].value));
	}
	http_headers_free(add, n_add);
	return 0;
}

/* Headers for one attempt: the caller's, Host, then what signing adds.
 * curl's own Content-Type (for POSTFIELDS), Accept and Expect are removed
 * so that what is sent is what was signed. */
static int http_build_headers(struct http_xfer *x, struct af_error **err)
{
	const struct http_request *req = &x->item->req;
	struct http_url_parts u = { 0 };
	if (http_split_url(req->url, &u, err) < 0)
		return -1;
	size_t n = req->n_headers;
	struct sigv4_header *all = xcalloc(n + 1, sizeof(*all));
	if (n) /* headers may be NULL when there are none: memcpy's arguments must not be */
		memcpy(all, req->headers, n * sizeof(*all));
	if (!http_caller_has(req, "host"))
		all[n++] = (struct sigv4_header){ "Host", u.host };
	for (size_t i = 0; i < n; i++)
		http_slist_add(&x->hdrs, all[i].name, all[i].value);
	if (!http_caller_has(req, "content-type"))
		x->hdrs = curl_slist_append(x->hdrs, "Content-Type:");
	x->hdrs = curl_slist_append(x->hdrs, "Expect:");
	x->hdrs = curl_slist_append(x->hdrs, "Accept:");
	int r = req->sign ? http_sign(x, &u, all, n, err) : 0;
	free(all);
	http_url_parts_release(&u);
	return r;
}

static void http_xfer_reset_attempt(struct http_xfer *x)
{
	if (x->easy)
		curl_easy_cleanup(x->easy);
	x->easy = NULL;
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	strbuf_release(&x->body);
	http_headers_free(x->rh, x->n_rh);
	x->rh = NULL;
	x->n_rh = 0;
	x->too_big = false;
	x->errbuf[0] = '\0';
}

static void http_xfer_free(struct http_xfer *x)
{
	http_xfer_reset_attempt(x);
	free(x->last_failure);
	free(x->action);
	free(x);
}

static const char *http_ca_bundle(const struct http_options *o)
{
	if (o->ca_bundle && *o->ca_bundle)
		return o->ca_bundle;
	const char *e = getenv("AWS_CA_BUNDLE");
	return e && *e ? e : NULL;
}

static int http_setup_easy(struct http_xfer *x, struct af_error **err)
{
	const struct http_request *req = &x->item->req;
	const struct http_options *o = x->o;
	CURL *c = x->easy = curl_easy_init();
	if (!c)
		BUG("curl_easy_init failed");
	double left_ms = (x->deadline - now_monotonic()) * 1000;
	long timeout = o->attempt_timeout_ms;
	if (left_ms < timeout)
		timeout = left_ms > 1 ? (long)left_ms : 1;
	curl_easy_setopt(c, CURLOPT_URL, req->url);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (http_ca_bundle(o))
		curl_easy_setopt(c, CURLOPT_CAINFO, http_ca_bundle(o));
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o->low_speed_secs);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "amiforge");
	curl_easy_setopt(c, CURLOPT_PRIVATE, x);
	if (!strcmp(req->method, "HEAD")) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(req->method, "GET") && !req->body_len) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else {
		if (req->body_len || strcmp(req->method, "DELETE")) {
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
		}
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
	}
	if (http_build_headers(x, err) < 0)
		return -1;
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hdrs);
	return 0;
}

/* ---- retry policy ---- */

static bool http_code_retryable(const char *code)
{
	for (size_t i = 0; code && i < ARRAY_SIZE(http_retry_codes); i++)
		if (!strcmp(code, http_retry_codes[i]))
			return true;
	return false;
}

static bool http_curl_retryable(CURLcode rc, bool too_big)
{
	switch ((int)rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_OUT_OF_MEMORY:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_ABORTED_BY_CALLBACK:
		return false;
	case CURLE_WRITE_ERROR:
		return !too_big;
	default:
		return true;
	}
}

static bool http_response_retryable(const struct http_response *r)
{
	if (r->error.retry >= 0)
		return r->error.retry;
	return r->status >= 500 || r->status == 429 || http_code_retryable(r->error.code);
}

/* "HTTP 503 SlowDown, request id X" */
static char *http_describe_response(const struct http_response *r)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "HTTP %ld", r->status);
	if (r->error.code)
		strbuf_addf(&sb, " %s", r->error.code);
	if (r->error.request_id)
		strbuf_addf(&sb, ", request id %s", r->error.request_id);
	return strbuf_detach(&sb);
}

/* The final error for an item whose last attempt got RESP. */
static void http_final_http_error(struct http_xfer *x, const struct http_response *r)
{
	struct strbuf sb = STRBUF_INIT;
	strbuf_addf(&sb, "%s: ", x->action);
	if (r->error.code)
		strbuf_addf(&sb, "%s: ", r->error.code);
	if (r->error.message)
		strbuf_addf(&sb, "%s ", r->error.message);
	else if (!r->error.code)
		strbuf_addf(&sb, "%s ", r->status >= 300 ? "request failed" : "error in response");
	strbuf_addf(&sb, "(HTTP %ld", r->status);
	if (r->error.request_id)
		strbuf_addf(&sb, ", request id %s", r->error.request_id);
	strbuf_addf(&sb, ") after %d attempt%s", x->attempt, x->attempt == 1 ? "" : "s");
	_cleanup_free_ char *red = http_redact(x, sb.buf);
	strbuf_release(&sb);
	af_error_set(&x->item->err, 0, "%s", red);
}

static void http_final_transport_error(struct http_xfer *x, const char *why)
{
	_cleanup_free_ char *msg = xasprintf("%s: %s after %d attempt%s (check the endpoint, "
					     "the network and the timeouts)", x->action, why,
					     x->attempt, x->attempt == 1 ? "" : "s");
	_cleanup_free_ char *red = http_redact(x, msg);
	af_error_set(&x->item->err, 0, "%s", red);
}

/* Decides after an attempt: true when the item is finished (success or
 * final failure), false when it was rescheduled. */
static bool http_after_attempt(struct http_xfer *x, CURLcode rc)
{
	struct http_batch_item *it = x->item;
	free(x->last_failure);
	x->last_failure = NULL;
	bool retry;
	if (rc == CURLE_OK) {
		http_response_release(&it->resp);
		long status = 0;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
		it->resp.status = status;
		it->resp.headers = steal_pointer(&x->rh);
		it->resp.n_headers = x->n_rh;
		x->n_rh = 0;
		strbuf_add(&x->body, "", 0);
		it->resp.body_len = x->body.len;
		it->resp.body = strbuf_detach(&x->body);
		it->resp.attempts = x->attempt;
		it->resp.error.retry = -1;
		(it->req.classify ? it->req.classify : http_classify_default)(&it->resp,
									      it->req.classify_data);
		if (!it->resp.error.is_error)
			return true;
		retry = http_response_retryable(&it->resp);
		x->last_failure = http_describe_response(&it->resp);
		if (!retry || x->attempt >= x->o->max_attempts) {
			http_final_http_error(x, &it->resp);
			return true;
		}
	} else {
		it->resp.attempts = x->attempt;
		x->last_failure = x->too_big ?
			xasprintf("response larger than %zu bytes", x->o->max_body) :
			xasprintf("%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
		retry = http_curl_retryable(rc, x->too_big);
		if (!retry || x->attempt >= x->o->max_attempts) {
			http_final_transport_error(x, x->last_failure);
			return true;
		}
	}
	/* Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]. */
	int shift = x->attempt - 1 < 30 ? x->attempt - 1 : 30;
	double cap = (double)x->o->backoff_base_ms * (double)(1L << shift);
	if (cap > x->o->backoff_cap_ms)
		cap = (double)x->o->backoff_cap_ms;
	double sleep_s = http_jitter() * cap / 1000.0;
	double now = now_monotonic();
	if (now + sleep_s >= x->deadline) {
		_cleanup_free_ char *why = xasprintf("%s; gave up at the %.0f s bound",
						     x->last_failure, x->budget_ms / 1000.0);
		if (rc == CURLE_OK)
			http_final_http_error(x, &it->resp);
		else
			http_final_transport_error(x, why);
		return true;
	}
	_cleanup_free_ char *line = xasprintf("%s: attempt %d of %d failed (%s); retrying in %.1f s",
					      x->action, x->attempt, x->o->max_attempts,
					      x->last_failure, sleep_s);
	_cleanup_free_ char *red = http_redact(x, line);
	log_warn("%s", red);
	x->ready_at = now + sleep_s;
	return false;
}

/* ---- the batch loop ---- */

struct http_run {
	const struct http_batch *b;
	CURLM *multi;
	struct http_xfer **waiting; /* between attempts */
	size_t n_waiting;
	struct http_xfer **inflight; /* in the multi handle */
	size_t active;
	size_t total, failed;
	struct af_error *first_fail;
	bool producer_done, stop;
};

static char *http_default_action(const struct http_request *req)
{
	return xasprintf("%s %.*s", req->method ? req->method : "?",
			 (int)strcspn(req->url ? req->url : "", "?"), req->url ? req->url : "");
}

static int http_start_attempt(struct http_run *run, struct http_xfer *x)
{
	x->attempt++;
	http_xfer_reset_attempt(x);
	if (http_setup_easy(x, &x->item->err) < 0) {
		af_error_wrap(&x->item->err, "%s", x->action);
		return -1;
	}
	curl_multi_add_handle(run->multi, x->easy);
	run->inflight = xreallocarray(run->inflight, run->active + 1, sizeof(*run->inflight));
	run->inflight[run->active++] = x;
	return 0;
}

/* Hands a finished item to done(); frees the transfer. */
static void http_finish(struct http_run *run, struct http_xfer *x)
{
	struct http_batch_item *it = x->item;
	if (it->err) {
		run->failed++;
		if (!run->first_fail)
			af_error_set(&run->first_fail, 0, "%s", af_error_msg(it->err));
	}
	http_xfer_free(x);
	struct af_error *e = NULL;
	if (run->b->done && run->b->done(run->b->data, it, &e) < 0) {
		if (!run->first_fail)
			run->first_fail = e;
		else
			af_error_free(e);
		run->stop = true;
	}
}

static void http_launch(struct http_run *run, struct http_xfer *x)
{
	if (http_start_attempt(run, x) < 0)
		http_finish(run, x);
}

static void http_pull(struct http_run *run, size_t max_parallel)
{
	while (!run->stop && !run->producer_done && run->active + run->n_waiting < max_parallel) {
		struct http_batch_item *it = NULL;
		struct af_error *e = NULL;
		int r = run->b->next(run->b->data, &it, &e);
		if (r < 0) {
			if (!run->first_fail)
				run->first_fail = e;
			else
				af_error_free(e);
			run->stop = true;
		}
		if (r <= 0) {
			run->producer_done = true;
			break;
		}
		run->total++;
		memset(&it->resp, 0, sizeof(it->resp));
		it->resp.error.retry = -1;
		it->err = NULL;
		struct http_xfer *x = xcalloc(1, sizeof(*x));
		x->item = it;
		x->o = it->req.opts ? it->req.opts : &HTTP_OPTIONS_DEFAULT;
		x->action = it->req.action ? xstrdup(it->req.action) : http_default_action(&it->req);
		double now = now_monotonic();
		x->budget_ms = http_budget_ms(x->o, now);
		x->deadline = now + x->budget_ms / 1000.0;
		http_launch(run, x);
	}
}

/* Starts waiting transfers whose backoff is over; returns ms until the
 * next one is due (or 1000). */
static long http_wake(struct http_run *run)
{
	double now = now_monotonic(), next = now + 1.0;
	for (size_t i = 0; i < run->n_waiting;) {
		struct http_xfer *x = run->waiting[i];
		if (x->ready_at <= now && !run->stop) {
			run->waiting[i] = run->waiting[--run->n_waiting];
			http_launch(run, x);
			continue;
		}
		if (x->ready_at < next)
			next = x->ready_at;
		i++;
	}
	long ms = (long)((next - now) * 1000) + 1;
	return ms < 1 ? 1 : ms;
}

static void http_collect(struct http_run *run)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(run->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct http_xfer *x = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		CURLcode rc = m->data.result;
		curl_multi_remove_handle(run->multi, m->easy_handle);
		for (size_t i = 0; i < run->active; i++)
			if (run->inflight[i] == x) {
				run->inflight[i] = run->inflight[--run->active];
				break;
			}
		if (http_after_attempt(x, rc)) {
			http_finish(run, x);
		} else {
			run->waiting = xreallocarray(run->waiting, run->n_waiting + 1, sizeof(*run->waiting));
			run->waiting[run->n_waiting++] = x;
		}
	}
}

static void http_abandon(struct http_run *run)
{
	for (size_t i = 0; i < run->n_waiting; i++)
		http_xfer_free(run->waiting[i]);
	free(run->waiting);
	for (size_t i = 0; i < run->active; i++) {
		curl_multi_remove_handle(run->multi, run->inflight[i]->easy);
		http_xfer_free(run->inflight[i]);
	}
	free(run->inflight);
}

int http_batch_run(const struct http_batch *b, struct af_error **err)
{
	http_global_init();
	size_t max_parallel = b->max_parallel > 0 ? (size_t)b->max_parallel : 16;
	struct http_run run = { .b = b, .multi = curl_multi_init() };
	if (!run.multi)
		BUG("curl_multi_init failed");
	curl_multi_setopt(run.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max_parallel);
	curl_multi_setopt(run.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_parallel);
	curl_multi_setopt(run.multi, CURLMOPT_MAXCONNECTS, (long)max_parallel);
	for (;;) {
		http_pull(&run, max_parallel);
		long wait_ms = http_wake(&run);
		if (run.active == 0 && run.n_waiting == 0 && (run.producer_done || run.stop))
			break;
		if (run.stop && run.active == 0)
			break;
		int running = 0;
		curl_multi_perform(run.multi, &running);
		http_collect(&run);
		/* A finished item freed a slot: refill it now rather than
		 * sleeping in poll on the other transfers (one stalled
		 * connection would otherwise pace the whole batch at one
		 * request per poll timeout). */
		if (!run.stop && !run.producer_done && run.active + run.n_waiting < max_parallel)
			continue;
		if (run.active && !run.stop)
			curl_multi_poll(run.multi, NULL, 0, (int)(wait_ms < 1000 ? wait_ms : 1000), NULL);
		else if (run.n_waiting && !run.stop)
			curl_multi_poll(run.multi, NULL, 0, (int)(wait_ms < 1000 ? wait_ms : 1000), NULL);
		if (run.stop)
			break;
	}
	http_abandon(&run);
	curl_multi_cleanup(run.multi);
	if (run.first_fail) {
		if (run.failed > 1 || (run.failed && run.total > 1))
			af_error_wrap(&run.first_fail, "%zu of %zu requests failed, the first",
				      run.failed, run.total);
		if (err && !*err)
			*err = run.first_fail;
		else
			af_error_free(run.first_fail);
		return -1;
	}
	return 0;
}

struct http_items_src {
	struct http_batch_item *items;
	size_t n, next;
};

static int http_items_next(void *data, struct http_batch_item **item, struct af_error **err)
{
	struct http_items_src *s = data;
	if (s->next >= s->n)
		return 0;
	*item = &s->items[s->next++];
	return 1;
}

int http_batch_run_items(struct http_batch_item *items, size_t n, int max_parallel,
			 struct af_error **err)
{
	struct http_items_src src = { items, n, 0 };
	struct http_batch b = { .max_parallel = max_parallel, .next = http_items_next, .data = &src };
	return http_batch_run(&b, err);
}

int http_request_do(const struct http_request *req, struct http_response *resp,
		    struct af_error **err)
{
	struct http_batch_item it = { .req = *req };
	int r = http_batch_run_items(&it, 1, 1, NULL);
	*resp = it.resp;
	if (r < 0 || it.err) {
		if (err && !*err)
			*err = it.err;
		else
			af_error_free(it.err);
		return -1;
	}
	return 0;
}
