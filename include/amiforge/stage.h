/* SPDX-License-Identifier: Apache-2.0 */
/* A stage type: one file in stages/, one `const struct stage_type`, one line
 * in stages/registry.c.  The engine knows nothing about any particular stage.
 *
 * Adding a stage:
 *   1. stages/<type>.c: a static param_spec table, a static run(), and
 *      `const struct stage_type stage_<type> = { .name = "<type>", ... };`
 *      Everything else in the file is static.
 *   2. declare it in stages/registry.c and add it to the sorted table there.
 *   3. set the flags: the runner (never the stage) attaches loop devices,
 *      mounts the root filesystem and prepares the chroot.
 *   4. declare needs and provides (facts.h; a new fact is one line there):
 *      the recipe loader checks the order, the runner the outputs.
 *   5. document its parameters (help strings) and add a test.
 *
 * How a stage runs: the runner forks a child in a new PID and mount
 * namespace (it dies with the engine: PR_SET_PDEATHSIG), with stdout and
 * stderr on STATE/logs/NN-ID.log.  run() executes in that child; when it
 * returns, the child reports outputs or the error to the runner.  Anything it
 * started is killed with the namespace.  The stage timeout kills the child. */
#ifndef AMIFORGE_STAGE_H
#define AMIFORGE_STAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "amiforge/params.h"

struct af_error;
struct vars;
struct fact_plan;

/* A fact a stage cannot run without (the catalogue: facts.h). */
struct fact_need {
	const char *facts;  /* "a", or "a|b": either, from an earlier stage; NULL ends a list */
	const char *unless; /* NULL, or "p" / "p|q": a parameter that supplies it instead */
};

enum stage_flags {
	STAGE_NEEDS_IMAGE = 1u << 0,  /* reads or writes STATE/disk.img (checkpointed after) */
	STAGE_NEEDS_MOUNT = 1u << 1,  /* the root filesystem mounted at ctx->root */
	STAGE_NEEDS_CHROOT = 1u << 2, /* /proc, /dev, /sys, resolv.conf, policy-rc.d prepared in ctx->root */
	STAGE_NETWORK = 1u << 3,      /* uses the network (package mirror) */
	STAGE_REMOTE = 1u << 4,       /* creates remote resources (AWS) */
};

/* What the runner hands a stage.  All pointers are borrowed and valid for the
 * duration of run(). */
struct stage_ctx {
	const char *id;          /* the stage's id */
	int index;               /* 1-based position in the recipe */
	const char *key;         /* hex SHA-256 stage key */
	const char *arch;        /* recipe arch: x86_64 | arm64 */
	const char *recipe_name; /* the recipe's name (expanded); not part of the stage key */
	const json_t *params;    /* typed parameters (see params.h) */
	const char *recipe_dir;  /* absolute directory of the recipe file */
	const char *state_dir;   /* absolute STATE */
	const char *cache_dir;   /* absolute shared package cache (DESIGN §5) */
	const char *image;       /* absolute STATE/disk.img, or the block device */
	const char *root;        /* mount point of the root fs (STAGE_NEEDS_MOUNT) or NULL */
	/* Outputs of every completed earlier stage, merged in order (later wins):
	 * a flat object.  Conventions the runner relies on to mount the root:
	 *   "disk.path" (string), "disk.size" (int), "disk.is_device" (bool),
	 *   "root.offset" (int bytes), "root.size" (int bytes),
	 *   "root.fstype" (string), "root.uuid", "root.label" (string),
	 *   "partition.table" ("none"|"mbr"|"gpt"). */
	const json_t *facts;
	/* This stage's outputs: the stage adds to it (json_object_set_new).  The
	 * runner journals them and merges them into facts for later stages. */
	json_t *outputs;
	double deadline;         /* monotonic seconds, 0 = none; commands must not outlive it */
	int log_fd;              /* the stage log (also the child's stdout/stderr) */
	/* Every resource earlier attempts of this stage (same key, since the last
	 * --fresh) reported with stage_journal_resource(), oldest first: what a
	 * resumed stage continues (a snapshot id, blocks already sent) instead of
	 * making again. */
	const json_t *resources;
	/* The disk state the image is in when the stage starts: the previous
	 * stage's disk key (plan.h; "" before the first stage).  Its checkpoint
	 * list, if one was taken, is ckpt_dir/IMAGE_KEY.ckpt (checkpoint.h). */
	const char *image_key;
	const char *ckpt_dir;    /* absolute STATE/checkpoints */
	/* The outputs of this stage id's newest completed run with another key
	 * in this state's journal (resets included), or NULL: what it made last
	 * time (a snapshot to be the parent of the next one). */
	const json_t *previous;
	struct stage_channel *channel; /* the runner's; use stage_journal_resource() */
};

/* Journals a remote resource or progress (a JSON object of the stage's own
 * shape) the moment it exists: it is in STATE/journal, fsync'd, when this
 * returns, so a crash at any later moment cannot make the build lose or
 * duplicate it.  Secrets must never be in it.  0 or -1 + err (then stop:
 * the journal cannot be written). */
int stage_journal_resource(struct stage_ctx *ctx, const json_t *resource, struct af_error **err);

struct stage_type {
	const char *name;
	const char *summary;               /* one line for `amiforge stages` */
	const struct param_spec *params;   /* NULL-terminated table */
	unsigned flags;                    /* enum stage_flags */
	uint64_t default_timeout;          /* seconds when the recipe sets none; 0 = none */
	/* Facts (facts.h) from earlier stages it needs (besides those its
	 * flags imply) and the ones it may output; both checked when a recipe
	 * loads.  NULL-terminated; NULL for none. */
	const struct fact_need *needs;
	const char *const *provides;
	/* Optional cross-parameter check at load time (e.g. "size or device").
	 * Returns 0, or -1 with *err set; the loader prints it at the stage's
	 * position in the recipe. */
	int (*check)(const json_t *params, struct af_error **err);
	/* Optional, at load time after check, with the recipe's variables: may
	 * add derived values to params (e.g. a template's expanded text), which
	 * then count in the stage key like any parameter.  0, or -1 with *err
	 * set (reported like check's errors). */
	int (*expand)(json_t *params, const struct vars *vars, struct af_error **err);
	/* Optional, at load time once every stage parsed: refuses a
	 * combination with earlier stages that cannot work (e.g. HVM over a
	 * PV-GRUB menu.lst).  0, or -1 with *err set. */
	int (*plan_check)(const json_t *params, const struct fact_plan *plan, struct af_error **err);
	/* Does the work.  0, or -1 with *err set. */
	int (*run)(struct stage_ctx *ctx, struct af_error **err);
};

/* The registry (stages/registry.c): sorted by name. */
const struct stage_type *const *registry_all(size_t *count);
const struct stage_type *registry_find(const char *name);

#endif
