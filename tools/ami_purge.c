/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami purge`: report, or with --yes delete, the caller's expired,
 * old or surplus AMIs that nothing uses, with their snapshots, and orphan
 * snapshots (the rules: ami_purge.h).  Each deletion is logged on stderr
 * before it is made, and each is idempotent (an image or snapshot already
 * gone counts as deleted), so a purge killed midway and run again deletes
 * nothing twice.  A region whose scan fails deletes nothing; a failed
 * deletion is named and the others still proceed (exit 1). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/exitcodes.h"
#include "amiforge/mem.h"
#include "ami_purge.h"

static const char purge_usage[] =
	"usage: amiforge ami purge [--region R... | --all-regions] [--expired] [--name GLOB]\n"
	"         [--tag K=V]... [--keep-newest N] [--older-than SPAN] [--orphan-snapshots]\n"
	"         [--yes] [--json] [--dry-run] [--profile NAME]\n"
	"  without --yes, only the report: id, name, created, expiry, why included, why kept\n"
	"  --name GLOB, --tag K=V   the selection: the caller's AMIs matching all of them\n"
	"  --expired                include those whose amiforge:expires or deprecation time is past\n"
	"  --older-than SPAN        include those created before now - SPAN (90d, 2w, 3mo, +1 week)\n"
	"  --keep-newest N          keep the N newest of the selection (per region); include the rest\n"
	"  --orphan-snapshots       also the caller's snapshots made for an AMI that is gone, older\n"
	"                           than --older-than (default: a day)\n"
	"  --yes                    deregister the included AMIs not in use, deleting their snapshots\n"
	"  --dry-run                with --yes: EC2's DryRun, nothing changes\n"
	"  AMIs used by an instance or by a launch template's default or latest version are kept.\n";

enum {
	PURGE_OPT_EXPIRED = AMI_OPT_FIRST_OWN,
	PURGE_OPT_NAME,
	PURGE_OPT_TAG,
	PURGE_OPT_KEEP,
	PURGE_OPT_OLDER,
	PURGE_OPT_ORPHANS,
	PURGE_OPT_YES,
};

static const struct option purge_longopts[] = {
	AMI_COMMON_LONGOPTS,
	{ "expired", no_argument, NULL, PURGE_OPT_EXPIRED },
	{ "name", required_argument, NULL, PURGE_OPT_NAME },
	{ "tag", required_argument, NULL, PURGE_OPT_TAG },
	{ "keep-newest", required_argument, NULL, PURGE_OPT_KEEP },
	{ "older-than", required_argument, NULL, PURGE_OPT_OLDER },
	{ "orphan-snapshots", no_argument, NULL, PURGE_OPT_ORPHANS },
	{ "yes", no_argument, NULL, PURGE_OPT_YES },
	{ NULL, 0, NULL, 0 },
};

static int add_tag(struct purge_opts *o, char *arg)
{
	if (!*arg || *arg == '=')
		return -1;
	o->tags = xreallocarray(o->tags, o->n_tags + 1, sizeof(*o->tags));
	char *eq = strchr(arg, '=');
	if (eq)
		*eq = '\0';
	o->tags[o->n_tags++] = (struct aws_tag){ arg, eq && eq[1] ? eq + 1 : NULL };
	return 0;
}

static int keep_newest(struct purge_opts *o, const char *arg)
{
	char *end;
	errno = 0;
	long n = strtol(arg, &end, 10);
	if (errno || end == arg || *end || n < 0)
		return -1;
	o->keep_newest = n;
	return 0;
}

/* One option of purge's own: 0, or a usage error's exit code. */
static int own_option(void *opts, int opt, char *arg)
{
	struct purge_opts *o = opts;
	struct af_error *e = NULL;
	switch (opt) {
	case PURGE_OPT_EXPIRED: o->expired = true; return 0;
	case PURGE_OPT_NAME: o->name_glob = arg; return 0;
	case PURGE_OPT_ORPHANS: o->orphans = true; return 0;
	case PURGE_OPT_YES: o->yes = true; return 0;
	case PURGE_OPT_TAG:
		if (add_tag(o, arg) < 0)
			return ami_usage_error("purge", purge_usage, "--tag wants K=V, not '%s'", arg);
		return 0;
	case PURGE_OPT_KEEP:
		if (keep_newest(o, arg) < 0)
			return ami_usage_error("purge", purge_usage, "--keep-newest wants a count, not '%s'", arg);
		return 0;
	case PURGE_OPT_OLDER:
		if (when_parse_span(arg, &o->older, &e) < 0) {
			int rc = ami_usage_error("purge", purge_usage, "--older-than: %s", af_error_msg(e));
			af_error_free(e);
			return rc;
		}
		o->have_older = true;
		o->older_text = arg;
		return 0;
	default: return ami_usage_error("purge", purge_usage, "unknown option");
	}
}

static int parse_args(int argc, char **argv, struct ami_common *c, struct purge_opts *o)
{
	int first;
	int rc = ami_parse_options(argc, argv, purge_longopts, purge_usage, c, own_option, o, &first);
	if (rc)
		return rc;
	if (first < argc)
		return ami_usage_error("purge", purge_usage, "unexpected argument '%s'", argv[first]);
	if (c->n_regions && c->all_regions)
		return ami_usage_error("purge", purge_usage, "give --region or --all-regions, not both");
	if (!o->expired && !o->have_older && o->keep_newest < 0)
		return ami_usage_error("purge", purge_usage,
				       "a purge needs a reason: give --expired, --older-than or --keep-newest");
	if (c->dry_run && !o->yes)
		fprintf(stderr, "amiforge ami purge: --dry-run without --yes: a report changes nothing anyway\n");
	return 0;
}

/* ---- the report ---- */

static const char *result_text(enum purge_result r, bool purge, bool yes)
{
	switch (r) {
	case PURGE_DONE: return "deleted";
	case PURGE_DRY: return "would delete (dry run)";
	case PURGE_FAILED: return "failed";
	case PURGE_NONE: break;
	}
	return purge ? (yes ? "not reached" : "purge") : "keep";
}

static json_t *jstr(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *image_json(const struct purge_image *p, bool yes)
{
	char exp[32] = "";
	json_t *snaps = json_array();
	for (size_t b = 0; b < p->img->n_bdm; b++)
		if (p->img->bdm[b].snapshot_id)
			json_array_append_new(snaps, json_string(p->img->bdm[b].snapshot_id));
	if (p->expires)
		when_format(p->expires, exp);
	return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:b, s:o, s:o, s:b, s:s, s:o}", "id",
			 p->img->image_id, "name", jstr(p->img->name), "created", jstr(p->img->creation_date),
			 "expires", jstr(p->expires ? exp : NULL), "state", jstr(p->img->state), "snapshots",
			 snaps, "included", p->why_included != NULL, "why_included", jstr(p->why_included),
			 "why_kept", jstr(p->why_kept), "purge", p->purge, "result",
			 result_text(p->result, p->purge, yes), "error", jstr(p->error));
}

static json_t *snap_json(const struct purge_snap *s, bool yes)
{
	return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:b, s:s, s:o}", "id", s->snap->snapshot_id,
			 "description", jstr(s->snap->description), "started", jstr(s->snap->start_time),
			 "ami", jstr(s->ami), "why_included", jstr(s->why_included), "why_kept",
			 jstr(s->why_kept), "purge", s->purge, "result", result_text(s->result, s->purge, yes),
			 "error", jstr(s->error));
}

static void print_json(const struct purge_region *rs, size_t n, const struct purge_opts *o,
		       bool dry_run)
{
	char now[32];
	when_format(o->now, now);
	json_t *regions = json_array(), *failed = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *imgs = json_array(), *snaps = json_array();
		for (size_t k = 0; k < rs[i].n; k++) {
			json_array_append_new(imgs, image_json(&rs[i].v[k], o->yes));
			if (rs[i].v[k].result == PURGE_FAILED)
				json_array_append_new(failed, json_string(rs[i].v[k].img->image_id));
		}
		for (size_t k = 0; k < rs[i].n_s; k++) {
			json_array_append_new(snaps, snap_json(&rs[i].s[k], o->yes));
			if (rs[i].s[k].result == PURGE_FAILED)
				json_array_append_new(failed, json_string(rs[i].s[k].snap->snapshot_id));
		}
		if (rs[i].error)
			json_array_append_new(failed, json_string(rs[i].region));
		json_array_append_new(regions, json_pack("{s:s, s:o, s:o, s:o}", "region", rs[i].region,
							 "error", jstr(rs[i].error), "images", imgs,
							 "snapshots", snaps));
	}
	_cleanup_json_ json_t *doc = json_pack("{s:s, s:b, s:b, s:o, s:o}", "now", now, "yes", o->yes,
					       "dry_run", dry_run, "regions", regions, "failed", failed);
	json_dumpf(doc, stdout, JSON_INDENT(2));
	putchar('\n');
}

#define COLS 8
struct table {
	char *(*cell)[COLS];
	size_t n;
};

static void table_add(struct table *t, const char *const v[COLS])
{
	t->cell = xreallocarray(t->cell, t->n + 1, sizeof(*t->cell));
	for (size_t i = 0; i < COLS; i++)
		t->cell[t->n][i] = xstrdup(v[i] ? v[i] : "-");
	t->n++;
}

static void table_print(struct table *t)
{
	size_t w[COLS] = { 0 };
	for (size_t r = 0; r < t->n; r++)
		for (size_t i = 0; i < COLS; i++)
			if (strlen(t->cell[r][i]) > w[i])
				w[i] = strlen(t->cell[r][i]);
	for (size_t r = 0; r < t->n; r++) {
		for (size_t i = 0; i < COLS - 1; i++)
			printf("%-*s  ", (int)w[i], t->cell[r][i]);
		printf("%s\n", t->cell[r][COLS - 1]);
		for (size_t i = 0; i < COLS; i++)
			free(t->cell[r][i]);
	}
	free(t->cell);
}

static void table_region(struct table *t, const struct purge_region *r, bool yes)
{
	for (size_t k = 0; k < r->n; k++) {
		const struct purge_image *p = &r->v[k];
		char exp[32] = "";
		if (p->expires)
			when_format(p->expires, exp);
		const char *row[COLS] = { r->region, p->img->image_id, p->img->name, p->img->creation_date,
					  p->expires ? exp : NULL, result_text(p->result, p->purge, yes),
					  p->why_included, p->why_kept };
		table_add(t, row);
	}
	for (size_t k = 0; k < r->n_s; k++) {
		const struct purge_snap *s = &r->s[k];
		_cleanup_free_ char *name = xasprintf("(orphan snapshot%s%s)", s->ami ? " of " : "",
						      s->ami ? s->ami : "");
		const char *row[COLS] = { r->region, s->snap->snapshot_id, name, s->snap->start_time, NULL,
					  result_text(s->result, s->purge, yes), s->why_included, s->why_kept };
		table_add(t, row);
	}
}

static void print_human(const struct purge_region *rs, size_t n, const struct purge_opts *o,
			bool dry_run)
{
	static const char *const head[COLS] = { "REGION", "ID", "NAME", "CREATED", "EXPIRES", "ACTION",
						"WHY INCLUDED", "WHY KEPT" };
	struct table t = { 0 };
	size_t purge = 0, kept = 0, done = 0, failed = 0;
	table_add(&t, head);
	for (size_t i = 0; i < n; i++) {
		table_region(&t, &rs[i], o->yes);
		for (size_t k = 0; k < rs[i].n + rs[i].n_s; k++) {
			bool p = k < rs[i].n ? rs[i].v[k].purge : rs[i].s[k - rs[i].n].purge;
			enum purge_result res = k < rs[i].n ? rs[i].v[k].result : rs[i].s[k - rs[i].n].result;
			purge += p;
			kept += !p;
			done += res == PURGE_DONE || res == PURGE_DRY;
			failed += res == PURGE_FAILED;
		}
	}
	table_print(&t);
	for (size_t i = 0; i < n; i++)
		if (rs[i].error)
			printf("%s: not scanned (%s): nothing deleted there\n", rs[i].region, rs[i].error);
	if (!o->yes)
		printf("%zu to purge, %zu kept; nothing was changed: run again with --yes to delete them\n",
		       purge, kept);
	else
		printf("%s %zu of %zu, %zu failed, %zu kept\n", dry_run ? "dry run: would delete" : "deleted",
		       done, purge, failed, kept);
}

/* ---- main ---- */

static int region_failed(struct purge_region *r, struct af_error *e)
{
	r->exit_code = ami_exit_code(e);
	r->error = xstrdup(af_error_msg(e));
	fprintf(stderr, "amiforge ami purge: %s: %s; nothing was deleted in %s: fix that and run again\n",
		r->region, r->error, r->region);
	af_error_free(e);
	return r->exit_code;
}

static int run_region(const struct ami_common *c, const struct purge_opts *o, struct purge_region *r)
{
	struct ami_region ar;
	struct af_error *e = NULL;
	if (ami_region_open(c, r->region, &ar, &e) < 0)
		return region_failed(r, e);
	if (purge_scan(&ar.ec2, o, r, &e) < 0) {
		ami_region_close(&ar);
		return region_failed(r, e);
	}
	size_t failed = o->yes ? purge_apply(&ar.ec2, o, c->dry_run, r) : 0;
	ami_region_close(&ar);
	return failed ? EXIT_STAGE_FAILED : EXIT_OK;
}

static int purge_run(const struct ami_common *c, struct purge_opts *o)
{
	char **names = NULL;
	size_t n = 0;
	struct af_error *e = NULL;
	if (ami_regions(c, &names, &n, &e) < 0) {
		int rc = ami_exit_code(e);
		fprintf(stderr, "amiforge ami purge: %s\n", af_error_msg(e));
		af_error_free(e);
		return rc;
	}
	struct purge_region *rs = xcalloc(n ? n : 1, sizeof(*rs));
	int rc = EXIT_OK;
	for (size_t i = 0; i < n; i++) {
		rs[i].region = xstrdup(names[i]);
		int r = run_region(c, o, &rs[i]);
		if (!rc)
			rc = r;
	}
	if (c->json)
		print_json(rs, n, o, c->dry_run);
	else
		print_human(rs, n, o, c->dry_run);
	for (size_t i = 0; i < n; i++)
		purge_region_release(&rs[i]);
	free(rs);
	ami_regions_free(names, n);
	return rc;
}

int ami_purge_main(int argc, char **argv)
{
	struct ami_common c = { 0 };
	struct purge_opts o = { .keep_newest = -1, .now = time(NULL) };
	int rc = parse_args(argc, argv, &c, &o);
	if (rc == 0) {
		if (o.have_older)
			o.cutoff = purge_cutoff(o.now, &o.older);
		rc = purge_run(&c, &o);
	} else if (rc == AMI_PARSE_HELP) {
		rc = EXIT_OK;
	}
	free(o.tags);
	ami_common_release(&c);
	return rc;
}
