#!/bin/bash
# The register stage against fakeaws.py: one AMI per region with the right
# attributes (root device, snapshot mapping, volume, ephemeral, ena, sriov,
# boot mode, tpm, imds, architecture, tags on images and snapshots, expiry
# tag and deprecation time, launch permissions for accounts, public and an
# organisation, copies); PV-GRUB AKIs; instance-store from ImageLocation;
# `amiforge status` lists the AMIs; SIGKILL after the AMI exists, then a
# resume reuses it; --fresh adopts the stage's own AMI by its key tag; a
# foreign AMI of the same name stops the build clearly; injected faults are
# retried, or stop the build within its bounds, and never make a duplicate.
# manifest.json: each stage's outputs, the convenience "ami" (copies'
# snapshot ids, expiry, shares), the recipe's SHA-256, its git commit when
# the recipe sits in a git work tree; two register stages both kept; a
# failed build's manifest says what failed and what was made before.
# Root-free: the snapshots come from fakeaws's CreateSnapshot; with the
# snapshot stage, one chain allocate -> mkfs -> snapshot -> register.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="register-build one-ami-per-region ebs-attributes image-and-snapshot-tags deprecation launch-permissions
copies-attributes outputs manifest-stage-outputs manifest-ami manifest-recipe manifest-no-git manifest-git status-lists-amis rerun-cached kill-after-ami resume-reuses-ami fresh-adopts-own-ami
foreign-name-clash-fails pvgrub-table pvgrub-unknown-region instance-store faults-complete faults-no-duplicate
non-retryable-fails-fast resume-after-failure-no-duplicate manifest-failed two-registers-kept snapshot-chain
chain-outputs chain-manifest no-secrets no-leaks"
require_botocore $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

RUN_N=0
# Runs amiforge with ARGS, keeping stdout+stderr in $WORK/out.N (scanned for
# secrets at the end); OUT names the file, RC is the exit code.
af() {
	RUN_N=$((RUN_N + 1))
	OUT=$WORK/out.r$RUN_N
	local t0=$SECONDS
	"$AMIFORGE" "$@" >"$OUT" 2>&1
	RC=$?
	[ -z "${REG_TIMES:-}" ] || echo "# $((SECONDS - t0))s: $*"
	return $RC
}
# EC2 Query call in REGION; the response body on stdout.
ec2() { # REGION BODY
	"$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region "$1" -d "Action=$2&Version=2016-11-15"
}
# A completed snapshot of fakeaws's volume in REGION (us-east-1, us-east-2,
# us-west-1, eu-west-1 have one).
make_snapshot() { # REGION
	local vol=vol-0$(printf v%s "$1" | sha256sum | cut -c1-16)
	ec2 "$1" "CreateSnapshot&VolumeId=$vol" | grep -o 'snap-[0-9a-f]*' | head -1
}
# DescribeImages in REGION for NAME as JSON: a list of images, each a dict of
# the simple fields plus "bdm" (list of dicts) and "tags" (dict).
images() { # REGION NAME
	ec2 "$1" "DescribeImages&Owner.1=self&Filter.1.Name=name&Filter.1.Value.1=$2" | $PY -c '
import json, sys, xml.etree.ElementTree as ET
ns = "{http://ec2.amazonaws.com/doc/2016-11-15/}"
out = []
for item in ET.parse(sys.stdin).getroot().find(ns + "imagesSet"):
    img = {c.tag[len(ns):]: (c.text or "") for c in item if len(c) == 0}
    img["bdm"] = [{c.tag[len(ns):]: (c.text or "") for c in b.iter() if len(c) == 0}
                  for b in item.findall(ns + "blockDeviceMapping/" + ns + "item")]
    img["tags"] = {t.find(ns + "key").text: t.find(ns + "value").text or ""
                   for t in item.findall(ns + "tagSet/" + ns + "item")}
    out.append(img)
print(json.dumps(out))'
}
# Evaluates a python expression on `i` (the images() list), prints it.
jq_() { $PY -c 'import json, sys; i = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
calls() { state "s['calls'].get('$1', 0)"; }
# ok NAME if the last command succeeded (for conditions of several commands).
verdict() { if [ $? = 0 ]; then ok "$1"; else not_ok "$1"; fi; }
recipe() { # FILE NAME STAGE-PARAMS
	printf 'name: %s\narch: x86_64\nstages:\n  - register: %s\n' "$2" "$3" >"$1"
}

# ---- a full EBS registration, copies in two regions ----------------------------
SNAP=$(make_snapshot eu-west-1)
ORG=arn:aws:organizations::123456789012:organization/o-abc123def4
R1=$WORK/r1.yaml S1=$WORK/s1
recipe "$R1" reg-test-1 "{snapshot_id: $SNAP, description: 'a test image', ephemeral: 1, sriov: true,
    boot_mode: uefi, tpm: true, tags: {team: infra, purpose: test}, expire_after: 30d,
    share: [111122223333, public, '$ORG'], copy_to: [us-east-1, us-west-2],
    kms_keys: {us-west-2: 'arn:aws:kms:us-west-2:123456789012:key/abcd'}}"
af build "$R1" --state "$S1"
check register-build [ "$RC" = 0 ] || cat "$OUT"
KEY=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][0]["key"])' "$S1/manifest.json" 2>/dev/null)
eu=$(images eu-west-1 reg-test-1) us=$(images us-east-1 reg-test-1) usw=$(images us-west-2 reg-test-1)
check one-ami-per-region [ "$(jq_ "$eu" 'len(i)')$(jq_ "$us" 'len(i)')$(jq_ "$usw" 'len(i)')" = 111 ]
check ebs-attributes [ "$(jq_ "$eu" '(i[0]["rootDeviceName"], i[0]["rootDeviceType"], i[0]["architecture"],
	i[0]["virtualizationType"], i[0]["enaSupport"], i[0]["sriovNetSupport"], i[0]["bootMode"], i[0]["tpmSupport"],
	i[0]["imdsSupport"], i[0]["imageState"], i[0]["description"], i[0]["kernelId"] if "kernelId" in i[0] else None,
	[(b["deviceName"], b.get("snapshotId"), b.get("volumeType"), b.get("deleteOnTermination"), b.get("virtualName"))
	 for b in i[0]["bdm"]])')" = "('/dev/xvda', 'ebs', 'x86_64', 'hvm', 'true', 'simple', 'uefi', 'v2.0', 'v2.0', 'available', 'a test image', None, [('/dev/xvda', '$SNAP', 'gp3', 'true', None), ('/dev/sdb', None, None, None, 'ephemeral0')])" ]
AMI=$(jq_ "$eu" 'i[0]["imageId"]')
check image-and-snapshot-tags $PY - "$FAKEAWS" "$AMI" "$SNAP" "$KEY" <<'PY'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
img, snap = s["images"][sys.argv[2]], s["snapshots"][sys.argv[3]]
for t in (img["tags"], snap["tags"]):
    assert t["team"] == "infra" and t["purpose"] == "test", t
    assert t["amiforge:stage-key"] == sys.argv[4], t
    assert t["amiforge:expires"].endswith("Z"), t
PY
check deprecation $PY - "$FAKEAWS" <<'PY'
import datetime, json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
imgs = [v for v in s["images"].values() if v["name"] == "reg-test-1"]
assert len(imgs) == 3
for v in imgs:
    exp = datetime.datetime.strptime(v["tags"]["amiforge:expires"], "%Y-%m-%dT%H:%M:%SZ")
    dep = datetime.datetime.strptime(v["deprecation"], "%Y-%m-%dT%H:%M:%S.000Z")
    days = (exp - datetime.datetime.utcnow()).total_seconds() / 86400
    assert 29.9 < days < 30.1, days
    assert exp.replace(second=0) == dep, (exp, dep)
PY
check launch-permissions $PY - "$FAKEAWS" "$ORG" <<'PY'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
imgs = [v for v in s["images"].values() if v["name"] == "reg-test-1"]
for v in imgs:
    assert v["launch_users"] == ["111122223333"] and v["launch_groups"] == ["all"], v
    assert v["launch_orgs"] == [sys.argv[2]], v
PY
[ "$(jq_ "$us" '(i[0]["sourceImageId"], i[0]["sourceImageRegion"], i[0]["bootMode"],
	i[0]["enaSupport"], i[0]["imdsSupport"], i[0]["tags"]["team"], i[0]["tags"]["amiforge:stage-key"] == "'"$KEY"'",
	i[0]["bdm"][0]["snapshotId"] != "'"$SNAP"'")')" = "('$AMI', 'eu-west-1', 'uefi', 'true', 'v2.0', 'infra', True, True)" ] &&
	[ "$(jq_ "$usw" 'i[0]["sourceImageId"]')" = "$AMI" ] &&
	[ "$(state "[v['tags'].get('team') for v in s['snapshots'].values() if v['region'] == 'us-west-2']")" = "['infra']" ]
verdict copies-attributes
check outputs $PY - "$S1/manifest.json" "$AMI" "$(jq_ "$us" 'i[0]["imageId"]')" "$(jq_ "$usw" 'i[0]["imageId"]')" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["outputs"]
assert o["ami.id"] == o["ami.eu-west-1"] == sys.argv[2], o
assert o["ami.us-east-1"] == sys.argv[3] and o["ami.us-west-2"] == sys.argv[4], o
assert o["ami.name"] == "reg-test-1", o
PY
# The manifest: the stage's own outputs, and "ami" with every region's AMI
# and snapshots (a copy has its own), the expiry and the shares.
check manifest-stage-outputs $PY - "$S1/manifest.json" "$AMI" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
st = m["stages"]
assert len(st) == 1 and st[0]["id"] == "register" and st[0]["status"] == "done", st
assert st[0]["outputs"]["ami.id"] == sys.argv[2] and st[0]["outputs"] == m["outputs"], st[0]
PY
EXP=$(state "s['images']['$AMI']['tags']['amiforge:expires']")
check manifest-ami $PY - "$S1/manifest.json" "$AMI" "$SNAP" "$(jq_ "$us" 'i[0]["imageId"]')" \
	"$(jq_ "$us" 'i[0]["bdm"][0]["snapshotId"]')" "$(jq_ "$usw" 'i[0]["imageId"]')" \
	"$(jq_ "$usw" 'i[0]["bdm"][0]["snapshotId"]')" "$EXP" "$ORG" <<'PY'
import json, sys
ami, snap, us, us_snap, usw, usw_snap, exp, org = sys.argv[2:]
a = json.load(open(sys.argv[1]))["ami"]
want = {"id": ami, "name": "reg-test-1", "region": "eu-west-1",
        "regions": {"eu-west-1": ami, "us-east-1": us, "us-west-2": usw},
        "snapshots": {"eu-west-1": [snap], "us-east-1": [us_snap], "us-west-2": [usw_snap]},
        "expires": exp, "shares": ["111122223333", "public", org]}
assert a == want, (a, want)
assert len({snap, us_snap, usw_snap}) == 3
PY
check manifest-recipe $PY - "$S1/manifest.json" "$(realpath "$R1")" "$(sha256sum <"$R1" | cut -d' ' -f1)" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["recipe"] == {"path": sys.argv[2], "sha256": sys.argv[3]}, m["recipe"]
assert m["version"] == 2 and m["status"] == "ok" and m["amiforge_version"], m
assert "image" not in m and "error" not in m and "failed_stage" not in m, m
PY
# $WORK is in no git work tree; a recipe in one gets its commit.
check manifest-no-git $PY -c 'import json, sys; assert "git" not in json.load(open(sys.argv[1]))' "$S1/manifest.json"
if command -v git >/dev/null; then
	G=$WORK/repo
	mkdir -p "$G"
	recipe "$G/r.yaml" reg-test-git "{snapshot_id: $SNAP}"
	git -C "$G" init -q && git -C "$G" add r.yaml &&
		git -C "$G" -c user.name=t -c user.email=t@example.invalid commit -qm recipe
	af build "$G/r.yaml" --state "$WORK/sg"
	[ "$RC" = 0 ] && $PY -c 'import json, sys; g = json.load(open(sys.argv[1]))["git"]; assert g == {"commit": sys.argv[2], "dirty": False}, g' \
		"$WORK/sg/manifest.json" "$(git -C "$G" rev-parse HEAD)"
	verdict manifest-git
else
	skip manifest-git "git is not installed"
fi
af status --state "$S1"
[ "$(grep -c "^  register  *kind=ami.*image_id=ami-" "$OUT")" = 3 ] &&
	grep -q "^remote resources:" "$OUT" && grep -q "kind=ami region=eu-west-1 image_id=$AMI" "$OUT"
verdict status-lists-amis
n=$(calls RegisterImage)
af build "$R1" --state "$S1"
[ "$RC" = 0 ] && [ "$(calls RegisterImage)" = "$n" ] && [ "$(calls CopyImage)" = 2 ]
verdict rerun-cached

# ---- SIGKILL after the AMI exists, then resume --------------------------------
R2=$WORK/r2.yaml S2=$WORK/s2
recipe "$R2" reg-test-2 "{snapshot_id: $SNAP, tags: {team: infra}}"
control '{"op": "set", "image_pending_polls": 3}'
n=$(calls RegisterImage)
"$AMIFORGE" build "$R2" --state "$S2" >"$WORK/out.kill" 2>&1 &
pid=$!
for i in $(seq 200); do
	grep -q '"resource"' "$S2/journal" 2>/dev/null && break
	sleep 0.05
done
if grep -q '"resource"' "$S2/journal" 2>/dev/null && kill -KILL $pid 2>/dev/null; then
	wait $pid 2>/dev/null
	ok kill-after-ami
else
	wait $pid; cat "$WORK/out.kill"; not_ok kill-after-ami
fi
control '{"op": "set", "image_pending_polls": 0}'
af build "$R2" --state "$S2"
[ "$RC" = 0 ] && grep -q "reusing ami-" "$S2"/logs/*register.log &&
	[ "$(calls RegisterImage)" = $((n + 1)) ] && [ "$(jq_ "$(images eu-west-1 reg-test-2)" 'len(i)')" = 1 ]
verdict resume-reuses-ami
af build "$R2" --state "$S2" --fresh
[ "$RC" = 0 ] && grep -q "adopting ami-" "$S2"/logs/*register.log &&
	[ "$(calls RegisterImage)" = $((n + 1)) ] && [ "$(jq_ "$(images eu-west-1 reg-test-2)" 'len(i)')" = 1 ]
verdict fresh-adopts-own-ami

# ---- a foreign AMI of the same name --------------------------------------------
foreign=$(ec2 eu-west-1 "RegisterImage&Name=reg-foreign&Architecture=x86_64&RootDeviceName=/dev/xvda&BlockDeviceMapping.1.DeviceName=/dev/xvda&BlockDeviceMapping.1.Ebs.SnapshotId=$SNAP&VirtualizationType=hvm" |
	grep -o 'ami-[0-9a-f]*')
recipe "$WORK/r3.yaml" reg-foreign "{snapshot_id: $SNAP}"
n=$(calls RegisterImage)
af build "$WORK/r3.yaml" --state "$WORK/s3"
[ "$RC" = 1 ] && grep -q "the AMI name 'reg-foreign' is already used in eu-west-1 by $foreign, which this build did not make" "$OUT" &&
	[ "$(calls RegisterImage)" = "$n" ]
verdict foreign-name-clash-fails

# ---- paravirtual: PV-GRUB AKI ----------------------------------------------------
recipe "$WORK/r4.yaml" reg-test-pv "{snapshot_id: $SNAP, virtualization: paravirtual}"
af build "$WORK/r4.yaml" --state "$WORK/s4"
[ "$RC" = 0 ] && [ "$(jq_ "$(images eu-west-1 reg-test-pv)" '(i[0]["kernelId"], i[0]["virtualizationType"], i[0]["rootDeviceName"], "enaSupport" in i[0])')" = "('aki-dc9ed9af', 'paravirtual', '/dev/sda1', False)" ]
verdict pvgrub-table
SNAP2=$(make_snapshot us-east-2)
recipe "$WORK/r5.yaml" reg-test-pv2 "{snapshot_id: $SNAP2, region: us-east-2, virtualization: paravirtual}"
af build "$WORK/r5.yaml" --state "$WORK/s5"
[ "$RC" = 1 ] && grep -q "no PV-GRUB AKI in us-east-2: not in the built-in table and no Amazon image named 'pv-grub-hd0_1.05-x86_64.gz'; give kernel_id" "$OUT"
verdict pvgrub-unknown-region

# ---- instance-store ----------------------------------------------------------------
recipe "$WORK/r6.yaml" reg-test-s3 "{image_location: amiforge-test/images/reg-test-s3.manifest.xml}"
af build "$WORK/r6.yaml" --state "$WORK/s6"
[ "$RC" = 0 ] && [ "$(jq_ "$(images eu-west-1 reg-test-s3)" '(i[0]["rootDeviceType"], i[0]["imageLocation"], i[0]["bdm"])')" = "('instance-store', 'amiforge-test/images/reg-test-s3.manifest.xml', [])" ]
verdict instance-store

# ---- faults ------------------------------------------------------------------------
R7=$WORK/r7.yaml S7=$WORK/s7
recipe "$R7" reg-test-faults "{snapshot_id: $SNAP, tags: {team: infra}, expire_after: 7d, share: [111122223333], copy_to: [us-east-1]}"
for f in '"action": "RegisterImage", "kind": "throttle", "count": 2' '"action": "DescribeImages", "kind": "reset"' \
	'"action": "CreateTags", "kind": "error"' '"action": "EnableImageDeprecation", "kind": "throttle"' \
	'"action": "ModifyImageAttribute", "kind": "error", "status": 503, "code": "ServiceUnavailable"' \
	'"action": "CopyImage", "kind": "reset"' '"action": "DescribeImages", "kind": "stall", "seconds": 2'; do
	control "{\"op\": \"fault\", $f}"
done
t0=$(date +%s)
af build "$R7" --state "$S7"
[ "$RC" = 0 ] && grep -q "retrying" "$S7"/logs/*register.log
verdict faults-complete
check faults-no-duplicate [ "$(jq_ "$(images eu-west-1 reg-test-faults)" 'len(i)')$(jq_ "$(images us-east-1 reg-test-faults)" 'len(i)')" = 11 ]
R8=$WORK/r8.yaml S8=$WORK/s8
recipe "$R8" reg-test-fail "{snapshot_id: $SNAP, copy_to: [us-east-1]}"
control '{"op": "fault", "action": "CopyImage", "kind": "error", "status": 403, "code": "UnauthorizedOperation", "message": "You are not authorized to perform this operation."}'
t0=$(date +%s)
af build "$R8" --state "$S8"
[ "$RC" = 1 ] && [ $(($(date +%s) - t0)) -lt 30 ] &&
	grep -q "copying ami-[0-9a-f]* to us-east-1: ec2 CopyImage: UnauthorizedOperation" "$OUT"
verdict non-retryable-fails-fast
n=$(calls RegisterImage)
af build "$R8" --state "$S8"
[ "$RC" = 0 ] && [ "$(calls RegisterImage)" = "$n" ] &&
	[ "$(jq_ "$(images eu-west-1 reg-test-fail)" 'len(i)')$(jq_ "$(images us-east-1 reg-test-fail)" 'len(i)')" = 11 ]
verdict resume-after-failure-no-duplicate

# ---- two register stages, the second failing at first ----------------------------
R10=$WORK/r10.yaml S10=$WORK/s10
cat >"$R10" <<EOF
name: reg-test-two
arch: x86_64
stages:
  - register: {snapshot_id: $SNAP, name: reg-test-two-a}
  - register: {snapshot_id: $SNAP, name: reg-test-two-b, copy_to: [us-east-1]}
EOF
control '{"op": "fault", "action": "CopyImage", "kind": "error", "status": 403, "code": "UnauthorizedOperation", "message": "You are not authorized to perform this operation."}'
af build "$R10" --state "$S10"
[ "$RC" = 1 ] && $PY - "$S10/manifest.json" "$(jq_ "$(images eu-west-1 reg-test-two-a)" 'i[0]["imageId"]')" \
	"$(jq_ "$(images eu-west-1 reg-test-two-b)" 'i[0]["imageId"]')" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
a, b = sys.argv[2:]
assert m["status"] == "failed" and m["failed_stage"] == "register-2", m
assert "UnauthorizedOperation" in m["error"] and "register-2" in m["error"], m["error"]
st = m["stages"]
assert [s["status"] for s in st] == ["done", "failed"], st
assert st[0]["outputs"]["ami.id"] == a and st[1]["outputs"] == {}, st
assert "UnauthorizedOperation" in st[1]["error"], st[1]
assert any(r["kind"] == "ami" and r["region"] == "eu-west-1" and r["image_id"] == b
           for r in st[1]["resources"]), st[1]
assert m["ami"]["id"] == a and m["outputs"]["ami.id"] == a, m
PY
verdict manifest-failed
af build "$R10" --state "$S10"
[ "$RC" = 0 ] && $PY - "$S10/manifest.json" "$(jq_ "$(images eu-west-1 reg-test-two-a)" 'i[0]["imageId"]')" \
	"$(jq_ "$(images eu-west-1 reg-test-two-b)" 'i[0]["imageId"]')" "$(jq_ "$(images us-east-1 reg-test-two-b)" 'i[0]["imageId"]')" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
a, b, b_us = sys.argv[2:]
st = m["stages"]
assert m["status"] == "ok" and "error" not in m and [s["cached"] for s in st] == [True, False], m
assert st[0]["outputs"]["ami.id"] == a and st[0]["outputs"]["ami.name"] == "reg-test-two-a", st[0]
assert st[1]["outputs"]["ami.id"] == b and st[1]["outputs"]["ami.us-east-1"] == b_us, st[1]
assert m["outputs"]["ami.id"] == b and m["outputs"]["ami.eu-west-1"] == b, m["outputs"]
assert m["ami"]["id"] == b and m["ami"]["regions"] == {"eu-west-1": b, "us-east-1": b_us}, m["ami"]
PY
verdict two-registers-kept

# ---- the whole chain, when the snapshot stage is there ----------------------------
if "$AMIFORGE" stages 2>/dev/null | grep -q '^snapshot:'; then
	cat >"$WORK/r9.yaml" <<EOF
name: reg-test-chain
arch: x86_64
stages:
  - allocate: {size: 24MiB}
  - mkfs: {type: ext4, label: rootfs}
  - snapshot: {region: eu-west-1}
  - register: {tags: {team: infra}}
EOF
	GITHUB_OUTPUT=$WORK/gh9 af build "$WORK/r9.yaml" --state "$WORK/s9"
	chain=$(images eu-west-1 reg-test-chain)
	sid=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"].get("snapshot.id"))' "$WORK/s9/manifest.json" 2>/dev/null)
	[ "$RC" = 0 ] && [ "$(jq_ "$chain" '(len(i), i[0]["bdm"][0]["snapshotId"])')" = "(1, '$sid')" ]
	verdict snapshot-chain
	[ "$RC" = 0 ] || cat "$OUT"
	# The next CI step reads what was made from $GITHUB_OUTPUT, and a person from the summary.
	ami9=$(jq_ "$chain" 'i[0]["imageId"]')
	grep -qx "ami_id=$ami9" "$WORK/gh9" && grep -qx "snapshot_id=$sid" "$WORK/gh9" &&
		grep -qx "ami_ids={\"eu-west-1\":\"$ami9\"}" "$WORK/gh9" && grep -q "^  ami *$ami9 (eu-west-1)" "$OUT"
	verdict chain-outputs
	# The image the snapshot was made from, as manifest.json describes it.
	$PY - "$WORK/s9/manifest.json" "$(realpath "$WORK/s9/disk.img")" "$(sha256sum <"$WORK/s9/disk.img" | cut -d' ' -f1)" \
		"$(stat -c %s "$WORK/s9/disk.img")" "$ami9" "$sid" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
img, sha, size, ami, sid = sys.argv[2:]
i = m["image"]
assert i["path"] == img and i["sha256"] == sha and i["size"] == int(size) and not i["device"], i
assert 0 < i["allocated"] <= int(size) and i["disk_key"] in [s["key"] for s in m["stages"]], i
assert [s["id"] for s in m["stages"]] == ["allocate", "mkfs", "snapshot", "register"], m["stages"]
assert m["stages"][2]["outputs"]["snapshot.id"] == sid and m["ami"]["snapshots"] == {"eu-west-1": [sid]}, m
assert m["ami"]["id"] == ami and "expires" not in m["ami"] and m["ami"]["shares"] == [], m["ami"]
PY
	verdict chain-manifest
else
	skip snapshot-chain "no snapshot stage in this build"
	skip chain-outputs "no snapshot stage in this build"
	skip chain-manifest "no snapshot stage in this build"
fi

check no-secrets bash -c '! grep -rlF -e "$1" "$2"/out.* "$2"/s*/journal "$2"/s*/logs "$2"/s*/manifest.json 2>/dev/null' _ "$T_SECRET" "$WORK"
check no-leaks no_leaks "$WORK/s"
exit $T_FAILED
