/* SPDX-License-Identifier: Apache-2.0 */
/* The fact catalogue and the two checks against it: the recipe's stage
 * order at load time, a stage's outputs at run time. */
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/facts.h"
#include "amiforge/params.h"
#include "amiforge/util.h"

#define FACT_ENTRY(n, t, m) { n, t, m },
static const struct fact_def catalogue[] = { AMIFORGE_FACTS(FACT_ENTRY) };

const struct fact_def *facts_catalogue(size_t *count)
{
	*count = ARRAY_SIZE(catalogue);
	return catalogue;
}

/* NAME is PATTERN, or PATTERN is a family "p.*" and NAME "p.<something>". */
static bool fact_matches(const char *pattern, const char *name)
{
	size_t n = strlen(pattern);
	if (n >= 2 && !strcmp(pattern + n - 2, ".*"))
		return !strncmp(name, pattern, n - 1) && name[n - 1] != '\0';
	return !strcmp(pattern, name);
}

const struct fact_def *facts_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(catalogue); i++)
		if (!strcmp(catalogue[i].name, name))
			return &catalogue[i];
	for (size_t i = 0; i < ARRAY_SIZE(catalogue); i++)
		if (fact_matches(catalogue[i].name, name))
			return &catalogue[i];
	return NULL;
}

const char *facts_type_name(enum fact_type t)
{
	switch (t) {
	case FACT_STRING:
		return "string";
	case FACT_INT:
		return "integer";
	case FACT_BOOL:
		return "boolean";
	}
	return "?";
}

/* The runner mounts the root with root.fstype/offset/size (runner.c
 * mount_root).  A stage on the raw image needs nothing implied: without
 * disk.path it gets STATE/disk.img. */
static const struct fact_need needs_mount[] = {
	{ "root.offset", NULL }, { "root.size", NULL }, { "root.fstype", NULL }, { NULL, NULL }
};

const struct fact_need *facts_implied(unsigned stage_flags)
{
	return stage_flags & STAGE_NEEDS_MOUNT ? needs_mount : NULL;
}

/* ---- lists of "a|b" names ------------------------------------------------- */

/* Calls fn for each name of "a|b|c" until it returns true. */
static bool names_any(const char *list, bool (*fn)(const char *name, const void *data), const void *data)
{
	_cleanup_free_ char *copy = xstrdup(list);
	char *save = NULL;
	for (char *n = strtok_r(copy, "|", &save); n; n = strtok_r(NULL, "|", &save))
		if (fn(n, data))
			return true;
	return false;
}

/* "a|b|c" as "a, b or c". */
static void names_text(struct strbuf *sb, const char *list)
{
	const char *bar = strrchr(list, '|');
	for (const char *p = list; *p; p++) {
		if (*p != '|')
			strbuf_add(sb, p, 1);
		else
			strbuf_addstr(sb, p == bar ? " or " : ", ");
	}
}

static bool provides_fact(const struct stage_type *t, const char *fact)
{
	for (const char *const *p = t->provides; p && *p; p++)
		if (fact_matches(*p, fact))
			return true;
	return false;
}

/* ---- the plan ------------------------------------------------------------- */

const struct fact_stage *facts_plan_provider(const struct fact_plan *p, const char *fact)
{
	for (size_t i = p->upto; i-- > 0;)
		if (provides_fact(p->stages[i].type, fact))
			return &p->stages[i];
	return NULL;
}

static bool plan_has(const char *fact, const void *plan)
{
	return facts_plan_provider(plan, fact) != NULL;
}

static bool param_set(const char *name, const void *params)
{
	return params_get(params, name) != NULL;
}

static bool type_provides(const char *fact, const void *type)
{
	return provides_fact(type, fact);
}

/* The stage types that may provide any of "a|b", as "x or y". */
static void providers_text(struct strbuf *sb, const struct fact_types *types, const char *facts)
{
	struct strbuf names = { 0 };
	for (size_t i = 0; i < types->n; i++)
		if (names_any(facts, type_provides, types->all[i]))
			strbuf_addf(&names, "%s%s", names.len ? "|" : "", types->all[i]->name);
	_cleanup_free_ char *list = strbuf_detach(&names);
	names_text(sb, list);
}

/* "a|b": "X needs a or b, which no earlier stage provides; put T before it
 * [, or set P]". */
static char *need_message(const struct fact_plan *plan, const char *facts, const char *unless)
{
	const struct fact_stage *s = &plan->stages[plan->upto];
	struct strbuf sb = { 0 };
	strbuf_addf(&sb, "%s needs ", s->type->name);
	names_text(&sb, facts);
	strbuf_addstr(&sb, ", which no earlier stage provides; put ");
	providers_text(&sb, plan->types, facts);
	strbuf_addstr(&sb, " before it");
	if (unless) {
		strbuf_addstr(&sb, ", or set ");
		names_text(&sb, unless);
	}
	return strbuf_detach(&sb);
}

/* Several plain facts "a|b|c" missing at once: "X needs facts no earlier
 * stage provides: a, b (from T or U), c (from V); put those stages before
 * it", facts with the same providers side by side. */
static char *needs_message(const struct fact_plan *plan, const char *facts)
{
	if (!strchr(facts, '|'))
		return need_message(plan, facts, NULL);
	const struct fact_stage *s = &plan->stages[plan->upto];
	struct strbuf sb = { 0 };
	strbuf_addf(&sb, "%s needs facts no earlier stage provides: ", s->type->name);
	_cleanup_free_ char *copy = xstrdup(facts);
	char *save = NULL, *prev = NULL;
	for (char *f = strtok_r(copy, "|", &save); f; f = strtok_r(NULL, "|", &save)) {
		struct strbuf from = { 0 };
		providers_text(&from, plan->types, f);
		_cleanup_free_ char *text = strbuf_detach(&from);
		if (prev && strcmp(prev, text))
			strbuf_addf(&sb, " (from %s), ", prev);
		else if (prev)
			strbuf_addstr(&sb, ", ");
		strbuf_addstr(&sb, f);
		free(prev);
		prev = steal_pointer(&text);
	}
	strbuf_addf(&sb, " (from %s); put those stages before it", prev);
	free(prev);
	return strbuf_detach(&sb);
}

/* Needs with an alternative ("a|b" or "unless") are reported one by one;
 * the plain ones missing together, in one line. */
static size_t check_needs(const struct fact_need *needs, const struct fact_plan *plan, struct strbuf *plain,
			  fact_report_fn report, void *data)
{
	const struct fact_stage *s = &plan->stages[plan->upto];
	size_t problems = 0;
	for (const struct fact_need *need = needs; need && need->facts; need++) {
		if (need->unless && names_any(need->unless, param_set, s->params))
			continue;
		if (names_any(need->facts, plan_has, plan))
			continue;
		problems++;
		if (!need->unless && !strchr(need->facts, '|')) {
			strbuf_addf(plain, "%s%s", plain->len ? "|" : "", need->facts);
			continue;
		}
		_cleanup_free_ char *msg = need_message(plan, need->facts, need->unless);
		report(data, plan->upto, msg);
	}
	return problems;
}

static size_t check_stage_needs(const struct fact_plan *plan, fact_report_fn report, void *data)
{
	const struct fact_stage *s = &plan->stages[plan->upto];
	struct strbuf plain = { 0 };
	size_t problems = check_needs(facts_implied(s->type->flags), plan, &plain, report, data);
	problems += check_needs(s->type->needs, plan, &plain, report, data);
	_cleanup_free_ char *facts = strbuf_detach(&plain);
	if (*facts) {
		_cleanup_free_ char *msg = needs_message(plan, facts);
		report(data, plan->upto, msg);
	}
	return problems;
}

size_t facts_check(const struct fact_stage *stages, size_t n, const struct fact_types *types, fact_report_fn report,
		   void *data)
{
	size_t problems = 0;
	for (size_t i = 0; i < n; i++) {
		const struct stage_type *t = stages[i].type;
		struct fact_plan plan = { stages, i, types };
		size_t missing = check_stage_needs(&plan, report, data);
		_cleanup_error_ struct af_error *err = NULL;
		/* A missing fact already says what to fix; a combination check
		 * over a plan with holes would only add noise. */
		if (!missing && t->plan_check && t->plan_check(stages[i].params, &plan, &err) < 0) {
			report(data, i, af_error_msg(err));
			missing++;
		}
		problems += missing;
	}
	return problems;
}

/* ---- outputs at run time -------------------------------------------------- */

static bool type_matches(enum fact_type t, const json_t *v)
{
	switch (t) {
	case FACT_STRING:
		return json_is_string(v);
	case FACT_INT:
		return json_is_integer(v);
	case FACT_BOOL:
		return json_is_boolean(v);
	}
	return false;
}

int facts_check_outputs(const struct stage_type *type, const json_t *outputs, struct af_error **err)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)outputs, k, v) {
		const struct fact_def *d = facts_find(k);
		if (!d || !provides_fact(type, k))
			return af_error_set(err, 0, "internal error: the %s stage output '%s', which its provides "
						    "list (or facts.h) does not declare; please report this",
					    type->name, k);
		if (!type_matches(d->type, v))
			return af_error_set(err, 0, "internal error: the %s stage output '%s' that is not a %s "
						    "(facts.h); please report this",
					    type->name, k, facts_type_name(d->type));
	}
	return 0;
}
