/* SPDX-License-Identifier: Apache-2.0 */
/* Files inside an image's root: the one way the engine reads, writes and
 * deletes there (DESIGN §6).  The image is hostile input: a package or a
 * `run` stage may have planted symlinks (absolute or climbing with ".."),
 * device nodes, FIFOs, sockets or hard links.  Every call here is anchored
 * at a directory fd of the root (ROOTFD, from inroot_root_open) and
 * resolves paths with openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS, as
 * if that root were "/": no link leads outside it.  Without openat2 (Linux
 * < 5.6, valgrind < 3.22) the walk goes one component at a time and refuses
 * every symlink and "..": stricter, never wider.
 *
 * Paths are image paths ("/etc/hosts"; leading slashes are optional).
 * Symlinks on the way to a path are followed inside the image, the way
 * the booted image would; the last component is never followed.
 *  - Reading opens with O_NOFOLLOW | O_NONBLOCK and refuses what is not a
 *    regular file (or a directory where one is wanted): a FIFO never
 *    stalls the engine, a device node is never opened.
 *  - Creating writes a fresh file under a random name (getrandom) with
 *    O_EXCL in the resolved parent directory, sets owner and mode on the fd
 *    and renames it over the final name: whatever was there (a symlink, a
 *    device node, a FIFO, a hard link to some other file) is replaced, never
 *    written through.
 *  - Deleting is unlinkat on the resolved parent directory's fd.
 *
 * Errors: -1 (or NULL) and *err, whose message names the image path ("'/etc/
 * hosts' in the image is a FIFO, not a regular file; ...") and whose errnum
 * is the cause: ENOENT (absent), ELOOP (a symlink where a file or
 * directory is wanted), EISDIR (a directory where a file is wanted),
 * ENOTDIR (something else where a directory is wanted), EINVAL (a FIFO,
 * socket or device node where a file is wanted), EXDEV (a path that leaves
 * the root, on a kernel without openat2), or the syscall's errno.
 * ROOT, where a call takes it, is the mount point: it only appears in
 * messages about the root itself. */
#ifndef AMIFORGE_INROOT_H
#define AMIFORGE_INROOT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

struct af_error;

/* ---- the anchor and raw resolution ---- */

/* Opens ROOT (the image's mount point) as O_PATH | O_DIRECTORY: the ROOTFD
 * of every call below.  Returns the fd (caller closes) or -1 + err. */
int inroot_root_open(const char *root, struct af_error **err);

/* openat2(ROOTFD, PATH, FLAGS | O_CLOEXEC, MODE) inside the root.  Returns
 * an fd or -1 with errno set (EXDEV: the path tries to leave the root on a
 * kernel without openat2).  No type check: prefer the calls below. */
int inroot_open(int rootfd, const char *path, int flags, mode_t mode);
/* inroot_open() that accepts no symlink anywhere on the path (ELOOP): for
 * the places the engine mounts over (/dev, /proc, /sys, resolv.conf). */
int inroot_open_nolinks(int rootfd, const char *path, int flags);

/* True if PATH exists in the image (symlinks resolved inside it). */
bool inroot_exists(int rootfd, const char *path);

/* lstat of PATH in the image (the last component not followed).  0, or -1
 * with errno set. */
int inroot_lstat(int rootfd, const char *path, struct stat *st);

/* "a FIFO", "a symbolic link", "a directory", ... for messages.  Static. */
const char *inroot_type_name(mode_t mode);

/* Resolves PATH the way the booted image would (absolute symlinks start at
 * the image's root) and returns it without symlinks, as "/a/b"; components
 * that do not exist yet are kept as written.  Fails (errnum EXDEV) when PATH
 * holds ".." or a relative symlink in the image climbs above its root, naming
 * the symlink; ELOOP after 40 links.  Caller frees; NULL + err. */
char *inroot_resolve(int rootfd, const char *path, struct af_error **err);

/* ---- directories ---- */

/* Opens directory DIR of the image (O_PATH), creating missing components
 * with exactly MODE (not masked by the umask), owner the engine's.  Returns
 * the fd (caller closes) or -1 + err. */
int inroot_mkdirs(int rootfd, const char *root, const char *dir, mode_t mode, struct af_error **err);

/* The directory holding PATH, resolved in the image (created like
 * inroot_mkdirs with 0755 when CREATE), as an O_PATH fd for the *at calls
 * below; *base gets PATH's last component (caller frees).  PATH must name a
 * file below the root ("/", "." and ".." as last component are EINVAL).
 * Returns the fd (caller closes) or -1 + err. */
int inroot_parent(int rootfd, const char *root, const char *path, bool create, char **base,
		  struct af_error **err);

/* Opens directory PATH of the image for reading (O_RDONLY | O_DIRECTORY,
 * last component not followed), for fdopendir and the *at calls.  Returns
 * the fd (caller closes) or -1 + err (ENOENT when absent). */
int inroot_open_dir(int rootfd, const char *path, struct af_error **err);

/* Makes directory NAME in the directory DFD (SHOWN: its image path, for
 * messages), or takes the directory already there, and sets owner UID:GID
 * and exactly MODE on it.  Returns an O_RDONLY fd of it (caller closes) or
 * -1 + err; something other than a directory at NAME is an error. */
int inroot_mkdirat(int dfd, const char *name, const char *shown, mode_t mode, uid_t uid, gid_t gid,
		   struct af_error **err);

/* ---- reading ---- */

/* Opens PATH of the image read-only after checking, without opening it,
 * that it is a regular file: never a FIFO, socket, device node or symlink.
 * Returns the fd (caller closes) or -1 + err (ENOENT when absent). */
int inroot_open_file(int rootfd, const char *path, struct af_error **err);

/* Reads regular file PATH of the image: at most MAX bytes, else EFBIG.
 * Returns the content, NUL-terminated (caller frees); *len (if LEN) gets its
 * size.  NULL + err (ENOENT when absent).  ROOT is unused (kept for the
 * callers' symmetry with inroot_write). */
char *inroot_read(int rootfd, const char *root, const char *path, size_t max, size_t *len,
		  struct af_error **err);

/* ---- creating ---- */

/* Writes DATA as PATH in the image: parents created (0755), a fresh file
 * under a random name, owner UID:GID and exactly MODE set on its fd, then
 * renamed over PATH (whatever non-directory was there is replaced, never
 * written through).  0 or -1 + err. */
int inroot_write(int rootfd, const char *root, const char *path, const void *data, size_t len, mode_t mode,
		 uid_t uid, gid_t gid, struct af_error **err);

/* Creates a new, empty file DIR/PREFIX<16 random hex digits> in the image
 * with O_EXCL (DIR must exist; it is not created), exactly MODE, owner the
 * engine's.  Returns an O_WRONLY fd (caller closes) and sets *path to its
 * image path (caller frees), or -1 + err. */
int inroot_create_unique(int rootfd, const char *dir, const char *prefix, mode_t mode, char **path,
			 struct af_error **err);

/* Makes the device node or FIFO NAME in directory DFD (SHOWN: its image
 * path): MODE is the type (S_IFCHR, S_IFBLK, S_IFIFO) and permission bits,
 * set exactly, owner UID:GID; made under a random name and renamed over
 * NAME.  0 or -1 + err (a directory at NAME is EISDIR). */
int inroot_mknodat(int dfd, const char *name, const char *shown, mode_t mode, dev_t dev, uid_t uid, gid_t gid,
		   struct af_error **err);

/* Makes NAME in directory DFD (SHOWN: its image path) a symlink to TARGET
 * owned by UID:GID, made under a random name and renamed over NAME.  0 or
 * -1 + err (a directory at NAME is EISDIR). */
int inroot_symlinkat(const char *target, int dfd, const char *name, const char *shown, uid_t uid, gid_t gid,
		     struct af_error **err);

/* ---- deleting ---- */

/* Removes PATH (a file, symlink, node; not followed; not a directory) if it
 * exists.  Returns 1 removed, 0 absent (PATH or its directory), -1 + err. */
int inroot_unlink(int rootfd, const char *root, const char *path, struct af_error **err);

/* Removes everything inside directory DIR of the image if it exists; with
 * KEEP_DIRS the directories below it stay (empty).  Never follows a symlink
 * and refuses to descend into another filesystem mounted below DIR.
 * *removed (if REMOVED) is increased by the non-directories removed.  0 or
 * -1 + err. */
int inroot_empty(int rootfd, const char *dir, bool keep_dirs, size_t *removed, struct af_error **err);

/* Removes the entries of directory DIR of the image whose names match GLOB
 * (fnmatch, FNM_PERIOD), directories excepted; an absent DIR is fine.
 * *removed (if REMOVED) is increased by the entries removed.  0 or -1 +
 * err. */
int inroot_unlink_glob(int rootfd, const char *dir, const char *glob, size_t *removed, struct af_error **err);

#endif
