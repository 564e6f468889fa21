/* SPDX-License-Identifier: Apache-2.0 */
/* The EC2 instance metadata service client (reference/FORMATS.md §5):
 * IMDSv2 first (PUT /latest/api/token, then GETs with the token), falling
 * back to IMDSv1 when the token PUT answers 403/404/405 (botocore's
 * IMDSFetcher) or fails, with short timeouts so that a build off EC2 does
 * not wait.  The token is cached and refreshed before it expires, and once
 * on a 401.
 *
 * Environment (as the AWS SDKs): AWS_EC2_METADATA_SERVICE_ENDPOINT
 * (default http://169.254.169.254), AWS_EC2_METADATA_DISABLED=true,
 * AWS_METADATA_SERVICE_TIMEOUT (seconds, default 1),
 * AWS_METADATA_SERVICE_NUM_ATTEMPTS (default 1).
 *
 * Thread-safe.  Plug into the credential chain with imds_client_iface():
 *   struct aws_creds_opts o = { .imds = imds_client_iface(cl) }; */
#ifndef AMIFORGE_AWS_IMDS_H
#define AMIFORGE_AWS_IMDS_H

#include <stdbool.h>

struct af_error;
struct aws_creds;
struct aws_imds;

struct imds_client;

/* endpoint: NULL for the environment / default.  Never fails; free with
 * imds_client_free (NULL-safe). */
struct imds_client *imds_client_new(const char *endpoint);
void imds_client_free(struct imds_client *cl);

/* The client as the credential chain's IMDS interface (creds.h); borrowed,
 * valid while CL lives. */
const struct aws_imds *imds_client_iface(struct imds_client *cl);

/* GET /latest/PATH ("meta-data/instance-id").  0 and *body (caller frees),
 * 1 when IMDS is disabled, unreachable or has no such path (404), -1 + err
 * on any other failure. */
int imds_get(struct imds_client *cl, const char *path, char **body, struct af_error **err);

/* Convenience lookups with the same return convention. */
int imds_region(struct imds_client *cl, char **region, struct af_error **err);
int imds_instance_id(struct imds_client *cl, char **id, struct af_error **err);
/* The first role of iam/security-credentials/ and its credentials (with
 * expiration).  0 and *out filled (caller releases), 1 when no role is
 * attached or IMDS is unavailable, -1 + err (a bad document). */
int imds_role_credentials(struct imds_client *cl, struct aws_creds *out, struct af_error **err);

/* Parses a role credential document (exposed for tests).  0 or -1 + err. */
int imds_parse_credentials(const char *json, const char *role, struct aws_creds *out,
			   struct af_error **err);

/* True when the last lookups went through IMDSv1 (no token). */
bool imds_client_used_v1(struct imds_client *cl);

#endif
