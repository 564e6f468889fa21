/* SPDX-License-Identifier: Apache-2.0 */
/* The EBS upload pipeline's parts that need no server: the extent scan of a
 * sparse file, journal ranges, zero blocks, and checking journaled batches
 * against the image.  The module is included so its static helpers can be
 * tested; uploads are tested against fakeaws in
 * tests/integration/out_snapshot.sh and out_ebs.sh. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "../../engine/aws/ebs_upload.c"

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fail_msg("bad JSON in test: %s", e.text);
	return j;
}

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
	json_array_append_new(batches, load("{\"snapshot\": \"snap-x\", \"blocks\": [[5, 99]], \"digest\": \"x\"}"));
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
	ebs_upload_reset(up);
	assert_false(bit_get(up->done, 0) || bit_get(up->force, 3));
	assert_int_equal(up->n_before, 0);
	assert_int_equal(ebs_digests_count(&up->digests), 0);
	json_decref(batches);
	ebs_upload_free(up);
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
