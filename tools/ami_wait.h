/* SPDX-License-Identifier: Apache-2.0 */
/* What `ami create` and `ami copy` share (tools/ami_wait.c): waiting for
 * AMIs to become available, copying into a region with a ClientToken,
 * tagging an image's snapshots, and the option forms they both take. */
#ifndef AMIFORGE_TOOLS_AMI_WAIT_H
#define AMIFORGE_TOOLS_AMI_WAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "amiforge/ami.h"

struct af_error;

/* The tags amiforge reads back: the instance an image was made from (so
 * that a CreateImage retried after a lost answer adopts its own image). */
#define AMI_FROM_INSTANCE_TAG "amiforge:source-instance"

/* --wait's default when something must wait without it (a copy needs its
 * source available). */
#define AMI_WAIT_DEFAULT_SECS (2 * 3600)

struct ami_wait_item {
	const struct ec2_client *ec2;   /* borrowed: the AMI's region */
	const char *image_id;           /* borrowed */
	struct ec2_image_list img;      /* out: the image once available (1 entry) */
	char state[40];                 /* the last state seen */
	bool done;
};

/* Polls every AMI in V (N) until it is available, with a capped backoff
 * (1 s doubling to 15 s) and a progress line on stderr per round, for at
 * most TIMEOUT seconds.  0: all available, each v[i].img filled.  -1 +
 * err naming every AMI still pending (or failed) and its region; those
 * that became available keep their img.  Release with ami_wait_release. */
int ami_wait_available(struct ami_wait_item *v, size_t n, double timeout, struct af_error **err);
void ami_wait_release(struct ami_wait_item *v, size_t n);

/* --wait TIMEOUT: a span as when.h reads it (90s, 30m, 2h; not months).
 * 0 or -1 + err. */
int ami_parse_timeout(const char *text, double *out, struct af_error **err);

/* "K=V" into TAG (borrowing from TEXT, which is modified).  0 or -1. */
int ami_split_pair(char *text, const char **key, const char **value);

/* The value given for REGION among "REGION=VALUE" options V (N), or NULL. */
const char *ami_region_value(char *const *v, size_t n, const char *region);

/* IMG's user tags (aws: ones left out), borrowed from IMG: owned array,
 * *n of them. */
struct aws_tag *ami_user_tags(const struct ec2_image *img, size_t *n);

/* Tags IMG's snapshots with TAGS (nothing when it has none or N is 0). */
int ami_tag_snapshots(const struct ec2_client *ec2, const struct ec2_image *img,
		      const struct aws_tag *tags, size_t n, struct af_error **err);

/* "2026-12-31T10:00:00Z" / "...00.000Z" -> seconds; 0 when unreadable. */
time_t ami_parse_iso(const char *s);

/* The expiry an image carries: its AMI_EXPIRES_TAG, else its deprecation
 * time; 0 for none. */
time_t ami_image_expiry(const struct ec2_image *img);

/* One DescribeImages of ID in EC2's region: 0 and *out (one image), or -1 +
 * err naming the AMI and region. */
int ami_describe_one(const struct ec2_client *ec2, const char *id, struct ec2_image_list *out,
		     struct af_error **err);

/* A CopyImage into DST's region. */
struct ami_copy_req {
	const char *src_region, *src_id, *name, *description;
	const char *kms_key;            /* NULL: none */
	bool encrypted;
	const struct aws_tag *tags;     /* on the copy, at creation */
	size_t n_tags;
	bool dry_run;                   /* EC2's DryRun: *id stays NULL */
};
/* Starts the copy with a ClientToken derived from the source, the
 * destination region and the name, so that a retried (or re-run) copy
 * answers with the same AMI.  0 and *id, or -1 + err naming source and
 * destination. */
int ami_copy_start(const struct ec2_client *dst, const struct ami_copy_req *r, char **id,
		   struct af_error **err);

/* ACTION with P plus DryRun=true: 0 when EC2 answers DryRunOperation (it
 * would succeed), else -1 + err. */
int ami_dry_run_call(const struct ec2_client *ec2, const char *action, struct ec2_params *p,
		     struct af_error **err);

/* Sets the deprecation time of ID to WHEN (nothing when 0; a warning when
 * it has passed).  0 or -1 + err. */
int ami_deprecate(const struct ec2_client *ec2, const char *id, time_t when, struct af_error **err);

/* Prints ERR as "amiforge ami SUB: MESSAGE" on stderr (secrets redacted)
 * and frees it; returns its exit code (ami_exit_code). */
int ami_report(const char *sub, struct af_error *err);

#endif
