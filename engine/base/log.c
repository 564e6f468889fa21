/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/log.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

static enum log_level log_verbosity = LOG_LEVEL_INFO;
static bool log_json;
static int log_stage_fd = -1;

void log_init(enum log_level verbosity, bool json)
{
	log_verbosity = verbosity;
	log_json = json;
}

bool log_json_enabled(void)
{
	return log_json;
}

void log_set_stage_fd(int fd)
{
	log_stage_fd = fd;
}

static const char *level_prefix(enum log_level level)
{
	switch (level) {
	case LOG_LEVEL_ERROR:
		return "error: ";
	case LOG_LEVEL_WARN:
		return "warning: ";
	case LOG_LEVEL_INFO:
	case LOG_LEVEL_DEBUG:
		return "";
	}
	return "";
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	/* Redacted once, here, for every sink (redact.h owns the rule). */
	char *safe = redact_text(msg, NULL, 0);
	char *line = xasprintf("amiforge: %s%s\n", level_prefix(level), safe);
	free(msg);
	free(safe);
	/* Errors always reach the terminal, whatever the verbosity. */
	if (level <= log_verbosity || level == LOG_LEVEL_ERROR) {
		fflush(stdout);
		if (write_all(STDERR_FILENO, line, strlen(line)) < 0) {
			/* nowhere left to report it */
		}
	}
	if (log_stage_fd >= 0 && write_all(log_stage_fd, line, strlen(line)) < 0) {
		/* the stage log is best effort; the terminal got it */
	}
	free(line);
}

void log_progress(const char *fmt, ...)
{
	if (log_json)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	char *safe = redact_text(msg, NULL, 0);
	fputs(safe, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	free(msg);
	free(safe);
}

void log_event(const json_t *event)
{
	if (!log_json)
		return;
	/* Redacted before encoding: an escaped secret would not match. */
	json_t *copy = json_deep_copy(event);
	redact_json(copy);
	char *s = json_dumps(copy, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(copy);
	if (!s)
		BUG("cannot encode event");
	fputs(s, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	free(s);
}
