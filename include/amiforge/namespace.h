/* SPDX-License-Identifier: Apache-2.0 */
/* The sandbox (DESIGN §6).  Privileged operations are this short list:
 * enter a private mount namespace, attach a loop device, mount, prepare a
 * chroot, spawn a command.  Everything is undone by the kernel when the
 * engine dies, even by SIGKILL: mounts live in the engine's private mount
 * namespace, loop devices are attached with LO_FLAGS_AUTOCLEAR and held only
 * by an fd and the mount, children die with PR_SET_PDEATHSIG and their PID
 * namespace. */
/* This module: root, the private mount namespace, isolated children. */
#ifndef AMIFORGE_NAMESPACE_H
#define AMIFORGE_NAMESPACE_H

#include <sys/types.h>

struct af_error;

/* Fails with errnum EPERM and a message saying why root is needed unless
 * the process can attach loop devices, mount and chroot. */
int namespace_require_root(struct af_error **err);

/* unshare(CLONE_NEWNS) and make every mount private, so nothing mounted
 * later propagates to the host and all of it vanishes with the process.
 * 0 or -1 + err. */
int namespace_enter(struct af_error **err);

/* Forks FN(arg) in a new PID + mount namespace as its PID 1, with
 * PR_SET_PDEATHSIG(SIGKILL), stdout/stderr on log_fd.  Returns the child's
 * pid (in the caller's namespace) or -1 + err. */
pid_t namespace_fork_isolated(int (*fn)(void *arg), void *arg, int log_fd, struct af_error **err);

#endif
