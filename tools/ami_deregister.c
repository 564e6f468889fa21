/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami deregister`: DeregisterImage for each AMI given, then
 * optionally what backed it: its EBS snapshots (--delete-snapshots) or its
 * instance-store bundle in S3 (--delete-bundle: the manifest at
 * ImageLocation and every part it names, as ec2-delete-bundle does).
 *
 * Each AMI is done on its own: a failure is named and the next AMI still
 * goes (exit 1).  Deleting twice is not an error: a snapshot already gone
 * (InvalidSnapshot.NotFound) and a missing S3 key count as deleted, and a
 * DeregisterImage answered NotFound after the image was just described is
 * a retry whose first attempt went through.  The manifest is read before
 * the image is deregistered (its location is known only from the image)
 * and deleted last, after its parts.
 * --dry-run: DeregisterImage and DeleteSnapshot with EC2's DryRun; for S3,
 * the manifest is read and the keys that would go are printed. */
#include <getopt.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/ami.h"
#include "amiforge/aws/awsxml.h"
#include "amiforge/aws/s3.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/mem.h"

static const char dereg_usage[] =
	"usage: amiforge ami deregister AMI... [--delete-snapshots] [--delete-bundle] [--region R]\n"
	"                               [--dry-run] [--json] [--profile NAME]\n"
	"  deregisters each AMI (a failure is named and the others still go: exit 1)\n"
	"  --delete-snapshots  then deletes its EBS snapshots (one already gone is fine)\n"
	"  --delete-bundle     instance-store AMIs: then deletes the S3 manifest at its\n"
	"                      ImageLocation and every part it names (ec2-delete-bundle)\n"
	"  --dry-run           EC2's DryRun for the EC2 calls, the S3 keys printed\n";

enum { DEREG_OPT_SNAPSHOTS = AMI_OPT_FIRST_OWN, DEREG_OPT_BUNDLE };

struct dereg_opts {
	struct ami_common c;
	char **amis;
	size_t n_amis;
	bool delete_snapshots, delete_bundle;
};

/* One instance-store bundle: the manifest's bucket and key, and the keys of
 * its parts (same prefix as the manifest). */
struct dereg_bundle {
	char *bucket, *manifest;
	char **parts;
	size_t n_parts;
	bool found;
};

static void dereg_bundle_release(struct dereg_bundle *b)
{
	free(b->bucket);
	free(b->manifest);
	for (size_t i = 0; i < b->n_parts; i++)
		free(b->parts[i]);
	free(b->parts);
	*b = (struct dereg_bundle){ 0 };
}

static bool dereg_is_gone(const struct af_error *e, const char *code)
{
	return e && strstr(af_error_msg(e), code);
}

/* A dry run's "would have succeeded" is AWS's DryRunOperation error. */
static int dereg_dry_call(const struct ec2_client *ec2, const char *action, const char *id_name,
			  const char *id, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, id_name, id);
	ec2_params_add_bool(&p, "DryRun", true);
	int rc = ec2_call(ec2, action, &p, NULL, err);
	ec2_params_release(&p);
	if (rc < 0 && strstr(af_error_msg(*err), "DryRunOperation")) {
		af_error_clear(err);
		return 0;
	}
	return rc < 0 ? -1 : af_error_set(err, 0, "%s %s: the dry run was not refused as AWS refuses one",
					  action, id);
}

/* The part file names a manifest lists (<image><parts><part><filename>).
 * A name with a '/' is refused: it would reach outside the bundle's prefix. */
static int dereg_manifest_parts(const char *body, size_t len, const char *dir,
				struct dereg_bundle *b, struct af_error **err)
{
	_cleanup_xmldoc_ xmlDoc *doc = awsxml_parse(body, len, "bundle manifest", err);
	if (!doc)
		return -1;
	xmlNode *parts = awsxml_path(xmlDocGetRootElement(doc), "image", "parts", NULL);
	if (!parts)
		return af_error_set(err, 0, "s3://%s/%s has no <image><parts>: not a bundle manifest",
				    b->bucket, b->manifest);
	awsxml_foreach(part, parts, "part") {
		_cleanup_free_ char *name = awsxml_text(part, "filename");
		if (!name || !*name || strchr(name, '/') || !strcmp(name, ".."))
			return af_error_set(err, 0, "s3://%s/%s names a part '%s' outside its prefix: "
					    "refusing to delete anything", b->bucket, b->manifest, name ?: "");
		b->parts = xreallocarray(b->parts, b->n_parts + 1, sizeof(*b->parts));
		b->parts[b->n_parts++] = xasprintf("%s%s", dir, name);
	}
	return 0;
}

/* ImageLocation "BUCKET/PREFIX/NAME.manifest.xml": the manifest and its parts. */
static int dereg_bundle_read(const struct s3_client *s3, const struct ec2_image *img,
			     struct dereg_bundle *b, struct af_error **err)
{
	const char *loc = img->image_location ?: "";
	const char *slash = strchr(loc, '/');
	if (!slash || !slash[1])
		return af_error_set(err, 0, "its ImageLocation '%s' is not BUCKET/KEY", loc);
	b->bucket = xstrndup(loc, (size_t)(slash - loc));
	b->manifest = xstrdup(slash + 1);
	const char *base = strrchr(b->manifest, '/');
	_cleanup_free_ char *dir = xstrndup(b->manifest, base ? (size_t)(base - b->manifest) + 1 : 0);
	_cleanup_free_ char *body = NULL;
	size_t len = 0;
	if (s3_get_object_found(s3, b->bucket, b->manifest, &body, &len, NULL, &b->found, err) < 0)
		return af_error_wrap(err, "reading its manifest");
	if (!b->found)
		return 0;
	return dereg_manifest_parts(body, len, dir, b, err);
}

struct dereg_ctx {
	const struct dereg_opts *o;
	struct ami_region r;
	struct s3_client s3;
	bool s3_open;
	json_t *report;   /* array of per-AMI objects */
	int worst;
};

static void dereg_fail(struct dereg_ctx *x, json_t *item, const char *id, const char *what,
		       struct af_error **e)
{
	fprintf(stderr, "amiforge ami deregister: %s: %s: %s\n", id, what, af_error_msg(*e));
	json_array_append_new(json_object_get(item, "failed"),
			      json_pack("{s:s, s:s}", "id", id, "error", af_error_msg(*e)));
	int code = ami_exit_code(*e);
	if (code > x->worst)
		x->worst = code;
	af_error_clear(e);
}

static void dereg_snapshots(struct dereg_ctx *x, const struct ec2_image *img, json_t *item)
{
	for (size_t i = 0; i < img->n_bdm; i++) {
		const char *sid = img->bdm[i].snapshot_id;
		struct af_error *e = NULL;
		if (!sid)
			continue;
		int rc = x->o->c.dry_run ? dereg_dry_call(&x->r.ec2, "DeleteSnapshot", "SnapshotId", sid, &e)
					 : ec2_delete_snapshot(&x->r.ec2, sid, &e);
		if (rc < 0 && !dereg_is_gone(e, "InvalidSnapshot.NotFound")) {
			dereg_fail(x, item, sid, "deleting the snapshot failed; run the same command "
				   "again, or delete it with `amiforge ami purge --orphan-snapshots`", &e);
			continue;
		}
		af_error_clear(&e);
		json_array_append_new(json_object_get(item, "snapshots_deleted"), json_string(sid));
		if (!x->o->c.json)
			printf("%s snapshot %s\n", x->o->c.dry_run ? "would delete" : "deleted", sid);
	}
}

static void dereg_s3_key(struct dereg_ctx *x, const struct dereg_bundle *b, const char *key,
			 json_t *item)
{
	struct af_error *e = NULL;
	if (!x->o->c.dry_run && s3_delete_object(&x->s3, b->bucket, key, &e) < 0) {
		_cleanup_free_ char *url = xasprintf("s3://%s/%s", b->bucket, key);
		dereg_fail(x, item, url, "deleting it failed; run the same command again "
			   "(the manifest stays until every part is gone)", &e);
		return;
	}
	json_array_append_new(json_object_get(item, "s3_deleted"),
			      json_sprintf("s3://%s/%s", b->bucket, key));
	if (!x->o->c.json)
		printf("%s s3://%s/%s\n", x->o->c.dry_run ? "would delete" : "deleted", b->bucket, key);
}

static void dereg_bundle_delete(struct dereg_ctx *x, const struct dereg_bundle *b, json_t *item)
{
	size_t failed = json_array_size(json_object_get(item, "failed"));
	for (size_t i = 0; i < b->n_parts; i++)
		dereg_s3_key(x, b, b->parts[i], item);
	/* The manifest goes last, and only when every part went: a re-run
	 * needs it to find the parts. */
	if (json_array_size(json_object_get(item, "failed")) == failed)
		dereg_s3_key(x, b, b->manifest, item);
}

static int dereg_lookup(struct dereg_ctx *x, const char *ami, struct ec2_image_list *l,
			struct af_error **err)
{
	const char *ids[] = { ami };
	struct ec2_image_query q = { .image_ids = ids, .n_image_ids = 1, .include_deprecated = true };
	if (ec2_describe_images(&x->r.ec2, &q, l, err) < 0)
		return af_error_hint(err, "check the id and --region; nothing was deleted for it");
	if (l->n != 1)
		return af_error_set(err, 0, "not found in %s (check the id and --region)", x->r.aws.region);
	return 0;
}

static int dereg_prepare_bundle(struct dereg_ctx *x, const struct ec2_image *img,
				struct dereg_bundle *b, struct af_error **err)
{
	if (!x->o->delete_bundle)
		return 0;
	if (strcmp(img->root_device_type ?: "", "instance-store")) {
		fprintf(stderr, "amiforge ami deregister: warning: %s is EBS-backed: it has no bundle "
			"for --delete-bundle (--delete-snapshots deletes its snapshots)\n", img->image_id);
		return 0;
	}
	if (!x->s3_open) {
		s3_client_init(&x->s3, x->r.aws.region, x->r.aws.creds, &x->r.aws.opts);
		x->s3_open = true;
	}
	if (dereg_bundle_read(&x->s3, img, b, err) < 0)
		return af_error_hint(err, "nothing was deregistered; fix the access or deregister "
				     "without --delete-bundle");
	if (!b->found)
		fprintf(stderr, "amiforge ami deregister: warning: %s: its manifest s3://%s/%s is "
			"already gone: no bundle part to delete\n", img->image_id, b->bucket, b->manifest);
	return 0;
}

static void dereg_one(struct dereg_ctx *x, const char *ami)
{
	struct ec2_image_list l = { 0 };
	struct dereg_bundle b = { 0 };
	struct af_error *e = NULL;
	json_t *item = json_pack("{s:s, s:s, s:[], s:[], s:[]}", "image_id", ami, "region",
				 x->r.aws.region, "snapshots_deleted", "s3_deleted", "failed");
	json_array_append_new(x->report, item);
	if (dereg_lookup(x, ami, &l, &e) < 0 || dereg_prepare_bundle(x, &l.v[0], &b, &e) < 0) {
		dereg_fail(x, item, ami, "cannot deregister it", &e);
		goto out;
	}
	int rc = x->o->c.dry_run ? dereg_dry_call(&x->r.ec2, "DeregisterImage", "ImageId", ami, &e)
				 : ec2_deregister_image(&x->r.ec2, ami, false, &e);
	if (rc < 0 && !(!x->o->c.dry_run && dereg_is_gone(e, "InvalidAMIID.NotFound"))) {
		dereg_fail(x, item, ami, "deregistering failed; run the same command again", &e);
		goto out;
	}
	af_error_clear(&e);
	json_object_set_new(item, "deregistered", json_true());
	if (!x->o->c.json)
		printf("%s %s in %s\n", x->o->c.dry_run ? "would deregister" : "deregistered", ami,
		       x->r.aws.region);
	if (x->o->delete_snapshots)
		dereg_snapshots(x, &l.v[0], item);
	if (b.found)
		dereg_bundle_delete(x, &b, item);
out:
	if (!json_object_get(item, "deregistered"))
		json_object_set_new(item, "deregistered", json_false());
	json_object_set_new(item, "dry_run", json_boolean(x->o->c.dry_run));
	dereg_bundle_release(&b);
	ec2_image_list_release(&l);
}

static int dereg_run(const struct dereg_opts *o)
{
	struct dereg_ctx x = { .o = o, .report = json_array() };
	struct af_error *e = NULL;
	if (ami_region_open(&o->c, NULL, &x.r, &e) < 0) {
		fprintf(stderr, "amiforge ami deregister: %s\n", af_error_msg(e));
		int code = ami_exit_code(e);
		af_error_free(e);
		json_decref(x.report);
		return code;
	}
	for (size_t i = 0; i < o->n_amis; i++)
		dereg_one(&x, o->amis[i]);
	if (o->c.json) {
		json_dumpf(x.report, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	}
	json_decref(x.report);
	if (x.s3_open)
		s3_client_release(&x.s3);
	ami_region_close(&x.r);
	return x.worst;
}

static int dereg_option(void *arg, int opt, char *val)
{
	struct dereg_opts *o = arg;
	(void)val;
	switch (opt) {
	case DEREG_OPT_SNAPSHOTS: o->delete_snapshots = true; return 0;
	case DEREG_OPT_BUNDLE: o->delete_bundle = true; return 0;
	default: return ami_usage_error("deregister", dereg_usage, "unknown option");
	}
}

static int dereg_parse(int argc, char **argv, struct dereg_opts *o)
{
	static const struct option opts[] = {
		AMI_COMMON_LONGOPTS,
		{ "delete-snapshots", no_argument, NULL, DEREG_OPT_SNAPSHOTS },
		{ "delete-bundle", no_argument, NULL, DEREG_OPT_BUNDLE },
		{ NULL, 0, NULL, 0 },
	};
	int first;
	int rc = ami_parse_options(argc, argv, opts, dereg_usage, &o->c, dereg_option, o, &first);
	if (rc)
		return rc;
	o->amis = argv + first;
	o->n_amis = (size_t)(argc - first);
	if (!o->n_amis)
		return ami_usage_error("deregister", dereg_usage, "which AMIs? give their ids");
	if (o->c.all_regions || o->c.n_regions > 1)
		return ami_usage_error("deregister", dereg_usage,
				       "one region at a time: give one --region (the AMIs' region)");
	return 0;
}

int ami_deregister_main(int argc, char **argv)
{
	struct dereg_opts o = { 0 };
	int rc = dereg_parse(argc, argv, &o);
	if (rc == 0)
		rc = dereg_run(&o);
	else if (rc == AMI_PARSE_HELP)
		rc = EXIT_OK;
	ami_common_release(&o.c);
	return rc;
}
