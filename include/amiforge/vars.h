/* SPDX-License-Identifier: Apache-2.0 */
/* Recipe variables (DESIGN §3): ${VAR}, ${VAR:-default} (the default, which
 * may hold references itself, is used when VAR is undefined or empty) and
 * "$$" for a literal "$".  A "$" followed by anything else stays as written,
 * so shell commands keep their own "$HOME".
 *
 * Lookup order: --set, the environment, the recipe's vars, then the
 * built-ins BUILD_DATE (YYYYMMDD) and BUILD_TIME (HHMMSS), UTC, from
 * SOURCE_DATE_EPOCH when it is set, else the time of vars_init().
 *
 * The environment feeds only declared names (vars_declare: the recipe's
 * vars and env lists), so a recipe cannot pick up whatever the build host
 * happens to export.  A credential-looking name (vars_name_credential) is
 * never expanded, whatever defines it: a reference to one is an error, and
 * --set of one is refused. */
#ifndef AMIFORGE_VARS_H
#define AMIFORGE_VARS_H

#include <stdbool.h>
#include <time.h>
#include <jansson.h>

struct af_error;

struct vars {
	json_t *sets;      /* --set NAME -> value (owned) */
	json_t *defaults;  /* the recipe's vars NAME -> value (owned) */
	json_t *declared;  /* names the environment may feed: NAME -> true (owned) */
	time_t now;        /* used when SOURCE_DATE_EPOCH is unset */
};

void vars_init(struct vars *v);
void vars_release(struct vars *v);

/* [A-Za-z_][A-Za-z0-9_]* */
bool vars_name_valid(const char *name);

/* The one rule for names that may hold a credential: AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN, AWS_SECURITY_TOKEN and any name containing SECRET,
 * TOKEN, PASSWORD, PASSWD or PRIVATE_KEY, in any case, unless it ends in
 * _FILE or _PATH: BUNDLE_PRIVATE_KEY_FILE holds where the key is, which
 * may be expanded (the key's content never is).  Returns the word that
 * matched (upper case, static) or NULL. */
const char *vars_name_credential(const char *name);

/* Adds a --set "NAME=VALUE" (a later one wins).  0, or -1 + err when the
 * text has no '=', the name is invalid or looks like a credential (the
 * message never repeats the value). */
int vars_add_set(struct vars *v, const char *assignment, struct af_error **err);
/* Lets the environment feed NAME (the recipe's env and vars lists). */
void vars_declare(struct vars *v, const char *name);
/* Adds a recipe default (already expanded). */
void vars_add_default(struct vars *v, const char *name, const char *value);
/* True when --set, or the environment for a declared name, defines NAME (a
 * recipe default for it is then never used). */
bool vars_overridden(const struct vars *v, const char *name);

/* Called once per problem found while expanding (msg is borrowed). */
typedef void (*vars_report_fn)(void *data, const char *msg);

/* Expands every reference in text.  Returns the new string (caller frees),
 * or NULL after calling report() for each problem: an undefined variable
 * (with a hint when the environment has it but the recipe does not declare
 * it), a credential-looking name, a malformed or unterminated reference, an
 * invalid SOURCE_DATE_EPOCH. */
char *vars_expand(const struct vars *v, const char *text, vars_report_fn report, void *data);

#endif
