/* SPDX-License-Identifier: Apache-2.0 */
/* The credential chain, region and endpoints (DESIGN §8; reference/FORMATS.md
 * §5 gives botocore's order, of which amiforge keeps environment, shared
 * credentials file, config file and instance metadata). */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

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

/* ---- INI files (~/.aws/credentials, ~/.aws/config) ---- */

static char *creds_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Looks up KEY in section SECTION of the INI text.  Indented lines are
 * sub-properties (e.g. "s3 =\n  addressing_style = path") and are skipped.
 * Returns the value (caller frees) or NULL; *has_section tells whether the
 * section exists. */
static char *ini_get(const char *text, const char *section, const char *key, bool *has_section)
{
	_cleanup_free_ char *copy = xstrdup(text);
	bool in = false;
	char *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		bool indented = isspace((unsigned char)line[0]);
		char *l = creds_trim(line);
		if (!*l || *l == '#' || *l == ';')
			continue;
		if (*l == '[') {
			char *end = strchr(l, ']');
			if (!end)
				continue;
			*end = '\0';
			in = !strcmp(creds_trim(l + 1), section);
			if (in && has_section)
				*has_section = true;
			continue;
		}
		if (!in || indented)
			continue;
		char *eq = strchr(l, '=');
		if (!eq)
			continue;
		*eq = '\0';
		if (!strcmp(creds_trim(l), key))
			return xstrdup(creds_trim(eq + 1));
	}
	return NULL;
}

static const char *creds_profile_name(const struct aws_creds_opts *opts, const char **from)
{
	if (opts && opts->profile && *opts->profile) {
		*from = "option";
		return opts->profile;
	}
	if (creds_env("AWS_PROFILE")) {
		*from = "AWS_PROFILE";
		return creds_env("AWS_PROFILE");
	}
	if (creds_env("AWS_DEFAULT_PROFILE")) {
		*from = "AWS_DEFAULT_PROFILE";
		return creds_env("AWS_DEFAULT_PROFILE");
	}
	*from = NULL;
	return "default";
}

/* ENV_NAME's value, else ~/.aws/LEAF.  Caller frees. */
static char *creds_file_path(const char *env_name, const char *leaf)
{
	if (creds_env(env_name))
		return xstrdup(creds_env(env_name));
	const char *home = creds_env("HOME");
	return xasprintf("%s/.aws/%s", home ? home : "", leaf);
}

struct creds_file {
	char *path;
	char *text;       /* NULL when missing */
	char *section;    /* section name for the profile */
	bool has_section;
};

static int creds_file_load(struct creds_file *f, const char *env_name, const char *leaf,
			   const char *section, struct af_error **err)
{
	f->path = creds_file_path(env_name, leaf);
	f->section = xstrdup(section);
	struct af_error *e = NULL;
	f->text = read_file(f->path, NULL, &e);
	if (!f->text) {
		int errnum = af_error_errno(e);
		af_error_free(e);
		if (errnum != ENOENT && errnum != ENOTDIR)
			return af_error_set(err, errnum, "cannot read AWS file '%s'", f->path);
		return 0;
	}
	bool has = false;
	free(ini_get(f->text, section, "", &has));
	f->has_section = has;
	return 0;
}

static void creds_file_release(struct creds_file *f)
{
	free(f->path);
	creds_free_secret(f->text);
	free(f->section);
}

/* The config file names non-default profiles "[profile NAME]". */
static char *creds_config_section(const char *profile)
{
	return strcmp(profile, "default") ? xasprintf("profile %s", profile) : xstrdup("default");
}

/* 1 found (*out filled), 0 not there (*why says why), -1 error. */
static int creds_from_file(const struct creds_file *f, const char *profile, struct aws_creds *out,
			   struct strbuf *why, struct af_error **err)
{
	if (!f->text) {
		strbuf_addf(why, "; profile '%s' in %s (no such file)", profile, f->path);
		return 0;
	}
	if (!f->has_section) {
		strbuf_addf(why, "; profile '%s' in %s (no [%s] section)", profile, f->path, f->section);
		return 0;
	}
	_cleanup_free_ char *akid = ini_get(f->text, f->section, "aws_access_key_id", NULL);
	char *secret = ini_get(f->text, f->section, "aws_secret_access_key", NULL);
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
	char *token = ini_get(f->text, f->section, "aws_session_token", NULL);
	if (!token)
		token = ini_get(f->text, f->section, "aws_security_token", NULL);
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
		return af_error_set(err, 0, "instance metadata role '%s': the credentials are not a "
				    "JSON object (line %d: %s)", role, jerr.line, jerr.text);
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
		strbuf_addf(why, "; instance metadata at %s (role '%s' has no credentials)", where, role);
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
	const char *profile = creds_profile_name(opts, &from);
	_cleanup_free_ char *csect = creds_config_section(profile);
	struct creds_file cf = { 0 }, cfg = { 0 };
	int r = creds_file_load(&cf, "AWS_SHARED_CREDENTIALS_FILE", "credentials", profile, err);
	if (r == 0)
		r = creds_file_load(&cfg, "AWS_CONFIG_FILE", "config", csect, err);
	if (r == 0)
		r = creds_from_file(&cf, profile, out, why, err);
	if (r == 0)
		r = creds_from_file(&cfg, profile, out, why, err);
	/* A profile chosen by name that exists nowhere is a typo: using the
	 * instance role instead would act as someone else. */
	if (r == 0 && from && !cf.has_section && !cfg.has_section)
		r = af_error_set(err, 0, "AWS profile '%s' (from %s) not found in %s or %s", profile,
				 from, cf.path, cfg.path);
	creds_file_release(&cf);
	creds_file_release(&cfg);
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
			r = creds_imds_step(imds_iface_or_default(opts ? opts->imds : NULL), &c, &why,
					    err);
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

/* ---- region ---- */

static char *creds_profile_region(const struct aws_creds_opts *opts, bool *tried, char **where)
{
	const char *from;
	const char *profile = creds_profile_name(opts, &from);
	_cleanup_free_ char *section = creds_config_section(profile);
	_cleanup_free_ char *path = creds_file_path("AWS_CONFIG_FILE", "config");
	_cleanup_free_ char *text = read_file(path, NULL, NULL);
	*where = xasprintf("profile '%s' in %s", profile, path);
	*tried = true;
	return text ? ini_get(text, section, "region", NULL) : NULL;
}

int aws_region_resolve(const char *recipe_region, const struct aws_creds_opts *opts,
		       char **region, const char **source, struct af_error **err)
{
	static const char *const envs[] = { "AWS_REGION", "AWS_DEFAULT_REGION" };
	const char *src = NULL;
	char *v = NULL;
	if (recipe_region && *recipe_region) {
		v = xstrdup(recipe_region);
		src = "recipe";
	}
	for (size_t i = 0; !v && i < ARRAY_SIZE(envs); i++)
		if (creds_env(envs[i])) {
			v = xstrdup(creds_env(envs[i]));
			src = envs[i];
		}
	bool tried = false;
	_cleanup_free_ char *where = NULL;
	if (!v && (v = creds_profile_region(opts, &tried, &where)) && *v)
		src = "profile";
	if (v && !*v) {
		free(v);
		v = NULL;
	}
	_cleanup_free_ char *imds_why = NULL;
	if (!v && !(opts && opts->no_imds)) {
		const struct imds_iface *imds = imds_iface_or_default(opts ? opts->imds : NULL);
		struct af_error *e = NULL;
		char *body = NULL;
		int r = imds->get(imds->data, "meta-data/placement/region", &body, &e);
		if (r == 0 && *creds_trim(body)) {
			v = xstrdup(creds_trim(body));
			src = "instance metadata";
		}
		_cleanup_free_ char *at = imds->where(imds->data);
		imds_why = xasprintf("instance metadata at %s (%s)", at,
				     r < 0 ? af_error_msg(e) : "not available");
		free(body);
		af_error_free(e);
	}
	if (!v)
		return af_error_set(err, 0,
				    "no AWS region: looked in the recipe, AWS_REGION, AWS_DEFAULT_REGION, "
				    "%s, %s (set AWS_REGION or the recipe's region)",
				    where ? where : "the config file",
				    imds_why ? imds_why : "instance metadata (not consulted)");
	*region = v;
	if (source)
		*source = src;
	return 0;
}

/* ---- endpoints ---- */

char *aws_endpoint_url(const char *service, const char *region, bool *custom)
{
	_cleanup_free_ char *var = xasprintf("AWS_ENDPOINT_URL_%s", service);
	for (char *p = var; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	const char *v = creds_env(var) ?: creds_env("AWS_ENDPOINT_URL");
	if (custom)
		*custom = v != NULL;
	if (v) {
		char *u = xstrdup(v);
		size_t n = strlen(u);
		while (n > 0 && u[n - 1] == '/')
			u[--n] = '\0';
		return u;
	}
	const char *suffix = str_has_prefix(region, "cn-") ? "amazonaws.com.cn" : "amazonaws.com";
	return xasprintf("https://%s.%s.%s", service, region, suffix);
}

/* "us-east-1", "us-gov-west-1", "cn-north-1", "eu-central-2"... */
static bool creds_is_region(const char *s, size_t n)
{
	if (n < 7 || n > 25 || !isalpha((unsigned char)s[0]) || !isalpha((unsigned char)s[1]) ||
	    s[2] != '-' || !isdigit((unsigned char)s[n - 1]) || s[n - 2] != '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

int aws_host_infer(const char *host, char **service, char **region)
{
	static const char *const suffixes[] = { ".amazonaws.com", ".amazonaws.com.cn", ".api.aws" };
	_cleanup_free_ char *h = xstrndup(host, strcspn(host, ":"));
	for (char *p = h; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	char *end = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(suffixes) && !end; i++)
		if (str_has_suffix(h, suffixes[i]) && strlen(h) > strlen(suffixes[i]))
			end = h + strlen(h) - strlen(suffixes[i]);
	if (!end)
		return -1;
	*end = '\0';
	/* Labels right to left: [bucket.]SERVICE[.dualstack][.REGION]. */
	char *labels[16];
	size_t n = 0;
	char *save = NULL;
	for (char *t = strtok_r(h, ".", &save); t && n < ARRAY_SIZE(labels); t = strtok_r(NULL, ".", &save))
		labels[n++] = t;
	if (!n)
		return -1;
	const char *reg = NULL, *svc = NULL;
	size_t i = n;
	if (creds_is_region(labels[n - 1], strlen(labels[n - 1])))
		reg = labels[--i];
	if (i > 0 && !strcmp(labels[i - 1], "dualstack"))
		i--;
	if (i == 0)
		return -1;
	svc = labels[i - 1];
	/* Legacy S3 hosts: s3-us-west-2.amazonaws.com, s3-external-1. */
	if (!reg && str_has_prefix(svc, "s3-") && creds_is_region(svc + 3, strlen(svc + 3)))
		reg = svc + 3;
	_cleanup_free_ char *s = xstrdup(str_has_prefix(svc, "s3") ? "s3" : svc);
	if (str_has_suffix(s, "-fips"))
		s[strlen(s) - 5] = '\0';
	*region = xstrdup(reg ? reg : "us-east-1");
	*service = steal_pointer(&s);
	return 0;
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
