/* SPDX-License-Identifier: Apache-2.0 */
/* The build driver: runs a recipe's stages in order, each in a child in its
 * own PID + mount namespace, journals every step, checkpoints the disk and
 * resumes.  Returns the process exit code (DESIGN §4) and prints errors. */
#ifndef AMIFORGE_RUNNER_H
#define AMIFORGE_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

enum exit_code {
	EXIT_OK = 0,
	EXIT_STAGE_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_RECIPE_INVALID = 65,
	EXIT_UNAVAILABLE = 69,
	EXIT_NOPERM = 77,
	EXIT_INTERRUPTED = 130,
};

struct build_opts {
	const char *recipe;
	const char *state_dir;   /* NULL: ./.amiforge/<recipe stem> */
	const char *cache_dir;   /* NULL: the default (DESIGN §5) */
	char *const *sets;       /* "VAR=VALUE" */
	size_t n_sets;
	const char *from;        /* stage id or NULL */
	bool fresh;
};

int runner_build(const struct build_opts *o);

/* STATE for a recipe: dir if given, else ./.amiforge/STEM.  Caller frees. */
char *runner_state_dir(const char *dir, const char *stem);
/* The shared package cache: dir if given, else /var/cache/amiforge as root,
 * else $XDG_CACHE_HOME/amiforge (~/.cache/amiforge).  Caller frees. */
char *runner_cache_dir(const char *dir);

#endif
