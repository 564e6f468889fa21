/* SPDX-License-Identifier: Apache-2.0 */
/* AWS Signature Version 4: the steps of botocore's SigV4Auth and
 * S3SigV4Auth (reference/FORMATS.md §2.1, §2.3), checked against the AWS
 * test suite in tests/vectors/aws-sig-v4-test-suite. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "amiforge/aws/sigv4.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

/* botocore's SIGNED_HEADERS_BLACKLIST: proxies and clients change these. */
static const char *const sigv4_unsigned_headers[] = {
	"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id",
};

/* Set by sigv4_sign itself; the caller's copies are ignored. */
static const char *const sigv4_own_headers[] = {
	"x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "authorization",
};

static bool sigv4_in_list(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcasecmp(name, list[i]))
			return true;
	return false;
}

static bool sigv4_unreserved(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

char *sigv4_uri_encode_n(const char *s, size_t n, bool keep_slash)
{
	/* Upper case: SigV4's canonical URI encoding requires it. */
	static const char hex[] = "0123456789ABCDEF";
	struct strbuf sb = STRBUF_INIT;
	strbuf_add(&sb, "", 0);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (sigv4_unreserved(c) || (keep_slash && c == '/')) {
			strbuf_add(&sb, &s[i], 1);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };
			strbuf_add(&sb, e, 3);
		}
	}
	return strbuf_detach(&sb);
}

char *sigv4_uri_encode(const char *s, bool keep_slash)
{
	return sigv4_uri_encode_n(s, strlen(s), keep_slash);
}

char *sigv4_uri_decode(const char *s, size_t n, size_t *len)
{
	char *out = xmalloc(n + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hex_digit_value(s[i + 1])) >= 0 && (lo = hex_digit_value(s[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	if (len)
		*len = o;
	return out;
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
	sha256_hex(data, len, out);
}

void sigv4_now(char out[17])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static bool sigv4_date_valid(const char *d)
{
	if (strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
		return false;
	for (int i = 0; i < 15; i++)
		if (i != 8 && !isdigit((unsigned char)d[i]))
			return false;
	return true;
}

/* RFC 3986 §5.2.4 plus AWS's removal of empty segments (botocore
 * remove_dot_segments). */
static char *sigv4_normalize_path(const char *path)
{
	if (!*path)
		return xstrdup("/");
	size_t n = strlen(path);
	const char **segs = xcalloc(n + 1, sizeof(*segs));
	size_t *lens = xcalloc(n + 1, sizeof(*lens));
	size_t nseg = 0;
	for (const char *p = path; *p;) {
		const char *e = strchr(p, '/');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == 2 && !strncmp(p, "..", 2)) {
			if (nseg)
				nseg--;
		} else if (l && !(l == 1 && *p == '.')) {
			segs[nseg] = p;
			lens[nseg++] = l;
		}
		p += l;
		if (*p == '/')
			p++;
	}
	struct strbuf sb = STRBUF_INIT;
	if (path[0] == '/')
		strbuf_addstr(&sb, "/");
	for (size_t i = 0; i < nseg; i++) {
		if (i)
			strbuf_addstr(&sb, "/");
		strbuf_add(&sb, segs[i], lens[i]);
	}
	if (path[n - 1] == '/' && nseg)
		strbuf_addstr(&sb, "/");
	free(segs);
	free(lens);
	return strbuf_detach(&sb);
}

static char *sigv4_canonical_uri(const char *path, unsigned flags)
{
	if (!path || !*path)
		return xstrdup("/");
	if (flags & SIGV4_S3)
		return xstrdup(path);
	_cleanup_free_ char *norm = sigv4_normalize_path(path);
	return sigv4_uri_encode(norm, true);
}

struct sigv4_pair {
	char *key, *value;
};

static int sigv4_pair_cmp(const void *a, const void *b)
{
	const struct sigv4_pair *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : strcmp(x->value, y->value);
}

static char *sigv4_encode_component(const char *s, size_t n)
{
	size_t dl;
	_cleanup_free_ char *dec = sigv4_uri_decode(s, n, &dl);
	return sigv4_uri_encode_n(dec, dl, false);
}

static char *sigv4_canonical_query(const char *query)
{
	if (!query || !*query)
		return xstrdup("");
	size_t cap = 1;
	for (const char *p = query; *p; p++)
		cap += *p == '&';
	struct sigv4_pair *pairs = xcalloc(cap, sizeof(*pairs));
	size_t np = 0;
	for (const char *p = query; *p;) {
		size_t l = strcspn(p, "&");
		if (l) {
			const char *eq = memchr(p, '=', l);
			size_t kl = eq ? (size_t)(eq - p) : l;
			pairs[np].key = sigv4_encode_component(p, kl);
			pairs[np].value = eq ? sigv4_encode_component(eq + 1, l - kl - 1) : xstrdup("");
			np++;
		}
		p += l;
		if (*p == '&')
			p++;
	}
	qsort(pairs, np, sizeof(*pairs), sigv4_pair_cmp);
	struct strbuf sb = STRBUF_INIT;
	strbuf_add(&sb, "", 0);
	for (size_t i = 0; i < np; i++) {
		strbuf_addf(&sb, "%s%s=%s", i ? "&" : "", pairs[i].key, pairs[i].value);
		free(pairs[i].key);
		free(pairs[i].value);
	}
	free(pairs);
	return strbuf_detach(&sb);
}

/* botocore _header_value: ' '.join(value.split()). */
static void sigv4_add_trimmed(struct strbuf *sb, const char *v)
{
	bool first = true;
	while (*v) {
		while (*v && isspace((unsigned char)*v))
			v++;
		size_t l = 0;
		while (v[l] && !isspace((unsigned char)v[l]))
			l++;
		if (!l)
			break;
		if (!first)
			strbuf_addstr(sb, " ");
		strbuf_add(sb, v, l);
		first = false;
		v += l;
	}
}

struct sigv4_hdr {
	char *lname;
	const char *value;
	size_t order;
};

static int sigv4_hdr_cmp(const void *a, const void *b)
{
	const struct sigv4_hdr *x = a, *y = b;
	int c = strcmp(x->lname, y->lname);
	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

static char *sigv4_lower(const char *s)
{
	char *l = xstrdup(s);
	for (char *p = l; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return l;
}

/* Canonical header block (each line ending '\n') and the signed header
 * list, from the caller's headers plus those sigv4_sign adds. */
static void sigv4_canonical_headers(const struct sigv4_request *req,
				    const struct sigv4_out_header *add, size_t n_add,
				    char **canon, char **signed_list)
{
	size_t n = 0;
	struct sigv4_hdr *h = xcalloc(req->n_headers + n_add + 1, sizeof(*h));
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *name = req->headers[i].name;
		if (sigv4_in_list(name, sigv4_unsigned_headers, ARRAY_SIZE(sigv4_unsigned_headers)) ||
		    sigv4_in_list(name, sigv4_own_headers, ARRAY_SIZE(sigv4_own_headers)))
			continue;
		h[n] = (struct sigv4_hdr){ sigv4_lower(name), req->headers[i].value ?: "", n };
		n++;
	}
	for (size_t i = 0; i < n_add; i++) {
		h[n] = (struct sigv4_hdr){ sigv4_lower(add[i].name), add[i].value, n };
		n++;
	}
	qsort(h, n, sizeof(*h), sigv4_hdr_cmp);
	struct strbuf c = STRBUF_INIT, s = STRBUF_INIT;
	strbuf_add(&c, "", 0);
	strbuf_add(&s, "", 0);
	for (size_t i = 0; i < n; i++) {
		bool same = i && !strcmp(h[i].lname, h[i - 1].lname);
		if (same) {
			strbuf_addstr(&c, ",");
		} else {
			if (i)
				strbuf_addstr(&c, "\n");
			strbuf_addf(&c, "%s:", h[i].lname);
			strbuf_addf(&s, "%s%s", s.len ? ";" : "", h[i].lname);
		}
		sigv4_add_trimmed(&c, h[i].value);
	}
	if (n)
		strbuf_addstr(&c, "\n");
	for (size_t i = 0; i < n; i++)
		free(h[i].lname);
	free(h);
	*canon = strbuf_detach(&c);
	*signed_list = strbuf_detach(&s);
}

static bool sigv4_has_header(const struct sigv4_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (!strcasecmp(req->headers[i].name, name))
			return true;
	return false;
}

static int sigv4_hmac(const void *key, size_t keylen, const char *data, unsigned char out[32],
		      struct af_error **err)
{
	unsigned int len = 32;
	if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data, strlen(data), out, &len))
		return af_error_openssl(err, "sigv4: HMAC-SHA256 failed");
	return 0;
}

/* kSigning = HMAC chain over date, region, service, "aws4_request". */
static int sigv4_signature(const char *secret, const char *date8, const char *region,
			   const char *service, const char *sts, char sig[65],
			   struct af_error **err)
{
	unsigned char k[32], k2[32];
	_cleanup_free_ char *kstart = xasprintf("AWS4%s", secret);
	int r = sigv4_hmac(kstart, strlen(kstart), date8, k, err);
	if (r == 0)
		r = sigv4_hmac(k, 32, region, k2, err);
	if (r == 0)
		r = sigv4_hmac(k2, 32, service, k, err);
	if (r == 0)
		r = sigv4_hmac(k, 32, "aws4_request", k2, err);
	if (r == 0)
		r = sigv4_hmac(k2, 32, sts, k, err);
	if (r == 0)
		hex_encode(k, 32, sig);
	OPENSSL_cleanse(kstart, strlen(kstart));
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(k2, sizeof(k2));
	return r;
}

static int sigv4_check(const struct sigv4_request *req, const struct sigv4_key *key,
		       struct af_error **err)
{
	if (!req->method || !*req->method)
		return af_error_set(err, 0, "sigv4: no HTTP method given");
	if (!req->region || !*req->region)
		return af_error_set(err, 0, "sigv4: no region given (set AWS_REGION or --region)");
	if (!req->service || !*req->service)
		return af_error_set(err, 0, "sigv4: no service name given");
	if (!key || !key->access_key_id || !*key->access_key_id || !key->secret_access_key ||
	    !*key->secret_access_key)
		return af_error_set(err, 0, "sigv4: no access key id or secret access key");
	if (!sigv4_has_header(req, "host"))
		return af_error_set(err, 0, "sigv4: the request has no Host header");
	if (req->amz_date && !sigv4_date_valid(req->amz_date))
		return af_error_set(err, 0, "sigv4: date '%s' is not YYYYMMDDTHHMMSSZ", req->amz_date);
	if (req->payload_hash && strlen(req->payload_hash) != 64)
		return af_error_set(err, 0, "sigv4: payload hash is not 64 hex digits");
	return 0;
}

static void sigv4_push(struct sigv4_result *r, const char *name, const char *value)
{
	r->add[r->n_add].name = xstrdup(name);
	r->add[r->n_add].value = xstrdup(value);
	r->n_add++;
}

int sigv4_sign(const struct sigv4_request *req, const struct sigv4_key *key,
	       struct sigv4_result *out, struct af_error **err)
{
	if (sigv4_check(req, key, err) < 0)
		return -1;
	struct sigv4_result r = { 0 };
	if (req->amz_date)
		memcpy(r.amz_date, req->amz_date, 17);
	else
		sigv4_now(r.amz_date);
	if (req->flags & SIGV4_UNSIGNED_PAYLOAD)
		strcpy(r.payload_hash, UNSIGNED_PAYLOAD);
	else if (req->payload_hash)
		memcpy(r.payload_hash, req->payload_hash, 65);
	else
		sigv4_sha256_hex(req->body ? req->body : "", req->body_len, r.payload_hash);

	sigv4_push(&r, "X-Amz-Date", r.amz_date);
	if (key->session_token && *key->session_token && !(req->flags & SIGV4_TOKEN_UNSIGNED))
		sigv4_push(&r, "X-Amz-Security-Token", key->session_token);
	if (req->flags & (SIGV4_S3 | SIGV4_UNSIGNED_PAYLOAD | SIGV4_CONTENT_SHA256))
		sigv4_push(&r, "X-Amz-Content-SHA256", r.payload_hash);

	_cleanup_free_ char *uri = sigv4_canonical_uri(req->path, req->flags);
	_cleanup_free_ char *query = sigv4_canonical_query(req->query);
	_cleanup_free_ char *headers = NULL;
	sigv4_canonical_headers(req, r.add, r.n_add, &headers, &r.signed_headers);
	r.canonical_request = xasprintf("%s\n%s\n%s\n%s\n%s\n%s", req->method, uri, query, headers,
					r.signed_headers, r.payload_hash);

	char date8[9], creq_hash[65];
	memcpy(date8, r.amz_date, 8);
	date8[8] = '\0';
	r.credential_scope = xasprintf("%s/%s/%s/aws4_request", date8, req->region, req->service);
	sigv4_sha256_hex(r.canonical_request, strlen(r.canonical_request), creq_hash);
	r.string_to_sign = xasprintf(SIGV4_ALGORITHM "\n%s\n%s\n%s", r.amz_date, r.credential_scope,
				     creq_hash);
	char sig[65];
	if (sigv4_signature(key->secret_access_key, date8, req->region, req->service,
			    r.string_to_sign, sig, err) < 0) {
		sigv4_result_release(&r);
		return -1;
	}
	r.signature = xstrdup(sig);
	r.authorization = xasprintf(SIGV4_ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
				    key->access_key_id, r.credential_scope, r.signed_headers, sig);
	sigv4_push(&r, "Authorization", r.authorization);
	*out = r;
	return 0;
}

static void sigv4_free_wiped(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void sigv4_result_release(struct sigv4_result *r)
{
	if (!r)
		return;
	sigv4_free_wiped(r->canonical_request);
	sigv4_free_wiped(r->string_to_sign);
	sigv4_free_wiped(r->authorization);
	sigv4_free_wiped(r->signed_headers);
	sigv4_free_wiped(r->credential_scope);
	sigv4_free_wiped(r->signature);
	for (size_t i = 0; i < r->n_add; i++) {
		sigv4_free_wiped(r->add[i].name);
		sigv4_free_wiped(r->add[i].value);
	}
	memset(r, 0, sizeof(*r));
}
