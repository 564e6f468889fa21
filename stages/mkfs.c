/* SPDX-License-Identifier: Apache-2.0 */
/* mkfs: an ext2/3/4 filesystem in the root partition of the image, with a
 * label, a UUID and a directory hash seed that are stable per stage key,
 * then verified with libext2fs and libblkid.
 *
 * libext2fs has no "create a filesystem" call: mke2fs's main() is the only
 * implementation of the layout policy (mke2fs.conf, flex_bg placement,
 * journal sizing, resize inode), so the filesystem is made by running
 * mke2fs from e2fsprogs on the image at the partition's byte offset
 * (`-E offset=`), and everything it made is then checked with the
 * libraries. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ext2fs/ext2fs.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/extfs.h"
#include "amiforge/grublegacy.h"
#include "amiforge/log.h"
#include "amiforge/params.h"
#include "amiforge/spawn.h"
#include "amiforge/stage.h"
#include "amiforge/util.h"

#define MKFS_BLOCK_SIZE 4096
#define MKFS_LABEL_MAX 16

/* 1% instead of mke2fs's 5%: the reserve exists so that root daemons can
 * still write (and an admin can log in and clean up) when users fill the
 * disk.  A single-purpose cloud root filesystem has no other users, and 5%
 * of a 100 GiB volume is 5 GiB nobody can use; 1% still leaves root tens
 * of megabytes on the smallest images.  Recipes can set reserved_percent. */
#define MKFS_DEFAULT_RESERVED 1

static const char *const mkfs_types[] = { "ext2", "ext3", "ext4", NULL };
static const char *const mkfs_esp_types[] = { "vfat", "none", NULL };

static const struct param_spec mkfs_params[] = {
	{ .name = "type", .type = PT_ENUM, .choices = mkfs_types, .help = "filesystem type", .defval = "ext4" },
	{ .name = "label", .type = PT_STRING, .help = "filesystem label (at most 16 bytes)", .defval = "rootfs" },
	{ .name = "uuid", .type = PT_STRING, .help = "filesystem UUID", .defval = "derived from the stage key" },
	{ .name = "features", .type = PT_STRINGS, .help = "mke2fs -O features, e.g. ^metadata_csum or dir_index" },
	{ .name = "inode_size", .type = PT_INT, .help = "inode size in bytes (mke2fs -I)" },
	{ .name = "pvgrub_compatible", .type = PT_BOOL,
	  .help = "choose features and inode size that GRUB legacy (PV-GRUB) can read", .defval = "false" },
	{ .name = "reserved_percent", .type = PT_INT, .help = "blocks reserved for root (mke2fs -m)", .defval = "1" },
	{ .name = "esp_fstype", .type = PT_ENUM, .choices = mkfs_esp_types,
	  .help = "filesystem of the EFI system partition, when the partition stage made one (vfat: FAT32 by mkfs.vfat)",
	  .defval = "vfat" },
	{ .name = NULL },
};

/* GRUB legacy (0.97, and Amazon's PV-GRUB 1.05 built from it with Xen's
 * ext4 extents patch) reads ext2/3 and extent-mapped files, nothing newer:
 * - 64bit widens group descriptors to 64 bytes; GRUB legacy indexes the
 *   descriptor table as 32-byte entries and reads garbage block numbers;
 * - metadata_csum (and its seed) changes directory blocks (a checksum tail)
 *   and block group layout checks it does not know;
 * - inline_data keeps small files and directories inside the inode: GRUB
 *   legacy only follows block maps and extents;
 * - encrypt and casefold change how names are stored and compared;
 * - orphan_file adds a special inode GRUB does not need but older readers
 *   refuse by feature mask;
 * - 128-byte inodes: GRUB legacy's ext2 reader assumes the on-disk inode is
 *   sizeof(struct ext2_inode) == 128 bytes when walking the inode table.
 * What stays on for ext4: extents, flex_bg, huge_file, dir_nlink, dir_index
 * (htree directories are still readable linearly), sparse_super, filetype. */
static const char *const mkfs_pvgrub_off[] = {
	"64bit", "metadata_csum", "metadata_csum_seed", "inline_data", "encrypt", "casefold",
#ifdef EXT4_FEATURE_COMPAT_ORPHAN_FILE
	"orphan_file",
#endif
	NULL,
};
#define MKFS_PVGRUB_INODE_SIZE 128

struct mkfs_opts {
	const char *type;
	const char *label;
	char uuid[37];
	char hash_seed[37];
	int64_t inode_size;  /* 0: mke2fs's choice */
	int64_t reserved;
	bool pvgrub;
	const json_t *features;
	uint64_t offset, size;
};

/* 8-4-4-4-12 hex digits. */
static bool mkfs_uuid_valid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

static void mkfs_lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static bool mkfs_pvgrub_forbidden(const char *feature)
{
	for (const char *const *f = mkfs_pvgrub_off; *f; f++)
		if (strcmp(*f, feature) == 0)
			return true;
	return false;
}

static int mkfs_parse_opts(const struct stage_ctx *ctx, struct mkfs_opts *o, struct af_error **err)
{
	o->type = params_str(ctx->params, "type", "ext4");
	o->label = params_str(ctx->params, "label", "rootfs");
	o->pvgrub = params_bool(ctx->params, "pvgrub_compatible", false);
	o->inode_size = params_int(ctx->params, "inode_size", o->pvgrub ? MKFS_PVGRUB_INODE_SIZE : 0);
	o->reserved = params_int(ctx->params, "reserved_percent", MKFS_DEFAULT_RESERVED);
	o->features = params_get(ctx->params, "features");
	if (strcmp(o->type, "ext2") && strcmp(o->type, "ext3") && strcmp(o->type, "ext4"))
		return af_error_set(err, 0, "filesystem type '%s' is not supported: use ext2, ext3 or ext4", o->type);
	if (strlen(o->label) > MKFS_LABEL_MAX)
		return af_error_set(err, 0, "label '%s' is %zu bytes long: ext filesystems allow at most %d", o->label,
				    strlen(o->label), MKFS_LABEL_MAX);
	const char *uuid = params_str(ctx->params, "uuid", NULL);
	if (uuid && !mkfs_uuid_valid(uuid))
		return af_error_set(err, 0, "uuid '%s' is not a UUID (like 0f2e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b)", uuid);
	if (uuid)
		snprintf(o->uuid, sizeof(o->uuid), "%s", uuid);
	else
		uuid_derive(ctx->key, "fs-uuid", o->uuid);
	mkfs_lower(o->uuid);
	uuid_derive(ctx->key, "fs-hash-seed", o->hash_seed);
	if (o->reserved < 0 || o->reserved > 50)
		return af_error_set(err, 0, "reserved_percent %" PRId64 " is out of range 0..50", o->reserved);
	if (o->inode_size && (o->inode_size < 128 || (o->inode_size & (o->inode_size - 1))))
		return af_error_set(err, 0, "inode_size %" PRId64 " must be a power of two of at least 128",
				    o->inode_size);
	if (o->pvgrub && o->inode_size != MKFS_PVGRUB_INODE_SIZE)
		return af_error_set(err, 0, "inode_size %" PRId64 " cannot be read by GRUB legacy: drop inode_size or pvgrub_compatible",
				    o->inode_size);
	size_t i;
	json_t *f;
	json_array_foreach(o->features, i, f) {
		const char *name = json_string_value(f);
		if (o->pvgrub && name && name[0] != '^' && mkfs_pvgrub_forbidden(name))
			return af_error_set(err, 0, "feature '%s' cannot be read by GRUB legacy: drop it or pvgrub_compatible",
					    name);
	}
	return 0;
}

/* Root partition geometry from the facts of earlier stages. */
static int mkfs_geometry(const struct stage_ctx *ctx, struct mkfs_opts *o, struct af_error **err)
{
	const json_t *off = json_object_get(ctx->facts, "root.offset");
	const json_t *size = json_object_get(ctx->facts, "root.size");
	o->offset = off ? (uint64_t)json_integer_value(off) : 0;
	if (size) {
		o->size = (uint64_t)json_integer_value(size);
	} else {
		struct stat st;
		if (stat(ctx->image, &st) < 0)
			return af_error_set(err, errno, "image '%s'", ctx->image);
		o->size = (uint64_t)st.st_size - o->offset;
	}
	if (o->size / MKFS_BLOCK_SIZE < 64)
		return af_error_set(err, 0, "root partition of %" PRIu64 " bytes is too small for a filesystem", o->size);
	return 0;
}

static char *mkfs_features_arg(const struct mkfs_opts *o)
{
	struct strbuf sb = STRBUF_INIT;
	if (o->pvgrub)
		for (const char *const *f = mkfs_pvgrub_off; *f; f++)
			strbuf_addf(&sb, "%s^%s", sb.len ? "," : "", *f);
	size_t i;
	json_t *f;
	json_array_foreach(o->features, i, f)
		strbuf_addf(&sb, "%s%s", sb.len ? "," : "", json_string_value(f));
	return sb.len ? strbuf_detach(&sb) : NULL;
}

static int mkfs_run_mke2fs(const struct stage_ctx *ctx, const struct mkfs_opts *o, struct af_error **err)
{
	_cleanup_free_ char *reserved = xasprintf("%" PRId64, o->reserved);
	_cleanup_free_ char *inode = xasprintf("%" PRId64, o->inode_size);
	_cleanup_free_ char *ext = xasprintf("offset=%" PRIu64 ",root_owner=0:0,hash_seed=%s", o->offset, o->hash_seed);
	_cleanup_free_ char *blocks = xasprintf("%" PRIu64, o->size / MKFS_BLOCK_SIZE);
	_cleanup_free_ char *features = mkfs_features_arg(o);
	const char *argv[32];
	size_t n = 0;
	argv[n++] = "mke2fs";
	argv[n++] = "-F";
	argv[n++] = "-q";
	argv[n++] = "-t", argv[n++] = o->type;
	argv[n++] = "-L", argv[n++] = o->label;
	argv[n++] = "-U", argv[n++] = o->uuid;
	argv[n++] = "-b", argv[n++] = "4096";
	argv[n++] = "-m", argv[n++] = reserved;
	if (o->inode_size)
		argv[n++] = "-I", argv[n++] = inode;
	if (features)
		argv[n++] = "-O", argv[n++] = features;
	argv[n++] = "-E", argv[n++] = ext;
	argv[n++] = ctx->image;
	argv[n++] = blocks;
	argv[n] = NULL;

	/* A fixed time makes the superblock timestamps reproducible. */
	_cleanup_free_ char *fake_time = NULL;
	const char *sde = getenv("SOURCE_DATE_EPOCH");
	if (sde && *sde && strspn(sde, "0123456789") == strlen(sde))
		fake_time = xasprintf("E2FSPROGS_FAKE_TIME=%s", sde);
	char *env[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
			fake_time, NULL };
	struct spawn_opts so = {
		.argv = (char *const *)argv,
		.env = env,
		.out_fd = ctx->log_fd,
		.in_fd = -1,
		.deadline = ctx->deadline,
	};
	log_info("mke2fs -t %s -L %s -U %s%s%s -E %s %s %s", o->type, o->label, o->uuid, features ? " -O " : "",
		 features ? features : "", ext, ctx->image, blocks);
	if (spawn_run(&so, err) < 0)
		return af_error_wrap(err, "make %s filesystem on '%s' at offset %" PRIu64, o->type, ctx->image, o->offset);
	return 0;
}

/* Opens what mke2fs wrote with libext2fs and checks it against the request. */
static int mkfs_verify_ext2fs(const char *image, const struct mkfs_opts *o, struct af_error **err)
{
	_cleanup_ext2fs_ ext2_filsys fs = NULL;
	if (extfs_open_at(image, o->offset, 0, &fs, err) < 0)
		return af_error_wrap(err, "open the new filesystem");
	struct ext2_super_block *sb = fs->super;
	char label[MKFS_LABEL_MAX + 1] = { 0 };
	memcpy(label, sb->s_volume_name, MKFS_LABEL_MAX);
	char uuid[37];
	uuid_format(sb->s_uuid, uuid);
	if (strcmp(label, o->label) != 0)
		return af_error_set(err, 0, "the new filesystem has label '%s', not '%s'", label, o->label);
	if (strcmp(uuid, o->uuid) != 0)
		return af_error_set(err, 0, "the new filesystem has UUID %s, not %s", uuid, o->uuid);
	if (ext2fs_blocks_count(sb) * (uint64_t)EXT2_BLOCK_SIZE(sb) > o->size)
		return af_error_set(err, 0, "the new filesystem is larger than its partition (%" PRIu64 " bytes)", o->size);
	if (o->inode_size && EXT2_INODE_SIZE(sb) != o->inode_size)
		return af_error_set(err, 0, "the new filesystem has %d-byte inodes, not %" PRId64, EXT2_INODE_SIZE(sb),
				    o->inode_size);
	if (o->pvgrub) {
		struct strbuf why = STRBUF_INIT;
		if (!grublegacy_can_read(sb, &why)) {
			af_error_set(err, 0, "the new filesystem has %s, which GRUB legacy cannot read",
				     why.buf);
			strbuf_release(&why);
			return -1;
		}
	}
	return 0;
}

/* libblkid's view is what fstab and the bootloader will use: it must agree. */
static int mkfs_verify_blkid(const char *image, const struct mkfs_opts *o, struct af_error **err)
{
	struct extfs_probe p = { 0 };
	if (extfs_probe_range(image, o->offset, o->size, &p, err) < 0)
		return -1;
	const char *want[][2] = { { "TYPE", o->type }, { "LABEL", o->label }, { "UUID", o->uuid } };
	const char *got[] = { p.type, p.label, p.uuid };
	int rc = 0;
	for (size_t i = 0; i < ARRAY_SIZE(want) && rc == 0; i++)
		if (strcasecmp(got[i] ? got[i] : "", want[i][1]) != 0)
			rc = af_error_set(err, 0, "libblkid reads %s='%s' on the new filesystem, expected '%s'",
					  want[i][0], got[i] ? got[i] : "", want[i][1]);
	extfs_probe_release(&p);
	return rc;
}

/* ---- the EFI system partition (esp_fstype) ----
 * FAT32 (FAT16 when too small for FAT32) made by mkfs.vfat (dosfstools) at the ESP's sector offset, with a
 * volume id from the stage key and --invariant, so rebuilds are identical.
 * The bootloader stage mounts it and installs GRUB for UEFI there. */
static int mkfs_esp(const struct stage_ctx *ctx, struct af_error **err)
{
	const json_t *off = json_object_get(ctx->facts, "esp.offset"), *size = json_object_get(ctx->facts, "esp.size");
	if (!off || !size || strcmp(params_str(ctx->params, "esp_fstype", "vfat"), "vfat") != 0)
		return 0;
	char id[37];
	uuid_derive(ctx->key, "esp-volid", id);
	_cleanup_free_ char *volid = xstrndup(id, 8);
	_cleanup_free_ char *offset = xasprintf("--offset=%" PRIu64, (uint64_t)json_integer_value(off) / 512);
	uint64_t bytes = (uint64_t)json_integer_value(size);
	_cleanup_free_ char *kib = xasprintf("%" PRIu64, bytes / 1024);
	/* FAT32 needs at least 65525 clusters, or readers (mtools, some
	 * firmware) take it for FAT16: the largest cluster of at most 4 KiB
	 * that leaves enough.  Below about 34 MiB mkfs.vfat picks FAT16. */
	unsigned spc = 8;
	while (spc > 1 && bytes / (512u * spc) < 66000)
		spc /= 2;
	bool fat32 = bytes / 512u >= 66000 + 1024;
	_cleanup_free_ char *spc_arg = xasprintf("%u", spc);
	const char *argv[16] = { "mkfs.vfat", "-n", "ESP", "-i", volid, "--invariant", offset };
	size_t n = 7;
	if (fat32)
		argv[n++] = "-F", argv[n++] = "32", argv[n++] = "-s", argv[n++] = spc_arg;
	argv[n++] = ctx->image;
	argv[n++] = kib;
	struct spawn_opts so = { .argv = (char *const *)argv, .out_fd = ctx->log_fd, .in_fd = -1, .deadline = ctx->deadline };
	log_info("mkfs.vfat%s%s -n ESP -i %s %s %s %s", fat32 ? " -F 32 -s " : "", fat32 ? spc_arg : "", volid, offset,
		 ctx->image, kib);
	if (spawn_run(&so, err) < 0)
		return af_error_wrap(err, "make the FAT filesystem of the EFI system partition (mkfs.vfat is in dosfstools)");
	json_object_set_new(ctx->outputs, "esp.fstype", json_string("vfat"));
	return 0;
}

static int mkfs_run(struct stage_ctx *ctx, struct af_error **err)
{
	struct mkfs_opts o = { 0 };
	if (mkfs_parse_opts(ctx, &o, err) < 0 || mkfs_geometry(ctx, &o, err) < 0)
		return -1;
	if (mkfs_run_mke2fs(ctx, &o, err) < 0)
		return -1;
	if (mkfs_verify_ext2fs(ctx->image, &o, err) < 0 || mkfs_verify_blkid(ctx->image, &o, err) < 0)
		return af_error_wrap(err, "verify '%s'", ctx->image);
	json_object_set_new(ctx->outputs, "root.fstype", json_string(o.type));
	json_object_set_new(ctx->outputs, "root.uuid", json_string(o.uuid));
	json_object_set_new(ctx->outputs, "root.label", json_string(o.label));
	json_object_set_new(ctx->outputs, "root.pvgrub_compatible", json_boolean(o.pvgrub));
	log_info("made %s filesystem LABEL=%s UUID=%s", o.type, o.label, o.uuid);
	return mkfs_esp(ctx, err);
}

/* For plan (stage.h).  The ESP is formatted when the partition stage's
 * parameters make one. */
static char *mkfs_describe(const struct stage_describe *d)
{
	const char *type = params_str(d->params, "type", "ext4");
	const char *label = params_str(d->params, "label", "rootfs");
	const char *uuid = params_str(d->params, "uuid", NULL);
	bool pvgrub = params_bool(d->params, "pvgrub_compatible", false);
	bool esp = json_object_get(d->facts, "esp.offset") && !strcmp(params_str(d->params, "esp_fstype", "vfat"), "vfat");
	stage_describe_know(d, "root.fstype", type);
	stage_describe_know(d, "root.label", label);
	stage_describe_know(d, "root.uuid", uuid);
	json_object_set_new(d->known, "root.pvgrub_compatible", json_boolean(pvgrub));
	if (esp)
		stage_describe_know(d, "esp.fstype", "vfat");
	return xasprintf("make %s labelled %s%s%s%s%s", type, label, uuid ? ", UUID " : "", uuid ? uuid : "",
			 pvgrub ? " (PV-GRUB can read it)" : "", esp ? "; FAT32 on the EFI system partition" : "");
}

static const struct fact_need mkfs_needs[] = { { "root.offset", NULL }, { "root.size", NULL }, { NULL, NULL } };
static const char *const mkfs_provides[] = { "root.fstype", "root.uuid", "root.label", "root.pvgrub_compatible", "esp.fstype", NULL };

const struct stage_type stage_mkfs = {
	.name = "mkfs",
	.summary = "make an ext2/3/4 filesystem in the root partition (stable UUID; PV-GRUB compatible on request)",
	.params = mkfs_params,
	.flags = STAGE_NEEDS_IMAGE,
	.needs = mkfs_needs,
	.provides = mkfs_provides,
	.describe = mkfs_describe,
	.run = mkfs_run,
};
