/* SPDX-License-Identifier: Apache-2.0 */
/* EBS direct APIs: checksums (coldsnap's linear aggregate) and JSON parsing. */
#include "testutil.h"

#include "amiforge/aws/ebs.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

static void digest_of(const char *s, unsigned char d[32])
{
	char b64[45];
	ebs_block_checksum(s, strlen(s), d, b64);
}

static void test_block_checksum(void **state)
{
	unsigned char d[32];
	char b64[45];
	ebs_block_checksum("a", 1, d, b64);
	assert_string_equal(b64, "ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs=");
	ebs_block_checksum("", 0, d, b64);
	assert_string_equal(b64, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

static void test_linear_aggregate(void **state)
{
	/* Added out of order and block 1 twice: index order, last write wins.
	 * Expected: base64(sha256(sha256("a") || sha256("b") || sha256("c"))),
	 * computed with Python's hashlib. */
	struct ebs_digests d = EBS_DIGESTS_INIT;
	unsigned char x[32];
	digest_of("c", x);
	ebs_digests_add(&d, 7, x);
	digest_of("x", x);
	ebs_digests_add(&d, 1, x);
	digest_of("a", x);
	ebs_digests_add(&d, 0, x);
	digest_of("b", x);
	ebs_digests_add(&d, 1, x);
	char b64[45];
	assert_int_equal(ebs_digests_count(&d), 3);
	ebs_digests_aggregate(&d, b64);
	assert_string_equal(b64, "OgUPHQj7hYHT1yrnJ2UemBBD3g1sqOdEModY9xZgK+s=");
	ebs_digests_release(&d);
}

static void test_parse_start_and_blocks(void **state)
{
	static const char start[] = "{\"SnapshotId\":\"snap-1\",\"OwnerId\":\"1\",\"Status\":\"pending\","
				    "\"StartTime\":1.7e9,\"VolumeSize\":2,\"BlockSize\":524288}";
	_cleanup_error_ struct af_error *err = NULL;
	struct ebs_snapshot_info s;
	assert_int_equal(ebs_parse_start(start, strlen(start), &s, &err), 0);
	assert_string_equal(s.snapshot_id, "snap-1");
	assert_string_equal(s.status, "pending");
	assert_int_equal(s.volume_size_gib, 2);
	assert_int_equal(s.block_size, 524288);
	ebs_snapshot_info_release(&s);
	assert_int_equal(ebs_parse_start("{}", 2, &s, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "no SnapshotId"));
	af_error_clear(&err);

	static const char p1[] = "{\"Blocks\":[{\"BlockIndex\":0,\"BlockToken\":\"t0\"},"
				 "{\"BlockIndex\":9,\"BlockToken\":\"t9\"}],\"VolumeSize\":1,"
				 "\"BlockSize\":524288,\"NextToken\":\"n\"}";
	static const char p2[] = "{\"Blocks\":[{\"BlockIndex\":10,\"BlockToken\":\"t10\"}]}";
	struct ebs_block_list l = { 0 };
	char *next = NULL;
	assert_int_equal(ebs_parse_block_page(p1, strlen(p1), &l, &next, &err), 0);
	assert_string_equal(next, "n");
	free(next);
	assert_int_equal(ebs_parse_block_page(p2, strlen(p2), &l, &next, &err), 0);
	assert_null(next);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.v[2].index, 10);
	assert_string_equal(l.v[1].token, "t9");
	assert_int_equal(l.volume_size_gib, 1);
	assert_int_equal(ebs_parse_block_page("[1]", 3, &l, &next, &err), -1);
	ebs_block_list_release(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_checksum),
		cmocka_unit_test(test_linear_aggregate),
		cmocka_unit_test(test_parse_start_and_blocks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
