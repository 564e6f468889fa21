/* SPDX-License-Identifier: Apache-2.0 */
/* Loop devices over a byte range of an image.  Partitions are reached with
 * lo_offset/lo_sizelimit: partition scanning, kpartx and device-mapper do
 * not work on the machines and CI containers this runs on (DESIGN §6). */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/loopdev.h"
#include "amiforge/util.h"

#define LOOP_MAJOR 7
/* Another process (udisks, a parallel build, losetup) can take the free
 * device between LOOP_CTL_GET_FREE and our configure: ask again. */
#define LOOP_ATTACH_TRIES 32

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int backing_size(int fd, const char *path, uint64_t *size, struct af_error **err)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return af_error_set(err, errno, "cannot stat '%s'", path);
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			return af_error_set(err, errno, "cannot read the size of '%s'", path);
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return af_error_set(err, 0, "'%s' is neither a regular file nor a block device", path);
	*size = (uint64_t)st.st_size;
	return 0;
}

/* Opens /dev/loopN, creating the node when the container's /dev lacks it
 * (a static /dev only has the nodes that existed when it was populated). */
static int open_loop_node(int n, char **pathp, struct af_error **err)
{
	_cleanup_free_ char *path = xasprintf("/dev/loop%d", n);
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT) {
		if (mknod(path, S_IFBLK | 0660, makedev(LOOP_MAJOR, n)) < 0 && errno != EEXIST)
			return af_error_set(err, errno, "cannot create the loop device node '%s'", path);
		fd = open(path, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0)
		return af_error_set(err, errno, "cannot open '%s'", path);
	*pathp = steal_pointer(&path);
	return fd;
}

static void fill_info(struct loop_info64 *info, const char *path, uint64_t offset,
		      uint64_t sizelimit, bool readonly)
{
	memset(info, 0, sizeof(*info));
	info->lo_offset = offset;
	info->lo_sizelimit = sizelimit;
	/* No LO_FLAGS_DIRECT_IO: the page cache makes the many small writes of
	 * a package install cheap.  No LO_FLAGS_PARTSCAN: it does not work here. */
	info->lo_flags = LO_FLAGS_AUTOCLEAR | (readonly ? LO_FLAGS_READ_ONLY : 0);
	strncpy((char *)info->lo_file_name, path, LO_NAME_SIZE - 1);
}

/* The pre-5.8 way: two ioctls, with a window in which the device is
 * attached but not yet autoclear; undone with LOOP_CLR_FD on failure. */
static int configure_legacy(int loopfd, int backfd, const struct loop_info64 *info)
{
	if (ioctl(loopfd, LOOP_SET_FD, backfd) < 0)
		return -1;
	if (ioctl(loopfd, LOOP_SET_STATUS64, info) < 0) {
		int errsv = errno;
		ioctl(loopfd, LOOP_CLR_FD, 0);
		errno = errsv;
		return -1;
	}
	return 0;
}

static int configure(int loopfd, int backfd, const struct loop_info64 *info)
{
	struct loop_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)backfd;
	cfg.block_size = 0;
	cfg.info = *info;
	if (ioctl(loopfd, LOOP_CONFIGURE, &cfg) == 0)
		return 0;
	if (errno != ENOTTY && errno != EINVAL)
		return -1;
	return configure_legacy(loopfd, backfd, info);
}

/* The kernel clamps the size to the end of the file and rounds it down to
 * whole 512-byte sectors; anything else means the offsets were not applied. */
static int check_size(int loopfd, const char *lpath, uint64_t file_size, uint64_t offset,
		      uint64_t sizelimit, struct af_error **err)
{
	uint64_t want = file_size - offset, got;

	if (sizelimit && sizelimit < want)
		want = sizelimit;
	want &= ~(uint64_t)511;
	if (ioctl(loopfd, BLKGETSIZE64, &got) < 0)
		return af_error_set(err, errno, "cannot read the size of '%s'", lpath);
	if (got != want)
		return af_error_set(err, 0, "'%s' has %llu bytes, expected %llu: the kernel did not apply "
				    "the offset and size limit", lpath, (unsigned long long)got,
				    (unsigned long long)want);
	return 0;
}

/* One attempt on a free device: 0 done, 1 lost a race (try again), -1 err. */
static int attach_once(int ctl, int backfd, const char *path, const struct loop_info64 *info,
		       struct loopdev *lo, struct af_error **err)
{
	_cleanup_free_ char *lpath = NULL;
	_cleanup_fd_ int loopfd = -1;
	int n = ioctl(ctl, LOOP_CTL_GET_FREE);

	if (n < 0)
		return af_error_set(err, errno, "no free loop device (LOOP_CTL_GET_FREE)");
	loopfd = open_loop_node(n, &lpath, err);
	if (loopfd < 0)
		return -1;
	if (configure(loopfd, backfd, info) < 0) {
		if (errno == EBUSY)
			return 1;
		return af_error_set(err, errno, "cannot attach '%s' to '%s'", path, lpath);
	}
	lo->fd = steal_fd(&loopfd);
	lo->path = steal_pointer(&lpath);
	return 0;
}

int loopdev_attach(const char *path, uint64_t offset, uint64_t sizelimit, bool readonly,
		struct loopdev *out, struct af_error **err)
{
	_cleanup_fd_ int backfd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	_cleanup_fd_ int ctl = -1;
	struct loopdev lo = { .fd = -1, .path = NULL };
	struct loop_info64 info;
	uint64_t file_size;
	int rc = 1;

	if (backfd < 0)
		return af_error_set(err, errno, "cannot open '%s'", path);
	if (backing_size(backfd, path, &file_size, err) < 0)
		return -1;
	if (offset >= file_size)
		return af_error_set(err, 0, "offset %llu is beyond the end of '%s' (%llu bytes)",
				    (unsigned long long)offset, path, (unsigned long long)file_size);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return af_error_set(err, errno, "cannot open '/dev/loop-control' (is the loop module "
				    "loaded? try: modprobe loop)");
	fill_info(&info, path, offset, sizelimit, readonly);
	for (int i = 0; i < LOOP_ATTACH_TRIES && rc == 1; i++) {
		rc = attach_once(ctl, backfd, path, &info, &lo, err);
		if (rc == 1)
			sleep_ms(5 + 5 * i);
	}
	if (rc == 1)
		return af_error_set(err, EBUSY, "cannot attach '%s': every free loop device was taken "
				    "by someone else %d times", path, LOOP_ATTACH_TRIES);
	if (rc < 0)
		return -1;
	if (check_size(lo.fd, lo.path, file_size, offset, sizelimit, err) < 0) {
		loopdev_release(&lo);
		return -1;
	}
	log_debug("attached %s to '%s' at offset %llu size %llu", lo.path, path,
		  (unsigned long long)offset, (unsigned long long)sizelimit);
	*out = lo;
	return 0;
}

void loopdev_release(struct loopdev *lo)
{
	if (!lo)
		return;
	if (lo->fd >= 0)
		close(lo->fd);
	lo->fd = -1;
	free(lo->path);
	lo->path = NULL;
}
