/* SPDX-License-Identifier: Apache-2.0 */
/* `ami purge`: what it asks EC2 and what it deletes (ami_purge.h). */
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/aws/awsxml.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/mem.h"
#include "ami_purge.h"

/* EC2 takes up to 200 filter values; stay well below. */
#define PURGE_BATCH 100

static struct purge_image *find_image(struct purge_region *r, const char *id)
{
	for (size_t i = 0; id && i < r->n; i++)
		if (!strcmp(r->v[i].img->image_id, id))
			return &r->v[i];
	return NULL;
}

static void add_use(struct purge_image *p, const char *what)
{
	char *n = p->in_use ? xasprintf("%s; %s", p->in_use, what) : xstrdup(what);
	free(p->in_use);
	p->in_use = n;
}

/* Instances not terminated that run the selection's images [FROM, TO). */
static int instances_batch(const struct ec2_client *ec2, struct purge_region *r, size_t from,
			   size_t to, struct af_error **err)
{
	static const char *const live[] = { "pending", "running", "shutting-down", "stopping", "stopped" };
	const char **ids = xcalloc(to - from, sizeof(*ids));
	for (size_t i = from; i < to; i++)
		ids[i - from] = r->v[i].img->image_id;
	struct ec2_filter f[] = { { "image-id", ids, to - from },
				  { "instance-state-name", live, ARRAY_SIZE(live) } };
	struct ec2_instance_list l = { 0 };
	int rc = ec2_describe_instances(ec2, NULL, 0, f, ARRAY_SIZE(f), &l, err);
	free(ids);
	if (rc < 0)
		return af_error_wrap(err, "which instances use the AMIs");
	for (size_t i = 0; i < l.n; i++) {
		struct purge_image *p = find_image(r, l.v[i].image_id);
		if (!p)
			continue;
		_cleanup_free_ char *why = xasprintf("used by instance %s (%s)", l.v[i].instance_id,
						     l.v[i].state ? l.v[i].state : "?");
		add_use(p, why);
	}
	ec2_instance_list_release(&l);
	return 0;
}

static int lt_page(struct _xmlDoc *doc, void *data, struct af_error **err)
{
	struct purge_region *r = data;
	xmlNode *set = awsxml_child(xmlDocGetRootElement(doc), "launchTemplateVersionSet");
	(void)err;
	awsxml_foreach(item, set, "item") {
		_cleanup_free_ char *image = awsxml_text(awsxml_child(item, "launchTemplateData"), "imageId");
		struct purge_image *p = find_image(r, image);
		if (!p)
			continue;
		_cleanup_free_ char *id = awsxml_text(item, "launchTemplateId");
		_cleanup_free_ char *name = awsxml_text(item, "launchTemplateName");
		_cleanup_free_ char *why = xasprintf(
			"used by launch template %s (%s) version %lld (%s)", name ? name : "?", id ? id : "?",
			(long long)awsxml_int(item, "versionNumber", 0),
			awsxml_bool(item, "defaultVersion") ? "$Default" : "$Latest");
		add_use(p, why);
	}
	return 0;
}

/* The default and latest versions of every launch template: without a
 * template id, DescribeLaunchTemplateVersions answers for all of them. */
static int launch_templates(const struct ec2_client *ec2, struct purge_region *r,
			    struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "LaunchTemplateVersion.1", "$Default");
	ec2_params_add(&p, "LaunchTemplateVersion.2", "$Latest");
	ec2_params_add(&p, "MaxResults", "200");
	int rc = ec2_call_paged(ec2, "DescribeLaunchTemplateVersions", &p, lt_page, r, err);
	ec2_params_release(&p);
	if (rc < 0)
		return af_error_wrap(err, "which launch templates use the AMIs");
	return 0;
}

static int find_uses(const struct ec2_client *ec2, struct purge_region *r, struct af_error **err)
{
	for (size_t i = 0; i < r->n; i += PURGE_BATCH)
		if (instances_batch(ec2, r, i, i + PURGE_BATCH < r->n ? i + PURGE_BATCH : r->n, err) < 0)
			return -1;
	return r->n ? launch_templates(ec2, r, err) : 0;
}

static int find_orphans(const struct ec2_client *ec2, const struct purge_opts *o,
			struct purge_region *r, struct af_error **err)
{
	static const char *const self[] = { "self" };
	struct ec2_snapshot_query q = { .owners = self, .n_owners = 1, .max_results = 1000 };
	if (ec2_describe_snapshots(ec2, &q, &r->snaps, err) < 0)
		return af_error_wrap(err, "listing the snapshots");
	r->s = xcalloc(r->snaps.n ? r->snaps.n : 1, sizeof(*r->s));
	for (size_t i = 0; i < r->snaps.n; i++)
		if (purge_decide_snapshot(&r->snaps.v[i], &r->images, o, &r->s[r->n_s]))
			r->n_s++;
	return 0;
}

int purge_scan(const struct ec2_client *ec2, const struct purge_opts *o, struct purge_region *r,
	       struct af_error **err)
{
	static const char *const self[] = { "self" };
	struct ec2_image_query q = { .owners = self, .n_owners = 1, .include_deprecated = true,
				     .max_results = 1000 };
	if (ec2_describe_images(ec2, &q, &r->images, err) < 0)
		return af_error_wrap(err, "listing the AMIs");
	r->v = xcalloc(r->images.n ? r->images.n : 1, sizeof(*r->v));
	for (size_t i = 0; i < r->images.n; i++)
		if (purge_image_selected(&r->images.v[i], o))
			purge_image_init(&r->v[r->n++], &r->images.v[i]);
	if (find_uses(ec2, r, err) < 0)
		return -1;
	purge_decide_images(r->v, r->n, o);
	if (o->orphans && find_orphans(ec2, o, r, err) < 0)
		return -1;
	return 0;
}

void purge_region_release(struct purge_region *r)
{
	for (size_t i = 0; i < r->n; i++)
		purge_image_release(&r->v[i]);
	for (size_t i = 0; i < r->n_s; i++)
		purge_snap_release(&r->s[i]);
	free(r->v);
	free(r->s);
	ec2_image_list_release(&r->images);
	ec2_snapshot_list_release(&r->snaps);
	free(r->region);
	free(r->error);
	*r = (struct purge_region){ 0 };
}

/* ---- acting ---- */

static bool has_code(const struct af_error *e, const char *code)
{
	return e && strstr(af_error_msg(e), code);
}

/* DeleteSnapshot SID: one already gone is deleted; one another AMI still
 * maps is kept (*in_use).  0 or -1 + err. */
static int delete_snapshot(const struct ec2_client *ec2, const char *sid, bool dry_run,
			   bool *in_use, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	struct af_error *e = NULL;
	ec2_params_add(&p, "SnapshotId", sid);
	if (dry_run)
		ec2_params_add_bool(&p, "DryRun", true);
	int rc = ec2_call(ec2, "DeleteSnapshot", &p, NULL, &e);
	ec2_params_release(&p);
	*in_use = has_code(e, "InvalidSnapshot.InUse");
	if (rc < 0 && (has_code(e, "InvalidSnapshot.NotFound") || *in_use ||
		       (dry_run && has_code(e, "DryRunOperation"))))
		rc = 0;
	if (rc < 0) {
		*err = e;
		return -1;
	}
	af_error_free(e);
	return 0;
}

/* Whether DeregisterImage's answer says SID was deleted with the image. */
static bool deleted_with(xmlDoc *doc, const char *sid)
{
	xmlNode *set = doc ? awsxml_child(xmlDocGetRootElement(doc), "deleteSnapshotResultSet") : NULL;
	awsxml_foreach(item, set, "item") {
		_cleanup_free_ char *id = awsxml_text(item, "snapshotId");
		_cleanup_free_ char *code = awsxml_text(item, "returnCode");
		if (id && code && !strcmp(id, sid) && !strcmp(code, "success"))
			return true;
	}
	return false;
}

/* DeregisterImage with DeleteAssociatedSnapshots: one call, so that a kill
 * cannot leave the image gone and its snapshots behind.  An image already
 * gone (a re-run, or a retry whose first answer was lost) is done. */
static int deregister(const struct ec2_client *ec2, const char *id, bool dry_run, xmlDoc **doc,
		      struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	struct af_error *e = NULL;
	ec2_params_add(&p, "ImageId", id);
	ec2_params_add_bool(&p, "DeleteAssociatedSnapshots", true);
	if (dry_run)
		ec2_params_add_bool(&p, "DryRun", true);
	int rc = ec2_call(ec2, "DeregisterImage", &p, doc, &e);
	ec2_params_release(&p);
	if (rc < 0 && (has_code(e, "InvalidAMIID.NotFound") || has_code(e, "InvalidAMIID.Unavailable") ||
		       (dry_run && has_code(e, "DryRunOperation"))))
		rc = 0;
	if (rc < 0) {
		*err = e;
		return -1;
	}
	af_error_free(e);
	return 0;
}

static void log_image(const char *region, const struct purge_image *p, bool dry_run)
{
	fprintf(stderr, "amiforge ami purge: %s%s: deregistering %s (%s) created %s with", dry_run ? "dry run: " : "",
		region, p->img->image_id, p->img->name ? p->img->name : "", p->img->creation_date);
	size_t k = 0;
	for (size_t b = 0; b < p->img->n_bdm; b++)
		if (p->img->bdm[b].snapshot_id)
			fprintf(stderr, "%s %s", k++ ? "," : "", p->img->bdm[b].snapshot_id);
	fprintf(stderr, "%s: %s\n", k ? "" : " no snapshots", p->why_included);
	fflush(stderr);
}

static void fail_image(struct purge_image *p, const char *region, struct af_error *e)
{
	p->result = PURGE_FAILED;
	p->error = xasprintf("%s in %s: %s", p->img->image_id, region, af_error_msg(e));
	af_error_free(e);
	fprintf(stderr, "amiforge ami purge: %s; it stays for now: run the purge again\n", p->error);
}

static void purge_one_image(const struct ec2_client *ec2, const char *region, bool dry_run,
			    struct purge_image *p)
{
	struct af_error *e = NULL;
	_cleanup_xmldoc_ xmlDoc *doc = NULL;
	log_image(region, p, dry_run);
	if (deregister(ec2, p->img->image_id, dry_run, &doc, &e) < 0) {
		fail_image(p, region, e);
		return;
	}
	p->result = dry_run ? PURGE_DRY : PURGE_DONE;
	for (size_t b = 0; !dry_run && b < p->img->n_bdm; b++) {
		const char *sid = p->img->bdm[b].snapshot_id;
		bool in_use;
		if (!sid || deleted_with(doc, sid))
			continue;
		if (delete_snapshot(ec2, sid, false, &in_use, &e) < 0) {
			af_error_wrap(&e, "snapshot %s of the deregistered image", sid);
			fail_image(p, region, e);
			return;
		}
		if (in_use)
			fprintf(stderr, "amiforge ami purge: %s: snapshot %s of %s kept: another AMI maps it\n",
				region, sid, p->img->image_id);
	}
}

static void purge_one_snapshot(const struct ec2_client *ec2, const char *region, bool dry_run,
			       struct purge_snap *s)
{
	struct af_error *e = NULL;
	bool in_use;
	fprintf(stderr, "amiforge ami purge: %s%s: deleting orphan snapshot %s started %s: %s\n",
		dry_run ? "dry run: " : "", region, s->snap->snapshot_id, s->snap->start_time,
		s->why_included);
	fflush(stderr);
	if (delete_snapshot(ec2, s->snap->snapshot_id, dry_run, &in_use, &e) < 0) {
		s->result = PURGE_FAILED;
		s->error = xasprintf("%s in %s: %s", s->snap->snapshot_id, region, af_error_msg(e));
		af_error_free(e);
		fprintf(stderr, "amiforge ami purge: %s; it stays for now: run the purge again\n", s->error);
		return;
	}
	s->result = dry_run ? PURGE_DRY : PURGE_DONE;
}

size_t purge_apply(const struct ec2_client *ec2, const struct purge_opts *o, bool dry_run,
		   struct purge_region *r)
{
	size_t failed = 0;
	(void)o;
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i].purge) {
			purge_one_image(ec2, r->region, dry_run, &r->v[i]);
			failed += r->v[i].result == PURGE_FAILED;
		}
	for (size_t i = 0; i < r->n_s; i++)
		if (r->s[i].purge) {
			purge_one_snapshot(ec2, r->region, dry_run, &r->s[i]);
			failed += r->s[i].result == PURGE_FAILED;
		}
	return failed;
}
