/* SPDX-License-Identifier: Apache-2.0 */
/* The system stages' pure parts: generated files against expected text
 * (interfaces, networkd unit, hosts, sudoers, sshd drop-in, prep-instance
 * unit and settings), parameter checks, template expansion, kernel choice;
 * and, on a temporary tree (no root needed), resolving destinations inside
 * an image and the sanitize removals and secret scan.  The stage files are
 * included so their static helpers can be tested. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "../../stages/files.c"
#include "../../stages/kernel.c"
#include "../../stages/network.c"
#include "../../stages/packages.c"
#include "../../stages/sanitize.c"
#include "../../stages/ssh.c"
#include "../../stages/user.c"

/* Written in pieces so that this file itself holds no key-shaped text. */
#define PEM_BEGIN "-----BEGIN " "OPENSSH PRIVATE KEY-----"
#define PEM_BODY "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
#define AKID_HEAD "AK" "IA"

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fail_msg("bad JSON in test: %s", e.text);
	return j;
}

static void write_at(const char *dir, const char *rel, const void *data, size_t len)
{
	char *p = path_join(dir, rel);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(p, 0755, &err), 0);
	*slash = '/';
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, data, len), 0);
	close(fd);
	free(p);
}

static void write_str(const char *dir, const char *rel, const char *text)
{
	write_at(dir, rel, text, strlen(text));
}

static bool exists_at(const char *dir, const char *rel)
{
	char *p = path_join(dir, rel);
	struct stat st;
	bool r = lstat(p, &st) == 0;
	free(p);
	return r;
}

/* ---- network ---- */

static void test_interfaces(void **state)
{
	json_t *p = load("{}");
	char *t = net_render_interfaces(p);
	assert_string_equal(t, "# /etc/network/interfaces: written by amiforge (network stage).\n"
			       "source /etc/network/interfaces.d/*\n"
			       "\n"
			       "auto lo\n"
			       "iface lo inet loopback\n"
			       "\n"
			       "allow-hotplug eth0\n"
			       "iface eth0 inet dhcp\n");
	free(t);
	json_decref(p);
	p = load("{\"interfaces\": [{\"name\": \"ens5\", \"method\": \"dhcp\"}, {\"name\": \"eth1\"}]}");
	t = net_render_interfaces(p);
	assert_non_null(strstr(t, "iface lo inet loopback\n\nallow-hotplug ens5\niface ens5 inet dhcp\n\n"
				  "allow-hotplug eth1\niface eth1 inet dhcp\n"));
	free(t);
	json_decref(p);
}

static void test_networkd_unit(void **state)
{
	char *t = net_render_networkd();
	assert_string_equal(t, "# written by amiforge (network stage): DHCP on every Ethernet interface.\n"
			       "[Match]\n"
			       "Name=en* eth*\n"
			       "\n"
			       "[Network]\n"
			       "DHCP=yes\n");
	free(t);
}

static void test_hosts(void **state)
{
	json_t *p = load("{\"hostname\": \"web-1\", \"domain\": \"example.org\"}");
	char *t = net_render_hosts(p);
	assert_string_equal(t, "127.0.0.1\tlocalhost\n"
			       "127.0.1.1\tweb-1.example.org\tweb-1\n"
			       "\n"
			       "# The following lines are desirable for IPv6 capable hosts\n"
			       "::1\tlocalhost ip6-localhost ip6-loopback\n"
			       "ff02::1\tip6-allnodes\n"
			       "ff02::2\tip6-allrouters\n");
	free(t);
	char *h = net_render_hostname(p);
	assert_string_equal(h, "web-1\n");
	free(h);
	json_decref(p);
	p = load("{}");
	t = net_render_hosts(p);
	assert_non_null(strstr(t, "\n127.0.1.1\tdebian\n"));
	free(t);
	json_decref(p);
}

static void test_network_check(void **state)
{
	static const char *const bad[] = {
		"{\"hostname\": \"bad_name\"}",
		"{\"hostname\": \"-x\"}",
		"{\"hostname\": \"a..b\"}",
		"{\"interfaces\": [{\"name\": \"eth0 up\"}]}",
		"{\"interfaces\": [{\"name\": \"averyveryverylongname\"}]}",
		"{\"backend\": \"networkd\", \"interfaces\": [{\"name\": \"eth0\"}]}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *p = load(bad[i]);
		struct af_error *err = NULL;
		assert_int_equal(net_check(p, &err), -1);
		af_error_free(err);
		json_decref(p);
	}
	json_t *p = load("{\"hostname\": \"ip-10-0-0-1.eu-west-1\", \"interfaces\": [{\"name\": \"ens5\"}]}");
	struct af_error *err = NULL;
	assert_int_equal(net_check(p, &err), 0);
	json_decref(p);
}

/* ---- user ---- */

static void test_sudoers(void **state)
{
	char *t = user_render_sudoers("admin", "nopasswd");
	assert_string_equal(t, "# written by amiforge (user stage)\nadmin ALL=(ALL:ALL) NOPASSWD: ALL\n");
	free(t);
	t = user_render_sudoers("ops", "password");
	assert_string_equal(t, "# written by amiforge (user stage)\nops ALL=(ALL:ALL) ALL\n");
	free(t);
	assert_null(user_render_sudoers("admin", "none"));
	t = user_sudoers_name("admin");
	/* sudo skips files in sudoers.d whose names hold a '.' or end in '~'. */
	assert_string_equal(t, "/etc/sudoers.d/90-amiforge-admin");
	free(t);
}

static void test_user_check(void **state)
{
	static const char *const bad[] = {
		"{\"name\": \"Admin\"}", "{\"name\": \"ad.min\"}", "{\"name\": \"1admin\"}",
		"{\"name\": \"admin\", \"shell\": \"bash\"}", "{\"name\": \"admin\", \"groups\": [\"wheel x\"]}",
		"{\"name\": \"admin\", \"comment\": \"a:b\"}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *p = load(bad[i]);
		struct af_error *err = NULL;
		assert_int_equal(user_check(p, &err), -1);
		af_error_free(err);
		json_decref(p);
	}
	const char *passwd = "root:x:0:0:root:/root:/bin/bash\nadmin:x:1000:1000::/home/admin:/bin/bash\n";
	const char *line = user_db_find(passwd, "admin");
	assert_non_null(line);
	char *home = user_db_field(line, 5);
	assert_string_equal(home, "/home/admin");
	free(home);
	assert_null(user_db_find(passwd, "adm"));
}

/* ---- ssh ---- */

static void test_sshd_dropin(void **state)
{
	json_t *p = load("{}");
	char *t = ssh_render_dropin(p);
	assert_string_equal(t, "# written by amiforge (ssh stage)\n"
			       "PasswordAuthentication no\n"
			       "KbdInteractiveAuthentication no\n"
			       "PermitRootLogin no\n");
	free(t);
	json_decref(p);
	p = load("{\"password_authentication\": true, \"permit_root_login\": \"prohibit-password\", "
		 "\"options\": {\"X11Forwarding\": \"no\", \"permitrootlogin\": \"forced-commands-only\"}}");
	t = ssh_render_dropin(p);
	assert_string_equal(t, "# written by amiforge (ssh stage)\n"
			       "PasswordAuthentication yes\n"
			       "X11Forwarding no\n"
			       "permitrootlogin forced-commands-only\n");
	free(t);
	json_decref(p);
}

static void test_prep_unit(void **state)
{
	char *t = ssh_render_unit(120);
	assert_string_equal(t, "# written by amiforge (ssh stage)\n"
			       "[Unit]\n"
			       "Description=Prepare the instance: ssh host keys and the EC2 key pair\n"
			       "Wants=network-online.target\n"
			       "After=network-online.target\n"
			       "Before=ssh.service ssh.socket\n"
			       "\n"
			       "[Service]\n"
			       "Type=oneshot\n"
			       "RemainAfterExit=yes\n"
			       "EnvironmentFile=-/etc/default/prep-instance\n"
			       "ExecStart=/etc/prep-instance\n"
			       "StandardOutput=journal+console\n"
			       "StandardError=journal+console\n"
			       "SyslogIdentifier=prep-instance\n"
			       "TimeoutStartSec=180\n"
			       "\n"
			       "[Install]\n"
			       "WantedBy=multi-user.target\n");
	free(t);
	t = ssh_render_config("admin", "http://169.254.169.254", 120);
	assert_string_equal(t, "# prep-instance settings, written by amiforge (ssh stage)\n"
			       "PREP_USER=admin\n"
			       "IMDS_URL=http://169.254.169.254\n"
			       "IMDS_MAX_WAIT=120\n");
	free(t);
}

/* The script parses with the shell the image runs it with (/bin/sh). */
static void test_prep_script_syntax(void **state)
{
	char *dir = test_mkdtemp();
	write_str(dir, "prep-instance", ssh_prep_script);
	char *cmd = xasprintf("sh -n '%s/prep-instance'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	assert_non_null(strstr(ssh_prep_script, "X-aws-ec2-metadata-token-ttl-seconds"));
	assert_non_null(strstr(ssh_prep_script, "/latest/meta-data/public-keys/0/openssh-key"));
	test_rmdir_r(dir);
	free(dir);
}

static void test_ssh_check(void **state)
{
	static const char *const bad[] = {
		"{\"metadata_url\": \"169.254.169.254\"}", "{\"metadata_url\": \"http://a b\"}",
		"{\"metadata_url\": \"http://x/$(id)\"}", "{\"user\": \"a;b\"}",
		"{\"options\": {\"Match\\nUser\": \"x\"}}", "{\"options\": {\"Banner\": \"a\\nb\"}}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *p = load(bad[i]);
		struct af_error *err = NULL;
		assert_int_equal(ssh_check(p, &err), -1);
		af_error_free(err);
		json_decref(p);
	}
}

/* ---- kernel, packages ---- */

static void test_kernel_pick(void **state)
{
	char *names[] = { "config-6.1.0-18-amd64", "vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-18-amd64",
			  "initrd.img-6.1.0-18-amd64", "vmlinuz-6.1.0-20-amd64.dpkg-tmp", "vmlinuz" };
	assert_string_equal(kernel_pick(names, ARRAY_SIZE(names)), "6.1.0-18-amd64");
	assert_null(kernel_pick(names, 1));
	assert_string_equal(kernel_default_package("arm64"), "linux-image-arm64");
	assert_string_equal(kernel_default_package("x86_64"), "linux-image-amd64");
}

static void test_packages_check(void **state)
{
	json_t *p = load("{\"install\": [\"-o\"]}");
	struct af_error *err = NULL;
	assert_int_equal(pkg_check(p, &err), -1);
	af_error_clear(&err);
	json_decref(p);
	p = load("{}");
	assert_int_equal(pkg_check(p, &err), -1);
	af_error_clear(&err);
	json_decref(p);
	p = load("{\"install\": [\"less\", \"libc6:amd64\", \"vim=2:9.0.1378-2\"]}");
	assert_int_equal(pkg_check(p, &err), 0);
	json_decref(p);
	char *root = test_mkdtemp();
	write_str(root, "var/lib/dpkg/status", "Package: less\nStatus: install ok installed\n\n"
						"Package: vim\nStatus: deinstall ok config-files\n\n");
	assert_true(apt_installed(root, "less"));
	assert_true(apt_installed(root, "less=590-2"));
	assert_false(apt_installed(root, "vim"));
	assert_false(apt_installed(root, "les"));
	json_t *want = load("[\"less\", \"vim\", \"curl\"]");
	json_t *missing = apt_missing(root, want);
	assert_int_equal(json_array_size(missing), 2);
	assert_string_equal(json_string_value(json_array_get(missing, 0)), "vim");
	json_decref(missing);
	json_decref(want);
	test_rmdir_r(root);
	free(root);
}

/* ---- files ---- */

static void test_files_check(void **state)
{
	static const char *const bad[] = {
		"{\"source\": \"/r/a\", \"destination\": \"etc/motd\"}",
		"{\"source\": \"/r/a\", \"destination\": \"/etc/../../tmp/x\"}",
		"{\"source\": \"/r/a\", \"destination\": \"/etc/..\"}",
		"{\"source\": \"/r/a\", \"destination\": \"/etc/motd\", \"mode\": \"0689\"}",
		"{\"source\": \"/r/a\", \"destination\": \"/etc/motd\", \"owner\": \":adm\"}",
		"{\"source\": \"/r/a\", \"items\": [{\"source\": \"/r/a\", \"destination\": \"/x\"}]}",
		"{\"items\": []}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		json_t *p = load(bad[i]);
		struct af_error *err = NULL;
		assert_int_equal(files_check(p, &err), -1);
		af_error_free(err);
		json_decref(p);
	}
	json_t *p = load("{\"source\": \"/r/a\", \"destination\": \"/etc/a..b/\", \"mode\": \"0640\", \"owner\": \"admin:adm\"}");
	struct af_error *err = NULL;
	assert_int_equal(files_check(p, &err), 0);
	json_decref(p);
}

static void test_files_template(void **state)
{
	char *dir = test_mkdtemp();
	write_str(dir, "motd", "host ${HOST}, $$literal, $HOME, ${MISSING:-fallback}\n");
	char *src = path_join(dir, "motd");
	struct vars v;
	vars_init(&v);
	vars_add_default(&v, "HOST", "web-1");
	json_t *p = json_pack("{s:s, s:s, s:b}", "source", src, "destination", "/etc/motd", "template", 1);
	struct af_error *err = NULL;
	assert_int_equal(files_expand(p, &v, &err), 0);
	assert_string_equal(json_string_value(json_object_get(p, FILES_TEXT_KEY)),
			    "host web-1, $literal, $HOME, fallback\n");
	json_decref(p);
	/* An undefined variable is an error at load time, naming the file. */
	write_str(dir, "bad", "${AMIFORGE_TEST_UNDEFINED_VAR}\n");
	char *bad = path_join(dir, "bad");
	p = json_pack("{s:[{s:s, s:s, s:b}]}", "items", "source", bad, "destination", "/x", "template", 1);
	assert_int_equal(files_expand(p, &v, &err), -1);
	assert_non_null(strstr(af_error_msg(err), bad));
	af_error_clear(&err);
	json_decref(p);
	vars_release(&v);
	free(src);
	free(bad);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- destinations inside the image ---- */

static void test_resolve_in_root(void **state)
{
	char *dir = test_mkdtemp();
	char *root = path_join(dir, "root");
	char *outside = path_join(dir, "outside");
	assert_int_equal(mkdir(root, 0755), 0);
	assert_int_equal(mkdir(outside, 0755), 0);
	write_str(root, "usr/lib/x", "x");
	char *p1 = path_join(root, "lib");
	assert_int_equal(symlink("usr/lib", p1), 0);
	char *p2 = path_join(root, "up");
	assert_int_equal(symlink("../../../../../../outside", p2), 0);
	char *p3 = path_join(root, "abs");
	assert_int_equal(symlink(outside, p3), 0);
	int rootfd = open(root, O_PATH | O_DIRECTORY);
	assert_true(rootfd >= 0);
	struct af_error *err = NULL;

	char *r = inroot_resolve(rootfd, "/lib/new/file", &err);
	assert_string_equal(r, "/usr/lib/new/file");
	free(r);
	/* An absolute symlink leads where it would in the booted image. */
	r = inroot_resolve(rootfd, "/abs/file", &err);
	char *want = xasprintf("%s/file", outside);
	assert_string_equal(r, want);
	free(want);
	free(r);
	r = inroot_resolve(rootfd, "/abs", &err);
	free(r);

	r = inroot_resolve(rootfd, "/up/file", &err);
	assert_null(r);
	assert_int_equal(af_error_errno(err), EXDEV);
	assert_non_null(strstr(af_error_msg(err), "the symlink '/up' in the image points outside the image"));
	af_error_clear(&err);
	r = inroot_resolve(rootfd, "/etc/../x", &err);
	assert_null(r);
	af_error_clear(&err);

	/* Writing through the absolute symlink never reaches the host's
	 * directory; where openat2 exists it lands inside the image. */
	int w = inroot_write(rootfd, root, "/abs/planted", "x", 1, 0644, getuid(), getgid(), &err);
	af_error_clear(&err);
	assert_false(exists_at(outside, "planted"));
	if (w == 0) {
		char *inside = xasprintf("%s%s/planted", root, outside);
		struct stat st;
		assert_int_equal(stat(inside, &st), 0);
		free(inside);
	}
	/* A symlink at the destination itself is replaced, not followed. */
	assert_int_equal(inroot_write(rootfd, root, "/up", "y", 1, 0600, getuid(), getgid(), &err), 0);
	struct stat st;
	assert_int_equal(lstat(p2, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	close(rootfd);
	free(p1);
	free(p2);
	free(p3);
	free(root);
	free(outside);
	test_rmdir_r(dir);
	free(dir);
}

/* ---- sanitize ---- */

static char *scan(const char *root, const char *params_json, size_t *n_found, size_t *n_allowed)
{
	int rootfd = open(root, O_RDONLY | O_DIRECTORY);
	assert_true(rootfd >= 0);
	json_t *params = load(params_json);
	struct san_scan s = { .found = STRBUF_INIT };
	struct af_error *err = NULL;
	int r = san_scan_root(rootfd, params, &s, &err);
	assert_int_equal(r, s.n_found ? -1 : 0);
	*n_found = s.n_found;
	*n_allowed = s.n_allowed;
	char *found = strbuf_detach(&s.found);
	af_error_free(err);
	json_decref(params);
	close(rootfd);
	return found;
}

static void test_sanitize_scan(void **state)
{
	char *root = test_mkdtemp();
	char *key = xasprintf("%s\n%s\n%s\n-----END OPENSSH PRIVATE KEY-----\n", PEM_BEGIN, PEM_BODY, PEM_BODY);
	write_str(root, "root/.ssh/id_ed25519", key);
	write_str(root, "etc/creds", "aws_access_key_id = " AKID_HEAD "Q7Y6X5W4V3U2T1S0\n");
	write_str(root, "usr/share/doc/aws/example", "id " AKID_HEAD "IOSFODNN7EXAMPLE in the docs\n");
	write_str(root, "usr/bin/ssh-keygen", "\x7f" "ELF...." PEM_BEGIN "\n\0\0");
	write_str(root, "usr/lib/libtest.so", "\x7f" "ELF");
	/* An ELF file with a whole embedded key (a self-test vector). */
	char *elf = xasprintf("\x7f" "ELF%s", key);
	write_str(root, "usr/lib/libvector.so", elf);
	write_str(root, "home/u/.bash_history", "ls\n");
	write_str(root, "home/v/.bash_history", "");
	write_str(root, "srv/.ssh/authorized_keys", "");
	write_str(root, "opt/token.secret", "x");
	write_str(root, "proc/ignored", key);
	write_str(root, "etc/longer", "X" AKID_HEAD "Q7Y6X5W4V3U2T1S0 and " AKID_HEAD "Q7Y6X5W4V3U2T1S0Z\n");
	/* A key straddling the 1 MiB read boundary. */
	size_t big_len = SAN_CHUNK + 4096;
	char *big = xcalloc(1, big_len);
	memset(big, 'x', big_len);
	memcpy(big + SAN_CHUNK - 7, key, strlen(key));
	write_at(root, "var/big", big, big_len);
	memset(big, 'x', big_len);
	memcpy(big + SAN_CHUNK - 3, "aws " AKID_HEAD "Q7Y6X5W4V3U2T1S0 ", 26);
	write_at(root, "var/big2", big, big_len);

	size_t n, allowed;
	/* The order of readdir is the filesystem's: compare as a set. */
	char *found = scan(root, "{\"deny\": [\"*.secret\"], \"allow\": [\"/srv/*/authorized_keys\"]}", &n, &allowed);
	static const char *const want[] = {
		"/root/.ssh/id_ed25519: private key (OpenSSH)\n", "/etc/creds: AWS access key id\n",
		"/home/u/.bash_history: non-empty shell history\n", "/opt/token.secret: listed in deny:\n",
		"/var/big: private key (OpenSSH)\n", "/var/big2: AWS access key id\n",
	};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		if (!strstr(found, want[i]))
			fail_msg("missing finding %s in:\n%s", want[i], found);
	assert_int_equal(n, ARRAY_SIZE(want));
	assert_int_equal(allowed, 1);
	free(found);
	free(big);
	free(elf);
	free(key);
	test_rmdir_r(root);
	free(root);
}

static void test_sanitize_removals(void **state)
{
	char *root = test_mkdtemp();
	write_str(root, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nsvc:x:999:999::/srv/svc:/bin/sh\n");
	write_str(root, "root/.bash_history", "secret command\n");
	write_str(root, "srv/svc/.ssh/authorized_keys", "ssh-ed25519 AAAA\n");
	write_str(root, "home/admin/.ssh/authorized_keys", "ssh-ed25519 AAAA\n");
	write_str(root, "home/admin/.lesshst", "x");
	write_str(root, "var/log/apt/history.log", "x");
	write_str(root, "var/log/syslog", "x");
	write_str(root, "etc/ssh/ssh_host_ed25519_key", "x");
	write_str(root, "etc/ssh/ssh_host_ed25519_key.pub", "x");
	write_str(root, "etc/ssh/sshd_config", "x");
	write_str(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
	write_str(root, "var/lib/apt/lists/deb_dists_bookworm_InRelease", "x");
	write_str(root, "var/cache/apt/pkgcache.bin", "x");
	write_str(root, "var/cache/apt/archives/less_590-2_amd64.deb", "x");
	write_str(root, "tmp/build/leftover", "x");
	write_str(root, "etc/resolv.conf", "nameserver 10.0.0.2\n");
	write_str(root, "usr/sbin/policy-rc.d", "exit 101\n");
	int rootfd = open(root, O_RDONLY | O_DIRECTORY);
	assert_true(rootfd >= 0);
	size_t removed = 0;
	struct af_error *err = NULL;
	if (san_remove_all(rootfd, root, &removed, &err) < 0)
		fail_msg("%s", af_error_msg(err));
	static const char *const gone[] = {
		"root/.bash_history", "srv/svc/.ssh/authorized_keys", "home/admin/.ssh/authorized_keys",
		"home/admin/.lesshst", "var/log/apt/history.log", "var/log/syslog", "etc/ssh/ssh_host_ed25519_key",
		"etc/ssh/ssh_host_ed25519_key.pub", "var/lib/apt/lists/deb_dists_bookworm_InRelease",
		"var/cache/apt/pkgcache.bin", "var/cache/apt/archives/less_590-2_amd64.deb", "tmp/build",
		"etc/resolv.conf", "usr/sbin/policy-rc.d",
	};
	for (size_t i = 0; i < ARRAY_SIZE(gone); i++)
		if (exists_at(root, gone[i]))
			fail_msg("%s is still there", gone[i]);
	assert_true(exists_at(root, "var/log/apt"));
	assert_true(exists_at(root, "etc/ssh/sshd_config"));
	assert_true(exists_at(root, "tmp"));
	char *mid = path_join(root, "etc/machine-id");
	struct stat st;
	assert_int_equal(stat(mid, &st), 0);
	assert_int_equal(st.st_size, 0);
	free(mid);
	close(rootfd);
	test_rmdir_r(root);
	free(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_interfaces),
		cmocka_unit_test(test_networkd_unit),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_network_check),
		cmocka_unit_test(test_sudoers),
		cmocka_unit_test(test_user_check),
		cmocka_unit_test(test_sshd_dropin),
		cmocka_unit_test(test_prep_unit),
		cmocka_unit_test(test_prep_script_syntax),
		cmocka_unit_test(test_ssh_check),
		cmocka_unit_test(test_kernel_pick),
		cmocka_unit_test(test_packages_check),
		cmocka_unit_test(test_files_check),
		cmocka_unit_test(test_files_template),
		cmocka_unit_test(test_resolve_in_root),
		cmocka_unit_test(test_sanitize_scan),
		cmocka_unit_test(test_sanitize_removals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
