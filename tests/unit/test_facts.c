/* SPDX-License-Identifier: Apache-2.0 */
/* The fact catalogue against the stage table, the load-time order check
 * and the run-time output check. */
#include "testutil.h"

#include "amiforge/error.h"
#include "amiforge/facts.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

/* ---- the catalogue and the declarations ---- */

static bool param_declared(const struct stage_type *t, const char *name)
{
	for (const struct param_spec *p = t->params; p->name; p++)
		if (!strcmp(p->name, name))
			return true;
	return false;
}

/* Each name of "a|b" passes check(t, name). */
static void each_name(const struct stage_type *t, const char *list, bool (*check)(const struct stage_type *, const char *))
{
	char *copy = xstrdup(list), *save = NULL;
	for (char *n = strtok_r(copy, "|", &save); n; n = strtok_r(NULL, "|", &save)) {
		if (!check(t, n))
			fail_msg("stage %s declares '%s', which is not in its catalogue", t->name, n);
	}
	free(copy);
}

static bool is_fact(const struct stage_type *t, const char *n)
{
	(void)t;
	return facts_find(n) != NULL;
}

static void test_declarations_in_catalogue(void **state)
{
	(void)state;
	size_t n;
	const struct stage_type *const *all = registry_all(&n);
	for (size_t i = 0; i < n; i++) {
		for (const char *const *p = all[i]->provides; p && *p; p++)
			each_name(all[i], *p, is_fact);
		for (const struct fact_need *need = all[i]->needs; need && need->facts; need++) {
			each_name(all[i], need->facts, is_fact);
			if (need->unless)
				each_name(all[i], need->unless, param_declared);
		}
	}
}

static bool provided_by_some_stage(const char *fact)
{
	size_t n;
	const struct stage_type *const *all = registry_all(&n);
	for (size_t i = 0; i < n; i++)
		for (const char *const *p = all[i]->provides; p && *p; p++)
			if (!strcmp(*p, fact))
				return true;
	return false;
}

static void test_catalogue_unique_and_provided(void **state)
{
	(void)state;
	size_t n;
	const struct fact_def *c = facts_catalogue(&n);
	assert_true(n > 40);
	for (size_t i = 0; i < n; i++) {
		assert_non_null(c[i].meaning);
		assert_ptr_equal(facts_find(c[i].name), &c[i]);
		if (!provided_by_some_stage(c[i].name))
			fail_msg("fact %s: no stage provides it", c[i].name);
	}
	assert_null(facts_find("root.nonsense"));
}

/* ---- the order check ---- */

struct reports {
	size_t n;
	size_t stage[8];
	char *msg[8];
};

static void collect(void *data, size_t stage, const char *msg)
{
	struct reports *r = data;
	assert_true(r->n < 8);
	r->stage[r->n] = stage;
	r->msg[r->n++] = xstrdup(msg);
}

static void reports_free(struct reports *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->msg[i]);
}

/* Checks stages "type:{params}" in order. */
static size_t check_list(struct reports *r, size_t n, const char *const *types, const char *const *params)
{
	struct fact_stage fs[12];
	assert_true(n <= 12);
	json_t *p[12];
	for (size_t i = 0; i < n; i++) {
		p[i] = test_json(params[i]);
		fs[i] = (struct fact_stage){ registry_find(types[i]), p[i], types[i] };
		assert_non_null(fs[i].type);
	}
	struct fact_types all;
	all.all = registry_all(&all.n);
	size_t problems = facts_check(fs, n, &all, collect, r);
	for (size_t i = 0; i < n; i++)
		json_decref(p[i]);
	return problems;
}

static void test_good_order(void **state)
{
	(void)state;
	const char *t[] = { "allocate", "partition", "mkfs", "debootstrap", "fstab", "kernel", "bootloader", "snapshot", "register" };
	const char *p[] = { "{}", "{}", "{}", "{}", "{}", "{}", "{\"type\":\"grub\"}", "{}", "{\"virtualization\":\"hvm\"}" };
	struct reports r = { 0 };
	assert_int_equal(check_list(&r, 9, t, p), 0);
	assert_int_equal(r.n, 0);
}

static void test_fstab_before_mkfs(void **state)
{
	(void)state;
	const char *t[] = { "allocate", "fstab", "mkfs" };
	const char *p[] = { "{}", "{}", "{}" };
	struct reports r = { 0 };
	assert_int_equal(check_list(&r, 3, t, p), 1);
	assert_int_equal(r.stage[0], 1);
	assert_string_equal(r.msg[0], "fstab needs root.fstype, which no earlier stage provides; put mkfs before it");
	reports_free(&r);
}

static void test_unless_param(void **state)
{
	(void)state;
	const char *t[] = { "register" };
	const char *with[] = { "{\"snapshot_id\":\"snap-0123\"}" };
	const char *without[] = { "{}" };
	struct reports r = { 0 };
	assert_int_equal(check_list(&r, 1, t, with), 0);
	assert_int_equal(check_list(&r, 1, t, without), 1);
	assert_non_null(strstr(r.msg[0], "register needs snapshot.id or bundle.manifest_location"));
	assert_non_null(strstr(r.msg[0], "put snapshot or upload before it, or set snapshot_id or image_location"));
	reports_free(&r);
}

static void test_bundle_kernel_then_hvm(void **state)
{
	(void)state;
	const char *t[] = { "allocate", "mkfs", "bundle", "upload", "register" };
	const char *aki[] = { "{}", "{}", "{\"kernel_id\":\"aki-1\"}", "{}", "{\"virtualization\":\"hvm\"}" };
	const char *none[] = { "{}", "{}", "{\"kernel_id\":\"none\"}", "{}", "{\"virtualization\":\"hvm\"}" };
	const char *pv[] = { "{}", "{}", "{\"kernel_id\":\"aki-1\"}", "{}", "{\"virtualization\":\"paravirtual\"}" };
	struct reports r = { 0 };
	assert_int_equal(check_list(&r, 5, t, aki), 1);
	assert_int_equal(r.stage[0], 4);
	assert_non_null(strstr(r.msg[0], "kernel_id aki-1, a paravirtual kernel"));
	reports_free(&r);
	r = (struct reports){ 0 };
	assert_int_equal(check_list(&r, 5, t, none), 0);
	assert_int_equal(check_list(&r, 5, t, pv), 0);
}

static void test_bootloader_against_virtualization(void **state)
{
	(void)state;
	const char *t[] = { "allocate", "mkfs", "bootloader", "snapshot", "register" };
	const char *pvgrub_hvm[] = { "{}", "{}", "{\"type\":\"pvgrub\"}", "{}", "{\"virtualization\":\"hvm\"}" };
	const char *grub_pv[] = { "{}", "{}", "{\"type\":\"grub\"}", "{}", "{\"virtualization\":\"paravirtual\"}" };
	const char *pvgrub_default[] = { "{}", "{}", "{\"type\":\"pvgrub\"}", "{}", "{}" };
	struct reports r = { 0 };
	assert_int_equal(check_list(&r, 5, t, pvgrub_hvm), 1);
	assert_non_null(strstr(r.msg[0], "writes menu.lst for PV-GRUB"));
	assert_int_equal(check_list(&r, 5, t, grub_pv), 1);
	assert_non_null(strstr(r.msg[1], "installs GRUB 2"));
	/* No virtualization: register follows the bootloader. */
	assert_int_equal(check_list(&r, 5, t, pvgrub_default), 0);
	reports_free(&r);
}

/* ---- outputs at run time ---- */

static void test_outputs(void **state)
{
	(void)state;
	const struct stage_type *mkfs = registry_find("mkfs");
	struct af_error *err = NULL;
	json_t *ok = test_json("{\"root.fstype\":\"ext4\",\"root.pvgrub_compatible\":false}");
	assert_int_equal(facts_check_outputs(mkfs, ok, &err), 0);
	json_t *undeclared = test_json("{\"snapshot.id\":\"snap-1\"}");
	assert_int_equal(facts_check_outputs(mkfs, undeclared, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "the mkfs stage output 'snapshot.id'"));
	af_error_clear(&err);
	json_t *wrong = test_json("{\"root.fstype\":4}");
	assert_int_equal(facts_check_outputs(mkfs, wrong, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "that is not a string"));
	af_error_clear(&err);
	/* A family: ami.REGION. */
	json_t *copies = test_json("{\"ami.id\":\"ami-1\",\"ami.eu-west-1\":\"ami-1\",\"ami.us-east-1\":\"ami-2\"}");
	assert_int_equal(facts_check_outputs(registry_find("register"), copies, &err), 0);
	assert_int_equal(facts_check_outputs(mkfs, copies, &err), -1);
	af_error_clear(&err);
	json_t *bare = test_json("{\"ami.\":\"ami-1\"}");
	assert_int_equal(facts_check_outputs(registry_find("register"), bare, &err), -1);
	af_error_clear(&err);
	json_decref(copies);
	json_decref(bare);
	json_decref(ok);
	json_decref(undeclared);
	json_decref(wrong);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_declarations_in_catalogue),
		cmocka_unit_test(test_catalogue_unique_and_provided),
		cmocka_unit_test(test_good_order),
		cmocka_unit_test(test_fstab_before_mkfs),
		cmocka_unit_test(test_unless_param),
		cmocka_unit_test(test_bundle_kernel_then_hvm),
		cmocka_unit_test(test_bootloader_against_virtualization),
		cmocka_unit_test(test_outputs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
