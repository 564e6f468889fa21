/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot: the image as an EBS snapshot through the EBS direct APIs, from
 * any machine (no EC2 host or volume), coldsnap's way (reference/FORMATS.md
 * §3): StartSnapshot, one PutSnapshotBlock per 512 KiB block that holds
 * data, over `parallel` connections, CompleteSnapshot with the number of
 * blocks written and their linear aggregate checksum, then DescribeSnapshots
 * until `completed`.  Only the image's allocated extents are read
 * (SEEK_DATA/SEEK_HOLE) and all-zero blocks are skipped: an absent block of
 * an unencrypted snapshot reads as zeros.  Encrypted snapshots get every
 * block, because their absent blocks read back as random data.  The upload
 * itself is engine/aws/ebs_upload.c; the stage starts, resumes, abandons
 * and waits for snapshots.
 *
 * Resuming.  What a resumed build needs is journaled as a resource of this
 * stage the moment it exists (stage_journal_resource):
 *   {"snapshot": ID, "region": R, "generation": G, "volume_size": GiB, "encrypted": B}
 *       StartSnapshot answered.  Its ClientToken is derived from the stage
 *       key and G, so a build killed before this line gets the same
 *       snapshot back from StartSnapshot instead of a second one;
 *   {"snapshot": ID, "blocks": [[first, last], ...], "digest": B64}
 *       a batch of acknowledged blocks and the linear aggregate of their
 *       SHA-256 digests.  A resume re-reads those blocks: a batch that still
 *       hashes the same is done, any other is sent again (zero blocks too,
 *       so that the snapshot and the block count stay exact);
 *   {"snapshot": ID, "completing": true}   CompleteSnapshot accepted;
 *   {"snapshot": ID, "abandoned": true}
 *       it expired or failed (deleted if it still existed); the next
 *       generation starts over with a new ClientToken.
 * A pending snapshot is continued with only its missing blocks; AWS cancels
 * one that saw no write for `pending_timeout`, and then the stage starts
 * over cleanly. */
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
	{ .name = NULL },
};

/* ---- parameters ------------------------------------------------------------------- */

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

/* StartSnapshot's ClientToken for generation GEN of this stage: the same for
 * the same stage key, so a retried or resumed StartSnapshot returns the
 * snapshot it already made; a new generation (after an expiry) gets a new
 * one. */
static void snap_client_token(const char *key, int gen, char out[37])
{
	char purpose[48];
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
};

static void snap_resume_parse(const json_t *resources, struct snap_resume *r)
{
	memset(r, 0, sizeof(*r));
	r->batches = json_array();
	int next_gen = 0;
	size_t i;
	const json_t *res;
	json_array_foreach(resources, i, res) {
		const char *id = json_string_value(json_object_get(res, "snapshot"));
		if (!id)
			continue;
		const json_t *gen = json_object_get(res, "generation");
		if (json_is_integer(gen)) {
			r->snapshot_id = id;
			r->region = json_string_value(json_object_get(res, "region"));
			r->volume_size = json_integer_value(json_object_get(res, "volume_size"));
			r->encrypted = json_is_true(json_object_get(res, "encrypted"));
			r->generation = (int)json_integer_value(gen);
			r->completing = false;
			json_array_clear(r->batches);
			if (r->generation + 1 > next_gen)
				next_gen = r->generation + 1;
		} else if (!r->snapshot_id || strcmp(id, r->snapshot_id) != 0) {
			continue;
		} else if (json_is_true(json_object_get(res, "abandoned"))) {
			r->snapshot_id = NULL;
			json_array_clear(r->batches);
		} else if (json_is_true(json_object_get(res, "completing"))) {
			r->completing = true;
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

/* The snapshot's state (NULL and 0 when it does not exist), and its
 * message when it failed. */
static int snap_describe(struct snap_job *j, const char *id, char **state, char **message, struct af_error **err)
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
	ebs_upload_reset(j->up);
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

static int snap_start(struct snap_job *j, struct af_error **err)
{
	char token[37];
	snap_client_token(j->ctx->key, j->generation, token);
	_cleanup_free_ char *desc = xasprintf("amiforge %s (stage key %.12s)", j->ctx->id, j->ctx->key);
	size_t n_tags;
	_cleanup_free_ struct aws_tag *tags = snap_tags(j, &n_tags);
	struct ebs_start_snapshot ss = {
		.volume_size_gib = j->volume_gib,
		.description = params_str(j->ctx->params, "description", desc),
		.client_token = token,
		.kms_key_arn = params_str(j->ctx->params, "kms_key", NULL),
		.encrypted = j->encrypted,
		.timeout_minutes = (int)(params_int(j->ctx->params, "pending_timeout", 3600) / 60),
		.tags = tags,
		.n_tags = n_tags,
	};
	struct ebs_snapshot_info info = { 0 };
	for (int tries = 0;; tries++) {
		if (ebs_start_snapshot(&j->ebs, &ss, &info, err) < 0)
			return -1;
		if (!info.status || !strcmp(info.status, "pending"))
			break;
		/* The token's snapshot is finished: an earlier build with this
		 * stage key and no journal (--fresh, a new state directory)
		 * made it.  It may be in use, so it is left alone. */
		log_warn("StartSnapshot returned %s, already %s (an earlier build with the same stage key made it); starting another",
			 info.snapshot_id, info.status);
		ebs_snapshot_info_release(&info);
		if (tries >= SNAP_MAX_TOKEN_TRIES)
			return af_error_set(err, 0, "StartSnapshot keeps returning finished snapshots for this stage key; change the recipe (e.g. description:) to start a new one");
		snap_client_token(j->ctx->key, ++j->generation, token);
	}
	j->snapshot_id = steal_pointer(&info.snapshot_id);
	ebs_snapshot_info_release(&info);
	log_info("started snapshot %s in %s: %" PRId64 " GiB%s", j->snapshot_id, j->region, j->volume_gib,
		 j->encrypted ? ", encrypted" : "");
	return snap_journal(j, json_pack("{s:s, s:s, s:i, s:I, s:b}", "snapshot", j->snapshot_id, "region", j->region,
					 "generation", j->generation, "volume_size", (json_int_t)j->volume_gib,
					 "encrypted", j->encrypted),
			    err);
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
		if (snap_describe(j, j->snapshot_id, &state, &msg, err) < 0)
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
		if (snap_describe(j, j->snapshot_id, &state, NULL, &e2) == 0 && state && !strcmp(state, "completed")) {
			af_error_clear(err);
			return 0;
		}
		return -1;
	}
	if (snap_journal(j, json_pack("{s:s, s:b}", "snapshot", j->snapshot_id, "completing", 1), err) < 0)
		return -1;
	return snap_wait(j, err);
}

/* True when the snapshot can no longer take blocks (expired, failed or
 * gone); *exists says whether it is still there to delete. */
static bool snap_is_dead(struct snap_job *j, bool *exists)
{
	_cleanup_error_ struct af_error *e = NULL;
	_cleanup_free_ char *state = NULL;
	*exists = true;
	if (snap_describe(j, j->snapshot_id, &state, NULL, &e) < 0)
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
			return snap_complete(j, err);
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
	if (snap_describe(j, rs->snapshot_id, &state, NULL, err) < 0)
		return af_error_wrap(err, "check the journaled snapshot %s", rs->snapshot_id);
	enum snap_action a = snap_decide(state, rs->completing);
	if (a == SNAP_RESTART) {
		log_warn("the journaled snapshot %s is %s (it expired or failed); starting over", rs->snapshot_id,
			 state ? state : "gone");
		return snap_abandon(j, rs->snapshot_id, state != NULL, err);
	}
	j->snapshot_id = xstrdup(rs->snapshot_id);
	j->volume_gib = rs->volume_size > 0 ? rs->volume_size : j->volume_gib;
	log_info("resuming snapshot %s (%s)", j->snapshot_id, state);
	if (a == SNAP_DONE) {
		*finished = true;
		return 0;
	}
	if (a == SNAP_WAIT) {
		*finished = true;
		return snap_wait(j, err);
	}
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

static int snapshot_run(struct stage_ctx *ctx, struct af_error **err)
{
	struct snap_job j = { .ctx = ctx, .fd = -1 };
	struct snap_resume rs;
	snap_resume_parse(ctx->resources, &rs);
	bool finished = false;
	int r = snap_setup(&j, err);
	if (r == 0)
		r = snap_resume(&j, &rs, &finished, err);
	if (r == 0 && !finished)
		r = snap_send(&j, err);
	if (r == 0) {
		json_object_set_new(ctx->outputs, "snapshot.id", json_string(j.snapshot_id));
		json_object_set_new(ctx->outputs, "snapshot.region", json_string(j.region));
		json_object_set_new(ctx->outputs, "snapshot.volume_size", json_integer(j.volume_gib));
		log_info("snapshot %s is completed in %s (%" PRId64 " GiB)", j.snapshot_id, j.region, j.volume_gib);
	}
	json_decref(rs.batches);
	snap_job_release(&j);
	return r;
}

static const struct fact_need snapshot_needs[] = { { "disk.path", NULL }, { NULL, NULL } };
static const char *const snapshot_provides[] = { "snapshot.id", "snapshot.region", "snapshot.volume_size", NULL };

const struct stage_type stage_snapshot = {
	.name = "snapshot",
	.summary = "upload the image as an EBS snapshot (EBS direct APIs; resumable, zero blocks skipped)",
	.params = snapshot_params,
	.flags = STAGE_NETWORK | STAGE_REMOTE,
	.needs = snapshot_needs,
	.provides = snapshot_provides,
	.default_timeout = 6 * 3600,
	.check = snapshot_check,
	.run = snapshot_run,
};
