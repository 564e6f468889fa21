/* SPDX-License-Identifier: Apache-2.0 */
/* What GRUB legacy can read.  PV-GRUB (GRUB 0.97 plus Xen's patches for
 * ext4 extents) indexes 32-byte group descriptors, knows nothing of
 * checksummed metadata, inline data, encryption, case folding or meta_bg,
 * and walks the inode table in 128-byte steps as GRUB 0.97 does.  The mkfs
 * stage (pvgrub_compatible) makes such a filesystem and the bootloader stage
 * (type: pvgrub) refuses any other: both ask here. */
#ifndef AMIFORGE_GRUBLEGACY_H
#define AMIFORGE_GRUBLEGACY_H

#include <stdbool.h>
#include <ext2fs/ext2fs.h>

#include "amiforge/util.h"

/* True if GRUB legacy can read a filesystem with this superblock; otherwise
 * appends every reason ("feature 64bit, 256-byte inodes") to why. */
bool grublegacy_can_read(struct ext2_super_block *sb, struct strbuf *why);

#endif
