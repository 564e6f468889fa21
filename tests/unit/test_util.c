/* SPDX-License-Identifier: Apache-2.0 */
/* util helpers for untrusted input: str_printable (what status prints) and
 * rm_tree_at (what clean --all removes with). */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#include <openssl/err.h>
#include <openssl/evp.h>

static char *tmpdir;

static int setup(void **state)
{
	(void)state;
	tmpdir = test_mkdtemp();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_rmdir_r(tmpdir);
	free(tmpdir);
	return 0;
}

static void test_hex(void **state)
{
	static const unsigned char bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
	char out[2 * sizeof(bytes) + 1];
	unsigned char back[8];
	size_t n = 0;

	assert_ptr_equal(hex_encode(bytes, sizeof(bytes), out), out);
	assert_string_equal(out, "00017f80abff");
	assert_string_equal(hex_encode(bytes, 0, out), "");
	_cleanup_free_ char *dup = hex_encode_dup(bytes, sizeof(bytes));
	assert_string_equal(dup, "00017f80abff");

	assert_int_equal(hex_decode("00017F80abFF", back, sizeof(back), &n), 0);
	assert_int_equal(n, sizeof(bytes));
	assert_memory_equal(back, bytes, sizeof(bytes));
	assert_int_equal(hex_decode("", back, sizeof(back), &n), 0);
	assert_int_equal(n, 0);
	/* Odd length, a non-digit, too long for the buffer. */
	assert_int_equal(hex_decode("abc", back, sizeof(back), NULL), -1);
	assert_int_equal(hex_decode("0g", back, sizeof(back), NULL), -1);
	assert_int_equal(hex_decode(" 1", back, sizeof(back), NULL), -1);
	assert_int_equal(hex_decode("000102030405060708", back, sizeof(back), NULL), -1);
	assert_int_equal(hex_digit_value('F'), 15);
	assert_int_equal(hex_digit_value('x'), -1);
}

static void test_uuid_derive(void **state)
{
	char a[37], b[37];
	uuid_derive("seed", "root", a);
	uuid_derive("seed", "root", b);
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), 36);
	assert_true(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
	assert_int_equal(a[14], '4');
}

static void test_error_openssl(void **state)
{
	struct af_error *err = NULL;
	/* A cipher OpenSSL does not know leaves an entry on its queue. */
	assert_null(EVP_CIPHER_fetch(NULL, "no-such-cipher", NULL));
	assert_int_equal(af_error_openssl(&err, "set up '%s'", "x"), -1);
	assert_non_null(err);
	assert_true(str_has_prefix(af_error_msg(err), "set up 'x': "));
	assert_int_equal(ERR_peek_error(), 0);
	af_error_clear(&err);
	/* An empty queue adds nothing. */
	assert_int_equal(af_error_openssl(&err, "plain"), -1);
	assert_string_equal(af_error_msg(err), "plain");
	af_error_clear(&err);
}

static void test_printable(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "plain text, é and ✓", "plain text, é and ✓" },
		{ "a\x1b[31mred\x1b[0m", "a\\x1b[31mred\\x1b[0m" },
		{ "line\nnext\ttab\rret", "line\\nnext\\ttab\\rret" },
		{ "back\\slash", "back\\\\slash" },
		{ "del\x7f bell\a", "del\\x7f bell\\x07" },
		{ "c1 \xc2\x9b" "2J", "c1 \\u009b2J" },              /* CSI as one code point */
		{ "rlo \xe2\x80\xae" "txt.exe", "rlo \\u202etxt.exe" }, /* bidi override */
		{ "bad \xff\xfe end", "bad \\xff\\xfe end" },
		{ "overlong \xc0\xaf", "overlong \\xc0\\xaf" },
		{ "surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80" },
		{ "cut \xe2\x80", "cut \\xe2\\x80" },
		{ "", "" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *got = str_printable(cases[i].in);
		assert_string_equal(got, cases[i].out);
	}
	_cleanup_free_ char *null = str_printable(NULL);
	assert_string_equal(null, "");
}

static void make_file(const char *dir, const char *name)
{
	_cleanup_free_ char *p = path_join(dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
}

static void test_rm_tree(void **state)
{
	(void)state;
	/* A tree with odd names, and links out of it to a file and a tree. */
	_cleanup_free_ char *outside = path_join(tmpdir, "outside");
	_cleanup_free_ char *top = path_join(tmpdir, "it's a $(touch pwned)\nname");
	_cleanup_free_ char *deep = path_join(top, "a/b/c d/'e'");
	assert_int_equal(mkdir(outside, 0755), 0);
	make_file(outside, "keep");
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(mkdir_p(deep, 0700, &err), 0);
	make_file(deep, "f\nnewline");
	make_file(top, "plain");
	_cleanup_free_ char *ln1 = path_join(top, "a/to-dir");
	_cleanup_free_ char *ln2 = path_join(deep, "to-file");
	_cleanup_free_ char *keep = path_join(outside, "keep");
	assert_int_equal(symlink(outside, ln1), 0);
	assert_int_equal(symlink(keep, ln2), 0);

	_cleanup_fd_ int fd = open(tmpdir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	const char *name = strrchr(top, '/') + 1;
	assert_int_equal(rm_tree_at(fd, name, top, &err), 0);
	assert_int_equal(access(top, F_OK), -1);
	assert_int_equal(errno, ENOENT);
	/* The links went, not what they pointed at. */
	assert_int_equal(access(keep, F_OK), 0);
	_cleanup_free_ char *pwned = path_join(tmpdir, "pwned");
	assert_int_equal(access(pwned, F_OK), -1);

	/* Missing: fine.  A plain file and a link at the top: removed. */
	assert_int_equal(rm_tree_at(fd, "missing", "missing", &err), 0);
	_cleanup_free_ char *toplink = path_join(tmpdir, "toplink");
	assert_int_equal(symlink(outside, toplink), 0);
	assert_int_equal(rm_tree_at(fd, "toplink", toplink, &err), 0);
	assert_int_equal(access(keep, F_OK), 0);
	assert_null(err);
}

/* The child's side: mount a tmpfs on TOP/root, try to remove TOP.  Fixed
 * buffers: the child leaves with _exit, which frees nothing. */
static int mount_child(const char *top)
{
	char mnt[4200], file[4300], want[8600];
	snprintf(mnt, sizeof(mnt), "%s/root", top);
	snprintf(file, sizeof(file), "%s/on-the-other-fs", mnt);
	snprintf(want, sizeof(want), "not removing '%s': another filesystem is mounted there; unmount "
		 "it and run the command again", mnt);
	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("none", mnt, "tmpfs", 0, NULL) < 0)
		return 77;
	int f = open(file, O_WRONLY | O_CREAT, 0600);
	if (f < 0)
		return 2;
	close(f);
	int fd = open(tmpdir, O_RDONLY | O_DIRECTORY);
	struct af_error *e = NULL;
	int r = rm_tree_at(fd, "state", top, &e);
	bool ok = r == -1 && af_error_errno(e) == EXDEV && !strcmp(af_error_msg(e), want);
	if (!ok)
		fprintf(stderr, "got: %s\n", e ? af_error_msg(e) : "(no error)");
	af_error_free(e);
	close(fd);
	return ok && access(file, F_OK) == 0 ? 0 : 1;
}

/* A mount point inside is refused before anything under it is touched
 * (in a private mount namespace of a child, so nothing stays mounted). */
static void test_rm_tree_mount(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		test_skip_because("needs root to mount a tmpfs");
		return;
	}
	/* No heap in use across fork: the child leaves with _exit. */
	char top[4096], mnt[4200];
	snprintf(top, sizeof(top), "%s/state", tmpdir);
	snprintf(mnt, sizeof(mnt), "%s/root", top);
	assert_int_equal(mkdir(top, 0700), 0);
	assert_int_equal(mkdir(mnt, 0700), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(mount_child(top));
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		test_skip_because("cannot mount a tmpfs in a private mount namespace here");
		return;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the child %s %d", WIFEXITED(status) ? "exited" : "died of signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_uuid_derive),
		cmocka_unit_test(test_error_openssl),
		cmocka_unit_test(test_printable),
		cmocka_unit_test_setup_teardown(test_rm_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rm_tree_mount, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
