/* SPDX-License-Identifier: Apache-2.0 */
/* The EC2 instance-store bundle (ec2-bundle-image, manifest 2007-10-10;
 * reference/FORMATS.md §1), shared by the `bundle` stage and `amiforge
 * unbundle`:
 *   image -> GNU tar (old-GNU sparse member) -> one gzip member
 *         -> AES-128-CBC (random key and IV) -> 10 MiB parts NAME.part.N
 *   NAME.manifest.xml: the SHA-1 of the tar stream, each part's SHA-1, the
 *   key and IV as hex text wrapped with RSA PKCS#1 v1.5 for the EC2 and the
 *   user's certificates, signed RSA-SHA1 over the serialized
 *   <machine_configuration> and <image> elements.
 *
 * This header: the format's pure parts (part names, the manifest text, the
 * PV-GRUB AKI table, the tar header), bundle_format.c.  Making a bundle:
 * bundle_create.h; reading one back: unbundle.h. */
#ifndef AMIFORGE_BUNDLE_FORMAT_H
#define AMIFORGE_BUNDLE_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct af_error;

#define BUNDLE_PART_SIZE (10u * 1024 * 1024)  /* bundle.rb CHUNK_SIZE */

/* ---- pure helpers ---- */

/* "NAME.part.I" with I zero-padded to the number of digits of NPARTS
 * (fileutil.rb: 9 parts -> .part.0 .. .part.8, 15 -> .part.00 .. .part.14).
 * Caller frees. */
char *bundle_part_name(const char *name, size_t index, size_t nparts);

/* Number of parts for BYTES of encrypted data: ceil(bytes / 10 MiB). */
size_t bundle_part_count(uint64_t bytes);

/* The PV-GRUB 1.05 hd0 AKI for REGION and ARCH ("x86_64"/"amd64" or
 * "i386"), or NULL when the table has none (FORMATS.md §6). */
const char *bundle_pvgrub_aki(const char *region, const char *arch);

/* The EC2 certificate file name for REGION: cert-ec2-gov.pem for us-gov-*,
 * cert-ec2-cn-north-1.pem for cn-*, else cert-ec2.pem. */
const char *bundle_ec2_cert_name(const char *region);

/* Finds a shipped data file (an EC2 certificate): $AMIFORGE_DATA_DIR,
 * data/ec2-certs beside the binary or its parents (the source tree), then
 * PREFIX/share/amiforge/ec2-certs for an installed binary.  The path
 * (caller frees), or NULL + err listing the places looked at. */
char *bundle_find_cert(const char *file, struct af_error **err);

struct bundle_mapping {
	const char *virtual_name;  /* "ami", "root", "ephemeral0", "swap" */
	const char *device;        /* "sda1", "/dev/sda1" */
};

/* Everything the manifest says.  Hex strings are lowercase. */
struct bundle_manifest {
	const char *arch;                      /* "x86_64" | "i386" | ... */
	const struct bundle_mapping *mappings; /* sorted by the caller or not: written sorted */
	size_t n_mappings;
	const char *kernel_id, *ramdisk_id;    /* NULL: omitted */
	const char *name;
	const char *user;                      /* 12-digit account */
	const char *digest;                    /* SHA-1 of the tar stream */
	uint64_t size;                         /* apparent image size */
	uint64_t bundled_size;                 /* sum of the part sizes */
	const char *ec2_encrypted_key, *user_encrypted_key;
	const char *ec2_encrypted_iv, *user_encrypted_iv;
	size_t n_parts;
	char *const *part_names;
	char *const *part_digests;
};

/* The manifest in REXML's compact form (single-quoted attributes, no
 * whitespace, no trailing newline) with an empty <signature></signature>
 * when signature is NULL.  Caller frees. */
char *bundle_manifest_text(const struct bundle_manifest *m, const char *signature);

/* The bytes the signature covers: the first <machine_configuration>...
 * </machine_configuration> and <image>...</image> substrings of TEXT,
 * concatenated (manifestv20071010.rb sign / xmlutil.rb get_xml).  Caller
 * frees; NULL when TEXT has no <image> element. */
char *bundle_signed_data(const char *text);

/* One 512-byte old-GNU tar header, as GNU tar 1.34 `tar -c -S` writes it: a
 * sparse member (typeflag 'S', MAP of (offset, length) pairs, extension
 * headers when the map has more than 4 entries), or a regular one ('0')
 * when the file has no holes (MAP then ignored).  Returns the number of bytes written to OUT
 * (a multiple of 512; OUT must hold bundle_tar_header_size(n_map)). */
size_t bundle_tar_header_size(size_t n_map);
struct bundle_tar_member {
	const char *name;   /* < 100 bytes */
	unsigned mode;
	int64_t mtime;
	uint64_t realsize; /* apparent size */
	uint64_t stored;   /* sum of the map lengths */
	bool sparse;       /* typeflag 'S' with MAP; else '0' */
	const uint64_t (*map)[2];
	size_t n_map;
};
size_t bundle_tar_header(const struct bundle_tar_member *m, unsigned char *out);

#endif
