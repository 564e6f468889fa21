/* SPDX-License-Identifier: Apache-2.0 */
/* Making an instance-store bundle from a raw image (bundle_create.c): the
 * format is in bundle_format.h. */
#ifndef AMIFORGE_BUNDLE_CREATE_H
#define AMIFORGE_BUNDLE_CREATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amiforge/bundle_format.h"

struct bundle_opts {
	const char *image;        /* raw image file (or block device) */
	const char *name;         /* tar member and file names */
	const char *dir;          /* output directory: NAME.part.* and NAME.manifest.xml */
	const char *user_cert;    /* PEM X.509 */
	const char *user_key;     /* PEM private key (signs the manifest) */
	const char *ec2_cert;     /* PEM X.509 */
	const char *account;      /* 12 digits */
	const char *arch;
	const char *kernel_id, *ramdisk_id;
	const struct bundle_mapping *mappings;
	size_t n_mappings;
	int level;                /* gzip level 1..9 */
	int threads;              /* compression threads; 0 = online CPUs */
	double deadline;          /* monotonic seconds, 0 = none */
};

struct bundle_result {
	char *manifest_path;      /* owned */
	char *digest;             /* owned: SHA-1 of the tar stream */
	uint64_t size, bundled_size, tar_bytes;
	size_t n_parts;
};
void bundle_result_release(struct bundle_result *r);

/* Writes the bundle into opts->dir (created; NAME.* files left there by an
 * earlier run are replaced).  0, or -1 + err (nothing half-written is left
 * under the final names). */
int bundle_create(const struct bundle_opts *opts, struct bundle_result *out, struct af_error **err);

/* A self-signed RSA 2048 certificate and key for bundling, made once:
 * DIR/cert.pem and DIR/key.pem (both 0600), reused when both exist.
 * *created tells whether they were made now.  0, or -1 + err. */
int bundle_x509_generate(const char *dir, bool *created, struct af_error **err);

#endif
