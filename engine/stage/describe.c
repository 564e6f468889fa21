/* SPDX-License-Identifier: Apache-2.0 */
/* The pieces of describe() sentences (stage.h). */
#include <inttypes.h>
#include <stdio.h>

#include "amiforge/stage.h"
#include "amiforge/util.h"

void stage_describe_list(struct strbuf *sb, const json_t *list, size_t max)
{
	size_t n = json_array_size(list);
	for (size_t i = 0; i < n && i < max; i++)
		strbuf_addf(sb, "%s%s", i ? ", " : "", json_string_value(json_array_get(list, i)));
	if (n > max)
		strbuf_addf(sb, " and %zu more", n - max);
}

void stage_describe_count(struct strbuf *sb, size_t n, const char *noun)
{
	strbuf_addf(sb, "%zu %s%s", n, noun, n == 1 ? "" : "s");
}

char *stage_describe_size(uint64_t bytes, char *buf, size_t bufsz)
{
	static const char *const units[] = { "TiB", "GiB", "MiB", "KiB" };
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		uint64_t unit = UINT64_C(1) << (10 * (ARRAY_SIZE(units) - i));
		if (bytes >= unit && bytes % unit == 0) {
			snprintf(buf, bufsz, "%" PRIu64 " %s", bytes / unit, units[i]);
			return buf;
		}
	}
	return format_size(bytes, buf, bufsz);
}

const char *stage_describe_region(const struct stage_describe *d, const char *given)
{
	if (given)
		return given;
	/* At build time the region chain also asks instance metadata, which
	 * plan never does: it has no network. */
	return d->region ? d->region : "the region the build resolves (none set: AWS_REGION, the profile, instance metadata)";
}

const char *stage_describe_fact(const struct stage_describe *d, const char *fact)
{
	return json_string_value(json_object_get(d->facts, fact));
}

void stage_describe_know(const struct stage_describe *d, const char *fact, const char *value)
{
	if (value)
		json_object_set_new(d->known, fact, json_string(value));
}
