/* SPDX-License-Identifier: Apache-2.0 */
/* awsconfig: the INI reader (table-driven), the profile name and its files,
 * region precedence (through a fake imds_iface), endpoints and host
 * inference, all with a temporary HOME. */
#include <string.h>
#include <sys/stat.h>

#include "awshome.h"

#include "amiforge/aws/awsconfig.h"
#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

/* ---- a fake instance metadata service: only the region ---- */

struct fake_imds {
	bool present;
	const char *region;
};

static int fake_get(void *data, const char *path, char **body, struct af_error **err)
{
	struct fake_imds *f = data;
	if (!f->present || strcmp(path, "meta-data/placement/region"))
		return 1;
	*body = xstrdup(f->region);
	return 0;
}

static char *fake_where(void *data)
{
	return xstrdup("fake-imds");
}

static struct imds_iface fake_imds_iface(struct fake_imds *f)
{
	return (struct imds_iface){ .get = fake_get, .where = fake_where, .data = f };
}

static const char config_file[] =
	"[default]\n"
	"region = eu-west-3\n"
	"[profile ops]\n"
	"region = ap-south-1\n"
	"s3 =\n"
	"  aws_access_key_id = NOTTHISONE\n"
	"aws_access_key_id = AKIDCONFIGOPS\n"
	"aws_secret_access_key = configopssecret\n";

/* ---- the INI reader ---- */

static void test_ini(void **state)
{
	static const char text[] =
		"# a comment\n"
		"; another\n"
		"[default]\n"
		"a = 1\n"
		"b=2\n"
		"  c = indented, a sub-property\n"
		"empty =\n"
		"\n"
		"[ spaced ]\n"
		"a = in spaced\n"
		"noequals\n"
		"[profile dev]\n"
		"a = in dev = with equals\n"
		"s3 =\n"
		"    a = nested, not dev's a\n"
		"\ttabbed = also nested\n"
		"[broken\n"
		"a = still dev\n"
		"[last]";
	static const struct {
		const char *section, *key, *want;
		bool has;
	} cases[] = {
		{ "default", "a", "1", true },
		{ "default", "b", "2", true },
		{ "default", "c", NULL, true },
		{ "default", "empty", "", true },
		{ "spaced", "a", "in spaced", true },
		{ "spaced", "noequals", NULL, true },
		{ "profile dev", "a", "in dev = with equals", true },
		{ "profile dev", "tabbed", NULL, true },
		{ "dev", "a", NULL, false },
		{ "last", "a", NULL, true },
		{ "missing", "a", NULL, false },
		{ "default", "A", NULL, true },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		bool has = false;
		_cleanup_free_ char *v = aws_ini_get(text, cases[i].section, cases[i].key, &has);
		if (cases[i].want == NULL ? v != NULL : !v || strcmp(v, cases[i].want))
			fail_msg("[%s] %s: got '%s', want '%s'", cases[i].section, cases[i].key,
				 v ? v : "(null)", cases[i].want ? cases[i].want : "(null)");
		if (has != cases[i].has)
			fail_msg("[%s]: has_section %d, want %d", cases[i].section, has, cases[i].has);
	}
	assert_null(aws_ini_get("", "default", "a", NULL));
}

/* ---- the profile and its files ---- */

static void test_profile_name(void **state)
{
	const char *from = "x";
	assert_string_equal(aws_profile_name(NULL, &from), "default");
	assert_null(from);
	setenv("AWS_DEFAULT_PROFILE", "legacy", 1);
	assert_string_equal(aws_profile_name(NULL, &from), "legacy");
	assert_string_equal(from, "AWS_DEFAULT_PROFILE");
	setenv("AWS_PROFILE", "dev", 1);
	assert_string_equal(aws_profile_name(NULL, &from), "dev");
	assert_string_equal(from, "AWS_PROFILE");
	const struct aws_creds_opts o = { .profile = "ops" };
	assert_string_equal(aws_profile_name(&o, &from), "ops");
	assert_string_equal(from, "option");
	/* Empty is unset, as the SDKs read it. */
	const struct aws_creds_opts e = { .profile = "" };
	setenv("AWS_PROFILE", "", 1);
	assert_string_equal(aws_profile_name(&e, &from), "legacy");
}

static void test_profile_files(void **state)
{
	_cleanup_error_ struct af_error *err = NULL;
	struct aws_profile_file f;
	/* No file: not an error. */
	assert_int_equal(aws_profile_file_load(&f, AWS_PROFILE_CREDENTIALS, "default", &err), 0);
	_cleanup_free_ char *want = xasprintf("%s/.aws/credentials", home);
	assert_string_equal(f.path, want);
	assert_null(f.text);
	assert_false(f.has_section);
	assert_null(aws_profile_file_get(&f, "aws_access_key_id"));
	aws_profile_file_release(&f);

	/* The config file's sections: [default], [profile NAME]. */
	write_home_file("config", config_file);
	assert_int_equal(aws_profile_file_load(&f, AWS_PROFILE_CONFIG, "ops", &err), 0);
	assert_string_equal(f.section, "profile ops");
	assert_true(f.has_section);
	_cleanup_free_ char *akid = aws_profile_file_get(&f, "aws_access_key_id");
	assert_string_equal(akid, "AKIDCONFIGOPS");
	aws_profile_file_release(&f);
	assert_int_equal(aws_profile_file_load(&f, AWS_PROFILE_CONFIG, "default", &err), 0);
	assert_string_equal(f.section, "default");
	_cleanup_free_ char *region = aws_profile_file_get(&f, "region");
	assert_string_equal(region, "eu-west-3");
	aws_profile_file_release(&f);
	/* The credentials file's: [NAME], even for a name that would be a
	 * config section. */
	write_home_file("credentials", "[ops]\naws_access_key_id = K\n");
	assert_int_equal(aws_profile_file_load(&f, AWS_PROFILE_CREDENTIALS, "ops", &err), 0);
	assert_string_equal(f.section, "ops");
	assert_true(f.has_section);
	aws_profile_file_release(&f);

	/* The variables move the files; a path that cannot be read is an error. */
	setenv("AWS_SHARED_CREDENTIALS_FILE", home, 1);
	assert_int_equal(aws_profile_file_load(&f, AWS_PROFILE_CREDENTIALS, "ops", &err), -1);
	_cleanup_free_ char *msg = xasprintf("cannot read AWS file '%s': ", home);
	assert_true(str_has_prefix(af_error_msg(err), msg));
	assert_string_equal(f.path, home);
	assert_null(f.text);
	aws_profile_file_release(&f);
	_cleanup_free_ char *cfg = path_join(home, "elsewhere.ini");
	setenv("AWS_CONFIG_FILE", cfg, 1);
	assert_int_equal(aws_profile_file_load(&f, AWS_PROFILE_CONFIG, "ops", NULL), 0);
	assert_string_equal(f.path, cfg);
	assert_null(f.text);
	aws_profile_file_release(&f);
}

static void test_region(void **state)
{
	struct fake_imds f = { .present = true, .region = "sa-east-1" };
	struct imds_iface imds = fake_imds_iface(&f);
	struct aws_creds_opts o = { .imds = &imds };
	char *r = NULL;
	const char *src = NULL;
	_cleanup_error_ struct af_error *err = NULL;
#define REGION_IS(recipe, want, wsrc)                                                \
	do {                                                                         \
		assert_int_equal(aws_region_resolve(recipe, &o, &r, &src, &err), 0); \
		assert_string_equal(r, want);                                        \
		assert_string_equal(src, wsrc);                                      \
		free(r);                                                             \
	} while (0)
	REGION_IS(NULL, "sa-east-1", "instance metadata");
	write_home_file("config", config_file);
	REGION_IS(NULL, "eu-west-3", "profile");
	setenv("AWS_PROFILE", "ops", 1);
	REGION_IS(NULL, "ap-south-1", "profile");
	setenv("AWS_DEFAULT_REGION", "us-west-1", 1);
	REGION_IS(NULL, "us-west-1", "AWS_DEFAULT_REGION");
	setenv("AWS_REGION", "us-west-2", 1);
	REGION_IS(NULL, "us-west-2", "AWS_REGION");
	REGION_IS("eu-north-1", "eu-north-1", "recipe");
	unsetenv("AWS_REGION");
	unsetenv("AWS_DEFAULT_REGION");
	unsetenv("AWS_PROFILE");
	write_home_file("config", "");
	f.present = false;
	assert_int_equal(aws_region_resolve(NULL, &o, &r, &src, &err), -1);
	assert_true(str_has_prefix(af_error_msg(err), "no AWS region: looked in the recipe, AWS_REGION, "
						      "AWS_DEFAULT_REGION, profile 'default' in "));
	assert_non_null(strstr(af_error_msg(err), "instance metadata at fake-imds (not available)"));
}

static void test_endpoints(void **state)
{
	bool custom = true;
	_cleanup_free_ char *a = aws_endpoint_url("ec2", "eu-west-1", &custom);
	assert_string_equal(a, "https://ec2.eu-west-1.amazonaws.com");
	assert_false(custom);
	_cleanup_free_ char *b = aws_endpoint_url("ebs", "cn-north-1", NULL);
	assert_string_equal(b, "https://ebs.cn-north-1.amazonaws.com.cn");
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
	setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:4568", 1);
	_cleanup_free_ char *c = aws_endpoint_url("s3", "us-east-1", &custom);
	assert_string_equal(c, "http://127.0.0.1:4568");
	assert_true(custom);
	_cleanup_free_ char *d = aws_endpoint_url("ebs", "us-east-1", &custom);
	assert_string_equal(d, "http://127.0.0.1:9000");
	setenv("AWS_ENDPOINT_URL_EBS", "http://127.0.0.1:9001", 1);
	_cleanup_free_ char *e = aws_endpoint_url("ebs", "us-east-1", NULL);
	assert_string_equal(e, "http://127.0.0.1:9001");
}

static void test_host_infer(void **state)
{
	static const struct {
		const char *host, *service, *region;
	} cases[] = {
		{ "ec2.eu-west-1.amazonaws.com", "ec2", "eu-west-1" },
		{ "ebs.us-gov-west-1.amazonaws.com:443", "ebs", "us-gov-west-1" },
		{ "s3.amazonaws.com", "s3", "us-east-1" },
		{ "my.bucket.s3.us-east-2.amazonaws.com", "s3", "us-east-2" },
		{ "bucket.s3-us-west-2.amazonaws.com", "s3", "us-west-2" },
		{ "s3.dualstack.eu-central-1.amazonaws.com", "s3", "eu-central-1" },
		{ "ec2.cn-north-1.amazonaws.com.cn", "ec2", "cn-north-1" },
		{ "ec2-fips.us-east-1.amazonaws.com", "ec2", "us-east-1" },
		{ "sts.amazonaws.com", "sts", "us-east-1" },
		{ "EC2.US-EAST-2.AMAZONAWS.COM", "ec2", "us-east-2" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *s = NULL, *r = NULL;
		if (aws_host_infer(cases[i].host, &s, &r) < 0)
			fail_msg("%s: not inferred", cases[i].host);
		assert_string_equal(s, cases[i].service);
		assert_string_equal(r, cases[i].region);
		free(s);
		free(r);
	}
	char *s = NULL, *r = NULL;
	assert_int_equal(aws_host_infer("127.0.0.1:9000", &s, &r), -1);
	assert_int_equal(aws_host_infer("example.com", &s, &r), -1);
	assert_int_equal(aws_host_infer("amazonaws.com", &s, &r), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ini, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_profile_name, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_profile_files, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_region, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_endpoints, aws_home_setup, aws_home_teardown),
		cmocka_unit_test_setup_teardown(test_host_infer, aws_home_setup, aws_home_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
