/* SPDX-License-Identifier: Apache-2.0 */
/* run: its environment, the short form of a command for messages and the
 * parameter check; then, as root, commands and a script run for real in a
 * minimal image.  The stage file is included so its static helpers can be
 * tested. */
#include "stagetest.h"

#include <glob.h>

#include "../../stages/run.c"

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
	exec_env_free(e);
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
}

/* ---- run for real ---- */

static void test_run(void **state)
{
	REQUIRE_ROOT();
	REQUIRE_NO_VALGRIND();
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
		cmocka_unit_test(test_run_helpers),
		cmocka_unit_test_setup_teardown(test_run, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
