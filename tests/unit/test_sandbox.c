/* SPDX-License-Identifier: Apache-2.0 */
/* The sandbox: loop devices, mounts, the chroot, spawning, and that nothing
 * is left on the host after any exit, SIGKILL included.  Cases that need
 * root or loop devices skip with the reason. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#include "amiforge/chroot.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exec.h"
#include "amiforge/jail.h"
#include "amiforge/loopdev.h"
#include "amiforge/namespace.h"
#include "amiforge/rootfs.h"
#include "amiforge/spawn.h"
#include "amiforge/util.h"

#define MiB (1024ull * 1024ull)

/* ---- helpers ---------------------------------------------------------- */

static const char *root_missing(void)
{
	if (geteuid() != 0)
		return "needs root (loop devices, mounts, chroot)";
	if (access("/dev/loop-control", R_OK | W_OK) != 0)
		return "needs loop devices (/dev/loop-control)";
	return NULL;
}

#define REQUIRE_ROOT()                                   \
	do {                                             \
		const char *why_ = root_missing();       \
		if (why_) {                              \
			test_skip_because(why_);         \
			return;                          \
		}                                        \
	} while (0)

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Polls COND every 20 ms for up to 5 s: the kernel tears down loop
 * devices, mounts and processes asynchronously after a death. */
#define POLL_5S(cond)                                              \
	({                                                         \
		bool ok_ = false;                                  \
		for (int i_ = 0; i_ < 250 && !(ok_ = (cond)); i_++) \
			sleep_ms(20);                              \
		ok_;                                               \
	})

static char *read_text(const char *path)
{
	struct af_error *err = NULL;
	char *s = read_file(path, NULL, &err);
	af_error_free(err);
	return s;
}

static char *loop_attr(const char *dev, const char *attr)
{
	char *p = xasprintf("/sys/block/%s/loop/%s", strrchr(dev, '/') + 1, attr);
	char *s = read_text(p);
	free(p);
	if (s)
		s[strcspn(s, "\n")] = '\0';
	return s;
}

/* Loop devices whose backing file lies under DIR. */
static int loops_under(const char *dir)
{
	DIR *d = opendir("/sys/block");
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char *p, *s;
		if (strncmp(e->d_name, "loop", 4) != 0)
			continue;
		p = xasprintf("/sys/block/%s/loop/backing_file", e->d_name);
		s = read_text(p);
		if (s && str_has_prefix(s, dir))
			n++;
		free(s);
		free(p);
	}
	closedir(d);
	return n;
}

/* Mounts of the calling process's namespace whose mount point lies under
 * DIR (mountinfo field 5). */
static int mounts_under(const char *dir)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char mp[4096];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && str_has_prefix(mp, dir))
			n++;
	}
	fclose(f);
	return n;
}

/* Paths live in stack buffers: a forked child that _exits cannot leak them
 * (valgrind checks leaks in children too). */
#define PATHF(buf, ...) assert_true(snprintf(buf, sizeof(buf), __VA_ARGS__) < (int)sizeof(buf))

static void make_sparse(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static int run_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run_sh(const char *fmt, ...)
{
	va_list ap;
	char *cmd = NULL;
	int rc;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	rc = system(cmd);
	free(cmd);
	return rc;
}

static int wait_child(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool pid_gone(pid_t pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

/* Prints a file (a child's log) to stderr, to explain a failure. */
static void dump(const char *path)
{
	char *s = read_text(path);
	if (s && *s)
		fprintf(stderr, "---- %s\n%s----\n", path, s);
	free(s);
}

static int setup_dir(void **state)
{
	*state = test_mkdtemp();
	return 0;
}

static int teardown_dir(void **state)
{
	char *dir = *state;
	/* Nothing of ours may outlive a test. */
	if (loops_under(dir) || mounts_under(dir))
		fprintf(stderr, "warning: loop devices or mounts left under %s\n", dir);
	test_rmdir_r(dir);
	free(dir);
	return 0;
}

/* ---- namespace_require_root ----------------------------------------------- */

static void test_require_root(void **state)
{
	struct af_error *err = NULL;
	pid_t pid;

	if (geteuid() != 0) {
		assert_int_equal(namespace_require_root(&err), -1);
		assert_int_equal(af_error_errno(err), EPERM);
		assert_non_null(strstr(af_error_msg(err), "needs root"));
		af_error_free(err);
		return;
	}
	assert_int_equal(namespace_require_root(&err), 0);
	assert_null(err);
	/* As nobody: EPERM and the reason, without a trailing strerror. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		if (namespace_require_root(&err) != -1 || af_error_errno(err) != EPERM)
			_exit(3);
		if (strcmp(af_error_msg(err), "amiforge build needs root: it attaches loop devices, "
				"mounts the image and chroots into it; run it with sudo (or as root in CI)"))
			_exit(4);
		_exit(0);
	}
	assert_int_equal(wait_child(pid), 0);
}

/* ---- loop devices ------------------------------------------------------- */

static void test_loop_offset_sizelimit(void **state)
{
	const char *dir = *state;
	char img[PATH_MAX];
	struct loopdev lo = { .fd = -1 };
	struct af_error *err = NULL;
	uint64_t size = 0;
	char *s;

	REQUIRE_ROOT();
	PATHF(img, "%s/disk.img", dir);
	make_sparse(img, 16 * MiB);
	assert_int_equal(loopdev_attach(img, 1 * MiB, 8 * MiB, false, &lo, &err), 0);
	assert_null(err);
	assert_true(lo.fd >= 0);
	assert_true(str_has_prefix(lo.path, "/dev/loop"));

	s = loop_attr(lo.path, "offset");
	assert_string_equal(s, "1048576");
	free(s);
	s = loop_attr(lo.path, "sizelimit");
	assert_string_equal(s, "8388608");
	free(s);
	s = loop_attr(lo.path, "autoclear");
	assert_string_equal(s, "1");
	free(s);
	s = loop_attr(lo.path, "backing_file");
	assert_string_equal(s, img);
	free(s);
	assert_int_equal(ioctl(lo.fd, BLKGETSIZE64, &size), 0);
	assert_int_equal(size, 8 * MiB);

	{
		char attr[PATH_MAX];
		PATHF(attr, "/sys/block/%s/loop/backing_file", strrchr(lo.path, '/') + 1);
		loopdev_release(&lo);
		assert_int_equal(lo.fd, -1);
		assert_null(lo.path);
		loopdev_release(&lo);  /* twice is fine */
		assert_true(POLL_5S(access(attr, F_OK) != 0));
	}
	assert_int_equal(loops_under(dir), 0);
}

static void test_loop_readonly_to_end(void **state)
{
	const char *dir = *state;
	char img[PATH_MAX];
	struct loopdev lo = { .fd = -1 };
	struct af_error *err = NULL;
	uint64_t size = 0;
	char *s;

	REQUIRE_ROOT();
	PATHF(img, "%s/disk.img", dir);
	make_sparse(img, 4 * MiB);
	assert_int_equal(loopdev_attach(img, 512 * 1024, 0, true, &lo, &err), 0);
	assert_int_equal(ioctl(lo.fd, BLKGETSIZE64, &size), 0);
	assert_int_equal(size, 4 * MiB - 512 * 1024);
	s = loop_attr(lo.path, "../ro");
	assert_string_equal(s, "1");
	free(s);
	loopdev_release(&lo);
	assert_true(POLL_5S(loops_under(dir) == 0));
}

static void test_loop_errors(void **state)
{
	const char *dir = *state;
	char img[PATH_MAX], missing[PATH_MAX];
	struct loopdev lo = { .fd = -1 };
	struct af_error *err = NULL;

	REQUIRE_ROOT();
	PATHF(missing, "%s/missing.img", dir);
	assert_int_equal(loopdev_attach(missing, 0, 0, false, &lo, &err), -1);
	assert_int_equal(af_error_errno(err), ENOENT);
	assert_non_null(strstr(af_error_msg(err), missing));
	af_error_clear(&err);
	assert_int_equal(lo.fd, -1);

	PATHF(img, "%s/small.img", dir);
	make_sparse(img, 1 * MiB);
	assert_int_equal(loopdev_attach(img, 2 * MiB, 0, false, &lo, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "beyond the end"));
	af_error_clear(&err);
	assert_int_equal(loops_under(dir), 0);

	loopdev_release(NULL);
}

/* ---- the root filesystem --------------------------------------------------- */

static void make_ext4(const char *img)
{
	make_sparse(img, 65 * MiB);
	assert_int_equal(run_sh("mke2fs -q -F -t ext4 -E offset=1048576 '%s' 64M", img), 0);
}

/* In a child that entered the sandbox: mount, act, unmount.  Exit codes
 * say which step failed; messages go to stderr. */
enum fs_action { FS_WRITE, FS_CHECK };

static int fs_child(const char *img, const char *mnt, enum fs_action act)
{
	struct af_error *err = NULL;
	struct rootfs fs = { .loop = { .fd = -1 } };
	char file[PATH_MAX];
	int rc = 0;

	snprintf(file, sizeof(file), "%s/hello", mnt);
	if (namespace_enter(&err) < 0 || rootfs_mount(img, MiB, 64 * MiB, "ext4", mnt, &fs, &err) < 0) {
		fprintf(stderr, "%s\n", af_error_msg(err));
		return 2;
	}
	if (!fs.mounted || strcmp(fs.target, mnt) != 0)
		rc = 3;
	if (act == FS_WRITE) {
		int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, "world\n", 6) != 6 || close(fd) < 0)
			rc = 4;
	} else {
		char *s = read_text(file);
		if (!s || strcmp(s, "world\n") != 0)
			rc = 5;
		free(s);
	}
	if (rootfs_umount(&fs, &err) < 0) {
		fprintf(stderr, "%s\n", af_error_msg(err));
		return 6;
	}
	if (fs.mounted || fs.loop.fd != -1 || fs.target)
		rc = 7;
	return rc;
}

static void test_rootfs_mount(void **state)
{
	const char *dir = *state;
	char img[PATH_MAX], mnt[PATH_MAX];
	pid_t pid;

	REQUIRE_ROOT();
	PATHF(img, "%s/disk.img", dir);
	PATHF(mnt, "%s/mnt/root", dir);  /* created by rootfs_mount */
	make_ext4(img);
	pid = fork();
	if (pid == 0)
		_exit(fs_child(img, mnt, FS_WRITE));
	assert_int_equal(wait_child(pid), 0);
	assert_true(POLL_5S(loops_under(dir) == 0));
	assert_int_equal(mounts_under(dir), 0);

	/* The file is in the image: once through debugfs, once mounted again. */
	assert_int_equal(run_sh("debugfs -R 'cat /hello' '%s?offset=1048576' 2>/dev/null | grep -qx world",
				img), 0);
	assert_int_equal(run_sh("e2fsck -fn '%s?offset=1048576' >/dev/null 2>&1", img), 0);
	pid = fork();
	if (pid == 0)
		_exit(fs_child(img, mnt, FS_CHECK));
	assert_int_equal(wait_child(pid), 0);
	assert_true(POLL_5S(loops_under(dir) == 0));
}

static void test_rootfs_mount_error(void **state)
{
	const char *dir = *state;
	char img[PATH_MAX], mnt[PATH_MAX], log[PATH_MAX];
	pid_t pid;

	REQUIRE_ROOT();
	PATHF(img, "%s/zero.img", dir);
	PATHF(mnt, "%s/mnt", dir);
	PATHF(log, "%s/log", dir);
	make_sparse(img, 8 * MiB);  /* no filesystem at all */
	pid = fork();
	if (pid == 0) {
		struct af_error *err = NULL;
		struct rootfs fs = { .loop = { .fd = 7777 } };  /* must stay untouched */
		if (namespace_enter(&err) < 0)
			_exit(2);
		if (rootfs_mount(img, 0, 0, "ext4", mnt, &fs, &err) != -1)
			_exit(3);
		FILE *f = fopen(log, "w");
		fprintf(f, "%s\n", af_error_msg(err));
		fclose(f);
		af_error_free(err);
		_exit(fs.loop.fd == 7777 ? 0 : 4);
	}
	assert_int_equal(wait_child(pid), 0);
	{
		_cleanup_free_ char *msg = read_text(log);
		assert_non_null(msg);
		assert_non_null(strstr(msg, "cannot mount /dev/loop"));
		assert_non_null(strstr(msg, mnt));
		assert_non_null(strstr(msg, "ext4"));
	}
	assert_true(POLL_5S(loops_under(dir) == 0));
}

/* ---- SIGKILL leaves nothing ------------------------------------------------ */

struct sleeper {
	char secs[32];
};

static int run_sleep(void *arg)
{
	struct sleeper *s = arg;
	char *argv[] = { "sleep", s->secs, NULL };
	struct spawn_opts o = { .argv = argv, .out_fd = -1, .in_fd = -1 };
	struct af_error *err = NULL;

	if (spawn_run(&o, &err) < 0)
		fprintf(stderr, "%s\n", af_error_msg(err));
	return 1;
}

/* The host pid of a process whose command line is exactly "sleep SECS". */
static pid_t find_sleep(const char *secs)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;
	char want[64];
	size_t wlen = (size_t)snprintf(want, sizeof(want), "sleep%c%s%c", 0, secs, 0);

	while (d && (e = readdir(d)) && !found) {
		char path[300], buf[64];
		int fd;
		ssize_t n;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		close(fd);
		if (n == (ssize_t)wlen && memcmp(buf, want, wlen) == 0)
			found = atoi(e->d_name);
	}
	if (d)
		closedir(d);
	return found;
}

struct ready {
	pid_t isolated;
	char loop[32];
};

static _Noreturn void doomed_engine(const char *img, const char *mnt, struct sleeper *s, int wfd)
{
	struct af_error *err = NULL;
	struct rootfs fs = { .loop = { .fd = -1 } };
	struct ready r = { 0 };

	if (namespace_enter(&err) < 0 || rootfs_mount(img, MiB, 64 * MiB, "ext4", mnt, &fs, &err) < 0)
		_exit(2);
	r.isolated = namespace_fork_isolated(run_sleep, s, -1, &err);
	if (r.isolated < 0)
		_exit(3);
	snprintf(r.loop, sizeof(r.loop), "%s", fs.loop.path);
	if (write(wfd, &r, sizeof(r)) != sizeof(r))
		_exit(4);
	for (;;)
		pause();
}

static void test_sigkill_leaves_nothing(void **state)
{
	const char *dir = *state;
	char img[PATH_MAX], mnt[PATH_MAX];
	struct sleeper s;
	struct ready r;
	pid_t engine, sleeper;
	int p[2];

	REQUIRE_ROOT();
	PATHF(img, "%s/disk.img", dir);
	PATHF(mnt, "%s/root", dir);
	make_ext4(img);
	snprintf(s.secs, sizeof(s.secs), "%d", 100000 + getpid());
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	engine = fork();
	if (engine == 0) {
		close(p[0]);
		doomed_engine(img, mnt, &s, p[1]);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &r, sizeof(r)), sizeof(r));
	close(p[0]);
	assert_true(POLL_5S((sleeper = find_sleep(s.secs)) > 0));
	assert_int_equal(loops_under(dir), 1);
	/* Private namespace: even alive, the engine's mount is not ours to see. */
	assert_int_equal(mounts_under(dir), 0);

	assert_int_equal(kill(engine, SIGKILL), 0);
	assert_int_equal(wait_child(engine), 128 + SIGKILL);
	assert_true(POLL_5S(pid_gone(r.isolated)));
	assert_true(POLL_5S(pid_gone(sleeper)));
	assert_true(POLL_5S(loops_under(dir) == 0));
	assert_int_equal(mounts_under(dir), 0);
	{
		char attr[PATH_MAX], *b;
		PATHF(attr, "/sys/block/%s/loop/backing_file", strrchr(r.loop, '/') + 1);
		b = read_text(attr);
		assert_true(!b || !str_has_prefix(b, dir));
		free(b);
	}
}

/* ---- spawn_run ------------------------------------------------------- */

static int spawn_argv(char *const *argv, int out_fd, double deadline, struct af_error **err)
{
	struct spawn_opts o = { .argv = argv, .out_fd = out_fd, .in_fd = -1, .deadline = deadline };
	return spawn_run(&o, err);
}

static void test_spawn_status(void **state)
{
	struct af_error *err = NULL;
	char *ok[] = { "true", NULL };
	char *three[] = { "sh", "-c", "exit 3", NULL };
	char *sig[] = { "sh", "-c", "kill -TERM $$", NULL };
	char *missing[] = { "amiforge-no-such-command", NULL };

	assert_int_equal(spawn_argv(ok, -1, 0, &err), 0);
	assert_null(err);

	assert_int_equal(spawn_argv(three, -1, 0, &err), -1);
	assert_string_equal(af_error_msg(err), "'sh' exited with status 3");
	af_error_clear(&err);

	assert_int_equal(spawn_argv(sig, -1, 0, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "'sh' killed by signal 15"));
	af_error_clear(&err);

	assert_int_equal(spawn_argv(missing, -1, 0, &err), -1);
	assert_int_equal(af_error_errno(err), ENOENT);
	assert_non_null(strstr(af_error_msg(err), "cannot run 'amiforge-no-such-command'"));
	af_error_clear(&err);
}

static void test_spawn_timeout(void **state)
{
	const char *dir = *state;
	char out[PATH_MAX];
	_cleanup_free_ char *pgid_s = NULL;
	char *argv[] = { "sh", "-c", "echo $$; sleep 10 & exec sleep 10", NULL };
	struct af_error *err = NULL;
	double t0, took;
	pid_t pgid;
	int fd;

	PATHF(out, "%s/out", dir);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	t0 = now_monotonic();

	assert_true(fd >= 0);
	/* Orphans of the killed group come to us, to be reaped below. */
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	assert_int_equal(spawn_argv(argv, fd, t0 + 0.5, &err), -1);
	took = now_monotonic() - t0;
	close(fd);
	assert_int_equal(af_error_errno(err), ETIMEDOUT);
	assert_string_equal(af_error_msg(err), "'sh' timed out after 0.5s");
	af_error_clear(&err);
	assert_true(took >= 0.45 && took < 2.0);

	pgid_s = read_text(out);
	assert_non_null(pgid_s);
	pgid = atoi(pgid_s);
	assert_true(pgid > 1);
	assert_true(POLL_5S((waitpid(-1, NULL, WNOHANG), kill(-pgid, 0) < 0 && errno == ESRCH)));
	prctl(PR_SET_CHILD_SUBREAPER, 0);

	/* A deadline already past: not even started. */
	assert_int_equal(spawn_argv(argv, -1, now_monotonic() - 1, &err), -1);
	assert_int_equal(af_error_errno(err), ETIMEDOUT);
	af_error_clear(&err);
}

static void test_spawn_env_and_stdio(void **state)
{
	const char *dir = *state;
	char out[PATH_MAX], in[PATH_MAX];
	char *text;
	char *env_argv[] = { "env", NULL };
	char *cat_argv[] = { "cat", NULL };
	char *custom_env[] = { "PATH=/usr/bin:/bin", "FOO=bar", NULL };
	struct af_error *err = NULL;
	int fd, infd;

	PATHF(out, "%s/out", dir);
	PATHF(in, "%s/in", dir);

	setenv("AMIFORGE_TEST_SECRET", "must-not-leak", 1);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_int_equal(spawn_argv(env_argv, fd, 0, &err), 0);
	close(fd);
	text = read_text(out);
	assert_string_equal(text, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
				  "LANG=C.UTF-8\nDEBIAN_FRONTEND=noninteractive\nHOME=/root\nTERM=dumb\n");
	free(text);
	unsetenv("AMIFORGE_TEST_SECRET");

	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	{
		struct spawn_opts o = { .argv = env_argv, .env = custom_env, .out_fd = fd, .in_fd = -1 };
		assert_int_equal(spawn_run(&o, &err), 0);
	}
	close(fd);
	text = read_text(out);
	assert_string_equal(text, "PATH=/usr/bin:/bin\nFOO=bar\n");
	free(text);

	/* stdin from a file; stdout and stderr both to out. */
	fd = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_int_equal(write(fd, "line\n", 5), 5);
	close(fd);
	infd = open(in, O_RDONLY | O_CLOEXEC);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	{
		char *both[] = { "sh", "-c", "cat; echo err >&2", NULL };
		struct spawn_opts o = { .argv = both, .out_fd = fd, .in_fd = infd };
		assert_int_equal(spawn_run(&o, &err), 0);
	}
	close(fd);
	close(infd);
	text = read_text(out);
	assert_string_equal(text, "line\nerr\n");
	free(text);

	/* Default stdin is /dev/null: cat ends at once. */
	assert_int_equal(spawn_argv(cat_argv, -1, now_monotonic() + 5, &err), 0);

	/* No fd of ours reaches the command. */
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	{
		int leak = open("/dev/null", O_RDONLY);  /* deliberately not O_CLOEXEC */
		char *ls[] = { "ls", "/proc/self/fd", NULL };
		assert_int_equal(spawn_argv(ls, fd, 0, &err), 0);
		close(leak);
	}
	close(fd);
	text = read_text(out);
	assert_string_equal(text, "0\n1\n2\n3\n");  /* 3: ls's own directory fd */
	free(text);
}

/* ---- spawn_run: status as data, a kept fd, the background, cancel ------ */

static int argv_status(char *const *argv, int *status, struct af_error **err)
{
	struct spawn_opts o = { .argv = argv, .out_fd = -1, .in_fd = -1 };
	return spawn_status(&o, status, err);
}

static void test_spawn_status_as_data(void **state)
{
	struct af_error *err = NULL;
	char *three[] = { "sh", "-c", "exit 3", NULL };
	char *sig[] = { "sh", "-c", "kill -TERM $$", NULL };
	char *missing[] = { "amiforge-no-such-command", NULL };
	char *slow[] = { "sleep", "10", NULL };
	int status = -1;

	assert_int_equal(argv_status(three, &status, &err), 0);
	assert_null(err);
	assert_int_equal(status, 3);
	assert_int_equal(argv_status(sig, &status, &err), 0);
	assert_int_equal(status, 128 + SIGTERM);

	/* Not running at all, or not ending in time, is still an error. */
	status = -1;
	assert_int_equal(argv_status(missing, &status, &err), -1);
	assert_int_equal(af_error_errno(err), ENOENT);
	assert_int_equal(status, -1);
	af_error_clear(&err);
	{
		struct spawn_opts o = { .argv = slow, .out_fd = -1, .in_fd = -1,
					.deadline = now_monotonic() + 0.2 };
		assert_int_equal(spawn_status(&o, &status, &err), -1);
		assert_int_equal(af_error_errno(err), ETIMEDOUT);
		assert_int_equal(status, -1);
		af_error_clear(&err);
	}
}

/* What SCRIPT wrote on the write end of a pipe it keeps as fd AS. */
static char *spawn_keep_read(const char *script, int as)
{
	int p[2];
	char buf[64] = "";
	char *argv[] = { "sh", "-c", (char *)script, NULL };
	struct af_error *err = NULL;
	ssize_t n;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	struct spawn_opts o = { .argv = argv, .out_fd = -1, .in_fd = -1, .keep_fd = p[1],
				.keep_fd_as = as };
	assert_int_equal(spawn_run(&o, &err), 0);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	return n >= 0 ? strdup(buf) : NULL;
}

static void test_spawn_keep_fd(void **state)
{
	struct af_error *err = NULL;
	char *text;
	int probe[2], as;

	text = spawn_keep_read("echo hi >&5", 5);
	assert_string_equal(text, "hi\n");
	free(text);

	/* AS: the number the child's end of spawn's report pipe gets (the
	 * next pipe after the test's own).  The report pipe moves out of the
	 * way, and still reports a failed exec. */
	assert_int_equal(pipe2(probe, O_CLOEXEC), 0);
	as = probe[1] + 2;
	close(probe[0]);
	close(probe[1]);
	{
		char *script = NULL;
		assert_true(asprintf(&script, "echo collide >&%d", as) > 0);
		text = spawn_keep_read(script, as);
		assert_string_equal(text, "collide\n");
		free(text);
		free(script);
	}
	{
		int p[2];
		char *missing[] = { "amiforge-no-such-command", NULL };
		assert_int_equal(pipe2(p, O_CLOEXEC), 0);
		struct spawn_opts o = { .argv = missing, .out_fd = -1, .in_fd = -1, .keep_fd = p[1],
					.keep_fd_as = as };
		assert_int_equal(spawn_run(&o, &err), -1);
		assert_int_equal(af_error_errno(err), ENOENT);
		af_error_clear(&err);
		close(p[0]);
		close(p[1]);
	}
}

static void test_spawn_start(void **state)
{
	struct af_error *err = NULL;
	_cleanup_free_ char *script = NULL;
	char *missing[] = { "amiforge-no-such-command", NULL };
	char buf[32] = "";
	int p[2], status = 0;
	pid_t pid;

	/* The pipe's write end, kept under its own number. */
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_true(asprintf(&script, "echo $$ >&%d; exec sleep 30", p[1]) > 0);
	char *argv[] = { "sh", "-c", script, NULL };
	struct spawn_opts o = { .argv = argv, .out_fd = -1, .in_fd = -1, .keep_fd = p[1] };
	pid = spawn_start(&o, &err);
	assert_true(pid > 0);
	close(p[1]);
	assert_true(read(p[0], buf, sizeof(buf) - 1) > 0);
	close(p[0]);
	assert_int_equal(atoi(buf), pid);
	assert_int_equal(getpgid(pid), pid);  /* its own process group */
	assert_int_equal(waitpid(pid, &status, WNOHANG), 0);  /* still running */
	spawn_kill(pid, &status);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	struct spawn_opts bad = { .argv = missing, .out_fd = -1, .in_fd = -1 };
	assert_int_equal(spawn_start(&bad, &err), -1);
	assert_int_equal(af_error_errno(err), ENOENT);
	assert_non_null(strstr(af_error_msg(err), "cannot run 'amiforge-no-such-command'"));
	af_error_clear(&err);
}

static volatile sig_atomic_t cancel_flag;

static void on_alarm(int sig)
{
	cancel_flag = sig;
}

static void test_spawn_cancel(void **state)
{
	const char *dir = *state;
	char out[PATH_MAX];
	char *argv[] = { "sh", "-c", "echo $$; sleep 30 & exec sleep 30", NULL };
	struct sigaction sa = { .sa_handler = on_alarm }, old;
	struct itimerval it = { .it_value = { 0, 300000 } };
	struct af_error *err = NULL;
	_cleanup_free_ char *pgid_s = NULL;
	int fd, status = -1;
	double t0, took;

	PATHF(out, "%s/out", dir);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	cancel_flag = 0;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	struct spawn_opts o = { .argv = argv, .out_fd = fd, .in_fd = -1, .cancel = &cancel_flag };
	t0 = now_monotonic();
	assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
	assert_int_equal(spawn_status(&o, &status, &err), -1);
	took = now_monotonic() - t0;
	close(fd);
	sigaction(SIGALRM, &old, NULL);
	assert_int_equal(cancel_flag, SIGALRM);
	assert_int_equal(af_error_errno(err), ECANCELED);
	assert_string_equal(af_error_msg(err), "'sh' stopped: interrupted");
	af_error_clear(&err);
	assert_int_equal(status, -1);
	assert_true(took >= 0.25 && took < 2.0);

	/* The whole process group is gone, the background sleep too. */
	pgid_s = read_text(out);
	assert_non_null(pgid_s);
	assert_true(atoi(pgid_s) > 1);
	assert_true(POLL_5S((waitpid(-1, NULL, WNOHANG), kill(-atoi(pgid_s), 0) < 0 && errno == ESRCH)));
	prctl(PR_SET_CHILD_SUBREAPER, 0);

	/* Already cancelled: not even started. */
	assert_int_equal(spawn_run(&o, &err), -1);
	assert_int_equal(af_error_errno(err), ECANCELED);
	af_error_clear(&err);
}

/* ---- the chroot ------------------------------------------------------------ */

static void make_min_root(const char *root)
{
	assert_int_equal(run_sh("set -e; R='%s'; mkdir -p \"$R/bin\" \"$R/etc\"; "
				"for b in sh ls cat; do p=$(command -v $b); cp -L \"$p\" \"$R/bin/$b\"; "
				"for l in $(ldd \"$p\" | grep -o '/[^ ]*'); do "
				"mkdir -p \"$R$(dirname $l)\"; cp -L \"$l\" \"$R$l\"; done; done",
				root), 0);
}

struct chroot_case {
	const char *root;
	const char *out;  /* output of commands run in the chroot */
	bool own_files;   /* the image has its own policy-rc.d and resolv.conf */
};

static int in_chroot(const struct chroot_case *c, const char *script)
{
	char *argv[] = { "sh", "-c", (char *)script, NULL };
	struct af_error *err = NULL;
	int fd = open(c->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	struct spawn_opts o = { .argv = argv, .chroot = c->root, .out_fd = fd, .in_fd = -1,
				.deadline = now_monotonic() + 10 };
	int rc = spawn_run(&o, &err);

	if (rc < 0)
		printf("in chroot: %s\n", af_error_msg(err));
	af_error_free(err);
	close(fd);
	if (rc < 0)
		dump(c->out);
	return rc;
}

static bool file_is(const char *path, const char *want)
{
	char *s = read_text(path);
	bool ok = s && strcmp(s, want) == 0;
	if (!ok)
		printf("%s: got \"%s\", want \"%s\"\n", path, s ? s : "(unreadable)", want);
	free(s);
	return ok;
}

static bool file_contains(const char *path, const char *want)
{
	char *s = read_text(path);
	bool ok = s && strstr(s, want);
	if (!ok)
		printf("%s: got \"%s\", want it to contain \"%s\"\n", path, s ? s : "(unreadable)", want);
	free(s);
	return ok;
}

static int in_chroot_net(const struct chroot_case *c, const char *script)
{
	char *argv[] = { "sh", "-c", (char *)script, NULL };
	struct af_error *err = NULL;
	int fd = open(c->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	struct spawn_opts o = { .argv = argv, .chroot = c->root, .network = true, .out_fd = fd,
				.in_fd = -1, .deadline = now_monotonic() + 20 };
	int rc = spawn_run(&o, &err);

	if (rc < 0)
		printf("in chroot with network: %s\n", af_error_msg(err));
	af_error_free(err);
	close(fd);
	return rc;
}

static bool have_pasta(void)
{
	return run_sh("command -v pasta >/dev/null") == 0;
}

/* The jail's limits, read back from inside (DESIGN §6). */
static int jail_checks(const struct chroot_case *c, const char *self_comm)
{
	/* /proc is the jail's: PID 1 is its init, a fork of this process. */
	if (in_chroot(c, "cat /proc/1/comm") < 0 || !self_comm || !file_is(c->out, self_comm))
		return 20;
	/* ... and not dumpable: the engine's environment stays closed. */
	if (in_chroot(c, "cat /proc/1/environ") == 0)
		return 21;
	if (in_chroot(c, "cat /proc/self/status") < 0 || !file_contains(c->out, "CapBnd:\t00000000a80400fb\n") ||
	    !file_contains(c->out, "CapEff:\t00000000a80400fb\n") || !file_contains(c->out, "NoNewPrivs:\t1\n") ||
	    !file_contains(c->out, "Seccomp:\t2\n"))
		return 22;
	if (in_chroot(c, "cat /proc/sys/kernel/hostname") < 0 || !file_is(c->out, "localhost\n"))
		return 23;
	/* The root is the image, its mounts nodev and nosuid; /sys and
	 * /proc/sys read-only; sysrq-trigger not writable. */
	if (in_chroot(c, "cat /proc/mounts") < 0 || !file_contains(c->out, "sysfs /sys sysfs ro,") || !file_contains(c->out, "proc /proc/sys proc ro,") ||
	    !file_contains(c->out, "tmpfs /dev tmpfs rw,nosuid,nodev,noexec"))
		return 24;
	if (in_chroot(c, "echo h > /proc/sysrq-trigger") == 0)
		return 25;
	/* Only stdin, stdout and stderr come in (3 is ls's own directory fd). */
	if (in_chroot(c, "ls /proc/self/fd") < 0 || !file_is(c->out, "0\n1\n2\n3\n"))
		return 26;
	return 0;
}

/* Runs as PID 1 of its own namespace; returns the number of the first
 * check that failed, 0 when all passed. */
static int chroot_checks(void *arg)
{
	const struct chroot_case *c = arg;
	struct af_error *err = NULL;
	/* Still the host's /proc here: this process's name, whatever runs it. */
	_cleanup_free_ char *self_comm = read_text("/proc/self/comm");
	_cleanup_free_ char *p = NULL;
	struct stat st;
	int rc;

	if (getpid() != 1)
		return 1;
	if (chroot_prepare(c->root, &err) < 0) {
		printf("chroot_prepare: %s\n", af_error_msg(err));
		af_error_free(err);
		return 2;
	}
	if (c->own_files) {
		/* The image's policy-rc.d and (without network) resolv.conf stay. */
		if (in_chroot(c, "cat /usr/sbin/policy-rc.d") < 0 ||
		    !file_is(c->out, "#!/bin/sh\nexit 101\n"))
			return 12;
		if (in_chroot(c, "cat /etc/resolv.conf") < 0 || !file_is(c->out, "nameserver 192.0.2.1\n"))
			return 13;
		return 0;
	}
	rc = jail_checks(c, self_comm);
	if (rc)
		return rc;
	/* /dev: the host's null, bound into a nodev tmpfs; nothing in the image. */
	if (in_chroot(c, "ls -l /dev/null") < 0 || !file_contains(c->out, " 1, 3 ") ||
	    !file_contains(c->out, "crw-rw-rw-"))
		return 4;
	p = path_join(c->root, "dev/null");
	if (lstat(p, &st) == 0)
		return 4;
	if (in_chroot(c, "echo gone > /dev/null && cat /dev/null") < 0 || !file_is(c->out, ""))
		return 5;
	/* Without network the planted link was moved aside for a placeholder. */
	if (in_chroot(c, "cat /etc/resolv.conf") < 0 || !file_contains(c->out, "# amiforge: "))
		return 7;
	if (have_pasta()) {
		/* With network: the jail's resolver, read-only. */
		if (in_chroot_net(c, "cat /etc/resolv.conf") < 0 || !file_is(c->out, jail_resolv_conf()))
			return 8;
		if (in_chroot_net(c, "echo nameserver 6.6.6.6 >> /etc/resolv.conf") == 0)
			return 8;
	} else {
		printf("SKIP the networked jail: pasta (package passt) is not installed\n");
	}
	/* devpts is a new instance: no pty of the host's in it. */
	if (in_chroot(c, "ls /dev/pts /dev/shm; echo rc=$?; ls -l /dev/ptmx /dev/fd; echo rc=$?") < 0 || !file_contains(c->out, "/dev/pts:\nptmx\n\n/dev/shm:\nrc=0\n") ||
	    !file_contains(c->out, "/dev/ptmx -> pts/ptmx") || !file_contains(c->out, "/dev/fd -> /proc/self/fd"))
		return 9;
	free(p);
	p = path_join(c->root, "usr/sbin/policy-rc.d");
	if (stat(p, &st) < 0 || (st.st_mode & 07777) != 0755 ||
	    in_chroot(c, "/usr/sbin/policy-rc.d; echo $?") < 0 || !file_is(c->out, "101\n"))
		return 10;
	/* The host's /etc/shadow was not touched through a planted symlink. */
	if (mounts_under("/etc/shadow") != 0)
		return 11;
	fflush(stdout);
	return 0;
}

static int run_isolated(struct chroot_case *c, const char *log)
{
	struct af_error *err = NULL;
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	pid_t pid = namespace_fork_isolated(chroot_checks, c, fd, &err);
	int rc;

	close(fd);
	assert_true(pid > 0);
	rc = wait_child(pid);
	if (rc != 0)
		dump(log);
	return rc;
}

static void test_chroot(void **state)
{
	const char *dir = *state;
	char root[PATH_MAX], out[PATH_MAX], log[PATH_MAX], policy[PATH_MAX], resolv[PATH_MAX];
	char saved[PATH_MAX];
	struct chroot_case c;
	struct af_error *err = NULL;

	REQUIRE_NO_VALGRIND();
	struct stat st;

	REQUIRE_ROOT();
	PATHF(root, "%s/root", dir);
	PATHF(out, "%s/out", dir);
	PATHF(log, "%s/log", dir);
	PATHF(policy, "%s/usr/sbin/policy-rc.d", root);
	PATHF(resolv, "%s/etc/resolv.conf", root);
	PATHF(saved, "%s/etc/resolv.conf.amiforge-saved", root);
	make_min_root(root);
	c = (struct chroot_case){ .root = root, .out = out };
	/* A planted symlink to the host's shadow file. */
	assert_int_equal(symlink("/etc/shadow", resolv), 0);

	assert_int_equal(run_isolated(&c, log), 0);
	assert_int_equal(mounts_under(root), 0);
	/* In the image until unprepare: policy-rc.d and the placeholder. */
	assert_int_equal(stat(policy, &st), 0);
	assert_int_equal(lstat(resolv, &st), 0);
	assert_true(S_ISREG(st.st_mode));

	assert_int_equal(chroot_unprepare(root, &err), 0);
	assert_null(err);
	assert_int_equal(access(policy, F_OK), -1);
	{
		char target[64] = "";
		assert_int_equal(readlink(resolv, target, sizeof(target) - 1), strlen("/etc/shadow"));
		assert_string_equal(target, "/etc/shadow");
		assert_int_equal(access(saved, F_OK), -1);
	}
	/* Twice is harmless. */
	assert_int_equal(chroot_unprepare(root, &err), 0);
}

static void test_chroot_keeps_own_files(void **state)
{
	const char *dir = *state;
	char root[PATH_MAX], out[PATH_MAX], log[PATH_MAX], policy[PATH_MAX], resolv[PATH_MAX];
	struct chroot_case c;
	struct af_error *err = NULL;

	REQUIRE_ROOT();
	REQUIRE_NO_VALGRIND();
	PATHF(root, "%s/root", dir);
	PATHF(out, "%s/out", dir);
	PATHF(log, "%s/log", dir);
	PATHF(policy, "%s/usr/sbin/policy-rc.d", root);
	PATHF(resolv, "%s/etc/resolv.conf", root);
	make_min_root(root);
	c = (struct chroot_case){ .root = root, .out = out };
	/* The image's own: exactly "exit 101", and a real resolv.conf. */
	assert_int_equal(run_sh("mkdir -p '%s/usr/sbin' && printf '#!/bin/sh\\nexit 101\\n' > '%s' && "
				"chmod 755 '%s' && echo 'nameserver 192.0.2.1' > '%s'",
				root, policy, policy, resolv), 0);

	c.own_files = true;
	assert_int_equal(run_isolated(&c, log), 0);
	assert_int_equal(mounts_under(root), 0);
	assert_int_equal(chroot_unprepare(root, &err), 0);
	assert_true(file_is(policy, "#!/bin/sh\nexit 101\n"));
	assert_true(file_is(resolv, "nameserver 192.0.2.1\n"));
}

/* The one builder of a command's environment: the default, the host's
 * proxies only when asked, and extras replacing a default by name. */
static void test_exec_env(void **state)
{
	(void)state;
	setenv("https_proxy", "http://proxy.invalid:3128", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "never-in-a-command", 1);
	const char *const extra[] = { "HOME=/home/x", "container=lxc", NULL };
	char **with = exec_env_new(true, extra), **without = exec_env_new(false, NULL);
	size_t n = 0;
	bool proxy = false, home = false, lxc = false;
	for (; with[n]; n++) {
		proxy |= !strcmp(with[n], "https_proxy=http://proxy.invalid:3128");
		home |= !strcmp(with[n], "HOME=/home/x");
		lxc |= !strcmp(with[n], "container=lxc");
		assert_false(!strcmp(with[n], "HOME=/root"));
		assert_null(strstr(with[n], "never-in-a-command"));
	}
	assert_true(proxy && home && lxc);
	assert_int_equal(n, 7); /* 5 defaults (HOME replaced), the proxy, container */
	for (n = 0; without[n]; n++)
		assert_null(strstr(without[n], "proxy"));
	assert_int_equal(n, 5);
	exec_env_free(with);
	exec_env_free(without);
	unsetenv("https_proxy");
	unsetenv("AWS_SECRET_ACCESS_KEY");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec_env),
		cmocka_unit_test(test_require_root),
		cmocka_unit_test_setup_teardown(test_loop_offset_sizelimit, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loop_readonly_to_end, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_loop_errors, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_rootfs_mount, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_rootfs_mount_error, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_sigkill_leaves_nothing, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_spawn_status, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_spawn_timeout, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_spawn_env_and_stdio, setup_dir, teardown_dir),
		cmocka_unit_test(test_spawn_status_as_data),
		cmocka_unit_test(test_spawn_keep_fd),
		cmocka_unit_test(test_spawn_start),
		cmocka_unit_test_setup_teardown(test_spawn_cancel, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_chroot, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_chroot_keeps_own_files, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
