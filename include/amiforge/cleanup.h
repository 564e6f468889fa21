/* SPDX-License-Identifier: Apache-2.0 */
/* Scope-bound cleanup (bubblewrap, crun, systemd).  Always initialise:
 * `_cleanup_free_ char *p = NULL;`, `_cleanup_fd_ int fd = -1;`.
 * Hand ownership over with steal_pointer()/steal_fd().  Where a close can
 * fail and matters, close explicitly on the success path and check it. */
#ifndef AMIFORGE_CLEANUP_H
#define AMIFORGE_CLEANUP_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <jansson.h>

#include "amiforge/error.h"

static inline void cleanup_freep(void *p) { free(*(void **)p); }
static inline void cleanup_closep(int *fd)
{
	if (*fd >= 0) {
		int errsv = errno;
		close(*fd);
		errno = errsv;
	}
}
static inline void cleanup_fclosep(FILE **f) { if (*f) fclose(*f); }
static inline void cleanup_closedirp(DIR **d) { if (*d) closedir(*d); }
static inline void cleanup_json_decrefp(json_t **j) { json_decref(*j); }
static inline void cleanup_errorp(struct af_error **e) { af_error_free(*e); }
static inline void cleanup_strvp(char ***v)
{
	if (*v) {
		for (char **s = *v; *s; s++)
			free(*s);
		free(*v);
	}
}

#define _cleanup_free_ __attribute__((cleanup(cleanup_freep)))
#define _cleanup_fd_ __attribute__((cleanup(cleanup_closep)))
#define _cleanup_file_ __attribute__((cleanup(cleanup_fclosep)))
#define _cleanup_dir_ __attribute__((cleanup(cleanup_closedirp)))
#define _cleanup_json_ __attribute__((cleanup(cleanup_json_decrefp)))
#define _cleanup_error_ __attribute__((cleanup(cleanup_errorp)))
#define _cleanup_strv_ __attribute__((cleanup(cleanup_strvp)))

static inline void *steal_pointer_impl(void *pp)
{
	void **p = pp;
	void *v = *p;
	*p = NULL;
	return v;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))steal_pointer_impl(pp))

static inline int steal_fd(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}

/* Library handles whose headers are too heavy to pull into every file
 * (ext2fs.h defines struct field macros such as i_uid_high): the types are
 * declared opaque here, the helpers live in engine/image/extfs.c.  The ext2_filsys
 * helper calls ext2fs_close_free, which also flushes a filesystem opened
 * read-write: close it explicitly, and check it, on the success path. */
struct struct_ext2_filsys;
struct blkid_struct_probe;
void cleanup_ext2fsp(struct struct_ext2_filsys **fs);
void cleanup_blkid_probep(struct blkid_struct_probe **pr);
#define _cleanup_ext2fs_ __attribute__((cleanup(cleanup_ext2fsp)))
#define _cleanup_blkid_probe_ __attribute__((cleanup(cleanup_blkid_probep)))

#endif
