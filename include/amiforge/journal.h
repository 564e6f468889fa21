/* SPDX-License-Identifier: Apache-2.0 */
/* The journal: STATE/journal, append-only, one JSON object per line, each
 * append fsync'd.  It is the truth about what a build has done.  This module
 * owns its vocabulary: the other modules append through the typed
 * appenders and ask the typed queries below, and never build or parse a
 * line themselves.
 *
 * Lines (format 2, written by this build; every line starts with "v" and
 * ends with "time", ISO-8601 UTC when appended):
 *   {"v":2,"event":"build_start","recipe":PATH,"fresh":BOOL,"pid":N}
 *   {"v":2,"event":"reset"}                --fresh: earlier lines no longer count
 *   {"v":2,"event":"stage_start","index":I,"id":ID,"key":KEY}
 *   {"v":2,"event":"stage_done","index":I,"id":ID,"key":KEY,"seconds":S,"outputs":{...}}
 *   {"v":2,"event":"stage_fail","index":I,"id":ID,"key":KEY,"seconds":S,"error":MSG}
 *   {"v":2,"event":"checkpoint","index":I,"id":ID,"key":KEY,"disk_key":DKEY,"seconds":S,
 *    "bytes_new":N,"bytes_stored":N,"blocks_data":N}
 *   {"v":2,"event":"resource","index":I,"id":ID,"key":KEY,"resource":{...}}
 *   {"v":2,"event":"build_end","status":"ok"|"failed"}
 * I is the stage's 1-based index, ID its id, KEY its stage key and DKEY the
 * disk key its checkpoint is stored under (plan.h).  Credentials anywhere in
 * a line are redacted (redact.h) before it is written.
 *
 * Format 1 (amiforge before the format was versioned): lines without "v".
 * They are read as format 2 with one difference: a format-1 checkpoint's
 * "key" is its disk key (read as disk_key; its stage key is unknown, NULL).
 * A line with "v" above JOURNAL_FORMAT was written by a newer amiforge and
 * is never read: the journal is refused ("FILE:LINE: written by a newer
 * amiforge (journal format N; ...); use that version, or build with --fresh
 * ...") unless a reset this build can read comes after it, which is what a
 * build with --fresh appends (journal_open_fresh()).
 *
 * A field missing or of the wrong type in a readable line counts for
 * nothing (that event does not match a query that needs the field), as
 * format-1 readers did; an event name this build does not know is kept as
 * JOURNAL_UNKNOWN and ignored.  A torn last line (a crash mid-write) is
 * ignored with a warning and cut off on the next append; a line that is not
 * a JSON object, or whose "v" is not a positive integer, is an error naming
 * its line, anywhere else. */
#ifndef AMIFORGE_JOURNAL_H
#define AMIFORGE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* The line format this build writes, and the newest it reads. */
#define JOURNAL_FORMAT 2

struct af_error;
struct journal;
struct journal_log;

enum journal_kind {
	JOURNAL_UNKNOWN, /* an event name this build does not know, or a newer format's line */
	JOURNAL_BUILD_START,
	JOURNAL_BUILD_END,
	JOURNAL_RESET,
	JOURNAL_STAGE_START,
	JOURNAL_STAGE_DONE,
	JOURNAL_STAGE_FAIL,
	JOURNAL_CHECKPOINT,
	JOURNAL_RESOURCE,
};

/* Which run of which stage an event is about. */
struct journal_stage {
	int index;	 /* 1-based, as in the recipe */
	const char *id;	 /* the stage's id */
	const char *key; /* its stage key */
};

/* What a checkpoint cost (checkpoint.h's ckpt_stats, the part journaled). */
struct journal_ckpt {
	double seconds;
	uint64_t bytes_new;
	uint64_t bytes_stored;
	uint64_t blocks_data;
};

/* One line, read.  Strings and JSON values are borrowed from the log that
 * holds the event and live as long as it; fields an event kind does not
 * have (or a line lacks) are NULL, 0 or false. */
struct journal_event {
	enum journal_kind kind;
	int format;		      /* the line's format version (1 for no "v") */
	unsigned line;		      /* 1-based line number in the file */
	const char *time;	      /* when it was appended */
	struct journal_stage stage;   /* stage_*, checkpoint, resource (index 0: none) */
	double seconds;		      /* stage_done, stage_fail, checkpoint */
	const json_t *outputs;	      /* stage_done: an object */
	const char *error;	      /* stage_fail */
	const char *disk_key;	      /* checkpoint */
	struct journal_ckpt ckpt;     /* checkpoint (seconds repeated there) */
	const json_t *resource;	      /* resource: an object */
	const char *recipe;	      /* build_start */
	bool fresh;		      /* build_start */
	long pid;		      /* build_start */
	const char *status;	      /* build_end: "ok" or "failed" */
};

/* ---- opening ------------------------------------------------------------- */

/* Creates STATE (and missing parents) with mode 0700; an existing STATE
 * that group or others can reach is chmod'ed to 0700 with a warning: it
 * holds the image under construction, logs and keys.  0 or -1 + err. */
int journal_state_mkdir(const char *state_dir, struct af_error **err);

/* Creates STATE if needed (journal_state_mkdir), takes STATE/lock (flock, non-blocking; if held:
 * error "another amiforge build is using STATE (pid N); wait for it or use
 * another --state" with errnum EWOULDBLOCK) and loads STATE/journal,
 * refusing a line of a newer format (see the top).  NULL + err on failure;
 * free with journal_close(). */
struct journal *journal_open(const char *state_dir, struct af_error **err);

/* journal_open() for a build with --fresh: lines of a newer format are no
 * obstacle, because the build appends a reset (journal_append_reset())
 * before it asks anything, and nothing before a reset counts.  A query
 * before that reset is a bug (BUG()).  NULL + err on failure. */
struct journal *journal_open_fresh(const char *state_dir, struct af_error **err);

/* Releases the lock and frees, with the events of journal_get_log(). */
void journal_close(struct journal *j);

/* Reads STATE/journal without locking (plan, status), refusing a line of a
 * newer format.  A missing journal gives an empty log.  NULL + err on
 * failure; free with journal_log_free(). */
struct journal_log *journal_read(const char *state_dir, struct af_error **err);
void journal_log_free(struct journal_log *log);

/* Replaces J's journal with TEXT (LEN bytes; a torn last line is dropped),
 * atomically, and reloads it: a build on a fresh machine adopts the remote
 * store's journal of its state (remote.h).  Before any query: events
 * returned earlier are freed.  A line of a newer format is refused as
 * journal_open() refuses it.  0 or -1 + err (J unchanged). */
int journal_adopt(struct journal *j, const char *text, size_t len, struct af_error **err);

/* The events loaded or appended so far (borrowed from J; grows with each
 * append, and events already returned stay where they are). */
const struct journal_log *journal_get_log(const struct journal *j);

/* ---- appending ------------------------------------------------------------- */

/* Each appender writes one line of the shape listed at the top (the
 * caller's strings and JSON values are borrowed and copied), with one
 * write(2), fsync'd, and adds it to journal_get_log().  STATE/journal and
 * STATE/lock are 0600.  0 or -1 + err (then nothing was added). */
int journal_append_build_start(struct journal *j, const char *recipe, bool fresh,
			       struct af_error **err);
/* ok: "status":"ok", else "failed". */
int journal_append_build_end(struct journal *j, bool ok, struct af_error **err);
int journal_append_reset(struct journal *j, struct af_error **err);
int journal_append_stage_start(struct journal *j, const struct journal_stage *s,
			       struct af_error **err);
/* outputs: an object, or NULL for {}. */
int journal_append_stage_done(struct journal *j, const struct journal_stage *s, double seconds,
			      const json_t *outputs, struct af_error **err);
int journal_append_stage_fail(struct journal *j, const struct journal_stage *s, double seconds,
			      const char *error, struct af_error **err);
int journal_append_checkpoint(struct journal *j, const struct journal_stage *s,
			      const char *disk_key, const struct journal_ckpt *st,
			      struct af_error **err);
/* resource: what the stage reported; anything but an object is refused
 * ("stage 'ID' reported a resource that is not an object"). */
int journal_append_resource(struct journal *j, const struct journal_stage *s,
			    const json_t *resource, struct af_error **err);

/* ---- queries ----------------------------------------------------------------- */

/* "Since the last reset" below means after the newest JOURNAL_RESET line
 * (everything when there is none).  Returned events are borrowed from LOG. */

/* The number of events in LOG, and event I (0-based) of them: for tests
 * and listings; questions about the build go through the queries below. */
size_t journal_log_size(const struct journal_log *log);
const struct journal_event *journal_log_at(const struct journal_log *log, size_t i);

/* The newest stage_done since the last reset whose index, id and key are
 * those of S, or NULL. */
const struct journal_event *journal_find_done(const struct journal_log *log,
					      const struct journal_stage *s);

/* The newest stage_done in the whole log (resets included) of stage id ID
 * with a key other than KEY, or NULL: the run before this one. */
const struct journal_event *journal_find_previous(const struct journal_log *log, const char *id,
						  const char *key);

/* The newest stage_start, stage_done or stage_fail since the last reset,
 * of stage INDEX (0: of any stage), or NULL. */
const struct journal_event *journal_last_stage_event(const struct journal_log *log, int index);

/* The resource events since the last reset whose stage key is KEY (NULL:
 * of every stage), oldest first; *n is set to their number.  The array is
 * the caller's (free()); NULL when there are none. */
const struct journal_event **journal_resources(const struct journal_log *log, const char *key,
					       size_t *n);

/* The same for one stage key, as the array of the resource objects (new
 * reference; empty when there are none): a stage's ctx->resources. */
json_t *journal_stage_resources(const struct journal_log *log, const char *key);

/* The last build: from the newest build_start (the first event when there
 * is none) to the end of the log. */
struct journal_build {
	const struct journal_event *start;   /* its build_start, or NULL */
	const struct journal_event *end;     /* a build_end after it, or NULL: running or killed */
	const struct journal_event **stages; /* each index's last stage_* event, by index (> 0) */
	size_t n_stages;
};
/* Fills OUT; release with journal_build_release(). */
void journal_last_build(const struct journal_log *log, struct journal_build *out);
void journal_build_release(struct journal_build *b);

#endif
