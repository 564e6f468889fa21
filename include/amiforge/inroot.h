/* SPDX-License-Identifier: Apache-2.0 */
/* Files inside an image's root, resolved as if that root were "/"
 * (openat2 RESOLVE_IN_ROOT): ".." and symlinks planted in the image can
 * never lead a write to the host.  Paths are absolute in the image
 * ("/etc/hosts") or relative to its root; leading slashes are ignored.
 * Without openat2 (Linux < 5.6, valgrind < 3.22) the walk goes one component
 * at a time and refuses every symlink and "..". */
#ifndef AMIFORGE_INROOT_H
#define AMIFORGE_INROOT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct af_error;

/* openat2(rootfd, path, flags | O_CLOEXEC, mode) inside the root.  Returns
 * an fd or -1 with errno set (EXDEV: the path tries to leave the root on a
 * kernel without openat2). */
int inroot_open(int rootfd, const char *path, int flags, mode_t mode);

/* Resolves PATH the way the booted image would (absolute symlinks start at
 * the image's root) and returns it without symlinks, as "/a/b"; components
 * that do not exist yet are kept as written.  Fails (errnum EXDEV) when PATH
 * holds ".." or a relative symlink in the image climbs above its root, naming
 * the symlink; ELOOP after 40 links.  Caller frees. */
char *inroot_resolve(int rootfd, const char *path, struct af_error **err);

/* Opens directory DIR of the root (O_PATH), creating missing components with
 * MODE (owner root).  Returns the fd or -1 + err. */
int inroot_mkdirs(int rootfd, const char *root, const char *dir, mode_t mode,
		  struct af_error **err);

/* Writes DATA as PATH in the image: parents created (0755), a symlink at
 * PATH replaced rather than followed, then owner UID:GID and MODE (exact,
 * not masked by the umask).  0 or -1 + err. */
int inroot_write(int rootfd, const char *root, const char *path, const void *data, size_t len,
		 mode_t mode, uid_t uid, gid_t gid, struct af_error **err);

/* Reads PATH of the image (at most MAX bytes, else EFBIG).  NULL + err;
 * *len gets the size; the result is NUL-terminated. */
char *inroot_read(int rootfd, const char *root, const char *path, size_t max, size_t *len,
		  struct af_error **err);

/* Removes PATH (a file or a symlink; not followed) if it exists.  1 removed,
 * 0 absent, -1 + err. */
int inroot_unlink(int rootfd, const char *root, const char *path, struct af_error **err);

/* True if PATH exists in the image (symlinks resolved inside it). */
bool inroot_exists(int rootfd, const char *path);

#endif
