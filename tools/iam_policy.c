/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge iam-policy` (iam_policy.h). */
#include <getopt.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/exitcodes.h"
#include "amiforge/iam_policy.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/recipe.h"
#include "amiforge/stage.h"

#define IAM_MAX 16

struct iam_entry {
	const char *key;
	const char *actions[IAM_MAX];
};

/* What each caller can send (reachable calls, branches not taken included:
 * a policy must allow them).  Keys with nothing to send are absent. */
static const struct iam_entry iam_table[] = {
	{ "ami convert", { "ebs:CompleteSnapshot", "ebs:PutSnapshotBlock", "ebs:StartSnapshot", "ec2:CreateTags",
			   "ec2:DeleteSnapshot", "ec2:DescribeImages", "ec2:DescribeSnapshots", "ec2:RegisterImage",
			   "s3:GetObject", "s3:ListBucket" } },
	{ "ami copy", { "ec2:CopyImage", "ec2:CreateTags", "ec2:DescribeImageAttribute", "ec2:DescribeImages",
			"ec2:EnableImageDeprecation", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute" } },
	{ "ami create", { "ec2:CopyImage", "ec2:CreateImage", "ec2:CreateTags", "ec2:DescribeImages",
			  "ec2:EnableImageDeprecation" } },
	{ "ami deregister", { "ec2:DeleteSnapshot", "ec2:DeregisterImage", "ec2:DescribeImages", "s3:DeleteObject",
			      "s3:GetObject", "s3:ListBucket" } },
	{ "ami expire", { "ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeImages", "ec2:DisableImageDeprecation",
			  "ec2:EnableImageDeprecation" } },
	{ "ami list", { "ec2:DescribeImageAttribute", "ec2:DescribeImages", "ec2:DescribeRegions" } },
	{ "ami purge", { "ec2:DeleteSnapshot", "ec2:DeregisterImage", "ec2:DescribeImages", "ec2:DescribeInstances",
			 "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeRegions", "ec2:DescribeSnapshots" } },
	{ "ami share", { "ec2:DescribeImages" } },
	{ "register", { "ec2:CopyImage", "ec2:CreateTags", "ec2:DescribeImages", "ec2:EnableImageDeprecation",
			"ec2:ModifyImageAttribute", "ec2:RegisterImage" } },
	{ "remote", { "s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject" } },
	{ "snapshot", { "ebs:CompleteSnapshot", "ebs:GetSnapshotBlock", "ebs:ListSnapshotBlocks", "ebs:PutSnapshotBlock",
			"ebs:StartSnapshot", "ec2:DeleteSnapshot", "ec2:DescribeSnapshots" } },
	{ "upload", { "s3:CreateBucket", "s3:PutObject", "s3:PutObjectAcl" } },
};

/* The ami subcommands (ami.h). */
static const char *const iam_ami_subs[] = { "convert", "copy", "create", "deregister",
					    "expire", "list", "purge", "share" };

const char *const *iam_actions(const char *key)
{
	static const char *const none[] = { NULL };
	for (size_t i = 0; i < ARRAY_SIZE(iam_table); i++)
		if (!strcmp(iam_table[i].key, key))
			return iam_table[i].actions;
	return none;
}

/* ---- the policy ---- */

static void iam_add(json_t *set, const char *key)
{
	for (const char *const *a = iam_actions(key); *a; a++)
		json_object_set_new(set, *a, json_true());
}

static int iam_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action":
 * [sorted], "Resource": "*"}]} on stdout. */
static void iam_print(json_t *set)
{
	size_t n = json_object_size(set), k = 0;
	const char **v = xcalloc(n + 1, sizeof(*v));
	const char *name;
	json_t *val;
	json_object_foreach(set, name, val)
		v[k++] = name;
	qsort(v, n, sizeof(*v), iam_cmp);
	json_t *actions = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(actions, json_string(v[i]));
	free(v);
	_cleanup_json_ json_t *doc = json_pack("{s:s, s:[{s:s, s:s, s:o, s:s}]}", "Version", "2012-10-17",
					       "Statement", "Sid", "Amiforge", "Effect", "Allow", "Action", actions,
					       "Resource", "*");
	json_dumpf(doc, stdout, JSON_INDENT(2));
	putchar('\n');
}

static void iam_list_key(const char *key)
{
	const char *const *a = iam_actions(key);
	if (!*a)
		printf("%s\t-\n", key);
	for (; *a; a++)
		printf("%s\t%s\n", key, *a);
}

/* Every key and its actions, one "KEY<TAB>ACTION" line each ("-" for
 * none), sorted: what tests/integration/iam_policy.sh compares with the
 * code. */
static void iam_list(void)
{
	size_t n = 0;
	const struct stage_type *const *all = registry_all(&n);
	size_t total = n + ARRAY_SIZE(iam_ami_subs) + 1, k = 0;
	char **keys = xcalloc(total, sizeof(*keys));
	for (size_t i = 0; i < n; i++)
		keys[k++] = xstrdup(all[i]->name);
	for (size_t i = 0; i < ARRAY_SIZE(iam_ami_subs); i++)
		keys[k++] = xasprintf("ami %s", iam_ami_subs[i]);
	keys[k++] = xstrdup("remote");
	qsort(keys, k, sizeof(*keys), iam_cmp);
	for (size_t i = 0; i < k; i++) {
		iam_list_key(keys[i]);
		free(keys[i]);
	}
	free(keys);
}

/* The stage types of RECIPE's stages into SET.  0, or -1 (printed). */
static int iam_recipe(const char *path, json_t *set)
{
	struct recipe *r = NULL;
	struct diag_list d = { 0 };
	if (recipe_load(path, NULL, 0, &r, &d) < 0) {
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n", d.lines[i]);
		recipe_diags_release(&d);
		return -1;
	}
	for (size_t i = 0; i < r->n_stages; i++)
		iam_add(set, r->stages[i].type->name);
	recipe_free(r);
	recipe_diags_release(&d);
	return 0;
}

static const char iam_usage[] =
	"usage: amiforge iam-policy (RECIPE... | --ami-commands) [--remote]\n"
	"       amiforge iam-policy --list\n"
	"  the least-privilege IAM policy (JSON) for what the recipes' stages, or the\n"
	"  `amiforge ami` commands, call; --remote adds the remote state store's\n"
	"  (build --remote s3://...); --list prints the table: KEY<TAB>ACTION\n";

int iam_policy_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ami-commands", no_argument, NULL, 'a' },
		{ "remote", no_argument, NULL, 'r' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool ami = false, remote = false, list = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a': ami = true; break;
		case 'r': remote = true; break;
		case 'l': list = true; break;
		case 'h': fputs(iam_usage, stdout); return EXIT_OK;
		default: fputs(iam_usage, stderr); return EXIT_USAGE;
		}
	}
	if (list) {
		iam_list();
		return EXIT_OK;
	}
	if (!ami && optind == argc && !remote) {
		fprintf(stderr, "amiforge iam-policy: give RECIPE..., --ami-commands or --remote\n%s", iam_usage);
		return EXIT_USAGE;
	}
	_cleanup_json_ json_t *set = json_object();
	for (int i = optind; i < argc; i++)
		if (iam_recipe(argv[i], set) < 0)
			return EXIT_RECIPE_INVALID;
	for (size_t i = 0; ami && i < ARRAY_SIZE(iam_ami_subs); i++) {
		_cleanup_free_ char *key = xasprintf("ami %s", iam_ami_subs[i]);
		iam_add(set, key);
	}
	if (remote)
		iam_add(set, "remote");
	iam_print(set);
	return EXIT_OK;
}
