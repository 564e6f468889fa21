/* SPDX-License-Identifier: Apache-2.0 */
/* Recipe loading (libyaml): variables, schema checks, every error reported
 * as FILE:LINE:COLUMN: message (1-based), all of them in one run.
 *
 * Top-level keys: name (string, required), description (string),
 * arch (x86_64 | arm64, default x86_64), env (list of names the
 * environment may feed), vars (mapping of defaults), stages (non-empty
 * list).  Each stage item is a mapping with exactly one
 * key, the stage type; its value (a mapping, or null/empty for no
 * parameters) holds the parameters plus the common keys id, timeout and
 * checkpoint (auto | always | never).
 *
 * Variables: ${VAR} and ${VAR:-default} in any scalar value; "$$" is a
 * literal "$".  Lookup order: --set, then the environment, then the recipe's
 * vars, then built-ins BUILD_DATE (YYYYMMDD, UTC) and BUILD_TIME (HHMMSS,
 * UTC), both from SOURCE_DATE_EPOCH when set, else the current time.  The
 * environment counts only for names listed in env or vars; credential-looking
 * names are refused wherever they appear (vars.h). */
#ifndef AMIFORGE_RECIPE_H
#define AMIFORGE_RECIPE_H

#include <stddef.h>
#include <jansson.h>

#include "amiforge/stage.h"

enum checkpoint_policy { CKPT_AUTO, CKPT_ALWAYS, CKPT_NEVER };

struct stage_inst {
	const struct stage_type *type;
	char *id;
	int index;                    /* 1-based */
	json_t *params;               /* typed, expanded (owned) */
	uint64_t timeout;             /* seconds, 0 = none */
	enum checkpoint_policy checkpoint;
	/* SHA-256 hex of every PT_PATH parameter's content, as an object
	 * "param name" -> hex (for PT_PATH inside lists: "name[i].sub").  Owned. */
	json_t *file_hashes;
	unsigned line, column;        /* 1-based position of the stage item */
};

struct recipe {
	char *path;                   /* as given */
	char *dir;                    /* absolute directory */
	char *stem;                   /* file name without directory and .yaml/.yml */
	char *name;                   /* expanded */
	char *description;            /* or NULL */
	char *arch;
	struct stage_inst *stages;
	size_t n_stages;
};

/* Diagnostics collected during a load, credentials redacted (redact.h). */
struct diag_list {
	char **lines;  /* "FILE:LINE:COLUMN: message" */
	size_t n;
};
void recipe_diags_release(struct diag_list *d);

/* A recipe is refused (before parsing) when larger than this, and while
 * parsing, before any node is built, when mappings and lists nest deeper
 * than RECIPE_MAX_DEPTH: libyaml's loader is quadratic in the depth. */
#define RECIPE_MAX_BYTES (1 << 20)
#define RECIPE_MAX_DEPTH 64

/* sets: "VAR=VALUE" strings from --set (borrowed), n_sets of them.
 * Returns 0 and *out on success; -1 with every problem in diags otherwise
 * (including an unreadable file: "FILE: cannot read: strerror", one too
 * large or too deep). */
int recipe_load(const char *path, char *const *sets, size_t n_sets,
		struct recipe **out, struct diag_list *diags);
void recipe_free(struct recipe *r);

/* Index (0-based) of the stage with this id, or -1. */
int recipe_find_stage(const struct recipe *r, const char *id);

#endif
