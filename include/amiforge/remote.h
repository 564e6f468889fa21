/* SPDX-License-Identifier: Apache-2.0 */
/* The remote state store (DESIGN §5): a build's checkpoints, its completed
 * stages and its journal kept in S3 under s3://BUCKET/PREFIX, so that a
 * build resumes on a fresh machine and many runners share one cache.
 *
 * Layout under PREFIX (every name below is relative to it):
 *   blocks/ab/<sha256>        block files, byte for byte those of
 *                             STATE/checkpoints/blocks (blockstore.h).
 *                             Immutable: written with If-None-Match: *.
 *   checkpoints/<DKEY>.ckpt   checkpoint lists (checkpoint.h), found by disk
 *                             key.  Immutable, and written only after every
 *                             block they name is stored: a list in the store
 *                             is always complete.
 *   used/<DKEY>               an empty object rewritten whenever a build makes
 *                             or restores that checkpoint: its LastModified is
 *                             the checkpoint's last use (garbage collection).
 *   stages/<KEY>.json         a completed stage, found by stage key by any
 *                             recipe: {"v":1,"id":ID,"type":TYPE,"disk_key":
 *                             DKEY,"seconds":S,"outputs":{...}} (redacted).
 *                             Only for stages that make no remote resource
 *                             (those are found through a state's journal).
 *                             Immutable.
 *   states/<NAME>/journal     the journal of state NAME (the recipe file's
 *                             stem), rewritten whole with If-Match: the ETag
 *                             the writer last saw.
 *   states/<NAME>/lease       who may write that journal: {"v":1,"holder":HOST,
 *                             "pid":N,"boot_id":ID,"acquired":T,"expires":T}
 *                             (Unix seconds), created with If-None-Match: *,
 *                             renewed and released with If-Match.
 *   gc-lease                  held by `clean --remote` while it deletes; the
 *                             same shape.
 * What the remote needs: S3's conditional writes (If-None-Match: * and
 * If-Match on PutObject) and strong read-after-write consistency, which AWS
 * S3 has; ListObjectsV2, GetObject, HeadObject, DeleteObject.
 *
 * Nothing stored holds a secret: journal lines and stage records are
 * redacted before they are written (redact.h), blocks are image content
 * after sanitize's scan... and before: a checkpoint of a half-built image
 * is as private as STATE itself, so the bucket must be as well. */
#ifndef AMIFORGE_REMOTE_H
#define AMIFORGE_REMOTE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amiforge/aws/request.h"
#include "amiforge/aws/s3.h"

struct af_error;

/* An open store. */
struct remote {
	char *url;    /* as given: s3://BUCKET/PREFIX */
	char *bucket;
	char *prefix; /* "" or "a/b/" (one trailing slash) */
	struct aws_session aws;
	struct s3_client s3;
};

/* Splits s3://BUCKET[/PREFIX] into its bucket and prefix ("" or ending
 * with one '/').  A URL that is not of that shape is an error saying what
 * one looks like.  0 or -1 + err. */
int remote_parse_url(const char *url, char **bucket, char **prefix, struct af_error **err);

/* Opens the store at URL: the AWS session (region: REGION, else the usual
 * chain, else us-east-1 for S3), the S3 client.  Nothing is sent yet.
 * 0 or -1 + err; remote_close() is NULL-safe and idempotent. */
int remote_open(struct remote *r, const char *url, const char *region, struct af_error **err);
void remote_close(struct remote *r);

/* PREFIX + the formatted name.  Caller frees. */
char *remote_name(const struct remote *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- leases (remote_lease.c) ------------------------------------------------- */

struct remote_lease {
	char *name;       /* the lease object's key (prefixed) */
	char *etag;       /* of our last write */
	double expires;   /* Unix seconds */
	double ttl;       /* seconds */
};

/* Takes the lease on NAME (a prefixed key) for TTL seconds.  A lease held
 * by a live holder is waited for up to WAIT seconds (0: not at all), then
 * -1 + err naming the holder, its host and pid and when it expires, with
 * errno EWOULDBLOCK.  An expired lease, or one held by a process of this
 * machine that no longer runs, is taken over (If-Match on its ETag).
 * A state lease also checks gc-lease: while a garbage collection runs, no
 * build starts.  0 or -1 + err. */
int remote_lease_acquire(struct remote *r, const char *name, double ttl, double wait,
			 struct remote_lease *out, struct af_error **err);
/* Extends the lease by its TTL (If-Match our ETag).  A lease someone else
 * took (it expired and was taken over) is -1 + err with errno
 * S3_CONDITION_FAILED. */
int remote_lease_renew(struct remote *r, struct remote_lease *l, struct af_error **err);
/* Gives it up (an expired lease written If-Match our ETag) and frees L. */
int remote_lease_release(struct remote *r, struct remote_lease *l, struct af_error **err);
void remote_lease_free(struct remote_lease *l);
/* The leases under PREFIX states/ that are live now, as "NAME (HOST pid N,
 * until TIME)" strings (caller frees the array and strings): what GC
 * waits for.  0 or -1 + err. */
int remote_live_leases(struct remote *r, char ***out, size_t *n, struct af_error **err);

/* ---- journals and stage records (remote_state.c) ---------------------------- */

/* The journal of state STATE: *text (caller frees; NULL when there is
 * none), *len and *etag (caller frees; NULL when none).  0 or -1 + err. */
int remote_journal_get(struct remote *r, const char *state, char **text, size_t *len,
		       char **etag, struct af_error **err);
/* Writes it: If-Match ETAG, or If-None-Match: * when ETAG is NULL.
 * *new_etag (caller frees) gets the new one.  A refused condition (another
 * writer) is -1 + err with errno S3_CONDITION_FAILED. */
int remote_journal_put(struct remote *r, const char *state, const char *text, size_t len,
		       const char *etag, char **new_etag, struct af_error **err);

/* stages/KEY.json: *record (new reference) or NULL when there is none. */
int remote_stage_get(struct remote *r, const char *key, json_t **record, struct af_error **err);
int remote_stage_put(struct remote *r, const char *key, const json_t *record,
		     struct af_error **err);

/* ---- checkpoints (remote_ckpt.c) --------------------------------------------- */

/* The disk keys with a list under checkpoints/, as a JSON object used as a
 * set (key -> true; new reference).  0 or -1 + err. */
int remote_ckpt_keys(struct remote *r, json_t **keys, struct af_error **err);

/* What a push or pull moved. */
struct remote_xfer {
	uint64_t blocks;      /* block files sent or fetched */
	uint64_t blocks_skip; /* already there */
	uint64_t bytes;       /* their bytes */
	double seconds;
};

/* Pushes checkpoint DKEY from CKPT_DIR (STATE/checkpoints): every block of
 * its list that KNOWN (a set of block hex hashes, updated; may be NULL)
 * does not hold, PARALLEL at a time, then the list, then touches used/.
 * TICK (may be NULL) is called with TICK_ARG before each block is sent:
 * the remote agent answers the build from there during a long push.
 * 0 or -1 + err. */
int remote_ckpt_push(struct remote *r, const char *ckpt_dir, const char *dkey, json_t *known,
		     int parallel, void (*tick)(void *arg), void *tick_arg, struct remote_xfer *st,
		     struct af_error **err);

/* Brings checkpoint DKEY into CKPT_DIR: its list, and each block the local
 * store lacks, verified against its hash as it arrives (a block that fails
 * is fetched once more, then the pull fails: the checkpoint is unusable).
 * Then touches used/.  KNOWN (may be NULL) learns every block of the list.
 * 0 or -1 + err. */
int remote_ckpt_pull(struct remote *r, const char *ckpt_dir, const char *dkey, json_t *known,
		     int parallel, struct remote_xfer *st, struct af_error **err);

/* Fetches only the list of DKEY into CKPT_DIR/DKEY.ckpt when it is not
 * there (what the snapshot stage compares a parent against).  A missing
 * list is not an error.  0 or -1 + err. */
int remote_ckpt_pull_list(struct remote *r, const char *ckpt_dir, const char *dkey,
			  struct af_error **err);

/* Rewrites used/DKEY.  0 or -1 + err. */
int remote_ckpt_touch(struct remote *r, const char *dkey, struct af_error **err);

/* ---- garbage collection and checks (remote_gc.c) -------------------------------- */

struct remote_gc_opts {
	uint64_t unused_for; /* seconds: checkpoints unused for longer go */
	bool dry_run;        /* report only */
};
struct remote_gc_report {
	size_t ckpt_total, ckpt_removed;
	size_t stages_total, stages_removed;
	size_t blocks_total, blocks_removed;
	uint64_t bytes_removed;
	bool blocks_skipped; /* builds held leases: no block was removed */
};
/* Removes checkpoints not used for opts->unused_for, the stage records
 * that lead to them, and blocks no remaining checkpoint names; never a
 * block while a build holds a lease (it may be pushing a checkpoint that
 * names blocks already stored), and under gc-lease so that no build starts
 * meanwhile.  Prints what it removes (or would).  0 or -1 + err. */
int remote_gc(struct remote *r, const struct remote_gc_opts *opts, struct remote_gc_report *out,
	      struct af_error **err);

struct remote_check_report {
	size_t ckpts, blocks, missing, corrupt;
};
/* Checks the store: every block a checkpoint names is present, and (with
 * HASHES) decodes to its hash.  Prints each problem.  0 when consistent, -1 +
 * err otherwise. */
int remote_check(struct remote *r, bool hashes, struct remote_check_report *out,
		 struct af_error **err);

#endif
