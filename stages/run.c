/* SPDX-License-Identifier: Apache-2.0 */
/* run: a command or a script inside the image, in the jail (jail.h: its own
 * namespaces, /proc, private /dev, /sys read-only, policy-rc.d, no network
 * unless `network: true`), with a cleared environment plus the recipe's
 * `env`. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exec.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define RUN_SHORT 60

static const struct param_spec run_params[] = {
	{ .name = "command", .type = PT_COMMAND,
	  .help = "a command: a string (run with /bin/sh -c) or a list (argv)" },
	{ .name = "script", .type = PT_PATH, .help = "a script file beside the recipe, copied into the image and run" },
	{ .name = "env", .type = PT_MAP, .help = "extra environment variables" },
	{ .name = "network", .type = PT_BOOL,
	  .defval = "false",
	  .help = "give the command a network (user-mode, through pasta; the build host's loopback and "
		  "169.254.0.0/16 stay unreachable); default false: loopback only" },
	{ .name = NULL },
};

static int run_check(const json_t *params, struct af_error **err)
{
	bool has_command = params_get(params, "command") != NULL;
	bool has_script = params_get(params, "script") != NULL;
	if (has_command && has_script)
		return af_error_set(err, 0, "run takes command or script, not both");
	if (!has_command && !has_script)
		return af_error_set(err, 0,
				    "run needs command (a string or a list) or script (a file beside the recipe)");
	return 0;
}

/* The environment: the cleared default, and the map (a map key replaces a
 * default). */
static char **run_build_env(const json_t *map)
{
	char **vars = xcalloc(json_object_size(map) + 1, sizeof(*vars));
	size_t k = 0;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)map, key, v)
		vars[k++] = xasprintf("%s=%s", key, json_string_value(v) ? json_string_value(v) : "");
	char **env = exec_env_new(false, (const char *const *)vars);
	exec_env_free(vars);
	return env;
}

/* A short form of the command for messages: "apt-get install -y foo...". */
static char *run_shorten(const json_t *command, const char *script)
{
	struct strbuf sb = STRBUF_INIT;
	if (script) {
		const char *slash = strrchr(script, '/');
		strbuf_addf(&sb, "script %s", slash ? slash + 1 : script);
	} else if (json_is_string(command)) {
		strbuf_addstr(&sb, json_string_value(command));
	} else {
		size_t i;
		json_t *a;
		json_array_foreach(command, i, a)
			strbuf_addf(&sb, "%s%s", i ? " " : "", json_string_value(a));
	}
	char *s = strbuf_detach(&sb);
	for (char *p = s; *p; p++)
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	if (strlen(s) > RUN_SHORT)
		strcpy(s + RUN_SHORT - 3, "...");
	return s;
}

/* Copies SCRIPT to /tmp/amiforge-run-<random> in the image (0700), through
 * the in-root API: the image's /tmp may be a symlink (resolved inside the
 * image, as the command will see it) or missing (made 01777).  *inside
 * gets the copy's path in the image. */
static int run_copy_script(int rootfd, const char *root, const char *script, char **inside, struct af_error **err)
{
	size_t len = 0;
	_cleanup_free_ char *data = read_file(script, &len, err);
	if (!data)
		return -1;
	_cleanup_fd_ int tmp = inroot_mkdirs(rootfd, root, "/tmp", 01777, err);
	if (tmp < 0)
		return -1;
	_cleanup_free_ char *path = NULL;
	_cleanup_fd_ int fd = inroot_create_unique(rootfd, "/tmp", "amiforge-run-", 0700, &path, err);
	if (fd < 0)
		return -1;
	if (write_all(fd, data, len) < 0 || close(steal_fd(&fd)) < 0) {
		int e = errno;
		_cleanup_error_ struct af_error *ignore = NULL;
		inroot_unlink(rootfd, root, path, &ignore);
		return af_error_set(err, e, "copy script '%s' to '%s' in the image", script, path);
	}
	*inside = steal_pointer(&path);
	return 0;
}

static int run_run(struct stage_ctx *ctx, struct af_error **err)
{
	const json_t *command = params_get(ctx->params, "command");
	const char *script = params_str(ctx->params, "script", NULL);
	_cleanup_free_ char *inside = NULL;
	_cleanup_fd_ int rootfd = -1;
	_cleanup_free_ char *shortcmd = run_shorten(command, script);
	char **env = run_build_env(params_get(ctx->params, "env"));
	const char **argv = NULL;

	if (script) {
		rootfd = inroot_root_open(ctx->root, err);
		if (rootfd < 0 || run_copy_script(rootfd, ctx->root, script, &inside, err) < 0) {
			exec_env_free(env);
			return -1;
		}
		argv = xcalloc(2, sizeof(*argv));
		argv[0] = inside;
	} else if (json_is_string(command)) {
		argv = xcalloc(4, sizeof(*argv));
		argv[0] = "/bin/sh";
		argv[1] = "-c";
		argv[2] = json_string_value(command);
	} else {
		size_t n = json_array_size(command), i;
		json_t *a;
		if (n == 0) {
			exec_env_free(env);
			return af_error_set(err, 0, "run: command is an empty list");
		}
		argv = xcalloc(n + 1, sizeof(*argv));
		json_array_foreach(command, i, a)
			argv[i] = json_string_value(a);
	}
	struct spawn_opts so = {
		.argv = (char *const *)argv,
		.chroot = ctx->root,
		.network = params_bool(ctx->params, "network", false),
		.env = env,
		.out_fd = ctx->log_fd,
		.in_fd = -1,
		.deadline = ctx->deadline,
	};
	log_info("run: %s", shortcmd);
	int r = spawn_run(&so, err);
	if (r < 0)
		af_error_wrap(err, "command '%s'", shortcmd);
	_cleanup_error_ struct af_error *ignore = NULL;
	if (inside && inroot_unlink(rootfd, ctx->root, inside, r == 0 ? err : &ignore) < 0)
		r = -1;
	free(argv);
	exec_env_free(env);
	return r;
}

/* For plan (stage.h): the command on one line, cut short (an argv with
 * its spaces quoted), or the script; never the values of env. */
static char *run_describe(const struct stage_describe *d)
{
	const json_t *cmd = params_get(d->params, "command");
	const char *script = params_str(d->params, "script", NULL);
	size_t n_env = json_object_size(params_get(d->params, "env"));
	struct strbuf sb = STRBUF_INIT, text = STRBUF_INIT;
	for (size_t i = 0; json_is_array(cmd) && i < json_array_size(cmd); i++) {
		const char *arg = json_string_value(json_array_get(cmd, i));
		bool quote = !*arg || strchr(arg, ' ');
		strbuf_addf(&text, "%s%s%s%s", i ? " " : "", quote ? "\"" : "", arg, quote ? "\"" : "");
	}
	if (json_is_string(cmd))
		strbuf_addstr(&text, json_string_value(cmd));
	_cleanup_free_ char *line = strbuf_detach(&text);
	for (char *c = line; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
	/* Cut at 60 bytes, never inside a UTF-8 character: JSON needs it whole. */
	size_t len = strlen(line), cut = len > 60 ? 60 : len;
	while (cut < len && cut && ((unsigned char)line[cut] & 0xc0) == 0x80)
		cut--;
	if (script)
		strbuf_addf(&sb, "run the script %s in the image", strrchr(script, '/') ? strrchr(script, '/') + 1 : script);
	else
		strbuf_addf(&sb, "run '%.*s%s' in the image", (int)cut, line, cut < len ? "..." : "");
	if (n_env) {
		strbuf_addstr(&sb, " with ");
		stage_describe_count(&sb, n_env, "environment variable");
	}
	strbuf_addstr(&sb, params_bool(d->params, "network", false) ? ", with a network" : ", without a network");
	return strbuf_detach(&sb);
}

const struct stage_type stage_run = {
	.name = "run",
	.summary = "run a command or a script inside the image (sandboxed; network only with network: true)",
	.params = run_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT | STAGE_NEEDS_CHROOT | STAGE_NETWORK,
	.default_timeout = 3600,
	.check = run_check,
	.describe = run_describe,
	.run = run_run,
};
