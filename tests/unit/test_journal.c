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

static json_t *ev_done(int index, const char *id, const char *key, double seconds)
{
	return json_pack("{s:s, s:i, s:s, s:s, s:f}", "event", "stage_done", "index", index, "id",
			 id, "key", key, "seconds", seconds);
}

static void test_round_trip(void **state)
{
	struct af_error *err = NULL;
	char *dir = state_path();
	struct journal *j = journal_open(dir, &err);
	assert_null(err);
	assert_non_null(j);
	assert_int_equal(json_array_size(journal_events(j)), 0);

	json_t *start = json_pack("{s:s, s:s, s:b, s:i}", "event", "build_start", "recipe",
				  "r.yaml", "fresh", 0, "pid", 42);
	json_t *done = ev_done(0, "allocate", "k0", 1.5);
	assert_int_equal(journal_append(j, start, &err), 0);
	assert_int_equal(journal_append(j, done, &err), 0);
	assert_null(err);
	/* The caller's event is borrowed, not changed. */
	assert_null(json_object_get(start, "time"));
	const json_t *evs = journal_events(j);
	assert_int_equal(json_array_size(evs), 2);
	const char *t = json_string_value(json_object_get(json_array_get(evs, 1), "time"));
	assert_non_null(t);
	assert_int_equal(strlen(t), strlen("2024-01-02T03:04:05Z"));
	assert_int_equal(t[strlen(t) - 1], 'Z');
	journal_close(j);

	char *path = path_join(dir, "journal");
	assert_int_equal(check_valid_lines(path), 2);

	json_t *read = journal_read(dir, &err);
	assert_non_null(read);
	assert_int_equal(json_array_size(read), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(read, 0), "recipe")),
			    "r.yaml");
	assert_non_null(journal_find_done(read, 0, "allocate", "k0"));
	json_decref(read);

	/* Reopening loads what is there and appends after it. */
	j = journal_open(dir, &err);
	assert_non_null(j);
	assert_int_equal(json_array_size(journal_events(j)), 2);
	assert_int_equal(journal_append(j, done, &err), 0);
	journal_close(j);
	assert_int_equal(check_valid_lines(path), 3);

	json_decref(start);
	json_decref(done);
	free(path);
	free(dir);
}

static void test_read_missing(void **state)
{
	struct af_error *err = NULL;
	char *dir = state_path();
	json_t *evs = journal_read(dir, &err);
	assert_null(err);
	assert_non_null(evs);
	assert_int_equal(json_array_size(evs), 0);
	json_decref(evs);
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
	json_t *evs = journal_read(dir, &err);
	assert_null(err);
	return evs;
}

static json_t *open_and_append(const char *dir)
{
	struct af_error *err = NULL;
	struct journal *j = journal_open(dir, &err);
	assert_null(err);
	assert_non_null(j);
	json_t *n = json_integer((json_int_t)json_array_size(journal_events(j)));
	json_t *ev = json_pack("{s:s}", "event", "reset");
	assert_int_equal(journal_append(j, ev, &err), 0);
	json_decref(ev);
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
		assert_int_equal(json_array_size(evs), 2);
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

	json_t *evs = journal_read(dir, &err);
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

static void test_find_done(void **state)
{
	json_t *evs = json_array();
	json_array_append_new(evs, ev_done(0, "allocate", "k0", 1));
	json_array_append_new(evs, json_pack("{s:s}", "event", "reset"));
	json_array_append_new(evs, ev_done(1, "mkfs", "k1", 1));
	json_array_append_new(evs, json_pack("{s:s, s:i, s:s, s:s}", "event", "stage_start",
					     "index", 2, "id", "run", "key", "k2"));
	json_array_append_new(evs, ev_done(1, "mkfs", "k1", 2));
	json_array_append_new(evs, ev_done(2, "run", "k2-old", 1));

	/* Before the reset no longer counts. */
	assert_null(journal_find_done(evs, 0, "allocate", "k0"));
	/* The newest match wins. */
	const json_t *d = journal_find_done(evs, 1, "mkfs", "k1");
	assert_non_null(d);
	assert_true(json_real_value(json_object_get(d, "seconds")) == 2.0);
	/* Key, id or index mismatch: not done. */
	assert_null(journal_find_done(evs, 1, "mkfs", "other"));
	assert_null(journal_find_done(evs, 1, "mkfs-2", "k1"));
	assert_null(journal_find_done(evs, 2, "mkfs", "k1"));
	/* A start without a done is not done. */
	assert_null(journal_find_done(evs, 2, "run", "k2"));
	assert_non_null(journal_find_done(evs, 2, "run", "k2-old"));

	json_array_append_new(evs, json_pack("{s:s}", "event", "reset"));
	assert_null(journal_find_done(evs, 1, "mkfs", "k1"));
	json_decref(evs);

	json_t *empty = json_array();
	assert_null(journal_find_done(empty, 0, "allocate", "k0"));
	json_decref(empty);
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
	json_t *evs = journal_read(dir, &err);
	assert_null(evs);
	assert_int_equal(af_error_errno(err), ENOTDIR);
	af_error_clear(&err);
	free(dir);
	free(file);
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
	    cmocka_unit_test_setup_teardown(test_unwritable_state, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
