/* SPDX-License-Identifier: Apache-2.0 */
/* Files inside an image root (see inroot.h).  The image is untrusted input:
 * a package, a `run` stage or a recipe may have planted symlinks that point
 * at the build host's files, device nodes, FIFOs or hard links, so nothing
 * here follows a path with plain open(2), writes into an existing file or
 * opens what is not a regular file or a directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/util.h"

#define INROOT_MAX_LINKS 40
#define INROOT_TMP_TRIES 16
#define INROOT_TMP_PREFIX ".amiforge-"

/* PATH without its leading slashes ("" for the root). */
static const char *inroot_trim(const char *path)
{
	while (*path == '/')
		path++;
	return path;
}

/* PATH relative to the root, for the *at calls ("." for the root). */
static const char *inroot_rel(const char *path)
{
	const char *rel = inroot_trim(path);
	return *rel ? rel : ".";
}

/* ---- messages ---- */

static int inroot_fail(struct af_error **err, int errnum, const char *what, const char *path)
{
	return af_error_set(err, errnum, "%s '/%s' in the image", what, inroot_trim(path));
}

/* An error whose cause is ERRNUM but whose message carries no strerror. */
static int inroot_fail_quiet(struct af_error **err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int inroot_fail_quiet(struct af_error **err, int errnum, const char *fmt, ...)
{
	bool fresh = err && !*err;
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	af_error_set(err, 0, "%s", msg);
	if (fresh)
		(*err)->errnum = errnum;
	return -1;
}

const char *inroot_type_name(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG:
		return "a regular file";
	case S_IFDIR:
		return "a directory";
	case S_IFLNK:
		return "a symbolic link";
	case S_IFIFO:
		return "a FIFO";
	case S_IFSOCK:
		return "a socket";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	default:
		return "a file of unknown type";
	}
}

/* "'/p' in the image is a FIFO, not WANT; ..." with errnum ELOOP for a
 * symlink, ENOTDIR when a directory is wanted, EISDIR for a directory, else
 * EINVAL. */
static int inroot_wrong_type(struct af_error **err, const char *path, mode_t mode, const char *want)
{
	bool want_dir = !strcmp(want, "a directory");
	int e = S_ISLNK(mode) ? ELOOP : want_dir ? ENOTDIR : S_ISDIR(mode) ? EISDIR : EINVAL;
	return inroot_fail_quiet(err, e, "'/%s' in the image is %s, not %s; remove it or fix the stage that made it",
				 inroot_trim(path), inroot_type_name(mode), want);
}

/* ---- resolution ---- */

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

/* openat2 inside the root with RESOLVE; the walk where openat2 is missing
 * refuses every symlink, which is stricter than either. */
static int inroot_openat2(int rootfd, const char *path, int flags, mode_t mode, uint64_t resolve)
{
	const char *rel = inroot_rel(path);
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve,
	};
	int fd = (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS)
		return inroot_walk(rootfd, rel, flags, mode);
	return fd;
}

int inroot_open(int rootfd, const char *path, int flags, mode_t mode)
{
	return inroot_openat2(rootfd, path, flags, mode, 0);
}

int inroot_open_nolinks(int rootfd, const char *path, int flags)
{
	return inroot_openat2(rootfd, path, flags, 0, RESOLVE_NO_SYMLINKS);
}

int inroot_root_open(const char *root, struct af_error **err)
{
	/* The mount point itself is the engine's own directory, not the
	 * image's: the one path opened without resolving inside the root. */
	int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return af_error_set(err, errno, "cannot open the image root '%s'", root);
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

int inroot_lstat(int rootfd, const char *path, struct stat *st)
{
	_cleanup_fd_ int fd = inroot_open(rootfd, path, O_PATH | O_NOFOLLOW, 0);
	if (fd < 0)
		return -1;
	return fstat(fd, st);
}

/* The error for directory PATH that failed to open with ERRNUM: what is in
 * its place when that is not a directory. */
static int inroot_dir_error(int rootfd, const char *path, int errnum, struct af_error **err)
{
	struct stat st;
	if ((errnum == ENOTDIR || errnum == ELOOP) && inroot_lstat(rootfd, path, &st) == 0 && !S_ISDIR(st.st_mode))
		return inroot_wrong_type(err, path, st.st_mode, "a directory");
	return inroot_fail(err, errnum, "cannot open the directory", path);
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

/* ---- directories ---- */

/* One step of inroot_mkdirs: COMP in CUR (the resolved directory of
 * SOFAR's parent), SOFAR the image path so far.  Returns an O_PATH fd of
 * SOFAR resolved in the image, or -1 + err. */
static int inroot_mkdir_step(int rootfd, int cur, const char *comp, const char *sofar, mode_t mode,
			     struct af_error **err)
{
	int fd = inroot_open(rootfd, sofar, O_PATH | O_DIRECTORY, 0);
	if (fd >= 0)
		return fd;
	if (errno != ENOENT)
		return inroot_dir_error(rootfd, sofar, errno, err);
	if (mkdirat(cur, comp, mode & 0777) == 0) {
		/* mkdir honours the umask and drops the sticky bit on some
		 * filesystems: set the mode exactly on what was just made. */
		_cleanup_fd_ int made = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (made < 0 || fchmod(made, mode & 07777) < 0)
			return inroot_fail(err, errno, "cannot set the mode of", sofar);
	} else if (errno != EEXIST) {
		return inroot_fail(err, errno, "cannot create the directory", sofar);
	}
	fd = inroot_open(rootfd, sofar, O_PATH | O_DIRECTORY, 0);
	struct stat st;
	if (fd < 0 && errno == ENOENT && inroot_lstat(rootfd, sofar, &st) == 0 && S_ISLNK(st.st_mode))
		return inroot_fail_quiet(err, ENOENT,
					 "'/%s' in the image is a symbolic link to a directory that does not exist in the image; create its target or remove it",
					 inroot_trim(sofar));
	if (fd < 0)
		return inroot_dir_error(rootfd, sofar, errno, err);
	return fd;
}

int inroot_mkdirs(int rootfd, const char *root, const char *dir, mode_t mode, struct af_error **err)
{
	struct strbuf sofar = STRBUF_INIT;
	const char *rest = dir;
	int cur = inroot_open(rootfd, "/", O_PATH | O_DIRECTORY, 0);
	char *comp;

	if (cur < 0)
		return af_error_set(err, errno, "cannot open the image root '%s'", root);
	while (cur >= 0 && (comp = inroot_next(&rest))) {
		strbuf_addf(&sofar, "/%s", comp);
		int next = inroot_mkdir_step(rootfd, cur, comp, sofar.buf, mode, err);
		free(comp);
		close(cur);
		cur = next;
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

/* A name the *at calls may take below a directory fd: never the directory
 * itself or its parent (which, at the root, is the host). */
static bool inroot_name_ok(const char *name)
{
	return name && *name && strcmp(name, ".") && strcmp(name, "..") && !strchr(name, '/');
}

int inroot_parent(int rootfd, const char *root, const char *path, bool create, char **base,
		  struct af_error **err)
{
	char *b = NULL;
	_cleanup_free_ char *dir = inroot_split(path, &b);
	if (!inroot_name_ok(b)) {
		free(b);
		return af_error_set(err, EINVAL, "'%s' does not name a file in the image", path);
	}
	int dfd = create ? inroot_mkdirs(rootfd, root, dir, 0755, err) : inroot_open(rootfd, dir, O_PATH | O_DIRECTORY, 0);
	if (dfd < 0 && !create)
		inroot_dir_error(rootfd, dir, errno, err);
	if (dfd < 0) {
		free(b);
		return -1;
	}
	*base = b;
	return dfd;
}

int inroot_open_dir(int rootfd, const char *path, struct af_error **err)
{
	int fd = inroot_open(rootfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
	if (fd < 0)
		return inroot_dir_error(rootfd, path, errno, err);
	return fd;
}

int inroot_mkdirat(int dfd, const char *name, const char *shown, mode_t mode, uid_t uid, gid_t gid,
		   struct af_error **err)
{
	struct stat st;
	if (!inroot_name_ok(name))
		return af_error_set(err, EINVAL, "'%s' does not name a directory in the image", shown);
	if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST)
		return inroot_fail(err, errno, "cannot create the directory", shown);
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
			return inroot_wrong_type(err, shown, st.st_mode, "a directory");
		return inroot_fail(err, e, "cannot open the directory", shown);
	}
	/* chown before chmod: chown clears the set-id bits. */
	if (fchown(fd, uid, gid) < 0 || fchmod(fd, mode & 07777) < 0) {
		int e = errno;
		close(fd);
		return inroot_fail(err, e, "cannot set the owner and mode of", shown);
	}
	return fd;
}

/* ---- reading ---- */

int inroot_open_file(int rootfd, const char *path, struct af_error **err)
{
	struct stat st, st2;
	/* Looked at through O_PATH first: a device node is never opened (its
	 * driver never runs), a FIFO never waits for a writer. */
	_cleanup_fd_ int pfd = inroot_open(rootfd, path, O_PATH | O_NOFOLLOW, 0);
	if (pfd < 0 || fstat(pfd, &st) < 0)
		return inroot_fail(err, errno, "cannot open", path);
	if (!S_ISREG(st.st_mode))
		return inroot_wrong_type(err, path, st.st_mode, "a regular file");
	int fd = inroot_open(rootfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0);
	if (fd < 0 || fstat(fd, &st2) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return inroot_fail(err, e, "cannot open", path);
	}
	if (st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
		close(fd);
		return inroot_fail_quiet(err, EAGAIN, "'/%s' in the image changed while it was opened; is a process of the build still running?",
					 inroot_trim(path));
	}
	return fd;
}

char *inroot_read(int rootfd, const char *root, const char *path, size_t max, size_t *len,
		  struct af_error **err)
{
	_cleanup_fd_ int fd = inroot_open_file(rootfd, path, err);
	struct stat st;
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0) {
		inroot_fail(err, errno, "cannot read", path);
		return NULL;
	}
	if ((uint64_t)st.st_size > max) {
		inroot_fail_quiet(err, EFBIG, "'/%s' in the image holds %lld bytes, more than the %zu expected there",
				  inroot_trim(path), (long long)st.st_size, max);
		return NULL;
	}
	char *buf = xmalloc((size_t)st.st_size + 1);
	ssize_t n = read_all(fd, buf, (size_t)st.st_size);
	if (n < 0) {
		free(buf);
		inroot_fail(err, errno, "cannot read", path);
		return NULL;
	}
	buf[n] = '\0';
	if (len)
		*len = (size_t)n;
	return buf;
}

/* ---- creating: a random name, then rename over the final one ---- */

/* PREFIX + 16 random hex digits.  getrandom, not the PID or the time: in
 * a PID namespace the PID is predictable and a planted name would win. */
static void inroot_random_name(char *out, size_t size, const char *prefix)
{
	uint64_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		BUG("getrandom: %s", strerror(errno));
	snprintf(out, size, "%s%016llx", prefix, (unsigned long long)r);
}

/* What to make under the random name. */
struct inroot_new {
	const void *data;   /* file content */
	size_t len;
	mode_t mode;        /* type (nodes) and permission bits */
	dev_t dev;          /* nodes */
	const char *target; /* symlinks */
	uid_t uid;
	gid_t gid;
};

/* Each maker creates TMP in DFD exclusively (EEXIST if the name is taken),
 * or returns -1 with errno and leaves nothing behind. */
typedef int (*inroot_maker)(int dfd, const char *tmp, const struct inroot_new *n);

static int inroot_undo(int dfd, const char *tmp)
{
	int errsv = errno;
	unlinkat(dfd, tmp, 0);
	errno = errsv;
	return -1;
}

static int inroot_make_file(int dfd, const char *tmp, const struct inroot_new *n)
{
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	/* chown before chmod: chown clears the set-id bits. */
	if (write_all(fd, n->data, n->len) < 0 || fchown(fd, n->uid, n->gid) < 0 || fchmod(fd, n->mode & 07777) < 0) {
		cleanup_closep(&fd);
		return inroot_undo(dfd, tmp);
	}
	if (close(fd) < 0)
		return inroot_undo(dfd, tmp);
	return 0;
}

static int inroot_make_node(int dfd, const char *tmp, const struct inroot_new *n)
{
	if (mknodat(dfd, tmp, n->mode & (S_IFMT | 0777), n->dev) < 0)
		return -1;
	/* mknod honours the umask: the mode is set again, exactly. */
	if (fchownat(dfd, tmp, n->uid, n->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fchmodat(dfd, tmp, n->mode & 07777, AT_SYMLINK_NOFOLLOW) < 0)
		return inroot_undo(dfd, tmp);
	return 0;
}

static int inroot_make_link(int dfd, const char *tmp, const struct inroot_new *n)
{
	if (symlinkat(n->target, dfd, tmp) < 0)
		return -1;
	if (fchownat(dfd, tmp, n->uid, n->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return inroot_undo(dfd, tmp);
	return 0;
}

/* Makes N under a random name in DFD, then renames it over NAME (SHOWN: its
 * image path), which may hold anything but a directory.  WANT names the
 * kind for messages.  0 or -1 + err. */
static int inroot_replace(int dfd, const char *name, const char *shown, const char *want, inroot_maker make,
			  const struct inroot_new *n, struct af_error **err)
{
	char tmp[64];
	int r = -1;
	if (!inroot_name_ok(name))
		return af_error_set(err, EINVAL, "'%s' does not name a file in the image", shown);
	for (int i = 0; i < INROOT_TMP_TRIES && r < 0; i++) {
		inroot_random_name(tmp, sizeof(tmp), INROOT_TMP_PREFIX);
		r = make(dfd, tmp, n);
		if (r < 0 && errno != EEXIST)
			break;
	}
	if (r < 0)
		return inroot_fail(err, errno, "cannot create", shown);
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
		unlinkat(dfd, tmp, 0);
		return inroot_wrong_type(err, shown, st.st_mode, want);
	}
	if (renameat(dfd, tmp, dfd, name) < 0) {
		int e = errno;
		unlinkat(dfd, tmp, 0);
		return inroot_fail(err, e, "cannot replace", shown);
	}
	return 0;
}

int inroot_write(int rootfd, const char *root, const char *path, const void *data, size_t len, mode_t mode,
		 uid_t uid, gid_t gid, struct af_error **err)
{
	_cleanup_free_ char *base = NULL;
	_cleanup_fd_ int dfd = inroot_parent(rootfd, root, path, true, &base, err);
	if (dfd < 0)
		return -1;
	_cleanup_free_ char *shown = xasprintf("/%s", inroot_trim(path));
	struct inroot_new n = { .data = data, .len = len, .mode = mode, .uid = uid, .gid = gid };
	return inroot_replace(dfd, base, shown, "a regular file", inroot_make_file, &n, err);
}

int inroot_create_unique(int rootfd, const char *dir, const char *prefix, mode_t mode, char **path,
			 struct af_error **err)
{
	_cleanup_fd_ int dfd = inroot_open(rootfd, dir, O_PATH | O_DIRECTORY, 0);
	if (dfd < 0)
		return inroot_dir_error(rootfd, dir, errno, err);
	char name[NAME_MAX + 1];
	int fd = -1;
	for (int i = 0; i < INROOT_TMP_TRIES && fd < 0; i++) {
		inroot_random_name(name, sizeof(name), prefix);
		fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	const char *d = inroot_trim(dir);
	_cleanup_free_ char *shown = xasprintf("%s%s/%s", *d ? "/" : "", d, name);
	if (fd < 0)
		return inroot_fail(err, errno, "cannot create", shown);
	if (fchmod(fd, mode & 07777) < 0) {
		int e = errno;
		close(fd);
		unlinkat(dfd, name, 0);
		return inroot_fail(err, e, "cannot set the mode of", shown);
	}
	*path = steal_pointer(&shown);
	return fd;
}

int inroot_mknodat(int dfd, const char *name, const char *shown, mode_t mode, dev_t dev, uid_t uid, gid_t gid,
		   struct af_error **err)
{
	struct inroot_new n = { .mode = mode, .dev = dev, .uid = uid, .gid = gid };
	return inroot_replace(dfd, name, shown, S_ISFIFO(mode) ? "a FIFO" : "a device node", inroot_make_node, &n, err);
}

int inroot_symlinkat(const char *target, int dfd, const char *name, const char *shown, uid_t uid, gid_t gid,
		     struct af_error **err)
{
	struct inroot_new n = { .target = target, .uid = uid, .gid = gid };
	return inroot_replace(dfd, name, shown, "a symbolic link", inroot_make_link, &n, err);
}

/* ---- deleting ---- */

int inroot_unlink(int rootfd, const char *root, const char *path, struct af_error **err)
{
	_cleanup_free_ char *base = NULL;
	_cleanup_free_ char *dir = inroot_split(path, &base);
	if (!inroot_name_ok(base))
		return af_error_set(err, EINVAL, "'%s' does not name a file in the image", path);
	_cleanup_fd_ int dfd = inroot_open(rootfd, dir, O_PATH | O_DIRECTORY, 0);
	if (dfd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 : inroot_dir_error(rootfd, dir, errno, err);
	if (unlinkat(dfd, base, 0) == 0)
		return 1;
	if (errno == ENOENT)
		return 0;
	if (errno == EISDIR)
		return inroot_wrong_type(err, path, S_IFDIR, "a file");
	return inroot_fail(err, errno, "cannot remove", path);
}

/* A DIR stream over a duplicate of FD (FD stays open for the *at calls). */
static DIR *inroot_fdopendir(int fd)
{
	int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
	if (!d && dup >= 0)
		cleanup_closep(&dup);
	return d;
}

/* True if NAME in DFD is the root of a mount (another filesystem, or a bind
 * of this one). */
static bool inroot_is_mount(int dfd, const char *name, dev_t parent_dev, const struct stat *st)
{
	struct statx stx;
	if (st->st_dev != parent_dev)
		return true;
	if (statx(dfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, &stx) < 0)
		return false;
	return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static int inroot_empty_at(int dfd, dev_t dev, const char *shown, bool keep_dirs, size_t *removed,
			   struct af_error **err);

/* Empties and (unless KEEP_DIRS) removes directory NAME of DFD. */
static int inroot_empty_sub(int dfd, const char *name, const struct stat *st, const char *shown, bool keep_dirs,
			    size_t *removed, struct af_error **err)
{
	_cleanup_fd_ int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0)
		return inroot_fail(err, errno, "cannot open the directory", shown);
	if (inroot_empty_at(sub, st->st_dev, shown, keep_dirs, removed, err) < 0)
		return -1;
	if (!keep_dirs && unlinkat(dfd, name, AT_REMOVEDIR) < 0)
		return inroot_fail(err, errno, "cannot remove the directory", shown);
	return 0;
}

static int inroot_empty_at(int dfd, dev_t dev, const char *shown, bool keep_dirs, size_t *removed,
			   struct af_error **err)
{
	_cleanup_dir_ DIR *d = inroot_fdopendir(dfd);
	if (!d)
		return inroot_fail(err, errno, "cannot read the directory", shown);
	for (struct dirent *de; (de = readdir(d));) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		_cleanup_free_ char *sub = xasprintf("%s/%s", shown, name);
		struct stat st;
		if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return inroot_fail(err, errno, "cannot stat", sub);
		if (S_ISDIR(st.st_mode) && inroot_is_mount(dfd, name, dev, &st))
			return inroot_fail_quiet(err, EXDEV, "a filesystem is mounted on '/%s' in the image; unmount it first",
						 inroot_trim(sub));
		if (S_ISDIR(st.st_mode)) {
			if (inroot_empty_sub(dfd, name, &st, sub, keep_dirs, removed, err) < 0)
				return -1;
			continue;
		}
		if (unlinkat(dfd, name, 0) < 0)
			return inroot_fail(err, errno, "cannot remove", sub);
		if (removed)
			(*removed)++;
	}
	return 0;
}

int inroot_empty(int rootfd, const char *dir, bool keep_dirs, size_t *removed, struct af_error **err)
{
	_cleanup_fd_ int fd = inroot_open(rootfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
	struct stat st;
	if (fd < 0)
		return errno == ENOENT ? 0 : inroot_dir_error(rootfd, dir, errno, err);
	if (fstat(fd, &st) < 0)
		return inroot_fail(err, errno, "cannot stat", dir);
	_cleanup_free_ char *shown = xasprintf("/%s", inroot_trim(dir));
	if (!strcmp(shown, "/"))
		shown[0] = '\0';
	return inroot_empty_at(fd, st.st_dev, shown, keep_dirs, removed, err);
}

int inroot_unlink_glob(int rootfd, const char *dir, const char *glob, size_t *removed, struct af_error **err)
{
	_cleanup_fd_ int fd = inroot_open(rootfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
	if (fd < 0)
		return errno == ENOENT ? 0 : inroot_dir_error(rootfd, dir, errno, err);
	_cleanup_dir_ DIR *d = inroot_fdopendir(fd);
	if (!d)
		return inroot_fail(err, errno, "cannot read the directory", dir);
	for (struct dirent *de; (de = readdir(d));) {
		struct stat st;
		if (fnmatch(glob, de->d_name, FNM_PERIOD) != 0 ||
		    fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
			continue;
		if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT) {
			_cleanup_free_ char *sub = xasprintf("%s/%s", inroot_trim(dir), de->d_name);
			return inroot_fail(err, errno, "cannot remove", sub);
		}
		if (removed)
			(*removed)++;
	}
	return 0;
}
