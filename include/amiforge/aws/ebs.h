/* SPDX-License-Identifier: Apache-2.0 */
/* The EBS direct APIs (reference/FORMATS.md §3; rest-json, signing name
 * "ebs", 512 KiB blocks), with jansson for the JSON bodies.
 *
 * Uploading a snapshot (coldsnap's order): ebs_start_snapshot; one
 * PutSnapshotBlock per non-zero block, in parallel through http_batch_run
 * with ebs_block_put items (or ebs_put_block one at a time), each adding
 * its digest to an ebs_digests; ebs_complete_snapshot with the number of
 * blocks written and ebs_digests_aggregate's checksum.
 *
 * Functions return 0 or -1 + err (the message names the operation, the
 * snapshot, AWS's code, message and request id); outputs are set only on
 * success and owned by the caller. */
#ifndef AMIFORGE_AWS_EBS_H
#define AMIFORGE_AWS_EBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amiforge/aws/ec2.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/request.h"

struct af_error;

#define EBS_BLOCK_SIZE 524288

struct ebs_client {
	char *region;                    /* owned */
	char *endpoint;                  /* owned, no trailing slash */
	struct aws_creds_chain *creds;   /* borrowed */
	const struct http_options *opts; /* borrowed, NULL: defaults; a session's: deadline-bound */
};

/* Client for REGION at aws_endpoint_url("ebs", region).  Never fails. */
void ebs_client_init(struct ebs_client *c, const char *region, struct aws_creds_chain *creds,
		     const struct http_options *opts);
void ebs_client_release(struct ebs_client *c);

/* ---- checksums -------------------------------------------------------------- */

/* SHA-256 of a block: raw digest and its Base64 (the x-amz-Checksum value). */
void ebs_block_checksum(const void *data, size_t len, unsigned char digest[32], char b64[45]);

/* The digests of the blocks written, for CompleteSnapshot's linear
 * aggregate.  Not thread-safe: add from the batch's done() callback. */
struct ebs_digests {
	struct ebs_digest {
		int64_t index;
		unsigned char digest[32];
	} *v;
	size_t n, alloc;
};
#define EBS_DIGESTS_INIT { NULL, 0, 0 }
void ebs_digests_add(struct ebs_digests *d, int64_t index, const unsigned char digest[32]);
/* Number of distinct blocks added (a block written twice counts once; its
 * last digest wins). Sorts D. */
size_t ebs_digests_count(struct ebs_digests *d);
/* The linear aggregate as coldsnap computes it: Base64(SHA-256(the raw
 * 32-byte digests concatenated in ascending block index order)).  Sorts D. */
void ebs_digests_aggregate(struct ebs_digests *d, char b64[45]);
void ebs_digests_release(struct ebs_digests *d);

/* ---- calls ------------------------------------------------------------------ */

struct ebs_start_snapshot {
	int64_t volume_size_gib;          /* required, 1-65536 */
	const char *parent_snapshot_id;
	const char *description;
	const char *client_token;         /* idempotency: derive from the build */
	const char *kms_key_arn;
	bool encrypted;
	int timeout_minutes;              /* 0: AWS's default (60) */
	const struct aws_tag *tags;
	size_t n_tags;
};

struct ebs_snapshot_info {
	char *snapshot_id;
	char *status;                     /* "pending" */
	char *owner_id;
	int64_t volume_size_gib;
	int64_t block_size;
};
void ebs_snapshot_info_release(struct ebs_snapshot_info *s);

int ebs_start_snapshot(const struct ebs_client *c, const struct ebs_start_snapshot *r,
		       struct ebs_snapshot_info *out, struct af_error **err);

/* One PutSnapshotBlock, self-contained (the request points into it, signed
 * through request.h), for http_request_do or as an http_batch_item's req.
 * DATA (len bytes, one full block) is borrowed and must outlive the
 * request. */
struct ebs_block_put {
	struct http_request req;
	struct aws_signer sign;
	struct sigv4_header headers[4];
	char *url, *action;               /* owned */
	char length[24], progress[8], checksum[45];
	unsigned char digest[32];         /* raw SHA-256 of the data */
	int64_t index;
};
/* progress: 0-100, or -1 to omit x-amz-Progress. */
void ebs_block_put_init(struct ebs_block_put *p, const struct ebs_client *c,
			const char *snapshot_id, int64_t index, const void *data, size_t len,
			int progress);
void ebs_block_put_release(struct ebs_block_put *p);

/* Puts one block and returns its raw digest in digest (may be NULL). */
int ebs_put_block(const struct ebs_client *c, const char *snapshot_id, int64_t index,
		  const void *data, size_t len, unsigned char digest[32], struct af_error **err);

/* CompleteSnapshot with x-amz-ChangedBlocksCount and, if aggregate_b64 is
 * not NULL, the SHA256/LINEAR aggregate checksum.  *status (may be NULL;
 * caller frees) gets the returned Status. */
int ebs_complete_snapshot(const struct ebs_client *c, const char *snapshot_id,
			  int64_t changed_blocks, const char *aggregate_b64, char **status,
			  struct af_error **err);

struct ebs_block_list {
	struct ebs_block {
		int64_t index;
		char *token;
	} *v;
	size_t n;
	int64_t volume_size_gib;
	int64_t block_size;
};
void ebs_block_list_release(struct ebs_block_list *l);

/* ListSnapshotBlocks, every page (max_results per page: 100-10000, 0 for
 * 10000). */
int ebs_list_blocks(const struct ebs_client *c, const char *snapshot_id, int max_results,
		    struct ebs_block_list *out, struct af_error **err);

/* GetSnapshotBlock into buf (buf_len >= the block size); checks the
 * returned x-amz-Checksum.  *len gets the data length. */
int ebs_get_block(const struct ebs_client *c, const char *snapshot_id, int64_t index,
		  const char *token, void *buf, size_t buf_len, size_t *len, struct af_error **err);

/* One GetSnapshotBlock, self-contained like ebs_block_put, for
 * http_request_do or as an http_batch_item's req.  TOKEN is the block's
 * from ebs_list_blocks (copied). */
struct ebs_block_get {
	struct http_request req;
	struct aws_signer sign;
	char *url, *action;               /* owned */
	int64_t index;
};
void ebs_block_get_init(struct ebs_block_get *g, const struct ebs_client *c,
			const char *snapshot_id, int64_t index, const char *token);
void ebs_block_get_release(struct ebs_block_get *g);
/* Checks RESP (the answer to G) against its x-amz-Checksum and puts the
 * data's raw SHA-256 in digest.  0 or -1 + err (naming the block). */
int ebs_block_get_check(const struct ebs_block_get *g, const struct http_response *resp,
			unsigned char digest[32], struct af_error **err);

/* Parses StartSnapshot's JSON answer (exposed for tests). */
int ebs_parse_start(const char *body, size_t len, struct ebs_snapshot_info *out,
		    struct af_error **err);
/* Parses one ListSnapshotBlocks page, appending to OUT; *next_token
 * (caller frees) is NULL on the last page. */
int ebs_parse_block_page(const char *body, size_t len, struct ebs_block_list *out,
			 char **next_token, struct af_error **err);

#endif
