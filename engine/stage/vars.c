/* SPDX-License-Identifier: Apache-2.0 */
/* Recipe variable expansion (see vars.h). */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"
#include "amiforge/vars.h"

void vars_init(struct vars *v)
{
	v->sets = json_object();
	v->defaults = json_object();
	v->declared = json_object();
	v->now = time(NULL);
	if (!v->sets || !v->defaults || !v->declared)
		BUG("out of memory");
}

void vars_release(struct vars *v)
{
	json_decref(v->sets);
	json_decref(v->defaults);
	json_decref(v->declared);
	v->sets = v->defaults = v->declared = NULL;
}

static bool name_start(char c)
{
	return isalpha((unsigned char)c) || c == '_';
}

static bool name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

bool vars_name_valid(const char *name)
{
	if (!name_start(*name))
		return false;
	for (const char *p = name + 1; *p; p++)
		if (!name_char(*p))
			return false;
	return true;
}

/* The AWS names are covered by the words; they are listed for the reader. */
static const char *const credential_words[] = {
	"SECRET", "TOKEN", "PASSWORD", "PASSWD", "PRIVATE_KEY",
};

/* The suffixes that say a variable holds where a secret is kept, not the
 * secret (the *_FILE convention of Docker secrets, POSTGRES_PASSWORD_FILE):
 * a path is safe to expand, log and journal, and a bundle's key must be
 * passable to the recipe without committing it. */
static const char *const path_suffixes[] = { "_FILE", "_PATH" };

static bool name_holds_path(const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < ARRAY_SIZE(path_suffixes); i++) {
		size_t k = strlen(path_suffixes[i]);
		if (n > k && !strcasecmp(name + n - k, path_suffixes[i]))
			return true;
	}
	return false;
}

const char *vars_name_credential(const char *name)
{
	if (name_holds_path(name))
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(credential_words); i++)
		if (strcasestr(name, credential_words[i]))
			return credential_words[i];
	return NULL;
}

int vars_add_set(struct vars *v, const char *assignment, struct af_error **err)
{
	const char *eq = strchr(assignment, '=');
	if (!eq)
		return af_error_set(err, 0, "--set '%s' is not VAR=VALUE", assignment);
	_cleanup_free_ char *name = xstrndup(assignment, (size_t)(eq - assignment));
	const char *word = vars_name_credential(name);
	if (word)
		return af_error_set(err, 0,
				    "--set %s: the name looks like a credential (it contains %s) and "
				    "credentials are never expanded into a recipe, where they would reach "
				    "the image, the logs and the journal; do not pass it",
				    name, word);
	if (!vars_name_valid(name))
		return af_error_set(err, 0,
				    "--set '%s': invalid variable name '%s'; use letters, digits and '_'",
				    assignment, name);
	if (json_object_set_new(v->sets, name, json_string(eq + 1)) < 0)
		return af_error_set(err, 0, "--set '%s': the value is not valid UTF-8", assignment);
	return 0;
}

void vars_declare(struct vars *v, const char *name)
{
	json_object_set_new(v->declared, name, json_true());
}

void vars_add_default(struct vars *v, const char *name, const char *value)
{
	json_object_set_new(v->defaults, name, json_string(value));
}

/* The environment's value of NAME, for declared names only. */
static const char *from_env(const struct vars *v, const char *name)
{
	return json_object_get(v->declared, name) ? getenv(name) : NULL;
}

bool vars_overridden(const struct vars *v, const char *name)
{
	return json_object_get(v->sets, name) || from_env(v, name);
}

/* BUILD_DATE / BUILD_TIME.  Writes into buf; NULL + *problem when
 * SOURCE_DATE_EPOCH is unusable (reproducible-builds.org says to fail). */
static const char *builtin(const struct vars *v, const char *name, char buf[32], char **problem)
{
	bool date = strcmp(name, "BUILD_DATE") == 0;
	if (!date && strcmp(name, "BUILD_TIME") != 0)
		return NULL;
	time_t t = v->now;
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde) {
		char *end = NULL;
		errno = 0;
		long long n = strtoll(sde, &end, 10);
		if (!isdigit((unsigned char)*sde) || *end || errno || (long long)(time_t)n != n) {
			*problem = xasprintf("SOURCE_DATE_EPOCH '%s' is not a number of seconds since "
					     "1970; fix or unset it", sde);
			return NULL;
		}
		t = (time_t)n;
	}
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(buf, 32, date ? "%Y%m%d" : "%H%M%S", &tm)) {
		*problem = xasprintf("cannot format %s for time %lld", name, (long long)t);
		return NULL;
	}
	return buf;
}

/* NULL when undefined (or *problem set). */
static const char *lookup(const struct vars *v, const char *name, char buf[32], char **problem)
{
	const json_t *j = json_object_get(v->sets, name);
	if (j)
		return json_string_value(j);
	const char *env = from_env(v, name);
	if (env)
		return env;
	j = json_object_get(v->defaults, name);
	if (j)
		return json_string_value(j);
	return builtin(v, name, buf, problem);
}

struct expander {
	const struct vars *v;
	vars_report_fn report;
	void *data;
	int problems;
	int depth;
};

static void problem(struct expander *x, char *msg)
{
	x->report(x->data, msg);
	free(msg);
	x->problems++;
}

static void expand_into(struct expander *x, const char *s, size_t n, struct strbuf *out);

/* Length of the default text starting at s (before its closing '}'), or
 * -1 when the reference is never closed.  Nested "${...}" and "$$" are
 * skipped so that ${A:-${B}} closes at the right brace. */
static long default_len(const char *s, size_t n)
{
	int depth = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '$' && i + 1 < n && s[i + 1] == '$') {
			i++;
		} else if (s[i] == '$' && i + 1 < n && s[i + 1] == '{') {
			depth++;
			i++;
		} else if (s[i] == '}') {
			if (depth == 0)
				return (long)i;
			depth--;
		}
	}
	return -1;
}

/* Handles the reference at s ("${..."); returns the bytes consumed. */
static size_t expand_ref(struct expander *x, const char *s, size_t n, struct strbuf *out)
{
	size_t i = 2;
	while (i < n && name_char(s[i]))
		i++;
	_cleanup_free_ char *name = xstrndup(s + 2, i - 2);
	const char *close = memchr(s, '}', n);
	if (!close) {
		problem(x, xasprintf("unterminated variable reference '%.*s' (no closing '}'); "
				     "write '$$' for a literal '$'", (int)n, s));
		return n;
	}
	char next = i < n ? s[i] : '\0';
	bool has_default = i + 1 < n && next == ':' && s[i + 1] == '-';
	if (!*name || !name_start(*name) || (next != '}' && !has_default)) {
		problem(x, xasprintf("invalid variable reference '%.*s'; write ${NAME} or "
				     "${NAME:-default}, or '$$' for a literal '$'",
				     (int)(close - s + 1), s));
		return (size_t)(close - s + 1);
	}
	size_t def_start = i + 2, def_n = 0, end = i + 1;
	if (has_default) {
		long len = default_len(s + def_start, n - def_start);
		if (len < 0) {
			problem(x, xasprintf("unterminated variable reference '%.*s' (no closing '}'); "
					     "write '$$' for a literal '$'", (int)n, s));
			return n;
		}
		def_n = (size_t)len;
		end = def_start + def_n + 1;
	}
	const char *word = vars_name_credential(name);
	if (word) {
		problem(x, xasprintf("variable '%s' looks like a credential (its name contains %s) and "
				     "is never expanded, so it cannot reach the image, the logs or the "
				     "journal; remove the reference", name, word));
		return end;
	}
	char buf[32];
	char *why = NULL;
	const char *val = lookup(x->v, name, buf, &why);
	if (why) {
		problem(x, why);
	} else if (has_default && (!val || !*val)) {
		expand_into(x, s + def_start, def_n, out);
	} else if (!val && getenv(name)) {
		problem(x, xasprintf("undefined variable '%s'; the environment has %s but the recipe "
				     "does not declare it: declare it under env: to read it from the "
				     "environment, or set it with --set %s=VALUE", name, name, name));
	} else if (!val) {
		problem(x, xasprintf("undefined variable '%s'; set it with --set %s=VALUE or under "
				     "vars:, or write ${%s:-default}", name, name, name));
	} else {
		strbuf_addstr(out, val);
	}
	return end;
}

static void expand_into(struct expander *x, const char *s, size_t n, struct strbuf *out)
{
	/* Defaults nest; a pathological recipe should not exhaust the stack. */
	if (++x->depth > 32) {
		problem(x, xasprintf("variable references nested too deeply in '%.*s'", (int)n, s));
		x->depth--;
		return;
	}
	size_t i = 0;
	while (i < n) {
		const char *dollar = memchr(s + i, '$', n - i);
		size_t lit = dollar ? (size_t)(dollar - (s + i)) : n - i;
		strbuf_add(out, s + i, lit);
		i += lit;
		if (i >= n)
			break;
		if (i + 1 < n && s[i + 1] == '$') {
			strbuf_addstr(out, "$");
			i += 2;
		} else if (i + 1 < n && s[i + 1] == '{') {
			i += expand_ref(x, s + i, n - i, out);
		} else {
			strbuf_addstr(out, "$");
			i++;
		}
	}
	x->depth--;
}

char *vars_expand(const struct vars *v, const char *text, vars_report_fn report, void *data)
{
	struct expander x = { .v = v, .report = report, .data = data };
	struct strbuf out = STRBUF_INIT;
	expand_into(&x, text, strlen(text), &out);
	if (x.problems) {
		strbuf_release(&out);
		return NULL;
	}
	return strbuf_detach(&out);
}
