/* SPDX-License-Identifier: Apache-2.0 */
/* build_manifest: the JSON a build's inputs give (the integration tests
 * validate real manifests against the schema). */
#include <fcntl.h>
#include <sys/stat.h>

#include "testutil.h"

#include "amiforge/build_manifest.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/mem.h"
#include "amiforge/util.h"

#define HELLO_SHA256 "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
#define KEY_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char *tmpdir, *recipe, *image;

static void write_text(const char *path, const char *text)
{
	struct af_error *err = NULL;
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0600, &err), 0);
}

static int setup(void **state)
{
	tmpdir = test_mkdtemp();
	recipe = path_join(tmpdir, "r.yaml");
	image = path_join(tmpdir, "disk.img");
	write_text(recipe, "hello");
	write_text(image, "hello");
	return 0;
}

static int teardown(void **state)
{
	test_rmdir_r(tmpdir);
	free(tmpdir);
	free(recipe);
	free(image);
	return 0;
}

/* Two register stages (the second one's AMI wins the merged outputs) and a
 * third stage that failed. */
static json_t *stages_fixture(void)
{
	return json_pack(
		"[{s:i, s:s, s:s, s:s, s:s, s:f, s:b, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s}},"
		" {s:i, s:s, s:s, s:s, s:s, s:f, s:b, s:{s:s, s:s, s:s}},"
		" {s:i, s:s, s:s, s:s, s:s, s:f, s:b, s:{}, s:s, s:[{s:s, s:s, s:s}]}]",
		"index", 1, "id", "register", "type", "register", "key", KEY_A, "status", "done", "seconds",
		1.5, "cached", 0, "outputs", "ami.id", "ami-0aaa", "ami.name", "one", "ami.eu-west-1",
		"ami-0aaa", "ami.us-east-1", "ami-0ccc", "register.snapshots.eu-west-1", "snap-01,snap-02",
		"register.expires", "2027-01-05T00:00:00Z", "register.shares", "111122223333,public",
		"index", 2, "id", "register-2", "type", "register", "key", KEY_B, "status", "done",
		"seconds", 2.0, "cached", 1, "outputs", "ami.id", "ami-0bbb", "ami.name", "two",
		"ami.us-west-2", "ami-0bbb",
		"index", 3, "id", "run", "type", "run", "key", KEY_B, "status", "failed", "seconds", 0.5,
		"cached", 0, "outputs", "error", "exit 1", "resources", "kind", "ami", "region",
		"eu-west-1", "image_id", "ami-0ddd");
}

static struct build_manifest manifest_in(const json_t *stages, const json_t *outputs)
{
	return (struct build_manifest){
		.state = tmpdir, .name = "test", .arch = "x86_64", .recipe_path = recipe,
		.image = image, .disk_key = KEY_A, .status = "ok", .stages = stages,
		.outputs = outputs, .timings = { 3.0, 0.5, 1024, 2048 }, .finished = 86400,
	};
}

static void test_shape(void **state)
{
	_cleanup_json_ json_t *stages = stages_fixture();
	_cleanup_json_ json_t *outputs = json_pack("{s:s}", "ami.id", "ami-0bbb");
	struct build_manifest in = manifest_in(stages, outputs);
	in.status = "failed";
	in.failed_stage = "run";
	in.error = "stage 3 'run' (run) failed: exit 1";
	_cleanup_json_ json_t *m = build_manifest_json(&in);

	assert_int_equal(json_integer_value(json_object_get(m, "version")), 2);
	assert_string_equal(json_string_value(json_object_get(m, "status")), "failed");
	assert_string_equal(json_string_value(json_object_get(m, "failed_stage")), "run");
	assert_string_equal(json_string_value(json_object_get(m, "error")), in.error);
	assert_string_equal(json_string_value(json_object_get(m, "amiforge_version")), "0.1.0");
	assert_string_equal(json_string_value(json_object_get(m, "finished")), "1970-01-02T00:00:00Z");
	const json_t *r = json_object_get(m, "recipe");
	assert_string_equal(json_string_value(json_object_get(r, "sha256")), HELLO_SHA256);
	_cleanup_free_ char *abs = realpath(recipe, NULL);
	assert_string_equal(json_string_value(json_object_get(r, "path")), abs);
	/* A directory under /tmp is in no git work tree. */
	assert_null(json_object_get(m, "git"));
	/* A failed build's image: hashed as it is, never to be reused. */
	const json_t *img = json_object_get(m, "image");
	assert_string_equal(json_string_value(json_object_get(img, "path")), image);
	assert_int_equal(json_integer_value(json_object_get(img, "size")), 5);
	assert_true(json_is_integer(json_object_get(img, "allocated")));
	assert_true(json_is_false(json_object_get(img, "device")));
	assert_string_equal(json_string_value(json_object_get(img, "sha256")), HELLO_SHA256);
	assert_null(json_object_get(img, "disk_key"));
	/* Each stage keeps its own outputs; the merged ones are as given. */
	const json_t *st = json_object_get(m, "stages");
	assert_int_equal(json_array_size(st), 3);
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(st, 0), "outputs"),
							      "ami.id")),
			    "ami-0aaa");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(json_array_get(st, 2), "resources"), 0),
				    "image_id")),
			    "ami-0ddd");
	assert_true(json_equal(json_object_get(m, "outputs"), outputs));
	assert_string_equal(json_string_value(json_object_get(json_object_get(m, "ami"), "id")), "ami-0bbb");
	const json_t *t = json_object_get(m, "timings");
	assert_int_equal(json_integer_value(json_object_get(t, "checkpoint_bytes_new")), 1024);
	assert_int_equal(json_integer_value(json_object_get(t, "engine_peak_rss_kib")), 2048);
}

/* No image file, a status ok: no "image", no "error". */
static void test_no_image(void **state)
{
	_cleanup_json_ json_t *stages = json_array();
	_cleanup_json_ json_t *outputs = json_object();
	struct build_manifest in = manifest_in(stages, outputs);
	_cleanup_free_ char *missing = path_join(tmpdir, "none.img");
	in.image = missing;
	_cleanup_json_ json_t *m = build_manifest_json(&in);
	assert_null(json_object_get(m, "image"));
	assert_null(json_object_get(m, "error"));
	assert_null(json_object_get(m, "failed_stage"));
	assert_null(json_object_get(m, "ami"));
}

static void test_ami(void **state)
{
	_cleanup_json_ json_t *stages = stages_fixture();
	/* The last done stage with an AMI: register-2. */
	_cleanup_json_ json_t *two = build_manifest_ami(stages);
	_cleanup_json_ json_t *want2 = json_pack("{s:s, s:s, s:s, s:{s:s}, s:{}, s:[]}", "id", "ami-0bbb", "name",
						 "two", "region", "us-west-2", "regions", "us-west-2",
						 "ami-0bbb", "snapshots", "shares");
	assert_true(json_equal(two, want2));
	/* Without it, the first one, with its copies, snapshots, expiry, shares. */
	json_array_remove(stages, 1);
	_cleanup_json_ json_t *one = build_manifest_ami(stages);
	_cleanup_json_ json_t *want1 = json_pack(
		"{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:[s, s]}, s:s, s:[s, s]}", "id", "ami-0aaa", "name",
		"one", "region", "eu-west-1", "regions", "eu-west-1", "ami-0aaa", "us-east-1", "ami-0ccc",
		"snapshots", "eu-west-1", "snap-01", "snap-02", "expires", "2027-01-05T00:00:00Z", "shares",
		"111122223333", "public");
	assert_true(json_equal(one, want1));
	/* A failed stage's outputs never count. */
	json_object_set_new(json_array_get(stages, 0), "status", json_string("failed"));
	assert_null(build_manifest_ami(stages));
}

static const char *image_sha(const json_t *m)
{
	return json_string_value(json_object_get(json_object_get(m, "image"), "sha256"));
}

/* The previous manifest's hash is reused only for the same disk key and an
 * unchanged file: a planted value shows whether it was. */
static void test_hash_reuse(void **state)
{
	_cleanup_json_ json_t *stages = json_array();
	_cleanup_json_ json_t *outputs = json_object();
	struct build_manifest in = manifest_in(stages, outputs);
	struct af_error *err = NULL;
	assert_int_equal(build_manifest_write(&in, &err), 0);
	_cleanup_free_ char *path = path_join(tmpdir, "manifest.json");
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	_cleanup_json_ json_t *first = json_load_file(path, 0, NULL);
	assert_string_equal(image_sha(first), HELLO_SHA256);
	assert_string_equal(json_string_value(json_object_get(json_object_get(first, "image"), "disk_key")), KEY_A);

	const char *planted = "1111111111111111111111111111111111111111111111111111111111111111";
	json_object_set_new(json_object_get(first, "image"), "sha256", json_string(planted));
	assert_int_equal(json_dump_file(first, path, 0), 0);
	_cleanup_json_ json_t *same = build_manifest_json(&in);
	assert_string_equal(image_sha(same), planted);

	in.disk_key = KEY_B;
	_cleanup_json_ json_t *other_key = build_manifest_json(&in);
	assert_string_equal(image_sha(other_key), HELLO_SHA256);

	in.disk_key = KEY_A;
	write_text(image, "hello"); /* the same bytes, a new inode: hashed again */
	_cleanup_json_ json_t *rewritten = build_manifest_json(&in);
	assert_string_equal(image_sha(rewritten), HELLO_SHA256);
}

/* A sparse image: holes are hashed as the zeros they read as without being
 * read, so the hash must equal a whole read's, wherever the data lies
 * (first, inside, at the unaligned end, none at all). */
static void test_sparse_hash(void **state)
{
	static const struct {
		off_t size;
		off_t at[3]; /* where "data" is written; -1: nowhere */
	} cases[] = {
		{ (3 << 20) + 5, { 0, (1 << 20) + 7, (3 << 20) + 1 } },
		{ 5 << 20, { 2 << 20, -1, -1 } },
		{ 4 << 20, { -1, -1, -1 } },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_fd_ int fd = open(image, O_WRONLY | O_TRUNC | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, cases[i].size), 0);
		for (size_t k = 0; k < 3; k++)
			if (cases[i].at[k] >= 0)
				assert_int_equal(pwrite(fd, "data", 4, cases[i].at[k]), 4);
		_cleanup_json_ json_t *stages = json_array();
		_cleanup_json_ json_t *outputs = json_object();
		struct build_manifest in = manifest_in(stages, outputs);
		in.status = "failed"; /* no reuse of an earlier hash */
		_cleanup_json_ json_t *m = build_manifest_json(&in);
		char want[65];
		struct af_error *err = NULL;
		assert_int_equal(sha256_path_hex(image, want, &err), 0);
		assert_string_equal(image_sha(m), want);
	}
}

static bool have_git(void)
{
	return system("git --version >/dev/null 2>&1") == 0;
}

static void test_git(void **state)
{
	if (!have_git())
		test_skip_because("git is not installed");
	_cleanup_free_ char *cmd = xasprintf(
		"cd '%s' && git init -q && git -c user.name=t -c user.email=t@t add r.yaml && "
		"git -c user.name=t -c user.email=t@t commit -qm r",
		tmpdir);
	assert_int_equal(system(cmd), 0);
	_cleanup_json_ json_t *stages = json_array();
	_cleanup_json_ json_t *outputs = json_object();
	struct build_manifest in = manifest_in(stages, outputs);
	_cleanup_json_ json_t *clean = build_manifest_json(&in);
	const json_t *g = json_object_get(clean, "git");
	assert_non_null(g);
	assert_int_equal(strlen(json_string_value(json_object_get(g, "commit"))), 40);
	assert_true(json_is_false(json_object_get(g, "dirty")));

	write_text(recipe, "changed");
	_cleanup_json_ json_t *dirty = build_manifest_json(&in);
	assert_true(json_is_true(json_object_get(json_object_get(dirty, "git"), "dirty")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(dirty, "git"), "commit")),
			    json_string_value(json_object_get(g, "commit")));
	write_text(recipe, "hello");
}

static void test_redacted(void **state)
{
	const char *secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
	_cleanup_json_ json_t *stages = json_array();
	_cleanup_json_ json_t *outputs = json_pack("{s:s}", "files.note", secret);
	struct build_manifest in = manifest_in(stages, outputs);
	in.status = "failed";
	in.error = secret;
	_cleanup_json_ json_t *m = build_manifest_json(&in);
	_cleanup_free_ char *text = json_dumps(m, 0);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	assert_null(strstr(text, secret));
	assert_non_null(strstr(text, "[REDACTED]"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_image, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sparse_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ami, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hash_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_git, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redacted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
