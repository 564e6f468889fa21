/* SPDX-License-Identifier: Apache-2.0 */
/* Running a command, on the host or in the jail (jail.h), with a cleared
 * environment, a deadline and cancellation. */
#ifndef AMIFORGE_SPAWN_H
#define AMIFORGE_SPAWN_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

struct af_error;

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
	/* Host commands only (no .chroot, no .host_view: a jailed command gets
	 * nothing of the host but what the jail gives it): one more fd the
	 * command keeps across exec, as fd number keep_fd_as (0: the same
	 * number; else > 2).  Every other fd above 2 is closed.  0: none. */
	int keep_fd;
	int keep_fd_as;
	/* When *cancel becomes non-zero (a signal handler sets it) the wait
	 * stops within 100ms: the command's process group is killed and the
	 * spawn fails with errnum ECANCELED.  NULL: never. */
	volatile sig_atomic_t *cancel;
};
/* Runs a command and waits.  0 if it exited 0; otherwise -1 + err naming the
 * command and "exited with status N" / "killed by signal S" / "timed out
 * after Ns" (errnum ETIMEDOUT) / "interrupted" (errnum ECANCELED). */
int spawn_run(const struct spawn_opts *o, struct af_error **err);
/* The same, with the command's end as data for callers that judge it:
 * 0 with *status = its exit status, or 128 + the signal that killed it;
 * -1 + err (status untouched) when it could not run, timed out or was
 * cancelled, as spawn_run. */
int spawn_status(const struct spawn_opts *o, int *status, struct af_error **err);
/* Starts a host command in the background (.deadline and .cancel do not
 * apply; .chroot and .host_view are refused) and returns once it has
 * exec'd: its pid, in its own process group and killed when we die, for
 * the caller to wait for (waitpid) or end (spawn_kill); -1 + err
 * naming the command when it could not be started. */
pid_t spawn_start(const struct spawn_opts *o, struct af_error **err);
/* SIGKILL to the process group of PID (from spawn_start) and to
 * PID, then reaps it; *status (if not NULL) gets its wait status. */
void spawn_kill(pid_t pid, int *status);

#endif
