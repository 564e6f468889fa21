/* SPDX-License-Identifier: Apache-2.0 */
/* Uploading an image into a pending EBS snapshot through the EBS direct
 * APIs, coldsnap's way (reference/FORMATS.md §3): one PutSnapshotBlock per
 * 512 KiB block the snapshot must be given, over `parallel` connections,
 * then CompleteSnapshot with the number of blocks written and their linear
 * aggregate checksum.  Only the image's allocated extents are read
 * (SEEK_DATA/SEEK_HOLE).
 *
 * Which blocks are written (ebs_block_needed):
 *   - a snapshot that starts empty gets every block that is not all zero:
 *     an absent block of an unencrypted snapshot reads as zeros;
 *   - a snapshot that starts as a PARENT's copy (StartSnapshot with
 *     ParentSnapshotId; the parent's content given as an ebs_block_map)
 *     gets every block whose content differs from the parent's, including
 *     a block of zeros where the parent has data and the image has none;
 *   - an encrypted snapshot gets every block, zeros and holes too, because
 *     its absent blocks read back as random data (no parent then).
 * ChangedBlocksCount and the aggregate checksum are over the blocks
 * written to this snapshot only, as AWS documents them ("the number of
 * blocks that were written").
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

/* A snapshot's content block by block: block b holds data whose SHA-256
 * (of its 512 KiB, the last one zero-padded) is hash[b] when is_data[b] is
 * nonzero, else zeros (or nothing).  Blocks from nblocks on are zeros.
 * The layout of checkpoint.h's ckpt_list, so that a checkpoint list can be
 * lent as one. */
struct ebs_block_map {
	int64_t nblocks;
	uint8_t (*hash)[32];
	uint8_t *is_data;
};
void ebs_block_map_release(struct ebs_block_map *m);

/* Whether block INDEX must be written to a snapshot that starts as PARENT
 * (NULL: empty) for it to read as the image's block, which is all zero
 * (IS_ZERO) or has SHA-256 DIGEST.  Not for encrypted snapshots (they get
 * every block). */
bool ebs_block_needed(const struct ebs_block_map *parent, int64_t index, bool is_zero,
		      const unsigned char digest[32]);

/* The identity of a block map, for telling whether a recorded list is the
 * one a snapshot was made from: lower-case hex SHA-256 over
 * "amiforge-ebs-blocks-v1\n", nblocks as 8 bytes big-endian, then per block
 * its 32-byte SHA-256, or 32 zero bytes for a zero block. */
void ebs_block_map_digest(const struct ebs_block_map *m, char hex[65]);

/* Reads completed snapshot SNAPSHOT_ID's content into OUT (release with
 * ebs_block_map_release): ListSnapshotBlocks, then every listed block with
 * GetSnapshotBlock over PARALLEL connections, hashed (checksums checked).
 * It downloads the whole snapshot: the fallback when no recorded list
 * says what a parent holds.  0 or -1 + err. */
int ebs_snapshot_map(struct ebs_client *ebs, const char *snapshot_id, int parallel,
		     struct ebs_block_map *out, struct af_error **err);

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

/* Forgets every block: the next snapshot starts as PARENT's copy (borrowed,
 * must outlive the upload's use of it; NULL: empty).  Ignored when
 * encrypted. */
void ebs_upload_reset(struct ebs_upload *up, const struct ebs_block_map *parent);

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

/* After a successful ebs_upload_send: the image's own content as a block
 * map (nblocks: the image's blocks), owned by UP and valid until the next
 * reset.  What the snapshot now holds, whatever its parent. */
const struct ebs_block_map *ebs_upload_image_map(const struct ebs_upload *up);

/* Blocks written to the snapshot so far (ChangedBlocksCount). */
int64_t ebs_upload_written(struct ebs_upload *up);

/* CompleteSnapshot for SNAPSHOT_ID with the count and the aggregate
 * checksum of every block it has.  *status (caller frees) gets AWS's
 * answer.  0 or -1 + err. */
int ebs_upload_complete(struct ebs_upload *up, const char *snapshot_id, char **status,
			struct af_error **err);

#endif
