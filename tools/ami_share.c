/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami share`: an AMI's launch permission (ModifyImageAttribute
 * LaunchPermission) and, so that the grantee can also copy it and make
 * volumes of it, the createVolumePermission of every backing snapshot
 * (ModifySnapshotAttribute).
 *
 * What AWS allows for the snapshots:
 * - accounts: createVolumePermission UserId, one call per snapshot;
 * - an organization or OU: snapshots cannot be shared with them (the
 *   attribute has no such grantee), so only the launch permission changes
 *   and a warning says that members can launch the AMI but not copy it;
 * - public: createVolumePermission Group=all.  Chosen because a public AMI
 *   already exposes its disk to anyone who launches it, so public snapshots
 *   reveal nothing more, and copies of the AMI then work; AWS refuses it for
 *   encrypted snapshots and when the account blocks public snapshot access
 *   (the error says so and names the snapshot).
 * --remove undoes the same, in the same order.  --dry-run sends every call
 * with EC2's DryRun (AWS answers DryRunOperation when it would succeed). */
#include <ctype.h>
#include <getopt.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/ami.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/mem.h"

static const char share_usage[] =
	"usage: amiforge ami share AMI (--account ID... | --org ARN | --ou ARN | --public) [--remove]\n"
	"                          [--region R] [--dry-run] [--json] [--profile NAME]\n"
	"  grants (--remove: revokes) the launch permission of AMI and the createVolumePermission\n"
	"  of its snapshots, so that the grantee can launch and copy it\n"
	"  --account ID  a 12-digit account id (repeatable)\n"
	"  --org ARN     an organization (arn:aws:organizations::ACCOUNT:organization/o-...)\n"
	"  --ou ARN      an organizational unit (arn:aws:organizations::ACCOUNT:ou/o-.../ou-...)\n"
	"                snapshots cannot be shared with an organization or OU: its members can\n"
	"                launch the AMI, not copy it (share with --account for that)\n"
	"  --public      everyone; the snapshots become public too (anyone who can launch the AMI\n"
	"                can read its disk anyway); AWS refuses that for encrypted snapshots\n";

enum { SHARE_OPT_ACCOUNT = AMI_OPT_FIRST_OWN, SHARE_OPT_ORG, SHARE_OPT_OU, SHARE_OPT_PUBLIC,
       SHARE_OPT_REMOVE };

struct share_opts {
	struct ami_common c;
	const char *ami;
	const char **accounts;
	size_t n_accounts;
	const char *org, *ou;
	bool public_, remove;
};

/* What happened to one resource, for the report. */
struct share_result {
	json_t *done;    /* array of resource ids changed (or that would be) */
	json_t *failed;  /* array of {id, error} */
	json_t *warnings;
};

static bool share_account_valid(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!isdigit((unsigned char)s[n]))
			return false;
	return n == 12;
}

/* A dry run's "would have succeeded" is AWS's DryRunOperation error. */
static int share_dry_ok(int rc, bool dry_run, struct af_error **e)
{
	if (rc < 0 && dry_run && *e && strstr(af_error_msg(*e), "DryRunOperation")) {
		af_error_clear(e);
		return 0;
	}
	return rc;
}

static void share_grantees(const struct share_opts *o, struct ec2_params *p, const char *prefix,
			   bool snapshot)
{
	const char *op = o->remove ? "Remove" : "Add";
	size_t k = 1;
	for (size_t i = 0; i < o->n_accounts; i++)
		ec2_params_addf(p, o->accounts[i], "%s.%s.%zu.UserId", prefix, op, k++);
	if (o->public_)
		ec2_params_addf(p, "all", "%s.%s.%zu.Group", prefix, op, k++);
	if (!snapshot && o->org)
		ec2_params_addf(p, o->org, "%s.%s.%zu.OrganizationArn", prefix, op, k++);
	if (!snapshot && o->ou)
		ec2_params_addf(p, o->ou, "%s.%s.%zu.OrganizationalUnitArn", prefix, op, k++);
}

static int share_call(const struct ami_region *r, const struct share_opts *o, const char *action,
		      const char *id_name, const char *id, bool snapshot, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, id_name, id);
	if (snapshot)
		ec2_params_add(&p, "Attribute", "createVolumePermission");
	share_grantees(o, &p, snapshot ? "CreateVolumePermission" : "LaunchPermission", snapshot);
	if (o->c.dry_run)
		ec2_params_add_bool(&p, "DryRun", true);
	xmlDoc *doc = NULL;
	int rc = ec2_call(&r->ec2, action, &p, &doc, err);
	ec2_params_release(&p);
	xmlFreeDoc(doc);
	return share_dry_ok(rc, o->c.dry_run, err);
}

static void share_fail(struct share_result *res, const char *id, const char *what,
		       const struct af_error *e)
{
	fprintf(stderr, "amiforge ami share: %s: %s: %s\n", id, what, af_error_msg(e));
	json_array_append_new(res->failed, json_pack("{s:s, s:s}", "id", id, "error", af_error_msg(e)));
}

static void share_snapshots(const struct ami_region *r, const struct share_opts *o,
			    const struct ec2_image *img, struct share_result *res, int *worst)
{
	if (!o->n_accounts && !o->public_) {
		const char *w = "snapshots cannot be shared with an organization or OU: its members can "
				"launch the AMI but not copy it; share with --account for that";
		fprintf(stderr, "amiforge ami share: warning: %s\n", w);
		json_array_append_new(res->warnings, json_string(w));
		return;
	}
	for (size_t i = 0; i < img->n_bdm; i++) {
		const char *sid = img->bdm[i].snapshot_id;
		if (!sid)
			continue;
		struct af_error *e = NULL;
		if (share_call(r, o, "ModifySnapshotAttribute", "SnapshotId", sid, true, &e) < 0) {
			share_fail(res, sid, o->remove ? "revoking createVolumePermission failed; run the "
				   "same command again" : "granting createVolumePermission failed; run the "
				   "same command again", e);
			int code = ami_exit_code(e);
			*worst = code > *worst ? code : *worst;
			af_error_free(e);
			continue;
		}
		json_array_append_new(res->done, json_string(sid));
	}
}

static void share_report(const struct share_opts *o, const char *region, struct share_result *res)
{
	const char *verb = o->remove ? "unshared" : "shared";
	if (o->c.json) {
		json_t *acc = json_array();
		for (size_t i = 0; i < o->n_accounts; i++)
			json_array_append_new(acc, json_string(o->accounts[i]));
		json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:o, s:s?, s:s?, s:b, s:O, s:O, s:O}",
				      "image_id", o->ami, "region", region, "operation",
				      o->remove ? "remove" : "add", "dry_run", o->c.dry_run, "accounts",
				      acc, "org", o->org, "ou", o->ou, "public", o->public_, "changed",
				      res->done, "failed", res->failed, "warnings", res->warnings);
		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
		return;
	}
	for (size_t i = 0; i < json_array_size(res->done); i++)
		printf("%s%s %s\n", o->c.dry_run ? "would have " : "",
		       verb, json_string_value(json_array_get(res->done, i)));
}

static int share_image(const struct ami_region *r, const struct share_opts *o,
		       struct ec2_image_list *l, struct af_error **err)
{
	const char *ids[] = { o->ami };
	struct ec2_image_query q = { .image_ids = ids, .n_image_ids = 1, .include_deprecated = true };
	if (ec2_describe_images(&r->ec2, &q, l, err) < 0) {
		af_error_wrap(err, "%s in %s", o->ami, r->aws.region);
		return af_error_hint(err, "check the id and --region");
	}
	if (l->n != 1)
		return af_error_set(err, 0, "%s: not found in %s (check the id and --region)", o->ami,
				    r->aws.region);
	return 0;
}

static int share_run(const struct share_opts *o)
{
	struct ami_region r;
	struct af_error *e = NULL;
	struct ec2_image_list l = { 0 };
	struct share_result res = { json_array(), json_array(), json_array() };
	int worst = EXIT_OK;
	if (ami_region_open(&o->c, NULL, &r, &e) < 0 || share_image(&r, o, &l, &e) < 0) {
		fprintf(stderr, "amiforge ami share: %s\n", af_error_msg(e));
		worst = ami_exit_code(e);
		goto out;
	}
	if (share_call(&r, o, "ModifyImageAttribute", "ImageId", o->ami, false, &e) < 0) {
		/* The snapshots are left as they are: sharing them without the
		 * image would give a copy right to nothing launchable. */
		share_fail(&res, o->ami, "changing the launch permission failed; nothing was changed", e);
		worst = ami_exit_code(e);
		goto report;
	}
	json_array_append_new(res.done, json_string(o->ami));
	share_snapshots(&r, o, &l.v[0], &res, &worst);
	if (json_array_size(res.failed) && worst == EXIT_OK)
		worst = EXIT_STAGE_FAILED;
report:
	share_report(o, r.aws.region, &res);
out:
	af_error_free(e);
	ec2_image_list_release(&l);
	ami_region_close(&r);
	json_decref(res.done);
	json_decref(res.failed);
	json_decref(res.warnings);
	return worst;
}

static int share_check(struct share_opts *o)
{
	int kinds = (o->n_accounts > 0) + (o->org != NULL) + (o->ou != NULL) + o->public_;
	if (!o->ami)
		return ami_usage_error("share", share_usage, "which AMI? give its id");
	if (kinds != 1)
		return ami_usage_error("share", share_usage,
				       "give exactly one of --account (repeatable), --org, --ou, --public");
	for (size_t i = 0; i < o->n_accounts; i++)
		if (!share_account_valid(o->accounts[i]))
			return ami_usage_error("share", share_usage,
					       "--account '%s' is not a 12-digit account id", o->accounts[i]);
	if (o->org && !strstr(o->org, ":organization/o-"))
		return ami_usage_error("share", share_usage, "--org '%s' is not an organization ARN "
				       "(arn:aws:organizations::ACCOUNT:organization/o-...)", o->org);
	if (o->ou && !strstr(o->ou, ":ou/o-"))
		return ami_usage_error("share", share_usage, "--ou '%s' is not an OU ARN "
				       "(arn:aws:organizations::ACCOUNT:ou/o-.../ou-...)", o->ou);
	if (o->c.all_regions || o->c.n_regions > 1)
		return ami_usage_error("share", share_usage, "an AMI lives in one region: give one --region");
	return 0;
}

static int share_option(void *arg, int opt, char *val)
{
	struct share_opts *o = arg;
	switch (opt) {
	case SHARE_OPT_ACCOUNT:
		o->accounts = xreallocarray(o->accounts, o->n_accounts + 1, sizeof(*o->accounts));
		o->accounts[o->n_accounts++] = val;
		return 0;
	case SHARE_OPT_ORG: o->org = val; return 0;
	case SHARE_OPT_OU: o->ou = val; return 0;
	case SHARE_OPT_PUBLIC: o->public_ = true; return 0;
	case SHARE_OPT_REMOVE: o->remove = true; return 0;
	default: return ami_usage_error("share", share_usage, "unknown option");
	}
}

static int share_parse(int argc, char **argv, struct share_opts *o)
{
	static const struct option opts[] = {
		AMI_COMMON_LONGOPTS,
		{ "account", required_argument, NULL, SHARE_OPT_ACCOUNT },
		{ "org", required_argument, NULL, SHARE_OPT_ORG },
		{ "ou", required_argument, NULL, SHARE_OPT_OU },
		{ "public", no_argument, NULL, SHARE_OPT_PUBLIC },
		{ "remove", no_argument, NULL, SHARE_OPT_REMOVE },
		{ NULL, 0, NULL, 0 },
	};
	int i;
	int rc = ami_parse_options(argc, argv, opts, share_usage, &o->c, share_option, o, &i);
	if (rc)
		return rc;
	if (i < argc)
		o->ami = argv[i++];
	if (i < argc)
		return ami_usage_error("share", share_usage, "one AMI at a time: unexpected '%s'", argv[i]);
	return share_check(o);
}

int ami_share_main(int argc, char **argv)
{
	struct share_opts o = { 0 };
	int rc = share_parse(argc, argv, &o);
	if (rc == 0)
		rc = share_run(&o);
	else if (rc == AMI_PARSE_HELP)
		rc = EXIT_OK;
	free(o.accounts);
	ami_common_release(&o.c);
	return rc;
}
