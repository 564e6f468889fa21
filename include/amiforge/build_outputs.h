/* SPDX-License-Identifier: Apache-2.0 */
/* What a build made, for whoever runs it next (DESIGN §4): the summary at
 * the end of the human output, and KEY=VALUE lines for a CI pipeline's
 * next step (GitHub Actions' $GITHUB_OUTPUT, GitLab's dotenv reports,
 * any shell: --outputs-env FILE).
 *
 * The summary, from the merged stage outputs (facts.h):
 *   image      the image file (absent for a block device or none)
 *   image_size its size in bytes
 *   snapshot_id, snapshot_region
 *   ami_id     the registered AMI; ami_ids: {REGION: AMI} with every copy
 *   bundle     BUCKET/PREFIX/NAME.manifest.xml of an uploaded bundle, else
 *              the local manifest's path
 *   manifest   STATE/manifest.json */
#ifndef AMIFORGE_BUILD_OUTPUTS_H
#define AMIFORGE_BUILD_OUTPUTS_H

#include <jansson.h>
#include <stdbool.h>

struct af_error;

/* A new object as above.  IMAGE: the image path (NULL: none);
 * MANIFEST: the manifest's path (NULL: none written). */
json_t *build_outputs_summary(const json_t *facts, const char *image, const char *manifest);

/* "made:" and one line per thing made, on stdout (nothing when empty). */
void build_outputs_print(const json_t *summary);

/* Appends KEY=VALUE lines to PATH (created 0600 if missing): ami_id,
 * ami_ids (compact JSON), snapshot_id, image, manifest, bundle; values
 * with a newline are refused rather than written ambiguously.  0 or -1 +
 * err naming PATH. */
int build_outputs_append(const char *path, const json_t *summary, struct af_error **err);

#endif
