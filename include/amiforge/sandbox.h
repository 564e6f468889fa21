/* SPDX-License-Identifier: Apache-2.0 */
/* The sandbox (DESIGN §6).  Privileged operations are this short list:
 * enter a private mount namespace, attach a loop device, mount, prepare a
 * chroot, spawn a command.  Everything is undone by the kernel when the
 * engine dies, even by SIGKILL: mounts live in the engine's private mount
 * namespace, loop devices are attached with LO_FLAGS_AUTOCLEAR and held only
 * by an fd and the mount, children die with PR_SET_PDEATHSIG and their PID
 * namespace. */
#ifndef AMIFORGE_SANDBOX_H
#define AMIFORGE_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct af_error;

/* Fails with errnum EPERM and a message saying why root is needed unless
 * the process can attach loop devices, mount and chroot. */
int sandbox_require_root(struct af_error **err);

/* unshare(CLONE_NEWNS) and make every mount private, so nothing mounted
 * later propagates to the host and all of it vanishes with the process.
 * 0 or -1 + err. */
int sandbox_enter(struct af_error **err);

/* A loop device over [offset, offset+sizelimit) of PATH (sizelimit 0: to
 * the end), attached with LOOP_CONFIGURE + LO_FLAGS_AUTOCLEAR: it detaches
 * itself when fd is closed and nothing mounts it. */
struct loopdev {
	int fd;        /* -1 when not attached */
	char *path;    /* "/dev/loopN" */
};
int loop_attach(const char *path, uint64_t offset, uint64_t sizelimit, bool readonly,
		struct loopdev *out, struct af_error **err);
/* Closes the fd (the kernel detaches it once unmounted).  Safe to call
 * twice and on a zeroed struct with fd -1. */
void loop_release(struct loopdev *lo);

/* The image's root filesystem, mounted at target through a loop device. */
struct rootfs {
	struct loopdev loop;
	char *target;
	bool mounted;
};
/* Attaches a loop over the root partition and mounts it at TARGET (created
 * if missing) with libmount.  0 or -1 + err. */
int rootfs_mount(const char *image, uint64_t offset, uint64_t size, const char *fstype,
		 const char *target, struct rootfs *out, struct af_error **err);
/* FITRIM (so freed blocks become holes in the image), syncfs, unmount,
 * release the loop.  0 or -1 + err; always releases what it can. */
int rootfs_umount(struct rootfs *fs, struct af_error **err);

struct spawn_opts {
	char *const *argv;     /* argv[0] looked up in PATH of env */
	/* A jail (jail.h) rooted at this image root, or NULL.  Everything that
	 * executes code from the image or the archive runs jailed. */
	const char *chroot;
	/* A jail whose / is a read-only view of the host's tree (secrets
	 * masked), with .chroot and each of .writable bound read-write at
	 * their own paths: for host tools that drive the image from outside
	 * (mmdebstrap), whose maintainer scripts then chroot into .chroot. */
	bool host_view;
	const char *const *writable;  /* NULL-terminated absolute directories */
	/* host_view: leave the image's /proc and /sys unmounted (debootstrap
	 * extracts base-files over them, and fails on a read-only mount); its
	 * /dev is the jail's all the same. */
	bool bare_target;
	/* NULL-terminated absolute /dev/ paths of block devices the jail may
	 * open (the image's own loop devices, for grub-install). */
	const char *const *devices;
	bool network;          /* user-mode network (pasta); else loopback only */
	char *const *env;      /* NULL: the cleared default environment: PATH,
				  LANG=C.UTF-8, DEBIAN_FRONTEND=noninteractive,
				  HOME=/root, TERM=dumb */
	int out_fd;            /* stdout and stderr go here; -1: inherit */
	int in_fd;             /* stdin; -1: /dev/null */
	double deadline;       /* monotonic seconds, 0 = none: the child and its
				  process group are killed when it passes */
};
/* Runs a command and waits.  0 if it exited 0; otherwise -1 + err naming the
 * command and "exited with status N" / "killed by signal S" / "timed out
 * after Ns" (errnum ETIMEDOUT). */
int sandbox_spawn(const struct spawn_opts *o, struct af_error **err);

/* Forks FN(arg) in a new PID + mount namespace as its PID 1, with
 * PR_SET_PDEATHSIG(SIGKILL), stdout/stderr on log_fd.  Returns the child's
 * pid (in the caller's namespace) or -1 + err. */
pid_t sandbox_fork_isolated(int (*fn)(void *arg), void *arg, int log_fd, struct af_error **err);

#endif
