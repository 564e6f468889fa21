#!/bin/bash
# amiforge ami convert: an instance-store AMI made by the bundle stage (bundle
# -> upload to s3rver -> register on fakeaws.py, paravirtual with the AKI)
# turned into an EBS-backed AMI through the EBS direct APIs.  Checked: the
# snapshot read back block by block (GetSnapshotBlock) equals the image, only
# its non-zero blocks were written; the new AMI keeps the architecture,
# virtualization and kernel, its root is on the snapshot, its name has
# "-ebs", it is tagged amiforge:converted-from; --dry-run (by AMI and by
# s3:// URL) makes nothing; a damaged part is refused by name and its
# snapshot deleted; a wrong --cert is refused; peak RSS stays far below the
# image's size (the image never goes to disk or memory whole).
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="convert-build convert-dry-run convert-dry-run-url convert convert-blocks convert-written convert-ami
convert-rss convert-damaged convert-damaged-cleanup convert-wrong-cert convert-not-instance-store no-leaks"
require_root $TESTS
require_loop $TESTS
require_botocore $TESTS
require_s3rver $TESTS
[ -x /usr/bin/time ] || skip_all "needs /usr/bin/time (GNU time) for the peak RSS" $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

start_s3 || { not_ok "s3rver starts"; exit 1; }
export AWS_ENDPOINT_URL=$FAKEAWS # EC2 on fakeaws, S3 through s3faults (start_s3)
control "{\"op\": \"creds\", \"access_key\": \"S3RVER\", \"secret_key\": \"$T_SECRET\"}"

# 128 MiB: zeros, 60 MiB of random data from 5 MiB on, 1000 random bytes at
# an unaligned offset, zeros to the end (holes in the bundle's sparse tar).
IMG=$WORK/dev.img SIZE=$((128 << 20))
truncate -s $SIZE "$IMG"
head -c 60M /dev/urandom | dd of="$IMG" bs=1M seek=5 conv=notrunc status=none
head -c 1000 /dev/urandom | dd of="$IMG" bs=1 seek=$((100 * 1048576 + 777)) conv=notrunc status=none
LOOP=$(losetup -f --show "$IMG")
trap '[ -n "${LOOP:-}" ] && losetup -d "$LOOP"; stop_servers; cleanup_work' EXIT
cat >"$WORK/cv.yaml" <<YAML
name: it-convert
stages:
  - allocate: {device: $LOOP}
  - bundle: {account: "111122223333", x509: generate, compression: 1}
  - upload: {bucket: images, prefix: cv, create_bucket: true}
  - register: {virtualization: paravirtual}
YAML
S=$WORK/cv
if "$AMIFORGE" build "$WORK/cv.yaml" --state "$S" >"$WORK/out.build" 2>&1; then ok convert-build; else
	tail -30 "$WORK/out.build"; not_ok convert-build; exit 1; fi
fact() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"][sys.argv[2]])' "$S/manifest.json" "$1"; }
ami=$(fact ami.id) loc=$(fact bundle.manifest_location) nparts=$(fact bundle.parts)
KEY=$S/x509/key.pem
echo "# source $ami, s3://$loc, $nparts parts, image $SIZE bytes"
n_snaps() { state "len(s['snapshots'])"; }
n_images() { state "len(s['images'])"; }
conv() { # ARGS...: amiforge ami convert, out in $WORK/out.N, err in $WORK/err.N
	DRV_N=$((DRV_N + 1))
	OUT=$WORK/out.$DRV_N ERR=$WORK/err.$DRV_N
	"$AMIFORGE" ami convert "$@" >"$OUT" 2>"$ERR"
	RC=$?
}

export -f n_snaps n_images state; export FAKEAWS PY
s0=$(n_snaps) i0=$(n_images)
conv "$ami" --key "$KEY" --dry-run
check convert-dry-run bash -c '[ $0 = 0 ] && grep -q "would convert" "$1" && [ "$(n_snaps)" = "$2" ] && [ "$(n_images)" = "$3" ]' \
	"$RC" "$OUT" "$s0" "$i0"
conv "s3://$loc" --key "$KEY" --dry-run --json
check convert-dry-run-url bash -c '[ $0 = 0 ] && $PY -c "import json,sys; d=json.load(open(sys.argv[1])); assert d[\"dry_run\"] and d[\"parts\"] == int(sys.argv[2])" "$1" "$2" &&
	[ "$(n_snaps)" = "$3" ] && [ "$(n_images)" = "$4" ]' "$RC" "$OUT" "$nparts" "$s0" "$i0"

DRV_N=$((DRV_N + 1)) OUT=$WORK/out.$DRV_N ERR=$WORK/err.$DRV_N
/usr/bin/time -f %M -o "$WORK/rss" "$AMIFORGE" ami convert "$ami" --key "$KEY" --json >"$OUT" 2>"$ERR"
RC=$?
if [ $RC = 0 ]; then ok convert; else cat "$ERR"; not_ok convert; fi
jget() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$OUT" "$1"; }
new=$(jget image_id) snap=$(jget snapshot_id) written=$(jget blocks_written)
echo "# converted to $new on $snap, $written blocks written"

drv ebs-download "$snap" "$WORK/back.img"
back=$(cat "$OUT")
check convert-blocks cmp "$IMG" <(head -c $SIZE "$WORK/back.img")
want=$($PY - "$IMG" <<'PY'
import sys
n = 0
with open(sys.argv[1], "rb") as f:
    while b := f.read(524288):
        n += any(b)
print(n)
PY
)
check convert-written [ "$written" = "$want" -a "$back" = "$want blocks" ]

"$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region eu-west-1 \
	-d "Action=DescribeImages&Version=2016-11-15&ImageId.1=$ami&ImageId.2=$new" >"$WORK/out.describe" 2>"$WORK/err.describe"
$PY - "$WORK/out.describe" "$ami" "$new" "$snap" >"$WORK/out.attrs" 2>&1 <<'PY'
import sys, xml.etree.ElementTree as ET
doc = ET.parse(sys.argv[1]).getroot()
ns = doc.tag.split("}")[0] + "}"
imgs = {i.findtext(ns + "imageId"): i for i in doc.iter(ns + "item") if i.find(ns + "imageId") is not None}
src, new = imgs[sys.argv[2]], imgs[sys.argv[3]]
g = lambda i, k: i.findtext(ns + k)
for k in ("architecture", "virtualizationType", "kernelId"):
    assert g(new, k) == g(src, k) and g(new, k), (k, g(new, k), g(src, k))
assert g(src, "rootDeviceType") == "instance-store" and g(new, "rootDeviceType") == "ebs"
assert g(new, "name") == g(src, "name") + "-ebs", g(new, "name")
root = g(new, "rootDeviceName")
bdm = [b for b in new.find(ns + "blockDeviceMapping") if b.findtext(ns + "deviceName") == root]
assert bdm and bdm[0].find(ns + "ebs").findtext(ns + "snapshotId") == sys.argv[4], root
tags = {t.findtext(ns + "key"): t.findtext(ns + "value") for t in new.find(ns + "tagSet")}
assert tags.get("amiforge:converted-from") == sys.argv[2], tags
print("ok", g(new, "name"), root, g(new, "kernelId"))
PY
check convert-ami grep -q "^ok" "$WORK/out.attrs" || cat "$WORK/out.attrs"

rss=$(cat "$WORK/rss")
echo "# peak RSS ${rss} KiB for a $((SIZE >> 20)) MiB image ($nparts parts of 10 MiB)"
check convert-rss [ "$rss" -lt 65536 -a "$rss" -lt $((SIZE / 1024 / 2)) ]

# A damaged part: one byte of the last part flipped in s3rver's store.
part=$(ls "$WORK/s3/images/cv/"*.part.*._S3rver_object | tail -1)
pname=$(basename "$part" ._S3rver_object)
printf '\x5a' | dd of="$part" bs=1 seek=100 conv=notrunc status=none
s1=$(n_snaps) i1=$(n_images)
conv "$ami" --key "$KEY"
check convert-damaged bash -c '[ $0 = 1 ] && grep -q "bundle part .s3://images/cv/$1. is damaged" "$2"' "$RC" "$pname" "$ERR" ||
	cat "$ERR"
check convert-damaged-cleanup bash -c '[ "$(n_snaps)" = "$0" ] && [ "$(n_images)" = "$1" ] && grep -q "deleted the unfinished snapshot" "$2"' \
	"$s1" "$i1" "$ERR"

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/other.key" -out "$WORK/other.pem" -subj /CN=other \
	-days 1 >/dev/null 2>&1
conv "$ami" --key "$KEY" --cert "$WORK/other.pem" --dry-run
check convert-wrong-cert bash -c '[ $0 = 1 ] && grep -q "signature does not verify with certificate" "$1"' "$RC" "$ERR"
conv "$new" --key "$KEY" --dry-run
check convert-not-instance-store bash -c '[ $0 = 1 ] && grep -q "is ebs-backed already" "$1"' "$RC" "$ERR"

check_no_secrets
grep -rl "PRIVATE KEY" "$WORK"/out.* "$WORK"/err.* && not_ok "private key printed"
losetup -d "$LOOP"; LOOP=
stop_servers
check no-leaks no_leaks "$WORK"
exit $T_FAILED
