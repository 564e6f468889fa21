/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami list`: the caller's AMIs (Owners=self) in one or more
 * regions, with their expiry (the amiforge:expires tag, else the
 * deprecation time), snapshots and sharing (DescribeImageAttribute
 * launchPermission, one call per image).  A region that fails is named and
 * the others are still listed (exit 1). */
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

static const char list_usage[] =
	"usage: amiforge ami list [--region R... | --all-regions] [--name GLOB] [--tag K=V]...\n"
	"                         [--expired] [--json] [--profile NAME]\n"
	"  the AMIs the caller owns: name, id, creation date, expiry (the amiforge:expires tag,\n"
	"  else the deprecation time), state, snapshots, sharing (public, account ids)\n"
	"  --name GLOB   names matching GLOB (* and ?)\n"
	"  --tag K=V     tagged K=V (repeatable: all of them); K= or K: any value\n"
	"  --expired     only those whose expiry has passed\n";

enum { LIST_OPT_NAME = AMI_OPT_FIRST_OWN, LIST_OPT_TAG, LIST_OPT_EXPIRED };

struct list_opts {
	struct ami_common c;
	const char *name;
	const char **tags;   /* "K=V", borrowed */
	size_t n_tags;
	bool expired;
};

/* One image as listed. */
struct list_row {
	const char *region;
	const struct ec2_image *img;
	char *expires;       /* owned, "" when none */
	char **users;        /* owned strv */
	bool is_public;
	bool sharing_known;
};

/* "2026-12-31T10:00:00Z" or AWS's "2026-12-31T10:00:00.000Z": the time, or
 * 0 when unreadable. */
static time_t list_parse_time(const char *s)
{
	if (!s || !*s)
		return 0;
	char buf[32];
	snprintf(buf, sizeof(buf), "%.19sZ", s);
	struct af_error *e = NULL;
	time_t t = 0;
	if (when_parse_date(buf, &t, &e) < 0) {
		af_error_free(e);
		return 0;
	}
	return t;
}

/* The image's expiry as shown: the tag, else the deprecation time. */
static char *list_expiry(const struct ec2_image *img)
{
	for (size_t i = 0; i < img->tags.n; i++)
		if (!strcmp(img->tags.v[i].key, AMI_EXPIRES_TAG) && img->tags.v[i].value)
			return xstrdup(img->tags.v[i].value);
	time_t t = list_parse_time(img->deprecation_time);
	if (!t)
		return xstrdup("");
	char buf[32];
	when_format(t, buf);
	return xstrdup(buf);
}

static bool list_is_expired(const char *expires)
{
	time_t t = list_parse_time(expires);
	return t && t <= time(NULL);
}

/* Tag filters: "K=V" -> tag:K = V; "K" or "K=" -> tag-key = K. */
static void list_filters(const struct list_opts *o, struct ec2_filter *f, size_t *n, char **keep)
{
	*n = 0;
	if (o->name)
		f[(*n)++] = (struct ec2_filter){ "name", &o->name, 1 };
	for (size_t i = 0; i < o->n_tags; i++) {
		const char *eq = strchr(o->tags[i], '=');
		if (!eq || !eq[1]) {
			size_t len = eq ? (size_t)(eq - o->tags[i]) : strlen(o->tags[i]);
			keep[2 * i] = xstrndup(o->tags[i], len);
			f[(*n)++] = (struct ec2_filter){ "tag-key", (const char *const *)&keep[2 * i], 1 };
			continue;
		}
		keep[2 * i] = xasprintf("tag:%.*s", (int)(eq - o->tags[i]), o->tags[i]);
		keep[2 * i + 1] = xstrdup(eq + 1);
		f[(*n)++] = (struct ec2_filter){ keep[2 * i], (const char *const *)&keep[2 * i + 1], 1 };
	}
}

static int list_region_images(const struct list_opts *o, struct ami_region *r,
			      struct ec2_image_list *out, struct af_error **err)
{
	static const char *const self[] = { "self" };
	size_t nk = 2 * o->n_tags + 1;
	char **keep = xcalloc(nk, sizeof(*keep));
	struct ec2_filter *f = xcalloc(o->n_tags + 1, sizeof(*f));
	size_t nf;
	list_filters(o, f, &nf, keep);
	struct ec2_image_query q = { .owners = self, .n_owners = 1, .filters = f, .n_filters = nf,
				     .include_deprecated = true, .max_results = 500 };
	int rc = ec2_describe_images(&r->ec2, &q, out, err);
	for (size_t i = 0; i < nk; i++)
		free(keep[i]);
	free(keep);
	free(f);
	return rc;
}

static void list_row_release(struct list_row *row)
{
	free(row->expires);
	if (row->users)
		for (char **u = row->users; *u; u++)
			free(*u);
	free(row->users);
}

static json_t *list_row_json(const struct list_row *row)
{
	const struct ec2_image *img = row->img;
	json_t *snaps = json_array(), *users = json_array();
	for (size_t i = 0; i < img->n_bdm; i++)
		if (img->bdm[i].snapshot_id)
			json_array_append_new(snaps, json_string(img->bdm[i].snapshot_id));
	for (char **u = row->users; u && *u; u++)
		json_array_append_new(users, json_string(*u));
	json_t *tags = json_object();
	for (size_t i = 0; i < img->tags.n; i++)
		json_object_set_new(tags, img->tags.v[i].key, json_string(img->tags.v[i].value ?: ""));
	return json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:o, s:{s:b, s:o, s:b}, s:s?, s:o}",
			 "region", row->region, "image_id", img->image_id, "name", img->name,
			 "creation_date", img->creation_date, "expires",
			 row->expires[0] ? row->expires : NULL, "state", img->state, "snapshots", snaps,
			 "sharing", "public", row->is_public, "accounts", users, "known",
			 row->sharing_known, "root_device_type", img->root_device_type, "tags", tags);
}

static char *list_sharing_text(const struct list_row *row)
{
	if (!row->sharing_known)
		return xstrdup("?");
	struct strbuf sb = STRBUF_INIT;
	if (row->is_public)
		strbuf_addstr(&sb, "public");
	for (char **u = row->users; u && *u; u++)
		strbuf_addf(&sb, "%s%s", sb.len ? "," : "", *u);
	return sb.len ? strbuf_detach(&sb) : (strbuf_release(&sb), xstrdup("-"));
}

static char *list_snapshots_text(const struct ec2_image *img)
{
	struct strbuf sb = STRBUF_INIT;
	for (size_t i = 0; i < img->n_bdm; i++)
		if (img->bdm[i].snapshot_id)
			strbuf_addf(&sb, "%s%s", sb.len ? "," : "", img->bdm[i].snapshot_id);
	return sb.len ? strbuf_detach(&sb) : (strbuf_release(&sb), xstrdup("-"));
}

static void list_print_table(const struct list_row *rows, size_t n)
{
	int wn = 4, wr = 6;
	for (size_t i = 0; i < n; i++) {
		int l = (int)strlen(rows[i].img->name ?: "-");
		wn = l > wn ? l : wn;
		l = (int)strlen(rows[i].region);
		wr = l > wr ? l : wr;
	}
	printf("%-*s  %-21s  %-*s  %-20s  %-20s  %-12s  %s  %s\n", wr, "REGION", "ID", wn, "NAME",
	       "CREATED", "EXPIRES", "STATE", "SNAPSHOTS", "SHARING");
	for (size_t i = 0; i < n; i++) {
		const struct ec2_image *img = rows[i].img;
		_cleanup_free_ char *snaps = list_snapshots_text(img);
		_cleanup_free_ char *share = list_sharing_text(&rows[i]);
		char created[32] = "-";
		time_t t = list_parse_time(img->creation_date);
		if (t)
			when_format(t, created);
		printf("%-*s  %-21s  %-*s  %-20s  %-20s  %-12s  %s  %s\n", wr, rows[i].region,
		       img->image_id, wn, img->name ?: "-", created,
		       rows[i].expires[0] ? rows[i].expires : "-", img->state ?: "-", snaps, share);
	}
}

struct list_result {
	struct list_row *rows;
	size_t n;
	struct ec2_image_list *lists; /* one per region */
	size_t n_lists;
	int failures;
};

/* The rows of one region's image list; a sharing lookup that fails is
 * reported and the row shown with "?" (counted as a failure). */
static void list_add_rows(const struct list_opts *o, struct ami_region *r, const char *region,
			  const struct ec2_image_list *l, struct list_result *res)
{
	for (size_t i = 0; i < l->n; i++) {
		struct list_row row = { .region = region, .img = &l->v[i] };
		row.expires = list_expiry(&l->v[i]);
		if (o->expired && !list_is_expired(row.expires)) {
			free(row.expires);
			continue;
		}
		struct af_error *e = NULL;
		if (ec2_describe_launch_permission(&r->ec2, l->v[i].image_id, &row.users,
						   &row.is_public, &e) == 0) {
			row.sharing_known = true;
		} else {
			fprintf(stderr, "amiforge ami list: %s in %s: cannot read its launch permissions: %s\n",
				l->v[i].image_id, region, af_error_msg(e));
			af_error_free(e);
			row.is_public = l->v[i].is_public;
			res->failures++;
		}
		res->rows = xreallocarray(res->rows, res->n + 1, sizeof(*res->rows));
		res->rows[res->n++] = row;
	}
}

static int list_region(const struct list_opts *o, const char *region, struct list_result *res,
		       int *worst)
{
	struct ami_region r;
	struct af_error *e = NULL;
	struct ec2_image_list *l = &res->lists[res->n_lists];
	if (ami_region_open(&o->c, region, &r, &e) < 0 || list_region_images(o, &r, l, &e) < 0) {
		fprintf(stderr, "amiforge ami list: region %s: %s\n", region, af_error_msg(e));
		int code = ami_exit_code(e);
		*worst = code > *worst ? code : *worst;
		af_error_free(e);
		ami_region_close(&r);
		return -1;
	}
	res->n_lists++;
	list_add_rows(o, &r, region, l, res);
	ami_region_close(&r);
	return 0;
}

static int list_option(void *arg, int opt, char *val)
{
	struct list_opts *o = arg;
	switch (opt) {
	case LIST_OPT_NAME: o->name = val; return 0;
	case LIST_OPT_TAG:
		if (!*val || *val == '=')
			return ami_usage_error("list", list_usage, "--tag wants K=V, not '%s'", val);
		o->tags = xreallocarray(o->tags, o->n_tags + 1, sizeof(*o->tags));
		o->tags[o->n_tags++] = val;
		return 0;
	case LIST_OPT_EXPIRED: o->expired = true; return 0;
	default: return ami_usage_error("list", list_usage, "unknown option");
	}
}

static int list_parse(int argc, char **argv, struct list_opts *o)
{
	static const struct option opts[] = {
		AMI_COMMON_LONGOPTS,
		{ "name", required_argument, NULL, LIST_OPT_NAME },
		{ "tag", required_argument, NULL, LIST_OPT_TAG },
		{ "expired", no_argument, NULL, LIST_OPT_EXPIRED },
		{ NULL, 0, NULL, 0 },
	};
	int first;
	int rc = ami_parse_options(argc, argv, opts, list_usage, &o->c, list_option, o, &first);
	if (rc)
		return rc;
	if (first < argc)
		return ami_usage_error("list", list_usage, "unexpected argument '%s'", argv[first]);
	if (o->c.all_regions && o->c.n_regions)
		return ami_usage_error("list", list_usage, "give --region or --all-regions, not both");
	if (o->c.dry_run)
		return ami_usage_error("list", list_usage, "list changes nothing: --dry-run is not for it");
	return 0;
}

static int list_cmp(const void *a, const void *b)
{
	const struct list_row *x = a, *y = b;
	int c = strcmp(x->region, y->region);
	return c ? c : strcmp(y->img->creation_date ?: "", x->img->creation_date ?: "");
}

static int list_run(const struct list_opts *o)
{
	char **regions = NULL;
	size_t n_regions = 0;
	struct af_error *e = NULL;
	if (ami_regions(&o->c, &regions, &n_regions, &e) < 0) {
		fprintf(stderr, "amiforge ami list: %s\n", af_error_msg(e));
		int code = ami_exit_code(e);
		af_error_free(e);
		return code;
	}
	struct list_result res = { .lists = xcalloc(n_regions + 1, sizeof(*res.lists)) };
	int worst = EXIT_OK;
	for (size_t i = 0; i < n_regions; i++)
		if (list_region(o, regions[i], &res, &worst) < 0 && worst == EXIT_OK)
			worst = EXIT_STAGE_FAILED;
	if (res.failures && worst == EXIT_OK)
		worst = EXIT_STAGE_FAILED;
	if (res.n)
		qsort(res.rows, res.n, sizeof(*res.rows), list_cmp);
	if (o->c.json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < res.n; i++)
			json_array_append_new(arr, list_row_json(&res.rows[i]));
		json_dumpf(arr, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(arr);
	} else if (res.n) {
		list_print_table(res.rows, res.n);
	} else {
		fprintf(stderr, "no AMIs owned by this account match in %zu region(s)\n", n_regions);
	}
	for (size_t i = 0; i < res.n; i++)
		list_row_release(&res.rows[i]);
	free(res.rows);
	for (size_t i = 0; i < res.n_lists; i++)
		ec2_image_list_release(&res.lists[i]);
	free(res.lists);
	ami_regions_free(regions, n_regions);
	return worst;
}

int ami_list_main(int argc, char **argv)
{
	struct list_opts o = { 0 };
	int rc = list_parse(argc, argv, &o);
	if (rc == 0)
		rc = list_run(&o);
	else if (rc == AMI_PARSE_HELP)
		rc = EXIT_OK;
	free(o.tags);
	ami_common_release(&o.c);
	return rc;
}
