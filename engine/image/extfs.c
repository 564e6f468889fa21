/* SPDX-License-Identifier: Apache-2.0 */
#include <blkid/blkid.h>
#include <errno.h>
#include <et/com_err.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>

#include "amiforge/cleanup.h"
#include "amiforge/error.h"
#include "amiforge/extfs.h"
#include "amiforge/util.h"

void cleanup_ext2fsp(struct struct_ext2_filsys **fs)
{
	if (*fs) {
		int errsv = errno;
		ext2fs_close_free(fs);
		errno = errsv;
	}
}

void cleanup_blkid_probep(struct blkid_struct_probe **pr)
{
	if (*pr)
		blkid_free_probe(*pr);
}

int extfs_open_at(const char *image, uint64_t offset, int flags, ext2_filsys *fs, struct af_error **err)
{
	ext2_filsys opened = NULL;
	char io_opts[64];
	snprintf(io_opts, sizeof(io_opts), "offset=%" PRIu64, offset);
	errcode_t rc = ext2fs_open2(image, io_opts, EXT2_FLAG_64BITS | flags, 0, 0, unix_io_manager, &opened);
	if (rc)
		return af_error_set(err, 0, "no ext2/3/4 filesystem at offset %" PRIu64 " of '%s': %s", offset,
				    image, error_message(rc));
	*fs = opened;
	return 0;
}

static char *extfs_probe_value(blkid_probe pr, const char *name)
{
	const char *v = NULL;
	return blkid_probe_lookup_value(pr, name, &v, NULL) == 0 && v ? xstrdup(v) : NULL;
}

/* errnum set by hand: a strerror suffix would only confuse. */
static int extfs_probe_miss(struct af_error **err, int errnum, const char *what, const char *path,
			    uint64_t offset)
{
	af_error_set(err, 0, "libblkid finds %s at offset %" PRIu64 " of '%s'", what, offset, path);
	if (err && *err)
		(*err)->errnum = errnum;
	return -1;
}

int extfs_probe_range(const char *path, uint64_t offset, uint64_t size, struct extfs_probe *out,
		      struct af_error **err)
{
	_cleanup_fd_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return af_error_set(err, errno, "open '%s'", path);
	_cleanup_blkid_probe_ blkid_probe pr = blkid_new_probe();
	if (!pr)
		BUG("out of memory");
	if (blkid_probe_set_device(pr, fd, (blkid_loff_t)offset, (blkid_loff_t)size) < 0)
		return af_error_set(err, 0, "probe '%s' at offset %" PRIu64 ": cannot set up libblkid", path, offset);
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID);
	int rc = blkid_do_safeprobe(pr);
	if (rc == 1)
		return extfs_probe_miss(err, ENOENT, "no filesystem", path, offset);
	if (rc == -2)
		return extfs_probe_miss(err, EEXIST, "ambiguous signatures", path, offset);
	if (rc != 0)
		return af_error_set(err, EIO, "libblkid cannot read '%s' at offset %" PRIu64, path, offset);
	*out = (struct extfs_probe){
		.type = extfs_probe_value(pr, "TYPE"),
		.uuid = extfs_probe_value(pr, "UUID"),
		.label = extfs_probe_value(pr, "LABEL"),
	};
	return 0;
}

void extfs_probe_release(struct extfs_probe *p)
{
	free(p->type);
	free(p->uuid);
	free(p->label);
	*p = (struct extfs_probe){ 0 };
}
