/* SPDX-License-Identifier: Apache-2.0 */
/* The root-filesystem stages run for real on a temporary image in /var/tmp:
 * allocate, partition (mbr, gpt), mkfs at an offset, fstab, makedev into a
 * plain directory, run in a chroot.  Needs root (mknod, chown, chroot);
 * skipped with a reason otherwise.  No network, no loop devices. */
#include "testutil.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <fcntl.h>
#include <glob.h>

#include "amiforge/error.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define MiB (1 << 20)

struct fixture {
	char *dir;
	char *image;
	json_t *facts;
};

static int setup(void **state)
{
	if (geteuid() != 0)
		return 0;
	struct fixture *f = calloc(1, sizeof(*f));
	f->dir = xstrdup("/var/tmp/amiforge-stagetest-XXXXXX");
	if (!mkdtemp(f->dir))
		abort();
	f->image = path_join(f->dir, "disk.img");
	f->facts = json_object();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	test_rmdir_r(f->dir);
	free(f->dir);
	free(f->image);
	json_decref(f->facts);
	free(f);
	return 0;
}

#define REQUIRE_ROOT()                                                                   \
	do {                                                                             \
		if (geteuid() != 0)                                                      \
			test_skip_because("stage tests need root (mknod, chown, chroot)"); \
	} while (0)

/* Runs stage NAME with PARAMS (a JSON text); merges its outputs into the
 * facts on success.  Returns the error message (caller frees) or NULL. */
static char *run_stage(struct fixture *f, const char *name, const char *params, const char *image, const char *root)
{
	const struct stage_type *t = registry_find(name);
	assert_non_null(t);
	json_error_t jerr;
	json_t *p = json_loads(params, 0, &jerr);
	if (!p)
		fail_msg("bad test params %s: %s", params, jerr.text);
	struct stage_ctx ctx = {
		.id = name,
		.index = 1,
		.key = "5e1f0c2d9a7b4e3f8c6d1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d",
		.arch = "x86_64",
		.params = p,
		.recipe_dir = f->dir,
		.state_dir = f->dir,
		.cache_dir = f->dir,
		.image = image ? image : f->image,
		.root = root,
		.facts = f->facts,
		.outputs = json_object(),
		.log_fd = -1,
	};
	struct af_error *err = NULL;
	char *msg = NULL;
	if ((t->check && t->check(p, &err) < 0) || t->run(&ctx, &err) < 0)
		msg = xstrdup(af_error_msg(err));
	else
		json_object_update(f->facts, ctx.outputs);
	af_error_free(err);
	json_decref(ctx.outputs);
	json_decref(p);
	return msg;
}

static void expect_ok(char *msg)
{
	if (msg)
		fail_msg("stage failed: %s", msg);
}

static void expect_error(char *msg, const char *part)
{
	if (!msg)
		fail_msg("stage succeeded, expected an error with '%s'", part);
	if (!strstr(msg, part))
		fail_msg("error '%s' does not contain '%s'", msg, part);
	free(msg);
}

static int64_t fact_int(struct fixture *f, const char *k)
{
	json_t *v = json_object_get(f->facts, k);
	if (!json_is_integer(v))
		fail_msg("fact %s missing", k);
	return json_integer_value(v);
}

static const char *fact_str(struct fixture *f, const char *k)
{
	json_t *v = json_object_get(f->facts, k);
	if (!json_is_string(v))
		fail_msg("fact %s missing", k);
	return json_string_value(v);
}

/* Output of a shell command (first 64 KiB). */
static char *sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = NULL;
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char *buf = calloc(1, 65536);
	size_t n = fread(buf, 1, 65535, p);
	buf[n] = '\0';
	int rc = pclose(p);
	if (rc != 0)
		fail_msg("'%s' failed (%d): %s", cmd, rc, buf);
	free(cmd);
	return buf;
}

static void test_allocate(void **state)
{
	REQUIRE_ROOT();
	struct fixture *f = *state;
	expect_ok(run_stage(f, "allocate", "{\"size\": 268435456}", NULL, NULL));
	struct stat st;
	assert_int_equal(stat(f->image, &st), 0);
	assert_int_equal(st.st_size, 256 * MiB);
	assert_int_equal(st.st_blocks, 0);
	assert_int_equal(fact_int(f, "disk.size"), 256 * MiB);
	assert_int_equal(fact_int(f, "root.offset"), 0);
	assert_string_equal(fact_str(f, "partition.table"), "none");
	assert_false(json_is_true(json_object_get(f->facts, "disk.is_device")));
	/* A directory in the way cannot be replaced. */
	char *d = path_join(f->dir, "adir");
	assert_int_equal(mkdir(d, 0755), 0);
	expect_error(run_stage(f, "allocate", "{\"size\": 268435456}", d, NULL), "is not a regular file");
	free(d);
	expect_error(run_stage(f, "allocate", "{\"device\": \"/dev/null\"}", NULL, NULL), "is not a block device");
	/* The disk holding / is mounted: refused. */
	char *src = sh("findmnt -n -o SOURCE / | sed 's/\\[.*//'");
	src[strcspn(src, "\n")] = '\0';
	if (stat(src, &st) == 0 && S_ISBLK(st.st_mode)) {
		char *p = xasprintf("{\"device\": \"%s\"}", src);
		expect_error(run_stage(f, "allocate", p, NULL, NULL), "is in use");
		free(p);
	}
	free(src);
}

static void test_partition_mbr(void **state)
{
	REQUIRE_ROOT();
	struct fixture *f = *state;
	expect_ok(run_stage(f, "allocate", "{\"size\": 268435456}", NULL, NULL));
	expect_ok(run_stage(f, "partition", "{\"table\": \"mbr\"}", NULL, NULL));
	assert_int_equal(fact_int(f, "root.offset"), MiB);
	assert_int_equal(fact_int(f, "root.size"), 255 * MiB);
	assert_int_equal(fact_int(f, "root.partnum"), 1);
	char *out = sh("sfdisk -d %s", f->image);
	assert_non_null(strstr(out, "label: dos"));
	assert_non_null(strstr(out, "start=        2048, size=      522240, type=83, bootable"));
	assert_non_null(strstr(out, fact_str(f, "disk.id")));
	free(out);
	/* Same key, same bytes. */
	char *img2 = path_join(f->dir, "disk2.img");
	expect_ok(run_stage(f, "allocate", "{\"size\": 268435456}", img2, NULL));
	expect_ok(run_stage(f, "partition", "{\"table\": \"mbr\"}", img2, NULL));
	free(sh("cmp -n 1048576 %s %s", f->image, img2));
	free(img2);
	expect_error(run_stage(f, "partition", "{\"table\": \"mbr\", \"root_size\": 536870912}", NULL, NULL),
		     "does not fit");
}

static void test_partition_gpt_mkfs_fstab(void **state)
{
	REQUIRE_ROOT();
	struct fixture *f = *state;
	expect_ok(run_stage(f, "allocate", "{\"size\": 268435456}", NULL, NULL));
	expect_ok(run_stage(f, "partition", "{\"table\": \"gpt\", \"bios_boot\": true, \"esp\": 33554432}", NULL, NULL));
	assert_int_equal(fact_int(f, "bios_boot.partnum"), 1);
	assert_int_equal(fact_int(f, "esp.offset"), 2 * MiB);
	assert_int_equal(fact_int(f, "esp.size"), 32 * MiB);
	assert_int_equal(fact_int(f, "esp.partnum"), 2);
	assert_int_equal(fact_int(f, "root.offset"), 34 * MiB);
	assert_int_equal(fact_int(f, "root.size"), 256 * MiB - 35 * MiB);
	assert_int_equal(fact_int(f, "root.partnum"), 3);
	char *table = sh("sfdisk -d %s", f->image);
	assert_non_null(strstr(table, "label: gpt"));
	assert_non_null(strstr(table, "type=21686148-6449-6E6F-744E-656564454649"));
	assert_non_null(strstr(table, "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B"));
	assert_non_null(strstr(table, "start=       69632, size=      452608, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4"));

	expect_error(run_stage(f, "mkfs", "{\"label\": \"this-label-is-too-long\"}", NULL, NULL), "at most 16");
	expect_ok(run_stage(f, "mkfs", "{\"label\": \"testroot\", \"pvgrub_compatible\": true}", NULL, NULL));
	assert_string_equal(fact_str(f, "root.fstype"), "ext4");
	assert_string_equal(fact_str(f, "root.label"), "testroot");
	assert_true(json_is_true(json_object_get(f->facts, "root.pvgrub_compatible")));
	const char *uuid = fact_str(f, "root.uuid");
	/* mke2fs with an offset must leave the partition table alone. */
	char *table2 = sh("sfdisk -d %s", f->image);
	assert_string_equal(table, table2);
	free(table);
	free(table2);
	char *probe = sh("blkid -p -O %d -o export %s", 34 * MiB, f->image);
	assert_non_null(strstr(probe, "LABEL=testroot"));
	assert_non_null(strstr(probe, "TYPE=ext4"));
	char *u = xasprintf("\nUUID=%s\n", uuid);
	assert_non_null(strstr(probe, u));
	free(u);
	free(probe);
	char *copy = path_join(f->dir, "root.img");
	free(sh("dd if=%s of=%s bs=1M skip=34 count=221 status=none && e2fsck -fn %s >/dev/null 2>&1", f->image, copy,
		copy));
	char *hdr = sh("dumpe2fs -h %s 2>/dev/null", copy);
	assert_non_null(strstr(hdr, "Inode size:\t          128"));
	assert_null(strstr(hdr, " 64bit"));
	assert_null(strstr(hdr, "metadata_csum"));
	assert_non_null(strstr(hdr, "extent"));
	free(hdr);
	free(copy);

	/* fstab into a plain directory standing in for the mounted root. */
	char *root = path_join(f->dir, "root");
	assert_int_equal(mkdir(root, 0755), 0);
	umask(077);
	expect_ok(run_stage(f, "fstab", "{\"swap\": \"/dev/xvdb\"}", NULL, root));
	char *fstab = path_join(root, "etc/fstab");
	struct stat st;
	assert_int_equal(stat(fstab, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	char *text = read_file(fstab, NULL, NULL);
	assert_non_null(strstr(text, "written by amiforge"));
	assert_non_null(strstr(text, "\nLABEL=testroot\t/\text4\tdefaults\t0\t1\n"));
	assert_non_null(strstr(text, "\n/dev/xvdb\tnone\tswap\tsw,nofail\t0\t0\n"));
	free(text);
	expect_ok(run_stage(f, "fstab", "{\"root_by\": \"uuid\", \"proc\": false}", NULL, root));
	text = read_file(fstab, NULL, NULL);
	u = xasprintf("\nUUID=%s\t/\text4", fact_str(f, "root.uuid"));
	assert_non_null(strstr(text, u));
	assert_null(strstr(text, "proc"));
	free(u);
	free(text);
	/* Facts that disagree with the disk are an error. */
	json_object_set_new(f->facts, "root.label", json_string("other"));
	expect_error(run_stage(f, "fstab", "{}", NULL, root), "'testroot' on disk but 'other'");
	free(fstab);
	free(root);
}

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

static void test_run(void **state)
{
	REQUIRE_ROOT();
	struct fixture *f = *state;
	/* A minimal image: sh and true with their libraries (the jail pivots
	 * into it, so it cannot be the host's own root). */
	char *root = path_join(f->dir, "image");
	char *cmd = xasprintf("set -e; R='%s'; mkdir -p \"$R/bin\" \"$R/tmp\"; "
			      "for b in sh true; do p=$(which $b); cp -L \"$p\" \"$R/bin/$b\"; "
			      "for l in $(ldd \"$p\" | grep -o '/[^ ]*'); do "
			      "mkdir -p \"$R$(dirname $l)\"; cp -L \"$l\" \"$R$l\"; done; done", root);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	expect_ok(run_stage(f, "run", "{\"command\": \"test \\\"$FOO\\\" = bar\", \"env\": {\"FOO\": \"bar\"}}", NULL, root));
	expect_ok(run_stage(f, "run", "{\"command\": [\"true\"]}", NULL, root));
	expect_error(run_stage(f, "run", "{\"command\": \"exit 3\"}", NULL, root), "exited with status 3");
	expect_error(run_stage(f, "run", "{\"command\": \"test \\\"${PASS:-0}\\\" = 1\"}", NULL, root),
		     "command 'test \"${PASS:-0}\" = 1'");
	char *script = path_join(f->dir, "setup.sh");
	const char *body = "#!/bin/sh\ncase \"$0\" in /tmp/amiforge-run-*) exit 0;; esac\nexit 9\n";
	assert_int_equal(write_file_atomic(script, body, strlen(body), 0644, NULL), 0);
	char *p = xasprintf("{\"script\": \"%s\"}", script);
	expect_ok(run_stage(f, "run", p, NULL, root));
	glob_t gl;
	char *pattern = path_join(root, "tmp/amiforge-run-*");
	assert_int_equal(glob(pattern, 0, NULL, &gl), GLOB_NOMATCH);
	free(pattern);
	free(p);
	free(script);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_allocate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_mbr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partition_gpt_mkfs_fstab, setup, teardown),
		cmocka_unit_test_setup_teardown(test_makedev, setup, teardown),
		cmocka_unit_test_setup_teardown(test_run, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
