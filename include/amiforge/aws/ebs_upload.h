/* SPDX-License-Identifier: Apache-2.0 */
/* Uploading an image into a pending EBS snapshot through the EBS direct
 * APIs, coldsnap's way (reference/FORMATS.md §3): one PutSnapshotBlock per
 * 512 KiB block that holds data, over `parallel` connections, then
 * CompleteSnapshot with the number of blocks written and their linear
 * aggregate checksum.  Only the image's allocated extents are read
 * (SEEK_DATA/SEEK_HOLE) and all-zero blocks are skipped: an absent block of
 * an unencrypted snapshot reads as zeros.  Encrypted snapshots get every
 * block, because their absent blocks read back as random data.
 *
 * Starting, waiting for and abandoning snapshots is the caller's (the
 * snapshot stage): this module sends blocks into a snapshot that exists.
 *
 * Resuming.  Acknowledged blocks are handed to the caller's journal
 * callback in batches, as the members of a journal record:
 *   "blocks": [[first, last], ...]   block indexes, sorted
 *   "digest": B64                    the linear aggregate of their SHA-256
 * A resumed upload is given those records back (ebs_upload_resume): it
 * re-reads their blocks, and a batch that still hashes the same is done;
 * any other is sent again (zero blocks too, so that the snapshot and the
 * block count stay exact). */
#ifndef AMIFORGE_AWS_EBS_UPLOAD_H
#define AMIFORGE_AWS_EBS_UPLOAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "amiforge/aws/ebs.h"

struct af_error;

/* Journals a batch of acknowledged blocks: BLOCKS (owned by the callee) and
 * DIGEST are the record's "blocks" and "digest" members.  0 or -1 + err
 * (the upload then stops with that error). */
typedef int ebs_upload_journal_fn(void *arg, json_t *blocks, const char *digest,
				  struct af_error **err);

struct ebs_upload_opts {
	struct ebs_client *ebs;         /* borrowed; outlives the upload */
	int fd;                         /* the image, borrowed, open for reading */
	uint64_t size;                  /* its size in bytes (> 0) */
	bool encrypted;                 /* send every block, zeros and holes too */
	int parallel;                   /* blocks in flight, 1-256 */
	ebs_upload_journal_fn *journal; /* called from ebs_upload_send */
	void *arg;
};

/* An upload of one image, remembering which blocks the snapshot has (and
 * their digests) across ebs_upload_resume, ebs_upload_send and
 * ebs_upload_complete.  Never NULL; free with ebs_upload_free. */
struct ebs_upload *ebs_upload_new(const struct ebs_upload_opts *opts);
void ebs_upload_free(struct ebs_upload *up);

/* Forgets every block: the next snapshot starts empty. */
void ebs_upload_reset(struct ebs_upload *up);

/* Checks the journaled BATCHES (an array of records with "blocks" and
 * "digest", other members ignored) of SNAPSHOT_ID against the image: the
 * blocks of a batch that still hashes the same count as sent, those of any
 * other are sent again.  A malformed or changed batch is a warning, not an
 * error.  0 or -1 + err (the image cannot be read). */
int ebs_upload_resume(struct ebs_upload *up, const char *snapshot_id, const json_t *batches,
		      struct af_error **err);

/* Sends every block SNAPSHOT_ID lacks, logging progress.  Acknowledged
 * blocks are journaled even when the upload fails.  0 or -1 + err. */
int ebs_upload_send(struct ebs_upload *up, const char *snapshot_id, struct af_error **err);

/* CompleteSnapshot for SNAPSHOT_ID with the count and the aggregate
 * checksum of every block it has.  *status (caller frees) gets AWS's
 * answer.  0 or -1 + err. */
int ebs_upload_complete(struct ebs_upload *up, const char *snapshot_id, char **status,
			struct af_error **err);

#endif
