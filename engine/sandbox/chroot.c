/* SPDX-License-Identifier: Apache-2.0 */
/* What a jailed command needs for package scripts to work (DESIGN §6): a
 * fresh /proc with the kernel-wide knobs read-only, a private minimal /dev,
 * /sys read-only, a resolver when it has network, and a policy-rc.d that
 * refuses service starts.
 *
 * ROOT is an image being built: anything in it may be a symlink planted to
 * reach the host (/etc/resolv.conf -> /etc/shadow).  Every path inside ROOT
 * is therefore resolved with openat2(RESOLVE_IN_ROOT), final components are
 * never followed, and mounts go through the opened fd (/proc/self/fd/N) so
 * the kernel mounts on exactly what was checked. */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "amiforge/chroot.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/util.h"

#define POLICY_RC_D "usr/sbin/policy-rc.d"
/* The comment marks the file as ours: one that merely looks like it (an
 * image's own "exit 101") is never removed. */
static const char policy_rc_d[] = "#!/bin/sh\n# amiforge: no service starts while the image is built\nexit 101\n";
static const char resolv_placeholder[] = "# amiforge: a jailed command with network sees its resolver here\n";
#define RESOLV_SAVED "resolv.conf.amiforge-saved"


/* REL below ROOTFD, symlinks resolved as if ROOTFD were "/" (they cannot
 * leave it); with NOLINKS no symlink at all is accepted on the way.  FLAGS
 * include O_DIRECTORY, so a final symlink fails rather than opens. */
static int open_in_root(int rootfd, const char *rel, int flags, bool nolinks)
{
	return nolinks ? inroot_open_nolinks(rootfd, rel, flags) : inroot_open(rootfd, rel, flags, 0);
}

static int error_in_root(struct af_error **err, int errnum, const char *root, const char *rel,
			 const char *what)
{
	return af_error_set(err, errnum, "%s '%s/%s'", what, root, rel);
}

/* A directory REL of ROOT to mount on, made if missing; never a symlink. */
static int mountpoint_fd(int rootfd, const char *root, const char *rel, mode_t mode,
			 struct af_error **err)
{
	int fd;

	if (mkdirat(rootfd, rel, mode) < 0 && errno != EEXIST)
		return error_in_root(err, errno, root, rel, "cannot create");
	fd = open_in_root(rootfd, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW, true);
	if (fd < 0)
		return error_in_root(err, errno, root, rel,
				     errno == ELOOP ? "refusing to mount on a symlink:" : "cannot open");
	return fd;
}

static int mount_at(const char *src, int fd, const char *fstype, unsigned long flags,
		    const char *data, const char *root, const char *rel, struct af_error **err)
{
	if (mount(src, fd_path(fd).s, fstype, flags, data) < 0)
		return af_error_set(err, errno, "cannot mount %s on '%s/%s'", fstype ? fstype : src,
				    root, rel);
	return 0;
}

static int mount_fs(int rootfd, const char *root, const char *rel, mode_t mode, const char *fstype,
		    unsigned long flags, const char *data, struct af_error **err)
{
	_cleanup_fd_ int fd = mountpoint_fd(rootfd, root, rel, mode, err);

	if (fd < 0)
		return -1;
	return mount_at(fstype, fd, fstype, flags, data, root, rel, err);
}

/* Bound from the host, not made with mknod: /dev is mounted nodev, so a
 * node a command makes there (a host disk's numbers) opens nothing, while
 * these binds, mounts of their own, still work. */
static const char *const dev_nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };

/* ptmx first: the others are left to mmdebstrap in a host-view jail (it
 * insists on making them itself). */
static const struct {
	const char *name, *target;
} dev_links[] = {
	{ "ptmx", "pts/ptmx" }, { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
	{ "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
};

/* Binds host file SRC on a new empty file NAME of DIRFD. */
static int bind_file_at(int dirfd, const char *name, const char *src, const char *root,
			const char *shown, struct af_error **err)
{
	_cleanup_fd_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				     0600);

	if (fd < 0)
		return af_error_set(err, errno, "cannot create '%s/%s'", root, shown);
	if (mount(src, fd_path(fd).s, NULL, MS_BIND, NULL) < 0)
		return af_error_set(err, errno, "cannot bind '%s' on '%s/%s'", src, root, shown);
	return 0;
}

/* DEV must be an absolute /dev/NAME of a block device; bound as DEVFD/NAME. */
static int bind_device(int devfd, const char *dev, const char *root, struct af_error **err)
{
	const char *name = str_has_prefix(dev, "/dev/") ? dev + 5 : NULL;
	_cleanup_free_ char *shown = NULL;
	struct stat st;

	if (!name || !*name || strchr(name, '/') || stat(dev, &st) < 0 || !S_ISBLK(st.st_mode))
		return af_error_set(err, EINVAL, "'%s' is not a block device directly under /dev", dev);
	shown = xasprintf("dev/%s", name);
	return bind_file_at(devfd, name, dev, root, shown, err);
}

/* Inside the fresh /dev tmpfs (DEVFD): nodes, devpts, shm, links, devices. */
static int populate_dev(int devfd, const char *root, const char *const *devices, bool fd_links,
			struct af_error **err)
{
	_cleanup_fd_ int pts = -1;
	_cleanup_fd_ int shm = -1;

	for (size_t i = 0; i < ARRAY_SIZE(dev_nodes); i++) {
		_cleanup_free_ char *src = xasprintf("/dev/%s", dev_nodes[i]);
		_cleanup_free_ char *shown = xasprintf("dev/%s", dev_nodes[i]);
		if (bind_file_at(devfd, dev_nodes[i], src, root, shown, err) < 0)
			return -1;
	}
	for (size_t i = 0; devices && devices[i]; i++)
		if (bind_device(devfd, devices[i], root, err) < 0)
			return -1;
	if (mkdirat(devfd, "pts", 0755) < 0 || mkdirat(devfd, "shm", 01777) < 0)
		return af_error_set(err, errno, "cannot create directories in '%s/dev'", root);
	pts = openat(devfd, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	shm = openat(devfd, "shm", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pts < 0 || shm < 0)
		return af_error_set(err, errno, "cannot open directories in '%s/dev'", root);
	/* newinstance: the jail's ptys are its own, not the host's. */
	if (mount_at("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC,
		     "newinstance,ptmxmode=0666,mode=620,gid=5", root, "dev/pts", err) < 0 ||
	    mount_at("tmpfs", shm, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", root, "dev/shm", err) < 0)
		return -1;
	for (size_t i = 0; i < (fd_links ? ARRAY_SIZE(dev_links) : 1); i++) {
		if (symlinkat(dev_links[i].target, devfd, dev_links[i].name) < 0)
			return af_error_set(err, errno, "cannot create '%s/dev/%s'", root,
					    dev_links[i].name);
	}
	return 0;
}

/* A nodev tmpfs /dev, never the host's: the host's disks stay out of reach. */
static int mount_dev(int rootfd, const char *root, const char *const *devices, bool fd_links,
		     struct af_error **err)
{
	_cleanup_fd_ int devfd = -1;

	if (mount_fs(rootfd, root, "dev", 0755, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		     "mode=0755,size=4m", err) < 0)
		return -1;
	/* Opened again: the first fd is the directory under the new tmpfs. */
	devfd = open_in_root(rootfd, "dev", O_PATH | O_DIRECTORY | O_NOFOLLOW, true);
	if (devfd < 0)
		return error_in_root(err, errno, root, "dev", "cannot open");
	return populate_dev(devfd, root, devices, fd_links, err);
}

/* runc's defaults: a fresh procfs is the jail's own for processes, but its
 * kernel-wide files are the host's.  Writing /proc/sys/kernel/core_pattern
 * or /proc/sysrq-trigger needs no capability, only uid 0. */
static const char *const proc_readonly[] = { "bus", "fs", "irq", "sys", "sysrq-trigger" };
static const char *const proc_masked[] = { "acpi", "asound", "kcore", "keys", "latency_stats",
					   "timer_list", "timer_stats", "sched_debug", "scsi" };

static int proc_make_readonly(int procfd, const char *name, const char *root, struct af_error **err)
{
	_cleanup_fd_ int fd = openat(procfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	_cleanup_fd_ int top = -1;

	if (fd < 0)
		return errno == ENOENT ? 0 : af_error_set(err, errno, "cannot open '%s/proc/%s'", root, name);
	if (mount(fd_path(fd).s, fd_path(fd).s, NULL, MS_BIND | MS_REC, NULL) < 0)
		return af_error_set(err, errno, "cannot bind '%s/proc/%s'", root, name);
	top = openat(procfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0 || mount("none", fd_path(top).s, NULL,
			     MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		return af_error_set(err, errno, "cannot make '%s/proc/%s' read-only", root, name);
	return 0;
}

static int proc_mask(int procfd, const char *name, const char *root, struct af_error **err)
{
	_cleanup_fd_ int fd = openat(procfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	int r;

	if (fd < 0)
		return errno == ENOENT ? 0 : af_error_set(err, errno, "cannot open '%s/proc/%s'", root, name);
	if (fstat(fd, &st) < 0)
		return af_error_set(err, errno, "cannot stat '%s/proc/%s'", root, name);
	r = S_ISDIR(st.st_mode) ? mount("tmpfs", fd_path(fd).s, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
					"mode=0555,size=4k")
				: mount("/dev/null", fd_path(fd).s, NULL, MS_BIND, NULL);
	if (r < 0)
		return af_error_set(err, errno, "cannot mask '%s/proc/%s'", root, name);
	return 0;
}

static int mount_proc(int rootfd, const char *root, struct af_error **err)
{
	_cleanup_fd_ int procfd = -1;

	if (mount_fs(rootfd, root, "proc", 0555, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0)
		return -1;
	procfd = open_in_root(rootfd, "proc", O_PATH | O_DIRECTORY | O_NOFOLLOW, true);
	if (procfd < 0)
		return error_in_root(err, errno, root, "proc", "cannot open");
	for (size_t i = 0; i < ARRAY_SIZE(proc_readonly); i++)
		if (proc_make_readonly(procfd, proc_readonly[i], root, err) < 0)
			return -1;
	for (size_t i = 0; i < ARRAY_SIZE(proc_masked); i++)
		if (proc_mask(procfd, proc_masked[i], root, err) < 0)
			return -1;
	return 0;
}

static int mount_sys(int rootfd, const char *root, struct af_error **err)
{
	_cleanup_fd_ int sysfd = -1;

	if (mount_fs(rootfd, root, "sys", 0555, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
		     NULL, err) < 0)
		return -1;
	sysfd = open_in_root(rootfd, "sys", O_PATH | O_DIRECTORY | O_NOFOLLOW, true);
	if (sysfd < 0)
		return error_in_root(err, errno, root, "sys", "cannot open");
	return proc_mask(sysfd, "firmware", root, err);
}

/* Opens directory REL of ROOT, creating it (and its parents) if missing. */
static int dir_in_root(int rootfd, const char *root, const char *rel, struct af_error **err)
{
	int fd = open_in_root(rootfd, rel, O_PATH | O_DIRECTORY, false);
	const char *slash;

	if (fd >= 0 || errno != ENOENT)
		goto out;
	slash = strrchr(rel, '/');
	if (slash) {
		_cleanup_free_ char *parent = xstrndup(rel, (size_t)(slash - rel));
		_cleanup_fd_ int pfd = dir_in_root(rootfd, root, parent, err);
		if (pfd < 0)
			return -1;
		if (mkdirat(pfd, slash + 1, 0755) < 0 && errno != EEXIST)
			return error_in_root(err, errno, root, rel, "cannot create");
	} else if (mkdirat(rootfd, rel, 0755) < 0 && errno != EEXIST) {
		return error_in_root(err, errno, root, rel, "cannot create");
	}
	fd = open_in_root(rootfd, rel, O_PATH | O_DIRECTORY, false);
out:
	if (fd < 0)
		return error_in_root(err, errno, root, rel, "cannot open");
	return fd;
}

/* Creates NAME in DIRFD with CONTENT; EEXIST is returned as 1, not an error. */
static int create_file(int dirfd, const char *name, const char *content, mode_t mode,
		       const char *what, struct af_error **err)
{
	_cleanup_fd_ int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				     mode);

	if (fd < 0 && errno == EEXIST)
		return 1;
	if (fd < 0 || write_all(fd, content, strlen(content)) < 0 || fchmod(fd, mode) < 0)
		return af_error_set(err, errno, "cannot write %s", what);
	if (close(steal_fd(&fd)) < 0)
		return af_error_set(err, errno, "cannot write %s", what);
	return 0;
}

/* Makes ETC/resolv.conf a regular file to bind onto: a symlink (usually to
 * a resolver's runtime file, but it could point anywhere on the host once
 * followed outside the chroot) is moved aside, a missing file gets a
 * placeholder; chroot_unprepare() puts things back. */
static int resolv_target(int etc, const char *root, struct af_error **err)
{
	struct stat st;

	if (fstatat(etc, "resolv.conf", &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISREG(st.st_mode))
			return 0;
		if (!S_ISLNK(st.st_mode))
			return af_error_set(err, 0, "'%s/etc/resolv.conf' is not a regular file", root);
		if (renameat(etc, "resolv.conf", etc, RESOLV_SAVED) < 0)
			return af_error_set(err, errno, "cannot move '%s/etc/resolv.conf' aside", root);
	} else if (errno != ENOENT) {
		return af_error_set(err, errno, "cannot stat '%s/etc/resolv.conf'", root);
	}
	return create_file(etc, "resolv.conf", resolv_placeholder, 0644, "the resolv.conf placeholder",
			   err) < 0 ? -1 : 0;
}

int chroot_bind_text(int tmpdirfd, int targetfd, const char *text, const char *shown,
		     struct af_error **err)
{
	static const char name[] = ".amiforge-bound-text";
	_cleanup_fd_ int fd = openat(tmpdirfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	_cleanup_fd_ int tree = -1;
	struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
					     MOUNT_ATTR_NOEXEC };
	int rc = 0;

	if (fd < 0 || write_all(fd, text, strlen(text)) < 0 || fchmod(fd, 0644) < 0)
		return af_error_set(err, errno, "cannot write the text for '%s'", shown);
	/* A detached bind, made read-only before it is attached: no window in
	 * which it is writable, and no path to look the mount up again by. */
	tree = (int)syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
	if (tree < 0 || syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0 ||
	    syscall(SYS_move_mount, tree, "", targetfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
		rc = af_error_set(err, errno, "cannot bind a read-only file over '%s'", shown);
	/* The bind holds the file; its name in the tmpfs is not needed. */
	unlinkat(tmpdirfd, name, 0);
	return rc;
}

/* The jail's resolver over ROOT/etc/resolv.conf, which chroot_prepare()
 * made a regular file (and a symlink is never mounted on). */
static int bind_resolv_conf(int rootfd, const char *root, const char *text, struct af_error **err)
{
	_cleanup_fd_ int devfd = open_in_root(rootfd, "dev", O_PATH | O_DIRECTORY | O_NOFOLLOW, true);
	_cleanup_fd_ int target = open_in_root(rootfd, "etc/resolv.conf", O_PATH | O_NOFOLLOW, true);
	_cleanup_free_ char *shown = xasprintf("%s/etc/resolv.conf", root);
	struct stat st;

	if (devfd < 0)
		return error_in_root(err, errno, root, "dev", "cannot open");
	if (target < 0 || fstat(target, &st) < 0 || !S_ISREG(st.st_mode))
		return af_error_set(err, target < 0 ? errno : EINVAL,
				    "cannot bind the resolver on '%s': not a regular file", shown);
	return chroot_bind_text(devfd, target, text, shown, err);
}

static int write_policy_rc_d(int rootfd, const char *root, struct af_error **err)
{
	_cleanup_fd_ int sbin = dir_in_root(rootfd, root, "usr/sbin", err);
	int rc;

	if (sbin < 0)
		return -1;
	rc = create_file(sbin, "policy-rc.d", policy_rc_d, 0755, "policy-rc.d", err);
	if (rc == 1)
		log_debug("'%s/" POLICY_RC_D "' exists: left as it is", root);
	return rc < 0 ? af_error_wrap(err, "'%s'", root) : 0;
}

int chroot_mount_api(int rootfd, const char *root, const char *const *devices, const char *resolv,
		     unsigned what, struct af_error **err)
{
	mode_t old_umask = umask(0);  /* modes exactly as written */
	bool proc_sys = what & CHROOT_API_PROC_SYS;
	int rc = 0;

	if ((proc_sys && mount_proc(rootfd, root, err) < 0) ||
	    mount_dev(rootfd, root, devices, what & CHROOT_API_FD_LINKS, err) < 0 ||
	    (proc_sys && mount_sys(rootfd, root, err) < 0) ||
	    (resolv && bind_resolv_conf(rootfd, root, resolv, err) < 0))
		rc = -1;
	umask(old_umask);
	return rc;
}

static int prepare_resolv_target(int rootfd, const char *root, struct af_error **err)
{
	_cleanup_fd_ int etc = dir_in_root(rootfd, root, "etc", err);

	if (etc < 0)
		return -1;
	return resolv_target(etc, root, err);
}

int chroot_prepare(const char *root, struct af_error **err)
{
	_cleanup_fd_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	mode_t old_umask;
	int rc;

	if (rootfd < 0)
		return af_error_set(err, errno, "cannot open the chroot '%s'", root);
	old_umask = umask(0);
	rc = prepare_resolv_target(rootfd, root, err) < 0 || write_policy_rc_d(rootfd, root, err) < 0 ? -1 : 0;
	umask(old_umask);
	return rc;
}

/* Unlinks DIRFD/NAME if it is a regular file holding exactly CONTENT.
 * 1 removed, 0 not ours or absent, -1 + err. */
static int remove_if_ours(int dirfd, const char *name, const char *content, const char *root,
			  struct af_error **err)
{
	_cleanup_fd_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	size_t len = strlen(content);
	char buf[256];
	struct stat st;
	ssize_t n;

	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? 0 : af_error_set(err, errno,
					"cannot open '%s' in '%s'", name, root);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size != len)
		return 0;
	n = read_all(fd, buf, sizeof(buf));
	if (n < 0)
		return af_error_set(err, errno, "cannot read '%s' in '%s'", name, root);
	if ((size_t)n != len || memcmp(buf, content, len) != 0)
		return 0;
	if (unlinkat(dirfd, name, 0) < 0)
		return af_error_set(err, errno, "cannot remove '%s' in '%s'", name, root);
	return 1;
}

static int restore_resolv_conf(int rootfd, const char *root, struct af_error **err)
{
	_cleanup_fd_ int etc = open_in_root(rootfd, "etc", O_PATH | O_DIRECTORY, false);
	struct stat st;

	if (etc < 0)
		return errno == ENOENT ? 0 : error_in_root(err, errno, root, "etc", "cannot open");
	if (remove_if_ours(etc, "resolv.conf", resolv_placeholder, root, err) < 0)
		return -1;
	if (fstatat(etc, RESOLV_SAVED, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISLNK(st.st_mode))
		return 0;
	if (renameat2(etc, RESOLV_SAVED, etc, "resolv.conf", RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EEXIST) {
		/* Something in the build wrote its own: it wins. */
		log_warn("'%s/etc/resolv.conf' was replaced during the build; the original symlink "
			 "stays in '%s/etc/" RESOLV_SAVED "'", root, root);
		return 0;
	}
	return af_error_set(err, errno, "cannot restore '%s/etc/resolv.conf'", root);
}

int chroot_unprepare(const char *root, struct af_error **err)
{
	_cleanup_fd_ int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	_cleanup_fd_ int sbin = -1;
	int rc = 0;

	if (rootfd < 0)
		return af_error_set(err, errno, "cannot open the chroot '%s'", root);
	sbin = open_in_root(rootfd, "usr/sbin", O_PATH | O_DIRECTORY, false);
	if (sbin < 0 && errno != ENOENT)
		rc = error_in_root(err, errno, root, "usr/sbin", "cannot open");
	if (sbin >= 0 && remove_if_ours(sbin, "policy-rc.d", policy_rc_d, root, err) < 0)
		rc = -1;
	if (restore_resolv_conf(rootfd, root, err) < 0)
		rc = -1;
	return rc;
}
