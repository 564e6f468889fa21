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
 *   6. a describe() hook: what it will do with these parameters, for
 *      `amiforge plan` (tests/unit/test_registry.c checks every type has one).
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
struct strbuf;

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

/* What is known of a stage before anything runs, for `amiforge plan`:
 * no AWS, no network, no image, no state.  All borrowed. */
struct stage_describe {
	const json_t *params;         /* typed parameters, after variable expansion */
	const char *recipe_name;      /* the recipe's name, expanded (the AMI's by default) */
	const char *arch;             /* x86_64 | arm64 */
	const char *recipe_dir;       /* absolute directory of the recipe file */
	/* What the command resolved without the network: --region,
	 * AWS_REGION, AWS_DEFAULT_REGION, the profile's region (never
	 * instance metadata); --profile, AWS_PROFILE...  NULL: unknown. */
	const char *region;
	const char *profile;
	/* Which earlier stage will provide a fact (facts_plan_provider); may be NULL. */
	const struct fact_plan *plan;
	/* The facts the earlier stages' describe hooks already know from their
	 * parameters (what they put in `known`), merged in order, later wins:
	 * e.g. "snapshot.region" when the snapshot stage names one. */
	const json_t *facts;
	/* This stage adds here the facts of its `provides` that its parameters
	 * (or the region above) already fix, with the types facts.h gives. */
	json_t *known;
};

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
	/* Optional, for `plan`: one sentence saying what the stage will do with
	 * these parameters ("register AMI 'x' (hvm) in us-east-1"), lower
	 * case, no full stop; malloc'd, the caller frees.  NULL when nothing
	 * better than the summary is known.  Pure: it may only read D and add
	 * to d->known.  It must not print a secret (params hold none; do not
	 * read files). */
	char *(*describe)(const struct stage_describe *d);
	/* Does the work.  0, or -1 with *err set. */
	int (*run)(struct stage_ctx *ctx, struct af_error **err);
};

/* Pieces of describe() sentences (stage/describe.c), so that every stage
 * words lists, counts and sizes alike. */
/* Appends the strings of the JSON array LIST: "a, b, c", or with more than
 * MAX of them "a, b, c and 5 more".  Nothing for NULL or an empty list. */
void stage_describe_list(struct strbuf *sb, const json_t *list, size_t max);
/* "1 package" / "3 packages": N and NOUN, with an s unless N is 1. */
void stage_describe_count(struct strbuf *sb, size_t n, const char *noun);
/* A size as a recipe writes it when it is a whole number of units
 * ("2 GiB", "512 MiB"), else as format_size (util.h).  Returns buf. */
char *stage_describe_size(uint64_t bytes, char *buf, size_t bufsz);
/* GIVEN (a region the stage's parameters or facts name), else d->region,
 * else words saying the build will resolve it (never NULL, borrowed). */
const char *stage_describe_region(const struct stage_describe *d, const char *given);
/* A string fact of d->facts, or NULL (borrowed). */
const char *stage_describe_fact(const struct stage_describe *d, const char *fact);
/* Puts the string fact FACT = VALUE in d->known; nothing when VALUE is NULL. */
void stage_describe_know(const struct stage_describe *d, const char *fact, const char *value);

/* The registry (stages/registry.c): sorted by name. */
const struct stage_type *const *registry_all(size_t *count);
const struct stage_type *registry_find(const char *name);

#endif
