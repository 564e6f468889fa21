/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami create [INSTANCE]`: CreateImage of a running instance (by
 * default the one this runs on, found through IMDSv2), with tags and an
 * expiry on the image and its snapshots, copies to other regions, and an
 * optional wait until everything is available.
 *
 * CreateImage has no ClientToken: the image carries the
 * AMI_FROM_INSTANCE_TAG tag, and a retried CreateImage that finds its name
 * taken (the first attempt's answer was lost) adopts the image of that name
 * made from the same instance.  Copies carry a ClientToken (ami_wait.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ami_wait.h"
#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/mem.h"
#include "amiforge/when.h"

static const char create_usage[] =
	"usage: amiforge ami create [INSTANCE] [--name N] [--no-reboot] [--tag K=V]...\n"
	"         [--expire-after SPAN | --expires DATE] [--copy-to REGION]... [--wait TIMEOUT]\n"
	"         [--profile P] [--region R] [--dry-run] [--json]\n"
	"  INSTANCE: default the instance this runs on (IMDSv2: its id and region)\n"
	"  --name: default INSTANCE-YYYYmmddTHHMMSSZ\n"
	"  --tag: on the image and its snapshots (and on the copies)\n"
	"  --expire-after 7d|2w|3mo|+1 week, --expires 2026-12-31[THH:MM[:SS]Z]: the amiforge:expires\n"
	"    tag and the deprecation time, on the image, its snapshots and the copies\n"
	"  --copy-to: copies (a copy needs its source available: the command waits for it,\n"
	"    up to --wait or 2h); the copies' snapshots get the tags with --wait\n"
	"  --wait: until every AMI is available; exit 1 at the timeout naming what is pending\n";

enum {
	OPT_NAME = AMI_OPT_FIRST_OWN,
	OPT_NO_REBOOT,
	OPT_TAG,
	OPT_EXPIRE_AFTER,
	OPT_EXPIRES,
	OPT_COPY_TO,
	OPT_WAIT,
};

struct create {
	struct ami_common c;
	const char *instance, *name, *expire_after, *expires;
	bool no_reboot, wait;
	double timeout;
	char **tag_args;                /* K=V, split in place */
	struct aws_tag *tags;           /* user tags + expiry + source instance */
	size_t n_tags;
	const char **copy_to;
	size_t n_copy_to;
	time_t expiry;
	char expiry_text[32];
	char *own_instance, *own_region; /* from IMDS */
	char *default_name;
	struct ami_region r;
	char *image_id;
	struct ec2_client *copy_ec2;    /* one per copy_to */
	char **copy_ids;
	struct af_error **copy_errs;
	int rc;
};

static void create_release(struct create *k)
{
	for (size_t i = 0; i < k->n_copy_to; i++) {
		if (k->copy_ec2 && k->copy_ec2[i].endpoint)
			ec2_client_release(&k->copy_ec2[i]);
		if (k->copy_ids)
			free(k->copy_ids[i]);
		if (k->copy_errs)
			af_error_free(k->copy_errs[i]);
	}
	free(k->copy_ec2);
	free(k->copy_ids);
	free(k->copy_errs);
	free(k->copy_to);
	free(k->tag_args);
	free(k->tags);
	free(k->own_instance);
	free(k->own_region);
	free(k->default_name);
	free(k->image_id);
	ami_region_close(&k->r);
	ami_common_release(&k->c);
}

static int create_option(void *arg_k, int opt, char *arg)
{
	struct create *k = arg_k;
	switch (opt) {
	case OPT_NAME: k->name = arg; return 0;
	case OPT_NO_REBOOT: k->no_reboot = true; return 0;
	case OPT_TAG:
		k->tag_args = xreallocarray(k->tag_args, k->n_tags + 1, sizeof(*k->tag_args));
		k->tag_args[k->n_tags++] = arg;
		return 0;
	case OPT_EXPIRE_AFTER: k->expire_after = arg; return 0;
	case OPT_EXPIRES: k->expires = arg; return 0;
	case OPT_COPY_TO:
		k->copy_to = xreallocarray(k->copy_to, k->n_copy_to + 1, sizeof(*k->copy_to));
		k->copy_to[k->n_copy_to++] = arg;
		return 0;
	case OPT_WAIT: {
		struct af_error *e = NULL;
		k->wait = true;
		if (ami_parse_timeout(arg, &k->timeout, &e) < 0) {
			int rc = ami_usage_error("create", create_usage, "%s", af_error_msg(e));
			af_error_free(e);
			return rc;
		}
		return 0;
	}
	default: return EXIT_USAGE; /* getopt said why */
	}
}

static int create_parse(struct create *k, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, OPT_NAME },
		{ "no-reboot", no_argument, NULL, OPT_NO_REBOOT },
		{ "tag", required_argument, NULL, OPT_TAG },
		{ "expire-after", required_argument, NULL, OPT_EXPIRE_AFTER },
		{ "expires", required_argument, NULL, OPT_EXPIRES },
		{ "copy-to", required_argument, NULL, OPT_COPY_TO },
		{ "wait", required_argument, NULL, OPT_WAIT },
		AMI_COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	int i;
	int rc = ami_parse_options(argc, argv, longopts, create_usage, &k->c, create_option, k, &i);
	if (rc)
		return rc;
	if (argc - i > 1)
		return ami_usage_error("create", create_usage, "one INSTANCE at most ('%s' is extra)", argv[i + 1]);
	if (i < argc)
		k->instance = argv[i];
	if (k->c.all_regions)
		return ami_usage_error("create", create_usage, "--all-regions does not apply: give --copy-to");
	return 0;
}

/* The tags: --tag K=V..., the expiry, the source instance. */
static int create_tags(struct create *k)
{
	struct af_error *e = NULL;
	if (ami_expiry_parse(k->expire_after, k->expires, time(NULL), &k->expiry, &e) < 0) {
		int rc = ami_usage_error("create", create_usage, "%s", af_error_msg(e));
		af_error_free(e);
		return rc;
	}
	size_t n_user = k->n_tags;
	k->tags = xcalloc(n_user + 2, sizeof(*k->tags));
	k->n_tags = 0;
	for (size_t i = 0; i < n_user; i++) {
		struct aws_tag *t = &k->tags[k->n_tags++];
		if (ami_split_pair(k->tag_args[i], &t->key, &t->value) < 0)
			return ami_usage_error("create", create_usage, "--tag '%s': expected KEY=VALUE",
					       k->tag_args[i]);
	}
	if (k->expiry) {
		when_format(k->expiry, k->expiry_text);
		k->tags[k->n_tags++] = (struct aws_tag){ AMI_EXPIRES_TAG, k->expiry_text };
	}
	return 0;
}

/* The instance (and its region) from IMDS when none is given. */
static int create_find_instance(struct create *k, struct af_error **err)
{
	if (k->instance)
		return 0;
	struct imds_client *cl = imds_client_default();
	int rc = imds_instance_id(cl, &k->own_instance, err);
	if (rc == 0)
		rc = imds_region(cl, &k->own_region, err);
	if (rc != 0) {
		_cleanup_free_ char *where = imds_client_endpoint(cl);
		if (rc > 0)
			af_error_set(err, 0, "no INSTANCE given and the instance metadata service (%s) does not "
				     "answer: give the instance id (i-...), or run this on the instance", where);
		return af_error_wrap(err, "finding this instance");
	}
	k->instance = k->own_instance;
	return 0;
}

static void create_default_name(struct create *k)
{
	if (k->name)
		return;
	char stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	k->default_name = xasprintf("%s-%s", k->instance, stamp);
	k->name = k->default_name;
}

/* A CreateImage whose name is taken: the image of that name if an earlier
 * attempt made it from the same instance (1, *id), else 0. */
static int create_adopt(struct create *k, char **id, struct af_error **err)
{
	const char *owners[] = { "self" };
	const char *names[] = { k->name };
	const struct ec2_filter f = { "name", names, 1 };
	const struct ec2_image_query q = { .owners = owners, .n_owners = 1, .filters = &f, .n_filters = 1 };
	struct ec2_image_list l = { 0 };
	if (ec2_describe_images(&k->r.ec2, &q, &l, err) < 0)
		return -1;
	int found = 0;
	for (size_t i = 0; i < l.n && !found; i++)
		for (size_t t = 0; t < l.v[i].tags.n; t++)
			if (!strcmp(l.v[i].tags.v[t].key, AMI_FROM_INSTANCE_TAG) &&
			    !strcmp(l.v[i].tags.v[t].value, k->instance)) {
				*id = xstrdup(l.v[i].image_id);
				found = 1;
				break;
			}
	ec2_image_list_release(&l);
	return found;
}

static int create_image(struct create *k, struct af_error **err)
{
	k->tags[k->n_tags] = (struct aws_tag){ AMI_FROM_INSTANCE_TAG, k->instance };
	const struct ec2_create_image req = {
		.instance_id = k->instance, .name = k->name, .no_reboot = k->no_reboot,
		.description = "amiforge ami create", .tags = k->tags, .n_tags = k->n_tags + 1,
	};
	struct af_error *e = NULL;
	if (ec2_create_image(&k->r.ec2, &req, &k->image_id, &e) == 0)
		return 0;
	if (strstr(af_error_msg(e), "InvalidAMIName.Duplicate")) {
		int found = create_adopt(k, &k->image_id, err);
		if (found > 0) {
			af_error_free(e);
			fprintf(stderr, "amiforge ami create: adopting %s (%s): an earlier attempt made it from %s\n",
				k->image_id, k->name, k->instance);
			return 0;
		}
		if (found == 0)
			af_error_hint(&e, "another image has this name: give --name");
	}
	*err = e;
	return af_error_wrap(err, "creating an image of %s in %s", k->instance, k->r.ec2.region);
}

static int create_dry_run(struct create *k, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "InstanceId", k->instance);
	ec2_params_add(&p, "Name", k->name);
	int rc = ami_dry_run_call(&k->r.ec2, "CreateImage", &p, err);
	ec2_params_release(&p);
	if (rc < 0)
		return af_error_wrap(err, "creating an image of %s in %s (dry run)", k->instance, k->r.ec2.region);
	if (!k->c.json) {
		printf("would create %s from %s in %s%s\n", k->name, k->instance, k->r.ec2.region,
		       k->no_reboot ? " (no reboot)" : "");
		for (size_t i = 0; i < k->n_tags; i++)
			printf("would tag it and its snapshots %s=%s\n", k->tags[i].key, k->tags[i].value);
		if (k->expiry)
			printf("would deprecate it at %s\n", k->expiry_text);
		for (size_t i = 0; i < k->n_copy_to; i++)
			printf("would copy it to %s\n", k->copy_to[i]);
	}
	return 0;
}

/* Starts every copy (they proceed in parallel at AWS); a failed one is
 * kept in copy_errs and the others go on. */
static void create_copies(struct create *k)
{
	k->copy_ec2 = xcalloc(k->n_copy_to, sizeof(*k->copy_ec2));
	k->copy_ids = xcalloc(k->n_copy_to, sizeof(*k->copy_ids));
	k->copy_errs = xcalloc(k->n_copy_to, sizeof(*k->copy_errs));
	for (size_t i = 0; i < k->n_copy_to; i++) {
		ec2_client_init(&k->copy_ec2[i], k->copy_to[i], k->r.aws.creds, &k->r.aws.opts);
		const struct ami_copy_req req = {
			.src_region = k->r.ec2.region, .src_id = k->image_id, .name = k->name,
			.description = "amiforge ami create", .tags = k->tags, .n_tags = k->n_tags + 1,
		};
		if (ami_copy_start(&k->copy_ec2[i], &req, &k->copy_ids[i], &k->copy_errs[i]) == 0)
			ami_deprecate(&k->copy_ec2[i], k->copy_ids[i], k->expiry, &k->copy_errs[i]);
	}
}

/* The source available (a copy needs it), then the copies. */
static int create_copy_phase(struct create *k, struct af_error **err)
{
	if (!k->n_copy_to)
		return 0;
	struct ami_wait_item src = { .ec2 = &k->r.ec2, .image_id = k->image_id };
	int rc = ami_wait_available(&src, 1, k->wait ? k->timeout : AMI_WAIT_DEFAULT_SECS, err);
	ami_wait_release(&src, 1);
	if (rc < 0)
		return af_error_wrap(err, "no copies made (a copy needs its source available)");
	create_copies(k);
	return 0;
}

/* With --wait: every copy available, then its snapshots tagged. */
static int create_wait_copies(struct create *k, struct af_error **err)
{
	struct ami_wait_item *v = xcalloc(k->n_copy_to + 1, sizeof(*v));
	size_t n = 0;
	v[n++] = (struct ami_wait_item){ .ec2 = &k->r.ec2, .image_id = k->image_id };
	for (size_t i = 0; i < k->n_copy_to; i++)
		if (k->copy_ids && k->copy_ids[i])
			v[n++] = (struct ami_wait_item){ .ec2 = &k->copy_ec2[i], .image_id = k->copy_ids[i] };
	int rc = ami_wait_available(v, n, k->timeout, err);
	for (size_t i = 1; i < n && rc == 0; i++)
		rc = ami_tag_snapshots(v[i].ec2, &v[i].img.v[0], k->tags, k->n_tags + 1, err);
	ami_wait_release(v, n);
	free(v);
	return rc;
}

static int create_run(struct create *k, struct af_error **err)
{
	if (create_find_instance(k, err) < 0)
		return -1;
	const char *region = k->c.n_regions ? NULL : k->own_region;
	if (ami_region_open(&k->c, region, &k->r, err) < 0)
		return -1;
	create_default_name(k);
	if (k->c.dry_run)
		return create_dry_run(k, err);
	if (create_image(k, err) < 0)
		return -1;
	if (ami_deprecate(&k->r.ec2, k->image_id, k->expiry, err) < 0)
		return -1;
	if (create_copy_phase(k, err) < 0)
		return -1;
	if (k->wait)
		return create_wait_copies(k, err);
	if (k->n_copy_to)
		fprintf(stderr, "amiforge ami create: the copies' snapshots get their tags with --wait "
				"(they exist once a copy is available)\n");
	return 0;
}

static void create_output(struct create *k)
{
	if (k->c.dry_run) {
		if (k->c.json)
			printf("{\"dry_run\": true}\n");
		return;
	}
	json_t *copies = json_object();
	for (size_t i = 0; i < k->n_copy_to; i++)
		if (k->copy_ids && k->copy_ids[i])
			json_object_set_new(copies, k->copy_to[i], json_string(k->copy_ids[i]));
	if (k->c.json) {
		json_t *o = json_pack("{s:s?, s:s, s:s, s:s, s:o}", "image_id", k->image_id, "region",
				      k->r.ec2.region, "name", k->name, "instance", k->instance, "copies", copies);
		if (k->expiry)
			json_object_set_new(o, "expires", json_string(k->expiry_text));
		json_dumpf(o, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(o);
		return;
	}
	if (k->image_id)
		printf("%s %s\n", k->r.ec2.region, k->image_id);
	const char *key;
	json_t *v;
	json_object_foreach(copies, key, v)
		printf("%s %s\n", key, json_string_value(v));
	json_decref(copies);
}

/* Copies that failed: each named on stderr; the exit code of the first. */
static int create_copy_failures(struct create *k)
{
	int code = EXIT_OK;
	for (size_t i = 0; k->copy_errs && i < k->n_copy_to; i++) {
		if (!k->copy_errs[i])
			continue;
		int c = ami_report("create", k->copy_errs[i]);
		k->copy_errs[i] = NULL;
		if (code == EXIT_OK)
			code = c;
	}
	return code;
}

int ami_create_main(int argc, char **argv)
{
	struct create k = { 0 };
	int rc = create_parse(&k, argc, argv);
	if (rc == 0)
		rc = create_tags(&k);
	if (rc != 0) {
		create_release(&k);
		return rc == AMI_PARSE_HELP ? EXIT_OK : rc;
	}
	struct af_error *err = NULL;
	int run = create_run(&k, &err);
	create_output(&k);
	int code = create_copy_failures(&k);
	if (run < 0)
		code = ami_report("create", err);
	create_release(&k);
	return code;
}
