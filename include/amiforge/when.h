/* SPDX-License-Identifier: Apache-2.0 */
/* Points and spans of time as users write them for expiries (`ami
 * --expire-after`, `--expires`, the register stage's `expire_after`).
 *
 * A span: digits and a unit, s m h d w mo y (seconds, minutes, hours, days,
 * weeks, calendar months, calendar years), optionally with a leading '+'
 * and a space or spelled out: "90d", "2w", "3mo", "1y", "+1 week",
 * "+3 months", "2 days".  Months and years are calendar ones: 3mo after
 * 2026-11-30 is 2027-02-28 (the day is clamped to the month's last).
 * A date: "2026-12-31" (midnight UTC at its start), "2026-12-31T10:00Z",
 * "2026-12-31T10:00:00Z" (UTC only: a zone other than Z is refused rather
 * than guessed). */
#ifndef AMIFORGE_WHEN_H
#define AMIFORGE_WHEN_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct af_error;

struct when_span {
	int64_t seconds;
	int months; /* calendar months (a year is 12) */
};

/* 0, or -1 + err quoting TEXT and the forms accepted. */
int when_parse_span(const char *text, struct when_span *out, struct af_error **err);
int when_parse_date(const char *text, time_t *out, struct af_error **err);
/* BASE + SPAN, calendar-correct for months. */
time_t when_add(time_t base, const struct when_span *span);
/* "2026-12-31T10:00:00Z" into BUF (21 bytes at least). */
void when_format(time_t t, char buf[32]);

#endif
