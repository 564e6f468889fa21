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

struct s3_req {
	const char *op, *method, *bucket, *key, *query;
	const struct sigv4_header *headers;
	size_t n_headers;
	const void *body;
	size_t body_len;
};

static int s3_send(const struct s3_client *c, const struct s3_req *r, struct http_response *resp,
		   struct af_error **err)
{
	_cleanup_free_ char *url = s3_url(c, r->bucket, r->key, r->query);
	_cleanup_free_ char *what = xasprintf("s3 %s %s%s%s", r->op, r->bucket, r->key ? "/" : "",
					      r->key ? r->key : "");
	const struct aws_signer sign = {
		.creds = c->creds, .region = c->region, .service = "s3", .sigv4_flags = SIGV4_S3,
	};
	const struct http_request req = {
		.action = what, .method = r->method, .url = url, .headers = r->headers,
		.n_headers = r->n_headers, .body = r->body, .body_len = r->body_len,
		.classify = s3_classify, .opts = c->opts,
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

int s3_put_object(const struct s3_client *c, const char *bucket, const char *key,
		  const void *data, size_t len, const char *acl, const char *content_type,
		  char **etag, struct af_error **err)
{
	char md5[25];
	s3_content_md5(data, len, md5);
	struct sigv4_header h[3] = { { "Content-MD5", md5 } };
	size_t n = 1;
	if (acl)
		h[n++] = (struct sigv4_header){ "x-amz-acl", acl };
	h[n++] = (struct sigv4_header){ "Content-Type",
					content_type ? content_type : "application/octet-stream" };
	const struct s3_req r = { .op = "PutObject", .method = "PUT", .bucket = bucket, .key = key,
				  .headers = h, .n_headers = n, .body = data, .body_len = len };
	struct http_response resp;
	int rc = s3_send(c, &r, &resp, err);
	if (rc == 0 && etag)
		*etag = s3_unquote(http_response_header(&resp, "ETag"));
	http_response_release(&resp);
	return rc;
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
	const struct s3_req r = { .op = "GetObject", .method = "GET", .bucket = bucket, .key = key };
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
