/* SPDX-License-Identifier: Apache-2.0 */
/* What a command needs mounted inside an image root: /proc, /dev, /sys and
 * read-only text files, fd-based so that a symlink planted in the image can
 * never aim a mount at the host (used by the jail); and what a stage
 * prepares in the image before its commands run. */
#ifndef AMIFORGE_CHROOT_H
#define AMIFORGE_CHROOT_H

#include <stdio.h>

struct af_error;

/* "/proc/self/fd/N": how a mount or bind is aimed at exactly the fd that
 * was checked. */
struct fdpath {
	char s[32];
};
static inline struct fdpath fd_path(int fd)
{
	struct fdpath p;
	snprintf(p.s, sizeof(p.s), "/proc/self/fd/%d", fd);
	return p;
}

/* Before a stage's jailed commands run (in the stage child): writes
 * ROOT/usr/sbin/policy-rc.d (exit 101) and makes ROOT/etc/resolv.conf a
 * regular file a networked jail can bind its resolver over (a symlink is
 * moved aside).  The mounts commands need are made per command, inside the
 * jail (chroot_mount_api below).  chroot_unprepare() puts both back.  0 or -1 + err. */
int chroot_prepare(const char *root, struct af_error **err);
/* Removes policy-rc.d and a resolv.conf placeholder created by prepare, if
 * they are still there.  Runs in the runner after the stage.  0 or -1 + err. */
int chroot_unprepare(const char *root, struct af_error **err);

/* Mounts what commands in ROOT need, in the caller's (the jail's) mount
 * namespace: /proc (fresh; /proc/sys, sysrq-trigger, irq, bus, fs read-only,
 * kcore, keys, timer_list and the like masked), /dev (a nodev tmpfs with the
 * host's null zero full random urandom tty bound in, a devpts of its own,
 * /dev/shm, and each of DEVICES, absolute /dev/ paths of block devices, bound
 * at the same name), /sys read-only; RESOLV, when not NULL, bound read-only
 * over etc/resolv.conf.  Paths are resolved inside ROOTFD, never following a
 * symlink planted in the image.  WHAT says which (enum chroot_api).
 * 0 or -1 + err. */
enum chroot_api {
	CHROOT_API_PROC_SYS = 1 << 0,  /* /proc and /sys (debootstrap extracts over them: not there) */
	CHROOT_API_FD_LINKS = 1 << 1,  /* /dev/fd, stdin, stdout, stderr (mmdebstrap makes its own) */
};
int chroot_mount_api(int rootfd, const char *root, const char *const *devices, const char *resolv,
		     unsigned what, struct af_error **err);

/* Writes TEXT to a file in TMPDIRFD (a tmpfs of the jail), binds it
 * read-only over TARGETFD (an O_PATH fd of a regular file), and removes the
 * name.  SHOWN names the target in messages.  0 or -1 + err. */
int chroot_bind_text(int tmpdirfd, int targetfd, const char *text, const char *shown,
		     struct af_error **err);

#endif
