/* SPDX-License-Identifier: Apache-2.0 */
/* A build's side of the remote store (remote.h, DESIGN §5): what `build`
 * and `plan` do with --remote s3://BUCKET/PREFIX (or AMIFORGE_REMOTE).
 *
 * At the start: connect, take the state's lease (build only), adopt the
 * remote journal of the state when it is ahead of the local one (a fresh
 * machine has none), journal as done the stages whose records the store
 * holds (found by stage key, so a recipe sharing its first stages with
 * another starts where that one's checkpoint is), and learn which
 * checkpoints the store has.  During the build: a checkpoint the plan
 * restores is pulled when it is not local; new checkpoints, stage records
 * and journal lines are pushed by the remote agent (remote_agent.h).
 *
 * A store that cannot be reached at the start is a warning and the build
 * goes on with local state, or an error with --remote-required. */
#ifndef AMIFORGE_BUILD_REMOTE_H
#define AMIFORGE_BUILD_REMOTE_H

#include <jansson.h>
#include <stdbool.h>

struct af_error;
struct journal;
struct recipe;
struct build_remote;

struct build_remote_opts {
	const char *url;      /* s3://BUCKET/PREFIX */
	const char *state;    /* the remote state's name: the recipe file's stem */
	const char *state_dir;
	bool required;        /* --remote-required */
	bool read_only;       /* plan, status: no lease, nothing written remotely */
	double lease_wait;    /* seconds to wait for a held lease */
	double lease_ttl;     /* seconds; 0: the default */
};

/* The remote URL from --remote (ARG, may be NULL) or AMIFORGE_REMOTE;
 * NULL for none.  Borrowed. */
const char *build_remote_url(const char *arg);

/* Connects and, unless read-only, takes the lease.  *out is NULL (and 0
 * returned) when the store cannot be reached and it is not required.
 * -1 + err otherwise (errno EWOULDBLOCK: the lease is held). */
int build_remote_open(const struct build_remote_opts *o, struct build_remote **out,
		      struct af_error **err);

/* Brings J up to date with the store (see the top), for recipe R whose
 * stage keys are KEYS.  *foreign: J now holds another machine's journal,
 * so the image on disk is not the one it describes.  0 or -1 + err. */
int build_remote_adopt(struct build_remote *br, struct journal *j, const struct recipe *r,
		       char (*keys)[65], bool *foreign, struct af_error **err);

/* Before a stage runs: if the store now has records of it and the stages
 * after it that J lacks (another build finished them meanwhile), journals
 * them as done and sets *imported: the build then plans again and takes
 * the store's checkpoint instead of running them.  0 or -1 + err. */
int build_remote_catch_up(struct build_remote *br, struct journal *j, const struct recipe *r,
			  char (*keys)[65], bool *imported, struct af_error **err);

/* plan_input's ckpt_usable with ARG a struct build_remote_ckpts: local
 * or in the store. */
struct build_remote_ckpts {
	struct build_remote *br; /* NULL: local only */
	const char *ckpt_dir;
};
bool build_remote_ckpt_usable(void *arg, const char *dkey);

/* Makes checkpoint DKEY local (pulls it when only the store has it).  On
 * failure the store's copy counts as unusable from now on.  0 or -1 + err. */
int build_remote_ckpt_fetch(struct build_remote *br, const char *ckpt_dir, const char *dkey,
			    struct af_error **err);

/* The store's checkpoint DKEY did not restore: it is not planned again. */
void build_remote_ckpt_forget(struct build_remote *br, const char *dkey);

/* Starts the agent (build only, after adopt).  0 or -1 + err. */
int build_remote_start_agent(struct build_remote *br, struct af_error **err);

/* The journal grew / must be in the store before going on / a checkpoint
 * was taken / a stage finished.  NULL-safe. */
void build_remote_journal(struct build_remote *br);
int build_remote_sync(struct build_remote *br, struct af_error **err);
void build_remote_checkpoint(struct build_remote *br, const char *dkey);
/* Waits until everything queued is in the store: before a stage that
 * makes remote resources, so that a resume on another machine restores
 * the exact image that stage was sending.  0 or -1 + err. */
int build_remote_flush(struct build_remote *br, struct af_error **err);
void build_remote_stage_done(struct build_remote *br, bool shareable, const char *key,
			     const char *id, const char *type, const char *dkey, double seconds,
			     const json_t *outputs);

/* Pushes what is queued, releases the lease, disconnects, frees.  0 or
 * -1 + err (only when required, or the lease was lost). */
int build_remote_close(struct build_remote *br, struct af_error **err);

/* What plan and status show with --remote, without touching STATE: a
 * journal in a temporary directory: for a recipe R (plan), STATE's journal
 * brought up to date with the store as a build would; for R NULL
 * (status), the store's journal of STATE_NAME alone.  The store must
 * answer (errors are errors here).  0 or -1 + err; close in both cases. */
struct build_remote_view {
	char *dir;
	struct journal *j;
	struct build_remote *br;
	bool foreign;
};
int build_remote_view_open(const char *url, const char *state_dir, const char *state_name,
			   const struct recipe *r, struct build_remote_view *v, struct af_error **err);
void build_remote_view_close(struct build_remote_view *v);

#endif
