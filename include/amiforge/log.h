/* SPDX-License-Identifier: Apache-2.0 */
/* One logging core with sinks (crun's error.c, curl's tool_msgs.c):
 * - the terminal (stderr), filtered by verbosity; errors always reach it;
 * - JSON events on stdout when --json is given (one object per line);
 * - a per-stage log file (STATE/logs/NN-ID.log), set while a stage runs.
 * Helpers add the "amiforge: " prefix and the newline.  Every sink gets the
 * text with credentials redacted (redact.h). */
#ifndef AMIFORGE_LOG_H
#define AMIFORGE_LOG_H

#include <stdbool.h>
#include <jansson.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* verbosity: LOG_LEVEL_INFO by default, -q lowers, -v raises.
 * json: events go to stdout as JSON lines and human progress lines are not
 * printed to stdout. */
void log_init(enum log_level verbosity, bool json);
bool log_json_enabled(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* A human progress line on stdout (not printed in --json mode). */
void log_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Emits a JSON event (borrowed reference) on stdout in --json mode. */
void log_event(const json_t *event);

/* While a stage runs, its messages (log_* and stage_log) also go to this fd.
 * -1 stops it.  The fd is not owned. */
void log_set_stage_fd(int fd);

#endif
