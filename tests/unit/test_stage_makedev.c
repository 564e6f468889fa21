/* SPDX-License-Identifier: Apache-2.0 */
/* makedev: the device tables (std, named devices, generic, unknown names)
 * and group ids, then, as root, nodes made for real in a plain directory.
 * The stage file is included so its static helpers can be tested. */
#include "stagetest.h"

#include <sys/sysmacros.h>

#include "../../stages/makedev.c"

static const struct md_node *find_node(const struct md_list *l, const char *name)
{
	const struct md_node *found = NULL;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, name) == 0)
			found = &l->v[i];
	return found;
}

static void assert_node(const struct md_list *l, const char *name, char type, unsigned ma, unsigned mi, mode_t mode,
			const char *group)
{
	const struct md_node *n = find_node(l, name);
	if (!n)
		fail_msg("node %s missing", name);
	assert_int_equal(n->type, type);
	assert_int_equal(n->major, ma);
	assert_int_equal(n->minor, mi);
	assert_int_equal(md_classes[n->cls].mode, mode);
	assert_string_equal(md_classes[n->cls].group, group);
}

static void test_makedev_std(void **state)
{
	struct md_list l = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(md_expand("std", "x86_64", &l, 0, &err), 0);
	assert_node(&l, "mem", 'c', 1, 1, 0640, "kmem");
	assert_node(&l, "kmem", 'c', 1, 2, 0640, "kmem");
	assert_node(&l, "null", 'c', 1, 3, 0666, "root");
	assert_node(&l, "port", 'c', 1, 4, 0640, "kmem");
	assert_node(&l, "zero", 'c', 1, 5, 0666, "root");
	assert_node(&l, "full", 'c', 1, 7, 0666, "root");
	assert_node(&l, "random", 'c', 1, 8, 0666, "root");
	assert_node(&l, "urandom", 'c', 1, 9, 0666, "root");
	assert_node(&l, "tty", 'c', 5, 0, 0666, "tty");
	assert_node(&l, "ram0", 'b', 1, 0, 0660, "disk");
	assert_node(&l, "ram16", 'b', 1, 16, 0660, "disk");
	assert_node(&l, "loop7", 'b', 7, 7, 0660, "disk");
	assert_null(find_node(&l, "loop8"));
	assert_int_equal(find_node(&l, "core")->type, 'l');
	char buf[64];
	assert_string_equal(md_link_target(find_node(&l, "core"), buf, sizeof(buf)), "/proc/kcore");
	assert_string_equal(md_link_target(find_node(&l, "ram"), buf, sizeof(buf)), "ram1");
	size_t n_std = l.n;
	/* MAKEDEV maps null and zero to std. */
	assert_int_equal(md_expand("null", "x86_64", &l, 0, &err), 0);
	assert_int_equal(l.n, 2 * n_std);
	free(l.v);
}

static void test_makedev_named(void **state)
{
	struct md_list l = { 0 };
	struct af_error *err = NULL;
	const char *names[] = { "console", "tty1", "ttyS0", "ttyS63", "sda", "xvda1", "loop0", "loop200", "hvc0",
				"ptmx",    "random", "urandom", "ptyp", "fd", "fd0", "st0", "scd0", "hdc" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		assert_int_equal(md_expand(names[i], "x86_64", &l, 0, &err), 0);
	assert_node(&l, "console", 'c', 5, 1, 0600, "tty");
	assert_node(&l, "tty0", 'c', 4, 0, 0600, "tty");
	assert_node(&l, "tty63", 'c', 4, 63, 0600, "tty");
	assert_node(&l, "vcs0", 'c', 7, 0, 0600, "tty");
	assert_node(&l, "vcsa1", 'c', 7, 129, 0600, "tty");
	assert_node(&l, "tty1", 'c', 4, 1, 0600, "tty");
	assert_node(&l, "ttyS0", 'c', 4, 64, 0660, "dialout");
	assert_node(&l, "ttyS63", 'c', 4, 127, 0660, "dialout");
	assert_node(&l, "sda", 'b', 8, 0, 0660, "disk");
	assert_node(&l, "sda15", 'b', 8, 15, 0660, "disk");
	assert_node(&l, "xvda1", 'b', 202, 1, 0660, "disk");
	assert_null(find_node(&l, "xvda"));
	assert_node(&l, "loop200", 'b', 7, 200, 0660, "disk");
	assert_node(&l, "hvc0", 'c', 229, 0, 0600, "tty");
	assert_node(&l, "ptmx", 'c', 5, 2, 0666, "tty");
	/* MAKEDEV's "urandom" alone is "readable". */
	assert_node(&l, "urandom", 'c', 1, 9, 0444, "root");
	assert_node(&l, "ptyp0", 'c', 2, 0, 0666, "tty");
	assert_node(&l, "ttypf", 'c', 3, 15, 0666, "tty");
	assert_node(&l, "fd0", 'b', 2, 0, 0660, "floppy");
	assert_node(&l, "fd0u1440", 'b', 2, 28, 0660, "floppy");
	assert_node(&l, "nst0a", 'c', 9, 224, 0660, "tape");
	assert_node(&l, "scd0", 'b', 11, 0, 0660, "cdrom");
	assert_node(&l, "hdc", 'b', 22, 0, 0660, "disk");
	assert_node(&l, "hdc24", 'b', 22, 24, 0660, "disk");
	char buf[64];
	assert_string_equal(md_link_target(find_node(&l, "sr0"), buf, sizeof(buf)), "scd0");
	assert_string_equal(md_link_target(find_node(&l, "stdout"), buf, sizeof(buf)), "fd/1");
	free(l.v);
}

static void test_makedev_generic_and_unknown(void **state)
{
	struct md_list l = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(md_expand("generic", "x86_64", &l, 0, &err), 0);
	assert_node(&l, "hda", 'b', 3, 0, 0660, "disk");
	assert_node(&l, "hdp", 'b', 89, 64, 0660, "disk");
	assert_node(&l, "sdp15", 'b', 8, 255, 0660, "disk");
	assert_node(&l, "rd/c7d31p7", 'b', 55, 255, 0660, "disk");
	assert_node(&l, "cciss/c0d0", 'b', 104, 0, 0660, "disk");
	assert_node(&l, "i2o/hdd", 'b', 80, 48, 0660, "disk");
	assert_node(&l, "input/mice", 'c', 13, 63, 0660, "root");
	assert_node(&l, "isdninfo", 'c', 45, 255, 0660, "dialout");
	assert_node(&l, "dpti1", 'c', 151, 0, 0660, "disk");
	assert_node(&l, "lp0", 'c', 6, 0, 0660, "lp");
	assert_node(&l, "fb7", 'c', 29, 7, 0660, "video");
	assert_node(&l, "dsp", 'c', 14, 3, 0660, "audio");
	assert_null(find_node(&l, "sunmouse"));
	free(l.v);
	l = (struct md_list){ 0 };
	assert_int_equal(md_expand("generic", "arm64", &l, 0, &err), 0);
	assert_non_null(find_node(&l, "sunmouse"));
	assert_null(find_node(&l, "rd/c0d0"));
	free(l.v);
	l = (struct md_list){ 0 };
	const char *bad[] = { "bogus", "tty64", "sdA", "loop256", "xvda16", "ttyS", "ram17" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = md_expand(bad[i], "x86_64", &l, 0, &err);
		if (strcmp(bad[i], "ttyS") == 0) { /* MAKEDEV's cvt: ttyS0..4 */
			assert_int_equal(r, 0);
			continue;
		}
		if (r == 0)
			fail_msg("%s should be unknown", bad[i]);
		assert_non_null(strstr(af_error_msg(err), "tty1, ttyS0"));
		af_error_clear(&err);
	}
	free(l.v);
}

static void test_makedev_groups(void **state)
{
	const char *group = "root:x:0:\ntty:x:5:\ndisk:x:66:\ndialout:x:120:admin\n";
	assert_int_equal(md_group_gid(group, "disk"), 66);
	assert_int_equal(md_group_gid(group, "dialout"), 120);
	assert_int_equal(md_group_gid(group, "kmem"), 15);
	assert_int_equal(md_group_gid(NULL, "tty"), 5);
	assert_int_equal(md_group_gid(NULL, "video"), 44);
}

/* ---- run for real ---- */

static void test_makedev(void **state)
{
	REQUIRE_ROOT();
	struct fixture *f = *state;
	char *root = path_join(f->dir, "root");
	char *etc = path_join(root, "etc");
	assert_int_equal(mkdir_p(etc, 0755, NULL), 0);
	char *group = path_join(etc, "group");
	const char *g = "root:x:0:\ntty:x:5:\ndialout:x:120:\n";
	assert_int_equal(write_file_atomic(group, g, strlen(g), 0644, NULL), 0);
	expect_ok(run_stage(f, "makedev", "{\"devices\": [\"generic\", \"zero\", \"null\", \"console\", \"std\", \"xvda1\", \"hvc0\"]}",
			    NULL, root));
	struct {
		const char *name;
		mode_t type;
		unsigned ma, mi;
		mode_t mode;
		gid_t gid;
	} want[] = {
		{ "null", S_IFCHR, 1, 3, 0666, 0 },     { "zero", S_IFCHR, 1, 5, 0666, 0 },
		{ "console", S_IFCHR, 5, 1, 0600, 5 },  { "tty", S_IFCHR, 5, 0, 0666, 5 },
		{ "ptmx", S_IFCHR, 5, 2, 0666, 5 },     { "mem", S_IFCHR, 1, 1, 0640, 15 },
		{ "ttyS0", S_IFCHR, 4, 64, 0660, 120 }, { "sda1", S_IFBLK, 8, 1, 0660, 6 },
		{ "xvda1", S_IFBLK, 202, 1, 0660, 6 },  { "tty1", S_IFCHR, 4, 1, 0600, 5 },
		{ "rd/c0d0p1", S_IFBLK, 48, 1, 0660, 6 }, { "hvc0", S_IFCHR, 229, 0, 0600, 5 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		char *p = xasprintf("%s/dev/%s", root, want[i].name);
		struct stat st;
		if (lstat(p, &st) < 0)
			fail_msg("%s missing", p);
		assert_int_equal(st.st_mode & S_IFMT, want[i].type);
		assert_int_equal(major(st.st_rdev), want[i].ma);
		assert_int_equal(minor(st.st_rdev), want[i].mi);
		assert_int_equal(st.st_mode & 07777, want[i].mode);
		assert_int_equal(st.st_uid, 0);
		assert_int_equal(st.st_gid, want[i].gid);
		free(p);
	}
	char *core = path_join(root, "dev/core");
	char buf[64] = "";
	assert_true(readlink(core, buf, sizeof(buf) - 1) > 0);
	assert_string_equal(buf, "/proc/kcore");
	/* Again: identical nodes stay; a changed one is replaced. */
	char *null = path_join(root, "dev/null");
	assert_int_equal(chmod(null, 0600), 0);
	char *tty1 = path_join(root, "dev/tty1");
	struct stat before, after;
	assert_int_equal(lstat(tty1, &before), 0);
	expect_ok(run_stage(f, "makedev", "{\"devices\": [\"std\", \"console\"]}", NULL, root));
	assert_int_equal(lstat(tty1, &after), 0);
	assert_int_equal(before.st_ino, after.st_ino);
	assert_int_equal(lstat(null, &after), 0);
	assert_int_equal(after.st_mode & 07777, 0666);
	expect_error(run_stage(f, "makedev", "{\"devices\": [\"nosuchdev\"]}", NULL, root), "does not know device 'nosuchdev'");
	free(core);
	free(null);
	free(tty1);
	free(group);
	free(etc);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_makedev_std),
		cmocka_unit_test(test_makedev_named),
		cmocka_unit_test(test_makedev_generic_and_unknown),
		cmocka_unit_test(test_makedev_groups),
		cmocka_unit_test_setup_teardown(test_makedev, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
