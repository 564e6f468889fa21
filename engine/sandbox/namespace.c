/* SPDX-License-Identifier: Apache-2.0 */
/* Privilege check, the engine's private mount namespace, and the isolated
 * (new PID + mount namespace) child each stage runs in. */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/namespace.h"

#define CAP_SYS_ADMIN_BIT 21

/* The effective capability set from /proc/self/status; -1 if unreadable. */
static int cap_sys_admin_effective(void)
{
	_cleanup_file_ FILE *f = fopen("/proc/self/status", "re");
	_cleanup_free_ char *line = NULL;
	size_t n = 0;
	unsigned long long caps;

	if (!f)
		return -1;
	while (getline(&line, &n, f) > 0) {
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			return (caps >> CAP_SYS_ADMIN_BIT) & 1;
	}
	return -1;
}

static int error_eperm(struct af_error **err, const char *msg)
{
	/* errnum set by hand: ": Operation not permitted" would add nothing. */
	af_error_set(err, 0, "%s", msg);
	if (err && *err)
		(*err)->errnum = EPERM;
	return -1;
}

int namespace_require_root(struct af_error **err)
{
	if (geteuid() != 0)
		return error_eperm(err, "amiforge build needs root: it attaches loop devices, mounts the "
					"image and chroots into it; run it with sudo (or as root in CI)");
	if (cap_sys_admin_effective() == 0)
		return error_eperm(err, "amiforge build needs root with CAP_SYS_ADMIN: it attaches loop "
					"devices, mounts the image and chroots into it; in a container, run "
					"it privileged");
	return 0;
}

/* Turns the calling process's mount namespace into a private copy: nothing
 * mounted later propagates back to the host, and the copy dies with its last
 * member. */
static int private_mount_ns(struct af_error **err)
{
	if (unshare(CLONE_NEWNS) < 0)
		return af_error_set(err, errno, "cannot create a private mount namespace (unshare)");
	/* "none": the type is ignored here, but valgrind reads it as a string. */
	if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
		return af_error_set(err, errno, "cannot make the mounts of the new namespace private");
	return 0;
}

int namespace_enter(struct af_error **err)
{
	return private_mount_ns(err);
}

/* PR_SET_PDEATHSIG only fires for a parent death after the call: check that
 * the parent did not die already.  getppid() says 0 from inside a new PID
 * namespace whether the parent lives or not, so read the parent's pid as the
 * host's /proc (still the one mounted at /proc here) reports it. */
static bool parent_is(pid_t parent)
{
	_cleanup_file_ FILE *f = fopen("/proc/self/status", "re");
	_cleanup_free_ char *line = NULL;
	size_t n = 0;
	int ppid;

	if (!f)
		return getppid() == parent;
	while (getline(&line, &n, f) > 0) {
		if (sscanf(line, "PPid: %d", &ppid) == 1)
			return ppid == parent;
	}
	return false;
}

static void reset_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGALRM };
	sigset_t none;

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static _Noreturn void isolated_child(pid_t parent, int (*fn)(void *), void *arg, int log_fd)
{
	struct af_error *err = NULL;
	int rc;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || !parent_is(parent))
		_exit(127);
	reset_signals();
	/* The parent's unflushed stdio buffers must not reach the stage log. */
	__fpurge(stdout);
	__fpurge(stderr);
	if (log_fd >= 0 && (dup2(log_fd, STDOUT_FILENO) < 0 || dup2(log_fd, STDERR_FILENO) < 0))
		_exit(127);
	if (private_mount_ns(&err) < 0) {
		fprintf(stderr, "amiforge: %s\n", af_error_msg(err));
		af_error_free(err);
		_exit(127);
	}
	rc = fn(arg);
	fflush(stdout);
	fflush(stderr);
	_exit(rc);
}

/* A child in a new PID namespace, made with glibc's fork() rather than a raw
 * clone(CLONE_NEWPID) so that fork's bookkeeping (malloc and stdio locks,
 * the cached TID) stays right: unshare(CLONE_NEWPID) only sets where the
 * *next* child goes, and setns() back to our own PID namespace undoes it at
 * once.  The child then unshares its mount namespace itself. */
pid_t namespace_fork_isolated(int (*fn)(void *arg), void *arg, int log_fd, struct af_error **err)
{
	_cleanup_fd_ int own_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	pid_t parent = getpid();
	pid_t pid;
	int errsv;

	if (own_ns < 0)
		return af_error_set(err, errno, "cannot open '/proc/self/ns/pid'");
	if (unshare(CLONE_NEWPID) < 0)
		return af_error_set(err, errno, "cannot create a PID namespace (unshare)");
	pid = fork();
	errsv = errno;
	if (pid == 0)
		isolated_child(parent, fn, arg, log_fd);
	if (setns(own_ns, CLONE_NEWPID) < 0) {
		/* Every later fork would land in the (dying) namespace. */
		errsv = errno;
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		return af_error_set(err, errsv, "cannot return to the engine's PID namespace (setns)");
	}
	if (pid < 0)
		return af_error_set(err, errsv, "cannot fork the isolated stage process");
	return pid;
}
