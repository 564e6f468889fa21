/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami copy AMI --to REGION...`: CopyImage with a ClientToken
 * (the same command run again answers with the same copies), the source's
 * tags on each copy and (with --wait, once they exist) its snapshots, the
 * expiry's deprecation time, launch permissions optionally.
 *
 * Across accounts: --source-profile P reads (and if needed shares) the
 * source with P's credentials; --profile's make the copies.  There is no
 * STS here, so the destination account is --dest-account ID: when given and
 * the source lacks a launch permission for it, the source is shared to it
 * first (ModifyImageAttribute launchPermission and ModifySnapshotAttribute
 * createVolumePermission on its snapshots).  Without it the copy goes ahead
 * if the destination can already see the source, else stops saying so.
 *
 * --kernel-id REGION=AKI: CopyImage keeps the source's kernel (EC2 maps
 * Amazon's AKIs to the region's); it cannot set another.  When the copy's
 * kernel is not AKI this warns: register the copy's snapshot anew with that
 * kernel (the register stage's kernel_id). */
#include <jansson.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ami_wait.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/mem.h"

static const char copy_usage[] =
	"usage: amiforge ami copy AMI --to REGION... [--source-region R] [--name N]\n"
	"         [--kms-key REGION=KEY]... [--kernel-id REGION=AKI]... [--encrypted]\n"
	"         [--source-profile P [--dest-account ID]] [--copy-launch-permissions]\n"
	"         [--wait TIMEOUT] [--profile P] [--dry-run] [--json]\n"
	"  --source-region: the AMI's region (default --region, else the default region)\n"
	"  --name: default the source's name\n"
	"  --source-profile P: read the source with profile P (another account); --profile makes\n"
	"    the copies.  --dest-account ID: --profile's account, to share the source with first\n"
	"  --kernel-id: CopyImage keeps the source's kernel; a warning when it differs from AKI\n"
	"  --wait: until every copy is available, then tag its snapshots (they exist only then)\n";

enum {
	OPT_TO = AMI_OPT_FIRST_OWN,
	OPT_SOURCE_REGION,
	OPT_NAME,
	OPT_KMS_KEY,
	OPT_KERNEL_ID,
	OPT_ENCRYPTED,
	OPT_SOURCE_PROFILE,
	OPT_DEST_ACCOUNT,
	OPT_COPY_PERMS,
	OPT_WAIT,
};

struct copy {
	struct ami_common c;
	const char *ami, *source_region, *name, *source_profile, *dest_account;
	char **to, **kms, **kernel;
	size_t n_to, n_kms, n_kernel;
	bool encrypted, copy_perms, wait;
	double timeout;
	struct ami_region src, dst;
	struct ec2_image_list source;   /* the source image (1) */
	struct aws_tag *tags;
	size_t n_tags;
	time_t expiry;
	char **perm_users;              /* the source's launch permissions */
	bool perm_public, shared;
	struct ec2_client *ec2;         /* one per --to */
	char **ids;
	struct af_error **errs;
};

static void copy_release(struct copy *k)
{
	for (size_t i = 0; i < k->n_to; i++) {
		if (k->ec2 && k->ec2[i].endpoint)
			ec2_client_release(&k->ec2[i]);
		if (k->ids)
			free(k->ids[i]);
		if (k->errs)
			af_error_free(k->errs[i]);
	}
	free(k->ec2);
	free(k->ids);
	free(k->errs);
	free(k->to);
	free(k->kms);
	free(k->kernel);
	free(k->tags);
	cleanup_strvp(&k->perm_users);
	ec2_image_list_release(&k->source);
	ami_region_close(&k->src);
	ami_region_close(&k->dst);
	ami_common_release(&k->c);
}

static void push(char ***v, size_t *n, char *s)
{
	*v = xreallocarray(*v, *n + 1, sizeof(**v));
	(*v)[(*n)++] = s;
}

static int copy_option(void *arg_k, int opt, char *arg)
{
	struct copy *k = arg_k;
	struct af_error *e = NULL;
	switch (opt) {
	case OPT_TO: push(&k->to, &k->n_to, arg); return 0;
	case OPT_SOURCE_REGION: k->source_region = arg; return 0;
	case OPT_NAME: k->name = arg; return 0;
	case OPT_KMS_KEY: push(&k->kms, &k->n_kms, arg); break;
	case OPT_KERNEL_ID: push(&k->kernel, &k->n_kernel, arg); break;
	case OPT_ENCRYPTED: k->encrypted = true; return 0;
	case OPT_SOURCE_PROFILE: k->source_profile = arg; return 0;
	case OPT_DEST_ACCOUNT: k->dest_account = arg; return 0;
	case OPT_COPY_PERMS: k->copy_perms = true; return 0;
	case OPT_WAIT:
		k->wait = true;
		if (ami_parse_timeout(arg, &k->timeout, &e) == 0)
			return 0;
		int rc = ami_usage_error("copy", copy_usage, "%s", af_error_msg(e));
		af_error_free(e);
		return rc;
	default: return EXIT_USAGE; /* getopt said why */
	}
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg || !eq[1])
		return ami_usage_error("copy", copy_usage, "%s '%s': expected REGION=VALUE",
				       opt == OPT_KMS_KEY ? "--kms-key" : "--kernel-id", arg);
	return 0;
}

/* Whether "REGION=VALUE" names a --to region. */
static bool copy_is_target(const struct copy *k, const char *pair)
{
	size_t len = strcspn(pair, "=");
	for (size_t i = 0; i < k->n_to; i++)
		if (strlen(k->to[i]) == len && !strncmp(k->to[i], pair, len))
			return true;
	return false;
}

static int copy_check(struct copy *k)
{
	if (!k->ami)
		return ami_usage_error("copy", copy_usage, "give the AMI to copy");
	if (!k->n_to)
		return ami_usage_error("copy", copy_usage, "give --to REGION (one or more)");
	if (k->dest_account && !k->source_profile)
		return ami_usage_error("copy", copy_usage, "--dest-account goes with --source-profile");
	if (k->c.all_regions)
		return ami_usage_error("copy", copy_usage, "--all-regions does not apply: give --to");
	char *const *per[] = { k->kms, k->kernel };
	const size_t n_per[] = { k->n_kms, k->n_kernel };
	for (size_t o = 0; o < 2; o++)
		for (size_t i = 0; i < n_per[o]; i++)
			if (!copy_is_target(k, per[o][i]))
				return ami_usage_error("copy", copy_usage, "%s '%s': that region is not a --to",
						       o ? "--kernel-id" : "--kms-key", per[o][i]);
	return 0;
}

static int copy_parse(struct copy *k, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "to", required_argument, NULL, OPT_TO },
		{ "source-region", required_argument, NULL, OPT_SOURCE_REGION },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "kms-key", required_argument, NULL, OPT_KMS_KEY },
		{ "kernel-id", required_argument, NULL, OPT_KERNEL_ID },
		{ "encrypted", no_argument, NULL, OPT_ENCRYPTED },
		{ "source-profile", required_argument, NULL, OPT_SOURCE_PROFILE },
		{ "dest-account", required_argument, NULL, OPT_DEST_ACCOUNT },
		{ "copy-launch-permissions", no_argument, NULL, OPT_COPY_PERMS },
		{ "wait", required_argument, NULL, OPT_WAIT },
		AMI_COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	int i;
	int rc = ami_parse_options(argc, argv, longopts, copy_usage, &k->c, copy_option, k, &i);
	if (rc)
		return rc;
	if (argc - i > 1)
		return ami_usage_error("copy", copy_usage, "one AMI at a time ('%s' is extra)", argv[i + 1]);
	if (i < argc)
		k->ami = argv[i];
	return copy_check(k);
}

/* ---- the source ---- */

static int copy_open(struct copy *k, struct af_error **err)
{
	struct ami_common sc = k->c;
	if (k->source_profile)
		sc.profile = k->source_profile;
	const char *sr = k->source_region ?: (k->c.n_regions ? k->c.regions[0] : NULL);
	if (ami_region_open(&sc, sr, &k->src, err) < 0)
		return af_error_wrap(err, "the source's session%s%s", k->source_profile ? " (profile " : "",
				     k->source_profile ? k->source_profile : "");
	if (ami_region_open(&k->c, k->to[0], &k->dst, err) < 0)
		return -1;
	k->ec2 = xcalloc(k->n_to, sizeof(*k->ec2));
	k->ids = xcalloc(k->n_to, sizeof(*k->ids));
	k->errs = xcalloc(k->n_to, sizeof(*k->errs));
	for (size_t i = 0; i < k->n_to; i++)
		ec2_client_init(&k->ec2[i], k->to[i], k->dst.aws.creds, &k->dst.aws.opts);
	return 0;
}

static int copy_read_source(struct copy *k, struct af_error **err)
{
	if (ami_describe_one(&k->src.ec2, k->ami, &k->source, err) < 0)
		return af_error_wrap(err, "reading the source");
	const struct ec2_image *img = &k->source.v[0];
	if (!img->state || strcmp(img->state, "available") != 0)
		return af_error_set(err, 0, "%s in %s is '%s': only an available AMI can be copied (wait for it)",
				    k->ami, k->src.ec2.region, img->state ?: "?");
	k->tags = ami_user_tags(img, &k->n_tags);
	k->expiry = ami_image_expiry(img);
	if (!k->name)
		k->name = img->name;
	if (!k->copy_perms && !k->dest_account)
		return 0;
	if (ec2_describe_launch_permission(&k->src.ec2, k->ami, &k->perm_users, &k->perm_public, err) < 0)
		return af_error_wrap(err, "launch permissions of %s in %s", k->ami, k->src.ec2.region);
	return 0;
}

/* ---- across accounts ---- */

static bool copy_has_perm(const struct copy *k, const char *account)
{
	if (k->perm_public)
		return true;
	for (size_t i = 0; k->perm_users && k->perm_users[i]; i++)
		if (!strcmp(k->perm_users[i], account))
			return true;
	return false;
}

static int copy_share_snapshot(const struct copy *k, const char *snap, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "SnapshotId", snap);
	ec2_params_add(&p, "Attribute", "createVolumePermission");
	ec2_params_add(&p, "OperationType", "add");
	ec2_params_add(&p, "UserId.1", k->dest_account);
	int rc = ec2_call(&k->src.ec2, "ModifySnapshotAttribute", &p, NULL, err);
	ec2_params_release(&p);
	return rc < 0 ? af_error_wrap(err, "sharing snapshot %s of %s with %s", snap, k->ami, k->dest_account) : 0;
}

/* Shares the source with --dest-account unless it can launch it already. */
static int copy_share(struct copy *k, struct af_error **err)
{
	if (!k->dest_account || copy_has_perm(k, k->dest_account))
		return 0;
	const struct ec2_image *img = &k->source.v[0];
	if (k->c.dry_run) {
		if (!k->c.json)
			printf("would share %s (%s) and its snapshots with account %s\n", k->ami,
			       k->src.ec2.region, k->dest_account);
		return 0;
	}
	const char *users[] = { k->dest_account };
	if (ec2_modify_launch_permission(&k->src.ec2, k->ami, true, users, 1, false, err) < 0)
		return af_error_wrap(err, "sharing %s in %s with account %s (needed for the copy)", k->ami,
				     k->src.ec2.region, k->dest_account);
	for (size_t i = 0; i < img->n_bdm; i++)
		if (img->bdm[i].snapshot_id && copy_share_snapshot(k, img->bdm[i].snapshot_id, err) < 0)
			return -1;
	k->shared = true;
	fprintf(stderr, "amiforge ami copy: shared %s (%s) and its snapshots with account %s\n", k->ami,
		k->src.ec2.region, k->dest_account);
	return 0;
}

/* Without --dest-account: the destination must see the source already. */
static int copy_check_visible(struct copy *k, struct af_error **err)
{
	if (!k->source_profile || k->dest_account)
		return 0;
	struct ec2_client c;
	ec2_client_init(&c, k->src.ec2.region, k->dst.aws.creds, &k->dst.aws.opts);
	struct ec2_image_list l = { 0 };
	struct af_error *e = NULL;
	int rc = ami_describe_one(&c, k->ami, &l, &e);
	ec2_image_list_release(&l);
	ec2_client_release(&c);
	if (rc == 0)
		return 0;
	if (!strstr(af_error_msg(e), "NotFound")) {
		*err = e;
		return -1;
	}
	af_error_free(e);
	return af_error_set(err, 0, "the account of --profile cannot see %s in %s: give --dest-account ID (that "
			    "account) to share it first, or share it with `amiforge ami share`", k->ami,
			    k->src.ec2.region);
}

/* ---- the copies ---- */

static int copy_permissions(struct copy *k, size_t i, struct af_error **err)
{
	if (!k->copy_perms || k->c.dry_run)
		return 0;
	size_t n = 0;
	const char **users = xcalloc(1, sizeof(*users));
	for (size_t u = 0; k->perm_users && k->perm_users[u]; u++) {
		if (k->dest_account && !strcmp(k->perm_users[u], k->dest_account))
			continue; /* the copy's owner */
		users = xreallocarray(users, n + 1, sizeof(*users));
		users[n++] = k->perm_users[u];
	}
	int rc = 0;
	if (n || k->perm_public)
		rc = ec2_modify_launch_permission(&k->ec2[i], k->ids[i], true, users, n, k->perm_public, err);
	free(users);
	return rc < 0 ? af_error_wrap(err, "launch permissions of %s in %s", k->ids[i], k->to[i]) : 0;
}

static void copy_kernel_warning(const struct copy *k, size_t i)
{
	const char *aki = ami_region_value(k->kernel, k->n_kernel, k->to[i]);
	const struct ec2_image *img = &k->source.v[0];
	if (!aki)
		return;
	if (img->virtualization_type && !strcmp(img->virtualization_type, "hvm")) {
		fprintf(stderr, "amiforge ami copy: --kernel-id %s=%s ignored: %s is HVM (no kernel image)\n",
			k->to[i], aki, k->ami);
		return;
	}
	if (img->kernel_id && !strcmp(img->kernel_id, aki))
		return;
	fprintf(stderr, "amiforge ami copy: warning: the copy in %s keeps the source's kernel (%s, which EC2 "
		"maps to %s's); CopyImage cannot set %s: register the copy's snapshot with kernel_id %s "
		"(the register stage) if that region needs it\n",
		k->to[i], img->kernel_id ?: "none", k->to[i], aki, aki);
}

static void copy_one(struct copy *k, size_t i)
{
	const char *kms = ami_region_value(k->kms, k->n_kms, k->to[i]);
	const struct ami_copy_req req = {
		.src_region = k->src.ec2.region, .src_id = k->ami, .name = k->name,
		.description = k->source.v[0].description, .kms_key = kms, .encrypted = k->encrypted,
		.tags = k->tags, .n_tags = k->n_tags, .dry_run = k->c.dry_run,
	};
	if (ami_copy_start(&k->ec2[i], &req, &k->ids[i], &k->errs[i]) < 0)
		return;
	copy_kernel_warning(k, i);
	if (k->c.dry_run) {
		if (!k->c.json)
			printf("would copy %s (%s) to %s as %s%s\n", k->ami, k->src.ec2.region, k->to[i], k->name,
			       kms || k->encrypted ? ", encrypted" : "");
		return;
	}
	if (ami_deprecate(&k->ec2[i], k->ids[i], k->expiry, &k->errs[i]) == 0)
		copy_permissions(k, i, &k->errs[i]);
}

/* --wait: every copy available, then its snapshots tagged. */
static int copy_wait(struct copy *k, struct af_error **err)
{
	struct ami_wait_item *v = xcalloc(k->n_to, sizeof(*v));
	size_t *which = xcalloc(k->n_to, sizeof(*which));
	size_t n = 0;
	for (size_t i = 0; i < k->n_to; i++)
		if (k->ids[i] && !k->errs[i]) {
			which[n] = i;
			v[n++] = (struct ami_wait_item){ .ec2 = &k->ec2[i], .image_id = k->ids[i] };
		}
	int rc = ami_wait_available(v, n, k->timeout, err);
	for (size_t j = 0; j < n; j++)
		if (v[j].done)
			ami_tag_snapshots(v[j].ec2, &v[j].img.v[0], k->tags, k->n_tags, &k->errs[which[j]]);
	ami_wait_release(v, n);
	free(v);
	free(which);
	return rc;
}

static int copy_run(struct copy *k, struct af_error **err)
{
	if (copy_open(k, err) < 0 || copy_read_source(k, err) < 0)
		return -1;
	if (copy_share(k, err) < 0 || copy_check_visible(k, err) < 0)
		return -1;
	for (size_t i = 0; i < k->n_to; i++)
		copy_one(k, i);
	if (k->c.dry_run)
		return 0;
	if (k->wait)
		return copy_wait(k, err);
	if (k->n_tags)
		fprintf(stderr, "amiforge ami copy: the copies' snapshots get the source's tags with --wait "
				"(they exist once a copy is available)\n");
	return 0;
}

static void copy_output(const struct copy *k)
{
	json_t *copies = json_object(), *failed = json_object();
	for (size_t i = 0; k->ids && i < k->n_to; i++) {
		if (k->ids[i])
			json_object_set_new(copies, k->to[i], json_string(k->ids[i]));
		if (k->errs[i])
			json_object_set_new(failed, k->to[i], json_string(af_error_msg(k->errs[i])));
	}
	if (k->c.json) {
		json_t *o = json_pack("{s:{s:s, s:s?}, s:o, s:o, s:s?, s:b}", "source", "image_id", k->ami, "region",
				      k->src.ec2.region, "copies", copies, "failed", failed, "shared_with",
				      k->shared ? k->dest_account : NULL, "dry_run", k->c.dry_run);
		json_dumpf(o, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(o);
		return;
	}
	const char *key;
	json_t *v;
	json_object_foreach(copies, key, v)
		printf("%s %s\n", key, json_string_value(v));
	json_decref(copies);
	json_decref(failed);
}

static int copy_failures(struct copy *k)
{
	int code = EXIT_OK;
	for (size_t i = 0; k->errs && i < k->n_to; i++) {
		if (!k->errs[i])
			continue;
		int c = ami_report("copy", k->errs[i]);
		k->errs[i] = NULL;
		if (code == EXIT_OK)
			code = c;
	}
	return code;
}

int ami_copy_main(int argc, char **argv)
{
	struct copy k = { 0 };
	int rc = copy_parse(&k, argc, argv);
	if (rc != 0) {
		copy_release(&k);
		return rc == AMI_PARSE_HELP ? EXIT_OK : rc;
	}
	struct af_error *err = NULL;
	int run = copy_run(&k, &err);
	copy_output(&k);
	int code = copy_failures(&k);
	if (run < 0)
		code = ami_report("copy", err);
	copy_release(&k);
	return code;
}
