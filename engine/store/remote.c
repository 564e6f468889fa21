/* SPDX-License-Identifier: Apache-2.0 */
/* The remote store's address and connection (remote.h): s3://BUCKET/PREFIX
 * parsed, and the S3 client every other remote_* module talks through. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/mem.h"
#include "amiforge/remote.h"
#include "amiforge/util.h"

#define REMOTE_BACKOFF_CAP_MS 5000
#define REMOTE_LOW_SPEED_SECS 15

/* S3's own rules (3-63 characters of a-z 0-9 . -), checked here so that a
 * typo reads as one instead of as an odd HTTP error. */
static bool bucket_name_ok(const char *b, size_t n)
{
	if (n < 3 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '.' ||
		      b[i] == '-'))
			return false;
	return true;
}

int remote_parse_url(const char *url, char **bucket, char **prefix, struct af_error **err)
{
	static const char hint[] = "; give s3://BUCKET or s3://BUCKET/PREFIX";
	if (!url || strncmp(url, "s3://", 5))
		return af_error_set(err, 0, "remote '%s' is not an s3:// URL%s", url ? url : "", hint);
	const char *b = url + 5;
	const char *slash = strchr(b, '/');
	size_t bn = slash ? (size_t)(slash - b) : strlen(b);
	if (!bucket_name_ok(b, bn))
		return af_error_set(err, 0, "remote '%s': '%.*s' is not a valid S3 bucket name%s", url,
				    (int)bn, b, hint);
	const char *p = slash ? slash + 1 : "";
	struct strbuf sb = STRBUF_INIT;
	/* Collapse empty segments: "a//b/" and "a/b" name the same prefix. */
	for (const char *s = p; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 2 && !strncmp(s, "..", 2)) {
			strbuf_release(&sb);
			return af_error_set(err, 0, "remote '%s': '..' in the prefix%s", url, hint);
		}
		if (n) {
			strbuf_add(&sb, s, n);
			strbuf_add(&sb, "/", 1);
		}
		s += n + (s[n] == '/');
	}
	*bucket = xstrndup(b, bn);
	*prefix = sb.len ? strbuf_detach(&sb) : xstrdup("");
	strbuf_release(&sb);
	return 0;
}

int remote_open(struct remote *r, const char *url, const char *region, struct af_error **err)
{
	*r = (struct remote){ 0 };
	if (remote_parse_url(url, &r->bucket, &r->prefix, err) < 0)
		return -1;
	if (aws_session_open(&r->aws, region, 0, err) < 0) {
		/* S3 answers anywhere: a bucket in another region redirects. */
		af_error_clear(err);
		if (aws_session_open(&r->aws, "us-east-1", 0, err) < 0) {
			remote_close(r);
			return af_error_wrap(err, "remote %s", url);
		}
	}
	r->url = xstrdup(url);
	/* The store is a cache: a build waits less for it than for AWS calls
	 * it cannot do without (shorter backoff, stalls cut sooner). */
	r->aws.opts.backoff_cap_ms = REMOTE_BACKOFF_CAP_MS;
	r->aws.opts.low_speed_secs = REMOTE_LOW_SPEED_SECS;
	s3_client_init(&r->s3, r->aws.region, r->aws.creds, &r->aws.opts);
	return 0;
}

void remote_close(struct remote *r)
{
	if (!r)
		return;
	if (r->s3.endpoint)
		s3_client_release(&r->s3);
	aws_session_close(&r->aws);
	free(r->url);
	free(r->bucket);
	free(r->prefix);
	*r = (struct remote){ 0 };
}

char *remote_name(const struct remote *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *tail = xvasprintf(fmt, ap);
	va_end(ap);
	return xasprintf("%s%s", r->prefix, tail);
}
