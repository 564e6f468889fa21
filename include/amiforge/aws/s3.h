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
#include <stdint.h>

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
