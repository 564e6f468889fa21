/* SPDX-License-Identifier: Apache-2.0 */
/* A fixture for tests of the AWS configuration and credential chain: a
 * temporary HOME and none of the AWS_* variables that would let the
 * machine's own configuration leak into a test.  `home` is the directory;
 * write_home_file puts a file in its .aws/.  aws_home_setup and
 * aws_home_teardown are cmocka fixtures, or parts of a test's own. */
#ifndef AMIFORGE_TEST_AWSHOME_H
#define AMIFORGE_TEST_AWSHOME_H

#include <sys/stat.h>

#include "testutil.h"

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

static char *home;

static const char *const aws_vars[] = {
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
	"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
	"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2",
	"AWS_ENDPOINT_URL_EBS", "AWS_ENDPOINT_URL_S3", "AWS_EC2_METADATA_DISABLED",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT",
};

static inline void write_home_file(const char *leaf, const char *text)
{
	_cleanup_free_ char *dir = path_join(home, ".aws");
	mkdir(dir, 0700);
	_cleanup_free_ char *p = path_join(dir, leaf);
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(write_file_atomic(p, text, strlen(text), 0600, &err), 0);
}

static inline int aws_home_setup(void **state)
{
	(void)state;
	home = test_mkdtemp();
	setenv("HOME", home, 1);
	for (size_t i = 0; i < ARRAY_SIZE(aws_vars); i++)
		unsetenv(aws_vars[i]);
	return 0;
}

static inline int aws_home_teardown(void **state)
{
	(void)state;
	test_rmdir_r(home);
	free(home);
	home = NULL;
	return 0;
}

#endif
