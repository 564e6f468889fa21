#!/bin/bash
# partition: mbr and gpt (ESP + BIOS boot).  The root filesystem is found at
# the offset the partition stage reports, its table checked with sfdisk, its
# fstab compared with what blkid reads.
. "$(dirname "$0")/lib.sh"
TESTS="mbr-build mbr-table mbr-fstab gpt-build gpt-table gpt-fstab layouts-no-leaks"
require_root $TESTS
require_loop $TESTS
require_network $TESTS

fact() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"][sys.argv[2]])' "$1/manifest.json" "$2"; }

S=$WORK/mbr
if "$AMIFORGE" build "$RECIPES/mbr.yaml" --state "$S" >"$WORK/mbr.out" 2>&1; then ok mbr-build; else cat "$WORK/mbr.out"; not_ok mbr-build; fi
off=$(fact "$S" root.offset)
check mbr-table bash -c 'sfdisk -d "$0" | grep -q "^label: dos" && sfdisk -d "$0" | grep -q "start=        2048, size=.*type=83, bootable" && [ "$1" = 1048576 ]' "$S/disk.img" "$off"
uuid=$(blkid -p -O "$off" -o value -s UUID "$S/disk.img")
check mbr-fstab with_image "$S/disk.img" "$off" bash -c 'awk "\$2==\"/\" {print \$1}" "$MNT/etc/fstab" | grep -qx "UUID=$0"' "$uuid"

S=$WORK/gpt
if "$AMIFORGE" build "$RECIPES/gpt.yaml" --state "$S" >"$WORK/gpt.out" 2>&1; then ok gpt-build; else cat "$WORK/gpt.out"; not_ok gpt-build; fi
off=$(fact "$S" root.offset)
check gpt-table bash -c '
	d=$(sfdisk -d "$0")
	echo "$d" | grep -q "^label: gpt" &&
	echo "$d" | grep -qi "type=21686148-6449-6E6F-744E-656564454649" &&
	echo "$d" | grep -qi "type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B" &&
	echo "$d" | grep -qi "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4" &&
	[ $(( $1 % 1048576 )) = 0 ] && [ "$1" -ge $(( 66 * 1048576 )) ]' "$S/disk.img" "$off"
check gpt-fstab with_image "$S/disk.img" "$off" bash -c 'awk "\$2==\"/\" {print \$1}" "$MNT/etc/fstab" | grep -qx "LABEL=gptroot"'
check layouts-no-leaks no_leaks "$WORK"
exit $T_FAILED
