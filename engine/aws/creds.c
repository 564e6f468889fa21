/* SPDX-License-Identifier: Apache-2.0 */
/* The credential chain (DESIGN §8; reference/FORMATS.md §5 gives botocore's
 * order, of which amiforge keeps environment, shared credentials file,
 * config file and instance metadata) and redaction of AWS text. */
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "amiforge/aws/awsconfig.h"
#include "amiforge/aws/creds.h"
#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/log.h"
#include "amiforge/redact.h"
#include "amiforge/util.h"

static void creds_free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void aws_creds_release(struct aws_creds *c)
{
	if (!c)
		return;
	free(c->access_key_id);
	creds_free_secret(c->secret_access_key);
	creds_free_secret(c->session_token);
	free(c->source);
	memset(c, 0, sizeof(*c));
}

static char *creds_strdup0(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void aws_creds_copy(struct aws_creds *dst, const struct aws_creds *src)
{
	dst->access_key_id = creds_strdup0(src->access_key_id);
	dst->secret_access_key = creds_strdup0(src->secret_access_key);
	dst->session_token = creds_strdup0(src->session_token);
	dst->expiration = src->expiration;
	dst->source = creds_strdup0(src->source);
}

static const char *creds_env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static char *creds_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* ---- the profile ---- */

/* 1 found (*out filled), 0 not there (*why says why), -1 error. */
static int creds_from_file(const struct aws_profile_file *f, const char *profile,
			   struct aws_creds *out, struct strbuf *why, struct af_error **err)
{
	if (!f->text) {
		strbuf_addf(why, "; profile '%s' in %s (no such file)", profile, f->path);
		return 0;
	}
	if (!f->has_section) {
		strbuf_addf(why, "; profile '%s' in %s (no [%s] section)", profile, f->path, f->section);
		return 0;
	}
	_cleanup_free_ char *akid = aws_profile_file_get(f, "aws_access_key_id");
	char *secret = aws_profile_file_get(f, "aws_secret_access_key");
	if (!akid && !secret) {
		strbuf_addf(why, "; profile '%s' in %s (no aws_access_key_id)", profile, f->path);
		return 0;
	}
	if (!akid || !secret || !*akid || !*secret) {
		creds_free_secret(secret);
		return af_error_set(err, 0,
				    "AWS profile '%s' in '%s' has only one of aws_access_key_id and "
				    "aws_secret_access_key (set both in [%s])",
				    profile, f->path, f->section);
	}
	char *token = aws_profile_file_get(f, "aws_session_token");
	if (!token)
		token = aws_profile_file_get(f, "aws_security_token");
	out->access_key_id = steal_pointer(&akid);
	out->secret_access_key = secret;
	out->session_token = token;
	out->expiration = 0;
	out->source = xasprintf("profile '%s' in %s", profile, f->path);
	return 1;
}

static int creds_from_env(struct aws_creds *out, struct strbuf *why, struct af_error **err)
{
	const char *akid = creds_env("AWS_ACCESS_KEY_ID");
	const char *secret = creds_env("AWS_SECRET_ACCESS_KEY");
	if (!akid && !secret) {
		strbuf_addstr(why, "environment (AWS_ACCESS_KEY_ID not set)");
		return 0;
	}
	if (!akid || !secret)
		return af_error_set(err, 0, "%s is set but %s is not (set both, or neither to use a profile)",
				    akid ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
				    akid ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
	const char *token = creds_env("AWS_SESSION_TOKEN") ?: creds_env("AWS_SECURITY_TOKEN");
	out->access_key_id = xstrdup(akid);
	out->secret_access_key = xstrdup(secret);
	out->session_token = creds_strdup0(token);
	out->expiration = 0;
	out->source = xstrdup("environment");
	return 1;
}

/* ---- instance metadata ---- */

/* "2017-05-17T15:09:54Z" -> *t; false when it is not such a time. */
static bool creds_parse_time(const char *s, time_t *t)
{
	struct tm tm = { 0 };
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end || (*end && *end != 'Z' && *end != '.' && *end != '+'))
		return false;
	*t = timegm(&tm);
	return true;
}

int aws_creds_parse_imds(const char *text, const char *role, struct aws_creds *out,
			 struct af_error **err)
{
	json_error_t jerr;
	_cleanup_json_ json_t *j = json_loads(text, 0, &jerr);
	if (!json_is_object(j))
		return af_error_set(err, 0,
				    "instance metadata role '%s': the credentials are not a "
				    "JSON object (line %d: %s)",
				    role, jerr.line, jerr.text);
	const char *code = json_string_value(json_object_get(j, "Code"));
	const char *akid = json_string_value(json_object_get(j, "AccessKeyId"));
	const char *secret = json_string_value(json_object_get(j, "SecretAccessKey"));
	const char *token = json_string_value(json_object_get(j, "Token"));
	const char *exp = json_string_value(json_object_get(j, "Expiration"));
	time_t expiration = 0;
	int r = 0;
	if (code && strcmp(code, "Success") != 0)
		r = af_error_set(err, 0, "instance metadata role '%s': Code is '%s', not Success",
				 role, code);
	else if (!akid || !secret)
		r = af_error_set(err, 0, "instance metadata role '%s': AccessKeyId or "
				 "SecretAccessKey missing", role);
	else if (exp && !creds_parse_time(exp, &expiration))
		r = af_error_set(err, 0, "instance metadata role '%s': Expiration '%s' is "
				 "not an ISO 8601 time", role, exp);
	if (r == 0) {
		memset(out, 0, sizeof(*out));
		out->access_key_id = xstrdup(akid);
		out->secret_access_key = xstrdup(secret);
		out->session_token = creds_strdup0(token);
		out->expiration = expiration;
		out->source = xasprintf("instance metadata role '%s'", role);
	}
	/* The document holds the secrets: wipe jansson's copies too. */
	const char *const secrets[] = { "SecretAccessKey", "Token" };
	for (size_t i = 0; i < ARRAY_SIZE(secrets); i++) {
		char *v = (char *)json_string_value(json_object_get(j, secrets[i]));
		if (v)
			OPENSSL_cleanse(v, strlen(v));
	}
	return r;
}

/* The role's credentials.  1 found (*out filled), 0 not there (*why says
 * why: a broken metadata service is one more place that gave nothing), -1
 * error. */
static int creds_imds_step(const struct imds_iface *imds, struct aws_creds *out,
			   struct strbuf *why, struct af_error **err)
{
	_cleanup_free_ char *where = imds->where(imds->data);
	_cleanup_free_ char *roles = NULL;
	struct af_error *e = NULL;
	int r = imds->get(imds->data, "meta-data/iam/security-credentials/", &roles, &e);
	if (r < 0) {
		strbuf_addf(why, "; instance metadata at %s (%s)", where, af_error_msg(e));
		af_error_free(e);
		return 0;
	}
	if (r > 0) {
		strbuf_addf(why, "; instance metadata at %s (not available)", where);
		return 0;
	}
	char *role = creds_trim(roles);
	role[strcspn(role, "\r\n")] = '\0';
	if (!*role) {
		strbuf_addf(why, "; instance metadata at %s (no IAM role attached)", where);
		return 0;
	}
	_cleanup_free_ char *path = xasprintf("meta-data/iam/security-credentials/%s", role);
	char *body = NULL;
	r = imds->get(imds->data, path, &body, err);
	if (r > 0)
		strbuf_addf(why, "; instance metadata at %s (role '%s' has no credentials)", where,
			    role);
	if (r != 0)
		return r < 0 ? af_error_wrap(err, "instance metadata role '%s'", role) : 0;
	r = aws_creds_parse_imds(body, role, out, err);
	creds_free_secret(body);
	return r < 0 ? -1 : 1;
}

int aws_creds_from_imds(const struct imds_iface *imds, struct aws_creds *out,
			struct af_error **err)
{
	struct strbuf why = STRBUF_INIT;
	int r = creds_imds_step(imds_iface_or_default(imds), out, &why, err);
	strbuf_release(&why);
	return r < 0 ? -1 : r == 0;
}

static int creds_from_profile(const struct aws_creds_opts *opts, struct aws_creds *out,
			      struct strbuf *why, struct af_error **err)
{
	const char *from;
	const char *profile = aws_profile_name(opts, &from);
	struct aws_profile_file cf, cfg;
	int r = aws_profile_file_load(&cf, AWS_PROFILE_CREDENTIALS, profile, err);
	if (r == 0)
		r = aws_profile_file_load(&cfg, AWS_PROFILE_CONFIG, profile, err);
	else
		memset(&cfg, 0, sizeof(cfg));
	if (r == 0)
		r = creds_from_file(&cf, profile, out, why, err);
	if (r == 0)
		r = creds_from_file(&cfg, profile, out, why, err);
	/* A profile chosen by name that exists nowhere is a typo: using the
	 * instance role instead would act as someone else. */
	if (r == 0 && from && !cf.has_section && !cfg.has_section)
		r = af_error_set(err, 0, "AWS profile '%s' (from %s) not found in %s or %s", profile,
				 from, cf.path, cfg.path);
	aws_profile_file_release(&cf);
	aws_profile_file_release(&cfg);
	return r;
}

int aws_creds_resolve(const struct aws_creds_opts *opts, struct aws_creds *out,
		      struct af_error **err)
{
	struct aws_creds c = { 0 };
	struct strbuf why = STRBUF_INIT;
	int r = creds_from_env(&c, &why, err);
	if (r == 0)
		r = creds_from_profile(opts, &c, &why, err);
	if (r == 0 && !(opts && opts->no_imds)) {
		if (creds_env("AWS_EC2_METADATA_DISABLED") &&
		    !strcasecmp(creds_env("AWS_EC2_METADATA_DISABLED"), "true"))
			strbuf_addstr(&why, "; instance metadata (disabled by AWS_EC2_METADATA_DISABLED)");
		else
			r = creds_imds_step(imds_iface_or_default(opts ? opts->imds : NULL), &c,
					    &why, err);
	} else if (r == 0) {
		strbuf_addstr(&why, "; instance metadata (not consulted)");
	}
	if (r == 0)
		af_error_set(err, 0,
			     "no AWS credentials found: looked in %s (set AWS_ACCESS_KEY_ID and "
			     "AWS_SECRET_ACCESS_KEY, or configure a profile with aws_access_key_id and "
			     "aws_secret_access_key)",
			     why.buf);
	strbuf_release(&why);
	if (r <= 0) {
		aws_creds_release(&c);
		return -1;
	}
	/* From here on every writer of text hides them (redact.h). */
	redact_add(c.secret_access_key);
	redact_add(c.session_token);
	*out = c;
	return 0;
}

/* ---- the cached chain ---- */

struct aws_creds_chain {
	pthread_mutex_t lock;
	struct aws_creds_opts opts;
	char *profile;
	bool is_static;
	bool have;
	struct aws_creds cur;
};

struct aws_creds_chain *aws_creds_chain_new(const struct aws_creds_opts *opts)
{
	struct aws_creds_chain *ch = xcalloc(1, sizeof(*ch));
	pthread_mutex_init(&ch->lock, NULL);
	if (opts) {
		ch->opts = *opts;
		ch->profile = creds_strdup0(opts->profile);
		ch->opts.profile = ch->profile;
	}
	return ch;
}

struct aws_creds_chain *aws_creds_chain_new_static(const struct aws_creds *c)
{
	struct aws_creds_chain *ch = aws_creds_chain_new(NULL);
	ch->is_static = true;
	ch->have = true;
	aws_creds_copy(&ch->cur, c);
	redact_add(c->secret_access_key);
	redact_add(c->session_token);
	return ch;
}

void aws_creds_chain_free(struct aws_creds_chain *ch)
{
	if (!ch)
		return;
	aws_creds_release(&ch->cur);
	free(ch->profile);
	pthread_mutex_destroy(&ch->lock);
	free(ch);
}

static bool creds_need_refresh(const struct aws_creds *c, time_t now)
{
	return c->expiration && c->expiration - now < AWS_CREDS_REFRESH_SECS;
}

int aws_creds_chain_get(struct aws_creds_chain *ch, struct aws_creds *out, struct af_error **err)
{
	int r = 0;
	pthread_mutex_lock(&ch->lock);
	time_t now = time(NULL);
	if (!ch->is_static && (!ch->have || creds_need_refresh(&ch->cur, now))) {
		struct aws_creds fresh = { 0 };
		struct af_error *e = NULL;
		if (aws_creds_resolve(&ch->opts, &fresh, &e) == 0) {
			aws_creds_release(&ch->cur);
			ch->cur = fresh;
			ch->have = true;
		} else if (ch->have && ch->cur.expiration > now) {
			/* Still valid for a while: keep them, try again next call. */
			log_warn("refreshing AWS credentials from %s failed, using the current ones "
				 "until they expire: %s", ch->cur.source, af_error_msg(e));
			af_error_free(e);
		} else {
			if (err && !*err)
				*err = e;
			else
				af_error_free(e);
			r = -1;
		}
	}
	if (r == 0)
		aws_creds_copy(out, &ch->cur);
	pthread_mutex_unlock(&ch->lock);
	return r;
}

/* ---- redaction ---- */

#define REDACTED REDACT_MARK

/* Returns TEXT (consumed) with the value after each case-insensitive KEY,
 * up to one of STOP, replaced by REDACTED. */
static char *redact_after(char *text, const char *key, const char *stop)
{
	struct strbuf sb = STRBUF_INIT;
	size_t kl = strlen(key);
	const char *p = text;
	for (const char *hit; (hit = strcasestr(p, key));) {
		strbuf_add(&sb, p, (size_t)(hit - p) + kl);
		p = hit + kl;
		size_t vl = strcspn(p, stop);
		if (vl)
			strbuf_addstr(&sb, REDACTED);
		p += vl;
	}
	strbuf_addstr(&sb, p);
	creds_free_secret(text);
	return strbuf_detach(&sb);
}

char *aws_redact(const char *text, const struct aws_creds *c)
{
	if (!text)
		return xstrdup("");
	/* The secrets themselves: the one rule in redact.c, plus C's own. */
	const char *const mine[] = { c ? c->secret_access_key : NULL, c ? c->session_token : NULL };
	char *out = redact_text(text, mine, 2);
	out = redact_after(out, "X-Amz-Signature=", "&# \n\"'");
	out = redact_after(out, "X-Amz-Security-Token=", "&# \n\"'");
	/* Already-redacted values stay as they are: REDACTED again. */
	out = redact_after(out, "x-amz-security-token:", "\r\n");
	return out;
}

char *aws_akid_short(const char *akid, char out[16])
{
	size_t n = akid ? strlen(akid) : 0;
	if (n <= 8)
		snprintf(out, 16, "%s", n ? "****" : "(none)");
	else
		snprintf(out, 16, "%.4s...%s", akid, akid + n - 4);
	return out;
}

