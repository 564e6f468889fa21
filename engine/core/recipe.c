/* SPDX-License-Identifier: Apache-2.0 */
/* Recipe loader: libyaml's document API (every node keeps its mark), then
 * one pass over the tree that checks it against the stage schemas and
 * collects every problem as a positioned diagnostic (see recipe.h). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/facts.h"
#include "amiforge/params.h"
#include "amiforge/params_conv.h"
#include "amiforge/recipe.h"
#include "amiforge/redact.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"
#include "amiforge/vars.h"

static inline void cleanup_yaml_parserp(yaml_parser_t *p) { yaml_parser_delete(p); }
#define _cleanup_yaml_parser_ __attribute__((cleanup(cleanup_yaml_parserp)))

struct diag {
	unsigned line, col;  /* 1-based; 0 when the problem has no position */
	size_t seq;          /* keeps the order of problems at one position */
	char *msg;
};

/* Where each stage's id came from, for duplicate reports. */
struct id_site {
	unsigned line, col;
	bool explicit_id;
};

struct loader {
	const char *path;
	const char *dir;
	yaml_document_t *doc;
	struct vars vars;
	struct diag *diags;
	size_t n_diags, alloc_diags;
	struct id_site *ids;
};

static const char *const common_keys[] = { "id", "timeout", "checkpoint", NULL };
static const char *const checkpoint_choices[] = { "auto", "always", "never", NULL };
static const char *const arch_choices[] = { "x86_64", "arm64", NULL };

static const struct param_spec spec_id = { .name = "id", .type = PT_STRING };
static const struct param_spec spec_timeout = { .name = "timeout", .type = PT_DURATION };
static const struct param_spec spec_checkpoint = {
	.name = "checkpoint", .type = PT_ENUM, .choices = checkpoint_choices,
};
static const struct param_spec spec_name = { .name = "name", .type = PT_STRING };
static const struct param_spec spec_description = { .name = "description", .type = PT_STRING };
static const struct param_spec spec_arch = { .name = "arch", .type = PT_ENUM, .choices = arch_choices };

/* ---- diagnostics ---- */

static void diag_add(struct loader *L, unsigned line, unsigned col, char *msg)
{
	if (L->n_diags == L->alloc_diags) {
		L->alloc_diags = L->alloc_diags ? 2 * L->alloc_diags : 16;
		L->diags = xreallocarray(L->diags, L->alloc_diags, sizeof(*L->diags));
	}
	L->diags[L->n_diags] = (struct diag){ line, col, L->n_diags, msg };
	L->n_diags++;
}

static void diag_mark(struct loader *L, yaml_mark_t m, char *msg)
{
	/* libyaml marks are 0-based. */
	diag_add(L, (unsigned)m.line + 1, (unsigned)m.column + 1, msg);
}

__attribute__((format(printf, 3, 4)))
static void diag_node(struct loader *L, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = xvasprintf(fmt, ap);
	va_end(ap);
	diag_mark(L, n->start_mark, msg);
}

static int diag_cmp(const void *a, const void *b)
{
	const struct diag *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts the collected problems and moves them, formatted, to out. */
static void diags_flush(struct loader *L, struct diag_list *out)
{
	qsort(L->diags, L->n_diags, sizeof(*L->diags), diag_cmp);
	out->lines = xreallocarray(out->lines, out->n + L->n_diags, sizeof(*out->lines));
	for (size_t i = 0; i < L->n_diags; i++) {
		const struct diag *d = &L->diags[i];
		const struct diag *prev = i ? &L->diags[i - 1] : NULL;
		/* One scalar can raise the same problem twice (two built-ins
		 * with a bad SOURCE_DATE_EPOCH); say it once. */
		if (prev && prev->line == d->line && prev->col == d->col && !strcmp(prev->msg, d->msg))
			continue;
		/* A value quoted back may have come from the environment. */
		_cleanup_free_ char *msg = redact_text(d->msg, NULL, 0);
		out->lines[out->n++] = d->line ? xasprintf("%s:%u:%u: %s", L->path, d->line, d->col, msg)
					       : xasprintf("%s: %s", L->path, msg);
	}
	for (size_t i = 0; i < L->n_diags; i++)
		free(L->diags[i].msg);
	free(L->diags);
	L->diags = NULL;
	L->n_diags = L->alloc_diags = 0;
}

void recipe_diags_release(struct diag_list *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->lines[i]);
	free(d->lines);
	d->lines = NULL;
	d->n = 0;
}

/* ---- nodes and scalars ---- */

static yaml_node_t *node_at(struct loader *L, int id)
{
	return param_node_at(L->doc, id);
}

/* YAML 1.1 null, only where a value may be absent (a stage without
 * parameters, a variable without a default).  Where the schema asks for a
 * string, "null" is the string: DESIGN's own `devices: [zero, null]`. */
static bool node_is_null(const yaml_node_t *n)
{
	if (!param_node_plain(n))
		return false;
	const char *s = param_node_text(n);
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

struct report_ctx {
	struct loader *L;
	const yaml_node_t *n;
};

static void report_at_node(void *data, const char *msg)
{
	struct report_ctx *rc = data;
	diag_mark(rc->L, rc->n->start_mark, xstrdup(msg));
}

/* The scalar's text with variables expanded; NULL after reporting. */
static char *scalar_expand(struct loader *L, const yaml_node_t *n)
{
	if (strlen(param_node_text(n)) != n->data.scalar.length) {
		diag_node(L, n, "value contains a NUL character");
		return NULL;
	}
	struct report_ctx rc = { L, n };
	return vars_expand(&L->vars, param_node_text(n), report_at_node, &rc);
}

static void conv_report(void *data, const yaml_node_t *n, const char *msg)
{
	diag_node(data, n, "%s", msg);
}

static char *conv_expand(void *data, const yaml_node_t *n)
{
	return scalar_expand(data, n);
}

/* Converts values for stage (NULL at top level) into L's diagnostics. */
static struct param_conv loader_conv(struct loader *L, const char *stage, json_t *hashes)
{
	return (struct param_conv){
		.doc = L->doc, .recipe_dir = L->dir, .stage = stage, .hashes = hashes,
		.report = conv_report, .expand = conv_expand, .data = L,
	};
}

struct common {
	const yaml_node_t *id_node;
	char *id;
	bool has_timeout;
	uint64_t timeout;
	enum checkpoint_policy checkpoint;
};

/* ---- stages ---- */

/* The conversion's take_extra for common_keys. */
static void set_common(struct param_conv *c, void *data, const char *key, const yaml_node_t *v)
{
	struct common *common = data;
	if (!strcmp(key, "id")) {
		json_t *j = param_conv_value(c, &spec_id, key, v);
		if (!j)
			return;
		common->id = xstrdup(json_string_value(j));
		common->id_node = v;
		json_decref(j);
	} else if (!strcmp(key, "timeout")) {
		json_t *j = param_conv_value(c, &spec_timeout, key, v);
		if (!j)
			return;
		common->has_timeout = true;
		common->timeout = (uint64_t)json_integer_value(j);
		json_decref(j);
	} else {
		json_t *j = param_conv_value(c, &spec_checkpoint, key, v);
		if (!j)
			return;
		const char *s = json_string_value(j);
		common->checkpoint = !strcmp(s, "always") ? CKPT_ALWAYS
				   : !strcmp(s, "never")  ? CKPT_NEVER
							  : CKPT_AUTO;
		json_decref(j);
	}
}

static void unknown_stage(struct loader *L, const yaml_node_t *k, const char *name)
{
	size_t n = 0;
	const struct stage_type *const *all = registry_all(&n);
	struct param_suggest s = { 0 };
	for (size_t i = 0; i < n; i++)
		param_suggest_try(&s, name, all[i]->name);
	_cleanup_free_ char *tail = param_suggest_text(&s);
	diag_node(L, k, "unknown stage type '%s'; run 'amiforge stages' for the list%s", name, tail);
}

/* The item's single key and value, or false after reporting. */
static bool stage_item_split(struct loader *L, const yaml_node_t *item, const yaml_node_t **k,
			     const yaml_node_t **v)
{
	if (item->type != YAML_MAPPING_NODE) {
		_cleanup_free_ char *got = param_describe(item, NULL, false);
		diag_node(L, item, "a stage must be a mapping with one key, the stage type "
			  "(like '- mkfs: {type: ext4}'), got %s", got);
		return false;
	}
	size_t n = param_node_pairs(item);
	if (n != 1) {
		struct strbuf keys = STRBUF_INIT;
		for (size_t i = 0; i < n; i++) {
			const yaml_node_t *key = node_at(L, item->data.mapping.pairs.start[i].key);
			strbuf_addf(&keys, "%s'%s'", i ? ", " : "",
				    key->type == YAML_SCALAR_NODE ? param_node_text(key) : "?");
		}
		if (!n)
			diag_node(L, item, "a stage must have exactly one key, the stage type; found none");
		else
			diag_node(L, item, "a stage must have exactly one key, the stage type; found %zu: %s "
				  "(indent the parameters under the stage type)", n, keys.buf);
		strbuf_release(&keys);
		return false;
	}
	*k = node_at(L, item->data.mapping.pairs.start[0].key);
	*v = node_at(L, item->data.mapping.pairs.start[0].value);
	if ((*k)->type != YAML_SCALAR_NODE || param_node_empty(*k)) {
		_cleanup_free_ char *got = param_describe(*k, NULL, false);
		diag_node(L, *k, "a stage type must be a name, got %s", got);
		return false;
	}
	return true;
}

static void check_stage(struct loader *L, const yaml_node_t *item, struct stage_inst *st,
			struct common *common)
{
	const yaml_node_t *k = NULL, *v = NULL;
	st->line = (unsigned)item->start_mark.line + 1;
	st->column = (unsigned)item->start_mark.column + 1;
	st->file_hashes = json_object();
	if (!stage_item_split(L, item, &k, &v))
		return;
	st->type = registry_find(param_node_text(k));
	if (!st->type) {
		unknown_stage(L, k, param_node_text(k));
		return;
	}
	struct param_conv c = loader_conv(L, st->type->name, st->file_hashes);
	c.extra_keys = common_keys;
	c.take_extra = set_common;
	c.extra_data = common;
	size_t before = L->n_diags;
	if (node_is_null(v)) {
		st->params = param_conv_object(&c, st->type->params, &(yaml_node_t){
			.type = YAML_MAPPING_NODE, .start_mark = item->start_mark }, item);
	} else if (v->type == YAML_MAPPING_NODE) {
		st->params = param_conv_object(&c, st->type->params, v, item);
	} else {
		_cleanup_free_ char *got = param_describe(v, NULL, false);
		diag_node(L, v, "parameters of stage '%s' must be a mapping, got %s", st->type->name, got);
		return;
	}
	st->timeout = common->has_timeout ? common->timeout : st->type->default_timeout;
	st->checkpoint = common->checkpoint;
	if (L->n_diags != before)
		return;
	_cleanup_error_ struct af_error *err = NULL;
	if (st->type->check && st->type->check(st->params, &err) < 0)
		diag_node(L, item, "%s", err ? af_error_msg(err) : "invalid parameters");
	else if (st->type->expand && st->type->expand(st->params, &L->vars, &err) < 0)
		diag_node(L, item, "%s", err ? af_error_msg(err) : "invalid parameters");
}

static bool id_valid(const char *id)
{
	if (!isalnum((unsigned char)*id))
		return false;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
			return false;
	return true;
}

/* Explicit ids are checked; defaults are "type", "type-2", ...  */
static void assign_id(struct loader *L, struct recipe *r, size_t i, struct common *common)
{
	struct stage_inst *st = &r->stages[i];
	struct id_site *site = &L->ids[i];
	if (common->id) {
		st->id = steal_pointer(&common->id);
		site->line = (unsigned)common->id_node->start_mark.line + 1;
		site->col = (unsigned)common->id_node->start_mark.column + 1;
		site->explicit_id = true;
		if (!id_valid(st->id)) {
			diag_node(L, common->id_node, "invalid stage id '%s'; use letters, digits, '_', '.' "
				  "and '-', starting with a letter or digit", st->id);
			return;
		}
	} else {
		if (!st->type)
			return;
		int nth = 0;
		for (size_t j = 0; j <= i; j++)
			nth += r->stages[j].type == st->type;
		st->id = nth == 1 ? xstrdup(st->type->name) : xasprintf("%s-%d", st->type->name, nth);
		site->line = st->line;
		site->col = st->column;
	}
	for (size_t j = 0; j < i; j++) {
		if (!r->stages[j].id || strcmp(r->stages[j].id, st->id))
			continue;
		char *msg = site->explicit_id
			? xasprintf("duplicate stage id '%s' (first used at %u:%u)", st->id, L->ids[j].line, L->ids[j].col)
			: xasprintf("the default stage id '%s' is already used at %u:%u; give this stage an id",
				    st->id, L->ids[j].line, L->ids[j].col);
		diag_add(L, site->line, site->col, msg);
		return;
	}
}

static void check_stages(struct loader *L, struct recipe *r, const yaml_node_t *n)
{
	if (n->type != YAML_SEQUENCE_NODE) {
		_cleanup_free_ char *got = param_describe(n, NULL, false);
		diag_node(L, n, "'stages' must be a list of stages, got %s", got);
		return;
	}
	size_t count = param_node_items(n);
	if (!count) {
		diag_node(L, n, "'stages' is empty; a recipe needs at least one stage");
		return;
	}
	r->stages = xcalloc(count, sizeof(*r->stages));
	L->ids = xcalloc(count, sizeof(*L->ids));
	struct common *commons = xcalloc(count, sizeof(*commons));
	r->n_stages = count;
	for (size_t i = 0; i < count; i++) {
		r->stages[i].index = (int)i + 1;
		check_stage(L, node_at(L, n->data.sequence.items.start[i]), &r->stages[i], &commons[i]);
	}
	/* After all types are known, so "type-2" counts every stage of a type. */
	for (size_t i = 0; i < count; i++) {
		assign_id(L, r, i, &commons[i]);
		free(commons[i].id);
	}
	free(commons);
}

/* ---- top level ---- */

enum top_key { TOP_NAME, TOP_DESCRIPTION, TOP_ARCH, TOP_ENV, TOP_VARS, TOP_STAGES, TOP_COUNT };
static const char *const top_keys[TOP_COUNT] = { "name", "description", "arch", "env", "vars", "stages" };

/* A name in vars or env: valid, and not one a credential may hide behind.
 * False after reporting. */
static bool declared_name_ok(struct loader *L, const yaml_node_t *k, const char *name, const char *where)
{
	if (!vars_name_valid(name)) {
		diag_node(L, k, "invalid variable name '%s' in %s; use letters, digits and '_'", name, where);
		return false;
	}
	const char *word = vars_name_credential(name);
	if (word) {
		diag_node(L, k, "variable '%s' in %s looks like a credential (its name contains %s); "
			  "credentials are never expanded into a recipe, so they cannot reach the image, "
			  "the logs or the journal: remove it", name, where, word);
		return false;
	}
	return true;
}

/* env: the names whose values may come from the environment. */
static void load_env(struct loader *L, const yaml_node_t *n)
{
	if (n->type != YAML_SEQUENCE_NODE) {
		if (node_is_null(n))
			return;
		_cleanup_free_ char *got = param_describe(n, NULL, false);
		diag_node(L, n, "'env' must be a list of variable names, got %s", got);
		return;
	}
	size_t i = 0;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
		const yaml_node_t *item = node_at(L, *it);
		if (item->type != YAML_SCALAR_NODE || param_node_empty(item)) {
			_cleanup_free_ char *got = param_describe(item, NULL, false);
			diag_node(L, item, "env[%zu] must be a variable name, got %s", i, got);
			continue;
		}
		const char *name = param_node_text(item);
		if (!declared_name_ok(L, item, name, "env"))
			continue;
		if (json_object_get(L->vars.declared, name)) {
			diag_node(L, item, "variable '%s' is listed twice in env; remove one", name);
			continue;
		}
		vars_declare(&L->vars, name);
	}
}

static void load_vars(struct loader *L, const yaml_node_t *n)
{
	if (n->type != YAML_MAPPING_NODE) {
		if (node_is_null(n))
			return;
		_cleanup_free_ char *got = param_describe(n, NULL, false);
		diag_node(L, n, "'vars' must be a mapping of NAME: value, got %s", got);
		return;
	}
	/* Every vars name is declared first: the environment may override any
	 * of them, even one a default before it uses. */
	for (size_t i = 0; i < param_node_pairs(n); i++) {
		const yaml_node_t *k = node_at(L, n->data.mapping.pairs.start[i].key);
		if (k->type == YAML_SCALAR_NODE && vars_name_valid(param_node_text(k)) &&
		    !vars_name_credential(param_node_text(k)))
			vars_declare(&L->vars, param_node_text(k));
	}
	/* In order, so a default may use the ones before it. */
	struct param_conv c = loader_conv(L, NULL, NULL);
	for (size_t i = 0; i < param_node_pairs(n); i++) {
		const char *name = param_pair_key(&c, n, i, "variable", NULL, "in vars");
		if (!name)
			continue;
		const yaml_node_t *k = node_at(L, n->data.mapping.pairs.start[i].key);
		const yaml_node_t *v = node_at(L, n->data.mapping.pairs.start[i].value);
		if (!declared_name_ok(L, k, name, "vars"))
			continue;
		if (v->type != YAML_SCALAR_NODE) {
			_cleanup_free_ char *got = param_describe(v, NULL, false);
			diag_node(L, v, "value of variable '%s' must be a string, got %s", name, got);
			continue;
		}
		if (vars_overridden(&L->vars, name))
			continue;
		_cleanup_free_ char *val = node_is_null(v) ? xstrdup("") : scalar_expand(L, v);
		if (val)
			vars_add_default(&L->vars, name, val);
	}
}

static char *top_string(struct loader *L, const struct param_spec *spec, const yaml_node_t *n)
{
	struct param_conv c = loader_conv(L, NULL, NULL);
	json_t *j = param_conv_value(&c, spec, spec->name, n);
	if (!j)
		return NULL;
	char *s = xstrdup(json_string_value(j));
	json_decref(j);
	return s;
}

static void check_root(struct loader *L, struct recipe *r, const yaml_node_t *root)
{
	if (root->type != YAML_MAPPING_NODE) {
		_cleanup_free_ char *got = param_describe(root, NULL, false);
		diag_node(L, root, "a recipe must be a mapping with name and stages, got %s", got);
		return;
	}
	const yaml_node_t *slot[TOP_COUNT] = { 0 };
	struct param_conv c = loader_conv(L, NULL, NULL);
	for (size_t i = 0; i < param_node_pairs(root); i++) {
		const char *key = param_pair_key(&c, root, i, "key", NULL, "at top level");
		if (!key)
			continue;
		size_t t = 0;
		while (t < TOP_COUNT && strcmp(top_keys[t], key))
			t++;
		if (t == TOP_COUNT) {
			diag_node(L, node_at(L, root->data.mapping.pairs.start[i].key),
				  "unknown key '%s' at top level; expected one of: name, description, arch, "
				  "env, vars, stages", key);
			continue;
		}
		slot[t] = node_at(L, root->data.mapping.pairs.start[i].value);
	}
	/* env before vars: a default may use a name the environment feeds. */
	if (slot[TOP_ENV])
		load_env(L, slot[TOP_ENV]);
	if (slot[TOP_VARS])
		load_vars(L, slot[TOP_VARS]);
	if (!slot[TOP_NAME])
		diag_node(L, root, "missing required key 'name' at top level");
	else if ((r->name = top_string(L, &spec_name, slot[TOP_NAME])) && !*r->name)
		diag_node(L, slot[TOP_NAME], "'name' must not be empty");
	if (slot[TOP_DESCRIPTION] && !node_is_null(slot[TOP_DESCRIPTION]))
		r->description = top_string(L, &spec_description, slot[TOP_DESCRIPTION]);
	r->arch = slot[TOP_ARCH] ? top_string(L, &spec_arch, slot[TOP_ARCH]) : xstrdup("x86_64");
	if (!slot[TOP_STAGES])
		diag_node(L, root, "missing required key 'stages' at top level; a recipe needs at least one stage");
	else
		check_stages(L, r, slot[TOP_STAGES]);
}

/* libyaml reader errors (bad encoding) carry only a byte offset. */
static yaml_mark_t mark_from_offset(const char *buf, size_t len, size_t off)
{
	yaml_mark_t m = { .index = off };
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			m.line++;
			m.column = 0;
		} else {
			m.column++;
		}
	}
	return m;
}

static void syntax_error(struct loader *L, const yaml_parser_t *p, const char *buf, size_t len)
{
	if (p->error == YAML_MEMORY_ERROR)
		BUG("out of memory parsing %s", L->path);
	yaml_mark_t m = p->error == YAML_READER_ERROR ? mark_from_offset(buf, len, p->problem_offset)
						      : p->problem_mark;
	diag_mark(L, m, xasprintf("YAML syntax error: %s%s%s", p->problem ? p->problem : "invalid YAML",
				  p->context ? " " : "", p->context ? p->context : ""));
}

/* The file's text, at most RECIPE_MAX_BYTES; NULL after reporting.  Read
 * with a bound (not by its size) so a FIFO or /dev/zero named as a recipe
 * ends too. */
static char *read_recipe(struct loader *L, size_t *len)
{
	_cleanup_fd_ int fd = open(L->path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		diag_add(L, 0, 0, xasprintf("cannot read: %s", strerror(errno)));
		return NULL;
	}
	if (S_ISDIR(st.st_mode)) {
		diag_add(L, 0, 0, xasprintf("cannot read: %s", strerror(EISDIR)));
		return NULL;
	}
	if (S_ISREG(st.st_mode) && st.st_size > RECIPE_MAX_BYTES) {
		diag_add(L, 0, 0, xasprintf("the recipe is %lld bytes, more than the 1 MiB a recipe may "
					    "hold; keep large content in files next to it (a run script, "
					    "files sources)", (long long)st.st_size));
		return NULL;
	}
	_cleanup_free_ char *buf = xmalloc(RECIPE_MAX_BYTES + 2);
	ssize_t n = read_all(fd, buf, RECIPE_MAX_BYTES + 1);
	if (n < 0) {
		diag_add(L, 0, 0, xasprintf("cannot read: %s", strerror(errno)));
		return NULL;
	}
	if (n > RECIPE_MAX_BYTES) {
		diag_add(L, 0, 0, xstrdup("the recipe is more than the 1 MiB a recipe may hold; keep "
					  "large content in files next to it (a run script, files sources)"));
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return steal_pointer(&buf);
}

/* libyaml's loader is quadratic in the nesting depth (100k levels took a
 * minute), so the depth is checked on the event stream first, which stops
 * at the first level too deep, before any node is built.  0, or -1 after
 * reporting.  Syntax errors are left to the loader, which reports them. */
static int check_depth(struct loader *L, const char *buf, size_t len)
{
	_cleanup_yaml_parser_ yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		BUG("out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	int depth = 0;
	for (;;) {
		yaml_event_t ev;
		if (!yaml_parser_parse(&parser, &ev))
			return 0;
		yaml_event_type_t type = ev.type;
		yaml_mark_t mark = ev.start_mark;
		yaml_event_delete(&ev);
		if (type == YAML_STREAM_END_EVENT)
			return 0;
		if (type == YAML_SEQUENCE_START_EVENT || type == YAML_MAPPING_START_EVENT) {
			if (++depth > RECIPE_MAX_DEPTH) {
				diag_mark(L, mark, xasprintf("the recipe nests deeper than %d levels of "
							     "mappings and lists; flatten it",
							     RECIPE_MAX_DEPTH));
				return -1;
			}
		} else if (type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT) {
			depth--;
		}
	}
}

/* Parses the file into doc.  0, or -1 after reporting. */
static int parse_file(struct loader *L, yaml_document_t *doc)
{
	size_t len = 0;
	_cleanup_free_ char *buf = read_recipe(L, &len);
	if (!buf || check_depth(L, buf, len) < 0)
		return -1;
	_cleanup_yaml_parser_ yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		BUG("out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, doc)) {
		syntax_error(L, &parser, buf, len);
		return -1;
	}
	const yaml_node_t *root = yaml_document_get_root_node(doc);
	if (!root) {
		yaml_document_delete(doc);
		diag_add(L, 1, 1, xstrdup("the recipe is empty; it needs at least name and stages"));
		return -1;
	}
	yaml_document_t second;
	if (!yaml_parser_load(&parser, &second)) {
		syntax_error(L, &parser, buf, len);
		yaml_document_delete(doc);
		return -1;
	}
	const yaml_node_t *extra = yaml_document_get_root_node(&second);
	if (extra)
		diag_node(L, extra, "a recipe is a single YAML document; remove the one after '---'");
	yaml_document_delete(&second);
	if (extra) {
		yaml_document_delete(doc);
		return -1;
	}
	return 0;
}

static char *recipe_stem(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = strlen(base);
	if (str_has_suffix(base, ".yaml"))
		n -= 5;
	else if (str_has_suffix(base, ".yml"))
		n -= 4;
	return xstrndup(base, n);
}

static char *recipe_dir(const char *path)
{
	_cleanup_free_ char *copy = xstrdup(path);
	char *real = realpath(dirname(copy), NULL);
	if (real)
		return real;
	/* The file is unreadable anyway; keep an absolute guess for messages. */
	_cleanup_free_ char *cwd = getcwd(NULL, 0);
	_cleanup_free_ char *copy2 = xstrdup(path);
	return path[0] == '/' || !cwd ? xstrdup(dirname(copy2)) : path_join(cwd, dirname(copy2));
}

/* ---- the stage order: facts each stage needs from earlier ones ---- */

struct facts_report {
	struct loader *L;
	const struct recipe *r;
};

static void report_fact(void *data, size_t i, const char *msg)
{
	struct facts_report *f = data;
	const struct stage_inst *s = &f->r->stages[i];
	diag_add(f->L, s->line, s->column, xstrdup(msg));
}

/* Only for a recipe that parsed cleanly: its stage list is then complete. */
static void check_facts(struct loader *L, const struct recipe *r)
{
	_cleanup_free_ struct fact_stage *fs = xcalloc(r->n_stages ? r->n_stages : 1, sizeof(*fs));
	for (size_t i = 0; i < r->n_stages; i++)
		fs[i] = (struct fact_stage){ r->stages[i].type, r->stages[i].params, r->stages[i].id };
	struct facts_report f = { L, r };
	struct fact_types types;
	types.all = registry_all(&types.n);
	facts_check(fs, r->n_stages, &types, report_fact, &f);
}

int recipe_load(const char *path, char *const *sets, size_t n_sets, struct recipe **out,
		struct diag_list *diags)
{
	struct loader L = { .path = path };
	vars_init(&L.vars);
	for (size_t i = 0; i < n_sets; i++) {
		_cleanup_error_ struct af_error *err = NULL;
		if (vars_add_set(&L.vars, sets[i], &err) < 0)
			diag_add(&L, 0, 0, xstrdup(af_error_msg(err)));
	}
	struct recipe *r = xcalloc(1, sizeof(*r));
	r->path = xstrdup(path);
	r->stem = recipe_stem(path);
	r->dir = recipe_dir(path);
	L.dir = r->dir;
	yaml_document_t doc;
	if (parse_file(&L, &doc) == 0) {
		L.doc = &doc;
		check_root(&L, r, yaml_document_get_root_node(&doc));
		yaml_document_delete(&doc);
	}
	free(L.ids);
	vars_release(&L.vars);
	if (!L.n_diags)
		check_facts(&L, r);
	if (L.n_diags) {
		diags_flush(&L, diags);
		recipe_free(r);
		return -1;
	}
	free(L.diags);
	*out = r;
	return 0;
}

void recipe_free(struct recipe *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_stages; i++) {
		free(r->stages[i].id);
		json_decref(r->stages[i].params);
		json_decref(r->stages[i].file_hashes);
	}
	free(r->stages);
	free(r->path);
	free(r->dir);
	free(r->stem);
	free(r->name);
	free(r->description);
	free(r->arch);
	free(r);
}

int recipe_find_stage(const struct recipe *r, const char *id)
{
	for (size_t i = 0; i < r->n_stages; i++)
		if (r->stages[i].id && !strcmp(r->stages[i].id, id))
			return (int)i;
	return -1;
}
