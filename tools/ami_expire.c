/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami expire`: sets or clears an AMI's expiry: the
 * amiforge:expires tag on the image and its snapshots, and the image's
 * deprecation time (ami_expiry_apply).  --in counts from now, not from the
 * AMI's creation: "expire this in two weeks" is what someone typing the
 * command means; the register stage's expire_after counts from creation
 * because a build is resumed later and must compute the same time. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/ami.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/mem.h"
#include "amiforge/when.h"

static const char expire_usage[] =
	"usage: amiforge ami expire AMI (--in SPAN | --at DATE | --never) [--region R] [--dry-run]\n"
	"                           [--json] [--profile NAME]\n"
	"  sets the amiforge:expires tag on AMI and its snapshots and deprecates the AMI then;\n"
	"  --never removes the tag and cancels the deprecation\n"
	"  --in SPAN   from now (not from the AMI's creation): 90d, 2w, 3mo, 1y, '+1 week'\n"
	"  --at DATE   2026-12-31 (midnight UTC), 2026-12-31T10:00Z, 2026-12-31T10:00:00Z\n";

enum { EXPIRE_OPT_IN = AMI_OPT_FIRST_OWN, EXPIRE_OPT_AT, EXPIRE_OPT_NEVER };

struct expire_opts {
	struct ami_common c;
	const char *ami, *in, *at;
	bool never;
	time_t when;
};

static int expire_image(const struct ami_region *r, const char *ami, struct ec2_image_list *l,
			struct af_error **err)
{
	const char *ids[] = { ami };
	struct ec2_image_query q = { .image_ids = ids, .n_image_ids = 1, .include_deprecated = true };
	if (ec2_describe_images(&r->ec2, &q, l, err) < 0) {
		af_error_wrap(err, "%s in %s", ami, r->aws.region);
		return af_error_hint(err, "check the id and --region");
	}
	if (l->n != 1)
		return af_error_set(err, 0, "%s: not found in %s (check the id and --region)", ami,
				    r->aws.region);
	return 0;
}

/* --dry-run: CreateTags (DeleteTags for --never) with EC2's DryRun, which
 * checks the permission, and the plan on stdout (in the JSON with --json). */
static int expire_dry_run(const struct ami_region *r, const struct expire_opts *o,
			  const char **snaps, size_t n, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	char stamp[32] = "";
	when_format(o->when, stamp);
	ec2_params_add(&p, "ResourceId.1", o->ami);
	for (size_t i = 0; i < n; i++)
		ec2_params_addf(&p, snaps[i], "ResourceId.%zu", i + 2);
	ec2_params_add(&p, "Tag.1.Key", AMI_EXPIRES_TAG);
	if (o->when)
		ec2_params_add(&p, "Tag.1.Value", stamp);
	ec2_params_add_bool(&p, "DryRun", true);
	int rc = ec2_call(&r->ec2, o->when ? "CreateTags" : "DeleteTags", &p, NULL, err);
	ec2_params_release(&p);
	if (rc == 0 || !strstr(af_error_msg(*err), "DryRunOperation"))
		return rc == 0 ? af_error_set(err, 0, "the dry run was not refused as AWS refuses one") : -1;
	af_error_clear(err);
	if (o->c.json)
		return 0;
	if (o->when)
		printf("would tag %s and %zu snapshot(s) %s=%s and deprecate it then\n", o->ami, n,
		       AMI_EXPIRES_TAG, stamp);
	else
		printf("would remove %s from %s and %zu snapshot(s) and cancel its deprecation\n",
		       AMI_EXPIRES_TAG, o->ami, n);
	return 0;
}

static void expire_report(const struct expire_opts *o, const char *region, const char **snaps,
			  size_t n)
{
	char stamp[32] = "";
	if (o->when)
		when_format(o->when, stamp);
	if (o->c.json) {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, json_string(snaps[i]));
		json_t *j = json_pack("{s:s, s:s, s:s?, s:o, s:b}", "image_id", o->ami, "region", region,
				      "expires", o->when ? stamp : NULL, "snapshots", a, "dry_run",
				      o->c.dry_run);
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
	} else if (!o->c.dry_run) {
		if (o->when)
			printf("%s expires %s (tagged with %zu snapshot(s), deprecated then)\n", o->ami,
			       stamp, n);
		else
			printf("%s no longer expires (tag removed from it and %zu snapshot(s))\n", o->ami, n);
	}
}

static int expire_run(const struct expire_opts *o)
{
	struct ami_region r;
	struct af_error *e = NULL;
	struct ec2_image_list l = { 0 };
	int rc = EXIT_OK;
	if (ami_region_open(&o->c, NULL, &r, &e) < 0 || expire_image(&r, o->ami, &l, &e) < 0)
		goto fail;
	const struct ec2_image *img = &l.v[0];
	const char **snaps = xcalloc(img->n_bdm + 1, sizeof(*snaps));
	size_t n = 0;
	for (size_t i = 0; i < img->n_bdm; i++)
		if (img->bdm[i].snapshot_id)
			snaps[n++] = img->bdm[i].snapshot_id;
	if (o->c.dry_run ? expire_dry_run(&r, o, snaps, n, &e) < 0
			 : ami_expiry_apply(&r.ec2, o->ami, snaps, n, o->when, false, &e) < 0) {
		free(snaps);
		af_error_wrap(&e, "%s in %s", o->ami, r.aws.region);
		af_error_hint(&e, "run the same command again: it sets the same expiry");
		goto fail;
	}
	expire_report(o, r.aws.region, snaps, n);
	free(snaps);
	goto out;
fail:
	fprintf(stderr, "amiforge ami expire: %s\n", af_error_msg(e));
	rc = ami_exit_code(e);
	af_error_free(e);
out:
	ec2_image_list_release(&l);
	ami_region_close(&r);
	return rc;
}

static int expire_check(struct expire_opts *o)
{
	if (!o->ami)
		return ami_usage_error("expire", expire_usage, "which AMI? give its id");
	if ((o->in != NULL) + (o->at != NULL) + o->never != 1)
		return ami_usage_error("expire", expire_usage, "give one of --in, --at, --never");
	if (o->c.all_regions || o->c.n_regions > 1)
		return ami_usage_error("expire", expire_usage, "an AMI lives in one region: give one --region");
	struct af_error *e = NULL;
	if (ami_expiry_parse(o->in, o->at, time(NULL), &o->when, &e) < 0) {
		int rc = ami_usage_error("expire", expire_usage, "%s", af_error_msg(e));
		af_error_free(e);
		return rc;
	}
	if (!o->never && o->when <= time(NULL))
		return ami_usage_error("expire", expire_usage, "that time is not in the future: AWS "
				       "cannot deprecate an AMI in the past; give a later time");
	return 0;
}

static int expire_option(void *arg, int opt, char *val)
{
	struct expire_opts *o = arg;
	switch (opt) {
	case EXPIRE_OPT_IN: o->in = val; return 0;
	case EXPIRE_OPT_AT: o->at = val; return 0;
	case EXPIRE_OPT_NEVER: o->never = true; return 0;
	default: return ami_usage_error("expire", expire_usage, "unknown option");
	}
}

static int expire_parse(int argc, char **argv, struct expire_opts *o)
{
	static const struct option opts[] = {
		AMI_COMMON_LONGOPTS,
		{ "in", required_argument, NULL, EXPIRE_OPT_IN },
		{ "at", required_argument, NULL, EXPIRE_OPT_AT },
		{ "never", no_argument, NULL, EXPIRE_OPT_NEVER },
		{ NULL, 0, NULL, 0 },
	};
	int i;
	int rc = ami_parse_options(argc, argv, opts, expire_usage, &o->c, expire_option, o, &i);
	if (rc)
		return rc;
	if (i < argc)
		o->ami = argv[i++];
	if (i < argc)
		return ami_usage_error("expire", expire_usage, "one AMI at a time: unexpected '%s'", argv[i]);
	return expire_check(o);
}

int ami_expire_main(int argc, char **argv)
{
	struct expire_opts o = { 0 };
	int rc = expire_parse(argc, argv, &o);
	if (rc == 0)
		rc = expire_run(&o);
	else if (rc == AMI_PARSE_HELP)
		rc = EXIT_OK;
	ami_common_release(&o.c);
	return rc;
}
