/* SPDX-License-Identifier: Apache-2.0 */
/* The EBS upload pipeline's parts that need no server: the extent scan of a
 * sparse file, journal ranges, zero blocks, checking journaled batches
 * against the image, choosing the blocks to send over a parent snapshot,
 * and block maps and their identity.  The module is included so its static helpers can be
 * tested; uploads are tested against fakeaws in
 * tests/integration/out_snapshot.sh and out_ebs.sh. */
#include "testutil.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include "../../engine/aws/ebs_upload.c"

/* A sparse file of SIZE bytes with data written at the given offsets. */
static int sparse_file(const char *dir, uint64_t size, const uint64_t *offs, const size_t *lens, size_t n,
		       char **path)
{
	*path = path_join(dir, "img");
	int fd = open(*path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	for (size_t i = 0; i < n; i++) {
		unsigned char *buf = malloc(lens[i]);
		for (size_t k = 0; k < lens[i]; k++)
			buf[k] = (unsigned char)(k * 7 + i + 1) | 1;
		assert_int_equal(pwrite_all(fd, buf, lens[i], (off_t)offs[i]), 0);
		free(buf);
	}
	assert_int_equal(fsync(fd), 0);
	return fd;
}

static void test_scan(void **state)
{
	(void)state;
	char *dir = test_mkdtemp(), *path = NULL;
	const uint64_t offs[] = { 0, 3000 * 1000, 11 * EBS_BLOCK_SIZE, 12 * EBS_BLOCK_SIZE };
	const size_t lens[] = { 4096, 1000, 4096, 4096 };
	int fd = sparse_file(dir, 64ULL << 20, offs, lens, 4, &path);
	struct snap_extents e = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(snap_scan(fd, 64ULL << 20, false, &e, &err), 0);
	/* The file system may allocate more than was written, never less, and
	 * never the whole 128 blocks for three small writes. */
	bool has0 = false, has5 = false, has11 = false, has12 = false;
	for (size_t i = 0; i < e.n; i++) {
		assert_true(e.v[i].first < e.v[i].end);
		if (i)
			assert_true(e.v[i - 1].end < e.v[i].first);
		has0 |= e.v[i].first <= 0 && 0 < e.v[i].end;
		has5 |= e.v[i].first <= 5 && 5 < e.v[i].end;
		has11 |= e.v[i].first <= 11 && 11 < e.v[i].end;
		has12 |= e.v[i].first <= 12 && 12 < e.v[i].end;
	}
	assert_true(has0 && has5 && has11 && has12);
	assert_true(e.blocks < 64);
	snap_extents_release(&e);
	/* Encrypted: every block, holes included. */
	assert_int_equal(snap_scan(fd, (64ULL << 20) + 1, true, &e, &err), 0);
	assert_int_equal(e.n, 1);
	assert_int_equal(e.v[0].first, 0);
	assert_int_equal(e.v[0].end, 129);
	assert_int_equal(e.blocks, 129);
	snap_extents_release(&e);
	/* Out of order and overlapping ranges merge. */
	snap_extents_add(&e, 10, 12);
	snap_extents_add(&e, 1, 3);
	snap_extents_add(&e, 2, 5);
	snap_extents_add(&e, 11, 11);
	snap_extents_finish(&e);
	assert_int_equal(e.n, 2);
	assert_int_equal(e.v[0].first, 1);
	assert_int_equal(e.v[0].end, 5);
	assert_int_equal(e.v[1].first, 10);
	assert_int_equal(e.blocks, 6);
	snap_extents_release(&e);
	close(fd);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

static void test_ranges_and_zero(void **state)
{
	(void)state;
	struct ebs_digests d = EBS_DIGESTS_INIT;
	unsigned char dg[32] = { 0 };
	const int64_t idx[] = { 9, 3, 4, 5, 0, 7 };
	for (size_t i = 0; i < 6; i++)
		ebs_digests_add(&d, idx[i], dg);
	char agg[45];
	ebs_digests_aggregate(&d, agg);
	json_t *r = snap_ranges(&d);
	char *s = json_dumps(r, JSON_COMPACT);
	assert_string_equal(s, "[[0,0],[3,5],[7,7],[9,9]]");
	free(s);
	json_decref(r);
	ebs_digests_release(&d);
	unsigned char *buf = calloc(1, EBS_BLOCK_SIZE);
	assert_true(mem_is_zero(buf, EBS_BLOCK_SIZE));
	buf[EBS_BLOCK_SIZE - 1] = 1;
	assert_false(mem_is_zero(buf, EBS_BLOCK_SIZE));
	free(buf);
}

/* The journal record a batch of blocks BLOCKS of FD would have made. */
static json_t *batch_record(int fd, const int64_t *blocks, size_t n)
{
	struct ebs_digests d = EBS_DIGESTS_INIT;
	unsigned char *buf = malloc(EBS_BLOCK_SIZE);
	struct af_error *err = NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char dg[32];
		char b64[45];
		assert_int_equal(snap_read_block(fd, blocks[i], buf, &err), 0);
		ebs_block_checksum(buf, EBS_BLOCK_SIZE, dg, b64);
		ebs_digests_add(&d, blocks[i], dg);
	}
	free(buf);
	char agg[45];
	ebs_digests_aggregate(&d, agg);
	json_t *rec = json_pack("{s:s, s:o, s:s}", "snapshot", "snap-x", "blocks", snap_ranges(&d), "digest", agg);
	ebs_digests_release(&d);
	return rec;
}

static void test_verify_batches(void **state)
{
	(void)state;
	char *dir = test_mkdtemp(), *path = NULL;
	const uint64_t offs[] = { 0, 2 * EBS_BLOCK_SIZE, 3 * EBS_BLOCK_SIZE, 7 * EBS_BLOCK_SIZE + 5 };
	const size_t lens[] = { 100, EBS_BLOCK_SIZE, 10, 10 };
	/* The last block is partial: read zero-padded. */
	int fd = sparse_file(dir, 7 * EBS_BLOCK_SIZE + 100, offs, lens, 4, &path);
	const struct ebs_upload_opts o = { .fd = fd, .size = 7 * EBS_BLOCK_SIZE + 100, .parallel = 1 };
	struct ebs_upload *up = ebs_upload_new(&o);
	assert_int_equal(up->n_blocks, 8);
	const int64_t b1[] = { 0, 2 }, b2[] = { 3, 7 };
	json_t *batches = json_array();
	json_array_append_new(batches, batch_record(fd, b1, 2));
	json_array_append_new(batches, batch_record(fd, b2, 2));
	json_array_append_new(batches, test_json("{\"snapshot\": \"snap-x\", \"blocks\": [[5, 99]], \"digest\": \"x\"}"));
	/* Block 3 changes after it was journaled: its whole batch is sent again. */
	assert_int_equal(pwrite_all(fd, "changed", 7, 3 * EBS_BLOCK_SIZE + 1), 0);
	struct af_error *err = NULL;
	assert_int_equal(ebs_upload_resume(up, "snap-x", batches, &err), 0);
	assert_true(bit_get(up->done, 0) && bit_get(up->done, 2));
	assert_false(bit_get(up->done, 3) || bit_get(up->done, 7) || bit_get(up->done, 1) ||
		     bit_get(up->done, 5));
	assert_true(bit_get(up->force, 3) && bit_get(up->force, 7));
	assert_false(bit_get(up->force, 0) || bit_get(up->force, 5));
	assert_int_equal(up->n_before, 2);
	assert_int_equal(ebs_digests_count(&up->digests), 2);
	/* A new snapshot starts empty. */
	ebs_upload_reset(up, NULL);
	assert_false(bit_get(up->done, 0) || bit_get(up->force, 3));
	assert_int_equal(up->n_before, 0);
	assert_int_equal(ebs_digests_count(&up->digests), 0);
	json_decref(batches);
	ebs_upload_free(up);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

static void test_block_needed(void **state)
{
	(void)state;
	unsigned char a[32], b[32], z[32] = { 0 };
	memset(a, 1, sizeof(a));
	memset(b, 2, sizeof(b));
	uint8_t hash[3][32] = { { 0 } }, is_data[3] = { 1, 0, 1 };
	memcpy(hash[0], a, 32);
	memcpy(hash[2], b, 32);
	const struct ebs_block_map p = { 3, hash, is_data };
	const struct {
		const struct ebs_block_map *parent;
		int64_t index;
		bool zero;
		const unsigned char *digest;
		bool want;
	} cases[] = {
		{ NULL, 0, true, z, false },  /* an empty snapshot reads zeros already */
		{ NULL, 0, false, a, true },
		{ &p, 0, false, a, false },   /* what the parent holds */
		{ &p, 0, false, b, true },    /* changed */
		{ &p, 0, true, z, true },     /* zeroed where the parent has data: zeros are sent */
		{ &p, 1, true, z, false },    /* zero in both */
		{ &p, 1, false, a, true },    /* data where the parent has none */
		{ &p, 2, false, a, true },
		{ &p, 7, false, a, true },    /* past the parent's list: zeros there */
		{ &p, 7, true, z, false },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (ebs_block_needed(cases[i].parent, cases[i].index, cases[i].zero, cases[i].digest) != cases[i].want)
			fail_msg("case %zu: expected %d", i, cases[i].want);
}

static void test_map_digest(void **state)
{
	(void)state;
	uint8_t hash[2][32], is_data[2] = { 0, 1 };
	memset(hash[0], 9, 32); /* a zero block's hash bytes do not count */
	memset(hash[1], 7, 32);
	struct ebs_block_map m = { 2, hash, is_data };
	char got[65], want[65];
	ebs_block_map_digest(&m, got);
	/* By hand: the magic line, nblocks big-endian, 32 zero bytes, block 1. */
	unsigned char text[23 + 8 + 64] = "amiforge-ebs-blocks-v1\n", d[32];
	memset(text + 23, 0, 8 + 32);
	text[23 + 7] = 2;
	memset(text + 23 + 8 + 32, 7, 32);
	SHA256(text, sizeof(text), d);
	hex_encode(d, 32, want);
	assert_string_equal(got, want);
	memset(hash[0], 0, 32);
	ebs_block_map_digest(&m, want);
	assert_string_equal(got, want);
	hash[1][31] ^= 1;
	ebs_block_map_digest(&m, want);
	assert_string_not_equal(got, want);
	hash[1][31] ^= 1;
	m.nblocks = 1;
	ebs_block_map_digest(&m, want);
	assert_string_not_equal(got, want);
}

/* The block map of FD's first N blocks, as a checkpoint lists them. */
static struct ebs_block_map map_of(int fd, int64_t n)
{
	struct ebs_block_map m = { n, calloc((size_t)n, 32), calloc((size_t)n, 1) };
	unsigned char *buf = malloc(EBS_BLOCK_SIZE);
	struct af_error *err = NULL;
	for (int64_t b = 0; b < n; b++) {
		char b64[45];
		assert_int_equal(snap_read_block(fd, b, buf, &err), 0);
		if (mem_is_zero(buf, EBS_BLOCK_SIZE))
			continue;
		ebs_block_checksum(buf, EBS_BLOCK_SIZE, m.hash[b], b64);
		m.is_data[b] = 1;
	}
	free(buf);
	return m;
}

static int count_journal(void *arg, json_t *blocks, const char *digest, struct af_error **err)
{
	(void)digest;
	(void)err;
	*(int *)arg += 1;
	json_decref(blocks);
	return 0;
}

/* Runs the producer and the acknowledgement of the upload pipeline without
 * a server: the indexes of the blocks it would send, as "i,j,...". */
static char *dry_run(struct ebs_upload *up)
{
	struct snap_upload u = { .j = up, .pool = xcalloc((size_t)up->parallel, sizeof(*u.pool)) };
	struct af_error *err = NULL;
	struct strbuf sb = STRBUF_INIT;
	struct http_batch_item *item;
	up->snapshot_id = "snap-x";
	assert_int_equal(snap_plan(up, &u.ext, &err), 0);
	u.t0 = u.last_flush = u.last_progress = now_monotonic();
	while (snap_next(&u, &item, &err) == 1) {
		strbuf_addf(&sb, "%s%" PRId64, sb.len ? "," : "", ((struct snap_item *)item->user)->put.index);
		assert_int_equal(snap_done(&u, item, &err), 0);
	}
	assert_null(err);
	assert_int_equal(snap_flush(&u, &err), 0);
	for (int i = 0; i < up->parallel; i++)
		free(u.pool[i].data);
	free(u.pool);
	snap_extents_release(&u.ext);
	up->snapshot_id = NULL;
	return strbuf_detach(&sb);
}

/* Over a parent, only what differs is sent: a changed block, a block the
 * image zeroed (written with zeros, or punched to a hole, or past the
 * image's end now), new data; the image's map is its whole content. */
static void test_send_over_parent(void **state)
{
	(void)state;
	char *dir = test_mkdtemp(), *path = NULL;
	const uint64_t offs[] = { 0, EBS_BLOCK_SIZE, 2 * EBS_BLOCK_SIZE, 5 * EBS_BLOCK_SIZE, 9 * EBS_BLOCK_SIZE,
				  17 * EBS_BLOCK_SIZE };
	const size_t lens[] = { 100, 100, 100, 100, 100, 100 };
	int fd = sparse_file(dir, 18 * EBS_BLOCK_SIZE, offs, lens, 6, &path);
	struct ebs_block_map parent = map_of(fd, 18);
	/* The image changes: 1 rewritten, 5 zeroed, 9 a hole, 12 new, 17 cut off. */
	assert_int_equal(pwrite_all(fd, "changed", 7, EBS_BLOCK_SIZE + 3), 0);
	unsigned char zeros[100] = { 0 };
	assert_int_equal(pwrite_all(fd, zeros, sizeof(zeros), 5 * EBS_BLOCK_SIZE), 0);
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 9 * EBS_BLOCK_SIZE, EBS_BLOCK_SIZE), 0);
	assert_int_equal(pwrite_all(fd, "new", 3, 12 * EBS_BLOCK_SIZE), 0);
	assert_int_equal(ftruncate(fd, 16 * EBS_BLOCK_SIZE), 0);
	struct ebs_client c;
	ebs_client_init(&c, "eu-west-1", NULL, NULL);
	int journaled = 0;
	const struct ebs_upload_opts o = { .ebs = &c, .fd = fd, .size = 16 * EBS_BLOCK_SIZE, .parallel = 2,
					   .journal = count_journal, .arg = &journaled };
	struct ebs_upload *up = ebs_upload_new(&o);
	ebs_upload_reset(up, &parent);
	char *sent = dry_run(up);
	assert_string_equal(sent, "1,5,9,12,17");
	free(sent);
	assert_int_equal(ebs_upload_written(up), 5);
	assert_true(journaled > 0);
	struct ebs_block_map now = map_of(fd, 16);
	char want[65], got[65];
	ebs_block_map_digest(&now, want);
	ebs_block_map_digest(ebs_upload_image_map(up), got);
	assert_string_equal(got, want);
	/* Without a parent: the image's data blocks, and the same map. */
	ebs_upload_reset(up, NULL);
	sent = dry_run(up);
	assert_string_equal(sent, "0,1,2,12");
	free(sent);
	ebs_block_map_digest(ebs_upload_image_map(up), got);
	assert_string_equal(got, want);
	ebs_block_map_release(&now);
	ebs_upload_free(up);
	ebs_client_release(&c);
	ebs_block_map_release(&parent);
	close(fd);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan),
		cmocka_unit_test(test_ranges_and_zero),
		cmocka_unit_test(test_verify_batches),
		cmocka_unit_test(test_block_needed),
		cmocka_unit_test(test_map_digest),
		cmocka_unit_test(test_send_over_parent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
