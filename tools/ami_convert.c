/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami convert`: an instance-store AMI (or a bundle in S3) to an
 * EBS-backed AMI, without an EC2 host (ami.h, issue #11).
 *
 *   manifest from S3 (the AMI's ImageLocation, or the URL) -> signature
 *   checked -> bundle key unwrapped with --key -> StartSnapshot -> parts
 *   fetched one at a time, each's SHA-1 checked before use -> decrypt ->
 *   gunzip -> the tar member's data -> 512 KiB blocks -> PutSnapshotBlock
 *   (non-zero blocks) -> CompleteSnapshot -> wait completed ->
 *   RegisterImage (same architecture, virtualization, kernel, ramdisk; the
 *   root device on the snapshot), tagged amiforge:converted-from.
 *
 * Nothing of the image's size touches the disk or memory: one part (10
 * MiB) and a few blocks at a time.  A failure after StartSnapshot deletes
 * the pending snapshot; nothing is registered. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/ami.h"
#include "amiforge/aws/ebs.h"
#include "amiforge/aws/ebs_stream.h"
#include "amiforge/aws/s3.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/params.h"
#include "amiforge/unbundle.h"
#include "amiforge/util.h"
#include "ami_convert.h"

#define CONV_TAG "amiforge:converted-from"
#define CONV_GIB (1024ull * 1024 * 1024)
#define CONV_POLL_FIRST 2.0
#define CONV_POLL_CAP 30.0

static const char conv_usage[] =
	"usage: amiforge ami convert (AMI | s3://BUCKET/PREFIX/NAME.manifest.xml) --key PK.pem\n"
	"           [--cert CERT.pem] [--name NAME] [--region R] [--profile P] [--wait TIMEOUT]\n"
	"           [--dry-run] [--json]\n"
	"  --key    the private key of the certificate the bundle was made for: decrypts\n"
	"           the bundle and (its public half) checks the manifest's signature\n"
	"  --cert   the signer's certificate, when the manifest was signed by another key\n"
	"  --name   the new AMI's name (default: the source's with \"-ebs\")\n"
	"  --wait   how long to wait for the snapshot to complete (default 1h)\n";

enum { OPT_KEY = AMI_OPT_FIRST_OWN, OPT_CERT, OPT_NAME, OPT_WAIT };

struct conv {
	struct ami_common c;
	const char *source, *key_pem, *cert_pem, *name;
	const char *wait;              /* --wait's text */
	uint64_t wait_s;
	struct ami_region r;
	struct s3_client s3;
	struct ebs_client ebs;
	struct ec2_image_list src;     /* the source AMI (n == 0 for a URL) */
	struct conv_manifest m;
	char *snapshot_id, *image_id, *new_name;
	int64_t blocks;
};

static int conv_option(void *arg, int opt, char *val)
{
	struct conv *v = arg;
	switch (opt) {
	case OPT_KEY: v->key_pem = val; return 0;
	case OPT_CERT: v->cert_pem = val; return 0;
	case OPT_NAME: v->name = val; return 0;
	case OPT_WAIT: v->wait = val; return 0;
	default: return ami_usage_error("convert", conv_usage, "unknown option");
	}
}

/* -1 to go on, else the exit code (EXIT_OK after --help). */
static int conv_options(struct conv *v, int argc, char **argv)
{
	static const struct option opts[] = {
		AMI_COMMON_LONGOPTS,
		{ "key", required_argument, NULL, OPT_KEY },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "wait", required_argument, NULL, OPT_WAIT },
		{ NULL, 0, NULL, 0 },
	};
	int first;
	v->wait = "1h";
	int rc = ami_parse_options(argc, argv, opts, conv_usage, &v->c, conv_option, v, &first);
	if (rc)
		return rc == AMI_PARSE_HELP ? EXIT_OK : rc;
	if (first + 1 != argc)
		return ami_usage_error("convert", conv_usage, "give one AMI id or s3:// manifest URL");
	v->source = argv[first];
	if (!v->key_pem)
		return ami_usage_error("convert", conv_usage, "--key PK.pem is needed to decrypt the bundle");
	if (param_parse_duration(v->wait, &v->wait_s) < 0 || !v->wait_s)
		return ami_usage_error("convert", conv_usage, "--wait '%s' is not a duration (e.g. 30m, 2h)", v->wait);
	if (v->c.all_regions || v->c.n_regions > 1)
		return ami_usage_error("convert", conv_usage, "convert works in one region: give at most one --region");
	return -1;
}

/* ---- the source ---- */

static int conv_source_ami(struct conv *v, char **bucket, char **key, struct af_error **err)
{
	const char *ids[] = { v->source };
	struct ec2_image_query q = { .image_ids = ids, .n_image_ids = 1, .include_deprecated = true };
	if (ec2_describe_images(&v->r.ec2, &q, &v->src, err) < 0)
		return af_error_wrap(err, "describe %s", v->source);
	if (v->src.n != 1)
		return af_error_set(err, 0, "AMI %s not found in %s (give --region)", v->source, v->r.aws.region);
	const struct ec2_image *im = &v->src.v[0];
	if (im->root_device_type && strcmp(im->root_device_type, "instance-store") != 0)
		return af_error_set(err, 0, "AMI %s is %s-backed already: only an instance-store AMI is converted",
				    v->source, im->root_device_type);
	if (!im->image_location)
		return af_error_set(err, 0, "AMI %s has no ImageLocation: give the bundle's s3:// manifest URL", v->source);
	return conv_split_location(im->image_location, 0, bucket, key, err);
}

static int conv_source(struct conv *v, struct af_error **err)
{
	char *bucket = NULL, *key = NULL;
	int r = strncmp(v->source, "s3://", 5) == 0 ? conv_split_location(v->source, 1, &bucket, &key, err)
						    : conv_source_ami(v, &bucket, &key, err);
	if (r < 0)
		return -1;
	if (conv_manifest_fetch(&v->s3, bucket, key, &v->m, err) < 0)
		return -1;
	if (conv_verify_signature(&v->m, v->key_pem, v->cert_pem, err) < 0)
		return -1;
	_cleanup_free_ char *url = xasprintf("s3://%s/%s", v->m.bucket, v->m.key);
	if (unbundle_key_check(v->m.text, v->m.len, url, v->key_pem, err) < 0)
		return -1;
	const char *base = v->src.n && v->src.v[0].name ? v->src.v[0].name : v->m.name;
	v->new_name = v->name ? xstrdup(v->name) : xasprintf("%s-ebs", base);
	return 0;
}

/* ---- the snapshot ---- */

static int64_t conv_gib(const struct conv *v)
{
	int64_t g = (int64_t)((v->m.size + CONV_GIB - 1) / CONV_GIB);
	return g < 1 ? 1 : g;
}

static int conv_start(struct conv *v, struct af_error **err)
{
	char token[37], seed[64];
	snprintf(seed, sizeof(seed), "%ld.%d", (long)time(NULL), (int)getpid());
	_cleanup_free_ char *purpose = xasprintf("ami convert %s %s", v->source, v->m.digest);
	uuid_derive(seed, purpose, token);
	_cleanup_free_ char *desc = xasprintf("amiforge ami convert of %s", v->source);
	struct aws_tag tag = { CONV_TAG, v->source };
	struct ebs_start_snapshot ss = { .volume_size_gib = conv_gib(v), .description = desc,
					 .client_token = token, .tags = &tag, .n_tags = 1 };
	struct ebs_snapshot_info info = { 0 };
	if (ebs_start_snapshot(&v->ebs, &ss, &info, err) < 0)
		return af_error_wrap(err, "start a snapshot for %s", v->source);
	v->snapshot_id = steal_pointer(&info.snapshot_id);
	ebs_snapshot_info_release(&info);
	log_info("started snapshot %s (%" PRId64 " GiB) for %s", v->snapshot_id, conv_gib(v), v->source);
	return 0;
}

static int conv_stream_sink(void *arg, uint64_t off, const void *data, size_t len, struct af_error **err)
{
	return ebs_stream_write(arg, off, data, len, err);
}

static int conv_send(struct conv *v, struct af_error **err)
{
	struct ebs_stream_opts so = { .ebs = &v->ebs, .snapshot_id = v->snapshot_id,
				      .size = (uint64_t)conv_gib(v) * CONV_GIB };
	struct ebs_stream *st = ebs_stream_new(&so);
	struct conv_fetch f = { .s3 = &v->s3, .m = &v->m, .sink = conv_stream_sink, .sink_arg = st };
	struct unbundle_source src = { .fetch = conv_fetch_part, .sink = conv_sink, .arg = &f };
	_cleanup_free_ char *url = xasprintf("s3://%s/%s", v->m.bucket, v->m.key);
	_cleanup_free_ char *status = NULL;
	int r = unbundle_stream(v->m.text, v->m.len, url, v->key_pem, &src, err);
	if (r == 0 && src.image_size > so.size)
		r = af_error_set(err, 0, "bundle '%s': the image is %" PRIu64 " bytes, more than its manifest's size",
				 url, src.image_size);
	if (r == 0)
		r = ebs_stream_finish(st, &status, err);
	v->blocks = ebs_stream_written(st);
	ebs_stream_free(st);
	return r;
}

static int conv_snapshot_state(struct conv *v, char **state, struct af_error **err)
{
	const char *ids[] = { v->snapshot_id };
	struct ec2_snapshot_query q = { .snapshot_ids = ids, .n_snapshot_ids = 1 };
	struct ec2_snapshot_list l = { 0 };
	*state = NULL;
	if (ec2_describe_snapshots(&v->r.ec2, &q, &l, err) < 0)
		return -1;
	if (l.n && l.v[0].state)
		*state = xasprintf("%s%s%s", l.v[0].state, l.v[0].state_message ? ": " : "",
				   l.v[0].state_message ? l.v[0].state_message : "");
	ec2_snapshot_list_release(&l);
	return 0;
}

/* DescribeSnapshots until completed, with backoff, within --wait. */
static int conv_wait(struct conv *v, struct af_error **err)
{
	double t0 = now_monotonic(), sleep_s = CONV_POLL_FIRST;
	for (;;) {
		_cleanup_free_ char *state = NULL;
		if (conv_snapshot_state(v, &state, err) < 0)
			return af_error_wrap(err, "wait for snapshot %s", v->snapshot_id);
		if (state && !strcmp(state, "completed"))
			return 0;
		if (!state || str_has_prefix(state, "error"))
			return af_error_set(err, 0, "snapshot %s %s", v->snapshot_id, state ? state : "disappeared");
		double now = now_monotonic();
		if (now + sleep_s > t0 + (double)v->wait_s)
			return af_error_set(err, ETIMEDOUT, "snapshot %s is still %s after %.0fs; raise --wait", v->snapshot_id,
					    state, now - t0);
		log_info("snapshot %s is %s; checking again in %.0fs", v->snapshot_id, state, sleep_s);
		struct timespec ts = { (time_t)sleep_s, 0 };
		nanosleep(&ts, NULL);
		sleep_s = sleep_s * 2 > CONV_POLL_CAP ? CONV_POLL_CAP : sleep_s * 2;
	}
}

/* ---- the AMI ---- */

static int conv_register(struct conv *v, struct af_error **err)
{
	const struct ec2_image *im = v->src.n ? &v->src.v[0] : NULL;
	const char *kernel = im && im->kernel_id ? im->kernel_id : v->m.kernel_id;
	const char *ramdisk = im && im->ramdisk_id ? im->ramdisk_id : v->m.ramdisk_id;
	const char *virt = im && im->virtualization_type ? im->virtualization_type : kernel ? "paravirtual" : "hvm";
	const char *arch = im && im->architecture ? im->architecture : v->m.architecture;
	const char *root = im && im->root_device_name ? im->root_device_name : "/dev/sda1";
	struct ec2_block_device bd = { .device_name = root, .snapshot_id = v->snapshot_id, .volume_type = "gp3",
				       .volume_size = conv_gib(v), .delete_on_termination = 1, .encrypted = -1 };
	_cleanup_free_ char *desc = xasprintf("%s converted to EBS by amiforge", v->source);
	struct aws_tag tag = { CONV_TAG, v->source };
	struct ec2_register_image ri = {
		.name = v->new_name, .description = desc, .architecture = arch, .root_device_name = root,
		.virtualization_type = virt, .kernel_id = !strcmp(virt, "paravirtual") ? kernel : NULL,
		.ramdisk_id = !strcmp(virt, "paravirtual") ? ramdisk : NULL, .ena_support = -1,
		.bdm = &bd, .n_bdm = 1, .tags = &tag, .n_tags = 1,
	};
	if (ec2_register_image(&v->r.ec2, &ri, &v->image_id, err) < 0)
		return af_error_wrap(err, "register '%s' on snapshot %s (the snapshot is kept: delete it or register it yourself)",
				     v->new_name, v->snapshot_id);
	return 0;
}

/* ---- output ---- */

static void conv_print(const struct conv *v, bool dry_run)
{
	if (v->c.json) {
		_cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b}", "source", v->source, "manifest",
						     v->m.key, "name", v->new_name, "size", (json_int_t)v->m.size,
						     "parts", (json_int_t)v->m.n_parts, "dry_run", dry_run);
		json_object_set_new(o, "bucket", json_string(v->m.bucket));
		if (!dry_run) {
			json_object_set_new(o, "image_id", json_string(v->image_id));
			json_object_set_new(o, "snapshot_id", json_string(v->snapshot_id));
			json_object_set_new(o, "blocks_written", json_integer(v->blocks));
		}
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
	} else if (dry_run) {
		printf("would convert %s (s3://%s/%s: signature and key checked, %zu part(s), %" PRIu64
		       " bytes) into a %" PRId64 " GiB snapshot and register '%s'\n",
		       v->source, v->m.bucket, v->m.key, v->m.n_parts, v->m.size, conv_gib(v), v->new_name);
	} else {
		printf("%s\t%s\t%s\t%" PRId64 " blocks written\n", v->image_id, v->snapshot_id, v->new_name, v->blocks);
	}
}

/* ---- the flow ---- */

static void conv_abandon(struct conv *v)
{
	_cleanup_error_ struct af_error *e = NULL;
	if (ec2_delete_snapshot(&v->r.ec2, v->snapshot_id, &e) < 0)
		log_warn("could not delete the unfinished snapshot %s: %s; delete it yourself", v->snapshot_id,
			 af_error_msg(e));
	else
		log_info("deleted the unfinished snapshot %s", v->snapshot_id);
}

static int conv_run(struct conv *v, struct af_error **err)
{
	if (conv_source(v, err) < 0)
		return -1;
	if (v->c.dry_run) {
		conv_print(v, true);
		return 0;
	}
	if (conv_start(v, err) < 0)
		return -1;
	if (conv_send(v, err) < 0 || conv_wait(v, err) < 0) {
		conv_abandon(v);
		return -1;
	}
	if (conv_register(v, err) < 0)
		return -1;
	log_info("registered %s '%s' on snapshot %s (%" PRId64 " blocks written)", v->image_id, v->new_name,
		 v->snapshot_id, v->blocks);
	conv_print(v, false);
	return 0;
}

static void conv_release(struct conv *v)
{
	conv_manifest_release(&v->m);
	ec2_image_list_release(&v->src);
	free(v->snapshot_id);
	free(v->image_id);
	free(v->new_name);
	if (v->ebs.endpoint)
		ebs_client_release(&v->ebs);
	if (v->s3.endpoint)
		s3_client_release(&v->s3);
	ami_region_close(&v->r);
	ami_common_release(&v->c);
}

int ami_convert_main(int argc, char **argv)
{
	struct conv v = { 0 };
	int rc = conv_options(&v, argc, argv);
	_cleanup_error_ struct af_error *err = NULL;
	if (rc < 0 && ami_region_open(&v.c, NULL, &v.r, &err) == 0) {
		s3_client_init(&v.s3, v.r.aws.region, v.r.aws.creds, &v.r.aws.opts);
		ebs_client_init(&v.ebs, v.r.aws.region, v.r.aws.creds, &v.r.aws.opts);
		rc = conv_run(&v, &err) == 0 ? EXIT_OK : -1;
	}
	if (rc < 0) {
		log_error("ami convert %s: %s", v.source, af_error_msg(err));
		rc = ami_exit_code(err);
	}
	conv_release(&v);
	return rc;
}
