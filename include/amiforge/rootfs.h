/* SPDX-License-Identifier: Apache-2.0 */
/* The image's root filesystem mounted through a loop device. */
#ifndef AMIFORGE_ROOTFS_H
#define AMIFORGE_ROOTFS_H

#include <stdbool.h>
#include <stdint.h>

#include "amiforge/loopdev.h"

struct af_error;

/* The image's root filesystem, mounted at target through a loop device. */
struct rootfs {
	struct loopdev loop;
	char *target;
	bool mounted;
};
/* Attaches a loop over the root partition and mounts it at TARGET (created
 * if missing) with libmount.  0 or -1 + err. */
int rootfs_mount(const char *image, uint64_t offset, uint64_t size, const char *fstype,
		 const char *target, struct rootfs *out, struct af_error **err);
/* FITRIM (so freed blocks become holes in the image), syncfs, unmount,
 * release the loop.  0 or -1 + err; always releases what it can. */
int rootfs_umount(struct rootfs *fs, struct af_error **err);

#endif
