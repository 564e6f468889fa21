/* SPDX-License-Identifier: Apache-2.0 */
/* The remote store's garbage collection, its pure parts: LastModified as
 * ListObjectsV2 gives it, the "unused for" decision, which names belong to
 * the layout (and may ever be deleted).  The calls against S3 are covered
 * by tests/integration/remote_gc.sh. */
#include "testutil.h"

#include "../../engine/store/remote_gc.c"

static void test_parse_time(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		bool ok;
		int64_t t;
	} cases[] = {
		{ "1970-01-01T00:00:00Z", true, 0 },
		{ "1970-01-01T00:00:00.000Z", true, 0 },
		{ "2026-12-06T10:46:34.000Z", true, 1796553994 },
		{ "2026-12-06T10:46:34Z", true, 1796553994 },
		{ "2026-12-06T10:46:34.123456789Z", true, 1796553994 },
		{ "2026-12-06t10:46:34z", true, 1796553994 },
		{ "2026-12-06 10:46:34", true, 1796553994 },
		{ "2026-12-06T11:46:34+01:00", true, 1796553994 },
		{ "2026-12-06T09:16:34-0130", true, 1796553994 },
		{ "2026-12-06T12:46:34+02", true, 1796553994 },
		{ "2024-02-29T00:00:00Z", true, 1709164800 },
		{ "2000-03-01T00:00:00Z", true, 951868800 },
		{ "1969-12-31T23:59:59Z", true, -1 },
		{ "2016-12-31T23:59:60Z", true, 1483228800 },
		{ "2023-02-29T00:00:00Z", false, 0 },
		{ "2026-13-01T00:00:00Z", false, 0 },
		{ "2026-00-01T00:00:00Z", false, 0 },
		{ "2026-12-32T00:00:00Z", false, 0 },
		{ "2026-12-06T24:00:00Z", false, 0 },
		{ "2026-12-06T10:60:00Z", false, 0 },
		{ "2026-12-06T10:46:34.Z", false, 0 },
		{ "2026-12-06T10:46:34ZZ", false, 0 },
		{ "2026-12-06T10:46:34+25:00", false, 0 },
		{ "2026-12-06T10:46", false, 0 },
		{ "2026-12-06", false, 0 },
		{ "Sun, 06 Dec 2026 10:46:34 GMT", false, 0 },
		{ "", false, 0 },
		{ "2026-1-06T10:46:34Z", false, 0 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int64_t t = 42;
		int rc = gc_parse_time(cases[i].s, &t);
		if (cases[i].ok != (rc == 0) || (rc == 0 && t != cases[i].t))
			fail_msg("'%s': rc %d t %lld, want %lld", cases[i].s, rc, (long long)t,
				 (long long)cases[i].t);
	}
	int64_t t;
	assert_int_equal(gc_parse_time(NULL, &t), -1);
}

static void test_unused(void **state)
{
	(void)state;
	const int64_t now = 1800000000, day = 86400;
	const uint64_t d30 = 30 * 86400;
	/* Either object recent keeps it; both old removes it. */
	assert_false(gc_unused(now, now - 31 * day, now - day, d30));
	assert_false(gc_unused(now, now - day, now - 31 * day, d30));
	assert_true(gc_unused(now, now - 31 * day, now - 40 * day, d30));
	/* A list without a marker, a marker without a list. */
	assert_true(gc_unused(now, now - 31 * day, TIME_NONE, d30));
	assert_false(gc_unused(now, now - 29 * day, TIME_NONE, d30));
	assert_true(gc_unused(now, TIME_NONE, now - 31 * day, d30));
	assert_true(gc_unused(now, TIME_NONE, TIME_NONE, d30));
	/* "Longer than": exactly the period is still in use. */
	assert_false(gc_unused(now, now - (int64_t)d30, TIME_NONE, d30));
	assert_true(gc_unused(now, now - (int64_t)d30 - 1, TIME_NONE, d30));
	/* A time ahead of our clock is recent, whatever the period. */
	assert_false(gc_unused(now, now + 3600, TIME_NONE, 0));
	assert_false(gc_unused(now, now, TIME_NONE, 0));
	assert_true(gc_unused(now, now - 1, TIME_NONE, 0));
	assert_false(gc_unused(now, INT64_MIN + 1, now, UINT64_MAX));
}

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_classify(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		enum gc_kind k;
	} cases[] = {
		{ "blocks/01/" H64, GC_BLOCK },
		{ "blocks/ab/" H64, GC_UNKNOWN },    /* not its directory */
		{ "blocks/" H64, GC_UNKNOWN },
		{ "blocks/01/" H64 ".tmp", GC_UNKNOWN },
		{ "blocks/01/" H64 "0", GC_UNKNOWN },
		{ "blocks/01/0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", GC_UNKNOWN },
		{ "checkpoints/" H64 ".ckpt", GC_CKPT },
		{ "checkpoints/" H64, GC_UNKNOWN },
		{ "checkpoints/" H64 ".ckpt.bak", GC_UNKNOWN },
		{ "used/" H64, GC_USED },
		{ "used/" H64 "/", GC_UNKNOWN },
		{ "stages/" H64 ".json", GC_STAGE },
		{ "stages/x.json", GC_UNKNOWN },
		{ "states/debian/journal", GC_STATE },
		{ "states/debian/lease", GC_STATE },
		{ "states//lease", GC_UNKNOWN },
		{ "states/debian/journal.old", GC_UNKNOWN },
		{ "states/a/b/lease", GC_UNKNOWN }, /* NAME is a file stem: no '/' */
		{ "gc-lease", GC_GC_LEASE },
		{ "gc-lease2", GC_UNKNOWN },
		{ "README", GC_UNKNOWN },
		{ "", GC_UNKNOWN },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *id = NULL;
		enum gc_kind k = gc_classify(cases[i].name, &id);
		if (k != cases[i].k)
			fail_msg("'%s': kind %d, want %d", cases[i].name, k, cases[i].k);
		if ((k == GC_BLOCK || k == GC_CKPT || k == GC_USED || k == GC_STAGE) &&
		    strncmp(id, H64, 64))
			fail_msg("'%s': id %.64s", cases[i].name, id);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_unused),
		cmocka_unit_test(test_classify),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
