/* SPDX-License-Identifier: Apache-2.0 */
/* The EBS direct upload pipeline (ebs_upload.h): the image's extents, its
 * blocks read and those the snapshot already holds (zeros, or the parent's
 * same content) skipped, PutSnapshotBlock over an HTTP batch, acknowledged
 * blocks journaled in batches, CompleteSnapshot; and a parent snapshot's
 * content read back when nothing recorded it. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "amiforge/aws/ebs.h"
#include "amiforge/aws/ebs_upload.h"
#include "amiforge/aws/http.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/util.h"

/* Journal acknowledged blocks in batches: a resume re-sends at most this
 * much, and the journal stays small (DESIGN §5). */
#define SNAP_BATCH_BLOCKS 64
#define SNAP_BATCH_SECONDS 1.0
#define SNAP_PROGRESS_SECONDS 5.0

struct ebs_upload {
	struct ebs_client *ebs;
	int fd;
	uint64_t size;
	int64_t n_blocks;
	bool encrypted;
	int parallel;
	ebs_upload_journal_fn *journal;
	void *arg;
	const char *snapshot_id; /* the current call's */
	const struct ebs_block_map *parent; /* what the snapshot started as; NULL: empty */
	int64_t n_span; /* blocks to look at: the image's, or the parent's if it has more */
	uint8_t *done;  /* blocks written (acknowledged and still the same) */
	uint8_t *force; /* blocks to send whatever they hold (a changed journaled batch) */
	int64_t n_before; /* blocks done by earlier attempts */
	struct ebs_digests digests; /* of every block written to the snapshot */
	struct ebs_block_map image; /* the image's content, as far as read */
};

/* ---- the image's blocks ---- */

/* Block ranges [first, end) worth reading, sorted and disjoint. */
struct snap_extents {
	struct snap_extent {
		int64_t first, end;
	} *v;
	size_t n, alloc;
	uint64_t blocks; /* blocks covered */
};

static void snap_extents_add(struct snap_extents *e, int64_t first, int64_t end)
{
	if (first >= end)
		return;
	/* In order: merge with the last range when they touch. */
	if (e->n && first >= e->v[e->n - 1].first && first <= e->v[e->n - 1].end) {
		if (end > e->v[e->n - 1].end)
			e->v[e->n - 1].end = end;
		return;
	}
	if (e->n == e->alloc) {
		e->alloc = e->alloc ? 2 * e->alloc : 64;
		e->v = xreallocarray(e->v, e->alloc, sizeof(*e->v));
	}
	e->v[e->n++] = (struct snap_extent){ first, end };
}

static int snap_extent_cmp(const void *a, const void *b)
{
	const struct snap_extent *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* Sorts and merges (after snap_extents_add calls out of order) and counts
 * the blocks. */
static void snap_extents_finish(struct snap_extents *e)
{
	qsort(e->v, e->n, sizeof(*e->v), snap_extent_cmp);
	size_t n = e->n;
	e->n = 0;
	for (size_t i = 0; i < n; i++)
		snap_extents_add(e, e->v[i].first, e->v[i].end);
	e->blocks = 0;
	for (size_t i = 0; i < e->n; i++)
		e->blocks += (uint64_t)(e->v[i].end - e->v[i].first);
}

static void snap_extents_release(struct snap_extents *e)
{
	free(e->v);
	memset(e, 0, sizeof(*e));
}

/* The blocks of FD (SIZE bytes) that hold allocated data, from SEEK_DATA and
 * SEEK_HOLE; everything when ALL or when the file system cannot say.  0 or
 * -1 + err. */
static int snap_scan(int fd, uint64_t size, bool all, struct snap_extents *e, struct af_error **err)
{
	int64_t n_blocks = (int64_t)((size + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE);
	off_t off = 0;
	while (!all && (uint64_t)off < size) {
		off_t d = lseek(fd, off, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0 && (errno == EINVAL || errno == EOPNOTSUPP)) {
			all = true;
			break;
		}
		if (d < 0)
			return af_error_set(err, errno, "find the data in the image (SEEK_DATA at %lld)", (long long)off);
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return af_error_set(err, errno, "find the holes in the image (SEEK_HOLE at %lld)", (long long)d);
		snap_extents_add(e, d / EBS_BLOCK_SIZE, (h + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE);
		off = h;
	}
	if (all) {
		e->n = 0;
		snap_extents_add(e, 0, n_blocks);
	}
	snap_extents_finish(e);
	return 0;
}

/* Reads block INDEX into BUF (EBS_BLOCK_SIZE bytes), zero-padded past the
 * end of the image as coldsnap pads the last block. */
static int snap_read_block(int fd, int64_t index, unsigned char *buf, struct af_error **err)
{
	ssize_t n = pread_all(fd, buf, EBS_BLOCK_SIZE, (off_t)index * EBS_BLOCK_SIZE);
	if (n < 0)
		return af_error_set(err, errno, "read block %" PRId64 " of the image", index);
	memset(buf + n, 0, EBS_BLOCK_SIZE - (size_t)n);
	return 0;
}

static bool bit_get(const uint8_t *b, int64_t i)
{
	return (b[i >> 3] >> (i & 7)) & 1;
}

static void bit_set(uint8_t *b, int64_t i)
{
	b[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* Records image block I (past the image: zeros sent over a parent's data,
 * not part of the image's map). */
static void map_set(struct ebs_block_map *m, int64_t i, bool is_zero, const unsigned char *digest)
{
	if (i >= m->nblocks)
		return;
	m->is_data[i] = !is_zero;
	if (is_zero)
		memset(m->hash[i], 0, 32);
	else
		memcpy(m->hash[i], digest, 32);
}

/* ---- journal records ---- */

/* [[first, last], ...] of the sorted, distinct indexes in D. */
static json_t *snap_ranges(const struct ebs_digests *d)
{
	json_t *out = json_array();
	for (size_t i = 0; i < d->n;) {
		size_t j = i;
		while (j + 1 < d->n && d->v[j + 1].index == d->v[j].index + 1)
			j++;
		json_array_append_new(out, json_pack("[I, I]", (json_int_t)d->v[i].index, (json_int_t)d->v[j].index));
		i = j + 1;
	}
	return out;
}

/* ---- resuming ---- */

/* Checks the journaled batches against the image (see ebs_upload.h): a
 * batch that still hashes to its digest is done, any other is
 * forced to be sent again. */
static int snap_verify_batches(struct ebs_upload *j, const json_t *batches, struct af_error **err)
{
	_cleanup_free_ unsigned char *buf = xmalloc(EBS_BLOCK_SIZE);
	size_t i;
	const json_t *b;
	json_array_foreach(batches, i, b) {
		struct ebs_digests d = EBS_DIGESTS_INIT;
		const json_t *ranges = json_object_get(b, "blocks");
		bool valid = json_is_array(ranges);
		size_t k;
		const json_t *rg;
		json_array_foreach(ranges, k, rg) {
			int64_t first = json_integer_value(json_array_get(rg, 0));
			int64_t last = json_integer_value(json_array_get(rg, 1));
			if (first < 0 || last < first || last >= j->n_span) {
				valid = false;
				break;
			}
			for (int64_t x = first; x <= last; x++) {
				unsigned char digest[32];
				char b64[45];
				if (snap_read_block(j->fd, x, buf, err) < 0) {
					ebs_digests_release(&d);
					return -1;
				}
				ebs_block_checksum(buf, EBS_BLOCK_SIZE, digest, b64);
				ebs_digests_add(&d, x, digest);
				map_set(&j->image, x, mem_is_zero(buf, EBS_BLOCK_SIZE), digest);
			}
		}
		char agg[45];
		ebs_digests_aggregate(&d, agg);
		const char *want = json_string_value(json_object_get(b, "digest"));
		bool same = valid && want && !strcmp(agg, want);
		for (size_t x = 0; x < d.n; x++) {
			if (same && !bit_get(j->done, d.v[x].index)) {
				bit_set(j->done, d.v[x].index);
				ebs_digests_add(&j->digests, d.v[x].index, d.v[x].digest);
				j->n_before++;
			} else if (!same) {
				bit_set(j->force, d.v[x].index);
			}
		}
		if (!valid)
			log_warn("snapshot %s: a journaled batch of blocks is malformed; its blocks are sent again",
				 j->snapshot_id);
		else if (!same)
			log_warn("snapshot %s: %zu journaled blocks differ from the image now; sending them again",
				 j->snapshot_id, d.n);
		ebs_digests_release(&d);
	}
	return 0;
}

/* ---- sending ---- */

struct snap_item {
	struct http_batch_item item;
	struct ebs_block_put put;
	unsigned char *data;
	bool busy, zero;
};

struct snap_upload {
	struct ebs_upload *j;
	struct snap_extents ext;
	size_t ext_i;
	int64_t next;             /* next block of ext.v[ext_i] */
	struct snap_item *pool;   /* j->parallel items: next() runs only with a free one */
	struct ebs_digests batch; /* acknowledged, not yet journaled */
	double t0, last_flush, last_progress;
	uint64_t scanned;         /* blocks of the extents looked at */
	int64_t sent, zero_skipped, same_skipped; /* same: as the parent has it */
};

static struct snap_item *snap_free_item(struct snap_upload *u)
{
	for (int i = 0; i < u->j->parallel; i++)
		if (!u->pool[i].busy) {
			if (!u->pool[i].data)
				u->pool[i].data = xmalloc(EBS_BLOCK_SIZE);
			return &u->pool[i];
		}
	BUG("snapshot upload: more requests in flight than items");
}

static int snap_flush(struct snap_upload *u, struct af_error **err)
{
	u->last_flush = now_monotonic();
	if (!u->batch.n)
		return 0;
	char agg[45];
	ebs_digests_aggregate(&u->batch, agg);
	json_t *blocks = snap_ranges(&u->batch);
	ebs_digests_release(&u->batch);
	return u->j->journal(u->j->arg, blocks, agg, err);
}

static void snap_progress(struct snap_upload *u, bool last)
{
	double now = now_monotonic();
	if (!last && now - u->last_progress < SNAP_PROGRESS_SECONDS)
		return;
	u->last_progress = now;
	double secs = now - u->t0 > 1e-3 ? now - u->t0 : 1e-3;
	double rate = (double)u->sent * EBS_BLOCK_SIZE / secs;
	double scan_rate = (double)u->scanned / secs;
	double eta = scan_rate > 0 ? (double)(u->ext.blocks - u->scanned) / scan_rate : 0;
	char done_s[32], total_s[32], rate_s[32];
	format_size(u->scanned * EBS_BLOCK_SIZE, done_s, sizeof(done_s));
	format_size(u->ext.blocks * EBS_BLOCK_SIZE, total_s, sizeof(total_s));
	format_size((uint64_t)rate, rate_s, sizeof(rate_s));
	log_info("snapshot %s: %s of %s read, %" PRId64 " blocks sent, %" PRId64 " zero blocks skipped, %" PRId64
		 " unchanged from the parent, %s/s, ETA %.0fs",
		 u->j->snapshot_id, done_s, total_s, u->sent, u->zero_skipped, u->same_skipped, rate_s,
		 last ? 0.0 : eta);
}

/* Whether block IDX, read into IT, is to be sent (ebs_upload.h); counts
 * the others.  With a parent the block is hashed here, to compare it with
 * the parent's; without one only sent blocks are hashed, by the PUT, and
 * recorded in the image's map when acknowledged. */
static bool snap_wanted(struct snap_upload *u, int64_t idx, struct snap_item *it)
{
	struct ebs_upload *j = u->j;
	unsigned char digest[32] = { 0 };
	it->zero = mem_is_zero(it->data, EBS_BLOCK_SIZE);
	if (it->zero)
		map_set(&j->image, idx, true, NULL);
	if (j->encrypted || bit_get(j->force, idx))
		return true;
	if (j->parent && !it->zero) {
		char b64[45];
		ebs_block_checksum(it->data, EBS_BLOCK_SIZE, digest, b64);
		map_set(&j->image, idx, false, digest);
	}
	if (!j->parent && !it->zero)
		return true;
	if (ebs_block_needed(j->parent, idx, it->zero, digest))
		return true;
	if (it->zero)
		u->zero_skipped++;
	else
		u->same_skipped++;
	return false;
}

/* The batch's producer: the next block worth sending, read into a free
 * item.  Blocks already written are skipped, and so are those the
 * snapshot holds anyway (snap_wanted). */
static int snap_next(void *data, struct http_batch_item **item, struct af_error **err)
{
	struct snap_upload *u = data;
	struct ebs_upload *j = u->j;
	struct snap_item *it = snap_free_item(u);
	while (u->ext_i < u->ext.n) {
		if (u->next < u->ext.v[u->ext_i].first)
			u->next = u->ext.v[u->ext_i].first;
		if (u->next >= u->ext.v[u->ext_i].end) {
			u->ext_i++;
			continue;
		}
		int64_t idx = u->next++;
		u->scanned++;
		if (bit_get(j->done, idx))
			continue;
		if (snap_read_block(j->fd, idx, it->data, err) < 0)
			return -1;
		if (!snap_wanted(u, idx, it))
			continue;
		int pct = (int)(100 * u->scanned / (u->ext.blocks ? u->ext.blocks : 1));
		ebs_block_put_init(&it->put, j->ebs, j->snapshot_id, idx, it->data, EBS_BLOCK_SIZE, pct);
		it->item.req = it->put.req;
		it->item.user = it;
		it->busy = true;
		*item = &it->item;
		return 1;
	}
	return 0;
}

static int snap_done(void *data, struct http_batch_item *item, struct af_error **err)
{
	struct snap_upload *u = data;
	struct snap_item *it = item->user;
	int r = 0;
	if (item->err) {
		*err = steal_pointer(&item->err);
		r = -1;
	} else {
		ebs_digests_add(&u->j->digests, it->put.index, it->put.digest);
		ebs_digests_add(&u->batch, it->put.index, it->put.digest);
		map_set(&u->j->image, it->put.index, it->zero, it->put.digest);
		bit_set(u->j->done, it->put.index);
		u->sent++;
	}
	http_response_release(&item->resp);
	ebs_block_put_release(&it->put);
	it->busy = false;
	if (r == 0 && (u->batch.n >= SNAP_BATCH_BLOCKS || now_monotonic() - u->last_flush >= SNAP_BATCH_SECONDS))
		r = snap_flush(u, err);
	snap_progress(u, false);
	return r;
}

/* The blocks to look at: the image's allocated extents, and the forced
 * blocks and the parent's data, which may lie in what is a hole now (a
 * block the image zeroed is sent as zeros over the parent's).  0 or -1 +
 * err. */
static int snap_plan(struct ebs_upload *j, struct snap_extents *e, struct af_error **err)
{
	if (snap_scan(j->fd, j->size, j->encrypted, e, err) < 0)
		return -1;
	for (int64_t x = 0; x < j->n_span; x++)
		if (bit_get(j->force, x) || (j->parent && x < j->parent->nblocks && j->parent->is_data[x]))
			snap_extents_add(e, x, x + 1);
	snap_extents_finish(e);
	return 0;
}

/* Sends every block the snapshot lacks.  Acknowledged blocks are journaled
 * even when the upload fails. */
static int snap_upload(struct ebs_upload *j, struct af_error **err)
{
	struct snap_upload u = { .j = j, .pool = xcalloc((size_t)j->parallel, sizeof(*u.pool)) };
	int r = snap_plan(j, &u.ext, err);
	u.t0 = u.last_flush = u.last_progress = now_monotonic();
	if (r == 0) {
		char sz[32];
		log_info("snapshot %s: %s of allocated data in %zu extents to read, %" PRId64
			 " blocks already sent by an earlier attempt, %s, %d connections",
			 j->snapshot_id, format_size(u.ext.blocks * EBS_BLOCK_SIZE, sz, sizeof(sz)), u.ext.n,
			 j->n_before, j->parent ? "only blocks that differ from the parent's" : "no parent",
			 j->parallel);
		const struct http_batch b = { .max_parallel = j->parallel, .next = snap_next, .done = snap_done,
					      .data = &u };
		r = http_batch_run(&b, err);
	}
	_cleanup_error_ struct af_error *ferr = NULL;
	if (snap_flush(&u, &ferr) < 0 && r == 0) {
		*err = steal_pointer(&ferr);
		r = -1;
	}
	if (r == 0) {
		snap_progress(&u, true);
		log_info("snapshot %s: sent %" PRId64 " blocks in %.1fs, %" PRId64 " zero blocks skipped, %" PRId64
			 " unchanged from the parent, %" PRId64 " blocks from earlier attempts, peak RSS %ld KiB",
			 j->snapshot_id, u.sent, now_monotonic() - u.t0, u.zero_skipped, u.same_skipped,
			 j->n_before, proc_peak_rss_kib());
	}
	for (int i = 0; i < j->parallel; i++) {
		/* Abandoned in flight when the batch stopped. */
		if (u.pool[i].busy) {
			http_response_release(&u.pool[i].item.resp);
			af_error_free(u.pool[i].item.err);
			ebs_block_put_release(&u.pool[i].put);
		}
		free(u.pool[i].data);
	}
	free(u.pool);
	ebs_digests_release(&u.batch);
	snap_extents_release(&u.ext);
	return r;
}

/* ---- block maps ---- */

void ebs_block_map_release(struct ebs_block_map *m)
{
	if (!m)
		return;
	free(m->hash);
	free(m->is_data);
	memset(m, 0, sizeof(*m));
}

bool ebs_block_needed(const struct ebs_block_map *parent, int64_t index, bool is_zero,
		      const unsigned char digest[32])
{
	bool parent_data = parent && index < parent->nblocks && parent->is_data[index];
	if (is_zero)
		return parent_data;
	return !parent_data || memcmp(parent->hash[index], digest, 32) != 0;
}

void ebs_block_map_digest(const struct ebs_block_map *m, char hex[65])
{
	static const char magic[] = "amiforge-ebs-blocks-v1\n";
	static const unsigned char zero[32];
	unsigned char n[8], out[32];
	for (int i = 0; i < 8; i++)
		n[i] = (unsigned char)((uint64_t)m->nblocks >> (56 - 8 * i));
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		BUG("openssl: cannot start SHA-256");
	EVP_DigestUpdate(ctx, magic, sizeof(magic) - 1);
	EVP_DigestUpdate(ctx, n, sizeof(n));
	for (int64_t b = 0; b < m->nblocks; b++)
		EVP_DigestUpdate(ctx, m->is_data[b] ? m->hash[b] : zero, 32);
	EVP_DigestFinal_ex(ctx, out, NULL);
	EVP_MD_CTX_free(ctx);
	hex_encode(out, sizeof(out), hex);
}

/* Reading a snapshot back: GetSnapshotBlock over an HTTP batch. */
struct snap_fetch {
	struct ebs_client *ebs;
	const char *snapshot_id;
	const struct ebs_block_list *list;
	size_t next, fetched;
	int parallel;
	struct fetch_item {
		struct http_batch_item item;
		struct ebs_block_get get;
		bool busy;
	} *pool;
	struct ebs_block_map *map;
	double t0, last_progress;
};

static int fetch_next(void *data, struct http_batch_item **item, struct af_error **err)
{
	struct snap_fetch *f = data;
	if (f->next >= f->list->n)
		return 0;
	for (int i = 0; i < f->parallel; i++) {
		struct fetch_item *it = &f->pool[i];
		if (it->busy)
			continue;
		const struct ebs_block *b = &f->list->v[f->next++];
		ebs_block_get_init(&it->get, f->ebs, f->snapshot_id, b->index, b->token);
		it->item.req = it->get.req;
		it->item.user = it;
		it->busy = true;
		*item = &it->item;
		return 1;
	}
	BUG("snapshot read: more requests in flight than items");
}

/* One block back: checked, hashed into the map. */
static int fetch_done(void *data, struct http_batch_item *item, struct af_error **err)
{
	struct snap_fetch *f = data;
	struct fetch_item *it = item->user;
	unsigned char digest[32];
	int r = 0;
	if (item->err) {
		*err = steal_pointer(&item->err);
		r = -1;
	} else if (item->resp.body_len != EBS_BLOCK_SIZE) {
		r = af_error_set(err, 0, "%s: %zu bytes, not a whole block", it->get.action, item->resp.body_len);
	} else if ((r = ebs_block_get_check(&it->get, &item->resp, digest, err)) == 0) {
		map_set(f->map, it->get.index, mem_is_zero(item->resp.body, EBS_BLOCK_SIZE), digest);
		f->fetched++;
	}
	http_response_release(&item->resp);
	ebs_block_get_release(&it->get);
	it->busy = false;
	double now = now_monotonic();
	if (r == 0 && now - f->last_progress >= SNAP_PROGRESS_SECONDS) {
		f->last_progress = now;
		log_info("snapshot %s: %zu of %zu blocks read back", f->snapshot_id, f->fetched, f->list->n);
	}
	return r;
}

/* The map's size: one past the highest listed block.  -1 + err for an
 * index no volume can have. */
static int64_t fetch_span(const struct ebs_block_list *l, const char *snapshot_id, struct af_error **err)
{
	int64_t n = 0, max = (int64_t)65536 * ((1 << 30) / EBS_BLOCK_SIZE);
	if (l->block_size != EBS_BLOCK_SIZE)
		return af_error_set(err, 0, "snapshot %s has %" PRId64 "-byte blocks, not %d", snapshot_id,
				    l->block_size, EBS_BLOCK_SIZE);
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].index < 0 || l->v[i].index >= max)
			return af_error_set(err, 0, "snapshot %s lists block %" PRId64 ", out of range", snapshot_id,
					    l->v[i].index);
		if (l->v[i].index + 1 > n)
			n = l->v[i].index + 1;
	}
	return n;
}

int ebs_snapshot_map(struct ebs_client *ebs, const char *snapshot_id, int parallel,
		     struct ebs_block_map *out, struct af_error **err)
{
	struct ebs_block_list l = { 0 };
	if (ebs_list_blocks(ebs, snapshot_id, 0, &l, err) < 0)
		return -1;
	int64_t n = fetch_span(&l, snapshot_id, err);
	if (n < 0) {
		ebs_block_list_release(&l);
		return -1;
	}
	struct ebs_block_map m = { .nblocks = n, .hash = xcalloc(n ? (size_t)n : 1, 32),
				   .is_data = xcalloc(n ? (size_t)n : 1, 1) };
	struct snap_fetch f = { .ebs = ebs, .snapshot_id = snapshot_id, .list = &l, .map = &m,
				.parallel = parallel > 0 ? parallel : 1 };
	f.pool = xcalloc((size_t)f.parallel, sizeof(*f.pool));
	f.t0 = f.last_progress = now_monotonic();
	log_info("snapshot %s: reading back its %zu blocks to compare with the image", snapshot_id, l.n);
	const struct http_batch b = { .max_parallel = f.parallel, .next = fetch_next, .done = fetch_done,
				      .data = &f };
	int r = http_batch_run(&b, err);
	for (int i = 0; i < f.parallel; i++)
		if (f.pool[i].busy) {
			/* Abandoned in flight when the batch stopped. */
			http_response_release(&f.pool[i].item.resp);
			af_error_free(f.pool[i].item.err);
			ebs_block_get_release(&f.pool[i].get);
		}
	free(f.pool);
	ebs_block_list_release(&l);
	if (r < 0) {
		ebs_block_map_release(&m);
		return af_error_wrap(err, "read back snapshot %s", snapshot_id);
	}
	log_info("snapshot %s: read back %zu blocks in %.1fs", snapshot_id, f.fetched, now_monotonic() - f.t0);
	*out = m;
	return 0;
}

/* ---- the API ---- */

struct ebs_upload *ebs_upload_new(const struct ebs_upload_opts *o)
{
	struct ebs_upload *up = xcalloc(1, sizeof(*up));
	up->ebs = o->ebs;
	up->fd = o->fd;
	up->size = o->size;
	up->n_blocks = (int64_t)((o->size + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE);
	up->encrypted = o->encrypted;
	up->parallel = o->parallel;
	up->journal = o->journal;
	up->arg = o->arg;
	ebs_upload_reset(up, NULL);
	return up;
}

void ebs_upload_reset(struct ebs_upload *j, const struct ebs_block_map *parent)
{
	j->parent = j->encrypted ? NULL : parent;
	j->n_span = j->n_blocks;
	if (j->parent && j->parent->nblocks > j->n_span)
		j->n_span = j->parent->nblocks;
	size_t bytes = (size_t)(j->n_span + 7) / 8 + 1;
	free(j->done);
	free(j->force);
	j->done = xcalloc(1, bytes);
	j->force = xcalloc(1, bytes);
	j->n_before = 0;
	ebs_digests_release(&j->digests);
	ebs_block_map_release(&j->image);
	size_t n = j->n_blocks ? (size_t)j->n_blocks : 1;
	j->image = (struct ebs_block_map){ .nblocks = j->n_blocks, .hash = xcalloc(n, 32), .is_data = xcalloc(n, 1) };
}

void ebs_upload_free(struct ebs_upload *up)
{
	if (!up)
		return;
	free(up->done);
	free(up->force);
	ebs_digests_release(&up->digests);
	ebs_block_map_release(&up->image);
	free(up);
}

int ebs_upload_resume(struct ebs_upload *up, const char *snapshot_id, const json_t *batches,
		      struct af_error **err)
{
	up->snapshot_id = snapshot_id;
	int r = snap_verify_batches(up, batches, err);
	up->snapshot_id = NULL;
	return r;
}

int ebs_upload_send(struct ebs_upload *up, const char *snapshot_id, struct af_error **err)
{
	up->snapshot_id = snapshot_id;
	int r = snap_upload(up, err);
	up->snapshot_id = NULL;
	return r;
}

const struct ebs_block_map *ebs_upload_image_map(const struct ebs_upload *up)
{
	return &up->image;
}

int64_t ebs_upload_written(struct ebs_upload *up)
{
	return (int64_t)ebs_digests_count(&up->digests);
}

int ebs_upload_complete(struct ebs_upload *up, const char *snapshot_id, char **status,
			struct af_error **err)
{
	char agg[45];
	ebs_digests_aggregate(&up->digests, agg);
	int64_t count = (int64_t)ebs_digests_count(&up->digests);
	/* Nothing written (an all-zero image, or the parent's content): the
	 * aggregate of no checksums means nothing, and it is optional. */
	if (ebs_complete_snapshot(up->ebs, snapshot_id, count, count ? agg : NULL, status, err) < 0)
		return -1;
	log_info("snapshot %s: CompleteSnapshot with %" PRId64 " blocks (aggregate %s): %s", snapshot_id,
		 count, agg, *status ? *status : "?");
	return 0;
}
