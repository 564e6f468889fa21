/* SPDX-License-Identifier: Apache-2.0 */
/* The EC2 instance metadata service client (reference/FORMATS.md §5), the
 * engine's only one: the credential chain (creds.h) and region resolution
 * (awsconfig.h) use the process-wide imds_client_default() unless given
 * another source.
 *
 * IMDSv2 first (PUT /latest/api/token, then GETs with the token), falling
 * back to IMDSv1 when the token PUT answers 403/404/405 (botocore's
 * IMDSFetcher), with short timeouts so that a build off EC2 does not wait.
 * The token is cached and refreshed before it expires, and once on a 401.
 *
 * Environment (as the AWS SDKs), read at each call:
 *   AWS_EC2_METADATA_SERVICE_ENDPOINT  default http://169.254.169.254
 *   AWS_EC2_METADATA_DISABLED=true     every lookup answers "not available"
 *   AWS_METADATA_SERVICE_TIMEOUT       seconds, fractions allowed, default 1:
 *                                      connect within it, each request
 *                                      within twice it, all attempts of one
 *                                      request within four times it each
 *   AWS_METADATA_SERVICE_NUM_ATTEMPTS  default 1
 *
 * Thread-safe: a client serialises its lookups (they share the token). */
#ifndef AMIFORGE_AWS_IMDS_H
#define AMIFORGE_AWS_IMDS_H

#include <stdbool.h>

struct af_error;

struct imds_client;

/* endpoint: NULL for the environment / default.  Never fails; free with
 * imds_client_free (NULL-safe). */
struct imds_client *imds_client_new(const char *endpoint);
void imds_client_free(struct imds_client *cl);

/* The process-wide client (endpoint from the environment), created on first
 * use (thread-safe), never freed.  Its token cache serves every lookup of
 * the process. */
struct imds_client *imds_client_default(void);

/* GET /latest/PATH ("meta-data/instance-id").  0 and *body (caller frees),
 * 1 when IMDS is disabled, unreachable, turned off for this instance (403)
 * or has no such path (404), -1 + err on any other failure. */
int imds_get(struct imds_client *cl, const char *path, char **body, struct af_error **err);

/* Convenience lookups with the same return convention (an empty answer is
 * an error). */
int imds_region(struct imds_client *cl, char **region, struct af_error **err);
int imds_instance_id(struct imds_client *cl, char **id, struct af_error **err);

/* The base URL CL uses now, without a trailing slash ("http://169.254.169.254").
 * Caller frees. */
char *imds_client_endpoint(const struct imds_client *cl);

/* True when the last lookups went through IMDSv1 (no token). */
bool imds_client_used_v1(struct imds_client *cl);

/* An IMDS as the credential chain and region resolution see it, so that a
 * test fake can stand in for a client.
 * get:   as imds_get (0, 1 not available, -1 + err).
 * where: where it is, for messages ("http://169.254.169.254"); caller frees. */
struct imds_iface {
	int (*get)(void *data, const char *path, char **body, struct af_error **err);
	char *(*where)(void *data);
	void *data;
};

/* CL as an imds_iface; borrowed, valid while CL lives. */
const struct imds_iface *imds_client_iface(struct imds_client *cl);

/* IFACE, or the default client's when IFACE is NULL. */
const struct imds_iface *imds_iface_or_default(const struct imds_iface *iface);

#endif
