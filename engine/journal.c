/* SPDX-License-Identifier: Apache-2.0 */
/* STATE/journal: one JSON object per line, appended with one write(2) and
 * fsync'd, so after a crash the file holds whole lines plus at most one torn
 * last line.  STATE/lock (flock) keeps one build per state directory. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
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

struct journal {
	char *path;	 /* STATE/journal */
	int fd;		 /* O_APPEND */
	int lock_fd;	 /* holds the flock on STATE/lock */
	off_t valid_len; /* bytes of whole, valid lines; anything after is torn */
	json_t *events;
};

/* Parses one journal text.  Whole lines must be JSON objects; a final piece
 * without its newline, or an unparsable final line, is what a crash mid-write
 * leaves: it is reported and left out, and *valid_len stops before it. */
static json_t *journal_parse(const char *path, const char *text, size_t len, off_t *valid_len,
			     struct af_error **err)
{
	_cleanup_json_ json_t *events = json_array();
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
		if (!ev && !(nl && end == pos)) {
			if (!last) {
				af_error_set(err, 0,
					     "%s:%u: malformed journal line (%s); the journal was "
					     "edited or damaged: fix or remove that line",
					     path, lineno, jerr.text);
				return NULL;
			}
			log_warn("journal '%s': ignoring a torn last line at byte %zu (%s), left "
				 "by an interrupted write; it is cut off at the next append",
				 path, pos, jerr.text);
			break;
		}
		if (ev)
			json_array_append_new(events, ev);
		pos = end + 1;
	}
	*valid_len = (off_t)(pos < len ? pos : len);
	return steal_pointer(&events);
}

static json_t *journal_load_fd(int fd, const char *path, off_t *valid_len, struct af_error **err)
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

struct journal *journal_open(const char *state_dir, struct af_error **err)
{
	if (journal_state_mkdir(state_dir, err) < 0)
		return NULL;
	struct journal *j = xcalloc(1, sizeof(*j));
	j->fd = -1;
	j->path = path_join(state_dir, "journal");
	j->lock_fd = journal_lock(state_dir, err);
	if (j->lock_fd < 0 || journal_open_file(j, err) < 0)
		goto fail;
	j->events = journal_load_fd(j->fd, j->path, &j->valid_len, err);
	if (!j->events)
		goto fail;
	return j;
fail:
	journal_close(j);
	return NULL;
}

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

int journal_append(struct journal *j, const json_t *event, struct af_error **err)
{
	if (!json_is_object(event))
		BUG("journal event is not an object");
	_cleanup_json_ json_t *ev = json_deep_copy(event);
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
	json_array_append(j->events, ev);
	return 0;
}

const json_t *journal_events(const struct journal *j)
{
	return j->events;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0)
		close(j->fd);
	if (j->lock_fd >= 0)
		close(j->lock_fd); /* releases the flock */
	json_decref(j->events);
	free(j->path);
	free(j);
}

json_t *journal_read(const char *state_dir, struct af_error **err)
{
	_cleanup_free_ char *path = path_join(state_dir, "journal");
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return json_array();
		return af_error_set(err, errno, "cannot open journal '%s'", path), NULL;
	}
	off_t valid_len;
	return journal_load_fd(fd, path, &valid_len, err);
}

static bool json_str_eq(const json_t *obj, const char *field, const char *want)
{
	const char *s = json_string_value(json_object_get(obj, field));
	return s && strcmp(s, want) == 0;
}

const json_t *journal_find_done(const json_t *events, int index, const char *id, const char *key)
{
	for (size_t i = json_array_size(events); i-- > 0;) {
		const json_t *ev = json_array_get(events, i);
		if (json_str_eq(ev, "event", "reset"))
			return NULL;
		if (!json_str_eq(ev, "event", "stage_done"))
			continue;
		const json_t *idx = json_object_get(ev, "index");
		if (!json_is_integer(idx) || json_integer_value(idx) != index)
			continue;
		if (json_str_eq(ev, "id", id) && json_str_eq(ev, "key", key))
			return ev;
	}
	return NULL;
}
