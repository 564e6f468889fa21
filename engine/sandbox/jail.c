/* SPDX-License-Identifier: Apache-2.0 */
/* The jail (jail.h), in three processes:
 *   keeper  the child spawn_run() forked, outside every new namespace
 *           but PID's: it makes the init, runs pasta for it, relays status;
 *   init    PID 1 of the new PID namespace: unshares the rest, mounts,
 *           pivots into the new root, drops privilege, forks the command
 *           and reaps until it ends (its exit empties the namespace);
 *   command what the caller asked for, exec'd by a child of the init.
 * The keeper and the init talk over a socketpair: the init sends its pid as
 * the host's /proc names it (pasta needs its network namespace), the
 * keeper answers once pasta runs. */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <linux/mount.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>

#include "amiforge/chroot.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exec.h"
#include "amiforge/inroot.h"
#include "amiforge/jail.h"
#include "amiforge/spawn.h"
#include "amiforge/util.h"

#define JAIL_HOSTNAME "localhost"
/* The read-only host directories a host-view jail shows. */
static const char *const jail_host_dirs[] = { "usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "opt" };
/* Fresh, empty and writable in a host-view jail. */
static const char *const jail_host_tmpfs[] = { "tmp", "var", "run", "root", "home" };



static _Noreturn void jail_fail(int report_fd, struct af_error *err)
{
	exec_report_send(report_fd, EXEC_REPORT_SETUP, af_error_errno(err), af_error_msg(err));
	_exit(127);
}

/* ---- mounts (the init, before pivot_root) ---- */

static int jail_setattr(int fd, uint64_t set, struct af_error **err, const char *what)
{
	struct mount_attr attr = { .attr_set = set };

	if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		return af_error_set(err, errno, "cannot set mount flags on '%s'", what);
	return 0;
}

/* mkdir -p of REL below DIRFD, never through a symlink.  0 or -1 (errno). */
static int mkdir_p_at(int dirfd, const char *rel, mode_t mode)
{
	_cleanup_free_ char *copy = xstrdup(rel);
	char *save = NULL;
	int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);

	for (char *c = strtok_r(copy, "/", &save); c && cur >= 0; c = strtok_r(NULL, "/", &save)) {
		int next;
		if (!strcmp(c, "..") || (mkdirat(cur, c, mode) < 0 && errno != EEXIST)) {
			int e = strcmp(c, "..") ? errno : EXDEV;
			close(cur);
			errno = e;
			return -1;
		}
		next = openat(cur, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(cur);
		cur = next;
	}
	if (cur < 0)
		return -1;
	close(cur);
	return 0;
}

/* Binds directory fd SRC on DIR (created) below NEWROOT, recursively. */
static int jail_bind_dir(int newroot, const char *dir, int src, uint64_t attrs, struct af_error **err)
{
	_cleanup_fd_ int dst = -1;
	_cleanup_fd_ int top = -1;

	if (mkdir_p_at(newroot, dir, 0755) < 0)
		return af_error_set(err, errno, "cannot create '%s' in the jail", dir);
	dst = openat(newroot, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dst < 0 || mount(fd_path(src).s, fd_path(dst).s, NULL, MS_BIND | MS_REC, NULL) < 0)
		return af_error_set(err, errno, "cannot bind '/%s' into the jail", dir);
	if (!attrs)
		return 0;
	top = openat(newroot, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (top < 0)
		return af_error_set(err, errno, "cannot open '/%s' in the jail", dir);
	return jail_setattr(top, attrs, err, dir);
}

/* /etc of the host, minus what only root may read (shadow, ssh host keys,
 * sudoers, TLS private keys): masked with /dev/null or an empty tmpfs. */
static int jail_mask_secrets(int dirfd, const char *rel, int depth, struct af_error **err)
{
	_cleanup_dir_ DIR *d = NULL;
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	for (struct dirent *de; (de = readdir(d));) {
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISLNK(st.st_mode))
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", rel, de->d_name);
		_cleanup_fd_ int e = openat(dirfd, de->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (e < 0)
			continue;
		if (!(st.st_mode & S_IROTH)) {
			int r = S_ISDIR(st.st_mode)
					? mount("tmpfs", fd_path(e).s, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
						"mode=0700,size=4k")
					: mount("/dev/null", fd_path(e).s, NULL, MS_BIND, NULL);
			if (r < 0)
				return af_error_set(err, errno, "cannot mask '%s' in the jail", path);
		} else if (S_ISDIR(st.st_mode) && depth < 4) {
			_cleanup_fd_ int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0 && jail_mask_secrets(sub, path, depth + 1, err) < 0)
				return -1;
		}
	}
	return 0;
}

static int jail_host_dir(int newroot, const char *name, struct af_error **err)
{
	_cleanup_free_ char *host = xasprintf("/%s", name);
	char target[4096];
	ssize_t n = readlink(host, target, sizeof(target) - 1);
	_cleanup_fd_ int src = -1;

	if (n > 0) {  /* usrmerge: /bin -> usr/bin */
		target[n] = '\0';
		if (symlinkat(target, newroot, name) < 0)
			return af_error_set(err, errno, "cannot create '/%s' in the jail", name);
		return 0;
	}
	src = open(host, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (src < 0)
		return errno == ENOENT ? 0 : af_error_set(err, errno, "cannot open '%s'", host);
	return jail_bind_dir(newroot, name, src,
			     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err);
}

/* The host's resolv.conf in the view, replaced by the jail's resolver: a
 * bind over the file, or, where it is a link into /run (systemd-resolved),
 * the file the link names, written in the view's /run tmpfs. */
static int jail_host_resolv(int newroot, int tmpfd, const char *text, struct af_error **err)
{
	_cleanup_fd_ int target = -1;
	_cleanup_free_ char *inside = NULL;
	struct af_error *ignore = NULL;
	struct stat st;

	inside = inroot_resolve(newroot, "/etc/resolv.conf", &ignore);
	af_error_free(ignore);
	if (!inside)
		return af_error_set(err, 0, "cannot resolve /etc/resolv.conf in the jail");
	target = inroot_open(newroot, inside, O_PATH | O_NOFOLLOW, 0);
	if (target >= 0 && fstat(target, &st) == 0 && S_ISREG(st.st_mode))
		return chroot_bind_text(tmpfd, target, text, "/etc/resolv.conf", err);
	if (target >= 0 || errno != ENOENT)
		return af_error_set(err, errno, "cannot bind the resolver on '%s' in the jail", inside);
	return inroot_write(newroot, "", inside, text, strlen(text), 0644, 0, 0, err);
}

/* The host's tree read-only on a fresh tmpfs at /tmp (private to this
 * mount namespace), the image and WRITABLE bound read-write at their own
 * paths.  Fds of those were opened before /tmp was covered. */
static int jail_host_view(const struct spawn_opts *o, int rootfd, const int *wfds, const char *resolv,
			  struct af_error **err)
{
	_cleanup_fd_ int newroot = -1;
	_cleanup_fd_ int tmpfd = -1;

	if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m") < 0)
		return af_error_set(err, errno, "cannot mount the jail's root tmpfs");
	newroot = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (newroot < 0)
		return af_error_set(err, errno, "cannot open the jail's root");
	for (size_t i = 0; i < ARRAY_SIZE(jail_host_dirs); i++)
		if (jail_host_dir(newroot, jail_host_dirs[i], err) < 0)
			return -1;
	for (size_t i = 0; i < ARRAY_SIZE(jail_host_tmpfs); i++) {
		_cleanup_fd_ int d = -1;
		if (mkdirat(newroot, jail_host_tmpfs[i], 0755) < 0 ||
		    (d = openat(newroot, jail_host_tmpfs[i], O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
		    mount("tmpfs", fd_path(d).s, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64m") < 0)
			return af_error_set(err, errno, "cannot mount a tmpfs on '/%s' in the jail", jail_host_tmpfs[i]);
	}
	{
		_cleanup_fd_ int etc = openat(newroot, "etc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (etc >= 0 && jail_mask_secrets(etc, "/etc", 0, err) < 0)
			return -1;
	}
	/* The image's mounts keep their flags (nodev on the image itself, not
	 * on the device binds in its /dev). */
	if (jail_bind_dir(newroot, o->chroot + 1, rootfd, 0, err) < 0)
		return -1;
	for (size_t i = 0; o->writable && o->writable[i]; i++)
		if (jail_bind_dir(newroot, o->writable[i] + 1, wfds[i], MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err) < 0)
			return -1;
	if (chroot_mount_api(newroot, "", NULL, NULL, CHROOT_API_PROC_SYS | CHROOT_API_FD_LINKS, err) < 0)
		return -1;
	tmpfd = openat(newroot, "dev", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (resolv && (tmpfd < 0 || jail_host_resolv(newroot, tmpfd, resolv, err) < 0))
		return af_error_wrap(err, "host view");
	return 0;
}

/* pivot_root(".", "."), then the old root, stacked underneath, is detached:
 * nothing in the jail has the host's root as its root or cwd. */
static int jail_pivot(const char *newroot, int newrootfd, struct af_error **err)
{
	if (fchdir(newrootfd) < 0)
		return af_error_set(err, errno, "cannot enter '%s'", newroot);
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return af_error_set(err, errno, "cannot pivot_root into '%s'", newroot);
	if (umount2(".", MNT_DETACH) < 0)
		return af_error_set(err, errno, "cannot detach the old root after pivot_root");
	if (chdir("/") < 0)
		return af_error_set(err, errno, "cannot chdir to the jail's /");
	return 0;
}

/* Validates and opens the paths the jail binds, before anything covers them. */
static int jail_open_paths(const struct spawn_opts *o, int *rootfd, int *wfds, struct af_error **err)
{
	if (!o->chroot || o->chroot[0] != '/')
		return af_error_set(err, EINVAL, "the jail's root must be an absolute path");
	/* A bind of the root on itself: pivot_root wants a mount point, and the
	 * nodev,nosuid set on it below stay this namespace's. */
	if (mount(o->chroot, o->chroot, NULL, MS_BIND | MS_REC, NULL) < 0)
		return af_error_set(err, errno, "cannot bind the image root '%s'", o->chroot);
	*rootfd = open(o->chroot, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*rootfd < 0)
		return af_error_set(err, errno, "cannot open the image root '%s'", o->chroot);
	for (size_t i = 0; o->host_view && o->writable && o->writable[i]; i++) {
		if (o->writable[i][0] != '/')
			return af_error_set(err, EINVAL, "'%s' is not an absolute path", o->writable[i]);
		wfds[i] = open(o->writable[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (wfds[i] < 0)
			return af_error_set(err, errno, "cannot open '%s'", o->writable[i]);
	}
	return 0;
}

/* What the image gets mounted in it (chroot_mount_api()). */
static unsigned jail_target_api(const struct spawn_opts *o)
{
	if (!o->host_view)
		return CHROOT_API_PROC_SYS | CHROOT_API_FD_LINKS;
	return o->bare_target ? 0 : CHROOT_API_PROC_SYS;
}

static int jail_mounts(const struct spawn_opts *o, struct af_error **err)
{
	_cleanup_fd_ int rootfd = -1;
	int wfds[16];
	const char *resolv = o->network ? jail_resolv_conf() : NULL;
	size_t nw = 0;
	int rc = -1;

	while (o->writable && o->writable[nw])
		nw++;
	if (nw > ARRAY_SIZE(wfds))
		BUG("too many writable paths for the jail");
	for (size_t i = 0; i < nw; i++)
		wfds[i] = -1;
	if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		af_error_set(err, errno, "cannot make the jail's mounts private");
		goto out;
	}
	if (jail_open_paths(o, &rootfd, wfds, err) < 0 ||
	    jail_setattr(rootfd, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, err, o->chroot) < 0 ||
	    chroot_mount_api(rootfd, o->chroot, o->devices, o->host_view ? NULL : resolv, jail_target_api(o), err) < 0)
		goto out;
	if (o->host_view) {
		_cleanup_fd_ int nr = -1;
		if (jail_host_view(o, rootfd, wfds, resolv, err) < 0)
			goto out;
		nr = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
		rc = nr < 0 ? af_error_set(err, errno, "cannot open the jail's root") : jail_pivot("/tmp", nr, err);
	} else {
		rc = jail_pivot(o->chroot, rootfd, err);
	}
out:
	for (size_t i = 0; i < nw; i++)
		if (wfds[i] >= 0)
			close(wfds[i]);
	return rc;
}

/* ---- the init ---- */

/* The pid the host's /proc (still mounted at /proc here) gives this process. */
static pid_t jail_host_pid(void)
{
	char buf[32];
	ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return (pid_t)atoi(buf);
}

static int jail_net(const struct spawn_opts *o, int sync_fd, struct af_error **err)
{
	pid_t me;
	char go;

	if (jail_net_setup(err) < 0)
		return -1;
	if (!o->network)
		return 0;
	me = jail_host_pid();
	if (me <= 0 || write(sync_fd, &me, sizeof(me)) != (ssize_t)sizeof(me))
		return af_error_set(err, errno, "cannot hand the jail's network namespace to pasta");
	if (read(sync_fd, &go, 1) != 1)
		return af_error_set(err, 0, "pasta could not be started for the jail (see the stage log)");
	return jail_net_wait(err);
}

static _Noreturn void jail_exec(const struct spawn_opts *o, int report_fd)
{
	exec_command(o, report_fd);
	exec_report_send(report_fd, EXEC_REPORT_EXEC, errno, NULL);
	_exit(127);
}

/* PID 1: reaps everything until the command ends, then exits with its
 * status; the kernel kills whatever else is left in the namespace. */
static _Noreturn void jail_reap(pid_t cmd, int report_fd)
{
	for (;;) {
		int status;
		pid_t w = wait(&status);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			_exit(127);
		if (w != cmd)
			continue;
		if (WIFSIGNALED(status)) {
			exec_report_send(report_fd, EXEC_REPORT_SIGNALED, WTERMSIG(status), NULL);
			_exit(128 + WTERMSIG(status));
		}
		_exit(WEXITSTATUS(status));
	}
}

static _Noreturn void jail_init(const struct spawn_opts *o, int report_fd, int sync_fd)
{
	struct af_error *err = NULL;
	struct pollfd p = { .fd = sync_fd, .events = POLLIN };
	pid_t cmd;

	/* The init is a fork of the engine: its memory and environment are the
	 * engine's.  Not dumpable, /proc/1/environ, mem and fd stay closed to
	 * the jail, which has no CAP_SYS_PTRACE to override that. */
	prctl(PR_SET_DUMPABLE, 0);
	/* The keeper may have died before PDEATHSIG was armed: then its end of
	 * the socket is closed. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP)))
		_exit(127);
	if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP) < 0) {
		af_error_set(&err, errno, "cannot create the jail's namespaces (unshare)");
		jail_fail(report_fd, err);
	}
	if (sethostname(JAIL_HOSTNAME, strlen(JAIL_HOSTNAME)) < 0)
		af_error_set(&err, errno, "cannot set the jail's hostname");
	if (err || jail_net(o, sync_fd, &err) < 0 || jail_mounts(o, &err) < 0 || jail_policy_restrict(&err) < 0)
		jail_fail(report_fd, err);
	close(sync_fd);
	cmd = fork();
	if (cmd < 0) {
		af_error_set(&err, errno, "cannot fork in the jail");
		jail_fail(report_fd, err);
	}
	if (cmd == 0)
		jail_exec(o, report_fd);
	jail_reap(cmd, report_fd);
}

/* ---- the keeper ---- */

static void jail_keeper_pasta(int sync_fd, int report_fd, pid_t *pasta)
{
	struct af_error *err = NULL;
	pid_t host_pid;
	char go = 1;

	if (read(sync_fd, &host_pid, sizeof(host_pid)) != (ssize_t)sizeof(host_pid))
		return; /* the init failed first and said why */
	*pasta = jail_net_pasta_start(host_pid, -1, &err);
	if (*pasta < 0) {
		exec_report_send(report_fd, EXEC_REPORT_SETUP, af_error_errno(err), af_error_msg(err));
		af_error_free(err);
		return;
	}
	if (write(sync_fd, &go, 1) != 1) {
		/* the init is gone; its status says why */
	}
}

/* The init in a new PID namespace, made with fork() (see namespace.c for
 * why not a raw clone), after which the keeper returns to its own PID
 * namespace: pasta, its next child, must not be inside the jail's. */
static pid_t jail_fork_init(const struct spawn_opts *o, int report_fd, const int sv[2], const int out[2],
			    struct af_error **err)
{
	_cleanup_fd_ int own = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	pid_t pid;
	int errsv;

	if (own < 0 || unshare(CLONE_NEWPID) < 0)
		return af_error_set(err, errno, "cannot create the jail's PID namespace");
	pid = fork();
	errsv = errno;
	if (pid == 0) {
		close(sv[0]);
		if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(out[1], STDERR_FILENO) < 0)
			_exit(127);
		close(out[0]);
		close(out[1]);
		jail_init(o, report_fd, sv[1]);
	}
	if (setns(own, CLONE_NEWPID) < 0) {
		errsv = errno;
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		return af_error_set(err, errsv, "cannot return to the keeper's PID namespace (setns)");
	}
	if (pid < 0)
		return af_error_set(err, errsv, "cannot fork the jail's init");
	return pid;
}

/* Copies what the jail writes to the keeper's stdout (the log) until every
 * process in the jail has let go of the pipe. */
static void jail_copy_output(int fd)
{
	char buf[16384];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
			break;
	}
	close(fd);
}

_Noreturn void jail_keeper(const struct spawn_opts *o, int report_fd)
{
	struct af_error *err = NULL;
	int sv[2], out[2];
	pid_t init, pasta = -1;
	int status = 0;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		af_error_set(&err, errno, "cannot create the jail's socket pair");
		jail_fail(report_fd, err);
	}
	/* The jail writes into a pipe the keeper copies to the log: given the
	 * log file itself, a command (with CAP_FOWNER and CAP_CHOWN) could
	 * fchmod or fchown the host's file through its stdout. */
	if (pipe2(out, O_CLOEXEC) < 0) {
		af_error_set(&err, errno, "cannot create the jail's output pipe");
		jail_fail(report_fd, err);
	}
	init = jail_fork_init(o, report_fd, sv, out, &err);
	if (init < 0)
		jail_fail(report_fd, err);
	close(sv[1]);
	close(out[1]);
	if (o->network)
		jail_keeper_pasta(sv[0], report_fd, &pasta);
	jail_copy_output(out[0]);
	while (waitpid(init, &status, 0) < 0 && errno == EINTR)
		;
	/* Open until now: its hang-up tells the init that the keeper died. */
	close(sv[0]);
	if (pasta > 0) {
		kill(pasta, SIGTERM);
		waitpid(pasta, NULL, 0);
	}
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}
