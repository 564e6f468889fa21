/* SPDX-License-Identifier: Apache-2.0 */
/* EBS direct API answers (rest-json): StartSnapshot (ebs_parse_start) and
 * ListSnapshotBlocks pages (ebs_parse_block_page).  Seeds:
 * tests/fuzz/corpus/ebsjson/ (answers of tests/servers/fakeaws.py). */
#include "fuzz.h"

#include "amiforge/aws/ebs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *body = fuzz_string(data, size);
	struct af_error *err = NULL;
	struct ebs_snapshot_info info = { 0 };
	if (ebs_parse_start(body, size, &info, &err) < 0)
		af_error_clear(&err);
	ebs_snapshot_info_release(&info);
	struct ebs_block_list l = { 0 };
	char *next = NULL;
	if (ebs_parse_block_page(body, size, &l, &next, &err) < 0)
		af_error_clear(&err);
	free(next);
	ebs_block_list_release(&l);
	free(body);
	return 0;
}
