/* SPDX-License-Identifier: Apache-2.0 */
/* What the `ami` subcommands share (ami.h): common options, a session per
 * region, exit codes, expiries. */
#include <errno.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/ami.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/redact.h"
#include "amiforge/when.h"

int ami_common_option(struct ami_common *c, int opt, const char *arg)
{
	switch (opt) {
	case AMI_OPT_PROFILE: c->profile = arg; return 1;
	case AMI_OPT_REGION:
		c->regions = xreallocarray(c->regions, c->n_regions + 1, sizeof(*c->regions));
		c->regions[c->n_regions++] = arg;
		return 1;
	case AMI_OPT_ALL_REGIONS: c->all_regions = true; return 1;
	case AMI_OPT_JSON: c->json = true; return 1;
	case AMI_OPT_DRY_RUN: c->dry_run = true; return 1;
	default: return 0;
	}
}

void ami_common_release(struct ami_common *c)
{
	free(c->regions);
	c->regions = NULL;
	c->n_regions = 0;
}

int ami_parse_options(int argc, char **argv, const struct option *longopts, const char *usage,
		      struct ami_common *c, ami_own_option_fn *own, void *arg, int *first)
{
	int opt, rc;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage, stdout);
			return AMI_PARSE_HELP;
		}
		if (ami_common_option(c, opt, optarg))
			continue;
		if ((rc = own(arg, opt, optarg)) != 0)
			return rc;
	}
	*first = optind;
	return 0;
}

int ami_usage_error(const char *sub, const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	/* It may quote an argument, and an argument may hold a credential. */
	_cleanup_free_ char *safe = redact_text(msg, NULL, 0);
	fprintf(stderr, "amiforge ami %s: %s\n%s", sub, safe, usage);
	return EXIT_USAGE;
}

/* ---- AWS ---- */

int ami_region_open(const struct ami_common *c, const char *region, struct ami_region *out,
		    struct af_error **err)
{
	*out = (struct ami_region){ 0 };
	if (!region && c->n_regions)
		region = c->regions[0];
	if (aws_session_open_profile(&out->aws, region, c->profile, 0, err) < 0)
		return -1;
	ec2_client_init(&out->ec2, out->aws.region, out->aws.creds, &out->aws.opts);
	return 0;
}

void ami_region_close(struct ami_region *r)
{
	if (r->ec2.endpoint)
		ec2_client_release(&r->ec2);
	aws_session_close(&r->aws);
	*r = (struct ami_region){ 0 };
}

void ami_regions_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int ami_regions(const struct ami_common *c, char ***out, size_t *n, struct af_error **err)
{
	*out = NULL;
	*n = 0;
	if (!c->all_regions) {
		struct ami_region r;
		size_t want = c->n_regions ? c->n_regions : 1;
		*out = xcalloc(want, sizeof(**out));
		for (size_t i = 0; i < c->n_regions; i++)
			(*out)[(*n)++] = xstrdup(c->regions[i]);
		if (c->n_regions)
			return 0;
		if (ami_region_open(c, NULL, &r, err) < 0) {
			free(*out);
			*out = NULL;
			return -1;
		}
		(*out)[(*n)++] = xstrdup(r.aws.region);
		ami_region_close(&r);
		return 0;
	}
	struct ami_region r;
	if (ami_region_open(c, NULL, &r, err) < 0)
		return -1;
	_cleanup_strv_ char **all = NULL;
	int rc = ec2_describe_regions(&r.ec2, &all, err);
	ami_region_close(&r);
	if (rc < 0)
		return -1;
	size_t k = 0;
	while (all[k])
		k++;
	*out = xcalloc(k ? k : 1, sizeof(**out));
	for (size_t i = 0; i < k; i++)
		(*out)[(*n)++] = xstrdup(all[i]);
	return 0;
}

int ami_exit_code(const struct af_error *err)
{
	const char *m = af_error_msg(err);
	if (strstr(m, "UnauthorizedOperation") || strstr(m, "AccessDenied") ||
	    strstr(m, "AuthFailure") || strstr(m, "no AWS credentials found"))
		return EXIT_NOPERM;
	if (strstr(m, "Could not connect") || strstr(m, "Couldn't connect") ||
	    strstr(m, "Could not resolve") || strstr(m, "Connection refused") ||
	    af_error_errno(err) == EHOSTUNREACH)
		return EXIT_UNAVAILABLE;
	return EXIT_STAGE_FAILED;
}

/* ---- expiry ---- */

int ami_expiry_parse(const char *after, const char *at, time_t base, time_t *out,
		     struct af_error **err)
{
	*out = 0;
	if (after && at)
		return af_error_set(err, 0, "give --expire-after or --expires, not both");
	if (at)
		return when_parse_date(at, out, err);
	if (!after)
		return 0;
	struct when_span s;
	if (when_parse_span(after, &s, err) < 0)
		return -1;
	*out = when_add(base, &s);
	return 0;
}

static int disable_deprecation(const struct ec2_client *ec2, const char *image_id,
			       struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	struct _xmlDoc *doc = NULL;
	ec2_params_add(&p, "ImageId", image_id);
	int rc = ec2_call(ec2, "DisableImageDeprecation", &p, &doc, err);
	ec2_params_release(&p);
	xmlFreeDoc(doc);
	return rc;
}

int ami_expiry_apply(const struct ec2_client *ec2, const char *image_id, const char *const *snapshots,
		     size_t n, time_t when, bool dry_run, struct af_error **err)
{
	char stamp[32];
	when_format(when, stamp);
	const char **ids = xcalloc(n + 1, sizeof(*ids));
	ids[0] = image_id;
	for (size_t i = 0; i < n; i++)
		ids[i + 1] = snapshots[i];
	int rc;
	if (dry_run) {
		if (when)
			printf("would tag %s and %zu snapshot(s) %s=%s and deprecate it then\n", image_id, n,
			       AMI_EXPIRES_TAG, stamp);
		else
			printf("would remove %s from %s and %zu snapshot(s) and cancel its deprecation\n",
			       AMI_EXPIRES_TAG, image_id, n);
		rc = 0;
	} else if (when) {
		struct aws_tag tag = { AMI_EXPIRES_TAG, stamp };
		rc = ec2_create_tags(ec2, ids, n + 1, &tag, 1, err);
		if (rc == 0)
			rc = ec2_enable_image_deprecation(ec2, image_id, when, err);
	} else {
		struct aws_tag tag = { AMI_EXPIRES_TAG, NULL };
		rc = ec2_delete_tags(ec2, ids, n + 1, &tag, 1, err);
		if (rc == 0)
			rc = disable_deprecation(ec2, image_id, err);
	}
	free(ids);
	return rc;
}
