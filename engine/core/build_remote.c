/* SPDX-License-Identifier: Apache-2.0 */
/* A build's side of the remote store (build_remote.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/build_remote.h"
#include "amiforge/checkpoint.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/journal.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/plan.h"
#include "amiforge/recipe.h"
#include "amiforge/remote.h"
#include "amiforge/remote_agent.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define LEASE_TTL_DEFAULT 120.0
#define REMOTE_PARALLEL 8
#define CONNECT_ATTEMPTS 3

struct build_remote {
	struct build_remote_opts o;
	struct remote r;
	struct remote_lease lease;
	char *journal_etag;
	json_t *ckpts;    /* disk keys with a list in the store (a set) */
	struct remote_agent *agent;
};

const char *build_remote_url(const char *arg)
{
	if (arg && *arg)
		return arg;
	const char *env = getenv("AMIFORGE_REMOTE");
	return env && *env ? env : NULL;
}

static double lease_ttl(const struct build_remote_opts *o)
{
	/* A tuning knob for tests and slow stores, not a recipe matter. */
	const char *env = getenv("AMIFORGE_REMOTE_LEASE_TTL");
	double ttl = env ? strtod(env, NULL) : o->lease_ttl;
	return ttl >= 3 ? ttl : LEASE_TTL_DEFAULT;
}

static void br_free(struct build_remote *br)
{
	if (!br)
		return;
	remote_lease_free(&br->lease);
	remote_close(&br->r);
	json_decref(br->ckpts);
	free(br->journal_etag);
	free(br);
}

/* The first request tells whether the store answers at all: a store that
 * does not is given up on in seconds, and the build goes on locally. */
static int br_connect(struct build_remote *br, struct af_error **err)
{
	if (remote_open(&br->r, br->o.url, NULL, err) < 0)
		return -1;
	int attempts = br->r.aws.opts.max_attempts;
	br->r.aws.opts.max_attempts = CONNECT_ATTEMPTS;
	int rc = remote_ckpt_keys(&br->r, &br->ckpts, err);
	br->r.aws.opts.max_attempts = attempts;
	return rc;
}

int build_remote_open(const struct build_remote_opts *o, struct build_remote **out,
		      struct af_error **err)
{
	struct build_remote *br = xcalloc(1, sizeof(*br));
	br->o = *o;
	*out = NULL;
	if (br_connect(br, err) < 0) {
		bool bad_url = !br->r.bucket;
		br_free(br);
		if (o->required || bad_url)
			return af_error_wrap(err, "remote store");
		log_warn("remote store %s cannot be used (%s); going on with local state only (--remote-required makes this an error)",
			 o->url, af_error_msg(*err));
		af_error_clear(err);
		return 0;
	}
	if (!o->read_only) {
		_cleanup_free_ char *name = remote_name(&br->r, "states/%s/lease", o->state);
		if (remote_lease_acquire(&br->r, name, lease_ttl(o), o->lease_wait, &br->lease, err) < 0) {
			br_free(br);
			return -1;
		}
	}
	*out = br;
	return 0;
}

/* ---- adopting the store's journal ---- */

static bool is_prefix(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen <= blen && !memcmp(a, b, alen);
}

/* Keeps a local journal the store's contradicts beside it, and says so. */
static void keep_diverged(const char *state_dir, const char *text, size_t len)
{
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_free_ char *path = xasprintf("%s/journal.diverged.%ld", state_dir, (long)time(NULL));
	if (write_file_atomic(path, text, len, 0600, &err) < 0)
		log_warn("%s", af_error_msg(err));
	log_warn("the local journal and the remote store's disagree (another machine built this state); using the store's and keeping the local one as %s",
		 path);
}

/* The block lists of the checkpoints an adopted journal names, without
 * their blocks: what a stage compares against (an incremental snapshot's
 * parent).  Best effort: a list that does not come is a slower stage. */
static void pull_lists(struct build_remote *br, const struct journal_log *log)
{
	_cleanup_free_ char *ckpt_dir = path_join(br->o.state_dir, "checkpoints");
	_cleanup_error_ struct af_error *err = NULL;
	if (mkdir_p(ckpt_dir, 0700, &err) < 0)
		return;
	for (size_t i = 0; i < journal_log_size(log); i++) {
		const struct journal_event *e = journal_log_at(log, i);
		if (e->kind != JOURNAL_CHECKPOINT || !e->disk_key || !json_object_get(br->ckpts, e->disk_key))
			continue;
		if (remote_ckpt_pull_list(&br->r, ckpt_dir, e->disk_key, &err) < 0) {
			log_debug("%s", af_error_msg(err));
			af_error_clear(&err);
		}
	}
}

static int adopt_journal(struct build_remote *br, struct journal *j, bool *foreign,
			 struct af_error **err)
{
	_cleanup_free_ char *rtext = NULL;
	size_t rlen = 0, llen = 0;
	*foreign = false;
	if (remote_journal_get(&br->r, br->o.state, &rtext, &rlen, &br->journal_etag, err) < 0)
		return -1;
	if (!rtext)
		return 0; /* the agent's first push creates it */
	_cleanup_free_ char *jpath = path_join(br->o.state_dir, "journal");
	_cleanup_error_ struct af_error *rerr = NULL;
	_cleanup_free_ char *ltext = read_file(jpath, &llen, &rerr);
	if (ltext && is_prefix(rtext, rlen, ltext, llen))
		return 0; /* local is as new or newer: the agent pushes it */
	if (ltext && llen && !is_prefix(ltext, llen, rtext, rlen))
		keep_diverged(br->o.state_dir, ltext, llen);
	if (journal_adopt(j, rtext, rlen, err) < 0)
		return -1;
	*foreign = true;
	pull_lists(br, journal_get_log(j));
	log_info("resuming state '%s' from the remote store %s", br->o.state, br->o.url);
	return 0;
}

/* Journals as done stages the store has records of, in order, up to the
 * first it lacks.  A stage that makes remote resources is never taken from
 * another state: its resources belong to the state that made them. */
static int import_stages(struct build_remote *br, struct journal *j, const struct recipe *r,
			 char (*keys)[65], bool *imported, struct af_error **err)
{
	for (size_t i = 0; i < r->n_stages; i++) {
		const struct stage_inst *s = &r->stages[i];
		struct journal_stage js = { s->index, s->id, keys[i] };
		if (journal_find_done(journal_get_log(j), &js))
			continue;
		if (s->type->flags & STAGE_REMOTE)
			return 0;
		_cleanup_json_ json_t *rec = NULL;
		if (remote_stage_get(&br->r, keys[i], &rec, err) < 0)
			return -1;
		if (!rec)
			return 0;
		double secs = json_number_value(json_object_get(rec, "seconds"));
		if (journal_append_stage_done(j, &js, secs, json_object_get(rec, "outputs"), err) < 0)
			return -1;
		*imported = true;
	}
	return 0;
}

int build_remote_adopt(struct build_remote *br, struct journal *j, const struct recipe *r,
		       char (*keys)[65], bool *foreign, struct af_error **err)
{
	bool imported = false;
	*foreign = false;
	if (!br)
		return 0;
	if (adopt_journal(br, j, foreign, err) < 0 || import_stages(br, j, r, keys, &imported, err) < 0)
		return af_error_wrap(err, "remote store %s", br->o.url);
	/* Imported stages ran elsewhere: the image here is not theirs. */
	*foreign |= imported;
	return 0;
}

int build_remote_catch_up(struct build_remote *br, struct journal *j, const struct recipe *r,
			  char (*keys)[65], bool *imported, struct af_error **err)
{
	*imported = false;
	if (!br)
		return 0;
	if (import_stages(br, j, r, keys, imported, err) < 0)
		return -1;
	if (!*imported)
		return 0;
	json_t *keys_now = NULL;
	if (remote_ckpt_keys(&br->r, &keys_now, err) < 0)
		return -1;
	json_decref(br->ckpts);
	br->ckpts = keys_now;
	return 0;
}

/* ---- checkpoints ---- */

bool build_remote_ckpt_usable(void *arg, const char *dkey)
{
	struct build_remote_ckpts *c = arg;
	if (ckpt_usable(c->ckpt_dir, dkey))
		return true;
	return c->br && json_object_get(c->br->ckpts, dkey);
}

int build_remote_ckpt_fetch(struct build_remote *br, const char *ckpt_dir, const char *dkey,
			    struct af_error **err)
{
	if (!br || !json_object_get(br->ckpts, dkey))
		return 0;
	if (ckpt_usable(ckpt_dir, dkey)) {
		/* In use: garbage collection must see it so. */
		_cleanup_error_ struct af_error *terr = NULL;
		if (remote_ckpt_touch(&br->r, dkey, &terr) < 0)
			log_warn("%s", af_error_msg(terr));
		return 0;
	}
	struct remote_xfer st;
	_cleanup_json_ json_t *known = json_object();
	if (remote_ckpt_pull(&br->r, ckpt_dir, dkey, known, REMOTE_PARALLEL, &st, err) < 0) {
		json_object_del(br->ckpts, dkey);
		return -1;
	}
	char sz[32];
	log_info("pulled checkpoint %.12s from %s: %llu blocks (%s) fetched, %.1fs", dkey, br->o.url,
		 (unsigned long long)st.blocks, format_size(st.bytes, sz, sizeof(sz)), st.seconds);
	remote_agent_known(br->agent, dkey);
	return 0;
}

void build_remote_ckpt_forget(struct build_remote *br, const char *dkey)
{
	if (br)
		json_object_del(br->ckpts, dkey);
}

/* ---- while the build runs ---- */

int build_remote_start_agent(struct build_remote *br, struct af_error **err)
{
	if (!br)
		return 0;
	_cleanup_free_ char *jpath = path_join(br->o.state_dir, "journal");
	_cleanup_free_ char *ckpt_dir = path_join(br->o.state_dir, "checkpoints");
	struct remote_agent_opts ao = {
		.remote = &br->r, .state = br->o.state, .journal_path = jpath, .ckpt_dir = ckpt_dir,
		.lease = &br->lease, .journal_etag = br->journal_etag, .required = br->o.required,
		.parallel = REMOTE_PARALLEL,
	};
	br->agent = remote_agent_start(&ao, err);
	return br->agent ? 0 : -1;
}

void build_remote_journal(struct build_remote *br)
{
	if (br)
		remote_agent_journal(br->agent);
}

int build_remote_sync(struct build_remote *br, struct af_error **err)
{
	return br ? remote_agent_sync(br->agent, err) : 0;
}

int build_remote_flush(struct build_remote *br, struct af_error **err)
{
	if (!br)
		return 0;
	double t0 = now_monotonic();
	int r = remote_agent_flush(br->agent, err);
	if (now_monotonic() - t0 >= 1.0)
		log_info("waited %.1fs for the remote store to hold the disk state this stage starts from",
			 now_monotonic() - t0);
	return r;
}

void build_remote_checkpoint(struct build_remote *br, const char *dkey)
{
	if (!br)
		return;
	remote_agent_checkpoint(br->agent, dkey);
	json_object_set_new(br->ckpts, dkey, json_true());
}

void build_remote_stage_done(struct build_remote *br, bool shareable, const char *key,
			     const char *id, const char *type, const char *dkey, double seconds,
			     const json_t *outputs)
{
	if (!br || !shareable)
		return;
	_cleanup_json_ json_t *rec = json_pack("{s:i, s:s, s:s, s:s, s:f, s:o}", "v", 1, "id", id,
					       "type", type, "disk_key", dkey, "seconds", seconds,
					       "outputs", outputs ? json_deep_copy(outputs) : json_object());
	remote_agent_stage(br->agent, key, rec);
}

int build_remote_close(struct build_remote *br, struct af_error **err)
{
	if (!br)
		return 0;
	int rc = 0;
	if (br->agent) {
		rc = remote_agent_finish(br->agent, err);
	} else if (br->lease.name) {
		_cleanup_error_ struct af_error *e2 = NULL;
		remote_lease_release(&br->r, &br->lease, &e2);
	}
	br_free(br);
	return rc;
}

/* ---- views for plan and status ---- */

static int copy_journal(const char *from_dir, const char *to_dir, struct af_error **err)
{
	_cleanup_free_ char *src = path_join(from_dir, "journal");
	_cleanup_free_ char *dst = path_join(to_dir, "journal");
	size_t len;
	_cleanup_error_ struct af_error *rerr = NULL;
	_cleanup_free_ char *text = read_file(src, &len, &rerr);
	if (!text)
		return 0; /* none yet */
	return write_file_atomic(dst, text, len, 0600, err);
}

int build_remote_view_open(const char *url, const char *state_dir, const char *state,
			   const struct recipe *r, struct build_remote_view *v, struct af_error **err)
{
	*v = (struct build_remote_view){ 0 };
	char tmpl[] = "/tmp/amiforge-view.XXXXXX";
	if (!mkdtemp(tmpl))
		return af_error_set(err, errno, "cannot make a temporary directory in /tmp");
	v->dir = xstrdup(tmpl);
	const struct build_remote_opts ro = { .url = url, .state = state, .state_dir = v->dir,
					      .required = true, .read_only = true };
	if ((r && copy_journal(state_dir, v->dir, err) < 0) || build_remote_open(&ro, &v->br, err) < 0)
		return -1;
	v->j = journal_open_fresh(v->dir, err);
	if (!v->j)
		return -1;
	if (!r) {
		char *text = NULL;
		size_t len;
		_cleanup_free_ char *etag = NULL;
		_cleanup_free_ char *owned = NULL;
		if (remote_journal_get(&v->br->r, state, &text, &len, &etag, err) < 0)
			return -1;
		owned = text;
		return text ? journal_adopt(v->j, text, len, err) : 0;
	}
	char (*keys)[65] = xcalloc(r->n_stages, sizeof(*keys));
	plan_keys(r, keys);
	int rc = build_remote_adopt(v->br, v->j, r, keys, &v->foreign, err);
	free(keys);
	return rc;
}

void build_remote_view_close(struct build_remote_view *v)
{
	if (v->j)
		journal_close(v->j);
	if (v->br) {
		_cleanup_error_ struct af_error *err = NULL;
		build_remote_close(v->br, &err);
	}
	if (v->dir) {
		static const char *const names[] = { "journal", "lock" };
		for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
			_cleanup_free_ char *p = path_join(v->dir, names[i]);
			unlink(p);
		}
		/* journal.diverged.* copies, if the view made one */
		_cleanup_dir_ DIR *d = opendir(v->dir);
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (str_has_prefix(de->d_name, "journal."))
				unlinkat(dirfd(d), de->d_name, 0);
		rmdir(v->dir);
		free(v->dir);
	}
	*v = (struct build_remote_view){ 0 };
}
