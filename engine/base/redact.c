/* SPDX-License-Identifier: Apache-2.0 */
/* Credential redaction for everything the engine writes (see redact.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/redact.h"
#include "amiforge/util.h"

/* The environment's credentials (the names AWS SDKs read). */
static const char *const redact_env_names[] = {
	"AWS_SECRET_ACCESS_KEY",
	"AWS_SESSION_TOKEN",
	"AWS_SECURITY_TOKEN",
};

static pthread_mutex_t redact_lock = PTHREAD_MUTEX_INITIALIZER;
static char **redact_secrets;
static size_t redact_n;

static bool redact_usable(const char *s)
{
	return s && strlen(s) >= REDACT_MIN_LEN;
}

void redact_add(const char *secret)
{
	if (!redact_usable(secret))
		return;
	pthread_mutex_lock(&redact_lock);
	bool known = false;
	for (size_t i = 0; i < redact_n && !known; i++)
		known = !strcmp(redact_secrets[i], secret);
	if (!known) {
		redact_secrets = xreallocarray(redact_secrets, redact_n + 1, sizeof(*redact_secrets));
		redact_secrets[redact_n++] = xstrdup(secret);
	}
	pthread_mutex_unlock(&redact_lock);
}

void redact_forget_all(void)
{
	pthread_mutex_lock(&redact_lock);
	for (size_t i = 0; i < redact_n; i++) {
		explicit_bzero(redact_secrets[i], strlen(redact_secrets[i]));
		free(redact_secrets[i]);
	}
	free(redact_secrets);
	redact_secrets = NULL;
	redact_n = 0;
	pthread_mutex_unlock(&redact_lock);
}

/* The secrets to look for: EXTRA, the environment's, the registered ones.
 * Called with the lock held; the result borrows every string. */
static const char **redact_needles(const char *const *extra, size_t n_extra, size_t *n)
{
	const char **v = xreallocarray(NULL, n_extra + ARRAY_SIZE(redact_env_names) + redact_n + 1,
				       sizeof(*v));
	*n = 0;
	for (size_t i = 0; i < n_extra; i++)
		if (redact_usable(extra[i]))
			v[(*n)++] = extra[i];
	for (size_t i = 0; i < ARRAY_SIZE(redact_env_names); i++) {
		const char *e = getenv(redact_env_names[i]);
		if (redact_usable(e))
			v[(*n)++] = e;
	}
	for (size_t i = 0; i < redact_n; i++)
		v[(*n)++] = redact_secrets[i];
	return v;
}

/* The earliest hit of any needle at or after P (the longest one when two
 * start at the same place, so a token that contains a key goes whole). */
static const char *redact_first_hit(const char *p, const char **needles, size_t n, size_t *len)
{
	const char *best = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *hit = strstr(p, needles[i]);
		size_t l = strlen(needles[i]);
		if (hit && (!best || hit < best || (hit == best && l > *len))) {
			best = hit;
			*len = l;
		}
	}
	return best;
}

static char *redact_locked(const char *text, const char *const *extra, size_t n_extra, bool *changed)
{
	size_t n = 0;
	const char **needles = redact_needles(extra, n_extra, &n);
	struct strbuf sb = STRBUF_INIT;
	const char *p = text;
	size_t len = 0;
	*changed = false;
	for (const char *hit; (hit = redact_first_hit(p, needles, n, &len)); p = hit + len) {
		strbuf_add(&sb, p, (size_t)(hit - p));
		strbuf_addstr(&sb, REDACT_MARK);
		*changed = true;
	}
	strbuf_addstr(&sb, p);
	free(needles);
	return strbuf_detach(&sb);
}

char *redact_text(const char *text, const char *const *extra, size_t n_extra)
{
	if (!text)
		return xstrdup("");
	bool changed;
	pthread_mutex_lock(&redact_lock);
	char *out = redact_locked(text, extra, n_extra, &changed);
	pthread_mutex_unlock(&redact_lock);
	return out;
}

bool redact_needed(const char *text)
{
	if (!text)
		return false;
	bool changed;
	pthread_mutex_lock(&redact_lock);
	char *out = redact_locked(text, NULL, 0, &changed);
	pthread_mutex_unlock(&redact_lock);
	free(out);
	return changed;
}

void redact_json(json_t *j)
{
	if (json_is_string(j)) {
		const char *s = json_string_value(j);
		if (strlen(s) != json_string_length(j))
			return; /* holds a NUL: cannot be matched as text, and no secret does */
		if (redact_needed(s)) {
			char *r = redact_text(s, NULL, 0);
			json_string_set(j, r);
			free(r);
		}
	} else if (json_is_array(j)) {
		for (size_t i = 0; i < json_array_size(j); i++)
			redact_json(json_array_get(j, i));
	} else if (json_is_object(j)) {
		const char *k;
		json_t *v;
		json_t *renamed = json_array();
		json_object_foreach(j, k, v) {
			redact_json(v);
			if (redact_needed(k))
				json_array_append_new(renamed, json_string(k));
		}
		/* Renamed after the walk: the object must not change under it. */
		for (size_t i = 0; i < json_array_size(renamed); i++) {
			const char *old = json_string_value(json_array_get(renamed, i));
			char *rk = redact_text(old, NULL, 0);
			json_object_set(j, rk, json_object_get(j, old));
			json_object_del(j, old);
			free(rk);
		}
		json_decref(renamed);
	}
}
