/* SPDX-License-Identifier: Apache-2.0 */
/* The build driver: runs a recipe's stages in order, each in a child in its
 * own PID + mount namespace, journals every step, checkpoints the disk and
 * resumes.  Returns the process exit code (DESIGN §4) and prints errors. */
#ifndef AMIFORGE_RUNNER_H
#define AMIFORGE_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

#include "amiforge/exitcodes.h"

struct build_opts {
	const char *recipe;
	const char *state_dir;   /* NULL: ./.amiforge/<recipe stem> */
	const char *cache_dir;   /* NULL: the default (DESIGN §5) */
	char *const *sets;       /* "VAR=VALUE" */
	size_t n_sets;
	const char *from;        /* stage id or NULL */
	bool fresh;
	const char *remote;      /* --remote s3://BUCKET/PREFIX, or NULL: AMIFORGE_REMOTE */
	bool remote_required;    /* an unusable remote store fails the build */
	double remote_wait;      /* seconds to wait for the state's lease */
	const char *outputs_env; /* --outputs-env FILE: KEY=VALUE lines of what was made */
};

int runner_build(const struct build_opts *o);

/* STATE for a recipe: dir if given, else ./.amiforge/STEM.  Caller frees. */
char *runner_state_dir(const char *dir, const char *stem);
/* The shared package cache: dir if given, else /var/cache/amiforge as root,
 * else $XDG_CACHE_HOME/amiforge (~/.cache/amiforge).  Caller frees. */
char *runner_cache_dir(const char *dir);

#endif
