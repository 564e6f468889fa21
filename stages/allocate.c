/* SPDX-License-Identifier: Apache-2.0 */
/* allocate: the disk the image is built on.  Either a sparse raw file of
 * `size` bytes at ctx->image, or an existing, unmounted block `device`. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <libmount.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

static const struct param_spec allocate_params[] = {
	{ .name = "size", .type = PT_SIZE, .help = "size of a new sparse image file (e.g. 2GiB)" },
	{ .name = "device", .type = PT_STRING, .help = "an existing, unmounted block device to build on" },
	{ .name = NULL },
};

static int allocate_check(const json_t *params, struct af_error **err)
{
	bool has_size = params_get(params, "size") != NULL;
	bool has_device = params_get(params, "device") != NULL;
	if (has_size && has_device)
		return af_error_set(err, 0, "allocate takes size or device, not both");
	if (!has_size && !has_device)
		return af_error_set(err, 0,
				    "allocate needs size (a new sparse image, e.g. size: 2GiB) or device (an existing block device)");
	return 0;
}

static void allocate_set_outputs(json_t *out, const char *path, uint64_t size, bool is_device)
{
	json_object_set_new(out, "disk.path", json_string(path));
	json_object_set_new(out, "disk.size", json_integer((json_int_t)size));
	json_object_set_new(out, "disk.is_device", json_boolean(is_device));
	/* Whole-disk defaults: a later partition stage overrides them. */
	json_object_set_new(out, "root.offset", json_integer(0));
	json_object_set_new(out, "root.size", json_integer((json_int_t)size));
	json_object_set_new(out, "partition.table", json_string("none"));
}

static int allocate_file(const char *path, uint64_t size, struct af_error **err)
{
	char buf[32];
	struct stat st;

	if (size < 1024 * 1024)
		return af_error_set(err, 0, "image size %" PRIu64 " is too small: give at least 1MiB", size);
	if (size % 512)
		return af_error_set(err, 0, "image size %" PRIu64 " is not a multiple of 512 bytes", size);
	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
		return af_error_set(err, 0, "cannot replace '%s' with an image file: it exists and is not a regular file; remove it or choose another state directory",
				    path);
	/* O_TRUNC then ftruncate: every byte is a hole, nothing is allocated.
	 * 0600, also when an older image was more open: it will hold the
	 * image's shadow and keys before sanitize runs. */
	_cleanup_fd_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return af_error_set(err, errno, "create image file '%s'", path);
	if (fchmod(fd, 0600) < 0)
		return af_error_set(err, errno, "make image file '%s' private (mode 0600)", path);
	if (ftruncate(fd, (off_t)size) < 0)
		return af_error_set(err, errno, "set size of '%s' to %s", path,
				    format_size(size, buf, sizeof(buf)));
	if (close(steal_fd(&fd)) < 0)
		return af_error_set(err, errno, "close '%s'", path);
	log_info("allocated sparse image %s (%s)", path, format_size(size, buf, sizeof(buf)));
	return 0;
}

/* Is DEVNO the disk WHOLE or one of its partitions?  sysfs links
 * /sys/dev/block/M:m of a partition to .../<disk>/<part>, whose parent
 * directory holds the disk's "dev". */
static bool allocate_devno_on_disk(dev_t devno, dev_t whole)
{
	if (devno == whole)
		return true;
	_cleanup_free_ char *p = xasprintf("/sys/dev/block/%u:%u/../dev", major(devno), minor(devno));
	_cleanup_free_ char *parent = read_file(p, NULL, NULL);
	if (!parent)
		return false;
	unsigned ma, mi;
	return sscanf(parent, "%u:%u", &ma, &mi) == 2 && makedev(ma, mi) == whole;
}

static int allocate_check_unmounted(const char *dev, dev_t rdev, struct af_error **err)
{
	struct libmnt_table *tb = mnt_new_table_from_file("/proc/self/mountinfo");
	if (!tb)
		return af_error_set(err, errno, "read /proc/self/mountinfo");
	struct libmnt_iter *it = mnt_new_iter(MNT_ITER_FORWARD);
	struct libmnt_fs *fs = NULL;
	int r = 0;
	while (mnt_table_next_fs(tb, it, &fs) == 0) {
		dev_t d = mnt_fs_get_devno(fs);
		if (d && allocate_devno_on_disk(d, rdev)) {
			r = af_error_set(err, 0, "device '%s' is in use: %s (%u:%u) is mounted on '%s'; unmount it or choose another device",
					 dev, mnt_fs_get_source(fs) ? mnt_fs_get_source(fs) : "?", major(d), minor(d),
					 mnt_fs_get_target(fs));
			break;
		}
	}
	mnt_free_iter(it);
	mnt_unref_table(tb);
	return r;
}

static int allocate_device(const char *dev, uint64_t *size, struct af_error **err)
{
	struct stat st;
	if (stat(dev, &st) < 0)
		return af_error_set(err, errno, "device '%s'", dev);
	if (!S_ISBLK(st.st_mode))
		return af_error_set(err, 0, "'%s' is not a block device; give a block device (e.g. /dev/nvme1n1) or use size:", dev);
	if (allocate_check_unmounted(dev, st.st_rdev, err) < 0)
		return -1;
	_cleanup_fd_ int fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return af_error_set(err, errno, "open device '%s'", dev);
	if (ioctl(fd, BLKGETSIZE64, size) < 0)
		return af_error_set(err, errno, "get size of device '%s'", dev);
	char buf[32];
	log_info("using block device %s (%s)", dev, format_size(*size, buf, sizeof(buf)));
	return 0;
}

static int allocate_run(struct stage_ctx *ctx, struct af_error **err)
{
	const char *dev = params_str(ctx->params, "device", NULL);
	if (dev) {
		uint64_t size = 0;
		if (allocate_device(dev, &size, err) < 0)
			return -1;
		allocate_set_outputs(ctx->outputs, dev, size, true);
		return 0;
	}
	int64_t size = params_int(ctx->params, "size", 0);
	if (size <= 0)
		return af_error_set(err, 0, "allocate needs a size greater than 0");
	if (allocate_file(ctx->image, (uint64_t)size, err) < 0)
		return -1;
	allocate_set_outputs(ctx->outputs, ctx->image, (uint64_t)size, false);
	return 0;
}

/* For plan (stage.h). */
static char *allocate_describe(const struct stage_describe *d)
{
	const char *dev = params_str(d->params, "device", NULL);
	stage_describe_know(d, "partition.table", "none");
	json_object_set_new(d->known, "disk.is_device", json_boolean(dev != NULL));
	if (dev) {
		stage_describe_know(d, "disk.path", dev);
		return xasprintf("use block device %s", dev);
	}
	char buf[32];
	int64_t size = params_int(d->params, "size", 0);
	json_object_set_new(d->known, "disk.size", json_integer(size));
	return xasprintf("create a %s sparse image file", stage_describe_size((uint64_t)size, buf, sizeof(buf)));
}

static const char *const allocate_provides[] = { "disk.path", "disk.size", "disk.is_device", "partition.table", "root.offset", "root.size", NULL };

const struct stage_type stage_allocate = {
	.name = "allocate",
	.summary = "create a sparse image file of a given size, or take an unmounted block device",
	.params = allocate_params,
	.flags = STAGE_NEEDS_IMAGE,
	.provides = allocate_provides,
	.check = allocate_check,
	.describe = allocate_describe,
	.run = allocate_run,
};
