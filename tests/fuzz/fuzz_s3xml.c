/* SPDX-License-Identifier: Apache-2.0 */
/* S3 ListObjectsV2 pages (s3_parse_list_page, through awsxml_parse).
 * Seeds: tests/fuzz/corpus/s3xml/. */
#include <string.h>

#include "fuzz.h"

#include "amiforge/aws/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly SIZE bytes, no NUL after them: the parsers take (body, len)
	 * and must not read past len (the "not XML" message once did). */
	char *body = malloc(size ? size : 1);
	if (!body)
		abort();
	memcpy(body, data, size);
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
