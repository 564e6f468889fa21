/* SPDX-License-Identifier: Apache-2.0 */
/* The last steps of every command amiforge runs, in the forked child
 * (spawn.c on the host, the jail's init inside the jail): a clean slate,
 * exec, and what went wrong written to the parent over a report pipe. */
#ifndef AMIFORGE_EXEC_H
#define AMIFORGE_EXEC_H

#include <stdbool.h>

struct spawn_opts;

/* A command's environment (DESIGN §6: nothing of the engine's, which holds
 * credentials): PATH, LANG=C.UTF-8, DEBIAN_FRONTEND=noninteractive,
 * HOME=/root, TERM=dumb; with PROXY the host's http_proxy, https_proxy and
 * no_proxy (either case), for the tools that fetch from the archive; then
 * each "NAME=VALUE" of EXTRA (NULL-terminated, may be NULL), which replaces
 * a variable of the same NAME.  A new NULL-terminated array for
 * spawn_opts.env; exec_env_free() releases it. */
char **exec_env_new(bool proxy, const char *const *extra);
void exec_env_free(char **env);

/* What a child reports over the status pipe (spawn.c reads it). */
enum exec_report_kind {
	EXEC_REPORT_SETUP = 1, /* the child (or the jail) could not be set up: msg says why */
	EXEC_REPORT_EXEC,      /* execvp failed: errnum */
	EXEC_REPORT_SIGNALED,  /* the command was killed by signal errnum */
};
struct exec_report {
	int kind;
	int errnum;
	char msg[480];
};

/* Writes one report to FD (best effort: the reader may be gone). */
void exec_report_send(int fd, int kind, int errnum, const char *msg);

/* The fd number a command keeps across exec (O->keep_fd as
 * O->keep_fd_as, spawn.h), or -1. */
int exec_kept_fd(const struct spawn_opts *o);

/* Default signal dispositions and an empty mask, every fd above 2 closed on
 * exec but exec_kept_fd(O) (REPORT_FD too: it is O_CLOEXEC), the command's
 * environment (O->env or the cleared default), execvp.  Returns only if
 * exec failed (errno set). */
void exec_command(const struct spawn_opts *o, int report_fd);

#endif
