/* SPDX-License-Identifier: Apache-2.0 */
/* ssh: the sshd drop-in, the prep-instance unit, settings and script, and
 * the parameter check.  The stage file is included so its static helpers
 * can be tested. */
#include "stagetest.h"

#include "../../stages/ssh.c"

static void test_sshd_dropin(void **state)
{
	json_t *p = load_json("{}");
	char *t = ssh_render_dropin(p);
	assert_string_equal(t, "# written by amiforge (ssh stage)\n"
			       "PasswordAuthentication no\n"
			       "KbdInteractiveAuthentication no\n"
			       "PermitRootLogin no\n");
	free(t);
	json_decref(p);
	p = load_json("{\"password_authentication\": true, \"permit_root_login\": \"prohibit-password\", "
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
		json_t *p = load_json(bad[i]);
		struct af_error *err = NULL;
		assert_int_equal(ssh_check(p, &err), -1);
		af_error_free(err);
		json_decref(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sshd_dropin),
		cmocka_unit_test(test_prep_unit),
		cmocka_unit_test(test_prep_script_syntax),
		cmocka_unit_test(test_ssh_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
