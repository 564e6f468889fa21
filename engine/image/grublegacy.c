/* SPDX-License-Identifier: Apache-2.0 */
#include "amiforge/grublegacy.h"

bool grublegacy_can_read(struct ext2_super_block *sb, struct strbuf *why)
{
	const struct { const char *name; int on; } bad[] = {
		{ "64bit", ext2fs_has_feature_64bit(sb) },
		{ "metadata_csum", ext2fs_has_feature_metadata_csum(sb) },
		{ "metadata_csum_seed", ext2fs_has_feature_csum_seed(sb) },
		{ "inline_data", ext2fs_has_feature_inline_data(sb) },
		{ "encrypt", ext2fs_has_feature_encrypt(sb) },
		{ "casefold", ext2fs_has_feature_casefold(sb) },
		{ "meta_bg", ext2fs_has_feature_meta_bg(sb) },
	};
	size_t before = why->len;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (bad[i].on)
			strbuf_addf(why, "%sfeature %s", why->len > before ? ", " : "", bad[i].name);
	unsigned isize = sb->s_rev_level == EXT2_GOOD_OLD_REV ? EXT2_GOOD_OLD_INODE_SIZE
							    : sb->s_inode_size;
	if (isize != EXT2_GOOD_OLD_INODE_SIZE)
		strbuf_addf(why, "%s%u-byte inodes", why->len > before ? ", " : "", isize);
	return why->len == before;
}
