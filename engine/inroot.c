/* SPDX-License-Identifier: Apache-2.0 */
/* Files inside an image root (see inroot.h).  The image is untrusted input:
 * a package, a `run` stage or a recipe may have planted symlinks that point
 * at the build host's files, so nothing here follows a path with plain
 * open(2). */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/util.h"

#define INROOT_MAX_LINKS 40

static const char *inroot_rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

/* One component at a time, refusing symlinks and "..". */
static int inroot_walk(int rootfd, const char *rel, int flags, mode_t mode)
{
	_cleanup_free_ char *copy = xstrdup(rel);
	char *save = NULL;
	char *comp = strtok_r(copy, "/", &save);
	int cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);

	if (!comp)
		return cur;
	while (cur >= 0 && comp) {
		char *next = strtok_r(NULL, "/", &save);
		int fd = -1, errsv = EXDEV;
		if (strcmp(comp, "..") != 0) {
			fd = next ? openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
				  : openat(cur, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
			errsv = errno;
		}
		close(cur);
		errno = errsv;
		cur = fd;
		comp = next;
	}
	return cur;
}

int inroot_open(int rootfd, const char *path, int flags, mode_t mode)
{
	const char *rel = inroot_rel(path);
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS)
		return inroot_walk(rootfd, rel, flags, mode);
	return fd;
}

bool inroot_exists(int rootfd, const char *path)
{
	int fd = inroot_open(rootfd, path, O_PATH, 0);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* ---- resolving like the booted image would ---- */

struct inroot_stack {
	char **v;
	size_t n;
};

static void inroot_stack_release(struct inroot_stack *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

static char *inroot_stack_path(const struct inroot_stack *s)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < s->n; i++)
		strbuf_addf(&sb, "/%s", s->v[i]);
	if (!s->n)
		strbuf_addstr(&sb, "/");
	return strbuf_detach(&sb);
}

static bool inroot_has_dotdot(const char *path)
{
	for (const char *p = path; (p = strstr(p, "..")); p += 2)
		if ((p == path || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
			return true;
	return false;
}

/* Next component of *rest (advanced past it); NULL at the end. */
static char *inroot_next(const char **rest)
{
	const char *s = *rest;
	while (*s == '/')
		s++;
	if (!*s)
		return NULL;
	size_t len = strcspn(s, "/");
	*rest = s + len;
	return xstrndup(s, len);
}

char *inroot_resolve(int rootfd, const char *path, struct af_error **err)
{
	if (inroot_has_dotdot(path)) {
		af_error_set(err, EXDEV, "'%s' holds '..'; name the destination without it", path);
		return NULL;
	}
	struct inroot_stack st = { 0 };
	_cleanup_free_ char *pending = xstrdup(path);
	_cleanup_free_ char *last_link = NULL;
	const char *rest = pending;
	bool missing = false;
	int links = 0;
	char *comp;

	while ((comp = inroot_next(&rest))) {
		if (!strcmp(comp, ".")) {
			free(comp);
			continue;
		}
		if (!strcmp(comp, "..")) {
			free(comp);
			if (st.n == 0) {
				af_error_set(err, EXDEV, "'%s': the symlink '%s' in the image points outside the image",
					     path, last_link ? last_link : "?");
				inroot_stack_release(&st);
				return NULL;
			}
			free(st.v[--st.n]);
			continue;
		}
		struct stat sb;
		_cleanup_free_ char *dir = inroot_stack_path(&st);
		_cleanup_fd_ int dfd = missing ? -1 : inroot_open(rootfd, dir, O_PATH | O_DIRECTORY, 0);
		if (missing || dfd < 0 || fstatat(dfd, comp, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISLNK(sb.st_mode)) {
			missing = missing || dfd < 0 || fstatat(dfd, comp, &sb, AT_SYMLINK_NOFOLLOW) < 0;
			st.v = xreallocarray(st.v, st.n + 1, sizeof(*st.v));
			st.v[st.n++] = comp;
			continue;
		}
		char target[4096];
		ssize_t tl = readlinkat(dfd, comp, target, sizeof(target) - 1);
		if (tl < 0 || ++links > INROOT_MAX_LINKS) {
			int e = tl < 0 ? errno : ELOOP;
			af_error_set(err, e, "'%s': cannot follow the symlink '%s%s%s' in the image", path,
				     strcmp(dir, "/") ? dir : "", "/", comp);
			free(comp);
			inroot_stack_release(&st);
			return NULL;
		}
		target[tl] = '\0';
		free(last_link);
		last_link = xasprintf("%s/%s", strcmp(dir, "/") ? dir : "", comp);
		free(comp);
		if (target[0] == '/')
			inroot_stack_release(&st);
		char *next = xasprintf("%s/%s", target, rest);
		free(pending);
		pending = next;
		rest = pending;
	}
	char *out = inroot_stack_path(&st);
	inroot_stack_release(&st);
	return out;
}

/* ---- creating and writing ---- */

int inroot_mkdirs(int rootfd, const char *root, const char *dir, mode_t mode, struct af_error **err)
{
	struct strbuf sofar = STRBUF_INIT;
	const char *rest = dir;
	int cur = inroot_open(rootfd, "/", O_PATH | O_DIRECTORY, 0);
	char *comp;

	if (cur < 0)
		return af_error_set(err, errno, "cannot open the image root '%s'", root);
	while ((comp = inroot_next(&rest))) {
		strbuf_addf(&sofar, "/%s", comp);
		int fd = inroot_open(rootfd, sofar.buf, O_PATH | O_DIRECTORY, 0);
		if (fd < 0 && errno == ENOENT) {
			if (mkdirat(cur, comp, mode) < 0 && errno != EEXIST) {
				int e = errno;
				free(comp);
				close(cur);
				af_error_set(err, e, "cannot create '%s%s'", root, sofar.buf);
				strbuf_release(&sofar);
				return -1;
			}
			fd = inroot_open(rootfd, sofar.buf, O_PATH | O_DIRECTORY, 0);
		}
		free(comp);
		if (fd < 0) {
			int e = errno;
			close(cur);
			af_error_set(err, e, "cannot open the directory '%s%s'", root, sofar.buf);
			strbuf_release(&sofar);
			return -1;
		}
		close(cur);
		cur = fd;
	}
	strbuf_release(&sofar);
	return cur;
}

/* "/a/b/c" -> dir "/a/b", base "c"; NULL base when PATH names the root. */
static char *inroot_split(const char *path, char **base)
{
	_cleanup_free_ char *copy = xstrdup(path);
	size_t len = strlen(copy);
	while (len > 0 && copy[len - 1] == '/')
		copy[--len] = '\0';
	char *slash = strrchr(copy, '/');
	*base = slash ? xstrdup(slash + 1) : xstrdup(copy);
	if (!**base) {
		free(*base);
		*base = NULL;
	}
	return slash ? xstrndup(copy, (size_t)(slash - copy)) : xstrdup("/");
}

int inroot_write(int rootfd, const char *root, const char *path, const void *data, size_t len, mode_t mode,
		 uid_t uid, gid_t gid, struct af_error **err)
{
	_cleanup_free_ char *base = NULL;
	_cleanup_free_ char *dir = inroot_split(path, &base);
	if (!base || !strcmp(base, ".") || !strcmp(base, ".."))
		return af_error_set(err, EINVAL, "cannot write '%s': not a file name", path);
	_cleanup_fd_ int dfd = inroot_mkdirs(rootfd, root, dir, 0755, err);
	if (dfd < 0)
		return -1;
	struct stat st;
	/* A symlink here is replaced: following it would write wherever it
	 * points, which in the image may be anywhere. */
	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
	    unlinkat(dfd, base, 0) < 0)
		return af_error_set(err, errno, "cannot replace the symlink '%s%s'", root, path);
	_cleanup_fd_ int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return af_error_set(err, errno, "cannot create '%s%s'", root, path);
	if (write_all(fd, data, len) < 0 || fchown(fd, uid, gid) < 0 || fchmod(fd, mode) < 0)
		return af_error_set(err, errno, "cannot write '%s%s'", root, path);
	if (close(steal_fd(&fd)) < 0)
		return af_error_set(err, errno, "cannot write '%s%s'", root, path);
	return 0;
}

char *inroot_read(int rootfd, const char *root, const char *path, size_t max, size_t *len,
		  struct af_error **err)
{
	_cleanup_fd_ int fd = inroot_open(rootfd, path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
	struct stat st;
	if (fd < 0) {
		af_error_set(err, errno, "cannot open '%s%s'", root, path);
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
		af_error_set(err, S_ISREG(st.st_mode) ? EFBIG : EINVAL, "cannot read '%s%s'", root, path);
		return NULL;
	}
	char *buf = xmalloc((size_t)st.st_size + 1);
	ssize_t n = read_all(fd, buf, (size_t)st.st_size);
	if (n < 0) {
		free(buf);
		af_error_set(err, errno, "cannot read '%s%s'", root, path);
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = (size_t)n;
	return buf;
}

int inroot_unlink(int rootfd, const char *root, const char *path, struct af_error **err)
{
	_cleanup_free_ char *base = NULL;
	_cleanup_free_ char *dir = inroot_split(path, &base);
	if (!base)
		return af_error_set(err, EINVAL, "cannot remove '%s': not a file name", path);
	_cleanup_fd_ int dfd = inroot_open(rootfd, dir, O_PATH | O_DIRECTORY, 0);
	if (dfd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : af_error_set(err, errno, "cannot open '%s%s'", root, dir);
	if (unlinkat(dfd, base, 0) < 0)
		return errno == ENOENT ? 0 : af_error_set(err, errno, "cannot remove '%s%s'", root, path);
	return 1;
}
