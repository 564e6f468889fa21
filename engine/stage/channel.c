/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "amiforge/channel.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define ACK_OK 'k'
#define ACK_REFUSED 'x'

/* The channel's two messages, {"resource": R} and {"result": R}.  They are
 * the pipe's own: the runner journals R through the journal's appenders. */
#define MSG_RESOURCE "resource"
#define MSG_RESULT "result"

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int channel_open(struct stage_channel *ch, struct af_error **err)
{
	int msg[2], ack[2];
	*ch = (struct stage_channel){ .msg_rd = -1, .msg_wr = -1, .ack_rd = -1, .ack_wr = -1 };
	if (pipe2(msg, O_CLOEXEC) < 0)
		return af_error_set(err, errno, "cannot create the stage channel");
	if (pipe2(ack, O_CLOEXEC) < 0) {
		int errsv = errno;
		close(msg[0]);
		close(msg[1]);
		return af_error_set(err, errsv, "cannot create the stage channel");
	}
	ch->msg_rd = msg[0];
	ch->msg_wr = msg[1];
	ch->ack_rd = ack[0];
	ch->ack_wr = ack[1];
	if (fcntl(ch->msg_rd, F_SETFL, O_NONBLOCK) < 0) {
		int errsv = errno;
		channel_close(ch);
		return af_error_set(err, errsv, "cannot set up the stage channel");
	}
	return 0;
}

void channel_child_side(struct stage_channel *ch)
{
	close_fd(&ch->msg_rd);
	close_fd(&ch->ack_wr);
}

void channel_parent_side(struct stage_channel *ch)
{
	close_fd(&ch->msg_wr);
	close_fd(&ch->ack_rd);
}

void channel_close(struct stage_channel *ch)
{
	close_fd(&ch->msg_rd);
	close_fd(&ch->msg_wr);
	close_fd(&ch->ack_rd);
	close_fd(&ch->ack_wr);
	strbuf_release(&ch->pending);
}

/* One message: compact JSON (which has no raw newline) and a newline, in
 * one write so that it is never interleaved. */
static int send_message(int fd, const json_t *msg)
{
	_cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);
	if (!text) {
		errno = EINVAL;
		return -1;
	}
	size_t len = strlen(text);
	_cleanup_free_ char *line = xmalloc(len + 1);
	memcpy(line, text, len);
	line[len] = '\n';
	return write_all(fd, line, len + 1);
}

int channel_send_resource(struct stage_channel *ch, const json_t *resource, struct af_error **err)
{
	_cleanup_json_ json_t *msg = json_pack("{s:O}", MSG_RESOURCE, resource);
	if (!msg || send_message(ch->msg_wr, msg) < 0)
		return af_error_set(err, errno, "cannot report a resource to the runner");
	char ack = 0;
	ssize_t n;
	do
		n = read(ch->ack_rd, &ack, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		return af_error_set(err, n < 0 ? errno : EPIPE,
				    "the runner did not acknowledge a resource");
	if (ack != ACK_OK)
		return af_error_set(err, 0, "the runner could not journal a resource; see its error");
	return 0;
}

int channel_send_result(struct stage_channel *ch, const json_t *result)
{
	_cleanup_json_ json_t *msg = json_pack("{s:O}", MSG_RESULT, result);
	if (!msg) {
		errno = EINVAL;
		return -1;
	}
	return send_message(ch->msg_wr, msg);
}

static int handle_line(struct stage_channel *ch, const char *line,
		       int (*on_resource)(void *, const json_t *, struct af_error **), void *arg,
		       json_t **result, struct af_error **err)
{
	_cleanup_json_ json_t *msg = json_loads(line, 0, NULL);
	/* Anything else is not ours: a stage cannot write here, so it is noise. */
	json_t *done = json_object_get(msg, MSG_RESULT);
	if (done) {
		json_decref(*result);
		*result = json_incref(done);
		return 0;
	}
	const json_t *res = json_object_get(msg, MSG_RESOURCE);
	if (!res)
		return 0;
	int r = on_resource(arg, res, err);
	char ack = r == 0 ? ACK_OK : ACK_REFUSED;
	if (write_all(ch->ack_wr, &ack, 1) < 0 && r == 0)
		return af_error_set(err, errno, "cannot acknowledge a resource to the stage");
	return r;
}

int channel_pump(struct stage_channel *ch,
		 int (*on_resource)(void *arg, const json_t *resource, struct af_error **err),
		 void *arg, json_t **result, struct af_error **err)
{
	char buf[4096];
	ssize_t n;
	while ((n = read(ch->msg_rd, buf, sizeof(buf))) > 0)
		strbuf_add(&ch->pending, buf, (size_t)n);
	int r = 0;
	size_t start = 0;
	for (size_t i = 0; i < ch->pending.len; i++) {
		if (ch->pending.buf[i] != '\n')
			continue;
		ch->pending.buf[i] = '\0';
		if (r == 0)
			r = handle_line(ch, ch->pending.buf + start, on_resource, arg, result, err);
		start = i + 1;
	}
	if (start) {
		size_t rest = ch->pending.len - start;
		memmove(ch->pending.buf, ch->pending.buf + start, rest);
		ch->pending.len = rest;
		ch->pending.buf[rest] = '\0';
	}
	return r;
}

/* The stage side of the channel, as stages see it (stage.h). */
int stage_journal_resource(struct stage_ctx *ctx, const json_t *resource, struct af_error **err)
{
	if (!ctx->channel)
		BUG("stage_journal_resource outside a stage child");
	return channel_send_resource(ctx->channel, resource, err);
}
