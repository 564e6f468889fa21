/* SPDX-License-Identifier: Apache-2.0 */
/* Recipe loader: libyaml's document API (every node keeps its mark), then
 * one pass over the tree that checks it against the stage schemas and
 * collects every problem as a positioned diagnostic (see recipe.h). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/facts.h"
#include "amiforge/params.h"
#include "amiforge/recipe.h"
#include "amiforge/redact.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"
#include "amiforge/vars.h"

static inline void cleanup_yaml_parserp(yaml_parser_t *p) { yaml_parser_delete(p); }
#define _cleanup_yaml_parser_ __attribute__((cleanup(cleanup_yaml_parserp)))

struct diag {
	unsigned line, col;  /* 1-based; 0 when the problem has no position */
	size_t seq;          /* keeps the order of problems at one position */
	char *msg;
};

/* Where each stage's id came from, for duplicate reports. */
struct id_site {
	unsigned line, col;
	bool explicit_id;
};

struct loader {
	const char *path;
	const char *dir;
	yaml_document_t *doc;
	struct vars vars;
	struct diag *diags;
	size_t n_diags, alloc_diags;
	struct id_site *ids;
};

/* What a value is checked for: a stage parameter or a top-level key. */
struct pctx {
	struct loader *L;
	const char *stage;  /* type name, or NULL at top level */
	json_t *hashes;     /* file_hashes of the stage (NULL at top level) */
};

static const char *const common_keys[] = { "id", "timeout", "checkpoint", NULL };
static const char *const checkpoint_choices[] = { "auto", "always", "never", NULL };
static const char *const arch_choices[] = { "x86_64", "arm64", NULL };

static const struct param_spec spec_id = { .name = "id", .type = PT_STRING };
static const struct param_spec spec_timeout = { .name = "timeout", .type = PT_DURATION };
static const struct param_spec spec_checkpoint = {
	.name = "checkpoint", .type = PT_ENUM, .choices = checkpoint_choices,
};
static const struct param_spec spec_name = { .name = "name", .type = PT_STRING };
static const struct param_spec spec_description = { .name = "description", .type = PT_STRING };
static const struct param_spec spec_arch = { .name = "arch", .type = PT_ENUM, .choices = arch_choices };

/* ---- diagnostics ---- */

static void diag_add(struct loader *L, unsigned line, unsigned col, char *msg)
{
	if (L->n_diags == L->alloc_diags) {
		L->alloc_diags = L->alloc_diags ? 2 * L->alloc_diags : 16;
		L->diags = xreallocarray(L->diags, L->alloc_diags, sizeof(*L->diags));
	}
	L->diags[L->n_diags] = (struct diag){ line, col, L->n_diags, msg };
	L->n_diags++;
}

static void diag_mark(struct loader *L, yaml_mark_t m, char *msg)
{
	/* libyaml marks are 0-based. */
	diag_add(L, (unsigned)m.line + 1, (unsigned)m.column + 1, msg);
}

__attribute__((format(printf, 3, 4)))
static void diag_node(struct loader *L, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		BUG("out of memory");
	va_end(ap);
	diag_mark(L, n->start_mark, msg);
}

static int diag_cmp(const void *a, const void *b)
{
	const struct diag *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts the collected problems and moves them, formatted, to out. */
static void diags_flush(struct loader *L, struct diag_list *out)
{
	qsort(L->diags, L->n_diags, sizeof(*L->diags), diag_cmp);
	out->lines = xreallocarray(out->lines, out->n + L->n_diags, sizeof(*out->lines));
	for (size_t i = 0; i < L->n_diags; i++) {
		const struct diag *d = &L->diags[i];
		const struct diag *prev = i ? &L->diags[i - 1] : NULL;
		/* One scalar can raise the same problem twice (two built-ins
		 * with a bad SOURCE_DATE_EPOCH); say it once. */
		if (prev && prev->line == d->line && prev->col == d->col && !strcmp(prev->msg, d->msg))
			continue;
		/* A value quoted back may have come from the environment. */
		_cleanup_free_ char *msg = redact_text(d->msg, NULL, 0);
		out->lines[out->n++] = d->line ? xasprintf("%s:%u:%u: %s", L->path, d->line, d->col, msg)
					       : xasprintf("%s: %s", L->path, msg);
	}
	for (size_t i = 0; i < L->n_diags; i++)
		free(L->diags[i].msg);
	free(L->diags);
	L->diags = NULL;
	L->n_diags = L->alloc_diags = 0;
}

void diag_list_release(struct diag_list *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->lines[i]);
	free(d->lines);
	d->lines = NULL;
	d->n = 0;
}

/* ---- suggestions ---- */

/* Optimal string alignment distance (a transposition counts as one edit). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return SIZE_MAX;
	size_t d[65][65];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

struct suggest {
	const char *best;
	size_t dist;
	bool tie;  /* two candidates equally close: suggest neither */
};

static void suggest_try(struct suggest *s, const char *word, const char *candidate)
{
	size_t d = edit_distance(word, candidate);
	/* Within two edits, and not a rewrite of the whole word. */
	if (d > 2 || d >= strlen(word))
		return;
	if (s->best && d == s->dist) {
		s->tie = true;
	} else if (!s->best || d < s->dist) {
		s->best = candidate;
		s->dist = d;
		s->tie = false;
	}
}

static const char *suggest_best(const struct suggest *s)
{
	return s->tie ? NULL : s->best;
}

/* "; did you mean 'X'?" or "".  Caller frees. */
static char *suggest_text(const struct suggest *s)
{
	const char *best = suggest_best(s);
	return best ? xasprintf("; did you mean '%s'?", best) : xstrdup("");
}

/* ---- nodes and scalars ---- */

static yaml_node_t *node_at(struct loader *L, int id)
{
	yaml_node_t *n = yaml_document_get_node(L->doc, id);
	if (!n)
		BUG("yaml node %d missing", id);
	return n;
}

static const char *scalar_raw(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool scalar_plain(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* An unquoted empty value ("key:" with nothing after it). */
static bool node_is_empty(const yaml_node_t *n)
{
	return scalar_plain(n) && !*scalar_raw(n);
}

/* YAML 1.1 null, only where a value may be absent (a stage without
 * parameters, a variable without a default).  Where the schema asks for a
 * string, "null" is the string: DESIGN's own `devices: [zero, null]`. */
static bool node_is_null(const yaml_node_t *n)
{
	if (!scalar_plain(n))
		return false;
	const char *s = scalar_raw(n);
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static size_t pairs_count(const yaml_node_t *n)
{
	return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

static size_t items_count(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

struct report_ctx {
	struct loader *L;
	const yaml_node_t *n;
};

static void report_at_node(void *data, const char *msg)
{
	struct report_ctx *rc = data;
	diag_mark(rc->L, rc->n->start_mark, xstrdup(msg));
}

/* The scalar's text with variables expanded; NULL after reporting. */
static char *scalar_expand(struct loader *L, const yaml_node_t *n)
{
	if (strlen(scalar_raw(n)) != n->data.scalar.length) {
		diag_node(L, n, "value contains a NUL character");
		return NULL;
	}
	struct report_ctx rc = { L, n };
	return vars_expand(&L->vars, scalar_raw(n), report_at_node, &rc);
}

/* A short quoted rendering of a value for messages, redacted before it is
 * cut: a credential's first 57 characters would not be recognised later. */
static char *quote_value(const char *value)
{
	_cleanup_free_ char *s = redact_text(value, NULL, 0);
	size_t n = strlen(s);
	if (n > 60)
		return xasprintf("'%.57s...'", s);
	return xasprintf("'%s'", s);
}

/* What the recipe holds, for "got ..." (text: the expanded scalar or NULL). */
static char *describe(const yaml_node_t *n, const char *text, bool quoted_matters)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return xstrdup("a list");
	if (n->type == YAML_MAPPING_NODE)
		return xstrdup("a mapping");
	if (node_is_empty(n))
		return xstrdup("nothing");
	_cleanup_free_ char *q = quote_value(text ? text : scalar_raw(n));
	if (quoted_matters && !scalar_plain(n))
		return xasprintf("the quoted string %s (remove the quotes)", q);
	return steal_pointer(&q);
}

static char *choices_text(const char *const *choices)
{
	struct strbuf sb = STRBUF_INIT;
	for (const char *const *c = choices; c && *c; c++)
		strbuf_addf(&sb, "%s%s", c == choices ? "" : "|", *c);
	return strbuf_detach(&sb);
}

static char *expected_text(const struct param_spec *spec)
{
	switch (spec->type) {
	case PT_STRING: return xstrdup("a string");
	case PT_INT: return xstrdup("an integer");
	case PT_BOOL: return xstrdup("true or false");
	case PT_SIZE: return xstrdup("a size like 2GiB");
	case PT_DURATION: return xstrdup("a duration like 10m");
	case PT_ENUM: {
		_cleanup_free_ char *c = choices_text(spec->choices);
		return xasprintf("one of %s", c);
	}
	case PT_STRINGS: return xstrdup("a string or a list of strings");
	case PT_MAP: return xstrdup("a mapping of names to strings");
	case PT_LIST: return xstrdup("a list of mappings");
	case PT_OBJECT: return xstrdup("a mapping");
	case PT_PATH: return xstrdup("a path relative to the recipe");
	case PT_COMMAND: return xstrdup("a command string or a non-empty list of strings");
	}
	return xstrdup("a value");
}

static char *subject(const struct pctx *c, const char *name)
{
	if (c->stage)
		return xasprintf("parameter '%s' of stage '%s'", name, c->stage);
	return xasprintf("'%s'", name);
}

/* "SUBJECT must be EXPECTED, got GOT[TAIL]" at n. */
static void type_error(struct pctx *c, const struct param_spec *spec, const char *name,
		       const yaml_node_t *n, const char *text, const char *tail)
{
	_cleanup_free_ char *subj = subject(c, name);
	_cleanup_free_ char *exp = expected_text(spec);
	bool quoted_matters = spec->type == PT_INT || spec->type == PT_BOOL;
	_cleanup_free_ char *got = describe(n, text, quoted_matters);
	diag_node(c->L, n, "%s must be %s, got %s%s", subj, exp, got, tail ? tail : "");
}

static void range_error(struct pctx *c, const char *name, const yaml_node_t *n, const char *text)
{
	_cleanup_free_ char *subj = subject(c, name);
	_cleanup_free_ char *q = quote_value(text);
	diag_node(c->L, n, "%s is out of range: %s is too large", subj, q);
}

/* ---- conversions ---- */

/* A non-null scalar, expanded; NULL after reporting. */
static char *expect_scalar(struct pctx *c, const struct param_spec *spec, const char *name,
			   const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || node_is_empty(n)) {
		type_error(c, spec, name, n, NULL, NULL);
		return NULL;
	}
	return scalar_expand(c->L, n);
}

/* A valid size/duration with its digits replaced by "1" means the original
 * only failed by overflowing. */
static bool overflowed(const char *text, int (*parse)(const char *, uint64_t *))
{
	size_t digits = strspn(text, "0123456789");
	if (!digits)
		return false;
	_cleanup_free_ char *one = xasprintf("1%s", text + digits);
	uint64_t v;
	return parse(one, &v) == 0;
}

static json_t *convert_units(struct pctx *c, const struct param_spec *spec, const char *name,
			     const yaml_node_t *n, const char *text)
{
	int (*parse)(const char *, uint64_t *) =
		spec->type == PT_SIZE ? param_parse_size : param_parse_duration;
	uint64_t v;
	if (parse(text, &v) < 0) {
		if (overflowed(text, parse))
			range_error(c, name, n, text);
		else
			type_error(c, spec, name, n, text, NULL);
		return NULL;
	}
	if (v > (uint64_t)INT64_MAX) {
		range_error(c, name, n, text);
		return NULL;
	}
	return json_integer((json_int_t)v);
}

static json_t *convert_int(struct pctx *c, const struct param_spec *spec, const char *name,
			   const yaml_node_t *n, const char *text)
{
	const char *digits = text + (*text == '-');
	if (!scalar_plain(n) || !*digits || strspn(digits, "0123456789") != strlen(digits)) {
		type_error(c, spec, name, n, text, NULL);
		return NULL;
	}
	errno = 0;
	long long v = strtoll(text, NULL, 10);
	if (errno == ERANGE) {
		range_error(c, name, n, text);
		return NULL;
	}
	return json_integer((json_int_t)v);
}

static json_t *convert_bool(struct pctx *c, const struct param_spec *spec, const char *name,
			    const yaml_node_t *n, const char *text)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };
	if (scalar_plain(n)) {
		for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
			if (!strcasecmp(text, yes[i]))
				return json_true();
			if (!strcasecmp(text, no[i]))
				return json_false();
		}
	}
	type_error(c, spec, name, n, text, NULL);
	return NULL;
}

static json_t *convert_enum(struct pctx *c, const struct param_spec *spec, const char *name,
			    const yaml_node_t *n, const char *text)
{
	struct suggest s = { 0 };
	for (const char *const *ch = spec->choices; ch && *ch; ch++) {
		if (!strcmp(text, *ch))
			return json_string(text);
		suggest_try(&s, text, *ch);
	}
	_cleanup_free_ char *tail = suggest_text(&s);
	type_error(c, spec, name, n, text, tail);
	return NULL;
}

/* Lexically resolves "." and ".." in an absolute path. */
static char *normalize_path(const char *abs)
{
	_cleanup_free_ char *copy = xstrdup(abs);
	size_t n = 0, cap = strlen(abs) / 2 + 2;
	_cleanup_free_ const char **parts = xcalloc(cap, sizeof(*parts));
	char *save = NULL;
	for (char *t = strtok_r(copy, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
		if (!strcmp(t, "."))
			continue;
		if (!strcmp(t, "..")) {
			if (n)
				n--;
			continue;
		}
		parts[n++] = t;
	}
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < n; i++)
		strbuf_addf(&sb, "/%s", parts[i]);
	if (!n)
		strbuf_addstr(&sb, "/");
	return strbuf_detach(&sb);
}

static bool path_inside(const char *dir, const char *p)
{
	size_t len = strlen(dir);
	if (!strcmp(dir, "/"))
		return true;
	return !strncmp(p, dir, len) && (p[len] == '/' || !p[len]);
}

static json_t *convert_path(struct pctx *c, const struct param_spec *spec, const char *name,
			    const yaml_node_t *n, const char *text)
{
	if (!*text) {
		type_error(c, spec, name, n, text, NULL);
		return NULL;
	}
	_cleanup_free_ char *subj = subject(c, name);
	_cleanup_free_ char *joined = text[0] == '/' ? xstrdup(text) : path_join(c->L->dir, text);
	_cleanup_free_ char *norm = normalize_path(joined);
	/* Only files that travel with the recipe: the stage key hashes them,
	 * and a recipe must not read the host's files behind the user's back. */
	if (!path_inside(c->L->dir, norm)) {
		diag_node(c->L, n, "%s must name a file inside the recipe's directory, got '%s'", subj, text);
		return NULL;
	}
	_cleanup_free_ char *real = realpath(norm, NULL);
	if (!real) {
		diag_node(c->L, n, "%s: cannot use '%s' (relative to the recipe's directory): %s", subj,
			  text, strerror(errno));
		return NULL;
	}
	if (!path_inside(c->L->dir, real)) {
		diag_node(c->L, n, "%s must name a file inside the recipe's directory, got '%s' "
			  "(a symbolic link leading outside)", subj, text);
		return NULL;
	}
	char hex[65];
	_cleanup_error_ struct af_error *err = NULL;
	if (sha256_path_hex(real, hex, &err) < 0) {
		diag_node(c->L, n, "%s: %s", subj, af_error_msg(err));
		return NULL;
	}
	if (c->hashes)
		json_object_set_new(c->hashes, name, json_string(hex));
	return json_string(real);
}

static json_t *convert(struct pctx *c, const struct param_spec *spec, const char *name,
		       const yaml_node_t *n);

/* A scalar-typed parameter. */
static json_t *convert_scalar(struct pctx *c, const struct param_spec *spec, const char *name,
			      const yaml_node_t *n)
{
	_cleanup_free_ char *text = expect_scalar(c, spec, name, n);
	if (!text)
		return NULL;
	switch (spec->type) {
	case PT_INT: return convert_int(c, spec, name, n, text);
	case PT_BOOL: return convert_bool(c, spec, name, n, text);
	case PT_SIZE:
	case PT_DURATION: return convert_units(c, spec, name, n, text);
	case PT_ENUM: return convert_enum(c, spec, name, n, text);
	case PT_PATH: return convert_path(c, spec, name, n, text);
	case PT_COMMAND:
		if (!*text) {
			type_error(c, spec, name, n, text, NULL);
			return NULL;
		}
		return json_string(text);
	case PT_STRING:
	case PT_STRINGS:
	case PT_MAP:
	case PT_LIST:
	case PT_OBJECT:
		break;
	}
	json_t *j = json_string(text);
	if (!j)
		diag_node(c->L, n, "value is not valid UTF-8");
	return j;
}

/* A list of strings: each item checked as a string at its own position. */
static json_t *convert_string_list(struct pctx *c, const struct param_spec *spec, const char *name,
				   const yaml_node_t *n)
{
	static const struct param_spec item_spec = { .type = PT_STRING };
	if (spec->type == PT_COMMAND && !items_count(n)) {
		type_error(c, spec, name, n, NULL, NULL);
		return NULL;
	}
	json_t *arr = json_array();
	bool ok = true;
	size_t i = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		_cleanup_free_ char *iname = xasprintf("%s[%zu]", name, i);
		json_t *v = convert_scalar(c, &item_spec, iname, node_at(c->L, *it));
		if (!v)
			ok = false;
		else
			json_array_append_new(arr, v);
	}
	if (!ok) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

/* PT_STRINGS written as one scalar: [scalar]. */
static json_t *convert_single_string(struct pctx *c, const struct param_spec *spec, const char *name,
				     const yaml_node_t *n)
{
	static const struct param_spec str_spec = { .type = PT_STRING };
	if (n->type != YAML_SCALAR_NODE || node_is_empty(n)) {
		type_error(c, spec, name, n, NULL, NULL);
		return NULL;
	}
	json_t *s = convert_scalar(c, &str_spec, name, n);
	if (!s)
		return NULL;
	json_t *arr = json_array();
	json_array_append_new(arr, s);
	return arr;
}

/* Index of the first pair before `upto` whose key text equals key, or -1. */
static long find_earlier_key(struct loader *L, const yaml_node_t *map, size_t upto, const char *key)
{
	for (size_t i = 0; i < upto; i++) {
		const yaml_node_t *k = node_at(L, map->data.mapping.pairs.start[i].key);
		if (k->type == YAML_SCALAR_NODE && !strcmp(scalar_raw(k), key))
			return (long)i;
	}
	return -1;
}

/* The key of pair i as a name, or NULL after reporting (non-scalar keys or
 * duplicates).  Messages read "duplicate WHAT 'PREFIX.KEY' WHERE (...)". */
static const char *pair_key(struct loader *L, const yaml_node_t *map, size_t i, const char *what,
			    const char *prefix, const char *where)
{
	const yaml_node_t *k = node_at(L, map->data.mapping.pairs.start[i].key);
	if (k->type != YAML_SCALAR_NODE || node_is_empty(k)) {
		_cleanup_free_ char *got = describe(k, NULL, false);
		diag_node(L, k, "a %s name must be a plain string, got %s", what, got);
		return NULL;
	}
	long first = find_earlier_key(L, map, i, scalar_raw(k));
	if (first >= 0) {
		const yaml_node_t *f = node_at(L, map->data.mapping.pairs.start[first].key);
		diag_node(L, k, "duplicate %s '%s%s%s' %s (first used at %zu:%zu)", what,
			  prefix ? prefix : "", prefix ? "." : "", scalar_raw(k), where,
			  f->start_mark.line + 1, f->start_mark.column + 1);
		return NULL;
	}
	return scalar_raw(k);
}

static json_t *convert_map(struct pctx *c, const struct param_spec *spec, const char *name,
			   const yaml_node_t *n)
{
	static const struct param_spec value_spec = { .type = PT_STRING };
	json_t *obj = json_object();
	bool ok = true;
	for (size_t i = 0; i < pairs_count(n); i++) {
		_cleanup_free_ char *where = xasprintf("for stage '%s'", c->stage);
		const char *key = pair_key(c->L, n, i, "parameter", name, where);
		if (!key) {
			ok = false;
			continue;
		}
		_cleanup_free_ char *kname = xasprintf("%s.%s", name, key);
		json_t *v = convert_scalar(c, &value_spec, kname, node_at(c->L, n->data.mapping.pairs.start[i].value));
		if (!v || json_object_set_new(obj, key, v) < 0)
			ok = false;
	}
	if (!ok) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

struct common {
	const yaml_node_t *id_node;
	char *id;
	bool has_timeout;
	uint64_t timeout;
	enum checkpoint_policy checkpoint;
};

static json_t *check_object(struct pctx *c, const struct param_spec *table, const char *prefix,
			    const yaml_node_t *map, const yaml_node_t *pos, struct common *common);

static json_t *convert_list(struct pctx *c, const struct param_spec *spec, const char *name,
			    const yaml_node_t *n)
{
	json_t *arr = json_array();
	size_t before = c->L->n_diags, i = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		_cleanup_free_ char *iname = xasprintf("%s[%zu]", name, i);
		const yaml_node_t *item = node_at(c->L, *it);
		if (item->type != YAML_MAPPING_NODE) {
			static const struct param_spec obj_spec = { .type = PT_OBJECT };
			type_error(c, &obj_spec, iname, item, NULL, NULL);
			continue;
		}
		json_array_append_new(arr, check_object(c, spec->sub, iname, item, item, NULL));
	}
	if (c->L->n_diags != before) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

static json_t *convert(struct pctx *c, const struct param_spec *spec, const char *name,
		       const yaml_node_t *n)
{
	switch (spec->type) {
	case PT_STRINGS:
	case PT_COMMAND:
		if (n->type == YAML_SEQUENCE_NODE)
			return convert_string_list(c, spec, name, n);
		if (spec->type == PT_COMMAND)
			return convert_scalar(c, spec, name, n);
		return convert_single_string(c, spec, name, n);
	case PT_MAP:
	case PT_OBJECT:
		if (n->type != YAML_MAPPING_NODE)
			break;
		if (spec->type == PT_MAP)
			return convert_map(c, spec, name, n);
		{
			size_t before = c->L->n_diags;
			json_t *obj = check_object(c, spec->sub, name, n, n, NULL);
			if (c->L->n_diags != before) {
				json_decref(obj);
				return NULL;
			}
			return obj;
		}
	case PT_LIST:
		if (n->type != YAML_SEQUENCE_NODE)
			break;
		return convert_list(c, spec, name, n);
	case PT_STRING:
	case PT_INT:
	case PT_BOOL:
	case PT_SIZE:
	case PT_DURATION:
	case PT_ENUM:
	case PT_PATH:
		return convert_scalar(c, spec, name, n);
	}
	type_error(c, spec, name, n, NULL, NULL);
	return NULL;
}

/* ---- stages ---- */

static const struct param_spec *spec_find(const struct param_spec *table, const char *name)
{
	for (const struct param_spec *p = table; p && p->name; p++)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}

static bool is_common(const char *key)
{
	for (const char *const *k = common_keys; *k; k++)
		if (!strcmp(*k, key))
			return true;
	return false;
}

static void unknown_param(struct pctx *c, const struct param_spec *table, const char *full,
			  const char *key, const yaml_node_t *k, bool with_common)
{
	struct suggest s = { 0 };
	struct strbuf all = STRBUF_INIT;
	for (const struct param_spec *p = table; p && p->name; p++) {
		suggest_try(&s, key, p->name);
		strbuf_addf(&all, "%s%s", all.len ? ", " : "", p->name);
	}
	for (const char *const *ck = common_keys; with_common && *ck; ck++) {
		suggest_try(&s, key, *ck);
		strbuf_addf(&all, "%s%s", all.len ? ", " : "", *ck);
	}
	if (suggest_best(&s))
		diag_node(c->L, k, "unknown parameter '%s' for stage '%s'; did you mean '%s'?", full,
			  c->stage, suggest_best(&s));
	else
		diag_node(c->L, k, "unknown parameter '%s' for stage '%s'; expected one of: %s", full,
			  c->stage, all.buf ? all.buf : "(none)");
	strbuf_release(&all);
}

static void set_common(struct pctx *c, struct common *common, const char *key, const yaml_node_t *v)
{
	if (!strcmp(key, "id")) {
		json_t *j = convert(c, &spec_id, key, v);
		if (!j)
			return;
		common->id = xstrdup(json_string_value(j));
		common->id_node = v;
		json_decref(j);
	} else if (!strcmp(key, "timeout")) {
		json_t *j = convert(c, &spec_timeout, key, v);
		if (!j)
			return;
		common->has_timeout = true;
		common->timeout = (uint64_t)json_integer_value(j);
		json_decref(j);
	} else {
		json_t *j = convert(c, &spec_checkpoint, key, v);
		if (!j)
			return;
		const char *s = json_string_value(j);
		common->checkpoint = !strcmp(s, "always") ? CKPT_ALWAYS
				   : !strcmp(s, "never")  ? CKPT_NEVER
							  : CKPT_AUTO;
		json_decref(j);
	}
}

/* Checks a mapping against a schema table; returns the typed object (even
 * when problems were reported: callers compare the diagnostic count).
 * prefix: NULL for a stage's own parameters, else "entries[0]".  pos: where
 * a missing parameter is reported. */
static json_t *check_object(struct pctx *c, const struct param_spec *table, const char *prefix,
			    const yaml_node_t *map, const yaml_node_t *pos, struct common *common)
{
	json_t *obj = json_object();
	for (size_t i = 0; i < pairs_count(map); i++) {
		_cleanup_free_ char *where = xasprintf("for stage '%s'", c->stage);
		const char *key = pair_key(c->L, map, i, "parameter", prefix, where);
		if (!key)
			continue;
		const yaml_node_t *k = node_at(c->L, map->data.mapping.pairs.start[i].key);
		const yaml_node_t *v = node_at(c->L, map->data.mapping.pairs.start[i].value);
		_cleanup_free_ char *full = prefix ? xasprintf("%s.%s", prefix, key) : xstrdup(key);
		if (common && is_common(key)) {
			set_common(c, common, key, v);
			continue;
		}
		const struct param_spec *spec = spec_find(table, key);
		if (!spec) {
			unknown_param(c, table, full, key, k, common != NULL);
			continue;
		}
		json_t *j = convert(c, spec, full, v);
		if (j)
			json_object_set_new(obj, key, j);
	}
	for (const struct param_spec *p = table; p && p->name; p++) {
		if (!(p->flags & PARAM_REQUIRED) || find_earlier_key(c->L, map, pairs_count(map), p->name) >= 0)
			continue;
		_cleanup_free_ char *full = prefix ? xasprintf("%s.%s", prefix, p->name) : xstrdup(p->name);
		diag_node(c->L, pos, "missing required parameter '%s' for stage '%s'", full, c->stage);
	}
	return obj;
}

static void unknown_stage(struct loader *L, const yaml_node_t *k, const char *name)
{
	size_t n = 0;
	const struct stage_type *const *all = registry_all(&n);
	struct suggest s = { 0 };
	for (size_t i = 0; i < n; i++)
		suggest_try(&s, name, all[i]->name);
	_cleanup_free_ char *tail = suggest_text(&s);
	diag_node(L, k, "unknown stage type '%s'; run 'amiforge stages' for the list%s", name, tail);
}

/* The item's single key and value, or false after reporting. */
static bool stage_item_split(struct loader *L, const yaml_node_t *item, const yaml_node_t **k,
			     const yaml_node_t **v)
{
	if (item->type != YAML_MAPPING_NODE) {
		_cleanup_free_ char *got = describe(item, NULL, false);
		diag_node(L, item, "a stage must be a mapping with one key, the stage type "
			  "(like '- mkfs: {type: ext4}'), got %s", got);
		return false;
	}
	size_t n = pairs_count(item);
	if (n != 1) {
		struct strbuf keys = STRBUF_INIT;
		for (size_t i = 0; i < n; i++) {
			const yaml_node_t *key = node_at(L, item->data.mapping.pairs.start[i].key);
			strbuf_addf(&keys, "%s'%s'", i ? ", " : "",
				    key->type == YAML_SCALAR_NODE ? scalar_raw(key) : "?");
		}
		if (!n)
			diag_node(L, item, "a stage must have exactly one key, the stage type; found none");
		else
			diag_node(L, item, "a stage must have exactly one key, the stage type; found %zu: %s "
				  "(indent the parameters under the stage type)", n, keys.buf);
		strbuf_release(&keys);
		return false;
	}
	*k = node_at(L, item->data.mapping.pairs.start[0].key);
	*v = node_at(L, item->data.mapping.pairs.start[0].value);
	if ((*k)->type != YAML_SCALAR_NODE || node_is_empty(*k)) {
		_cleanup_free_ char *got = describe(*k, NULL, false);
		diag_node(L, *k, "a stage type must be a name, got %s", got);
		return false;
	}
	return true;
}

static void check_stage(struct loader *L, const yaml_node_t *item, struct stage_inst *st,
			struct common *common)
{
	const yaml_node_t *k = NULL, *v = NULL;
	st->line = (unsigned)item->start_mark.line + 1;
	st->column = (unsigned)item->start_mark.column + 1;
	st->file_hashes = json_object();
	if (!stage_item_split(L, item, &k, &v))
		return;
	st->type = registry_find(scalar_raw(k));
	if (!st->type) {
		unknown_stage(L, k, scalar_raw(k));
		return;
	}
	struct pctx c = { L, st->type->name, st->file_hashes };
	size_t before = L->n_diags;
	if (node_is_null(v)) {
		st->params = check_object(&c, st->type->params, NULL, &(yaml_node_t){
			.type = YAML_MAPPING_NODE, .start_mark = item->start_mark }, item, common);
	} else if (v->type == YAML_MAPPING_NODE) {
		st->params = check_object(&c, st->type->params, NULL, v, item, common);
	} else {
		_cleanup_free_ char *got = describe(v, NULL, false);
		diag_node(L, v, "parameters of stage '%s' must be a mapping, got %s", st->type->name, got);
		return;
	}
	st->timeout = common->has_timeout ? common->timeout : st->type->default_timeout;
	st->checkpoint = common->checkpoint;
	if (L->n_diags != before)
		return;
	_cleanup_error_ struct af_error *err = NULL;
	if (st->type->check && st->type->check(st->params, &err) < 0)
		diag_node(L, item, "%s", err ? af_error_msg(err) : "invalid parameters");
	else if (st->type->expand && st->type->expand(st->params, &L->vars, &err) < 0)
		diag_node(L, item, "%s", err ? af_error_msg(err) : "invalid parameters");
}

static bool id_valid(const char *id)
{
	if (!isalnum((unsigned char)*id))
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
			return false;
	return true;
}

/* Explicit ids are checked; defaults are "type", "type-2", ...  */
static void assign_id(struct loader *L, struct recipe *r, size_t i, struct common *common)
{
	struct stage_inst *st = &r->stages[i];
	struct id_site *site = &L->ids[i];
	if (common->id) {
		st->id = steal_pointer(&common->id);
		site->line = (unsigned)common->id_node->start_mark.line + 1;
		site->col = (unsigned)common->id_node->start_mark.column + 1;
		site->explicit_id = true;
		if (!id_valid(st->id)) {
			diag_node(L, common->id_node, "invalid stage id '%s'; use letters, digits, '_', '.' "
				  "and '-', starting with a letter or digit", st->id);
			return;
		}
	} else {
		if (!st->type)
			return;
		int nth = 0;
		for (size_t j = 0; j <= i; j++)
			nth += r->stages[j].type == st->type;
		st->id = nth == 1 ? xstrdup(st->type->name) : xasprintf("%s-%d", st->type->name, nth);
		site->line = st->line;
		site->col = st->column;
	}
	for (size_t j = 0; j < i; j++) {
		if (!r->stages[j].id || strcmp(r->stages[j].id, st->id))
			continue;
		char *msg = site->explicit_id
			? xasprintf("duplicate stage id '%s' (first used at %u:%u)", st->id, L->ids[j].line, L->ids[j].col)
			: xasprintf("the default stage id '%s' is already used at %u:%u; give this stage an id",
				    st->id, L->ids[j].line, L->ids[j].col);
		diag_add(L, site->line, site->col, msg);
		return;
	}
}

static void check_stages(struct loader *L, struct recipe *r, const yaml_node_t *n)
{
	if (n->type != YAML_SEQUENCE_NODE) {
		_cleanup_free_ char *got = describe(n, NULL, false);
		diag_node(L, n, "'stages' must be a list of stages, got %s", got);
		return;
	}
	size_t count = items_count(n);
	if (!count) {
		diag_node(L, n, "'stages' is empty; a recipe needs at least one stage");
		return;
	}
	r->stages = xcalloc(count, sizeof(*r->stages));
	L->ids = xcalloc(count, sizeof(*L->ids));
	struct common *commons = xcalloc(count, sizeof(*commons));
	r->n_stages = count;
	for (size_t i = 0; i < count; i++) {
		r->stages[i].index = (int)i + 1;
		check_stage(L, node_at(L, n->data.sequence.items.start[i]), &r->stages[i], &commons[i]);
	}
	/* After all types are known, so "type-2" counts every stage of a type. */
	for (size_t i = 0; i < count; i++) {
		assign_id(L, r, i, &commons[i]);
		free(commons[i].id);
	}
	free(commons);
}

/* ---- top level ---- */

enum top_key { TOP_NAME, TOP_DESCRIPTION, TOP_ARCH, TOP_ENV, TOP_VARS, TOP_STAGES, TOP_COUNT };
static const char *const top_keys[TOP_COUNT] = { "name", "description", "arch", "env", "vars", "stages" };

/* A name in vars or env: valid, and not one a credential may hide behind.
 * False after reporting. */
static bool declared_name_ok(struct loader *L, const yaml_node_t *k, const char *name, const char *where)
{
	if (!vars_name_valid(name)) {
		diag_node(L, k, "invalid variable name '%s' in %s; use letters, digits and '_'", name, where);
		return false;
	}
	const char *word = vars_name_credential(name);
	if (word) {
		diag_node(L, k, "variable '%s' in %s looks like a credential (its name contains %s); "
			  "credentials are never expanded into a recipe, so they cannot reach the image, "
			  "the logs or the journal: remove it", name, where, word);
		return false;
	}
	return true;
}

/* env: the names whose values may come from the environment. */
static void load_env(struct loader *L, const yaml_node_t *n)
{
	if (n->type != YAML_SEQUENCE_NODE) {
		if (node_is_null(n))
			return;
		_cleanup_free_ char *got = describe(n, NULL, false);
		diag_node(L, n, "'env' must be a list of variable names, got %s", got);
		return;
	}
	size_t i = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		const yaml_node_t *item = node_at(L, *it);
		if (item->type != YAML_SCALAR_NODE || node_is_empty(item)) {
			_cleanup_free_ char *got = describe(item, NULL, false);
			diag_node(L, item, "env[%zu] must be a variable name, got %s", i, got);
			continue;
		}
		const char *name = scalar_raw(item);
		if (!declared_name_ok(L, item, name, "env"))
			continue;
		if (json_object_get(L->vars.declared, name)) {
			diag_node(L, item, "variable '%s' is listed twice in env; remove one", name);
			continue;
		}
		vars_declare(&L->vars, name);
	}
}

static void load_vars(struct loader *L, const yaml_node_t *n)
{
	if (n->type != YAML_MAPPING_NODE) {
		if (node_is_null(n))
			return;
		_cleanup_free_ char *got = describe(n, NULL, false);
		diag_node(L, n, "'vars' must be a mapping of NAME: value, got %s", got);
		return;
	}
	/* Every vars name is declared first: the environment may override any
	 * of them, even one a default before it uses. */
	for (size_t i = 0; i < pairs_count(n); i++) {
		const yaml_node_t *k = node_at(L, n->data.mapping.pairs.start[i].key);
		if (k->type == YAML_SCALAR_NODE && vars_name_valid(scalar_raw(k)) &&
		    !vars_name_credential(scalar_raw(k)))
			vars_declare(&L->vars, scalar_raw(k));
	}
	/* In order, so a default may use the ones before it. */
	for (size_t i = 0; i < pairs_count(n); i++) {
		const char *name = pair_key(L, n, i, "variable", NULL, "in vars");
		if (!name)
			continue;
		const yaml_node_t *k = node_at(L, n->data.mapping.pairs.start[i].key);
		const yaml_node_t *v = node_at(L, n->data.mapping.pairs.start[i].value);
		if (!declared_name_ok(L, k, name, "vars"))
			continue;
		if (v->type != YAML_SCALAR_NODE) {
			_cleanup_free_ char *got = describe(v, NULL, false);
			diag_node(L, v, "value of variable '%s' must be a string, got %s", name, got);
			continue;
		}
		if (vars_overridden(&L->vars, name))
			continue;
		_cleanup_free_ char *val = node_is_null(v) ? xstrdup("") : scalar_expand(L, v);
		if (val)
			vars_add_default(&L->vars, name, val);
	}
}

static char *top_string(struct loader *L, const struct param_spec *spec, const yaml_node_t *n)
{
	struct pctx c = { L, NULL, NULL };
	json_t *j = convert(&c, spec, spec->name, n);
	if (!j)
		return NULL;
	char *s = xstrdup(json_string_value(j));
	json_decref(j);
	return s;
}

static void check_root(struct loader *L, struct recipe *r, const yaml_node_t *root)
{
	if (root->type != YAML_MAPPING_NODE) {
		_cleanup_free_ char *got = describe(root, NULL, false);
		diag_node(L, root, "a recipe must be a mapping with name and stages, got %s", got);
		return;
	}
	const yaml_node_t *slot[TOP_COUNT] = { 0 };
	for (size_t i = 0; i < pairs_count(root); i++) {
		const char *key = pair_key(L, root, i, "key", NULL, "at top level");
		if (!key)
			continue;
		size_t t = 0;
		while (t < TOP_COUNT && strcmp(top_keys[t], key))
			t++;
		if (t == TOP_COUNT) {
			diag_node(L, node_at(L, root->data.mapping.pairs.start[i].key),
				  "unknown key '%s' at top level; expected one of: name, description, arch, "
				  "env, vars, stages", key);
			continue;
		}
		slot[t] = node_at(L, root->data.mapping.pairs.start[i].value);
	}
	/* env before vars: a default may use a name the environment feeds. */
	if (slot[TOP_ENV])
		load_env(L, slot[TOP_ENV]);
	if (slot[TOP_VARS])
		load_vars(L, slot[TOP_VARS]);
	if (!slot[TOP_NAME])
		diag_node(L, root, "missing required key 'name' at top level");
	else if ((r->name = top_string(L, &spec_name, slot[TOP_NAME])) && !*r->name)
		diag_node(L, slot[TOP_NAME], "'name' must not be empty");
	if (slot[TOP_DESCRIPTION] && !node_is_null(slot[TOP_DESCRIPTION]))
		r->description = top_string(L, &spec_description, slot[TOP_DESCRIPTION]);
	r->arch = slot[TOP_ARCH] ? top_string(L, &spec_arch, slot[TOP_ARCH]) : xstrdup("x86_64");
	if (!slot[TOP_STAGES])
		diag_node(L, root, "missing required key 'stages' at top level; a recipe needs at least one stage");
	else
		check_stages(L, r, slot[TOP_STAGES]);
}

/* libyaml reader errors (bad encoding) carry only a byte offset. */
static yaml_mark_t mark_from_offset(const char *buf, size_t len, size_t off)
{
	yaml_mark_t m = { .index = off };
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			m.line++;
			m.column = 0;
		} else {
			m.column++;
		}
	}
	return m;
}

static void syntax_error(struct loader *L, const yaml_parser_t *p, const char *buf, size_t len)
{
	if (p->error == YAML_MEMORY_ERROR)
		BUG("out of memory parsing %s", L->path);
	yaml_mark_t m = p->error == YAML_READER_ERROR ? mark_from_offset(buf, len, p->problem_offset)
						      : p->problem_mark;
	diag_mark(L, m, xasprintf("YAML syntax error: %s%s%s", p->problem ? p->problem : "invalid YAML",
				  p->context ? " " : "", p->context ? p->context : ""));
}

/* The file's text, at most RECIPE_MAX_BYTES; NULL after reporting.  Read
 * with a bound (not by its size) so a FIFO or /dev/zero named as a recipe
 * ends too. */
static char *read_recipe(struct loader *L, size_t *len)
{
	_cleanup_fd_ int fd = open(L->path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		diag_add(L, 0, 0, xasprintf("cannot read: %s", strerror(errno)));
		return NULL;
	}
	if (S_ISDIR(st.st_mode)) {
		diag_add(L, 0, 0, xasprintf("cannot read: %s", strerror(EISDIR)));
		return NULL;
	}
	if (S_ISREG(st.st_mode) && st.st_size > RECIPE_MAX_BYTES) {
		diag_add(L, 0, 0, xasprintf("the recipe is %lld bytes, more than the 1 MiB a recipe may "
					    "hold; keep large content in files next to it (a run script, "
					    "files sources)", (long long)st.st_size));
		return NULL;
	}
	_cleanup_free_ char *buf = xmalloc(RECIPE_MAX_BYTES + 2);
	ssize_t n = read_all(fd, buf, RECIPE_MAX_BYTES + 1);
	if (n < 0) {
		diag_add(L, 0, 0, xasprintf("cannot read: %s", strerror(errno)));
		return NULL;
	}
	if (n > RECIPE_MAX_BYTES) {
		diag_add(L, 0, 0, xstrdup("the recipe is more than the 1 MiB a recipe may hold; keep "
					  "large content in files next to it (a run script, files sources)"));
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return steal_pointer(&buf);
}

/* libyaml's loader is quadratic in the nesting depth (100k levels took a
 * minute), so the depth is checked on the event stream first, which stops
 * at the first level too deep, before any node is built.  0, or -1 after
 * reporting.  Syntax errors are left to the loader, which reports them. */
static int check_depth(struct loader *L, const char *buf, size_t len)
{
	_cleanup_yaml_parser_ yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		BUG("out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	int depth = 0;
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev))
			return 0;
		yaml_event_type_t type = ev.type;
		yaml_mark_t mark = ev.start_mark;
		yaml_event_delete(&ev);
		if (type == YAML_STREAM_END_EVENT)
			return 0;
		if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
			if (++depth > RECIPE_MAX_DEPTH) {
				diag_mark(L, mark, xasprintf("the recipe nests deeper than %d levels of "
							     "mappings and lists; flatten it",
							     RECIPE_MAX_DEPTH));
				return -1;
			}
		} else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
			depth--;
		}
	}
}

/* Parses the file into doc.  0, or -1 after reporting. */
static int parse_file(struct loader *L, yaml_document_t *doc)
{
	size_t len = 0;
	_cleanup_free_ char *buf = read_recipe(L, &len);
	if (!buf || check_depth(L, buf, len) < 0)
		return -1;
	_cleanup_yaml_parser_ yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		BUG("out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, doc)) {
		syntax_error(L, &parser, buf, len);
		return -1;
	}
	const yaml_node_t *root = yaml_document_get_root_node(doc);
	if (!root) {
		yaml_document_delete(doc);
		diag_add(L, 1, 1, xstrdup("the recipe is empty; it needs at least name and stages"));
		return -1;
	}
	yaml_document_t second;
	if (!yaml_parser_load(&parser, &second)) {
		syntax_error(L, &parser, buf, len);
		yaml_document_delete(doc);
		return -1;
	}
	const yaml_node_t *extra = yaml_document_get_root_node(&second);
	if (extra)
		diag_node(L, extra, "a recipe is a single YAML document; remove the one after '---'");
	yaml_document_delete(&second);
	if (extra) {
		yaml_document_delete(doc);
		return -1;
	}
	return 0;
}

static char *recipe_stem(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = strlen(base);
	if (str_has_suffix(base, ".yaml"))
		n -= 5;
	else if (str_has_suffix(base, ".yml"))
		n -= 4;
	return xstrndup(base, n);
}

static char *recipe_dir(const char *path)
{
	_cleanup_free_ char *copy = xstrdup(path);
	char *real = realpath(dirname(copy), NULL);
	if (real)
		return real;
	/* The file is unreadable anyway; keep an absolute guess for messages. */
	_cleanup_free_ char *cwd = getcwd(NULL, 0);
	_cleanup_free_ char *copy2 = xstrdup(path);
	return path[0] == '/' || !cwd ? xstrdup(dirname(copy2)) : path_join(cwd, dirname(copy2));
}

/* ---- the stage order: facts each stage needs from earlier ones ---- */

struct facts_report {
	struct loader *L;
	const struct recipe *r;
};

static void report_fact(void *data, size_t i, const char *msg)
{
	struct facts_report *f = data;
	const struct stage_inst *s = &f->r->stages[i];
	diag_add(f->L, s->line, s->column, xstrdup(msg));
}

/* Only for a recipe that parsed cleanly: its stage list is then complete. */
static void check_facts(struct loader *L, const struct recipe *r)
{
	_cleanup_free_ struct fact_stage *fs = xcalloc(r->n_stages ? r->n_stages : 1, sizeof(*fs));
	for (size_t i = 0; i < r->n_stages; i++)
		fs[i] = (struct fact_stage){ r->stages[i].type, r->stages[i].params, r->stages[i].id };
	struct facts_report f = { L, r };
	facts_check(fs, r->n_stages, report_fact, &f);
}

int recipe_load(const char *path, char *const *sets, size_t n_sets, struct recipe **out,
		struct diag_list *diags)
{
	struct loader L = { .path = path };
	vars_init(&L.vars);
	for (size_t i = 0; i < n_sets; i++) {
		_cleanup_error_ struct af_error *err = NULL;
		if (vars_add_set(&L.vars, sets[i], &err) < 0)
			diag_add(&L, 0, 0, xstrdup(af_error_msg(err)));
	}
	struct recipe *r = xcalloc(1, sizeof(*r));
	r->path = xstrdup(path);
	r->stem = recipe_stem(path);
	r->dir = recipe_dir(path);
	L.dir = r->dir;
	yaml_document_t doc;
	if (parse_file(&L, &doc) == 0) {
		L.doc = &doc;
		check_root(&L, r, yaml_document_get_root_node(&doc));
		yaml_document_delete(&doc);
	}
	free(L.ids);
	vars_release(&L.vars);
	if (!L.n_diags)
		check_facts(&L, r);
	if (L.n_diags) {
		diags_flush(&L, diags);
		recipe_free(r);
		return -1;
	}
	free(L.diags);
	*out = r;
	return 0;
}

void recipe_free(struct recipe *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_stages; i++) {
		free(r->stages[i].id);
		json_decref(r->stages[i].params);
		json_decref(r->stages[i].file_hashes);
	}
	free(r->stages);
	free(r->path);
	free(r->dir);
	free(r->stem);
	free(r->name);
	free(r->description);
	free(r->arch);
	free(r);
}

int recipe_find_stage(const struct recipe *r, const char *id)
{
	for (size_t i = 0; i < r->n_stages; i++)
		if (r->stages[i].id && !strcmp(r->stages[i].id, id))
			return (int)i;
	return -1;
}
