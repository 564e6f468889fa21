#!/bin/bash
# The baseline for recipes/debian-12-hvm.yaml: the same image made by hand
# the usual way (truncate, sfdisk, losetup, mkfs, mount, debootstrap with the
# kernel, GRUB and sshd included, files written with printf, grub-install on
# the whole-disk loop, update-grub, cleanup), sharing amiforge's warm package
# cache so that neither side downloads.
# Usage: bench/baseline-shell.sh WORKDIR MIRROR CACHE
set -euo pipefail
work=$1 mirror=$2 cache=$3
img=$work/hvm-baseline.img mnt=$work/hvm-baseline.mnt
mkdir -p "$mnt" "$cache/baseline-debs"
truncate -s 2G "$img"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$img"
unshare -m --propagation private bash -euo pipefail -c '
	img=$1 mnt=$2 mirror=$3 debs=$4
	disk=$(losetup -f --show "$img")
	part=$(losetup -f --show -o 1048576 "$img")
	trap "cd /; umount -R \"$mnt\" 2>/dev/null; losetup -d \"$part\" \"$disk\"" EXIT
	mkfs.ext4 -q -L rootfs "$part"
	mount "$part" "$mnt"
	DEBIAN_FRONTEND=noninteractive debootstrap --variant=minbase \
		--include=systemd-sysv,udev,ifupdown,isc-dhcp-client,sudo,less,openssh-server,curl,linux-image-amd64,grub-pc \
		--cache-dir="$debs" bookworm "$mnt" "$mirror" >/dev/null
	mount -t proc proc "$mnt/proc"; mount --bind /dev "$mnt/dev"; mount -t sysfs sys "$mnt/sys"
	printf "LABEL=rootfs / ext4 defaults 0 1\nproc /proc proc defaults 0 0\n" >"$mnt/etc/fstab"
	printf "auto lo\niface lo inet loopback\nallow-hotplug eth0\niface eth0 inet dhcp\n" >"$mnt/etc/network/interfaces"
	echo debian >"$mnt/etc/hostname"
	chroot "$mnt" useradd -m -s /bin/bash -G sudo admin
	chroot "$mnt" passwd -l admin >/dev/null
	echo "admin ALL=(ALL) NOPASSWD:ALL" >"$mnt/etc/sudoers.d/admin"; chmod 440 "$mnt/etc/sudoers.d/admin"
	printf "PasswordAuthentication no\nPermitRootLogin no\n" >"$mnt/etc/ssh/sshd_config.d/10-baseline.conf"
	rm -f "$mnt"/etc/ssh/ssh_host_*
	printf "GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0 net.ifnames=0\"\nGRUB_DEVICE=LABEL=rootfs\nGRUB_DISABLE_LINUX_UUID=true\n" >>"$mnt/etc/default/grub"
	chroot "$mnt" grub-install --target=i386-pc --modules="part_msdos ext2" "$disk" 2>/dev/null
	# grub-probe follows the loop device to its backing file: make that path
	# resolve inside the chroot too, as hand-written scripts have to.
	mkdir -p "$mnt$(dirname "$img")"; touch "$mnt$img"
	chroot "$mnt" update-grub 2>/dev/null
	rm -f "$mnt$img"
	rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/*.bin "$mnt"/root/.bash_history
	find "$mnt/var/log" -type f -delete
' _ "$img" "$mnt" "$mirror" "$cache/baseline-debs"
