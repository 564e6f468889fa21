/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amiforge/aws/awsconfig.h"
#include "amiforge/build_remote.h"
#include "amiforge/checkpoint.h"
#include "amiforge/cleanup.h"
#include "amiforge/cli.h"
#include "amiforge/facts.h"
#include "amiforge/journal.h"
#include "amiforge/log.h"
#include "amiforge/plan.h"
#include "amiforge/recipe.h"
#include "amiforge/params.h"
#include "amiforge/redact.h"
#include "amiforge/remote.h"
#include "amiforge/runner.h"
#include "amiforge/schema.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#include "version.h" /* generated: AMIFORGE_VERSION, AMIFORGE_GIT_DESC */

static const char usage_text[] =
	"usage: amiforge [-v|-q] COMMAND [ARGS]\n"
	"\n"
	"  build RECIPE [--state DIR] [--cache DIR] [--set VAR=VALUE]... [--from ID] [--fresh] [--json]\n"
	"        [--remote s3://BUCKET/PREFIX [--remote-required] [--remote-wait DURATION]] [--outputs-env FILE]\n"
	"                              run the recipe's stages, resuming where the last build stopped\n"
	"                              (--remote: there or on any machine sharing the store)\n"
	"  plan RECIPE [--state DIR] [--set VAR=VALUE]... [--fresh] [--remote s3://BUCKET/PREFIX] [--json]\n"
	"                              one line per stage: INDEX ID STATUS KEY12 (-v: and what it\n"
	"                              will do; --json: \"will\")\n"
	"  validate RECIPE... [--set VAR=VALUE]...\n"
	"                              check recipes; every error as FILE:LINE:COLUMN: message\n"
	"                              (--set as for build, so file parameters are checked too:\n"
	"                              validate r.yaml --set BUNDLE_PRIVATE_KEY_FILE=/secrets/pk.pem)\n"
	"  status [--state DIR | RECIPE] [--remote s3://BUCKET/PREFIX] [--json]\n"
	"                              what the journal (with --remote: the store's) holds\n"
	"  clean [--state DIR | RECIPE] [--all]   drop checkpoints (--all: the whole state)\n"
	"  clean --remote s3://BUCKET/PREFIX --unused-for DURATION [--dry-run] [--region R]\n"
	"                              remove the store's checkpoints no build used for DURATION\n"
	"                              (30d, 12h), their stage records and the blocks only they name\n"
	"  clean --remote s3://BUCKET/PREFIX --check [--region R]\n"
	"                              check that every block a checkpoint names is there and intact\n"
	"  stages                      the stage types and their parameters\n"
	"  schema                      the recipe JSON Schema (2020-12), from the stage table\n"
	"  aws request METHOD URL [--service S] [--region R] [-H 'K: V']... [-d @FILE] [--dry-run]\n"
	"                              send (or show) one SigV4-signed request\n"
	"  boot-test IMAGE [--hvm|--pvgrub] [--uefi|--bios] [--user NAME] [--accel tcg|kvm] [--timeout S]\n"
	"                              boot in QEMU with a metadata service, ssh in, report\n"
	"  ami SUBCOMMAND ...          AMIs after the build: list, create, copy, share, expire,\n"
	"                              deregister, purge, convert (amiforge ami --help)\n"
	"  iam-policy (RECIPE... | --ami-commands) [--remote]\n"
	"                              the least-privilege IAM policy for what they call\n"
	"  unbundle MANIFEST --key PK.pem [--parts DIR] -o IMAGE\n"
	"                              an instance-store bundle back to a raw image\n"
	"  version, --version          print the version (and the git commit it was built from)\n"
	"\n"
	"build, plan, status and clean take --profile NAME and --region R for AWS (the stages', the\n"
	"remote store's): the same as AWS_PROFILE and AWS_REGION (a recipe's own region comes first).\n"
	"\n"
	"exit codes: 0 ok, 1 a stage failed, 2 usage, 65 recipe invalid, 69 tool or service\n"
	"unavailable, 77 not enough privilege, 130 interrupted\n";

int cli_usage_error(const char *who, const char *usage, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	/* It may quote an argument, and an argument may hold a credential. */
	_cleanup_free_ char *safe = redact_text(msg, NULL, 0);
	free(msg);
	fprintf(stderr, "%s: %s\n%s", who, safe, usage);
	return EXIT_USAGE;
}

#define usage_error(...) cli_usage_error("amiforge", usage_text, __VA_ARGS__)

/* Collects --set values into a growing array. */
struct sets {
	char **v;
	size_t n;
};

static void sets_add(struct sets *s, const char *val)
{
	s->v = xreallocarray(s->v, s->n + 2, sizeof(*s->v));
	s->v[s->n++] = xstrdup(val);
	s->v[s->n] = NULL;
}

static void sets_free(struct sets *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

enum { OPT_STATE = 256, OPT_CACHE, OPT_SET, OPT_FROM, OPT_FRESH, OPT_JSON, OPT_ALL, OPT_REMOTE,
       OPT_REMOTE_REQUIRED, OPT_REMOTE_WAIT };

/* clean --remote's (beside the shared enum: its own block of values). */
enum { OPT_UNUSED_FOR = 512, OPT_DRY_RUN, OPT_CHECK, OPT_REGION, OPT_PROFILE, OPT_OUTPUTS_ENV };

static const struct option build_options[] = {
	{ "state", required_argument, NULL, OPT_STATE },
	{ "cache", required_argument, NULL, OPT_CACHE },
	{ "set", required_argument, NULL, OPT_SET },
	{ "from", required_argument, NULL, OPT_FROM },
	{ "fresh", no_argument, NULL, OPT_FRESH },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "remote", required_argument, NULL, OPT_REMOTE },
	{ "remote-required", no_argument, NULL, OPT_REMOTE_REQUIRED },
	{ "remote-wait", required_argument, NULL, OPT_REMOTE_WAIT },
	{ "unused-for", required_argument, NULL, OPT_UNUSED_FOR },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "check", no_argument, NULL, OPT_CHECK },
	{ "region", required_argument, NULL, OPT_REGION },
	{ "profile", required_argument, NULL, OPT_PROFILE },
	{ "outputs-env", required_argument, NULL, OPT_OUTPUTS_ENV },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct cmd_args {
	struct build_opts build;
	struct sets sets;
	bool json, all;
	struct { const char *unused_for, *region; bool dry_run, check; } clean; /* clean --remote */
	const char *profile; /* --profile */
	bool verbose;        /* the global -v */
	char **rest;
	int n_rest;
};

/* Parses the options every command shares; `allowed` lists the ones this
 * command takes.  0 or an exit code. */
static int parse_args(int argc, char **argv, const char *allowed, struct cmd_args *a)
{
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "h", build_options, NULL)) != -1) {
		const char *name = NULL;
		for (const struct option *o = build_options; o->name; o++)
			if (o->val == c)
				name = o->name;
		if (c == 'h') {
			fputs(usage_text, stdout);
			return -1;
		}
		if (c == '?' || !name || !strstr(allowed, name))
			return usage_error("%s: unexpected option", argv[optind - 1]);
		switch (c) {
		case OPT_STATE: a->build.state_dir = optarg; break;
		case OPT_CACHE: a->build.cache_dir = optarg; break;
		case OPT_SET:
			if (!strchr(optarg, '='))
				return usage_error("--set '%s': expected VAR=VALUE", optarg);
			sets_add(&a->sets, optarg);
			break;
		case OPT_FROM: a->build.from = optarg; break;
		case OPT_FRESH: a->build.fresh = true; break;
		case OPT_JSON: a->json = true; break;
		case OPT_ALL: a->all = true; break;
		case OPT_REMOTE: a->build.remote = optarg; break;
		case OPT_REMOTE_REQUIRED: a->build.remote_required = true; break;
		case OPT_REMOTE_WAIT: {
			uint64_t secs;
			if (param_parse_duration(optarg, &secs) < 0)
				return usage_error("--remote-wait '%s': expected a duration (30s, 10m, 1h)", optarg);
			a->build.remote_wait = (double)secs;
			break;
		}
		case OPT_UNUSED_FOR: a->clean.unused_for = optarg; break;
		case OPT_DRY_RUN: a->clean.dry_run = true; break;
		case OPT_CHECK: a->clean.check = true; break;
		case OPT_REGION: a->clean.region = optarg; break;
		case OPT_PROFILE: a->profile = optarg; break;
		case OPT_OUTPUTS_ENV: a->build.outputs_env = optarg; break;
		}
	}
	a->rest = argv + optind;
	a->n_rest = argc - optind;
	a->build.sets = a->sets.v;
	a->build.n_sets = a->sets.n;
	return 0;
}

/* --profile and --region as the AWS layer reads them everywhere (the
 * credential chain, the region chain: a recipe's own region still comes
 * first), so that every stage and the remote store use them. */
static void aws_options_apply(const struct cmd_args *a)
{
	if (a->profile)
		setenv("AWS_PROFILE", a->profile, 1);
	if (a->clean.region)
		setenv("AWS_REGION", a->clean.region, 1);
}

static int print_diags(struct diag_list *d)
{
	/* recipe_load redacted them. */
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "%s\n", d->lines[i]);
	recipe_diags_release(d);
	return EXIT_RECIPE_INVALID;
}

static int cmd_build(struct cmd_args *a)
{
	if (a->n_rest != 1)
		return usage_error("%s", "build takes exactly one RECIPE");
	log_init(LOG_LEVEL_INFO, a->json);
	a->build.recipe = a->rest[0];
	return runner_build(&a->build);
}

static int cmd_validate(struct cmd_args *a)
{
	if (a->n_rest < 1)
		return usage_error("%s", "validate takes one or more RECIPE files");
	int rc = EXIT_OK;
	for (int i = 0; i < a->n_rest; i++) {
		struct diag_list d = { 0 };
		struct recipe *r = NULL;
		if (recipe_load(a->rest[i], a->sets.v, a->sets.n, &r, &d) < 0)
			rc = print_diags(&d);
		recipe_free(r);
	}
	return rc;
}

/* The region `plan` tells the stages: what a build would resolve, except
 * instance metadata (plan uses no network).  NULL when none is set. */
static char *plan_region(const char **profile)
{
	const struct aws_creds_opts opts = { .no_imds = true };
	const char *from = NULL;
	const char *name = aws_profile_name(&opts, &from);
	*profile = from ? name : NULL;
	char *region = NULL;
	_cleanup_error_ struct af_error *err = NULL;
	return aws_region_resolve(NULL, &opts, &region, NULL, &err) == 0 ? region : NULL;
}

/* What each stage will do, in words: its describe() sentence, else its
 * type's summary (caller frees each and the array).  Each hook sees the
 * facts the earlier stages' parameters fix, as a build would hand them on. */
static char **plan_describe(const struct recipe *r)
{
	size_t n_types;
	const struct fact_types types = { .all = registry_all(&n_types), .n = n_types };
	_cleanup_free_ struct fact_stage *fs = xcalloc(r->n_stages + 1, sizeof(*fs));
	for (size_t i = 0; i < r->n_stages; i++)
		fs[i] = (struct fact_stage){ r->stages[i].type, r->stages[i].params, r->stages[i].id };
	const char *profile = NULL;
	_cleanup_free_ char *region = plan_region(&profile);
	_cleanup_json_ json_t *facts = json_object();
	char **will = xcalloc(r->n_stages, sizeof(*will));
	for (size_t i = 0; i < r->n_stages; i++) {
		const struct stage_inst *s = &r->stages[i];
		const struct fact_plan plan = { .stages = fs, .upto = i, .types = &types };
		_cleanup_json_ json_t *known = json_object();
		const struct stage_describe d = { .params = s->params, .recipe_name = r->name, .arch = r->arch,
						  .recipe_dir = r->dir, .region = region, .profile = profile,
						  .plan = &plan, .facts = facts, .known = known };
		char *text = s->type->describe ? s->type->describe(&d) : NULL;
		will[i] = text ? text : xstrdup(s->type->summary);
		json_object_update(facts, known);
	}
	return will;
}

static void plan_describe_free(char **will, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(will[i]);
	free(will);
}

/* plan --json: the recipe's name (the AMI's, after expansion), then per
 * stage what it is ("does": the type's summary), what it will do with these
 * parameters ("will") and the parameters (after expansion; credentials
 * redacted). */
static void plan_print_json(const struct recipe *r, const struct plan *p, char *const *will)
{
	_cleanup_json_ json_t *stages = json_array();
	for (size_t i = 0; i < p->n; i++) {
		const struct stage_inst *s = &r->stages[i];
		json_array_append_new(stages, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:O}", "index", s->index,
							"id", s->id, "type", s->type->name, "status",
							p->stages[i].status == PLAN_DONE ? "done" : "run",
							"key", p->stages[i].key, "does", s->type->summary,
							"will", will[i], "params", s->params));
	}
	_cleanup_json_ json_t *o = json_pack("{s:s, s:s, s:s, s:O}", "recipe", r->path, "name", r->name,
					     "arch", r->arch, "stages", stages);
	redact_json(o);
	_cleanup_free_ char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	puts(text);
}

/* The text plan: "INDEX ID STATUS KEY12" (DESIGN §4); with -v each stage's
 * sentence follows on an indented line. */
static void plan_print_text(const struct recipe *r, const struct plan *p, char *const *will, bool verbose)
{
	for (size_t i = 0; i < p->n; i++) {
		printf("%d %s %s %.12s\n", r->stages[i].index, r->stages[i].id,
		       p->stages[i].status == PLAN_DONE ? "done" : "run", p->stages[i].key);
		if (!verbose)
			continue;
		_cleanup_free_ char *safe = redact_text(will[i], NULL, 0);
		_cleanup_free_ char *shown = str_printable(safe);
		printf("    %s\n", shown);
	}
}

static void plan_print(const struct recipe *r, const struct plan_input *in, const struct cmd_args *a)
{
	struct plan p;
	plan_make(r, in, &p);
	char **will = plan_describe(r);
	if (a->json)
		plan_print_json(r, &p, will);
	else
		plan_print_text(r, &p, will, a->verbose);
	plan_describe_free(will, r->n_stages);
	plan_release(&p);
}

static int plan_local(struct cmd_args *a, const struct recipe *r, const char *state)
{
	_cleanup_free_ char *ckpt = path_join(state, "checkpoints");
	_cleanup_error_ struct af_error *err = NULL;
	/* --fresh ignores the journal: it need not be readable. */
	struct journal_log *log = a->build.fresh ? NULL : journal_read(state, &err);
	if (!log && !a->build.fresh) {
		log_error("%s", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	const struct plan_input in = { .log = log, .ckpt_usable = plan_ckpt_local, .ckpt_arg = ckpt,
				       .image_here = true, .fresh = a->build.fresh, .from = -1 };
	plan_print(r, &in, a);
	journal_log_free(log);
	return EXIT_OK;
}

/* What a build with the same --remote would do: the store's journal and
 * stage records, local or remote checkpoints. */
static int plan_remote(struct cmd_args *a, const struct recipe *r, const char *state,
		       const char *url)
{
	_cleanup_error_ struct af_error *err = NULL;
	struct build_remote_view v;
	_cleanup_free_ char *ckpt = path_join(state, "checkpoints");
	if (build_remote_view_open(url, state, r->stem, r, &v, &err) < 0) {
		log_error("%s", af_error_msg(err));
		build_remote_view_close(&v);
		return EXIT_UNAVAILABLE;
	}
	struct build_remote_ckpts ckpts = { .br = v.br, .ckpt_dir = ckpt };
	const struct plan_input in = { .log = journal_get_log(v.j), .ckpt_usable = build_remote_ckpt_usable,
				       .ckpt_arg = &ckpts, .image_here = !v.foreign, .from = -1 };
	plan_print(r, &in, a);
	build_remote_view_close(&v);
	return EXIT_OK;
}

static int cmd_plan(struct cmd_args *a)
{
	if (a->n_rest != 1)
		return usage_error("%s", "plan takes exactly one RECIPE");
	struct diag_list d = { 0 };
	struct recipe *r = NULL;
	if (recipe_load(a->rest[0], a->sets.v, a->sets.n, &r, &d) < 0)
		return print_diags(&d);
	_cleanup_free_ char *state = runner_state_dir(a->build.state_dir, r->stem);
	const char *url = build_remote_url(a->build.remote);
	int rc = url && !a->build.fresh ? plan_remote(a, r, state, url) : plan_local(a, r, state);
	recipe_free(r);
	return rc;
}

/* status and clean take --state DIR or a RECIPE (whose default state they use). */
static char *state_from_args(struct cmd_args *a)
{
	if (a->build.state_dir)
		return xstrdup(a->build.state_dir);
	if (a->n_rest != 1)
		return NULL;
	struct diag_list d = { 0 };
	struct recipe *r = NULL;
	if (recipe_load(a->rest[0], a->sets.v, a->sets.n, &r, &d) < 0) {
		print_diags(&d);
		return NULL;
	}
	char *s = runner_state_dir(NULL, r->stem);
	recipe_free(r);
	return s;
}

/* ---- status: everything it prints from the journal or a recipe goes
 * through here: credentials redacted, control characters escaped. ---- */

static char *status_text(const char *s)
{
	_cleanup_free_ char *red = redact_text(s, NULL, 0);
	return str_printable(red);
}

/* A field of an event as printable text ("?" when the event lacks it). */
static char *status_field(const char *s)
{
	return status_text(s ? s : "?");
}

static void status_stage_line(const struct journal_event *ev)
{
	const char *st = ev->kind == JOURNAL_STAGE_DONE ? "done" :
			 ev->kind == JOURNAL_STAGE_FAIL ? "failed" : "started";
	_cleanup_free_ char *id = status_field(ev->stage.id);
	_cleanup_free_ char *key = status_field(ev->stage.key);
	printf("  %2d %-16s %-8s %.12s", ev->stage.index, id, st, key);
	if (ev->error) {
		_cleanup_free_ char *error = status_field(ev->error);
		printf("  %s", error);
	}
	putchar('\n');
}

/* ---- status: remote resources ---- */

/* Field names that could carry a secret: never printed, whatever a stage
 * journaled (resources must not hold secrets; this is a second line). */
static bool status_field_secret(const char *name)
{
	static const char *const words[] = { "secret", "token", "password", "private", "credential" };
	for (size_t i = 0; i < ARRAY_SIZE(words); i++)
		if (strcasestr(name, words[i]))
			return true;
	return false;
}

static void status_resource_line(const char *id, const json_t *res)
{
	_cleanup_free_ char *sid = status_text(id ? id : "?");
	printf("  %-16s", sid);
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)res, key, v) {
		if (status_field_secret(key))
			continue;
		_cleanup_free_ char *k = status_text(key);
		if (json_is_string(v)) {
			_cleanup_free_ char *text = status_text(json_string_value(v));
			printf(" %s=%s", k, text);
		} else if (json_is_integer(v)) {
			printf(" %s=%" JSON_INTEGER_FORMAT, k, json_integer_value(v));
		} else if (json_is_boolean(v)) {
			printf(" %s=%s", k, json_is_true(v) ? "true" : "false");
		} else if (json_is_array(v)) {
			printf(" %s=[%zu]", k, json_array_size(v));
		} else if (json_is_object(v)) {
			printf(" %s={%zu}", k, json_object_size(v));
		}
	}
	putchar('\n');
}

/* Every resource journaled since the last --fresh: what this state's builds
 * made remotely (a resumed build's AMI may come from an earlier attempt).
 * Progress records beyond STATUS_MAX_PER_STAGE per stage are counted. */
#define STATUS_MAX_PER_STAGE 20
static void status_resources(const struct journal_log *log)
{
	size_t n;
	_cleanup_free_ const struct journal_event **res = journal_resources(log, NULL, &n);
	_cleanup_json_ json_t *per_stage = json_object();
	for (size_t i = 0; i < n; i++) {
		const char *id = res[i]->stage.id ?: "?";
		json_int_t seen = json_integer_value(json_object_get(per_stage, id)) + 1;
		json_object_set_new(per_stage, id, json_integer(seen));
		if (i == 0)
			printf("remote resources:\n");
		if (seen <= STATUS_MAX_PER_STAGE)
			status_resource_line(id, res[i]->resource);
	}
	const char *id;
	json_t *count;
	json_object_foreach(per_stage, id, count) {
		if (json_integer_value(count) <= STATUS_MAX_PER_STAGE)
			continue;
		_cleanup_free_ char *sid = status_text(id);
		printf("  %-16s ... and %" JSON_INTEGER_FORMAT " more records\n", sid,
		       json_integer_value(count) - STATUS_MAX_PER_STAGE);
	}
	if (n == 0)
		printf("remote resources: none\n");
}

/* Prints what LOG holds; SHOWN names where it is, CKPT the local store. */
static void status_print(const struct journal_log *log, const char *where, const char *ckpt)
{
	_cleanup_free_ char *shown = status_text(where);
	if (journal_log_size(log) == 0) {
		printf("%s: no build has run here\n", shown);
		return;
	}
	struct journal_build last;
	journal_last_build(log, &last);
	/* A journal without a build_start (cut by hand) shows its first line's time. */
	const struct journal_event *bs = last.start ? last.start : journal_log_at(log, 0);
	_cleanup_free_ char *when = status_field(bs->time);
	_cleanup_free_ char *recipe = status_field(bs->recipe);
	printf("state: %s\nlast build: %s (recipe %s)\n", shown, when, recipe);
	for (size_t i = 0; i < last.n_stages; i++)
		status_stage_line(last.stages[i]);
	status_resources(log);
	char sz[32];
	_cleanup_free_ char *end_status = last.end ? status_field(last.end->status)
						   : xstrdup("running or killed");
	journal_build_release(&last);
	printf("result: %s\n", end_status);
	if (ckpt)
		printf("checkpoint store: %s\n", format_size(ckpt_store_bytes(ckpt), sz, sizeof(sz)));
}

/* Field names a resource must not show (status_field_secret) go. */
static json_t *status_json_resource(const json_t *r)
{
	json_t *out = json_object();
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)r, k, v)
		if (!status_field_secret(k))
			json_object_set(out, k, (json_t *)v);
	return out;
}

static json_t *status_json_stage(const struct journal_event *ev)
{
	const char *st = ev->kind == JOURNAL_STAGE_DONE ? "done" :
			 ev->kind == JOURNAL_STAGE_FAIL ? "failed" : "started";
	json_t *o = json_pack("{s:i, s:s?, s:s, s:s?, s:s?}", "index", ev->stage.index, "id",
			      ev->stage.id, "status", st, "key", ev->stage.key, "time", ev->time);
	if (ev->kind != JOURNAL_STAGE_START)
		json_object_set_new(o, "seconds", json_real(ev->seconds));
	if (ev->error)
		json_object_set_new(o, "error", json_string(ev->error));
	if (ev->outputs)
		json_object_set(o, "outputs", (json_t *)ev->outputs);
	return o;
}

/* status --json: the same as one object (credentials redacted). */
static void status_print_json(const struct journal_log *log, const char *where, const char *ckpt)
{
	_cleanup_json_ json_t *o = json_pack("{s:s, s:b}", "state", where, "built", journal_log_size(log) > 0);
	if (journal_log_size(log)) {
		struct journal_build last;
		journal_last_build(log, &last);
		const struct journal_event *bs = last.start ? last.start : journal_log_at(log, 0);
		json_t *stages = json_array(), *res = json_array();
		for (size_t i = 0; i < last.n_stages; i++)
			json_array_append_new(stages, status_json_stage(last.stages[i]));
		size_t n;
		_cleanup_free_ const struct journal_event **rv = journal_resources(log, NULL, &n);
		for (size_t i = 0; i < n; i++)
			json_array_append_new(res, json_pack("{s:s?, s:o}", "stage", rv[i]->stage.id,
							     "resource", status_json_resource(rv[i]->resource)));
		json_object_set_new(o, "last_build", json_pack("{s:s?, s:s?}", "time", bs->time, "recipe", bs->recipe));
		json_object_set_new(o, "stages", stages);
		json_object_set_new(o, "resources", res);
		json_object_set_new(o, "result", json_string(last.end && last.end->status ? last.end->status
										 : "running or killed"));
		journal_build_release(&last);
	}
	if (ckpt)
		json_object_set_new(o, "checkpoint_store_bytes", json_integer((json_int_t)ckpt_store_bytes(ckpt)));
	redact_json(o);
	_cleanup_free_ char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	puts(text);
}

/* status --remote: the store's journal of the state (named after the
 * recipe's file stem, or --state's last component). */
static int status_remote(const char *state, const char *url, bool json)
{
	_cleanup_free_ char *copy = xstrdup(state);
	const char *name = basename(copy);
	_cleanup_error_ struct af_error *err = NULL;
	struct build_remote_view v;
	if (build_remote_view_open(url, state, name, NULL, &v, &err) < 0) {
		log_error("%s", af_error_msg(err));
		build_remote_view_close(&v);
		return EXIT_UNAVAILABLE;
	}
	_cleanup_free_ char *where = xasprintf("%s (state %s)", url, name);
	(json ? status_print_json : status_print)(journal_get_log(v.j), where, NULL);
	build_remote_view_close(&v);
	return EXIT_OK;
}

static int cmd_status(struct cmd_args *a)
{
	_cleanup_free_ char *state = state_from_args(a);
	if (!state)
		return usage_error("%s", "status takes --state DIR or a RECIPE");
	if (a->build.remote)
		return status_remote(state, a->build.remote, a->json);
	_cleanup_error_ struct af_error *err = NULL;
	struct journal_log *log = journal_read(state, &err);
	if (!log) {
		log_error("%s", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	_cleanup_free_ char *ckpt = path_join(state, "checkpoints");
	(a->json ? status_print_json : status_print)(log, state, ckpt);
	journal_log_free(log);
	return EXIT_OK;
}

/* Every name the engine makes in STATE: clean --all removes these and then
 * STATE itself, and leaves anything else (a --state pointed at the wrong
 * directory must not cost its contents). */
static const char *const state_entries[] = {
	"journal", "disk.img", "disk.img.restore", "logs", "manifest.json", "root", "checkpoints",
	"bundle", "x509", "apt-lists", "bootloader-core.efi", "lock",
};

/* Removes the state's entries by fd (rm_tree_at: no shell, no link followed,
 * no other filesystem entered), then STATE if nothing else is left. */
static int clean_all(const char *state, struct af_error **err)
{
	_cleanup_fd_ int fd = open(state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return af_error_set(err, errno, "cannot open state directory '%s'", state);
	for (size_t i = 0; i < ARRAY_SIZE(state_entries); i++) {
		_cleanup_free_ char *shown = path_join(state, state_entries[i]);
		if (rm_tree_at(fd, state_entries[i], shown, err) < 0)
			return -1;
	}
	if (rmdir(state) == 0)
		return 0;
	if (errno != ENOTEMPTY && errno != EEXIST)
		return af_error_set(err, errno, "cannot remove '%s'", state);
	_cleanup_free_ char *shown = str_printable(state);
	log_warn("left '%s' in place: it holds files amiforge did not make; remove them yourself", shown);
	return 0;
}

/* clean --remote's options, checked before anything is sent: the store is
 * shared, so removing needs an explicit --unused-for (no implicit "remove
 * everything").  0 or an exit code. */
static int clean_remote_args(const struct cmd_args *a, uint64_t *unused_for)
{
	char *bucket = NULL, *prefix = NULL;
	_cleanup_error_ struct af_error *err = NULL;
	if (remote_parse_url(a->build.remote, &bucket, &prefix, &err) < 0)
		return usage_error("%s", af_error_msg(err));
	free(bucket);
	free(prefix);
	if (a->all || a->build.state_dir || a->n_rest)
		return usage_error("%s", "clean --remote cleans the store, not a state directory: it takes no RECIPE, --state or --all");
	if (a->clean.check)
		return a->clean.unused_for || a->clean.dry_run
			? usage_error("%s", "clean --remote --check only reads the store: it takes no --unused-for or --dry-run")
			: 0;
	if (!a->clean.unused_for)
		return usage_error("clean --remote %s removes only checkpoints no build used for a while: add --unused-for DURATION (e.g. --unused-for 30d), and --dry-run to see what would go",
				   a->build.remote);
	if (param_parse_duration(a->clean.unused_for, unused_for) < 0)
		return usage_error("--unused-for '%s': expected a duration (30d, 12h, 90m, 3600s)",
				   a->clean.unused_for);
	return 0;
}

/* clean --remote: garbage collection, or --check, of a shared store.  A
 * store that cannot be used at all is 69; a failure half way or an
 * inconsistent store, 1. */
static int clean_remote(struct cmd_args *a)
{
	struct remote_gc_opts o = { .dry_run = a->clean.dry_run };
	int rc = clean_remote_args(a, &o.unused_for);
	if (rc)
		return rc;
	struct remote r;
	_cleanup_error_ struct af_error *err = NULL;
	if (remote_open(&r, a->build.remote, a->clean.region, &err) < 0) {
		log_error("%s", af_error_msg(err));
		return EXIT_UNAVAILABLE;
	}
	if (a->clean.check) {
		struct remote_check_report rep;
		rc = remote_check(&r, true, &rep, &err);
	} else {
		struct remote_gc_report rep;
		rc = remote_gc(&r, &o, &rep, &err);
	}
	remote_close(&r);
	if (rc == 0)
		return EXIT_OK;
	_cleanup_free_ char *msg = str_printable(af_error_msg(err));
	log_error("%s", msg);
	return af_error_errno(err) == EHOSTUNREACH ? EXIT_UNAVAILABLE : EXIT_STAGE_FAILED;
}

static int cmd_clean(struct cmd_args *a)
{
	if (a->build.remote)
		return clean_remote(a);
	if (a->clean.unused_for || a->clean.dry_run || a->clean.check || a->clean.region)
		return usage_error("%s", "--unused-for, --dry-run, --check and --region go with clean --remote s3://BUCKET/PREFIX");
	_cleanup_free_ char *state = state_from_args(a);
	if (!state)
		return usage_error("%s", "clean takes --state DIR or a RECIPE");
	_cleanup_free_ char *shown = str_printable(state);
	if (access(state, F_OK) < 0) {
		printf("%s: nothing to clean\n", shown);
		return EXIT_OK;
	}
	_cleanup_error_ struct af_error *err = NULL;
	/* Holding the lock keeps a running build's state intact. */
	struct journal *j = journal_open(state, &err);
	if (!j) {
		log_error("%s", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	_cleanup_free_ char *ckpt = path_join(state, "checkpoints");
	struct stat st;
	int r = 0;
	if (a->all)
		r = clean_all(state, &err);
	else if (lstat(ckpt, &st) == 0 && !S_ISDIR(st.st_mode))
		/* ckpt_clean walks by path: never into a link planted there. */
		r = af_error_set(&err, ENOTDIR, "'%s' is not a directory (a symbolic link?); not "
				 "following it: remove it, or run clean --all", ckpt);
	else
		r = ckpt_clean(ckpt, &err);
	journal_close(j);
	if (r < 0) {
		_cleanup_free_ char *msg = str_printable(af_error_msg(err));
		log_error("%s", msg);
		return EXIT_STAGE_FAILED;
	}
	printf("%s: %s\n", shown, a->all ? "removed" : "checkpoints dropped");
	return EXIT_OK;
}

static void print_params(const struct param_spec *ps, int depth)
{
	for (; ps && ps->name; ps++) {
		printf("%*s%-20s %-9s %s%s%s%s%s\n", 4 + 2 * depth, "", ps->name,
		       param_type_name(ps->type), (ps->flags & PARAM_REQUIRED) ? "(required) " : "",
		       (ps->flags & PARAM_HOST_FILE) ? "(anywhere: absolute paths allowed) " : "",
		       ps->help ? ps->help : "", ps->defval ? "; default: " : "",
		       ps->defval ? ps->defval : "");
		if (ps->type == PT_ENUM && ps->choices) {
			printf("%*s%-20s one of:", 4 + 2 * depth, "", "");
			for (const char *const *c = ps->choices; *c; c++)
				printf(" %s", *c);
			putchar('\n');
		}
		if (ps->sub)
			print_params(ps->sub, depth + 1);
	}
}

static void print_needs(const struct fact_need *needs, bool *first)
{
	for (const struct fact_need *n = needs; n && n->facts; n++) {
		printf("%s%s", *first ? "" : ", ", n->facts);
		if (n->unless)
			printf(" (unless %s)", n->unless);
		*first = false;
	}
}

/* The facts a stage needs (its flags' and its own) and provides. */
static void print_facts(const struct stage_type *t)
{
	bool first = true;
	printf("  needs: ");
	print_needs(facts_implied(t->flags), &first);
	print_needs(t->needs, &first);
	printf("%s\n  provides: ", first ? "-" : "");
	for (const char *const *p = t->provides; p && *p; p++)
		printf("%s%s", p == t->provides ? "" : ", ", *p);
	printf("%s\n", t->provides && *t->provides ? "" : "-");
}

static int cmd_stages(struct cmd_args *a)
{
	size_t n;
	const struct stage_type *const *all = registry_all(&n);
	for (size_t i = 0; i < n; i++) {
		printf("%s: %s\n", all[i]->name, all[i]->summary ? all[i]->summary : "");
		print_facts(all[i]);
		print_params(all[i]->params, 0);
	}
	printf("\nevery stage also takes: id (string), timeout (duration), checkpoint (auto|always|never)\n");
	return EXIT_OK;
}

static int cmd_schema(struct cmd_args *a)
{
	if (a->n_rest)
		return usage_error("%s", "schema takes no arguments");
	_cleanup_free_ char *text = schema_recipe_text();
	fputs(text, stdout);
	return EXIT_OK;
}

static int cmd_version(struct cmd_args *a)
{
	/* The checkout's description says which commit this is built from. */
	if (*AMIFORGE_GIT_DESC)
		printf("amiforge %s (git %s)\n", AMIFORGE_VERSION, AMIFORGE_GIT_DESC);
	else
		printf("amiforge %s\n", AMIFORGE_VERSION);
	return EXIT_OK;
}

static const struct command {
	const char *name;
	int (*fn)(struct cmd_args *a);
	const char *options; /* long options it takes */
} commands[] = {
	{ "build", cmd_build, "state cache set from fresh json remote remote-required remote-wait region profile outputs-env" },
	{ "clean", cmd_clean, "state all set remote unused-for dry-run check region profile" },
	{ "plan", cmd_plan, "state set fresh remote json region profile" },
	{ "schema", cmd_schema, "" },
	{ "stages", cmd_stages, "" },
	{ "status", cmd_status, "state set remote json region profile" },
	{ "validate", cmd_validate, "set" },
	{ "version", cmd_version, "" },
};

int cli_main(int argc, char **argv, const struct cli_tool *tools, size_t n_tools)
{
	enum log_level level = LOG_LEVEL_INFO;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose"))
			level = LOG_LEVEL_DEBUG;
		else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"))
			level = LOG_LEVEL_WARN;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage_text, stdout);
			return EXIT_OK;
		} else if (!strcmp(argv[i], "--version")) {
			return cmd_version(NULL);
		} else {
			return usage_error("%s: unknown option", argv[i]);
		}
	}
	if (i >= argc)
		return usage_error("%s", "no command given");
	log_init(level, false);
	for (size_t c = 0; c < n_tools; c++)
		if (!strcmp(tools[c].name, argv[i]))
			return tools[c].run(argc - i, argv + i);
	for (size_t c = 0; c < ARRAY_SIZE(commands); c++) {
		if (strcmp(commands[c].name, argv[i]))
			continue;
		struct cmd_args a = { .verbose = level == LOG_LEVEL_DEBUG };
		int rc = parse_args(argc - i, argv + i, commands[c].options, &a);
		if (rc == 0) {
			if (a.json || level != LOG_LEVEL_INFO)
				log_init(level, a.json);
			aws_options_apply(&a);
			rc = commands[c].fn(&a);
		} else if (rc < 0) {
			rc = EXIT_OK;
		}
		sets_free(&a.sets);
		return rc;
	}
	return usage_error("'%s' is not an amiforge command", argv[i]);
}
