/* SPDX-License-Identifier: Apache-2.0 */
/* sanitize: on a temporary tree (no root needed), the secret scan with
 * deny: and allow:, and the removals.  The stage file is included so its
 * static helpers can be tested. */
#include "stagetest.h"

#include "../../stages/sanitize.c"

/* Written in pieces so that this file itself holds no key-shaped text. */
#define PEM_BEGIN "-----BEGIN " "OPENSSH PRIVATE KEY-----"
#define PEM_BODY "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"
#define AKID_HEAD "AK" "IA"

static char *scan(const char *root, const char *params_json, size_t *n_found, size_t *n_allowed)
{
	int rootfd = open(root, O_RDONLY | O_DIRECTORY);
	assert_true(rootfd >= 0);
	json_t *params = load_json(params_json);
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
		cmocka_unit_test(test_sanitize_scan),
		cmocka_unit_test(test_sanitize_removals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
