/* SPDX-License-Identifier: Apache-2.0 */
/* Sizes, durations, type names and the params_* accessors. */
#include "testutil.h"

#include <stdint.h>

#include "amiforge/params.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_accessors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
