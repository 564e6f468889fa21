/* SPDX-License-Identifier: Apache-2.0 */
/* Expiry spans and dates (when.h). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/error.h"
#include "amiforge/when.h"

#define SPAN_FORMS "give digits and a unit: 90d, 2w, 3mo, 1y, 12h (also '+1 week', '3 months')"
#define DATE_FORMS "give 2026-12-31, 2026-12-31T10:00Z or 2026-12-31T10:00:00Z (UTC)"

struct unit {
	const char *names[4];
	int64_t seconds;
	int months;
};

static const struct unit units[] = {
	{ { "s", "sec", "second", "seconds" }, 1, 0 },
	{ { "m", "min", "minute", "minutes" }, 60, 0 },
	{ { "h", "hour", "hours", NULL }, 3600, 0 },
	{ { "d", "day", "days", NULL }, 86400, 0 },
	{ { "w", "week", "weeks", NULL }, 7 * 86400, 0 },
	{ { "mo", "month", "months", NULL }, 0, 1 },
	{ { "y", "year", "years", NULL }, 0, 12 },
};

static const struct unit *unit_named(const char *name)
{
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		for (size_t k = 0; k < 4 && units[i].names[k]; k++)
			if (!strcmp(units[i].names[k], name))
				return &units[i];
	return NULL;
}

int when_parse_span(const char *text, struct when_span *out, struct af_error **err)
{
	const char *p = text ? text : "";
	if (*p == '+')
		p++;
	while (*p == ' ')
		p++;
	if (!isdigit((unsigned char)*p))
		return af_error_set(err, 0, "'%s' is not a time span; %s", text ? text : "", SPAN_FORMS);
	char *end;
	unsigned long long n = strtoull(p, &end, 10);
	while (*end == ' ')
		end++;
	const struct unit *u = unit_named(end);
	if (!u || n > 100000)
		return af_error_set(err, 0, "'%s' is not a time span; %s", text, SPAN_FORMS);
	*out = (struct when_span){ .seconds = (int64_t)n * u->seconds, .months = (int)n * u->months };
	return 0;
}

int when_parse_date(const char *text, time_t *out, struct af_error **err)
{
	struct tm tm = { 0 };
	const char *rest = text ? strptime(text, "%Y-%m-%d", &tm) : NULL;
	if (rest && *rest == 'T') {
		const char *r2 = strptime(rest + 1, "%H:%M:%S", &tm);
		rest = r2 ? r2 : strptime(rest + 1, "%H:%M", &tm);
		if (rest && *rest == 'Z')
			rest++;
		else
			rest = NULL;
	}
	if (!rest || *rest)
		return af_error_set(err, 0, "'%s' is not a date; %s", text ? text : "", DATE_FORMS);
	*out = timegm(&tm);
	return 0;
}

static bool leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

time_t when_add(time_t base, const struct when_span *span)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	struct tm tm;
	gmtime_r(&base, &tm);
	int m = tm.tm_mon + span->months;
	tm.tm_year += m / 12;
	tm.tm_mon = m % 12;
	int last = mdays[tm.tm_mon] + (tm.tm_mon == 1 && leap(tm.tm_year + 1900));
	if (tm.tm_mday > last)
		tm.tm_mday = last;
	return timegm(&tm) + (time_t)span->seconds;
}

void when_format(time_t t, char buf[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
