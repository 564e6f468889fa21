/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge unbundle`: an ec2-bundle-image bundle back into the raw image,
 * to check what a bundle stage made (or an old bundle) without EC2. */
#ifndef AMIFORGE_UNBUNDLE_H
#define AMIFORGE_UNBUNDLE_H

#include <stddef.h>
#include <stdint.h>

struct af_error;

/* Restores the image a manifest describes: decrypts the key with the user's
 * private key, checks every part's SHA-1 and the tar stream's SHA-1, writes a
 * sparse raw image at OUTPUT (atomically: OUTPUT.tmp then rename).  parts_dir
 * NULL: the manifest's directory.  0, or -1 + err. */
int unbundle_image(const char *manifest, const char *key_pem, const char *parts_dir,
		     const char *output, struct af_error **err);

/* ---- streaming (`ami convert`): parts fetched whole, one at a time, the
 * image handed on as it is decrypted, never on disk ---- */

/* Receives LEN bytes of the image at byte offset OFF, in ascending order;
 * holes of the sparse file are not handed on (they read as zeros).  0, or
 * -1 + err to stop. */
typedef int unbundle_sink_fn(void *arg, uint64_t off, const void *data, size_t len,
			     struct af_error **err);

struct unbundle_source {
	/* Fetches part INDEX (FILENAME, as the manifest names it) whole: *data
	 * (freed by the caller with free) and *len; *where (may be left NULL;
	 * freed by the caller) names it in messages, e.g. its s3:// URL. */
	int (*fetch)(void *arg, size_t index, const char *filename, char **data, size_t *len,
		     char **where, struct af_error **err);
	unbundle_sink_fn *sink;
	void *arg;                  /* for both */
	uint64_t image_size;        /* set on success: the image's size in bytes */
};

/* Checks that KEY_PEM decrypts the bundle key of the manifest TEXT (LEN
 * bytes; NAME names it in messages).  0, or -1 + err. */
int unbundle_key_check(const char *text, size_t len, const char *name, const char *key_pem,
		       struct af_error **err);

/* Restores the image of manifest TEXT as unbundle_image does (every
 * part's SHA-1 checked before it is used, then the tar stream's), handing
 * the data to SRC's sink.  Memory: one part and a few MiB of buffers.
 * 0, or -1 + err (a damaged part is named by SRC's *where). */
int unbundle_stream(const char *text, size_t len, const char *name, const char *key_pem,
		    struct unbundle_source *src, struct af_error **err);

/* `amiforge unbundle MANIFEST --key PK.pem [--parts DIR] -o IMAGE`. */
int unbundle_main(int argc, char **argv);

#endif
