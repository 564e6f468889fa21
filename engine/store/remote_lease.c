/* SPDX-License-Identifier: Apache-2.0 */
/* Leases in the remote store (remote.h): one object per lease, created with
 * If-None-Match: *, renewed and released with If-Match on the holder's last
 * ETag, so that S3 itself decides every race.  A lease names its holder
 * (host, pid, boot id) and when it expires; an expired one, or one whose
 * holder is a process of this machine that is gone (a build killed with
 * SIGKILL), is taken over with If-Match on the ETag read, so two
 * takers cannot both win.  Expiry uses the holders' clocks: they must agree
 * to within a small part of the TTL, as NTP keeps them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/mem.h"
#include "amiforge/remote.h"
#include "amiforge/util.h"

#define LEASE_POLL_SECONDS 2.0

static double now_unix(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Who this process is, as a lease names its holder: the host name and
 * the kernel's boot id, read once (neither changes while we run; the
 * agent renews a lease every few seconds). */
struct lease_self {
	char host[256];
	char boot[64];
};

static const struct lease_self *lease_self(void)
{
	static struct lease_self self;
	static bool known;
	if (known)
		return &self;
	gethostname(self.host, sizeof(self.host) - 1);
	size_t len;
	_cleanup_error_ struct af_error *err = NULL;
	_cleanup_free_ char *id = read_file("/proc/sys/kernel/random/boot_id", &len, &err);
	if (id) {
		id[strcspn(id, "\n")] = '\0';
		snprintf(self.boot, sizeof(self.boot), "%s", id);
	}
	known = true;
	return &self;
}

static char *lease_body(double expires)
{
	const struct lease_self *me = lease_self();
	_cleanup_json_ json_t *j = json_pack("{s:i, s:s, s:I, s:s, s:I, s:I}", "v", 1, "holder", me->host,
					     "pid", (json_int_t)getpid(), "boot_id", me->boot,
					     "acquired", (json_int_t)now_unix(), "expires",
					     (json_int_t)expires);
	return json_dumps(j, JSON_COMPACT);
}

/* What a lease object says of its holder. */
struct holder {
	char *host, *boot;
	long pid;
	double expires;
};

static void holder_release(struct holder *h)
{
	free(h->host);
	free(h->boot);
}

static void holder_parse(const char *text, size_t len, struct holder *h)
{
	json_error_t jerr;
	_cleanup_json_ json_t *j = json_loadb(text, len, 0, &jerr);
	const char *host = json_string_value(json_object_get(j, "holder"));
	const char *boot = json_string_value(json_object_get(j, "boot_id"));
	*h = (struct holder){
		.host = xstrdup(host ? host : "?"), .boot = xstrdup(boot ? boot : ""),
		.pid = (long)json_integer_value(json_object_get(j, "pid")),
		/* An unreadable lease counts as expired: it protects nothing. */
		.expires = (double)json_integer_value(json_object_get(j, "expires")),
	};
}

/* A holder that is a process of this machine (same boot) that no longer
 * runs cannot renew: its lease is over whatever it says. */
static bool holder_gone(const struct holder *h)
{
	const struct lease_self *me = lease_self();
	if (strcmp(h->host, me->host) || !*me->boot || strcmp(h->boot, me->boot) || h->pid <= 0)
		return false;
	return kill((pid_t)h->pid, 0) < 0 && errno == ESRCH;
}

static char *holder_text(const struct holder *h)
{
	time_t t = (time_t)h->expires;
	char when[32];
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	return xasprintf("%s pid %ld, until %s", h->host, h->pid, when);
}

static int put_lease(struct remote *r, const char *name, double expires, const char *if_match,
		     char **etag, struct af_error **err)
{
	_cleanup_free_ char *body = lease_body(expires);
	struct s3_cond cond = { .if_none_match_any = !if_match, .if_match = if_match };
	return s3_put_object_cond(&r->s3, r->bucket, name, body, strlen(body), &cond, etag, err);
}

/* One attempt: 1 taken, 0 held by someone (*h filled), -1 error. */
static int lease_try(struct remote *r, const char *name, double ttl, struct holder *h,
		     char **etag, struct af_error **err)
{
	if (put_lease(r, name, now_unix() + ttl, NULL, etag, err) == 0)
		return 1;
	if (af_error_errno(*err) != S3_CONDITION_FAILED)
		return -1;
	af_error_clear(err);
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ char *cur = NULL;
	size_t len;
	bool found;
	if (s3_get_object_found(&r->s3, r->bucket, name, &text, &len, &cur, &found, err) < 0)
		return -1;
	if (!found)
		return 0; /* released meanwhile: try again */
	holder_parse(text, len, h);
	if (h->expires > now_unix() && !holder_gone(h))
		return 0;
	if (put_lease(r, name, now_unix() + ttl, cur, etag, err) == 0) {
		if (h->expires > now_unix())
			log_warn("took over the lease %s/%s of a build that no longer runs (%s pid %ld)",
				 r->bucket, name, h->host, h->pid);
		return 1;
	}
	if (af_error_errno(*err) != S3_CONDITION_FAILED)
		return -1;
	af_error_clear(err); /* another taker won: look again */
	return 0;
}

/* While a garbage collection holds gc-lease, a build must not start: the
 * collection may be deleting blocks the build would count on. */
static int gc_running(struct remote *r, struct holder *h, struct af_error **err)
{
	_cleanup_free_ char *name = remote_name(r, "gc-lease");
	_cleanup_free_ char *text = NULL;
	size_t len;
	bool found;
	if (s3_get_object_found(&r->s3, r->bucket, name, &text, &len, NULL, &found, err) < 0)
		return -1;
	if (!found)
		return 0;
	holder_parse(text, len, h);
	if (h->expires > now_unix() && !holder_gone(h))
		return 1;
	holder_release(h);
	return 0;
}

static int take_once(struct remote *r, struct remote_lease *l, struct holder *h,
		     struct af_error **err)
{
	char *etag = NULL;
	int got = lease_try(r, l->name, l->ttl, h, &etag, err);
	if (got <= 0)
		return got;
	l->etag = etag;
	l->expires = now_unix() + l->ttl;
	if (!str_has_suffix(l->name, "gc-lease")) {
		int gc = gc_running(r, h, err);
		if (gc != 0) {
			_cleanup_error_ struct af_error *e2 = NULL;
			remote_lease_release(r, l, &e2);
			l->name = NULL;
			return gc < 0 ? -1 : 0;
		}
	}
	return 1;
}

int remote_lease_acquire(struct remote *r, const char *name, double ttl, double wait,
			 struct remote_lease *out, struct af_error **err)
{
	double give_up = now_monotonic() + wait;
	for (;;) {
		struct holder h = { 0 };
		*out = (struct remote_lease){ .name = xstrdup(name), .ttl = ttl };
		int got = take_once(r, out, &h, err);
		if (got == 1) {
			holder_release(&h);
			return 0;
		}
		if (!out->name)
			out->name = xstrdup(name);
		if (got < 0 || now_monotonic() >= give_up) {
			_cleanup_free_ char *who = h.host ? holder_text(&h) : xstrdup("a build");
			if (got == 0)
				af_error_set(err, EWOULDBLOCK,
					     "s3://%s/%s is held by %s; wait for that build (or for the lease to expire), or pass --remote-wait DURATION",
					     r->bucket, name, who);
			holder_release(&h);
			remote_lease_free(out);
			return -1;
		}
		holder_release(&h);
		remote_lease_free(out);
		struct timespec ts = { .tv_sec = (time_t)LEASE_POLL_SECONDS };
		nanosleep(&ts, NULL);
	}
}

int remote_lease_renew(struct remote *r, struct remote_lease *l, struct af_error **err)
{
	char *etag = NULL;
	double expires = now_unix() + l->ttl;
	if (put_lease(r, l->name, expires, l->etag, &etag, err) < 0) {
		if (af_error_errno(*err) == S3_CONDITION_FAILED)
			af_error_wrap(err, "lost the lease s3://%s/%s: it expired and another build took it over",
				      r->bucket, l->name);
		return -1;
	}
	free(l->etag);
	l->etag = etag;
	l->expires = expires;
	return 0;
}

int remote_lease_release(struct remote *r, struct remote_lease *l, struct af_error **err)
{
	int rc = 0;
	if (l->name && l->etag)
		rc = put_lease(r, l->name, 0, l->etag, NULL, err);
	remote_lease_free(l);
	return rc;
}

void remote_lease_free(struct remote_lease *l)
{
	free(l->name);
	free(l->etag);
	*l = (struct remote_lease){ 0 };
}

int remote_live_leases(struct remote *r, char ***out, size_t *n, struct af_error **err)
{
	_cleanup_free_ char *prefix = remote_name(r, "states/");
	struct s3_object_list list = { 0 };
	*out = NULL;
	*n = 0;
	if (s3_list_objects(&r->s3, r->bucket, prefix, 0, &list, err) < 0)
		return -1;
	int rc = 0;
	for (size_t i = 0; i < list.n && rc == 0; i++) {
		if (!str_has_suffix(list.v[i].key, "/lease"))
			continue;
		_cleanup_free_ char *text = NULL;
		size_t len;
		bool found;
		rc = s3_get_object_found(&r->s3, r->bucket, list.v[i].key, &text, &len, NULL, &found,
					 err);
		if (rc < 0 || !found)
			continue;
		struct holder h;
		holder_parse(text, len, &h);
		if (h.expires > now_unix() && !holder_gone(&h)) {
			_cleanup_free_ char *who = holder_text(&h);
			*out = xreallocarray(*out, *n + 1, sizeof(**out));
			(*out)[(*n)++] = xasprintf("%s (%s)", list.v[i].key, who);
		}
		holder_release(&h);
	}
	s3_object_list_release(&list);
	return rc;
}
