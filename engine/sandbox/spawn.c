/* SPDX-License-Identifier: Apache-2.0 */
/* Running a command, on the host or in the jail (jail.h), with a cleared
 * environment and a deadline, or a host command in the background.  The
 * command and everything in its process group die at the deadline or when
 * the caller cancels; with the engine, through PR_SET_PDEATHSIG; a jailed
 * command also with its PID namespace. */
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
#include "amiforge/spawn.h"
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

/* The kept fd at its number.  The report pipe may sit on that number
 * (both are ours to choose): it moves out of the way first. */
static int child_keep_fd(const struct spawn_opts *o, int *pipefd)
{
	int as = exec_kept_fd(o);

	if (*pipefd == as) {
		int moved = fcntl(*pipefd, F_DUPFD_CLOEXEC, 3);
		if (moved < 0)
			return -1;
		*pipefd = moved;
	}
	return o->keep_fd == as || dup2(o->keep_fd, as) >= 0 ? 0 : -1;
}

static _Noreturn void spawn_child(const struct spawn_opts *o, pid_t parent, int pipefd)
{
	setsid();  /* its own process group: the deadline kills all of it */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
	if (child_stdio(o) < 0)
		child_fail(pipefd, EXEC_REPORT_SETUP, "cannot set up stdin and stdout");
	if (o->keep_fd && child_keep_fd(o, &pipefd) < 0)
		child_fail(pipefd, EXEC_REPORT_SETUP, "cannot pass on the fd it keeps");
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

enum wait_end { WAIT_ERROR = -1, WAIT_REAPED, WAIT_DEADLINE, WAIT_CANCELLED };

/* How long to sleep before looking again: until the deadline, but never
 * past the next look at the cancel flag (a signal that sets it just before
 * poll() would not interrupt it). */
static int wait_ms(double left, const volatile sig_atomic_t *cancel)
{
	int ms = left < 0 ? -1 : (int)(left * 1000) + 1;

	if (cancel && (ms < 0 || ms > 100))
		return 100;
	return ms;
}

/* Waits for PID until DEADLINE (0: forever) or *CANCEL (may be NULL). */
static enum wait_end wait_until(pid_t pid, double deadline, const volatile sig_atomic_t *cancel,
				int *status)
{
	_cleanup_fd_ int pidfd = pidfd_open_compat(pid);

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		double left = deadline > 0 ? deadline - now_monotonic() : -1;
		if (r == pid)
			return WAIT_REAPED;
		if (r < 0 && errno != EINTR)
			return WAIT_ERROR;
		if (cancel && *cancel)
			return WAIT_CANCELLED;
		if (deadline > 0 && left <= 0)
			return WAIT_DEADLINE;
		if (pidfd >= 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };
			if (poll(&p, 1, wait_ms(left, cancel)) < 0 && errno != EINTR)
				return WAIT_ERROR;
		} else {
			/* Before Linux 5.3: no pidfd to sleep on. */
			sleep_ms(left < 0 || left > 0.02 ? 20 : (long)(left * 1000) + 1);
		}
	}
}

/* errnum set by hand: ": Connection timed out" or ": Operation canceled"
 * after the message would only confuse. */
static int error_errnum(struct af_error **err, int errnum)
{
	if (err && *err)
		(*err)->errnum = errnum;
	return -1;
}

static int error_timeout(struct af_error **err, const char *cmd, double secs)
{
	af_error_set(err, 0, "'%s' timed out after %.*fs", cmd, secs < 10 ? 1 : 0, secs);
	return error_errnum(err, ETIMEDOUT);
}

static int error_cancelled(struct af_error **err, const char *cmd)
{
	af_error_set(err, 0, "'%s' stopped: interrupted", cmd);
	return error_errnum(err, ECANCELED);
}

/* What the child reported before it could run the command. */
static int report_failure(const struct spawn_opts *o, const struct exec_report *r,
			  struct af_error **err)
{
	const char *cmd = o->argv[0];
	const char *where = o->chroot ? " in the sandbox" : "";

	if (r->kind == EXEC_REPORT_EXEC)
		return af_error_set(err, r->errnum, "cannot run '%s'%s", cmd, where);
	/* The jail's message already ends in the cause. */
	af_error_set(err, 0, "cannot run '%s'%s: %s", cmd, where, r->msg);
	return error_errnum(err, r->errnum);
}

/* How the command ended: *STATUS_OUT set (if not NULL) or an error for
 * anything but exit 0. */
static int report(const struct spawn_opts *o, int status, int pipefd, int *status_out,
		  struct af_error **err)
{
	struct exec_report r;
	const char *cmd = o->argv[0];
	int sig = 0, code = 0;

	if (read(pipefd, &r, sizeof(r)) == (ssize_t)sizeof(r)) {
		r.msg[sizeof(r.msg) - 1] = '\0';
		if (r.kind == EXEC_REPORT_SETUP || r.kind == EXEC_REPORT_EXEC)
			return report_failure(o, &r, err);
		if (r.kind == EXEC_REPORT_SIGNALED)
			sig = r.errnum;  /* the jail's keeper exits, its command was killed */
	}
	if (!sig && WIFSIGNALED(status))
		sig = WTERMSIG(status);
	else if (!sig && WIFEXITED(status))
		code = WEXITSTATUS(status);
	else if (!sig)
		return af_error_set(err, 0, "'%s' ended with wait status %#x", cmd, (unsigned)status);
	if (status_out) {
		*status_out = sig ? 128 + sig : code;
		return 0;
	}
	if (sig)
		return af_error_set(err, 0, "'%s' killed by signal %d (%s)", cmd, sig, strsignal(sig));
	if (code)
		return af_error_set(err, 0, "'%s' exited with status %d", cmd, code);
	return 0;
}

static void spawn_check(const struct spawn_opts *o)
{
	if (!o->argv || !o->argv[0])
		BUG("spawn_run without a command");
	if (o->keep_fd && (o->keep_fd < 3 || (o->keep_fd_as && o->keep_fd_as < 3)))
		BUG("spawn_run: the fd to keep and its number must be above 2");
	if (o->keep_fd && o->chroot)
		BUG("spawn_run: a jailed command keeps no fd of the host");
}

/* Forks the child; the parent's end of its report pipe goes to *report_fd.
 * pid or -1 + err. */
static pid_t spawn_fork(const struct spawn_opts *o, int *report_fd, struct af_error **err)
{
	int pipefd[2];
	pid_t parent = getpid(), pid;
	int errsv;

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
	*report_fd = pipefd[0];
	return pid;
}

void spawn_kill(pid_t pid, int *status)
{
	int st = 0;

	/* The child may not have reached setsid() yet: kill it by pid too. */
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (status)
		*status = st;
}

int spawn_status(const struct spawn_opts *o, int *status_out, struct af_error **err)
{
	_cleanup_fd_ int report_fd = -1;
	double start = now_monotonic();
	int status = 0, errsv;
	enum wait_end end;
	pid_t pid;

	spawn_check(o);
	if (o->deadline > 0 && start >= o->deadline) {
		af_error_set(err, 0, "'%s' not started: the stage's time is up", o->argv[0]);
		return error_errnum(err, ETIMEDOUT);
	}
	if (o->cancel && *o->cancel)
		return error_cancelled(err, o->argv[0]);
	pid = spawn_fork(o, &report_fd, err);
	if (pid < 0)
		return -1;
	end = wait_until(pid, o->deadline, o->cancel, &status);
	errsv = errno;
	switch (end) {
	case WAIT_REAPED:
		return report(o, status, report_fd, status_out, err);
	case WAIT_ERROR:
		spawn_kill(pid, NULL);
		return af_error_set(err, errsv, "cannot wait for '%s'", o->argv[0]);
	case WAIT_DEADLINE:
		spawn_kill(pid, NULL);
		return error_timeout(err, o->argv[0], o->deadline - start);
	case WAIT_CANCELLED:
		spawn_kill(pid, NULL);
		return error_cancelled(err, o->argv[0]);
	}
	BUG("wait_until returned %d", (int)end);
}

int spawn_run(const struct spawn_opts *o, struct af_error **err)
{
	return spawn_status(o, NULL, err);
}

pid_t spawn_start(const struct spawn_opts *o, struct af_error **err)
{
	_cleanup_fd_ int report_fd = -1;
	struct exec_report r;
	ssize_t got;
	pid_t pid;

	spawn_check(o);
	if (o->chroot || o->deadline > 0)
		BUG("spawn_start: host commands without a deadline only");
	pid = spawn_fork(o, &report_fd, err);
	if (pid < 0)
		return -1;
	/* The report pipe closes on exec: end of file means the command runs. */
	while ((got = read(report_fd, &r, sizeof(r))) < 0 && errno == EINTR)
		;
	if (got != (ssize_t)sizeof(r))
		return pid;
	r.msg[sizeof(r.msg) - 1] = '\0';
	spawn_kill(pid, NULL);
	return report_failure(o, &r, err);
}
