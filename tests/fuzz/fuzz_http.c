/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP client's parsers: the error classifier every AWS answer goes
 * through (http_classify_default: EC2/S3 XML and rest-json error bodies,
 * x-amzn-ErrorType and request id headers) and http_url_split.  The input's
 * first line is the URL and the x-amzn-ErrorType header, the rest the body
 * of a 400 answer (NUL-terminated, as the client's are).  Seeds:
 * tests/fuzz/corpus/http/. */
#include "fuzz.h"

#include <string.h>

#include "amiforge/aws/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = fuzz_string(data, size);
	size_t first = strcspn(in, "\n");
	char *rest = in[first] ? in + first + 1 : in + first;
	in[first] = '\0';

	char *host = NULL, *path = NULL, *query = NULL;
	struct af_error *err = NULL;
	if (http_url_split(in, &host, &path, &query, &err) == 0) {
		free(host);
		free(path);
		free(query);
	} else {
		af_error_free(err);
	}

	struct http_response resp = { .status = 400, .error.retry = -1 };
	resp.n_headers = 2;
	resp.headers = calloc(2, sizeof(*resp.headers));
	if (!resp.headers)
		abort();
	resp.headers[0] = (struct http_header){ strdup("x-amzn-ErrorType"), strdup(in) };
	resp.headers[1] = (struct http_header){ strdup("x-amz-request-id"), strdup("fuzz-rid") };
	resp.body_len = size - (size_t)(rest - in);
	resp.body = malloc(resp.body_len + 1);
	if (!resp.body)
		abort();
	memcpy(resp.body, rest, resp.body_len + 1);
	http_classify_default(&resp, NULL);
	http_response_release(&resp);
	free(in);
	return 0;
}
