/* SPDX-License-Identifier: Apache-2.0 */
/* The pure parts of the root-filesystem stages: mirror derivation, makedev
 * tables, UUID derivation, fstab text, partition geometry, command lines.
 * The stage files are included so their static helpers can be tested. */
#include "testutil.h"

#include <sys/stat.h>

#include "../../stages/allocate.c"
#include "../../stages/debootstrap.c"
#include "../../stages/fstab.c"
#include "../../stages/makedev.c"
#include "../../stages/mkfs.c"
#include "../../stages/partition.c"
#include "../../stages/run.c"

static void write_text(const char *dir, const char *name, const char *text)
{
	char *p = path_join(dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(p);
}

/* ---- mirror derivation ---- */

static char *mirror_for(const char *dir, const char *suite, struct af_error **err)
{
	return deb_host_mirror(dir, suite, err);
}

static void test_mirror_one_line(void **state)
{
	char *dir = test_mkdtemp();
	write_text(dir, "sources.list",
		   "# comment\n"
		   "deb-src file:///srv/src/debian bookworm main\n"
		   "deb [arch=amd64 signed-by=/k.gpg] file:///srv/sec/debian-security/ bookworm-security main\n"
		   "\n"
		   "deb file:///srv/one/debian/ bookworm main contrib\n"
		   "deb file:///srv/two/debian trixie main\n");
	struct af_error *err = NULL;
	char *m = mirror_for(dir, "bookworm", &err);
	assert_string_equal(m, "file:///srv/one/debian");
	free(m);
	/* An exact suite entry wins over the first plain one. */
	m = mirror_for(dir, "trixie", &err);
	assert_string_equal(m, "file:///srv/two/debian");
	free(m);
	/* Another suite: the first plain Debian suite's URI. */
	m = mirror_for(dir, "sid", &err);
	assert_string_equal(m, "file:///srv/one/debian");
	free(m);
	assert_null(err);
	test_rmdir_r(dir);
	free(dir);
}

static void test_mirror_deb822(void **state)
{
	char *dir = test_mkdtemp();
	char *d = path_join(dir, "sources.list.d");
	assert_int_equal(mkdir(d, 0755), 0);
	write_text(d, "00-off.sources",
		   "Types: deb\nURIs: file:///srv/off/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n");
	write_text(d, "debian.sources",
		   "Types: deb deb-src\n"
		   "# a comment inside\n"
		   "URIs: file:///srv/sec/debian-security\n"
		   "Suites: bookworm-security\n"
		   "Components: main\n"
		   "\n"
		   "Types: deb\n"
		   "URIs: file:///srv/main/debian\n"
		   "Suites: bookworm\n"
		   " bookworm-updates\n"
		   "Components: main\n");
	write_text(d, "ignored.list.disabled", "deb file:///srv/nope/debian bookworm main\n");
	struct af_error *err = NULL;
	char *m = mirror_for(dir, "bookworm", &err);
	assert_string_equal(m, "file:///srv/main/debian");
	free(m);
	m = mirror_for(dir, "trixie", &err);
	assert_string_equal(m, "file:///srv/main/debian");
	free(m);
	assert_null(err);
	test_rmdir_r(dir);
	free(dir);
	free(d);
}

static void test_mirror_fallback_and_none(void **state)
{
	char *dir = test_mkdtemp();
	struct af_error *err = NULL;
	assert_null(mirror_for(dir, "bookworm", &err));
	assert_non_null(err);
	assert_non_null(strstr(af_error_msg(err), "set mirror: in the recipe"));
	af_error_clear(&err);
	write_text(dir, "sources.list", "deb cdrom:[Debian]/ bookworm main\n"
					"deb file:///srv/sec/debian-security bookworm-security main\n");
	char *m = mirror_for(dir, "bookworm", &err);
	assert_string_equal(m, "file:///srv/sec/debian-security");
	free(m);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- debootstrap command lines and checks ---- */

static char *argv_text(const struct deb_argv *a)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < a->n; i++)
		strbuf_addf(&sb, "%s%s", i ? "|" : "", a->v[i]);
	return strbuf_detach(&sb);
}

static void test_debootstrap_argv(void **state)
{
	json_t *p = json_pack("{s:s, s:[s,s], s:[s], s:[s,s]}", "suite", "bookworm", "include", "sudo", "openssh-server",
			      "exclude", "nano", "components", "main", "contrib");
	struct deb_argv a = { 0 };
	deb_build_argv("debootstrap", p, "x86_64", "file:///srv/m/debian", "/t", "/c/debs", &a);
	char *s = argv_text(&a);
	assert_string_equal(s, "debootstrap|--variant=minbase|--arch=amd64|--components=main,contrib|"
			       "--include=sudo,openssh-server|--exclude=nano|--cache-dir=/c/debs|bookworm|/t|"
			       "file:///srv/m/debian");
	free(s);
	deb_argv_release(&a);
	deb_build_argv("mmdebstrap", p, "arm64", "file:///srv/m/debian", "/t", "/c/debs", &a);
	s = argv_text(&a);
	assert_non_null(strstr(s, "mmdebstrap|--mode=root|--variant=minbase|--arch=arm64|"));
	assert_null(strstr(s, "--exclude"));
	/* The jail forbids mount: the stage binds the cache, mmdebstrap mounts nothing. */
	assert_null(strstr(s, "mount --bind"));
	assert_null(strstr(s, "umount"));
	assert_non_null(strstr(s, "--skip=check/empty,chroot/mount,download/empty,essential/unlink"));
	assert_non_null(strstr(s, "|--dpkgopt=path-exclude=/proc|--dpkgopt=path-exclude=/sys|"));
	assert_non_null(strstr(s, "force-unsafe-io"));
	assert_true(str_has_suffix(s, "|bookworm|/t|file:///srv/m/debian"));
	free(s);
	deb_argv_release(&a);
	json_decref(p);

	/* debootstrap has no "standard" variant: its default is that. */
	p = json_pack("{s:s, s:s}", "suite", "bookworm", "variant", "standard");
	deb_build_argv("debootstrap", p, "x86_64", "file:///srv/m", "/t", "/c", &a);
	s = argv_text(&a);
	assert_null(strstr(s, "--variant"));
	free(s);
	deb_argv_release(&a);
	json_decref(p);
}

static void test_debootstrap_tool_choice(void **state)
{
	struct af_error *err = NULL;
	const char *tool = NULL;
	assert_int_equal(deb_pick_tool("mmdebstrap", true, &tool, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "tool: debootstrap"));
	af_error_clear(&err);
	if (deb_installed("debootstrap")) {
		assert_int_equal(deb_pick_tool("auto", true, &tool, &err), 0);
		assert_string_equal(tool, "debootstrap");
	}
	if (deb_installed("mmdebstrap")) {
		assert_int_equal(deb_pick_tool("auto", false, &tool, &err), 0);
		assert_string_equal(tool, "mmdebstrap");
	}
}

static void test_debootstrap_verify_status(void **state)
{
	char *dir = test_mkdtemp();
	char *d = path_join(dir, "var/lib/dpkg");
	struct af_error *err = NULL;
	json_t *inc = json_pack("[s,s]", "sudo", "openssh-server=1:9.2");
	int rootfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(rootfd >= 0);
	assert_int_equal(deb_verify_status(rootfd, dir, inc, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "no "));
	af_error_clear(&err);
	assert_int_equal(mkdir_p(d, 0755, NULL), 0);
	write_text(d, "status",
		   "Package: sudo\nStatus: install ok installed\nVersion: 1\n\n"
		   "Package: openssh-server\nStatus: deinstall ok config-files\n\n"
		   "Package: dash\nStatus: install ok installed\n");
	assert_int_equal(deb_verify_status(rootfd, dir, inc, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "'openssh-server' is not installed"));
	af_error_clear(&err);
	json_t *inc2 = json_pack("[s,s]", "sudo", "dash");
	assert_int_equal(deb_verify_status(rootfd, dir, inc2, &err), 0);
	close(rootfd);
	json_decref(inc);
	json_decref(inc2);
	test_rmdir_r(dir);
	free(dir);
	free(d);
}

/* ---- makedev ---- */

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

/* ---- UUIDs ---- */

static void test_uuid_derivation(void **state)
{
	char a[37], b[37], c[37], P[37];
	uuid_derive("0123abcd", "fs-uuid", a);
	uuid_derive("0123abcd", "fs-uuid", b);
	uuid_derive("0123abce", "fs-uuid", c);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_true(mkfs_uuid_valid(a));
	assert_int_equal(a[14], '4');
	assert_non_null(strchr("89ab", a[19]));
	uuid_derive_upper("0123abcd", "fs-uuid", P);
	assert_true(strcasecmp(P, a) == 0);
	assert_true(mkfs_uuid_valid("0F2E4C1A-5B6D-4E7F-8A9B-0C1D2E3F4A5B"));
	assert_false(mkfs_uuid_valid("0f2e4c1a5b6d4e7f8a9b0c1d2e3f4a5b"));
	assert_false(mkfs_uuid_valid("0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5g"));
}

static void test_mkfs_options(void **state)
{
	struct stage_ctx ctx = { .key = "k" };
	struct mkfs_opts o;
	struct af_error *err = NULL;
	struct {
		const char *json;
		const char *msg;
	} cases[] = {
		{ "{\"label\": \"a-label-of-17-byte\"}", "at most 16" },
		{ "{\"uuid\": \"nope\"}", "is not a UUID" },
		{ "{\"type\": \"xfs\"}", "use ext2, ext3 or ext4" },
		{ "{\"pvgrub_compatible\": true, \"inode_size\": 256}", "cannot be read by GRUB legacy" },
		{ "{\"pvgrub_compatible\": true, \"features\": [\"64bit\"]}", "feature '64bit'" },
		{ "{\"inode_size\": 100}", "power of two" },
		{ "{\"reserved_percent\": 51}", "out of range" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		json_t *p = json_loads(cases[i].json, 0, NULL);
		ctx.params = p;
		o = (struct mkfs_opts){ 0 };
		assert_int_equal(mkfs_parse_opts(&ctx, &o, &err), -1);
		if (!strstr(af_error_msg(err), cases[i].msg))
			fail_msg("%s: %s", cases[i].json, af_error_msg(err));
		af_error_clear(&err);
		json_decref(p);
	}
	json_t *p = json_loads("{\"pvgrub_compatible\": true, \"features\": [\"^dir_index\"], "
			       "\"uuid\": \"0F2E4C1A-5B6D-4E7F-8A9B-0C1D2E3F4A5B\"}", 0, NULL);
	ctx.params = p;
	o = (struct mkfs_opts){ 0 };
	assert_int_equal(mkfs_parse_opts(&ctx, &o, &err), 0);
	assert_string_equal(o.uuid, "0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b");
	assert_string_equal(o.label, "rootfs");
	assert_int_equal(o.inode_size, 128);
	assert_int_equal(o.reserved, 1);
	char *f = mkfs_features_arg(&o);
	assert_non_null(strstr(f, "^64bit,^metadata_csum,"));
	assert_true(str_has_suffix(f, ",^dir_index"));
	free(f);
	json_decref(p);
}

/* ---- fstab ---- */

static void test_fstab_text(void **state)
{
	json_t *p = json_loads("{}", 0, NULL);
	char *t = fstab_render(p, "LABEL=rootfs", "ext4");
	assert_string_equal(t, "# /etc/fstab: static file system information, written by amiforge.\n"
			       "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n"
			       "LABEL=rootfs\t/\text4\tdefaults\t0\t1\n"
			       "proc\t/proc\tproc\tdefaults\t0\t0\n"
			       "sysfs\t/sys\tsysfs\tdefaults\t0\t0\n");
	free(t);
	json_decref(p);
	p = json_loads("{\"proc\": false, \"root_options\": \"noatime,errors=remount-ro\", \"swap\": \"/dev/xvdb\","
		       " \"ephemeral\": \"/dev/xvdc\", \"entries\": [{\"spec\": \"tmpfs\", \"file\": \"/tmp\","
		       " \"type\": \"tmpfs\", \"options\": \"size=1G\"}, {\"spec\": \"/dev/xvdd\", \"file\": \"/srv\","
		       " \"type\": \"ext4\", \"pass\": 2}]}", 0, NULL);
	t = fstab_render(p, "UUID=0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "ext3");
	assert_non_null(strstr(t, "\nUUID=0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b\t/\text3\tnoatime,errors=remount-ro\t0\t1\n"
				  "/dev/xvdb\tnone\tswap\tsw,nofail\t0\t0\n"
				  "/dev/xvdc\t/mnt\tauto\tdefaults,nofail\t0\t2\n"
				  "tmpfs\t/tmp\ttmpfs\tsize=1G\t0\t0\n"
				  "/dev/xvdd\t/srv\text4\tdefaults\t0\t2\n"));
	assert_null(strstr(t, "proc"));
	free(t);
	json_decref(p);
}

/* ---- partition geometry ---- */

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)

static void test_partition_plan(void **state)
{
	struct part_plan p;
	struct af_error *err = NULL;
	assert_int_equal(partition_plan(false, 2 * GiB, 0, false, 0, &p, &err), 0);
	assert_int_equal(p.root_off, MiB);
	assert_int_equal(p.root_size, 2 * GiB - MiB);
	assert_int_equal(p.bios_size + p.esp_size, 0);
	/* GPT keeps its backup at the end: the root ends one MiB earlier. */
	assert_int_equal(partition_plan(true, 2 * GiB, 256 * MiB, true, 0, &p, &err), 0);
	assert_int_equal(p.bios_off, MiB);
	assert_int_equal(p.bios_size, MiB);
	assert_int_equal(p.esp_off, 2 * MiB);
	assert_int_equal(p.esp_size, 256 * MiB);
	assert_int_equal(p.root_off, 258 * MiB);
	assert_int_equal(p.root_size, 2 * GiB - 259 * MiB);
	/* root_size and an unaligned ESP are rounded up to whole MiB. */
	assert_int_equal(partition_plan(true, GiB, 100 * MiB + 1, false, 512 * MiB - 5, &p, &err), 0);
	assert_int_equal(p.esp_size, 101 * MiB);
	assert_int_equal(p.root_off, 102 * MiB);
	assert_int_equal(p.root_size, 512 * MiB);
	assert_int_equal(partition_plan(false, GiB, 0, false, GiB, &p, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "does not fit"));
	af_error_clear(&err);
	assert_int_equal(partition_plan(true, 2 * MiB, 0, true, 0, &p, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "at least 1MiB"));
	af_error_clear(&err);
}

/* ---- run ---- */

static void test_run_helpers(void **state)
{
	json_t *env = json_pack("{s:s, s:s}", "FOO", "bar", "PATH", "/opt/bin");
	char **e = run_build_env(env);
	size_t n = 0;
	bool foo = false, path = false;
	for (; e[n]; n++) {
		foo |= strcmp(e[n], "FOO=bar") == 0;
		path |= strcmp(e[n], "PATH=/opt/bin") == 0;
		assert_false(str_has_prefix(e[n], "PATH=/usr/local"));
	}
	assert_int_equal(n, 6);
	assert_true(foo && path);
	run_strv_free(e);
	json_decref(env);
	json_t *cmd = json_string("apt-get install -y openssh-server sudo ifupdown isc-dhcp-client systemd-sysv\nx");
	char *s = run_shorten(cmd, NULL);
	assert_int_equal(strlen(s), RUN_SHORT);
	assert_true(str_has_suffix(s, "..."));
	free(s);
	json_decref(cmd);
	cmd = json_pack("[s,s]", "test", "-f");
	s = run_shorten(cmd, NULL);
	assert_string_equal(s, "test -f");
	free(s);
	json_decref(cmd);
	s = run_shorten(NULL, "/r/scripts/setup.sh");
	assert_string_equal(s, "script setup.sh");
	free(s);
	struct af_error *err = NULL;
	json_t *p = json_pack("{s:s, s:s}", "command", "true", "script", "/x");
	assert_int_equal(run_check(p, &err), -1);
	af_error_clear(&err);
	json_decref(p);
	p = json_pack("{s:i, s:s}", "size", 1, "device", "/dev/x");
	assert_int_equal(allocate_check(p, &err), -1);
	assert_string_equal(af_error_msg(err), "allocate takes size or device, not both");
	af_error_clear(&err);
	json_decref(p);
	p = json_pack("{s:s, s:i}", "table", "mbr", "esp", 1);
	assert_int_equal(partition_check(p, &err), -1);
	af_error_clear(&err);
	json_decref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mirror_one_line),
		cmocka_unit_test(test_mirror_deb822),
		cmocka_unit_test(test_mirror_fallback_and_none),
		cmocka_unit_test(test_debootstrap_argv),
		cmocka_unit_test(test_debootstrap_tool_choice),
		cmocka_unit_test(test_debootstrap_verify_status),
		cmocka_unit_test(test_makedev_std),
		cmocka_unit_test(test_makedev_named),
		cmocka_unit_test(test_makedev_generic_and_unknown),
		cmocka_unit_test(test_makedev_groups),
		cmocka_unit_test(test_uuid_derivation),
		cmocka_unit_test(test_mkfs_options),
		cmocka_unit_test(test_fstab_text),
		cmocka_unit_test(test_partition_plan),
		cmocka_unit_test(test_run_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
