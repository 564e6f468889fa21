/* SPDX-License-Identifier: Apache-2.0 */
/* The recipe JSON Schema from the stage registry (see schema.h). */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/params.h"
#include "amiforge/schema.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

/* A stable identifier, not a download location: editors take the schema
 * from the file or a modeline, and the project owns no host to serve it.
 * .invalid is reserved (RFC 2606), so the id can never resolve to
 * someone else's content. */
#define SCHEMA_ID "https://amiforge.invalid/schemas/recipe.schema.json"

/* The top level and the keys every stage takes, as engine/core/recipe.c
 * reads them (its tables are static there). */
static const char *const arch_choices[] = { "x86_64", "arm64", NULL };
static const char *const checkpoint_choices[] = { "auto", "always", "never", NULL };

#define REF(name) "#/$defs/" name

/* Any scalar a recipe may write as a parameter's value: the loader reads
 * scalars as text, so `suite: 12` is the string "12" and `[zero, null]`
 * names a device "null".  Only an empty plain scalar is refused, which an
 * editor cannot tell from `null`. */
static json_t *def_text(void)
{
	return json_pack("{s:s, s:[s,s,s,s]}", "description", "a scalar, read as text", "type", "string",
			 "number", "boolean", "null");
}

/* A string holding a variable reference: expansion happens before a value
 * is typed, so `parallel: ${PAR:-2}` is an integer once loaded. */
static json_t *def_var(void)
{
	return json_pack("{s:s, s:s, s:s}", "description",
			 "a ${VAR} or ${VAR:-default} reference, expanded when the recipe loads", "type",
			 "string", "pattern", "\\$\\{[A-Za-z_][A-Za-z0-9_]*(\\}|:-)");
}

static json_t *def_int(void)
{
	return json_pack("{s:[{s:s}, {s:s}]}", "anyOf", "type", "integer", "$ref", REF("var"));
}

/* The words params.c's convert_bool accepts, in any case: YAML 1.2 editors
 * read yes/no/on/off as strings. */
static json_t *def_bool(void)
{
	return json_pack("{s:[{s:s}, {s:s, s:s}, {s:s}]}", "anyOf", "type", "boolean", "type", "string",
			 "pattern",
			 "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff])$",
			 "$ref", REF("var"));
}

/* params.c's size_units (compared without case) and duration_units. */
static json_t *def_units(const char *description, const char *pattern)
{
	return json_pack("{s:s, s:[{s:s, s:i}, {s:s, s:s}, {s:s}]}", "description", description, "anyOf",
			 "type", "integer", "minimum", 0, "type", "string", "pattern", pattern, "$ref",
			 REF("var"));
}

static json_t *def_strings(void)
{
	return json_pack("{s:[{s:s}, {s:s, s:{s:s}}]}", "anyOf", "$ref", REF("text"), "type", "array",
			 "items", "$ref", REF("text"));
}

static json_t *def_command(void)
{
	return json_pack("{s:[{s:s}, {s:s, s:i, s:{s:s}}]}", "anyOf", "$ref", REF("text"), "type", "array",
			 "minItems", 1, "items", "$ref", REF("text"));
}

static json_t *def_map(void)
{
	return json_pack("{s:s, s:{s:s}}", "type", "object", "additionalProperties", "$ref", REF("text"));
}

static json_t *defs(void)
{
	json_t *d = json_object();
	json_object_set_new(d, "var", def_var());
	json_object_set_new(d, "text", def_text());
	json_object_set_new(d, "int", def_int());
	json_object_set_new(d, "bool", def_bool());
	json_object_set_new(d, "size", def_units("bytes, or a size like 2GiB, 512M (binary multiples)",
						 "^[0-9]+ *([Bb]|[KkMmGgTt]([Ii]?[Bb])?)?$"));
	json_object_set_new(d, "duration", def_units("seconds, or a duration like 90s, 10m, 2h, 7d",
						     "^[0-9]+ *[smhd]?$"));
	json_object_set_new(d, "strings", def_strings());
	json_object_set_new(d, "command", def_command());
	json_object_set_new(d, "map", def_map());
	json_object_set_new(d, "path", json_pack("{s:s, s:s, s:i}", "description",
						 "a file or directory, relative to the recipe's directory",
						 "type", "string", "minLength", 1));
	json_object_set_new(d, "host_file", json_pack("{s:s, s:s, s:i}", "description",
						      "a file anywhere: an absolute path, or one relative to the "
						      "recipe's directory; its content, not its path, counts in the "
						      "stage key",
						      "type", "string", "minLength", 1));
	return d;
}

/* ---- defaults ---- */

static bool all_digits(const char *s)
{
	return *s && strspn(s, "0123456789") == strlen(s);
}

static bool choice_of(const char *const *choices, const char *s)
{
	for (const char *const *c = choices; c && *c; c++)
		if (!strcmp(*c, s))
			return true;
	return false;
}

/* "[a, b]" of plain words; NULL for anything else. */
static json_t *word_list(const char *s)
{
	size_t n = strlen(s);
	if (n < 2 || s[0] != '[' || s[n - 1] != ']')
		return NULL;
	_cleanup_free_ char *inner = xstrndup(s + 1, n - 2);
	json_t *arr = json_array();
	char *save = NULL;
	for (char *t = strtok_r(inner, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		while (*t == ' ')
			t++;
		size_t len = strlen(t);
		while (len && t[len - 1] == ' ')
			t[--len] = '\0';
		if (!len || strpbrk(t, " {}[]:")) {
			json_decref(arr);
			return NULL;
		}
		json_array_append_new(arr, json_string(t));
	}
	return arr;
}

json_t *schema_default(const struct param_spec *spec)
{
	const char *d = spec->defval;
	uint64_t v;
	if (!d || !*d)
		return NULL;
	switch (spec->type) {
	case PT_BOOL:
		return !strcmp(d, "true") ? json_true() : !strcmp(d, "false") ? json_false() : NULL;
	case PT_INT:
		return all_digits(d + (*d == '-')) ? json_integer(strtoll(d, NULL, 10)) : NULL;
	case PT_ENUM:
		return choice_of(spec->choices, d) ? json_string(d) : NULL;
	case PT_SIZE:
		return param_parse_size(d, &v) == 0 ? json_string(d) : NULL;
	case PT_DURATION:
		return param_parse_duration(d, &v) == 0 ? json_string(d) : NULL;
	case PT_STRING:
	case PT_PATH:
		/* One word is a value; "none" documents an absent one (upload's
		 * prefix), and blanks mean prose ("the recipe's name"). */
		if (strpbrk(d, " \t") || !strcmp(d, "none"))
			return NULL;
		return json_string(d);
	case PT_STRINGS:
		return word_list(d);
	case PT_COMMAND:
	case PT_MAP:
	case PT_LIST:
	case PT_OBJECT:
		break;
	}
	return NULL;
}

/* ---- parameters ---- */

static json_t *object_schema(const struct param_spec *table, const char *description, bool nullable);

/* The type part of a parameter's schema, merged into s. */
static void param_type(json_t *s, const struct param_spec *spec)
{
	switch (spec->type) {
	case PT_STRING: json_object_set_new(s, "$ref", json_string(REF("text"))); return;
	case PT_INT: json_object_set_new(s, "$ref", json_string(REF("int"))); return;
	case PT_BOOL: json_object_set_new(s, "$ref", json_string(REF("bool"))); return;
	case PT_SIZE: json_object_set_new(s, "$ref", json_string(REF("size"))); return;
	case PT_DURATION: json_object_set_new(s, "$ref", json_string(REF("duration"))); return;
	case PT_STRINGS: json_object_set_new(s, "$ref", json_string(REF("strings"))); return;
	case PT_COMMAND: json_object_set_new(s, "$ref", json_string(REF("command"))); return;
	case PT_MAP: json_object_set_new(s, "$ref", json_string(REF("map"))); return;
	case PT_PATH:
		json_object_set_new(s, "$ref",
				    json_string(spec->flags & PARAM_HOST_FILE ? REF("host_file") : REF("path")));
		return;
	case PT_ENUM: {
		json_t *choices = json_array();
		for (const char *const *c = spec->choices; c && *c; c++)
			json_array_append_new(choices, json_string(*c));
		json_object_set_new(s, "anyOf", json_pack("[{s:o}, {s:s}]", "enum", choices, "$ref", REF("var")));
		return;
	}
	case PT_LIST:
		json_object_set_new(s, "type", json_string("array"));
		json_object_set_new(s, "items", object_schema(spec->sub, NULL, false));
		return;
	case PT_OBJECT: {
		json_t *o = object_schema(spec->sub, NULL, false);
		json_object_update(s, o);
		json_decref(o);
		return;
	}
	}
	BUG("parameter '%s' has type %d", spec->name, (int)spec->type);
}

/* What a host file may be, said where an editor shows it: on the parameter
 * (a $ref's own description is hidden behind the parameter's). */
#define HOST_FILE_NOTE \
	"; an absolute path anywhere is allowed (only the file's content counts in the stage key)"

json_t *schema_param(const struct param_spec *spec)
{
	json_t *s = json_object();
	json_t *def = schema_default(spec);
	const char *note = spec->type == PT_PATH && (spec->flags & PARAM_HOST_FILE) ? HOST_FILE_NOTE : "";
	if (spec->help && spec->defval && !def)
		json_object_set_new(s, "description",
				    json_sprintf("%s%s; default: %s", spec->help, note, spec->defval));
	else if (spec->help)
		json_object_set_new(s, "description", json_sprintf("%s%s", spec->help, note));
	if (def)
		json_object_set_new(s, "default", def);
	param_type(s, spec);
	return s;
}

/* A mapping checked against a parameter table; nullable: `fstab:` with no
 * parameters is allowed when none is required. */
static json_t *object_schema(const struct param_spec *table, const char *description, bool nullable)
{
	json_t *props = json_object(), *required = json_array();
	for (const struct param_spec *p = table; p && p->name; p++) {
		json_object_set_new(props, p->name, schema_param(p));
		if (p->flags & PARAM_REQUIRED)
			json_array_append_new(required, json_string(p->name));
	}
	json_t *s = json_object();
	if (description)
		json_object_set_new(s, "description", json_string(description));
	if (nullable && !json_array_size(required))
		json_object_set_new(s, "type", json_pack("[s,s]", "object", "null"));
	else
		json_object_set_new(s, "type", json_string("object"));
	json_object_set_new(s, "properties", props);
	if (json_array_size(required))
		json_object_set_new(s, "required", required);
	else
		json_decref(required);
	json_object_set_new(s, "additionalProperties", json_false());
	return s;
}

/* ---- stages ---- */

/* 7200 -> "2h": the largest unit that divides it. */
static json_t *duration_text(uint64_t secs)
{
	static const struct { uint64_t n; char unit; } units[] = {
		{ 86400, 'd' }, { 3600, 'h' }, { 60, 'm' }, { 1, 's' },
	};
	for (size_t i = 0; i < ARRAY_SIZE(units); i++)
		if (secs % units[i].n == 0)
			return json_sprintf("%llu%c", (unsigned long long)(secs / units[i].n), units[i].unit);
	BUG("unreachable");
}

static json_t *enum_or_var(const char *const *choices)
{
	json_t *arr = json_array();
	for (const char *const *c = choices; *c; c++)
		json_array_append_new(arr, json_string(*c));
	return json_pack("[{s:o}, {s:s}]", "enum", arr, "$ref", REF("var"));
}

/* id, timeout and checkpoint, added to a stage's parameters. */
static void common_keys(json_t *props, const struct stage_type *t)
{
	json_object_set_new(props, "id", json_pack("{s:s, s:[{s:s, s:s}, {s:s}]}", "description",
		"unique name of the stage (letters, digits, '_', '.', '-'); default: the type, TYPE-2 for a second one",
		"anyOf", "type", "string", "pattern", "^[A-Za-z0-9][A-Za-z0-9_.-]*$", "$ref", REF("var")));
	json_t *timeout = json_pack("{s:s}", "description",
				    t->default_timeout ? "how long the stage may run"
						       : "how long the stage may run; default: no limit");
	if (t->default_timeout)
		json_object_set_new(timeout, "default", duration_text(t->default_timeout));
	json_object_set_new(timeout, "$ref", json_string(REF("duration")));
	json_object_set_new(props, "timeout", timeout);
	json_object_set_new(props, "checkpoint", json_pack("{s:s, s:s, s:o}", "description",
		"when to checkpoint the disk after the stage: auto (when it is worth it), always or never",
		"default", "auto", "anyOf", enum_or_var(checkpoint_choices)));
}

/* One item of `stages`: a mapping with the type as its only key. */
static json_t *stage_schema(const struct stage_type *t)
{
	json_t *params = object_schema(t->params, t->summary, true);
	common_keys(json_object_get(params, "properties"), t);
	json_t *s = json_object();
	json_object_set_new(s, "title", json_string(t->name));
	if (t->summary)
		json_object_set_new(s, "description", json_string(t->summary));
	json_object_set_new(s, "type", json_string("object"));
	json_object_set_new(s, "properties", json_pack("{s:o}", t->name, params));
	json_object_set_new(s, "required", json_pack("[s]", t->name));
	json_object_set_new(s, "additionalProperties", json_false());
	return s;
}

static json_t *stages_schema(void)
{
	size_t n = 0;
	const struct stage_type *const *all = registry_all(&n);
	json_t *one_of = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(one_of, stage_schema(all[i]));
	return json_pack("{s:s, s:s, s:i, s:{s:s, s:o}}", "description",
			 "the stages, run in order; each is a mapping with one key, the stage type "
			 "(`amiforge stages` lists them)",
			 "type", "array", "minItems", 1, "items", "description",
			 "a stage: its type, mapped to its parameters", "oneOf", one_of);
}

static json_t *top_properties(void)
{
	json_t *p = json_object();
	json_object_set_new(p, "name", json_pack("{s:s, s:s, s:i}", "description",
		"the image's name (the AMI name unless register sets one); ${VAR} references are expanded",
		"$ref", REF("text"), "minLength", 1));
	json_object_set_new(p, "description", json_pack("{s:s, s:[s,s,s,s]}", "description",
		"what the recipe builds", "type", "string", "number", "boolean", "null"));
	json_object_set_new(p, "arch", json_pack("{s:s, s:s, s:o}", "description",
		"the image's architecture", "default", "x86_64", "anyOf", enum_or_var(arch_choices)));
	json_object_set_new(p, "env", json_pack("{s:s, s:[s,s], s:b, s:{s:s, s:s}}", "description",
		"variables whose values may come from the environment (besides --set)",
		"type", "array", "null", "uniqueItems", 1, "items", "type", "string", "pattern",
		"^[A-Za-z_][A-Za-z0-9_]*$"));
	json_object_set_new(p, "vars", json_pack("{s:s, s:[s,s], s:{s:s}, s:{s:[s,s,s,s]}}", "description",
		"variables with default values (the environment and --set override them); a value may "
		"use the variables before it", "type", "object", "null", "propertyNames", "pattern",
		"^[A-Za-z_][A-Za-z0-9_]*$", "additionalProperties", "type", "string", "number", "boolean",
		"null"));
	json_object_set_new(p, "stages", stages_schema());
	return p;
}

json_t *schema_recipe(void)
{
	json_t *s = json_object();
	json_object_set_new(s, "$schema", json_string("https://json-schema.org/draft/2020-12/schema"));
	json_object_set_new(s, "$id", json_string(SCHEMA_ID));
	json_object_set_new(s, "title", json_string("amiforge recipe"));
	json_object_set_new(s, "description", json_string(
		"An amiforge recipe (generated by `amiforge schema` from the stage table). "
		"`amiforge validate` checks more: stage order, cross-parameter rules, variables."));
	json_object_set_new(s, "type", json_string("object"));
	json_object_set_new(s, "properties", top_properties());
	json_object_set_new(s, "required", json_pack("[s,s]", "name", "stages"));
	json_object_set_new(s, "additionalProperties", json_false());
	json_object_set_new(s, "$defs", defs());
	return s;
}

char *schema_recipe_text(void)
{
	_cleanup_json_ json_t *s = schema_recipe();
	char *text = json_dumps(s, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (!text)
		BUG("out of memory");
	char *out = xasprintf("%s\n", text);
	free(text);
	return out;
}
