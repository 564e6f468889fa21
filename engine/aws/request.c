/* SPDX-License-Identifier: Apache-2.0 */
/* AWS requests and sessions (include/amiforge/aws/request.h has the
 * contract). */
#include <stdlib.h>
#include <string.h>

#include "amiforge/aws/awsconfig.h"
#include "amiforge/aws/creds.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/request.h"
#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

int aws_request_sign(void *data, const struct http_sign_input *in, struct http_header **add,
		     size_t *n_add, struct af_error **err)
{
	const struct aws_signer *s = data;
	struct aws_creds c = { 0 };
	if (aws_creds_chain_get(s->creds, &c, err) < 0)
		return -1;
	const struct sigv4_key key = { c.access_key_id, c.secret_access_key, c.session_token };
	const struct sigv4_request sreq = {
		.method = in->method, .path = in->path, .query = in->query, .headers = in->headers,
		.n_headers = in->n_headers, .body = in->body, .body_len = in->body_len,
		.payload_hash = in->payload_hash, .region = s->region, .service = s->service,
		.amz_date = s->amz_date, .flags = s->sigv4_flags,
	};
	struct sigv4_result r;
	int rc = sigv4_sign(&sreq, &key, &r, err);
	aws_creds_release(&c);
	if (rc < 0)
		return -1;
	struct http_header *h = xcalloc(r.n_add ? r.n_add : 1, sizeof(*h));
	for (size_t i = 0; i < r.n_add; i++) {
		h[i].name = steal_pointer(&r.add[i].name);
		h[i].value = steal_pointer(&r.add[i].value);
	}
	*add = h;
	*n_add = r.n_add;
	sigv4_result_release(&r);
	return 0;
}

char *aws_request_redact(const char *text)
{
	return aws_redact(text, NULL);
}

void aws_request_bind(struct http_request *req, const struct aws_signer *s)
{
	req->sign = aws_request_sign;
	req->sign_data = (void *)s;
	req->redact = aws_request_redact;
}

int aws_request_do(const struct aws_signer *s, const struct http_request *req,
		   struct http_response *resp, struct af_error **err)
{
	struct http_request r = *req;
	aws_request_bind(&r, s);
	return http_request_do(&r, resp, err);
}

/* ---- sessions ---- */

int aws_session_open(struct aws_session *s, const char *region, double deadline,
		     struct af_error **err)
{
	return aws_session_open_profile(s, region, NULL, deadline, err);
}

int aws_session_open_profile(struct aws_session *s, const char *region, const char *profile,
			     double deadline, struct af_error **err)
{
	const struct aws_creds_opts co = { .profile = profile };
	char *r = NULL;
	const char *src = NULL;
	if (aws_region_resolve(region, &co, &r, &src, err) < 0)
		return -1;
	*s = (struct aws_session){
		.region = r, .region_source = src, .creds = aws_creds_chain_new(&co),
		.opts = HTTP_OPTIONS_DEFAULT,
	};
	s->opts.deadline = deadline > 0 ? deadline : 0;
	return 0;
}

void aws_session_close(struct aws_session *s)
{
	if (!s)
		return;
	aws_creds_chain_free(s->creds);
	free(s->region);
	memset(s, 0, sizeof(*s));
}
