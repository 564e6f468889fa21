/* SPDX-License-Identifier: Apache-2.0 */
/* A state's journal and the completed-stage records in the remote store
 * (remote.h).  The journal is one object rewritten whole: it is small (a
 * line per event), one build writes it at a time (the lease), and If-Match
 * on the ETag the writer last saw makes a writer that lost its lease fail
 * instead of overwriting what the new holder wrote. */
#include <stdlib.h>
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/mem.h"
#include "amiforge/redact.h"
#include "amiforge/remote.h"
#include "amiforge/util.h"

/* A state name becomes one path segment. */
static int check_state(const char *state, struct af_error **err)
{
	if (!state || !*state || !strcmp(state, ".") || !strcmp(state, "..") || strchr(state, '/'))
		return af_error_set(err, 0, "invalid remote state name '%s'", state ? state : "");
	return 0;
}

int remote_journal_get(struct remote *r, const char *state, char **text, size_t *len,
		       char **etag, struct af_error **err)
{
	*text = NULL;
	*len = 0;
	*etag = NULL;
	if (check_state(state, err) < 0)
		return -1;
	_cleanup_free_ char *name = remote_name(r, "states/%s/journal", state);
	bool found;
	if (s3_get_object_found(&r->s3, r->bucket, name, text, len, etag, &found, err) < 0)
		return af_error_wrap(err, "remote journal of state '%s'", state);
	return 0;
}

int remote_journal_put(struct remote *r, const char *state, const char *text, size_t len,
		       const char *etag, char **new_etag, struct af_error **err)
{
	if (check_state(state, err) < 0)
		return -1;
	_cleanup_free_ char *name = remote_name(r, "states/%s/journal", state);
	struct s3_cond cond = { .if_none_match_any = !etag, .if_match = etag };
	if (s3_put_object_cond(&r->s3, r->bucket, name, text, len, &cond, new_etag, err) < 0) {
		if (af_error_errno(*err) == S3_CONDITION_FAILED)
			return af_error_wrap(err, "another build wrote the remote journal of state '%s' (s3://%s/%s)",
					     state, r->bucket, name);
		return af_error_wrap(err, "remote journal of state '%s'", state);
	}
	return 0;
}

static bool hex_key(const char *key)
{
	if (!key || strlen(key) != 64)
		return false;
	for (const char *p = key; *p; p++)
		if (!strchr(hex_digits, *p))
			return false;
	return true;
}

int remote_stage_get(struct remote *r, const char *key, json_t **record, struct af_error **err)
{
	*record = NULL;
	if (!hex_key(key))
		return af_error_set(err, 0, "invalid stage key '%s'", key ? key : "");
	_cleanup_free_ char *name = remote_name(r, "stages/%s.json", key);
	_cleanup_free_ char *text = NULL;
	size_t len;
	bool found;
	if (s3_get_object_found(&r->s3, r->bucket, name, &text, &len, NULL, &found, err) < 0)
		return -1;
	if (!found)
		return 0;
	json_error_t jerr;
	json_t *j = json_loadb(text, len, 0, &jerr);
	/* A record that does not read is no record: the stage runs again. */
	if (json_is_object(j) && json_integer_value(json_object_get(j, "v")) == 1 &&
	    json_is_object(json_object_get(j, "outputs")))
		*record = j;
	else
		json_decref(j);
	return 0;
}

int remote_stage_put(struct remote *r, const char *key, const json_t *record,
		     struct af_error **err)
{
	if (!hex_key(key))
		return af_error_set(err, 0, "invalid stage key '%s'", key ? key : "");
	_cleanup_json_ json_t *copy = json_deep_copy(record);
	redact_json(copy);
	_cleanup_free_ char *text = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
	_cleanup_free_ char *name = remote_name(r, "stages/%s.json", key);
	struct s3_cond cond = { .if_none_match_any = true };
	if (s3_put_object_cond(&r->s3, r->bucket, name, text, strlen(text), &cond, NULL, err) == 0)
		return 0;
	if (af_error_errno(*err) != S3_CONDITION_FAILED)
		return -1;
	af_error_clear(err); /* the first record of a key stays: both are valid */
	return 0;
}
