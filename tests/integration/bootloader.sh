#!/bin/bash
# bootloader: the boot artefacts of each shape, on test recipes with a
# placeholder kernel (boottest.sh boots recipes/debian-12-*.yaml for real):
# - mbr: GRUB boot code in the MBR, the core image in the MBR gap and in
#   /boot/grub/i386-pc, grub.cfg's linux lines with root=LABEL=;
# - gpt with a BIOS boot partition and an ESP: boot code in the protective
#   MBR, the core image in the BIOS boot partition, GRUB's EFI image (PE) on
#   the FAT ESP at EFI/debian/grubx64.efi and EFI/BOOT/BOOTX64.EFI, root=UUID=;
# - pvgrub: menu.lst with root (hd0) (or (hd0,0) on a partitioned disk), the
#   kernel, initrd, console=hvc0 and the fallback entry; a filesystem GRUB
#   legacy cannot read is refused, naming the mkfs option that fixes it.
. "$(dirname "$0")/lib.sh"
TESTS="mbr-build mbr-boot-code mbr-core-in-gap mbr-grub-cfg gpt-build gpt-boot-code gpt-core-in-bios-boot
gpt-esp-binaries gpt-grub-cfg pv-build pv-menu-lst pv-partitioned pv-refuses-fs bootloader-no-leaks"
require_root $TESTS
require_loop $TESTS
require_network $TESTS
for t in mdir mcopy mkfs.vfat; do
	command -v $t >/dev/null || skip_all "needs $t (make check installs dosfstools and mtools)" $TESTS
done
export MTOOLS_SKIP_CHECK=1

fact() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"][sys.argv[2]])' "$1/manifest.json" "$2"; }
build() { # NAME RECIPE [ARGS...]: builds into $WORK/NAME
	local name=$1 recipe=$2; shift 2
	if "$AMIFORGE" build "$RECIPES/$recipe" --state "$WORK/$name" "$@" >"$WORK/$name.out" 2>&1; then
		ok "$name-build"
	else
		tail -30 "$WORK/$name.out"; not_ok "$name-build"
	fi
}
# Bytes [SKIP, SKIP+COUNT) sectors of IMG hold something other than zeros.
nonzero() { [ "$(dd if="$1" bs=512 skip="$2" count="$3" status=none | tr -d '\0' | wc -c)" -gt 0 ]; }
# GRUB's boot.img in sector 0: its "GRUB " string and the 0x55AA signature.
grub_mbr() {
	dd if="$1" bs=512 count=1 status=none | grep -aq "GRUB " &&
		[ "$(dd if="$1" bs=1 skip=510 count=2 status=none | od -An -tx1 | tr -d ' ')" = 55aa ]
}
linux_lines_ok() { # IMG OFFSET ROOTSPEC: every linux line boots root=ROOTSPEC
	with_image "$1" "$2" bash -c '
		n=$(grep -cE "^\s*linux\s" "$MNT/boot/grub/grub.cfg") && [ "$n" -gt 0 ] &&
		[ "$(grep -E "^\s*linux\s" "$MNT/boot/grub/grub.cfg" | grep -c -- " root=$0 ")" = "$n" ] &&
		! grep -q "root=/dev/loop" "$MNT/boot/grub/grub.cfg" &&
		grep -q "console=ttyS0" "$MNT/boot/grub/grub.cfg" && grep -q "console=tty0" "$MNT/boot/grub/grub.cfg" &&
		test -s "$MNT/etc/default/grub.d/amiforge.cfg"' "$3"
}

# ---- mbr: GRUB for BIOS ----
build mbr boot-mbr.yaml
img=$WORK/mbr/disk.img
check mbr-boot-code grub_mbr "$img"
# The core image lives in sectors 1..2047 (the gap before the 1 MiB partition).
mbr_core() { nonzero "$img" 1 2047 && with_image "$img" 1048576 bash -c 'test -s "$MNT/boot/grub/i386-pc/core.img"'; }
check mbr-core-in-gap mbr_core
check mbr-grub-cfg linux_lines_ok "$img" 1048576 LABEL=bootmbr

# ---- gpt: BIOS boot partition + ESP, both firmwares ----
build gpt boot-gpt.yaml
img=$WORK/gpt/disk.img
esp=$(fact "$WORK/gpt" esp.offset)
root=$(fact "$WORK/gpt" root.offset)
uuid=$(fact "$WORK/gpt" root.uuid)
gpt_code() { grub_mbr "$img" && [ "$(fact "$WORK/gpt" bootloader.firmware)" = both ]; }
check gpt-boot-code gpt_code
# The BIOS boot partition is the first MiB after the table (partition stage layout).
check gpt-core-in-bios-boot nonzero "$img" 2048 2048
efi_ok() {
	local p f
	[ "$(blkid -p -O "$esp" -o value -s TYPE "$img")" = vfat ] || return 1
	for p in EFI/debian/grubx64.efi EFI/BOOT/BOOTX64.EFI; do
		f=$WORK/$(basename "$p")
		mcopy -n -i "$img@@$esp" "::/$p" "$f" || return 1
		[ "$(head -c 2 "$f")" = MZ ] || { echo "$p is not a PE image"; return 1; }
	done
	cmp -s "$WORK/grubx64.efi" "$WORK/BOOTX64.EFI"
}
check gpt-esp-binaries efi_ok
check gpt-grub-cfg linux_lines_ok "$img" "$root" "UUID=$uuid"

# ---- pvgrub: menu.lst ----
build pv boot-pv.yaml
menu_ok() { # IMG OFFSET ROOTDEV
	with_image "$1" "$2" bash -c '
		m=$MNT/boot/grub/menu.lst
		grep -qx "default 0" "$m" && grep -qx "fallback 1" "$m" && grep -qx "timeout 0" "$m" &&
		grep -qx "hiddenmenu" "$m" && [ "$(grep -c "^title " "$m")" = 2 ] &&
		[ "$(grep -cx "root $0" "$m")" = 2 ] &&
		grep -qx "kernel /boot/vmlinuz-6.1.0-99-amd64 root=LABEL=bootpv ro console=hvc0" "$m" &&
		grep -qx "initrd /boot/initrd.img-6.1.0-99-amd64" "$m" || { cat "$m"; exit 1; }' "$3"
}
check pv-menu-lst menu_ok "$WORK/pv/disk.img" 0 "(hd0)"
# Partitioned: (hd0,0).  The same recipe with an MBR table.
if "$AMIFORGE" build "$RECIPES/boot-pv.yaml" --state "$WORK/pvmbr" --set TABLE=mbr >"$WORK/pvmbr.out" 2>&1; then
	check pv-partitioned menu_ok "$WORK/pvmbr/disk.img" 1048576 "(hd0,0)"
else
	tail -20 "$WORK/pvmbr.out"; not_ok pv-partitioned
fi
# A default ext4 (64bit, metadata_csum, 256-byte inodes): refused at the bootloader.
"$AMIFORGE" build "$RECIPES/boot-pv.yaml" --state "$WORK/pvbad" --set PVGRUB_FS=false >"$WORK/pvbad.out" 2>&1
rc=$?
if [ $rc = 1 ] && grep -q "stage .* 'bootloader' (bootloader) failed: GRUB legacy (PV-GRUB) cannot read the root filesystem" "$WORK/pvbad.out" &&
	grep -q "feature 64bit" "$WORK/pvbad.out" && grep -q "pvgrub_compatible: true" "$WORK/pvbad.out"; then
	ok pv-refuses-fs
else
	echo "rc=$rc"; tail -10 "$WORK/pvbad.out"; not_ok pv-refuses-fs
fi

check bootloader-no-leaks no_leaks "$WORK"
exit $T_FAILED
