/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "testutil.h"

#include "amiforge/error.h"
#include "amiforge/journal.h"
#include "amiforge/log.h"
#include "amiforge/util.h"

static char *tmpdir;

static int setup(void **state)
{
	tmpdir = test_mkdtemp();
	return 0;
}

static int teardown(void **state)
{
	test_rmdir_r(tmpdir);
	free(tmpdir);
	return 0;
}

static char *state_path(void)
{
	return path_join(tmpdir, "state");
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *path)
{
	struct af_error *err = NULL;
	size_t len;
	char *s = read_file(path, &len, &err);
	assert_null(err);
	return s;
}

/* Every line ends in a newline and is a JSON object with a "time". */
static size_t check_valid_lines(const char *path)
{
	char *text = slurp(path), *save = NULL;
	size_t n = 0, len = strlen(text);
	assert_true(len == 0 || text[len - 1] == '\n');
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_error_t jerr;
		json_t *ev = json_loads(line, 0, &jerr);
		assert_non_null(ev);
		assert_true(json_is_object(ev));
		assert_true(json_is_string(json_object_get(ev, "time")));
		json_decref(ev);
		n++;
	}
	free(text);
	return n;
}

static const struct journal_stage ST_ALLOC = { 1, "allocate", "k1" };
static const struct journal_stage ST_MKFS = { 2, "mkfs", "k2" };
static const struct journal_stage ST_RUN = { 3, "run", "k3" };

static struct journal *open_state(const char *dir)
{
	struct af_error *err = NULL;
	struct journal *j = journal_open(dir, &err);
	assert_null(err);
	assert_non_null(j);
	return j;
}

#define APPEND(call)                                    \
	do {                                            \
		struct af_error *aerr_ = NULL;          \
		assert_int_equal((call), 0);            \
		assert_null(aerr_);                     \
	} while (0)

/* Every appender, read back through journal_log_at() both from the open
 * journal and from the file; the file's lines are format 2 with "v" first
 * and "time" last. */
static void check_round_trip(const struct journal_log *log)
{
	assert_int_equal(journal_log_size(log), 8);
	for (size_t i = 0; i < 8; i++) {
		const struct journal_event *e = journal_log_at(log, i);
		assert_int_equal(e->format, JOURNAL_FORMAT);
		assert_int_equal(e->line, i + 1);
		assert_non_null(e->time);
		assert_int_equal(strlen(e->time), strlen("2024-01-02T03:04:05Z"));
		assert_int_equal(e->time[strlen(e->time) - 1], 'Z');
	}
	assert_null(journal_log_at(log, 8));

	const struct journal_event *e = journal_log_at(log, 0);
	assert_int_equal(e->kind, JOURNAL_BUILD_START);
	assert_string_equal(e->recipe, "r.yaml");
	assert_true(e->fresh);
	assert_int_equal(e->pid, getpid());

	assert_int_equal(journal_log_at(log, 1)->kind, JOURNAL_RESET);

	e = journal_log_at(log, 2);
	assert_int_equal(e->kind, JOURNAL_STAGE_START);
	assert_int_equal(e->stage.index, 1);
	assert_string_equal(e->stage.id, "allocate");
	assert_string_equal(e->stage.key, "k1");

	e = journal_log_at(log, 3);
	assert_int_equal(e->kind, JOURNAL_RESOURCE);
	assert_string_equal(e->stage.key, "k1");
	assert_string_equal(json_string_value(json_object_get(e->resource, "snapshot")), "snap-1");

	e = journal_log_at(log, 4);
	assert_int_equal(e->kind, JOURNAL_CHECKPOINT);
	assert_string_equal(e->stage.id, "allocate");
	assert_string_equal(e->stage.key, "k1");
	assert_string_equal(e->disk_key, "d1");
	assert_true(e->seconds == 0.25 && e->ckpt.seconds == 0.25);
	assert_int_equal(e->ckpt.bytes_new, 1ull << 33);
	assert_int_equal(e->ckpt.bytes_stored, 7);
	assert_int_equal(e->ckpt.blocks_data, 3);

	e = journal_log_at(log, 5);
	assert_int_equal(e->kind, JOURNAL_STAGE_DONE);
	assert_true(e->seconds == 1.5);
	assert_string_equal(json_string_value(json_object_get(e->outputs, "disk.path")), "/x");

	e = journal_log_at(log, 6);
	assert_int_equal(e->kind, JOURNAL_STAGE_FAIL);
	assert_string_equal(e->stage.id, "mkfs");
	assert_true(e->seconds == 2.0);
	assert_string_equal(e->error, "mkfs: no space");
	assert_null(e->outputs);

	e = journal_log_at(log, 7);
	assert_int_equal(e->kind, JOURNAL_BUILD_END);
	assert_string_equal(e->status, "failed");
}

static void test_round_trip(void **state)
{
	struct af_error *err = NULL;
	char *dir = state_path();
	struct journal *j = open_state(dir);
	assert_int_equal(journal_log_size(journal_get_log(j)), 0);

	json_t *res = json_pack("{s:s}", "snapshot", "snap-1");
	json_t *outs = json_pack("{s:s}", "disk.path", "/x");
	struct journal_ckpt ck = { .seconds = 0.25, .bytes_new = 1ull << 33, .bytes_stored = 7,
				   .blocks_data = 3 };
	assert_int_equal(journal_append_build_start(j, "r.yaml", true, &err), 0);
	assert_int_equal(journal_append_reset(j, &err), 0);
	assert_int_equal(journal_append_stage_start(j, &ST_ALLOC, &err), 0);
	assert_int_equal(journal_append_resource(j, &ST_ALLOC, res, &err), 0);
	assert_int_equal(journal_append_checkpoint(j, &ST_ALLOC, "d1", &ck, &err), 0);
	assert_int_equal(journal_append_stage_done(j, &ST_ALLOC, 1.5, outs, &err), 0);
	assert_int_equal(journal_append_stage_fail(j, &ST_MKFS, 2.0, "mkfs: no space", &err), 0);
	assert_int_equal(journal_append_build_end(j, false, &err), 0);
	assert_null(err);
	/* The caller's values are borrowed, not changed. */
	assert_int_equal(json_object_size(res), 1);
	assert_int_equal(json_object_size(outs), 1);
	check_round_trip(journal_get_log(j));

	/* A resource must be an object; nothing is written then. */
	json_t *bad = json_string("snap-2");
	assert_int_equal(journal_append_resource(j, &ST_ALLOC, bad, &err), -1);
	assert_non_null(strstr(af_error_msg(err),
			       "stage 'allocate' reported a resource that is not an object"));
	af_error_clear(&err);
	json_decref(bad);
	assert_int_equal(journal_log_size(journal_get_log(j)), 8);
	journal_close(j);

	char *path = path_join(dir, "journal");
	assert_int_equal(check_valid_lines(path), 8);
	char *text = slurp(path);
	assert_true(str_has_prefix(text, "{\"v\":2,\"event\":\"build_start\",\"recipe\":\"r.yaml\","));
	assert_non_null(strstr(text, "\n{\"v\":2,\"event\":\"stage_start\",\"index\":1,"
				     "\"id\":\"allocate\",\"key\":\"k1\",\"time\":\""));
	assert_non_null(strstr(text, "\"event\":\"checkpoint\",\"index\":1,\"id\":\"allocate\","
				     "\"key\":\"k1\",\"disk_key\":\"d1\","));
	free(text);

	struct journal_log *read = journal_read(dir, &err);
	assert_non_null(read);
	check_round_trip(read);
	journal_log_free(read);

	/* Reopening loads what is there and appends after it. */
	j = open_state(dir);
	assert_int_equal(journal_log_size(journal_get_log(j)), 8);
	assert_int_equal(journal_append_stage_done(j, &ST_MKFS, 3, NULL, &err), 0);
	const struct journal_event *e = journal_log_at(journal_get_log(j), 8);
	assert_int_equal(e->line, 9);
	assert_int_equal(json_object_size(e->outputs), 0);
	journal_close(j);
	assert_int_equal(check_valid_lines(path), 9);

	json_decref(res);
	json_decref(outs);
	free(path);
	free(dir);
}

static void test_read_missing(void **state)
{
	struct af_error *err = NULL;
	char *dir = state_path();
	struct journal_log *evs = journal_read(dir, &err);
	assert_null(err);
	assert_non_null(evs);
	assert_int_equal(journal_log_size(evs), 0);
	journal_log_free(evs);
	free(dir);
}

/* Runs fn with log output captured; returns what was logged. */
static char *capture_log(json_t *(*fn)(const char *dir), const char *dir, json_t **out)
{
	char *logpath = path_join(tmpdir, "log.txt");
	int fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	log_init(LOG_LEVEL_ERROR, false); /* keep the terminal quiet; the stage fd gets all */
	log_set_stage_fd(fd);
	*out = fn(dir);
	log_set_stage_fd(-1);
	log_init(LOG_LEVEL_INFO, false);
	close(fd);
	char *text = slurp(logpath);
	free(logpath);
	return text;
}

static json_t *read_events(const char *dir)
{
	struct af_error *err = NULL;
	struct journal_log *log = journal_read(dir, &err);
	assert_null(err);
	json_t *n = json_integer((json_int_t)journal_log_size(log));
	journal_log_free(log);
	return n;
}

static json_t *open_and_append(const char *dir)
{
	struct af_error *err = NULL;
	struct journal *j = open_state(dir);
	json_t *n = json_integer((json_int_t)journal_log_size(journal_get_log(j)));
	assert_int_equal(journal_append_reset(j, &err), 0);
	/* The new line is numbered after the whole ones, not the torn one. */
	assert_int_equal(journal_log_at(journal_get_log(j), 2)->line, 3);
	journal_close(j);
	return n;
}

static void test_torn_last_line(void **state)
{
	const char *good = "{\"event\":\"build_start\",\"time\":\"x\"}\n"
			   "{\"event\":\"stage_start\",\"index\":0,\"time\":\"x\"}\n";
	const char *torn[] = {
	    "{\"event\":\"stage_do",		    /* cut mid-write */
	    "{\"event\":\"reset\",\"time\":\"x\"}", /* whole object, newline missing */
	    "{\"event\":\"stage_done\",\n",	    /* unparsable last line */
	};
	char *dir = state_path();
	char *path = path_join(dir, "journal");
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(dir, 0755, &err), 0);

	for (size_t i = 0; i < ARRAY_SIZE(torn); i++) {
		char *text = xasprintf("%s%s", good, torn[i]);
		write_text(path, text);

		json_t *evs = NULL;
		char *log = capture_log(read_events, dir, &evs);
		assert_int_equal(json_integer_value(evs), 2);
		char *want = xasprintf("byte %zu", strlen(good));
		assert_non_null(strstr(log, want));
		assert_non_null(strstr(log, path));
		assert_non_null(strstr(log, "warning"));
		free(want);
		free(log);
		json_decref(evs);

		/* The next append cuts the torn tail: the file is whole lines again. */
		json_t *n = NULL;
		free(capture_log(open_and_append, dir, &n));
		assert_int_equal(json_integer_value(n), 2);
		json_decref(n);
		char *after = slurp(path);
		assert_true(str_has_prefix(after, good));
		assert_int_equal(check_valid_lines(path), 3);
		free(after);
		free(text);
	}
	free(path);
	free(dir);
}

static void test_malformed_middle_line(void **state)
{
	char *dir = state_path();
	char *path = path_join(dir, "journal");
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(dir, 0755, &err), 0);
	write_text(path, "{\"event\":\"build_start\"}\n"
			 "this is not json\n"
			 "{\"event\":\"reset\"}\n");

	struct journal_log *evs = journal_read(dir, &err);
	assert_null(evs);
	assert_non_null(err);
	char *want = xasprintf("%s:2:", path);
	assert_non_null(strstr(af_error_msg(err), want));
	af_error_clear(&err);

	/* A build does not start on a damaged journal either. */
	struct journal *j = journal_open(dir, &err);
	assert_null(j);
	assert_non_null(strstr(af_error_msg(err), want));
	af_error_clear(&err);

	/* An array is valid JSON but not an event. */
	write_text(path, "{\"event\":\"build_start\"}\n[1,2]\n{\"event\":\"reset\"}\n");
	evs = journal_read(dir, &err);
	assert_null(evs);
	assert_non_null(strstr(af_error_msg(err), want));
	af_error_clear(&err);

	/* "v" that is not a format version is damage too, even on the last
	 * line: a torn write does not leave a whole object. */
	static const char *const bad_v[] = { "\"2\"", "0", "-1", "2.5", "null" };
	for (size_t i = 0; i < ARRAY_SIZE(bad_v); i++) {
		char *text = xasprintf("{\"event\":\"build_start\"}\n{\"v\":%s,\"event\":\"reset\"}\n",
				       bad_v[i]);
		write_text(path, text);
		evs = journal_read(dir, &err);
		assert_null(evs);
		assert_non_null(strstr(af_error_msg(err), want));
		assert_non_null(strstr(af_error_msg(err), "\"v\" is not a format version"));
		af_error_clear(&err);
		free(text);
	}
	free(want);
	free(path);
	free(dir);
}

static void assert_locked_by(struct af_error *err, pid_t pid)
{
	assert_non_null(err);
	assert_int_equal(af_error_errno(err), EWOULDBLOCK);
	char *want = xasprintf("(pid %ld)", (long)pid);
	assert_non_null(strstr(af_error_msg(err), want));
	assert_non_null(strstr(af_error_msg(err), "another amiforge build is using"));
	assert_non_null(strstr(af_error_msg(err), "--state"));
	free(want);
}

static void test_lock_in_process(void **state)
{
	struct af_error *err = NULL;
	char *dir = state_path();
	struct journal *j = journal_open(dir, &err);
	assert_non_null(j);

	/* flock locks belong to the open file description, so a second open in
	 * the same process conflicts like another process would. */
	struct journal *j2 = journal_open(dir, &err);
	assert_null(j2);
	assert_locked_by(err, getpid());
	af_error_clear(&err);

	journal_close(j);
	j2 = journal_open(dir, &err);
	assert_non_null(j2);
	journal_close(j2);
	free(dir);
}

static void test_lock_other_process(void **state)
{
	struct af_error *err = NULL;
	char *dir = state_path();
	int ready[2], go[2];
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Never outlive a parent that failed an assertion. */
		alarm(10);
		struct af_error *cerr = NULL;
		struct journal *cj = journal_open(dir, &cerr);
		char c = cj ? 'y' : 'n', g;
		if (write(ready[1], &c, 1) != 1 || read(go[0], &g, 1) != 1)
			_exit(3);
		journal_close(cj);
		af_error_free(cerr);
		free(dir);
		_exit(c == 'y' ? 0 : 2);
	}
	char c = 0;
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(c, 'y');

	struct journal *j = journal_open(dir, &err);
	assert_null(j);
	assert_locked_by(err, pid);
	af_error_clear(&err);

	assert_int_equal(write(go[1], "x", 1), 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* The holder is gone, and so is its lock. */
	j = journal_open(dir, &err);
	assert_non_null(j);
	journal_close(j);
	close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
	free(dir);
}

/* A journal in a fresh state directory, filled by FILL, read back. */
static struct journal_log *journal_of(const char *name, void (*fill)(struct journal *j))
{
	char *dir = path_join(tmpdir, name);
	struct journal *j = open_state(dir);
	fill(j);
	journal_close(j);
	struct af_error *err = NULL;
	struct journal_log *log = journal_read(dir, &err);
	assert_non_null(log);
	free(dir);
	return log;
}

static void fill_find_done(struct journal *j)
{
	struct journal_stage run_old = { 3, "run", "k3-old" };
	APPEND(journal_append_stage_done(j, &ST_ALLOC, 1, NULL, &aerr_));
	APPEND(journal_append_reset(j, &aerr_));
	APPEND(journal_append_stage_done(j, &ST_MKFS, 1, NULL, &aerr_));
	APPEND(journal_append_stage_start(j, &ST_RUN, &aerr_));
	APPEND(journal_append_stage_done(j, &ST_MKFS, 2, NULL, &aerr_));
	APPEND(journal_append_stage_done(j, &run_old, 1, NULL, &aerr_));
}

static void test_find_done(void **state)
{
	struct journal_log *log = journal_of("done", fill_find_done);
	struct journal_stage q;

	/* Before the reset no longer counts. */
	assert_null(journal_find_done(log, &ST_ALLOC));
	/* The newest match wins. */
	const struct journal_event *d = journal_find_done(log, &ST_MKFS);
	assert_non_null(d);
	assert_true(d->seconds == 2.0);
	/* Key, id or index mismatch: not done. */
	q = (struct journal_stage){ 2, "mkfs", "other" };
	assert_null(journal_find_done(log, &q));
	q = (struct journal_stage){ 2, "mkfs-2", "k2" };
	assert_null(journal_find_done(log, &q));
	q = (struct journal_stage){ 3, "mkfs", "k2" };
	assert_null(journal_find_done(log, &q));
	/* A start without a done is not done. */
	assert_null(journal_find_done(log, &ST_RUN));
	q = (struct journal_stage){ 3, "run", "k3-old" };
	assert_non_null(journal_find_done(log, &q));
	journal_log_free(log);

	/* A reset at the end forgets everything. */
	char *dir = path_join(tmpdir, "done");
	struct journal *j = open_state(dir);
	struct af_error *err = NULL;
	assert_int_equal(journal_append_reset(j, &err), 0);
	assert_null(journal_find_done(journal_get_log(j), &ST_MKFS));
	journal_close(j);
	free(dir);

	struct journal_log *empty = journal_read(tmpdir, &err); /* no journal there */
	assert_non_null(empty);
	assert_int_equal(journal_log_size(empty), 0);
	assert_null(journal_find_done(empty, &ST_ALLOC));
	assert_null(journal_last_stage_event(empty, 0));
	journal_log_free(empty);
}

static void fill_resources(struct journal *j)
{
	json_t *r[5];
	for (int i = 0; i < 5; i++)
		r[i] = json_pack("{s:i}", "n", i);
	APPEND(journal_append_resource(j, &ST_RUN, r[0], &aerr_));
	APPEND(journal_append_reset(j, &aerr_));
	APPEND(journal_append_resource(j, &ST_RUN, r[1], &aerr_));
	APPEND(journal_append_resource(j, &ST_MKFS, r[2], &aerr_));
	APPEND(journal_append_stage_fail(j, &ST_RUN, 1, "x", &aerr_));
	APPEND(journal_append_resource(j, &ST_RUN, r[3], &aerr_));
	for (int i = 0; i < 5; i++)
		json_decref(r[i]);
}

static void test_resources(void **state)
{
	struct journal_log *log = journal_of("res", fill_resources);

	/* One stage key since the reset, oldest first. */
	json_t *got = journal_stage_resources(log, "k3");
	assert_int_equal(json_array_size(got), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(got, 0), "n")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(got, 1), "n")), 3);
	json_decref(got);
	got = journal_stage_resources(log, "none");
	assert_non_null(got);
	assert_int_equal(json_array_size(got), 0);
	json_decref(got);

	/* Every stage (status). */
	size_t n;
	const struct journal_event **all = journal_resources(log, NULL, &n);
	assert_int_equal(n, 3);
	assert_string_equal(all[0]->stage.id, "run");
	assert_string_equal(all[1]->stage.id, "mkfs");
	assert_int_equal(json_integer_value(json_object_get(all[2]->resource, "n")), 3);
	free(all);
	assert_null(journal_resources(log, "none", &n));
	assert_int_equal(n, 0);
	journal_log_free(log);

	/* A reset after them: none count. */
	char *dir = path_join(tmpdir, "res");
	struct journal *j = open_state(dir);
	struct af_error *err = NULL;
	assert_int_equal(journal_append_reset(j, &err), 0);
	got = journal_stage_resources(journal_get_log(j), "k3");
	assert_int_equal(json_array_size(got), 0);
	json_decref(got);
	assert_null(journal_resources(journal_get_log(j), NULL, &n));
	journal_close(j);
	free(dir);
}

static void fill_last(struct journal *j)
{
	json_t *r = json_object();
	struct journal_ckpt ck = { 0 };
	APPEND(journal_append_stage_done(j, &ST_RUN, 1, NULL, &aerr_));
	APPEND(journal_append_reset(j, &aerr_));
	APPEND(journal_append_build_start(j, "a.yaml", false, &aerr_));
	APPEND(journal_append_stage_start(j, &ST_ALLOC, &aerr_));
	APPEND(journal_append_stage_done(j, &ST_ALLOC, 1, NULL, &aerr_));
	APPEND(journal_append_stage_start(j, &ST_MKFS, &aerr_));
	APPEND(journal_append_stage_fail(j, &ST_MKFS, 1, "bad", &aerr_));
	APPEND(journal_append_build_end(j, false, &aerr_));
	APPEND(journal_append_build_start(j, "b.yaml", false, &aerr_));
	APPEND(journal_append_stage_start(j, &ST_MKFS, &aerr_));
	APPEND(journal_append_stage_done(j, &ST_MKFS, 1, NULL, &aerr_));
	/* Neither a checkpoint nor a resource is a stage's last event. */
	APPEND(journal_append_checkpoint(j, &ST_MKFS, "d2", &ck, &aerr_));
	APPEND(journal_append_resource(j, &ST_MKFS, r, &aerr_));
	APPEND(journal_append_stage_start(j, &ST_ALLOC, &aerr_));
	json_decref(r);
}

static void test_last_events(void **state)
{
	struct journal_log *log = journal_of("last", fill_last);

	const struct journal_event *e = journal_last_stage_event(log, 0);
	assert_int_equal(e->kind, JOURNAL_STAGE_START);
	assert_string_equal(e->stage.id, "allocate");
	e = journal_last_stage_event(log, 2);
	assert_int_equal(e->kind, JOURNAL_STAGE_DONE);
	assert_string_equal(e->stage.key, "k2");
	/* Stage 3's only event is before the reset. */
	assert_null(journal_last_stage_event(log, 3));

	/* The last build: from the newest build_start, still running. */
	struct journal_build b;
	journal_last_build(log, &b);
	assert_non_null(b.start);
	assert_string_equal(b.start->recipe, "b.yaml");
	assert_null(b.end);
	assert_int_equal(b.n_stages, 2);
	assert_int_equal(b.stages[0]->stage.index, 1);
	assert_int_equal(b.stages[0]->kind, JOURNAL_STAGE_START);
	assert_int_equal(b.stages[1]->stage.index, 2);
	assert_int_equal(b.stages[1]->kind, JOURNAL_STAGE_DONE);
	journal_build_release(&b);
	journal_log_free(log);

	/* A journal without a build_start: everything is the last build. */
	char *dir = state_path();
	char *path = path_join(dir, "journal");
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(dir, 0700, &err), 0);
	write_text(path, "{\"event\":\"stage_fail\",\"index\":2,\"id\":\"b\",\"key\":\"kb\",\"error\":\"e\"}\n"
			 "{\"event\":\"stage_done\",\"index\":1,\"id\":\"a\",\"key\":\"ka\"}\n"
			 "{\"event\":\"build_end\",\"status\":\"ok\"}\n");
	log = journal_read(dir, &err);
	assert_non_null(log);
	journal_last_build(log, &b);
	assert_null(b.start);
	assert_string_equal(b.end->status, "ok");
	assert_int_equal(b.n_stages, 2);
	assert_string_equal(b.stages[0]->stage.id, "a");
	assert_string_equal(b.stages[1]->error, "e");
	journal_build_release(&b);
	journal_log_free(log);
	free(path);
	free(dir);
}

/* A journal as amiforge wrote it before the format had a version (format
 * 1): every event kind, with a checkpoint whose "key" is the disk key. */
static const char format1[] =
    "{\"event\":\"reset\",\"time\":\"2025-01-01T00:00:00Z\"}\n"
    "{\"event\":\"build_start\",\"recipe\":\"old.yaml\",\"fresh\":true,\"pid\":7,\"time\":\"2025-01-01T00:00:00Z\"}\n"
    "{\"event\":\"stage_start\",\"index\":1,\"id\":\"allocate\",\"key\":\"k1\",\"time\":\"t\"}\n"
    "{\"event\":\"checkpoint\",\"index\":1,\"id\":\"allocate\",\"key\":\"d1\",\"seconds\":0.5,\"bytes_new\":10,\"bytes_stored\":4,\"blocks_data\":2,\"time\":\"t\"}\n"
    "{\"event\":\"stage_done\",\"index\":1,\"id\":\"allocate\",\"key\":\"k1\",\"seconds\":1.25,\"outputs\":{\"disk.path\":\"/img\"},\"time\":\"t\"}\n"
    "\n"
    "{\"event\":\"stage_start\",\"index\":2,\"id\":\"mkfs\",\"key\":\"k2\",\"time\":\"t\"}\n"
    "{\"event\":\"resource\",\"index\":2,\"id\":\"mkfs\",\"key\":\"k2\",\"resource\":{\"ami\":\"ami-1\"},\"time\":\"t\"}\n"
    "{\"event\":\"stage_fail\",\"index\":2,\"id\":\"mkfs\",\"key\":\"k2\",\"seconds\":3,\"error\":\"boom\",\"time\":\"t\"}\n"
    "{\"event\":\"build_end\",\"status\":\"failed\",\"time\":\"t\"}\n";

static void check_format1(const struct journal_log *log)
{
	const struct journal_event *e = journal_log_at(log, 3);
	assert_int_equal(e->format, 1);
	assert_int_equal(e->kind, JOURNAL_CHECKPOINT);
	assert_string_equal(e->disk_key, "d1");
	assert_null(e->stage.key);
	assert_int_equal(e->ckpt.bytes_new, 10);
	assert_int_equal(e->ckpt.blocks_data, 2);

	e = journal_find_done(log, &ST_ALLOC);
	assert_non_null(e);
	assert_true(e->seconds == 1.25);
	assert_string_equal(json_string_value(json_object_get(e->outputs, "disk.path")), "/img");
	/* The blank line is counted: line numbers are the file's. */
	assert_int_equal(journal_log_at(log, 5)->line, 7);

	json_t *res = journal_stage_resources(log, "k2");
	assert_int_equal(json_array_size(res), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(res, 0), "ami")), "ami-1");
	json_decref(res);

	struct journal_build b;
	journal_last_build(log, &b);
	assert_string_equal(b.start->recipe, "old.yaml");
	assert_true(b.start->fresh);
	assert_int_equal(b.start->pid, 7);
	assert_string_equal(b.end->status, "failed");
	assert_true(b.n_stages >= 2); /* a third when test_format1_read appended one */
	assert_string_equal(b.stages[1]->error, "boom");
	assert_true(b.stages[1]->seconds == 3.0); /* an integer is a number too */
	journal_build_release(&b);
}

static void test_format1_read(void **state)
{
	char *dir = state_path();
	char *path = path_join(dir, "journal");
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(dir, 0700, &err), 0);
	write_text(path, format1);

	struct journal_log *log = journal_read(dir, &err);
	assert_non_null(log);
	assert_int_equal(journal_log_size(log), 9);
	check_format1(log);
	journal_log_free(log);

	/* A build on it appends format 2 after the format-1 lines; both read. */
	struct journal *j = open_state(dir);
	check_format1(journal_get_log(j));
	assert_int_equal(journal_append_stage_done(j, &ST_RUN, 4, NULL, &err), 0);
	journal_close(j);
	log = journal_read(dir, &err);
	assert_non_null(log);
	check_format1(log);
	const struct journal_event *e = journal_log_at(log, 9);
	assert_int_equal(e->format, 2);
	assert_int_equal(e->line, 11);
	assert_ptr_equal(journal_find_done(log, &ST_RUN), e);
	journal_log_free(log);
	char *text = slurp(path);
	assert_true(str_has_prefix(text, format1));
	free(text);
	free(path);
	free(dir);
}

static void assert_newer_refused(struct af_error *err, const char *path, unsigned line)
{
	assert_non_null(err);
	char *want = xasprintf("%s:%u: written by a newer amiforge (journal format 3; this one reads "
			       "formats up to 2); use that version, or build with --fresh to start "
			       "this state over",
			       path, line);
	assert_string_equal(af_error_msg(err), want);
	free(want);
}

static void test_newer_format_refused(void **state)
{
	char *dir = state_path();
	char *path = path_join(dir, "journal");
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(dir, 0700, &err), 0);
	/* Its stage_done must never be taken for this build's: its meaning may
	 * have changed; and its own reset is no reset to this build. */
	write_text(path, "{\"event\":\"build_start\",\"recipe\":\"r\"}\n"
			 "{\"v\":3,\"event\":\"stage_done\",\"index\":1,\"id\":\"allocate\",\"key\":\"k1\"}\n"
			 "{\"v\":3,\"event\":\"reset\"}\n"
			 "{\"v\":2,\"event\":\"stage_start\",\"index\":2,\"id\":\"mkfs\",\"key\":\"k2\"}\n");

	assert_null(journal_read(dir, &err));
	assert_newer_refused(err, path, 2);
	af_error_clear(&err);
	assert_null(journal_open(dir, &err));
	assert_newer_refused(err, path, 2);
	af_error_clear(&err);

	/* --fresh: opened; a reset makes the journal readable again. */
	struct journal *j = journal_open_fresh(dir, &err);
	assert_non_null(j);
	assert_null(err);
	const struct journal_event *e = journal_log_at(journal_get_log(j), 1);
	assert_int_equal(e->format, 3);
	assert_int_equal(e->kind, JOURNAL_UNKNOWN);
	assert_null(e->stage.id); /* never read */
	assert_int_equal(journal_append_reset(j, &err), 0);
	assert_null(journal_find_done(journal_get_log(j), &ST_ALLOC));
	assert_int_equal(journal_append_stage_done(j, &ST_ALLOC, 1, NULL, &err), 0);
	journal_close(j);

	struct journal_log *log = journal_read(dir, &err);
	assert_non_null(log);
	assert_non_null(journal_find_done(log, &ST_ALLOC));
	journal_log_free(log);
	j = open_state(dir);
	journal_close(j);

	/* A newer line after this build's reset is refused again. */
	FILE *f = fopen(path, "a");
	assert_non_null(f);
	fputs("{\"v\":7,\"event\":\"build_end\"}\n", f);
	assert_int_equal(fclose(f), 0);
	assert_null(journal_read(dir, &err));
	assert_non_null(strstr(af_error_msg(err), ":7: written by a newer amiforge (journal format 7;"));
	af_error_clear(&err);
	free(path);
	free(dir);
}

/* A query on a journal opened for --fresh before its reset is a bug: it
 * would answer from lines it cannot read. */
static void test_query_before_fresh_reset(void **state)
{
	char *dir = state_path();
	char *path = path_join(dir, "journal");
	struct af_error *err = NULL;
	assert_int_equal(mkdir_p(dir, 0700, &err), 0);
	write_text(path, "{\"v\":3,\"event\":\"build_start\"}\n");
	struct journal *j = journal_open_fresh(dir, &err);
	assert_non_null(j);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, STDERR_FILENO);
		journal_last_stage_event(journal_get_log(j), 0);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	journal_close(j);
	free(path);
	free(dir);
}

/* JSON holds UTF-8 only: a message in another encoding is kept, with '?'
 * for its other bytes, not lost (or worse, the line). */
static void test_non_utf8_text(void **state)
{
	struct af_error *err = NULL;
	char *dir = state_path();
	struct journal *j = open_state(dir);
	assert_int_equal(journal_append_stage_fail(j, &ST_MKFS, 1, "caf\xe9 \xff", &err), 0);
	assert_string_equal(journal_log_at(journal_get_log(j), 0)->error, "caf? ?");
	journal_close(j);
	free(dir);
}

static void test_unwritable_state(void **state)
{
	struct af_error *err = NULL;
	char *file = path_join(tmpdir, "regular");
	write_text(file, "x");
	char *dir = path_join(file, "state");

	struct journal *j = journal_open(dir, &err);
	assert_null(j);
	assert_non_null(err);
	assert_int_equal(af_error_errno(err), ENOTDIR);
	assert_non_null(strstr(af_error_msg(err), dir));
	assert_non_null(strstr(af_error_msg(err), strerror(ENOTDIR)));
	assert_non_null(strstr(af_error_msg(err), "--state"));
	af_error_clear(&err);

	/* journal_read on such a path fails cleanly too. */
	struct journal_log *evs = journal_read(dir, &err);
	assert_null(evs);
	assert_int_equal(af_error_errno(err), ENOTDIR);
	af_error_clear(&err);
	free(dir);
	free(file);
}


/* A fresh machine takes the store's journal: its events replace the local
 * ones, a torn tail is dropped, and appends go on after them. */
static void test_adopt(void **state)
{
	char *st = state_path();
	struct af_error *err = NULL;
	struct journal *j = journal_open(st, &err);
	assert_non_null(j);
	struct journal_stage s1 = { 1, "alloc", "k1" };
	assert_int_equal(journal_append_stage_start(j, &s1, &err), 0);
	const char *remote =
		"{\"v\":2,\"event\":\"stage_done\",\"index\":1,\"id\":\"alloc\",\"key\":\"k0\",\"seconds\":1,\"outputs\":{\"a\":1},\"time\":\"t\"}\n"
		"{\"v\":2,\"event\":\"stage_done\",\"index\":1,\"id\":\"alloc\",\"key\":\"k1\",\"seconds\":2,\"outputs\":{\"a\":2},\"time\":\"t\"}\n"
		"{\"v\":2,\"event\":\"sta";
	assert_int_equal(journal_adopt(j, remote, strlen(remote), &err), 0);
	assert_null(err);
	const struct journal_log *log = journal_get_log(j);
	assert_int_equal(journal_log_size(log), 2);
	assert_non_null(journal_find_done(log, &s1));
	/* The previous run of the stage: the newest done with another key. */
	const struct journal_event *prev = journal_find_previous(log, "alloc", "k2");
	assert_non_null(prev);
	assert_string_equal(prev->stage.key, "k1");
	prev = journal_find_previous(log, "alloc", "k1");
	assert_non_null(prev);
	assert_string_equal(prev->stage.key, "k0");
	assert_null(journal_find_previous(log, "other", "k1"));
	assert_int_equal(journal_append_build_end(j, true, &err), 0);
	journal_close(j);
	char *jpath = path_join(st, "journal");
	assert_int_equal(check_valid_lines(jpath), 3);
	free(jpath);
	free(st);
}

/* A journal of a newer format is refused, and the local one stays. */
static void test_adopt_newer_refused(void **state)
{
	char *st = state_path();
	struct af_error *err = NULL;
	struct journal *j = journal_open(st, &err);
	assert_non_null(j);
	struct journal_stage s1 = { 1, "alloc", "k1" };
	assert_int_equal(journal_append_stage_start(j, &s1, &err), 0);
	const char *remote = "{\"v\":99,\"event\":\"stage_done\",\"time\":\"t\"}\n";
	assert_int_equal(journal_adopt(j, remote, strlen(remote), &err), -1);
	assert_non_null(strstr(af_error_msg(err), "newer"));
	af_error_free(err);
	assert_int_equal(journal_log_size(journal_get_log(j)), 1);
	journal_close(j);
	free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_missing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_torn_last_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_middle_line, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_in_process, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock_other_process, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_find_done, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_resources, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_last_events, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_format1_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_newer_format_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_query_before_fresh_reset, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_non_utf8_text, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unwritable_state, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_adopt_newer_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
