/* SPDX-License-Identifier: Apache-2.0 */
/* The recipe JSON Schema (draft 2020-12), generated from the stage registry
 * and the parameter tables, so that it cannot drift from what the loader
 * accepts.  `amiforge schema` prints it; schemas/recipe.schema.json is that
 * output.  The schema accepts a superset of what `amiforge validate` does:
 * cross-parameter rules (check, plan_check), stage order and variables'
 * definitions are left to the loader. */
#ifndef AMIFORGE_SCHEMA_H
#define AMIFORGE_SCHEMA_H

#include <jansson.h>

#include "amiforge/params.h"

/* The whole recipe schema.  New reference; never NULL (allocation failure
 * aborts). */
json_t *schema_recipe(void);

/* The schema text as `amiforge schema` prints it: keys in a fixed order,
 * two-space indent, a trailing newline.  Caller frees. */
char *schema_recipe_text(void);

/* One parameter's schema: its type (with ${VAR} allowed where the type is
 * not a string), description and literal default.  New reference. */
json_t *schema_param(const struct param_spec *spec);

/* spec->defval as a JSON value of the parameter's type when it is a
 * literal ("16", "true", "1h", "[main]"), NULL when it is prose ("the
 * image size rounded up") or absent.  New reference or NULL. */
json_t *schema_default(const struct param_spec *spec);

#endif
