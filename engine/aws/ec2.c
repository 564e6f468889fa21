/* SPDX-License-Identifier: Apache-2.0 */
/* The EC2 Query API client (include/amiforge/aws/ec2.h has the contract). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/tree.h>

#include "amiforge/aws/awsconfig.h"
#include "amiforge/aws/awsxml.h"
#include "amiforge/aws/ec2.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/request.h"
#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

void ec2_client_init(struct ec2_client *c, const char *region, struct aws_creds_chain *creds,
		     const struct http_options *opts)
{
	c->region = xstrdup(region);
	c->endpoint = aws_endpoint_url("ec2", region, NULL);
	c->creds = creds;
	c->opts = opts;
}

void ec2_client_release(struct ec2_client *c)
{
	if (!c)
		return;
	free(c->region);
	free(c->endpoint);
	memset(c, 0, sizeof(*c));
}

/* ---- request encoding ---------------------------------------------------- */

void ec2_params_add(struct ec2_params *p, const char *name, const char *value)
{
	if (!value)
		return;
	if (p->n == p->alloc) {
		p->alloc = p->alloc ? 2 * p->alloc : 16;
		p->v = xreallocarray(p->v, p->alloc, sizeof(*p->v));
	}
	p->v[p->n].name = xstrdup(name);
	p->v[p->n].value = xstrdup(value);
	p->n++;
}

void ec2_params_addf(struct ec2_params *p, const char *value, const char *name_fmt, ...)
{
	if (!value)
		return;
	va_list ap;
	va_start(ap, name_fmt);
	char *name = xvasprintf(name_fmt, ap);
	va_end(ap);
	ec2_params_add(p, name, value);
	free(name);
}

void ec2_params_add_bool(struct ec2_params *p, const char *name, bool value)
{
	ec2_params_add(p, name, value ? "true" : "false");
}

void ec2_params_add_int(struct ec2_params *p, const char *name, int64_t value)
{
	char buf[24];
	snprintf(buf, sizeof(buf), "%lld", (long long)value);
	ec2_params_add(p, name, buf);
}

void ec2_params_add_list(struct ec2_params *p, const char *prefix, const char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		ec2_params_addf(p, v[i], "%s.%zu", prefix, i + 1);
}

void ec2_params_add_tags(struct ec2_params *p, const char *prefix, const struct aws_tag *tags,
			 size_t n, bool omit_null)
{
	for (size_t i = 0; i < n; i++) {
		ec2_params_addf(p, tags[i].key, "%s.%zu.Key", prefix, i + 1);
		if (tags[i].value || !omit_null)
			ec2_params_addf(p, tags[i].value ? tags[i].value : "", "%s.%zu.Value",
					prefix, i + 1);
	}
}

void ec2_params_add_tag_spec(struct ec2_params *p, const char *resource_type,
			     const struct aws_tag *tags, size_t n)
{
	if (n == 0)
		return;
	ec2_params_add(p, "TagSpecification.1.ResourceType", resource_type);
	ec2_params_add_tags(p, "TagSpecification.1.Tag", tags, n, false);
}

void ec2_params_add_filters(struct ec2_params *p, const struct ec2_filter *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ec2_params_addf(p, f[i].name, "Filter.%zu.Name", i + 1);
		for (size_t j = 0; j < f[i].n_values; j++)
			ec2_params_addf(p, f[i].values[j], "Filter.%zu.Value.%zu", i + 1, j + 1);
	}
}

static void ec2_encode_pair(struct strbuf *sb, const char *name, const char *value)
{
	_cleanup_free_ char *k = sigv4_uri_encode(name, false);
	_cleanup_free_ char *v = sigv4_uri_encode(value, false);
	strbuf_addf(sb, "&%s=%s", k, v);
}

char *ec2_params_encode(const struct ec2_params *p, const char *action)
{
	struct strbuf sb = STRBUF_INIT;
	_cleanup_free_ char *a = sigv4_uri_encode(action, false);
	strbuf_addf(&sb, "Action=%s&Version=%s", a, EC2_API_VERSION);
	for (size_t i = 0; p && i < p->n; i++)
		ec2_encode_pair(&sb, p->v[i].name, p->v[i].value);
	return strbuf_detach(&sb);
}

void ec2_params_release(struct ec2_params *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].name);
		free(p->v[i].value);
	}
	free(p->v);
	memset(p, 0, sizeof(*p));
}

/* ---- sending ----------------------------------------------------------------- */

int ec2_parse_error(const char *body, size_t len, char **code, char **message, char **request_id)
{
	_cleanup_error_ struct af_error *e = NULL;
	_cleanup_xmldoc_ xmlDoc *doc = awsxml_parse(body, len, "ec2", &e);
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!root || strcmp((const char *)root->name, "Response") != 0)
		return -1;
	xmlNode *error = awsxml_path(root, "Errors", "Error", NULL);
	if (!error)
		return -1;
	*code = awsxml_text(error, "Code");
	*message = awsxml_text(error, "Message");
	/* EC2 spells it RequestID here (botocore EC2QueryParser), RequestId elsewhere. */
	*request_id = awsxml_text(root, "RequestID");
	if (!*request_id)
		*request_id = awsxml_text(root, "RequestId");
	return 0;
}

int ec2_call(const struct ec2_client *c, const char *action, const struct ec2_params *p,
	     xmlDoc **doc, struct af_error **err)
{
	_cleanup_free_ char *body = ec2_params_encode(p, action);
	_cleanup_free_ char *what = xasprintf("ec2 %s", action);
	_cleanup_free_ char *url = xasprintf("%s/", c->endpoint);
	const struct sigv4_header headers[] = {
		{ "Content-Type", "application/x-www-form-urlencoded; charset=utf-8" },
	};
	const struct aws_signer sign = { .creds = c->creds, .region = c->region, .service = "ec2" };
	const struct http_request req = {
		.action = what, .method = "POST", .url = url, .headers = headers,
		.n_headers = ARRAY_SIZE(headers), .body = body, .body_len = strlen(body),
		.opts = c->opts,
	};
	struct http_response resp;
	int r = aws_request_do(&sign, &req, &resp, err);
	if (r == 0 && doc) {
		*doc = awsxml_parse(resp.body, resp.body_len, what, err);
		if (!*doc)
			r = -1;
	}
	http_response_release(&resp);
	return r;
}

int ec2_call_paged(const struct ec2_client *c, const char *action, const struct ec2_params *p,
		   int (*page)(xmlDoc *doc, void *data, struct af_error **err), void *data,
		   struct af_error **err)
{
	_cleanup_free_ char *token = NULL;
	for (int n = 0;; n++) {
		struct ec2_params q = EC2_PARAMS_INIT;
		for (size_t i = 0; p && i < p->n; i++)
			ec2_params_add(&q, p->v[i].name, p->v[i].value);
		ec2_params_add(&q, "NextToken", token);
		_cleanup_xmldoc_ xmlDoc *doc = NULL;
		int r = ec2_call(c, action, &q, &doc, err);
		ec2_params_release(&q);
		if (r < 0)
			return -1;
		if (page(doc, data, err) < 0)
			return -1;
		free(token);
		token = awsxml_text(xmlDocGetRootElement(doc), "nextToken");
		if (!token || !*token)
			return 0;
		if (n > 100000)
			return af_error_set(err, 0, "ec2 %s: more than 100000 pages; the NextToken "
					    "never ends", action);
	}
}

/* ---- result parsing ---------------------------------------------------------- */

static void ec2_parse_tags(const xmlNode *parent, struct ec2_tag_list *t)
{
	xmlNode *set = awsxml_child(parent, "tagSet");
	awsxml_foreach(item, set, "item") {
		t->v = xreallocarray(t->v, t->n + 1, sizeof(*t->v));
		t->v[t->n].key = awsxml_text(item, "key");
		t->v[t->n].value = awsxml_text(item, "value");
		if (!t->v[t->n].key)
			t->v[t->n].key = xstrdup("");
		if (!t->v[t->n].value)
			t->v[t->n].value = xstrdup("");
		t->n++;
	}
}

static void ec2_tags_release(struct ec2_tag_list *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].key);
		free(t->v[i].value);
	}
	free(t->v);
}

static int ec2_expect_root(xmlDoc *doc, const char *action, struct af_error **err)
{
	xmlNode *root = xmlDocGetRootElement(doc);
	_cleanup_free_ char *want = xasprintf("%sResponse", action);
	if (!root || strcmp((const char *)root->name, want) != 0)
		return af_error_set(err, 0, "ec2 %s: unexpected response <%s>", action,
				    root ? (const char *)root->name : "");
	return 0;
}

static void ec2_parse_image(const xmlNode *n, struct ec2_image *img)
{
	img->image_id = awsxml_text(n, "imageId");
	img->name = awsxml_text(n, "name");
	img->state = awsxml_text(n, "imageState");
	img->owner_id = awsxml_text(n, "imageOwnerId");
	img->architecture = awsxml_text(n, "architecture");
	img->virtualization_type = awsxml_text(n, "virtualizationType");
	img->root_device_type = awsxml_text(n, "rootDeviceType");
	img->root_device_name = awsxml_text(n, "rootDeviceName");
	img->description = awsxml_text(n, "description");
	img->creation_date = awsxml_text(n, "creationDate");
	img->image_location = awsxml_text(n, "imageLocation");
	img->kernel_id = awsxml_text(n, "kernelId");
	img->ramdisk_id = awsxml_text(n, "ramdiskId");
	img->boot_mode = awsxml_text(n, "bootMode");
	img->deprecation_time = awsxml_text(n, "deprecationTime");
	img->ena_support = awsxml_bool(n, "enaSupport");
	img->is_public = awsxml_bool(n, "isPublic");
	xmlNode *reason = awsxml_child(n, "stateReason");
	if (reason) {
		_cleanup_free_ char *code = awsxml_text(reason, "code");
		_cleanup_free_ char *msg = awsxml_text(reason, "message");
		img->state_reason = xasprintf("%s: %s", code ? code : "", msg ? msg : "");
	}
	awsxml_foreach(item, awsxml_child(n, "blockDeviceMapping"), "item") {
		img->bdm = xreallocarray(img->bdm, img->n_bdm + 1, sizeof(*img->bdm));
		struct ec2_block_mapping *b = &img->bdm[img->n_bdm++];
		xmlNode *ebs = awsxml_child(item, "ebs");
		b->device_name = awsxml_text(item, "deviceName");
		b->snapshot_id = awsxml_text(ebs, "snapshotId");
		b->volume_type = awsxml_text(ebs, "volumeType");
		b->volume_size = awsxml_int(ebs, "volumeSize", 0);
		b->delete_on_termination = awsxml_bool(ebs, "deleteOnTermination");
	}
	ec2_parse_tags(n, &img->tags);
}

int ec2_parse_images(xmlDoc *doc, struct ec2_image_list *out, struct af_error **err)
{
	if (ec2_expect_root(doc, "DescribeImages", err) < 0)
		return -1;
	awsxml_foreach(item, awsxml_child(xmlDocGetRootElement(doc), "imagesSet"), "item") {
		out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
		memset(&out->v[out->n], 0, sizeof(*out->v));
		ec2_parse_image(item, &out->v[out->n++]);
	}
	return 0;
}

void ec2_image_list_release(struct ec2_image_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		struct ec2_image *m = &l->v[i];
		char *fields[] = { m->image_id, m->name, m->state, m->owner_id, m->architecture,
				   m->virtualization_type, m->root_device_type, m->root_device_name,
				   m->description, m->creation_date, m->image_location, m->kernel_id,
				   m->ramdisk_id, m->boot_mode, m->deprecation_time, m->state_reason };
		for (size_t f = 0; f < ARRAY_SIZE(fields); f++)
			free(fields[f]);
		for (size_t b = 0; b < m->n_bdm; b++) {
			free(m->bdm[b].device_name);
			free(m->bdm[b].snapshot_id);
			free(m->bdm[b].volume_type);
		}
		free(m->bdm);
		ec2_tags_release(&m->tags);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static void ec2_parse_snapshot(const xmlNode *n, struct ec2_snapshot *s)
{
	s->snapshot_id = awsxml_text(n, "snapshotId");
	s->volume_id = awsxml_text(n, "volumeId");
	s->state = awsxml_text(n, "status");
	s->progress = awsxml_text(n, "progress");
	s->start_time = awsxml_text(n, "startTime");
	s->description = awsxml_text(n, "description");
	s->owner_id = awsxml_text(n, "ownerId");
	s->state_message = awsxml_text(n, "statusMessage");
	s->volume_size = awsxml_int(n, "volumeSize", 0);
	s->encrypted = awsxml_bool(n, "encrypted");
	ec2_parse_tags(n, &s->tags);
}

int ec2_parse_snapshots(xmlDoc *doc, struct ec2_snapshot_list *out, struct af_error **err)
{
	if (ec2_expect_root(doc, "DescribeSnapshots", err) < 0)
		return -1;
	awsxml_foreach(item, awsxml_child(xmlDocGetRootElement(doc), "snapshotSet"), "item") {
		out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
		memset(&out->v[out->n], 0, sizeof(*out->v));
		ec2_parse_snapshot(item, &out->v[out->n++]);
	}
	return 0;
}

void ec2_snapshot_list_release(struct ec2_snapshot_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		struct ec2_snapshot *s = &l->v[i];
		char *fields[] = { s->snapshot_id, s->volume_id, s->state, s->progress, s->start_time,
				   s->description, s->owner_id, s->state_message };
		for (size_t f = 0; f < ARRAY_SIZE(fields); f++)
			free(fields[f]);
		ec2_tags_release(&s->tags);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int ec2_parse_instances(xmlDoc *doc, struct ec2_instance_list *out, struct af_error **err)
{
	if (ec2_expect_root(doc, "DescribeInstances", err) < 0)
		return -1;
	awsxml_foreach(res, awsxml_child(xmlDocGetRootElement(doc), "reservationSet"), "item") {
		awsxml_foreach(item, awsxml_child(res, "instancesSet"), "item") {
			out->v = xreallocarray(out->v, out->n + 1, sizeof(*out->v));
			struct ec2_instance *i = memset(&out->v[out->n++], 0, sizeof(*out->v));
			i->instance_id = awsxml_text(item, "instanceId");
			i->image_id = awsxml_text(item, "imageId");
			i->state = awsxml_text(awsxml_child(item, "instanceState"), "name");
			i->instance_type = awsxml_text(item, "instanceType");
			i->availability_zone = awsxml_text(awsxml_child(item, "placement"),
							   "availabilityZone");
			ec2_parse_tags(item, &i->tags);
		}
	}
	return 0;
}

void ec2_instance_list_release(struct ec2_instance_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++) {
		struct ec2_instance *x = &l->v[i];
		free(x->instance_id);
		free(x->image_id);
		free(x->state);
		free(x->instance_type);
		free(x->availability_zone);
		ec2_tags_release(&x->tags);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* ---- calls ------------------------------------------------------------------- */

/* Calls ACTION and returns the text of the response's child NAME in *out. */
static int ec2_call_text(const struct ec2_client *c, const char *action, const struct ec2_params *p,
			 const char *name, char **out, struct af_error **err)
{
	_cleanup_xmldoc_ xmlDoc *doc = NULL;
	if (ec2_call(c, action, p, &doc, err) < 0 || ec2_expect_root(doc, action, err) < 0)
		return -1;
	char *v = awsxml_text(xmlDocGetRootElement(doc), name);
	if (!v || !*v) {
		free(v);
		return af_error_set(err, 0, "ec2 %s: the response has no <%s>", action, name);
	}
	*out = v;
	return 0;
}

static int ec2_call_simple(const struct ec2_client *c, const char *action, struct ec2_params *p,
			   struct af_error **err)
{
	int r = ec2_call(c, action, p, NULL, err);
	ec2_params_release(p);
	return r;
}

static void ec2_params_add_tri(struct ec2_params *p, const char *name, int v)
{
	if (v >= 0)
		ec2_params_add_bool(p, name, v > 0);
}

static void ec2_params_add_bdm(struct ec2_params *p, const struct ec2_block_device *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t k = i + 1;
		char name[64];
		ec2_params_addf(p, b[i].device_name, "BlockDeviceMapping.%zu.DeviceName", k);
		ec2_params_addf(p, b[i].virtual_name, "BlockDeviceMapping.%zu.VirtualName", k);
		if (b[i].no_device)
			ec2_params_addf(p, "", "BlockDeviceMapping.%zu.NoDevice", k);
		ec2_params_addf(p, b[i].snapshot_id, "BlockDeviceMapping.%zu.Ebs.SnapshotId", k);
		ec2_params_addf(p, b[i].volume_type, "BlockDeviceMapping.%zu.Ebs.VolumeType", k);
		ec2_params_addf(p, b[i].kms_key_id, "BlockDeviceMapping.%zu.Ebs.KmsKeyId", k);
		const struct { const char *field; int64_t v; } ints[] = {
			{ "VolumeSize", b[i].volume_size }, { "Iops", b[i].iops },
			{ "Throughput", b[i].throughput },
		};
		for (size_t j = 0; j < ARRAY_SIZE(ints); j++) {
			if (ints[j].v <= 0)
				continue;
			snprintf(name, sizeof(name), "BlockDeviceMapping.%zu.Ebs.%s", k, ints[j].field);
			ec2_params_add_int(p, name, ints[j].v);
		}
		snprintf(name, sizeof(name), "BlockDeviceMapping.%zu.Ebs.DeleteOnTermination", k);
		ec2_params_add_tri(p, name, b[i].delete_on_termination);
		snprintf(name, sizeof(name), "BlockDeviceMapping.%zu.Ebs.Encrypted", k);
		ec2_params_add_tri(p, name, b[i].encrypted);
	}
}

int ec2_register_image(const struct ec2_client *c, const struct ec2_register_image *r,
		       char **image_id, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "Name", r->name);
	ec2_params_add(&p, "Description", r->description);
	ec2_params_add(&p, "Architecture", r->architecture);
	ec2_params_add(&p, "ImageLocation", r->image_location);
	ec2_params_add(&p, "RootDeviceName", r->root_device_name);
	ec2_params_add(&p, "VirtualizationType", r->virtualization_type);
	ec2_params_add(&p, "KernelId", r->kernel_id);
	ec2_params_add(&p, "RamdiskId", r->ramdisk_id);
	ec2_params_add(&p, "SriovNetSupport", r->sriov_net_support);
	ec2_params_add(&p, "BootMode", r->boot_mode);
	ec2_params_add(&p, "TpmSupport", r->tpm_support);
	ec2_params_add(&p, "ImdsSupport", r->imds_support);
	ec2_params_add(&p, "UefiData", r->uefi_data);
	ec2_params_add_tri(&p, "EnaSupport", r->ena_support);
	ec2_params_add_bdm(&p, r->bdm, r->n_bdm);
	ec2_params_add_tag_spec(&p, "image", r->tags, r->n_tags);
	if (r->dry_run)
		ec2_params_add_bool(&p, "DryRun", true);
	char *id = NULL;
	struct af_error *e = NULL;
	int rc = ec2_call_text(c, "RegisterImage", &p, "imageId", &id, &e);
	ec2_params_release(&p);
	if (rc < 0 && r->dry_run && e && strstr(af_error_msg(e), "DryRunOperation")) {
		/* AWS answers a permitted dry run with this error code. */
		af_error_free(e);
		*image_id = NULL;
		return 0;
	}
	if (rc < 0) {
		if (err && !*err)
			*err = e;
		else
			af_error_free(e);
		return -1;
	}
	*image_id = id;
	return 0;
}

static int ec2_images_page(xmlDoc *doc, void *data, struct af_error **err)
{
	return ec2_parse_images(doc, data, err);
}

int ec2_describe_images(const struct ec2_client *c, const struct ec2_image_query *q,
			struct ec2_image_list *out, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	struct ec2_image_list list = { 0 };
	ec2_params_add_list(&p, "ImageId", q->image_ids, q->n_image_ids);
	ec2_params_add_list(&p, "Owner", q->owners, q->n_owners);
	ec2_params_add_list(&p, "ExecutableBy", q->executable_by, q->n_executable_by);
	ec2_params_add_filters(&p, q->filters, q->n_filters);
	if (q->include_deprecated)
		ec2_params_add_bool(&p, "IncludeDeprecated", true);
	if (q->max_results > 0)
		ec2_params_add_int(&p, "MaxResults", q->max_results);
	int r = ec2_call_paged(c, "DescribeImages", &p, ec2_images_page, &list, err);
	ec2_params_release(&p);
	if (r < 0) {
		ec2_image_list_release(&list);
		return -1;
	}
	*out = list;
	return 0;
}

int ec2_deregister_image(const struct ec2_client *c, const char *image_id, bool delete_snapshots,
			 struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "ImageId", image_id);
	if (delete_snapshots)
		ec2_params_add_bool(&p, "DeleteAssociatedSnapshots", true);
	return ec2_call_simple(c, "DeregisterImage", &p, err);
}

int ec2_create_tags(const struct ec2_client *c, const char *const *resource_ids, size_t n_ids,
		    const struct aws_tag *tags, size_t n_tags, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add_list(&p, "ResourceId", resource_ids, n_ids);
	ec2_params_add_tags(&p, "Tag", tags, n_tags, false);
	return ec2_call_simple(c, "CreateTags", &p, err);
}

int ec2_delete_tags(const struct ec2_client *c, const char *const *resource_ids, size_t n_ids,
		    const struct aws_tag *tags, size_t n_tags, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add_list(&p, "ResourceId", resource_ids, n_ids);
	ec2_params_add_tags(&p, "Tag", tags, n_tags, true);
	return ec2_call_simple(c, "DeleteTags", &p, err);
}

int ec2_modify_launch_permission(const struct ec2_client *c, const char *image_id, bool add,
				 const char *const *user_ids, size_t n_users, bool group_all,
				 struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	const char *op = add ? "Add" : "Remove";
	size_t k = 0;
	ec2_params_add(&p, "ImageId", image_id);
	for (size_t i = 0; i < n_users; i++)
		ec2_params_addf(&p, user_ids[i], "LaunchPermission.%s.%zu.UserId", op, ++k);
	if (group_all)
		ec2_params_addf(&p, "all", "LaunchPermission.%s.%zu.Group", op, ++k);
	if (k == 0) {
		ec2_params_release(&p);
		return af_error_set(err, 0, "ec2 ModifyImageAttribute %s: no launch permission given",
				    image_id);
	}
	return ec2_call_simple(c, "ModifyImageAttribute", &p, err);
}

int ec2_modify_image_description(const struct ec2_client *c, const char *image_id,
				 const char *description, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "ImageId", image_id);
	ec2_params_add(&p, "Description.Value", description);
	return ec2_call_simple(c, "ModifyImageAttribute", &p, err);
}

static int ec2_image_attribute_doc(const struct ec2_client *c, const char *image_id,
				   const char *attribute, xmlDoc **doc, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "ImageId", image_id);
	ec2_params_add(&p, "Attribute", attribute);
	int r = ec2_call(c, "DescribeImageAttribute", &p, doc, err);
	ec2_params_release(&p);
	if (r == 0 && ec2_expect_root(*doc, "DescribeImageAttribute", err) < 0) {
		xmlFreeDoc(*doc);
		return -1;
	}
	return r;
}

int ec2_describe_launch_permission(const struct ec2_client *c, const char *image_id,
				   char ***user_ids, bool *group_all, struct af_error **err)
{
	_cleanup_xmldoc_ xmlDoc *doc = NULL;
	if (ec2_image_attribute_doc(c, image_id, "launchPermission", &doc, err) < 0)
		return -1;
	char **users = xcalloc(1, sizeof(char *));
	size_t n = 0;
	bool all = false;
	awsxml_foreach(item, awsxml_child(xmlDocGetRootElement(doc), "launchPermission"), "item") {
		char *u = awsxml_text(item, "userId");
		_cleanup_free_ char *g = awsxml_text(item, "group");
		if (g && strcmp(g, "all") == 0)
			all = true;
		if (u) {
			users = xreallocarray(users, n + 2, sizeof(char *));
			users[n++] = u;
			users[n] = NULL;
		}
	}
	*user_ids = users;
	*group_all = all;
	return 0;
}

int ec2_describe_image_attribute(const struct ec2_client *c, const char *image_id,
				 const char *attribute, char **value, struct af_error **err)
{
	_cleanup_xmldoc_ xmlDoc *doc = NULL;
	if (ec2_image_attribute_doc(c, image_id, attribute, &doc, err) < 0)
		return -1;
	*value = awsxml_text(awsxml_child(xmlDocGetRootElement(doc), attribute), "value");
	return 0;
}

int ec2_copy_image(const struct ec2_client *c, const struct ec2_copy_image *r, char **image_id,
		   struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "SourceRegion", r->source_region);
	ec2_params_add(&p, "SourceImageId", r->source_image_id);
	ec2_params_add(&p, "Name", r->name);
	ec2_params_add(&p, "Description", r->description);
	ec2_params_add(&p, "ClientToken", r->client_token);
	ec2_params_add(&p, "KmsKeyId", r->kms_key_id);
	ec2_params_add_tri(&p, "Encrypted", r->encrypted);
	if (r->copy_image_tags)
		ec2_params_add_bool(&p, "CopyImageTags", true);
	ec2_params_add_tag_spec(&p, "image", r->tags, r->n_tags);
	int rc = ec2_call_text(c, "CopyImage", &p, "imageId", image_id, err);
	ec2_params_release(&p);
	return rc;
}

int ec2_enable_image_deprecation(const struct ec2_client *c, const char *image_id, time_t when,
				 struct af_error **err)
{
	struct tm tm;
	char at[32];
	if (!gmtime_r(&when, &tm) || !strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return af_error_set(err, 0, "ec2 EnableImageDeprecation %s: time %lld out of range",
				    image_id, (long long)when);
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "ImageId", image_id);
	ec2_params_add(&p, "DeprecateAt", at);
	return ec2_call_simple(c, "EnableImageDeprecation", &p, err);
}

int ec2_create_image(const struct ec2_client *c, const struct ec2_create_image *r,
		     char **image_id, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "InstanceId", r->instance_id);
	ec2_params_add(&p, "Name", r->name);
	ec2_params_add(&p, "Description", r->description);
	if (r->no_reboot)
		ec2_params_add_bool(&p, "NoReboot", true);
	ec2_params_add_bdm(&p, r->bdm, r->n_bdm);
	if (r->n_tags) {
		ec2_params_add(&p, "TagSpecification.1.ResourceType", "image");
		ec2_params_add_tags(&p, "TagSpecification.1.Tag", r->tags, r->n_tags, false);
		ec2_params_add(&p, "TagSpecification.2.ResourceType", "snapshot");
		ec2_params_add_tags(&p, "TagSpecification.2.Tag", r->tags, r->n_tags, false);
	}
	int rc = ec2_call_text(c, "CreateImage", &p, "imageId", image_id, err);
	ec2_params_release(&p);
	return rc;
}

int ec2_create_snapshot(const struct ec2_client *c, const char *volume_id, const char *description,
			const struct aws_tag *tags, size_t n_tags, char **snapshot_id,
			struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "VolumeId", volume_id);
	ec2_params_add(&p, "Description", description);
	ec2_params_add_tag_spec(&p, "snapshot", tags, n_tags);
	int rc = ec2_call_text(c, "CreateSnapshot", &p, "snapshotId", snapshot_id, err);
	ec2_params_release(&p);
	return rc;
}

static int ec2_snapshots_page(xmlDoc *doc, void *data, struct af_error **err)
{
	return ec2_parse_snapshots(doc, data, err);
}

int ec2_describe_snapshots(const struct ec2_client *c, const struct ec2_snapshot_query *q,
			   struct ec2_snapshot_list *out, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	struct ec2_snapshot_list list = { 0 };
	ec2_params_add_list(&p, "SnapshotId", q->snapshot_ids, q->n_snapshot_ids);
	ec2_params_add_list(&p, "Owner", q->owners, q->n_owners);
	ec2_params_add_filters(&p, q->filters, q->n_filters);
	if (q->max_results > 0)
		ec2_params_add_int(&p, "MaxResults", q->max_results);
	int r = ec2_call_paged(c, "DescribeSnapshots", &p, ec2_snapshots_page, &list, err);
	ec2_params_release(&p);
	if (r < 0) {
		ec2_snapshot_list_release(&list);
		return -1;
	}
	*out = list;
	return 0;
}

int ec2_delete_snapshot(const struct ec2_client *c, const char *snapshot_id, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	ec2_params_add(&p, "SnapshotId", snapshot_id);
	return ec2_call_simple(c, "DeleteSnapshot", &p, err);
}

int ec2_describe_regions(const struct ec2_client *c, char ***regions, struct af_error **err)
{
	_cleanup_xmldoc_ xmlDoc *doc = NULL;
	if (ec2_call(c, "DescribeRegions", NULL, &doc, err) < 0 ||
	    ec2_expect_root(doc, "DescribeRegions", err) < 0)
		return -1;
	char **v = xcalloc(1, sizeof(char *));
	size_t n = 0;
	awsxml_foreach(item, awsxml_child(xmlDocGetRootElement(doc), "regionInfo"), "item") {
		char *name = awsxml_text(item, "regionName");
		if (!name)
			continue;
		v = xreallocarray(v, n + 2, sizeof(char *));
		v[n++] = name;
		v[n] = NULL;
	}
	*regions = v;
	return 0;
}

static int ec2_instances_page(xmlDoc *doc, void *data, struct af_error **err)
{
	return ec2_parse_instances(doc, data, err);
}

int ec2_describe_instances(const struct ec2_client *c, const char *const *instance_ids,
			   size_t n_ids, const struct ec2_filter *filters, size_t n_filters,
			   struct ec2_instance_list *out, struct af_error **err)
{
	struct ec2_params p = EC2_PARAMS_INIT;
	struct ec2_instance_list list = { 0 };
	ec2_params_add_list(&p, "InstanceId", instance_ids, n_ids);
	ec2_params_add_filters(&p, filters, n_filters);
	int r = ec2_call_paged(c, "DescribeInstances", &p, ec2_instances_page, &list, err);
	ec2_params_release(&p);
	if (r < 0) {
		ec2_instance_list_release(&list);
		return -1;
	}
	*out = list;
	return 0;
}
