/* SPDX-License-Identifier: Apache-2.0 */
/* The process exit codes every command returns (DESIGN §4): scripts and CI
 * pipelines depend on them, so they live here once. */
#ifndef AMIFORGE_EXITCODES_H
#define AMIFORGE_EXITCODES_H

enum exit_code {
	EXIT_OK = 0,
	EXIT_STAGE_FAILED = 1,    /* a stage (or a remote call) failed: the journal keeps what was done */
	EXIT_USAGE = 2,           /* bad command line */
	EXIT_RECIPE_INVALID = 65, /* the recipe does not validate: FILE:LINE:COLUMN messages */
	EXIT_UNAVAILABLE = 69,    /* a needed tool, device or service is unavailable */
	EXIT_NOPERM = 77,         /* not enough privilege (root for loop devices and mounts) */
	EXIT_INTERRUPTED = 130,   /* SIGINT/SIGTERM: a re-run resumes */
};

#endif
