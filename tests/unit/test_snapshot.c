/* SPDX-License-Identifier: Apache-2.0 */
/* The snapshot stage's pure parts: parameter checks, volume size, client
 * tokens, reading back what earlier attempts journaled, the resume
 * decision, choosing a parent and finding and recording block lists.  The stage file is included so its static helpers can be
 * tested; the upload pipeline is tested in test_ebs_upload.c, uploads
 * against fakeaws in tests/integration/out_snapshot.sh. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "../../stages/snapshot.c"

static void expect_check_error(const char *params, const char *needle)
{
	json_t *p = test_json(params);
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
	json_t *p = test_json("{\"region\": \"eu-west-1\", \"parallel\": 4, \"encrypted\": true, \"kms_key\": \"arn:k\","
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
	const char *good[] = { "auto", "none", "snap-0123456789abcdef0", "snap-01234567" };
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		json_t *q = json_pack("{s:s}", "parent", good[i]);
		assert_int_equal(snapshot_check(q, &err), 0);
		json_decref(q);
	}
	expect_check_error("{\"parent\": \"latest\"}", "parent: 'latest' is not auto, none or a snapshot id");
	expect_check_error("{\"parent\": \"snap-../../x\"}", "is not auto, none");
	expect_check_error("{\"parent\": \"snap-0123456789ABCDEF0\"}", "is not auto, none");
	expect_check_error("{\"parent\": \"snap-0123456789abcdef0\", \"encrypted\": true}",
			   "parent: encrypted snapshots are always full");
	p = test_json("{\"parent\": \"auto\", \"encrypted\": true}");
	assert_int_equal(snapshot_check(p, &err), 0);
	json_decref(p);
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
	char a[37], b[37], c[37], d[37], e[37], f[37];
	const char *key = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	snap_client_token(key, 0, NULL, a);
	snap_client_token(key, 0, NULL, b);
	snap_client_token(key, 1, NULL, c);
	snap_client_token("ffff", 0, NULL, d);
	assert_string_equal(a, b);
	assert_string_not_equal(a, c);
	assert_string_not_equal(a, d);
	assert_int_equal(strlen(a), 36);
	/* Over a parent: another request, so another token, per parent. */
	snap_client_token(key, 0, "snap-0123456789abcdef0", e);
	snap_client_token(key, 0, "snap-0123456789abcdef1", f);
	assert_string_not_equal(a, e);
	assert_string_not_equal(e, f);
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

	json_t *res = test_json("["
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

	assert_null(r.parent);
	assert_int_equal(r.blocks_sent, -1);
	json_array_append_new(res, test_json("{\"snapshot\": \"snap-b\", \"blocks_sent\": 3, \"blocks_sha256\": \"d\"}"));
	json_array_append_new(res, test_json("{\"snapshot\": \"snap-b\", \"completing\": true}"));
	snap_resume_parse(res, &r);
	assert_true(r.completing);
	assert_int_equal(r.blocks_sent, 3);
	assert_string_equal(r.blocks_sha256, "d");
	assert_int_equal(json_array_size(r.batches), 2);
	json_decref(r.batches);

	json_array_append_new(res, test_json("{\"snapshot\": \"snap-b\", \"abandoned\": true}"));
	snap_resume_parse(res, &r);
	assert_null(r.snapshot_id);
	assert_int_equal(r.generation, 2);
	assert_int_equal(json_array_size(r.batches), 0);
	json_decref(r.batches);
	/* A snapshot over a parent: the parent and its list's identity. */
	json_array_append_new(res, test_json("{\"snapshot\": \"snap-c\", \"region\": \"eu-west-1\", \"generation\": 2,"
					" \"volume_size\": 1, \"encrypted\": false, \"parent\": \"snap-a\","
					" \"parent_image_key\": \"k\", \"parent_blocks_sha256\": \"p\"}"));
	snap_resume_parse(res, &r);
	assert_string_equal(r.snapshot_id, "snap-c");
	assert_string_equal(r.parent, "snap-a");
	assert_string_equal(r.parent_image_key, "k");
	assert_string_equal(r.parent_blocks_sha256, "p");
	assert_int_equal(r.blocks_sent, -1);
	assert_null(r.blocks_sha256);
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

#define PREV_ID "snap-0123456789abcdef0"
#define OTHER_ID "snap-0123456789abcdef1"
#define DIGEST_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static void expect_parent(const char *params, const char *previous, const char *region, bool encrypted,
			  const char *id, const char *digest, const char *image_key)
{
	json_t *p = test_json(params), *prev = previous ? test_json(previous) : NULL;
	struct stage_ctx ctx = { .id = "snap", .params = p, .previous = prev };
	struct snap_parent sp = { 0 };
	snap_parent_choose(&ctx, region, encrypted, &sp);
	if (!id)
		assert_null(sp.id);
	else
		assert_string_equal(sp.id, id);
	if (!digest)
		assert_null(sp.blocks_sha256);
	else
		assert_string_equal(sp.blocks_sha256, digest);
	if (!image_key)
		assert_null(sp.image_key);
	else
		assert_string_equal(sp.image_key, image_key);
	snap_parent_release(&sp);
	json_decref(p);
	json_decref(prev);
}

static void test_parent_choose(void **state)
{
	(void)state;
	const char *prev = "{\"snapshot.id\": \"" PREV_ID "\", \"snapshot.region\": \"eu-west-1\","
			   " \"snapshot.image_key\": \"k1\", \"snapshot.blocks_sha256\": \"" DIGEST_A "\"}";
	const char *prev_old = "{\"snapshot.id\": \"" PREV_ID "\", \"snapshot.region\": \"eu-west-1\"}";
	/* auto: the previous snapshot, with its list's identity. */
	expect_parent("{}", prev, "eu-west-1", false, PREV_ID, DIGEST_A, "k1");
	expect_parent("{\"parent\": \"auto\"}", prev, "eu-west-1", false, PREV_ID, DIGEST_A, "k1");
	expect_parent("{}", NULL, "eu-west-1", false, NULL, NULL, NULL);
	expect_parent("{}", prev, "us-east-1", false, NULL, NULL, NULL);
	/* Made without a list (an older amiforge): read back later. */
	expect_parent("{}", prev_old, "eu-west-1", false, PREV_ID, NULL, NULL);
	expect_parent("{\"parent\": \"none\"}", prev, "eu-west-1", false, NULL, NULL, NULL);
	expect_parent("{}", prev, "eu-west-1", true, NULL, NULL, NULL);
	/* An explicit id: the identity only when it is the previous snapshot. */
	expect_parent("{\"parent\": \"" OTHER_ID "\"}", prev, "eu-west-1", false, OTHER_ID, NULL, NULL);
	expect_parent("{\"parent\": \"" PREV_ID "\"}", prev, "eu-west-1", false, PREV_ID, DIGEST_A, "k1");
	expect_parent("{\"parent\": \"" PREV_ID "\"}", prev, "us-east-1", false, PREV_ID, NULL, NULL);
	expect_parent("{\"parent\": \"" OTHER_ID "\"}", NULL, "eu-west-1", false, OTHER_ID, NULL, NULL);
}

static bool exists_in(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s.ckpt", dir, name);
	bool r = access(path, F_OK) == 0;
	free(path);
	return r;
}

/* A block list is found under the image's key while that checkpoint is
 * still the list, else under its digest; it is written only when neither
 * holds it. */
static void test_list_find_record(void **state)
{
	(void)state;
	char *dir = test_mkdtemp();
	const char *key = "1111111111111111111111111111111111111111111111111111111111111111";
	uint8_t hash[3][32] = { { 0 } }, is_data[3] = { 1, 0, 1 };
	memset(hash[0], 0x11, 32);
	memset(hash[2], 0x22, 32);
	struct ebs_block_map m = { 3, hash, is_data }, found = { 0 };
	char d[65];
	ebs_block_map_digest(&m, d);
	assert_false(snap_list_find(dir, key, d, &found));
	assert_false(snap_list_find(dir, key, "../etc", &found));
	snap_list_record(dir, key, &m, 3 * EBS_BLOCK_SIZE - 10, d);
	assert_true(exists_in(dir, d));
	assert_true(snap_list_find(dir, key, d, &found));
	char d2[65];
	ebs_block_map_digest(&found, d2);
	assert_string_equal(d, d2);
	ebs_block_map_release(&found);
	/* The image's checkpoint is the same list: found there, nothing written. */
	test_rmdir_r(dir);
	free(dir);
	dir = test_mkdtemp();
	struct ckpt_list l = { .size = 3 * EBS_BLOCK_SIZE, .nblocks = 3, .hash = hash, .is_data = is_data };
	struct af_error *err = NULL;
	assert_int_equal(ckpt_list_write(dir, key, &l, &err), 0);
	snap_list_record(dir, key, &m, 3 * EBS_BLOCK_SIZE, d);
	assert_false(exists_in(dir, d));
	assert_true(snap_list_find(dir, key, d, &found));
	ebs_block_map_release(&found);
	/* The checkpoint was taken again with other content: not trusted. */
	hash[2][0] ^= 1;
	assert_int_equal(ckpt_list_write(dir, key, &l, &err), 0);
	hash[2][0] ^= 1;
	assert_false(snap_list_find(dir, key, d, &found));
	snap_list_record(dir, key, &m, 3 * EBS_BLOCK_SIZE, d);
	assert_true(exists_in(dir, d));
	assert_true(snap_list_find(dir, key, d, &found));
	ebs_block_map_release(&found);
	assert_false(snap_list_find(NULL, key, d, &found));
	test_rmdir_r(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_volume_size),
		cmocka_unit_test(test_client_token),
		cmocka_unit_test(test_resume_parse),
		cmocka_unit_test(test_decide),
		cmocka_unit_test(test_parent_choose),
		cmocka_unit_test(test_list_find_record),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
