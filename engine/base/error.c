/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/err.h>
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/mem.h"

int af_error_set(struct af_error **err, int errnum, const char *fmt, ...)
{
	if (!err || *err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	struct af_error *e = xmalloc(sizeof(*e));
	e->errnum = errnum;
	if (errnum > 0) {
		e->msg = xasprintf("%s: %s", msg, strerror(errnum));
		free(msg);
	} else {
		e->msg = msg;
	}
	*err = e;
	return -1;
}

int af_error_wrap(struct af_error **err, const char *fmt, ...)
{
	if (!err || !*err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *ctx = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s: %s", ctx, (*err)->msg);
	free(ctx);
	free((*err)->msg);
	(*err)->msg = msg;
	return -1;
}

int af_error_hint(struct af_error **err, const char *fmt, ...)
{
	if (!err || !*err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	char *hint = xvasprintf(fmt, ap);
	va_end(ap);
	char *msg = xasprintf("%s (%s)", (*err)->msg, hint);
	free(hint);
	free((*err)->msg);
	(*err)->msg = msg;
	return -1;
}

int af_error_openssl(struct af_error **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	/* The last entry is the outermost failure; the earlier ones are
	 * OpenSSL's own call chain. */
	unsigned long e = ERR_peek_last_error();
	char buf[256] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return af_error_set(err, 0, "%s%s%s", msg, e ? ": " : "", buf);
}

int af_error_errno(const struct af_error *err)
{
	return err ? err->errnum : 0;
}

const char *af_error_msg(const struct af_error *err)
{
	return err ? err->msg : "";
}

void af_error_free(struct af_error *err)
{
	if (!err)
		return;
	free(err->msg);
	free(err);
}

void af_error_clear(struct af_error **err)
{
	af_error_free(*err);
	*err = NULL;
}
