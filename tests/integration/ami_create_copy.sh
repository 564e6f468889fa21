#!/bin/bash
# `amiforge ami create` and `amiforge ami copy` against fakeaws.py (and
# imds.py for the instance this runs on), as a user runs them: create from
# an explicit instance and from IMDS's; tags and expiry on the image and its
# snapshots; --copy-to two regions; --wait at its timeout exits 1 naming the
# pending AMI; --dry-run changes nothing; faults on every call type are
# retried and make no duplicate; copy with tags on the copies and their
# snapshots, launch permissions, the same copy when run again (ClientToken),
# kernel-id warning; a copy across accounts with two credential sets
# (fakeaws maps the second access key to a second account).
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="create-explicit create-json create-tags create-snapshot-tags create-expiry create-imds create-copy-to
create-copy-tags wait-timeout wait-progress create-dry-run copy-dry-run create-faults create-faults-no-duplicate
copy-tags copy-snapshot-tags-need-wait copy-wait-snapshot-tags copy-launch-permissions copy-rerun-same-id
copy-faults copy-faults-no-duplicate copy-kernel-warning copy-usage xacct-unshared-refused xacct-dry-run
xacct-shares-and-copies xacct-copy-owned-by-dest no-secrets"
require_botocore $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

RUN_N=0
# Runs amiforge with ARGS: stdout in $OUT, stderr in $ERR, exit code in RC.
af() {
	RUN_N=$((RUN_N + 1))
	OUT=$WORK/out.a$RUN_N ERR=$WORK/err.a$RUN_N
	"$AMIFORGE" "$@" >"$OUT" 2>"$ERR"
	RC=$?
	return $RC
}
# A python expression on `j` (the JSON in $OUT).
j() { $PY -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$OUT" "$1"; }
# An image or snapshot field from fakeaws's state.
img() { state "s['images']['$1']$2"; }
snap_of() { # AMI: its (first) snapshot, by DescribeImages
	"$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region "$2" \
		-d "Action=DescribeImages&Version=2016-11-15&ImageId.1=$1" | grep -o 'snap-[0-9a-f]*' | head -1
}
snap() { state "s['snapshots']['$1']$2"; }
n_named() { state "len([i for i in s['images'].values() if i['name'] == '$1'])"; }
calls() { state "s['calls'].get('$1', 0)"; }
verdict() { if [ $? = 0 ]; then ok "$1"; else not_ok "$1"; fi; }
inst() { echo "i-0$(printf %s "$1" | sha256sum | cut -c1-16)"; } # fakeaws's instance in REGION
I_EU=$(inst eu-west-1)

# ---- create from an explicit instance ------------------------------------------------
af ami create "$I_EU" --name create-test-1 --tag team=infra --tag purpose=nightly --expire-after 1w --json
check create-explicit [ "$RC" = 0 ] || cat "$ERR"
A1=$(j 'j["image_id"]')
[ "$(j '(j["region"], j["name"], j["instance"], j["copies"])')" = "('eu-west-1', 'create-test-1', '$I_EU', {})" ]
verdict create-json
[ "$(img "$A1" "['tags']['team']")$(img "$A1" "['tags']['purpose']")" = infranightly ]
verdict create-tags
S1=$(snap_of "$A1" eu-west-1)
[ -n "$S1" ] && [ "$(snap "$S1" "['tags'].get('team')")" = infra ] &&
	[ "$(snap "$S1" "['tags'].get('amiforge:expires')")" = "$(j 'j["expires"]')" ]
verdict create-snapshot-tags
want=$(date -u -d '+7 days' +%Y-%m-%d)
[ "$(img "$A1" "['tags']['amiforge:expires']" | cut -c1-10)" = "$want" ] &&
	[ "$(img "$A1" "['deprecation']" | cut -c1-10)" = "$want" ]
verdict create-expiry

# ---- create from the instance this runs on (IMDSv2) ---------------------------------
start_imds --mode v2 --region us-east-2 --instance-id i-0aaaabbbbccccdddd || not_ok "imds starts"
control '{"op": "instance", "region": "us-east-2", "instance_id": "i-0aaaabbbbccccdddd"}'
AWS_EC2_METADATA_DISABLED=false AWS_EC2_METADATA_SERVICE_ENDPOINT=$IMDS af ami create --expires 2030-01-31 --json
[ "$RC" = 0 ] && [ "$(j '(j["instance"], j["region"], j["name"][:19], j["expires"])')" = \
	"('i-0aaaabbbbccccdddd', 'us-east-2', 'i-0aaaabbbbccccdddd', '2030-01-31T00:00:00Z')" ] &&
	[ "$(img "$(j 'j["image_id"]')" "['region']")" = us-east-2 ]
verdict create-imds || cat "$ERR"

# ---- --copy-to two regions, waiting for all -----------------------------------------
control '{"op": "set", "image_pending_polls": 2}'
af ami create "$I_EU" --name create-test-copies --tag team=web --expire-after 30d --copy-to us-east-1 \
	--copy-to us-west-1 --wait 2m --json
A2=$(j 'j["image_id"]') C_E=$(j 'j["copies"]["us-east-1"]') C_W=$(j 'j["copies"]["us-west-1"]')
[ "$RC" = 0 ] && [ "$(img "$C_E" "['region']")$(img "$C_W" "['region']")" = us-east-1us-west-1 ] &&
	[ "$(img "$C_E" "['state']")$(img "$C_W" "['state']")" = availableavailable ]
verdict create-copy-to || cat "$ERR"
ok_tags=1
for c in "$C_E:us-east-1" "$C_W:us-west-1"; do
	s=$(snap_of "${c%%:*}" "${c#*:}")
	[ "$(img "${c%%:*}" "['tags'].get('team')")" = web ] || ok_tags=0
	[ "$(snap "$s" "['tags'].get('team')")" = web ] || ok_tags=0
	[ "$(snap "$s" "['tags'].get('amiforge:expires')")" = "$(j 'j["expires"]')" ] || ok_tags=0
	[ "$(img "${c%%:*}" "['deprecation']" | cut -c1-10)" = "$(j 'j["expires"]' | cut -c1-10)" ] || ok_tags=0
done
check create-copy-tags [ $ok_tags = 1 ]
control '{"op": "set", "image_pending_polls": 0}'

# ---- --wait at its timeout -------------------------------------------------------------
control '{"op": "set", "image_pending_polls": 100000}'
t0=$SECONDS
af ami create "$I_EU" --name create-test-timeout --wait 3s
PENDING=$(state "[i for i, v in s['images'].items() if v['name'] == 'create-test-timeout'][0]")
[ "$RC" = 1 ] && [ $((SECONDS - t0)) -lt 30 ] && grep -q "$PENDING in eu-west-1 (pending)" "$ERR" &&
	grep -q "still not available after" "$ERR"
verdict wait-timeout || cat "$ERR"
check wait-progress grep -q "waiting for 1 of 1 AMI(s) to become available" "$ERR"
control '{"op": "set", "image_pending_polls": 0}'

# ---- dry runs change nothing ---------------------------------------------------------
n_images() { state "len(s['images'])"; }
before=$(n_images)
af ami create "$I_EU" --name create-test-dry --tag a=b --expire-after 2w --copy-to us-east-1 --dry-run
[ "$RC" = 0 ] && grep -q "would create create-test-dry from $I_EU in eu-west-1" "$OUT" &&
	grep -q "would tag it and its snapshots a=b" "$OUT" && grep -q "would copy it to us-east-1" "$OUT" &&
	[ "$(n_images)" = "$before" ] && [ "$(n_named create-test-dry)" = 0 ]
verdict create-dry-run || cat "$OUT" "$ERR"
af ami copy "$A1" --to us-east-2 --dry-run
[ "$RC" = 0 ] && grep -q "would copy $A1 (eu-west-1) to us-east-2 as create-test-1" "$OUT" &&
	[ "$(n_images)" = "$before" ]
verdict copy-dry-run || cat "$OUT" "$ERR"

# ---- faults on every call type: retried, no duplicate --------------------------------
for f in '"action": "CreateImage", "kind": "throttle", "count": 2' '"action": "CreateImage", "kind": "reset"' \
	'"action": "DescribeImages", "kind": "reset"' '"action": "DescribeImages", "kind": "stall", "seconds": 2' \
	'"action": "EnableImageDeprecation", "kind": "error"' '"action": "CopyImage", "kind": "reset"' \
	'"action": "CopyImage", "kind": "throttle"' '"action": "CreateTags", "kind": "error", "status": 503, "code": "ServiceUnavailable"'; do
	control "{\"op\": \"fault\", $f}"
done
control '{"op": "set", "image_pending_polls": 1}'
c0=$(calls CreateImage) p0=$(calls CopyImage)
af ami create "$I_EU" --name create-test-faults --tag team=ops --expire-after 7d --copy-to us-east-1 --wait 2m --json
[ "$RC" = 0 ] && [ $(($(calls CreateImage) - c0)) -ge 4 ] && [ $(($(calls CopyImage) - p0)) -ge 3 ]
verdict create-faults || cat "$ERR"
check create-faults-no-duplicate [ "$(n_named create-test-faults)" = 2 ]
control '{"op": "set", "image_pending_polls": 0}'

# ---- copy: tags, snapshot tags, launch permissions, the same copy again ---------------
"$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region eu-west-1 -d \
	"Action=ModifyImageAttribute&Version=2016-11-15&ImageId=$A1&LaunchPermission.Add.1.UserId=111122223333" >/dev/null
af ami copy "$A1" --to us-east-2 --copy-launch-permissions --json
CP1=$(j 'j["copies"]["us-east-2"]')
[ "$RC" = 0 ] && [ "$(img "$CP1" "['tags'].get('team')")$(img "$CP1" "['tags'].get('purpose')")" = infranightly ] &&
	[ "$(img "$CP1" "['deprecation']")" = "$(img "$A1" "['deprecation']")" ]
verdict copy-tags || cat "$ERR"
check copy-snapshot-tags-need-wait grep -q "snapshots get the source's tags with --wait" "$ERR"
check copy-launch-permissions [ "$(img "$CP1" "['launch_users']")" = "['111122223333']" ]
af ami copy "$A1" --to us-east-2 --json
[ "$RC" = 0 ] && [ "$(j 'j["copies"]["us-east-2"]')" = "$CP1" ] && [ "$(n_named create-test-1)" = 2 ]
verdict copy-rerun-same-id
af ami copy "$A1" --to us-west-2 --name create-test-1-copy --wait 1m
S_CP=$(snap_of "$(awk '{print $2}' "$OUT")" us-west-2)
[ "$RC" = 0 ] && [ "$(snap "$S_CP" "['tags'].get('team')")" = infra ]
verdict copy-wait-snapshot-tags || cat "$ERR"

for f in '"action": "DescribeImages", "kind": "throttle", "count": 2' '"action": "CopyImage", "kind": "reset"' \
	'"action": "CopyImage", "kind": "error"' '"action": "DescribeImageAttribute", "kind": "reset"' \
	'"action": "ModifyImageAttribute", "kind": "throttle"' '"action": "EnableImageDeprecation", "kind": "reset"' \
	'"action": "CreateTags", "kind": "throttle"'; do
	control "{\"op\": \"fault\", $f}"
done
af ami copy "$A1" --to us-west-1 --to eu-west-2 --name create-test-1-faults --copy-launch-permissions --wait 2m --json
check copy-faults [ "$RC" = 0 ] || cat "$ERR"
check copy-faults-no-duplicate [ "$(n_named create-test-1-faults)" = 2 ]

# ---- a paravirtual image: --kernel-id cannot change the copy's kernel -----------------
VOL=vol-0$(printf veu-west-1 | sha256sum | cut -c1-16)
PSNAP=$("$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region eu-west-1 -d \
	"Action=CreateSnapshot&Version=2016-11-15&VolumeId=$VOL" | grep -o 'snap-[0-9a-f]*' | head -1)
PV=$("$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region eu-west-1 -d \
	"Action=RegisterImage&Version=2016-11-15&Name=pv-test&VirtualizationType=paravirtual&KernelId=aki-dc9ed9af&RootDeviceName=/dev/sda1&BlockDeviceMapping.1.DeviceName=/dev/sda1&BlockDeviceMapping.1.Ebs.SnapshotId=$PSNAP" |
	grep -o 'ami-[0-9a-f]*' | head -1)
af ami copy "$PV" --to us-east-1 --kernel-id us-east-1=aki-919dcaf8
[ "$RC" = 0 ] && grep -q "CopyImage cannot set aki-919dcaf8" "$ERR"
verdict copy-kernel-warning || cat "$ERR"
af ami copy "$PV"
r1=$RC
af ami copy "$PV" --to us-east-1 --kms-key eu-west-2=alias/x
check copy-usage [ "$r1$RC" = 22 ]

# ---- across accounts: two credential sets, two accounts ------------------------------
# The default profile is account 123456789012 (fakeaws's --account); profile
# "other" (the second credential set) is account 210987654321.
control "{\"op\": \"account\", \"access_key\": \"$T_AKID2\", \"account\": \"210987654321\"}"
mkdir -p "$HOME/.aws"
umask 077
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n[other]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n' \
	"$T_AKID" "$T_SECRET" "$T_AKID2" "$T_SECRET2" "$T_TOKEN" >"$HOME/.aws/credentials"
(
	unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	af ami create "$I_EU" --profile other --name xacct-src --tag owner=other --expire-after 10d --json
	XSRC=$(j 'j["image_id"]')
	[ "$(img "$XSRC" "['owner']")" = 210987654321 ] || not_ok "xacct: the source is the other account's"
	af ami copy "$XSRC" --source-profile other --to us-east-1
	[ "$RC" = 1 ] && grep -q "cannot see $XSRC in eu-west-1: give --dest-account" "$ERR"
	verdict xacct-unshared-refused || cat "$ERR"
	af ami copy "$XSRC" --source-profile other --dest-account 123456789012 --to us-east-1 --dry-run
	[ "$RC" = 0 ] && grep -q "would share $XSRC (eu-west-1) and its snapshots with account 123456789012" "$OUT" &&
		[ "$(img "$XSRC" "['launch_users']")" = "[]" ] && [ "$(n_named xacct-src)" = 1 ]
	verdict xacct-dry-run || cat "$OUT" "$ERR"
	for f in '"action": "ModifyImageAttribute", "kind": "throttle"' '"action": "ModifySnapshotAttribute", "kind": "reset"' \
		'"action": "DescribeImageAttribute", "kind": "error"'; do
		control "{\"op\": \"fault\", $f}"
	done
	af ami copy "$XSRC" --source-profile other --dest-account 123456789012 --to us-east-1 --wait 1m --json
	XS=$(snap_of "$XSRC" eu-west-1 2>/dev/null)
	XC=$(j 'j["copies"]["us-east-1"]')
	[ "$RC" = 0 ] && [ "$(j 'j["shared_with"]')" = 123456789012 ] &&
		[ "$(img "$XSRC" "['launch_users']")" = "['123456789012']" ] &&
		[ "$(state "[v['volume_users'] for v in s['snapshots'].values() if v['tags'].get('owner') == 'other' and v['region'] == 'eu-west-1']")" = "[['123456789012']]" ]
	verdict xacct-shares-and-copies || cat "$ERR"
	[ "$(img "$XC" "['owner']")" = 123456789012 ] && [ "$(img "$XC" "['tags'].get('owner')")" = other ] &&
		[ "$(img "$XC" "['deprecation']")" = "$(img "$XSRC" "['deprecation']")" ]
	verdict xacct-copy-owned-by-dest
	exit $T_FAILED
) || T_FAILED=1

check no-secrets bash -c '! grep -rlF -e "$1" -e "$2" -e "$3" "$4"/out.* "$4"/err.* 2>/dev/null' _ "$T_SECRET" "$T_SECRET2" "$T_TOKEN" "$WORK"
exit $T_FAILED
