/* SPDX-License-Identifier: Apache-2.0 */
/* Amazon S3 (reference/FORMATS.md §2.3-2.4): objects, multipart uploads and
 * listings, SigV4-signed with S3's rules (x-amz-content-sha256 signed, the
 * path used as is).  Addressing: path-style (ENDPOINT/BUCKET/KEY) for a
 * custom endpoint (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) and for bucket
 * names that are not DNS-safe (dots break the TLS wildcard), virtual-hosted
 * (https://BUCKET.s3.REGION.amazonaws.com/KEY) for AWS.
 *
 * Functions return 0 or -1 + err (the message names the operation, bucket
 * and key, AWS's code, message and request id); outputs are set only on
 * success and owned by the caller.  Bodies are borrowed. */
#ifndef AMIFORGE_AWS_S3_H
#define AMIFORGE_AWS_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>

#include "amiforge/aws/http.h"
#include "amiforge/aws/request.h"

struct af_error;
struct aws_creds_chain;
struct http_options;

struct s3_client {
	char *region;                    /* owned */
	char *endpoint;                  /* owned, no trailing slash */
	bool path_style;
	struct aws_creds_chain *creds;   /* borrowed */
	const struct http_options *opts; /* borrowed, NULL: defaults; a session's: deadline-bound */
};

/* Client for REGION at aws_endpoint_url("s3", region); path-style when the
 * endpoint is custom.  Never fails. */
void s3_client_init(struct s3_client *c, const char *region, struct aws_creds_chain *creds,
		    const struct http_options *opts);
void s3_client_release(struct s3_client *c);

/* The URL of BUCKET/KEY (key may be NULL for the bucket itself; QUERY, if
 * not NULL, is appended after '?', already encoded).  Caller frees. */
char *s3_url(const struct s3_client *c, const char *bucket, const char *key, const char *query);

/* Base64 MD5 of data (the Content-MD5 value); out holds 25 bytes. */
void s3_content_md5(const void *data, size_t len, char out[25]);

/* CreateBucket (with a LocationConstraint outside us-east-1).  An existing
 * bucket you own is not an error. */
int s3_create_bucket(const struct s3_client *c, const char *bucket, struct af_error **err);

/* PutObject with Content-MD5.  acl: a canned ACL for x-amz-acl
 * ("aws-exec-read" for bundles) or NULL; content_type may be NULL.  *etag
 * (may be NULL; caller frees) gets the ETag without quotes. */
int s3_put_object(const struct s3_client *c, const char *bucket, const char *key,
		  const void *data, size_t len, const char *acl, const char *content_type,
		  char **etag, struct af_error **err);

struct s3_object_info {
	bool exists;
	int64_t size;
	char *etag;           /* without quotes */
	char *content_type;
	char *last_modified;
};
void s3_object_info_release(struct s3_object_info *i);
/* HeadObject.  A missing object is not an error: exists is false. */
int s3_head_object(const struct s3_client *c, const char *bucket, const char *key,
		   struct s3_object_info *out, struct af_error **err);

/* GetObject into *data (NUL-terminated, caller frees) and *len.  Bounded by
 * the client's http options max_body. */
int s3_get_object(const struct s3_client *c, const char *bucket, const char *key, char **data,
		  size_t *len, struct af_error **err);

int s3_delete_object(const struct s3_client *c, const char *bucket, const char *key,
		     struct af_error **err);

struct s3_object {
	char *key;
	int64_t size;
	char *etag;
	char *last_modified;
};
struct s3_object_list {
	struct s3_object *v;
	size_t n;
};
void s3_object_list_release(struct s3_object_list *l);
/* ListObjectsV2 under PREFIX (may be NULL), every page (max_keys per page,
 * 0 for S3's default 1000). */
int s3_list_objects(const struct s3_client *c, const char *bucket, const char *prefix,
		    int max_keys, struct s3_object_list *out, struct af_error **err);
/* Parses one ListBucketResult page (exposed for tests): appends to OUT,
 * *next (caller frees) is the continuation token or NULL. */
int s3_parse_list_page(const char *body, size_t len, struct s3_object_list *out, char **next,
		       struct af_error **err);

/* ---- conditional writes and batches (the remote store, remote.h) -------------- */

/* A PutObject condition: S3's conditional writes (user guide, "How to
 * prevent object overwrites with conditional writes").  if_none_match_any
 * sends "If-None-Match: *" (create only: the object must not exist);
 * if_match sends If-Match with the ETag (given without quotes; replace only
 * the current version whose ETag this is).  At most one of the two (both
 * is a BUG()).
 *
 * A refused condition is not retried and fails with af_error_errno(err) ==
 * S3_CONDITION_FAILED: HTTP 412 PreconditionFailed, and for If-Match also
 * 404 NoSuchKey (no current version).  409 ConditionalRequestConflict
 * (another conditional write to the key was in flight) is retried, as S3
 * says to: the retry is judged against what that write left; only when
 * every attempt conflicts does it fail, with S3_CONDITION_FAILED too.
 * Caveat of any retried write: when an attempt landed but its answer was
 * lost, the retry is refused by the write's own result (If-None-Match: the
 * object now exists; If-Match: the ETag moved on); a caller for whom that
 * matters re-reads the object to tell. */
#define S3_CONDITION_FAILED ECANCELED
struct s3_cond {
	bool if_none_match_any;
	const char *if_match;
};

/* PutObject with Content-MD5 and COND (may be NULL: unconditional).  *etag
 * (may be NULL; caller frees) gets the new ETag without quotes. */
int s3_put_object_cond(const struct s3_client *c, const char *bucket, const char *key,
		       const void *data, size_t len, const struct s3_cond *cond, char **etag,
		       struct af_error **err);

/* GetObject that also returns the ETag (without quotes; etag may be NULL to
 * skip it) and says whether the object exists: a missing object (404
 * NoSuchKey; NoSuchBucket is an error) is 0 with *found false, *data NULL,
 * *len 0 and *etag NULL.  *data is NUL-terminated, caller frees.  Bounded
 * by the client's http options max_body.  A caller without s3:ListBucket
 * gets 403 AccessDenied for a missing key from S3: an error here. */
int s3_get_object_found(const struct s3_client *c, const char *bucket, const char *key,
			char **data, size_t *len, char **etag, bool *found, struct af_error **err);

/* One PutObject (with Content-MD5, Content-Type application/octet-stream
 * and COND) or GetObject as a self-contained request for http_batch_run
 * (as ebs_block_put is for EBS): copy r->req into the item's req; it points
 * into *r (do not move *r until the item is done) and is signed through
 * request.h.  DATA is borrowed and must outlive the request.
 *
 * In a batch a refused condition (PUT) and a missing key (GET) are answers,
 * not failures: never retried, item->err stays NULL and they do not make
 * http_batch_run fail.  After the item is done: s3_batch_put_outcome says
 * 0 stored (the new ETag is item->resp's ETag header), 1 refused by its
 * condition (for an If-None-Match: * put of immutable content the object
 * exists: as good as stored), -1 failed (item->err says why).
 * s3_batch_get_outcome: 0 got it (item->resp.body/body_len, ETag header),
 * 1 missing (404 NoSuchKey), -1 failed. */
struct s3_batch_req {
	struct http_request req;
	struct aws_signer sign;
	struct sigv4_header headers[3];
	char *url, *action;            /* owned */
	char md5[25];
	char *if_match;                /* owned: the quoted If-Match value, or NULL */
};
void s3_batch_put_init(struct s3_batch_req *r, const struct s3_client *c, const char *bucket,
		       const char *key, const void *data, size_t len, const struct s3_cond *cond);
void s3_batch_get_init(struct s3_batch_req *r, const struct s3_client *c, const char *bucket,
		       const char *key);
/* Frees what *r owns and zeroes it.  NULL-safe. */
void s3_batch_req_release(struct s3_batch_req *r);
int s3_batch_put_outcome(const struct http_batch_item *item);
int s3_batch_get_outcome(const struct http_batch_item *item);

/* ---- multipart ---------------------------------------------------------------- */

int s3_multipart_create(const struct s3_client *c, const char *bucket, const char *key,
			const char *acl, char **upload_id, struct af_error **err);
/* UploadPart number 1-10000 (with Content-MD5); *etag: with quotes as S3
 * returns it, ready for s3_multipart_complete. */
int s3_multipart_upload(const struct s3_client *c, const char *bucket, const char *key,
			const char *upload_id, int part_number, const void *data, size_t len,
			char **etag, struct af_error **err);
struct s3_part {
	int number;
	const char *etag;
};
/* CompleteMultipartUpload with PARTS in ascending order.  A 200 answer
 * carrying an <Error> is an error (and retried), as S3 documents. */
int s3_multipart_complete(const struct s3_client *c, const char *bucket, const char *key,
			  const char *upload_id, const struct s3_part *parts, size_t n,
			  char **etag, struct af_error **err);
int s3_multipart_abort(const struct s3_client *c, const char *bucket, const char *key,
		       const char *upload_id, struct af_error **err);

#endif
