/* SPDX-License-Identifier: Apache-2.0 */
/* AWS Signature Version 4 (reference/FORMATS.md §2; botocore auth.py
 * SigV4Auth / S3SigV4Auth).  Pure computation: no I/O, no global state,
 * thread-safe.  Secrets are only read from struct sigv4_key and never copied
 * into any result string. */
#ifndef AMIFORGE_AWS_SIGV4_H
#define AMIFORGE_AWS_SIGV4_H

#include <stdbool.h>
#include <stddef.h>

struct af_error;

/* A request header (borrowed strings).  Names are case-insensitive; a name
 * may repeat (values are then joined with ',' in the order given). */
struct sigv4_header {
	const char *name;
	const char *value;
};

/* The signing identity (borrowed).  session_token may be NULL or "". */
struct sigv4_key {
	const char *access_key_id;
	const char *secret_access_key;
	const char *session_token;
};

enum sigv4_flags {
	/* S3 rules: the path is used as given (no dot-segment normalisation, no
	 * second encoding), and X-Amz-Content-SHA256 is added and signed. */
	SIGV4_S3 = 1u << 0,
	/* Payload hash is the literal UNSIGNED-PAYLOAD (EBS PutSnapshotBlock,
	 * "authtype":"v4-unsigned-body"); also adds a signed
	 * X-Amz-Content-SHA256: UNSIGNED-PAYLOAD header. */
	SIGV4_UNSIGNED_PAYLOAD = 1u << 1,
	/* Add a signed X-Amz-Content-SHA256 header with the payload hash even
	 * without SIGV4_S3. */
	SIGV4_CONTENT_SHA256 = 1u << 2,
	/* Do not add X-Amz-Security-Token even if the key has a session token
	 * (the test suite's post-sts-header-after case: the caller adds it
	 * after signing, unsigned). */
	SIGV4_TOKEN_UNSIGNED = 1u << 3,
};

/* What to sign.  All pointers are borrowed for the duration of the call. */
struct sigv4_request {
	const char *method;        /* "GET", "POST", ... */
	/* The path exactly as it goes on the request line, already
	 * percent-encoded by the caller (use sigv4_uri_encode(seg, false) per
	 * segment, or (path, true) for a whole key).  "" means "/".
	 * Non-S3: the canonical URI is normalise(path) URI-encoded once more
	 * (so "%20" becomes "%2520", as botocore does); S3: path as is. */
	const char *path;
	/* The query string without '?', as sent (NULL or "" for none).  Each
	 * key and value is percent-decoded then re-encoded with the unreserved
	 * set ('+' is a literal plus), so pre-encoded and raw forms sign the
	 * same.  Pairs are sorted by encoded key, then value. */
	const char *query;
	/* Must include Host (with ":port" when not the scheme's default).  Any
	 * X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-SHA256 or
	 * Authorization given here are ignored: sigv4_sign sets them.
	 * Expect, Transfer-Encoding, User-Agent and X-Amzn-Trace-Id are never
	 * signed (botocore's SIGNED_HEADERS_BLACKLIST). */
	const struct sigv4_header *headers;
	size_t n_headers;
	const void *body;          /* may be NULL when body_len is 0 */
	size_t body_len;
	/* Lower-case hex SHA-256 of the body when the caller already has it
	 * (large bodies), else NULL and sigv4_sign hashes body. */
	const char *payload_hash;
	const char *region;        /* "us-east-1" */
	const char *service;       /* signing name: "ec2", "ebs", "s3" */
	/* "YYYYMMDDTHHMMSSZ"; NULL means now (UTC). */
	const char *amz_date;
	unsigned flags;            /* enum sigv4_flags */
};

/* Everything sigv4_sign computed.  All strings owned by the result; release
 * with sigv4_result_release.  None of them contains the secret key; the
 * session token appears only in add_headers and canonical_request (so never
 * print those two without aws_redact(): awscli --dry-run does). */
struct sigv4_result {
	char *canonical_request;
	char *string_to_sign;
	char *authorization;      /* the Authorization header's value */
	char *signed_headers;     /* "host;x-amz-date" */
	char *credential_scope;   /* "20150830/us-east-1/service/aws4_request" */
	char *signature;          /* 64 hex */
	char amz_date[17];        /* "YYYYMMDDTHHMMSSZ" */
	char payload_hash[65];    /* hex, or "UNSIGNED-PAYLOAD" */
	/* Headers the caller must add to the request as sent, in this order:
	 * X-Amz-Date, [X-Amz-Security-Token], [X-Amz-Content-SHA256],
	 * Authorization.  Owned (name and value). */
	struct sigv4_out_header {
		char *name;
		char *value;
	} add[4];
	size_t n_add;
};

/* Signs REQ with KEY.  On success returns 0 and fills *out (caller calls
 * sigv4_result_release).  Returns -1 and sets err (out untouched) when a
 * required field is missing (method, region, service, Host header, key), the
 * date is malformed, or OpenSSL fails. */
int sigv4_sign(const struct sigv4_request *req, const struct sigv4_key *key,
	       struct sigv4_result *out, struct af_error **err);

/* Frees the strings of R (wiping them) and zeroes it.  NULL-safe. */
void sigv4_result_release(struct sigv4_result *r);

/* Percent-encodes S with RFC 3986's unreserved set (A-Z a-z 0-9 - _ . ~)
 * kept; keep_slash also keeps '/'.  Caller frees.  Used for S3 keys, EC2
 * query bodies (application/x-www-form-urlencoded, AWS style: space is
 * %20) and query strings. */
char *sigv4_uri_encode(const char *s, bool keep_slash);
char *sigv4_uri_encode_n(const char *s, size_t n, bool keep_slash);

/* Decodes %XX escapes (invalid escapes are kept literally; '+' is kept).
 * Caller frees; *len (may be NULL) gets the decoded length. */
char *sigv4_uri_decode(const char *s, size_t n, size_t *len);

/* The current UTC time as "YYYYMMDDTHHMMSSZ" (out holds 17 bytes). */
void sigv4_now(char out[17]);

/* Lower-case hex SHA-256 (out holds 65 bytes). */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

#endif
