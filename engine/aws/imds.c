/* SPDX-License-Identifier: Apache-2.0 */
/* The instance metadata client (include/amiforge/aws/imds.h has the contract). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "amiforge/aws/http.h"
#include "amiforge/aws/imds.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#define IMDS_DEFAULT_ENDPOINT "http://169.254.169.254"
#define IMDS_TOKEN_TTL 21600
/* AWS_METADATA_SERVICE_TIMEOUT above this is taken as a typo. */
#define IMDS_MAX_TIMEOUT_SECS 3600.0

enum imds_mode { IMDS_MODE_UNKNOWN, IMDS_MODE_V2, IMDS_MODE_V1 };

struct imds_client {
	pthread_mutex_t lock;
	char *endpoint;          /* NULL: read the environment at each call */
	struct imds_iface iface; /* set once, read without the lock */
	enum imds_mode mode;
	char *token;             /* a secret of sorts: never logged */
	double token_expiry;     /* monotonic */
};

static int imds_iface_get(void *data, const char *path, char **body, struct af_error **err)
{
	return imds_get(data, path, body, err);
}

static char *imds_iface_where(void *data)
{
	return imds_client_endpoint(data);
}

struct imds_client *imds_client_new(const char *endpoint)
{
	struct imds_client *cl = xcalloc(1, sizeof(*cl));
	pthread_mutex_init(&cl->lock, NULL);
	cl->endpoint = endpoint ? xstrdup(endpoint) : NULL;
	cl->iface = (struct imds_iface){
		.get = imds_iface_get, .where = imds_iface_where, .data = cl,
	};
	return cl;
}

void imds_client_free(struct imds_client *cl)
{
	if (!cl)
		return;
	pthread_mutex_destroy(&cl->lock);
	free(cl->endpoint);
	free(cl->token);
	free(cl);
}

static pthread_once_t imds_default_once = PTHREAD_ONCE_INIT;
static struct imds_client *imds_default;

static void imds_default_init(void)
{
	imds_default = imds_client_new(NULL);
}

struct imds_client *imds_client_default(void)
{
	pthread_once(&imds_default_once, imds_default_init);
	return imds_default;
}

const struct imds_iface *imds_client_iface(struct imds_client *cl)
{
	return &cl->iface;
}

const struct imds_iface *imds_iface_or_default(const struct imds_iface *iface)
{
	return iface ? iface : imds_client_iface(imds_client_default());
}

char *imds_client_endpoint(const struct imds_client *cl)
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

/* AWS_METADATA_SERVICE_TIMEOUT in milliseconds: seconds, fractions allowed
 * (botocore reads a float); anything else is the default second. */
static long imds_timeout_ms(void)
{
	const char *v = getenv("AWS_METADATA_SERVICE_TIMEOUT");
	char *end = NULL;
	double s = v && *v ? strtod(v, &end) : 1.0;
	if (v && *v && (end == v || !isfinite(s) || s <= 0 || s > IMDS_MAX_TIMEOUT_SECS))
		s = 1.0;
	long ms = (long)(s * 1000);
	return ms > 0 ? ms : 1;
}

/* Short: off EC2 the address does not answer, and we must not wait. */
static void imds_options(struct http_options *o)
{
	long t = imds_timeout_ms();
	long attempts = imds_env_long("AWS_METADATA_SERVICE_NUM_ATTEMPTS", 1, 1, 10);
	*o = HTTP_OPTIONS_DEFAULT;
	o->connect_timeout_ms = t;
	o->attempt_timeout_ms = 2 * t;
	o->total_timeout_ms = attempts * 4 * t;
	o->max_attempts = (int)attempts;
	o->backoff_base_ms = 100;
	o->backoff_cap_ms = 1000;
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
	_cleanup_free_ char *base = imds_client_endpoint(cl);
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
		/* 403: IMDS is turned off for this instance; 404: no such item. */
		if (status == 0 || status == 403 || status == 404) {
			rc = 1;
			break;
		}
		rc = af_error_set(err, 0, "instance metadata %s at %s: HTTP %ld", path, base, status);
		break;
	}
	pthread_mutex_unlock(&cl->lock);
	return rc;
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
