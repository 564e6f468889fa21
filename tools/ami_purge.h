/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami purge`: what it decides (tools/ami_purge_plan.c, pure, unit
 * tested), what it asks and does in AWS (tools/ami_purge_aws.c), and the
 * command (tools/ami_purge.c).
 *
 * The rules, per region:
 * - The selection: the caller's images whose name matches --name (a glob)
 *   and that carry every --tag K=V (V a glob; K= or K: any value).
 * - An image is included when --expired and its AMI_EXPIRES_TAG or its
 *   deprecation time is past, when --older-than SPAN and it was created
 *   before now - SPAN, or when --keep-newest N and it is not among the N
 *   newest of the selection.
 * - An included image is kept (never deleted) when it is among the N
 *   newest of the selection (--keep-newest: a floor whatever the other
 *   reasons say), when it is in use (an instance not terminated runs it;
 *   the default or latest version of a launch template names it), or while
 *   it is still pending.
 * - --orphan-snapshots: the caller's completed snapshots made for an AMI
 *   (description "Created by CreateImage(i-...) for ami-...", "Copied for
 *   DestinationAmi ami-...", or a tag whose key starts with "amiforge")
 *   that no existing image of the caller maps and whose AMI is gone, when
 *   they started before the --older-than cutoff (default: a day ago, so a
 *   snapshot of a build that is about to register it is never taken). */
#ifndef AMIFORGE_AMI_PURGE_H
#define AMIFORGE_AMI_PURGE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "amiforge/ami.h"
#include "amiforge/when.h"

#define PURGE_ORPHAN_MIN_AGE (24 * 3600)

struct purge_opts {
	bool expired;
	bool have_older;
	struct when_span older;
	const char *older_text;   /* --older-than as given */
	long keep_newest;         /* -1: not given */
	bool orphans;
	const char *name_glob;    /* NULL: any name */
	struct aws_tag *tags;     /* owned array; borrowed strings */
	size_t n_tags;
	bool yes;
	time_t now;
	time_t cutoff;            /* now - older (0 without --older-than) */
};

enum purge_result {
	PURGE_NONE,     /* nothing done (a report, or kept) */
	PURGE_DONE,     /* deleted */
	PURGE_DRY,      /* --dry-run: EC2 would have done it */
	PURGE_FAILED,
};

struct purge_image {
	const struct ec2_image *img; /* borrowed */
	time_t created, expires;     /* expires 0: none */
	char *in_use;                /* what uses it, NULL: nothing */
	char *why_included;          /* NULL: not included */
	char *why_kept;              /* NULL: not kept */
	bool purge;                  /* included and not kept */
	enum purge_result result;
	char *error;
};

struct purge_snap {
	const struct ec2_snapshot *snap; /* borrowed */
	time_t started;
	char *ami;                   /* the AMI it was made for, NULL: unknown */
	char *why_included, *why_kept;
	bool purge;
	enum purge_result result;
	char *error;
};

/* ---- pure decisions (ami_purge_plan.c) ---- */

/* An EC2 time ("2026-12-06T11:23:03.000Z", "2026-12-06T11:23:03Z",
 * "2026-12-06"): 0, or -1 when TEXT is none of these. */
int purge_parse_time(const char *text, time_t *out);
/* NOW - SPAN, calendar months back with the day clamped to the month's. */
time_t purge_cutoff(time_t now, const struct when_span *span);
/* Whether IMG is in the selection (--name, --tag). */
bool purge_image_selected(const struct ec2_image *img, const struct purge_opts *o);
/* Fills P from IMG (times); the rest zero. */
void purge_image_init(struct purge_image *p, const struct ec2_image *img);
void purge_image_release(struct purge_image *p);
/* Decides every image of one region's selection (V, N; in_use already
 * set): why_included, why_kept, purge. */
void purge_decide_images(struct purge_image *v, size_t n, const struct purge_opts *o);

/* The AMI snapshot S was made for (tag amiforge:image, else its
 * description), or NULL; caller frees. */
char *purge_snapshot_ami(const struct ec2_snapshot *s);
/* Whether S is an orphan candidate (made for an AMI or tagged by amiforge,
 * completed, mapped by none of ALL, its AMI not in ALL): then fills P
 * (owned strings) with why it is included or kept and returns true. */
bool purge_decide_snapshot(const struct ec2_snapshot *s, const struct ec2_image_list *all,
			   const struct purge_opts *o, struct purge_snap *p);
void purge_snap_release(struct purge_snap *p);

/* ---- AWS (ami_purge_aws.c) ---- */

/* One region's findings and results. */
struct purge_region {
	char *region;
	struct ec2_image_list images;     /* every image of the caller */
	struct ec2_snapshot_list snaps;   /* the caller's, with --orphan-snapshots */
	struct purge_image *v;            /* the selection */
	size_t n;
	struct purge_snap *s;             /* orphan candidates */
	size_t n_s;
	char *error;                      /* the scan failed: nothing done here */
	int exit_code;                    /* of that failure */
};
void purge_region_release(struct purge_region *r);

/* Lists R's images (and snapshots), finds what uses them and decides.
 * 0, or -1 + err (then nothing may be deleted in R). */
int purge_scan(const struct ec2_client *ec2, const struct purge_opts *o, struct purge_region *r,
	       struct af_error **err);
/* Deletes what R decided (logging each decision on stderr first); each
 * result in place.  Returns how many failed. */
size_t purge_apply(const struct ec2_client *ec2, const struct purge_opts *o, bool dry_run,
		   struct purge_region *r);

#endif
