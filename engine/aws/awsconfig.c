/* SPDX-License-Identifier: Apache-2.0 */
/* Profiles, their files, region and endpoints (include/amiforge/aws/awsconfig.h
 * has the contract). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "amiforge/aws/awsconfig.h"
#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

static const char *awsconfig_env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

static char *awsconfig_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* ---- INI files (~/.aws/credentials, ~/.aws/config) ---- */

char *aws_ini_get(const char *text, const char *section, const char *key, bool *has_section)
{
	char *copy = xstrdup(text);
	char *found = NULL;
	bool in = false;
	char *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line && !found;
	     line = strtok_r(NULL, "\n", &save)) {
		bool indented = isspace((unsigned char)line[0]);
		char *l = awsconfig_trim(line);
		if (!*l || *l == '#' || *l == ';')
			continue;
		if (*l == '[') {
			char *end = strchr(l, ']');
			if (!end)
				continue;
			*end = '\0';
			in = !strcmp(awsconfig_trim(l + 1), section);
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
		if (!strcmp(awsconfig_trim(l), key))
			found = xstrdup(awsconfig_trim(eq + 1));
	}
	/* The copy holds every secret of the file. */
	OPENSSL_cleanse(copy, strlen(text));
	free(copy);
	return found;
}

const char *aws_profile_name(const struct aws_creds_opts *opts, const char **from)
{
	static const char *const envs[] = { "AWS_PROFILE", "AWS_DEFAULT_PROFILE" };
	if (opts && opts->profile && *opts->profile) {
		*from = "option";
		return opts->profile;
	}
	for (size_t i = 0; i < ARRAY_SIZE(envs); i++)
		if (awsconfig_env(envs[i])) {
			*from = envs[i];
			return awsconfig_env(envs[i]);
		}
	*from = NULL;
	return "default";
}

static const struct {
	const char *env, *leaf;
} awsconfig_files[] = {
	[AWS_PROFILE_CREDENTIALS] = { "AWS_SHARED_CREDENTIALS_FILE", "credentials" },
	[AWS_PROFILE_CONFIG] = { "AWS_CONFIG_FILE", "config" },
};

/* The file's path: its variable, else ~/.aws/LEAF.  Caller frees. */
static char *awsconfig_file_path(enum aws_profile_file_kind kind)
{
	const char *set = awsconfig_env(awsconfig_files[kind].env);
	if (set)
		return xstrdup(set);
	const char *home = awsconfig_env("HOME");
	return xasprintf("%s/.aws/%s", home ? home : "", awsconfig_files[kind].leaf);
}

/* The config file names non-default profiles "[profile NAME]". */
static char *awsconfig_section(enum aws_profile_file_kind kind, const char *profile)
{
	if (kind == AWS_PROFILE_CONFIG && strcmp(profile, "default"))
		return xasprintf("profile %s", profile);
	return xstrdup(profile);
}

int aws_profile_file_load(struct aws_profile_file *f, enum aws_profile_file_kind kind,
			  const char *profile, struct af_error **err)
{
	memset(f, 0, sizeof(*f));
	f->path = awsconfig_file_path(kind);
	f->section = awsconfig_section(kind, profile);
	struct af_error *e = NULL;
	f->text = read_file(f->path, NULL, &e);
	if (!f->text) {
		int errnum = af_error_errno(e);
		af_error_free(e);
		if (errnum != ENOENT && errnum != ENOTDIR)
			return af_error_set(err, errnum, "cannot read AWS file '%s'", f->path);
		return 0;
	}
	free(aws_ini_get(f->text, f->section, "", &f->has_section));
	return 0;
}

void aws_profile_file_release(struct aws_profile_file *f)
{
	if (!f)
		return;
	free(f->path);
	if (f->text) {
		OPENSSL_cleanse(f->text, strlen(f->text));
		free(f->text);
	}
	free(f->section);
	memset(f, 0, sizeof(*f));
}

char *aws_profile_file_get(const struct aws_profile_file *f, const char *key)
{
	return f->text && f->has_section ? aws_ini_get(f->text, f->section, key, NULL) : NULL;
}

/* ---- region ---- */

/* The profile's region in the config file, or NULL; *where names the place
 * looked at, for the message (caller frees). */
static char *awsconfig_profile_region(const struct aws_creds_opts *opts, char **where)
{
	const char *from;
	const char *profile = aws_profile_name(opts, &from);
	struct aws_profile_file f;
	char *v = NULL;
	if (aws_profile_file_load(&f, AWS_PROFILE_CONFIG, profile, NULL) == 0)
		v = aws_profile_file_get(&f, "region");
	*where = xasprintf("profile '%s' in %s", profile, f.path);
	aws_profile_file_release(&f);
	return v;
}

/* The IMDS step: the region, or NULL with *why saying why not. */
static char *awsconfig_imds_region(const struct aws_creds_opts *opts, char **why)
{
	const struct imds_iface *imds = imds_iface_or_default(opts ? opts->imds : NULL);
	struct af_error *e = NULL;
	char *body = NULL, *v = NULL;
	int r = imds->get(imds->data, "meta-data/placement/region", &body, &e);
	if (r == 0 && *awsconfig_trim(body))
		v = xstrdup(awsconfig_trim(body));
	_cleanup_free_ char *where = imds->where(imds->data);
	*why = xasprintf("instance metadata at %s (%s)", where,
			 r < 0 ? af_error_msg(e) : "not available");
	free(body);
	af_error_free(e);
	return v;
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
		if (awsconfig_env(envs[i])) {
			v = xstrdup(awsconfig_env(envs[i]));
			src = envs[i];
		}
	_cleanup_free_ char *where = NULL;
	if (!v && (v = awsconfig_profile_region(opts, &where)) && *v)
		src = "profile";
	if (v && !*v) {
		free(v);
		v = NULL;
	}
	_cleanup_free_ char *imds_why = NULL;
	if (!v && !(opts && opts->no_imds) && (v = awsconfig_imds_region(opts, &imds_why)))
		src = "instance metadata";
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
	const char *v = awsconfig_env(var) ?: awsconfig_env("AWS_ENDPOINT_URL");
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
static bool awsconfig_is_region(const char *s, size_t n)
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
	if (awsconfig_is_region(labels[n - 1], strlen(labels[n - 1])))
		reg = labels[--i];
	if (i > 0 && !strcmp(labels[i - 1], "dualstack"))
		i--;
	if (i == 0)
		return -1;
	svc = labels[i - 1];
	/* Legacy S3 hosts: s3-us-west-2.amazonaws.com, s3-external-1. */
	if (!reg && str_has_prefix(svc, "s3-") && awsconfig_is_region(svc + 3, strlen(svc + 3)))
		reg = svc + 3;
	_cleanup_free_ char *s = xstrdup(str_has_prefix(svc, "s3") ? "s3" : svc);
	if (str_has_suffix(s, "-fips"))
		s[strlen(s) - 5] = '\0';
	*region = xstrdup(reg ? reg : "us-east-1");
	*service = steal_pointer(&s);
	return 0;
}
