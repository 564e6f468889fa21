/* SPDX-License-Identifier: Apache-2.0 */
/* `amiforge unbundle`: an ec2-bundle-image bundle back into the raw image,
 * to check what a bundle stage made (or an old bundle) without EC2. */
#ifndef AMIFORGE_UNBUNDLE_H
#define AMIFORGE_UNBUNDLE_H

struct af_error;

/* Restores the image a manifest describes: decrypts the key with the user's
 * private key, checks every part's SHA-1 and the tar stream's SHA-1, writes a
 * sparse raw image at OUTPUT (atomically: OUTPUT.tmp then rename).  parts_dir
 * NULL: the manifest's directory.  0, or -1 + err. */
int unbundle_image(const char *manifest, const char *key_pem, const char *parts_dir,
		     const char *output, struct af_error **err);

/* `amiforge unbundle MANIFEST --key PK.pem [--parts DIR] -o IMAGE`. */
int unbundle_main(int argc, char **argv);

#endif
