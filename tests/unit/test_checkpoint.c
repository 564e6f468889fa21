/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "testutil.h"

#include "amiforge/checkpoint.h"
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

/* Text-like bytes: compressible, like most of a filesystem image. */
static void write_text_at(const char *path, off_t off, size_t n, unsigned seed)
{
	static const char *words[] = {"usr", "lib", "share", "doc", "copyright", "debian",
				       "changelog", "gz", "\n", "/", " ", "x86_64"};
	unsigned char *buf = malloc(n);
	assert_non_null(buf);
	uint32_t x = seed * 2654435761u + 7;
	size_t i = 0;
	while (i < n) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		const char *w = words[x % 12];
		for (size_t k = 0; w[k] && i < n; k++)
			buf[i++] = (unsigned char)w[k];
	}
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

/* What a block costs on disk: a random block does not compress and is kept
 * whole behind a 16-byte header, so one more file system block. */
static off_t on_disk(off_t bytes)
{
	return (bytes + 4095) / 4096 * 4096;
}

static void take_memo(const char *key, struct ckpt_memo *memo, struct ckpt_stats *st)
{
	struct af_error *err = NULL;
	int r = ckpt_take_memo(store, key, image, memo, st, &err);
	if (err)
		fprintf(stderr, "%s\n", af_error_msg(err));
	assert_int_equal(r, 0);
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
	assert_int_equal(st.blocks_hashed, 3);
	assert_int_equal(st.bytes_new, 3 * BS);
	/* Two random blocks stored as they are, one nearly empty compressed. */
	assert_true(st.bytes_stored > 2 * BS && st.bytes_stored < 2 * BS + 4096);
	/* Holes are not read: only the three blocks with allocated extents. */
	assert_int_equal(st.bytes_read, 3 * BS);
	assert_true(st.seconds >= 0);
	assert_int_equal(ckpt_store_bytes(store), 2 * on_disk(BS + 16) + 4096);
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

	uint64_t stored = ckpt_store_bytes(store);

	/* Nothing changed: nothing new is stored. */
	take("k2", &st);
	assert_int_equal(st.blocks_data, 3);
	assert_int_equal(st.blocks_new, 0);
	assert_int_equal(st.bytes_new, 0);
	assert_int_equal(st.bytes_stored, 0);
	assert_int_equal(ckpt_store_bytes(store), stored);

	/* One changed byte: exactly one new block. */
	write_at(image, 5 * BS + 4242, 1, 7);
	take("k3", &st);
	assert_int_equal(st.blocks_data, 3);
	assert_int_equal(st.blocks_new, 1);
	assert_int_equal(st.bytes_new, BS);
	assert_int_equal(ckpt_store_bytes(store), stored + on_disk(BS + 16));

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

/* A compressible block with zero pages inside it, a random one, and text
 * across a block boundary. */
static void make_text_image(void)
{
	make_sparse(image, 16 * BS);
	write_text_at(image, 2 * BS, 8192, 1);
	write_text_at(image, 2 * BS + 100 * 4096 + 5, 3000, 2);
	write_at(image, 4 * BS, (size_t)BS, 3);
	write_text_at(image, 7 * BS - 5000, 10000, 4);
}

static off_t allocated(const char *path)
{
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	return (off_t)sb.st_blocks * 512;
}

static void read_header(const char *path, unsigned char hdr[16], off_t *size)
{
	size_t len;
	char *t = slurp(path, &len);
	assert_true(len >= 16);
	memcpy(hdr, t, 16);
	*size = (off_t)len;
	free(t);
}

static void test_compressed_round_trip(void **state)
{
	struct ckpt_stats st;
	make_text_image();
	take(KEY, &st);
	assert_int_equal(st.blocks_data, 4);
	assert_int_equal(st.blocks_new, 4);
	assert_int_equal(st.bytes_new, 4 * BS);
	/* The random block is kept whole; the text ones shrink to little. */
	assert_true(st.bytes_stored > BS && st.bytes_stored < BS + 32 * 1024);

	unsigned char hdr[16];
	off_t size;
	char *bp = block_path(KEY, 2);
	read_header(bp, hdr, &size);
	assert_memory_equal(hdr, "AFBK\x01\x01\x00\x00\x00\x00\x08\x00", 12);
	assert_int_equal(size, 16 + (hdr[12] | hdr[13] << 8 | hdr[14] << 16));
	assert_true(size < 8192);
	free(bp);
	bp = block_path(KEY, 4);
	read_header(bp, hdr, &size);
	assert_memory_equal(hdr, "AFBK\x01\x00\x00\x00\x00\x00\x08\x00\x00\x00\x08\x00", 16);
	assert_int_equal(size, 16 + BS);
	free(bp);

	/* Nearly incompressible: LZ4 output close to a whole block is kept
	 * only while the file stays shorter than 512 KiB (a file of exactly
	 * that size is a raw block of the first format). */
	write_at(image, 9 * BS, (size_t)BS - 3000, 4);
	take("k2", &st);
	assert_int_equal(st.blocks_new, 1);
	bp = block_path("k2", 9);
	read_header(bp, hdr, &size);
	assert_int_equal(hdr[5], 1);
	assert_true(size > BS - 4096 && size < BS);
	free(bp);

	/* Exact and sparse: the zero pages inside block 2 are holes again. */
	char *copy = path_join(tmpdir, "restored.img");
	restore_ok("k2", copy);
	assert_same_file(image, copy);
	/* 263 pages hold data; a few more for the file system's extent tree. */
	assert_true(allocated(copy) <= 2 * BS + 16 * 4096);
	free(copy);
}

static void test_corrupt_compressed(void **state)
{
	struct af_error *err = NULL;
	make_text_image();
	take(KEY, NULL);
	char *bp = block_path(KEY, 2);
	char *hex = strrchr(bp, '/') + 1;
	unsigned char hdr[16];
	off_t size;
	read_header(bp, hdr, &size);

	/* A byte of the compressed payload changed: the restore says which
	 * block, and the image stays as it was. */
	char *now = path_join(tmpdir, "now.img");
	copy_file(image, now);
	char *orig = slurp(bp, &(size_t){0});
	write_at(bp, size - 3, 1, 5);
	assert_true(ckpt_usable(store, KEY)); /* only the hash can tell */
	assert_int_equal(ckpt_restore(store, KEY, image, &err), -1);
	assert_non_null(strstr(af_error_msg(err), hex));
	assert_non_null(strstr(af_error_msg(err), "corrupt"));
	af_error_clear(&err);
	assert_same_file(image, now);

	/* A header that disagrees with the file's length: not present. */
	FILE *f = fopen(bp, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(orig, 1, (size_t)size + 1, f), (size_t)size + 1);
	assert_int_equal(fclose(f), 0);
	assert_false(ckpt_usable(store, KEY));
	assert_int_equal(truncate(bp, size - 1), 0);
	assert_false(ckpt_usable(store, KEY));
	assert_int_equal(truncate(bp, 0), 0);
	assert_false(ckpt_usable(store, KEY));
	assert_int_equal(ckpt_restore(store, KEY, image, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "corrupt"));
	af_error_clear(&err);

	/* An unknown format version or codec: not present, stored again. */
	f = fopen(bp, "w");
	assert_int_equal(fwrite(orig, 1, (size_t)size, f), (size_t)size);
	assert_int_equal(fclose(f), 0);
	assert_true(ckpt_usable(store, KEY));
	write_at(bp, 4, 1, 3);
	assert_false(ckpt_usable(store, KEY));
	struct ckpt_stats st;
	take(KEY, &st);
	assert_int_equal(st.blocks_new, 1);
	assert_true(ckpt_usable(store, KEY));
	restore_ok(KEY, now);
	assert_same_file(image, now);
	free(orig);
	free(now);
	free(bp);
}

/* A store of the first format (raw 512 KiB block files) is still read. */
static void test_first_format(void **state)
{
	make_text_image();
	take(KEY, NULL);
	char *bp = block_path(KEY, 2);
	char *raw = xasprintf("%s.raw", bp);
	int fd = open(image, O_RDONLY);
	assert_true(fd >= 0);
	unsigned char *buf = malloc((size_t)BS);
	assert_int_equal(pread_all(fd, buf, (size_t)BS, 2 * BS), BS);
	close(fd);
	FILE *f = fopen(raw, "w");
	assert_int_equal(fwrite(buf, 1, (size_t)BS, f), (size_t)BS);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(rename(raw, bp), 0);
	assert_true(ckpt_usable(store, KEY));

	char *copy = path_join(tmpdir, "restored.img");
	restore_ok(KEY, copy);
	assert_same_file(image, copy);
	/* ...and a raw block that is not what its name says is refused. */
	buf[77] ^= 1;
	f = fopen(bp, "w");
	assert_int_equal(fwrite(buf, 1, (size_t)BS, f), (size_t)BS);
	assert_int_equal(fclose(f), 0);
	struct af_error *err = NULL;
	assert_int_equal(ckpt_restore(store, KEY, copy, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "corrupt"));
	af_error_clear(&err);
	free(copy);
	free(buf);
	free(raw);
	free(bp);
}

static void test_memo(void **state)
{
	struct ckpt_stats st;
	struct ckpt_memo *memo = ckpt_memo_new();
	assert_non_null(memo);
	make_text_image();
	take_memo("k1", memo, &st);
	assert_int_equal(st.blocks_hashed, 4);
	char *img1 = path_join(tmpdir, "k1.img");
	copy_file(image, img1);

	/* Unchanged blocks are not hashed again; a changed one is, even when
	 * the change is one bit deep inside it. */
	take_memo("k2", memo, &st);
	assert_int_equal(st.blocks_data, 4);
	assert_int_equal(st.blocks_hashed, 0);
	assert_int_equal(st.blocks_new, 0);
	int fd = open(image, O_RDWR);
	unsigned char c;
	assert_int_equal(pread(fd, &c, 1, 4 * BS + 300000), 1);
	c ^= 0x10;
	assert_int_equal(pwrite(fd, &c, 1, 4 * BS + 300000), 1);
	close(fd);
	write_at(image, 9 * BS, 4096, 6); /* a new block */
	take_memo("k3", memo, &st);
	assert_int_equal(st.blocks_data, 5);
	assert_int_equal(st.blocks_hashed, 2);
	assert_int_equal(st.blocks_new, 2);
	char *img3 = path_join(tmpdir, "k3.img");
	copy_file(image, img3);

	/* Its entries are about content: after a restore to k1 the memo still
	 * gives the right hashes (k1's block 4 is hashed again, nothing new). */
	restore_ok("k1", image);
	take_memo("k4", memo, &st);
	assert_int_equal(st.blocks_data, 4);
	assert_int_equal(st.blocks_hashed, 1);
	assert_int_equal(st.blocks_new, 0);
	char *copy = path_join(tmpdir, "restored.img");
	restore_ok("k4", copy);
	assert_same_file(copy, img1);
	restore_ok("k3", copy);
	assert_same_file(copy, img3);

	/* A restore fills a memo: the next checkpoint hashes nothing again, and
	 * lists the same blocks. */
	struct ckpt_memo *fresh = ckpt_memo_new();
	struct af_error *rerr = NULL;
	assert_int_equal(ckpt_restore_memo(store, "k3", image, fresh, &rerr), 0);
	take_memo("k3again", fresh, &st);
	assert_int_equal(st.blocks_data, 5);
	assert_int_equal(st.blocks_hashed, 0);
	assert_int_equal(st.blocks_new, 0);
	json_t *a = load_ckpt("k3"), *b = load_ckpt("k3again");
	assert_true(json_equal(a, b));
	json_decref(a);
	json_decref(b);
	ckpt_memo_free(fresh);
	restore_ok("k1", image);

	/* The memo never vouches for the store: after a clean, blocks it knows
	 * are stored again. */
	struct af_error *err = NULL;
	assert_int_equal(ckpt_clean(store, &err), 0);
	take_memo("k5", memo, &st);
	assert_int_equal(st.blocks_hashed, 0);
	assert_int_equal(st.blocks_new, 4);
	restore_ok("k5", copy);
	assert_same_file(copy, img1);

	/* Another image size: the memo starts over. */
	make_sparse(image, 3 * BS + 100);
	write_text_at(image, 3 * BS, 100, 9);
	take_memo("k6", memo, &st);
	assert_int_equal(st.blocks_hashed, 1);
	restore_ok("k6", copy);
	assert_same_file(copy, image);
	ckpt_memo_free(memo);
	ckpt_memo_free(NULL);
	free(copy);
	free(img1);
	free(img3);
}

/* Many rounds of random changes, each checkpoint restored exactly. */
static void test_exact_rounds(void **state)
{
	struct ckpt_memo *memo = ckpt_memo_new();
	char *copy = path_join(tmpdir, "restored.img");
	char *keep[6];
	uint32_t x = 12345;
	make_sparse(image, 12 * BS + 777);
	for (int round = 0; round < 6; round++) {
		for (int k = 0; k < 5; k++) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			off_t off = (off_t)(x % (uint32_t)(12 * BS + 777 - 20000));
			if (k == 4)
				write_at(image, off, 20000, 0); /* zeros over data */
			else if (k % 2)
				write_text_at(image, off, 1 + x % 20000, x);
			else
				write_at(image, off, 1 + x % 300, x);
		}
		char key[8];
		snprintf(key, sizeof(key), "r%d", round);
		take_memo(key, round % 2 ? memo : NULL, NULL);
		keep[round] = xasprintf("%s/%s.img", tmpdir, key);
		copy_file(image, keep[round]);
	}
	for (int round = 5; round >= 0; round--) {
		char key[8];
		snprintf(key, sizeof(key), "r%d", round);
		restore_ok(key, copy);
		assert_same_file(copy, keep[round]);
		free(keep[round]);
	}
	ckpt_memo_free(memo);
	free(copy);
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
	    cmocka_unit_test_setup_teardown(test_compressed_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_compressed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_first_format, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_memo, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exact_rounds, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
