/* SPDX-License-Identifier: Apache-2.0 */
/* Loop devices over a byte range of an image file (sandbox: see namespace.h). */
#ifndef AMIFORGE_LOOPDEV_H
#define AMIFORGE_LOOPDEV_H

#include <stdbool.h>
#include <stdint.h>

struct af_error;

/* A loop device over [offset, offset+sizelimit) of PATH (sizelimit 0: to
 * the end), attached with LOOP_CONFIGURE + LO_FLAGS_AUTOCLEAR: it detaches
 * itself when fd is closed and nothing mounts it. */
struct loopdev {
	int fd;        /* -1 when not attached */
	char *path;    /* "/dev/loopN" */
};
int loopdev_attach(const char *path, uint64_t offset, uint64_t sizelimit, bool readonly,
		struct loopdev *out, struct af_error **err);
/* Closes the fd (the kernel detaches it once unmounted).  Safe to call
 * twice and on a zeroed struct with fd -1. */
void loopdev_release(struct loopdev *lo);

#endif
