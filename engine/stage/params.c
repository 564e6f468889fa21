/* SPDX-License-Identifier: Apache-2.0 */
/* Parameter types, unit parsing and accessors (see params.h), and the
 * typed conversion of recipe values against a schema (params_conv.h). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/params.h"
#include "amiforge/params_conv.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

const char *param_type_name(enum param_type t)
{
	switch (t) {
	case PT_STRING: return "string";
	case PT_INT: return "int";
	case PT_BOOL: return "bool";
	case PT_SIZE: return "size";
	case PT_DURATION: return "duration";
	case PT_ENUM: return "enum";
	case PT_STRINGS: return "strings";
	case PT_MAP: return "map";
	case PT_LIST: return "list";
	case PT_OBJECT: return "object";
	case PT_PATH: return "path";
	case PT_COMMAND: return "command";
	}
	return "unknown";
}

struct unit {
	const char *suffix;
	uint64_t factor;
};

/* Binary multiples throughout: disk sizes in recipes mean MiB and GiB even
 * when written "MB" (as in mkosi and vmdb2). */
static const struct unit size_units[] = {
	{ "", 1 },
	{ "B", 1 },
	{ "K", 1ull << 10 }, { "KB", 1ull << 10 }, { "KiB", 1ull << 10 },
	{ "M", 1ull << 20 }, { "MB", 1ull << 20 }, { "MiB", 1ull << 20 },
	{ "G", 1ull << 30 }, { "GB", 1ull << 30 }, { "GiB", 1ull << 30 },
	{ "T", 1ull << 40 }, { "TB", 1ull << 40 }, { "TiB", 1ull << 40 },
};

static const struct unit duration_units[] = {
	{ "", 1 }, { "s", 1 }, { "m", 60 }, { "h", 3600 }, { "d", 86400 },
};

/* Digits, optional blanks, a unit from the table (case-insensitive when
 * fold).  -1 on anything else or on overflow. */
static int parse_units(const char *text, const struct unit *units, size_t n_units, bool fold,
		       uint64_t *out)
{
	if (!text || !isdigit((unsigned char)*text))
		return -1;
	uint64_t v = 0;
	const char *p = text;
	for (; isdigit((unsigned char)*p); p++)
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return -1;
	while (*p == ' ')
		p++;
	for (size_t i = 0; i < n_units; i++) {
		bool same = fold ? strcasecmp(p, units[i].suffix) == 0 : strcmp(p, units[i].suffix) == 0;
		if (!same)
			continue;
		if (__builtin_mul_overflow(v, units[i].factor, &v))
			return -1;
		*out = v;
		return 0;
	}
	return -1;
}

int param_parse_size(const char *text, uint64_t *out)
{
	return parse_units(text, size_units, ARRAY_SIZE(size_units), true, out);
}

int param_parse_duration(const char *text, uint64_t *out)
{
	/* Case matters: "10M" could be read as months or mebibytes. */
	return parse_units(text, duration_units, ARRAY_SIZE(duration_units), false, out);
}

const json_t *params_get(const json_t *params, const char *name)
{
	return params ? json_object_get(params, name) : NULL;
}

const char *params_str(const json_t *params, const char *name, const char *def)
{
	const json_t *v = params_get(params, name);
	return json_is_string(v) ? json_string_value(v) : def;
}

int64_t params_int(const json_t *params, const char *name, int64_t def)
{
	const json_t *v = params_get(params, name);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

bool params_bool(const json_t *params, const char *name, bool def)
{
	const json_t *v = params_get(params, name);
	return json_is_boolean(v) ? json_is_true(v) : def;
}

/* ---- typed conversion of recipe values (see params_conv.h) ---- */

/* A formatted problem at n, through the loader's report. */
__attribute__((format(printf, 3, 4)))
static void param_conv_report(struct param_conv *c, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	c->report(c->data, n, msg);
	c->problems++;
	free(msg);
}


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

void param_suggest_try(struct param_suggest *s, const char *word, const char *candidate)
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

/* The one closest candidate (borrowed), or NULL. */
static const char *param_suggest_best(const struct param_suggest *s)
{
	return s->tie ? NULL : s->best;
}

char *param_suggest_text(const struct param_suggest *s)
{
	const char *best = param_suggest_best(s);
	return best ? xasprintf("; did you mean '%s'?", best) : xstrdup("");
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

char *param_describe(const yaml_node_t *n, const char *text, bool quoted_matters)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return xstrdup("a list");
	if (n->type == YAML_MAPPING_NODE)
		return xstrdup("a mapping");
	if (param_node_empty(n))
		return xstrdup("nothing");
	_cleanup_free_ char *q = quote_value(text ? text : param_node_text(n));
	if (quoted_matters && !param_node_plain(n))
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
	case PT_PATH:
		if (spec->flags & PARAM_HOST_FILE)
			return xstrdup("an absolute path or one relative to the recipe");
		return xstrdup("a path relative to the recipe");
	case PT_COMMAND: return xstrdup("a command string or a non-empty list of strings");
	}
	return xstrdup("a value");
}

static char *subject(const struct param_conv *c, const char *name)
{
	if (c->stage)
		return xasprintf("parameter '%s' of stage '%s'", name, c->stage);
	return xasprintf("'%s'", name);
}

/* "SUBJECT must be EXPECTED, got GOT[TAIL]" at n. */
static void type_error(struct param_conv *c, const struct param_spec *spec, const char *name,
		       const yaml_node_t *n, const char *text, const char *tail)
{
	_cleanup_free_ char *subj = subject(c, name);
	_cleanup_free_ char *exp = expected_text(spec);
	bool quoted_matters = spec->type == PT_INT || spec->type == PT_BOOL;
	_cleanup_free_ char *got = param_describe(n, text, quoted_matters);
	param_conv_report(c, n, "%s must be %s, got %s%s", subj, exp, got, tail ? tail : "");
}

static void range_error(struct param_conv *c, const char *name, const yaml_node_t *n, const char *text)
{
	_cleanup_free_ char *subj = subject(c, name);
	_cleanup_free_ char *q = quote_value(text);
	param_conv_report(c, n, "%s is out of range: %s is too large", subj, q);
}


/* ---- conversions ---- */

/* The loader's expansion; a NULL (reported there) counts as a problem, so
 * that a list or object around the value is dropped as a whole. */
static char *conv_expand(struct param_conv *c, const yaml_node_t *n)
{
	char *text = c->expand(c->data, n);
	if (!text)
		c->problems++;
	return text;
}

/* A non-null scalar, expanded; NULL after reporting. */
static char *expect_scalar(struct param_conv *c, const struct param_spec *spec, const char *name,
			   const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || param_node_empty(n)) {
		type_error(c, spec, name, n, NULL, NULL);
		return NULL;
	}
	return conv_expand(c, n);
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

static json_t *convert_units(struct param_conv *c, const struct param_spec *spec, const char *name,
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

static json_t *convert_int(struct param_conv *c, const struct param_spec *spec, const char *name,
			   const yaml_node_t *n, const char *text)
{
	const char *digits = text + (*text == '-');
	if (!param_node_plain(n) || !*digits || strspn(digits, "0123456789") != strlen(digits)) {
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

static json_t *convert_bool(struct param_conv *c, const struct param_spec *spec, const char *name,
			    const yaml_node_t *n, const char *text)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };
	if (param_node_plain(n)) {
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

static json_t *convert_enum(struct param_conv *c, const struct param_spec *spec, const char *name,
			    const yaml_node_t *n, const char *text)
{
	struct param_suggest s = { 0 };
	for (const char *const *ch = spec->choices; ch && *ch; ch++) {
		if (!strcmp(text, *ch))
			return json_string(text);
		param_suggest_try(&s, text, *ch);
	}
	_cleanup_free_ char *tail = param_suggest_text(&s);
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

/* "'TEXT'", with the absolute path it stands for when TEXT is relative. */
static char *path_shown(const char *text, const char *abs)
{
	if (text[0] == '/')
		return xasprintf("'%s'", text);
	return xasprintf("'%s' (%s)", text, abs);
}

/* The recipe's own files: they travel with it, the stage key hashes them,
 * and a recipe must not read the host's files behind the user's back.
 * False after reporting. */
static bool path_in_recipe(struct param_conv *c, const char *subj, const yaml_node_t *n, const char *text,
			   const char *p, bool resolved)
{
	if (path_inside(c->recipe_dir, p))
		return true;
	param_conv_report(c, n, "%s must name a file inside the recipe's directory, got '%s'%s; "
		  "put the file beside the recipe (or in a directory under it)", subj, text,
		  resolved ? " (a symbolic link leading outside)" : "");
	return false;
}

/* A host file (PARAM_HOST_FILE) is one regular file, so its fingerprint is
 * the SHA-256 of its bytes, as sha256sum prints it; a directory would be
 * hashed with its names, and a device or FIFO is no key or certificate. */
static bool host_file_ok(struct param_conv *c, const char *subj, const yaml_node_t *n, const char *shown,
			 const char *real)
{
	struct stat st;
	if (stat(real, &st) < 0) {
		param_conv_report(c, n, "%s: cannot use %s: %s", subj, shown, strerror(errno));
		return false;
	}
	if (!S_ISREG(st.st_mode)) {
		param_conv_report(c, n, "%s: %s is not a regular file; name the file itself", subj, shown);
		return false;
	}
	return true;
}

static json_t *convert_path(struct param_conv *c, const struct param_spec *spec, const char *name,
			    const yaml_node_t *n, const char *text)
{
	if (!*text) {
		type_error(c, spec, name, n, text, NULL);
		return NULL;
	}
	bool host = (spec->flags & PARAM_HOST_FILE) != 0;
	_cleanup_free_ char *subj = subject(c, name);
	_cleanup_free_ char *joined = text[0] == '/' ? xstrdup(text) : path_join(c->recipe_dir, text);
	_cleanup_free_ char *norm = normalize_path(joined);
	if (!host && !path_in_recipe(c, subj, n, text, norm, false))
		return NULL;
	_cleanup_free_ char *shown = path_shown(text, norm);
	_cleanup_free_ char *real = realpath(norm, NULL);
	if (!real) {
		if (host)
			param_conv_report(c, n, "%s: cannot use %s: %s", subj, shown, strerror(errno));
		else
			param_conv_report(c, n, "%s: cannot use '%s' (relative to the recipe's directory): %s",
				  subj, text, strerror(errno));
		return NULL;
	}
	if (!host && !path_in_recipe(c, subj, n, text, real, true))
		return NULL;
	if (host && !host_file_ok(c, subj, n, shown, real))
		return NULL;
	char hex[65];
	_cleanup_error_ struct af_error *err = NULL;
	if (sha256_path_hex(real, hex, &err) < 0) {
		param_conv_report(c, n, "%s: %s", subj, af_error_msg(err));
		return NULL;
	}
	if (c->hashes)
		json_object_set_new(c->hashes, name, json_string(hex));
	return json_string(real);
}

static json_t *convert(struct param_conv *c, const struct param_spec *spec, const char *name,
		       const yaml_node_t *n);

/* A scalar-typed parameter. */
static json_t *convert_scalar(struct param_conv *c, const struct param_spec *spec, const char *name,
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
		param_conv_report(c, n, "value is not valid UTF-8");
	return j;
}

/* A list of strings: each item checked as a string at its own position. */
static json_t *convert_string_list(struct param_conv *c, const struct param_spec *spec, const char *name,
				   const yaml_node_t *n)
{
	static const struct param_spec item_spec = { .type = PT_STRING };
	if (spec->type == PT_COMMAND && !param_node_items(n)) {
		type_error(c, spec, name, n, NULL, NULL);
		return NULL;
	}
	json_t *arr = json_array();
	bool ok = true;
	size_t i = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		_cleanup_free_ char *iname = xasprintf("%s[%zu]", name, i);
		json_t *v = convert_scalar(c, &item_spec, iname, param_node_at(c->doc, *it));
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
static json_t *convert_single_string(struct param_conv *c, const struct param_spec *spec, const char *name,
				     const yaml_node_t *n)
{
	static const struct param_spec str_spec = { .type = PT_STRING };
	if (n->type != YAML_SCALAR_NODE || param_node_empty(n)) {
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
static long find_earlier_key(struct param_conv *c, const yaml_node_t *map, size_t upto, const char *key)
{
	for (size_t i = 0; i < upto; i++) {
		const yaml_node_t *k = param_node_at(c->doc, map->data.mapping.pairs.start[i].key);
		if (k->type == YAML_SCALAR_NODE && !strcmp(param_node_text(k), key))
			return (long)i;
	}
	return -1;
}

const char *param_pair_key(struct param_conv *c, const yaml_node_t *map, size_t i, const char *what,
			    const char *prefix, const char *where)
{
	const yaml_node_t *k = param_node_at(c->doc, map->data.mapping.pairs.start[i].key);
	if (k->type != YAML_SCALAR_NODE || param_node_empty(k)) {
		_cleanup_free_ char *got = param_describe(k, NULL, false);
		param_conv_report(c, k, "a %s name must be a plain string, got %s", what, got);
		return NULL;
	}
	long first = find_earlier_key(c, map, i, param_node_text(k));
	if (first >= 0) {
		const yaml_node_t *f = param_node_at(c->doc, map->data.mapping.pairs.start[first].key);
		param_conv_report(c, k, "duplicate %s '%s%s%s' %s (first used at %zu:%zu)", what,
			  prefix ? prefix : "", prefix ? "." : "", param_node_text(k), where,
			  f->start_mark.line + 1, f->start_mark.column + 1);
		return NULL;
	}
	return param_node_text(k);
}

static json_t *convert_map(struct param_conv *c, const struct param_spec *spec, const char *name,
			   const yaml_node_t *n)
{
	static const struct param_spec value_spec = { .type = PT_STRING };
	json_t *obj = json_object();
	bool ok = true;
	for (size_t i = 0; i < param_node_pairs(n); i++) {
		_cleanup_free_ char *where = xasprintf("for stage '%s'", c->stage);
		const char *key = param_pair_key(c, n, i, "parameter", name, where);
		if (!key) {
			ok = false;
			continue;
		}
		_cleanup_free_ char *kname = xasprintf("%s.%s", name, key);
		json_t *v = convert_scalar(c, &value_spec, kname, param_node_at(c->doc, n->data.mapping.pairs.start[i].value));
		if (!v || json_object_set_new(obj, key, v) < 0)
			ok = false;
	}
	if (!ok) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}


static json_t *check_object(struct param_conv *c, const struct param_spec *table, const char *prefix,
			    const yaml_node_t *map, const yaml_node_t *pos, bool with_extra);

static json_t *convert_list(struct param_conv *c, const struct param_spec *spec, const char *name,
			    const yaml_node_t *n)
{
	json_t *arr = json_array();
	size_t before = c->problems, i = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		_cleanup_free_ char *iname = xasprintf("%s[%zu]", name, i);
		const yaml_node_t *item = param_node_at(c->doc, *it);
		if (item->type != YAML_MAPPING_NODE) {
			static const struct param_spec obj_spec = { .type = PT_OBJECT };
			type_error(c, &obj_spec, iname, item, NULL, NULL);
			continue;
		}
		json_array_append_new(arr, check_object(c, spec->sub, iname, item, item, false));
	}
	if (c->problems != before) {
		json_decref(arr);
		return NULL;
	}
	return arr;
}

static json_t *convert(struct param_conv *c, const struct param_spec *spec, const char *name,
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
			size_t before = c->problems;
			json_t *obj = check_object(c, spec->sub, name, n, n, false);
			if (c->problems != before) {
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


static const struct param_spec *spec_find(const struct param_spec *table, const char *name)
{
	for (const struct param_spec *p = table; p && p->name; p++)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}


static void unknown_param(struct param_conv *c, const struct param_spec *table, const char *full,
			  const char *key, const yaml_node_t *k, bool with_extra)
{
	struct param_suggest s = { 0 };
	struct strbuf all = STRBUF_INIT;
	for (const struct param_spec *p = table; p && p->name; p++) {
		param_suggest_try(&s, key, p->name);
		strbuf_addf(&all, "%s%s", all.len ? ", " : "", p->name);
	}
	for (const char *const *ck = c->extra_keys; with_extra && ck && *ck; ck++) {
		param_suggest_try(&s, key, *ck);
		strbuf_addf(&all, "%s%s", all.len ? ", " : "", *ck);
	}
	if (param_suggest_best(&s))
		param_conv_report(c, k, "unknown parameter '%s' for stage '%s'; did you mean '%s'?", full,
			  c->stage, param_suggest_best(&s));
	else
		param_conv_report(c, k, "unknown parameter '%s' for stage '%s'; expected one of: %s", full,
			  c->stage, all.buf ? all.buf : "(none)");
	strbuf_release(&all);
}


static bool is_extra(const struct param_conv *c, const char *key)
{
	for (const char *const *k = c->extra_keys; k && *k; k++)
		if (!strcmp(*k, key))
			return true;
	return false;
}


/* Checks a mapping against a schema table; returns the typed object (even
 * when problems were reported: callers compare the diagnostic count).
 * prefix: NULL for a stage's own parameters, else "entries[0]".  pos: where
 * a missing parameter is reported. */
static json_t *check_object(struct param_conv *c, const struct param_spec *table, const char *prefix,
			    const yaml_node_t *map, const yaml_node_t *pos, bool with_extra)
{
	json_t *obj = json_object();
	for (size_t i = 0; i < param_node_pairs(map); i++) {
		_cleanup_free_ char *where = xasprintf("for stage '%s'", c->stage);
		const char *key = param_pair_key(c, map, i, "parameter", prefix, where);
		if (!key)
			continue;
		const yaml_node_t *k = param_node_at(c->doc, map->data.mapping.pairs.start[i].key);
		const yaml_node_t *v = param_node_at(c->doc, map->data.mapping.pairs.start[i].value);
		_cleanup_free_ char *full = prefix ? xasprintf("%s.%s", prefix, key) : xstrdup(key);
		if (with_extra && is_extra(c, key)) {
			c->take_extra(c, c->extra_data, key, v);
			continue;
		}
		const struct param_spec *spec = spec_find(table, key);
		if (!spec) {
			unknown_param(c, table, full, key, k, with_extra);
			continue;
		}
		json_t *j = convert(c, spec, full, v);
		if (j)
			json_object_set_new(obj, key, j);
	}
	for (const struct param_spec *p = table; p && p->name; p++) {
		if (!(p->flags & PARAM_REQUIRED) || find_earlier_key(c, map, param_node_pairs(map), p->name) >= 0)
			continue;
		_cleanup_free_ char *full = prefix ? xasprintf("%s.%s", prefix, p->name) : xstrdup(p->name);
		param_conv_report(c, pos, "missing required parameter '%s' for stage '%s'", full, c->stage);
	}
	return obj;
}


json_t *param_conv_value(struct param_conv *c, const struct param_spec *spec, const char *name,
			 const yaml_node_t *n)
{
	return convert(c, spec, name, n);
}

json_t *param_conv_object(struct param_conv *c, const struct param_spec *table,
			  const yaml_node_t *map, const yaml_node_t *pos)
{
	return check_object(c, table, NULL, map, pos, c->extra_keys != NULL);
}
