/* SPDX-License-Identifier: Apache-2.0 */
/* The block store: each non-zero 512 KiB block of an image kept once under
 * blocks/ab/<sha256 hex>.
 *
 * Every block is 512 KiB of raw content (the caller zero-pads the last block
 * of an image).  The name is the SHA-256 of the raw block (what EBS wants
 * later); the file holds it compressed:
 *
 *   offset 0  "AFBK"     magic
 *          4  u8 1       format version
 *          5  u8 codec   0: the raw block follows, 1: LZ4 block format
 *          6  u16 0      reserved
 *          8  u32        raw length (524288)
 *         12  u32        payload length; the file is 16 + this long
 *         16  payload                                (integers little-endian)
 *
 * LZ4 because a checkpoint is on the build's critical path: on a Debian
 * root, at acceleration 4, it keeps 35% of the bytes at ~1.2 GB/s a core,
 * and decompresses at several GB/s for a restore; acceleration 1 kept 32%
 * for 20% more time, zstd -1 a quarter for 1.4 to 2 times the time.  A block file of this format is never exactly 512 KiB long (LZ4
 * output is kept only if the whole file stays shorter, a raw block has a
 * header), so a file of exactly that size is a block of the first format,
 * the raw block itself: still read.
 * "Is this block present" checks that the header and the file size agree,
 * which catches a file a power loss left short or empty. */
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amiforge/blockstore.h"
#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/util.h"

#define BS ((size_t)BLOCKSTORE_BLOCK_SIZE)
#define HASH_LEN BLOCKSTORE_HASH_LEN
#define NAME_LEN BLOCKSTORE_NAME_LEN
#define HDR_LEN 16
#define FORMAT_VERSION 1
#define LZ4_ACCELERATION 4 /* see the top */
enum { CODEC_RAW = 0, CODEC_LZ4 = 1 };

_Static_assert(BLOCKSTORE_FILE_MAX == HDR_LEN + BLOCKSTORE_BLOCK_SIZE, "header length");

void blockstore_name(const uint8_t h[HASH_LEN], char name[NAME_LEN])
{
	char hex[2 * HASH_LEN + 1];
	hex_encode(h, HASH_LEN, hex);
	snprintf(name, NAME_LEN, "%.2s/%s", hex, hex);
}

int blockstore_sha256(EVP_MD_CTX *md, const void *block, uint8_t out[HASH_LEN])
{
	if (!EVP_DigestInit_ex(md, NULL, NULL) || !EVP_DigestUpdate(md, block, BS) ||
	    !EVP_DigestFinal_ex(md, out, NULL))
		return -1;
	return 0;
}

/* ---- the block file header ---- */

struct block_hdr {
	uint8_t codec;
	uint32_t payload_len;
};

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void hdr_encode(unsigned char out[HDR_LEN], uint8_t codec, uint32_t payload_len)
{
	memcpy(out, "AFBK", 4);
	out[4] = FORMAT_VERSION;
	out[5] = codec;
	out[6] = out[7] = 0;
	put_le32(out + 8, (uint32_t)BS);
	put_le32(out + 12, payload_len);
}

/* Checks a block file's header against its size; a file of exactly BS bytes
 * is a raw block of the first format. */
static bool hdr_decode(const unsigned char *in, uint64_t file_size, struct block_hdr *h)
{
	if (file_size == BS) {
		*h = (struct block_hdr){.codec = CODEC_RAW, .payload_len = (uint32_t)BS};
		return true;
	}
	if (file_size < HDR_LEN || memcmp(in, "AFBK", 4) || in[4] != FORMAT_VERSION ||
	    in[6] || in[7] || get_le32(in + 8) != BS)
		return false;
	h->codec = in[5];
	h->payload_len = get_le32(in + 12);
	if (file_size != HDR_LEN + (uint64_t)h->payload_len)
		return false;
	return (h->codec == CODEC_RAW && h->payload_len == BS) ||
	       (h->codec == CODEC_LZ4 && HDR_LEN + (uint64_t)h->payload_len < BS);
}

bool blockstore_present(int blocks_fd, const uint8_t h[HASH_LEN])
{
	char name[NAME_LEN];
	unsigned char hdr[HDR_LEN];
	struct stat st;
	struct block_hdr bh;
	blockstore_name(h, name);
	_cleanup_fd_ int fd = openat(blocks_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	if ((uint64_t)st.st_size != BS && pread_all(fd, hdr, HDR_LEN, 0) != HDR_LEN)
		return false;
	return hdr_decode(hdr, (uint64_t)st.st_size, &bh);
}

/* ---- storing ---- */

/* Writeback starts now, but nothing waits for it: waiting (fdatasync) cost
 * about as much as the rest of a checkpoint.  A power loss can leave a
 * block short or missing (ext4's ordered mode never shows stale data):
 * blockstore_present() then says false, and blockstore_read() verifies the
 * hash anyway, so a damaged block is refused, never used wrongly. */
static int write_block_file(int blocks_fd, const char *tmp, const char *name,
			    const unsigned char *zbuf, size_t zlen, const void *raw,
			    struct af_error **err)
{
	_cleanup_fd_ int fd = openat(blocks_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return af_error_set(err, errno, "cannot create block file '%s'", tmp);
	if (write_all(fd, zbuf, zlen) < 0 || (raw && write_all(fd, raw, BS) < 0) ||
	    (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) < 0 && errno != ENOSYS) ||
	    close(steal_fd(&fd)) < 0) {
		int errsv = errno;
		unlinkat(blocks_fd, tmp, 0);
		return af_error_set(err, errsv, "cannot write block '%s'", name);
	}
	if (renameat(blocks_fd, tmp, blocks_fd, name) < 0) {
		int errsv = errno;
		unlinkat(blocks_fd, tmp, 0);
		return af_error_set(err, errsv, "cannot rename block '%s'", name);
	}
	return 0;
}

int blockstore_put(int blocks_fd, const uint8_t h[HASH_LEN], const void *block,
		   unsigned char *zbuf, unsigned tag, size_t *stored, struct af_error **err)
{
	/* LZ4 output is kept only if the file stays shorter than a raw block of
	 * the first format (see the top); LZ4 gives up (0) beyond that. */
	int zlen = LZ4_compress_fast(block, (char *)zbuf + HDR_LEN, (int)BS,
				     (int)(BS - HDR_LEN - 1), LZ4_ACCELERATION);
	uint8_t codec = zlen > 0 ? CODEC_LZ4 : CODEC_RAW;
	size_t payload = zlen > 0 ? (size_t)zlen : BS;
	hdr_encode(zbuf, codec, (uint32_t)payload);
	char name[NAME_LEN], tmp[128], dirname[3];
	blockstore_name(h, name);
	memcpy(dirname, name, 2);
	dirname[2] = '\0';
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld.%u", dirname, name + 3, (long)getpid(), tag);

	if (mkdirat(blocks_fd, dirname, 0700) < 0 && errno != EEXIST)
		return af_error_set(err, errno, "cannot create block directory '%s'", dirname);
	if (write_block_file(blocks_fd, tmp, name, zbuf,
			     codec == CODEC_LZ4 ? HDR_LEN + payload : HDR_LEN,
			     codec == CODEC_RAW ? block : NULL, err) < 0)
		return -1;
	*stored = HDR_LEN + payload;
	return 0;
}

/* ---- reading ---- */

/* The raw block from a block file's bytes (zbuf) into block. */
static bool decode_block(const unsigned char *zbuf, size_t file_len, unsigned char *block)
{
	struct block_hdr bh;
	if (!hdr_decode(zbuf, file_len, &bh))
		return false;
	if (file_len == BS) { /* first format */
		memcpy(block, zbuf, BS);
		return true;
	}
	if (bh.codec == CODEC_RAW) {
		memcpy(block, zbuf + HDR_LEN, BS);
		return true;
	}
	return LZ4_decompress_safe((const char *)zbuf + HDR_LEN, (char *)block,
				   (int)bh.payload_len, (int)BS) == (int)BS;
}

int blockstore_read(int blocks_fd, const char *blocks_dir, const uint8_t h[HASH_LEN],
		    unsigned char *block, unsigned char *zbuf, EVP_MD_CTX *md, struct af_error **err)
{
	char name[NAME_LEN];
	uint8_t got[HASH_LEN];
	blockstore_name(h, name);
	struct stat st;
	_cleanup_fd_ int fd = openat(blocks_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return af_error_set(err, 0, "block '%s/%s' is missing%s", blocks_dir, name,
				    BLOCKSTORE_DAMAGED_HINT);
	if (fd < 0 || fstat(fd, &st) < 0)
		return af_error_set(err, errno, "cannot open block '%s/%s'", blocks_dir, name);
	ssize_t n = read_all(fd, zbuf, BLOCKSTORE_FILE_MAX);
	if (n < 0)
		return af_error_set(err, errno, "cannot read block '%s/%s'", blocks_dir, name);
	/* Read once; keeping it cached would only push out the image. */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if ((uint64_t)n != (uint64_t)st.st_size || !decode_block(zbuf, (size_t)n, block) ||
	    blockstore_sha256(md, block, got) < 0 || memcmp(got, h, HASH_LEN))
		return af_error_set(err, 0,
				    "block '%s/%s' is corrupt (its content does not match its "
				    "hash)%s",
				    blocks_dir, name, BLOCKSTORE_DAMAGED_HINT);
	return 0;
}

/* ---- block files as bytes: what the remote store copies ---- */

int blockstore_load_file(int blocks_fd, const char *blocks_dir, const uint8_t h[HASH_LEN],
			 unsigned char *zbuf, size_t *len, struct af_error **err)
{
	char name[NAME_LEN];
	struct block_hdr bh;
	struct stat st;
	blockstore_name(h, name);
	_cleanup_fd_ int fd = openat(blocks_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return af_error_set(err, errno, "cannot open block '%s/%s'", blocks_dir, name);
	ssize_t n = read_all(fd, zbuf, BLOCKSTORE_FILE_MAX);
	if (n < 0)
		return af_error_set(err, errno, "cannot read block '%s/%s'", blocks_dir, name);
	if ((uint64_t)n != (uint64_t)st.st_size || !hdr_decode(zbuf, (uint64_t)n, &bh))
		return af_error_set(err, 0, "block '%s/%s' is damaged%s", blocks_dir, name,
				    BLOCKSTORE_DAMAGED_HINT);
	*len = (size_t)n;
	return 0;
}

bool blockstore_verify_file(const void *file, size_t len, const uint8_t h[HASH_LEN],
			    unsigned char *block, EVP_MD_CTX *md)
{
	uint8_t got[HASH_LEN];
	return len <= BLOCKSTORE_FILE_MAX && decode_block(file, len, block) &&
	       blockstore_sha256(md, block, got) == 0 && !memcmp(got, h, HASH_LEN);
}

int blockstore_put_file(int blocks_fd, const uint8_t h[HASH_LEN], const void *file, size_t len,
			unsigned tag, struct af_error **err)
{
	char name[NAME_LEN], tmp[128], dirname[3];
	blockstore_name(h, name);
	memcpy(dirname, name, 2);
	dirname[2] = '\0';
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld.%u", dirname, name + 3, (long)getpid(), tag);
	if (mkdirat(blocks_fd, dirname, 0700) < 0 && errno != EEXIST)
		return af_error_set(err, errno, "cannot create block directory '%s'", dirname);
	return write_block_file(blocks_fd, tmp, name, file, len, NULL, err);
}

/* ---- walking: clean and size ---- */

static bool is_hex2(const char *s)
{
	/* Lower case only: the only names blockstore_name() makes. */
	return s[0] && s[1] && strchr(hex_digits, s[0]) && strchr(hex_digits, s[1]) &&
	       s[2] == '\0';
}

/* Calls fn for every entry of every blocks/ab directory. */
static int walk_blocks(int blocks_fd, const char *blocks_dir,
		       int (*fn)(int sub_fd, const char *name, void *arg), void *arg,
		       bool remove_dirs, struct af_error **err)
{
	_cleanup_dir_ DIR *d = fdopendir(dup(blocks_fd));
	struct dirent *de;
	if (!d)
		return af_error_set(err, errno, "cannot read '%s'", blocks_dir);
	while ((de = readdir(d))) {
		if (!is_hex2(de->d_name))
			continue;
		int sub_fd = openat(blocks_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		_cleanup_dir_ DIR *sd = sub_fd >= 0 ? fdopendir(sub_fd) : NULL;
		if (!sd && sub_fd >= 0)
			close(sub_fd);
		if (!sd)
			return af_error_set(err, errno, "cannot read '%s/%s'", blocks_dir,
					    de->d_name);
		struct dirent *e;
		while ((e = readdir(sd)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
			    fn(dirfd(sd), e->d_name, arg) < 0)
				return af_error_set(err, errno, "cannot remove '%s/%s/%s'",
						    blocks_dir, de->d_name, e->d_name);
		if (remove_dirs && unlinkat(blocks_fd, de->d_name, AT_REMOVEDIR) < 0)
			return af_error_set(err, errno, "cannot remove '%s/%s'", blocks_dir,
					    de->d_name);
	}
	return 0;
}

static int unlink_entry(int sub_fd, const char *name, void *arg)
{
	return unlinkat(sub_fd, name, 0);
}

static int add_size(int sub_fd, const char *name, void *arg)
{
	struct stat st;
	if (name[0] != '.' && fstatat(sub_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISREG(st.st_mode))
		*(uint64_t *)arg += (uint64_t)st.st_blocks * 512;
	return 0;
}

int blockstore_clean(const char *blocks_dir, struct af_error **err)
{
	_cleanup_fd_ int fd = open(blocks_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0
				       : af_error_set(err, errno, "cannot open '%s'", blocks_dir);
	if (walk_blocks(fd, blocks_dir, unlink_entry, NULL, true, err) < 0)
		return -1;
	if (rmdir(blocks_dir) < 0)
		return af_error_set(err, errno, "cannot remove '%s'", blocks_dir);
	return 0;
}

uint64_t blockstore_bytes(const char *blocks_dir)
{
	_cleanup_fd_ int fd = open(blocks_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	_cleanup_error_ struct af_error *err = NULL;
	uint64_t total = 0;
	if (fd >= 0)
		walk_blocks(fd, blocks_dir, add_size, &total, false, &err);
	return total;
}
