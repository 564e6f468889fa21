/* SPDX-License-Identifier: Apache-2.0 */
/* The remote agent: a process of the build that keeps the remote store
 * (remote.h) up to date while the stages run, so that pushing is off the
 * build's critical path.  It owns the state's lease (renewing it) and the
 * remote journal's ETag; the build tells it, over a socket, what changed:
 *
 *   remote_agent_journal     STATE/journal grew: pushed within a second
 *                            (appends are batched into one PUT)
 *   remote_agent_sync        push the journal now and wait: what a stage
 *                            that made a remote resource needs before it
 *                            goes on
 *   remote_agent_checkpoint  push checkpoint DKEY (its blocks, then its list)
 *   remote_agent_stage       put a completed stage's record (after the
 *                            checkpoints queued before it)
 *   remote_agent_known       DKEY's blocks are in the store (it was pulled)
 *   remote_agent_flush       wait until everything queued is pushed: what a
 *                            stage that makes remote resources needs first,
 *                            so that a resume elsewhere restores the very
 *                            image it was sending
 *   remote_agent_finish      push everything queued, release the lease, end
 *
 * Requests are done in order, except journal pushes, which go first and
 * are also made between the blocks of a long checkpoint push.  The agent
 * dies with the build (PR_SET_PDEATHSIG): a killed build leaves a lease
 * that expires, or that a build on the same machine takes over at once.
 *
 * Failures: the S3 client retries (throttling, 5xx, resets, stalls); what
 * still fails is a warning and the build goes on locally, unless REQUIRED
 * (--remote-required): then the next remote_agent_sync or
 * remote_agent_finish fails with the first error.  A lost lease (another
 * build took the state over) always fails them. */
#ifndef AMIFORGE_REMOTE_AGENT_H
#define AMIFORGE_REMOTE_AGENT_H

#include <jansson.h>
#include <stdbool.h>

#include "amiforge/remote.h"

struct af_error;
struct remote_agent;

struct remote_agent_opts {
	struct remote *remote;       /* open; the agent keeps its own copy */
	const char *state;           /* the remote state's name */
	const char *journal_path;    /* STATE/journal */
	const char *ckpt_dir;        /* STATE/checkpoints */
	struct remote_lease *lease;  /* held; the agent takes it over (zeroed here) */
	const char *journal_etag;    /* the remote journal's, or NULL: none yet */
	bool required;
	int parallel;                /* block transfers at once */
};

/* Forks the agent.  NULL + err when it cannot (the lease is then still
 * the caller's). */
struct remote_agent *remote_agent_start(const struct remote_agent_opts *o, struct af_error **err);

void remote_agent_journal(struct remote_agent *a);
int remote_agent_flush(struct remote_agent *a, struct af_error **err);
int remote_agent_sync(struct remote_agent *a, struct af_error **err);
void remote_agent_checkpoint(struct remote_agent *a, const char *dkey);
void remote_agent_stage(struct remote_agent *a, const char *key, const json_t *record);
void remote_agent_known(struct remote_agent *a, const char *dkey);

/* Waits for everything queued, releases the lease and reaps the agent;
 * frees A.  What it pushed is logged.  0 or -1 + err (see the top). */
int remote_agent_finish(struct remote_agent *a, struct af_error **err);

#endif
