/* SPDX-License-Identifier: Apache-2.0 */
/* The image's root filesystem: a loop device over its byte range, mounted in
 * the engine's private mount namespace (namespace_enter) with libmount. */
#include <errno.h>
#include <fcntl.h>
#include <libmount.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/loopdev.h"
#include "amiforge/namespace.h"
#include "amiforge/rootfs.h"
#include "amiforge/util.h"

static inline void cleanup_mnt_contextp(struct libmnt_context **c) { mnt_free_context(*c); }
#define _cleanup_mnt_context_ __attribute__((cleanup(cleanup_mnt_contextp)))

/* How long an unmount may stay busy (a process of the stage still exiting)
 * before it is detached lazily. */
#define UMOUNT_BUSY_TRIES 30
#define UMOUNT_BUSY_SLEEP_MS 100

static int mount_loop(const char *dev, const char *target, const char *fstype,
		      struct af_error **err)
{
	_cleanup_mnt_context_ struct libmnt_context *cxt = mnt_new_context();
	char buf[BUFSIZ] = "";
	int rc, errsv;

	if (!cxt)
		BUG("mnt_new_context: out of memory");
	/* Source, target and type are all given: libmount neither reads fstab
	 * nor writes utab, and no /sbin/mount.<type> helper runs. */
	if (mnt_context_set_source(cxt, dev) || mnt_context_set_target(cxt, target) ||
	    mnt_context_set_fstype(cxt, fstype) || mnt_context_set_options(cxt, "rw,noatime") ||
	    mnt_context_disable_mtab(cxt, 1) || mnt_context_disable_helpers(cxt, 1))
		BUG("libmount context setup failed");
	rc = mnt_context_mount(cxt);
	if (rc == 0 && mnt_context_get_status(cxt) == 1)
		return 0;
	errsv = mnt_context_get_syscall_errno(cxt);
	mnt_context_get_excode(cxt, rc, buf, sizeof(buf));
	if (!*buf && errsv > 0)
		snprintf(buf, sizeof(buf), "%s", strerror(errsv));
	af_error_set(err, 0, "cannot mount %s on '%s' as %s: %s", dev, target, fstype,
		     *buf ? buf : "libmount failed");
	if (err && *err)
		(*err)->errnum = errsv > 0 ? errsv : EIO;
	return -1;
}

int rootfs_mount(const char *image, uint64_t offset, uint64_t size, const char *fstype,
		 const char *target, struct rootfs *out, struct af_error **err)
{
	struct rootfs fs = { .loop = { .fd = -1 } };

	if (mkdir_p(target, 0755, err) < 0)
		return af_error_wrap(err, "mount point");
	if (loopdev_attach(image, offset, size, false, &fs.loop, err) < 0)
		return af_error_wrap(err, "root filesystem of '%s'", image);
	if (mount_loop(fs.loop.path, target, fstype, err) < 0) {
		loopdev_release(&fs.loop);
		return -1;
	}
	fs.target = xstrdup(target);
	fs.mounted = true;
	log_debug("mounted %s (%s) on %s", fs.loop.path, fstype, target);
	*out = fs;
	return 0;
}

/* Discards the free blocks: the loop device punches them out of the sparse
 * image, so deleted files cost nothing in the image or its checkpoints. */
static void trim(int fd, const char *target)
{
	struct fstrim_range range = { .start = 0, .len = UINT64_MAX, .minlen = 0 };

	if (ioctl(fd, FITRIM, &range) < 0 && errno != EOPNOTSUPP && errno != ENOTTY)
		log_debug("fstrim '%s': %s (ignored)", target, strerror(errno));
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int umount_target(const char *target, struct af_error **err)
{
	for (int i = 0; i < UMOUNT_BUSY_TRIES; i++) {
		if (umount2(target, UMOUNT_NOFOLLOW) == 0)
			return 0;
		if (errno != EBUSY)
			return af_error_set(err, errno, "cannot unmount '%s'", target);
		sleep_ms(UMOUNT_BUSY_SLEEP_MS);
	}
	/* The loop device, being autoclear, goes once the last user lets go. */
	log_warn("'%s' is still busy after %d s: detaching it lazily", target,
		 UMOUNT_BUSY_TRIES * UMOUNT_BUSY_SLEEP_MS / 1000);
	if (umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
		return af_error_set(err, errno, "cannot unmount '%s'", target);
	return 0;
}

int rootfs_umount(struct rootfs *fs, struct af_error **err)
{
	int rc = 0;

	if (fs->mounted) {
		_cleanup_fd_ int fd = open(fs->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			rc = af_error_set(err, errno, "cannot open '%s'", fs->target);
		} else {
			/* ext4 frees a deleted file's blocks only when the journal
			 * commits: sync first, or the trim misses them. */
			if (syncfs(fd) == 0)
				trim(fd, fs->target);
			if (syncfs(fd) < 0)
				rc = af_error_set(err, errno, "cannot sync the filesystem at '%s'",
						  fs->target);
			close(steal_fd(&fd));
		}
		if (umount_target(fs->target, err) < 0)
			rc = -1;
		else
			fs->mounted = false;
	}
	loopdev_release(&fs->loop);
	if (!fs->mounted) {
		free(fs->target);
		fs->target = NULL;
	}
	return rc;
}
