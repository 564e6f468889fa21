/* SPDX-License-Identifier: Apache-2.0 */
/* Parameter schemas: each stage type declares its parameters as a table;
 * the recipe loader checks a stage's YAML against it and produces a typed
 * jansson object.  Parsed values:
 *   PT_STRING, PT_ENUM   -> JSON string
 *   PT_INT               -> JSON integer
 *   PT_BOOL              -> JSON true/false
 *   PT_SIZE              -> JSON integer, bytes ("2GiB", "512M", "4096")
 *   PT_DURATION          -> JSON integer, seconds ("90s", "10m", "2h", "7d")
 *   PT_STRINGS           -> JSON array of strings (a scalar becomes [scalar])
 *   PT_MAP               -> JSON object of string -> string
 *   PT_LIST              -> JSON array of objects, each checked against .sub
 *   PT_OBJECT            -> JSON object checked against .sub
 *   PT_COMMAND           -> JSON string (to run with /bin/sh -c) or array of
 *                           strings (argv), as written
 *   PT_PATH              -> JSON string: an absolute path, resolved against the
 *                           recipe's directory.  It must exist; its content
 *                           (file or directory tree) is hashed into the stage
 *                           key, so editing the file re-runs the stage.  It
 *                           must lie inside the recipe's directory (also
 *                           after symbolic links) unless the parameter is
 *                           PARAM_HOST_FILE. */
#ifndef AMIFORGE_PARAMS_H
#define AMIFORGE_PARAMS_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

enum param_type {
	PT_STRING,
	PT_INT,
	PT_BOOL,
	PT_SIZE,
	PT_DURATION,
	PT_ENUM,
	PT_STRINGS,
	PT_MAP,
	PT_LIST,
	PT_OBJECT,
	PT_PATH,
	PT_COMMAND,
};

#define PARAM_REQUIRED 0x1u
/* PT_PATH only: a file of the build host's rather than of the recipe, for
 * secrets and per-machine material that must not be committed beside the
 * recipe (a bundle's X.509 key and certificate, a manifest to upload).  An
 * absolute path may then name a file anywhere (a relative one still
 * resolves against the recipe's directory), and the stage key holds the
 * file's SHA-256 fingerprint but not its path: the same file elsewhere,
 * on another machine, gives the same key; other content gives another. */
#define PARAM_HOST_FILE 0x2u

struct param_spec {
	const char *name;              /* NULL ends a table */
	enum param_type type;
	unsigned flags;                /* PARAM_REQUIRED, PARAM_HOST_FILE */
	const char *const *choices;    /* PT_ENUM: NULL-terminated */
	const struct param_spec *sub;  /* PT_LIST, PT_OBJECT */
	const char *help;              /* one line for `amiforge stages` */
	const char *defval;            /* documentation of the default, or NULL */
};

const char *param_type_name(enum param_type t);

/* Unit parsing, shared by the recipe loader and the CLI.  0 on success,
 * -1 if the text is not a valid size/duration (no error object: the caller
 * knows the position).  Sizes: digits with optional K/KiB/M/MiB/G/GiB/T/TiB
 * (binary; "KB"/"MB"/... are accepted as binary too) or B; durations: digits
 * with s/m/h/d (bare digits are seconds). */
int param_parse_size(const char *text, uint64_t *out);
int param_parse_duration(const char *text, uint64_t *out);

/* Accessors for stage code; the schema guarantees the types, so these only
 * supply defaults for absent optional parameters. */
const char *params_str(const json_t *params, const char *name, const char *def);
int64_t params_int(const json_t *params, const char *name, int64_t def);
bool params_bool(const json_t *params, const char *name, bool def);
/* Borrowed; NULL when absent. */
const json_t *params_get(const json_t *params, const char *name);

#endif
