/* SPDX-License-Identifier: Apache-2.0 */
/* The boot test's instance metadata service: just enough of EC2's IMDS
 * (FORMATS.md §5) for an image's first-boot script to fetch its key the way
 * it does on EC2, with IMDSv2 tokens first and IMDSv1 as the fallback. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/imds_responder.h"
#include "amiforge/util.h"

/* Requests are a line and a few headers; anything larger is not a client
 * of the metadata service. */
#define IMDS_MAX_HEAD 16384
#define IMDS_MAX_BODY 4096
#define IMDS_TTL_MAX 21600

/* ---- configuration files ---- */

static char *imds_read_value(const char *dir, const char *name, const char *def, struct af_error **err)
{
	_cleanup_free_ char *p = path_join(dir, name);
	struct af_error *e = NULL;
	char *v = read_file(p, NULL, &e);
	if (!v) {
		if (def && af_error_errno(e) == ENOENT) {
			af_error_free(e);
			return xstrdup(def);
		}
		af_error_set(err, 0, "%s", af_error_msg(e));
		af_error_free(e);
		return NULL;
	}
	v[strcspn(v, "\r\n")] = '\0';
	return v;
}

static const char *const imds_mode_names[] = {
	[IMDS_OPTIONAL] = "optional",
	[IMDS_REQUIRED] = "required",
	[IMDS_V1_ONLY] = "v1-only",
};

int imds_responder_config_load(const char *dir, struct imds_config *out, struct af_error **err)
{
	struct imds_config c = { 0 };
	_cleanup_free_ char *mode = NULL;

	if (!(c.token = imds_read_value(dir, "token", NULL, err)) ||
	    !(c.openssh_key = imds_read_value(dir, "openssh-key", NULL, err)) ||
	    !(c.instance_id = imds_read_value(dir, "instance-id", "i-0123456789abcdef0", err)) ||
	    !(c.region = imds_read_value(dir, "region", "us-east-1", err)) ||
	    !(c.key_name = imds_read_value(dir, "key-name", "amiforge", err)) ||
	    !(mode = imds_read_value(dir, "mode", "optional", err))) {
		imds_responder_config_release(&c);
		return af_error_wrap(err, "metadata responder configuration in '%s'", dir);
	}
	bool found = false;
	for (size_t i = 0; i < ARRAY_SIZE(imds_mode_names); i++)
		if (!strcmp(mode, imds_mode_names[i])) {
			c.mode = (enum imds_mode)i;
			found = true;
		}
	if (!found || !*c.token) {
		imds_responder_config_release(&c);
		return af_error_set(err, 0, "metadata responder configuration in '%s': %s", dir,
				    found ? "empty token" : "mode must be optional, required or v1-only");
	}
	*out = c;
	return 0;
}

int imds_responder_config_save(const char *dir, const struct imds_config *c, struct af_error **err)
{
	const char *files[][2] = {
		{ "token", c->token },
		{ "openssh-key", c->openssh_key },
		{ "instance-id", c->instance_id },
		{ "region", c->region },
		{ "key-name", c->key_name },
		{ "mode", imds_mode_names[c->mode] },
	};
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		if (!files[i][1])
			continue;
		_cleanup_free_ char *p = path_join(dir, files[i][0]);
		_cleanup_free_ char *v = xasprintf("%s\n", files[i][1]);
		if (write_file_atomic(p, v, strlen(v), 0600, err) < 0)
			return -1;
	}
	return 0;
}

void imds_responder_config_release(struct imds_config *c)
{
	free(c->token);
	free(c->openssh_key);
	free(c->key_name);
	free(c->instance_id);
	free(c->region);
	*c = (struct imds_config){ 0 };
}

void imds_responder_reply_release(struct imds_reply *r)
{
	strbuf_release(&r->out);
	free(r->log_line);
	*r = (struct imds_reply){ 0 };
}

/* ---- one request ---- */

struct imds_request {
	char method[16];
	char path[1024];
	bool http10;
	const char *token;      /* X-aws-ec2-metadata-token, or NULL */
	const char *ttl;        /* X-aws-ec2-metadata-token-ttl-seconds, or NULL */
	bool forwarded;         /* X-Forwarded-For present: EC2 refuses the PUT */
	bool conn_close, conn_keep_alive;
	size_t content_length;
};

static const char *imds_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	default: return "Error";
	}
}

static void imds_respond(struct imds_reply *r, int status, const char *body, const char *ttl)
{
	r->status = status;
	strbuf_addf(&r->out, "HTTP/1.1 %d %s\r\nServer: EC2ws\r\nContent-Type: text/plain\r\n", status,
		    imds_reason(status));
	if (ttl)
		strbuf_addf(&r->out, "X-aws-ec2-metadata-token-ttl-seconds: %s\r\n", ttl);
	strbuf_addf(&r->out, "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s", strlen(body),
		    r->close ? "close" : "keep-alive", body);
}

/* Finds the end of the head ("\r\n\r\n", or "\n\n" from a sloppy client). */
static const char *imds_head_end(const char *buf, size_t len, size_t *sep)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] == '\n' && buf[i + 1] == '\n') {
			*sep = 2;
			return buf + i;
		}
		if (i + 3 < len && !memcmp(buf + i, "\r\n\r\n", 4)) {
			*sep = 4;
			return buf + i;
		}
	}
	return NULL;
}

/* Header values point into head, which is NUL-terminated per line here. */
static int imds_parse_header(char *line, struct imds_request *q)
{
	char *colon = strchr(line, ':');
	if (!colon || colon == line)
		return -1;
	*colon = '\0';
	char *v = colon + 1;
	v += strspn(v, " \t");
	v[strcspn(v, "\r")] = '\0';
	if (!strcasecmp(line, "X-aws-ec2-metadata-token"))
		q->token = v;
	else if (!strcasecmp(line, "X-aws-ec2-metadata-token-ttl-seconds"))
		q->ttl = v;
	else if (!strcasecmp(line, "X-Forwarded-For"))
		q->forwarded = true;
	else if (!strcasecmp(line, "Connection")) {
		q->conn_close = strcasestr(v, "close") != NULL;
		q->conn_keep_alive = strcasestr(v, "keep-alive") != NULL;
	} else if (!strcasecmp(line, "Content-Length")) {
		char *end;
		errno = 0;
		unsigned long n = strtoul(v, &end, 10);
		if (errno || end == v || *end || n > IMDS_MAX_BODY)
			return -1;
		q->content_length = n;
	} else if (!strcasecmp(line, "Transfer-Encoding")) {
		return -1;  /* no chunked bodies: nothing here takes a body */
	}
	return 0;
}

static int imds_parse_head(char *head, struct imds_request *q)
{
	char *save = NULL;
	char *line = strtok_r(head, "\n", &save);
	char version[16];
	if (!line || sscanf(line, "%15s %1023s %15s", q->method, q->path, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0 || q->path[0] != '/')
		return -1;
	q->http10 = !strncmp(version, "HTTP/1.0", 8);
	while ((line = strtok_r(NULL, "\n", &save)))
		if (*line != '\r' && imds_parse_header(line, q) < 0)
			return -1;
	return 0;
}

/* The metadata tree: leaves, from which the listings are derived. */
struct imds_leaf {
	const char *path;
	char *value;
};

static size_t imds_leaves(const struct imds_config *c, struct imds_leaf *l, size_t max)
{
	struct imds_leaf all[] = {
		{ "ami-id", xstrdup("ami-0a0b0c0d0e0f01234") },
		{ "hostname", xasprintf("ip-169-254-169-15.%s.compute.internal", c->region) },
		{ "instance-id", xstrdup(c->instance_id) },
		{ "instance-type", xstrdup("t3.micro") },
		{ "local-hostname", xasprintf("ip-169-254-169-15.%s.compute.internal", c->region) },
		{ "local-ipv4", xstrdup("169.254.169.15") },
		{ "placement/availability-zone", xasprintf("%sa", c->region) },
		{ "placement/region", xstrdup(c->region) },
		{ "public-keys/0/openssh-key", xasprintf("%s\n", c->openssh_key) },
	};
	if (max < ARRAY_SIZE(all))
		BUG("imds leaf table too small");
	memcpy(l, all, sizeof(all));
	return ARRAY_SIZE(all);
}

static void imds_leaves_free(struct imds_leaf *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i].value);
}

/* A listing: the distinct next components under DIR ("" or ending in "/"),
 * "name/" for directories, LF-separated (no trailing LF, as EC2 does).
 * Leaves are sorted, so a repeated component always follows its twin. */
static bool imds_list(const struct imds_leaf *l, size_t n, const char *dir, struct strbuf *out)
{
	size_t dl = strlen(dir);
	_cleanup_free_ char *last = NULL;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(l[i].path, dir, dl) != 0)
			continue;
		const char *rest = l[i].path + dl;
		size_t cl = strcspn(rest, "/");
		char *entry = xasprintf("%.*s%s", (int)cl, rest, rest[cl] == '/' ? "/" : "");
		if (last && !strcmp(last, entry)) {
			free(entry);
			continue;
		}
		if (last)
			strbuf_addstr(out, "\n");
		strbuf_addstr(out, entry);
		free(last);
		last = entry;
	}
	return last != NULL;
}

static char *imds_identity_document(const struct imds_config *c)
{
	_cleanup_free_ char *az = xasprintf("%sa", c->region);
	_cleanup_json_ json_t *doc =
		json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "accountId", "123456789012", "architecture",
			  "x86_64", "availabilityZone", az, "imageId", "ami-0a0b0c0d0e0f01234", "instanceId",
			  c->instance_id, "instanceType", "t3.micro", "region", c->region);
	return json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

/* GET under /latest/: status and body (allocated). */
static int imds_get(const struct imds_config *c, const char *path, char **body)
{
	struct strbuf sb = STRBUF_INIT;
	int status = 200;

	if (!strcmp(path, "/") || !strcmp(path, "/latest")) {
		strbuf_addstr(&sb, "latest");
	} else if (!strcmp(path, "/latest/")) {
		strbuf_addstr(&sb, "dynamic\nmeta-data");
	} else if (!strcmp(path, "/latest/dynamic/") || !strcmp(path, "/latest/dynamic/instance-identity/")) {
		strbuf_addstr(&sb, str_has_suffix(path, "identity/") ? "document" : "instance-identity/");
	} else if (!strcmp(path, "/latest/dynamic/instance-identity/document")) {
		_cleanup_free_ char *doc = imds_identity_document(c);
		strbuf_addstr(&sb, doc);
	} else if (str_has_prefix(path, "/latest/meta-data/")) {
		const char *rel = path + strlen("/latest/meta-data/");
		struct imds_leaf l[16];
		size_t n = imds_leaves(c, l, ARRAY_SIZE(l));
		bool found = false;
		if (!strcmp(rel, "public-keys/") || !strcmp(rel, "public-keys")) {
			strbuf_addf(&sb, "0=%s", c->key_name);
			found = true;
		} else if (*rel == '\0' || str_has_suffix(rel, "/")) {
			found = imds_list(l, n, rel, &sb);
		} else {
			for (size_t i = 0; i < n && !found; i++)
				if (!strcmp(l[i].path, rel)) {
					strbuf_addstr(&sb, l[i].value);
					found = true;
				}
		}
		imds_leaves_free(l, n);
		if (!found)
			status = 404;
	} else {
		status = 404;
	}
	if (status != 200) {
		strbuf_release(&sb);
		*body = xstrdup("");
	} else {
		*body = strbuf_detach(&sb);
	}
	return status;
}

static bool imds_valid_ttl(const char *ttl)
{
	if (!ttl || !*ttl)
		return false;
	char *end;
	errno = 0;
	long v = strtol(ttl, &end, 10);
	return !errno && !*end && v >= 1 && v <= IMDS_TTL_MAX;
}

static void imds_answer_put(const struct imds_config *c, const struct imds_request *q, struct imds_reply *r)
{
	if (strcmp(q->path, "/latest/api/token") != 0) {
		/* Versioned token paths are refused too (FORMATS.md §5). */
		imds_respond(r, str_has_suffix(q->path, "/api/token") ? 403 : 405, "", NULL);
	} else if (q->forwarded || c->mode == IMDS_V1_ONLY) {
		imds_respond(r, 403, "", NULL);
	} else if (!imds_valid_ttl(q->ttl)) {
		imds_respond(r, 400, "", NULL);
	} else {
		imds_respond(r, 200, c->token, q->ttl);
	}
	r->log_line = xasprintf("PUT %s %d%s%s", q->path, r->status, q->ttl ? " ttl=" : "",
				q->ttl && strlen(q->ttl) < 16 ? q->ttl : "");
}

static void imds_answer_get(const struct imds_config *c, const struct imds_request *q, struct imds_reply *r)
{
	const char *how = q->token ? "v2" : "v1";
	if (!strcmp(q->path, "/latest/api/token")) {
		imds_respond(r, 405, "", NULL);
	} else if (q->token && strcmp(q->token, c->token) != 0) {
		imds_respond(r, 401, "", NULL);
		how = "bad-token";
	} else if (!q->token && c->mode == IMDS_REQUIRED) {
		imds_respond(r, 401, "", NULL);
	} else {
		_cleanup_free_ char *body = NULL;
		int status = imds_get(c, q->path, &body);
		imds_respond(r, status, body, NULL);
	}
	r->log_line = xasprintf("GET %s %d %s", q->path, r->status, how);
}

size_t imds_responder_handle(const struct imds_config *c, const char *buf, size_t len, struct imds_reply *r)
{
	size_t sep = 0;
	const char *end = imds_head_end(buf, len, &sep);
	struct imds_request q = { 0 };

	if (!end) {
		if (len <= IMDS_MAX_HEAD)
			return 0;
		r->close = true;
		imds_respond(r, 400, "", NULL);
		r->log_line = xstrdup("request head too large 400");
		return len;
	}
	size_t head_len = (size_t)(end - buf);
	_cleanup_free_ char *head = xstrndup(buf, head_len);
	if (head_len > IMDS_MAX_HEAD || imds_parse_head(head, &q) < 0) {
		r->close = true;
		imds_respond(r, 400, "", NULL);
		r->log_line = xstrdup("malformed request 400");
		return len;
	}
	size_t used = head_len + sep + q.content_length;
	if (used > len)
		return 0;
	r->close = q.conn_close || (q.http10 && !q.conn_keep_alive);
	if (!strcmp(q.method, "PUT"))
		imds_answer_put(c, &q, r);
	else if (!strcmp(q.method, "GET") || !strcmp(q.method, "HEAD"))
		imds_answer_get(c, &q, r);
	else {
		imds_respond(r, 405, "", NULL);
		r->log_line = xasprintf("%s %s 405", q.method, q.path);
	}
	if (!strcmp(q.method, "HEAD")) {
		/* Same head, no body. */
		char *hend = strstr(r->out.buf, "\r\n\r\n");
		r->out.len = (size_t)(hend + 4 - r->out.buf);
		r->out.buf[r->out.len] = '\0';
	}
	return used;
}

/* ---- serving a connection ---- */

int imds_responder_serve(const struct imds_config *c, int in_fd, int out_fd, int log_fd, int idle_s,
	       struct af_error **err)
{
	struct strbuf in = STRBUF_INIT;
	int rc = 0;
	bool done = false;

	while (!done) {
		struct pollfd p = { .fd = in_fd, .events = POLLIN };
		int n = poll(&p, 1, idle_s * 1000);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? af_error_set(err, errno, "metadata responder: poll") : 0;
			break;
		}
		char buf[4096];
		/* A guest that holds a connection open idle is dropped after idle_s. */
		ssize_t got = read(in_fd, buf, sizeof(buf));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			rc = got < 0 ? af_error_set(err, errno, "metadata responder: read") : 0;
			break;
		}
		strbuf_add(&in, buf, (size_t)got);
		for (;;) {
			struct imds_reply r = { 0 };
			size_t used = imds_responder_handle(c, in.buf, in.len, &r);
			if (used == 0)
				break;
			memmove(in.buf, in.buf + used, in.len - used);
			in.len -= used;
			in.buf[in.len] = '\0';
			if (log_fd >= 0) {
				_cleanup_free_ char *line = xasprintf("%s\n", r.log_line);
				(void)!write(log_fd, line, strlen(line));  /* O_APPEND: one write per line */
			}
			if (write_all(out_fd, r.out.buf, r.out.len) < 0)
				rc = af_error_set(err, errno, "metadata responder: write");
			done = r.close || rc < 0;
			imds_responder_reply_release(&r);
			if (done)
				break;
		}
	}
	strbuf_release(&in);
	return rc;
}

/* ---- the hidden command ---- */

static int imds_listen_socket(const char *hostport, struct af_error **err)
{
	_cleanup_free_ char *host = xstrdup(hostport);
	char *colon = strrchr(host, ':');
	if (!colon)
		return af_error_set(err, 0, "--listen '%s': expected HOST:PORT", hostport);
	*colon = '\0';
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	int g = getaddrinfo(*host ? host : NULL, colon + 1, &hints, &ai);
	if (g != 0)
		return af_error_set(err, 0, "--listen '%s': %s", hostport, gai_strerror(g));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		int errsv = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return af_error_set(err, errsv, "cannot listen on '%s'", hostport);
	}
	freeaddrinfo(ai);
	return fd;
}

/* Accepts until killed; one child per connection, reaped as they end. */
static int imds_listen(const struct imds_config *c, const char *hostport, int log_fd, struct af_error **err)
{
	_cleanup_fd_ int lfd = imds_listen_socket(hostport, err);
	if (lfd < 0)
		return -1;
	signal(SIGCHLD, SIG_IGN);  /* children reap themselves */
	for (;;) {
		int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return af_error_set(err, errno, "accept on '%s'", hostport);
		}
		pid_t pid = fork();
		if (pid == 0) {
			struct af_error *e = NULL;
			int rc = imds_responder_serve(c, cfd, cfd, log_fd, 30, &e);
			af_error_free(e);
			_exit(rc < 0 ? 1 : 0);
		}
		close(cfd);
	}
}

int imds_responder_main(int argc, char **argv)
{
	const char *listen_on = NULL, *dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") && i + 1 < argc)
			listen_on = argv[++i];
		else if (!dir && argv[i][0] != '-')
			dir = argv[i];
		else
			dir = NULL, i = argc;
	}
	if (!dir) {
		fprintf(stderr, "usage: amiforge __imds-responder [--listen HOST:PORT] DIR\n");
		return EXIT_USAGE;
	}
	_cleanup_error_ struct af_error *err = NULL;
	struct imds_config c = { 0 };
	if (imds_responder_config_load(dir, &c, &err) < 0) {
		fprintf(stderr, "amiforge: %s\n", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	_cleanup_free_ char *log_path = path_join(dir, "imds.log");
	_cleanup_fd_ int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int rc = listen_on ? imds_listen(&c, listen_on, log_fd, &err)
			   : imds_responder_serve(&c, STDIN_FILENO, STDOUT_FILENO, log_fd, 30, &err);
	imds_responder_config_release(&c);
	if (rc < 0) {
		fprintf(stderr, "amiforge: %s\n", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	return EXIT_OK;
}
