/* SPDX-License-Identifier: Apache-2.0 */
/* The one error object (crun's libcrun_error_t, git's error()).
 *
 * A failing function returns a negative int (or NULL) and fills *err; on
 * success *err is left untouched.  Messages are lower case, no full stop:
 * what failed, the subject quoted, then ": strerror", then what to do. */
#ifndef AMIFORGE_ERROR_H
#define AMIFORGE_ERROR_H

#include <stdarg.h>

struct af_error {
	int errnum;  /* errno of the root cause, 0 if none */
	char *msg;   /* owned, never NULL */
};

/* Fills *err (if err and *err is NULL) with a formatted message; when
 * errnum > 0, ": strerror(errnum)" is appended.  If *err is already set the
 * new message is dropped (the first cause wins).  Returns -1 always, so that
 * `return af_error_set(err, errno, "open %s", p);` raises in one line. */
int af_error_set(struct af_error **err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes "CONTEXT: " to an existing error (no-op if *err is NULL).
 * Returns -1 always. */
int af_error_wrap(struct af_error **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends ".  HINT" style advice: "MSG (HINT)".  Returns -1 always. */
int af_error_hint(struct af_error **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* af_error_set() for a failed OpenSSL call: the message gets ": " and the
 * text of the last error on OpenSSL's thread-local queue (if any), and the
 * queue is cleared so that a stale entry never shows up in a later message.
 * Returns -1 always. */
int af_error_openssl(struct af_error **err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

int af_error_errno(const struct af_error *err);
const char *af_error_msg(const struct af_error *err);
void af_error_free(struct af_error *err);
/* Frees *err and sets it to NULL. */
void af_error_clear(struct af_error **err);

#endif
