/* SPDX-License-Identifier: Apache-2.0 */
/* Where AWS settings come from (DESIGN §8, reference/FORMATS.md §5): the
 * profile and its files, the region, the endpoints.  The credential chain
 * (creds.h) reads its profile step through here.
 *
 * profile:     opts->profile, else AWS_PROFILE, else AWS_DEFAULT_PROFILE,
 *              else "default".
 * files:       the shared credentials file (AWS_SHARED_CREDENTIALS_FILE,
 *              else ~/.aws/credentials), section [NAME]; the config file
 *              (AWS_CONFIG_FILE, else ~/.aws/config), section
 *              [profile NAME] ([default] for "default").  INI as the AWS
 *              CLI writes it: '#' and ';' comment lines, "key = value",
 *              indented lines are sub-properties of the key above them
 *              ("s3 =\n  addressing_style = path") and never match a key.
 * region:      recipe value, AWS_REGION, AWS_DEFAULT_REGION, `region` of the
 *              profile in the config file, IMDS placement/region.
 * endpoints:   AWS_ENDPOINT_URL_<SERVICE> (EC2, EBS, S3), AWS_ENDPOINT_URL,
 *              else the regional default https://SERVICE.REGION.amazonaws.com
 *              (.com.cn for cn-* regions).
 *
 * The environment and the files are read at each call.  Nothing here logs:
 * a credentials file's text may hold secrets and is wiped when released. */
#ifndef AMIFORGE_AWS_AWSCONFIG_H
#define AMIFORGE_AWS_AWSCONFIG_H

#include <stdbool.h>

struct af_error;
struct imds_iface;

/* Where to look, for credentials (creds.h) and the region. */
struct aws_creds_opts {
	const char *profile;            /* NULL: AWS_PROFILE, AWS_DEFAULT_PROFILE, "default" */
	const struct imds_iface *imds;  /* NULL: imds_client_default() */
	bool no_imds;                   /* never consult the instance metadata service */
};

/* The profile name (see above).  *from (not NULL) is set to what chose it:
 * "option", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", or NULL for the default.
 * Borrowed from OPTS or the environment. */
const char *aws_profile_name(const struct aws_creds_opts *opts, const char **from);

enum aws_profile_file_kind {
	AWS_PROFILE_CREDENTIALS, /* the shared credentials file, [NAME] */
	AWS_PROFILE_CONFIG,      /* the config file, [profile NAME] / [default] */
};

/* One of the two files, as it concerns one profile. */
struct aws_profile_file {
	char *path;        /* owned */
	char *text;        /* owned, wiped on release; NULL when the file does not exist */
	char *section;     /* owned: the profile's section name in this file */
	bool has_section;  /* the file has that section */
};

/* Loads the file of KIND for PROFILE into *f (overwritten).  0 also when
 * the file does not exist (f->text NULL); -1 + err when it exists but
 * cannot be read (f->text NULL, the rest set).  Release with
 * aws_profile_file_release in both cases. */
int aws_profile_file_load(struct aws_profile_file *f, enum aws_profile_file_kind kind,
			  const char *profile, struct af_error **err);
void aws_profile_file_release(struct aws_profile_file *f);
/* KEY in the profile's section, or NULL (caller frees; wipe it if secret). */
char *aws_profile_file_get(const struct aws_profile_file *f, const char *key);

/* Looks up KEY in section SECTION ("dev", "profile dev") of INI TEXT.
 * Returns the value trimmed (caller frees) or NULL; *has_section (may be
 * NULL) is set true when the section exists, untouched otherwise. */
char *aws_ini_get(const char *text, const char *section, const char *key, bool *has_section);

/* Region: recipe_region (may be NULL), AWS_REGION, AWS_DEFAULT_REGION, the
 * profile's `region` in the config file, IMDS (unless opts->no_imds).
 * 0 and *region (caller frees) [+ *source, static string, if source is not
 * NULL: "recipe", "AWS_REGION", "AWS_DEFAULT_REGION", "profile",
 * "instance metadata"], or -1 + err listing where it looked. */
int aws_region_resolve(const char *recipe_region, const struct aws_creds_opts *opts,
		       char **region, const char **source, struct af_error **err);

/* Base URL for SERVICE ("ec2", "ebs", "s3"; lower case) in REGION, without a
 * trailing slash: AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, else the
 * regional default.  *custom (may be NULL) is set true when it came from the
 * environment (S3 then uses path-style addressing).  Caller frees. */
char *aws_endpoint_url(const char *service, const char *region, bool *custom);

/* Infers the signing service and region from an AWS host name:
 * "ec2.eu-west-1.amazonaws.com" -> ec2, eu-west-1; "s3.amazonaws.com" ->
 * s3, us-east-1; "bucket.s3.us-east-2.amazonaws.com" -> s3, us-east-2;
 * "ebs.eu-central-1.amazonaws.com" -> ebs, eu-central-1.  Returns 0 and
 * sets both (caller frees), or -1 (no error object) when HOST is not an AWS
 * endpoint or does not name them. */
int aws_host_infer(const char *host, char **service, char **region);

#endif
