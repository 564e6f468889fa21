/* SPDX-License-Identifier: Apache-2.0 */
/* Stage keys and the resume plan (DESIGN §5).
 *
 * key(i) = SHA-256 of the canonical JSON {"v":1,"prev":key(i-1) or "",
 * "arch":ARCH,"type":TYPE,"params":PARAMS,"files":FILE_HASHES} (keys sorted,
 * compact).  A change anywhere re-keys that stage and every stage after it.
 *
 * disk_key(i) names the disk state after stage i: key(i) for a stage that
 * touches the image, else disk_key(i-1).  Checkpoints are stored under it.
 *
 * The plan: `first_undone` is the first stage without a matching stage_done
 * (or --from's stage if earlier); `restore` is the newest stage before it
 * whose disk state has a usable checkpoint (-1: none, start from an empty
 * disk).  Stages after `restore` that touch the image run again; others
 * before `first_undone` stay done. */
#ifndef AMIFORGE_PLAN_H
#define AMIFORGE_PLAN_H

#include <stdbool.h>
#include <jansson.h>

#include "amiforge/recipe.h"

struct journal_event;
struct journal_log;

enum plan_status { PLAN_DONE, PLAN_RUN };

struct plan_stage {
	char key[65];
	char disk_key[65];
	bool journal_done;           /* a matching stage_done exists */
	const struct journal_event *done_event; /* its stage_done (borrowed), or NULL */
	enum plan_status status;     /* what a build does with it */
};

struct plan {
	struct plan_stage *stages;   /* recipe->n_stages entries */
	size_t n;
	int first_undone;            /* 0-based; n when all done */
	int restore;                 /* 0-based stage whose checkpoint is restored, or -1 */
};

/* Computes keys only (no journal). keys must hold r->n_stages entries. */
void plan_keys(const struct recipe *r, char (*keys)[65]);

struct plan_input {
	/* The journal's events (borrowed; done_event points into it, so it
	 * must outlive the plan; NULL: no journal). */
	const struct journal_log *log;
	/* Whether disk key DKEY has a checkpoint a build can restore: in
	 * STATE/checkpoints (plan_ckpt_local, arg: that directory) or in the
	 * remote store too. */
	bool (*ckpt_usable)(void *arg, const char *dkey);
	void *ckpt_arg;
	/* The image on disk is what the journal's last stage left: false when
	 * the journal came from another machine (the remote store). */
	bool image_here;
	bool fresh; /* ignore the journal */
	int from;   /* 0-based index of --from, or -1 */
};
bool plan_ckpt_local(void *ckpt_dir, const char *dkey);

void plan_make(const struct recipe *r, const struct plan_input *in, struct plan *out);
void plan_release(struct plan *p);

#endif
