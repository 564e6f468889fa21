/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "testutil.h"

#include "amiforge/blockstore.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#include <jansson.h>

#define BS ((off_t)BLOCKSTORE_BLOCK_SIZE)
#define KEY "0123456789abcdef"

static char *tmpdir, *store, *image;

static int setup(void **state)
{
	tmpdir = test_mkdtemp();
	store = path_join(tmpdir, "checkpoints");
	image = path_join(tmpdir, "disk.img");
	return 0;
}

static int teardown(void **state)
{
	test_rmdir_r(tmpdir);
	free(tmpdir);
	free(store);
	free(image);
	return 0;
}

/* Deterministic, non-zero bytes that differ by seed and offset. */
static void fill(unsigned char *buf, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		buf[i] = (unsigned char)(x | 1);
	}
}

static void write_at(const char *path, off_t off, size_t n, unsigned seed)
{
	unsigned char *buf = malloc(n);
	assert_non_null(buf);
	if (seed)
		fill(buf, n, seed);
	else
		memset(buf, 0, n);
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite_all(fd, buf, n, off), 0);
	assert_int_equal(close(fd), 0);
	free(buf);
}

static void make_sparse(const char *path, off_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, size), 0);
	assert_int_equal(close(fd), 0);
}

/* An 8 MiB image: a little data in block 1, a full block 5, the last block. */
static void make_image(void)
{
	make_sparse(image, 16 * BS);
	write_at(image, BS + 100, 1000, 1);
	write_at(image, 5 * BS, (size_t)BS, 2);
	write_at(image, 15 * BS, (size_t)BS, 3);
}

static char *slurp(const char *path, size_t *len)
{
	struct af_error *err = NULL;
	char *s = read_file(path, len, &err);
	assert_null(err);
	return s;
}

static void assert_same_file(const char *a, const char *b)
{
	size_t la, lb;
	char *ta = slurp(a, &la), *tb = slurp(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ta, tb, la);
	free(ta);
	free(tb);
}

static void copy_file(const char *from, const char *to)
{
	char *cmd = xasprintf("cp --sparse=always '%s' '%s'", from, to);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static json_t *load_ckpt(const char *key)
{
	char *p = xasprintf("%s/%s.ckpt", store, key);
	json_error_t jerr;
	json_t *j = json_load_file(p, 0, &jerr);
	assert_non_null(j);
	free(p);
	return j;
}

static char *block_path(const char *key, size_t index)
{
	json_t *c = load_ckpt(key);
	const char *hex = json_string_value(json_array_get(json_object_get(c, "blocks"), index));
	assert_non_null(hex);
	char *p = xasprintf("%s/blocks/%.2s/%s", store, hex, hex);
	json_decref(c);
	return p;
}

static void take(const char *key, struct ckpt_stats *st)
{
	struct af_error *err = NULL;
	int r = ckpt_take(store, key, image, st, &err);
	if (err)
		fprintf(stderr, "%s\n", af_error_msg(err));
	assert_int_equal(r, 0);
}

static void restore_ok(const char *key, const char *to)
{
	struct af_error *err = NULL;
	int r = ckpt_restore(store, key, to, &err);
	if (err)
		fprintf(stderr, "%s\n", af_error_msg(err));
	assert_int_equal(r, 0);
}

static void test_take_and_restore(void **state)
{
	struct ckpt_stats st;
	make_image();
	take(KEY, &st);
	assert_int_equal(st.image_size, 16 * BS);
	assert_int_equal(st.blocks_total, 16);
	assert_int_equal(st.blocks_data, 3);
	assert_int_equal(st.blocks_new, 3);
	assert_int_equal(st.bytes_new, 3 * BS);
	/* Holes are not read: only the three blocks with allocated extents. */
	assert_int_equal(st.bytes_read, 3 * BS);
	assert_true(st.seconds >= 0);
	assert_int_equal(ckpt_store_bytes(store), 3 * BS);
	assert_true(ckpt_usable(store, KEY));

	json_t *c = load_ckpt(KEY);
	assert_int_equal(json_integer_value(json_object_get(c, "version")), 1);
	assert_int_equal(json_integer_value(json_object_get(c, "size")), 16 * BS);
	assert_int_equal(json_integer_value(json_object_get(c, "block_size")), BS);
	json_t *blocks = json_object_get(c, "blocks");
	assert_int_equal(json_array_size(blocks), 16);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(json_is_string(json_array_get(blocks, i)),
				 i == 1 || i == 5 || i == 15);
	json_decref(c);

	/* Restoring to a new file: byte-identical and sparse. */
	char *copy = path_join(tmpdir, "restored.img");
	restore_ok(KEY, copy);
	assert_same_file(image, copy);
	struct stat sb;
	assert_int_equal(stat(copy, &sb), 0);
	assert_true((off_t)sb.st_blocks * 512 <= 2 * BS + 64 * 1024);

	/* Restoring over a changed image brings it back exactly. */
	write_at(copy, 7 * BS, 4096, 9);
	write_at(copy, 5 * BS + 10, 10, 9);
	restore_ok(KEY, copy);
	assert_same_file(image, copy);
	char *tmp = xasprintf("%s.restore", copy);
	assert_int_equal(access(tmp, F_OK), -1);
	free(tmp);
	free(copy);
}

static void test_dedupe_and_change(void **state)
{
	struct ckpt_stats st;
	make_image();
	take("k1", &st);
	assert_int_equal(st.blocks_new, 3);

	/* Nothing changed: nothing new is stored. */
	take("k2", &st);
	assert_int_equal(st.blocks_data, 3);
	assert_int_equal(st.blocks_new, 0);
	assert_int_equal(st.bytes_new, 0);
	assert_int_equal(ckpt_store_bytes(store), 3 * BS);

	/* One changed byte: exactly one new block. */
	write_at(image, 5 * BS + 4242, 1, 7);
	take("k3", &st);
	assert_int_equal(st.blocks_data, 3);
	assert_int_equal(st.blocks_new, 1);
	assert_int_equal(st.bytes_new, BS);
	assert_int_equal(ckpt_store_bytes(store), 4 * BS);

	/* Both states restore exactly. */
	char *saved = path_join(tmpdir, "k3.img");
	copy_file(image, saved);
	restore_ok("k1", image);
	struct af_error *err = NULL;
	char *before = path_join(tmpdir, "k1.img");
	copy_file(image, before);
	restore_ok("k3", image);
	assert_same_file(image, saved);
	restore_ok("k1", image);
	assert_same_file(image, before);
	assert_null(err);
	free(saved);
	free(before);
}

static void test_odd_size(void **state)
{
	struct ckpt_stats st;
	off_t size = 3 * BS + 12345;
	make_sparse(image, size);
	write_at(image, 3 * BS, 12345, 4); /* the partial last block */
	write_at(image, 0, 512, 5);
	take(KEY, &st);
	assert_int_equal(st.image_size, size);
	assert_int_equal(st.blocks_total, 4);
	assert_int_equal(st.blocks_data, 2);

	char *copy = path_join(tmpdir, "restored.img");
	restore_ok(KEY, copy);
	assert_same_file(image, copy);
	free(copy);
}

static void test_allocated_zeros(void **state)
{
	struct ckpt_stats st;
	make_image();
	write_at(image, 8 * BS, (size_t)BS, 0); /* written zeros: allocated, but zero */
	int fd = open(image, O_RDONLY);
	assert_int_equal(lseek(fd, 8 * BS, SEEK_DATA), 8 * BS);
	close(fd);

	take(KEY, &st);
	assert_int_equal(st.blocks_data, 3);
	assert_int_equal(st.blocks_new, 3);
	assert_int_equal(st.bytes_read, 4 * BS);
	json_t *c = load_ckpt(KEY);
	assert_true(json_is_null(json_array_get(json_object_get(c, "blocks"), 8)));
	json_decref(c);

	char *copy = path_join(tmpdir, "restored.img");
	restore_ok(KEY, copy);
	assert_same_file(image, copy);
	free(copy);
}

static void test_corrupt_block(void **state)
{
	make_image();
	take(KEY, NULL);
	char *saved = path_join(tmpdir, "saved.img");
	copy_file(image, saved);
	/* The image moves on; the restore must fail and leave it as it is now. */
	write_at(image, 2 * BS, 100, 8);
	char *now = path_join(tmpdir, "now.img");
	copy_file(image, now);

	char *bp = block_path(KEY, 5);
	write_at(bp, 1000, 1, 6);
	char *hex = strrchr(bp, '/') + 1;

	struct af_error *err = NULL;
	assert_int_equal(ckpt_restore(store, KEY, image, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(af_error_msg(err), hex));
	assert_non_null(strstr(af_error_msg(err), KEY));
	assert_non_null(strstr(af_error_msg(err), "corrupt"));
	af_error_clear(&err);
	assert_same_file(image, now);
	char *tmp = xasprintf("%s.restore", image);
	assert_int_equal(access(tmp, F_OK), -1);

	/* A missing block: not usable, and a restore names it. */
	assert_int_equal(unlink(bp), 0);
	assert_false(ckpt_usable(store, KEY));
	assert_int_equal(ckpt_restore(store, KEY, image, &err), -1);
	assert_non_null(strstr(af_error_msg(err), hex));
	assert_non_null(strstr(af_error_msg(err), "missing"));
	af_error_clear(&err);
	assert_same_file(image, now);
	assert_int_equal(access(tmp, F_OK), -1);

	/* Taking the checkpoint again from the same content repairs the store. */
	copy_file(saved, image);
	struct ckpt_stats st;
	take(KEY, &st);
	assert_int_equal(st.blocks_new, 1);
	write_at(image, 0, 10, 9);
	restore_ok(KEY, image);
	assert_same_file(image, saved);
	free(tmp);
	free(bp);
	free(saved);
	free(now);
}

static void test_usable(void **state)
{
	make_image();
	assert_false(ckpt_usable(store, KEY));
	take(KEY, NULL);
	assert_true(ckpt_usable(store, KEY));
	assert_false(ckpt_usable(store, "other"));

	/* A block cut short (a crash before it reached the disk) is not present. */
	char *bp = block_path(KEY, 15);
	assert_int_equal(truncate(bp, 100), 0);
	assert_false(ckpt_usable(store, KEY));
	/* ...and the next checkpoint of the same content stores it again. */
	struct ckpt_stats st;
	take(KEY, &st);
	assert_int_equal(st.blocks_new, 1);
	assert_true(ckpt_usable(store, KEY));
	free(bp);

	char *garbage = xasprintf("%s/bad.ckpt", store);
	FILE *f = fopen(garbage, "w");
	fputs("{\"version\":2}", f);
	fclose(f);
	assert_false(ckpt_usable(store, "bad"));
	struct af_error *err = NULL;
	assert_int_equal(ckpt_restore(store, "bad", image, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "version 1"));
	af_error_clear(&err);
	free(garbage);
}

static void test_clean(void **state)
{
	struct af_error *err = NULL;
	assert_int_equal(ckpt_clean(store, &err), 0); /* nothing there yet */
	make_image();
	take("k1", NULL);
	write_at(image, 0, 10, 3);
	take("k2", NULL);
	assert_true(ckpt_store_bytes(store) > 0);

	assert_int_equal(ckpt_clean(store, &err), 0);
	assert_null(err);
	assert_int_equal(ckpt_store_bytes(store), 0);
	assert_false(ckpt_usable(store, "k1"));
	assert_false(ckpt_usable(store, "k2"));
	char *blocks = path_join(store, "blocks");
	assert_int_equal(access(blocks, F_OK), -1);
	free(blocks);
	/* The store works again afterwards. */
	take("k3", NULL);
	assert_true(ckpt_usable(store, "k3"));
}

static void test_edge_cases(void **state)
{
	struct af_error *err = NULL;
	struct ckpt_stats st;

	/* An empty image. */
	make_sparse(image, 0);
	take(KEY, &st);
	assert_int_equal(st.blocks_total, 0);
	char *copy = path_join(tmpdir, "restored.img");
	restore_ok(KEY, copy);
	assert_same_file(image, copy);
	free(copy);

	/* Keys never escape the store. */
	assert_int_equal(ckpt_take(store, "../evil", image, NULL, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "invalid checkpoint key"));
	af_error_clear(&err);

	/* A missing image or checkpoint: clear errors naming them. */
	assert_int_equal(ckpt_take(store, KEY, "/nonexistent/disk.img", NULL, &err), -1);
	assert_int_equal(af_error_errno(err), ENOENT);
	assert_non_null(strstr(af_error_msg(err), "/nonexistent/disk.img"));
	af_error_clear(&err);
	assert_int_equal(ckpt_restore(store, "absent", image, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "absent.ckpt"));
	af_error_clear(&err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_take_and_restore, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dedupe_and_change, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_odd_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_allocated_zeros, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_block, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_usable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_clean, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_edge_cases, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
