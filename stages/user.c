/* SPDX-License-Identifier: Apache-2.0 */
/* user: the image's admin user, made with the image's own useradd (its
 * /etc/login.defs, skeleton and id ranges), with a locked password: the way
 * in is an ssh key (the ssh stage's prep-instance installs the instance's).
 * sudo rights go in /etc/sudoers.d (0440) and are checked with `visudo -c`
 * in the chroot, so a bad file never reaches an image where sudo would then
 * refuse to run at all. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define USER_DB_MAX (16u << 20)

static const char *const user_sudo_modes[] = { "nopasswd", "password", "none", NULL };

static const struct param_spec user_params[] = {
	{ .name = "name", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "login name" },
	{ .name = "groups", .type = PT_STRINGS, .help = "supplementary groups (created if the image lacks them)" },
	{ .name = "shell", .type = PT_STRING, .help = "login shell (must exist in the image)", .defval = "/bin/bash" },
	{ .name = "sudo", .type = PT_ENUM, .choices = user_sudo_modes,
	  .help = "sudo rights: nopasswd, password (the password is locked: sudo then works only after one is set), none",
	  .defval = "nopasswd" },
	{ .name = "uid", .type = PT_INT, .help = "numeric user id", .defval = "the image's next free id" },
	{ .name = "comment", .type = PT_STRING, .help = "the GECOS field" },
	{ .name = NULL },
};

/* Debian's default NAME_REGEX without the trailing '$' of machine accounts:
 * the name also becomes a file name in /etc/sudoers.d. */
static bool user_name_valid(const char *n)
{
	if (!*n || strlen(n) > 32 || !(islower((unsigned char)*n) || *n == '_'))
		return false;
	for (const char *p = n + 1; *p; p++)
		if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-' && *p != '_')
			return false;
	return true;
}

static int user_check(const json_t *params, struct af_error **err)
{
	const char *name = params_str(params, "name", "");
	if (!user_name_valid(name))
		return af_error_set(err, 0, "user name '%s' is not valid: lower-case letters, digits, '-' and '_', starting with a letter, at most 32",
				    name);
	size_t i;
	json_t *g;
	json_array_foreach(params_get(params, "groups"), i, g)
		if (!user_name_valid(json_string_value(g)))
			return af_error_set(err, 0, "group name '%s' is not valid", json_string_value(g));
	const char *shell = params_str(params, "shell", "/bin/bash");
	if (shell[0] != '/' || strpbrk(shell, ": \t\n"))
		return af_error_set(err, 0, "shell '%s' must be an absolute path without ':' or spaces", shell);
	const char *comment = params_str(params, "comment", "");
	if (strpbrk(comment, ":\n"))
		return af_error_set(err, 0, "comment must not contain ':' or a newline");
	if (params_int(params, "uid", 1000) < 0)
		return af_error_set(err, 0, "uid must not be negative");
	return 0;
}

/* ---- generated text (pure, unit-tested) ---- */

static char *user_sudoers_name(const char *user)
{
	return xasprintf("/etc/sudoers.d/90-amiforge-%s", user);
}

/* NULL for sudo: none. */
static char *user_render_sudoers(const char *user, const char *mode)
{
	if (!strcmp(mode, "none"))
		return NULL;
	return xasprintf("# written by amiforge (user stage)\n%s ALL=(ALL:ALL) %sALL\n", user,
			 strcmp(mode, "nopasswd") ? "" : "NOPASSWD: ");
}

/* The line of NAME in a passwd or group file's TEXT, or NULL.  Borrowed
 * into TEXT, ending at the newline. */
static const char *user_db_find(const char *text, const char *name)
{
	size_t nl = strlen(name);
	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, name, nl) && line[nl] == ':')
			return line;
	return NULL;
}

/* Field N (0-based) of a colon-separated LINE.  Caller frees. */
static char *user_db_field(const char *line, int n)
{
	for (int i = 0; i < n && line; i++) {
		line = strchr(line, ':');
		line = line ? line + 1 : NULL;
	}
	if (!line)
		return xstrdup("");
	return xstrndup(line, strcspn(line, ":\n"));
}

/* ---- run ---- */

static int user_spawn(const struct stage_ctx *ctx, char **argv, struct af_error **err)
{
	struct spawn_opts so = { .argv = argv, .chroot = ctx->root, .out_fd = ctx->log_fd, .in_fd = -1,
				 .deadline = ctx->deadline };
	return spawn_run(&so, err);
}

static char *user_read_db(int rootfd, const char *root, const char *path, struct af_error **err)
{
	return inroot_read(rootfd, root, path, USER_DB_MAX, NULL, err);
}

static int user_make_groups(const struct stage_ctx *ctx, int rootfd, struct af_error **err)
{
	_cleanup_free_ char *groups = user_read_db(rootfd, ctx->root, "/etc/group", err);
	if (!groups)
		return -1;
	size_t i;
	json_t *g;
	json_array_foreach(params_get(ctx->params, "groups"), i, g) {
		const char *name = json_string_value(g);
		if (user_db_find(groups, name))
			continue;
		log_info("creating group %s", name);
		char *argv[] = { "groupadd", "--system", (char *)name, NULL };
		if (user_spawn(ctx, argv, err) < 0)
			return -1;
	}
	return 0;
}

static int user_add_or_modify(const struct stage_ctx *ctx, bool exists, struct af_error **err)
{
	const char *name = params_str(ctx->params, "name", "");
	_cleanup_free_ char *groups = NULL;
	_cleanup_free_ char *uid = NULL;
	const json_t *garr = params_get(ctx->params, "groups");
	if (json_array_size(garr)) {
		struct strbuf sb = STRBUF_INIT;
		size_t i;
		json_t *g;
		json_array_foreach(garr, i, g)
			strbuf_addf(&sb, "%s%s", i ? "," : "", json_string_value(g));
		groups = strbuf_detach(&sb);
	}
	if (params_get(ctx->params, "uid"))
		uid = xasprintf("%lld", (long long)params_int(ctx->params, "uid", 0));
	char *argv[16];
	size_t n = 0;
	argv[n++] = exists ? "usermod" : "useradd";
	if (!exists)
		argv[n++] = "--create-home";
	argv[n++] = "--shell";
	argv[n++] = (char *)params_str(ctx->params, "shell", "/bin/bash");
	if (groups) {
		if (exists)
			argv[n++] = "--append";
		argv[n++] = "--groups";
		argv[n++] = groups;
	}
	if (uid) {
		argv[n++] = "--uid";
		argv[n++] = uid;
	}
	if (params_get(ctx->params, "comment")) {
		argv[n++] = "--comment";
		argv[n++] = (char *)params_str(ctx->params, "comment", "");
	}
	argv[n++] = (char *)name;
	argv[n] = NULL;
	log_info("%s %s", argv[0], name);
	if (user_spawn(ctx, argv, err) < 0)
		return -1;
	char *lock[] = { "usermod", "--lock", (char *)name, NULL };
	return user_spawn(ctx, lock, err);
}

/* The shadow entry's password must start with '!' or '*': no password
 * login, whatever useradd's defaults were. */
static int user_verify_locked(int rootfd, const char *root, const char *name, struct af_error **err)
{
	_cleanup_free_ char *shadow = user_read_db(rootfd, root, "/etc/shadow", err);
	if (!shadow)
		return -1;
	const char *line = user_db_find(shadow, name);
	_cleanup_free_ char *pw = line ? user_db_field(line, 1) : NULL;
	if (!pw || (pw[0] != '!' && pw[0] != '*'))
		return af_error_set(err, 0, "the password of '%s' is not locked in /etc/shadow", name);
	return 0;
}

static int user_sudo(const struct stage_ctx *ctx, int rootfd, const char *name, struct af_error **err)
{
	const char *mode = params_str(ctx->params, "sudo", "nopasswd");
	_cleanup_free_ char *path = user_sudoers_name(name);
	_cleanup_free_ char *text = user_render_sudoers(name, mode);
	if (!text)
		return inroot_unlink(rootfd, ctx->root, path, err) < 0 ? -1 : 0;
	if (!inroot_exists(rootfd, "/usr/bin/sudo"))
		return af_error_set(err, 0, "sudo: %s needs sudo in the image; add sudo to debootstrap include: or a packages stage before this one, or set sudo: none",
				    mode);
	if (inroot_write(rootfd, ctx->root, path, text, strlen(text), 0440, 0, 0, err) < 0)
		return -1;
	char *argv[] = { "visudo", "-c", NULL };
	if (user_spawn(ctx, argv, err) < 0) {
		_cleanup_error_ struct af_error *ignore = NULL;
		inroot_unlink(rootfd, ctx->root, path, &ignore);
		return af_error_wrap(err, "the sudoers files do not check (see the stage log)");
	}
	log_info("sudo: %s for %s in %s", mode, name, path);
	return 0;
}

static int user_run(struct stage_ctx *ctx, struct af_error **err)
{
	const char *name = params_str(ctx->params, "name", "");
	const char *shell = params_str(ctx->params, "shell", "/bin/bash");
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	if (!inroot_exists(rootfd, shell))
		return af_error_set(err, ENOENT, "the shell '%s' is not in the image; install it first or choose another shell:",
				    shell);
	_cleanup_free_ char *passwd = user_read_db(rootfd, ctx->root, "/etc/passwd", err);
	if (!passwd)
		return -1;
	bool exists = user_db_find(passwd, name) != NULL;
	if (user_make_groups(ctx, rootfd, err) < 0 || user_add_or_modify(ctx, exists, err) < 0 ||
	    user_verify_locked(rootfd, ctx->root, name, err) < 0 || user_sudo(ctx, rootfd, name, err) < 0)
		return af_error_wrap(err, "user '%s'", name);
	free(passwd);
	passwd = user_read_db(rootfd, ctx->root, "/etc/passwd", err);
	const char *line = passwd ? user_db_find(passwd, name) : NULL;
	if (!line)
		return af_error_set(err, 0, "user '%s' is not in /etc/passwd after %s", name, exists ? "usermod" : "useradd");
	_cleanup_free_ char *home = user_db_field(line, 5);
	json_object_set_new(ctx->outputs, "user.name", json_string(name));
	json_object_set_new(ctx->outputs, "user.home", json_string(home));
	return 0;
}

/* For plan (stage.h). */
static char *user_describe(const struct stage_describe *d)
{
	const char *name = params_str(d->params, "name", "");
	const char *sudo = params_str(d->params, "sudo", "nopasswd");
	const json_t *groups = params_get(d->params, "groups");
	struct strbuf sb = STRBUF_INIT;
	stage_describe_know(d, "user.name", name);
	strbuf_addf(&sb, "add user %s with a locked password, shell %s, sudo %s", name,
		    params_str(d->params, "shell", "/bin/bash"),
		    !strcmp(sudo, "nopasswd") ? "without a password" : !strcmp(sudo, "password") ? "with a password (once one is set)"
										     : "none");
	if (json_array_size(groups)) {
		strbuf_addstr(&sb, ", groups ");
		stage_describe_list(&sb, groups, 8);
	}
	return strbuf_detach(&sb);
}

static const char *const user_provides[] = { "user.name", "user.home", NULL };

const struct stage_type stage_user = {
	.name = "user",
	.summary = "an admin user with a locked password and sudo rights checked by visudo",
	.params = user_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT | STAGE_NEEDS_CHROOT,
	.provides = user_provides,
	.default_timeout = 300,
	.check = user_check,
	.describe = user_describe,
	.run = user_run,
};
