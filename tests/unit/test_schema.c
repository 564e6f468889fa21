/* SPDX-License-Identifier: Apache-2.0 */
/* The recipe schema generator: each parameter type's schema, which
 * documented defaults become literal "default"s, the size and duration
 * patterns against the parsers, and the stage list against the registry. */
#include "testutil.h"

#include <regex.h>
#include <stdint.h>
#include <string.h>

#include "amiforge/params.h"
#include "amiforge/schema.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

static const char *const fruit[] = { "apple", "pear", NULL };
static const struct param_spec sub_table[] = {
	{ .name = "name", .type = PT_STRING, .flags = PARAM_REQUIRED, .help = "a name" },
	{ .name = "n", .type = PT_INT },
	{ 0 },
};

/* The compact JSON of a schema, for comparison. */
static char *dump(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

static void test_type_mapping(void **state)
{
	static const struct {
		struct param_spec spec;
		const char *want;
	} cases[] = {
		{ { .name = "a", .type = PT_STRING }, "{\"$ref\":\"#/$defs/text\"}" },
		{ { .name = "a", .type = PT_INT }, "{\"$ref\":\"#/$defs/int\"}" },
		{ { .name = "a", .type = PT_BOOL }, "{\"$ref\":\"#/$defs/bool\"}" },
		{ { .name = "a", .type = PT_SIZE }, "{\"$ref\":\"#/$defs/size\"}" },
		{ { .name = "a", .type = PT_DURATION }, "{\"$ref\":\"#/$defs/duration\"}" },
		{ { .name = "a", .type = PT_STRINGS }, "{\"$ref\":\"#/$defs/strings\"}" },
		{ { .name = "a", .type = PT_MAP }, "{\"$ref\":\"#/$defs/map\"}" },
		{ { .name = "a", .type = PT_PATH }, "{\"$ref\":\"#/$defs/path\"}" },
		{ { .name = "a", .type = PT_COMMAND }, "{\"$ref\":\"#/$defs/command\"}" },
		{ { .name = "a", .type = PT_ENUM, .choices = fruit },
		  "{\"anyOf\":[{\"enum\":[\"apple\",\"pear\"]},{\"$ref\":\"#/$defs/var\"}]}" },
		{ { .name = "a", .type = PT_LIST, .sub = sub_table },
		  "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
		  "\"name\":{\"description\":\"a name\",\"$ref\":\"#/$defs/text\"},"
		  "\"n\":{\"$ref\":\"#/$defs/int\"}},\"required\":[\"name\"],\"additionalProperties\":false}}" },
		{ { .name = "a", .type = PT_OBJECT, .sub = sub_table },
		  "{\"type\":\"object\",\"properties\":{"
		  "\"name\":{\"description\":\"a name\",\"$ref\":\"#/$defs/text\"},"
		  "\"n\":{\"$ref\":\"#/$defs/int\"}},\"required\":[\"name\"],\"additionalProperties\":false}" },
		{ { .name = "a", .type = PT_INT, .help = "blocks in flight", .defval = "16" },
		  "{\"description\":\"blocks in flight\",\"default\":16,\"$ref\":\"#/$defs/int\"}" },
		{ { .name = "a", .type = PT_INT, .help = "seconds", .defval = "1 (grub), 0 (pvgrub)" },
		  "{\"description\":\"seconds; default: 1 (grub), 0 (pvgrub)\",\"$ref\":\"#/$defs/int\"}" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		json_t *s = schema_param(&cases[i].spec);
		char *got = dump(s);
		assert_string_equal(got, cases[i].want);
		free(got);
		json_decref(s);
	}
}

static void test_defaults(void **state)
{
	static const struct {
		enum param_type type;
		const char *defval;
		const char *want; /* compact JSON, or NULL: prose or absent */
	} cases[] = {
		{ PT_BOOL, "true", "true" },
		{ PT_BOOL, "false", "false" },
		{ PT_BOOL, "true for hvm", NULL },
		{ PT_INT, "16", "16" },
		{ PT_INT, "-1", "-1" },
		{ PT_INT, "1 (grub), 0 (pvgrub)", NULL },
		{ PT_INT, "the image's next free id", NULL },
		{ PT_ENUM, "apple", "\"apple\"" },
		{ PT_ENUM, "apple after a pear, else pear", NULL },
		{ PT_SIZE, "2GiB", "\"2GiB\"" },
		{ PT_SIZE, "the rest of the disk", NULL },
		{ PT_DURATION, "120s", "\"120s\"" },
		{ PT_DURATION, "2h", "\"2h\"" },
		{ PT_DURATION, "the stage's", NULL },
		{ PT_STRING, "rootfs", "\"rootfs\"" },
		{ PT_STRING, "http://169.254.169.254", "\"http://169.254.169.254\"" },
		{ PT_STRING, "none", NULL },
		{ PT_STRING, "the recipe's name", NULL },
		{ PT_STRINGS, "[main]", "[\"main\"]" },
		{ PT_STRINGS, "[main, contrib]", "[\"main\",\"contrib\"]" },
		{ PT_STRINGS, "main and contrib", NULL },
		{ PT_LIST, "[{name: eth0, method: dhcp}]", NULL },
		{ PT_MAP, "{}", NULL },
		{ PT_STRING, NULL, NULL },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct param_spec spec = { .name = "p", .type = cases[i].type, .choices = fruit,
					   .defval = cases[i].defval };
		json_t *d = schema_default(&spec);
		if (!cases[i].want) {
			if (d)
				fail_msg("case %zu (%s): got a default", i, cases[i].defval);
			continue;
		}
		assert_non_null(d);
		char *got = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
		assert_string_equal(got, cases[i].want);
		free(got);
		json_decref(d);
	}
}

/* The schema's patterns (ECMA 262, here also POSIX extended) accept what
 * the parsers accept. */
static void check_pattern(const json_t *def, const char *const *texts, size_t n,
			  int (*parse)(const char *, uint64_t *))
{
	const json_t *alt = json_array_get(json_object_get(def, "anyOf"), 1);
	const char *pattern = json_string_value(json_object_get(alt, "pattern"));
	assert_non_null(pattern);
	regex_t re;
	assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
	for (size_t i = 0; i < n; i++) {
		uint64_t v;
		bool parsed = parse(texts[i], &v) == 0;
		bool matched = regexec(&re, texts[i], 0, NULL, 0) == 0;
		if (parsed != matched)
			fail_msg("'%s': parser %s, pattern %s", texts[i], parsed ? "accepts" : "refuses",
				 matched ? "accepts" : "refuses");
	}
	regfree(&re);
}

static void test_unit_patterns(void **state)
{
	static const char *const sizes[] = {
		"0", "4096", "512B", "1K", "1KiB", "1kib", "1KB", "512M", "512 MiB", "2G", "2GiB", "2gb",
		"1T", "1TiB", "", "G", "2X", "2GiBs", "-1", "1.5G", "2 ", " 2", "2Gi",
	};
	static const char *const durations[] = {
		"0", "90", "90s", "10m", "2h", "7d", "10 m", "10M", "1H", "1w", "", "s", "1.5h", "-1",
	};
	json_t *s = schema_recipe();
	const json_t *defs = json_object_get(s, "$defs");
	check_pattern(json_object_get(defs, "size"), sizes, ARRAY_SIZE(sizes), param_parse_size);
	check_pattern(json_object_get(defs, "duration"), durations, ARRAY_SIZE(durations),
		      param_parse_duration);
	json_decref(s);
}

static void test_every_stage(void **state)
{
	json_t *s = schema_recipe();
	const json_t *alts = json_object_get(json_object_get(json_object_get(json_object_get(s, "properties"),
		"stages"), "items"), "oneOf");
	size_t n = 0;
	const struct stage_type *const *all = registry_all(&n);
	assert_int_equal(json_array_size(alts), n);
	for (size_t i = 0; i < n; i++) {
		const json_t *props = json_object_get(json_array_get(alts, i), "properties");
		const json_t *params = json_object_get(json_object_get(props, all[i]->name), "properties");
		assert_non_null(params);
		for (const struct param_spec *p = all[i]->params; p && p->name; p++)
			assert_non_null(json_object_get(params, p->name));
		assert_non_null(json_object_get(params, "id"));
		assert_non_null(json_object_get(params, "timeout"));
		assert_non_null(json_object_get(params, "checkpoint"));
	}
	json_decref(s);
}

static void test_text(void **state)
{
	char *a = schema_recipe_text(), *b = schema_recipe_text();
	assert_string_equal(a, b);
	size_t n = strlen(a);
	assert_true(n > 2 && a[n - 1] == '\n' && a[n - 2] == '}');
	assert_non_null(strstr(a, "\n  \"$schema\": \"https://json-schema.org/draft/2020-12/schema\",\n"));
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_mapping),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_unit_patterns),
		cmocka_unit_test(test_every_stage),
		cmocka_unit_test(test_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
