/* SPDX-License-Identifier: Apache-2.0 */
/* AWS requests: what turns an http.c request into an AWS one (credentials
 * from the chain, SigV4, AWS-aware redaction of what the client logs).
 *
 * The service clients (ec2.h, ebs.h, s3.h) build their requests with
 * aws_request_bind; a stage that sends its own batch does the same with the
 * client's signer values. */
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

#endif
