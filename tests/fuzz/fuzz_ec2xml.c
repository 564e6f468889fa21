/* SPDX-License-Identifier: Apache-2.0 */
/* EC2 Query API responses: awsxml_parse, then DescribeImages,
 * DescribeSnapshots and DescribeInstances results (ec2_parse_*), and the
 * error shape (ec2_parse_error).  Seeds: tests/fuzz/corpus/ec2xml/ (answers
 * of tests/servers/fakeaws.py). */
#include <string.h>

#include "fuzz.h"

#include "amiforge/aws/awsxml.h"
#include "amiforge/aws/ec2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly SIZE bytes, no NUL after them: the parsers take (body, len)
	 * and must not read past len (the "not XML" message once did). */
	char *body = malloc(size ? size : 1);
	if (!body)
		abort();
	memcpy(body, data, size);
	char *code = NULL, *message = NULL, *rid = NULL;
	if (ec2_parse_error(body, size, &code, &message, &rid) == 0) {
		free(code);
		free(message);
		free(rid);
	}
	struct af_error *err = NULL;
	xmlDoc *doc = awsxml_parse(body, size, "fuzz", &err);
	if (!doc) {
		af_error_free(err);
		free(body);
		return 0;
	}
	struct ec2_image_list images = { 0 };
	if (ec2_parse_images(doc, &images, &err) < 0)
		af_error_clear(&err);
	ec2_image_list_release(&images);
	struct ec2_snapshot_list snaps = { 0 };
	if (ec2_parse_snapshots(doc, &snaps, &err) < 0)
		af_error_clear(&err);
	ec2_snapshot_list_release(&snaps);
	struct ec2_instance_list inst = { 0 };
	if (ec2_parse_instances(doc, &inst, &err) < 0)
		af_error_clear(&err);
	ec2_instance_list_release(&inst);
	xmlFreeDoc(doc);
	free(body);
	return 0;
}
