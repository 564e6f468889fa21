/* SPDX-License-Identifier: Apache-2.0 */
/* STATE/journal: one JSON object per line, appended with one write(2) and
 * fsync'd, so after a crash the file holds whole lines plus at most one torn
 * last line.  STATE/lock (flock) keeps one build per state directory.
 *
 * Every line is decoded once, when it is loaded or appended, into a struct
 * journal_event; the queries below read those, so the event names, the
 * field names and the rule "since the last reset" live here and only here. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/journal.h"
#include "amiforge/log.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

/* One line: its decoded view, and the object the view borrows from. */
struct journal_line {
	struct journal_event ev;
	json_t *obj;
};

struct journal_log {
	char *path;		     /* for messages */
	struct journal_line **lines; /* each allocated once: events stay where they are */
	size_t n, cap;
	size_t after_reset;	     /* index after the newest reset (0: none) */
	unsigned next_line;	     /* the line number the next event gets */
	unsigned newer_line;	     /* first newer-format line after the newest reset, or 0 */
	int newer_format;
};

struct journal {
	char *path;	 /* STATE/journal */
	int fd;		 /* O_APPEND */
	int lock_fd;	 /* holds the flock on STATE/lock */
	off_t valid_len; /* bytes of whole, valid lines; anything after is torn */
	struct journal_log *log;
};

/* ---- the vocabulary ----------------------------------------------------------- */

static const char *const event_names[] = {
	[JOURNAL_UNKNOWN] = NULL,
	[JOURNAL_BUILD_START] = "build_start",
	[JOURNAL_BUILD_END] = "build_end",
	[JOURNAL_RESET] = "reset",
	[JOURNAL_STAGE_START] = "stage_start",
	[JOURNAL_STAGE_DONE] = "stage_done",
	[JOURNAL_STAGE_FAIL] = "stage_fail",
	[JOURNAL_CHECKPOINT] = "checkpoint",
	[JOURNAL_RESOURCE] = "resource",
};

static enum journal_kind kind_of(const char *name)
{
	for (size_t k = 1; name && k < ARRAY_SIZE(event_names); k++)
		if (!strcmp(name, event_names[k]))
			return (enum journal_kind)k;
	return JOURNAL_UNKNOWN;
}

static const char *str_field(const json_t *o, const char *name)
{
	return json_string_value(json_object_get(o, name));
}

static const json_t *obj_field(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);
	return json_is_object(v) ? v : NULL;
}

static int int_field(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);
	json_int_t n = json_integer_value(v);
	return json_is_integer(v) && n >= INT_MIN && n <= INT_MAX ? (int)n : 0;
}

static uint64_t u64_field(const json_t *o, const char *name)
{
	json_int_t n = json_integer_value(json_object_get(o, name));
	return n > 0 ? (uint64_t)n : 0;
}

/* A line's format version: 1 without "v", else "v" when it is a positive
 * integer; 0 when it is anything else. */
static int line_format(const json_t *o)
{
	const json_t *v = json_object_get(o, "v");
	if (!v)
		return 1;
	json_int_t n = json_integer_value(v);
	return json_is_integer(v) && n >= 1 && n <= INT_MAX ? (int)n : 0;
}

static void decode_stage(struct journal_event *e, const json_t *o)
{
	e->stage.index = int_field(o, "index");
	e->stage.id = str_field(o, "id");
	e->stage.key = str_field(o, "key");
}

/* Fills E from O, a line of format e->format (one this build reads). */
static void decode_event(struct journal_event *e, const json_t *o)
{
	e->kind = kind_of(str_field(o, "event"));
	e->time = str_field(o, "time");
	switch (e->kind) {
	case JOURNAL_UNKNOWN:
	case JOURNAL_RESET:
		break;
	case JOURNAL_BUILD_START:
		e->recipe = str_field(o, "recipe");
		e->fresh = json_is_true(json_object_get(o, "fresh"));
		e->pid = int_field(o, "pid");
		break;
	case JOURNAL_BUILD_END:
		e->status = str_field(o, "status");
		break;
	case JOURNAL_STAGE_START:
		decode_stage(e, o);
		break;
	case JOURNAL_STAGE_DONE:
		decode_stage(e, o);
		e->seconds = json_number_value(json_object_get(o, "seconds"));
		e->outputs = obj_field(o, "outputs");
		break;
	case JOURNAL_STAGE_FAIL:
		decode_stage(e, o);
		e->seconds = json_number_value(json_object_get(o, "seconds"));
		e->error = str_field(o, "error");
		break;
	case JOURNAL_CHECKPOINT:
		decode_stage(e, o);
		/* Format 1 wrote the disk key as "key" and no stage key. */
		if (e->format == 1) {
			e->disk_key = e->stage.key;
			e->stage.key = NULL;
		} else {
			e->disk_key = str_field(o, "disk_key");
		}
		e->seconds = json_number_value(json_object_get(o, "seconds"));
		e->ckpt.seconds = e->seconds;
		e->ckpt.bytes_new = u64_field(o, "bytes_new");
		e->ckpt.bytes_stored = u64_field(o, "bytes_stored");
		e->ckpt.blocks_data = u64_field(o, "blocks_data");
		break;
	case JOURNAL_RESOURCE:
		decode_stage(e, o);
		e->resource = obj_field(o, "resource");
		break;
	}
}

/* ---- the log: every event, decoded ------------------------------------------- */

static struct journal_log *log_new(const char *path)
{
	struct journal_log *log = xcalloc(1, sizeof(*log));
	log->path = xstrdup(path);
	log->next_line = 1;
	return log;
}

void journal_log_free(struct journal_log *log)
{
	if (!log)
		return;
	for (size_t i = 0; i < log->n; i++) {
		json_decref(log->lines[i]->obj);
		free(log->lines[i]);
	}
	free(log->lines);
	free(log->path);
	free(log);
}

/* Takes OBJ (a JSON object whose line_format() is not 0) as line LINE.
 * A line of a newer format is kept undecoded: this build cannot know what
 * it means, so nothing may read it. */
static void log_add(struct journal_log *log, json_t *obj, unsigned line)
{
	struct journal_line *l = xcalloc(1, sizeof(*l));
	l->obj = obj;
	l->ev.format = line_format(obj);
	l->ev.line = line;
	log->next_line = line + 1;
	if (l->ev.format <= JOURNAL_FORMAT) {
		decode_event(&l->ev, obj);
	} else if (!log->newer_line) {
		log->newer_line = l->ev.line;
		log->newer_format = l->ev.format;
	}
	if (log->n == log->cap) {
		log->cap = log->cap ? 2 * log->cap : 64;
		log->lines = xreallocarray(log->lines, log->cap, sizeof(*log->lines));
	}
	log->lines[log->n++] = l;
	if (l->ev.kind == JOURNAL_RESET) {
		log->after_reset = log->n;
		log->newer_line = 0;
	}
}

static int newer_error(const struct journal_log *log, struct af_error **err)
{
	return af_error_set(err, 0,
			    "%s:%u: written by a newer amiforge (journal format %d; this one reads "
			    "formats up to %d); use that version, or build with --fresh to start "
			    "this state over",
			    log->path, log->newer_line, log->newer_format, JOURNAL_FORMAT);
}

/* ---- loading ------------------------------------------------------------------- */

/* Parses one journal text.  Whole lines must be JSON objects; a final piece
 * without its newline, or an unparsable final line, is what a crash mid-write
 * leaves: it is reported and left out, and *valid_len stops before it. */
static struct journal_log *journal_parse(const char *path, const char *text, size_t len,
					 off_t *valid_len, struct af_error **err)
{
	struct journal_log *log = log_new(path);
	size_t pos = 0;
	unsigned lineno = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;
		bool last = !nl || end + 1 == len;
		json_error_t jerr;
		json_t *ev = NULL;

		lineno++;
		if (nl)
			ev = json_loadb(text + pos, end - pos, JSON_REJECT_DUPLICATES, &jerr);
		else
			snprintf(jerr.text, sizeof(jerr.text), "no newline at end");
		if (ev && !json_is_object(ev)) {
			json_decref(ev);
			ev = NULL;
			snprintf(jerr.text, sizeof(jerr.text), "not a JSON object");
		}
		/* A whole object is not what a torn write leaves: a bad version
		 * is damage wherever it is. */
		if (ev && line_format(ev) == 0) {
			json_decref(ev);
			af_error_set(err, 0,
				     "%s:%u: malformed journal line (\"v\" is not a format "
				     "version); the journal was edited or damaged: fix or remove "
				     "that line",
				     path, lineno);
			journal_log_free(log);
			return NULL;
		}
		if (!ev && !(nl && end == pos)) {
			if (!last) {
				af_error_set(err, 0,
					     "%s:%u: malformed journal line (%s); the journal was "
					     "edited or damaged: fix or remove that line",
					     path, lineno, jerr.text);
				journal_log_free(log);
				return NULL;
			}
			log_warn("journal '%s': ignoring a torn last line at byte %zu (%s), left "
				 "by an interrupted write; it is cut off at the next append",
				 path, pos, jerr.text);
			break;
		}
		if (ev)
			log_add(log, ev, lineno);
		log->next_line = lineno + 1; /* blank lines count too */
		pos = end + 1;
	}
	*valid_len = (off_t)(pos < len ? pos : len);
	return log;
}

static struct journal_log *journal_load_fd(int fd, const char *path, off_t *valid_len,
					   struct af_error **err)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return af_error_set(err, errno, "cannot stat '%s'", path), NULL;
	_cleanup_free_ char *text = xmalloc((size_t)st.st_size + 1);
	ssize_t n = pread_all(fd, text, (size_t)st.st_size, 0);
	if (n < 0)
		return af_error_set(err, errno, "cannot read '%s'", path), NULL;
	text[n] = '\0';
	return journal_parse(path, text, (size_t)n, valid_len, err);
}

/* Reads the pid the holder wrote into the lock file, 0 if unknown. */
static long lock_holder_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

static int journal_lock(const char *state_dir, struct af_error **err)
{
	_cleanup_free_ char *path = path_join(state_dir, "lock");
	_cleanup_fd_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return af_error_set(err, errno, "cannot open lock file '%s'", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int errsv = errno;
		if (errsv != EWOULDBLOCK)
			return af_error_set(err, errsv, "cannot lock '%s'", path);
		long pid = lock_holder_pid(fd);
		char who[32] = "pid unknown";
		if (pid > 0)
			snprintf(who, sizeof(who), "pid %ld", pid);
		af_error_set(
		    err, 0,
		    "another amiforge build is using '%s' (%s); wait for it or use another "
		    "--state",
		    state_dir, who);
		(*err)->errnum = EWOULDBLOCK;
		return -1;
	}
	/* The pid only serves the message above; a failure to write it is not
	 * worth failing the build for. */
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite_all(fd, pid, (size_t)n, 0) < 0)
		log_debug("could not record pid in %s: %s", path, strerror(errno));
	return steal_fd(&fd);
}

static int journal_open_file(struct journal *j, struct af_error **err)
{
	int fd = open(j->path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT) {
		fd = open(j->path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		/* The new name must survive a crash along with what is written. */
		if (fd >= 0 && fsync_parent_dir(j->path, err) < 0) {
			close(fd);
			return -1;
		}
	}
	if (fd < 0)
		return af_error_set(err, errno, "cannot open journal '%s'", j->path);
	j->fd = fd;
	/* A journal from before it was made 0600 says what the build did. */
	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_mode & 077) && fchmod(fd, 0600) < 0)
		return af_error_set(err, errno, "cannot make journal '%s' private (mode 0600)", j->path);
	return 0;
}

int journal_state_mkdir(const char *state_dir, struct af_error **err)
{
	if (mkdir_p(state_dir, 0700, err) < 0) {
		af_error_wrap(err, "state directory '%s'", state_dir);
		return af_error_hint(err, "choose a writable --state");
	}
	_cleanup_fd_ int fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return af_error_set(err, errno, "cannot open state directory '%s'", state_dir);
	if (!(st.st_mode & 077))
		return 0;
	if (fchmod(fd, 0700) < 0)
		return af_error_set(err, errno,
				    "state directory '%s' is mode %04o and cannot be made 0700; other "
				    "users could read the image under construction: fix its mode or "
				    "choose another --state",
				    state_dir, (unsigned)(st.st_mode & 07777));
	log_warn("state directory '%s' was mode %04o (other users could read images, logs and keys "
		 "in it); it is now 0700",
		 state_dir, (unsigned)(st.st_mode & 07777));
	return 0;
}

static struct journal *journal_open_mode(const char *state_dir, bool fresh, struct af_error **err)
{
	if (journal_state_mkdir(state_dir, err) < 0)
		return NULL;
	struct journal *j = xcalloc(1, sizeof(*j));
	j->fd = -1;
	j->path = path_join(state_dir, "journal");
	j->lock_fd = journal_lock(state_dir, err);
	if (j->lock_fd < 0 || journal_open_file(j, err) < 0)
		goto fail;
	j->log = journal_load_fd(j->fd, j->path, &j->valid_len, err);
	if (!j->log)
		goto fail;
	if (j->log->newer_line && !fresh) {
		newer_error(j->log, err);
		goto fail;
	}
	return j;
fail:
	journal_close(j);
	return NULL;
}

struct journal *journal_open(const char *state_dir, struct af_error **err)
{
	return journal_open_mode(state_dir, false, err);
}

struct journal *journal_open_fresh(const char *state_dir, struct af_error **err)
{
	return journal_open_mode(state_dir, true, err);
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0)
		close(j->fd);
	if (j->lock_fd >= 0)
		close(j->lock_fd); /* releases the flock */
	journal_log_free(j->log);
	free(j->path);
	free(j);
}

struct journal_log *journal_read(const char *state_dir, struct af_error **err)
{
	_cleanup_free_ char *path = path_join(state_dir, "journal");
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return log_new(path);
		return af_error_set(err, errno, "cannot open journal '%s'", path), NULL;
	}
	off_t valid_len;
	struct journal_log *log = journal_load_fd(fd, path, &valid_len, err);
	if (log && log->newer_line) {
		newer_error(log, err);
		journal_log_free(log);
		return NULL;
	}
	return log;
}

int journal_adopt(struct journal *j, const char *text, size_t len, struct af_error **err)
{
	off_t valid;
	struct journal_log *log = journal_parse(j->path, text, len, &valid, err);
	if (!log)
		return af_error_wrap(err, "the remote journal");
	if (log->newer_line) {
		newer_error(log, err);
		journal_log_free(log);
		return -1;
	}
	/* Whole lines only: a torn tail would be glued to the next line. */
	if (write_file_atomic(j->path, text, (size_t)valid, 0600, err) < 0) {
		journal_log_free(log);
		return -1;
	}
	int fd = open(j->path, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		journal_log_free(log);
		return af_error_set(err, errno, "cannot open journal '%s'", j->path);
	}
	close(j->fd);
	j->fd = fd;
	journal_log_free(j->log);
	j->log = log;
	j->valid_len = valid;
	return 0;
}

const struct journal_log *journal_get_log(const struct journal *j)
{
	return j->log;
}

/* ---- appending ------------------------------------------------------------------- */

static void iso8601_now(char buf[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A torn tail must go before appending, or the new line would be glued to
 * it and the file would stay broken. */
static int journal_cut_torn_tail(struct journal *j, struct af_error **err)
{
	struct stat st;
	if (fstat(j->fd, &st) < 0)
		return af_error_set(err, errno, "cannot stat '%s'", j->path);
	if (st.st_size == j->valid_len)
		return 0;
	if (ftruncate(j->fd, j->valid_len) < 0)
		return af_error_set(err, errno, "cannot cut the torn last line of '%s'", j->path);
	return 0;
}

/* The path under the appenders: EVENT (borrowed) is written with "v" and
 * "time" added to a redacted copy. */
static int journal_append(struct journal *j, const json_t *event, struct af_error **err)
{
	if (!json_is_object(event) || line_format(event) == 0)
		BUG("journal event is not an object with a format version");
	_cleanup_json_ json_t *ev = json_deep_copy(event);
	if (!json_object_get(ev, "v"))
		json_object_set_new(ev, "v", json_integer(JOURNAL_FORMAT));
	char now[32];
	iso8601_now(now);
	json_object_set_new(ev, "time", json_string(now));
	/* Before encoding: JSON escapes could hide a secret from the match. */
	redact_json(ev);

	_cleanup_free_ char *text = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!text)
		BUG("cannot serialise a journal event");
	size_t len = strlen(text);
	text[len] = '\n'; /* replaces the NUL; the buffer is not used as a string again */

	if (journal_cut_torn_tail(j, err) < 0)
		return -1;
	if (write_all(j->fd, text, len + 1) < 0 || fsync(j->fd) < 0) {
		int errsv = errno;
		/* Leave whole lines only, so the next append is not glued to a
		 * partial one; if even that fails, the next load reports it. */
		if (ftruncate(j->fd, j->valid_len) < 0)
			log_debug("could not cut a partial line from %s", j->path);
		return af_error_set(err, errsv, "cannot append to journal '%s'", j->path);
	}
	j->valid_len += (off_t)len + 1;
	log_add(j->log, steal_pointer(&ev), j->log->next_line);
	return 0;
}

/* S as a JSON string.  JSON holds only UTF-8: other bytes (a path or a
 * tool's message in another encoding) are written as '?'. */
static json_t *text_value(const char *s)
{
	if (!s)
		BUG("journal: a string field is NULL");
	json_t *v = json_string(s);
	if (v)
		return v;
	_cleanup_free_ char *copy = xstrdup(s);
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	return json_string(copy);
}

/* {"v":JOURNAL_FORMAT,"event":NAME}: the start of every line written. */
static json_t *event_new(enum journal_kind kind)
{
	json_t *ev = json_object();
	json_object_set_new(ev, "v", json_integer(JOURNAL_FORMAT));
	json_object_set_new(ev, "event", json_string(event_names[kind]));
	return ev;
}

static json_t *stage_event_new(enum journal_kind kind, const struct journal_stage *s)
{
	json_t *ev = event_new(kind);
	json_object_set_new(ev, "index", json_integer(s->index));
	json_object_set_new(ev, "id", text_value(s->id));
	json_object_set_new(ev, "key", text_value(s->key));
	return ev;
}

int journal_append_build_start(struct journal *j, const char *recipe, bool fresh,
			       struct af_error **err)
{
	_cleanup_json_ json_t *ev = event_new(JOURNAL_BUILD_START);
	json_object_set_new(ev, "recipe", text_value(recipe));
	json_object_set_new(ev, "fresh", json_boolean(fresh));
	json_object_set_new(ev, "pid", json_integer((json_int_t)getpid()));
	return journal_append(j, ev, err);
}

int journal_append_build_end(struct journal *j, bool ok, struct af_error **err)
{
	_cleanup_json_ json_t *ev = event_new(JOURNAL_BUILD_END);
	json_object_set_new(ev, "status", json_string(ok ? "ok" : "failed"));
	return journal_append(j, ev, err);
}

int journal_append_reset(struct journal *j, struct af_error **err)
{
	_cleanup_json_ json_t *ev = event_new(JOURNAL_RESET);
	return journal_append(j, ev, err);
}

int journal_append_stage_start(struct journal *j, const struct journal_stage *s,
			       struct af_error **err)
{
	_cleanup_json_ json_t *ev = stage_event_new(JOURNAL_STAGE_START, s);
	return journal_append(j, ev, err);
}

int journal_append_stage_done(struct journal *j, const struct journal_stage *s, double seconds,
			      const json_t *outputs, struct af_error **err)
{
	if (outputs && !json_is_object(outputs))
		BUG("stage '%s': outputs are not an object", s->id);
	_cleanup_json_ json_t *ev = stage_event_new(JOURNAL_STAGE_DONE, s);
	json_object_set_new(ev, "seconds", json_real(seconds));
	/* journal_append() redacts a copy: the caller's outputs stay as they are. */
	json_object_set_new(ev, "outputs",
			    outputs ? json_incref((json_t *)outputs) : json_object());
	return journal_append(j, ev, err);
}

int journal_append_stage_fail(struct journal *j, const struct journal_stage *s, double seconds,
			      const char *error, struct af_error **err)
{
	_cleanup_json_ json_t *ev = stage_event_new(JOURNAL_STAGE_FAIL, s);
	json_object_set_new(ev, "seconds", json_real(seconds));
	json_object_set_new(ev, "error", text_value(error));
	return journal_append(j, ev, err);
}

int journal_append_checkpoint(struct journal *j, const struct journal_stage *s,
			      const char *disk_key, const struct journal_ckpt *st,
			      struct af_error **err)
{
	_cleanup_json_ json_t *ev = stage_event_new(JOURNAL_CHECKPOINT, s);
	json_object_set_new(ev, "disk_key", text_value(disk_key));
	json_object_set_new(ev, "seconds", json_real(st->seconds));
	json_object_set_new(ev, "bytes_new", json_integer((json_int_t)st->bytes_new));
	json_object_set_new(ev, "bytes_stored", json_integer((json_int_t)st->bytes_stored));
	json_object_set_new(ev, "blocks_data", json_integer((json_int_t)st->blocks_data));
	return journal_append(j, ev, err);
}

int journal_append_resource(struct journal *j, const struct journal_stage *s,
			    const json_t *resource, struct af_error **err)
{
	if (!json_is_object(resource))
		return af_error_set(err, 0, "stage '%s' reported a resource that is not an object",
				    s->id);
	_cleanup_json_ json_t *ev = stage_event_new(JOURNAL_RESOURCE, s);
	json_object_set_new(ev, "resource", json_incref((json_t *)resource));
	return journal_append(j, ev, err);
}

/* ---- queries ------------------------------------------------------------------------ */

/* The one answer to "which events count": those after the newest reset.
 * A newer-format line after it means this build cannot know what the
 * journal says: journal_open() and journal_read() refuse such a journal,
 * and after journal_open_fresh() the build appends a reset first. */
static size_t since_reset(const struct journal_log *log)
{
	if (log->newer_line)
		BUG("journal '%s' queried before a reset superseded its line %u", log->path,
		    log->newer_line);
	return log->after_reset;
}

static const struct journal_event *event_at(const struct journal_log *log, size_t i)
{
	return &log->lines[i]->ev;
}

static bool str_eq(const char *a, const char *b)
{
	return a && b && !strcmp(a, b);
}

static bool is_stage_event(const struct journal_event *e)
{
	return e->kind == JOURNAL_STAGE_START || e->kind == JOURNAL_STAGE_DONE ||
	       e->kind == JOURNAL_STAGE_FAIL;
}

size_t journal_log_size(const struct journal_log *log)
{
	return log->n;
}

const struct journal_event *journal_log_at(const struct journal_log *log, size_t i)
{
	return i < log->n ? event_at(log, i) : NULL;
}

const struct journal_event *journal_find_done(const struct journal_log *log,
					      const struct journal_stage *s)
{
	size_t from = since_reset(log);
	for (size_t i = log->n; i-- > from;) {
		const struct journal_event *e = event_at(log, i);
		if (e->kind == JOURNAL_STAGE_DONE && e->stage.index == s->index &&
		    str_eq(e->stage.id, s->id) && str_eq(e->stage.key, s->key))
			return e;
	}
	return NULL;
}

const struct journal_event *journal_last_stage_event(const struct journal_log *log, int index)
{
	size_t from = since_reset(log);
	for (size_t i = log->n; i-- > from;) {
		const struct journal_event *e = event_at(log, i);
		if (is_stage_event(e) && (index == 0 || e->stage.index == index))
			return e;
	}
	return NULL;
}

static bool resource_matches(const struct journal_event *e, const char *key)
{
	return e->kind == JOURNAL_RESOURCE && e->resource && (!key || str_eq(e->stage.key, key));
}

const struct journal_event **journal_resources(const struct journal_log *log, const char *key,
					       size_t *n)
{
	size_t from = since_reset(log), count = 0;
	for (size_t i = from; i < log->n; i++)
		count += resource_matches(event_at(log, i), key);
	*n = count;
	if (!count)
		return NULL;
	const struct journal_event **out = xreallocarray(NULL, count, sizeof(*out));
	count = 0;
	for (size_t i = from; i < log->n; i++)
		if (resource_matches(event_at(log, i), key))
			out[count++] = event_at(log, i);
	return out;
}

const struct journal_event *journal_find_previous(const struct journal_log *log, const char *id,
						  const char *key)
{
	for (size_t i = log->n; i-- > 0;) {
		const struct journal_event *e = event_at(log, i);
		if (e->kind == JOURNAL_STAGE_DONE && e->stage.id && !strcmp(e->stage.id, id) &&
		    e->stage.key && strcmp(e->stage.key, key))
			return e;
	}
	return NULL;
}

json_t *journal_stage_resources(const struct journal_log *log, const char *key)
{
	size_t n;
	_cleanup_free_ const struct journal_event **evs = journal_resources(log, key, &n);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append(out, (json_t *)evs[i]->resource);
	return out;
}

static int by_index(const void *a, const void *b)
{
	const struct journal_event *x = *(const struct journal_event *const *)a;
	const struct journal_event *y = *(const struct journal_event *const *)b;
	return (x->stage.index > y->stage.index) - (x->stage.index < y->stage.index);
}

void journal_last_build(const struct journal_log *log, struct journal_build *out)
{
	*out = (struct journal_build){ 0 };
	size_t from = 0;
	for (size_t i = log->n; i-- > 0;) {
		if (event_at(log, i)->kind == JOURNAL_BUILD_START) {
			out->start = event_at(log, i);
			from = i;
			break;
		}
	}
	for (size_t i = from; i < log->n; i++) {
		const struct journal_event *e = event_at(log, i);
		if (e->kind == JOURNAL_BUILD_END)
			out->end = e;
		if (!is_stage_event(e) || e->stage.index <= 0)
			continue;
		size_t k = 0;
		while (k < out->n_stages && out->stages[k]->stage.index != e->stage.index)
			k++;
		if (k == out->n_stages)
			out->stages = xreallocarray(out->stages, ++out->n_stages,
						    sizeof(*out->stages));
		out->stages[k] = e;
	}
	if (out->n_stages)
		qsort(out->stages, out->n_stages, sizeof(*out->stages), by_index);
}

void journal_build_release(struct journal_build *b)
{
	free(b->stages);
	*b = (struct journal_build){ 0 };
}
