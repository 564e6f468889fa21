/* SPDX-License-Identifier: Apache-2.0 */
/* `ami purge`: the decisions, without AWS (ami_purge.h has the rules). */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/mem.h"
#include "ami_purge.h"

int purge_parse_time(const char *text, time_t *out)
{
	struct tm tm = { 0 };
	if (!text)
		return -1;
	const char *rest = strptime(text, "%Y-%m-%d", &tm);
	if (rest && *rest == 'T') {
		rest = strptime(rest + 1, "%H:%M:%S", &tm);
		if (rest && *rest == '.')
			for (rest++; *rest >= '0' && *rest <= '9'; rest++)
				;
		if (rest && *rest == 'Z')
			rest++;
		else
			rest = NULL;
	}
	if (!rest || *rest)
		return -1;
	*out = timegm(&tm);
	return 0;
}

time_t purge_cutoff(time_t now, const struct when_span *span)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	struct tm tm;
	gmtime_r(&now, &tm);
	int m = tm.tm_year * 12 + tm.tm_mon - span->months;
	tm.tm_year = m / 12;
	tm.tm_mon = m % 12;
	int y = tm.tm_year + 1900;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	int last = mdays[tm.tm_mon] + (tm.tm_mon == 1 && leap);
	if (tm.tm_mday > last)
		tm.tm_mday = last;
	return timegm(&tm) - (time_t)span->seconds;
}

static const char *tag_value(const struct ec2_tag_list *t, const char *key)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->v[i].key, key))
			return t->v[i].value ? t->v[i].value : "";
	return NULL;
}

bool purge_image_selected(const struct ec2_image *img, const struct purge_opts *o)
{
	if (o->name_glob && fnmatch(o->name_glob, img->name ? img->name : "", 0) != 0)
		return false;
	for (size_t i = 0; i < o->n_tags; i++) {
		const char *v = tag_value(&img->tags, o->tags[i].key);
		if (!v || (o->tags[i].value && fnmatch(o->tags[i].value, v, 0) != 0))
			return false;
	}
	return true;
}

void purge_image_init(struct purge_image *p, const struct ec2_image *img)
{
	*p = (struct purge_image){ .img = img };
	if (purge_parse_time(img->creation_date, &p->created) < 0)
		p->created = 0;
	time_t t;
	const char *tag = tag_value(&img->tags, AMI_EXPIRES_TAG);
	if (tag && purge_parse_time(tag, &t) == 0)
		p->expires = t;
	if (purge_parse_time(img->deprecation_time, &t) == 0 && (!p->expires || t < p->expires))
		p->expires = t;
}

void purge_image_release(struct purge_image *p)
{
	free(p->in_use);
	free(p->why_included);
	free(p->why_kept);
	free(p->error);
	*p = (struct purge_image){ 0 };
}

/* Appends "; WHAT" (or WHAT) to *S. */
static void add_reason(char **s, const char *what)
{
	char *n = *s ? xasprintf("%s; %s", *s, what) : xstrdup(what);
	free(*s);
	*s = n;
}

static int newest_first(const void *a, const void *b)
{
	const struct purge_image *x = *(struct purge_image *const *)a;
	const struct purge_image *y = *(struct purge_image *const *)b;
	if (x->created != y->created)
		return x->created > y->created ? -1 : 1;
	return strcmp(y->img->image_id, x->img->image_id);
}

/* Marks the N newest (rank < N) "newest", the others surplus. */
static void rank_newest(struct purge_image *v, size_t n, const struct purge_opts *o)
{
	struct purge_image **order = xcalloc(n ? n : 1, sizeof(*order));
	for (size_t i = 0; i < n; i++)
		order[i] = &v[i];
	qsort(order, n, sizeof(*order), newest_first);
	for (size_t i = 0; i < n; i++) {
		char *why = NULL;
		if (i < (size_t)o->keep_newest) {
			why = xasprintf("among the %ld newest", o->keep_newest);
			add_reason(&order[i]->why_kept, why);
		} else {
			why = xasprintf("beyond the %ld newest", o->keep_newest);
			add_reason(&order[i]->why_included, why);
		}
		free(why);
	}
	free(order);
}

static void include_by_time(struct purge_image *p, const struct purge_opts *o)
{
	char stamp[32];
	if (o->expired && p->expires && p->expires <= o->now) {
		when_format(p->expires, stamp);
		char *why = xasprintf("expired %s", stamp);
		add_reason(&p->why_included, why);
		free(why);
	}
	if (o->have_older && p->created && p->created < o->cutoff) {
		char *why = xasprintf("older than %s", o->older_text);
		add_reason(&p->why_included, why);
		free(why);
	}
}

void purge_decide_images(struct purge_image *v, size_t n, const struct purge_opts *o)
{
	for (size_t i = 0; i < n; i++)
		include_by_time(&v[i], o);
	if (o->keep_newest >= 0)
		rank_newest(v, n, o);
	for (size_t i = 0; i < n; i++) {
		struct purge_image *p = &v[i];
		if (p->in_use)
			add_reason(&p->why_kept, p->in_use);
		if (p->img->state && strcmp(p->img->state, "available") && strcmp(p->img->state, "failed")) {
			char *why = xasprintf("state %s", p->img->state);
			add_reason(&p->why_kept, why);
			free(why);
		}
		p->purge = p->why_included && !p->why_kept;
	}
}

static char *ami_after(const char *text, const char *marker)
{
	const char *m = text ? strstr(text, marker) : NULL;
	if (!m)
		return NULL;
	m += strlen(marker);
	size_t len = strspn(m + 4, "0123456789abcdef");
	if (strncmp(m, "ami-", 4) || len < 8)
		return NULL;
	return xasprintf("ami-%.*s", (int)len, m + 4);
}

char *purge_snapshot_ami(const struct ec2_snapshot *s)
{
	const char *tag = tag_value(&s->tags, "amiforge:image");
	if (tag && !strncmp(tag, "ami-", 4))
		return xstrdup(tag);
	char *ami = ami_after(s->description, "DestinationAmi ");
	if (!ami && s->description && !strncmp(s->description, "Created by CreateImage(", 23))
		ami = ami_after(s->description, ") for ");
	return ami;
}

static bool tagged_by_amiforge(const struct ec2_snapshot *s)
{
	for (size_t i = 0; i < s->tags.n; i++)
		if (!strncmp(s->tags.v[i].key, "amiforge", 8))
			return true;
	return false;
}

/* Whether an image of ALL maps snapshot SID, or is AMI. */
static bool known_to(const struct ec2_image_list *all, const char *sid, const char *ami)
{
	for (size_t i = 0; i < all->n; i++) {
		const struct ec2_image *img = &all->v[i];
		if (ami && !strcmp(img->image_id, ami))
			return true;
		for (size_t b = 0; b < img->n_bdm; b++)
			if (img->bdm[b].snapshot_id && !strcmp(img->bdm[b].snapshot_id, sid))
				return true;
	}
	return false;
}

bool purge_decide_snapshot(const struct ec2_snapshot *s, const struct ec2_image_list *all,
			   const struct purge_opts *o, struct purge_snap *p)
{
	char *ami = purge_snapshot_ami(s);
	if ((!ami && !tagged_by_amiforge(s)) || (s->state && strcmp(s->state, "completed")) ||
	    known_to(all, s->snapshot_id, ami)) {
		free(ami);
		return false;
	}
	*p = (struct purge_snap){ .snap = s, .ami = ami };
	if (purge_parse_time(s->start_time, &p->started) < 0)
		p->started = 0;
	p->why_included = ami ? xasprintf("its AMI %s is gone", ami)
			      : xstrdup("made by amiforge, no AMI maps it");
	time_t cutoff = o->have_older ? o->cutoff : o->now - PURGE_ORPHAN_MIN_AGE;
	if (!p->started || p->started >= cutoff)
		p->why_kept = o->have_older ? xasprintf("younger than %s", o->older_text)
					    : xstrdup("younger than a day (give --older-than)");
	p->purge = !p->why_kept;
	return true;
}

void purge_snap_release(struct purge_snap *p)
{
	free(p->ami);
	free(p->why_included);
	free(p->why_kept);
	free(p->error);
	*p = (struct purge_snap){ 0 };
}
