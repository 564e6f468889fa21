/* SPDX-License-Identifier: Apache-2.0 */
/* boot-test's child processes: QEMU in the background, ssh and ssh-keygen
 * to completion.  Unlike sandbox_spawn (sandbox.h), these keep one fd
 * across exec (QEMU's monitor socket), run in the background, report the
 * exit status as data (a check judges it, it is not an error) and stop
 * waiting at once when a signal interrupts the test. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"
#include "boottest_int.h"

volatile sig_atomic_t bt_interrupted;

void bt_on_signal(int sig)
{
	bt_interrupted = sig;
}

void bt_sleep(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	nanosleep(&ts, NULL);  /* a signal cuts it short, which is what we want */
}

pid_t bt_start(char *const argv[], const char *out, char *const *env, int inherit, struct af_error **err)
{
	_cleanup_fd_ int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (ofd < 0)
		return af_error_set(err, errno, "cannot create '%s'", out);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return af_error_set(err, errno, "cannot fork to run '%s'", argv[0]);
	if (pid == 0) {
		setpgid(0, 0);
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int in = open("/dev/null", O_RDONLY);
		if (in < 0 || dup2(in, 0) < 0 || dup2(ofd, 1) < 0 || dup2(ofd, 2) < 0 ||
		    (inherit >= 0 && fcntl(inherit, F_SETFD, 0) < 0))
			_exit(127);
		if (env)
			execvpe(argv[0], argv, env);
		else
			execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	setpgid(pid, pid);  /* also here: no race with a kill(-pid) below */
	return pid;
}

void bt_kill_wait(pid_t pid, int *status)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

int bt_run(const char *dir, char *const argv[], double timeout, struct bt_result *res, struct af_error **err)
{
	_cleanup_free_ char *out = path_join(dir, "cmd.out");
	pid_t pid = bt_start(argv, out, NULL, -1, err);
	if (pid < 0)
		return -1;
	double deadline = now_monotonic() + timeout;
	int st = 0;
	*res = (struct bt_result){ 0 };
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (bt_interrupted || now_monotonic() > deadline) {
			bt_kill_wait(pid, &st);
			res->timed_out = !bt_interrupted;
			break;
		}
		bt_sleep(0.05);
	}
	res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	struct af_error *e = NULL;
	res->output = read_file(out, NULL, &e);
	af_error_free(e);
	if (!res->output)
		res->output = xstrdup("");
	unlink(out);
	if (bt_interrupted) {
		free(res->output);
		res->output = NULL;
		return af_error_set(err, 0, "interrupted by signal %d", (int)bt_interrupted);
	}
	return 0;
}

void bt_reap_all(void)
{
	for (int round = 0; round < 3; round++) {
		_cleanup_dir_ DIR *d = opendir("/proc");
		struct dirent *de;
		pid_t self = getpid();
		while (d && (de = readdir(d))) {
			pid_t pid = (pid_t)atoi(de->d_name);
			if (pid <= 0)
				continue;
			char path[64];
			snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
			_cleanup_free_ char *stat = read_file(path, NULL, NULL);
			const char *rp = stat ? strrchr(stat, ')') : NULL;
			int ppid = 0;
			if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == self)
				kill(pid, SIGKILL);
		}
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		bt_sleep(0.05);
	}
}
