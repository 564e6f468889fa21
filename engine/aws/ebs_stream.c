/* SPDX-License-Identifier: Apache-2.0 */
/* A streamed image into a pending EBS snapshot (ebs_stream.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/aws/ebs_stream.h"
#include "amiforge/error.h"
#include "amiforge/mem.h"

#define EBS_STREAM_DEFAULT_PARALLEL 8
#define EBS_STREAM_MAX_PARALLEL 64

struct ebs_stream_slot {
	struct ebs_block_put put;
	unsigned char *data;
	int64_t index;
};

struct ebs_stream {
	const struct ebs_client *ebs;
	char *snapshot_id;
	int64_t nblocks;
	int parallel;
	unsigned char *blk;           /* the block being gathered */
	int64_t cur;                  /* its index, -1 none */
	uint64_t end;                 /* the end of the last write */
	struct ebs_stream_slot *slots;
	size_t n_queued;
	struct ebs_digests digests;
};

struct ebs_stream *ebs_stream_new(const struct ebs_stream_opts *o)
{
	struct ebs_stream *s = xcalloc(1, sizeof(*s));
	s->ebs = o->ebs;
	s->snapshot_id = xstrdup(o->snapshot_id);
	s->nblocks = (int64_t)((o->size + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE);
	s->parallel = o->parallel > 0 ? o->parallel : EBS_STREAM_DEFAULT_PARALLEL;
	if (s->parallel > EBS_STREAM_MAX_PARALLEL)
		s->parallel = EBS_STREAM_MAX_PARALLEL;
	s->blk = xmalloc(EBS_BLOCK_SIZE);
	s->cur = -1;
	s->slots = xcalloc((size_t)s->parallel, sizeof(*s->slots));
	for (int i = 0; i < s->parallel; i++)
		s->slots[i].data = xmalloc(EBS_BLOCK_SIZE);
	return s;
}

void ebs_stream_free(struct ebs_stream *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->parallel; i++)
		free(s->slots[i].data);
	free(s->slots);
	free(s->blk);
	free(s->snapshot_id);
	ebs_digests_release(&s->digests);
	free(s);
}

int64_t ebs_stream_written(const struct ebs_stream *s)
{
	return (int64_t)s->digests.n;
}

/* PutSnapshotBlock for every queued block, in parallel. */
static int stream_flush(struct ebs_stream *s, struct af_error **err)
{
	if (!s->n_queued)
		return 0;
	struct http_batch_item *items = xcalloc(s->n_queued, sizeof(*items));
	for (size_t i = 0; i < s->n_queued; i++) {
		struct ebs_stream_slot *sl = &s->slots[i];
		int pct = (int)(sl->index * 100 / (s->nblocks ? s->nblocks : 1));
		ebs_block_put_init(&sl->put, s->ebs, s->snapshot_id, sl->index, sl->data, EBS_BLOCK_SIZE, pct);
		items[i].req = sl->put.req;
	}
	int rc = http_batch_run_items(items, s->n_queued, s->parallel, err);
	for (size_t i = 0; i < s->n_queued; i++) {
		if (rc == 0)
			ebs_digests_add(&s->digests, s->slots[i].index, s->slots[i].put.digest);
		http_response_release(&items[i].resp);
		af_error_free(items[i].err);
		ebs_block_put_release(&s->slots[i].put);
	}
	free(items);
	s->n_queued = 0;
	if (rc < 0)
		return af_error_wrap(err, "write to snapshot %s", s->snapshot_id);
	return 0;
}

/* The gathered block is complete: queue it unless it is all zero. */
static int stream_close_block(struct ebs_stream *s, struct af_error **err)
{
	if (s->cur < 0)
		return 0;
	int64_t idx = s->cur;
	s->cur = -1;
	if (mem_is_zero(s->blk, EBS_BLOCK_SIZE))
		return 0;
	struct ebs_stream_slot *sl = &s->slots[s->n_queued++];
	unsigned char *t = sl->data;
	sl->data = s->blk;
	sl->index = idx;
	s->blk = t;
	return s->n_queued == (size_t)s->parallel ? stream_flush(s, err) : 0;
}

int ebs_stream_write(struct ebs_stream *s, uint64_t off, const void *data, size_t len,
		     struct af_error **err)
{
	if (off < s->end)
		return af_error_set(err, 0, "snapshot %s: image data at byte %" PRIu64 " comes after byte %" PRIu64
					    " (a stream must go forward)",
				    s->snapshot_id, off, s->end);
	if (len && off + len > (uint64_t)s->nblocks * EBS_BLOCK_SIZE)
		return af_error_set(err, 0, "snapshot %s: image data at byte %" PRIu64 " runs past the volume (%" PRId64
					    " blocks)",
				    s->snapshot_id, off + len, s->nblocks);
	const unsigned char *p = data;
	while (len) {
		int64_t idx = (int64_t)(off / EBS_BLOCK_SIZE);
		if (idx != s->cur) {
			if (stream_close_block(s, err) < 0)
				return -1;
			memset(s->blk, 0, EBS_BLOCK_SIZE);
			s->cur = idx;
		}
		size_t in = (size_t)(off % EBS_BLOCK_SIZE), k = EBS_BLOCK_SIZE - in;
		if (k > len)
			k = len;
		memcpy(s->blk + in, p, k);
		p += k;
		len -= k;
		off += k;
	}
	s->end = off > s->end ? off : s->end;
	return 0;
}

int ebs_stream_finish(struct ebs_stream *s, char **status, struct af_error **err)
{
	if (stream_close_block(s, err) < 0 || stream_flush(s, err) < 0)
		return -1;
	char agg[45];
	int64_t n = (int64_t)ebs_digests_count(&s->digests);
	ebs_digests_aggregate(&s->digests, agg);
	return ebs_complete_snapshot(s->ebs, s->snapshot_id, n, n ? agg : NULL, status, err);
}
