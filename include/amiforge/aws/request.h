/* SPDX-License-Identifier: Apache-2.0 */
/* AWS requests: what turns an http.c request into an AWS one (credentials
 * from the chain, SigV4, AWS-aware redaction of what the client logs), and
 * the session every remote stage opens (region, credentials, HTTP options
 * bounded by the stage's deadline).
 *
 * The service clients (ec2.h, ebs.h, s3.h) build their requests with
 * aws_request_bind; a stage that sends its own batch does the same with the
 * client's signer values:
 *
 *   struct aws_session aws;
 *   if (aws_session_open(&aws, params_str(p, "region", NULL), ctx->deadline, err) < 0)
 *           return -1;
 *   struct ec2_client ec2;
 *   ec2_client_init(&ec2, aws.region, aws.creds, &aws.opts);
 *   ...
 *   ec2_client_release(&ec2);
 *   aws_session_close(&aws);
 */
#ifndef AMIFORGE_AWS_REQUEST_H
#define AMIFORGE_AWS_REQUEST_H

#include "amiforge/aws/http.h"

struct af_error;
struct aws_creds_chain;

/* How requests to one service are signed.  Borrowed strings. */
struct aws_signer {
	struct aws_creds_chain *creds;  /* borrowed */
	const char *region;
	const char *service;            /* signing name: "ec2", "ebs", "s3" */
	unsigned sigv4_flags;           /* SIGV4_S3, SIGV4_UNSIGNED_PAYLOAD, ... */
	/* A fixed X-Amz-Date for every attempt (tests, `aws request --date`);
	 * NULL: the time of each attempt. */
	const char *amz_date;
};

/* Makes REQ an AWS request signed as S says: req->sign, sign_data and
 * redact are set.  S is borrowed and must outlive every use of REQ. */
void aws_request_bind(struct http_request *req, const struct aws_signer *s);

/* The two hooks aws_request_bind sets, for callers that fill a request in
 * one initialiser.  aws_request_sign (an http_sign_fn, data: a const
 * struct aws_signer *) gets the credentials from the chain at each call
 * (so IMDS refreshes apply) and adds X-Amz-Date, [X-Amz-Security-Token],
 * [X-Amz-Content-SHA256] and Authorization; it fails (-1 + err) when the
 * chain has no credentials or SigV4 refuses the request.
 * aws_request_redact is aws_redact(TEXT, NULL) (creds.h). */
int aws_request_sign(void *data, const struct http_sign_input *in, struct http_header **add,
		     size_t *n_add, struct af_error **err);
char *aws_request_redact(const char *text);

/* http_request_do(REQ) signed by S.  Same contract. */
int aws_request_do(const struct aws_signer *s, const struct http_request *req,
		   struct http_response *resp, struct af_error **err);

/* ---- sessions ---- */

/* What a remote stage talks to AWS with. */
struct aws_session {
	char *region;                   /* owned: the stage's region, resolved */
	const char *region_source;      /* static: "recipe", "AWS_REGION", ... (awsconfig.h) */
	struct aws_creds_chain *creds;  /* owned: the default chain, resolved on first use */
	/* HTTP_OPTIONS_DEFAULT with .deadline: each request a client sends
	 * with these is bounded by min(total_timeout_ms, the time left before
	 * the deadline less HTTP_DEADLINE_MARGIN_MS) (http_budget_ms). */
	struct http_options opts;
};

/* Opens *s: the region from REGION (the recipe's; may be NULL) through
 * aws_region_resolve's chain, a credential chain with the default sources,
 * and options bounded by DEADLINE (now_monotonic() seconds; 0: none).
 * 0, or -1 + err (no region: the message lists where it looked; *s is then
 * untouched).  Clients take s->region (or another region), s->creds and
 * &s->opts, borrowed: close the session after releasing them. */
int aws_session_open(struct aws_session *s, const char *region, double deadline,
		     struct af_error **err);
/* The same with the credentials and region of profile PROFILE (NULL:
 * AWS_PROFILE, else "default"), as --profile gives it. */
int aws_session_open_profile(struct aws_session *s, const char *region, const char *profile,
			     double deadline, struct af_error **err);
/* Frees what *s owns and zeroes it.  NULL-safe. */
void aws_session_close(struct aws_session *s);

#endif
