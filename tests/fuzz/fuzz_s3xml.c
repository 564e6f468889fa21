/* SPDX-License-Identifier: Apache-2.0 */
/* S3 ListObjectsV2 pages (s3_parse_list_page, through awsxml_parse).
 * Seeds: tests/fuzz/corpus/s3xml/. */
#include "fuzz.h"

#include "amiforge/aws/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* NUL-terminated as the HTTP client's bodies are: awsxml_parse's error
	 * message quotes the body with "%.40s", which reads past LEN when the
	 * body is shorter than 40 bytes and has no NUL (not fixed here). */
	char *body = fuzz_string(data, size);
	struct s3_object_list l = { 0 };
	char *next = NULL;
	struct af_error *err = NULL;
	if (s3_parse_list_page(body, size, &l, &next, &err) < 0)
		af_error_free(err);
	free(next);
	s3_object_list_release(&l);
	free(body);
	return 0;
}
