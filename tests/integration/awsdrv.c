/* SPDX-License-Identifier: Apache-2.0 */
/* awsdrv: drives the EC2, EBS, S3 and IMDS clients against local servers
 * for the aws_*.sh integration tests.  Scenario commands print TAP-like
 * "ok NAME" / "not ok NAME: why" lines; single calls print their result.
 * Credentials, region and endpoints come from the environment, as in the
 * engine (AWS_ENDPOINT_URL, AWS_REGION, ...).  Never prints a secret. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "amiforge/aws/creds.h"
#include "amiforge/aws/ebs.h"
#include "amiforge/aws/ec2.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/imds.h"
#include "amiforge/aws/s3.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/util.h"

static struct aws_creds_chain *chain;
static struct imds_client *imds;
static const char *region;
static struct http_options opts;
static int failed;

static void result(bool ok, const char *name, struct af_error **err)
{
	if (ok) {
		printf("ok %s\n", name);
	} else {
		printf("not ok %s: %s\n", name, err && *err ? af_error_msg(*err) : "check failed");
		failed = 1;
	}
	if (err)
		af_error_clear(err);
	fflush(stdout);
}

static int die(struct af_error *err)
{
	fprintf(stderr, "awsdrv: %s\n", af_error_msg(err));
	af_error_free(err);
	return 1;
}

/* ---- ec2 -------------------------------------------------------------------- */

static int cmd_regions(int argc, char **argv)
{
	struct ec2_client c;
	struct af_error *err = NULL;
	_cleanup_strv_ char **v = NULL;
	ec2_client_init(&c, region, chain, &opts);
	int r = ec2_describe_regions(&c, &v, &err);
	ec2_client_release(&c);
	if (r < 0)
		return die(err);
	for (char **p = v; *p; p++)
		printf("%s\n", *p);
	return 0;
}

static int cmd_images(int argc, char **argv)
{
	struct ec2_client c;
	struct af_error *err = NULL;
	struct ec2_image_list l = { 0 };
	const char *self[] = { "self" };
	struct ec2_image_query q = { .owners = self, .n_owners = 1,
				     .max_results = argc > 1 ? atoi(argv[1]) : 0 };
	ec2_client_init(&c, region, chain, &opts);
	int r = ec2_describe_images(&c, &q, &l, &err);
	ec2_client_release(&c);
	if (r < 0)
		return die(err);
	for (size_t i = 0; i < l.n; i++)
		printf("%s %s %s\n", l.v[i].image_id, l.v[i].state, l.v[i].name);
	ec2_image_list_release(&l);
	return 0;
}

static int cmd_register(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: register NAME SNAPSHOT\n");
		return 2;
	}
	struct ec2_client c;
	struct af_error *err = NULL;
	char *id = NULL;
	const struct ec2_block_device bdm[] = {
		{ .device_name = "/dev/xvda", .snapshot_id = argv[2], .volume_type = "gp3",
		  .delete_on_termination = 1, .encrypted = -1 },
	};
	const struct aws_tag tags[] = { { "team", "infra" } };
	const struct ec2_register_image ri = {
		.name = argv[1], .architecture = "x86_64", .root_device_name = "/dev/xvda",
		.virtualization_type = "hvm", .ena_support = 1, .bdm = bdm, .n_bdm = 1,
		.tags = tags, .n_tags = 1, .boot_mode = "legacy-bios",
	};
	ec2_client_init(&c, region, chain, &opts);
	int r = ec2_register_image(&c, &ri, &id, &err);
	ec2_client_release(&c);
	if (r < 0)
		return die(err);
	printf("%s\n", id);
	free(id);
	return 0;
}

static bool has_tag(const struct ec2_tag_list *t, const char *k, const char *v)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].key, k) && (!v || !strcmp(t->v[i].value, v)))
			return true;
	return false;
}

/* The image lifecycle the register stage and the AMI commands need. */
static int cmd_ec2_lifecycle(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: ec2-lifecycle SNAPSHOT\n");
		return 2;
	}
	const char *snap = argv[1];
	struct ec2_client c, west;
	struct af_error *err = NULL;
	ec2_client_init(&c, region, chain, &opts);
	ec2_client_init(&west, "us-west-2", chain, &opts);
	_cleanup_free_ char *ami = NULL, *dry = NULL;
	const struct ec2_block_device bdm[] = {
		{ .device_name = "/dev/xvda", .snapshot_id = snap, .volume_type = "gp3",
		  .volume_size = 2, .delete_on_termination = 1, .encrypted = 0 },
	};
	const struct aws_tag tags[] = { { "team", "infra" }, { "expire", "2030-01-01" } };
	struct ec2_register_image ri = {
		.name = "amiforge-test (1) [x]", .description = "a test image",
		.architecture = "x86_64", .root_device_name = "/dev/xvda",
		.virtualization_type = "hvm", .ena_support = 1, .sriov_net_support = "simple",
		.bdm = bdm, .n_bdm = 1, .tags = tags, .n_tags = 2, .dry_run = true,
	};
	result(ec2_register_image(&c, &ri, &dry, &err) == 0 && dry == NULL, "register dry run", &err);
	ri.dry_run = false;
	result(ec2_register_image(&c, &ri, &ami, &err) == 0 && ami, "register image", &err);
	if (!ami)
		return 1;
	_cleanup_free_ char *dup = NULL;
	result(ec2_register_image(&c, &ri, &dup, &err) < 0 && err &&
	       strstr(af_error_msg(err), "InvalidAMIName.Duplicate") &&
	       strstr(af_error_msg(err), "request id"), "duplicate name is an error with code and "
	       "request id", &err);

	const char *ids[] = { ami, snap };
	const struct aws_tag more[] = { { "stage", "test" } };
	result(ec2_create_tags(&c, ids, 2, more, 1, &err) == 0, "create tags", &err);
	const char *team[] = { "inf*" };
	const struct ec2_filter f[] = { { "tag:team", team, 1 } };
	struct ec2_image_list l = { 0 };
	struct ec2_image_query q = { .filters = f, .n_filters = 1 };
	bool ok = ec2_describe_images(&c, &q, &l, &err) == 0 && l.n == 1 &&
		  !strcmp(l.v[0].image_id, ami) && has_tag(&l.v[0].tags, "stage", "test") &&
		  l.v[0].ena_support && !strcmp(l.v[0].virtualization_type, "hvm") &&
		  l.v[0].n_bdm == 1 && !strcmp(l.v[0].bdm[0].snapshot_id, snap);
	result(ok, "describe images by tag filter", &err);
	ec2_image_list_release(&l);

	const struct aws_tag del[] = { { "stage", NULL } };
	const char *one[] = { ami };
	result(ec2_delete_tags(&c, one, 1, del, 1, &err) == 0, "delete tags", &err);

	const char *users[] = { "111122223333", "444455556666" };
	_cleanup_strv_ char **got = NULL;
	bool all = false;
	ok = ec2_modify_launch_permission(&c, ami, true, users, 2, true, &err) == 0 &&
	     ec2_modify_launch_permission(&c, ami, false, users + 1, 1, false, &err) == 0 &&
	     ec2_describe_launch_permission(&c, ami, &got, &all, &err) == 0 && all && got[0] &&
	     !strcmp(got[0], users[0]) && !got[1];
	result(ok, "launch permissions add, remove, describe", &err);
	ok = ec2_modify_launch_permission(&c, ami, true, (const char *[]){ "bad" }, 1, false, &err) < 0 &&
	     err && strstr(af_error_msg(err), "InvalidAMIAttributeItemValue");
	result(ok, "a bad account id is refused", &err);

	_cleanup_free_ char *desc = NULL;
	ok = ec2_modify_image_description(&c, ami, "new description", &err) == 0 &&
	     ec2_describe_image_attribute(&c, ami, "description", &desc, &err) == 0 && desc &&
	     !strcmp(desc, "new description");
	result(ok, "description attribute", &err);

	time_t when = time(NULL) + 90 * 86400;
	_cleanup_free_ char *dep = NULL;
	ok = ec2_enable_image_deprecation(&c, ami, when, &err) == 0 &&
	     ec2_describe_image_attribute(&c, ami, "deprecationTime", &dep, &err) == 0 && dep &&
	     strlen(dep) >= 19 && !strcmp(dep + 16, ":00.000Z");
	result(ok, "deprecation time (rounded to the minute)", &err);

	_cleanup_free_ char *copy = NULL, *copy2 = NULL;
	const struct ec2_copy_image cp = { .source_region = region, .source_image_id = ami,
					   .name = "amiforge-test-copy", .client_token = "tok-1",
					   .copy_image_tags = true };
	ok = ec2_copy_image(&west, &cp, &copy, &err) == 0 &&
	     ec2_copy_image(&west, &cp, &copy2, &err) == 0 && !strcmp(copy, copy2);
	result(ok, "copy image to us-west-2, idempotent with a client token", &err);
	const char *cid[] = { copy ? copy : "ami-00000000" };
	struct ec2_image_query cq = { .image_ids = cid, .n_image_ids = 1 };
	ok = ec2_describe_images(&west, &cq, &l, &err) == 0 && l.n == 1 &&
	     has_tag(&l.v[0].tags, "team", "infra") && l.v[0].bdm &&
	     strcmp(l.v[0].bdm[0].snapshot_id, snap) != 0;
	result(ok, "the copy has the tags and its own snapshot", &err);
	ec2_image_list_release(&l);
	struct ec2_image_query missing = { .image_ids = one, .n_image_ids = 1 };
	ok = ec2_describe_images(&west, &missing, &l, &err) < 0 &&
	     strstr(af_error_msg(err), "InvalidAMIID.NotFound");
	result(ok, "the source image is not in us-west-2", &err);

	ok = ec2_delete_snapshot(&c, snap, &err) < 0 && err &&
	     strstr(af_error_msg(err), "InvalidSnapshot.InUse");
	result(ok, "a snapshot in use cannot be deleted", &err);
	ok = ec2_deregister_image(&c, ami, true, &err) == 0;
	result(ok, "deregister with its snapshots", &err);
	struct ec2_snapshot_list sl = { 0 };
	const char *sid[] = { snap };
	struct ec2_snapshot_query sq = { .snapshot_ids = sid, .n_snapshot_ids = 1 };
	ok = ec2_describe_snapshots(&c, &sq, &sl, &err) < 0 && err &&
	     strstr(af_error_msg(err), "InvalidSnapshot.NotFound");
	result(ok, "its snapshot is gone", &err);

	struct ec2_instance_list il = { 0 };
	_cleanup_free_ char *made = NULL, *vsnap = NULL;
	ok = ec2_describe_instances(&c, NULL, 0, NULL, 0, &il, &err) == 0 && il.n >= 1;
	if (ok) {
		const struct ec2_create_image ci = { .instance_id = il.v[0].instance_id,
						     .name = "from-instance", .no_reboot = true,
						     .tags = tags, .n_tags = 1 };
		ok = ec2_create_image(&c, &ci, &made, &err) == 0 && made;
	}
	result(ok, "describe instances, create image from one", &err);
	ec2_instance_list_release(&il);

	ok = ec2_create_snapshot(&c, "vol-00000000000000000", NULL, NULL, 0, &vsnap, &err) < 0 &&
	     strstr(af_error_msg(err), "InvalidVolume.NotFound");
	result(ok, "create snapshot of a missing volume fails clearly", &err);

	ec2_client_release(&c);
	ec2_client_release(&west);
	return failed;
}

/* ---- ebs -------------------------------------------------------------------- */

struct upload {
	int fd;
	int64_t n_blocks, next;
	struct ebs_client *c;
	const char *snapshot;
	struct ebs_digests digests;
};

struct upload_item {
	struct http_batch_item item;
	struct ebs_block_put put;
	unsigned char data[EBS_BLOCK_SIZE];
};

static bool all_zero(const unsigned char *p, size_t n)
{
	return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

static int upload_next(void *data, struct http_batch_item **item, struct af_error **err)
{
	struct upload *u = data;
	struct upload_item *it = xcalloc(1, sizeof(*it));
	for (; u->next < u->n_blocks; u->next++) {
		memset(it->data, 0, sizeof(it->data));
		if (pread_all(u->fd, it->data, EBS_BLOCK_SIZE, u->next * EBS_BLOCK_SIZE) < 0) {
			free(it);
			return af_error_set(err, errno, "read block %lld", (long long)u->next);
		}
		if (all_zero(it->data, EBS_BLOCK_SIZE))
			continue;  /* coldsnap: zero blocks are omitted */
		ebs_block_put_init(&it->put, u->c, u->snapshot, u->next, it->data, EBS_BLOCK_SIZE,
				   (int)(100 * u->next / u->n_blocks));
		it->item.req = it->put.req;
		it->item.user = it;
		u->next++;
		*item = &it->item;
		return 1;
	}
	free(it);
	return 0;
}

static int upload_done(void *data, struct http_batch_item *item, struct af_error **err)
{
	struct upload *u = data;
	struct upload_item *it = item->user;
	int r = 0;
	if (item->err) {
		*err = steal_pointer(&item->err);
		r = -1;
	} else {
		ebs_digests_add(&u->digests, it->put.index, it->put.digest);
	}
	http_response_release(&item->resp);
	ebs_block_put_release(&it->put);
	free(it);
	return r;
}

static int cmd_ebs_upload(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: ebs-upload FILE [PARALLEL] [--bad-count|--bad-checksum]\n");
		return 2;
	}
	struct af_error *err = NULL;
	_cleanup_fd_ int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return af_error_set(&err, errno, "open %s", argv[1]), die(err);
	struct ebs_client c;
	ebs_client_init(&c, region, chain, &opts);
	int64_t gib = (st.st_size + (1LL << 30) - 1) >> 30;
	struct ebs_start_snapshot ss = { .volume_size_gib = gib ? gib : 1, .description = "awsdrv",
					 .client_token = getenv("AWSDRV_TOKEN"),
					 .timeout_minutes = 10 };
	struct ebs_snapshot_info info = { 0 };
	if (ebs_start_snapshot(&c, &ss, &info, &err) < 0)
		return die(err);
	struct upload u = { .fd = fd, .n_blocks = (st.st_size + EBS_BLOCK_SIZE - 1) / EBS_BLOCK_SIZE,
			    .c = &c, .snapshot = info.snapshot_id };
	const struct http_batch b = { .max_parallel = argc > 2 ? atoi(argv[2]) : 8,
				      .next = upload_next, .done = upload_done, .data = &u };
	int r = http_batch_run(&b, &err);
	char agg[45];
	ebs_digests_aggregate(&u.digests, agg);
	int64_t count = (int64_t)ebs_digests_count(&u.digests);
	const char *mode = argc > 3 ? argv[3] : "";
	if (!strcmp(mode, "--bad-count"))
		count++;
	if (!strcmp(mode, "--bad-checksum"))
		agg[0] = agg[0] == 'A' ? 'B' : 'A';
	_cleanup_free_ char *status = NULL;
	if (r == 0)
		r = ebs_complete_snapshot(&c, info.snapshot_id, count, agg, &status, &err);
	if (r == 0)
		printf("%s %lld %s\n", info.snapshot_id, (long long)count, status);
	ebs_digests_release(&u.digests);
	ebs_snapshot_info_release(&info);
	ebs_client_release(&c);
	return r < 0 ? die(err) : 0;
}

static int cmd_ebs_download(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: ebs-download SNAPSHOT OUT\n");
		return 2;
	}
	struct af_error *err = NULL;
	struct ebs_client c;
	struct ebs_block_list l = { 0 };
	ebs_client_init(&c, region, chain, &opts);
	if (ebs_list_blocks(&c, argv[1], 100, &l, &err) < 0)
		return die(err);
	_cleanup_fd_ int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	_cleanup_free_ unsigned char *buf = xmalloc(EBS_BLOCK_SIZE);
	int r = fd < 0 ? af_error_set(&err, errno, "create %s", argv[2]) : 0;
	for (size_t i = 0; r == 0 && i < l.n; i++) {
		size_t len = 0;
		r = ebs_get_block(&c, argv[1], l.v[i].index, l.v[i].token, buf, EBS_BLOCK_SIZE, &len,
				  &err);
		if (r == 0 && pwrite_all(fd, buf, len, l.v[i].index * EBS_BLOCK_SIZE) < 0)
			r = af_error_set(&err, errno, "write %s", argv[2]);
	}
	if (r == 0 && ftruncate(fd, l.volume_size_gib << 30) < 0)
		r = af_error_set(&err, errno, "truncate %s", argv[2]);
	if (r == 0)
		printf("%zu blocks\n", l.n);
	ebs_block_list_release(&l);
	ebs_client_release(&c);
	return r < 0 ? die(err) : 0;
}

/* ---- s3 --------------------------------------------------------------------- */

static int cmd_s3(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: s3 BUCKET\n");
		return 2;
	}
	const char *b = argv[1];
	struct s3_client c;
	struct af_error *err = NULL;
	s3_client_init(&c, region, chain, &opts);
	result(c.path_style, "custom endpoint means path-style", NULL);
	result(s3_create_bucket(&c, b, &err) == 0, "create bucket", &err);
	_cleanup_free_ char *etag = NULL, *data = NULL;
	static const char body[] = "manifest <xml/> with spaces";
	result(s3_put_object(&c, b, "img/x y.manifest.xml", body, strlen(body), "aws-exec-read",
			     "text/xml", &etag, &err) == 0 && etag && strlen(etag) == 32,
	       "put object with Content-MD5 and x-amz-acl", &err);
	struct s3_object_info info = { 0 };
	bool ok = s3_head_object(&c, b, "img/x y.manifest.xml", &info, &err) == 0 && info.exists &&
		  info.size == (int64_t)strlen(body) && !strcmp(info.etag, etag);
	s3_object_info_release(&info);
	result(ok, "head object", &err);
	ok = s3_head_object(&c, b, "img/missing", &info, &err) == 0 && !info.exists;
	result(ok, "head of a missing object says so", &err);
	size_t len = 0;
	ok = s3_get_object(&c, b, "img/x y.manifest.xml", &data, &len, &err) == 0 &&
	     len == strlen(body) && !memcmp(data, body, len);
	result(ok, "get object", &err);
	ok = s3_get_object(&c, b, "img/missing", &data, &len, &err) < 0 && err &&
	     strstr(af_error_msg(err), "NoSuchKey");
	result(ok, "get of a missing object names NoSuchKey", &err);

	char key[64];
	for (int i = 0; i < 5; i++) {
		snprintf(key, sizeof(key), "img/x.part.%d", i);
		if (s3_put_object(&c, b, key, key, strlen(key), NULL, NULL, NULL, &err) < 0)
			break;
	}
	struct s3_object_list l = { 0 };
	ok = !err && s3_list_objects(&c, b, "img/x.part.", 2, &l, &err) == 0 && l.n == 5 &&
	     !strcmp(l.v[4].key, "img/x.part.4");
	result(ok, "list objects v2 across pages", &err);
	s3_object_list_release(&l);

	_cleanup_free_ char *upload = NULL, *e1 = NULL, *e2 = NULL, *final = NULL;
	size_t part = 5 << 20;
	_cleanup_free_ char *big = xmalloc(part);
	memset(big, 'a', part);
	ok = s3_multipart_create(&c, b, "big.img", "private", &upload, &err) == 0 &&
	     s3_multipart_upload(&c, b, "big.img", upload, 1, big, part, &e1, &err) == 0 &&
	     s3_multipart_upload(&c, b, "big.img", upload, 2, "tail", 4, &e2, &err) == 0;
	if (ok) {
		const struct s3_part parts[] = { { 1, e1 }, { 2, e2 } };
		ok = s3_multipart_complete(&c, b, "big.img", upload, parts, 2, &final, &err) == 0;
	}
	result(ok, "multipart create, upload, complete", &err);
	ok = s3_head_object(&c, b, "big.img", &info, &err) == 0 && info.exists &&
	     info.size == (int64_t)part + 4;
	s3_object_info_release(&info);
	result(ok, "the multipart object has the size of its parts", &err);

	ok = s3_delete_object(&c, b, "img/x y.manifest.xml", &err) == 0 &&
	     s3_head_object(&c, b, "img/x y.manifest.xml", &info, &err) == 0 && !info.exists;
	result(ok, "delete object", &err);
	s3_client_release(&c);
	return failed;
}

static int cmd_s3_abort(int argc, char **argv)
{
	struct s3_client c;
	struct af_error *err = NULL;
	s3_client_init(&c, region, chain, &opts);
	int r = s3_multipart_abort(&c, argv[1], "k", "0123", &err);
	s3_client_release(&c);
	return r < 0 ? die(err) : 0;
}

/* ---- s3: conditional writes, found/missing, batches -------------------------------- */

/* The exit code of a refused condition, apart from other failures (1). */
#define EXIT_REFUSED 3

static void md5_hex(const void *data, size_t len, char out[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_Digest(data, len, md, &n, EVP_md5(), NULL);
	for (unsigned int i = 0; i < n && i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* s3-put-cond BUCKET KEY DATA [create|ETAG]: prints the new ETag; a refused
 * condition prints "refused" (the message on stderr) and exits 3. */
static int cmd_s3_put_cond(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: s3-put-cond BUCKET KEY DATA [create|ETAG]\n");
		return 2;
	}
	struct s3_cond cond = { 0 };
	if (argc > 4 && !strcmp(argv[4], "create"))
		cond.if_none_match_any = true;
	else if (argc > 4)
		cond.if_match = argv[4];
	struct s3_client c;
	struct af_error *err = NULL;
	_cleanup_free_ char *etag = NULL;
	s3_client_init(&c, region, chain, &opts);
	int r = s3_put_object_cond(&c, argv[1], argv[2], argv[3], strlen(argv[3]),
				   argc > 4 ? &cond : NULL, &etag, &err);
	s3_client_release(&c);
	if (r < 0 && af_error_errno(err) == S3_CONDITION_FAILED) {
		printf("refused\n");
		fprintf(stderr, "awsdrv: %s\n", af_error_msg(err));
		af_error_free(err);
		return EXIT_REFUSED;
	}
	if (r < 0)
		return die(err);
	printf("%s\n", etag);
	return 0;
}

/* s3-get-found BUCKET KEY: "found ETAG LEN MD5-OF-THE-DATA" or "missing". */
static int cmd_s3_get_found(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: s3-get-found BUCKET KEY\n");
		return 2;
	}
	struct s3_client c;
	struct af_error *err = NULL;
	_cleanup_free_ char *data = NULL, *etag = NULL;
	size_t len = 0;
	bool found = false;
	s3_client_init(&c, region, chain, &opts);
	int r = s3_get_object_found(&c, argv[1], argv[2], &data, &len, &etag, &found, &err);
	s3_client_release(&c);
	if (r < 0)
		return die(err);
	char md5[33] = "";
	if (found)
		md5_hex(data, len, md5);
	if (found)
		printf("found %s %zu %s\n", etag, len, md5);
	else
		printf("missing%s\n", data || etag || len ? " (with outputs set)" : "");
	return 0;
}

/* s3-head BUCKET KEY: "exists ETAG SIZE" or "missing". */
static int cmd_s3_head(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: s3-head BUCKET KEY\n");
		return 2;
	}
	struct s3_client c;
	struct af_error *err = NULL;
	struct s3_object_info info = { 0 };
	s3_client_init(&c, region, chain, &opts);
	int r = s3_head_object(&c, argv[1], argv[2], &info, &err);
	s3_client_release(&c);
	if (r < 0)
		return die(err);
	if (info.exists)
		printf("exists %s %lld\n", info.etag, (long long)info.size);
	else
		printf("missing\n");
	s3_object_info_release(&info);
	return 0;
}

/* s3-list BUCKET PREFIX: the keys, one a line. */
static int cmd_s3_list(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: s3-list BUCKET PREFIX\n");
		return 2;
	}
	struct s3_client c;
	struct af_error *err = NULL;
	struct s3_object_list l = { 0 };
	s3_client_init(&c, region, chain, &opts);
	int r = s3_list_objects(&c, argv[1], argv[2], 0, &l, &err);
	s3_client_release(&c);
	if (r < 0)
		return die(err);
	for (size_t i = 0; i < l.n; i++)
		printf("%s\n", l.v[i].key);
	s3_object_list_release(&l);
	return 0;
}

static int cmd_s3_delete(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: s3-delete BUCKET KEY\n");
		return 2;
	}
	struct s3_client c;
	struct af_error *err = NULL;
	s3_client_init(&c, region, chain, &opts);
	int r = s3_delete_object(&c, argv[1], argv[2], &err);
	s3_client_release(&c);
	return r < 0 ? die(err) : 0;
}

struct s3_batch_obj {
	struct s3_batch_req req;
	char key[256], data[300];
};

/* The key and the content of object I under PREFIX, the same for put and get. */
static void s3_batch_obj_name(struct s3_batch_obj *o, const char *prefix, int i)
{
	snprintf(o->key, sizeof(o->key), "%s%04d", prefix, i);
	snprintf(o->data, sizeof(o->data), "object %d under %s", i, prefix);
}

/* Per-item outcome words and counts: [0] stored/got, [1] refused/missing,
 * [2] failed, [3] bad content (get). */
static void s3_batch_report(bool put, struct s3_batch_obj *o, struct http_batch_item *it,
			    int count[4])
{
	static const char *const words[2][4] = { { "got", "missing", "failed", "bad" },
						  { "stored", "refused", "failed", "bad" } };
	int out = put ? s3_batch_put_outcome(it) : s3_batch_get_outcome(it);
	int k = out < 0 ? 2 : out;
	if (!put && out == 0 && (it->resp.body_len != strlen(o->data) ||
				 memcmp(it->resp.body, o->data, it->resp.body_len)))
		k = 3;
	count[k]++;
	printf("%s %s%s%s\n", o->key, words[put][k], it->err ? ": " : "",
	       it->err ? af_error_msg(it->err) : "");
}

/* s3-batch put|get BUCKET PREFIX N [create] [PARALLEL]: N PutObjects (with
 * If-None-Match: * for create) or GetObjects of PREFIXnnnn in one
 * http_batch_run; one line per object, then the counts and how the run
 * ended.  Exit 1 if any failed or came back with the wrong content. */
static int cmd_s3_batch(int argc, char **argv)
{
	if (argc < 5 || (strcmp(argv[1], "put") && strcmp(argv[1], "get"))) {
		fprintf(stderr, "usage: s3-batch put|get BUCKET PREFIX N [create] [PARALLEL]\n");
		return 2;
	}
	bool put = !strcmp(argv[1], "put");
	int n = atoi(argv[4]);
	const struct s3_cond cond = { .if_none_match_any = argc > 5 && !strcmp(argv[5], "create") };
	struct s3_client c;
	s3_client_init(&c, region, chain, &opts);
	struct s3_batch_obj *objs = xcalloc((size_t)n, sizeof(*objs));
	struct http_batch_item *items = xcalloc((size_t)n, sizeof(*items));
	for (int i = 0; i < n; i++) {
		s3_batch_obj_name(&objs[i], argv[3], i);
		if (put)
			s3_batch_put_init(&objs[i].req, &c, argv[2], objs[i].key, objs[i].data,
					  strlen(objs[i].data), &cond);
		else
			s3_batch_get_init(&objs[i].req, &c, argv[2], objs[i].key);
		items[i].req = objs[i].req.req;
	}
	struct af_error *err = NULL;
	int r = http_batch_run_items(items, (size_t)n, argc > 6 ? atoi(argv[6]) : 4, &err);
	int count[4] = { 0 };
	for (int i = 0; i < n; i++) {
		s3_batch_report(put, &objs[i], &items[i], count);
		http_response_release(&items[i].resp);
		af_error_free(items[i].err);
		s3_batch_req_release(&objs[i].req);
	}
	printf(put ? "stored=%d refused=%d failed=%d\n" : "got=%d missing=%d failed=%d bad=%d\n",
	       count[0], count[1], count[2], count[3]);
	printf("run %s%s\n", r == 0 ? "ok" : "failed: ", r == 0 ? "" : af_error_msg(err));
	af_error_free(err);
	free(items);
	free(objs);
	s3_client_release(&c);
	return count[2] || count[3] ? 1 : 0;
}

/* ---- credentials and imds ------------------------------------------------------ */

static int cmd_imds(int argc, char **argv)
{
	struct af_error *err = NULL;
	char *v = NULL;
	const char *what = argc > 1 ? argv[1] : "region";
	int r;
	if (!strcmp(what, "creds")) {
		struct aws_creds cr = { 0 };
		r = aws_creds_from_imds(imds_client_iface(imds), &cr, &err);
		if (r == 0)
			printf("%s %s %lld\n", cr.access_key_id, cr.source, (long long)cr.expiration);
		aws_creds_release(&cr);
	} else {
		r = !strcmp(what, "region") ? imds_region(imds, &v, &err) :
		    imds_instance_id(imds, &v, &err);
		if (r == 0)
			printf("%s\n", v);
		free(v);
	}
	if (r == 0)
		printf("via %s\n", imds_client_used_v1(imds) ? "v1" : "v2");
	if (r == 1)
		printf("not available\n");
	return r < 0 ? die(err) : r;
}

/* Prints the access key id of the chain N times, SECS apart (refresh tests). */
static int cmd_creds(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1;
	double secs = argc > 2 ? atof(argv[2]) : 0;
	for (int i = 0; i < n; i++) {
		struct aws_creds cr = { 0 };
		struct af_error *err = NULL;
		if (aws_creds_chain_get(chain, &cr, &err) < 0)
			return die(err);
		printf("%s %s%s\n", cr.access_key_id, cr.source, cr.session_token ? " +token" : "");
		fflush(stdout);
		aws_creds_release(&cr);
		if (i + 1 < n)
			usleep((useconds_t)(secs * 1e6));
	}
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "creds", cmd_creds },
	{ "ebs-download", cmd_ebs_download },
	{ "ebs-upload", cmd_ebs_upload },
	{ "ec2-lifecycle", cmd_ec2_lifecycle },
	{ "images", cmd_images },
	{ "imds", cmd_imds },
	{ "regions", cmd_regions },
	{ "register", cmd_register },
	{ "s3", cmd_s3 },
	{ "s3-abort", cmd_s3_abort },
	{ "s3-batch", cmd_s3_batch },
	{ "s3-delete", cmd_s3_delete },
	{ "s3-get-found", cmd_s3_get_found },
	{ "s3-head", cmd_s3_head },
	{ "s3-list", cmd_s3_list },
	{ "s3-put-cond", cmd_s3_put_cond },
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: awsdrv COMMAND [ARGS]  (AWSDRV_ATTEMPTS, AWSDRV_TIMEOUT_MS, "
			"AWSDRV_TOTAL_MS tune the http options)\n");
		return 2;
	}
	log_init(LOG_LEVEL_INFO, false);
	region = getenv("AWS_REGION") ? getenv("AWS_REGION") : "eu-west-1";
	opts = HTTP_OPTIONS_DEFAULT;
	opts.backoff_base_ms = 20;
	opts.backoff_cap_ms = 200;
	if (getenv("AWSDRV_ATTEMPTS"))
		opts.max_attempts = atoi(getenv("AWSDRV_ATTEMPTS"));
	if (getenv("AWSDRV_TIMEOUT_MS"))
		opts.attempt_timeout_ms = atol(getenv("AWSDRV_TIMEOUT_MS"));
	if (getenv("AWSDRV_TOTAL_MS"))
		opts.total_timeout_ms = atol(getenv("AWSDRV_TOTAL_MS"));
	/* The engine's own: the process-wide IMDS client behind the default chain. */
	imds = imds_client_default();
	chain = aws_creds_chain_new(NULL);
	int rc = 2;
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			rc = commands[i].fn(argc - 1, argv + 1);
	if (rc == 2)
		fprintf(stderr, "awsdrv: unknown command or bad usage: %s\n", argv[1]);
	aws_creds_chain_free(chain);
	return rc;
}
