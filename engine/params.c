/* SPDX-License-Identifier: Apache-2.0 */
/* Parameter types, unit parsing and accessors (see params.h). */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "amiforge/params.h"
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
