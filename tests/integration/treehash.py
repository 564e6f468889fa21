#!/usr/bin/python3
"""Prints an image's file tree, one line per entry: path, type, mode, owner,
size, and the SHA-256 of regular files or the target of symlinks, sorted.
Two builds of the same recipe must print the same lines; files that
legitimately differ between builds (logs, caches, random seeds, backups,
generated keys) are left out."""
import hashlib, os, stat, sys

VOLATILE = (
    "./var/log", "./var/cache", "./proc", "./sys", "./dev/pts", "./run", "./tmp",
    "./var/lib/dpkg/status-old", "./var/lib/dpkg/available-old", "./var/lib/dpkg/diversions-old",
    "./var/lib/dpkg/statoverride-old", "./etc/machine-id", "./var/lib/dbus/machine-id",
    "./var/lib/systemd/random-seed", "./var/lib/apt/lists", "./etc/ld.so.cache",
    "./var/lib/dhcp", "./lost+found",
)

def volatile(rel):
    return any(rel == v or rel.startswith(v + "/") for v in VOLATILE) or \
        rel.startswith("./etc/ssh/ssh_host_")

def main(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = "./" + os.path.relpath(path, root)
            if volatile(rel):
                continue
            st = os.lstat(path)
            extra = ""
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                extra = h.hexdigest()[:16]
            elif stat.S_ISLNK(st.st_mode):
                extra = "-> " + os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            out.append("%s %o %d:%d %d %s" % (rel, st.st_mode, st.st_uid, st.st_gid, size, extra))
        dirnames[:] = [d for d in dirnames if not volatile("./" + os.path.relpath(os.path.join(dirpath, d), root))]
    out.sort()
    sys.stdout.write("\n".join(out) + "\n")

if __name__ == "__main__":
    main(sys.argv[1])
