/* SPDX-License-Identifier: Apache-2.0 */
/* boot-test's report: one line per check and a result (boottest.h). */
#include <stdlib.h>
#include <string.h>

#include "amiforge/boottest.h"
#include "amiforge/util.h"

void boottest_report_add(struct boottest_report *r, const char *name, enum boottest_status st,
			 const char *detail)
{
	if (r->n >= BOOTTEST_MAX_CHECKS)
		BUG("too many boot-test checks");
	r->checks[r->n++] = (struct boottest_check){ name, st, detail ? xstrdup(detail) : NULL };
}

bool boottest_report_passed(const struct boottest_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->checks[i].status != BOOTTEST_OK)
			return false;
	return r->n > 0;
}

void boottest_report_format(const struct boottest_report *r, struct strbuf *out)
{
	static const char *const status[] = { [BOOTTEST_OK] = "ok", [BOOTTEST_FAILED] = "FAILED",
					      [BOOTTEST_SKIPPED] = "skipped" };
	strbuf_addf(out, "boot-test %s (%s, %s, %s)\n", r->image, r->boot, r->firmware, r->accel);
	if (r->boot_seconds >= 0)
		strbuf_addf(out, "  boot to ssh      %.1fs\n", r->boot_seconds);
	size_t bad = 0;
	for (size_t i = 0; i < r->n; i++) {
		const struct boottest_check *c = &r->checks[i];
		if (c->detail)
			strbuf_addf(out, "  %-16s %-7s %s\n", c->name, status[c->status], c->detail);
		else
			strbuf_addf(out, "  %-16s %s\n", c->name, status[c->status]);
		bad += c->status != BOOTTEST_OK;
	}
	if (boottest_report_passed(r)) {
		strbuf_addf(out, "result: passed (%zu checks)\n", r->n);
		return;
	}
	strbuf_addstr(out, "result: FAILED:");
	const char *sep = " ";
	for (size_t i = 0; i < r->n; i++)
		if (r->checks[i].status == BOOTTEST_FAILED) {
			strbuf_addf(out, "%s%s", sep, r->checks[i].name);
			sep = ", ";
		}
	strbuf_addf(out, " (%zu of %zu checks not passed)\n", bad, r->n);
	if (r->kept_dir)
		strbuf_addf(out, "console log: %s/console.log\n", r->kept_dir);
}

void boottest_report_release(struct boottest_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->checks[i].detail);
	free(r->kept_dir);
	r->n = 0;
	r->kept_dir = NULL;
}
