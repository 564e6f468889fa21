/* SPDX-License-Identifier: Apache-2.0 */
/* The IMDS client against a small in-process server: IMDSv2 with one
 * cached token for every lookup, a new token once on a 401, the v1
 * fallback, 403/404 as "not available", other failures as errors, the
 * environment's timeout (fractions of a second) on a server that never
 * answers; a disabled or unreachable service is "not available" quickly;
 * the process-wide client. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "testutil.h"

#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

/* ---- a scripted metadata service ---- */

struct fake {
	int fd;
	int port;
	pthread_t thread;
	volatile bool stop;
	volatile bool answer; /* false: read requests, never answer */
	pthread_mutex_t lock;
	/* behaviour */
	int put_status;      /* the token PUT's status (200: a token) */
	int get_status;      /* 0: serve the tree; else this status for every GET */
	bool v2_only;        /* GETs without a token: 401 */
	int token_gen;       /* tokens of older generations are refused (401) */
	bool empty_region;   /* placement/region answers "" */
	/* what it saw */
	int puts, gets, gets_v1;
};

static const char *fake_lookup(const struct fake *f, const char *path)
{
	if (!strcmp(path, "/latest/meta-data/placement/region"))
		return f->empty_region ? "\n" : "ap-southeast-2\n";
	if (!strcmp(path, "/latest/meta-data/instance-id"))
		return "i-0123456789abcdef0";
	return NULL;
}

static void fake_reply(int c, int status, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", status, strlen(body));
	if (write(c, head, (size_t)n) < 0 || write(c, body, strlen(body)) < 0)
		return;
}

/* One request per connection: headers (a token PUT has no body to read). */
static void fake_serve(struct fake *f, int c)
{
	char req[4096] = "";
	size_t len = 0;
	while (len < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
		ssize_t r = read(c, req + len, sizeof(req) - 1 - len);
		if (r <= 0)
			return;
		len += (size_t)r;
		req[len] = '\0';
	}
	if (!f->answer) {
		while (!f->stop)
			usleep(20000);
		return;
	}
	char method[8] = "", path[256] = "";
	if (sscanf(req, "%7s %255s", method, path) != 2)
		return;
	const char *tok = strcasestr(req, "\r\nX-aws-ec2-metadata-token:");
	pthread_mutex_lock(&f->lock);
	if (!strcmp(method, "PUT")) {
		f->puts++;
		char body[32];
		snprintf(body, sizeof(body), "token-%d", f->token_gen);
		fake_reply(c, f->put_status, f->put_status == 200 ? body : "");
	} else if (tok) {
		f->gets++;
		int gen = -1;
		sscanf(tok, "\r\nX-aws-ec2-metadata-token: token-%d", &gen);
		const char *body = fake_lookup(f, path);
		if (gen != f->token_gen)
			fake_reply(c, 401, "");
		else if (f->get_status)
			fake_reply(c, f->get_status, "");
		else
			fake_reply(c, body ? 200 : 404, body ? body : "");
	} else {
		f->gets_v1++;
		const char *body = fake_lookup(f, path);
		if (f->v2_only)
			fake_reply(c, 401, "");
		else if (f->get_status)
			fake_reply(c, f->get_status, "");
		else
			fake_reply(c, body ? 200 : 404, body ? body : "");
	}
	pthread_mutex_unlock(&f->lock);
}

static void *fake_main(void *p)
{
	struct fake *f = p;
	while (!f->stop) {
		struct pollfd pfd = { .fd = f->fd, .events = POLLIN };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int c = accept(f->fd, NULL, NULL);
		if (c < 0)
			continue;
		fake_serve(f, c);
		close(c);
	}
	return NULL;
}

static struct fake *fake_start(void)
{
	struct fake *f = xcalloc(1, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->answer = true;
	f->put_status = 200;
	f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->fd, 16), 0);
	assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &al), 0);
	f->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
	return f;
}

static void fake_stop(struct fake *f)
{
	f->stop = true;
	pthread_join(f->thread, NULL);
	close(f->fd);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static struct imds_client *fake_client(const struct fake *f)
{
	_cleanup_free_ char *u = xasprintf("http://127.0.0.1:%d/", f->port);
	return imds_client_new(u);
}

static int setup(void **state)
{
	unsetenv("AWS_EC2_METADATA_DISABLED");
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	unsetenv("AWS_METADATA_SERVICE_TIMEOUT");
	unsetenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS");
	return 0;
}

/* ---- tests ---- */

static void test_v2_token_cached(void **state)
{
	struct fake *f = fake_start();
	struct imds_client *cl = fake_client(f);
	_cleanup_error_ struct af_error *err = NULL;
	for (int i = 0; i < 3; i++) {
		char *v = NULL;
		assert_int_equal(imds_region(cl, &v, &err), 0);
		assert_string_equal(v, "ap-southeast-2");
		free(v);
	}
	char *id = NULL;
	assert_int_equal(imds_instance_id(cl, &id, &err), 0);
	assert_string_equal(id, "i-0123456789abcdef0");
	free(id);
	assert_int_equal(f->puts, 1);
	assert_int_equal(f->gets, 4);
	assert_int_equal(f->gets_v1, 0);
	assert_false(imds_client_used_v1(cl));

	/* The service forgot the token (a restart): one new token, then on. */
	f->token_gen++;
	char *v = NULL;
	assert_int_equal(imds_region(cl, &v, &err), 0);
	free(v);
	assert_int_equal(f->puts, 2);
	imds_client_free(cl);
	fake_stop(f);
}

static void test_v1_fallback(void **state)
{
	static const int refusals[] = { 403, 404, 405 };
	for (size_t i = 0; i < ARRAY_SIZE(refusals); i++) {
		struct fake *f = fake_start();
		f->put_status = refusals[i];
		struct imds_client *cl = fake_client(f);
		_cleanup_error_ struct af_error *err = NULL;
		char *v = NULL;
		assert_int_equal(imds_region(cl, &v, &err), 0);
		assert_string_equal(v, "ap-southeast-2");
		free(v);
		assert_int_equal(imds_region(cl, &v, &err), 0);
		free(v);
		assert_true(imds_client_used_v1(cl));
		/* Learnt once: no second token request. */
		assert_int_equal(f->puts, 1);
		assert_int_equal(f->gets_v1, 2);
		imds_client_free(cl);
		fake_stop(f);
	}
}

static void test_not_available_and_errors(void **state)
{
	struct fake *f = fake_start();
	struct imds_client *cl = fake_client(f);
	_cleanup_error_ struct af_error *err = NULL;
	char *v = NULL;
	/* No such item; IMDS turned off for this instance. */
	assert_int_equal(imds_get(cl, "meta-data/nothing", &v, &err), 1);
	f->get_status = 403;
	assert_int_equal(imds_get(cl, "meta-data/instance-id", &v, &err), 1);
	assert_null(err);
	/* Anything else is an error naming the path and the service. */
	f->get_status = 500;
	assert_int_equal(imds_get(cl, "meta-data/instance-id", &v, &err), -1);
	_cleanup_free_ char *want = xasprintf("instance metadata meta-data/instance-id at "
					      "http://127.0.0.1:%d: HTTP 500", f->port);
	assert_string_equal(af_error_msg(err), want);
	af_error_clear(&err);
	f->get_status = 0;
	assert_int_equal(imds_region(cl, &v, &err), 0);
	free(v);
	f->empty_region = true;
	assert_int_equal(imds_region(cl, &v, &err), -1);
	assert_string_equal(af_error_msg(err), "instance metadata meta-data/placement/region: empty answer");
	af_error_clear(&err);
	imds_client_free(cl);

	/* A token request that fails otherwise is an error too. */
	f->put_status = 500;
	cl = fake_client(f);
	assert_int_equal(imds_get(cl, "meta-data/instance-id", &v, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "the token request answered HTTP 500"));
	imds_client_free(cl);
	fake_stop(f);
}

/* AWS_METADATA_SERVICE_TIMEOUT in seconds, fractions allowed: a service
 * that takes the connection and never answers is given twice that. */
static void test_timeout_from_environment(void **state)
{
	struct fake *f = fake_start();
	f->answer = false;
	struct imds_client *cl = fake_client(f);
	_cleanup_error_ struct af_error *err = NULL;
	char *v = NULL;
	setenv("AWS_METADATA_SERVICE_TIMEOUT", "0.3", 1);
	double t0 = now_monotonic();
	assert_int_equal(imds_get(cl, "meta-data/instance-id", &v, &err), 1);
	double took = now_monotonic() - t0;
	assert_true(took >= 0.5 && took < 1.5);
	assert_null(err);
	unsetenv("AWS_METADATA_SERVICE_TIMEOUT");
	imds_client_free(cl);
	fake_stop(f);
}

static void test_unavailable(void **state)
{
	_cleanup_error_ struct af_error *err = NULL;
	char *body = NULL;
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	struct imds_client *cl = imds_client_new("http://127.0.0.1:9");
	assert_int_equal(imds_get(cl, "meta-data/instance-id", &body, &err), 1);
	unsetenv("AWS_EC2_METADATA_DISABLED");
	/* port 9 (discard) refuses at once on 127.0.0.1 */
	double t0 = now_monotonic();
	assert_int_equal(imds_get(cl, "meta-data/instance-id", &body, &err), 1);
	assert_true(now_monotonic() - t0 < 5);
	assert_null(err);
	imds_client_free(cl);
}

/* One client for the process; its endpoint follows the environment. */
static void test_default_client(void **state)
{
	struct imds_client *a = imds_client_default();
	assert_ptr_equal(a, imds_client_default());
	assert_ptr_equal(imds_iface_or_default(NULL), imds_client_iface(a));
	_cleanup_free_ char *e1 = imds_client_endpoint(a);
	assert_string_equal(e1, "http://169.254.169.254");
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9//", 1);
	_cleanup_free_ char *e2 = imds_client_endpoint(a);
	assert_string_equal(e2, "http://127.0.0.1:9");
	const struct imds_iface *i = imds_iface_or_default(NULL);
	_cleanup_free_ char *w = i->where(i->data);
	assert_string_equal(w, "http://127.0.0.1:9");
	char *body = NULL;
	_cleanup_error_ struct af_error *err = NULL;
	assert_int_equal(i->get(i->data, "meta-data/instance-id", &body, &err), 1);
	unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_v2_token_cached, setup),
		cmocka_unit_test_setup(test_v1_fallback, setup),
		cmocka_unit_test_setup(test_not_available_and_errors, setup),
		cmocka_unit_test_setup(test_timeout_from_environment, setup),
		cmocka_unit_test_setup(test_unavailable, setup),
		cmocka_unit_test_setup(test_default_client, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
