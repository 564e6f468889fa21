/* SPDX-License-Identifier: Apache-2.0 */
/* The bootloader stage's pure parts: menu.lst text (hd0 vs hd0,0, the
 * fallback entry), the kernel command line, GRUB 2 defaults and the grub.cfg
 * root= check, finding the kernel in /boot, and the GRUB-legacy filesystem
 * check on filesystems made with mke2fs. */
#include "testutil.h"

#include <sys/stat.h>

#include "../../stages/bootloader.c"

static void test_menu_unpartitioned(void **state)
{
	struct boot_menu m = {
		.partitioned = false,
		.timeout = 0,
		.cmdline = "root=LABEL=rootfs ro console=hvc0",
		.entries = { { "Linux 6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-9-amd64", "/boot/initrd.img-6.1.0-9-amd64" },
			     { "Linux 6.1.0-9-amd64 (fallback)", "/vmlinuz", "/initrd.img" } },
	};
	char *t = boot_menu_lst(&m);
	assert_string_equal(t, "# /boot/grub/menu.lst for PV-GRUB, written by amiforge.\n"
			       "default 0\n"
			       "fallback 1\n"
			       "timeout 0\n"
			       "hiddenmenu\n"
			       "\n"
			       "title Linux 6.1.0-9-amd64\n"
			       "root (hd0)\n"
			       "kernel /boot/vmlinuz-6.1.0-9-amd64 root=LABEL=rootfs ro console=hvc0\n"
			       "initrd /boot/initrd.img-6.1.0-9-amd64\n"
			       "\n"
			       "title Linux 6.1.0-9-amd64 (fallback)\n"
			       "root (hd0)\n"
			       "kernel /vmlinuz root=LABEL=rootfs ro console=hvc0\n"
			       "initrd /initrd.img\n");
	free(t);
}

static void test_menu_partitioned_no_initrd(void **state)
{
	struct boot_menu m = {
		.partitioned = true,
		.timeout = 5,
		.cmdline = "root=UUID=0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b ro console=hvc0 quiet",
		.entries = { { "A", "/boot/vmlinuz-1", NULL }, { "A (fallback)", "/boot/vmlinuz-1", NULL } },
	};
	char *t = boot_menu_lst(&m);
	assert_non_null(strstr(t, "timeout 5\n"));
	assert_non_null(strstr(t, "\ntitle A\nroot (hd0,0)\nkernel /boot/vmlinuz-1 root=UUID=0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b ro console=hvc0 quiet\n"));
	assert_non_null(strstr(t, "\ntitle A (fallback)\nroot (hd0,0)\n"));
	assert_null(strstr(t, "(hd0)"));
	assert_null(strstr(t, "initrd"));
	free(t);
}

static void test_cmdline(void **state)
{
	char *c = boot_cmdline("LABEL=r", "console=hvc0", NULL);
	assert_string_equal(c, "root=LABEL=r ro console=hvc0");
	free(c);
	c = boot_cmdline("LABEL=r", "console=tty0 console=ttyS0,115200n8", "net.ifnames=0");
	assert_string_equal(c, "root=LABEL=r ro console=tty0 console=ttyS0,115200n8 net.ifnames=0");
	free(c);
}

static void test_grub_defaults(void **state)
{
	char *t = boot_grub_defaults(1, "LABEL=rootfs", "console=tty0 console=ttyS0,115200n8", "quiet");
	assert_non_null(strstr(t, "\nGRUB_TIMEOUT=1\n"));
	assert_non_null(strstr(t, "\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200n8 quiet\"\n"));
	assert_non_null(strstr(t, "\nGRUB_TERMINAL=\"console serial\"\n"));
	assert_non_null(strstr(t, "\nGRUB_DISABLE_OS_PROBER=true\n"));
	assert_non_null(strstr(t, "\nGRUB_DEVICE=\"LABEL=rootfs\"\n"));
	assert_non_null(strstr(t, "\nGRUB_DISABLE_LINUX_UUID=true\n"));
	free(t);
}

static void test_grub_cfg_check(void **state)
{
	struct af_error *err = NULL;
	const char *good = "menuentry 'Debian' {\n"
			   "\tlinux\t/boot/vmlinuz-6.1.0-9-amd64 root=LABEL=rootfs ro console=tty0 console=ttyS0,115200n8 \n"
			   "\tinitrd\t/boot/initrd.img-6.1.0-9-amd64\n}\n"
			   "\t\tlinux\t/boot/vmlinuz-6.1.0-9-amd64 root=LABEL=rootfs ro single\n";
	assert_int_equal(boot_grub_cfg_check(good, "LABEL=rootfs", &err), 0);
	assert_null(err);

	const char *loop = "\tlinux\t/boot/vmlinuz-6.1.0-9-amd64 root=/dev/loop3 ro\n";
	assert_int_equal(boot_grub_cfg_check(loop, "LABEL=rootfs", &err), -1);
	assert_non_null(strstr(af_error_msg(err), "root=/dev/loop3"));
	af_error_clear(&err);

	/* A longer label that merely starts with the wanted one is wrong. */
	const char *prefix = "\tlinux\t/boot/vmlinuz root=LABEL=rootfs2 ro\n";
	assert_int_equal(boot_grub_cfg_check(prefix, "LABEL=rootfs", &err), -1);
	af_error_clear(&err);

	assert_int_equal(boot_grub_cfg_check("set timeout=1\n# linux here\n", "LABEL=rootfs", &err), -1);
	assert_non_null(strstr(af_error_msg(err), "no linux line"));
	af_error_clear(&err);
}

static void touch_in(const char *dir, const char *rel)
{
	char *p = path_join(dir, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
	free(p);
}

static void test_find_kernel(void **state)
{
	char *dir = test_mkdtemp();
	char *boot = path_join(dir, "boot");
	assert_int_equal(mkdir(boot, 0755), 0);
	touch_in(dir, "boot/vmlinuz-6.1.0-9-amd64");
	touch_in(dir, "boot/vmlinuz-6.1.0-10-amd64");
	touch_in(dir, "boot/initrd.img-6.1.0-10-amd64");
	touch_in(dir, "boot/config-6.1.0-11-amd64");
	int rootfd = open(dir, O_PATH | O_DIRECTORY);
	assert_true(rootfd >= 0);
	struct af_error *err = NULL;
	struct boot_kernel k = { 0 };
	json_t *facts = json_object();

	/* No facts: the newest by version, not by name. */
	assert_int_equal(boot_find_kernel(rootfd, facts, &k, &err), 0);
	assert_string_equal(k.version, "6.1.0-10-amd64");
	assert_string_equal(k.image, "/boot/vmlinuz-6.1.0-10-amd64");
	assert_string_equal(k.initrd, "/boot/initrd.img-6.1.0-10-amd64");
	boot_kernel_release(&k);

	/* The kernel stage's facts win; no initrd fact: none. */
	json_object_set_new(facts, "kernel.image", json_string("boot/vmlinuz-6.1.0-9-amd64"));
	json_object_set_new(facts, "kernel.version", json_string("6.1.0-9-amd64"));
	assert_int_equal(boot_find_kernel(rootfd, facts, &k, &err), 0);
	assert_string_equal(k.image, "/boot/vmlinuz-6.1.0-9-amd64");
	assert_null(k.initrd);
	boot_kernel_release(&k);

	/* A fact naming a file that is not there. */
	json_object_set_new(facts, "kernel.initrd", json_string("/boot/initrd.img-6.1.0-9-amd64"));
	assert_int_equal(boot_find_kernel(rootfd, facts, &k, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "initrd.img-6.1.0-9-amd64"));
	af_error_clear(&err);
	boot_kernel_release(&k);
	json_decref(facts);
	close(rootfd);

	/* No kernel at all. */
	char *empty = test_mkdtemp();
	rootfd = open(empty, O_PATH | O_DIRECTORY);
	facts = json_object();
	assert_int_equal(boot_find_kernel(rootfd, facts, &k, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "add a kernel stage"));
	af_error_clear(&err);
	boot_kernel_release(&k);
	json_decref(facts);
	close(rootfd);
	test_rmdir_r(empty);
	free(empty);
	test_rmdir_r(dir);
	free(boot);
	free(dir);
}

static void test_write_in_root_stays_inside(void **state)
{
	char *dir = test_mkdtemp();
	char *outside = test_mkdtemp();
	/* The image's /boot is a symlink to a host directory: the file must
	 * land inside the image (at ROOT/<target>), never in OUTSIDE. */
	char *boot = path_join(dir, "boot");
	assert_int_equal(symlink(outside, boot), 0);
	int rootfd = open(dir, O_PATH | O_DIRECTORY);
	struct af_error *err = NULL;
	int r = inroot_write(rootfd, dir, "/boot/grub/menu.lst", "x\n", 2, 0644, getuid(), getgid(), &err);
	char *leak = path_join(outside, "grub/menu.lst");
	struct stat st;
	assert_int_equal(stat(leak, &st), -1);
	if (r == 0) {
		char *inside = xasprintf("%s%s/grub/menu.lst", dir, outside);
		assert_int_equal(stat(inside, &st), 0);
		free(inside);
	} else {
		af_error_clear(&err);
	}
	close(rootfd);
	free(leak);
	free(boot);
	test_rmdir_r(dir);
	test_rmdir_r(outside);
	free(dir);
	free(outside);
}

/* A 16 MiB filesystem image made by mke2fs with ARGS; NULL (test skipped)
 * when mke2fs is missing. */
static char *make_fs(const char *dir, const char *name, const char *args)
{
	char *img = path_join(dir, name);
	char *cmd = xasprintf("mke2fs -q -F %s '%s' 16M >/dev/null 2>&1", args, img);
	int rc = system(cmd);
	free(cmd);
	if (rc != 0) {
		free(img);
		return NULL;
	}
	return img;
}

static void test_pvgrub_fs_check(void **state)
{
	char *dir = test_mkdtemp();
	struct af_error *err = NULL;
	/* mkfs {pvgrub_compatible: true} makes this one. */
	char *ok = make_fs(dir, "ok.img", "-t ext4 -I 128 -O ^64bit,^metadata_csum,^metadata_csum_seed,^inline_data");
	if (!ok) {
		test_rmdir_r(dir);
		free(dir);
		test_skip_because("mke2fs is not installed");
	}
	assert_int_equal(boot_pvgrub_check_fs(ok, 0, "ext4", &err), 0);
	assert_null(err);

	char *bad = make_fs(dir, "bad.img", "-t ext4 -I 256 -O 64bit,metadata_csum");
	assert_non_null(bad);
	assert_int_equal(boot_pvgrub_check_fs(bad, 0, "ext4", &err), -1);
	const char *msg = af_error_msg(err);
	assert_non_null(strstr(msg, "feature 64bit"));
	assert_non_null(strstr(msg, "feature metadata_csum"));
	assert_non_null(strstr(msg, "256-byte inodes"));
	assert_non_null(strstr(msg, "pvgrub_compatible: true"));
	af_error_clear(&err);

	char *inl = make_fs(dir, "inline.img", "-t ext4 -I 256 -O ^64bit,^metadata_csum,inline_data");
	assert_non_null(inl);
	assert_int_equal(boot_pvgrub_check_fs(inl, 0, "ext4", &err), -1);
	assert_non_null(strstr(af_error_msg(err), "feature inline_data"));
	assert_null(strstr(af_error_msg(err), "feature 64bit"));
	af_error_clear(&err);

	assert_int_equal(boot_pvgrub_check_fs(ok, 0, "xfs", &err), -1);
	assert_non_null(strstr(af_error_msg(err), "ext2/3/4 only"));
	af_error_clear(&err);

	free(ok);
	free(bad);
	free(inl);
	test_rmdir_r(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_menu_unpartitioned),
		cmocka_unit_test(test_menu_partitioned_no_initrd),
		cmocka_unit_test(test_cmdline),
		cmocka_unit_test(test_grub_defaults),
		cmocka_unit_test(test_grub_cfg_check),
		cmocka_unit_test(test_find_kernel),
		cmocka_unit_test(test_write_in_root_stays_inside),
		cmocka_unit_test(test_pvgrub_fs_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
