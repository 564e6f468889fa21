/* SPDX-License-Identifier: Apache-2.0 */
/* The runner/stage channel over a real fork: resources arrive in order and
 * each is acknowledged before the child goes on; a refused resource fails in
 * the child; a result message is delivered; a message larger than the pipe
 * buffer gets through; a line that is neither message is not taken for
 * either. */
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <sys/wait.h>

#include "amiforge/channel.h"
#include "amiforge/error.h"

struct sink {
	json_t *got;
	int refuse_at; /* 1-based message number to refuse, 0 = none */
	bool stray;    /* the child also writes lines that are neither message */
};

static int on_resource(void *arg, const json_t *res, struct af_error **err)
{
	struct sink *s = arg;
	json_array_append(s->got, (json_t *)res);
	if (s->refuse_at && (int)json_array_size(s->got) == s->refuse_at)
		return af_error_set(err, 0, "journal full");
	return 0;
}

/* Lines a confused writer could put in the pipe: not JSON, an object that
 * looks like a bare result, a journal-looking line. */
static const char stray_lines[] = "not json\n"
				  "{\"ok\":true,\"sent\":99}\n"
				  "{\"event\":\"resource\",\"n\":98}\n";

/* Child: n resources (the third one large), then a result saying how many
 * sends succeeded. */
static int child_main(struct stage_channel *ch, int n, bool stray)
{
	channel_child_side(ch);
	int ok = 0;
	for (int i = 0; i < n; i++) {
		struct af_error *err = NULL;
		json_t *r = json_pack("{s:i}", "n", i);
		if (i == 2) {
			char *big = xmalloc(200000);
			memset(big, 'x', 199999);
			big[199999] = '\0';
			json_object_set_new(r, "big", json_string(big));
			free(big);
		}
		if (channel_send_resource(ch, r, &err) == 0)
			ok++;
		af_error_free(err);
		json_decref(r);
	}
	json_t *res = json_pack("{s:b, s:i}", "ok", 1, "sent", ok);
	int w = channel_send_result(ch, res);
	json_decref(res);
	/* After the result: a line taken for a result would replace it. */
	if (stray && write(ch->msg_wr, stray_lines, strlen(stray_lines)) < 0)
		return 1;
	return w == 0 ? 0 : 1;
}

static json_t *run(int n, struct sink *s)
{
	struct stage_channel ch;
	struct af_error *err = NULL;
	assert_int_equal(channel_open(&ch, &err), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_main(&ch, n, s->stray));
	channel_parent_side(&ch);
	json_t *result = NULL;
	int status = 0;
	for (;;) {
		struct af_error *e = NULL;
		channel_pump(&ch, on_resource, s, &result, &e);
		af_error_free(e);
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		struct pollfd p = { .fd = ch.msg_rd, .events = POLLIN };
		poll(&p, 1, 100);
	}
	channel_pump(&ch, on_resource, s, &result, &err);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	channel_close(&ch);
	return result;
}

static void test_resources_in_order(void **state)
{
	(void)state;
	struct sink s = { .got = json_array() };
	json_t *result = run(5, &s);
	assert_int_equal(json_array_size(s.got), 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(json_integer_value(json_object_get(json_array_get(s.got, i), "n")), i);
	assert_int_equal(strlen(json_string_value(json_object_get(json_array_get(s.got, 2), "big"))),
			 199999);
	assert_non_null(result);
	assert_int_equal(json_integer_value(json_object_get(result, "sent")), 5);
	json_decref(result);
	json_decref(s.got);
}

static void test_refused_resource_fails_in_child(void **state)
{
	(void)state;
	struct sink s = { .got = json_array(), .refuse_at = 2 };
	json_t *result = run(4, &s);
	assert_int_equal(json_array_size(s.got), 4);
	/* the second send failed, the others were acknowledged */
	assert_int_equal(json_integer_value(json_object_get(result, "sent")), 3);
	json_decref(result);
	json_decref(s.got);
}

static void test_stray_lines_ignored(void **state)
{
	(void)state;
	struct sink s = { .got = json_array(), .stray = true };
	json_t *result = run(2, &s);
	assert_int_equal(json_array_size(s.got), 2);
	assert_non_null(result);
	assert_int_equal(json_integer_value(json_object_get(result, "sent")), 2);
	assert_true(json_is_true(json_object_get(result, "ok")));
	json_decref(result);
	json_decref(s.got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resources_in_order),
		cmocka_unit_test(test_refused_resource_fails_in_child),
		cmocka_unit_test(test_stray_lines_ignored),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
