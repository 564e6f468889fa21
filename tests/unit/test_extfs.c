/* SPDX-License-Identifier: Apache-2.0 */
/* extfs: an ext4 made by mke2fs at an offset inside a file is opened by
 * libext2fs and identified by libblkid at that offset, and nowhere else. */
#include "testutil.h"

#include <errno.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/extfs.h"
#include "amiforge/util.h"

#define FS_OFFSET (1024 * 1024)
#define FS_SIZE (8 * 1024 * 1024)
#define FS_UUID "3f1c2b9a-5d4e-4c6f-8a7b-0123456789ab"
#define FS_LABEL "extfs-test"

struct fixture {
	char *dir;
	char *img;
};

/* An 8 MiB ext4 at 1 MiB into a 10 MiB file, fixed UUID and label. */
static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	f->dir = test_mkdtemp();
	f->img = path_join(f->dir, "disk.img");
	_cleanup_free_ char *cmd = xasprintf("truncate -s 10M '%s' && mke2fs -q -F -t ext4 -L " FS_LABEL
					     " -U " FS_UUID " -E offset=%d '%s' %dk >/dev/null 2>&1",
					     f->img, FS_OFFSET, f->img, FS_SIZE / 1024);
	if (system(cmd) != 0) {
		free(f->img);
		f->img = NULL;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	test_rmdir_r(f->dir);
	free(f->dir);
	free(f->img);
	free(f);
	return 0;
}

#define NEED_IMAGE(f)                                                      \
	do {                                                               \
		if (!(f)->img)                                             \
			test_skip_because("mke2fs (e2fsprogs) is not installed"); \
	} while (0)

static void test_open_at(void **state)
{
	struct fixture *f = *state;
	NEED_IMAGE(f);
	struct af_error *err = NULL;
	_cleanup_ext2fs_ ext2_filsys fs = NULL;
	assert_int_equal(extfs_open_at(f->img, FS_OFFSET, 0, &fs, &err), 0);
	assert_null(err);
	assert_non_null(fs);
	char label[EXT2_LABEL_LEN + 1] = { 0 };
	memcpy(label, fs->super->s_volume_name, EXT2_LABEL_LEN);
	assert_string_equal(label, FS_LABEL);
	assert_true(ext2fs_blocks_count(fs->super) * (uint64_t)EXT2_BLOCK_SIZE(fs->super) == FS_SIZE);
}

static void test_open_at_bad_offset(void **state)
{
	struct fixture *f = *state;
	NEED_IMAGE(f);
	struct af_error *err = NULL;
	ext2_filsys fs = NULL;
	assert_int_equal(extfs_open_at(f->img, 0, 0, &fs, &err), -1);
	assert_null(fs);
	assert_non_null(err);
	assert_non_null(strstr(af_error_msg(err), f->img));
	assert_non_null(strstr(af_error_msg(err), "at offset 0 of"));
	af_error_free(err);
}

static void test_open_at_missing_file(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *missing = path_join(f->dir, "missing.img");
	struct af_error *err = NULL;
	ext2_filsys fs = NULL;
	assert_int_equal(extfs_open_at(missing, FS_OFFSET, 0, &fs, &err), -1);
	assert_null(fs);
	assert_non_null(strstr(af_error_msg(err), missing));
	af_error_free(err);
}

static void test_probe_range(void **state)
{
	struct fixture *f = *state;
	NEED_IMAGE(f);
	struct af_error *err = NULL;
	struct extfs_probe p = { 0 };
	assert_int_equal(extfs_probe_range(f->img, FS_OFFSET, FS_SIZE, &p, &err), 0);
	assert_null(err);
	assert_string_equal(p.type, "ext4");
	assert_string_equal(p.uuid, FS_UUID);
	assert_string_equal(p.label, FS_LABEL);
	extfs_probe_release(&p);
	assert_null(p.type);
}

static void test_probe_range_nothing(void **state)
{
	struct fixture *f = *state;
	NEED_IMAGE(f);
	struct af_error *err = NULL;
	struct extfs_probe p = { 0 };
	/* The first MiB is zeros: no filesystem, and the caller can tell. */
	assert_int_equal(extfs_probe_range(f->img, 0, FS_OFFSET, &p, &err), -1);
	assert_null(p.type);
	assert_int_equal(af_error_errno(err), ENOENT);
	assert_non_null(strstr(af_error_msg(err), "no filesystem at offset 0 of"));
	assert_non_null(strstr(af_error_msg(err), f->img));
	assert_null(strstr(af_error_msg(err), strerror(ENOENT)));
	af_error_free(err);
}

static void test_probe_range_missing_file(void **state)
{
	struct fixture *f = *state;
	_cleanup_free_ char *missing = path_join(f->dir, "missing.img");
	struct af_error *err = NULL;
	struct extfs_probe p = { 0 };
	assert_int_equal(extfs_probe_range(missing, 0, 0, &p, &err), -1);
	assert_int_equal(af_error_errno(err), ENOENT);
	assert_non_null(strstr(af_error_msg(err), missing));
	assert_non_null(strstr(af_error_msg(err), strerror(ENOENT)));
	af_error_free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_at),
		cmocka_unit_test(test_open_at_bad_offset),
		cmocka_unit_test(test_open_at_missing_file),
		cmocka_unit_test(test_probe_range),
		cmocka_unit_test(test_probe_range_nothing),
		cmocka_unit_test(test_probe_range_missing_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
