/* SPDX-License-Identifier: Apache-2.0 */
/* The journal: STATE/journal, append-only, one JSON object per line, each
 * append fsync'd.  It is the truth about what a build has done.
 *
 * Event shapes (every event also gets "time": ISO-8601 UTC when appended):
 *   {"event":"build_start","recipe":PATH,"fresh":BOOL,"pid":N}
 *   {"event":"reset"}                       --fresh: earlier stage results no longer count
 *   {"event":"stage_start","index":I,"id":ID,"key":KEY}
 *   {"event":"stage_done","index":I,"id":ID,"key":KEY,"seconds":S,"outputs":{...}}
 *   {"event":"stage_fail","index":I,"id":ID,"key":KEY,"seconds":S,"error":MSG}
 *   {"event":"checkpoint","index":I,"id":ID,"key":KEY,"seconds":S,"bytes_new":N}
 *   {"event":"resource","index":I,"id":ID,"key":KEY,"resource":{...}}
 *   {"event":"build_end","status":"ok"|"failed"}
 *
 * A torn last line (a crash mid-write) is ignored with a warning and cut off
 * on the next append; a malformed line elsewhere is an error naming its line. */
#ifndef AMIFORGE_JOURNAL_H
#define AMIFORGE_JOURNAL_H

#include <stdbool.h>
#include <jansson.h>

struct af_error;
struct journal;

/* Creates STATE (and missing parents) with mode 0700; an existing STATE
 * that group or others can reach is chmod'ed to 0700 with a warning: it
 * holds the image under construction, logs and keys.  0 or -1 + err. */
int journal_state_mkdir(const char *state_dir, struct af_error **err);

/* Creates STATE if needed (journal_state_mkdir), takes STATE/lock (flock, non-blocking; if held:
 * error "another amiforge build is using STATE (pid N); wait for it or use
 * another --state" with errnum EWOULDBLOCK) and loads STATE/journal.
 * NULL + err on failure. */
struct journal *journal_open(const char *state_dir, struct af_error **err);

/* Appends one event (borrowed; "time" is added to a copy, and credentials
 * in it are redacted: redact.h), writes the line with one write(2) and
 * fsyncs.  STATE/journal and STATE/lock are 0600.  0 or -1 + err. */
int journal_append(struct journal *j, const json_t *event, struct af_error **err);

/* All events loaded or appended so far, in order (borrowed array). */
const json_t *journal_events(const struct journal *j);

/* Releases the lock and frees. */
void journal_close(struct journal *j);

/* Reads STATE/journal without locking (plan, status).  A missing journal
 * gives an empty array.  NULL + err on failure. */
json_t *journal_read(const char *state_dir, struct af_error **err);

/* The newest stage_done event for (index, id, key) after the last "reset",
 * or NULL.  Borrowed from events. */
const json_t *journal_find_done(const json_t *events, int index, const char *id,
				const char *key);

#endif
