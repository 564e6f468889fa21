/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot: the image as an EBS snapshot through the EBS direct APIs, from
 * any machine (no EC2 host or volume), coldsnap's way (reference/FORMATS.md
 * §3): StartSnapshot, one PutSnapshotBlock per 512 KiB block the snapshot
 * must be given, over `parallel` connections, CompleteSnapshot with the
 * number of blocks written and their linear aggregate checksum, then
 * DescribeSnapshots until `completed`.  Only the image's allocated extents
 * are read (SEEK_DATA/SEEK_HOLE) and all-zero blocks are skipped: an absent
 * block of an unencrypted snapshot reads as zeros.  Encrypted snapshots get
 * every block, because their absent blocks read back as random data, and
 * never have a parent (StartSnapshot refuses ParentSnapshotId with
 * Encrypted).  The upload itself is engine/aws/ebs_upload.c; the
 * stage picks the parent, starts, resumes, abandons and waits for
 * snapshots.
 *
 * Incremental snapshots (`parent:`).  StartSnapshot with ParentSnapshotId
 * makes the new snapshot a copy of the parent; then only the blocks whose
 * content differs from the parent's are sent, including a block of zeros
 * where the parent has data and the image has none.  ChangedBlocksCount
 * and the linear aggregate checksum cover the blocks written to the new
 * snapshot only (AWS: "the number of blocks that were written").  The
 * parent is `auto`: the snapshot of this stage id's previous completed run
 * in this state (ctx->previous), in the same region; or a snapshot id; or
 * `none`.  A parent that is gone, not completed, larger than the new volume,
 * refused by StartSnapshot or whose content cannot be learned gives a full
 * snapshot, with a warning saying why.
 *
 * Knowing a parent's content.  Every unencrypted snapshot outputs the
 * identity of the block list it holds: "snapshot.image_key" (the disk key
 * of the image it was made from) and "snapshot.blocks_sha256"
 * (ebs_block_map_digest: SHA-256 over the list of every image block's
 * SHA-256, zero blocks as 32 zero bytes).  The list itself is
 * STATE/checkpoints/IMAGE_KEY.ckpt when that checkpoint is this list, else
 * the stage writes it as STATE/checkpoints/BLOCKS_SHA256.ckpt (the same
 * format; named by content, its blocks are not in the store).  A later
 * build takes the first of the two whose digest matches, so a checkpoint
 * taken again with other content is never trusted, and the lists travel
 * with the remote store's checkpoint lists.  An explicit parent id gets
 * that identity only when it is the previous run's snapshot.  Without a
 * matching list the parent is read back (ListSnapshotBlocks and
 * GetSnapshotBlock of each block: a download of the parent, the upload
 * still only what changed), and the list read is recorded the same way.
 *
 * Resuming.  What a resumed build needs is journaled as a resource of this
 * stage the moment it exists (stage_journal_resource):
 *   {"snapshot": ID, "region": R, "generation": G, "volume_size": GiB, "encrypted": B,
 *    ["parent": P, "parent_image_key": K, "parent_blocks_sha256": D]}
 *       StartSnapshot answered.  Its ClientToken is derived from the stage
 *       key, G and the parent, so a build killed before this line gets the
 *       same snapshot back from StartSnapshot instead of a second one, and
 *       the full snapshot that replaces a refused parent is another
 *       request.  The parent and the identity of its list say what the
 *       snapshot held before any block was sent;
 *   {"snapshot": ID, "blocks": [[first, last], ...], "digest": B64}
 *       a batch of acknowledged blocks and the linear aggregate of their
 *       SHA-256 digests.  A resume re-reads those blocks: a batch that still
 *       hashes the same is done, any other is sent again (zero blocks too,
 *       so that the snapshot and the block count stay exact);
 *   {"snapshot": ID, "blocks_sent": N, ["blocks_sha256": D]}
 *       every block is sent (before CompleteSnapshot): the outputs of a
 *       resume that finds the snapshot completed;
 *   {"snapshot": ID, "completing": true}   CompleteSnapshot accepted;
 *   {"snapshot": ID, "abandoned": true}
 *       it expired or failed (deleted if it still existed); the next
 *       generation starts over with a new ClientToken.
 * A pending snapshot is continued with only its missing blocks, over the
 * same parent (whose content is learned again as above, or the snapshot is
 * abandoned); AWS cancels one that saw no write for `pending_timeout`, and
 * then the stage starts over cleanly. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/aws/ebs.h"
#include "amiforge/aws/ebs_upload.h"
#include "amiforge/aws/ec2.h"
#include "amiforge/aws/request.h"
#include "amiforge/checkpoint.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define SNAP_GIB (1LL << 30)
#define SNAP_MAX_PARALLEL 256
/* Waiting for `completed`: capped exponential backoff. */
#define SNAP_POLL_FIRST 1.0
#define SNAP_POLL_CAP 15.0
#define SNAP_KEY_TAG "amiforge:snapshot-stage-key"
/* Client tokens tried when StartSnapshot returns finished snapshots. */
#define SNAP_MAX_TOKEN_TRIES 8

static const struct param_spec snapshot_params[] = {
	{ .name = "region", .type = PT_STRING, .help = "AWS region of the snapshot",
	  .defval = "AWS_REGION, AWS_DEFAULT_REGION, the profile, instance metadata" },
	{ .name = "description", .type = PT_STRING, .help = "snapshot description (at most 255 characters)",
	  .defval = "amiforge STAGE-ID (stage key KEY12)" },
	{ .name = "tags", .type = PT_MAP, .help = "tags on the snapshot (the stage key is added as " SNAP_KEY_TAG ")" },
	{ .name = "encrypted", .type = PT_BOOL, .help = "encrypt the snapshot (every block is then sent)",
	  .defval = "false" },
	{ .name = "kms_key", .type = PT_STRING, .help = "KMS key ARN for an encrypted snapshot",
	  .defval = "the account's default EBS key" },
	{ .name = "parallel", .type = PT_INT, .help = "blocks in flight (connections), 1-256", .defval = "16" },
	{ .name = "wait_timeout", .type = PT_DURATION,
	  .help = "how long to wait for the snapshot to become completed (within the stage timeout:)",
	  .defval = "1h" },
	{ .name = "pending_timeout", .type = PT_DURATION,
	  .help = "StartSnapshot's Timeout (10m-72h): AWS cancels a pending snapshot with no write for this long",
	  .defval = "1h" },
	{ .name = "volume_size", .type = PT_INT, .help = "volume size in GiB, at least the image's",
	  .defval = "the image size rounded up to GiB" },
	{ .name = "parent", .type = PT_STRING,
	  .help = "the snapshot to build on, sending only the blocks that differ from it: auto (this stage's "
		  "snapshot from the previous build in this state), none (a full snapshot) or a snapshot id; a "
		  "parent that is gone or unusable gives a full snapshot, and so does encrypted: true",
	  .defval = "auto" },
	{ .name = NULL },
};

/* ---- parameters ------------------------------------------------------------------- */

/* snap- and 8 or 17 hex digits, as AWS makes them. */
static bool snap_id_valid(const char *id)
{
	size_t n = strlen(id);
	return str_has_prefix(id, "snap-") && (n == 13 || n == 22) && strspn(id + 5, "0123456789abcdef") == n - 5;
}

/* A block list's identity as ebs_block_map_digest writes it; also a file
 * name under STATE/checkpoints, so nothing else may pass. */
static bool snap_digest_valid(const char *d)
{
	return d && strlen(d) == 64 && strspn(d, "0123456789abcdef") == 64;
}

static int snapshot_check(const json_t *params, struct af_error **err)
{
	int64_t parallel = params_int(params, "parallel", 16);
	if (parallel < 1 || parallel > SNAP_MAX_PARALLEL)
		return af_error_set(err, 0, "parallel: must be from 1 to %d, not %" PRId64, SNAP_MAX_PARALLEL,
				    parallel);
	if (params_get(params, "kms_key") && !params_bool(params, "encrypted", false))
		return af_error_set(err, 0, "kms_key: needs encrypted: true");
	int64_t vs = params_int(params, "volume_size", 1);
	if (vs < 1 || vs > 65536)
		return af_error_set(err, 0, "volume_size: must be from 1 to 65536 GiB, not %" PRId64, vs);
	int64_t pt = params_int(params, "pending_timeout", 3600);
	if (pt < 600 || pt > 4320 * 60)
		return af_error_set(err, 0, "pending_timeout: must be from 10m to 72h (AWS's limits)");
	if (params_get(params, "wait_timeout") && params_int(params, "wait_timeout", 0) <= 0)
		return af_error_set(err, 0, "wait_timeout: must be more than 0s");
	const char *parent = params_str(params, "parent", "auto");
	if (strcmp(parent, "auto") && strcmp(parent, "none") && !snap_id_valid(parent))
		return af_error_set(err, 0, "parent: '%s' is not auto, none or a snapshot id (snap-...)", parent);
	if (snap_id_valid(parent) && params_bool(params, "encrypted", false))
		return af_error_set(err, 0, "parent: encrypted snapshots are always full; drop parent: or encrypted:");
	const char *d = params_str(params, "description", "");
	if (strlen(d) > 255)
		return af_error_set(err, 0, "description: at most 255 characters (AWS's limit), not %zu", strlen(d));
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)params_get(params, "tags"), k, v)
		if (str_has_prefix(k, "aws:"))
			return af_error_set(err, 0, "tags: the 'aws:' prefix of '%s' is reserved by AWS", k);
	return 0;
}

/* The volume size in GiB: the override, else the image rounded up (at
 * least 1).  -1 + err when the override is too small for the image. */
static int64_t snap_volume_gib(uint64_t image_size, int64_t override, struct af_error **err)
{
	int64_t need = (int64_t)((image_size + SNAP_GIB - 1) / SNAP_GIB);
	if (need < 1)
		need = 1;
	if (override <= 0)
		return need;
	if (override < need)
		return af_error_set(err, 0, "volume_size: %" PRId64 " GiB is smaller than the image (%" PRId64
					    " GiB rounded up); raise it or drop it",
				    override, need);
	return override;
}

/* StartSnapshot's ClientToken for generation GEN of this stage over PARENT
 * (NULL: none): the same for the same stage key, so a retried or resumed
 * StartSnapshot returns the snapshot it already made; a new generation
 * (after an expiry) gets a new one, and so does the full snapshot that
 * replaces a refused parent (AWS refuses a token reused for another
 * request). */
static void snap_client_token(const char *key, int gen, const char *parent, char out[37])
{
	char purpose[96];
	if (parent)
		snprintf(purpose, sizeof(purpose), "ebs-snapshot-%d-parent-%s", gen, parent);
	else
		snprintf(purpose, sizeof(purpose), "ebs-snapshot-%d", gen);
	uuid_derive(key, purpose, out);
}

/* ---- journal records ------------------------------------------------------------------ */

/* What earlier attempts journaled, for the live (not abandoned) snapshot. */
struct snap_resume {
	const char *snapshot_id; /* borrowed from the resources; NULL: none */
	const char *region;
	int64_t volume_size;
	bool encrypted, completing;
	int generation;          /* the snapshot's, or the next one to start */
	json_t *batches;         /* its {"blocks", "digest"} records */
	/* Its parent (NULL: none) and the identity of the parent's list. */
	const char *parent, *parent_image_key, *parent_blocks_sha256;
	/* Once every block was sent: how many, and the image list's identity. */
	int64_t blocks_sent;     /* -1: not recorded */
	const char *blocks_sha256;
};

static const char *snap_str(const json_t *res, const char *name)
{
	return json_string_value(json_object_get(res, name));
}

/* The start record of a snapshot: forgets what was known of the earlier one. */
static void snap_resume_start(const json_t *res, const char *id, struct snap_resume *r)
{
	r->snapshot_id = id;
	r->region = snap_str(res, "region");
	r->volume_size = json_integer_value(json_object_get(res, "volume_size"));
	r->encrypted = json_is_true(json_object_get(res, "encrypted"));
	r->generation = (int)json_integer_value(json_object_get(res, "generation"));
	r->completing = false;
	r->parent = snap_str(res, "parent");
	r->parent_image_key = snap_str(res, "parent_image_key");
	r->parent_blocks_sha256 = snap_str(res, "parent_blocks_sha256");
	r->blocks_sent = -1;
	r->blocks_sha256 = NULL;
	json_array_clear(r->batches);
}

static void snap_resume_parse(const json_t *resources, struct snap_resume *r)
{
	memset(r, 0, sizeof(*r));
	r->batches = json_array();
	r->blocks_sent = -1;
	int next_gen = 0;
	size_t i;
	const json_t *res;
	json_array_foreach(resources, i, res) {
		const char *id = json_string_value(json_object_get(res, "snapshot"));
		if (!id)
			continue;
		const json_t *gen = json_object_get(res, "generation");
		if (json_is_integer(gen)) {
			snap_resume_start(res, id, r);
			if (r->generation + 1 > next_gen)
				next_gen = r->generation + 1;
		} else if (!r->snapshot_id || strcmp(id, r->snapshot_id) != 0) {
			continue;
		} else if (json_is_true(json_object_get(res, "abandoned"))) {
			r->snapshot_id = NULL;
			r->parent = r->parent_image_key = r->parent_blocks_sha256 = NULL;
			json_array_clear(r->batches);
		} else if (json_is_true(json_object_get(res, "completing"))) {
			r->completing = true;
		} else if (json_is_integer(json_object_get(res, "blocks_sent"))) {
			r->blocks_sent = json_integer_value(json_object_get(res, "blocks_sent"));
			r->blocks_sha256 = snap_str(res, "blocks_sha256");
		} else if (json_object_get(res, "blocks")) {
			json_array_append(r->batches, (json_t *)res);
		}
	}
	if (!r->snapshot_id)
		r->generation = next_gen;
}

/* What to do with a journaled snapshot in STATE (NULL: it no longer
 * exists). */
enum snap_action {
	SNAP_CONTINUE, /* pending: send the missing blocks, complete */
	SNAP_WAIT,     /* completing: wait for completed */
	SNAP_DONE,     /* completed */
	SNAP_RESTART,  /* gone or failed: abandon it, start a new one */
};

static enum snap_action snap_decide(const char *state, bool completing)
{
	if (!state || !strcmp(state, "error"))
		return SNAP_RESTART;
	if (!strcmp(state, "completed"))
		return SNAP_DONE;
	return completing ? SNAP_WAIT : SNAP_CONTINUE;
}

/* ---- one build's work ----------------------------------------------------------------- */

/* The snapshot a new one starts as (none: empty, a full snapshot). */
struct snap_parent {
	char *id;                  /* NULL: none */
	/* The identity of its recorded list (NULL: none known), and then of
	 * the list in map, whatever its source. */
	char *image_key, *blocks_sha256;
	struct ebs_block_map map;  /* its content, once learned */
};

static void snap_parent_release(struct snap_parent *p)
{
	free(p->id);
	free(p->image_key);
	free(p->blocks_sha256);
	ebs_block_map_release(&p->map);
	memset(p, 0, sizeof(*p));
}

struct snap_job {
	struct stage_ctx *ctx;
	struct aws_session aws;
	const char *region; /* aws.region */
	struct ebs_client ebs;
	struct ec2_client ec2;
	int fd;
	uint64_t size;
	int64_t volume_gib;
	bool encrypted;
	int parallel;
	char *snapshot_id;
	int generation;
	struct ebs_upload *up; /* the blocks the snapshot has */
	struct snap_parent parent;
	/* Once every block is sent (or from the journal): blocks written, -1
	 * unknown; the image list's identity, "" unknown. */
	int64_t blocks_sent;
	char blocks_sha256[65];
};

static void snap_job_release(struct snap_job *j)
{
	if (j->fd >= 0)
		close(j->fd);
	ebs_client_release(&j->ebs);
	ec2_client_release(&j->ec2);
	aws_session_close(&j->aws);
	free(j->snapshot_id);
	ebs_upload_free(j->up);
	snap_parent_release(&j->parent);
}

static int snap_journal(struct snap_job *j, json_t *res, struct af_error **err)
{
	int r = res ? stage_journal_resource(j->ctx, res, err) : af_error_set(err, 0, "cannot encode a journal record");
	json_decref(res);
	return r;
}

/* ebs_upload's journal callback: a batch of acknowledged blocks. */
static int snap_journal_batch(void *arg, json_t *blocks, const char *digest, struct af_error **err)
{
	struct snap_job *j = arg;
	return snap_journal(j, json_pack("{s:s, s:o, s:s}", "snapshot", j->snapshot_id, "blocks", blocks,
					 "digest", digest),
			    err);
}

/* What DescribeSnapshots says of a snapshot besides its state. */
struct snap_info {
	int64_t volume_gib;
	bool encrypted;
};

/* The snapshot's state (NULL and 0 when it does not exist), its message
 * when it failed and its info (each may be NULL). */
static int snap_describe(struct snap_job *j, const char *id, char **state, char **message, struct snap_info *info,
			 struct af_error **err)
{
	const char *ids[] = { id };
	struct ec2_snapshot_query q = { .snapshot_ids = ids, .n_snapshot_ids = 1 };
	struct ec2_snapshot_list l = { 0 };
	*state = NULL;
	if (message)
		*message = NULL;
	if (ec2_describe_snapshots(&j->ec2, &q, &l, err) < 0) {
		if (!strstr(af_error_msg(*err), "InvalidSnapshot.NotFound"))
			return -1;
		af_error_clear(err);
		return 0;
	}
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i].snapshot_id && !strcmp(l.v[i].snapshot_id, id)) {
			*state = xstrdup(l.v[i].state ? l.v[i].state : "");
			if (message && l.v[i].state_message)
				*message = xstrdup(l.v[i].state_message);
			if (info)
				*info = (struct snap_info){ l.v[i].volume_size, l.v[i].encrypted };
		}
	ec2_snapshot_list_release(&l);
	return 0;
}

/* Gives up snapshot ID: deletes it when it still exists (a failure there
 * only leaves a dead snapshot, so it is a warning) and journals that the
 * next generation starts over. */
static int snap_abandon(struct snap_job *j, const char *id, bool exists, struct af_error **err)
{
	if (exists) {
		_cleanup_error_ struct af_error *e = NULL;
		if (ec2_delete_snapshot(&j->ec2, id, &e) < 0)
			log_warn("cannot delete the abandoned snapshot %s (delete it by hand): %s", id, af_error_msg(e));
		else
			log_info("deleted the abandoned snapshot %s", id);
	}
	j->generation++;
	free(j->snapshot_id);
	j->snapshot_id = NULL;
	ebs_upload_reset(j->up, NULL);
	return snap_journal(j, json_pack("{s:s, s:b}", "snapshot", id, "abandoned", 1), err);
}

/* The tags: the recipe's and the stage key (borrowed strings, caller frees
 * the array). */
static struct aws_tag *snap_tags(const struct snap_job *j, size_t *n)
{
	const json_t *tags = params_get(j->ctx->params, "tags");
	struct aws_tag *v = xcalloc(json_object_size(tags) + 1, sizeof(*v));
	const char *k;
	const json_t *val;
	*n = 0;
	json_object_foreach((json_t *)tags, k, val)
		v[(*n)++] = (struct aws_tag){ k, json_string_value(val) };
	v[(*n)++] = (struct aws_tag){ SNAP_KEY_TAG, j->ctx->key };
	return v;
}

/* ---- the parent (see the top of the file) ----------------------------------------------- */

/* The list of a snapshot whose list has identity DIGEST and that was made
 * from disk state IMAGE_KEY (may be NULL): DIR/IMAGE_KEY.ckpt while it is
 * still that list (a stage run again can leave a checkpoint with other
 * content under the same key), else DIR/DIGEST.ckpt.  True and *map set
 * (caller releases) when found. */
static bool snap_list_find(const char *dir, const char *image_key, const char *digest, struct ebs_block_map *map)
{
	const char *names[] = { image_key, digest };
	if (!dir || !snap_digest_valid(digest))
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (!names[i] || !*names[i])
			continue;
		struct ckpt_list l = { 0 };
		_cleanup_error_ struct af_error *e = NULL;
		if (ckpt_list_load(dir, names[i], &l, &e) < 0) {
			log_debug("no block list %.12s: %s", names[i], af_error_msg(e));
			continue;
		}
		struct ebs_block_map m = { .nblocks = (int64_t)l.nblocks, .hash = l.hash, .is_data = l.is_data };
		char hex[65];
		ebs_block_map_digest(&m, hex);
		if (!strcmp(hex, digest)) {
			*map = m;
			return true;
		}
		log_debug("%.12s.ckpt holds another block list than %.12s", names[i], digest);
		ebs_block_map_release(&m);
	}
	return false;
}

/* Makes list M (identity DIGEST, of an image of SIZE bytes) findable by
 * snap_list_find: nothing to write when IMAGE_KEY's checkpoint or an
 * earlier record is that list.  A failure only costs a later build a
 * read-back of the snapshot, so it is a warning. */
static void snap_list_record(const char *dir, const char *image_key, const struct ebs_block_map *m, uint64_t size,
			     const char *digest)
{
	struct ebs_block_map found = { 0 };
	if (!dir || snap_list_find(dir, image_key, digest, &found)) {
		ebs_block_map_release(&found);
		return;
	}
	const struct ckpt_list l = { .size = size, .nblocks = (uint64_t)m->nblocks, .hash = m->hash, .is_data = m->is_data };
	_cleanup_error_ struct af_error *e = NULL;
	if (ckpt_list_write(dir, digest, &l, &e) < 0)
		log_warn("cannot record the snapshot's block list (an incremental snapshot over it will read it back instead): %s",
			 af_error_msg(e));
}

/* The parent the recipe asks for, before it is checked: P->id NULL for a
 * full snapshot; the identity of its recorded list when the previous run
 * of this stage made it. */
static void snap_parent_choose(const struct stage_ctx *ctx, const char *region, bool encrypted, struct snap_parent *p)
{
	const char *want = params_str(ctx->params, "parent", "auto");
	const char *prev_id = snap_str(ctx->previous, "snapshot.id");
	const char *prev_region = snap_str(ctx->previous, "snapshot.region");
	const char *prev_digest = snap_str(ctx->previous, "snapshot.blocks_sha256");
	bool prev_here = prev_id && prev_region && !strcmp(prev_region, region);
	if (!strcmp(want, "none"))
		return;
	if (encrypted) {
		log_info("an encrypted snapshot is always full: parent: %s is not used", want);
		return;
	}
	if (!strcmp(want, "auto") && !prev_here) {
		if (prev_id)
			log_info("the previous snapshot %s is in %s, not %s: making a full snapshot", prev_id,
				 prev_region ? prev_region : "another region", region);
		else
			log_info("no earlier snapshot of stage '%s' in this state: making a full snapshot", ctx->id);
		return;
	}
	p->id = xstrdup(!strcmp(want, "auto") ? prev_id : want);
	if (prev_here && !strcmp(prev_id, p->id) && snap_digest_valid(prev_digest)) {
		const char *k = snap_str(ctx->previous, "snapshot.image_key");
		p->blocks_sha256 = xstrdup(prev_digest);
		p->image_key = k ? xstrdup(k) : NULL;
	}
}

/* Why the parent cannot be used (caller frees), or NULL. */
static char *snap_parent_unusable(struct snap_job *j)
{
	_cleanup_error_ struct af_error *e = NULL;
	_cleanup_free_ char *state = NULL;
	struct snap_info info = { 0 };
	if (snap_describe(j, j->parent.id, &state, NULL, &info, &e) < 0)
		return xasprintf("cannot check it (%s)", af_error_msg(e));
	if (!state)
		return xstrdup("it no longer exists");
	if (strcmp(state, "completed") != 0)
		return xasprintf("it is %s, not completed", state);
	if (info.encrypted)
		return xstrdup("it is encrypted and this snapshot is not");
	if (info.volume_gib > j->volume_gib)
		return xasprintf("its volume (%" PRId64 " GiB) is larger than this one (%" PRId64 " GiB), which AWS refuses",
				 info.volume_gib, j->volume_gib);
	return NULL;
}

/* Learns the parent's content into its map: the recorded list, else read
 * back from AWS (and then recorded).  Its identity is kept for a resume.
 * 0, or -1 and *why (caller frees). */
static int snap_parent_learn(struct snap_job *j, char **why)
{
	struct snap_parent *p = &j->parent;
	if (snap_list_find(j->ctx->ckpt_dir, p->image_key, p->blocks_sha256, &p->map)) {
		log_info("parent snapshot %s: its block list is recorded (%.12s); sending only the blocks that differ",
			 p->id, p->blocks_sha256);
		return 0;
	}
	if (p->blocks_sha256)
		log_info("parent snapshot %s: its block list %.12s is not in %s; reading the snapshot back", p->id,
			 p->blocks_sha256, j->ctx->ckpt_dir ? j->ctx->ckpt_dir : "the state");
	else
		log_info("parent snapshot %s: no block list of it is recorded; reading the snapshot back", p->id);
	_cleanup_error_ struct af_error *e = NULL;
	if (ebs_snapshot_map(&j->ebs, p->id, j->parallel, &p->map, &e) < 0) {
		*why = xasprintf("cannot read it back (%s)", af_error_msg(e));
		return -1;
	}
	char hex[65];
	ebs_block_map_digest(&p->map, hex);
	free(p->image_key);
	free(p->blocks_sha256);
	p->image_key = NULL;
	p->blocks_sha256 = xstrdup(hex);
	snap_list_record(j->ctx->ckpt_dir, NULL, &p->map, (uint64_t)p->map.nblocks * EBS_BLOCK_SIZE, hex);
	return 0;
}

/* Chooses, checks and learns the parent of a new snapshot; any problem
 * gives a full snapshot, with a warning saying why. */
static void snap_parent_setup(struct snap_job *j)
{
	snap_parent_release(&j->parent);
	snap_parent_choose(j->ctx, j->region, j->encrypted, &j->parent);
	if (!j->parent.id)
		return;
	_cleanup_free_ char *why = snap_parent_unusable(j);
	if (!why && snap_parent_learn(j, &why) == 0)
		return;
	log_warn("parent snapshot %s: %s; making a full snapshot", j->parent.id, why);
	snap_parent_release(&j->parent);
}

/* StartSnapshot's errors that mean "not over this parent": it is gone
 * (ResourceNotFoundException) or unsuitable (ValidationException). */
static bool snap_parent_refused(const struct af_error *e)
{
	const char *m = af_error_msg(e);
	return strstr(m, "ResourceNotFoundException") || strstr(m, "ValidationException");
}

/* ---- starting ------------------------------------------------------------------------- */

/* StartSnapshot over the current parent.  A finished snapshot for the
 * token means an earlier build with this stage key and no journal
 * (--fresh, a new state directory) made it: it may be in use, so it is
 * left alone and the next generation's token tried. */
static int snap_start_call(struct snap_job *j, struct ebs_snapshot_info *info, struct af_error **err)
{
	char token[37];
	snap_client_token(j->ctx->key, j->generation, j->parent.id, token);
	_cleanup_free_ char *desc = xasprintf("amiforge %s (stage key %.12s)", j->ctx->id, j->ctx->key);
	size_t n_tags;
	_cleanup_free_ struct aws_tag *tags = snap_tags(j, &n_tags);
	struct ebs_start_snapshot ss = {
		.volume_size_gib = j->volume_gib,
		.parent_snapshot_id = j->parent.id,
		.description = params_str(j->ctx->params, "description", desc),
		.client_token = token,
		.kms_key_arn = params_str(j->ctx->params, "kms_key", NULL),
		.encrypted = j->encrypted,
		.timeout_minutes = (int)(params_int(j->ctx->params, "pending_timeout", 3600) / 60),
		.tags = tags,
		.n_tags = n_tags,
	};
	for (int tries = 0;; tries++) {
		if (ebs_start_snapshot(&j->ebs, &ss, info, err) < 0)
			return -1;
		if (!info->status || !strcmp(info->status, "pending"))
			return 0;
		log_warn("StartSnapshot returned %s, already %s (an earlier build with the same stage key made it); starting another",
			 info->snapshot_id, info->status);
		ebs_snapshot_info_release(info);
		if (tries >= SNAP_MAX_TOKEN_TRIES)
			return af_error_set(err, 0, "StartSnapshot keeps returning finished snapshots for this stage key; change the recipe (e.g. description:) to start a new one");
		snap_client_token(j->ctx->key, ++j->generation, j->parent.id, token);
	}
}

/* The journal record of a started snapshot (see the top of the file). */
static json_t *snap_start_record(const struct snap_job *j)
{
	json_t *r = json_pack("{s:s, s:s, s:i, s:I, s:b}", "snapshot", j->snapshot_id, "region", j->region,
			      "generation", j->generation, "volume_size", (json_int_t)j->volume_gib, "encrypted",
			      j->encrypted);
	if (r && j->parent.id) {
		json_object_set_new(r, "parent", json_string(j->parent.id));
		if (j->parent.image_key)
			json_object_set_new(r, "parent_image_key", json_string(j->parent.image_key));
		if (j->parent.blocks_sha256)
			json_object_set_new(r, "parent_blocks_sha256", json_string(j->parent.blocks_sha256));
	}
	return r;
}

static int snap_start(struct snap_job *j, struct af_error **err)
{
	struct ebs_snapshot_info info = { 0 };
	while (snap_start_call(j, &info, err) < 0) {
		if (!j->parent.id || !snap_parent_refused(*err))
			return -1;
		log_warn("StartSnapshot refused the parent snapshot %s (%s); making a full snapshot", j->parent.id,
			 af_error_msg(*err));
		af_error_clear(err);
		snap_parent_release(&j->parent);
	}
	j->snapshot_id = steal_pointer(&info.snapshot_id);
	ebs_snapshot_info_release(&info);
	ebs_upload_reset(j->up, j->parent.id ? &j->parent.map : NULL);
	log_info("started snapshot %s in %s: %" PRId64 " GiB%s%s%s", j->snapshot_id, j->region, j->volume_gib,
		 j->encrypted ? ", encrypted" : "", j->parent.id ? ", over the parent " : ", full",
		 j->parent.id ? j->parent.id : "");
	return snap_journal(j, snap_start_record(j), err);
}

/* ---- completion ----------------------------------------------------------------------- */

/* Polls DescribeSnapshots until `completed`, bounded by wait_timeout and
 * the stage's deadline. */
static int snap_wait(struct snap_job *j, struct af_error **err)
{
	double t0 = now_monotonic();
	double limit = t0 + (double)params_int(j->ctx->params, "wait_timeout", 3600);
	if (j->ctx->deadline > 0 && j->ctx->deadline - 5 < limit)
		limit = j->ctx->deadline - 5;
	double sleep_s = SNAP_POLL_FIRST;
	for (;;) {
		_cleanup_free_ char *state = NULL, *msg = NULL;
		if (snap_describe(j, j->snapshot_id, &state, &msg, NULL, err) < 0)
			return af_error_wrap(err, "wait for snapshot %s", j->snapshot_id);
		if (!state)
			return af_error_set(err, 0, "snapshot %s disappeared while completing; run the build again to start over",
					    j->snapshot_id);
		if (!strcmp(state, "completed"))
			return 0;
		if (!strcmp(state, "error"))
			return af_error_set(err, 0, "snapshot %s failed: %s; run the build again to start over",
					    j->snapshot_id, msg ? msg : "no reason given");
		double now = now_monotonic();
		if (now + sleep_s > limit)
			return af_error_set(err, ETIMEDOUT,
					    "snapshot %s is still %s after %.0fs; run the build again to keep waiting, or raise wait_timeout:",
					    j->snapshot_id, state, now - t0);
		log_info("snapshot %s is %s; checking again in %.0fs", j->snapshot_id, state, sleep_s);
		struct timespec ts = { (time_t)sleep_s, (long)((sleep_s - (double)(time_t)sleep_s) * 1e9) };
		nanosleep(&ts, NULL);
		sleep_s = sleep_s * 2 > SNAP_POLL_CAP ? SNAP_POLL_CAP : sleep_s * 2;
	}
}

static int snap_complete(struct snap_job *j, struct af_error **err)
{
	_cleanup_free_ char *status = NULL;
	if (ebs_upload_complete(j->up, j->snapshot_id, &status, err) < 0) {
		/* An earlier attempt may have completed it and died before
		 * journaling that: then it is no longer pending. */
		_cleanup_error_ struct af_error *e2 = NULL;
		_cleanup_free_ char *state = NULL;
		if (snap_describe(j, j->snapshot_id, &state, NULL, NULL, &e2) == 0 && state && !strcmp(state, "completed")) {
			af_error_clear(err);
			return 0;
		}
		return -1;
	}
	if (snap_journal(j, json_pack("{s:s, s:b}", "snapshot", j->snapshot_id, "completing", 1), err) < 0)
		return -1;
	return snap_wait(j, err);
}

/* Every block is sent: makes the image's list findable for a later
 * incremental snapshot, then journals how many blocks were written and
 * the list's identity (the outputs of a resume that finds the snapshot
 * completed). */
static int snap_seal(struct snap_job *j, struct af_error **err)
{
	j->blocks_sent = ebs_upload_written(j->up);
	json_t *rec = json_pack("{s:s, s:I}", "snapshot", j->snapshot_id, "blocks_sent", (json_int_t)j->blocks_sent);
	if (!j->encrypted) {
		const struct ebs_block_map *m = ebs_upload_image_map(j->up);
		ebs_block_map_digest(m, j->blocks_sha256);
		snap_list_record(j->ctx->ckpt_dir, j->ctx->image_key, m, j->size, j->blocks_sha256);
		if (rec)
			json_object_set_new(rec, "blocks_sha256", json_string(j->blocks_sha256));
	}
	return snap_journal(j, rec, err);
}

/* True when the snapshot can no longer take blocks (expired, failed or
 * gone); *exists says whether it is still there to delete. */
static bool snap_is_dead(struct snap_job *j, bool *exists)
{
	_cleanup_error_ struct af_error *e = NULL;
	_cleanup_free_ char *state = NULL;
	*exists = true;
	if (snap_describe(j, j->snapshot_id, &state, NULL, NULL, &e) < 0)
		return false;
	*exists = state != NULL;
	return snap_decide(state, false) == SNAP_RESTART;
}

/* Upload and completion, starting over once if the snapshot dies under
 * the upload (it expired: pending_timeout without a write). */
static int snap_send(struct snap_job *j, struct af_error **err)
{
	for (int attempt = 0;; attempt++) {
		if (!j->snapshot_id && snap_start(j, err) < 0)
			return -1;
		if (ebs_upload_send(j->up, j->snapshot_id, err) == 0)
			return snap_seal(j, err) < 0 ? -1 : snap_complete(j, err);
		bool exists;
		if (attempt > 0 || !snap_is_dead(j, &exists))
			return -1;
		log_warn("snapshot %s expired or failed during the upload (%s); starting over", j->snapshot_id,
			 af_error_msg(*err));
		af_error_clear(err);
		_cleanup_free_ char *dead = xstrdup(j->snapshot_id);
		if (snap_abandon(j, dead, exists, err) < 0)
			return -1;
	}
}

/* What a finished journaled snapshot outputs besides its id. */
static void snap_resume_outputs(struct snap_job *j, const struct snap_resume *rs)
{
	if (rs->parent)
		j->parent.id = xstrdup(rs->parent);
	j->blocks_sent = rs->blocks_sent;
	if (snap_digest_valid(rs->blocks_sha256))
		memcpy(j->blocks_sha256, rs->blocks_sha256, 65);
}

/* The journaled snapshot's parent and what it holds (the snapshot held
 * that before any block was sent).  0, or -1 and *why (caller frees). */
static int snap_resume_parent(struct snap_job *j, const struct snap_resume *rs, char **why)
{
	j->parent.id = xstrdup(rs->parent);
	j->parent.image_key = rs->parent_image_key ? xstrdup(rs->parent_image_key) : NULL;
	j->parent.blocks_sha256 = rs->parent_blocks_sha256 ? xstrdup(rs->parent_blocks_sha256) : NULL;
	return snap_parent_learn(j, why);
}

/* Continues the journaled snapshot when it can be, else abandons it.
 * *finished is set when it is already complete. */
static int snap_resume(struct snap_job *j, const struct snap_resume *rs, bool *finished, struct af_error **err)
{
	*finished = false;
	j->generation = rs->generation;
	if (!rs->snapshot_id)
		return 0;
	if (!rs->region || strcmp(rs->region, j->region) != 0 || rs->encrypted != j->encrypted) {
		log_warn("snapshot %s was started in %s; this build is for %s: starting over", rs->snapshot_id,
			 rs->region ? rs->region : "?", j->region);
		/* Not deleted: it lives in another region than this client's. */
		return snap_abandon(j, rs->snapshot_id, false, err);
	}
	_cleanup_free_ char *state = NULL;
	if (snap_describe(j, rs->snapshot_id, &state, NULL, NULL, err) < 0)
		return af_error_wrap(err, "check the journaled snapshot %s", rs->snapshot_id);
	enum snap_action a = snap_decide(state, rs->completing);
	if (a == SNAP_RESTART) {
		log_warn("the journaled snapshot %s is %s (it expired or failed); starting over", rs->snapshot_id,
			 state ? state : "gone");
		return snap_abandon(j, rs->snapshot_id, state != NULL, err);
	}
	j->snapshot_id = xstrdup(rs->snapshot_id);
	j->volume_gib = rs->volume_size > 0 ? rs->volume_size : j->volume_gib;
	log_info("resuming snapshot %s (%s%s%s)", j->snapshot_id, state, rs->parent ? ", over the parent " : "",
		 rs->parent ? rs->parent : "");
	if (a == SNAP_DONE || a == SNAP_WAIT) {
		*finished = true;
		snap_resume_outputs(j, rs);
		return a == SNAP_WAIT ? snap_wait(j, err) : 0;
	}
	_cleanup_free_ char *why = NULL;
	if (rs->parent && snap_resume_parent(j, rs, &why) < 0) {
		log_warn("snapshot %s: what its parent %s holds is unknown (%s); starting over", rs->snapshot_id,
			 rs->parent, why);
		snap_parent_release(&j->parent);
		return snap_abandon(j, rs->snapshot_id, true, err);
	}
	ebs_upload_reset(j->up, j->parent.id ? &j->parent.map : NULL);
	return ebs_upload_resume(j->up, j->snapshot_id, rs->batches, err);
}

static int snap_setup(struct snap_job *j, struct af_error **err)
{
	j->fd = open(j->ctx->image, O_RDONLY | O_CLOEXEC);
	if (j->fd < 0)
		return af_error_set(err, errno, "open the image '%s'", j->ctx->image);
	off_t end = lseek(j->fd, 0, SEEK_END);
	if (end <= 0)
		return af_error_set(err, end < 0 ? errno : 0, "the image '%s' is empty or unreadable; run allocate first",
				    j->ctx->image);
	j->size = (uint64_t)end;
	j->volume_gib = snap_volume_gib(j->size, params_int(j->ctx->params, "volume_size", 0), err);
	if (j->volume_gib < 0)
		return -1;
	j->encrypted = params_bool(j->ctx->params, "encrypted", false);
	j->parallel = (int)params_int(j->ctx->params, "parallel", 16);
	const char *region = params_str(j->ctx->params, "region", NULL);
	if (aws_session_open(&j->aws, region, j->ctx->deadline, err) < 0)
		return -1;
	j->region = j->aws.region;
	ebs_client_init(&j->ebs, j->region, j->aws.creds, &j->aws.opts);
	ec2_client_init(&j->ec2, j->region, j->aws.creds, &j->aws.opts);
	const struct ebs_upload_opts uo = {
		.ebs = &j->ebs,
		.fd = j->fd,
		.size = j->size,
		.encrypted = j->encrypted,
		.parallel = j->parallel,
		.journal = snap_journal_batch,
		.arg = j,
	};
	j->up = ebs_upload_new(&uo);
	return 0;
}

static void snap_outputs(struct snap_job *j)
{
	json_t *o = j->ctx->outputs;
	json_object_set_new(o, "snapshot.id", json_string(j->snapshot_id));
	json_object_set_new(o, "snapshot.region", json_string(j->region));
	json_object_set_new(o, "snapshot.volume_size", json_integer(j->volume_gib));
	if (j->parent.id)
		json_object_set_new(o, "snapshot.parent", json_string(j->parent.id));
	if (j->blocks_sent >= 0)
		json_object_set_new(o, "snapshot.blocks_sent", json_integer(j->blocks_sent));
	if (j->blocks_sha256[0])
		json_object_set_new(o, "snapshot.blocks_sha256", json_string(j->blocks_sha256));
	if (j->blocks_sha256[0] && j->ctx->image_key && *j->ctx->image_key)
		json_object_set_new(o, "snapshot.image_key", json_string(j->ctx->image_key));
	log_info("snapshot %s is completed in %s (%" PRId64 " GiB, %s%s, %" PRId64 " blocks written)", j->snapshot_id,
		 j->region, j->volume_gib, j->parent.id ? "incremental over " : "full", j->parent.id ? j->parent.id : "",
		 j->blocks_sent);
}

static int snapshot_run(struct stage_ctx *ctx, struct af_error **err)
{
	struct snap_job j = { .ctx = ctx, .fd = -1, .blocks_sent = -1 };
	struct snap_resume rs;
	snap_resume_parse(ctx->resources, &rs);
	bool finished = false;
	int r = snap_setup(&j, err);
	if (r == 0)
		r = snap_resume(&j, &rs, &finished, err);
	if (r == 0 && !finished && !j.snapshot_id)
		snap_parent_setup(&j);
	if (r == 0 && !finished)
		r = snap_send(&j, err);
	if (r == 0)
		snap_outputs(&j);
	json_decref(rs.batches);
	snap_job_release(&j);
	return r;
}

/* For plan (stage.h).  Whether "auto" finds a previous snapshot depends on
 * the journal, which the plan's status already shows. */
static char *snapshot_describe(const struct stage_describe *d)
{
	const char *given = params_str(d->params, "region", NULL);
	const char *parent = params_str(d->params, "parent", "auto");
	int64_t gib = params_int(d->params, "volume_size", 0);
	bool enc = params_bool(d->params, "encrypted", false);
	stage_describe_know(d, "snapshot.region", given ? given : d->region);
	_cleanup_free_ char *how =
		enc ? xasprintf("encrypted with %s: every block is sent", params_str(d->params, "kms_key", "the account's default EBS key"))
		: !strcmp(parent, "none") ? xstrdup("a full snapshot")
		: !strcmp(parent, "auto") ? xstrdup("incremental from this stage's previous snapshot, if any")
					  : xasprintf("incremental over %s", parent);
	_cleanup_free_ char *vol = gib > 0 ? xasprintf(", volume %lld GiB", (long long)gib) : xstrdup("");
	return xasprintf("send the image to an EBS snapshot in %s (%s)%s", stage_describe_region(d, given), how, vol);
}

static const struct fact_need snapshot_needs[] = { { "disk.path", NULL }, { NULL, NULL } };
static const char *const snapshot_provides[] = {
	"snapshot.id", "snapshot.region", "snapshot.volume_size", "snapshot.parent",
	"snapshot.blocks_sent", "snapshot.image_key", "snapshot.blocks_sha256", NULL,
};

const struct stage_type stage_snapshot = {
	.name = "snapshot",
	.summary = "upload the image as an EBS snapshot (EBS direct APIs; incremental over a parent, resumable, zero blocks skipped)",
	.params = snapshot_params,
	.flags = STAGE_NETWORK | STAGE_REMOTE,
	.needs = snapshot_needs,
	.provides = snapshot_provides,
	.default_timeout = 6 * 3600,
	.check = snapshot_check,
	.describe = snapshot_describe,
	.run = snapshot_run,
};
