/* SPDX-License-Identifier: Apache-2.0 */
/* A filesystem inside an image file, reached by its byte offset: no loop
 * device, nothing mounted, no privilege.  libext2fs reads ext2/3/4 at an
 * offset (unix_io's "offset=" option); libblkid identifies any filesystem
 * in a byte range.  mkfs checks what mke2fs wrote, fstab reads the root's
 * LABEL and UUID, the bootloader checks the ESP and what PV-GRUB can read,
 * boot-test reads menu.lst and the kernel out of the image: all ask here. */
#ifndef AMIFORGE_EXTFS_H
#define AMIFORGE_EXTFS_H

#include <stdint.h>
#include <ext2fs/ext2fs.h>

struct af_error;

/* Opens the ext2/3/4 filesystem at byte OFFSET of IMAGE with libext2fs's
 * unix I/O manager, with EXT2_FLAG_64BITS and FLAGS (EXT2_FLAG_RW to
 * write, 0 to read).  0 with *fs set (the caller owns it: ext2fs_close_free,
 * checked, after writing; _cleanup_ext2fs_ to discard), or -1 + err naming
 * IMAGE, OFFSET and libext2fs's reason; *fs is untouched on error. */
int extfs_open_at(const char *image, uint64_t offset, int flags, ext2_filsys *fs, struct af_error **err);

/* What libblkid reads in a filesystem's superblock; each NULL when absent.
 * Owned: release with extfs_probe_release. */
struct extfs_probe {
	char *type;   /* "ext4", "vfat", "swap"... */
	char *uuid;   /* as blkid prints it: lower case for ext*, "ABCD-1234" for FAT */
	char *label;
};

/* Probes [OFFSET, OFFSET+SIZE) of PATH (SIZE 0: to the end of the file)
 * for a filesystem with libblkid (superblocks only, no partition tables).
 * 0 with OUT filled, or -1 + err: PATH cannot be opened (strerror), no
 * filesystem in the range (errnum ENOENT, set without a strerror suffix,
 * so that callers can add what to do), ambiguous signatures (errnum
 * EEXIST, likewise) or a read error (EIO).  OUT is untouched on error. */
int extfs_probe_range(const char *path, uint64_t offset, uint64_t size, struct extfs_probe *out,
		      struct af_error **err);
void extfs_probe_release(struct extfs_probe *p);

#endif
