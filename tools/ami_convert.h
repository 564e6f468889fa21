/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge ami convert`'s parts (tools/ami_convert*.c): the bundle in S3
 * (its manifest, signature and parts) and the flow. */
#ifndef AMIFORGE_AMI_CONVERT_H
#define AMIFORGE_AMI_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "amiforge/aws/s3.h"

struct af_error;

/* What RegisterImage needs from a manifest, and the manifest itself. */
struct conv_manifest {
	char *bucket, *key;        /* where it is (owned) */
	char *text;                /* owned, NUL-terminated */
	size_t len;
	char *name, *architecture, *kernel_id, *ramdisk_id, *signature, *digest;
	uint64_t size;             /* the image's, bytes */
	size_t n_parts;
};
void conv_manifest_release(struct conv_manifest *m);

/* Splits "s3://BUCKET/KEY" (URL 1) or an ImageLocation "BUCKET/KEY" (0)
 * into owned *bucket and *key.  0, or -1 + err. */
int conv_split_location(const char *text, int url, char **bucket, char **key, struct af_error **err);

/* GetObject of the manifest at BUCKET/KEY (taken over) and its fields.
 * 0, or -1 + err naming the URL. */
int conv_manifest_fetch(const struct s3_client *s3, char *bucket, char *key, struct conv_manifest *m,
			struct af_error **err);

/* Verifies the manifest's RSA-SHA1 signature over its machine_configuration
 * and image elements (reference/FORMATS.md §1.4) with CERT_PEM's public key
 * if given, else the public half of KEY_PEM (the bundler signs with the
 * key whose certificate it encrypts to).  0, or -1 + err. */
int conv_verify_signature(const struct conv_manifest *m, const char *key_pem, const char *cert_pem,
			  struct af_error **err);

/* A part fetcher for unbundle_source: ARG is a struct conv_fetch. */
struct conv_fetch {
	const struct s3_client *s3;
	const struct conv_manifest *m;
	void *sink_arg;            /* the sink's own argument */
	int (*sink)(void *arg, uint64_t off, const void *data, size_t len, struct af_error **err);
};
int conv_fetch_part(void *arg, size_t index, const char *filename, char **data, size_t *len,
		    char **where, struct af_error **err);
int conv_sink(void *arg, uint64_t off, const void *data, size_t len, struct af_error **err);

#endif
