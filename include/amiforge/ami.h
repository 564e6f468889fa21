/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami ...`: AMIs after the build (tools/ami*.c), on the same AWS
 * layer, credential chain and endpoints as the stages.
 *
 * tools/ami.c dispatches to one file per subcommand (ami_NAME.c with
 * ami_NAME_main); what they share is here (tools/ami_common.c): the
 * options every subcommand takes, a session and EC2 client per region,
 * the expiry forms, and output.
 *
 * Conventions every subcommand keeps:
 * - Options: AMI_COMMON_LONGOPTS in its getopt_long table, parsed by
 *   ami_parse_options(); --help prints its usage.
 * - --json: one JSON document on stdout (an object, or an array for
 *   lists); otherwise human lines/tables on stdout; warnings, progress and
 *   errors on stderr.
 * - --dry-run on mutating commands: EC2's DryRun where the action has it,
 *   else a printed plan; nothing changes.
 * - Exit codes (exitcodes.h): 0 ok; 1 a call failed (every failed
 *   resource named; the others still done); 2 usage; 69 AWS unreachable;
 *   77 AWS refused the credentials' permission (UnauthorizedOperation,
 *   AccessDenied). */
#ifndef AMIFORGE_AMI_H
#define AMIFORGE_AMI_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "amiforge/aws/ec2.h"
#include "amiforge/aws/request.h"

struct af_error;

/* The tag amiforge writes an expiry into (and the register stage too). */
#define AMI_EXPIRES_TAG "amiforge:expires"

int ami_main(int argc, char **argv);

/* Subcommands (tools/ami_NAME.c).  ARGV[0] is the subcommand's name. */
int ami_list_main(int argc, char **argv);
int ami_share_main(int argc, char **argv);
int ami_expire_main(int argc, char **argv);
int ami_deregister_main(int argc, char **argv);
int ami_purge_main(int argc, char **argv);
int ami_create_main(int argc, char **argv);
int ami_copy_main(int argc, char **argv);
int ami_convert_main(int argc, char **argv);

/* ---- options every subcommand takes ---- */

struct ami_common {
	const char *profile;   /* --profile */
	const char **regions;  /* --region R (repeatable; owned array, borrowed strings) */
	size_t n_regions;
	bool all_regions;      /* --all-regions */
	bool json;             /* --json */
	bool dry_run;          /* --dry-run */
};

enum {
	AMI_OPT_PROFILE = 1000,
	AMI_OPT_REGION,
	AMI_OPT_ALL_REGIONS,
	AMI_OPT_JSON,
	AMI_OPT_DRY_RUN,
	AMI_OPT_FIRST_OWN = 1100, /* a subcommand's own option values start here */
};

#define AMI_COMMON_LONGOPTS                                                   \
	{ "profile", required_argument, NULL, AMI_OPT_PROFILE },              \
	{ "region", required_argument, NULL, AMI_OPT_REGION },                \
	{ "all-regions", no_argument, NULL, AMI_OPT_ALL_REGIONS },            \
	{ "json", no_argument, NULL, AMI_OPT_JSON },                          \
	{ "dry-run", no_argument, NULL, AMI_OPT_DRY_RUN },                    \
	{ "help", no_argument, NULL, 'h' }

/* Takes option OPT (with ARG) if it is a common one: 1 taken, 0 not. */
int ami_common_option(struct ami_common *c, int opt, const char *arg);
void ami_common_release(struct ami_common *c);

/* A subcommand's own option OPT (with VAL, NULL for none; getopt's '?'
 * for an unknown one) into ARG: 0, or an exit code after saying why. */
typedef int ami_own_option_fn(void *arg, int opt, char *val);

/* ami_parse_options() after --help. */
#define AMI_PARSE_HELP (-1)

/* The getopt loop every subcommand runs: LONGOPTS (with
 * AMI_COMMON_LONGOPTS) over ARGV; the common options into *C, the others
 * to OWN(ARG, ...); --help prints USAGE on stdout.  Returns 0 with *FIRST
 * the index of the first operand, AMI_PARSE_HELP after --help, or OWN's
 * exit code. */
int ami_parse_options(int argc, char **argv, const struct option *longopts, const char *usage,
		      struct ami_common *c, ami_own_option_fn *own, void *arg, int *first);

/* Prints "amiforge ami SUB: MESSAGE" and USAGE on stderr; returns
 * EXIT_USAGE. */
int ami_usage_error(const char *sub, const char *usage, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- AWS, one region at a time ---- */

struct ami_region {
	struct aws_session aws;
	struct ec2_client ec2;
};

/* A session in REGION (NULL: --region's first, else the chain's default)
 * with --profile's credentials, and its EC2 client.  0 or -1 + err. */
int ami_region_open(const struct ami_common *c, const char *region, struct ami_region *out,
		    struct af_error **err);
void ami_region_close(struct ami_region *r);

/* The regions a listing covers: --region..., every region the account has
 * (--all-regions: DescribeRegions), else the default one.  *out: owned
 * strings in an owned array.  0 or -1 + err. */
int ami_regions(const struct ami_common *c, char ***out, size_t *n, struct af_error **err);
void ami_regions_free(char **v, size_t n);

/* The exit code for a failure ERR (see the top). */
int ami_exit_code(const struct af_error *err);

/* ---- expiry ---- */

/* --expire-after SPAN or --expires DATE (when.h's forms; at most one of
 * them, else -1 + err): *out the time, from BASE for a span; 0 when
 * neither is given (*out = 0). */
int ami_expiry_parse(const char *after, const char *at, time_t base, time_t *out,
		     struct af_error **err);

/* Sets image IMAGE_ID's expiry to WHEN (0: clears it): the AMI_EXPIRES_TAG
 * tag on the image and on SNAPSHOTS (N of them), and the image's
 * deprecation time (EnableImageDeprecation; DisableImageDeprecation to
 * clear).  0 or -1 + err. */
int ami_expiry_apply(const struct ec2_client *ec2, const char *image_id, const char *const *snapshots,
		     size_t n, time_t when, bool dry_run, struct af_error **err);

#endif
