/* SPDX-License-Identifier: Apache-2.0 */
/* The snapshot stage's pure parts: parameter checks, volume size, client
 * tokens, reading back what earlier attempts journaled and the resume
 * decision.  The stage file is included so its static helpers can be
 * tested; the upload pipeline is tested in test_ebs_upload.c, uploads
 * against fakeaws in tests/integration/out_snapshot.sh. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "../../stages/snapshot.c"

static json_t *load(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		fail_msg("bad JSON in test: %s", e.text);
	return j;
}

static void expect_check_error(const char *params, const char *needle)
{
	json_t *p = load(params);
	struct af_error *err = NULL;
	assert_int_equal(snapshot_check(p, &err), -1);
	if (!strstr(af_error_msg(err), needle))
		fail_msg("'%s' does not say '%s'", af_error_msg(err), needle);
	af_error_free(err);
	json_decref(p);
}

static void test_check(void **state)
{
	(void)state;
	struct af_error *err = NULL;
	json_t *p = load("{\"region\": \"eu-west-1\", \"parallel\": 4, \"encrypted\": true, \"kms_key\": \"arn:k\","
			 " \"tags\": {\"team\": \"infra\"}, \"volume_size\": 8}");
	assert_int_equal(snapshot_check(p, &err), 0);
	assert_null(err);
	json_decref(p);
	expect_check_error("{\"parallel\": 0}", "parallel: must be from 1 to 256");
	expect_check_error("{\"parallel\": 1000}", "parallel");
	expect_check_error("{\"kms_key\": \"arn:k\"}", "kms_key: needs encrypted: true");
	expect_check_error("{\"volume_size\": 0}", "volume_size");
	expect_check_error("{\"pending_timeout\": 60}", "pending_timeout: must be from 10m to 72h");
	expect_check_error("{\"tags\": {\"aws:x\": \"y\"}}", "'aws:' prefix");
	expect_check_error("{\"wait_timeout\": 0}", "wait_timeout");
}

static void test_volume_size(void **state)
{
	(void)state;
	struct af_error *err = NULL;
	assert_int_equal(snap_volume_gib(1, 0, &err), 1);
	assert_int_equal(snap_volume_gib(0, 0, &err), 1);
	assert_int_equal(snap_volume_gib(1ULL << 30, 0, &err), 1);
	assert_int_equal(snap_volume_gib((1ULL << 30) + 1, 0, &err), 2);
	assert_int_equal(snap_volume_gib(8ULL << 30, 10, &err), 10);
	assert_null(err);
	assert_int_equal(snap_volume_gib((2ULL << 30) + 1, 2, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "volume_size: 2 GiB is smaller than the image (3 GiB"));
	af_error_free(err);
}

static void test_client_token(void **state)
{
	(void)state;
	char a[37], b[37], c[37], d[37];
	const char *key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	snap_client_token(key, 0, a);
	snap_client_token(key, 0, b);
	snap_client_token(key, 1, c);
	snap_client_token("ffff", 0, d);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_string_not_equal(a, d);
	assert_int_equal(strlen(a), 36);
}

static void test_resume_parse(void **state)
{
	(void)state;
	struct snap_resume r;
	json_t *none = json_array();
	snap_resume_parse(none, &r);
	assert_null(r.snapshot_id);
	assert_int_equal(r.generation, 0);
	json_decref(r.batches);
	json_decref(none);

	json_t *res = load("["
			   "{\"snapshot\": \"snap-a\", \"region\": \"eu-west-1\", \"generation\": 0, \"volume_size\": 1,"
			   " \"encrypted\": false},"
			   "{\"snapshot\": \"snap-a\", \"blocks\": [[0, 3]], \"digest\": \"x\"},"
			   "{\"snapshot\": \"snap-a\", \"abandoned\": true},"
			   "{\"snapshot\": \"snap-b\", \"region\": \"eu-west-1\", \"generation\": 1, \"volume_size\": 2,"
			   " \"encrypted\": true},"
			   "{\"snapshot\": \"snap-a\", \"blocks\": [[9, 9]], \"digest\": \"stale\"},"
			   "{\"snapshot\": \"snap-b\", \"blocks\": [[0, 1]], \"digest\": \"d1\"},"
			   "{\"snapshot\": \"snap-b\", \"blocks\": [[4, 4]], \"digest\": \"d2\"},"
			   "{\"other\": 1}"
			   "]");
	snap_resume_parse(res, &r);
	assert_string_equal(r.snapshot_id, "snap-b");
	assert_string_equal(r.region, "eu-west-1");
	assert_int_equal(r.generation, 1);
	assert_int_equal(r.volume_size, 2);
	assert_true(r.encrypted);
	assert_false(r.completing);
	assert_int_equal(json_array_size(r.batches), 2);
	json_decref(r.batches);

	json_array_append_new(res, load("{\"snapshot\": \"snap-b\", \"completing\": true}"));
	snap_resume_parse(res, &r);
	assert_true(r.completing);
	json_decref(r.batches);

	json_array_append_new(res, load("{\"snapshot\": \"snap-b\", \"abandoned\": true}"));
	snap_resume_parse(res, &r);
	assert_null(r.snapshot_id);
	assert_int_equal(r.generation, 2);
	assert_int_equal(json_array_size(r.batches), 0);
	json_decref(r.batches);
	json_decref(res);
}

static void test_decide(void **state)
{
	(void)state;
	assert_int_equal(snap_decide(NULL, false), SNAP_RESTART);
	assert_int_equal(snap_decide(NULL, true), SNAP_RESTART);
	assert_int_equal(snap_decide("error", false), SNAP_RESTART);
	assert_int_equal(snap_decide("error", true), SNAP_RESTART);
	assert_int_equal(snap_decide("completed", false), SNAP_DONE);
	assert_int_equal(snap_decide("completed", true), SNAP_DONE);
	assert_int_equal(snap_decide("pending", false), SNAP_CONTINUE);
	assert_int_equal(snap_decide("pending", true), SNAP_WAIT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_volume_size),
		cmocka_unit_test(test_client_token),
		cmocka_unit_test(test_resume_parse),
		cmocka_unit_test(test_decide),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
