/* SPDX-License-Identifier: Apache-2.0 */
/* The EBS direct APIs client (include/amiforge/aws/ebs.h has the contract). */
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "amiforge/aws/awsconfig.h"
#include "amiforge/aws/ebs.h"
#include "amiforge/aws/request.h"
#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

void ebs_client_init(struct ebs_client *c, const char *region, struct aws_creds_chain *creds,
		     const struct http_options *opts)
{
	c->region = xstrdup(region);
	c->endpoint = aws_endpoint_url("ebs", region, NULL);
	c->creds = creds;
	c->opts = opts;
}

void ebs_client_release(struct ebs_client *c)
{
	if (!c)
		return;
	free(c->region);
	free(c->endpoint);
	memset(c, 0, sizeof(*c));
}

/* ---- checksums -------------------------------------------------------------- */

static void ebs_b64(const unsigned char digest[32], char b64[45])
{
	EVP_EncodeBlock((unsigned char *)b64, digest, 32);  /* 44 characters + NUL */
}

void ebs_block_checksum(const void *data, size_t len, unsigned char digest[32], char b64[45])
{
	SHA256(data, len, digest);
	ebs_b64(digest, b64);
}

void ebs_digests_add(struct ebs_digests *d, int64_t index, const unsigned char digest[32])
{
	if (d->n == d->alloc) {
		d->alloc = d->alloc ? 2 * d->alloc : 64;
		d->v = xreallocarray(d->v, d->alloc, sizeof(*d->v));
	}
	d->v[d->n].index = index;
	memcpy(d->v[d->n].digest, digest, 32);
	d->n++;
}

/* Stable by insertion order for equal indexes, so that the last write wins. */
static int ebs_digest_cmp(const void *a, const void *b)
{
	const struct ebs_digest *x = a, *y = b;
	if (x->index != y->index)
		return x->index < y->index ? -1 : 1;
	return x < y ? -1 : (x > y);
}

/* Sorts by index and keeps only the last digest given for each index. */
static void ebs_digests_normalise(struct ebs_digests *d)
{
	if (d->n < 2)
		return;
	qsort(d->v, d->n, sizeof(*d->v), ebs_digest_cmp);
	size_t out = 0;
	for (size_t i = 0; i < d->n; i++) {
		if (i + 1 < d->n && d->v[i + 1].index == d->v[i].index)
			continue;
		d->v[out++] = d->v[i];
	}
	d->n = out;
}

size_t ebs_digests_count(struct ebs_digests *d)
{
	ebs_digests_normalise(d);
	return d->n;
}

void ebs_digests_aggregate(struct ebs_digests *d, char b64[45])
{
	unsigned char out[32];
	ebs_digests_normalise(d);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		BUG("openssl: cannot start SHA-256");
	for (size_t i = 0; i < d->n; i++)
		EVP_DigestUpdate(ctx, d->v[i].digest, 32);
	EVP_DigestFinal_ex(ctx, out, NULL);
	EVP_MD_CTX_free(ctx);
	ebs_b64(out, b64);
}

void ebs_digests_release(struct ebs_digests *d)
{
	if (!d)
		return;
	free(d->v);
	memset(d, 0, sizeof(*d));
}

/* ---- requests --------------------------------------------------------------- */

/* The default classifier, plus EBS's "Reason" field in the message: it says
 * which of a dozen ValidationException causes this is. */
static void ebs_classify(struct http_response *resp, void *data)
{
	http_classify_default(resp, data);
	if (!resp->error.is_error || !resp->body_len || resp->body[0] != '{')
		return;
	json_error_t jerr;
	_cleanup_json_ json_t *j = json_loadb(resp->body, resp->body_len, 0, &jerr);
	const char *reason = json_string_value(json_object_get(j, "Reason"));
	if (!reason)
		return;
	char *m = xasprintf("%s (reason %s)", resp->error.message ? resp->error.message : "",
			    reason);
	free(resp->error.message);
	resp->error.message = m;
}

static int ebs_send(const struct ebs_client *c, const char *action, const char *method,
		    const char *url, const struct sigv4_header *headers, size_t n_headers,
		    const void *body, size_t body_len, unsigned flags, struct http_response *resp,
		    struct af_error **err)
{
	const struct aws_signer sign = {
		.creds = c->creds, .region = c->region, .service = "ebs", .sigv4_flags = flags,
	};
	const struct http_request req = {
		.action = action, .method = method, .url = url, .headers = headers,
		.n_headers = n_headers, .body = body, .body_len = body_len,
		.classify = ebs_classify, .opts = c->opts,
	};
	return aws_request_do(&sign, &req, resp, err);
}

static json_t *ebs_json(const char *body, size_t len, const char *what, struct af_error **err)
{
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(j)) {
		json_decref(j);
		af_error_set(err, 0, "%s: the response is not a JSON object (%s)", what, jerr.text);
		return NULL;
	}
	return j;
}

int ebs_parse_start(const char *body, size_t len, struct ebs_snapshot_info *out,
		    struct af_error **err)
{
	_cleanup_json_ json_t *j = ebs_json(body, len, "ebs StartSnapshot", err);
	if (!j)
		return -1;
	const char *id = json_string_value(json_object_get(j, "SnapshotId"));
	if (!id || !*id)
		return af_error_set(err, 0, "ebs StartSnapshot: the response has no SnapshotId");
	const char *status = json_string_value(json_object_get(j, "Status"));
	const char *owner = json_string_value(json_object_get(j, "OwnerId"));
	json_t *bs = json_object_get(j, "BlockSize");
	out->snapshot_id = xstrdup(id);
	out->status = xstrdup(status ? status : "");
	out->owner_id = owner ? xstrdup(owner) : NULL;
	out->volume_size_gib = json_integer_value(json_object_get(j, "VolumeSize"));
	out->block_size = json_is_integer(bs) ? json_integer_value(bs) : EBS_BLOCK_SIZE;
	return 0;
}

void ebs_snapshot_info_release(struct ebs_snapshot_info *s)
{
	if (!s)
		return;
	free(s->snapshot_id);
	free(s->status);
	free(s->owner_id);
	memset(s, 0, sizeof(*s));
}

int ebs_start_snapshot(const struct ebs_client *c, const struct ebs_start_snapshot *r,
		       struct ebs_snapshot_info *out, struct af_error **err)
{
	_cleanup_json_ json_t *j = json_object();
	json_object_set_new(j, "VolumeSize", json_integer(r->volume_size_gib));
	if (r->parent_snapshot_id)
		json_object_set_new(j, "ParentSnapshotId", json_string(r->parent_snapshot_id));
	if (r->description)
		json_object_set_new(j, "Description", json_string(r->description));
	if (r->client_token)
		json_object_set_new(j, "ClientToken", json_string(r->client_token));
	if (r->encrypted)
		json_object_set_new(j, "Encrypted", json_true());
	if (r->kms_key_arn)
		json_object_set_new(j, "KmsKeyArn", json_string(r->kms_key_arn));
	if (r->timeout_minutes > 0)
		json_object_set_new(j, "Timeout", json_integer(r->timeout_minutes));
	if (r->n_tags) {
		json_t *tags = json_array();
		for (size_t i = 0; i < r->n_tags; i++)
			json_array_append_new(tags, json_pack("{s:s, s:s}", "Key", r->tags[i].key,
							      "Value", r->tags[i].value ?
							      r->tags[i].value : ""));
		json_object_set_new(j, "Tags", tags);
	}
	_cleanup_free_ char *body = json_dumps(j, JSON_COMPACT);
	_cleanup_free_ char *url = xasprintf("%s/snapshots", c->endpoint);
	const struct sigv4_header headers[] = { { "Content-Type", "application/json" } };
	struct http_response resp;
	int rc = ebs_send(c, "ebs StartSnapshot", "POST", url, headers, ARRAY_SIZE(headers), body,
			  strlen(body), 0, &resp, err);
	if (rc == 0)
		rc = ebs_parse_start(resp.body, resp.body_len, out, err);
	http_response_release(&resp);
	return rc;
}

void ebs_block_put_init(struct ebs_block_put *p, const struct ebs_client *c,
			const char *snapshot_id, int64_t index, const void *data, size_t len,
			int progress)
{
	memset(p, 0, sizeof(*p));
	_cleanup_free_ char *sid = sigv4_uri_encode(snapshot_id, false);
	p->index = index;
	p->url = xasprintf("%s/snapshots/%s/blocks/%lld", c->endpoint, sid, (long long)index);
	p->action = xasprintf("ebs PutSnapshotBlock %s block %lld", snapshot_id, (long long)index);
	ebs_block_checksum(data, len, p->digest, p->checksum);
	snprintf(p->length, sizeof(p->length), "%zu", len);
	size_t n = 0;
	p->headers[n++] = (struct sigv4_header){ "x-amz-Data-Length", p->length };
	p->headers[n++] = (struct sigv4_header){ "x-amz-Checksum", p->checksum };
	p->headers[n++] = (struct sigv4_header){ "x-amz-Checksum-Algorithm", "SHA256" };
	if (progress >= 0 && progress <= 100) {
		snprintf(p->progress, sizeof(p->progress), "%d", progress);
		p->headers[n++] = (struct sigv4_header){ "x-amz-Progress", p->progress };
	}
	/* The body is not signed ("authtype": "v4-unsigned-body" in the model). */
	p->sign = (struct aws_signer){ .creds = c->creds, .region = c->region, .service = "ebs",
				       .sigv4_flags = SIGV4_UNSIGNED_PAYLOAD };
	p->req = (struct http_request){
		.action = p->action, .method = "PUT", .url = p->url, .headers = p->headers,
		.n_headers = n, .body = data, .body_len = len,
		.classify = ebs_classify, .opts = c->opts,
	};
	aws_request_bind(&p->req, &p->sign);
}

void ebs_block_put_release(struct ebs_block_put *p)
{
	if (!p)
		return;
	free(p->url);
	free(p->action);
	memset(p, 0, sizeof(*p));
}

int ebs_put_block(const struct ebs_client *c, const char *snapshot_id, int64_t index,
		  const void *data, size_t len, unsigned char digest[32], struct af_error **err)
{
	struct ebs_block_put p;
	struct http_response resp;
	ebs_block_put_init(&p, c, snapshot_id, index, data, len, -1);
	int rc = http_request_do(&p.req, &resp, err);
	http_response_release(&resp);
	if (rc == 0 && digest)
		memcpy(digest, p.digest, 32);
	ebs_block_put_release(&p);
	return rc;
}

int ebs_complete_snapshot(const struct ebs_client *c, const char *snapshot_id,
			  int64_t changed_blocks, const char *aggregate_b64, char **status,
			  struct af_error **err)
{
	_cleanup_free_ char *sid = sigv4_uri_encode(snapshot_id, false);
	_cleanup_free_ char *url = xasprintf("%s/snapshots/completion/%s", c->endpoint, sid);
	_cleanup_free_ char *what = xasprintf("ebs CompleteSnapshot %s", snapshot_id);
	char count[24];
	snprintf(count, sizeof(count), "%lld", (long long)changed_blocks);
	struct sigv4_header headers[4] = { { "x-amz-ChangedBlocksCount", count } };
	size_t n = 1;
	if (aggregate_b64) {
		headers[n++] = (struct sigv4_header){ "x-amz-Checksum", aggregate_b64 };
		headers[n++] = (struct sigv4_header){ "x-amz-Checksum-Algorithm", "SHA256" };
		headers[n++] = (struct sigv4_header){ "x-amz-Checksum-Aggregation-Method", "LINEAR" };
	}
	struct http_response resp;
	int rc = ebs_send(c, what, "POST", url, headers, n, NULL, 0, 0, &resp, err);
	if (rc == 0 && status) {
		_cleanup_json_ json_t *j = ebs_json(resp.body, resp.body_len, what, err);
		const char *s = j ? json_string_value(json_object_get(j, "Status")) : NULL;
		if (!s)
			rc = j ? af_error_set(err, 0, "%s: the response has no Status", what) : -1;
		else
			*status = xstrdup(s);
	}
	http_response_release(&resp);
	return rc;
}

int ebs_parse_block_page(const char *body, size_t len, struct ebs_block_list *out,
			 char **next_token, struct af_error **err)
{
	_cleanup_json_ json_t *j = ebs_json(body, len, "ebs ListSnapshotBlocks", err);
	if (!j)
		return -1;
	json_t *blocks = json_object_get(j, "Blocks"), *b;
	size_t i;
	if (blocks && !json_is_array(blocks))
		return af_error_set(err, 0, "ebs ListSnapshotBlocks: Blocks is not a list");
	json_array_foreach(blocks, i, b) {
		const char *token = json_string_value(json_object_get(b, "BlockToken"));
		json_t *index = json_object_get(b, "BlockIndex");
		if (!token || !json_is_integer(index))
			return af_error_set(err, 0, "ebs ListSnapshotBlocks: block %zu lacks "
					    "BlockIndex or BlockToken", i);
		out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
		out->v[out->n].index = json_integer_value(index);
		out->v[out->n].token = xstrdup(token);
		out->n++;
	}
	json_t *vs = json_object_get(j, "VolumeSize"), *bs = json_object_get(j, "BlockSize");
	if (json_is_integer(vs))
		out->volume_size_gib = json_integer_value(vs);
	out->block_size = json_is_integer(bs) ? json_integer_value(bs) : EBS_BLOCK_SIZE;
	const char *next = json_string_value(json_object_get(j, "NextToken"));
	*next_token = next && *next ? xstrdup(next) : NULL;
	return 0;
}

void ebs_block_list_release(struct ebs_block_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].token);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int ebs_list_blocks(const struct ebs_client *c, const char *snapshot_id, int max_results,
		    struct ebs_block_list *out, struct af_error **err)
{
	struct ebs_block_list list = { 0 };
	_cleanup_free_ char *sid = sigv4_uri_encode(snapshot_id, false);
	_cleanup_free_ char *what = xasprintf("ebs ListSnapshotBlocks %s", snapshot_id);
	_cleanup_free_ char *token = NULL;
	int rc = 0;
	do {
		_cleanup_free_ char *t = token ? sigv4_uri_encode(token, false) : NULL;
		_cleanup_free_ char *url = xasprintf("%s/snapshots/%s/blocks?maxResults=%d%s%s",
						     c->endpoint, sid,
						     max_results > 0 ? max_results : 10000,
						     t ? "&pageToken=" : "", t ? t : "");
		struct http_response resp;
		free(steal_pointer(&token));
		rc = ebs_send(c, what, "GET", url, NULL, 0, NULL, 0, 0, &resp, err);
		if (rc == 0)
			rc = ebs_parse_block_page(resp.body, resp.body_len, &list, &token, err);
		http_response_release(&resp);
	} while (rc == 0 && token);
	if (rc < 0) {
		ebs_block_list_release(&list);
		return -1;
	}
	*out = list;
	return 0;
}

void ebs_block_get_init(struct ebs_block_get *g, const struct ebs_client *c,
			const char *snapshot_id, int64_t index, const char *token)
{
	memset(g, 0, sizeof(*g));
	_cleanup_free_ char *sid = sigv4_uri_encode(snapshot_id, false);
	_cleanup_free_ char *t = sigv4_uri_encode(token, false);
	g->index = index;
	g->url = xasprintf("%s/snapshots/%s/blocks/%lld?blockToken=%s", c->endpoint, sid,
			   (long long)index, t);
	g->action = xasprintf("ebs GetSnapshotBlock %s block %lld", snapshot_id, (long long)index);
	g->sign = (struct aws_signer){ .creds = c->creds, .region = c->region, .service = "ebs" };
	g->req = (struct http_request){
		.action = g->action, .method = "GET", .url = g->url,
		.classify = ebs_classify, .opts = c->opts,
	};
	aws_request_bind(&g->req, &g->sign);
}

void ebs_block_get_release(struct ebs_block_get *g)
{
	if (!g)
		return;
	free(g->url);
	free(g->action);
	memset(g, 0, sizeof(*g));
}

int ebs_block_get_check(const struct ebs_block_get *g, const struct http_response *resp,
			unsigned char digest[32], struct af_error **err)
{
	const char *want = http_response_header(resp, "x-amz-Checksum");
	const char *algo = http_response_header(resp, "x-amz-Checksum-Algorithm");
	char b64[45];
	ebs_block_checksum(resp->body, resp->body_len, digest, b64);
	if (!want || !algo || strcmp(algo, "SHA256") != 0 || strcmp(want, b64) != 0)
		return af_error_set(err, 0, "%s: the data does not match its checksum (%s %s, "
				    "computed %s); retry the download", g->action, algo ? algo : "-",
				    want ? want : "-", b64);
	return 0;
}

int ebs_get_block(const struct ebs_client *c, const char *snapshot_id, int64_t index,
		  const char *token, void *buf, size_t buf_len, size_t *len, struct af_error **err)
{
	struct ebs_block_get g;
	struct http_response resp;
	unsigned char digest[32];
	ebs_block_get_init(&g, c, snapshot_id, index, token);
	int rc = http_request_do(&g.req, &resp, err);
	if (rc == 0)
		rc = ebs_block_get_check(&g, &resp, digest, err);
	if (rc == 0 && resp.body_len > buf_len)
		rc = af_error_set(err, 0, "%s: %zu bytes do not fit the %zu-byte buffer", g.action,
				  resp.body_len, buf_len);
	if (rc == 0) {
		memcpy(buf, resp.body, resp.body_len);
		*len = resp.body_len;
	}
	http_response_release(&resp);
	ebs_block_get_release(&g);
	return rc;
}
