/* SPDX-License-Identifier: Apache-2.0 */
/* Garbage collection and checks of the remote store (remote.h).
 *
 * Both start from one listing of everything under PREFIX, sorted into the
 * layout's names; anything else under the prefix is someone else's and is
 * never touched.  GC decides from LastModified against S3's clock too (the
 * LastModified of the gc-lease it has just written; a dry run, which
 * writes nothing, uses ours), so that a runner's wrong clock cannot age a
 * checkpoint, and deletes in the order
 * that leaves the store usable if it stops half way: stage records, then
 * checkpoint lists and their used/ markers, then blocks.  Blocks go only
 * while no build holds a lease, checked after gc-lease is ours and before
 * the listing: a build that held its lease earlier has finished pushing
 * (its list is in the listing), one that starts later sees gc-lease and
 * waits. */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amiforge/blockstore.h"
#include "amiforge/checkpoint.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/remote.h"
#include "amiforge/util.h"

#define HEX_LEN (2 * BLOCKSTORE_HASH_LEN)
/* Short: a collection that dies on another machine keeps builds waiting
 * at most this long (on this one, its lease is taken over at once).  Long
 * enough for the listing of a large store, which cannot renew half way. */
#define GC_LEASE_TTL 300.0
#define GC_LEASE_RENEW_LEFT 200.0 /* renew when less than this is left */
/* Every request ends this long before the lease does (see gc_keep_lease). */
#define GC_LEASE_MARGIN 30.0
#define GC_UNKNOWN_SHOWN 10
#define CHECK_PARALLEL 8
#define TIME_NONE INT64_MIN

/* ---- times ---- */

static int parse_digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

/* Days from 1970-01-01 to Y-M-D in the proleptic Gregorian calendar
 * (H. Hinnant's days_from_civil): no timegm, no TZ, no locale. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dm[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dm[m - 1];
}

/* "+01:00", "-0130", "+05", "Z" or nothing (S3 always says Z; a zone left
 * out is read as UTC too) -> seconds east of UTC.  0 or -1. */
static int parse_zone(const char *p, int *east)
{
	int h = 0, m = 0;
	*east = 0;
	if (!*p || ((*p == 'Z' || *p == 'z') && !p[1]))
		return 0;
	if (*p != '+' && *p != '-')
		return -1;
	int sign = *p++ == '-' ? -1 : 1;
	if (parse_digits(&p, 2, &h) < 0)
		return -1;
	if (*p == ':')
		p++;
	if (*p && parse_digits(&p, 2, &m) < 0)
		return -1;
	if (*p || h > 23 || m > 59)
		return -1;
	*east = sign * (h * 3600 + m * 60);
	return 0;
}

/* An ISO-8601 time as ListObjectsV2 gives it ("2026-12-06T10:46:34.000Z"),
 * with or without fraction, any zone -> Unix seconds.  0 or -1. */
static int gc_parse_time(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec, east;
	const char *p = s;
	if (!p || parse_digits(&p, 4, &y) < 0 || *p++ != '-' || parse_digits(&p, 2, &mo) < 0 ||
	    *p++ != '-' || parse_digits(&p, 2, &d) < 0)
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (parse_digits(&p, 2, &h) < 0 || *p++ != ':' || parse_digits(&p, 2, &mi) < 0 ||
	    *p++ != ':' || parse_digits(&p, 2, &sec) < 0)
		return -1;
	if (*p == '.' || *p == ',') {
		const char *f = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == f)
			return -1;
	}
	/* 60: a leap second, as ISO allows. */
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60 ||
	    parse_zone(p, &east) < 0)
		return -1;
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - east;
	return 0;
}

static void format_time(int64_t t, char buf[32])
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (t == TIME_NONE || !gmtime_r(&tt, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, 32, "never");
}

/* ---- the decision ---- */

/* A checkpoint is unused when the later of its list's and its marker's
 * LastModified (TIME_NONE: that object is absent) is more than UNUSED_FOR
 * seconds before NOW.  A time after NOW (clocks apart) is recent. */
static bool gc_unused(int64_t now, int64_t t_list, int64_t t_used, uint64_t unused_for)
{
	int64_t last = t_list > t_used ? t_list : t_used;
	if (last == TIME_NONE)
		return true;
	if (last >= now)
		return false;
	return (uint64_t)now - (uint64_t)last > unused_for; /* now > last: no overflow */
}

/* ---- the layout's names ---- */

enum gc_kind { GC_UNKNOWN, GC_BLOCK, GC_CKPT, GC_USED, GC_STAGE, GC_STATE, GC_GC_LEASE };

/* Stage and disk keys and block names are lower-case SHA-256 hex. */
static bool is_hex64(const char *s)
{
	for (int i = 0; i < HEX_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* NAME is "DIR" HEX64 "SUFFIX" exactly. */
static bool hex_name(const char *name, const char *dir, const char *suffix, const char **hex)
{
	size_t dl = strlen(dir), sl = strlen(suffix);
	if (strncmp(name, dir, dl) || strlen(name) != dl + HEX_LEN + sl || !is_hex64(name + dl) ||
	    strcmp(name + dl + HEX_LEN, suffix))
		return false;
	*hex = name + dl;
	return true;
}

/* What NAME (a key without PREFIX) is in the layout; *id (64 hex digits,
 * not terminated) for blocks, lists, markers and records. */
static enum gc_kind gc_classify(const char *name, const char **id)
{
	const char *h;
	/* blocks/ab/abcd...: the directory is the name's first two digits. */
	if (!strncmp(name, "blocks/", 7) && strlen(name) == 10 + HEX_LEN && name[9] == '/' &&
	    hex_name(name + 10, "", "", &h) && !strncmp(name + 7, h, 2)) {
		*id = h;
		return GC_BLOCK;
	}
	if (hex_name(name, "checkpoints/", ".ckpt", id))
		return GC_CKPT;
	if (hex_name(name, "used/", "", id))
		return GC_USED;
	if (hex_name(name, "stages/", ".json", id))
		return GC_STAGE;
	if (!strcmp(name, "gc-lease"))
		return GC_GC_LEASE;
	if (!strncmp(name, "states/", 7)) {
		const char *state = name + 7, *slash = strchr(state, '/');
		if (slash && slash > state && (!strcmp(slash, "/journal") || !strcmp(slash, "/lease")))
			return GC_STATE;
	}
	return GC_UNKNOWN;
}

/* ---- the listing ---- */

struct gc_inv {
	struct s3_object_list all;
	int64_t *mtime;    /* per object of ALL; unreadable times are "now" */
	json_t *blocks;    /* hex -> index into ALL */
	json_t *lists;     /* disk key -> index */
	json_t *used;      /* disk key -> index */
	json_t *stages;    /* stage key -> index */
	size_t *unknown;   /* indexes of names not in the layout */
	size_t n_unknown;
	int64_t gc_lease_time; /* its LastModified, or TIME_NONE */
};

static void inv_release(struct gc_inv *inv)
{
	s3_object_list_release(&inv->all);
	free(inv->mtime);
	json_decref(inv->blocks);
	json_decref(inv->lists);
	json_decref(inv->used);
	json_decref(inv->stages);
	free(inv->unknown);
	*inv = (struct gc_inv){ 0 };
}

static void inv_add(json_t *map, const char *hex, size_t i)
{
	char id[HEX_LEN + 1];
	memcpy(id, hex, HEX_LEN);
	id[HEX_LEN] = '\0';
	json_object_set_new(map, id, json_integer((json_int_t)i));
}

static void inv_sort(struct remote *r, struct gc_inv *inv, int64_t now)
{
	size_t plen = strlen(r->prefix);
	bool warned = false;
	for (size_t i = 0; i < inv->all.n; i++) {
		const struct s3_object *o = &inv->all.v[i];
		if (gc_parse_time(o->last_modified, &inv->mtime[i]) < 0) {
			/* Never age what we cannot date. */
			_cleanup_free_ char *key = str_printable(o->key);
			_cleanup_free_ char *lm = str_printable(o->last_modified);
			if (!warned)
				log_warn("s3://%s/%s: LastModified '%s' is not an ISO-8601 time; "
					 "counting such objects as new", r->bucket, key, lm);
			warned = true;
			inv->mtime[i] = now;
		}
		const char *id = NULL;
		enum gc_kind k = str_has_prefix(o->key, r->prefix) ? gc_classify(o->key + plen, &id)
								   : GC_UNKNOWN;
		switch (k) {
		case GC_BLOCK: inv_add(inv->blocks, id, i); break;
		case GC_CKPT: inv_add(inv->lists, id, i); break;
		case GC_USED: inv_add(inv->used, id, i); break;
		case GC_STAGE: inv_add(inv->stages, id, i); break;
		case GC_GC_LEASE: inv->gc_lease_time = inv->mtime[i]; break;
		case GC_STATE: break;
		case GC_UNKNOWN: inv->unknown[inv->n_unknown++] = i; break;
		}
	}
}

/* Lists everything under the prefix. */
static int inv_load(struct remote *r, struct gc_inv *inv, int64_t now, struct af_error **err)
{
	*inv = (struct gc_inv){ .gc_lease_time = TIME_NONE };
	if (s3_list_objects(&r->s3, r->bucket, *r->prefix ? r->prefix : NULL, 0, &inv->all, err) < 0)
		return -1;
	inv->mtime = xcalloc(inv->all.n + 1, sizeof(*inv->mtime));
	inv->unknown = xcalloc(inv->all.n + 1, sizeof(*inv->unknown));
	inv->blocks = json_object();
	inv->lists = json_object();
	inv->used = json_object();
	inv->stages = json_object();
	inv_sort(r, inv, now);
	return 0;
}

static const struct s3_object *inv_get(const struct gc_inv *inv, const json_t *map, const char *id,
				       int64_t *mtime)
{
	json_t *v = json_object_get(map, id);
	if (!v) {
		*mtime = TIME_NONE;
		return NULL;
	}
	size_t i = (size_t)json_integer_value(v);
	*mtime = inv->mtime[i];
	return &inv->all.v[i];
}

/* The first request failed: the store could not be used at all and nothing
 * changed.  EHOSTUNREACH tells the CLI (exit 69) from a failure half way. */
static int unreachable(struct remote *r, struct af_error **err)
{
	af_error_wrap(err, "cannot use the remote store %s", r->url);
	if (*err)
		(*err)->errnum = EHOSTUNREACH;
	return -1;
}

/* Fetches and parses checkpoints/DKEY.ckpt: 1 and *l, 0 when it is gone,
 * -1 + err, with *damaged true when the list itself is not one. */
static int list_get(struct remote *r, const char *dkey, struct ckpt_list *l, bool *damaged,
		    struct af_error **err)
{
	*damaged = false;
	_cleanup_free_ char *key = remote_name(r, "checkpoints/%s.ckpt", dkey);
	_cleanup_free_ char *text = NULL;
	size_t len;
	bool found;
	if (s3_get_object_found(&r->s3, r->bucket, key, &text, &len, NULL, &found, err) < 0)
		return -1;
	if (!found)
		return 0;
	_cleanup_free_ char *what = xasprintf("s3://%s/%s", r->bucket, key);
	if (ckpt_list_parse(text, len, what, l, err) < 0) {
		*damaged = true;
		return -1;
	}
	return 1;
}

/* ---- garbage collection ---- */

struct gc_run {
	struct remote *r;
	const struct remote_gc_opts *o;
	struct remote_gc_report rep;
	struct gc_inv inv;
	struct remote_lease lease;
	bool leased;
	double saved_deadline; /* the remote's own request deadline */
	char **live; /* builds holding leases */
	size_t n_live;
	int64_t now;
	json_t *gone; /* disk keys whose checkpoint goes */
};

static double now_unix(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Called before every request: renews gc-lease before it runs short, and
 * bounds each request to end while the lease holds (the remote's HTTP
 * deadline), so that nothing is deleted once a build could have started.
 * A lease that ran out (or was taken) stops the collection. */
static int gc_keep_lease(struct gc_run *g, struct af_error **err)
{
	if (!g->leased)
		return 0;
	double left = g->lease.expires - now_unix();
	if (left <= GC_LEASE_MARGIN)
		return af_error_set(err, 0, "the lease s3://%s/%s ran out during a slow request, and builds "
				    "may have started since; stopped (run the clean again)",
				    g->r->bucket, g->lease.name);
	if (left < GC_LEASE_RENEW_LEFT && remote_lease_renew(g->r, &g->lease, err) < 0)
		return -1;
	left = g->lease.expires - now_unix();
	g->r->aws.opts.deadline = now_monotonic() + left - GC_LEASE_MARGIN;
	return 0;
}

/* Deletes O (or counts it, for a dry run).  WHY ends the info line; NULL:
 * a debug line (blocks: there may be thousands). */
static int gc_remove(struct gc_run *g, const struct s3_object *o, const char *why,
		     struct af_error **err)
{
	const char *verb = g->o->dry_run ? "would remove" : "removing";
	if (why)
		log_info("%s s3://%s/%s (%s)", verb, g->r->bucket, o->key, why);
	else
		log_debug("%s s3://%s/%s", verb, g->r->bucket, o->key);
	if (!g->o->dry_run &&
	    (gc_keep_lease(g, err) < 0 || s3_delete_object(&g->r->s3, g->r->bucket, o->key, err) < 0))
		return af_error_hint(err, "what was removed before it is consistently gone; run "
				     "'amiforge clean --remote %s' again to finish", g->r->url);
	g->rep.bytes_removed += o->size > 0 ? (uint64_t)o->size : 0;
	return 0;
}

/* Takes gc-lease (not for a dry run: it writes nothing) and asks which
 * builds hold leases, in that order (see the top). */
static int gc_begin(struct gc_run *g, struct af_error **err)
{
	if (!g->o->dry_run) {
		_cleanup_free_ char *name = remote_name(g->r, "gc-lease");
		if (remote_lease_acquire(g->r, name, GC_LEASE_TTL, 0, &g->lease, err) < 0)
			return af_error_errno(*err) == EWOULDBLOCK ? -1 : unreachable(g->r, err);
		g->leased = true;
		g->saved_deadline = g->r->aws.opts.deadline;
		if (gc_keep_lease(g, err) < 0)
			return -1;
	}
	if (remote_live_leases(g->r, &g->live, &g->n_live, err) < 0)
		return g->leased ? -1 : unreachable(g->r, err);
	if (inv_load(g->r, &g->inv, g->now, err) < 0)
		return -1;
	if (g->leased && g->inv.gc_lease_time != TIME_NONE)
		g->now = g->inv.gc_lease_time;
	return 0;
}

static void gc_unknown(struct gc_run *g)
{
	for (size_t i = 0; i < g->inv.n_unknown && i < GC_UNKNOWN_SHOWN; i++) {
		/* Someone else's name: anything may be in it. */
		_cleanup_free_ char *key = str_printable(g->inv.all.v[g->inv.unknown[i]].key);
		log_info("leaving s3://%s/%s alone: not a name amiforge makes", g->r->bucket, key);
	}
	if (g->inv.n_unknown > GC_UNKNOWN_SHOWN)
		log_info("... and %zu more objects under s3://%s/%s that amiforge did not make, left alone",
			 g->inv.n_unknown - GC_UNKNOWN_SHOWN, g->r->bucket, g->r->prefix);
}

/* Decides which checkpoints go: every disk key with a list or a marker. */
static void gc_decide(struct gc_run *g)
{
	json_t *maps[] = { g->inv.lists, g->inv.used };
	g->gone = json_object();
	for (size_t m = 0; m < ARRAY_SIZE(maps); m++) {
		const char *dkey;
		json_t *v;
		json_object_foreach(maps[m], dkey, v) {
			int64_t tl, tu;
			inv_get(&g->inv, g->inv.lists, dkey, &tl);
			inv_get(&g->inv, g->inv.used, dkey, &tu);
			if (gc_unused(g->now, tl, tu, g->o->unused_for))
				json_object_set_new(g->gone, dkey, json_true());
		}
	}
	g->rep.ckpt_total = json_object_size(g->inv.lists);
}

/* *orphan: stage record O leads nowhere: its disk key's list goes or is
 * absent, or it is not JSON (*id NULL; else the stage's id). */
static int gc_stage_orphan(struct gc_run *g, const struct s3_object *o, bool *orphan,
			   char **id, struct af_error **err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	bool found;
	if (s3_get_object_found(&g->r->s3, g->r->bucket, o->key, &text, &len, NULL, &found, err) < 0)
		return -1;
	_cleanup_json_ json_t *j = found ? json_loadb(text, len, 0, NULL) : NULL;
	const char *dkey = json_string_value(json_object_get(j, "disk_key"));
	const char *sid = json_string_value(json_object_get(j, "id"));
	*orphan = found && (!dkey || !json_object_get(g->inv.lists, dkey) ||
			    json_object_get(g->gone, dkey));
	*id = j ? xstrdup(sid ? sid : "?") : NULL;
	return 0;
}

static int gc_stages(struct gc_run *g, struct af_error **err)
{
	const char *key;
	json_t *v;
	g->rep.stages_total = json_object_size(g->inv.stages);
	json_object_foreach(g->inv.stages, key, v) {
		int64_t t;
		const struct s3_object *o = inv_get(&g->inv, g->inv.stages, key, &t);
		bool orphan = false;
		_cleanup_free_ char *id = NULL;
		/* Only old records are read: a young one stays whatever it says. */
		if (!gc_unused(g->now, t, TIME_NONE, g->o->unused_for))
			continue;
		if (gc_keep_lease(g, err) < 0 || gc_stage_orphan(g, o, &orphan, &id, err) < 0)
			return -1;
		if (!orphan)
			continue;
		_cleanup_free_ char *sid = id ? str_printable(id) : NULL;
		_cleanup_free_ char *line = sid ? xasprintf("record of stage %s, whose checkpoint is gone", sid)
						: xstrdup("a stage record that is not JSON: it leads nowhere");
		if (gc_remove(g, o, line, err) < 0)
			return -1;
		g->rep.stages_removed++;
	}
	return 0;
}

static int gc_checkpoints(struct gc_run *g, struct af_error **err)
{
	const char *dkey;
	json_t *v;
	json_object_foreach(g->gone, dkey, v) {
		int64_t tl, tu;
		const struct s3_object *list = inv_get(&g->inv, g->inv.lists, dkey, &tl);
		const struct s3_object *used = inv_get(&g->inv, g->inv.used, dkey, &tu);
		char when[32];
		format_time(tl > tu ? tl : tu, when);
		_cleanup_free_ char *why = xasprintf("checkpoint unused since %s", when);
		if (list && gc_remove(g, list, why, err) < 0)
			return -1;
		if (used && gc_remove(g, used, list ? "its use marker" : why, err) < 0)
			return -1;
		if (list)
			g->rep.ckpt_removed++;
	}
	return 0;
}

/* The blocks the lists that stay name.  A list that cannot be read stops
 * the block collection: what it names is unknown. */
static int gc_named(struct gc_run *g, json_t *named, struct af_error **err)
{
	const char *dkey;
	json_t *v;
	json_object_foreach(g->inv.lists, dkey, v) {
		struct ckpt_list l = { 0 };
		bool damaged;
		if (json_object_get(g->gone, dkey))
			continue;
		if (gc_keep_lease(g, err) < 0)
			return -1;
		int got = list_get(g->r, dkey, &l, &damaged, err);
		if (got < 0)
			return af_error_hint(err, "no block was removed; run 'amiforge clean --remote %s "
					     "--check' to see the damage", g->r->url);
		for (uint64_t b = 0; got && b < l.nblocks; b++) {
			char hex[HEX_LEN + 1];
			if (l.is_data[b])
				json_object_set_new(named, hex_encode(l.hash[b], BLOCKSTORE_HASH_LEN, hex),
						    json_true());
		}
		ckpt_list_release(&l);
	}
	return 0;
}

static int gc_blocks(struct gc_run *g, struct af_error **err)
{
	g->rep.blocks_total = json_object_size(g->inv.blocks);
	if (g->n_live) {
		g->rep.blocks_skipped = true;
		for (size_t i = 0; i < g->n_live; i++)
			log_info("build lease held: %s", g->live[i]);
		log_info("no block %s removed while builds hold leases (they may be pushing checkpoints "
			 "that name stored blocks); a later 'amiforge clean --remote %s' removes them",
			 g->o->dry_run ? "would be" : "was", g->r->url);
		return 0;
	}
	_cleanup_json_ json_t *named = json_object();
	if (gc_named(g, named, err) < 0)
		return -1;
	const char *hex;
	json_t *v;
	json_object_foreach(g->inv.blocks, hex, v) {
		int64_t t;
		const struct s3_object *o = inv_get(&g->inv, g->inv.blocks, hex, &t);
		if (json_object_get(named, hex))
			continue;
		if (gc_remove(g, o, NULL, err) < 0)
			return -1;
		g->rep.blocks_removed++;
	}
	return 0;
}

static void gc_summary(const struct gc_run *g)
{
	const struct remote_gc_report *s = &g->rep;
	char sz[32];
	log_info("%s: %s %zu of %zu checkpoints, %zu of %zu stage records, %zu of %zu blocks (%s)%s",
		 g->r->url, g->o->dry_run ? "would remove" : "removed", s->ckpt_removed, s->ckpt_total,
		 s->stages_removed, s->stages_total, s->blocks_removed, s->blocks_total,
		 format_size(s->bytes_removed, sz, sizeof(sz)),
		 s->blocks_skipped ? "; blocks kept: builds hold leases" : "");
}

static void gc_release(struct gc_run *g, struct af_error **err)
{
	if (g->leased) {
		_cleanup_error_ struct af_error *e = NULL;
		g->r->aws.opts.deadline = g->saved_deadline;
		if (remote_lease_release(g->r, &g->lease, &e) < 0)
			log_warn("%s (builds wait until it expires, in %.0f s at most)", af_error_msg(e),
				 GC_LEASE_TTL);
	}
	for (size_t i = 0; i < g->n_live; i++)
		free(g->live[i]);
	free(g->live);
	json_decref(g->gone);
	inv_release(&g->inv);
}

int remote_gc(struct remote *r, const struct remote_gc_opts *opts, struct remote_gc_report *out,
	      struct af_error **err)
{
	struct gc_run g = { .r = r, .o = opts, .now = (int64_t)now_unix() };
	int rc = gc_begin(&g, err);
	if (rc == 0) {
		gc_unknown(&g);
		gc_decide(&g);
		rc = gc_stages(&g, err);
	}
	if (rc == 0)
		rc = gc_checkpoints(&g, err);
	if (rc == 0)
		rc = gc_blocks(&g, err);
	if (rc == 0) {
		gc_summary(&g);
		*out = g.rep;
	}
	gc_release(&g, err);
	return rc;
}

/* ---- checks ---- */

struct check_item {
	struct http_batch_item item;
	struct s3_batch_req req;
	size_t obj; /* index into ALL */
	bool busy;
};

struct check_run {
	struct remote *r;
	struct remote_check_report rep;
	struct gc_inv inv;
	json_t *named;   /* hex -> the disk key of the first list naming it */
	json_t *bad;     /* hex -> true: missing or corrupt */
	json_t *damaged; /* disk key -> true */
	bool rewalk;     /* only marking the lists that name bad blocks */
	size_t *todo;    /* indexes into ALL of present named blocks to hash */
	size_t n_todo, next;
	struct check_item *pool;
	unsigned char *block;
	EVP_MD_CTX *md;
};

static void check_problem(struct check_run *c, const char *hex, const char *dkey, bool missing,
			  const char *what)
{
	json_object_set_new(c->bad, hex, json_true());
	json_object_set_new(c->damaged, dkey, json_true());
	if (missing)
		c->rep.missing++;
	else
		c->rep.corrupt++;
	log_error("s3://%s/%sblocks/%.2s/%s, named by checkpoint %s: %s", c->r->bucket,
		  c->r->prefix, hex, hex, dkey, what);
}

/* A block the listing lacks: asked once more (it may have been stored
 * after the listing read blocks/), then missing. */
static int check_absent(struct check_run *c, const char *hex, const char *dkey,
			struct af_error **err)
{
	_cleanup_free_ char *key = remote_name(c->r, "blocks/%.2s/%s", hex, hex);
	struct s3_object_info info = { 0 };
	if (s3_head_object(&c->r->s3, c->r->bucket, key, &info, err) < 0)
		return -1;
	bool exists = info.exists;
	s3_object_info_release(&info);
	if (!exists)
		check_problem(c, hex, dkey, true, "missing");
	return 0;
}

/* One block of list DKEY: present (by the listing) and of a block file's
 * length, else a problem; queued for hashing once. */
static int check_block(struct check_run *c, const char *hex, const char *dkey,
		       struct af_error **err)
{
	if (json_object_get(c->bad, hex)) {
		json_object_set_new(c->damaged, dkey, json_true());
		return 0;
	}
	if (c->rewalk || json_object_get(c->named, hex))
		return 0;
	json_object_set_new(c->named, hex, json_string(dkey));
	int64_t t;
	const struct s3_object *o = inv_get(&c->inv, c->inv.blocks, hex, &t);
	if (!o)
		return check_absent(c, hex, dkey, err);
	if (o->size < 16 || o->size > (int64_t)BLOCKSTORE_FILE_MAX) {
		_cleanup_free_ char *what = xasprintf("corrupt (%" PRId64 " bytes: no block file is that long)",
						      o->size);
		check_problem(c, hex, dkey, false, what);
		return 0;
	}
	c->todo[c->n_todo++] = (size_t)(o - c->inv.all.v);
	return 0;
}

static int check_lists(struct check_run *c, struct af_error **err)
{
	const char *dkey;
	json_t *v;
	json_object_foreach(c->inv.lists, dkey, v) {
		struct ckpt_list l = { 0 };
		bool damaged;
		_cleanup_error_ struct af_error *perr = NULL;
		int got = list_get(c->r, dkey, &l, &damaged, &perr);
		if (got < 0 && damaged && c->rewalk)
			continue;
		if (got < 0 && damaged) {
			/* Nothing of such a list can be restored. */
			log_error("%s", af_error_msg(perr));
			json_object_set_new(c->damaged, dkey, json_true());
			c->rep.ckpts++;
			c->rep.corrupt++;
			continue;
		}
		if (got < 0) {
			*err = steal_pointer(&perr);
			return -1;
		}
		if (!c->rewalk)
			c->rep.ckpts += (size_t)got;
		int rc = 0;
		for (uint64_t b = 0; got && rc == 0 && b < l.nblocks; b++) {
			char hex[HEX_LEN + 1];
			if (l.is_data[b])
				rc = check_block(c, hex_encode(l.hash[b], BLOCKSTORE_HASH_LEN, hex), dkey,
						 err);
		}
		ckpt_list_release(&l);
		if (rc < 0)
			return -1;
	}
	c->rep.blocks = json_object_size(c->named);
	return 0;
}

/* ---- checks: every present block's content against its name ---- */

static int check_next(void *data, struct http_batch_item **item, struct af_error **err)
{
	struct check_run *c = data;
	if (c->next >= c->n_todo)
		return 0;
	struct check_item *it = NULL;
	for (int i = 0; i < CHECK_PARALLEL && !it; i++)
		if (!c->pool[i].busy)
			it = &c->pool[i];
	if (!it)
		BUG("remote check: more requests in flight than items");
	*it = (struct check_item){ .obj = c->todo[c->next++], .busy = true };
	s3_batch_get_init(&it->req, &c->r->s3, c->r->bucket, c->inv.all.v[it->obj].key);
	it->item = (struct http_batch_item){ .req = it->req.req, .user = it };
	*item = &it->item;
	return 1;
}

static int check_outcome(struct check_run *c, struct check_item *it, struct af_error **err)
{
	const char *key = c->inv.all.v[it->obj].key;
	const char *hex = key + strlen(c->r->prefix) + strlen("blocks/ab/");
	const char *dkey = json_string_value(json_object_get(c->named, hex));
	int o = s3_batch_get_outcome(&it->item);
	if (o < 0) {
		*err = steal_pointer(&it->item.err);
		return *err ? -1 : af_error_set(err, 0, "s3://%s/%s: GetObject failed", c->r->bucket, key);
	}
	uint8_t h[BLOCKSTORE_HASH_LEN];
	if (hex_decode(hex, h, sizeof(h), NULL) < 0)
		BUG("block name %s is not hex", key);
	if (o == 1)
		check_problem(c, hex, dkey, true, "missing (deleted while the check ran?)");
	else if (!blockstore_verify_file(it->item.resp.body, it->item.resp.body_len, h, c->block,
					 c->md))
		check_problem(c, hex, dkey, false, "corrupt: its content does not decode to its hash");
	return 0;
}

static int check_done(void *data, struct http_batch_item *item, struct af_error **err)
{
	struct check_run *c = data;
	struct check_item *it = item->user;
	int rc = check_outcome(c, it, err);
	http_response_release(&it->item.resp);
	af_error_free(it->item.err);
	s3_batch_req_release(&it->req);
	it->item.err = NULL;
	it->busy = false;
	return rc;
}

static int check_hashes(struct check_run *c, struct af_error **err)
{
	c->pool = xcalloc(CHECK_PARALLEL, sizeof(*c->pool));
	c->block = xmalloc(BLOCKSTORE_BLOCK_SIZE);
	c->md = EVP_MD_CTX_new();
	if (!c->md || !EVP_DigestInit_ex(c->md, EVP_sha256(), NULL))
		return af_error_openssl(err, "cannot set up SHA-256");
	const struct http_batch b = { .max_parallel = CHECK_PARALLEL, .next = check_next,
				      .done = check_done, .data = c };
	size_t before = c->rep.missing + c->rep.corrupt;
	if (http_batch_run(&b, err) < 0)
		return af_error_wrap(err, "checking the blocks of %s", c->r->url);
	/* The first list naming a bad block is known; find the others. */
	if (c->rep.missing + c->rep.corrupt > before) {
		c->rewalk = true;
		return check_lists(c, err);
	}
	return 0;
}

static int check_verdict(struct check_run *c, bool hashes, struct af_error **err)
{
	const struct remote_check_report *s = &c->rep;
	/* Consistent: every named block is present and queued once. */
	size_t orphans = json_object_size(c->inv.blocks) - c->n_todo;
	if (orphans && !s->missing && !s->corrupt)
		log_info("%zu blocks are named by no checkpoint ('amiforge clean --remote %s "
			 "--unused-for DURATION' removes them)", orphans, c->r->url);
	if (!s->missing && !s->corrupt) {
		log_info("%s: consistent: %zu checkpoints, %zu blocks present%s", c->r->url, s->ckpts,
			 s->blocks, hashes ? " and matching their hashes" : "");
		return 0;
	}
	const char *dkey;
	json_t *v;
	json_object_foreach(c->damaged, dkey, v)
		log_error("damaged checkpoint: s3://%s/%scheckpoints/%s.ckpt", c->r->bucket, c->r->prefix,
			  dkey);
	return af_error_set(err, 0, "the remote store %s is inconsistent: %zu missing and %zu corrupt "
			    "(blocks or lists), %zu damaged checkpoints of %zu; builds cannot restore "
			    "those (they fall back to others); delete their lists, named above, so "
			    "that no build tries them", c->r->url, s->missing, s->corrupt,
			    json_object_size(c->damaged), s->ckpts);
}

static void check_release(struct check_run *c)
{
	inv_release(&c->inv);
	json_decref(c->named);
	json_decref(c->bad);
	json_decref(c->damaged);
	free(c->todo);
	free(c->pool);
	free(c->block);
	EVP_MD_CTX_free(c->md);
}

int remote_check(struct remote *r, bool hashes, struct remote_check_report *out,
		 struct af_error **err)
{
	struct check_run c = { .r = r };
	if (inv_load(r, &c.inv, (int64_t)now_unix(), err) < 0)
		return unreachable(r, err);
	c.named = json_object();
	c.bad = json_object();
	c.damaged = json_object();
	c.todo = xcalloc(json_object_size(c.inv.blocks) + 1, sizeof(*c.todo));
	int rc = check_lists(&c, err);
	if (rc == 0 && hashes)
		rc = check_hashes(&c, err);
	if (rc == 0) {
		*out = c.rep;
		rc = check_verdict(&c, hashes, err);
	}
	check_release(&c);
	return rc;
}
