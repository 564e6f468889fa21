/* SPDX-License-Identifier: Apache-2.0 */
/* The credential chain (DESIGN §8, reference/FORMATS.md §5):
 *   1. environment AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 *      (+ AWS_SESSION_TOKEN, or the legacy AWS_SECURITY_TOKEN);
 *   2. the profile (awsconfig.h chooses it and reads its files) in the
 *      shared credentials file, then in the config file; keys
 *      aws_access_key_id, aws_secret_access_key, aws_session_token (or
 *      aws_security_token);
 *   3. instance metadata (IMDSv2, imds.h) role credentials, cached and
 *      refreshed when they expire within AWS_CREDS_REFRESH_SECS.
 * Region and endpoints are awsconfig.h's (included here for
 * struct aws_creds_opts and its older users).
 *
 * Secrets: struct aws_creds is the only holder of a secret key or token;
 * nothing here logs them; aws_creds_release wipes them; every secret the
 * chain loads is registered with redact_add() (redact.h), so every writer
 * of text hides it.  aws_redact() adds the AWS-specific patterns. */
#ifndef AMIFORGE_AWS_CREDS_H
#define AMIFORGE_AWS_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "amiforge/aws/awsconfig.h"

struct af_error;
struct imds_iface;

/* IMDS credentials are refreshed when they expire within this many seconds
 * (IMDS publishes new ones at least 5 minutes before expiry). */
#define AWS_CREDS_REFRESH_SECS (10 * 60)

struct aws_creds {
	char *access_key_id;       /* owned */
	char *secret_access_key;   /* owned, secret */
	char *session_token;       /* owned, secret, NULL if none */
	time_t expiration;         /* 0: does not expire */
	/* Where they came from, for messages: "environment", "profile 'x' in
	 * /root/.aws/credentials", "instance metadata role 'r'".  Owned. */
	char *source;
};

/* Wipes and frees the fields of C, then zeroes it.  NULL-safe. */
void aws_creds_release(struct aws_creds *c);
/* Deep copy of SRC into *dst (dst is overwritten, not released first). */
void aws_creds_copy(struct aws_creds *dst, const struct aws_creds *src);

/* Resolves once through the chain.  0 and *out filled (caller releases), or
 * -1 + err.  When nothing is found the message lists every place looked at
 * and why each gave nothing, e.g.
 *   no AWS credentials found: environment (AWS_ACCESS_KEY_ID not set);
 *   profile 'default' in /h/.aws/credentials (no such file); ...; instance
 *   metadata at http://169.254.169.254 (not available) (set
 *   AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or configure a profile)
 * A profile that exists but lacks a key is an error naming file and section. */
int aws_creds_resolve(const struct aws_creds_opts *opts, struct aws_creds *out,
		      struct af_error **err);

/* The chain's IMDS step alone: the first role of
 * meta-data/iam/security-credentials/ and its credentials (with
 * expiration).  IMDS NULL: imds_client_default().  0 and *out filled
 * (caller releases), 1 when no role is attached or IMDS is unavailable,
 * -1 + err (a failed lookup of the role's document, a bad document). */
int aws_creds_from_imds(const struct imds_iface *imds, struct aws_creds *out,
			struct af_error **err);
/* Parses a role credential document (exposed for tests).  0 and *out
 * filled, or -1 + err naming the role. */
int aws_creds_parse_imds(const char *json, const char *role, struct aws_creds *out,
			 struct af_error **err);

/* A cached, thread-safe credential source for long runs: resolves on first
 * use, re-resolves when the cached credentials expire within
 * AWS_CREDS_REFRESH_SECS.  opts is copied (strings duplicated; the imds
 * object is borrowed and must outlive the chain).  Never fails; free with
 * aws_creds_chain_free (NULL-safe). */
struct aws_creds_chain;
struct aws_creds_chain *aws_creds_chain_new(const struct aws_creds_opts *opts);
/* A chain that always returns a copy of C (tests, --dry-run). */
struct aws_creds_chain *aws_creds_chain_new_static(const struct aws_creds *c);
void aws_creds_chain_free(struct aws_creds_chain *chain);
/* Current credentials: 0 and *out filled (a copy; caller releases), or -1 +
 * err (as aws_creds_resolve). */
int aws_creds_chain_get(struct aws_creds_chain *chain, struct aws_creds *out,
			struct af_error **err);

/* Returns a copy of TEXT (caller frees) with every occurrence of a secret
 * replaced by "[REDACTED]": what redact_text() hides (redact.h: the
 * environment's credentials and every registered secret), the secret key
 * and session token of C (if C is not NULL), the values of the query parameters
 * X-Amz-Signature and X-Amz-Security-Token (presigned URLs), and the value
 * of "x-amz-security-token:" header lines (case-insensitive).  The
 * Signature= of an Authorization header is kept: it is a one-request MAC,
 * not a secret, and --dry-run must show it. */
char *aws_redact(const char *text, const struct aws_creds *c);


/* "AKIA...WXYZ" style short form of an access key id (not a secret, but
 * logs need no more).  out holds at least 16 bytes.  Returns out. */
char *aws_akid_short(const char *akid, char out[16]);

#endif
