/* SPDX-License-Identifier: Apache-2.0 */
/* The instance metadata client (include/amiforge/aws/imds.h has the contract). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <jansson.h>

#include "amiforge/aws/creds.h"
#include "amiforge/aws/http.h"
#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"
#define IMDS_TOKEN_TTL 21600

enum imds_mode { IMDS_MODE_UNKNOWN, IMDS_MODE_V2, IMDS_MODE_V1 };

struct imds_client {
	pthread_mutex_t lock;
	char *endpoint;          /* NULL: read the environment at each call */
	struct aws_imds iface;
	char *describe;
	enum imds_mode mode;
	char *token;             /* a secret of sorts: never logged */
	double token_expiry;     /* monotonic */
};

struct imds_client *imds_client_new(const char *endpoint)
{
	struct imds_client *cl = xcalloc(1, sizeof(*cl));
	pthread_mutex_init(&cl->lock, NULL);
	cl->endpoint = endpoint ? xstrdup(endpoint) : NULL;
	return cl;
}

void imds_client_free(struct imds_client *cl)
{
	if (!cl)
		return;
	pthread_mutex_destroy(&cl->lock);
	free(cl->endpoint);
	free(cl->describe);
	free(cl->token);
	free(cl);
}

static char *imds_endpoint(const struct imds_client *cl)
{
	const char *e = cl->endpoint ? cl->endpoint : getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	if (!e || !*e)
		e = IMDS_DEFAULT_ENDPOINT;
	size_t n = strlen(e);
	while (n > 0 && e[n - 1] == '/')
		n--;
	return xstrndup(e, n);
}

static bool imds_disabled(void)
{
	const char *d = getenv("AWS_EC2_METADATA_DISABLED");
	return d && strcasecmp(d, "true") == 0;
}

static long imds_env_long(const char *name, long def, long lo, long hi)
{
	const char *v = getenv(name);
	char *end = NULL;
	long x = v && *v ? strtol(v, &end, 10) : def;
	if (v && *v && (*end || x < lo || x > hi))
		return def;
	return x;
}

/* Short: off EC2 the address does not answer, and we must not wait. */
static void imds_options(struct http_options *o)
{
	long secs = imds_env_long("AWS_METADATA_SERVICE_TIMEOUT", 1, 1, 60);
	long attempts = imds_env_long("AWS_METADATA_SERVICE_NUM_ATTEMPTS", 1, 1, 10);
	*o = HTTP_OPTIONS_DEFAULT;
	o->connect_timeout_ms = secs * 1000;
	o->attempt_timeout_ms = secs * 1000;
	o->low_speed_secs = secs;
	o->max_attempts = (int)attempts;
	o->backoff_base_ms = 100;
	o->backoff_cap_ms = 1000;
	o->total_timeout_ms = attempts * (secs * 1000 + 1000);
	o->max_body = 1 << 20;
}

/* One unsigned request.  Returns the HTTP status (0: no answer arrived) and
 * sets *body on 200. */
static long imds_send(const char *method, const char *url, const struct sigv4_header *h,
		      size_t n_h, char **body)
{
	struct http_options o;
	imds_options(&o);
	const struct http_request req = {
		.action = "instance metadata", .method = method, .url = url, .headers = h,
		.n_headers = n_h, .opts = &o,
	};
	struct http_response resp;
	_cleanup_error_ struct af_error *e = NULL;
	int rc = http_request_do(&req, &resp, &e);
	long status = resp.status;
	if (rc == 0 && body) {
		*body = steal_pointer(&resp.body);
		resp.body_len = 0;
	}
	http_response_release(&resp);
	return rc == 0 ? 200 : status;
}

/* With the lock held: makes sure a token is cached, or learns that this
 * IMDS only speaks v1.  0, 1 (unreachable), -1 + err. */
static int imds_ensure_token(struct imds_client *cl, const char *base, struct af_error **err)
{
	if (cl->mode == IMDS_MODE_V1 || (cl->token && now_monotonic() < cl->token_expiry))
		return 0;
	_cleanup_free_ char *url = xasprintf("%s/latest/api/token", base);
	char ttl[16];
	snprintf(ttl, sizeof(ttl), "%d", IMDS_TOKEN_TTL);
	const struct sigv4_header h[] = { { "X-aws-ec2-metadata-token-ttl-seconds", ttl } };
	char *token = NULL;
	long status = imds_send("PUT", url, h, 1, &token);
	free(cl->token);
	cl->token = NULL;
	switch (status) {
	case 200:
		cl->token = token;
		cl->token_expiry = now_monotonic() + IMDS_TOKEN_TTL - 60;
		cl->mode = IMDS_MODE_V2;
		return 0;
	case 0:
		return 1;
	case 403: case 404: case 405:
		/* an IMDS without v2 (or v2 token endpoint refused): v1 */
		cl->mode = IMDS_MODE_V1;
		return 0;
	default:
		return af_error_set(err, 0, "instance metadata at %s: the token request answered "
				    "HTTP %ld", base, status);
	}
}

int imds_get(struct imds_client *cl, const char *path, char **body, struct af_error **err)
{
	if (imds_disabled())
		return 1;
	_cleanup_free_ char *base = imds_endpoint(cl);
	_cleanup_free_ char *url = xasprintf("%s/latest/%s", base, path);
	pthread_mutex_lock(&cl->lock);
	int rc = 1;
	for (int attempt = 0; attempt < 2; attempt++) {
		rc = imds_ensure_token(cl, base, err);
		if (rc != 0)
			break;
		struct sigv4_header h[] = { { "X-aws-ec2-metadata-token", cl->token } };
		long status = imds_send("GET", url, h, cl->mode == IMDS_MODE_V2 ? 1 : 0, body);
		if (status == 200) {
			rc = 0;
			break;
		}
		if (status == 401 && cl->mode == IMDS_MODE_V2 && attempt == 0) {
			/* the token expired or the service restarted: one new token */
			free(cl->token);
			cl->token = NULL;
			continue;
		}
		if (status == 0 || status == 404) {
			rc = 1;
			break;
		}
		rc = af_error_set(err, 0, "instance metadata %s at %s: HTTP %ld", path, base, status);
		break;
	}
	pthread_mutex_unlock(&cl->lock);
	return rc;
}

static int imds_iface_get(void *data, const char *path, char **body, struct af_error **err)
{
	return imds_get(data, path, body, err);
}

const struct aws_imds *imds_client_iface(struct imds_client *cl)
{
	pthread_mutex_lock(&cl->lock);
	free(cl->describe);
	cl->describe = imds_endpoint(cl);
	cl->iface = (struct aws_imds){ .get = imds_iface_get, .data = cl,
				       .describe = cl->describe };
	pthread_mutex_unlock(&cl->lock);
	return &cl->iface;
}

bool imds_client_used_v1(struct imds_client *cl)
{
	pthread_mutex_lock(&cl->lock);
	bool v1 = cl->mode == IMDS_MODE_V1;
	pthread_mutex_unlock(&cl->lock);
	return v1;
}

/* Trims trailing white space in place. */
static char *imds_trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
	return s;
}

static int imds_get_line(struct imds_client *cl, const char *path, char **out,
			 struct af_error **err)
{
	char *body = NULL;
	int rc = imds_get(cl, path, &body, err);
	if (rc != 0)
		return rc;
	imds_trim(body);
	if (!*body) {
		free(body);
		return af_error_set(err, 0, "instance metadata %s: empty answer", path);
	}
	*out = body;
	return 0;
}

int imds_region(struct imds_client *cl, char **region, struct af_error **err)
{
	return imds_get_line(cl, "meta-data/placement/region", region, err);
}

int imds_instance_id(struct imds_client *cl, char **id, struct af_error **err)
{
	return imds_get_line(cl, "meta-data/instance-id", id, err);
}

int imds_parse_credentials(const char *text, const char *role, struct aws_creds *out,
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
	if (code && strcmp(code, "Success") != 0)
		return af_error_set(err, 0, "instance metadata role '%s': Code is '%s', not Success",
				    role, code);
	if (!akid || !secret)
		return af_error_set(err, 0, "instance metadata role '%s': AccessKeyId or "
				    "SecretAccessKey missing", role);
	time_t expiration = 0;
	if (exp) {
		struct tm tm = { 0 };
		const char *end = strptime(exp, "%Y-%m-%dT%H:%M:%S", &tm);
		if (!end || (*end && *end != 'Z' && *end != '.' && *end != '+'))
			return af_error_set(err, 0, "instance metadata role '%s': Expiration '%s' is "
					    "not an ISO 8601 time", role, exp);
		expiration = timegm(&tm);
	}
	memset(out, 0, sizeof(*out));
	out->access_key_id = xstrdup(akid);
	out->secret_access_key = xstrdup(secret);
	out->session_token = token ? xstrdup(token) : NULL;
	out->expiration = expiration;
	out->source = xasprintf("instance metadata role '%s'", role);
	return 0;
}

int imds_role_credentials(struct imds_client *cl, struct aws_creds *out, struct af_error **err)
{
	_cleanup_free_ char *roles = NULL;
	int rc = imds_get(cl, "meta-data/iam/security-credentials/", &roles, err);
	if (rc != 0)
		return rc;
	roles[strcspn(roles, "\r\n")] = '\0';
	if (!*roles)
		return 1;
	_cleanup_free_ char *path = xasprintf("meta-data/iam/security-credentials/%s", roles);
	_cleanup_free_ char *doc = NULL;
	rc = imds_get(cl, path, &doc, err);
	if (rc != 0)
		return rc;
	return imds_parse_credentials(doc, roles, out, err) < 0 ? -1 : 0;
}
