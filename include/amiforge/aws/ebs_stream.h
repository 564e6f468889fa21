/* SPDX-License-Identifier: Apache-2.0 */
/* Writing an image that arrives as a stream (ascending offsets, holes
 * skipped) into a pending EBS snapshot that starts empty: the streaming
 * counterpart of ebs_upload.h, which reads a file descriptor.
 *
 * Data is gathered block by block (512 KiB); a finished block that is not
 * all zero is queued, and the queue (at most `parallel` blocks) is sent
 * with PutSnapshotBlock over `parallel` connections when it is full.
 * Memory: (parallel + 1) blocks, whatever the image's size.  An absent
 * block of an unencrypted snapshot reads as zeros, so zero blocks and
 * holes are never sent (not for encrypted snapshots: they would read as
 * random data). */
#ifndef AMIFORGE_AWS_EBS_STREAM_H
#define AMIFORGE_AWS_EBS_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "amiforge/aws/ebs.h"

struct af_error;

struct ebs_stream_opts {
	const struct ebs_client *ebs;   /* borrowed; outlives the stream */
	const char *snapshot_id;        /* borrowed; pending, started empty, unencrypted */
	uint64_t size;                  /* the volume's size in bytes: writes past it fail */
	int parallel;                   /* blocks in flight, 1-64 (0: 8) */
};

/* Never NULL; free with ebs_stream_free. */
struct ebs_stream *ebs_stream_new(const struct ebs_stream_opts *opts);
void ebs_stream_free(struct ebs_stream *s);

/* LEN bytes of the image at byte offset OFF, which is at or after the end
 * of the previous write (bytes not written read as zeros).  0, or -1 + err
 * (a write going backwards or past the volume, or a block refused by
 * AWS). */
int ebs_stream_write(struct ebs_stream *s, uint64_t off, const void *data, size_t len,
		     struct af_error **err);

/* Sends what is left, then CompleteSnapshot with the number of blocks
 * written and their linear aggregate checksum.  *status (may be NULL;
 * caller frees) gets AWS's answer.  0 or -1 + err. */
int ebs_stream_finish(struct ebs_stream *s, char **status, struct af_error **err);

/* Blocks written so far (after ebs_stream_finish: all of them). */
int64_t ebs_stream_written(const struct ebs_stream *s);

#endif
