/* SPDX-License-Identifier: Apache-2.0 */
/* The block store under the checkpoints (checkpoint.h): 512 KiB blocks of
 * raw content, each kept once under BLOCKS/ab/abcdef..., named by the
 * SHA-256 of its raw content (what EBS wants later).  A block file is a
 * 16-byte header and the block compressed with LZ4, or stored as it is when
 * it does not compress (see engine/core/blockstore.c); a file of exactly 512 KiB
 * is the raw block (the first format): still read.
 *
 * The store knows nothing of images or checkpoints: callers hash, decide
 * which blocks to keep, and give every function the blocks directory open
 * (BLOCKS_FD).  Functions may be called from several threads at once, each
 * with its own scratch buffers and digest context. */
#ifndef AMIFORGE_BLOCKSTORE_H
#define AMIFORGE_BLOCKSTORE_H

#include <openssl/types.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct af_error;

#define BLOCKSTORE_BLOCK_SIZE (512u * 1024u)
#define BLOCKSTORE_HASH_LEN 32
/* The longest block file: a header and a raw block.  Scratch buffers
 * ("zbuf" below) hold this many bytes. */
#define BLOCKSTORE_FILE_MAX (16u + BLOCKSTORE_BLOCK_SIZE)
/* "ab/" + 64 hex digits + NUL */
#define BLOCKSTORE_NAME_LEN 68
/* Ends the message of a missing or corrupt block: the checkpoint naming it
 * is damaged, and this is the way out. */
#define BLOCKSTORE_DAMAGED_HINT "; run 'amiforge clean' to drop damaged checkpoints"

/* The block's file name relative to the blocks directory: "ab/abcdef...". */
void blockstore_name(const uint8_t hash[BLOCKSTORE_HASH_LEN], char name[BLOCKSTORE_NAME_LEN]);

/* SHA-256 of one raw block (BLOCKSTORE_BLOCK_SIZE bytes) with MD, a digest
 * context set up for SHA-256 (EVP_DigestInit_ex(md, EVP_sha256(), NULL)).
 * 0, or -1 if OpenSSL failed (its error queue says why). */
int blockstore_sha256(EVP_MD_CTX *md, const void *block, uint8_t out[BLOCKSTORE_HASH_LEN]);

/* True if block HASH is in the store as a whole file: its header and its
 * length agree (a power loss can leave one short or empty). */
bool blockstore_present(int blocks_fd, const uint8_t hash[BLOCKSTORE_HASH_LEN]);

/* Stores BLOCK (raw content whose SHA-256 is HASH), compressed when that
 * makes it smaller, under a temporary name renamed into place, so that a
 * crash never leaves a partial block under its hash.  Writeback is started
 * and not waited for.  ZBUF: BLOCKSTORE_FILE_MAX bytes of scratch.  TAG
 * makes the temporary name unique among this process's concurrent callers.
 * *STORED gets the bytes written (header included).  0 or -1 + err. */
int blockstore_put(int blocks_fd, const uint8_t hash[BLOCKSTORE_HASH_LEN], const void *block,
		   unsigned char *zbuf, unsigned tag, size_t *stored, struct af_error **err);

/* Reads block HASH into BLOCK (BLOCKSTORE_BLOCK_SIZE bytes) and checks with
 * MD (as for blockstore_sha256) that its content is what its name says.
 * ZBUF: BLOCKSTORE_FILE_MAX bytes of scratch.  BLOCKS_DIR names the
 * directory in messages.  A missing or corrupt block is an error naming it,
 * with BLOCKSTORE_DAMAGED_HINT.  0 or -1 + err. */
int blockstore_read(int blocks_fd, const char *blocks_dir, const uint8_t hash[BLOCKSTORE_HASH_LEN],
		    unsigned char *block, unsigned char *zbuf, EVP_MD_CTX *md, struct af_error **err);

/* Block files as bytes, for copying them elsewhere (the remote store):
 * blockstore_load_file reads block HASH's file as it is (compressed, with
 * its header) into ZBUF (BLOCKSTORE_FILE_MAX bytes) and sets *LEN; a
 * missing or damaged file is an error.  blockstore_verify_file says
 * whether FILE (LEN bytes, such a file's content) decodes to a block whose
 * SHA-256 is HASH (BLOCK: BLOCKSTORE_BLOCK_SIZE bytes of scratch, MD as for
 * blockstore_sha256).  blockstore_put_file stores verified FILE bytes
 * under HASH as blockstore_put does (TAG likewise). */
int blockstore_load_file(int blocks_fd, const char *blocks_dir,
			 const uint8_t hash[BLOCKSTORE_HASH_LEN], unsigned char *zbuf, size_t *len,
			 struct af_error **err);
bool blockstore_verify_file(const void *file, size_t len, const uint8_t hash[BLOCKSTORE_HASH_LEN],
			    unsigned char *block, EVP_MD_CTX *md);
int blockstore_put_file(int blocks_fd, const uint8_t hash[BLOCKSTORE_HASH_LEN], const void *file,
			size_t len, unsigned tag, struct af_error **err);

/* Removes every block file (and temporary file) under BLOCKS_DIR and the
 * directory itself; only names this module makes are touched.  A missing
 * directory is not an error.  0 or -1 + err. */
int blockstore_clean(const char *blocks_dir, struct af_error **err);

/* Bytes the block files under BLOCKS_DIR take on disk (allocated blocks);
 * 0 if it cannot be read. */
uint64_t blockstore_bytes(const char *blocks_dir);

#endif
