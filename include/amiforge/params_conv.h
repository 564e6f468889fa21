/* SPDX-License-Identifier: Apache-2.0 */
/* Typed conversion of YAML values against a param_spec table, for the
 * recipe loader only (engine/core/recipe.c and engine/stage/params.c include this;
 * params.h stays free of libyaml).  The conversion knows the schema and its
 * messages; the loader owns the document, the diagnostics and the variables
 * and lends them through struct param_conv. */
#ifndef AMIFORGE_PARAMS_CONV_H
#define AMIFORGE_PARAMS_CONV_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <yaml.h>

#include "amiforge/params.h"
#include "amiforge/util.h"

/* ---- nodes ---- */

/* The node with this id; a missing one is a libyaml invariant broken. */
static inline yaml_node_t *param_node_at(yaml_document_t *doc, int id)
{
	yaml_node_t *n = yaml_document_get_node(doc, id);
	if (!n)
		BUG("yaml node %d missing", id);
	return n;
}

static inline const char *param_node_text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static inline bool param_node_plain(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* An unquoted empty value ("key:" with nothing after it). */
static inline bool param_node_empty(const yaml_node_t *n)
{
	return param_node_plain(n) && !*param_node_text(n);
}

static inline size_t param_node_pairs(const yaml_node_t *n)
{
	return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

static inline size_t param_node_items(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* ---- suggestions ("did you mean") ---- */

struct param_suggest {
	const char *best;
	size_t dist;
	bool tie;  /* two candidates equally close: suggest neither */
};

/* Considers candidate as a correction of word. */
void param_suggest_try(struct param_suggest *s, const char *word, const char *candidate);
/* "; did you mean 'X'?" or "".  Caller frees. */
char *param_suggest_text(const struct param_suggest *s);

/* ---- conversion ---- */

struct param_conv;

/* Called for a key of extra_keys in a stage's own mapping, instead of
 * converting it against the table. */
typedef void (*param_extra_fn)(struct param_conv *c, void *extra_data, const char *key,
			       const yaml_node_t *v);

struct param_conv {
	yaml_document_t *doc;
	const char *recipe_dir;        /* PT_PATH resolves inside it (absolute) */
	const char *stage;             /* stage type for messages, NULL at top level */
	json_t *hashes;                /* PT_PATH content hashes by name, or NULL */
	/* Keys every stage takes besides its table (id, timeout, ...), NULL-
	 * terminated, or NULL; offered in suggestions too. */
	const char *const *extra_keys;
	param_extra_fn take_extra;
	void *extra_data;
	/* The loader's side.  report: a problem at n (msg is borrowed).
	 * expand: the scalar's text with variables expanded (caller frees), or
	 * NULL after reporting. */
	void (*report)(void *data, const yaml_node_t *n, const char *msg);
	char *(*expand)(void *data, const yaml_node_t *n);
	void *data;
	size_t problems;               /* reports and failed expansions so far */
};

/* What the recipe holds, for "got ...": "a list", "nothing", a quoted
 * (redacted, shortened) value...  text: the expanded scalar, or NULL for the
 * raw one.  Caller frees. */
char *param_describe(const yaml_node_t *n, const char *text, bool quoted_matters);

/* The key of pair i of map as a name, or NULL after reporting (non-scalar
 * keys, duplicates).  Messages read "duplicate WHAT 'PREFIX.KEY' WHERE
 * (first used at L:C)".  Borrowed from the document. */
const char *param_pair_key(struct param_conv *c, const yaml_node_t *map, size_t i,
			   const char *what, const char *prefix, const char *where);

/* n converted against spec (messages name it `name`); a new reference, or
 * NULL after reporting. */
json_t *param_conv_value(struct param_conv *c, const struct param_spec *spec, const char *name,
			 const yaml_node_t *n);

/* A stage's own parameters: map checked against table, extra keys handed to
 * take_extra; a missing required parameter is reported at pos.  Returns the
 * typed object even when problems were reported (compare c->problems). */
json_t *param_conv_object(struct param_conv *c, const struct param_spec *table,
			  const yaml_node_t *map, const yaml_node_t *pos);

#endif
