/* SPDX-License-Identifier: Apache-2.0 */
/* Credential redaction (redact.h) and the writers that go through it: the
 * log core (terminal and stage log), the journal, JSON events; the modes of
 * STATE and the journal. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "amiforge/aws/creds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/journal.h"
#include "amiforge/log.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

#define ENV_SECRET "envSecretValue/With+Slash\"Quote"
#define ENV_TOKEN "envTokenValue0123456789"
#define LOADED "loadedFromProfile9876"

static char *tmpdir;

static int setup(void **state)
{
	(void)state;
	tmpdir = test_mkdtemp();
	setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET, 1);
	setenv("AWS_SESSION_TOKEN", ENV_TOKEN, 1);
	unsetenv("AWS_SECURITY_TOKEN");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	redact_forget_all();
	test_rmdir_r(tmpdir);
	free(tmpdir);
	return 0;
}

static char *slurp(const char *path)
{
	_cleanup_error_ struct af_error *err = NULL;
	size_t len = 0;
	char *text = read_file(path, &len, &err);
	assert_non_null(text);
	return text;
}

static void test_text(void **state)
{
	(void)state;
	_cleanup_free_ char *a = redact_text("k=" ENV_SECRET " t=" ENV_TOKEN " plain", NULL, 0);
	assert_string_equal(a, "k=[REDACTED] t=[REDACTED] plain");

	/* Registered values count from then on; short ones never do. */
	_cleanup_free_ char *b = redact_text("x " LOADED " abc", NULL, 0);
	assert_string_equal(b, "x " LOADED " abc");
	redact_add(LOADED);
	redact_add("abc");
	redact_add(NULL);
	_cleanup_free_ char *c = redact_text("x " LOADED " abc " LOADED, NULL, 0);
	assert_string_equal(c, "x [REDACTED] abc [REDACTED]");
	assert_true(redact_needed("..." LOADED "..."));
	assert_false(redact_needed("nothing here"));
	assert_false(redact_needed(NULL));

	/* Extra values, and the longer one wins where two start together. */
	const char *const extra[] = { NULL, "extraSecret", "extraSecretLonger" };
	_cleanup_free_ char *d = redact_text("extraSecretLonger extraSecret", extra, 3);
	assert_string_equal(d, "[REDACTED] [REDACTED]");
	_cleanup_free_ char *e = redact_text(NULL, NULL, 0);
	assert_string_equal(e, "");

	redact_forget_all();
	assert_false(redact_needed(LOADED));
}

static void test_aws_redact_uses_the_rule(void **state)
{
	(void)state;
	redact_add(LOADED);
	struct aws_creds c = { .secret_access_key = "ownSecretKey123" };
	_cleanup_free_ char *r = aws_redact("a ownSecretKey123 b " LOADED " c " ENV_SECRET, &c);
	assert_string_equal(r, "a [REDACTED] b [REDACTED] c [REDACTED]");
}

static void test_redact_json(void **state)
{
	(void)state;
	json_t *j = json_pack("{s:s, s:[s, i, {s:s}], s:s}", "a", "x" ENV_SECRET "y", "b", ENV_TOKEN, 3,
			      "inner", "in " ENV_SECRET, ENV_TOKEN, "key is a secret");
	redact_json(j);
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(s, "{\"[REDACTED]\":\"key is a secret\",\"a\":\"x[REDACTED]y\","
			       "\"b\":[\"[REDACTED]\",3,{\"inner\":\"in [REDACTED]\"}]}");
	free(s);
	json_decref(j);
	redact_json(NULL);
}

/* Everything log_msg writes, to the terminal and to the stage log. */
static void test_log_sinks(void **state)
{
	(void)state;
	_cleanup_free_ char *term = path_join(tmpdir, "stderr");
	_cleanup_free_ char *stage = path_join(tmpdir, "stage.log");
	int saved = dup(STDERR_FILENO);
	int tfd = open(term, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int sfd = open(stage, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && tfd >= 0 && sfd >= 0);
	dup2(tfd, STDERR_FILENO);
	log_set_stage_fd(sfd);
	log_error("request failed with key %s and token %s", ENV_SECRET, ENV_TOKEN);
	log_set_stage_fd(-1);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(tfd);
	close(sfd);
	static const char want[] = "amiforge: error: request failed with key [REDACTED] and token [REDACTED]\n";
	_cleanup_free_ char *t = slurp(term);
	_cleanup_free_ char *s = slurp(stage);
	assert_string_equal(t, want);
	assert_string_equal(s, want);
}

static void test_journal(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = path_join(tmpdir, "state");
	_cleanup_error_ struct af_error *err = NULL;
	struct journal *j = journal_open(dir, &err);
	assert_non_null(j);
	struct journal_stage js = { 1, "s", "0123456789abcdef" };
	json_t *outs = json_pack("{s:s}", "x", ENV_TOKEN);
	assert_int_equal(journal_append_stage_fail(j, &js, 1.0, "bad key " ENV_SECRET, &err), 0);
	assert_int_equal(journal_append_stage_done(j, &js, 1.0, outs, &err), 0);
	/* The caller's outputs are left as they were. */
	assert_string_equal(json_string_value(json_object_get(outs, "x")), ENV_TOKEN);
	json_decref(outs);
	journal_close(j);
	_cleanup_free_ char *path = path_join(dir, "journal");
	_cleanup_free_ char *text = slurp(path);
	assert_null(strstr(text, "envSecretValue"));
	assert_null(strstr(text, ENV_TOKEN));
	assert_non_null(strstr(text, "\"error\":\"bad key [REDACTED]\""));
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	_cleanup_free_ char *lock = path_join(dir, "lock");
	assert_int_equal(stat(lock, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
}

/* A STATE that others can read is tightened, and a 0644 journal with it. */
static void test_state_tightened(void **state)
{
	(void)state;
	_cleanup_free_ char *dir = path_join(tmpdir, "open");
	_cleanup_free_ char *path = path_join(dir, "journal");
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chmod(dir, 0755), 0);
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0644), 0);
	close(fd);
	_cleanup_error_ struct af_error *err = NULL;
	struct journal *j = journal_open(dir, &err);
	assert_non_null(j);
	journal_close(j);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* New parents are private too. */
	_cleanup_free_ char *deep = path_join(tmpdir, "a/b/c");
	assert_int_equal(journal_state_mkdir(deep, &err), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
}

static void test_log_event(void **state)
{
	(void)state;
	_cleanup_free_ char *out = path_join(tmpdir, "stdout");
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && ofd >= 0);
	dup2(ofd, STDOUT_FILENO);
	log_init(LOG_LEVEL_INFO, true);
	json_t *ev = json_pack("{s:s, s:s}", "event", "x", "v", ENV_SECRET);
	log_event(ev);
	json_decref(ev);
	log_init(LOG_LEVEL_INFO, false);
	log_progress("progress %s", ENV_TOKEN);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(ofd);
	_cleanup_free_ char *text = slurp(out);
	assert_string_equal(text, "{\"event\":\"x\",\"v\":\"[REDACTED]\"}\nprogress [REDACTED]\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_aws_redact_uses_the_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redact_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_sinks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_tightened, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_event, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
