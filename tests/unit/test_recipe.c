/* SPDX-License-Identifier: Apache-2.0 */
/* Recipe loading: a good recipe round trip, variables, and every malformed
 * recipe in tests/recipes/bad/ against its NAME.expected diagnostics.
 * NAME.args, when present, holds VAR=VALUE lines put in the environment
 * while NAME.yaml loads (tests/integration/recipes.sh does the same). */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>

#include "amiforge/error.h"
#include "amiforge/plan.h"
#include "amiforge/recipe.h"
#include "amiforge/util.h"
#include "amiforge/vars.h"

static char *tmpdir;

static void write_text(const char *dir, const char *name, const char *text)
{
	char *p = path_join(dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	free(p);
}

/* Loads dir/name; returns the recipe or NULL with the diagnostics. */
static struct recipe *load(const char *dir, const char *name, char *const *sets, size_t n_sets,
			   struct diag_list *d)
{
	char *p = path_join(dir, name);
	struct recipe *r = NULL;
	int rc = recipe_load(p, sets, n_sets, &r, d);
	free(p);
	if (rc < 0) {
		assert_null(r);
		assert_true(d->n > 0);
		return NULL;
	}
	assert_int_equal(d->n, 0);
	return r;
}

static struct recipe *load_ok(const char *dir, const char *name, char *const *sets, size_t n_sets)
{
	struct diag_list d = { 0 };
	struct recipe *r = load(dir, name, sets, n_sets, &d);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "unexpected: %s\n", d.lines[i]);
	recipe_diags_release(&d);
	assert_non_null(r);
	return r;
}

/* The single diagnostic of a failing load, without the "PATH:" prefix. */
static char *load_one_error(const char *dir, const char *name, char *const *sets, size_t n_sets)
{
	struct diag_list d = { 0 };
	struct recipe *r = load(dir, name, sets, n_sets, &d);
	assert_null(r);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "diag: %s\n", d.lines[i]);
	assert_int_equal(d.n, 1);
	char *p = path_join(dir, name);
	assert_true(str_has_prefix(d.lines[0], p));
	char *msg = xstrdup(d.lines[0] + strlen(p) + 1);
	free(p);
	recipe_diags_release(&d);
	return msg;
}

static int setup(void **state)
{
	(void)state;
	tmpdir = test_mkdtemp();
	unsetenv("SOURCE_DATE_EPOCH");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_rmdir_r(tmpdir);
	free(tmpdir);
	return 0;
}

static const char good_recipe[] =
	"name: demo-${SUITE}\n"
	"description: a round trip\n"
	"arch: arm64\n"
	"vars:\n"
	"  SUITE: bookworm\n"
	"stages:\n"
	"  - allocate: {size: 2GiB, checkpoint: never}\n"
	"  - partition:\n"
	"      table: gpt\n"
	"      esp: 256M\n"
	"      bios_boot: yes\n"
	"  - mkfs: {type: ext4, inode_size: 256, features: \"^metadata_csum\"}\n"
	"  - fstab:\n"
	"      entries:\n"
	"        - {spec: tmpfs, file: /tmp, type: tmpfs, pass: 2}\n"
	"  - run: {script: scripts/setup.sh, id: setup, timeout: 10m, checkpoint: always}\n"
	"  - run: {command: [echo, hi], timeout: 0}\n"
	"  - run:\n"
	"      command: \"echo $HOME $$ ${X:-}\"\n"
	"      env: {A: \"1\", B: 2}\n";

static void test_round_trip(void **state)
{
	(void)state;
	char *sdir = path_join(tmpdir, "scripts");
	assert_int_equal(mkdir(sdir, 0755), 0);
	static const char script[] = "#!/bin/sh\necho setup\n";
	write_text(sdir, "setup.sh", script);
	write_text(tmpdir, "demo.yml", good_recipe);

	struct recipe *r = load_ok(tmpdir, "demo.yml", NULL, 0);
	assert_string_equal(r->stem, "demo");
	assert_string_equal(r->name, "demo-bookworm");
	assert_string_equal(r->description, "a round trip");
	assert_string_equal(r->arch, "arm64");
	char *real = realpath(tmpdir, NULL);
	assert_string_equal(r->dir, real);
	assert_int_equal(r->n_stages, 7);

	const char *ids[] = { "allocate", "partition", "mkfs", "fstab", "setup", "run-2", "run-3" };
	for (size_t i = 0; i < 7; i++) {
		assert_string_equal(r->stages[i].id, ids[i]);
		assert_int_equal(r->stages[i].index, (int)i + 1);
		assert_int_equal(recipe_find_stage(r, ids[i]), (int)i);
		assert_true(json_is_object(r->stages[i].file_hashes));
	}
	assert_int_equal(recipe_find_stage(r, "nope"), -1);
	assert_int_equal(r->stages[0].line, 7);
	assert_int_equal(r->stages[0].column, 5);
	assert_int_equal(r->stages[1].line, 8);

	const struct stage_inst *a = &r->stages[0];
	assert_string_equal(a->type->name, "allocate");
	assert_int_equal(params_int(a->params, "size", 0), 2ll << 30);
	assert_int_equal(a->checkpoint, CKPT_NEVER);
	assert_int_equal(json_object_size(a->params), 1);  /* only what was written */

	const struct stage_inst *p = &r->stages[1];
	assert_string_equal(params_str(p->params, "table", NULL), "gpt");
	assert_int_equal(params_int(p->params, "esp", 0), 256 << 20);
	assert_true(json_is_true(params_get(p->params, "bios_boot")));
	assert_int_equal(p->checkpoint, CKPT_AUTO);

	const struct stage_inst *m = &r->stages[2];
	assert_int_equal(params_int(m->params, "inode_size", 0), 256);
	const json_t *feat = params_get(m->params, "features");
	assert_true(json_is_array(feat));
	assert_int_equal(json_array_size(feat), 1);
	assert_string_equal(json_string_value(json_array_get(feat, 0)), "^metadata_csum");

	const json_t *entries = params_get(r->stages[3].params, "entries");
	assert_int_equal(json_array_size(entries), 1);
	assert_int_equal(params_int(json_array_get(entries, 0), "pass", 0), 2);
	assert_string_equal(params_str(json_array_get(entries, 0), "file", NULL), "/tmp");

	const struct stage_inst *s = &r->stages[4];
	assert_int_equal(s->timeout, 600);
	assert_int_equal(s->checkpoint, CKPT_ALWAYS);
	char *spath = path_join(real, "scripts/setup.sh");
	assert_string_equal(params_str(s->params, "script", NULL), spath);
	char hex[65];
	sha256_hex(script, strlen(script), hex);
	assert_string_equal(json_string_value(json_object_get(s->file_hashes, "script")), hex);
	assert_int_equal(json_object_size(s->file_hashes), 1);

	const struct stage_inst *c = &r->stages[5];
	assert_int_equal(c->timeout, 0);  /* explicit 0: no timeout */
	assert_true(json_is_array(params_get(c->params, "command")));
	assert_int_equal(json_object_size(c->file_hashes), 0);

	const struct stage_inst *e = &r->stages[6];
	assert_int_equal(e->timeout, e->type->default_timeout);
	assert_string_equal(params_str(e->params, "command", NULL), "echo $HOME $ ");
	const json_t *env = params_get(e->params, "env");
	assert_string_equal(params_str(env, "A", NULL), "1");
	assert_string_equal(params_str(env, "B", NULL), "2");

	recipe_free(r);
	free(spath);
	free(real);
	free(sdir);
}

static void test_file_hash_changes(void **state)
{
	(void)state;
	write_text(tmpdir, "s.sh", "echo one\n");
	/* run mounts the root: allocate and mkfs come first (facts.h). */
	write_text(tmpdir, "h.yaml", "name: h\nstages:\n  - allocate: {size: 1G}\n  - mkfs: {}\n  - run: {script: ./s.sh}\n");
	struct recipe *r1 = load_ok(tmpdir, "h.yaml", NULL, 0);
	write_text(tmpdir, "s.sh", "echo two\n");
	struct recipe *r2 = load_ok(tmpdir, "h.yaml", NULL, 0);
	const char *h1 = json_string_value(json_object_get(r1->stages[2].file_hashes, "script"));
	const char *h2 = json_string_value(json_object_get(r2->stages[2].file_hashes, "script"));
	assert_non_null(h1);
	assert_non_null(h2);
	assert_string_not_equal(h1, h2);
	recipe_free(r1);
	recipe_free(r2);
}

static void test_path_symlink_escape(void **state)
{
	(void)state;
	char *link = path_join(tmpdir, "passwd.sh");
	assert_int_equal(symlink("/etc/passwd", link), 0);
	write_text(tmpdir, "l.yaml", "name: l\nstages:\n  - run: {script: passwd.sh}\n");
	char *msg = load_one_error(tmpdir, "l.yaml", NULL, 0);
	assert_string_equal(msg, "3:19: parameter 'script' of stage 'run' must name a file inside the "
				 "recipe's directory, got 'passwd.sh' (a symbolic link leading outside); put the "
				 "file beside the recipe (or in a directory under it)");
	free(msg);
	free(link);
}

/* Writes dir/name with text and returns the path (caller frees). */
static char *put_in(const char *dir, const char *name, const char *text)
{
	write_text(dir, name, text);
	return path_join(dir, name);
}

/* The stage keys of dir/name loaded with sets. */
static void keys_of(const char *dir, const char *name, char *const *sets, size_t n_sets, char (*keys)[65])
{
	struct recipe *r = load_ok(dir, name, sets, n_sets);
	plan_keys(r, keys);
	recipe_free(r);
}

static const char bundle_recipe[] =
	"name: b\n"
	"env: [BUNDLE_CERT, BUNDLE_PRIVATE_KEY_FILE]\n"
	"stages:\n"
	"  - allocate: {size: 1G}\n"
	"  - bundle: {account: '123456789012', cert: '${BUNDLE_CERT}', key: '${BUNDLE_PRIVATE_KEY_FILE}'}\n";

/* A bundle's cert and key from declared variables, outside the recipe's
 * directory: the key follows their content, not where they are. */
static void test_host_files_outside(void **state)
{
	(void)state;
	char *one = path_join(tmpdir, "one"), *two = path_join(tmpdir, "two"), *rdir = path_join(tmpdir, "r");
	assert_int_equal(mkdir(one, 0700), 0);
	assert_int_equal(mkdir(two, 0700), 0);
	assert_int_equal(mkdir(rdir, 0700), 0);
	write_text(rdir, "b.yaml", bundle_recipe);
	char *c1 = put_in(one, "cert.pem", "CERT\n"), *k1 = put_in(one, "key.pem", "KEY\n");
	char *c2 = put_in(two, "c.pem", "CERT\n"), *k2 = put_in(two, "k.pem", "KEY\n");
	char *s1[2] = { xasprintf("BUNDLE_CERT=%s", c1), xasprintf("BUNDLE_PRIVATE_KEY_FILE=%s", k1) };
	char *s2[2] = { xasprintf("BUNDLE_CERT=%s", c2), xasprintf("BUNDLE_PRIVATE_KEY_FILE=%s", k2) };
	char a[2][65], b[2][65];

	struct recipe *r = load_ok(rdir, "b.yaml", s1, 2);
	assert_string_equal(params_str(r->stages[1].params, "key", NULL), k1);
	char hex[65];
	sha256_hex("KEY\n", 4, hex);
	assert_string_equal(json_string_value(json_object_get(r->stages[1].file_hashes, "key")), hex);
	recipe_free(r);

	/* The same files elsewhere, named by the environment this time. */
	keys_of(rdir, "b.yaml", s1, 2, a);
	setenv("BUNDLE_CERT", c2, 1);
	setenv("BUNDLE_PRIVATE_KEY_FILE", k2, 1);
	keys_of(rdir, "b.yaml", NULL, 0, b);
	assert_string_equal(a[1], b[1]);
	unsetenv("BUNDLE_CERT");
	unsetenv("BUNDLE_PRIVATE_KEY_FILE");

	/* Another key: another stage key, the stage before it unchanged. */
	write_text(two, "k.pem", "OTHER KEY\n");
	keys_of(rdir, "b.yaml", s2, 2, b);
	assert_string_equal(a[0], b[0]);
	assert_string_not_equal(a[1], b[1]);

	/* The name of a variable holding the key itself stays refused. */
	write_text(rdir, "p.yaml", "name: p\nenv: [BUNDLE_PRIVATE_KEY]\nstages:\n  - allocate: {size: 1G}\n");
	char *msg = load_one_error(rdir, "p.yaml", NULL, 0);
	assert_string_equal(msg, "2:7: variable 'BUNDLE_PRIVATE_KEY' in env looks like a credential (its name "
				 "contains PRIVATE_KEY); credentials are never expanded into a recipe, so they "
				 "cannot reach the image, the logs or the journal: remove it");
	free(msg);

	for (int i = 0; i < 2; i++) {
		free(s1[i]);
		free(s2[i]);
	}
	free(c1);
	free(k1);
	free(c2);
	free(k2);
	free(one);
	free(two);
	free(rdir);
}

static const char vars_recipe[] =
	"name: v-${FROM_SET}-${FROM_ENV}-${FROM_VARS}-${WITH_DEFAULT:-dflt}\n"
	"description: \"${BUILD_DATE}T${BUILD_TIME} $$ $$$$ ${EMPTY:-${NESTED:-deep}} ${DERIVED} $PATH\"\n"
	"vars:\n"
	"  FROM_VARS: vars\n"
	"  FROM_ENV: from-vars-loses\n"
	"  FROM_SET: from-vars-loses\n"
	"  DERIVED: \"${FROM_VARS}+\"\n"
	"  EMPTY:\n"
	"  BUILD_TIME: overridden\n"
	"stages:\n"
	"  - allocate: {size: \"${SIZE:-1}GiB\"}\n";

static void test_variables(void **state)
{
	(void)state;
	write_text(tmpdir, "v.yaml", vars_recipe);
	setenv("FROM_ENV", "env", 1);
	setenv("FROM_SET", "env-loses", 1);
	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);  /* 2023-11-14 22:13:20 UTC */
	char *sets[] = { "FROM_SET=first", "FROM_SET=set", "SIZE=3" };
	struct recipe *r = load_ok(tmpdir, "v.yaml", sets, 3);
	assert_string_equal(r->name, "v-set-env-vars-dflt");
	assert_string_equal(r->description, "20231114Toverridden $ $$ deep vars+ $PATH");
	assert_int_equal(params_int(r->stages[0].params, "size", 0), 3ll << 30);
	recipe_free(r);

	/* Built-ins when nothing overrides them. */
	write_text(tmpdir, "b.yaml", "name: b-${BUILD_DATE}-${BUILD_TIME}\nstages:\n  - allocate: {size: 1G}\n");
	r = load_ok(tmpdir, "b.yaml", NULL, 0);
	assert_string_equal(r->name, "b-20231114-221320");
	recipe_free(r);

	/* Without SOURCE_DATE_EPOCH: today's date, in the right shape. */
	unsetenv("SOURCE_DATE_EPOCH");
	r = load_ok(tmpdir, "b.yaml", NULL, 0);
	assert_int_equal(strlen(r->name), strlen("b-YYYYMMDD-HHMMSS"));
	assert_true(str_has_prefix(r->name, "b-20"));
	recipe_free(r);

	setenv("SOURCE_DATE_EPOCH", "yesterday", 1);
	char *msg = load_one_error(tmpdir, "b.yaml", NULL, 0);
	assert_string_equal(msg, "1:7: SOURCE_DATE_EPOCH 'yesterday' is not a number of seconds since 1970; "
				 "fix or unset it");
	free(msg);
	unsetenv("SOURCE_DATE_EPOCH");
	unsetenv("FROM_ENV");
	unsetenv("FROM_SET");
}

static void test_bad_sets(void **state)
{
	(void)state;
	write_text(tmpdir, "s.yaml", "name: s\nstages:\n  - allocate: {size: 1G, sise: 2G}\n");
	char *sets[] = { "NOEQUALS", "1BAD=x", "GOOD=1" };
	struct diag_list d = { 0 };
	assert_null(load(tmpdir, "s.yaml", sets, 3, &d));
	char *p = path_join(tmpdir, "s.yaml");
	char *want[] = {
		xasprintf("%s: --set 'NOEQUALS' is not VAR=VALUE", p),
		xasprintf("%s: --set '1BAD=x': invalid variable name '1BAD'; use letters, digits and '_'", p),
		xasprintf("%s:3:26: unknown parameter 'sise' for stage 'allocate'; did you mean 'size'?", p),
	};
	assert_int_equal(d.n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(d.lines[i], want[i]);
		free(want[i]);
	}
	/* A second load appends. */
	assert_null(load(tmpdir, "s.yaml", NULL, 0, &d));
	assert_int_equal(d.n, 4);
	recipe_diags_release(&d);
	assert_int_equal(d.n, 0);
	free(p);
}

static void test_unreadable_and_stem(void **state)
{
	(void)state;
	struct diag_list d = { 0 };
	struct recipe *r = NULL;
	assert_int_equal(recipe_load("/nonexistent/dir/x.yaml", NULL, 0, &r, &d), -1);
	assert_null(r);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "/nonexistent/dir/x.yaml: cannot read: No such file or directory");
	recipe_diags_release(&d);

	write_text(tmpdir, "plain", "name: p\nstages: [{allocate: {size: 1G}}]\n");
	r = load_ok(tmpdir, "plain", NULL, 0);
	assert_string_equal(r->stem, "plain");
	assert_int_equal(r->stages[0].timeout, r->stages[0].type->default_timeout);
	recipe_free(r);
	write_text(tmpdir, "x.y.yaml", "name: p\nstages: [{allocate: {size: 1G}}]\n");
	r = load_ok(tmpdir, "x.y.yaml", NULL, 0);
	assert_string_equal(r->stem, "x.y");
	recipe_free(r);
}

/* ---- the environment feeds declared names only ---- */

static const char env_recipe[] =
	"name: e-${LISTED}-${IN_VARS}-${BOTH}-${UNLISTED:-dflt}\n"
	"env: [LISTED, BOTH, ABSENT]\n"
	"vars:\n"
	"  IN_VARS: from-vars\n"
	"  BOTH: from-vars\n"
	"  USES_LISTED: \"${LISTED}+\"\n"
	"description: \"${USES_LISTED} ${ABSENT:-unset}\"\n"
	"stages:\n"
	"  - allocate: {size: 1G}\n";

static void test_env_declared(void **state)
{
	(void)state;
	write_text(tmpdir, "e.yaml", env_recipe);
	setenv("LISTED", "env1", 1);
	setenv("IN_VARS", "env2", 1);
	setenv("BOTH", "env3", 1);
	setenv("UNLISTED", "never-read", 1);
	unsetenv("ABSENT");
	struct recipe *r = load_ok(tmpdir, "e.yaml", NULL, 0);
	/* vars entries are declared too: the environment overrides them. */
	assert_string_equal(r->name, "e-env1-env2-env3-dflt");
	assert_string_equal(r->description, "env1+ unset");
	recipe_free(r);

	/* --set still wins over the environment. */
	char *sets[] = { "LISTED=set", "UNLISTED=set2" };
	r = load_ok(tmpdir, "e.yaml", sets, 2);
	assert_string_equal(r->name, "e-set-env2-env3-set2");
	recipe_free(r);

	/* An undeclared name the environment has: a hint, not its value. */
	write_text(tmpdir, "u.yaml", "name: u-${UNLISTED}\nstages:\n  - allocate: {size: 1G}\n");
	char *msg = load_one_error(tmpdir, "u.yaml", NULL, 0);
	assert_string_equal(msg, "1:7: undefined variable 'UNLISTED'; the environment has UNLISTED but the "
				 "recipe does not declare it: declare it under env: to read it from the "
				 "environment, or set it with --set UNLISTED=VALUE");
	free(msg);
	unsetenv("UNLISTED");
	msg = load_one_error(tmpdir, "u.yaml", NULL, 0);
	assert_string_equal(msg, "1:7: undefined variable 'UNLISTED'; set it with --set UNLISTED=VALUE or "
				 "under vars:, or write ${UNLISTED:-default}");
	free(msg);
	unsetenv("LISTED");
	unsetenv("IN_VARS");
	unsetenv("BOTH");
}

/* Credential-looking names: the rule, and --set of one. */
static void test_credentials(void **state)
{
	(void)state;
	static const char *const yes[] = {
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "GITHUB_TOKEN",
		"db_password", "MyPasswd", "SSH_PRIVATE_KEY", "client_secret", "tokenizer",
		/* Only the exact suffixes name a path. */
		"SECRET_FILES", "TOKEN_FILENAME", "PRIVATE_KEY_FILE_CONTENT", "SECRETPATH",
	};
	static const char *const no[] = {
		"AWS_ACCESS_KEY_ID", "AWS_REGION", "PRIVATE", "KEY", "PASS", "TOK",
		/* Where a secret is, not the secret. */
		"BUNDLE_PRIVATE_KEY_FILE", "db_password_path", "GITHUB_TOKEN_File",
	};
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		assert_non_null(vars_name_credential(yes[i]));
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		assert_null(vars_name_credential(no[i]));
	assert_string_equal(vars_name_credential("x_Private_Key"), "PRIVATE_KEY");

	write_text(tmpdir, "c.yaml", "name: c\nstages:\n  - allocate: {size: 1G}\n");
	char *sets[] = { "AWS_SECRET_ACCESS_KEY=valueNeverRepeated", "Deploy_Token=valueNeverRepeated" };
	struct diag_list d = { 0 };
	assert_null(load(tmpdir, "c.yaml", sets, 2, &d));
	assert_int_equal(d.n, 2);
	for (size_t i = 0; i < d.n; i++) {
		fprintf(stderr, "diag: %s\n", d.lines[i]);
		assert_null(strstr(d.lines[i], "valueNeverRepeated"));
		assert_non_null(strstr(d.lines[i], "looks like a credential"));
	}
	assert_non_null(strstr(d.lines[0], ": --set AWS_SECRET_ACCESS_KEY: the name looks like a credential "
					   "(it contains SECRET)"));
	recipe_diags_release(&d);

	/* Set in the environment, declared nowhere, with a default: still refused. */
	setenv("AWS_SECRET_ACCESS_KEY", "envValueNeverRepeated", 1);
	write_text(tmpdir, "r.yaml", "name: r-${AWS_SECRET_ACCESS_KEY:-x}\nstages:\n  - allocate: {size: 1G}\n");
	char *msg = load_one_error(tmpdir, "r.yaml", NULL, 0);
	assert_string_equal(msg, "1:7: variable 'AWS_SECRET_ACCESS_KEY' looks like a credential (its name "
				 "contains SECRET) and is never expanded, so it cannot reach the image, the "
				 "logs or the journal; remove the reference");
	free(msg);
	unsetenv("AWS_SECRET_ACCESS_KEY");

	/* A credential's value passed under a harmless name is quoted back
	 * redacted, also where a long value is cut short. */
	char token[121];
	memset(token, 'T', 120);
	token[120] = '\0';
	setenv("AWS_SESSION_TOKEN", token, 1);
	setenv("LONGV", token, 1);
	write_text(tmpdir, "q.yaml", "name: q\nenv: [LONGV]\nstages:\n  - allocate: {size: \"${LONGV}\"}\n");
	msg = load_one_error(tmpdir, "q.yaml", NULL, 0);
	assert_string_equal(msg, "4:22: parameter 'size' of stage 'allocate' must be a size like 2GiB, got "
				 "'[REDACTED]'");
	free(msg);
	unsetenv("AWS_SESSION_TOKEN");
	unsetenv("LONGV");

	/* A files template gets the same rule. */
	write_text(tmpdir, "motd.in", "key=${AWS_SECRET_ACCESS_KEY}\n");
	write_text(tmpdir, "t.yaml", "name: t\nstages:\n  - files: {source: motd.in, destination: /etc/motd, "
				     "template: true}\n");
	msg = load_one_error(tmpdir, "t.yaml", NULL, 0);
	assert_non_null(strstr(msg, "variable 'AWS_SECRET_ACCESS_KEY' looks like a credential"));
	assert_true(str_has_prefix(msg, "3:5: "));
	free(msg);

	/* Nested defaults are skipped whole: one problem, at the scalar. */
	write_text(tmpdir, "n.yaml", "name: \"n-${MY_TOKEN:-${OTHER:-y}}-z\"\nstages:\n  - allocate: {size: 1G}\n");
	msg = load_one_error(tmpdir, "n.yaml", NULL, 0);
	assert_true(str_has_prefix(msg, "1:7: variable 'MY_TOKEN' looks like a credential"));
	free(msg);
}

/* ---- size and depth limits ---- */

static void test_too_large(void **state)
{
	(void)state;
	/* Exactly 1 MiB loads. */
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, "name: big\nstages:\n  - allocate: {size: 1G}\n");
	while (sb.len < RECIPE_MAX_BYTES - 100)
		strbuf_addstr(&sb, "# padding padding padding padding padding padding padding padding\n");
	while (sb.len < RECIPE_MAX_BYTES - 1)
		strbuf_addstr(&sb, "#");
	strbuf_addstr(&sb, "\n");
	assert_int_equal(sb.len, RECIPE_MAX_BYTES);
	write_text(tmpdir, "big.yaml", sb.buf);
	recipe_free(load_ok(tmpdir, "big.yaml", NULL, 0));

	/* One byte more is refused, naming the file and its size. */
	strbuf_addstr(&sb, "\n");
	write_text(tmpdir, "big.yaml", sb.buf);
	strbuf_release(&sb);
	char *msg = load_one_error(tmpdir, "big.yaml", NULL, 0);
	assert_string_equal(msg, " the recipe is 1048577 bytes, more than the 1 MiB a recipe may hold; "
				 "keep large content in files next to it (a run script, files sources)");
	free(msg);

	/* A file without a size (a device, a FIFO) is read with the bound. */
	struct diag_list d = { 0 };
	struct recipe *r = NULL;
	assert_int_equal(recipe_load("/dev/zero", NULL, 0, &r, &d), -1);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.lines[0], "/dev/zero: the recipe is more than the 1 MiB a recipe may hold; "
					"keep large content in files next to it (a run script, files sources)");
	recipe_diags_release(&d);
}

static void test_too_deep(void **state)
{
	(void)state;
	/* 64 levels load (root, stages, the item, its parameters and 60 lists);
	 * the checks then object to the shape, not the depth. */
	static const char head[] = "name: deep\nstages:\n  - run: {command: true, id: ";
	struct strbuf sb = STRBUF_INIT;
	strbuf_addstr(&sb, head);
	for (int i = 0; i < 60; i++)
		strbuf_addstr(&sb, "[");
	for (int i = 0; i < 60; i++)
		strbuf_addstr(&sb, "]");
	strbuf_addstr(&sb, "}\n");
	write_text(tmpdir, "d64.yaml", sb.buf);
	strbuf_release(&sb);
	char *msg = load_one_error(tmpdir, "d64.yaml", NULL, 0);
	assert_string_equal(msg, "3:30: parameter 'id' of stage 'run' must be a string, got a list");
	free(msg);

	/* 100,000 levels, flow and block style: refused at once, at level 65. */
	for (int style = 0; style < 2; style++) {
		sb = (struct strbuf)STRBUF_INIT;
		strbuf_addstr(&sb, style ? "name: deep\nstages:\n  " : "name: deep\nstages: ");
		for (int i = 0; i < 100000; i++)
			strbuf_addstr(&sb, style ? "- " : "[");
		if (!style)
			for (int i = 0; i < 100000; i++)
				strbuf_addstr(&sb, "]");
		else
			strbuf_addstr(&sb, "x");
		strbuf_addstr(&sb, "\n");
		write_text(tmpdir, "deep.yaml", sb.buf);
		strbuf_release(&sb);
		double t0 = now_monotonic();
		msg = load_one_error(tmpdir, "deep.yaml", NULL, 0);
		double secs = now_monotonic() - t0;
		fprintf(stderr, "100k-deep (%s) refused in %.3fs\n", style ? "block" : "flow", secs);
		assert_true(secs < 0.5);
		assert_string_equal(msg, style ? "3:129: the recipe nests deeper than 64 levels of mappings and "
						 "lists; flatten it"
					       : "2:72: the recipe nests deeper than 64 levels of mappings and "
						 "lists; flatten it");
		free(msg);
	}
}

/* ---- the malformed recipes ---- */

static void chdir_top(void)
{
	const char *top = getenv("TOP");
	if (top && *top) {
		assert_int_equal(chdir(top), 0);
		return;
	}
	for (int i = 0; i < 8; i++) {
		if (access("Makefile", F_OK) == 0 && access("tests/recipes/bad", F_OK) == 0)
			return;
		assert_int_equal(chdir(".."), 0);
	}
	fail_msg("cannot find the repository root (set TOP)");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of dir's files ending in suffix, without it. */
static char **list_names(const char *dir, const char *suffix, size_t *n)
{
	DIR *d = opendir(dir);
	char **v = NULL;
	*n = 0;
	if (!d)
		return NULL;
	for (struct dirent *e; (e = readdir(d));) {
		if (!str_has_suffix(e->d_name, suffix) || e->d_name[0] == '.')
			continue;
		v = xreallocarray(v, *n + 1, sizeof(*v));
		v[(*n)++] = xstrndup(e->d_name, strlen(e->d_name) - strlen(suffix));
	}
	closedir(d);
	qsort(v, *n, sizeof(*v), cmp_str);
	return v;
}

/* Lines of a file (without newlines); NULL if it cannot be read. */
static char **read_lines(const char *path, size_t *n)
{
	struct af_error *err = NULL;
	size_t len;
	char *buf = read_file(path, &len, &err);
	*n = 0;
	if (!buf) {
		af_error_free(err);
		return NULL;
	}
	char **v = NULL;
	char *save = NULL;
	for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		v = xreallocarray(v, *n + 1, sizeof(*v));
		v[(*n)++] = xstrdup(l);
	}
	free(buf);
	return v;
}

static void free_lines(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* One bad recipe; returns true when its diagnostics match. */
static bool check_bad(const char *name)
{
	char *yaml = xasprintf("tests/recipes/bad/%s.yaml", name);
	char *expected = xasprintf("tests/recipes/bad/%s.expected", name);
	char *args = xasprintf("tests/recipes/bad/%s.args", name);
	size_t n_env = 0, n_want = 0;
	char **env = read_lines(args, &n_env);
	for (size_t i = 0; i < n_env; i++) {
		char *eq = strchr(env[i], '=');
		assert_non_null(eq);
		*eq = '\0';
		setenv(env[i], eq + 1, 1);
	}
	char **want = read_lines(expected, &n_want);
	struct diag_list d = { 0 };
	struct recipe *r = NULL;
	int rc = recipe_load(yaml, NULL, 0, &r, &d);
	for (size_t i = 0; i < n_env; i++)
		unsetenv(env[i]);
	bool ok = rc == -1 && !r && want && d.n == n_want;
	for (size_t i = 0; ok && i < n_want; i++)
		ok = !strcmp(d.lines[i], want[i]);
	if (!ok) {
		fprintf(stderr, "%s: rc %d%s\n", yaml, rc, want ? "" : " (no .expected file)");
		for (size_t i = 0; i < n_want; i++)
			fprintf(stderr, "  want: %s\n", want[i]);
		for (size_t i = 0; i < d.n; i++)
			fprintf(stderr, "  got:  %s\n", d.lines[i]);
	}
	recipe_free(r);
	recipe_diags_release(&d);
	free_lines(want, n_want);
	free_lines(env, n_env);
	free(yaml);
	free(expected);
	free(args);
	return ok;
}

static void test_bad_recipes(void **state)
{
	(void)state;
	char *cwd = getcwd(NULL, 0);
	chdir_top();
	size_t n = 0, failed = 0;
	char **names = list_names("tests/recipes/bad", ".yaml", &n);
	assert_true(n >= 30);
	for (size_t i = 0; i < n; i++)
		failed += !check_bad(names[i]);
	/* Every .expected has its recipe. */
	size_t n_exp = 0;
	char **exps = list_names("tests/recipes/bad", ".expected", &n_exp);
	assert_int_equal(n_exp, n);
	free_lines(exps, n_exp);
	free_lines(names, n);
	assert_int_equal(chdir(cwd), 0);
	free(cwd);
	if (failed)
		fail_msg("%zu malformed recipe(s) did not give the expected diagnostics", failed);
}

static void test_good_recipes(void **state)
{
	(void)state;
	char *cwd = getcwd(NULL, 0);
	chdir_top();
	static const char *const dirs[] = { "tests/recipes/good", "recipes" };
	size_t total = 0;
	for (size_t k = 0; k < 2; k++) {
		size_t n = 0;
		char **names = list_names(dirs[k], ".yaml", &n);
		for (size_t i = 0; i < n; i++, total++) {
			char *file = xasprintf("%s.yaml", names[i]);
			recipe_free(load_ok(dirs[k], file, NULL, 0));
			free(file);
		}
		free_lines(names, n);
	}
	assert_true(total >= 2);
	assert_int_equal(chdir(cwd), 0);
	free(cwd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_hash_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_symlink_escape, setup, teardown),
		cmocka_unit_test_setup_teardown(test_variables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_sets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_and_stem, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_declared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_files_outside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_deep, setup, teardown),
		cmocka_unit_test(test_bad_recipes),
		cmocka_unit_test(test_good_recipes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
