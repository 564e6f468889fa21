/* SPDX-License-Identifier: Apache-2.0 */
/* The one rule for credentials in text the engine writes (DESIGN §8:
 * "secrets never reach a log, the journal, the manifest or the image").
 *
 * The known secrets are the values of AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN and AWS_SECURITY_TOKEN in the environment (read at each
 * call, so a changed environment counts) plus every value registered with
 * redact_add() (the credential chain registers what it loads from a profile
 * or the instance metadata service).  Every writer of text — the log core
 * (terminal, JSON events, stage logs), the journal, `status`, the manifest —
 * passes what it writes through here; aws_redact() adds the AWS-specific
 * patterns (presigned URL parameters, token headers) on top.
 *
 * Values shorter than REDACT_MIN_LEN are never treated as secrets: hiding
 * every "a" in a log would say more than it hides.  All functions are
 * thread-safe. */
#ifndef AMIFORGE_REDACT_H
#define AMIFORGE_REDACT_H

#include <stdbool.h>
#include <jansson.h>

#define REDACT_MARK "[REDACTED]"
#define REDACT_MIN_LEN 4

/* Registers a secret (copied; NULL or a short value is ignored). */
void redact_add(const char *secret);

/* Forgets every registered secret (wiping the copies).  For tests. */
void redact_forget_all(void);

/* True when TEXT holds a known secret. */
bool redact_needed(const char *text);

/* A copy of TEXT (NULL gives "") with every known secret, and each of the
 * N_EXTRA values of EXTRA (NULL or short ones are skipped), replaced by
 * REDACT_MARK.  Caller frees. */
char *redact_text(const char *text, const char *const *extra, size_t n_extra);

/* Redacts every string value (and object key) inside J in place: JSON is
 * redacted before it is encoded, so escaping cannot hide a secret from the
 * match.  J may be NULL. */
void redact_json(json_t *j);

#endif
