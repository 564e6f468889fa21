/* SPDX-License-Identifier: Apache-2.0 */
/* EC2 Query API: request encoding and response/error parsing on canned
 * documents (no network). */
#include "testutil.h"

#include <libxml/parser.h>

#include "amiforge/aws/awsxml.h"
#include "amiforge/aws/ec2.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

static void test_encode_table(void **state)
{
	static const struct {
		const char *name, *value, *want;
	} cases[] = {
		{ "Name", "plain", "&Name=plain" },
		{ "Description", "a b+c/d", "&Description=a%20b%2Bc%2Fd" },
		{ "Name", "debian-12 (2024-01-01) [x]", "&Name=debian-12%20%282024-01-01%29%20%5Bx%5D" },
		{ "Tag.1.Value", "é=&", "&Tag.1.Value=%C3%A9%3D%26" },
		{ "Tilde", "a~b-c_d.e", "&Tilde=a~b-c_d.e" },
		{ "Empty", "", "&Empty=" },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct ec2_params p = EC2_PARAMS_INIT;
		ec2_params_add(&p, cases[i].name, cases[i].value);
		_cleanup_free_ char *s = ec2_params_encode(&p, "X");
		_cleanup_free_ char *want = NULL;
		assert_true(asprintf(&want, "Action=X&Version=2016-11-15%s", cases[i].want) > 0);
		assert_string_equal(s, want);
		ec2_params_release(&p);
	}
}

static void test_encode_lists_and_nesting(void **state)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	const char *ids[] = { "ami-1", "ami-2" };
	const char *v1[] = { "a*", "b" };
	const struct ec2_filter f[] = { { "name", v1, 2 }, { "state", (const char *[]){ "available" }, 1 } };
	const struct aws_tag tags[] = { { "team", "infra" }, { "k", NULL } };
	ec2_params_add_list(&p, "ImageId", ids, 2);
	ec2_params_add_filters(&p, f, 2);
	ec2_params_add_tag_spec(&p, "image", tags, 2);
	ec2_params_add(&p, "Ignored", NULL);
	_cleanup_free_ char *s = ec2_params_encode(&p, "DescribeImages");
	assert_string_equal(s, "Action=DescribeImages&Version=2016-11-15"
			       "&ImageId.1=ami-1&ImageId.2=ami-2"
			       "&Filter.1.Name=name&Filter.1.Value.1=a%2A&Filter.1.Value.2=b"
			       "&Filter.2.Name=state&Filter.2.Value.1=available"
			       "&TagSpecification.1.ResourceType=image"
			       "&TagSpecification.1.Tag.1.Key=team&TagSpecification.1.Tag.1.Value=infra"
			       "&TagSpecification.1.Tag.2.Key=k&TagSpecification.1.Tag.2.Value=");
	ec2_params_release(&p);

	/* DeleteTags: a NULL value means "whatever the value". */
	ec2_params_add_tags(&p, "Tag", tags, 2, true);
	_cleanup_free_ char *d = ec2_params_encode(&p, "DeleteTags");
	assert_string_equal(d, "Action=DeleteTags&Version=2016-11-15&Tag.1.Key=team"
			       "&Tag.1.Value=infra&Tag.2.Key=k");
	ec2_params_release(&p);
}

static const char images_xml[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<DescribeImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
	"<requestId>r-1</requestId><imagesSet>"
	"<item><imageId>ami-0abc</imageId><imageLocation>123/x</imageLocation>"
	"<imageState>available</imageState><imageOwnerId>123456789012</imageOwnerId>"
	"<isPublic>true</isPublic><architecture>x86_64</architecture><name>debian &amp; co</name>"
	"<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName>"
	"<blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs>"
	"<snapshotId>snap-1</snapshotId><volumeSize>8</volumeSize><volumeType>gp3</volumeType>"
	"<deleteOnTermination>true</deleteOnTermination></ebs></item>"
	"<item><deviceName>/dev/sdb</deviceName><virtualName>ephemeral0</virtualName></item>"
	"</blockDeviceMapping><virtualizationType>hvm</virtualizationType>"
	"<enaSupport>true</enaSupport><deprecationTime>2030-01-01T00:00:00.000Z</deprecationTime>"
	"<tagSet><item><key>team</key><value>infra</value></item>"
	"<item><key>empty</key><value/></item></tagSet></item>"
	"<item><imageId>ami-0def</imageId><imageState>failed</imageState>"
	"<stateReason><code>Client.Bad</code><message>no</message></stateReason></item>"
	"</imagesSet><nextToken>tok</nextToken></DescribeImagesResponse>";

static void test_parse_images(void **state)
{
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_xmldoc_ xmlDoc *doc = awsxml_parse(images_xml, sizeof(images_xml) - 1, "t", &err);
	assert_non_null(doc);
	struct ec2_image_list l = { 0 };
	assert_int_equal(ec2_parse_images(doc, &l, &err), 0);
	assert_int_equal(l.n, 2);
	struct ec2_image *a = &l.v[0];
	assert_string_equal(a->image_id, "ami-0abc");
	assert_string_equal(a->name, "debian & co");
	assert_string_equal(a->state, "available");
	assert_true(a->is_public);
	assert_true(a->ena_support);
	assert_string_equal(a->deprecation_time, "2030-01-01T00:00:00.000Z");
	assert_int_equal(a->n_bdm, 2);
	assert_string_equal(a->bdm[0].snapshot_id, "snap-1");
	assert_int_equal(a->bdm[0].volume_size, 8);
	assert_true(a->bdm[0].delete_on_termination);
	assert_null(a->bdm[1].snapshot_id);
	assert_int_equal(a->tags.n, 2);
	assert_string_equal(a->tags.v[1].key, "empty");
	assert_string_equal(a->tags.v[1].value, "");
	assert_string_equal(l.v[1].state_reason, "Client.Bad: no");
	assert_null(l.v[1].name);
	ec2_image_list_release(&l);

	/* the wrong document is refused */
	struct ec2_snapshot_list s = { 0 };
	assert_int_equal(ec2_parse_snapshots(doc, &s, &err), -1);
	assert_non_null(strstr(af_error_msg(err), "unexpected response <DescribeImagesResponse>"));
}

static void test_parse_snapshots_instances(void **state)
{
	static const char snaps[] =
		"<DescribeSnapshotsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
		"<requestId>x</requestId><snapshotSet><item><snapshotId>snap-9</snapshotId>"
		"<volumeId>vol-ffffffff</volumeId><status>pending</status><progress>40%</progress>"
		"<volumeSize>2</volumeSize><encrypted>false</encrypted></item></snapshotSet>"
		"</DescribeSnapshotsResponse>";
	static const char inst[] =
		"<DescribeInstancesResponse><reservationSet><item><instancesSet>"
		"<item><instanceId>i-1</instanceId><instanceState><code>16</code><name>running</name>"
		"</instanceState><placement><availabilityZone>eu-west-1a</availabilityZone>"
		"</placement></item><item><instanceId>i-2</instanceId></item></instancesSet></item>"
		"</reservationSet></DescribeInstancesResponse>";
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_xmldoc_ xmlDoc *d1 = awsxml_parse(snaps, sizeof(snaps) - 1, "t", &err);
	_cleanup_xmldoc_ xmlDoc *d2 = awsxml_parse(inst, sizeof(inst) - 1, "t", &err);
	struct ec2_snapshot_list s = { 0 };
	struct ec2_instance_list i = { 0 };
	assert_int_equal(ec2_parse_snapshots(d1, &s, &err), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.v[0].state, "pending");
	assert_string_equal(s.v[0].progress, "40%");
	assert_int_equal(s.v[0].volume_size, 2);
	assert_int_equal(ec2_parse_instances(d2, &i, &err), 0);
	assert_int_equal(i.n, 2);
	assert_string_equal(i.v[0].state, "running");
	assert_string_equal(i.v[0].availability_zone, "eu-west-1a");
	assert_null(i.v[1].state);
	ec2_snapshot_list_release(&s);
	ec2_instance_list_release(&i);
}

static void test_parse_error(void **state)
{
	static const char e[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>"
		"<Code>InvalidAMIID.NotFound</Code><Message>The image id '[ami-1]' does not exist"
		"</Message></Error></Errors><RequestID>59dbff89-35bd</RequestID></Response>";
	char *code = NULL, *msg = NULL, *rid = NULL;
	assert_int_equal(ec2_parse_error(e, sizeof(e) - 1, &code, &msg, &rid), 0);
	assert_string_equal(code, "InvalidAMIID.NotFound");
	assert_string_equal(msg, "The image id '[ami-1]' does not exist");
	assert_string_equal(rid, "59dbff89-35bd");
	free(code);
	free(msg);
	free(rid);
	assert_int_equal(ec2_parse_error("<a/>", 4, &code, &msg, &rid), -1);
	assert_int_equal(ec2_parse_error("not xml", 7, &code, &msg, &rid), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_table),
		cmocka_unit_test(test_encode_lists_and_nesting),
		cmocka_unit_test(test_parse_images),
		cmocka_unit_test(test_parse_snapshots_instances),
		cmocka_unit_test(test_parse_error),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	xmlCleanupParser();
	return r;
}
