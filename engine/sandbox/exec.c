/* SPDX-License-Identifier: Apache-2.0 */
/* One exec path for host commands and jailed ones: what the command
 * inherits from the engine is decided here and nowhere else. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/close_range.h>

#include "amiforge/exec.h"
#include "amiforge/mem.h"
#include "amiforge/spawn.h"

extern char **environ;

/* DESIGN §6: nothing of the engine's environment (credentials, proxies, the
 * caller's locale) reaches commands in the chroot. */
static const char *const default_env[] = {
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LANG=C.UTF-8",
	"DEBIAN_FRONTEND=noninteractive",
	"HOME=/root",
	"TERM=dumb",
	NULL,
};

static const char *const proxy_vars[] = {
	"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
};

/* ENV[0..n) holds NAME= already (NAME is the text of VAR up to '='). */
static bool env_has(char **env, size_t n, const char *var)
{
	size_t len = strcspn(var, "=");
	for (size_t i = 0; i < n; i++)
		if (!strncmp(env[i], var, len) && env[i][len] == '=')
			return true;
	return false;
}

char **exec_env_new(bool proxy, const char *const *extra)
{
	size_t n_extra = 0, n = 0;
	while (extra && extra[n_extra])
		n_extra++;
	char **env = xcalloc(ARRAY_SIZE(default_env) + ARRAY_SIZE(proxy_vars) + n_extra + 1, sizeof(*env));
	for (size_t i = 0; i < n_extra; i++)
		if (!env_has(env, n, extra[i]))
			env[n++] = xstrdup(extra[i]);
	for (size_t i = 0; proxy && i < ARRAY_SIZE(proxy_vars); i++)
		if (getenv(proxy_vars[i]) && !env_has(env, n, proxy_vars[i]))
			env[n++] = xasprintf("%s=%s", proxy_vars[i], getenv(proxy_vars[i]));
	for (size_t i = 0; default_env[i]; i++)
		if (!env_has(env, n, default_env[i]))
			env[n++] = xstrdup(default_env[i]);
	env[n] = NULL;
	return env;
}

void exec_env_free(char **env)
{
	for (char **p = env; p && *p; p++)
		free(*p);
	free(env);
}

void exec_report_send(int fd, int kind, int errnum, const char *msg)
{
	struct exec_report r = { .kind = kind, .errnum = errnum };
	snprintf(r.msg, sizeof(r.msg), "%s", msg ? msg : "");
	if (write(fd, &r, sizeof(r)) < 0) {
		/* nobody left to tell */
	}
}

/* Signal dispositions set to SIG_IGN and the signal mask survive exec: a
 * shell pipeline in the chroot must see SIGPIPE as usual. */
static void exec_reset_signals(void)
{
	sigset_t none;

	for (int s = 1; s < NSIG; s++) {
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

int exec_kept_fd(const struct spawn_opts *o)
{
	if (!o->keep_fd)
		return -1;
	return o->keep_fd_as ? o->keep_fd_as : o->keep_fd;
}

/* Nothing of the engine (journal, lock, image fds) leaks into the command
 * but the one fd it is given to keep; the report pipe closes itself on
 * exec. */
static int exec_close_fds(const struct spawn_opts *o, int report_fd)
{
	int kept = exec_kept_fd(o);

	if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (int fd = 3; fd < 1024; fd++)
			if (fd != report_fd && fd != kept)
				close(fd);
	}
	return kept < 0 ? 0 : fcntl(kept, F_SETFD, 0);
}

void exec_command(const struct spawn_opts *o, int report_fd)
{
	exec_reset_signals();
	if (exec_close_fds(o, report_fd) < 0)
		return;
	/* execvpe() would search the engine's PATH; execvp() searches the
	 * command's once environ is replaced. */
	environ = o->env ? (char **)o->env : (char **)default_env;
	execvp(o->argv[0], o->argv);
}
