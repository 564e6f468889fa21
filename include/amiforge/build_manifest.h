/* SPDX-License-Identifier: Apache-2.0 */
/* STATE/manifest.json, what a build made (DESIGN §4), version 2; its shape
 * is schemas/manifest.schema.json.  The runner hands over what it knows
 * (the stage reports, the merged outputs, how the build ended); this
 * module adds what it can find out by itself: the image's sizes and
 * SHA-256, the recipe file's SHA-256, the git commit of the recipe's work
 * tree, amiforge's version, and the convenience "ami" from the last stage
 * that registered one.
 *
 * Hashing a large image costs seconds, so the image's SHA-256 is reused
 * from the manifest already in STATE when that one was taken for the same
 * final disk key and the file's size and inode change time (for a block
 * device: its size) are still what it recorded. */
#ifndef AMIFORGE_BUILD_MANIFEST_H
#define AMIFORGE_BUILD_MANIFEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct af_error;

#define BUILD_MANIFEST_VERSION 2

struct build_manifest_timings {
	double total_seconds;
	double checkpoint_seconds;
	uint64_t checkpoint_bytes_new;
	long engine_peak_rss_kib;
};

/* Everything is borrowed; NULL means absent unless said otherwise. */
struct build_manifest {
	const char *state;        /* absolute STATE (required) */
	const char *name;         /* the expanded recipe name (required) */
	const char *arch;         /* (required) */
	const char *recipe_path;  /* the recipe file as given (required) */
	const char *image;        /* the image's path; nothing is said of it when it does not exist */
	bool image_is_device;
	/* The disk key the image is in: the last stage's.  Used only when the
	 * status is "ok": after a failure the failing stage may have written
	 * to the image, and that hash is never reused later. */
	const char *disk_key;
	const char *status;       /* "ok", "failed" or "interrupted" (required) */
	const char *failed_stage; /* the id of the stage that failed */
	const char *error;        /* why the build did not end ok */
	/* The stage reports, in order: objects with index, id, type, key,
	 * status, seconds, cached and, per stage, outputs, error, resources.
	 * Required. */
	const json_t *stages;
	const json_t *outputs;    /* every stage's outputs merged, later wins (required) */
	struct build_manifest_timings timings;
	time_t finished;
};

/* The manifest as a new JSON object, credentials redacted (redact.h).
 * What cannot be found out (an unreadable image, no git) is left out with
 * a warning in the log at most: a manifest is always produced. */
json_t *build_manifest_json(const struct build_manifest *m);

/* Writes build_manifest_json(M) to STATE/manifest.json (atomically,
 * 0600).  0, or -1 + err naming the file. */
int build_manifest_write(const struct build_manifest *m, struct af_error **err);

/* The "ami" object from the stage reports STAGES: the last done stage whose
 * outputs hold ami.id gives id, name, region, regions {REGION: AMI},
 * snapshots {REGION: [snap...]}, expires and shares.  A new object, or NULL
 * when no stage registered an AMI. */
json_t *build_manifest_ami(const json_t *stages);

#endif
