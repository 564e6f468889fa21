/* SPDX-License-Identifier: Apache-2.0 */
/* Running a command, on the host or in the jail (jail.h), with a cleared
 * environment and a deadline.  The command and everything in its process
 * group die at the deadline; with the engine, through PR_SET_PDEATHSIG; a
 * jailed command also with its PID namespace. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exec.h"
#include "amiforge/jail.h"
#include "amiforge/sandbox.h"
#include "amiforge/util.h"

static _Noreturn void child_fail(int pipefd, int kind, const char *msg)
{
	exec_report_send(pipefd, kind, errno, msg);
	_exit(127);
}

/* stdin/stdout/stderr, moved above 2 first so that in_fd == 1 or
 * out_fd == 0 cannot overwrite each other. */
static int child_stdio(const struct spawn_opts *o)
{
	int in = o->in_fd >= 0 ? fcntl(o->in_fd, F_DUPFD_CLOEXEC, 3)
			       : open("/dev/null", O_RDONLY | O_CLOEXEC);
	int out = o->out_fd >= 0 ? fcntl(o->out_fd, F_DUPFD_CLOEXEC, 3) : -1;

	if (in < 0 || (o->out_fd >= 0 && out < 0))
		return -1;
	if (dup2(in, STDIN_FILENO) < 0)
		return -1;
	if (out >= 0 && (dup2(out, STDOUT_FILENO) < 0 || dup2(out, STDERR_FILENO) < 0))
		return -1;
	return 0;
}

static _Noreturn void spawn_child(const struct spawn_opts *o, pid_t parent, int pipefd)
{
	setsid();  /* its own process group: the deadline kills all of it */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
	if (child_stdio(o) < 0)
		child_fail(pipefd, EXEC_REPORT_SETUP, "cannot set up stdin and stdout");
	if (o->chroot)
		jail_keeper(o, pipefd);
	exec_command(o, pipefd);
	child_fail(pipefd, EXEC_REPORT_EXEC, "");
}

static int pidfd_open_compat(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Waits for PID until DEADLINE (0: forever).  0 reaped (*status set), 1 the
 * deadline passed first, -1 errno. */
static int wait_until(pid_t pid, double deadline, int *status)
{
	_cleanup_fd_ int pidfd = pidfd_open_compat(pid);

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		double left = deadline > 0 ? deadline - now_monotonic() : -1;
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (deadline > 0 && left <= 0)
			return 1;
		if (pidfd >= 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };
			int ms = left < 0 ? -1 : (int)(left * 1000) + 1;
			if (poll(&p, 1, ms) < 0 && errno != EINTR)
				return -1;
		} else {
			/* Before Linux 5.3: no pidfd to sleep on. */
			sleep_ms(left < 0 || left > 0.02 ? 20 : (long)(left * 1000) + 1);
		}
	}
}

static int error_timeout(struct af_error **err, const char *cmd, double secs)
{
	/* errnum set by hand: ": Connection timed out" would only confuse. */
	af_error_set(err, 0, "'%s' timed out after %.*fs", cmd, secs < 10 ? 1 : 0, secs);
	if (err && *err)
		(*err)->errnum = ETIMEDOUT;
	return -1;
}

static int report(const struct spawn_opts *o, int status, int pipefd, struct af_error **err)
{
	struct exec_report r;
	const char *cmd = o->argv[0];
	const char *where = o->chroot ? " in the sandbox" : "";

	if (read(pipefd, &r, sizeof(r)) == (ssize_t)sizeof(r)) {
		r.msg[sizeof(r.msg) - 1] = '\0';
		if (r.kind == EXEC_REPORT_SETUP) {
			/* The jail's message already ends in the cause. */
			af_error_set(err, 0, "cannot run '%s'%s: %s", cmd, where, r.msg);
			if (err && *err)
				(*err)->errnum = r.errnum;
			return -1;
		}
		if (r.kind == EXEC_REPORT_EXEC)
			return af_error_set(err, r.errnum, "cannot run '%s'%s", cmd, where);
		if (r.kind == EXEC_REPORT_SIGNALED)
			return af_error_set(err, 0, "'%s' killed by signal %d (%s)", cmd, r.errnum,
					    strsignal(r.errnum));
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		return af_error_set(err, 0, "'%s' exited with status %d", cmd, WEXITSTATUS(status));
	if (WIFSIGNALED(status))
		return af_error_set(err, 0, "'%s' killed by signal %d (%s)", cmd, WTERMSIG(status),
				    strsignal(WTERMSIG(status)));
	return af_error_set(err, 0, "'%s' ended with wait status %#x", cmd, (unsigned)status);
}

int sandbox_spawn(const struct spawn_opts *o, struct af_error **err)
{
	int pipefd[2];
	pid_t parent = getpid(), pid;
	double start = now_monotonic();
	int status = 0, rc, errsv;

	if (!o->argv || !o->argv[0])
		BUG("sandbox_spawn without a command");
	if (o->deadline > 0 && start >= o->deadline) {
		af_error_set(err, 0, "'%s' not started: the stage's time is up", o->argv[0]);
		if (err && *err)
			(*err)->errnum = ETIMEDOUT;
		return -1;
	}
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return af_error_set(err, errno, "cannot create a pipe to run '%s'", o->argv[0]);
	pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		spawn_child(o, parent, pipefd[1]);
	}
	errsv = errno;
	close(pipefd[1]);
	if (pid < 0) {
		close(pipefd[0]);
		return af_error_set(err, errsv, "cannot fork to run '%s'", o->argv[0]);
	}
	rc = wait_until(pid, o->deadline, &status);
	if (rc != 0) {
		errsv = errno;
		/* The child may not have reached setsid() yet: kill it by pid too. */
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		close(pipefd[0]);
		if (rc < 0)
			return af_error_set(err, errsv, "cannot wait for '%s'", o->argv[0]);
		return error_timeout(err, o->argv[0], o->deadline - start);
	}
	rc = report(o, status, pipefd[0], err);
	close(pipefd[0]);
	return rc;
}
