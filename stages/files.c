/* SPDX-License-Identifier: Apache-2.0 */
/* files: copies files and directories from beside the recipe into the image.
 * Sources are PT_PATH parameters, so their content is part of the stage key.
 * `template: true` expands ${VAR} references in a file's content with the
 * recipe's variables at load time (the expanded text is kept in the
 * parameters, so it counts in the key too, and `validate` reports undefined
 * variables).  Every destination is resolved inside the image, as the
 * booted system would resolve it; a destination naming ".." or reached
 * through a symlink that climbs out of the image is refused, and the writes
 * themselves go through openat2(RESOLVE_IN_ROOT), so nothing can land on
 * the build host. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"
#include "amiforge/vars.h"

#define FILES_TEMPLATE_MAX (1u << 20)
#define FILES_DB_MAX (16u << 20)
#define FILES_TEXT_KEY "template_text"

#define FILES_ITEM_PARAMS                                                                                          \
	{ .name = "source", .type = PT_PATH, .help = "a file or directory beside the recipe" },                  \
	{ .name = "destination", .type = PT_STRING,                                                                \
	  .help = "absolute path in the image; a file source into a directory (ending in /) keeps its name" },      \
	{ .name = "mode", .type = PT_STRING, .help = "octal mode of the copied files, e.g. \"0644\"",               \
	  .defval = "the source's" },                                                                              \
	{ .name = "owner", .type = PT_STRING, .help = "user[:group] as the image names them, or numeric ids",      \
	  .defval = "root:root" },                                                                                 \
	{ .name = "template", .type = PT_BOOL, .help = "expand ${VAR} in the file's content ($$ for a literal $)", \
	  .defval = "false" }

static const struct param_spec files_item_params[] = {
	FILES_ITEM_PARAMS,
	{ .name = NULL },
};

static const struct param_spec files_params[] = {
	FILES_ITEM_PARAMS,
	{ .name = "items", .type = PT_LIST, .sub = files_item_params, .help = "several copies, each like the above" },
	{ .name = NULL },
};

/* The copies: the items list, or the stage's own parameters as one item. */
static size_t files_count(const json_t *params)
{
	const json_t *items = params_get(params, "items");
	return items ? json_array_size(items) : 1;
}

static json_t *files_item(const json_t *params, size_t i)
{
	const json_t *items = params_get(params, "items");
	return items ? json_array_get(items, i) : (json_t *)params;
}

static int files_parse_mode(const char *text, mode_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long m = strtoul(text, &end, 8);
	if (!*text || *end || errno || m > 07777)
		return -1;
	*out = (mode_t)m;
	return 0;
}

static int files_check_item(const json_t *item, struct af_error **err)
{
	const char *dest = params_str(item, "destination", NULL);
	mode_t m;
	if (!params_get(item, "source") || !dest)
		return af_error_set(err, 0, "files needs source (beside the recipe) and destination (in the image)");
	if (dest[0] != '/')
		return af_error_set(err, 0, "destination '%s' must be an absolute path in the image", dest);
	for (const char *p = dest; (p = strstr(p, "..")); p += 2)
		if (p[-1] == '/' && (p[2] == '\0' || p[2] == '/'))
			return af_error_set(err, 0, "destination '%s' holds '..': it must name a place inside the image directly",
					    dest);
	const char *mode = params_str(item, "mode", NULL);
	if (mode && files_parse_mode(mode, &m) < 0)
		return af_error_set(err, 0, "mode '%s' is not an octal mode like \"0644\"", mode);
	const char *owner = params_str(item, "owner", "root");
	if (!*owner || strpbrk(owner, " \t\n/") || owner[0] == ':')
		return af_error_set(err, 0, "owner '%s' is not user or user:group", owner);
	return 0;
}

static int files_check(const json_t *params, struct af_error **err)
{
	const json_t *items = params_get(params, "items");
	bool single = params_get(params, "source") || params_get(params, "destination") ||
		      params_get(params, "mode") || params_get(params, "owner") || params_get(params, "template");
	if (items && single)
		return af_error_set(err, 0, "files takes source/destination or items, not both");
	if (items && !json_array_size(items))
		return af_error_set(err, 0, "files: items is empty");
	for (size_t i = 0; i < files_count(params); i++)
		if (files_check_item(files_item(params, i), err) < 0)
			return items ? af_error_wrap(err, "items[%zu]", i) : -1;
	return 0;
}

/* ---- templates, at load time ---- */

static void files_report(void *data, const char *msg)
{
	struct strbuf *sb = data;
	strbuf_addf(sb, "%s%s", sb->len ? "; " : "", msg);
}

static int files_expand_item(json_t *item, const struct vars *vars, struct af_error **err)
{
	const char *src = params_str(item, "source", "");
	struct stat st;
	if (stat(src, &st) < 0 || !S_ISREG(st.st_mode))
		return af_error_set(err, 0, "template: true needs a file source; '%s' is not a regular file", src);
	if ((size_t)st.st_size > FILES_TEMPLATE_MAX)
		return af_error_set(err, 0, "template '%s' is larger than 1 MiB", src);
	size_t len = 0;
	_cleanup_free_ char *text = read_file(src, &len, err);
	if (!text)
		return -1;
	if (strlen(text) != len)
		return af_error_set(err, 0, "template '%s' is not text (it holds a NUL byte)", src);
	struct strbuf problems = STRBUF_INIT;
	_cleanup_free_ char *out = vars_expand(vars, text, files_report, &problems);
	if (!out) {
		af_error_set(err, 0, "template '%s': %s", src, problems.buf ? problems.buf : "cannot expand");
		strbuf_release(&problems);
		return -1;
	}
	strbuf_release(&problems);
	json_t *s = json_string(out);
	if (!s)
		return af_error_set(err, 0, "template '%s' is not UTF-8 text", src);
	json_object_set_new(item, FILES_TEXT_KEY, s);
	return 0;
}

static int files_expand(json_t *params, const struct vars *vars, struct af_error **err)
{
	for (size_t i = 0; i < files_count(params); i++) {
		json_t *item = files_item(params, i);
		if (params_bool(item, "template", false) && files_expand_item(item, vars, err) < 0)
			return -1;
	}
	return 0;
}

/* ---- owners, from the image's own databases ---- */

/* The id of NAME (a name or digits) in the image's passwd or group TEXT. */
static int files_lookup_id(const char *text, const char *name, unsigned *out)
{
	char *end = NULL;
	unsigned long v = strtoul(name, &end, 10);
	if (*name && !*end) {
		*out = (unsigned)v;
		return 0;
	}
	size_t nl = strlen(name);
	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, name, nl) || line[nl] != ':')
			continue;
		const char *f = strchr(line + nl + 1, ':');
		if (!f)
			return -1;
		*out = (unsigned)strtoul(f + 1, NULL, 10);
		return 0;
	}
	return -1;
}

static int files_owner(int rootfd, const char *root, const char *owner, uid_t *uid, gid_t *gid,
		       struct af_error **err)
{
	_cleanup_free_ char *user = xstrndup(owner, strcspn(owner, ":"));
	const char *colon = strchr(owner, ':');
	unsigned u, g;
	/* Numeric ids need no database: an image without /etc/passwd yet
	 * (before debootstrap, or none at all) takes "0:0". */
	if (colon && files_lookup_id(NULL, user, &u) == 0 && files_lookup_id(NULL, colon + 1, &g) == 0) {
		*uid = u;
		*gid = g;
		return 0;
	}
	_cleanup_free_ char *passwd = inroot_read(rootfd, root, "/etc/passwd", FILES_DB_MAX, NULL, err);
	_cleanup_free_ char *group = passwd ? inroot_read(rootfd, root, "/etc/group", FILES_DB_MAX, NULL, err) : NULL;
	if (!group)
		return -1;
	if (files_lookup_id(passwd, user, &u) < 0)
		return af_error_set(err, 0, "owner '%s': no user '%s' in the image's /etc/passwd", owner, user);
	if (colon && colon[1]) {
		if (files_lookup_id(group, colon + 1, &g) < 0)
			return af_error_set(err, 0, "owner '%s': no group '%s' in the image's /etc/group", owner, colon + 1);
	} else {
		/* The user's primary group, as chown user: would. */
		const char *line = NULL;
		size_t nl = strlen(user);
		for (const char *l = passwd; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
			if (!strncmp(l, user, nl) && l[nl] == ':')
				line = l;
		const char *f = line;
		for (int k = 0; k < 3 && f; k++)
			f = strchr(f, ':') ? strchr(f, ':') + 1 : NULL;
		g = f ? (unsigned)strtoul(f, NULL, 10) : u;
	}
	*uid = u;
	*gid = g;
	return 0;
}

/* ---- copying ---- */

struct files_copy {
	int rootfd;
	const char *root;
	uid_t uid;
	gid_t gid;
	bool has_mode;
	mode_t mode;
	size_t files;
};

static int files_set_dir_attrs(struct files_copy *c, const char *dest, mode_t mode, struct af_error **err)
{
	_cleanup_fd_ int fd = inroot_open_dir(c->rootfd, dest, err);
	if (fd < 0)
		return -1;
	/* chown before chmod: chown clears the set-id bits. */
	if (fchown(fd, c->uid, c->gid) < 0 || fchmod(fd, mode) < 0)
		return af_error_set(err, errno, "cannot set the owner and mode of '%s' in the image", dest);
	return 0;
}

static int files_copy_file(struct files_copy *c, const char *src, const char *dest, const char *text,
			   mode_t src_mode, struct af_error **err)
{
	size_t len = 0;
	_cleanup_free_ char *data = text ? NULL : read_file(src, &len, err);
	if (!text && !data)
		return -1;
	if (text)
		len = strlen(text);
	mode_t mode = c->has_mode ? c->mode : (src_mode & 07777);
	if (inroot_write(c->rootfd, c->root, dest, text ? text : data, len, mode, c->uid, c->gid, err) < 0)
		return -1;
	c->files++;
	return 0;
}

static int files_copy_link(struct files_copy *c, const char *src, const char *dest, struct af_error **err)
{
	char target[4096];
	ssize_t n = readlink(src, target, sizeof(target) - 1);
	if (n < 0)
		return af_error_set(err, errno, "cannot read the symlink '%s'", src);
	target[n] = '\0';
	_cleanup_free_ char *base = NULL;
	_cleanup_fd_ int dfd = inroot_parent(c->rootfd, c->root, dest, true, &base, err);
	if (dfd < 0 || inroot_symlinkat(target, dfd, base, dest, c->uid, c->gid, err) < 0)
		return -1;
	c->files++;
	return 0;
}

static int files_copy_tree(struct files_copy *c, const char *src, const char *dest, mode_t mode,
			   struct af_error **err)
{
	_cleanup_fd_ int dfd = inroot_mkdirs(c->rootfd, c->root, dest, 0755, err);
	if (dfd < 0 || files_set_dir_attrs(c, dest, mode & 07777, err) < 0)
		return -1;
	_cleanup_dir_ DIR *d = opendir(src);
	if (!d)
		return af_error_set(err, errno, "cannot read the directory '%s'", src);
	for (struct dirent *de; (de = readdir(d));) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		_cleanup_free_ char *s = path_join(src, de->d_name);
		_cleanup_free_ char *t = path_join(dest, de->d_name);
		struct stat st;
		if (lstat(s, &st) < 0)
			return af_error_set(err, errno, "cannot stat '%s'", s);
		int r = 0;
		if (S_ISDIR(st.st_mode))
			r = files_copy_tree(c, s, t, st.st_mode, err);
		else if (S_ISREG(st.st_mode))
			r = files_copy_file(c, s, t, NULL, st.st_mode, err);
		else if (S_ISLNK(st.st_mode))
			r = files_copy_link(c, s, t, err);
		else
			log_warn("skipping '%s': not a file, directory or symlink", s);
		if (r < 0)
			return -1;
	}
	return 0;
}

static int files_copy_item(int rootfd, const char *root, const json_t *item, size_t *count, struct af_error **err)
{
	const char *src = params_str(item, "source", "");
	const char *dest = params_str(item, "destination", "");
	const char *mode_text = params_str(item, "mode", NULL);
	const char *owner = params_str(item, "owner", "root:root");
	struct files_copy c = { .rootfd = rootfd, .root = root, .has_mode = mode_text != NULL };
	if (mode_text && files_parse_mode(mode_text, &c.mode) < 0)
		return af_error_set(err, 0, "mode '%s' is not octal", mode_text);
	if (files_owner(rootfd, root, owner, &c.uid, &c.gid, err) < 0)
		return -1;
	_cleanup_free_ char *resolved = inroot_resolve(rootfd, dest, err);
	if (!resolved)
		return af_error_wrap(err, "destination");
	struct stat st, dst;
	if (stat(src, &st) < 0)
		return af_error_set(err, errno, "source '%s'", src);
	int r;
	if (S_ISDIR(st.st_mode)) {
		r = files_copy_tree(&c, src, resolved, 0755, err);
	} else {
		_cleanup_fd_ int dfd = inroot_open(rootfd, resolved, O_PATH, 0);
		bool into_dir = str_has_suffix(dest, "/") || (dfd >= 0 && fstat(dfd, &dst) == 0 && S_ISDIR(dst.st_mode));
		const char *base = strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
		_cleanup_free_ char *target = into_dir ? path_join(resolved, base) : xstrdup(resolved);
		r = files_copy_file(&c, src, target, params_str(item, FILES_TEXT_KEY, NULL), st.st_mode, err);
	}
	if (r < 0)
		return -1;
	log_info("copied %s to %s (%zu file%s, owner %s%s%s)", src, dest, c.files, c.files == 1 ? "" : "s", owner,
		 mode_text ? ", mode " : "", mode_text ? mode_text : "");
	*count += c.files;
	return 0;
}

static int files_run(struct stage_ctx *ctx, struct af_error **err)
{
	_cleanup_fd_ int rootfd = inroot_root_open(ctx->root, err);
	if (rootfd < 0)
		return -1;
	size_t count = 0;
	for (size_t i = 0; i < files_count(ctx->params); i++) {
		const json_t *item = files_item(ctx->params, i);
		if (files_copy_item(rootfd, ctx->root, item, &count, err) < 0)
			return af_error_wrap(err, "files: %s", params_str(item, "destination", ""));
	}
	json_object_set_new(ctx->outputs, "files.count", json_integer((json_int_t)count));
	return 0;
}

/* For plan (stage.h). */
static char *files_describe(const struct stage_describe *d)
{
	size_t n = files_count(d->params);
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "copy into the image: ");
	for (size_t i = 0; i < n && i < 4; i++) {
		const json_t *item = files_item(d->params, i);
		strbuf_addf(&sb, "%s%s%s", i ? ", " : "", params_str(item, "destination", "?"),
			    params_bool(item, "template", false) ? " (template)" : "");
	}
	if (n > 4)
		strbuf_addf(&sb, " and %zu more", n - 4);
	return strbuf_detach(&sb);
}

static const char *const files_provides[] = { "files.count", NULL };

const struct stage_type stage_files = {
	.name = "files",
	.summary = "copy files and directories from beside the recipe into the image (mode, owner, templates)",
	.params = files_params,
	.flags = STAGE_NEEDS_IMAGE | STAGE_NEEDS_MOUNT,
	.provides = files_provides,
	.default_timeout = 600,
	.check = files_check,
	.expand = files_expand,
	.describe = files_describe,
	.run = files_run,
};
