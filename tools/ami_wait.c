/* SPDX-License-Identifier: Apache-2.0 */
/* What `ami create` and `ami copy` share (ami_wait.h): waiting, copying
 * with a ClientToken, snapshot tags, option forms. */
#include <errno.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ami_wait.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/mem.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"
#include "amiforge/when.h"

/* ---- waiting ---- */

static void ami_sleep(double secs)
{
	if (secs <= 0)
		return;
	struct timespec ts = { (time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int ami_describe_one(const struct ec2_client *ec2, const char *id, struct ec2_image_list *out,
		     struct af_error **err)
{
	const char *ids[] = { id };
	const struct ec2_image_query q = { .image_ids = ids, .n_image_ids = 1, .include_deprecated = true };
	struct ec2_image_list l = { 0 };
	if (ec2_describe_images(ec2, &q, &l, err) < 0)
		return af_error_wrap(err, "%s in %s", id, ec2->region);
	if (l.n != 1) {
		ec2_image_list_release(&l);
		return af_error_set(err, 0, "%s in %s: no such image (InvalidAMIID.NotFound)", id, ec2->region);
	}
	*out = l;
	return 0;
}

/* One poll of V: 1 available, 0 still pending, -1 + err (failed, or an
 * error other than a new id not yet visible). */
static int ami_poll_one(struct ami_wait_item *v, double waited, struct af_error **err)
{
	struct ec2_image_list l = { 0 };
	struct af_error *e = NULL;
	if (ami_describe_one(v->ec2, v->image_id, &l, &e) < 0) {
		/* Eventual consistency: a new id may be unknown for a moment. */
		if (!strstr(af_error_msg(e), "InvalidAMIID.NotFound") || waited > 120) {
			*err = e;
			return -1;
		}
		af_error_free(e);
		snprintf(v->state, sizeof(v->state), "not visible yet");
		return 0;
	}
	const struct ec2_image *img = &l.v[0];
	snprintf(v->state, sizeof(v->state), "%s", img->state ?: "?");
	if (!strcmp(v->state, "available")) {
		v->img = l;
		v->done = true;
		return 1;
	}
	int rc = 0;
	if (strcmp(v->state, "pending") != 0)
		rc = af_error_set(err, 0, "%s in %s is '%s'%s%s: deregister it and make it again", v->image_id,
				  v->ec2->region, v->state, img->state_reason ? ": " : "", img->state_reason ?: "");
	ec2_image_list_release(&l);
	return rc;
}

static void ami_wait_progress(const struct ami_wait_item *v, size_t n, double waited, double timeout)
{
	size_t ready = 0;
	for (size_t i = 0; i < n; i++)
		ready += v[i].done;
	fprintf(stderr, "amiforge ami: waiting for %zu of %zu AMI(s) to become available (%.0f s of %.0f s):",
		n - ready, n, waited, timeout);
	for (size_t i = 0; i < n; i++)
		if (!v[i].done)
			fprintf(stderr, " %s in %s %s;", v[i].image_id, v[i].ec2->region, v[i].state);
	fputc('\n', stderr);
}

static int ami_wait_timeout_error(const struct ami_wait_item *v, size_t n, double waited,
				  struct af_error **err)
{
	_cleanup_free_ char *list = xstrdup("");
	for (size_t i = 0; i < n; i++) {
		if (v[i].done)
			continue;
		char *more = xasprintf("%s%s%s in %s (%s)", list, *list ? ", " : "", v[i].image_id,
				       v[i].ec2->region, v[i].state);
		free(list);
		list = more;
	}
	return af_error_set(err, 0, "still not available after %.0f s (--wait): %s; they go on at AWS "
			    "(`amiforge ami list --region REGION` shows them): wait longer or run again", waited, list);
}

int ami_wait_available(struct ami_wait_item *v, size_t n, double timeout, struct af_error **err)
{
	double start = now_monotonic(), end = start + timeout, delay = 1;
	for (size_t i = 0; i < n; i++)
		snprintf(v[i].state, sizeof(v[i].state), "pending");
	for (;;) {
		size_t left = 0;
		for (size_t i = 0; i < n; i++) {
			if (v[i].done)
				continue;
			int rc = ami_poll_one(&v[i], now_monotonic() - start, err);
			if (rc < 0)
				return -1;
			left += rc == 0;
		}
		if (left == 0)
			return 0;
		double now = now_monotonic();
		ami_wait_progress(v, n, now - start, timeout);
		if (now >= end)
			return ami_wait_timeout_error(v, n, now - start, err);
		ami_sleep(delay < end - now ? delay : end - now);
		delay = delay * 2 > 15 ? 15 : delay * 2;
	}
}

void ami_wait_release(struct ami_wait_item *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ec2_image_list_release(&v[i].img);
}

/* ---- options ---- */

int ami_parse_timeout(const char *text, double *out, struct af_error **err)
{
	struct when_span s;
	if (when_parse_span(text, &s, err) < 0)
		return af_error_wrap(err, "--wait");
	if (s.months || s.seconds <= 0)
		return af_error_set(err, 0, "--wait '%s': give seconds, minutes, hours or days (90s, 30m, 2h)", text);
	*out = (double)s.seconds;
	return 0;
}

int ami_split_pair(char *text, const char **key, const char **value)
{
	char *eq = strchr(text, '=');
	if (!eq || eq == text)
		return -1;
	*eq = '\0';
	*key = text;
	*value = eq + 1;
	return 0;
}

const char *ami_region_value(char *const *v, size_t n, const char *region)
{
	size_t len = strlen(region);
	for (size_t i = 0; i < n; i++)
		if (!strncmp(v[i], region, len) && v[i][len] == '=')
			return v[i] + len + 1;
	return NULL;
}

/* ---- images, tags, expiry ---- */

struct aws_tag *ami_user_tags(const struct ec2_image *img, size_t *n)
{
	struct aws_tag *t = xcalloc(img->tags.n + 1, sizeof(*t));
	*n = 0;
	for (size_t i = 0; i < img->tags.n; i++)
		if (strncmp(img->tags.v[i].key, "aws:", 4) != 0)
			t[(*n)++] = (struct aws_tag){ img->tags.v[i].key, img->tags.v[i].value };
	return t;
}

int ami_tag_snapshots(const struct ec2_client *ec2, const struct ec2_image *img,
		      const struct aws_tag *tags, size_t n, struct af_error **err)
{
	const char **ids = xcalloc(img->n_bdm + 1, sizeof(*ids));
	size_t k = 0;
	for (size_t i = 0; i < img->n_bdm; i++)
		if (img->bdm[i].snapshot_id)
			ids[k++] = img->bdm[i].snapshot_id;
	int rc = k && n ? ec2_create_tags(ec2, ids, k, tags, n, err) : 0;
	free(ids);
	return rc < 0 ? af_error_wrap(err, "tagging the snapshots of %s in %s", img->image_id, ec2->region) : 0;
}

time_t ami_parse_iso(const char *s)
{
	struct tm tm = { 0 };
	if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return timegm(&tm);
}

time_t ami_image_expiry(const struct ec2_image *img)
{
	for (size_t i = 0; i < img->tags.n; i++)
		if (!strcmp(img->tags.v[i].key, AMI_EXPIRES_TAG))
			return ami_parse_iso(img->tags.v[i].value);
	return ami_parse_iso(img->deprecation_time);
}

int ami_deprecate(const struct ec2_client *ec2, const char *id, time_t when, struct af_error **err)
{
	if (!when)
		return 0;
	if (when <= time(NULL) + 60) {
		fprintf(stderr, "amiforge ami: %s in %s: the expiry has passed; no deprecation time set\n", id,
			ec2->region);
		return 0;
	}
	if (ec2_enable_image_deprecation(ec2, id, when, err) < 0)
		return af_error_wrap(err, "deprecation of %s in %s", id, ec2->region);
	return 0;
}

/* ---- calls ---- */

int ami_dry_run_call(const struct ec2_client *ec2, const char *action, struct ec2_params *p,
		     struct af_error **err)
{
	struct af_error *e = NULL;
	ec2_params_add_bool(p, "DryRun", true);
	int rc = ec2_call(ec2, action, p, NULL, &e);
	if (rc == 0)
		return 0; /* not expected: EC2 answers DryRun with an error */
	if (strstr(af_error_msg(e), "DryRunOperation")) {
		af_error_free(e);
		return 0;
	}
	*err = e;
	return -1;
}

static int ami_copy_dry_run(const struct ec2_client *dst, const struct ami_copy_req *r, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "SourceRegion", r->src_region);
	ec2_params_add(&p, "SourceImageId", r->src_id);
	ec2_params_add(&p, "Name", r->name);
	int rc = ami_dry_run_call(dst, "CopyImage", &p, err);
	ec2_params_release(&p);
	return rc;
}

int ami_copy_start(const struct ec2_client *dst, const struct ami_copy_req *r, char **id,
		   struct af_error **err)
{
	*id = NULL;
	int rc;
	if (r->dry_run) {
		rc = ami_copy_dry_run(dst, r, err);
	} else {
		char token[37];
		_cleanup_free_ char *purpose = xasprintf("amiforge ami copy %s -> %s as %s", r->src_region,
							 dst->region, r->name);
		uuid_derive(r->src_id, purpose, token);
		const struct ec2_copy_image req = {
			.source_region = r->src_region, .source_image_id = r->src_id, .name = r->name,
			.description = r->description, .client_token = token, .kms_key_id = r->kms_key,
			.encrypted = r->kms_key || r->encrypted ? 1 : -1, .tags = r->tags, .n_tags = r->n_tags,
		};
		rc = ec2_copy_image(dst, &req, id, err);
	}
	if (rc < 0)
		return af_error_wrap(err, "copying %s (%s) to %s", r->src_id, r->src_region, dst->region);
	return 0;
}

int ami_report(const char *sub, struct af_error *err)
{
	int code = ami_exit_code(err);
	_cleanup_free_ char *safe = redact_text(af_error_msg(err), NULL, 0);
	fprintf(stderr, "amiforge ami %s: %s\n", sub, safe);
	af_error_free(err);
	return code;
}
