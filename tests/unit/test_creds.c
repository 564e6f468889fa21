/* SPDX-License-Identifier: Apache-2.0 */
/* Credential chain precedence with a temporary HOME, IMDS role
 * credentials (documents, the chain's IMDS step) and their refresh (through
 * a fake imds_iface), redaction.  Profiles, region and endpoints:
 * test_awsconfig.c. */
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "awshome.h"

#include "amiforge/aws/creds.h"
#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

/* ---- a fake instance metadata service ---- */

struct fake_imds {
	bool present;
	const char *role;
	const char *region;
	int creds_calls;
	long ttl;  /* seconds until the served credentials expire */
};

static int fake_get(void *data, const char *path, char **body, struct af_error **err)
{
	struct fake_imds *f = data;
	if (!f->present)
		return 1;
	if (!strcmp(path, "meta-data/placement/region")) {
		*body = xstrdup(f->region);
		return 0;
	}
	if (!strcmp(path, "meta-data/iam/security-credentials/")) {
		*body = xasprintf("%s\n", f->role ? f->role : "");
		return 0;
	}
	if (f->role && str_has_prefix(path, "meta-data/iam/security-credentials/")) {
		f->creds_calls++;
		char exp[32];
		time_t t = time(NULL) + f->ttl;
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
		*body = xasprintf("{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIAROLE%d\","
				  "\"SecretAccessKey\":\"rolesecret%d\",\"Token\":\"roletoken%d\","
				  "\"Expiration\":\"%s\"}",
				  f->creds_calls, f->creds_calls, f->creds_calls, exp);
		return 0;
	}
	return 1;
}

static char *fake_where(void *data)
{
	return xstrdup("fake-imds");
}

static struct imds_iface fake_imds_iface(struct fake_imds *f)
{
	return (struct imds_iface){ .get = fake_get, .where = fake_where, .data = f };
}

static void resolve_ok(const struct aws_creds_opts *o, struct aws_creds *c)
{
	_cleanup_error_ struct af_error *err = NULL;
	if (aws_creds_resolve(o, c, &err) < 0)
		fail_msg("%s", af_error_msg(err));
}

static char *resolve_fail(const struct aws_creds_opts *o)
{
	_cleanup_error_ struct af_error *err = NULL;
	struct aws_creds c = { 0 };
	assert_int_equal(aws_creds_resolve(o, &c, &err), -1);
	return xstrdup(af_error_msg(err));
}

static const char credentials_file[] =
	"# comment\n"
	"[default]\n"
	"aws_access_key_id = AKIDFILEDEFAULT\n"
	"aws_secret_access_key = filedefaultsecret\n"
	"\n"
	"[dev]\n"
	"aws_access_key_id=AKIDFILEDEV\n"
	"aws_secret_access_key=filedevsecret\n"
	"aws_session_token = filedevtoken\n"
	"[half]\n"
	"aws_access_key_id=AKIDHALF\n";

static const char config_file[] =
	"[default]\n"
	"region = eu-west-3\n"
	"[profile ops]\n"
	"region = ap-south-1\n"
	"s3 =\n"
	"  aws_access_key_id = NOTTHISONE\n"
	"aws_access_key_id = AKIDCONFIGOPS\n"
	"aws_secret_access_key = configopssecret\n";

static void test_env_over_profile(void **state)
{
	struct fake_imds f = { 0 };
	struct imds_iface imds = fake_imds_iface(&f);
	struct aws_creds_opts o = { .imds = &imds };
	write_home_file("credentials", credentials_file);
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
	setenv("AWS_SESSION_TOKEN", "envtoken", 1);
	setenv("AWS_PROFILE", "dev", 1);
	struct aws_creds c;
	resolve_ok(&o, &c);
	assert_string_equal(c.access_key_id, "AKIDENV");
	assert_string_equal(c.secret_access_key, "envsecret");
	assert_string_equal(c.session_token, "envtoken");
	assert_string_equal(c.source, "environment");
	assert_int_equal(c.expiration, 0);
	aws_creds_release(&c);
	/* Only half of the pair: an error, not a silent fallback. */
	unsetenv("AWS_SECRET_ACCESS_KEY");
	_cleanup_free_ char *msg = resolve_fail(&o);
	assert_string_equal(msg, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not "
				 "(set both, or neither to use a profile)");
}

static void test_profiles(void **state)
{
	struct fake_imds f = { .present = true, .role = "r" };
	struct imds_iface imds = fake_imds_iface(&f);
	struct aws_creds_opts o = { .imds = &imds };
	write_home_file("credentials", credentials_file);
	write_home_file("config", config_file);
	struct aws_creds c;
	resolve_ok(&o, &c);
	assert_string_equal(c.access_key_id, "AKIDFILEDEFAULT");
	assert_null(c.session_token);
	_cleanup_free_ char *src = xasprintf("profile 'default' in %s/.aws/credentials", home);
	assert_string_equal(c.source, src);
	aws_creds_release(&c);

	setenv("AWS_PROFILE", "dev", 1);
	resolve_ok(&o, &c);
	assert_string_equal(c.access_key_id, "AKIDFILEDEV");
	assert_string_equal(c.session_token, "filedevtoken");
	aws_creds_release(&c);

	/* [profile ops] in the config file; the indented s3 sub-key is not it. */
	setenv("AWS_PROFILE", "ops", 1);
	resolve_ok(&o, &c);
	assert_string_equal(c.access_key_id, "AKIDCONFIGOPS");
	assert_string_equal(c.secret_access_key, "configopssecret");
	aws_creds_release(&c);

	/* opts->profile beats AWS_PROFILE. */
	o.profile = "dev";
	resolve_ok(&o, &c);
	assert_string_equal(c.access_key_id, "AKIDFILEDEV");
	aws_creds_release(&c);
	o.profile = NULL;

	setenv("AWS_PROFILE", "half", 1);
	_cleanup_free_ char *half = resolve_fail(&o);
	assert_non_null(strstr(half, "AWS profile 'half' in '"));
	assert_non_null(strstr(half, "has only one of aws_access_key_id and aws_secret_access_key"));

	/* A named profile that exists nowhere does not fall through to IMDS. */
	setenv("AWS_PROFILE", "nope", 1);
	_cleanup_free_ char *nope = resolve_fail(&o);
	assert_true(str_has_prefix(nope, "AWS profile 'nope' (from AWS_PROFILE) not found in "));
	assert_int_equal(f.creds_calls, 0);
}

static void test_file_overrides(void **state)
{
	_cleanup_free_ char *cf = path_join(home, "creds.ini");
	_cleanup_free_ char *cfg = path_join(home, "conf.ini");
	_cleanup_error_ struct af_error *err = NULL;
	const char *c1 = "[default]\naws_access_key_id = AKIDOVERRIDE\naws_secret_access_key = s1\n"
			 "aws_security_token = legacytoken\n";
	assert_int_equal(write_file_atomic(cf, c1, strlen(c1), 0600, &err), 0);
	const char *c2 = "[profile other]\naws_access_key_id = AKIDCFG\naws_secret_access_key = s2\n";
	assert_int_equal(write_file_atomic(cfg, c2, strlen(c2), 0600, &err), 0);
	write_home_file("credentials", credentials_file);
	setenv("AWS_SHARED_CREDENTIALS_FILE", cf, 1);
	setenv("AWS_CONFIG_FILE", cfg, 1);
	struct aws_creds_opts o = { .no_imds = true };
	struct aws_creds c;
	resolve_ok(&o, &c);
	assert_string_equal(c.access_key_id, "AKIDOVERRIDE");
	assert_string_equal(c.session_token, "legacytoken");
	aws_creds_release(&c);
	o.profile = "other";
	resolve_ok(&o, &c);
	assert_string_equal(c.access_key_id, "AKIDCFG");
	aws_creds_release(&c);
}

static void test_nothing_found(void **state)
{
	struct fake_imds f = { .present = false };
	struct imds_iface imds = fake_imds_iface(&f);
	struct aws_creds_opts o = { .imds = &imds };
	_cleanup_free_ char *msg = resolve_fail(&o);
	_cleanup_free_ char *want = xasprintf(
		"no AWS credentials found: looked in environment (AWS_ACCESS_KEY_ID not set); "
		"profile 'default' in %s/.aws/credentials (no such file); profile 'default' in "
		"%s/.aws/config (no such file); instance metadata at fake-imds (not available) "
		"(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure a profile with "
		"aws_access_key_id and aws_secret_access_key)", home, home);
	assert_string_equal(msg, want);

	/* Files without the section; IMDS with no role; IMDS disabled. */
	write_home_file("credentials", "[other]\naws_access_key_id=a\naws_secret_access_key=b\n");
	write_home_file("config", "[profile other]\nregion=x\n");
	f.present = true;
	_cleanup_free_ char *m2 = resolve_fail(&o);
	assert_non_null(strstr(m2, "/.aws/credentials (no [default] section)"));
	assert_non_null(strstr(m2, "/.aws/config (no [default] section)"));
	assert_non_null(strstr(m2, "instance metadata at fake-imds (no IAM role attached)"));
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	_cleanup_free_ char *m3 = resolve_fail(&o);
	assert_non_null(strstr(m3, "instance metadata (disabled by AWS_EC2_METADATA_DISABLED)"));
}

static void test_imds_and_refresh(void **state)
{
	struct fake_imds f = { .present = true, .role = "builder", .ttl = 6 * 3600 };
	struct imds_iface imds = fake_imds_iface(&f);
	struct aws_creds_opts o = { .imds = &imds };
	struct aws_creds_chain *ch = aws_creds_chain_new(&o);
	struct aws_creds c;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(aws_creds_chain_get(ch, &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAROLE1");
	assert_string_equal(c.session_token, "roletoken1");
	assert_string_equal(c.source, "instance metadata role 'builder'");
	assert_true(c.expiration > time(NULL) + 5 * 3600);
	aws_creds_release(&c);
	/* Far from expiry: cached. */
	assert_int_equal(aws_creds_chain_get(ch, &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAROLE1");
	assert_int_equal(f.creds_calls, 1);
	aws_creds_release(&c);
	aws_creds_chain_free(ch);

	/* Expiring within the refresh window: fetched again on the next use. */
	f.creds_calls = 0;
	f.ttl = AWS_CREDS_REFRESH_SECS / 2;
	ch = aws_creds_chain_new(&o);
	assert_int_equal(aws_creds_chain_get(ch, &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAROLE1");
	aws_creds_release(&c);
	f.ttl = 6 * 3600;
	assert_int_equal(aws_creds_chain_get(ch, &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAROLE2");
	assert_string_equal(c.secret_access_key, "rolesecret2");
	aws_creds_release(&c);
	assert_int_equal(aws_creds_chain_get(ch, &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAROLE2");
	assert_int_equal(f.creds_calls, 2);
	aws_creds_release(&c);

	/* Refresh failing while the old ones are still valid: keep them. */
	f.ttl = AWS_CREDS_REFRESH_SECS / 2;
	aws_creds_chain_free(ch);
	ch = aws_creds_chain_new(&o);
	assert_int_equal(aws_creds_chain_get(ch, &c, &err), 0);
	aws_creds_release(&c);
	f.present = false;
	assert_int_equal(aws_creds_chain_get(ch, &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAROLE3");
	aws_creds_release(&c);
	aws_creds_chain_free(ch);
}

static void test_parse_imds(void **state)
{
	static const char doc[] = "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : "
		"\"2017-05-17T09:09:54Z\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"ASIAX\",\n"
		"  \"SecretAccessKey\" : \"sek\",\n  \"Token\" : \"tok\",\n  \"Expiration\" : "
		"\"2017-05-17T15:09:54Z\"\n}";
	_cleanup_error_ struct af_error *err = NULL;
	struct aws_creds c;
	assert_int_equal(aws_creds_parse_imds(doc, "r", &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAX");
	assert_string_equal(c.secret_access_key, "sek");
	assert_string_equal(c.session_token, "tok");
	assert_int_equal((long long)c.expiration, 1495033794LL);
	assert_string_equal(c.source, "instance metadata role 'r'");
	aws_creds_release(&c);

	static const struct {
		const char *doc, *msg;
	} bad[] = {
		{ "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\"}",
		  "instance metadata role 'r': Code is 'AssumeRoleUnauthorizedAccess', not Success" },
		{ "{\"AccessKeyId\":\"a\"}",
		  "instance metadata role 'r': AccessKeyId or SecretAccessKey missing" },
		{ "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"s\",\"Expiration\":\"soon\"}",
		  "instance metadata role 'r': Expiration 'soon' is not an ISO 8601 time" },
		{ "[]", "instance metadata role 'r': the credentials are not a JSON object" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(aws_creds_parse_imds(bad[i].doc, "r", &c, &err), -1);
		assert_true(str_has_prefix(af_error_msg(err), bad[i].msg));
		af_error_clear(&err);
	}
}

/* The chain's IMDS step on its own (awsdrv's `imds creds`). */
static void test_from_imds(void **state)
{
	struct fake_imds f = { .present = true, .role = "builder", .ttl = 3600 };
	struct imds_iface imds = fake_imds_iface(&f);
	_cleanup_error_ struct af_error *err = NULL;
	struct aws_creds c = { 0 };
	assert_int_equal(aws_creds_from_imds(&imds, &c, &err), 0);
	assert_string_equal(c.access_key_id, "ASIAROLE1");
	assert_string_equal(c.source, "instance metadata role 'builder'");
	assert_true(c.expiration > time(NULL));
	aws_creds_release(&c);
	f.role = NULL;
	assert_int_equal(aws_creds_from_imds(&imds, &c, &err), 1);
	f.present = false;
	assert_int_equal(aws_creds_from_imds(&imds, &c, &err), 1);
	assert_null(err);
	assert_null(c.access_key_id);
}

static void test_redact(void **state)
{
	struct aws_creds c = { .access_key_id = "AKIDX", .secret_access_key = "sEcReTkEy123",
			       .session_token = "ToKeN/xyz+9" };
	setenv("AWS_SECRET_ACCESS_KEY", "envSECRET99", 1);
	_cleanup_free_ char *r = aws_redact(
		"a sEcReTkEy123 b ToKeN/xyz+9 c envSECRET99 "
		"https://h/k?X-Amz-Signature=abcd&X-Amz-Security-Token=QQQ&x=1\n"
		"X-Amz-Security-Token: other\n"
		"Authorization: AWS4-HMAC-SHA256 Credential=AKIDX/..., Signature=00ff", &c);
	assert_string_equal(r, "a [REDACTED] b [REDACTED] c [REDACTED] "
			       "https://h/k?X-Amz-Signature=[REDACTED]&X-Amz-Security-Token=[REDACTED]&x=1\n"
			       "X-Amz-Security-Token:[REDACTED]\n"
			       "Authorization: AWS4-HMAC-SHA256 Credential=AKIDX/..., Signature=00ff");
	char buf[16];
	assert_string_equal(aws_akid_short("AKIAIOSFODNN7EXAMPLE", buf), "AKIA...MPLE");
}

static void test_copy_and_static_chain(void **state)
{
	struct aws_creds c = { .access_key_id = "A", .secret_access_key = "S", .session_token = NULL,
			       .expiration = 5, .source = "x" };
	struct aws_creds_chain *ch = aws_creds_chain_new_static(&c);
	struct aws_creds d;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(aws_creds_chain_get(ch, &d, &err), 0);
	assert_string_equal(d.access_key_id, "A");
	assert_null(d.session_token);
	aws_creds_release(&d);
	assert_null(d.access_key_id);
	aws_creds_chain_free(ch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_env_over_profile, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_profiles, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_file_overrides, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_nothing_found, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_imds_and_refresh, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_parse_imds, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_from_imds, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_redact, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_copy_and_static_chain, aws_home_setup, aws_home_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
