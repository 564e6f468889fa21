#!/bin/bash
# recipes/debian-12-ebs.yaml end to end against fakeaws.py: build, snapshot,
# register with tags and an expiry, shared with an account and copied to a
# second region (both added to a copy of the recipe).  The server's state is
# checked: one snapshot whose content read back equals the image (every
# block's checksum verified on the way), one AMI per region with the right
# attributes, the expiry, the launch permission; nothing secret in any
# output; nothing left on the host.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="ebs-build one-snapshot snapshot-equals-image ami-per-region ami-attributes expiry share copy-attributes manifest-outputs no-secret-in-state no-leaks"
require_root $TESTS
require_loop $TESTS
require_network $TESTS
require_botocore $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

R=$WORK/debian-12-ebs.yaml S=$WORK/ebs
$PY - "$TOP/recipes/debian-12-ebs.yaml" "$R" <<'PY'
import sys
text = open(sys.argv[1]).read()
assert text.rstrip().endswith("expire_after: 90d"), "the recipe's register stage changed shape"
open(sys.argv[2], "w").write(text.rstrip() + "\n      share: ['111122223333']\n      copy_to: [eu-central-1]\n")
PY
OUT=$WORK/out.build
if "$AMIFORGE" build "$R" --state "$S" >"$OUT" 2>&1; then ok ebs-build; else tail -40 "$OUT"; not_ok ebs-build; exit 1; fi

fact() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"][sys.argv[2]])' "$S/manifest.json" "$1"; }
snap=$(fact snapshot.id) ami=$(fact ami.eu-west-1) copy=$(fact ami.eu-central-1)
check one-snapshot [ "$(state "len([k for k, v in s['snapshots'].items() if v['region'] == 'eu-west-1'])")" = 1 ]

# The snapshot read back block by block (GetSnapshotBlock, checksums checked)
# equals the built image, and is zero beyond it.
"$AWSDRV" ebs-download "$snap" "$WORK/snap.img" >"$WORK/out.dl" 2>"$WORK/err.dl"
size=$(stat -c %s "$S/disk.img")
check snapshot-equals-image bash -c 'cmp -n "$2" "$0" "$1" && [ "$(tail -c +$(($2 + 1)) "$1" | tr -d "\0" | wc -c)" = 0 ]' \
	"$S/disk.img" "$WORK/snap.img" "$size"

img() { state "s['images']['$1']$2"; } # ID EXPR
check ami-per-region bash -c '[ "$0" = 2 ]' "$(state "len([i for i, v in s['images'].items() if v['state'] == 'available'])")"
ec2() { "$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region "$1" -d "Action=$2&Version=2016-11-15" 2>>"$WORK/err.ec2"; }
ec2 eu-west-1 "DescribeImages&ImageId.1=$ami" >"$WORK/out.describe"
check ami-attributes bash -c 'f=$0
	grep -q "<rootDeviceName>/dev/xvda</rootDeviceName>" "$f" && grep -q "<snapshotId>$1</snapshotId>" "$f" &&
	grep -q "<enaSupport>true</enaSupport>" "$f" && grep -q "<bootMode>legacy-bios</bootMode>" "$f" &&
	grep -q "<imdsSupport>v2.0</imdsSupport>" "$f" && grep -q "<volumeType>gp3</volumeType>" "$f" &&
	grep -q "<architecture>x86_64</architecture>" "$f" && grep -q "<virtualizationType>hvm</virtualizationType>" "$f"' \
	"$WORK/out.describe" "$snap"
check expiry bash -c '[ "$0" != None ] && [ -n "$0" ] && [ "$1" != None ]' "$(img "$ami" "['deprecation']")" "$(img "$ami" "['tags'].get('amiforge:expires')")"
check share [ "$(img "$ami" "['launch_users'] == ['111122223333']")" = True ]
check copy-attributes bash -c '[ "$0" = eu-central-1 ] && [ "$1" = infra ] && [ "$2" = "$3" ]' \
	"$(img "$copy" "['region']")" "$(img "$copy" "['tags'].get('team')")" "$(img "$copy" "['name']")" "$(img "$ami" "['name']")"
check manifest-outputs bash -c '[ -n "$0" ] && [ -n "$1" ] && [ "$0" != "$1" ] && grep -q "\"snapshot.id\": \"$2\"" "$3"' "$ami" "$copy" "$snap" "$S/manifest.json"
state "s" >"$WORK/out.state"
check_no_secrets
check no-secret-in-state bash -c '! grep -rqF -e "$0" "$1/journal" "$1/manifest.json" "$1/logs"' "$T_SECRET" "$S"
stop_servers
check no-leaks no_leaks "$WORK"
exit $T_FAILED
