/* SPDX-License-Identifier: Apache-2.0 */
/* The build driver (DESIGN §4-6).  Reads like a checklist: load, plan,
 * lock, enter the sandbox, restore, then for each stage: journal start,
 * mount, fork the stage child, wait (timeout, signals), unmount,
 * checkpoint, journal done. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/build_manifest.h"
#include "amiforge/build_outputs.h"
#include "amiforge/build_remote.h"
#include "amiforge/channel.h"
#include "amiforge/checkpoint.h"
#include "amiforge/chroot.h"
#include "amiforge/cleanup.h"
#include "amiforge/facts.h"
#include "amiforge/journal.h"
#include "amiforge/log.h"
#include "amiforge/namespace.h"
#include "amiforge/plan.h"
#include "amiforge/recipe.h"
#include "amiforge/redact.h"
#include "amiforge/rootfs.h"
#include "amiforge/runner.h"
#include "amiforge/util.h"

/* `checkpoint: auto` takes a checkpoint after a stage that touches the
 * image when the image holds at most CKPT_SMALL_IMAGE_BYTES of data (then a
 * checkpoint costs about a second at most, and taking one after every stage
 * makes a resume skip every completed stage, predictably: the decision does
 * not depend on how busy the machine is), when the stage took long
 * (re-running it would cost more than the checkpoint), or when the
 * checkpoint fits in a budget that keeps all of them under a share of the
 * build's time (DESIGN §5: 5%). */
#define CKPT_SMALL_IMAGE_BYTES (4ull << 30)
#define CKPT_LONG_STAGE_SECONDS 10.0
#define CKPT_BUDGET_SHARE 0.05
#define LOG_TAIL_LINES 25
/* run_stages(): the planned checkpoint could not be restored */
#define RESTORE_FAILED (-1)
/* run_stages(): another build finished the next stages (the remote store) */
#define REPLAN (-2)

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

struct build {
	const struct build_opts *opts;
	struct recipe *recipe;
	struct plan plan;
	struct journal *journal;
	char *state;           /* absolute */
	char *cache;
	char *ckpt_dir;
	char *root_mnt;        /* STATE/root: where the root fs is mounted */
	char *default_image;   /* STATE/disk.img */
	json_t *facts;         /* merged outputs */
	json_t *stage_reports; /* for the manifest: one object per stage reached */
	double t_start;
	double ckpt_seconds;
	uint64_t ckpt_bytes_new;
	double ckpt_rate;      /* bytes/s measured by the last checkpoint */
	struct ckpt_memo *ckpt_memo; /* skips re-hashing unchanged blocks */
	struct build_remote *remote;  /* --remote, or NULL */
	bool foreign;                 /* the journal came from another machine */
	char (*keys)[65];             /* the stages' keys, for the remote store */
	const char *failed_stage;     /* the id of the stage that failed, or NULL */
	char *error;                  /* why the build stopped, or NULL */
};

char *runner_state_dir(const char *dir, const char *stem)
{
	if (dir)
		return xstrdup(dir);
	return xasprintf(".amiforge/%s", stem);
}

char *runner_cache_dir(const char *dir)
{
	if (dir)
		return xstrdup(dir);
	if (geteuid() == 0)
		return xstrdup("/var/cache/amiforge");
	const char *xdg = getenv("XDG_CACHE_HOME");
	if (xdg && *xdg)
		return path_join(xdg, "amiforge");
	const char *home = getenv("HOME");
	return xasprintf("%s/.cache/amiforge", home && *home ? home : "/tmp");
}

static char *absolute_dir(const char *dir, struct af_error **err)
{
	if (mkdir_p(dir, 0755, err) < 0) {
		af_error_wrap(err, "state directory");
		af_error_hint(err, "choose another with --state DIR");
		return NULL;
	}
	char *abs = realpath(dir, NULL);
	if (!abs)
		af_error_set(err, errno, "cannot resolve '%s'", dir);
	return abs;
}

static const char *image_path(struct build *b)
{
	const char *p = json_string_value(json_object_get(b->facts, "disk.path"));
	if (p)
		return p;
	if (!b->default_image)
		b->default_image = path_join(b->state, "disk.img");
	return b->default_image;
}

/* Which run of stage i the journal is told about. */
static struct journal_stage journal_stage_of(const struct build *b, size_t i)
{
	const struct stage_inst *s = &b->recipe->stages[i];
	return (struct journal_stage){ s->index, s->id, b->plan.stages[i].key };
}

/* The result of a journal append, its error printed and freed. */
static int journaled(int r, struct af_error **err)
{
	if (r < 0) {
		log_error("%s", af_error_msg(*err));
		af_error_clear(err);
	}
	return r;
}

/* A stage's end: one progress line, or with --json one event carrying its
 * outputs and, when it failed, the error (credentials redacted). */
static void emit_stage_end(struct build *b, size_t i, const char *status, double secs, bool cached,
			   const json_t *outputs, const char *error)
{
	const struct stage_inst *s = &b->recipe->stages[i];
	_cleanup_json_ json_t *ev = json_pack("{s:s, s:i, s:s, s:s, s:f, s:b}", "event", "stage_end",
					      "index", s->index, "id", s->id, "status", status,
					      "seconds", secs, "cached", cached);
	if (json_is_object(outputs))
		json_object_set_new(ev, "outputs", json_deep_copy(outputs));
	if (error)
		json_object_set_new(ev, "error", json_string(error));
	redact_json(ev);
	log_event(ev);
	if (cached)
		log_progress("[%d/%zu] %-16s done (cached)", s->index, b->recipe->n_stages, s->id);
	else
		log_progress("[%d/%zu] %-16s %-6s %7.1fs", s->index, b->recipe->n_stages, s->id,
			     status, secs);
	json_t *report = json_pack("{s:i, s:s, s:s, s:s, s:s, s:f, s:b, s:o}", "index", s->index, "id",
				   s->id, "type", s->type->name, "key", b->plan.stages[i].key, "status",
				   status, "seconds", secs, "cached", cached, "outputs",
				   json_is_object(outputs) ? json_deep_copy(outputs) : json_object());
	if (error)
		json_object_set_new(report, "error", json_string(error));
	json_array_append_new(b->stage_reports, report);
}

/* What a stage that failed made before it stopped: the remote resources it
 * journaled (an AMI being copied, a snapshot started), for the manifest. */
static void report_resources(struct build *b, size_t i)
{
	json_t *report = json_array_get(b->stage_reports, json_array_size(b->stage_reports) - 1);
	json_t *res = journal_stage_resources(journal_get_log(b->journal), b->plan.stages[i].key);
	if (report && json_array_size(res))
		json_object_set_new(report, "resources", res);
	else
		json_decref(res);
}

static void merge_outputs(json_t *facts, const json_t *outputs)
{
	if (json_is_object(outputs))
		json_object_update(facts, (json_t *)outputs);
}

/* A completed stage's outputs, from the journal, merged; returns them as
 * this build sees them (new reference).  An image file is always
 * STATE/disk.img: a journal adopted from another machine (the remote
 * store) names that machine's. */
static json_t *merge_cached_outputs(struct build *b, const json_t *outputs)
{
	json_t *seen = json_is_object(outputs) ? json_deep_copy(outputs) : json_object();
	merge_outputs(b->facts, seen);
	if (json_object_get(seen, "disk.path") &&
	    json_is_false(json_object_get(b->facts, "disk.is_device"))) {
		json_object_del(b->facts, "disk.path");
		json_object_set_new(b->facts, "disk.path", json_string(image_path(b)));
		json_object_set(seen, "disk.path", json_object_get(b->facts, "disk.path"));
	}
	return seen;
}

/* ---- the stage child ---------------------------------------------------- */

/* The stage child reports over a pipe, not a file: STATE may be the very
 * thing that is full. */
struct child_args {
	const struct stage_type *type;
	struct stage_ctx *ctx;
};

static int stage_child(void *arg)
{
	struct child_args *a = arg;
	struct af_error *err = NULL;
	log_set_stage_fd(-1); /* stdout and stderr already are the stage log */
	channel_child_side(a->ctx->channel);
	int r = 0;
	if (a->type->flags & STAGE_NEEDS_CHROOT)
		r = chroot_prepare(a->ctx->root, &err);
	if (r == 0)
		r = a->type->run(a->ctx, &err);
	if (r < 0 && !err)
		af_error_set(&err, 0, "stage failed without saying why");
	json_t *res = r == 0 ? json_pack("{s:b, s:O}", "ok", 1, "outputs", a->ctx->outputs)
			     : json_pack("{s:b, s:s, s:i}", "ok", 0, "error", af_error_msg(err), "errno",
					 af_error_errno(err));
	int w = res ? channel_send_result(a->ctx->channel, res) : -1;
	json_decref(res);
	af_error_free(err);
	return r == 0 && w == 0 ? 0 : 1;
}

/* What the runner does with a resource a stage reports: journal it. */
struct resource_sink {
	struct build *b;
	size_t i;
};

static int sink_resource(void *arg, const json_t *resource, struct af_error **err)
{
	struct resource_sink *rs = arg;
	struct journal_stage js = journal_stage_of(rs->b, rs->i);
	if (journal_append_resource(rs->b->journal, &js, resource, err) < 0)
		return -1;
	/* A resumed build on another machine must find it too. */
	return build_remote_sync(rs->b->remote, err);
}

/* Waits for the stage child, journaling the resources it reports, enforcing
 * the deadline and passing on SIGINT/SIGTERM.  Returns 0 when it exited 0,
 * else -1 + err; its result message lands in *result. */
static int wait_child(pid_t pid, double deadline, uint64_t timeout, struct stage_channel *ch,
		      struct resource_sink *sink, json_t **result, struct af_error **err)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	for (;;) {
		if (channel_pump(ch, sink_resource, sink, result, err) < 0) {
			/* Unjournaled, the resource must not be used: stop the stage. */
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			if (pidfd >= 0)
				close(pidfd);
			return af_error_wrap(err, "cannot journal a resource");
		}
		int status;
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid) {
			channel_pump(ch, sink_resource, sink, result, err);
			if (pidfd >= 0)
				close(pidfd);
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
				return 0;
			if (WIFSIGNALED(status))
				return af_error_set(err, 0, "stage process killed by signal %d",
						    WTERMSIG(status));
			return af_error_set(err, 0, "stage process exited with status %d",
					    WEXITSTATUS(status));
		}
		const char *why = NULL;
		if (interrupted)
			why = "interrupted";
		else if (deadline > 0 && now_monotonic() >= deadline)
			why = "timeout";
		if (why) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			if (pidfd >= 0)
				close(pidfd);
			if (!strcmp(why, "timeout"))
				return af_error_set(err, ETIMEDOUT,
						    "stage timed out after %llus; raise its 'timeout:' in the recipe",
						    (unsigned long long)timeout);
			return af_error_set(err, EINTR, "build interrupted by signal %d", (int)interrupted);
		}
		struct pollfd p[2] = { { .fd = ch->msg_rd, .events = POLLIN },
				       { .fd = pidfd, .events = POLLIN } };
		poll(p, pidfd >= 0 ? 2 : 1, 200);
	}
}

/* Prints the log's last lines; returns true if the log says a disk was full. */
static bool print_log_tail(const char *log_path)
{
	_cleanup_file_ FILE *f = fopen(log_path, "r");
	bool full = false;
	if (!f)
		return false;
	char *lines[LOG_TAIL_LINES] = { 0 };
	size_t n = 0;
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) >= 0) {
		if (strstr(line, "No space left on device"))
			full = true;
		free(lines[n % LOG_TAIL_LINES]);
		lines[n % LOG_TAIL_LINES] = xstrdup(line);
		n++;
	}
	free(line);
	size_t first = n > LOG_TAIL_LINES ? n - LOG_TAIL_LINES : 0;
	if (n)
		fprintf(stderr, "--- last lines of %s ---\n", log_path);
	for (size_t i = first; i < n; i++) {
		const char *l = lines[i % LOG_TAIL_LINES];
		fprintf(stderr, "  | %s%s", l, l[strlen(l) - 1] == '\n' ? "" : "\n");
	}
	for (size_t i = 0; i < LOG_TAIL_LINES; i++)
		free(lines[i]);
	return full;
}

/* A stage runs in a child whose messages go to its log only; its
 * warnings (a full snapshot instead of an incremental one, a bundle made
 * for another region) concern the user, so they reach the terminal too,
 * once the stage has ended.  The log's lines are already redacted. */
#define RELAYED_WARNINGS_MAX 20

static void relay_stage_warnings(const char *log_path, const char *id)
{
	static const char prefix[] = "amiforge: warning: ";
	_cleanup_file_ FILE *f = fopen(log_path, "r");
	if (!f)
		return;
	char *line = NULL;
	size_t cap = 0, n = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, f)) >= 0) {
		if (strncmp(line, prefix, sizeof(prefix) - 1))
			continue;
		if (n++ < RELAYED_WARNINGS_MAX) {
			line[strcspn(line, "\n")] = '\0';
			log_warn("stage '%s': %s", id, line + sizeof(prefix) - 1);
		}
	}
	free(line);
	if (n > RELAYED_WARNINGS_MAX)
		log_warn("stage '%s': %zu more warnings in %s", id, n - RELAYED_WARNINGS_MAX, log_path);
}

/* After a failure: say which disk is full, if one is. */
static void explain_full_disk(struct build *b, bool log_says_full)
{
	struct statvfs sv;
	if (statvfs(b->state, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize < 16u << 20) {
		char sz[32];
		log_error("the filesystem holding %s has only %s free (No space left on device); free space there or use --state on a larger filesystem",
			  b->state, format_size((uint64_t)sv.f_bavail * sv.f_frsize, sz, sizeof(sz)));
	} else if (log_says_full) {
		log_error("the image's filesystem is full (No space left on device); raise 'size:' of the allocate stage (or 'root_size:' of partition)");
	}
}

/* ---- mounting around a stage ---------------------------------------------- */

static int mount_root(struct build *b, size_t i, struct rootfs *fs, struct af_error **err)
{
	const char *fstype = json_string_value(json_object_get(b->facts, "root.fstype"));
	if (!fstype)
		return af_error_set(err, 0,
				    "stage '%s' needs the root filesystem, but no earlier stage made one; add an mkfs stage before it",
				    b->recipe->stages[i].id);
	uint64_t off = (uint64_t)json_integer_value(json_object_get(b->facts, "root.offset"));
	uint64_t size = (uint64_t)json_integer_value(json_object_get(b->facts, "root.size"));
	return rootfs_mount(image_path(b), off, size, fstype, b->root_mnt, fs, err);
}

/* ---- checkpoints ----------------------------------------------------------- */

static uint64_t allocated_bytes(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return 0;
	if (S_ISBLK(st.st_mode))
		return UINT64_MAX / 4;
	return (uint64_t)st.st_blocks * 512;
}

static bool want_checkpoint(struct build *b, size_t i, double stage_secs)
{
	const struct stage_inst *s = &b->recipe->stages[i];
	if (!(s->type->flags & STAGE_NEEDS_IMAGE) || s->checkpoint == CKPT_NEVER)
		return false;
	if (s->checkpoint == CKPT_ALWAYS || stage_secs >= CKPT_LONG_STAGE_SECONDS)
		return true;
	uint64_t data = allocated_bytes(image_path(b));
	if (data <= CKPT_SMALL_IMAGE_BYTES)
		return true;
	double est = (double)data / b->ckpt_rate;
	double elapsed = now_monotonic() - b->t_start;
	return b->ckpt_seconds + est <= CKPT_BUDGET_SHARE * elapsed;
}

static void take_checkpoint(struct build *b, size_t i)
{
	const struct stage_inst *s = &b->recipe->stages[i];
	struct ckpt_stats st = { 0 };
	_cleanup_error_ struct af_error *err = NULL;
	if (!b->ckpt_memo)
		b->ckpt_memo = ckpt_memo_new();
	if (ckpt_take_memo(b->ckpt_dir, b->plan.stages[i].disk_key, image_path(b), b->ckpt_memo, &st,
			   &err) < 0) {
		/* A lost checkpoint only costs time on a later resume. */
		log_warn("checkpoint after stage '%s' failed, continuing without it: %s", s->id,
			 af_error_msg(err));
		return;
	}
	b->ckpt_seconds += st.seconds;
	b->ckpt_bytes_new += st.bytes_new;
	/* Estimate later checkpoints from ones that mostly read and hashed:
	 * the first after a big stage is dominated by writing new blocks. */
	if (st.seconds > 0.01 && st.bytes_new * 10 < st.bytes_read)
		b->ckpt_rate = (double)st.bytes_read / st.seconds;
	char sz[32];
	log_debug("checkpoint after '%s': %llu data blocks, %s new, %.2fs", s->id,
		  (unsigned long long)st.blocks_data, format_size(st.bytes_new, sz, sizeof(sz)),
		  st.seconds);
	struct journal_stage js = journal_stage_of(b, i);
	struct journal_ckpt jc = { .seconds = st.seconds, .bytes_new = st.bytes_new,
				   .bytes_stored = st.bytes_stored, .blocks_data = st.blocks_data };
	if (journaled(journal_append_checkpoint(b->journal, &js, b->plan.stages[i].disk_key, &jc, &err),
		      &err) == 0)
		build_remote_checkpoint(b->remote, b->plan.stages[i].disk_key);
}

/* ---- one stage ---------------------------------------------------------------- */

/* Forks the stage child and waits for it; its result message lands in
 * *result. */
static int fork_stage(struct build *b, size_t i, struct stage_ctx *ctx, double deadline,
		      uint64_t timeout, json_t **result, struct af_error **err)
{
	struct stage_channel ch;
	if (channel_open(&ch, err) < 0)
		return af_error_wrap(err, "stage '%s'", ctx->id);
	ctx->channel = &ch;
	struct child_args args = { .type = b->recipe->stages[i].type, .ctx = ctx };
	struct resource_sink sink = { .b = b, .i = i };
	fflush(NULL);
	pid_t pid = namespace_fork_isolated(stage_child, &args, ctx->log_fd, err);
	channel_parent_side(&ch);
	int r = pid < 0 ? -1 : wait_child(pid, deadline, timeout, &ch, &sink, result, err);
	channel_close(&ch);
	ctx->channel = NULL;
	return r;
}

static int run_stage(struct build *b, size_t i)
{
	const struct stage_inst *s = &b->recipe->stages[i];
	const struct stage_type *type = s->type;
	const char *key = b->plan.stages[i].key;
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_free_ char *log_path = xasprintf("%s/logs/%02d-%s.log", b->state, s->index, s->id);
	_cleanup_json_ json_t *outputs = json_object();
	_cleanup_json_ json_t *res = NULL;
	/* What earlier attempts of this stage (same key) journaled. */
	_cleanup_json_ json_t *resources =
		journal_stage_resources(journal_get_log(b->journal), key);
	const struct journal_event *previous =
		journal_find_previous(journal_get_log(b->journal), s->id, key);
	struct journal_stage js = journal_stage_of(b, i);
	struct rootfs fs = { .loop = { .fd = -1 } };
	bool chroot_used = false;

	uint64_t timeout = s->timeout; /* the loader applied the type's default */
	double t0 = now_monotonic();
	double deadline = timeout ? t0 + (double)timeout : 0;

	_cleanup_fd_ int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND,
				       0600);
	if (log_fd < 0) {
		log_error("stage '%s': cannot create log '%s': %s", s->id, log_path, strerror(errno));
		return EXIT_STAGE_FAILED;
	}
	if (journaled(journal_append_stage_start(b->journal, &js, &err), &err) < 0)
		return EXIT_STAGE_FAILED;
	build_remote_journal(b->remote);
	_cleanup_json_ json_t *start_ev = json_pack("{s:s, s:i, s:s}", "event", "stage_start", "index",
						    s->index, "id", s->id);
	log_event(start_ev);
	if (isatty(STDOUT_FILENO) && !log_json_enabled()) {
		printf("[%d/%zu] %-16s running...\r", s->index, b->recipe->n_stages, s->id);
		fflush(stdout);
	}
	log_set_stage_fd(log_fd);

	int r = 0;
	if (type->flags & STAGE_REMOTE)
		r = build_remote_flush(b->remote, &err);
	if (r == 0 && (type->flags & STAGE_NEEDS_MOUNT))
		r = mount_root(b, i, &fs, &err);
	if (r == 0) {
		struct stage_ctx ctx = {
			.id = s->id, .index = s->index, .key = key, .arch = b->recipe->arch,
			.params = s->params, .recipe_dir = b->recipe->dir, .state_dir = b->state,
			.recipe_name = b->recipe->name,
			.cache_dir = b->cache, .image = image_path(b),
			.root = (type->flags & STAGE_NEEDS_MOUNT) ? b->root_mnt : NULL,
			.facts = b->facts, .outputs = outputs, .deadline = deadline, .log_fd = log_fd,
			.resources = resources, .image_key = i ? b->plan.stages[i - 1].disk_key : "",
			.ckpt_dir = b->ckpt_dir, .previous = previous ? previous->outputs : NULL,
		};
		chroot_used = (type->flags & STAGE_NEEDS_CHROOT) != 0;
		r = fork_stage(b, i, &ctx, deadline, timeout, &res, &err);
	}
	/* The child's own message says more than its exit status. */
	if (res && !json_is_true(json_object_get(res, "ok")) && af_error_errno(err) != ETIMEDOUT &&
	    af_error_errno(err) != EINTR) {
		af_error_clear(&err);
		af_error_set(&err, 0, "%s", json_string_value(json_object_get(res, "error")));
		r = -1;
	}
	if (r == 0 && facts_check_outputs(type, json_object_get(res, "outputs"), &err) < 0)
		r = -1;
	if (chroot_used && fs.mounted) {
		_cleanup_error_ struct af_error *e2 = NULL;
		if (chroot_unprepare(b->root_mnt, &e2) < 0 && r == 0) {
			err = steal_pointer(&e2);
			r = -1;
		}
	}
	if (fs.mounted || fs.loop.fd >= 0) {
		_cleanup_error_ struct af_error *e2 = NULL;
		if (rootfs_umount(&fs, &e2) < 0 && r == 0) {
			err = steal_pointer(&e2);
			r = -1;
		}
	}
	log_set_stage_fd(-1);
	relay_stage_warnings(log_path, s->id);
	double secs = now_monotonic() - t0;

	if (r < 0) {
		const char *msg = af_error_msg(err);
		_cleanup_error_ struct af_error *jerr = NULL;
		journaled(journal_append_stage_fail(b->journal, &js, secs, msg, &jerr), &jerr);
		build_remote_journal(b->remote);
		emit_stage_end(b, i, interrupted ? "interrupted" : "failed", secs, false, NULL, msg);
		report_resources(b, i);
		b->failed_stage = s->id;
		free(b->error);
		b->error = xasprintf("stage %d '%s' (%s) failed: %s", s->index, s->id, type->name, msg);
		{
			_cleanup_free_ char *shown = redact_text(msg, NULL, 0);
			dprintf(log_fd, "amiforge: error: %s\n", shown);
		}
		bool full = print_log_tail(log_path);
		log_error("stage %d '%s' (%s) failed: %s", s->index, s->id, type->name, msg);
		explain_full_disk(b, full || strstr(msg, "No space left") != NULL);
		log_error("full log: %s; fix the cause and run the same build again: it resumes at this stage",
			  log_path);
		return interrupted ? EXIT_INTERRUPTED : EXIT_STAGE_FAILED;
	}
	const json_t *outs = json_object_get(res, "outputs");
	merge_outputs(b->facts, outs);
	if (want_checkpoint(b, i, secs))
		take_checkpoint(b, i);
	if (journaled(journal_append_stage_done(b->journal, &js, secs, outs, &err), &err) < 0)
		return EXIT_STAGE_FAILED;
	build_remote_journal(b->remote);
	build_remote_stage_done(b->remote, !(type->flags & STAGE_REMOTE), key, s->id, type->name,
				b->plan.stages[i].disk_key, secs, outs);
	emit_stage_end(b, i, "done", secs, false, outs, NULL);
	return EXIT_OK;
}

/* ---- the build ------------------------------------------------------------------ */

static int restore_disk(struct build *b)
{
	int j = b->plan.restore;
	const struct stage_inst *s = &b->recipe->stages[j];
	_cleanup_error_ struct af_error *err = NULL;
	double t0 = now_monotonic();
	/* The memo learns the restored blocks: the next checkpoint skips them. */
	if (!b->ckpt_memo)
		b->ckpt_memo = ckpt_memo_new();
	if (build_remote_ckpt_fetch(b->remote, b->ckpt_dir, b->plan.stages[j].disk_key, &err) < 0) {
		log_warn("cannot pull the checkpoint of stage '%s': %s", s->id, af_error_msg(err));
		return -1;
	}
	if (ckpt_restore_memo(b->ckpt_dir, b->plan.stages[j].disk_key, image_path(b), b->ckpt_memo,
			      &err) < 0) {
		log_warn("cannot restore the checkpoint of stage '%s': %s", s->id, af_error_msg(err));
		return -1;
	}
	log_info("restored the disk as it was after stage %d '%s' (%.1fs)", s->index, s->id,
		 now_monotonic() - t0);
	return 0;
}

/* STATE/manifest.json, after every build that ran stages: "status" says
 * how it ended ("ok", "failed" with "failed_stage", "interrupted"), the
 * outputs are what was made so far (build_manifest.h). */
static int write_manifest(struct build *b, const char *status)
{
	_cleanup_error_ struct af_error *err = NULL;
	bool ok = !strcmp(status, "ok");
	/* No stage failed: the journal, a checkpoint or the remote store did,
	 * and said so on stderr. */
	const char *error = b->error ? b->error : "the build failed outside its stages; see its messages";
	const struct build_manifest m = {
		.state = b->state, .name = b->recipe->name, .arch = b->recipe->arch,
		.recipe_path = b->recipe->path, .image = image_path(b),
		.image_is_device = json_is_true(json_object_get(b->facts, "disk.is_device")),
		.disk_key = b->plan.n ? b->plan.stages[b->plan.n - 1].disk_key : NULL,
		.status = status, .failed_stage = b->failed_stage, .error = ok ? NULL : error,
		.stages = b->stage_reports, .outputs = b->facts,
		.timings = { .total_seconds = now_monotonic() - b->t_start,
			     .checkpoint_seconds = b->ckpt_seconds,
			     .checkpoint_bytes_new = b->ckpt_bytes_new,
			     /* the engine only: stage children are not counted */
			     .engine_peak_rss_kib = proc_peak_rss_kib() },
		.finished = time(NULL),
	};
	if (build_manifest_write(&m, &err) < 0) {
		log_error("%s", af_error_msg(err));
		return -1;
	}
	return 0;
}

static void install_signal_handlers(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

static int prepare(struct build *b)
{
	const struct build_opts *o = b->opts;
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_free_ char *state = runner_state_dir(o->state_dir, b->recipe->stem);
	if (namespace_require_root(&err) < 0) {
		log_error("%s", af_error_msg(err));
		return EXIT_NOPERM;
	}
	if (access("/dev/loop-control", F_OK) < 0) {
		log_error("loop devices are not available (/dev/loop-control: %s); load the loop module (modprobe loop) or run on a host that has it",
			  strerror(errno));
		return EXIT_UNAVAILABLE;
	}
	/* 0700: the image under construction, logs and keys live there. */
	b->state = journal_state_mkdir(state, &err) == 0 ? absolute_dir(state, &err) : NULL;
	if (!b->state) {
		log_error("%s", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	_cleanup_free_ char *cache = runner_cache_dir(o->cache_dir);
	b->cache = absolute_dir(cache, &err);
	if (!b->cache) {
		log_error("package cache: %s", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	b->journal = o->fresh ? journal_open_fresh(b->state, &err) : journal_open(b->state, &err);
	if (!b->journal) {
		log_error("%s", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	b->ckpt_dir = path_join(b->state, "checkpoints");
	b->root_mnt = path_join(b->state, "root");
	_cleanup_free_ char *logs = path_join(b->state, "logs");
	if (mkdir_p(b->ckpt_dir, 0700, &err) < 0 || mkdir_p(logs, 0700, &err) < 0 ||
	    mkdir_p(b->root_mnt, 0700, &err) < 0 || namespace_enter(&err) < 0) {
		log_error("%s", af_error_msg(err));
		return EXIT_STAGE_FAILED;
	}
	return EXIT_OK;
}

/* --remote: the store's lease, journal, stage records and agent. */
static int attach_remote(struct build *b)
{
	const char *url = build_remote_url(b->opts->remote);
	_cleanup_error_ struct af_error *err = NULL;
	if (!url)
		return EXIT_OK;
	const struct build_remote_opts ro = {
		.url = url, .state = b->recipe->stem, .state_dir = b->state,
		.required = b->opts->remote_required, .lease_wait = b->opts->remote_wait,
	};
	b->keys = xcalloc(b->recipe->n_stages, sizeof(*b->keys));
	plan_keys(b->recipe, b->keys);
	int r = build_remote_open(&ro, &b->remote, &err);
	if (r == 0 && !b->opts->fresh)
		r = build_remote_adopt(b->remote, b->journal, b->recipe, b->keys, &b->foreign, &err);
	if (r == 0)
		r = build_remote_start_agent(b->remote, &err);
	if (r < 0) {
		log_error("%s", af_error_msg(err));
		return af_error_errno(err) == EWOULDBLOCK || b->remote ? EXIT_STAGE_FAILED
								       : EXIT_UNAVAILABLE;
	}
	return EXIT_OK;
}

/* True if another build finished stage I (and maybe more) meanwhile: the
 * remote store has it, and the build plans again to take it from there. */
static bool caught_up(struct build *b, size_t i)
{
	_cleanup_error_ struct af_error *err = NULL;
	bool imported = false;
	if (!b->remote || b->opts->fresh)
		return false;
	if (build_remote_catch_up(b->remote, b->journal, b->recipe, b->keys, &imported, &err) < 0) {
		log_warn("%s", af_error_msg(err));
		return false;
	}
	if (imported) {
		b->foreign = true;
		log_info("another build finished stage %d '%s' meanwhile; taking it from the remote store",
			 b->recipe->stages[i].index, b->recipe->stages[i].id);
		build_remote_journal(b->remote);
	}
	return imported;
}

static int run_stages(struct build *b)
{
	struct recipe *r = b->recipe;
	for (size_t i = 0; i < r->n_stages; i++) {
		const struct plan_stage *ps = &b->plan.stages[i];
		if (ps->status == PLAN_DONE) {
			_cleanup_json_ json_t *outs = merge_cached_outputs(b, ps->done_event->outputs);
			emit_stage_end(b, i, "done", ps->done_event->seconds, true, outs, NULL);
		} else {
			if (caught_up(b, i))
				return REPLAN;
			int rc = run_stage(b, i);
			if (rc != EXIT_OK)
				return rc;
		}
		if ((int)i == b->plan.restore && restore_disk(b) < 0)
			return RESTORE_FAILED;
		if (interrupted) {
			free(b->error);
			b->error = xasprintf("build interrupted by signal %d", (int)interrupted);
			log_error("%s", b->error);
			return EXIT_INTERRUPTED;
		}
	}
	return write_manifest(b, "ok") < 0 ? EXIT_STAGE_FAILED : EXIT_OK;
}

/* Runs the plan; a checkpoint that cannot be restored (damaged by a power
 * loss, or edited by hand) is dropped and the build re-planned from an
 * earlier one, down to a build from scratch. */
static int run_all(struct build *b, int from)
{
	struct recipe *r = b->recipe;
	_cleanup_error_ struct af_error *err = NULL;
	if (b->opts->fresh && journaled(journal_append_reset(b->journal, &err), &err) < 0)
		return EXIT_STAGE_FAILED;
	journaled(journal_append_build_start(b->journal, r->path, b->opts->fresh, &err), &err);
	log_progress("building %s (%zu stages) in %s", r->name, r->n_stages, b->state);
	for (;;) {
		struct build_remote_ckpts ckpts = { .br = b->remote, .ckpt_dir = b->ckpt_dir };
		const struct plan_input in = {
			.log = journal_get_log(b->journal), .ckpt_usable = build_remote_ckpt_usable,
			.ckpt_arg = &ckpts, .image_here = !b->foreign, .fresh = b->opts->fresh,
			.from = from,
		};
		plan_make(r, &in, &b->plan);
		b->facts = json_object();
		b->stage_reports = json_array();
		int rc = run_stages(b);
		if (rc == REPLAN) {
			plan_release(&b->plan);
			json_decref(b->facts);
			json_decref(b->stage_reports);
			continue;
		}
		if (rc != RESTORE_FAILED)
			return rc;
		_cleanup_free_ char *bad = xasprintf("%s/%s.ckpt", b->ckpt_dir,
						     b->plan.stages[b->plan.restore].disk_key);
		if (unlink(bad) < 0 && errno != ENOENT) {
			log_error("cannot drop the damaged checkpoint '%s': %s", bad, strerror(errno));
			return EXIT_STAGE_FAILED;
		}
		log_warn("dropped the damaged checkpoint %s; planning again from an earlier one", bad);
		build_remote_ckpt_forget(b->remote, b->plan.stages[b->plan.restore].disk_key);
		plan_release(&b->plan);
		json_decref(b->facts);
		json_decref(b->stage_reports);
	}
}

/* What the build made: the summary, $GITHUB_OUTPUT and --outputs-env. */
static void report_outputs(struct build *b, const json_t *summary, int *rc)
{
	_cleanup_error_ struct af_error *err = NULL;
	const char *gh = getenv("GITHUB_OUTPUT");
	const char *files[] = { gh && *gh ? gh : NULL, b->opts->outputs_env };
	if (!log_json_enabled())
		build_outputs_print(summary);
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		if (files[i] && build_outputs_append(files[i], summary, &err) < 0) {
			log_error("%s", af_error_msg(err));
			af_error_clear(&err);
			if (*rc == EXIT_OK)
				*rc = EXIT_STAGE_FAILED;
		}
	}
}

/* The build's end in the journal, then in the store, then the manifest (a
 * failed build's too) and what was made. */
static int report_end(struct build *b, int rc)
{
	_cleanup_error_ struct af_error *err = NULL;
	journaled(journal_append_build_end(b->journal, rc == EXIT_OK, &err), &err);
	if (build_remote_close(steal_pointer(&b->remote), &err) < 0) {
		log_error("%s", af_error_msg(err));
		if (rc == EXIT_OK)
			rc = EXIT_STAGE_FAILED;
	}
	const char *status = rc == EXIT_OK ? "ok" : "failed";
	_cleanup_free_ char *manifest = path_join(b->state, "manifest.json");
	bool have_manifest = rc == EXIT_OK;
	if (rc != EXIT_OK && b->facts)
		have_manifest = write_manifest(b, interrupted ? "interrupted" : "failed") == 0;
	_cleanup_json_ json_t *summary =
		build_outputs_summary(b->facts, image_path(b), have_manifest ? manifest : NULL);
	_cleanup_json_ json_t *end = json_pack("{s:s, s:s, s:f, s:O, s:O}", "event", "build_end", "status",
					       status, "seconds", now_monotonic() - b->t_start, "made",
					       summary, "outputs", b->facts ? b->facts : summary);
	if (json_object_get(summary, "image"))
		json_object_set(end, "image", json_object_get(summary, "image"));
	if (have_manifest)
		json_object_set_new(end, "manifest", json_string(manifest));
	redact_json(end);
	log_event(end);
	if (rc == EXIT_OK)
		log_progress("done in %.1fs (checkpoints %.1fs): %s", now_monotonic() - b->t_start,
			     b->ckpt_seconds, image_path(b));
	report_outputs(b, summary, &rc);
	return rc;
}

static int resolve_from(const struct recipe *r, const char *from)
{
	if (!from)
		return -1;
	int idx = recipe_find_stage(r, from);
	if (idx < 0) {
		_cleanup_free_ char *ids = NULL;
		struct strbuf sb = STRBUF_INIT;
		for (size_t i = 0; i < r->n_stages; i++)
			strbuf_addf(&sb, "%s%s", i ? ", " : "", r->stages[i].id);
		ids = strbuf_detach(&sb);
		log_error("--from '%s': no stage with that id in %s; ids are: %s", from, r->path, ids);
		return -2;
	}
	return idx;
}

int runner_build(const struct build_opts *o)
{
	struct diag_list diags = { 0 };
	struct build b = { .opts = o, .ckpt_rate = 1.5e9 };
	if (recipe_load(o->recipe, o->sets, o->n_sets, &b.recipe, &diags) < 0) {
		for (size_t i = 0; i < diags.n; i++)
			fprintf(stderr, "%s\n", diags.lines[i]);
		recipe_diags_release(&diags);
		return EXIT_RECIPE_INVALID;
	}
	int rc;
	int from = resolve_from(b.recipe, o->from);
	if (from == -2) {
		rc = EXIT_USAGE;
		goto out;
	}
	b.t_start = now_monotonic();
	install_signal_handlers();
	rc = prepare(&b);
	if (rc == EXIT_OK)
		rc = attach_remote(&b);
	if (rc != EXIT_OK)
		goto out;
	rc = run_all(&b, from);
	rc = report_end(&b, rc);
out:
	if (b.remote) { /* a failed start: let the lease go */
		_cleanup_error_ struct af_error *err = NULL;
		build_remote_close(b.remote, &err);
	}
	plan_release(&b.plan);
	json_decref(b.facts);
	json_decref(b.stage_reports);
	if (b.journal)
		journal_close(b.journal);
	recipe_free(b.recipe);
	free(b.state);
	free(b.cache);
	free(b.ckpt_dir);
	free(b.root_mnt);
	free(b.default_image);
	free(b.error);
	free(b.keys);
	ckpt_memo_free(b.ckpt_memo);
	return rc;
}
