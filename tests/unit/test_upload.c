/* SPDX-License-Identifier: Apache-2.0 */
/* The upload stage's pure parts: parameter checks, object keys, the
 * manifest's part list, what the journal says is already in S3, and the
 * per-object digests (the stage file is included for its static helpers). */
#include "testutil.h"

#include "../../stages/upload.c"

static json_t *params(const char *json)
{
	json_error_t je;
	json_t *p = json_loads(json, 0, &je);
	assert_non_null(p);
	return p;
}

static void check_params(const char *json, const char *needle)
{
	json_t *p = params(json);
	struct af_error *err = NULL;
	if (!needle) {
		assert_int_equal(upload_check(p, &err), 0);
		assert_null(err);
	} else {
		assert_int_equal(upload_check(p, &err), -1);
		assert_non_null(strstr(af_error_msg(err), needle));
		af_error_free(err);
	}
	json_decref(p);
}

static void test_check(void **state)
{
	check_params("{\"bucket\": \"my-bucket.images\"}", NULL);
	check_params("{\"bucket\": \"abc\", \"parallel\": 64, \"prefix\": \"/a/b/\"}", NULL);
	check_params("{\"bucket\": \"ab\"}", "not a valid S3 bucket name");
	check_params("{\"bucket\": \"My_Bucket\"}", "not a valid S3 bucket name");
	check_params("{\"bucket\": \"-abc\"}", "not a valid S3 bucket name");
	check_params("{\"bucket\": \"a..b\"}", "not a valid S3 bucket name");
	check_params("{\"bucket\": \"abc\", \"parallel\": 0}", "parallel must be 1 to 64");
	check_params("{\"bucket\": \"abc\", \"parallel\": 65}", "parallel must be 1 to 64");
	check_params("{\"bucket\": \"abc\", \"prefix\": \"a//b\"}", "empty or '..'");
	check_params("{\"bucket\": \"abc\", \"prefix\": \"../x\"}", "empty or '..'");
}

static void test_keys(void **state)
{
	static const struct {
		const char *prefix, *file, *key;
	} cases[] = {
		{ "", "img.part.0", "img.part.0" },
		{ "/", "img.part.0", "img.part.0" },
		{ "images", "img.manifest.xml", "images/img.manifest.xml" },
		{ "/images/2024/", "img.part.07", "images/2024/img.part.07" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char *p = upload_norm_prefix(cases[i].prefix);
		char *k = upload_object_key(p, cases[i].file);
		assert_string_equal(k, cases[i].key);
		free(k);
		free(p);
	}
}

#define MANIFEST_HEAD \
	"<?xml version='1.0'?><manifest><version>2007-10-10</version><machine_configuration>" \
	"<architecture>x86_64</architecture></machine_configuration><image><name>img</name>"

static void test_manifest(void **state)
{
	const char *text = MANIFEST_HEAD
		"<parts count='2'><part index='0'><filename>img.part.0</filename>"
		"<digest algorithm='SHA1'>3DDB0000000000000000000000000000000000aa</digest></part>"
		"<part index='1'><filename>img.part.1</filename>"
		"<digest algorithm='SHA1'>0000000000000000000000000000000000000001</digest></part>"
		"</parts></image><signature>00</signature></manifest>";
	struct upload_bundle b = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(upload_parse_manifest(text, strlen(text), "m.xml", &b, &err), 0);
	assert_string_equal(b.name, "img");
	assert_int_equal(b.n_parts, 2);
	assert_string_equal(b.parts[0].file, "img.part.0");
	assert_string_equal(b.parts[0].sha1, "3ddb0000000000000000000000000000000000aa");
	assert_string_equal(b.parts[1].file, "img.part.1");
	upload_bundle_release(&b);
}

static void expect_bad_manifest(const char *text, const char *needle)
{
	struct upload_bundle b = { 0 };
	struct af_error *err = NULL;
	assert_int_equal(upload_parse_manifest(text, strlen(text), "m.xml", &b, &err), -1);
	assert_non_null(strstr(af_error_msg(err), needle));
	assert_non_null(strstr(af_error_msg(err), "m.xml"));
	assert_null(b.parts);
	af_error_free(err);
}

static void test_manifest_bad(void **state)
{
	expect_bad_manifest("not xml", "not a <manifest>");
	expect_bad_manifest("<other/>", "not a <manifest>");
	expect_bad_manifest(MANIFEST_HEAD "</image></manifest>", "no image name or no parts");
	expect_bad_manifest(MANIFEST_HEAD "<parts count='0'></parts></image></manifest>", "lists no parts");
	/* A file name that would leave the bundle directory. */
	expect_bad_manifest(MANIFEST_HEAD "<parts><part index='0'><filename>../etc/passwd</filename>"
			    "<digest>0000000000000000000000000000000000000001</digest></part></parts></image></manifest>",
			    "part 0 has a bad index");
	/* Parts out of order, and a short digest. */
	expect_bad_manifest(MANIFEST_HEAD "<parts><part index='1'><filename>img.part.1</filename>"
			    "<digest>0000000000000000000000000000000000000001</digest></part></parts></image></manifest>",
			    "part 0 has a bad index");
	expect_bad_manifest(MANIFEST_HEAD "<parts><part index='0'><filename>img.part.0</filename>"
			    "<digest>abc</digest></part></parts></image></manifest>",
			    "bad index, file name or digest");
}

static void test_done_objects(void **state)
{
	json_t *res = params("["
		"{\"type\": \"s3_bucket\", \"bucket\": \"b1\", \"region\": \"eu-west-1\"},"
		"{\"type\": \"s3_object\", \"bucket\": \"b1\", \"key\": \"p/img.part.0\", \"size\": 10, \"md5\": \"aa\"},"
		"{\"type\": \"s3_object\", \"bucket\": \"b2\", \"key\": \"p/img.part.1\", \"size\": 10, \"md5\": \"bb\"},"
		"{\"type\": \"s3_object\", \"bucket\": \"b1\", \"key\": \"p/img.part.0\", \"size\": 11, \"md5\": \"cc\"},"
		"{\"type\": \"snapshot\", \"bucket\": \"b1\", \"key\": \"p/img.part.2\"}"
		"]");
	json_t *done = upload_done_objects(res, "b1");
	assert_int_equal(json_object_size(done), 1);
	/* The latest record of a key wins. */
	assert_true(upload_is_done(done, "p/img.part.0", 11, "cc"));
	assert_false(upload_is_done(done, "p/img.part.0", 10, "aa"));
	assert_false(upload_is_done(done, "p/img.part.1", 10, "bb"));
	assert_false(upload_is_done(done, "p/img.part.2", 0, ""));
	assert_true(upload_bucket_journaled(res, "b1"));
	assert_false(upload_bucket_journaled(res, "b2"));
	json_decref(done);
	json_decref(res);
}

static void write_bytes(const char *path, const char *data, size_t n)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void test_obj_load(void **state)
{
	char *dir = test_mkdtemp();
	char *path = path_join(dir, "img.part.0");
	write_bytes(path, "hello\n", 6);
	/* md5sum and sha1sum of "hello\n". */
	struct upload_obj o = { .path = path, .sha1 = "f572d396fae9206628714fb2ce00f72e94f2258f" };
	struct af_error *err = NULL;
	assert_int_equal(upload_obj_load(&o, &err), 0);
	assert_string_equal(o.md5_hex, "b1946ac92492d2347c6235b4d2611184");
	assert_string_equal(o.md5_b64, "sZRqySSS0jR8YjW00mERhA==");
	assert_string_equal(o.sha256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
	assert_int_equal(o.size, 6);
	upload_obj_unmap(&o);

	/* A part that no longer matches the manifest is refused. */
	o.sha1 = "0000000000000000000000000000000000000000";
	assert_int_equal(upload_obj_load(&o, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "does not match its manifest digest"));
	assert_null(o.map);
	af_error_free(err);
	err = NULL;

	/* An empty file (no mapping to make). */
	write_bytes(path, "", 0);
	o.sha1 = NULL;
	assert_int_equal(upload_obj_load(&o, &err), 0);
	assert_string_equal(o.md5_hex, "d41d8cd98f00b204e9800998ecf8427e");
	upload_obj_unmap(&o);

	unlink(path);
	assert_int_equal(upload_obj_load(&o, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "re-run the bundle stage"));
	af_error_free(err);
	free(path);
	test_rmdir_r(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_manifest),
		cmocka_unit_test(test_manifest_bad),
		cmocka_unit_test(test_done_objects),
		cmocka_unit_test(test_obj_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
