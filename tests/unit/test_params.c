/* SPDX-License-Identifier: Apache-2.0 */
/* Sizes, durations, type names, the params_* accessors, and the typed
 * conversion of YAML values (params_conv.h) with no recipe loader behind it. */
#include "testutil.h"

#include <stdint.h>
#include <sys/stat.h>

#include "amiforge/params.h"
#include "amiforge/params_conv.h"
#include "amiforge/util.h"

struct unit_case {
	const char *text;
	int rc;
	uint64_t value;
};

static void test_sizes(void **state)
{
	static const struct unit_case cases[] = {
		{ "0", 0, 0 },
		{ "4096", 0, 4096 },
		{ "512B", 0, 512 },
		{ "1K", 0, 1024 },
		{ "1KiB", 0, 1024 },
		{ "1KB", 0, 1024 },
		{ "512M", 0, 512ull << 20 },
		{ "512MiB", 0, 512ull << 20 },
		{ "2G", 0, 2ull << 30 },
		{ "2GiB", 0, 2ull << 30 },
		{ "2GB", 0, 2ull << 30 },
		{ "2 GiB", 0, 2ull << 30 },
		{ "2gib", 0, 2ull << 30 },
		{ "3T", 0, 3ull << 40 },
		{ "3TiB", 0, 3ull << 40 },
		{ "16777215TiB", 0, 16777215ull << 40 },
		{ "18446744073709551615", 0, UINT64_MAX },
		/* invalid */
		{ "", -1, 0 },
		{ "big", -1, 0 },
		{ "GiB", -1, 0 },
		{ "-1G", -1, 0 },
		{ "+1G", -1, 0 },
		{ "1.5G", -1, 0 },
		{ "1 G B", -1, 0 },
		{ "1Gi", -1, 0 },
		{ "1PiB", -1, 0 },
		{ "2GiB ", -1, 0 },
		{ " 2GiB", -1, 0 },
		{ "0x10", -1, 0 },
		/* overflow */
		{ "16777216TiB", -1, 0 },
		{ "18446744073709551616", -1, 0 },
		{ "99999999999999999999999G", -1, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = param_parse_size(cases[i].text, &v);
		if (rc != cases[i].rc || (rc == 0 && v != cases[i].value))
			fail_msg("size '%s': rc %d value %ju", cases[i].text, rc, (uintmax_t)v);
	}
	assert_int_equal(param_parse_size(NULL, &(uint64_t){ 0 }), -1);
}

static void test_durations(void **state)
{
	static const struct unit_case cases[] = {
		{ "0", 0, 0 },
		{ "90", 0, 90 },
		{ "90s", 0, 90 },
		{ "10m", 0, 600 },
		{ "2h", 0, 7200 },
		{ "7d", 0, 7 * 86400 },
		{ "1 h", 0, 3600 },
		{ "18446744073709551615s", 0, UINT64_MAX },
		{ "", -1, 0 },
		{ "soon", -1, 0 },
		{ "10M", -1, 0 },
		{ "10ms", -1, 0 },
		{ "1h30m", -1, 0 },
		{ "-5s", -1, 0 },
		{ "1.5h", -1, 0 },
		{ "5 minutes", -1, 0 },
		{ "213503982334601d", 0, 213503982334601ull * 86400 },
		{ "213503982334602d", -1, 0 },
		{ "307445734561825861m", -1, 0 },
		{ "18446744073709551616", -1, 0 },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 12345;
		int rc = param_parse_duration(cases[i].text, &v);
		if (rc != cases[i].rc || (rc == 0 && v != cases[i].value))
			fail_msg("duration '%s': rc %d value %ju", cases[i].text, rc, (uintmax_t)v);
	}
}

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal(param_type_name(PT_STRING), "string");
	assert_string_equal(param_type_name(PT_SIZE), "size");
	assert_string_equal(param_type_name(PT_DURATION), "duration");
	assert_string_equal(param_type_name(PT_COMMAND), "command");
	for (int t = PT_STRING; t <= PT_COMMAND; t++)
		assert_string_not_equal(param_type_name((enum param_type)t), "unknown");
}

static void test_accessors(void **state)
{
	(void)state;
	json_t *p = json_pack("{s:s, s:I, s:b, s:[s], s:I}", "label", "rootfs", "size", (json_int_t)1 << 31,
			      "proc", 0, "include", "sudo", "neg", (json_int_t)-5);
	assert_non_null(p);
	assert_string_equal(params_str(p, "label", "x"), "rootfs");
	assert_string_equal(params_str(p, "missing", "dflt"), "dflt");
	assert_null(params_str(p, "missing", NULL));
	/* the wrong JSON type falls back to the default */
	assert_string_equal(params_str(p, "size", "d"), "d");
	assert_int_equal(params_int(p, "size", 0), (int64_t)1 << 31);
	assert_int_equal(params_int(p, "neg", 0), -5);
	assert_int_equal(params_int(p, "missing", 42), 42);
	assert_int_equal(params_int(p, "label", 7), 7);
	assert_false(params_bool(p, "proc", true));
	assert_true(params_bool(p, "missing", true));
	assert_false(params_bool(p, "missing", false));
	assert_true(params_bool(p, "label", true));
	assert_true(json_is_array(params_get(p, "include")));
	assert_null(params_get(p, "missing"));
	assert_null(params_get(NULL, "label"));
	assert_string_equal(params_str(NULL, "label", "d"), "d");
	json_decref(p);
}

/* ---- conversion, with the loader's side played by the test ---- */

struct fake_loader {
	char msgs[8][400];
	size_t n_msgs;
	char extra[32];
};

static void fake_report(void *data, const yaml_node_t *n, const char *msg)
{
	struct fake_loader *f = data;
	assert_true(f->n_msgs < ARRAY_SIZE(f->msgs));
	snprintf(f->msgs[f->n_msgs++], sizeof(f->msgs[0]), "%zu:%zu: %s", n->start_mark.line + 1,
		 n->start_mark.column + 1, msg);
}

/* No variables: "$" marks a value the loader could not expand. */
static char *fake_expand(void *data, const yaml_node_t *n)
{
	const char *text = param_node_text(n);
	if (strchr(text, '$')) {
		fake_report(data, n, "cannot expand");
		return NULL;
	}
	return xstrdup(text);
}

static void fake_extra(struct param_conv *c, void *extra_data, const char *key, const yaml_node_t *v)
{
	struct fake_loader *f = extra_data;
	snprintf(f->extra, sizeof(f->extra), "%s=%s", key, param_node_text(v));
}

static const char *const fruit_choices[] = { "apple", "pear", NULL };
static const struct param_spec item_table[] = {
	{ .name = "name", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "x" },
	{ 0 },
};
static const struct param_spec test_table[] = {
	{ .name = "size", .type = PT_SIZE, .help = "x" },
	{ .name = "fruit", .type = PT_ENUM, .choices = fruit_choices, .help = "x" },
	{ .name = "on", .type = PT_BOOL, .help = "x" },
	{ .name = "tags", .type = PT_STRINGS, .help = "x" },
	{ .name = "items", .type = PT_LIST, .sub = item_table, .help = "x" },
	{ .name = "need", .type = PT_INT, .flags = PARAM_REQUIRED, .help = "x" },
	{ 0 },
};

/* Converts the YAML mapping text against table, PT_PATH resolving in dir
 * and hashing into hashes (may be NULL). */
static json_t *conv_table(const char *yaml, const struct param_spec *table, const char *dir, json_t *hashes,
			  struct fake_loader *f, size_t *problems)
{
	static const char *const extra[] = { "id", NULL };
	yaml_parser_t parser;
	yaml_document_t doc;
	assert_true(yaml_parser_initialize(&parser));
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
	assert_true(yaml_parser_load(&parser, &doc));
	struct param_conv c = {
		.doc = &doc, .recipe_dir = dir, .stage = "test", .extra_keys = extra, .hashes = hashes,
		.take_extra = fake_extra, .extra_data = f, .report = fake_report, .expand = fake_expand,
		.data = f,
	};
	const yaml_node_t *root = yaml_document_get_root_node(&doc);
	json_t *obj = param_conv_object(&c, table, root, root);
	*problems = c.problems;
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return obj;
}

static json_t *conv_text(const char *yaml, struct fake_loader *f, size_t *problems)
{
	return conv_table(yaml, test_table, "/nonexistent", NULL, f, problems);
}

static void test_conversion(void **state)
{
	(void)state;
	struct fake_loader f = { 0 };
	size_t problems = 0;
	json_t *o = conv_text("size: 2GiB\nfruit: pear\non: yes\ntags: one\nid: first\nneed: 3\n"
			      "items: [{name: a}, {name: b}]\n", &f, &problems);
	assert_int_equal(problems, 0);
	assert_int_equal(f.n_msgs, 0);
	assert_int_equal(params_int(o, "size", 0), INT64_C(2) << 30);
	assert_string_equal(params_str(o, "fruit", NULL), "pear");
	assert_true(params_bool(o, "on", false));
	assert_string_equal(json_string_value(json_array_get(params_get(o, "tags"), 0)), "one");
	assert_int_equal(json_array_size(params_get(o, "items")), 2);
	/* A common key goes back to the loader, not into the object. */
	assert_string_equal(f.extra, "id=first");
	assert_null(params_get(o, "id"));
	json_decref(o);

	f = (struct fake_loader){ 0 };
	o = conv_text("fruit: paer\nsize: 99999999999999999999\nitems: [{name: $X}]\nsizee: 1\n", &f,
		      &problems);
	assert_int_equal(f.n_msgs, 5);
	/* In the order found: the loader sorts them by position. */
	assert_string_equal(f.msgs[0], "1:8: parameter 'fruit' of stage 'test' must be one of apple|pear, "
				       "got 'paer'; did you mean 'pear'?");
	assert_string_equal(f.msgs[1], "2:7: parameter 'size' of stage 'test' is out of range: "
				       "'99999999999999999999' is too large");
	assert_string_equal(f.msgs[2], "3:16: cannot expand");
	assert_string_equal(f.msgs[3], "4:1: unknown parameter 'sizee' for stage 'test'; did you mean 'size'?");
	assert_string_equal(f.msgs[4], "1:1: missing required parameter 'need' for stage 'test'");
	/* Reports and the failed expansion; the list around it is dropped. */
	assert_int_equal(problems, 5);
	assert_null(params_get(o, "items"));
	json_decref(o);
}

/* ---- file parameters: the recipe's own, and the host's (PARAM_HOST_FILE) ---- */

static const struct param_spec path_table[] = {
	{ .name = "script", .type = PT_PATH, .help = "x" },
	{ .name = "key", .type = PT_PATH, .flags = PARAM_HOST_FILE, .help = "x" },
	{ 0 },
};

struct path_fixture {
	char *top, *recipe, *outside, *key; /* top/recipe, top/outside, top/outside/key.pem */
};

static void put_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static void path_fixture_init(struct path_fixture *x)
{
	x->top = test_mkdtemp();
	x->recipe = path_join(x->top, "recipe");
	x->outside = path_join(x->top, "outside");
	x->key = path_join(x->outside, "key.pem");
	assert_int_equal(mkdir(x->recipe, 0700), 0);
	assert_int_equal(mkdir(x->outside, 0700), 0);
	char *in = path_join(x->recipe, "inside.sh");
	put_file(in, "echo in\n");
	free(in);
	put_file(x->key, "-----BEGIN PRIVATE KEY-----\nnot really\n");
	/* recipe/link.pem -> ../outside/key.pem */
	char *link = path_join(x->recipe, "link.pem");
	assert_int_equal(symlink("../outside/key.pem", link), 0);
	free(link);
}

static void path_fixture_release(struct path_fixture *x)
{
	test_rmdir_r(x->top);
	free(x->top);
	free(x->recipe);
	free(x->outside);
	free(x->key);
}

/* One problem, its message into msg. */
static void conv_path_fails(const struct path_fixture *x, const char *yaml, char msg[400])
{
	struct fake_loader f = { 0 };
	size_t problems = 0;
	json_t *o = conv_table(yaml, path_table, x->recipe, NULL, &f, &problems);
	assert_int_equal(problems, 1);
	assert_int_equal(f.n_msgs, 1);
	assert_int_equal(json_object_size(o), 0);
	json_decref(o);
	memcpy(msg, f.msgs[0], 400);
}

static void test_path_host_file(void **state)
{
	(void)state;
	struct path_fixture x = { 0 };
	path_fixture_init(&x);
	struct fake_loader f = { 0 };
	size_t problems = 0;
	json_t *hashes = json_object();
	char *yaml = xasprintf("script: inside.sh\nkey: %s\n", x.key);
	json_t *o = conv_table(yaml, path_table, x.recipe, hashes, &f, &problems);
	assert_int_equal(problems, 0);
	/* The host file anywhere, as an absolute path, hashed as sha256sum would. */
	assert_string_equal(params_str(o, "key", NULL), x.key);
	char hex[65];
	const char *content = "-----BEGIN PRIVATE KEY-----\nnot really\n";
	sha256_hex(content, strlen(content), hex);
	assert_string_equal(json_string_value(json_object_get(hashes, "key")), hex);
	assert_non_null(json_object_get(hashes, "script"));
	json_decref(o);
	free(yaml);

	/* Relative host paths resolve against the recipe, through links too. */
	f = (struct fake_loader){ 0 };
	o = conv_table("key: link.pem\n", path_table, x.recipe, NULL, &f, &problems);
	assert_int_equal(problems, 0);
	assert_string_equal(params_str(o, "key", NULL), x.key);
	json_decref(o);

	char msg[400], *want;
	/* The recipe's own files keep the inside-the-recipe rule, with what to do. */
	yaml = xasprintf("script: %s\n", x.key);
	conv_path_fails(&x, yaml, msg);
	want = xasprintf("1:9: parameter 'script' of stage 'test' must name a file inside the recipe's "
			 "directory, got '%s'; put the file beside the recipe (or in a directory under it)", x.key);
	assert_string_equal(msg, want);
	free(want);
	free(yaml);
	conv_path_fails(&x, "script: link.pem\n", msg);
	assert_string_equal(msg, "1:9: parameter 'script' of stage 'test' must name a file inside the recipe's "
				 "directory, got 'link.pem' (a symbolic link leading outside); put the file beside "
				 "the recipe (or in a directory under it)");

	/* A missing or unusable host file names the parameter, the path and why. */
	yaml = xasprintf("key: %s/gone.pem\n", x.outside);
	conv_path_fails(&x, yaml, msg);
	want = xasprintf("1:6: parameter 'key' of stage 'test': cannot use '%s/gone.pem': No such file or "
			 "directory", x.outside);
	assert_string_equal(msg, want);
	free(want);
	free(yaml);
	conv_path_fails(&x, "key: ../outside/gone.pem\n", msg);
	want = xasprintf("1:6: parameter 'key' of stage 'test': cannot use '../outside/gone.pem' (%s/gone.pem): "
			 "No such file or directory", x.outside);
	assert_string_equal(msg, want);
	free(want);
	yaml = xasprintf("key: %s\n", x.outside);
	conv_path_fails(&x, yaml, msg);
	want = xasprintf("1:6: parameter 'key' of stage 'test': '%s' is not a regular file; name the file "
			 "itself", x.outside);
	assert_string_equal(msg, want);
	free(want);
	free(yaml);
	json_decref(hashes);
	path_fixture_release(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_accessors),
		cmocka_unit_test(test_conversion),
		cmocka_unit_test(test_path_host_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
