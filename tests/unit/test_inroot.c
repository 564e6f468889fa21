/* SPDX-License-Identifier: Apache-2.0 */
/* The in-root API (inroot.h) on a tree of traps: an image root beside an
 * "outside" standing in for the build host, with symlinks to it (absolute
 * and climbing relative ones) as parent directories and as final names,
 * planted predictable temp names, a device node, a FIFO, a socket and a
 * hard link to an outside file.  Every case checks that the outside is
 * untouched and that the call either worked inside the root or failed,
 * fast, with a message naming the image path.  Then the stages that write
 * into the image (fstab, network, run's script copy, makedev, debootstrap's
 * cleanup) against the same traps.
 *
 * test_inroot_walk.c runs all of this again with openat2 answering ENOSYS,
 * through the one-component-at-a-time fallback. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>

#include "amiforge/error.h"
#include "amiforge/inroot.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#include "../../stages/debootstrap.c"
#include "../../stages/run.c"

#define SECRET "host secret\n"

struct trap {
	char *dir;      /* holds root/ and outside/ */
	char *root;     /* the image */
	char *outside;  /* the build host */
	char *secret;   /* outside/secret, 0600 */
	char *before;   /* the outside's listing at setup */
	int rootfd;
};

/* ---- the tree ---- */

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A listing of DIR: names, types, modes, owners, sizes, contents of files
 * and targets of links (not link counts: a hard link inside the root may
 * come and go).  Caller frees. */
static void listing_add(struct strbuf *sb, const char *dir, const char *rel)
{
	char *path = *rel ? path_join(dir, rel) : xstrdup(dir);
	DIR *d = opendir(path);
	assert_non_null(d);
	char *names[64];
	size_t n = 0;
	for (struct dirent *de; (de = readdir(d)) && n < 64;)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			names[n++] = xstrdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; i < n; i++) {
		char *r = *rel ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
		char *p = path_join(dir, r);
		struct stat st;
		assert_int_equal(lstat(p, &st), 0);
		strbuf_addf(sb, "%s %o %u:%u %lld", r, st.st_mode, st.st_uid, st.st_gid, (long long)st.st_size);
		if (S_ISREG(st.st_mode)) {
			char *text = read_file(p, NULL, NULL);
			strbuf_addf(sb, " [%s]", text ? text : "?");
			free(text);
		} else if (S_ISLNK(st.st_mode)) {
			char buf[256] = "";
			assert_true(readlink(p, buf, sizeof(buf) - 1) > 0);
			strbuf_addf(sb, " -> %s", buf);
		}
		strbuf_addstr(sb, "\n");
		if (S_ISDIR(st.st_mode))
			listing_add(sb, dir, r);
		free(r);
		free(p);
		free(names[i]);
	}
	free(path);
}

static char *listing(const char *dir)
{
	struct strbuf sb = STRBUF_INIT;
	listing_add(&sb, dir, "");
	return strbuf_detach(&sb);
}

static void mkdirs(const char *dir, const char *rel)
{
	char *p = path_join(dir, rel);
	assert_int_equal(mkdir_p(p, 0755, NULL), 0);
	free(p);
}

static void put(const char *dir, const char *rel, const char *text)
{
	char *p = path_join(dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, text, strlen(text)), 0);
	close(fd);
	free(p);
}

static int setup(void **state)
{
	struct trap *t = calloc(1, sizeof(*t));
	t->dir = test_mkdtemp();
	t->root = path_join(t->dir, "root");
	t->outside = path_join(t->dir, "outside");
	t->secret = path_join(t->outside, "secret");
	mkdirs(t->root, "etc");
	mkdirs(t->outside, "sub");
	put(t->outside, "secret", SECRET);
	assert_int_equal(chmod(t->secret, 0600), 0);
	put(t->outside, "sub/file", "also the host's\n");
	t->before = listing(t->outside);
	t->rootfd = open(t->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(t->rootfd >= 0);
	/* A FIFO that blocks fails the test by SIGALRM instead of hanging. */
	alarm(20);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct trap *t = *state;
	alarm(0);
	close(t->rootfd);
	test_rmdir_r(t->dir);
	free(t->dir);
	free(t->root);
	free(t->outside);
	free(t->secret);
	free(t->before);
	free(t);
	return 0;
}

/* The outside is exactly as it was at setup. */
static void outside_untouched(const struct trap *t)
{
	char *now = listing(t->outside);
	assert_string_equal(now, t->before);
	free(now);
}

static char *in_root(const struct trap *t, const char *rel)
{
	return path_join(t->root, rel);
}

static void plant_link(const struct trap *t, const char *rel, const char *target)
{
	char *p = in_root(t, rel);
	assert_int_equal(symlink(target, p), 0);
	free(p);
}

/* A symlink at REL to the outside: absolute, or relative climbing out. */
static void plant_abs(const struct trap *t, const char *rel, const char *under)
{
	char *target = *under ? path_join(t->outside, under) : xstrdup(t->outside);
	plant_link(t, rel, target);
	free(target);
}

static void plant_fifo(const struct trap *t, const char *rel)
{
	char *p = in_root(t, rel);
	assert_int_equal(mkfifo(p, 0644), 0);
	free(p);
}

static void plant_socket(const struct trap *t, const char *rel)
{
	char *p = in_root(t, rel);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true(strlen(p) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, p);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s >= 0);
	assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	free(p);
}

/* /dev/null's numbers at REL; false (the caller skips) without root. */
static bool plant_null(const struct trap *t, const char *rel)
{
	if (geteuid() != 0)
		return false;
	char *p = in_root(t, rel);
	assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
	free(p);
	return true;
}

static mode_t type_at(const struct trap *t, const char *rel)
{
	char *p = in_root(t, rel);
	struct stat st;
	mode_t m = lstat(p, &st) == 0 ? st.st_mode : 0;
	free(p);
	return m;
}

static char *text_at(const struct trap *t, const char *rel)
{
	char *p = in_root(t, rel);
	char *text = read_file(p, NULL, NULL);
	free(p);
	return text;
}

/* Either R is 0, or ERR names the image path NAME ('/etc/x'). */
static void worked_or_named(int r, struct af_error **err, const char *name)
{
	if (r == 0) {
		assert_null(*err);
		return;
	}
	char *quoted = xasprintf("'%s'", name);
	if (!*err || !strstr(af_error_msg(*err), quoted))
		fail_msg("error '%s' does not name %s", *err ? af_error_msg(*err) : "(none)", quoted);
	free(quoted);
	af_error_clear(err);
}

static void expect_error(int r, struct af_error **err, int errnum, const char *part)
{
	assert_int_equal(r, -1);
	assert_non_null(*err);
	if (!strstr(af_error_msg(*err), part))
		fail_msg("error '%s' does not contain '%s'", af_error_msg(*err), part);
	if (errnum)
		assert_int_equal(af_error_errno(*err), errnum);
	af_error_clear(err);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_text(const struct trap *t, const char *path, const char *text, struct af_error **err)
{
	return inroot_write(t->rootfd, t->root, path, text, strlen(text), 0644, getuid(), getgid(), err);
}

/* A written file: regular, TEXT, mode 0644, the only link to its inode. */
static void expect_written(const struct trap *t, const char *rel, const char *text)
{
	char *p = in_root(t, rel);
	struct stat st;
	assert_int_equal(lstat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(st.st_nlink, 1);
	char *got = read_file(p, NULL, NULL);
	assert_string_equal(got, text);
	free(got);
	free(p);
}

/* ---- creating ---- */

static void test_final_symlink_replaced(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	plant_abs(t, "etc/hosts", "secret");
	plant_link(t, "etc/hostname", "../../outside/secret");
	plant_link(t, "etc/motd", "../../../../../../../../../../../../outside/secret");
	umask(077);
	assert_int_equal(write_text(t, "/etc/hosts", "127.0.0.1 localhost\n", &err), 0);
	assert_int_equal(write_text(t, "/etc/hostname", "image\n", &err), 0);
	assert_int_equal(write_text(t, "etc/motd", "hello\n", &err), 0);
	umask(022);
	expect_written(t, "etc/hosts", "127.0.0.1 localhost\n");
	expect_written(t, "etc/hostname", "image\n");
	expect_written(t, "etc/motd", "hello\n");
	outside_untouched(t);
}

static void test_parent_symlink(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	plant_abs(t, "abs", "");
	plant_link(t, "up", "../../outside");
	plant_link(t, "etc/deep", "../../../../../../../../outside/sub");
	/* The targets do not exist inside the image: refused, named. */
	expect_error(write_text(t, "/abs/x", "x\n", &err), &err, 0, "'/abs'");
	expect_error(write_text(t, "/up/sub/x", "x\n", &err), &err, 0, "'/up'");
	expect_error(write_text(t, "/etc/deep/file", "x\n", &err), &err, 0, "'/etc/deep'");
	outside_untouched(t);
	/* Where they exist inside the image, the write lands there (openat2),
	 * or is refused (the fallback refuses every symlink). */
	mkdirs(t->root, t->outside + 1);
	mkdirs(t->root, "outside/sub");
	int r = write_text(t, "/abs/x", "inside\n", &err);
	worked_or_named(r, &err, "/abs");
	if (r == 0) {
		char *rel = path_join(t->outside + 1, "x");
		expect_written(t, rel, "inside\n");
		free(rel);
	}
	r = write_text(t, "/up/sub/file", "inside\n", &err);
	worked_or_named(r, &err, "/up");
	if (r == 0)
		expect_written(t, "outside/sub/file", "inside\n");
	outside_untouched(t);
}

static void test_predictable_temp_names(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	/* Names a writer with a PID- or name-based temp file might use. */
	static const char *const planted[] = {
		"etc/fstab.tmp", "etc/fstab.tmp.1", "etc/fstab.tmp.2", "etc/fstab.amiforge-tmp", "etc/.fstab.tmp",
		"etc/.amiforge-0000000000000000", "etc/fstab~",
	};
	for (size_t i = 0; i < ARRAY_SIZE(planted); i++)
		plant_abs(t, planted[i], "secret");
	assert_int_equal(write_text(t, "/etc/fstab", "LABEL=root / ext4 defaults 0 1\n", &err), 0);
	expect_written(t, "etc/fstab", "LABEL=root / ext4 defaults 0 1\n");
	for (size_t i = 0; i < ARRAY_SIZE(planted); i++)
		assert_true(S_ISLNK(type_at(t, planted[i])));
	/* Nothing left behind under a temp name. */
	char *etc = in_root(t, "etc");
	DIR *d = opendir(etc);
	size_t n = 0;
	for (struct dirent *de; (de = readdir(d));)
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..") ? 1 : 0;
	closedir(d);
	assert_int_equal(n, ARRAY_SIZE(planted) + 1);
	free(etc);
	/* Unique names are random, not the PID. */
	char *a = NULL, *b = NULL;
	int fa = inroot_create_unique(t->rootfd, "/etc", "x-", 0600, &a, &err);
	int fb = inroot_create_unique(t->rootfd, "/etc", "x-", 0600, &b, &err);
	assert_true(fa >= 0 && fb >= 0);
	assert_string_not_equal(a, b);
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	assert_int_equal(strlen(a), strlen("/etc/x-") + 16);
	assert_null(strstr(a + strlen("/etc/x-"), pid));
	close(fa);
	close(fb);
	free(a);
	free(b);
	outside_untouched(t);
}

static void test_device_node(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	if (!plant_null(t, "etc/hostname"))
		test_skip_because("making a device node needs root (mknod)");
	assert_null(inroot_read(t->rootfd, t->root, "/etc/hostname", 4096, NULL, &err));
	assert_int_equal(af_error_errno(err), EINVAL);
	assert_string_equal(af_error_msg(err), "'/etc/hostname' in the image is a character device, not a regular file; remove it or fix the stage that made it");
	af_error_clear(&err);
	expect_error(inroot_open_file(t->rootfd, "/etc/hostname", &err), &err, EINVAL, "is a character device");
	assert_int_equal(write_text(t, "/etc/hostname", "image\n", &err), 0);
	expect_written(t, "etc/hostname", "image\n");
	outside_untouched(t);
}

static void test_fifo(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	plant_fifo(t, "etc/hosts");
	plant_fifo(t, "notadir");
	double t0 = now();
	assert_null(inroot_read(t->rootfd, t->root, "/etc/hosts", 4096, NULL, &err));
	assert_string_equal(af_error_msg(err), "'/etc/hosts' in the image is a FIFO, not a regular file; remove it or fix the stage that made it");
	af_error_clear(&err);
	expect_error(inroot_open_dir(t->rootfd, "/etc/hosts", &err), &err, ENOTDIR, "is a FIFO, not a directory");
	expect_error(inroot_empty(t->rootfd, "/etc/hosts", false, NULL, &err), &err, ENOTDIR, "'/etc/hosts'");
	expect_error(write_text(t, "/notadir/file", "x\n", &err), &err, 0, "'/notadir'");
	assert_true(now() - t0 < 2.0);
	assert_int_equal(write_text(t, "/etc/hosts", "127.0.0.1 localhost\n", &err), 0);
	expect_written(t, "etc/hosts", "127.0.0.1 localhost\n");
	outside_untouched(t);
}

static void test_socket(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	plant_socket(t, "etc/sock");
	assert_null(inroot_read(t->rootfd, t->root, "/etc/sock", 4096, NULL, &err));
	assert_int_equal(af_error_errno(err), EINVAL);
	assert_non_null(strstr(af_error_msg(err), "'/etc/sock' in the image is a socket"));
	af_error_clear(&err);
	assert_int_equal(write_text(t, "/etc/sock", "now a file\n", &err), 0);
	expect_written(t, "etc/sock", "now a file\n");
	outside_untouched(t);
}

static void test_hard_link(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	char *p = in_root(t, "etc/shadow");
	if (link(t->secret, p) < 0)
		test_skip_because("no hard link from the test root to the outside (another filesystem)");
	/* Reading a hard link is fine: it is the image's own name. */
	size_t len = 0;
	char *got = inroot_read(t->rootfd, t->root, "/etc/shadow", 4096, &len, &err);
	assert_string_equal(got, SECRET);
	assert_int_equal(len, strlen(SECRET));
	free(got);
	/* Writing replaces the name; the outside file keeps its bytes and mode. */
	assert_int_equal(write_text(t, "/etc/shadow", "root:*:1::::::\n", &err), 0);
	expect_written(t, "etc/shadow", "root:*:1::::::\n");
	struct stat st;
	assert_int_equal(stat(t->secret, &st), 0);
	assert_int_equal(st.st_nlink, 1);
	outside_untouched(t);
	free(p);
}

static void test_dotdot(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	int r = write_text(t, "/../../../escape", "x\n", &err);
	worked_or_named(r, &err, "/..");
	if (r == 0)
		expect_written(t, "escape", "x\n");
	char *beside = path_join(t->dir, "escape");
	assert_int_equal(access(beside, F_OK), -1);
	free(beside);
	expect_error(write_text(t, "/etc/..", "x\n", &err), &err, EINVAL, "does not name a file");
	expect_error(inroot_unlink(t->rootfd, t->root, "..", &err), &err, EINVAL, "does not name a file");
	struct stat a, b;
	assert_int_equal(fstat(t->rootfd, &b), 0);
	if (inroot_lstat(t->rootfd, "/..", &a) == 0)
		assert_int_equal(a.st_ino, b.st_ino);
	else
		assert_int_equal(errno, EXDEV);
	outside_untouched(t);
}

static void test_read_bounds(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	put(t->root, "etc/big", "0123456789");
	size_t len = 0;
	assert_null(inroot_read(t->rootfd, t->root, "/etc/big", 9, &len, &err));
	assert_int_equal(af_error_errno(err), EFBIG);
	assert_non_null(strstr(af_error_msg(err), "'/etc/big' in the image holds 10 bytes"));
	af_error_clear(&err);
	char *got = inroot_read(t->rootfd, t->root, "/etc/big", 10, &len, &err);
	assert_string_equal(got, "0123456789");
	free(got);
	assert_null(inroot_read(t->rootfd, t->root, "/etc/none", 10, &len, &err));
	assert_int_equal(af_error_errno(err), ENOENT);
	assert_non_null(strstr(af_error_msg(err), "'/etc/none' in the image"));
	af_error_clear(&err);
	plant_abs(t, "etc/link", "secret");
	assert_null(inroot_read(t->rootfd, t->root, "/etc/link", 100, &len, &err));
	assert_int_equal(af_error_errno(err), ELOOP);
	assert_non_null(strstr(af_error_msg(err), "is a symbolic link, not a regular file"));
	af_error_clear(&err);
	outside_untouched(t);
}

/* ---- nodes, links, directories ---- */

static void test_nodes_links_dirs(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	char *base = NULL;
	plant_abs(t, "etc/null", "secret");
	plant_abs(t, "etc/ln", "secret");
	mkdirs(t->root, "etc/adir");
	put(t->root, "etc/afile", "x");
	plant_abs(t, "etc/dirlink", "sub");
	int dfd = inroot_parent(t->rootfd, t->root, "/etc/null", false, &base, &err);
	assert_true(dfd >= 0);
	assert_string_equal(base, "null");
	free(base);
	umask(077);
	if (geteuid() == 0) {
		assert_int_equal(inroot_mknodat(dfd, "null", "/etc/null", S_IFCHR | 0666, makedev(1, 3), 0, 5, &err), 0);
		char *p = in_root(t, "etc/null");
		struct stat st;
		assert_int_equal(lstat(p, &st), 0);
		assert_true(S_ISCHR(st.st_mode));
		assert_int_equal(st.st_mode & 07777, 0666);
		assert_int_equal(st.st_gid, 5);
		assert_int_equal(st.st_rdev, makedev(1, 3));
		free(p);
		expect_error(inroot_mknodat(dfd, "adir", "/etc/adir", S_IFCHR | 0600, makedev(1, 3), 0, 0, &err), &err,
			     EISDIR, "'/etc/adir' in the image is a directory, not a device node");
	}
	assert_int_equal(inroot_symlinkat("/proc/kcore", dfd, "ln", "/etc/ln", getuid(), getgid(), &err), 0);
	assert_int_equal(inroot_symlinkat("target", dfd, "afile", "/etc/afile", getuid(), getgid(), &err), 0);
	char buf[64] = "";
	char *ln = in_root(t, "etc/ln");
	assert_int_equal(readlink(ln, buf, sizeof(buf) - 1), strlen("/proc/kcore"));
	free(ln);
	assert_true(S_ISLNK(type_at(t, "etc/afile")));
	expect_error(inroot_symlinkat("x", dfd, "adir", "/etc/adir", 0, 0, &err), &err, EISDIR, "is a directory");
	expect_error(inroot_symlinkat("x", dfd, "..", "/etc/..", 0, 0, &err), &err, EINVAL, "does not name");
	/* A directory: made with the exact mode, or taken if there; never
	 * through a symlink. */
	int sub = inroot_mkdirat(dfd, "newdir", "/etc/newdir", 01777, getuid(), getgid(), &err);
	assert_true(sub >= 0);
	close(sub);
	assert_int_equal(type_at(t, "etc/newdir") & 07777, 01777);
	sub = inroot_mkdirat(dfd, "adir", "/etc/adir", 0700, getuid(), getgid(), &err);
	assert_true(sub >= 0);
	close(sub);
	assert_int_equal(type_at(t, "etc/adir") & 07777, 0700);
	expect_error(inroot_mkdirat(dfd, "dirlink", "/etc/dirlink", 0755, 0, 0, &err), &err, ELOOP,
		     "'/etc/dirlink' in the image is a symbolic link, not a directory");
	umask(022);
	close(dfd);
	/* inroot_mkdirs: exact modes, the umask notwithstanding. */
	umask(077);
	dfd = inroot_mkdirs(t->rootfd, t->root, "/var/tmp", 01777, &err);
	umask(022);
	assert_true(dfd >= 0);
	close(dfd);
	assert_int_equal(type_at(t, "var") & 07777, 01777);
	assert_int_equal(type_at(t, "var/tmp") & 07777, 01777);
	outside_untouched(t);
}

/* ---- deleting ---- */

static void test_unlink(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	plant_abs(t, "abs", "");
	plant_link(t, "up", "../../outside");
	plant_abs(t, "etc/hosts", "secret");
	mkdirs(t->root, "etc/adir");
	int r = inroot_unlink(t->rootfd, t->root, "/abs/secret", &err);
	assert_true(r == 0 || (r < 0 && err));
	af_error_clear(&err);
	r = inroot_unlink(t->rootfd, t->root, "/up/secret", &err);
	assert_true(r == 0 || (r < 0 && err));
	af_error_clear(&err);
	assert_int_equal(inroot_unlink(t->rootfd, t->root, "/etc/hosts", &err), 1);
	assert_int_equal(type_at(t, "etc/hosts"), 0);
	assert_int_equal(inroot_unlink(t->rootfd, t->root, "/etc/hosts", &err), 0);
	assert_int_equal(inroot_unlink(t->rootfd, t->root, "/nodir/file", &err), 0);
	expect_error(inroot_unlink(t->rootfd, t->root, "/etc/adir", &err), &err, EISDIR,
		     "'/etc/adir' in the image is a directory");
	outside_untouched(t);
}

static void test_empty_and_glob(void **state)
{
	struct trap *t = *state;
	struct af_error *err = NULL;
	size_t removed = 0;
	mkdirs(t->root, "tmp/sub/deeper");
	put(t->root, "tmp/sub/deeper/f", "x");
	put(t->root, "tmp/f", "x");
	plant_abs(t, "tmp/dirlink", "sub");
	plant_abs(t, "tmp/sub/filelink", "secret");
	plant_fifo(t, "tmp/fifo");
	assert_int_equal(inroot_empty(t->rootfd, "/tmp", false, &removed, &err), 0);
	assert_int_equal(removed, 5);
	assert_true(S_ISDIR(type_at(t, "tmp")));
	assert_int_equal(type_at(t, "tmp/sub"), 0);
	/* keep_dirs keeps the tree's directories. */
	mkdirs(t->root, "var/log/apt");
	put(t->root, "var/log/apt/history.log", "x");
	removed = 0;
	assert_int_equal(inroot_empty(t->rootfd, "/var/log", true, &removed, &err), 0);
	assert_int_equal(removed, 1);
	assert_true(S_ISDIR(type_at(t, "var/log/apt")));
	/* A symlinked directory is not emptied: not the host's, nor the image's. */
	plant_abs(t, "var/tmp", "sub");
	expect_error(inroot_empty(t->rootfd, "/var/tmp", false, NULL, &err), &err, ELOOP,
		     "'/var/tmp' in the image is a symbolic link, not a directory");
	assert_int_equal(inroot_empty(t->rootfd, "/absent", false, NULL, &err), 0);
	/* Globs remove matching non-directories, links themselves. */
	mkdirs(t->root, "etc/ssh/ssh_host_dir");
	plant_abs(t, "etc/ssh/ssh_host_rsa_key", "secret");
	put(t->root, "etc/ssh/ssh_host_ed25519_key", "k");
	put(t->root, "etc/ssh/sshd_config", "c");
	removed = 0;
	assert_int_equal(inroot_unlink_glob(t->rootfd, "/etc/ssh", "ssh_host_*", &removed, &err), 0);
	assert_int_equal(removed, 2);
	assert_true(S_ISDIR(type_at(t, "etc/ssh/ssh_host_dir")));
	assert_true(S_ISREG(type_at(t, "etc/ssh/sshd_config")));
	assert_int_equal(inroot_unlink_glob(t->rootfd, "/no/such", "*", NULL, &err), 0);
	plant_abs(t, "etc/linkdir", "sub");
	expect_error(inroot_unlink_glob(t->rootfd, "/etc/linkdir", "*", NULL, &err), &err, ELOOP, "'/etc/linkdir'");
	outside_untouched(t);
}

/* ---- stages against the traps ---- */

#define REQUIRE_ROOT()                                                                       \
	do {                                                                                 \
		if (geteuid() != 0)                                                          \
			test_skip_because("the stages write files owned by root (chown)"); \
	} while (0)

/* Runs stage NAME with PARAMS on the trap's root; the error message
 * (caller frees) or NULL. */
static char *run_stage(struct trap *t, const char *name, const char *params, const char *image, json_t *facts)
{
	const struct stage_type *type = registry_find(name);
	assert_non_null(type);
	json_t *p = json_loads(params, 0, NULL);
	assert_non_null(p);
	struct stage_ctx ctx = {
		.id = name,
		.index = 1,
		.key = "5e1f0c2d9a7b4e3f8c6d1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d",
		.arch = "x86_64",
		.params = p,
		.recipe_dir = t->dir,
		.state_dir = t->dir,
		.cache_dir = t->dir,
		.image = image,
		.root = t->root,
		.facts = facts,
		.outputs = json_object(),
		.log_fd = -1,
	};
	struct af_error *err = NULL;
	char *msg = NULL;
	if ((type->check && type->check(p, &err) < 0) || type->run(&ctx, &err) < 0)
		msg = xstrdup(af_error_msg(err));
	af_error_free(err);
	json_decref(ctx.outputs);
	json_decref(p);
	return msg;
}

static void stage_named(char *msg, const char *name)
{
	char *quoted = xasprintf("'%s'", name);
	if (!msg || !strstr(msg, quoted))
		fail_msg("stage error '%s' does not name %s", msg ? msg : "(it succeeded)", quoted);
	free(quoted);
	free(msg);
}

static void stage_ok(char *msg)
{
	if (msg)
		fail_msg("stage failed: %s", msg);
}

static void test_stage_network(void **state)
{
	REQUIRE_ROOT();
	struct trap *t = *state;
	plant_fifo(t, "etc/hosts");
	plant_socket(t, "etc/hostname");
	plant_link(t, "etc/network", "../../../../../../../outside/sub");
	double t0 = now();
	stage_named(run_stage(t, "network", "{}", NULL, NULL), "/etc/network");
	outside_untouched(t);
	char *p = in_root(t, "etc/network");
	assert_int_equal(unlink(p), 0);
	free(p);
	plant_null(t, "etc/hostname.tmp");
	stage_ok(run_stage(t, "network", "{\"hostname\": \"trapped\"}", NULL, NULL));
	assert_true(now() - t0 < 5.0);
	char *hosts = text_at(t, "etc/hosts");
	assert_non_null(strstr(hosts, "127.0.1.1\ttrapped\n"));
	free(hosts);
	expect_written(t, "etc/hostname", "trapped\n");
	assert_true(S_ISREG(type_at(t, "etc/network/interfaces")));
	outside_untouched(t);
}

static void test_stage_fstab(void **state)
{
	REQUIRE_ROOT();
	struct trap *t = *state;
	char *img = path_join(t->dir, "fs.img");
	char *cmd = xasprintf("mke2fs -q -F -t ext4 -L trapfs '%s' 8M >/dev/null 2>&1", img);
	int rc = system(cmd);
	free(cmd);
	if (rc != 0) {
		free(img);
		test_skip_because("mke2fs is missing");
	}
	json_t *facts = json_pack("{s:i, s:i, s:s}", "root.offset", 0, "root.size", 8 << 20, "root.fstype", "ext4");
	/* The old writer's temp names, planted. */
	plant_abs(t, "etc/fstab", "secret");
	plant_abs(t, "etc/fstab.tmp.1", "secret");
	plant_abs(t, "etc/fstab.tmp.2", "secret");
	umask(077);
	stage_ok(run_stage(t, "fstab", "{}", img, facts));
	umask(022);
	char *text = text_at(t, "etc/fstab");
	assert_non_null(strstr(text, "LABEL=trapfs\t/\text4"));
	free(text);
	assert_int_equal(type_at(t, "etc/fstab") & 07777, 0644);
	outside_untouched(t);
	/* /etc a symlink out of the image: refused, named. */
	char *etc = in_root(t, "etc");
	test_rmdir_r(etc);
	free(etc);
	plant_abs(t, "etc", "");
	stage_named(run_stage(t, "fstab", "{}", img, facts), "/etc");
	outside_untouched(t);
	json_decref(facts);
	free(img);
}

static void test_run_script_copy(void **state)
{
	REQUIRE_ROOT();
	struct trap *t = *state;
	struct af_error *err = NULL;
	char *script = path_join(t->dir, "setup.sh");
	assert_int_equal(write_file_atomic(script, "#!/bin/sh\n", 10, 0644, NULL), 0);
	char *inside = NULL;
	/* /tmp a symlink to the host's (absolute, and climbing). */
	plant_abs(t, "tmp", "");
	expect_error(run_copy_script(t->rootfd, t->root, script, &inside, &err), &err, 0, "'/tmp'");
	char *tmp = in_root(t, "tmp");
	assert_int_equal(unlink(tmp), 0);
	plant_link(t, "tmp", "../../../../outside");
	expect_error(run_copy_script(t->rootfd, t->root, script, &inside, &err), &err, 0, "'/tmp'");
	outside_untouched(t);
	/* /tmp a symlink inside the image: the copy lands where the command
	 * will look, or is refused by the fallback. */
	assert_int_equal(unlink(tmp), 0);
	mkdirs(t->root, "var/tmp");
	plant_link(t, "tmp", "var/tmp");
	int r = run_copy_script(t->rootfd, t->root, script, &inside, &err);
	worked_or_named(r, &err, "/tmp");
	if (r == 0) {
		assert_true(str_has_prefix(inside, "/tmp/amiforge-run-"));
		char *rel = xasprintf("var/tmp/%s", inside + 5);
		assert_int_equal(type_at(t, rel), S_IFREG | 0700);
		assert_int_equal(inroot_unlink(t->rootfd, t->root, inside, &err), 1);
		free(rel);
		free(inside);
		inside = NULL;
	}
	/* No /tmp at all: made 01777. */
	assert_int_equal(unlink(tmp), 0);
	umask(077);
	assert_int_equal(run_copy_script(t->rootfd, t->root, script, &inside, &err), 0);
	umask(022);
	assert_int_equal(type_at(t, "tmp"), S_IFDIR | 01777);
	assert_int_equal(type_at(t, inside + 1), S_IFREG | 0700);
	outside_untouched(t);
	free(inside);
	free(tmp);
	free(script);
}

static void test_stage_makedev(void **state)
{
	REQUIRE_ROOT();
	struct trap *t = *state;
	mkdirs(t->root, "dev");
	plant_abs(t, "dev/null", "secret");
	plant_fifo(t, "dev/zero");
	plant_abs(t, "dev/rd", "sub");
	put(t->root, "etc/group", "root:x:0:\ntty:x:5:\n");
	stage_ok(run_stage(t, "makedev", "{\"devices\": [\"std\"]}", NULL, NULL));
	assert_int_equal(type_at(t, "dev/null"), S_IFCHR | 0666);
	assert_int_equal(type_at(t, "dev/zero"), S_IFCHR | 0666);
	stage_named(run_stage(t, "makedev", "{\"devices\": [\"dac960\"]}", NULL, NULL), "/dev/rd");
	/* A FIFO as /etc/group fails fast, named. */
	char *group = in_root(t, "etc/group");
	assert_int_equal(unlink(group), 0);
	free(group);
	plant_fifo(t, "etc/group");
	stage_named(run_stage(t, "makedev", "{\"devices\": [\"std\"]}", NULL, NULL), "/etc/group");
	outside_untouched(t);
}

static void test_debootstrap_cleanup(void **state)
{
	REQUIRE_ROOT();
	struct trap *t = *state;
	struct af_error *err = NULL;
	mkdirs(t->root, "var/cache/apt/archives");
	put(t->root, "var/cache/apt/archives/a.deb", "x");
	plant_abs(t, "var/cache/apt/archives/b.deb", "secret");
	plant_abs(t, "var/cache/apt/archives/partial", "sub");
	deb_remove_debs(t->rootfd, "/var/cache/apt/archives");
	deb_remove_debs(t->rootfd, "/var/cache/apt/archives/partial");
	assert_int_equal(type_at(t, "var/cache/apt/archives/a.deb"), 0);
	assert_int_equal(type_at(t, "var/cache/apt/archives/b.deb"), 0);
	/* The unsafe-io file over a planted symlink; dpkg status a FIFO. */
	mkdirs(t->root, "etc/dpkg/dpkg.cfg.d");
	plant_abs(t, "etc/dpkg/dpkg.cfg.d/99amiforge-unsafe-io", "secret");
	assert_int_equal(deb_write_unsafe_io(t->rootfd, t->root, &err), 0);
	expect_written(t, "etc/dpkg/dpkg.cfg.d/99amiforge-unsafe-io", "force-unsafe-io\n");
	mkdirs(t->root, "var/lib/dpkg");
	plant_fifo(t, "var/lib/dpkg/status");
	json_t *inc = json_pack("[s]", "sudo");
	expect_error(deb_verify_status(t->rootfd, t->root, inc, &err), &err, 0, "'/var/lib/dpkg/status' in the image is a FIFO");
	json_decref(inc);
	/* The host's copies: a hard link or symlink to the host's file is not
	 * the host's copy to remove through. */
	plant_link(t, "etc/resolv.conf", "/etc/resolv.conf");
	assert_int_equal(deb_drop_host_files(t->rootfd, t->root, &err), 0);
	assert_true(S_ISLNK(type_at(t, "etc/resolv.conf")));
	outside_untouched(t);
}

#ifdef INROOT_TEST_NO_OPENAT2
/* openat2 answers ENOSYS from here on, as on Linux < 5.6. */
static void no_openat2(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = ARRAY_SIZE(f), .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
		abort();
	struct open_how how = { .flags = O_PATH };
	if (syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how)) >= 0 || errno != ENOSYS)
		abort();
}
#endif

int main(void)
{
#ifdef INROOT_TEST_NO_OPENAT2
	no_openat2();
#endif
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_final_symlink_replaced, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parent_symlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_predictable_temp_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_node, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hard_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dotdot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nodes_links_dirs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unlink, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_and_glob, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage_network, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage_fstab, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run_script_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage_makedev, setup, teardown),
		cmocka_unit_test_setup_teardown(test_debootstrap_cleanup, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
