#!/bin/bash
# The baseline amiforge is measured against: the same steps as
# recipes/debian-12-minimal.yaml done by hand with the usual tools
# (truncate, mkfs, mount -o loop, debootstrap, mknod, fstab), sharing the
# same warm package cache so that neither side downloads.
# Usage: bench/baseline.sh WORKDIR MIRROR CACHE
set -euo pipefail
work=$1 mirror=$2 cache=$3
img=$work/baseline.img mnt=$work/baseline.mnt
mkdir -p "$mnt" "$cache/baseline-debs"
truncate -s 2G "$img"
mkfs.ext4 -q -F -L rootfs "$img"
unshare -m --propagation private bash -euo pipefail -c '
	img=$1 mnt=$2 mirror=$3 debs=$4
	mount -o loop "$img" "$mnt"
	debootstrap --variant=minbase --include=systemd-sysv,ifupdown,isc-dhcp-client,sudo,less \
		--cache-dir="$debs" bookworm "$mnt" "$mirror" >/dev/null
	cd "$mnt/dev"
	for n in "null c 1 3" "zero c 1 5" "full c 1 7" "random c 1 8" "urandom c 1 9" "tty c 5 0" "console c 5 1"; do
		set -- $n; rm -f "$1"; mknod -m 666 "$1" "$2" "$3" "$4"
	done
	chmod 600 console
	printf "LABEL=rootfs / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n" >"$mnt/etc/fstab"
	echo amiforge >"$mnt/etc/hostname"
	cd /
	umount "$mnt"
' _ "$img" "$mnt" "$mirror" "$cache/baseline-debs"
