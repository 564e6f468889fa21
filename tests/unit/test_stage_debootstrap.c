/* SPDX-License-Identifier: Apache-2.0 */
/* debootstrap's pure parts: the host mirror derived from sources.list and
 * deb822 files, the command lines of debootstrap and mmdebstrap, the tool
 * choice and the dpkg status check.  The stage file is included so its
 * static helpers can be tested. */
#include "stagetest.h"

#include "../../stages/debootstrap.c"

/* ---- mirror derivation ---- */

static char *mirror_for(const char *dir, const char *suite, struct af_error **err)
{
	return deb_host_mirror(dir, suite, err);
}

static void test_mirror_one_line(void **state)
{
	char *dir = test_mkdtemp();
	write_str(dir, "sources.list",
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
	write_str(d, "00-off.sources",
		   "Types: deb\nURIs: file:///srv/off/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n");
	write_str(d, "debian.sources",
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
	write_str(d, "ignored.list.disabled", "deb file:///srv/nope/debian bookworm main\n");
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
	write_str(dir, "sources.list", "deb cdrom:[Debian]/ bookworm main\n"
					"deb file:///srv/sec/debian-security bookworm-security main\n");
	char *m = mirror_for(dir, "bookworm", &err);
	assert_string_equal(m, "file:///srv/sec/debian-security");
	free(m);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- command lines and checks ---- */

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
	write_str(d, "status",
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mirror_one_line),
		cmocka_unit_test(test_mirror_deb822),
		cmocka_unit_test(test_mirror_fallback_and_none),
		cmocka_unit_test(test_debootstrap_argv),
		cmocka_unit_test(test_debootstrap_tool_choice),
		cmocka_unit_test(test_debootstrap_verify_status),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
