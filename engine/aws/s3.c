/* SPDX-License-Identifier: Apache-2.0 */
/* The S3 client (include/amiforge/aws/s3.h has the contract). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

#include "amiforge/aws/awsconfig.h"
#include "amiforge/aws/awsxml.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/request.h"
#include "amiforge/aws/s3.h"
#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#define S3_NS "http://s3.amazonaws.com/doc/2006-03-01/"

void s3_client_init(struct s3_client *c, const char *region, struct aws_creds_chain *creds,
		    const struct http_options *opts)
{
	bool custom = false;
	c->region = xstrdup(region);
	c->endpoint = aws_endpoint_url("s3", region, &custom);
	c->path_style = custom;
	c->creds = creds;
	c->opts = opts;
}

void s3_client_release(struct s3_client *c)
{
	if (!c)
		return;
	free(c->region);
	free(c->endpoint);
	memset(c, 0, sizeof(*c));
}

/* Virtual-hosted addressing needs a name that is one DNS label under the
 * endpoint and matches the TLS wildcard: lower case, digits, '-', no dots. */
static bool s3_dns_safe(const char *bucket)
{
	size_t n = strlen(bucket);
	if (n < 3 || n > 63 || bucket[0] == '-' || bucket[n - 1] == '-')
		return false;
	for (const char *p = bucket; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-'))
			return false;
	return true;
}

char *s3_url(const struct s3_client *c, const char *bucket, const char *key, const char *query)
{
	_cleanup_free_ char *k = key ? sigv4_uri_encode(key, true) : NULL;
	_cleanup_free_ char *b = sigv4_uri_encode(bucket, false);
	struct strbuf sb = STRBUF_INIT;
	const char *sep = strstr(c->endpoint, "://");
	if (c->path_style || !sep || !s3_dns_safe(bucket)) {
		strbuf_addf(&sb, "%s/%s", c->endpoint, b);
		if (k)
			strbuf_addf(&sb, "/%s", k);
	} else {
		strbuf_add(&sb, c->endpoint, (size_t)(sep + 3 - c->endpoint));
		strbuf_addf(&sb, "%s.%s/%s", b, sep + 3, k ? k : "");
	}
	if (query)
		strbuf_addf(&sb, "?%s", query);
	return strbuf_detach(&sb);
}

void s3_content_md5(const void *data, size_t len, char out[25])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(data, len, md, &n, EVP_md5(), NULL) != 1 || n != 16)
		BUG("openssl: MD5 failed");
	EVP_EncodeBlock((unsigned char *)out, md, 16);
}

/* S3 answers some failures of CompleteMultipartUpload (and a few others)
 * with 200 and an <Error> body; those are errors and worth a retry. */
static void s3_classify(struct http_response *resp, void *data)
{
	http_classify_default(resp, data);
	if (resp->error.is_error || resp->status != 200 || !resp->body_len)
		return;
	_cleanup_error_ struct af_error *e = NULL;
	_cleanup_xmldoc_ xmlDoc *doc = awsxml_parse(resp->body, resp->body_len, "s3", &e);
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!root || strcmp((const char *)root->name, "Error") != 0)
		return;
	resp->error.is_error = true;
	resp->error.retry = 1;
	resp->error.code = awsxml_text(root, "Code");
	resp->error.message = awsxml_text(root, "Message");
	if (!resp->error.request_id)
		resp->error.request_id = awsxml_text(root, "RequestId");
}

/* A GetObject body is the object: an object that happens to be an S3
 * <Error> document must not turn into an error, so no 200 check here. */
static void s3_classify_get(struct http_response *resp, void *data)
{
	http_classify_default(resp, data);
}

static bool s3_code_is(const struct http_response *resp, const char *code)
{
	return resp->error.code && !strcmp(resp->error.code, code);
}

/* A missing key: 404 NoSuchKey.  Only the code tells it from NoSuchBucket
 * or a 404 page of something that is not S3.  (S3 answers 403, not 404,
 * for a missing key when the caller lacks s3:ListBucket: that stays an
 * error.) */
static bool s3_missing(const struct http_response *resp)
{
	return resp->status == 404 && s3_code_is(resp, "NoSuchKey");
}

/* A conditional PutObject refused for good: 412 PreconditionFailed, or 404
 * NoSuchKey (If-Match on a key with no current version, as S3's user guide
 * on conditional writes says).  Neither comes back for an unconditional
 * put, so the answer alone tells. */
static bool s3_cond_refused(const struct http_response *resp)
{
	return resp->status == 412 || s3_missing(resp);
}

/* Another conditional write to the key was in flight. */
static bool s3_cond_conflict(const struct http_response *resp)
{
	return resp->status == 409 && s3_code_is(resp, "ConditionalRequestConflict");
}

/* A refused condition is final: no retry can change it.  A conflict is
 * retried, as S3's PutObject documentation says: the retry is judged
 * against what the other write left (412 if it landed, success if it
 * failed), so it converges on the true answer. */
static void s3_classify_cond_put(struct http_response *resp, void *data)
{
	s3_classify(resp, data);
	if (s3_cond_refused(resp))
		resp->error.retry = 0;
	else if (s3_cond_conflict(resp))
		resp->error.retry = 1;
}

/* Batch items: a refused condition (PUT) or a missing key (GET) is an
 * answer, not a failure, so that http_batch_run fails only for real
 * failures; s3_batch_*_outcome tell them apart by the status. */
static void s3_classify_batch_put(struct http_response *resp, void *data)
{
	s3_classify_cond_put(resp, data);
	if (s3_cond_refused(resp))
		resp->error.is_error = false;
}

static void s3_classify_batch_get(struct http_response *resp, void *data)
{
	s3_classify_get(resp, data);
	if (s3_missing(resp)) {
		resp->error.is_error = false;
		resp->error.retry = 0;
	}
}

struct s3_req {
	const char *op, *method, *bucket, *key, *query;
	const struct sigv4_header *headers;
	size_t n_headers;
	const void *body;
	size_t body_len;
	http_classify_fn classify;  /* NULL: s3_classify */
};

static char *s3_action(const char *op, const char *bucket, const char *key)
{
	return xasprintf("s3 %s %s%s%s", op, bucket, key ? "/" : "", key ? key : "");
}

static int s3_send(const struct s3_client *c, const struct s3_req *r, struct http_response *resp,
		   struct af_error **err)
{
	_cleanup_free_ char *url = s3_url(c, r->bucket, r->key, r->query);
	_cleanup_free_ char *what = s3_action(r->op, r->bucket, r->key);
	const struct aws_signer sign = {
		.creds = c->creds, .region = c->region, .service = "s3", .sigv4_flags = SIGV4_S3,
	};
	const struct http_request req = {
		.action = what, .method = r->method, .url = url, .headers = r->headers,
		.n_headers = r->n_headers, .body = r->body, .body_len = r->body_len,
		.classify = r->classify ? r->classify : s3_classify, .opts = c->opts,
	};
	return aws_request_do(&sign, &req, resp, err);
}

static int s3_send_simple(const struct s3_client *c, const struct s3_req *r, struct af_error **err)
{
	struct http_response resp;
	int rc = s3_send(c, r, &resp, err);
	http_response_release(&resp);
	return rc;
}

static char *s3_unquote(const char *etag)
{
	if (!etag)
		return NULL;
	size_t n = strlen(etag);
	if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"')
		return xstrndup(etag + 1, n - 2);
	return xstrdup(etag);
}

int s3_create_bucket(const struct s3_client *c, const char *bucket, struct af_error **err)
{
	_cleanup_free_ char *body = NULL;
	if (strcmp(c->region, "us-east-1") != 0)
		body = xasprintf("<CreateBucketConfiguration xmlns=\"" S3_NS "\"><LocationConstraint>"
				 "%s</LocationConstraint></CreateBucketConfiguration>", c->region);
	const struct s3_req r = { .op = "CreateBucket", .method = "PUT", .bucket = bucket,
				  .body = body, .body_len = body ? strlen(body) : 0 };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	if (rc < 0 && resp.status == 409 && resp.error.code &&
	    strcmp(resp.error.code, "BucketAlreadyOwnedByYou") == 0) {
		af_error_clear(err);
		rc = 0;
	}
	http_response_release(&resp);
	return rc;
}

/* The condition's header, if any, in *h; *quoted (caller frees) holds the
 * If-Match value.  Returns the number of headers set (0 or 1). */
static size_t s3_cond_header(const struct s3_cond *cond, struct sigv4_header *h, char **quoted)
{
	*quoted = NULL;
	if (!cond || (!cond->if_none_match_any && !cond->if_match))
		return 0;
	if (cond->if_none_match_any && cond->if_match)
		BUG("s3: If-None-Match: * and If-Match together can never hold");
	if (cond->if_none_match_any) {
		*h = (struct sigv4_header){ "If-None-Match", "*" };
		return 1;
	}
	/* An entity tag is quoted on the wire (RFC 9110 §8.8.3). */
	*quoted = cond->if_match[0] == '"' ? xstrdup(cond->if_match) :
		  xasprintf("\"%s\"", cond->if_match);
	*h = (struct sigv4_header){ "If-Match", *quoted };
	return 1;
}

/* Replaces the client's error for a refused condition (H: its header):
 * callers test the errno, and the message says which condition and why. */
static int s3_cond_error(const char *bucket, const char *key, const struct sigv4_header *h,
			 const struct http_response *resp, struct af_error **err)
{
	bool if_match = !strcmp(h->name, "If-Match");
	const char *why = s3_cond_conflict(resp) ? "other conditional writes kept conflicting" :
			  !if_match ? "the object exists" :
			  resp->status == 404 ? "the object is gone" : "the object changed";
	const char *code = resp->error.code, *rid = resp->error.request_id;
	af_error_clear(err);
	af_error_set(err, 0, "s3 PutObject %s/%s: condition %s: %s refused, %s (HTTP %ld%s%s%s%s)",
		     bucket, key, h->name, h->value, why, resp->status, code ? " " : "",
		     code ? code : "", rid ? ", request id " : "", rid ? rid : "");
	if (err && *err)
		(*err)->errnum = S3_CONDITION_FAILED;
	return -1;
}

static int s3_put(const struct s3_client *c, const char *bucket, const char *key,
		  const void *data, size_t len, const char *acl, const char *content_type,
		  const struct s3_cond *cond, char **etag, struct af_error **err)
{
	char md5[25];
	s3_content_md5(data, len, md5);
	struct sigv4_header h[4] = { { "Content-MD5", md5 } };
	size_t n = 1;
	if (acl)
		h[n++] = (struct sigv4_header){ "x-amz-acl", acl };
	h[n++] = (struct sigv4_header){ "Content-Type",
					content_type ? content_type : "application/octet-stream" };
	_cleanup_free_ char *quoted = NULL;
	size_t n_cond = s3_cond_header(cond, &h[n], &quoted);
	n += n_cond;
	const struct s3_req r = { .op = "PutObject", .method = "PUT", .bucket = bucket, .key = key,
				  .headers = h, .n_headers = n, .body = data, .body_len = len,
				  .classify = n_cond ? s3_classify_cond_put : NULL };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	if (rc < 0 && n_cond && (s3_cond_refused(&resp) || s3_cond_conflict(&resp)))
		rc = s3_cond_error(bucket, key, &h[n - 1], &resp, err);
	if (rc == 0 && etag)
		*etag = s3_unquote(http_response_header(&resp, "ETag"));
	http_response_release(&resp);
	return rc;
}

int s3_put_object(const struct s3_client *c, const char *bucket, const char *key,
		  const void *data, size_t len, const char *acl, const char *content_type,
		  char **etag, struct af_error **err)
{
	return s3_put(c, bucket, key, data, len, acl, content_type, NULL, etag, err);
}

int s3_put_object_cond(const struct s3_client *c, const char *bucket, const char *key,
		       const void *data, size_t len, const struct s3_cond *cond, char **etag,
		       struct af_error **err)
{
	return s3_put(c, bucket, key, data, len, NULL, NULL, cond, etag, err);
}

void s3_object_info_release(struct s3_object_info *i)
{
	if (!i)
		return;
	free(i->etag);
	free(i->content_type);
	free(i->last_modified);
	memset(i, 0, sizeof(*i));
}

int s3_head_object(const struct s3_client *c, const char *bucket, const char *key,
		   struct s3_object_info *out, struct af_error **err)
{
	const struct s3_req r = { .op = "HeadObject", .method = "HEAD", .bucket = bucket, .key = key };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	memset(out, 0, sizeof(*out));
	if (rc < 0 && resp.status == 404) {
		af_error_clear(err);
		rc = 0;
	} else if (rc == 0) {
		const char *cl = http_response_header(&resp, "Content-Length");
		const char *ct = http_response_header(&resp, "Content-Type");
		const char *lm = http_response_header(&resp, "Last-Modified");
		out->exists = true;
		out->size = cl ? strtoll(cl, NULL, 10) : -1;
		out->etag = s3_unquote(http_response_header(&resp, "ETag"));
		out->content_type = ct ? xstrdup(ct) : NULL;
		out->last_modified = lm ? xstrdup(lm) : NULL;
	}
	http_response_release(&resp);
	return rc;
}

int s3_get_object(const struct s3_client *c, const char *bucket, const char *key, char **data,
		  size_t *len, struct af_error **err)
{
	const struct s3_req r = { .op = "GetObject", .method = "GET", .bucket = bucket, .key = key,
				  .classify = s3_classify_get };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	if (rc == 0) {
		*len = resp.body_len;
		*data = steal_pointer(&resp.body);
		resp.body_len = 0;
	}
	http_response_release(&resp);
	return rc;
}

int s3_get_object_found(const struct s3_client *c, const char *bucket, const char *key,
			char **data, size_t *len, char **etag, bool *found, struct af_error **err)
{
	const struct s3_req r = { .op = "GetObject", .method = "GET", .bucket = bucket, .key = key,
				  .classify = s3_classify_get };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	if (rc < 0 && s3_missing(&resp)) {
		af_error_clear(err);
		*data = NULL;
		*len = 0;
		if (etag)
			*etag = NULL;
		*found = false;
		rc = 0;
	} else if (rc == 0) {
		if (etag)
			*etag = s3_unquote(http_response_header(&resp, "ETag"));
		*len = resp.body_len;
		*data = steal_pointer(&resp.body);
		resp.body_len = 0;
		*found = true;
	}
	http_response_release(&resp);
	return rc;
}

int s3_delete_object(const struct s3_client *c, const char *bucket, const char *key,
		     struct af_error **err)
{
	const struct s3_req r = { .op = "DeleteObject", .method = "DELETE", .bucket = bucket,
				  .key = key };
	return s3_send_simple(c, &r, err);
}

void s3_object_list_release(struct s3_object_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].key);
		free(l->v[i].etag);
		free(l->v[i].last_modified);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int s3_parse_list_page(const char *body, size_t len, struct s3_object_list *out, char **next,
		       struct af_error **err)
{
	_cleanup_xmldoc_ xmlDoc *doc = awsxml_parse(body, len, "s3 ListObjectsV2", err);
	if (!doc)
		return -1;
	xmlNode *root = xmlDocGetRootElement(doc);
	if (strcmp((const char *)root->name, "ListBucketResult") != 0)
		return af_error_set(err, 0, "s3 ListObjectsV2: unexpected response <%s>",
				    (const char *)root->name);
	awsxml_foreach(item, root, "Contents") {
		out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
		struct s3_object *o = &out->v[out->n++];
		_cleanup_free_ char *etag = awsxml_text(item, "ETag");
		o->key = awsxml_text(item, "Key");
		if (!o->key)
			o->key = xstrdup("");
		o->size = awsxml_int(item, "Size", -1);
		o->etag = s3_unquote(etag);
		o->last_modified = awsxml_text(item, "LastModified");
	}
	*next = NULL;
	if (awsxml_bool(root, "IsTruncated")) {
		*next = awsxml_text(root, "NextContinuationToken");
		if (!*next || !**next) {
			free(*next);
			*next = NULL;
			return af_error_set(err, 0, "s3 ListObjectsV2: truncated listing without "
					    "NextContinuationToken");
		}
	}
	return 0;
}

int s3_list_objects(const struct s3_client *c, const char *bucket, const char *prefix,
		    int max_keys, struct s3_object_list *out, struct af_error **err)
{
	struct s3_object_list list = { 0 };
	_cleanup_free_ char *token = NULL;
	int rc;
	do {
		struct strbuf q = STRBUF_INIT;
		strbuf_addstr(&q, "list-type=2");
		if (token) {
			_cleanup_free_ char *t = sigv4_uri_encode(token, false);
			strbuf_addf(&q, "&continuation-token=%s", t);
		}
		if (max_keys > 0)
			strbuf_addf(&q, "&max-keys=%d", max_keys);
		if (prefix) {
			_cleanup_free_ char *p = sigv4_uri_encode(prefix, false);
			strbuf_addf(&q, "&prefix=%s", p);
		}
		const struct s3_req r = { .op = "ListObjectsV2", .method = "GET", .bucket = bucket,
					  .query = q.buf };
		struct http_response resp;
		free(steal_pointer(&token));
		rc = s3_send(c, &r, &resp, err);
		if (rc == 0)
			rc = s3_parse_list_page(resp.body, resp.body_len, &list, &token, err);
		http_response_release(&resp);
		strbuf_release(&q);
	} while (rc == 0 && token);
	if (rc < 0) {
		s3_object_list_release(&list);
		return -1;
	}
	*out = list;
	return 0;
}

/* ---- batches ---- */

static void s3_batch_bind(struct s3_batch_req *r, const struct s3_client *c, const char *method,
			  size_t n_headers, const void *data, size_t len, http_classify_fn classify)
{
	r->sign = (struct aws_signer){ .creds = c->creds, .region = c->region, .service = "s3",
				       .sigv4_flags = SIGV4_S3 };
	r->req = (struct http_request){
		.action = r->action, .method = method, .url = r->url, .headers = r->headers,
		.n_headers = n_headers, .body = data, .body_len = len, .classify = classify,
		.opts = c->opts,
	};
	aws_request_bind(&r->req, &r->sign);
}

void s3_batch_put_init(struct s3_batch_req *r, const struct s3_client *c, const char *bucket,
		       const char *key, const void *data, size_t len, const struct s3_cond *cond)
{
	memset(r, 0, sizeof(*r));
	r->url = s3_url(c, bucket, key, NULL);
	r->action = s3_action("PutObject", bucket, key);
	s3_content_md5(data, len, r->md5);
	size_t n = 0;
	r->headers[n++] = (struct sigv4_header){ "Content-MD5", r->md5 };
	r->headers[n++] = (struct sigv4_header){ "Content-Type", "application/octet-stream" };
	n += s3_cond_header(cond, &r->headers[n], &r->if_match);
	s3_batch_bind(r, c, "PUT", n, data, len, s3_classify_batch_put);
}

void s3_batch_get_init(struct s3_batch_req *r, const struct s3_client *c, const char *bucket,
		       const char *key)
{
	memset(r, 0, sizeof(*r));
	r->url = s3_url(c, bucket, key, NULL);
	r->action = s3_action("GetObject", bucket, key);
	s3_batch_bind(r, c, "GET", 0, NULL, 0, s3_classify_batch_get);
}

void s3_batch_req_release(struct s3_batch_req *r)
{
	if (!r)
		return;
	free(r->url);
	free(r->action);
	free(r->if_match);
	memset(r, 0, sizeof(*r));
}

int s3_batch_put_outcome(const struct http_batch_item *item)
{
	if (item->err)
		return -1;
	return s3_cond_refused(&item->resp) ? 1 : 0;
}

int s3_batch_get_outcome(const struct http_batch_item *item)
{
	if (item->err)
		return -1;
	return s3_missing(&item->resp) ? 1 : 0;
}

/* ---- multipart ---- */

int s3_multipart_create(const struct s3_client *c, const char *bucket, const char *key,
			const char *acl, char **upload_id, struct af_error **err)
{
	const struct sigv4_header h[] = { { "x-amz-acl", acl } };
	const struct s3_req r = { .op = "CreateMultipartUpload", .method = "POST", .bucket = bucket,
				  .key = key, .query = "uploads", .headers = h,
				  .n_headers = acl ? 1 : 0 };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	if (rc == 0) {
		_cleanup_xmldoc_ xmlDoc *doc = awsxml_parse(resp.body, resp.body_len,
							    "s3 CreateMultipartUpload", err);
		char *id = doc ? awsxml_text(xmlDocGetRootElement(doc), "UploadId") : NULL;
		if (!id || !*id) {
			free(id);
			rc = doc ? af_error_set(err, 0, "s3 CreateMultipartUpload %s/%s: the "
						"response has no UploadId", bucket, key) : -1;
		} else {
			*upload_id = id;
		}
	}
	http_response_release(&resp);
	return rc;
}

int s3_multipart_upload(const struct s3_client *c, const char *bucket, const char *key,
			const char *upload_id, int part_number, const void *data, size_t len,
			char **etag, struct af_error **err)
{
	char md5[25];
	s3_content_md5(data, len, md5);
	_cleanup_free_ char *id = sigv4_uri_encode(upload_id, false);
	_cleanup_free_ char *q = xasprintf("partNumber=%d&uploadId=%s", part_number, id);
	const struct sigv4_header h[] = { { "Content-MD5", md5 } };
	const struct s3_req r = { .op = "UploadPart", .method = "PUT", .bucket = bucket, .key = key,
				  .query = q, .headers = h, .n_headers = 1, .body = data,
				  .body_len = len };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	if (rc == 0) {
		const char *e = http_response_header(&resp, "ETag");
		if (!e)
			rc = af_error_set(err, 0, "s3 UploadPart %s/%s part %d: no ETag in the answer",
					  bucket, key, part_number);
		else
			*etag = xstrdup(e);
	}
	http_response_release(&resp);
	return rc;
}

int s3_multipart_complete(const struct s3_client *c, const char *bucket, const char *key,
			  const char *upload_id, const struct s3_part *parts, size_t n,
			  char **etag, struct af_error **err)
{
	struct strbuf body = STRBUF_INIT;
	strbuf_addstr(&body, "<CompleteMultipartUpload xmlns=\"" S3_NS "\">");
	for (size_t i = 0; i < n; i++) {
		/* ETags are hex in quotes: nothing to escape, but never trust input. */
		xmlChar *e = xmlEncodeSpecialChars(NULL, (const xmlChar *)parts[i].etag);
		strbuf_addf(&body, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
			    parts[i].number, (const char *)e);
		xmlFree(e);
	}
	strbuf_addstr(&body, "</CompleteMultipartUpload>");
	_cleanup_free_ char *id = sigv4_uri_encode(upload_id, false);
	_cleanup_free_ char *q = xasprintf("uploadId=%s", id);
	const struct sigv4_header h[] = { { "Content-Type", "application/xml" } };
	const struct s3_req r = { .op = "CompleteMultipartUpload", .method = "POST",
				  .bucket = bucket, .key = key, .query = q, .headers = h,
				  .n_headers = 1, .body = body.buf, .body_len = body.len };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	if (rc == 0 && etag) {
		_cleanup_xmldoc_ xmlDoc *doc = awsxml_parse(resp.body, resp.body_len,
							    "s3 CompleteMultipartUpload", err);
		_cleanup_free_ char *e = doc ? awsxml_text(xmlDocGetRootElement(doc), "ETag") : NULL;
		if (!doc)
			rc = -1;
		else
			*etag = s3_unquote(e ? e : "");
	}
	http_response_release(&resp);
	strbuf_release(&body);
	return rc;
}

int s3_multipart_abort(const struct s3_client *c, const char *bucket, const char *key,
		       const char *upload_id, struct af_error **err)
{
	_cleanup_free_ char *id = sigv4_uri_encode(upload_id, false);
	_cleanup_free_ char *q = xasprintf("uploadId=%s", id);
	const struct s3_req r = { .op = "AbortMultipartUpload", .method = "DELETE",
				  .bucket = bucket, .key = key, .query = q };
	return s3_send_simple(c, &r, err);
}
