/* SPDX-License-Identifier: Apache-2.0 */
/* The block store on its own: put, present, read, corruption, clean and
 * size.  Checkpoints over it are tested in test_checkpoint.c. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "testutil.h"

#include <openssl/evp.h>

#include "amiforge/blockstore.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#define BS ((size_t)BLOCKSTORE_BLOCK_SIZE)

struct fixture {
	char *dir, *blocks;
	int blocks_fd;
	unsigned char *block, *back, *zbuf;
	EVP_MD_CTX *md;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	f->dir = test_mkdtemp();
	f->blocks = path_join(f->dir, "blocks");
	assert_int_equal(mkdir(f->blocks, 0700), 0);
	f->blocks_fd = open(f->blocks, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->blocks_fd >= 0);
	f->block = xmalloc(BS);
	f->back = xmalloc(BS);
	f->zbuf = xmalloc(BLOCKSTORE_FILE_MAX);
	f->md = EVP_MD_CTX_new();
	assert_true(f->md && EVP_DigestInit_ex(f->md, EVP_sha256(), NULL));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close(f->blocks_fd);
	test_rmdir_r(f->dir);
	free(f->dir);
	free(f->blocks);
	free(f->block);
	free(f->back);
	free(f->zbuf);
	EVP_MD_CTX_free(f->md);
	free(f);
	return 0;
}

/* Text-like (compressible) or noise (not) content. */
static void fill(unsigned char *buf, bool compressible, unsigned seed)
{
	uint32_t x = 2463534242u ^ seed;
	for (size_t i = 0; i < BS; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = compressible ? (unsigned char)("usr/lib/share "[i % 14]) : (unsigned char)x;
	}
	buf[0] = (unsigned char)seed;
}

static void put(struct fixture *f, uint8_t hash[BLOCKSTORE_HASH_LEN], size_t *stored)
{
	struct af_error *err = NULL;
	assert_int_equal(blockstore_sha256(f->md, f->block, hash), 0);
	assert_int_equal(blockstore_put(f->blocks_fd, hash, f->block, f->zbuf, 0, stored, &err), 0);
	assert_null(err);
}

static char *file_of(struct fixture *f, const uint8_t hash[BLOCKSTORE_HASH_LEN])
{
	char name[BLOCKSTORE_NAME_LEN];
	blockstore_name(hash, name);
	return path_join(f->blocks, name);
}

static void test_name(void **state)
{
	uint8_t h[BLOCKSTORE_HASH_LEN];
	char name[BLOCKSTORE_NAME_LEN];
	for (int i = 0; i < BLOCKSTORE_HASH_LEN; i++)
		h[i] = (uint8_t)(0xab + i);
	blockstore_name(h, name);
	assert_int_equal(strlen(name), 3 + 64);
	assert_memory_equal(name, "ab/abacad", 9);
}

static void round_trip(struct fixture *f, bool compressible)
{
	uint8_t h[BLOCKSTORE_HASH_LEN];
	size_t stored = 0;
	struct af_error *err = NULL;
	fill(f->block, compressible, 7);
	assert_int_equal(blockstore_sha256(f->md, f->block, h), 0);
	assert_false(blockstore_present(f->blocks_fd, h));
	put(f, h, &stored);
	if (compressible)
		assert_true(stored < BS / 2);
	else
		assert_int_equal(stored, BLOCKSTORE_FILE_MAX);
	assert_true(blockstore_present(f->blocks_fd, h));
	assert_int_equal(blockstore_read(f->blocks_fd, f->blocks, h, f->back, f->zbuf, f->md, &err), 0);
	assert_null(err);
	assert_memory_equal(f->back, f->block, BS);
	_cleanup_free_ char *path = file_of(f, h);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, stored);
}

static void test_round_trip(void **state)
{
	round_trip(*state, true);
	teardown(state);
	setup(state);
	round_trip(*state, false);
}

static void test_missing_and_corrupt(void **state)
{
	struct fixture *f = *state;
	uint8_t h[BLOCKSTORE_HASH_LEN];
	size_t stored = 0;
	struct af_error *err = NULL;
	fill(f->block, true, 1);
	assert_int_equal(blockstore_sha256(f->md, f->block, h), 0);
	assert_int_equal(blockstore_read(f->blocks_fd, f->blocks, h, f->back, f->zbuf, f->md, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "is missing; run 'amiforge clean'"));
	af_error_clear(&err);

	put(f, h, &stored);
	_cleanup_free_ char *path = file_of(f, h);
	/* A short file (a power loss) is not present; a flipped byte is corrupt. */
	assert_int_equal(truncate(path, (off_t)stored - 1), 0);
	assert_false(blockstore_present(f->blocks_fd, h));
	assert_int_equal(blockstore_read(f->blocks_fd, f->blocks, h, f->back, f->zbuf, f->md, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "is corrupt"));
	af_error_clear(&err);
}

/* A file of exactly one raw block is the first format. */
static void test_first_format(void **state)
{
	struct fixture *f = *state;
	uint8_t h[BLOCKSTORE_HASH_LEN];
	struct af_error *err = NULL;
	fill(f->block, false, 3);
	assert_int_equal(blockstore_sha256(f->md, f->block, h), 0);
	char name[BLOCKSTORE_NAME_LEN];
	blockstore_name(h, name);
	name[2] = '\0';
	assert_int_equal(mkdirat(f->blocks_fd, name, 0700), 0);
	_cleanup_free_ char *path = file_of(f, h);
	assert_int_equal(write_file_atomic(path, f->block, BS, 0600, &err), 0);
	assert_true(blockstore_present(f->blocks_fd, h));
	assert_int_equal(blockstore_read(f->blocks_fd, f->blocks, h, f->back, f->zbuf, f->md, &err), 0);
	assert_memory_equal(f->back, f->block, BS);
}

static void test_bytes_and_clean(void **state)
{
	struct fixture *f = *state;
	uint8_t h[BLOCKSTORE_HASH_LEN];
	size_t stored = 0;
	struct af_error *err = NULL;
	for (unsigned i = 0; i < 3; i++) {
		fill(f->block, false, i);
		put(f, h, &stored);
	}
	assert_true(blockstore_bytes(f->blocks) >= 3 * BS);
	assert_int_equal(blockstore_clean(f->blocks, &err), 0);
	assert_null(err);
	assert_int_equal(access(f->blocks, F_OK), -1);
	assert_int_equal(blockstore_bytes(f->blocks), 0);
	assert_int_equal(blockstore_clean(f->blocks, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_name),
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_missing_and_corrupt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_first_format, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bytes_and_clean, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
