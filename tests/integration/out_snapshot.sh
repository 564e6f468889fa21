#!/bin/bash
# The snapshot stage against fakeaws (EBS direct APIs + EC2, every signature
# checked with botocore): the blocks on the server are the image's non-zero
# blocks (checksums verified by the server on every write and by the client
# on read-back); encrypted snapshots get every block; a build killed with
# SIGKILL mid-upload resumes the same snapshot and sends only the blocks the
# journal does not hold; an expired snapshot is replaced cleanly; throttling,
# 500s and resets on every call type still give exactly one snapshot.
# Images: allocate+mkfs (a sparse file: SEEK_DATA), and a loop device over a
# file of random data (no SEEK_DATA: every block is read), so no network.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="snapshot-mkfs-image snapshot-kill-resume snapshot-expired snapshot-encrypted snapshot-faults"
require_root $TESTS
require_loop $TESTS
require_botocore $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

LOOP=
cleanup_loop() { [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null; LOOP=; }
trap 'stop_servers; cleanup_loop; cleanup_work' EXIT

calls() { state "s['calls'].get('$1', 0)"; }
n_snapshots() { state "len(s['snapshots'])"; }
server_blocks() { state "s['snapshots']['$1']['blocks']"; } # SNAP

# The indexes of the non-zero 512 KiB blocks of FILE, as a python list.
nonzero_blocks() {
	$PY - "$1" <<'PY'
import sys
B = 524288
out, i = [], 0
with open(sys.argv[1], "rb") as f:
    while True:
        b = f.read(B)
        if not b:
            break
        if b.count(0) != len(b):
            out.append(i)
        i += 1
print(out)
PY
}

# Blocks the journal in STATE holds as acknowledged for snapshot SNAP.
journaled_blocks() { # STATE SNAP
	$PY - "$1/journal" "$2" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    ev = json.loads(line)
    r = ev.get("resource") or {}
    if ev.get("event") == "resource" and r.get("snapshot") == sys.argv[2] and "blocks" in r:
        n += sum(b - a + 1 for a, b in r["blocks"])
print(n)
PY
}

out_id() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"]["snapshot.id"])' "$1/manifest.json"; }

N=0
build() { # STATE RECIPE ARGS...: runs a build, output kept in $WORK/out.N
	N=$((N + 1))
	BOUT=$WORK/out.build$N
	"$AMIFORGE" build "$2" --state "$1" "${@:3}" >"$BOUT" 2>&1
}

# ---- 1. a sparse file image: allocate + mkfs --------------------------------------
R1=$WORK/mkfs.yaml S1=$WORK/s1
cat >"$R1" <<'EOF'
name: it-snap-mkfs
stages:
  - allocate: {size: 64MiB}
  - partition: {table: none}
  - mkfs: {type: ext4, label: snap}
  - snapshot: {region: eu-west-1, description: "it mkfs", tags: {team: infra}, parallel: 3}
EOF
if build "$S1" "$R1"; then
	snap=$(out_id "$S1")
	want=$(nonzero_blocks "$S1/disk.img")
	have=$(server_blocks "$snap")
	drv ebs-download "$snap" "$WORK/back.img"
	tags=$(state "s['snapshots']['$snap']['tags']['team']")
	if [ "$have" = "$want" ] && [ "$(calls PutSnapshotBlock)" = "$(state "len($want)")" ] &&
		cmp -s <(head -c 64M "$WORK/back.img") "$S1/disk.img" && [ "$tags" = infra ] &&
		[ "$(state "s['snapshots']['$snap']['status']")" = completed ] &&
		[ "$(state "s['snapshots']['$snap']['size']")" = 1 ]; then
		ok snapshot-mkfs-image
	else
		echo "# server $have, image $want, tag '$tags'"; cat "$BOUT" "$S1"/logs/04-*.log; not_ok snapshot-mkfs-image
	fi
	# Allocated blocks that are all zero (mke2fs writes some) were not sent.
	grep -q "zero blocks skipped" "$S1/logs/04-snapshot.log" || not_ok "snapshot log has progress lines"
else
	cat "$BOUT" "$S1"/logs/04-*.log; not_ok snapshot-mkfs-image
fi
control '{"op": "reset"}'

# ---- a loop device over random data in known places ------------------------------
# 64 MiB: data in blocks 0-1, 10 and 20-119 (partly), zeros elsewhere.
DATA=$WORK/data.img
truncate -s 64M "$DATA"
head -c 1M /dev/urandom | dd of="$DATA" conv=notrunc status=none
head -c 1000 /dev/urandom | dd of="$DATA" bs=1000 seek=$((10 * 524288 / 1000 + 1)) conv=notrunc status=none
head -c 50M /dev/urandom | dd of="$DATA" bs=512K seek=20 conv=notrunc status=none
LOOP=$(losetup -f --show "$DATA") || { not_ok "loop device"; exit 1; }
WANT=$(nonzero_blocks "$DATA")
NWANT=$($PY -c "print(len($WANT))")
R2=$WORK/dev.yaml
cat >"$R2" <<'EOF'
name: it-snap-dev
stages:
  - allocate: {device: "${DEV}"}
  - snapshot:
      region: eu-west-1
      parallel: ${PAR:-2}
      encrypted: ${ENC:-false}
      description: "${DESC:-it device}"
EOF

# ---- 2. SIGKILL mid-upload, then resume ------------------------------------------
# The first block write stalls for 30 s; the other connection sends the
# rest; the journal takes them in batches.  Kill once the server has seen
# every write, then resume.
S2=$WORK/s2
control '{"op": "fault", "action": "PutSnapshotBlock", "kind": "stall", "seconds": 30, "count": 1}'
"$AMIFORGE" build "$R2" --state "$S2" --set DEV="$LOOP" >"$WORK/out.kill" 2>&1 &
pid=$!
for i in $(seq 300); do
	[ "$(calls PutSnapshotBlock)" -ge "$NWANT" ] && [ -s "$S2/journal" ] && grep -q '"blocks"' "$S2/journal" && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
sleep 0.5
if kill -0 $pid 2>/dev/null; then
	kill -KILL $pid; wait $pid 2>/dev/null
	killed=1
else
	wait $pid; killed=0; cat "$WORK/out.kill"
fi
no_leaks "$S2" || not_ok "no leftovers after the kill"
snap1=$(state "list(s['snapshots'])[0]" 2>/dev/null)
journaled=$(journaled_blocks "$S2" "$snap1")
before=$(calls PutSnapshotBlock)
if [ $killed = 1 ] && build "$S2" "$R2" --set DEV="$LOOP"; then
	snap2=$(out_id "$S2")
	resent=$(($(calls PutSnapshotBlock) - before))
	echo "# $NWANT non-zero blocks, $journaled journaled at the kill, $resent sent on resume"
	if [ "$snap1" = "$snap2" ] && [ "$(n_snapshots)" = 1 ] && [ "$journaled" -gt 0 ] && [ "$journaled" -lt "$NWANT" ] &&
		[ "$resent" = $((NWANT - journaled)) ] && [ "$(server_blocks "$snap2")" = "$WANT" ] &&
		[ "$(calls StartSnapshot)" = 1 ] && grep -q "resuming snapshot $snap1" "$S2/logs/02-snapshot.log"; then
		ok snapshot-kill-resume
	else
		cat "$BOUT" "$S2/logs/02-snapshot.log"; not_ok snapshot-kill-resume
	fi
else
	cat "$BOUT"; not_ok snapshot-kill-resume
fi
control '{"op": "reset"}'

# ---- 3. the journaled snapshot expired: start over, delete it ---------------------
S3=$WORK/s3
control '{"op": "fault", "action": "PutSnapshotBlock", "kind": "stall", "seconds": 30, "count": 1}'
"$AMIFORGE" build "$R2" --state "$S3" --set DEV="$LOOP" --set DESC=expiry >"$WORK/out.kill3" 2>&1 &
pid=$!
for i in $(seq 300); do
	grep -q '"blocks"' "$S3/journal" 2>/dev/null && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
dead=$(state "list(s['snapshots'])[0]" 2>/dev/null)
# AWS cancels a pending snapshot after its Timeout; here it is deleted.
"$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region eu-west-1 \
	-d "Action=DeleteSnapshot&Version=2016-11-15&SnapshotId=$dead" >"$WORK/out.del" 2>&1
before=$(calls PutSnapshotBlock)
if build "$S3" "$R2" --set DEV="$LOOP" --set DESC=expiry; then
	new=$(out_id "$S3")
	resent=$(($(calls PutSnapshotBlock) - before))
	if [ -n "$dead" ] && [ "$new" != "$dead" ] && [ "$(n_snapshots)" = 1 ] && [ "$resent" = "$NWANT" ] &&
		[ "$(server_blocks "$new")" = "$WANT" ] && grep -q "\"abandoned\"" "$S3/journal"; then
		ok snapshot-expired
	else
		echo "# dead $dead new $new resent $resent"; cat "$BOUT"; not_ok snapshot-expired
	fi
else
	cat "$BOUT" "$S3/logs/02-snapshot.log"; not_ok snapshot-expired
fi
control '{"op": "reset"}'

# ---- 4. encrypted: every block is sent, zero ones too ---------------------------
S4=$WORK/s4
if build "$S4" "$R2" --set DEV="$LOOP" --set ENC=true --set PAR=8; then
	snap=$(out_id "$S4")
	all=$(state "list(range(128))")
	if [ "$(server_blocks "$snap")" = "$all" ] && [ "$(calls PutSnapshotBlock)" = 128 ]; then
		ok snapshot-encrypted
	else
		cat "$BOUT"; not_ok snapshot-encrypted
	fi
else
	cat "$BOUT" "$S4/logs/02-snapshot.log"; not_ok snapshot-encrypted
fi
control '{"op": "reset"}'

# ---- 5. faults on every call type -----------------------------------------------
S5=$WORK/s5
for f in '"action": "StartSnapshot", "kind": "throttle", "count": 2' \
	'"action": "StartSnapshot", "kind": "reset", "count": 1' \
	'"action": "PutSnapshotBlock", "kind": "throttle", "count": 3' \
	'"action": "PutSnapshotBlock", "kind": "error", "count": 2' \
	'"action": "PutSnapshotBlock", "kind": "reset", "count": 2' \
	'"action": "CompleteSnapshot", "kind": "error", "count": 1' \
	'"action": "CompleteSnapshot", "kind": "reset", "count": 1' \
	'"action": "DescribeSnapshots", "kind": "throttle", "count": 1' \
	'"action": "DescribeSnapshots", "kind": "error", "count": 1'; do
	control "{\"op\": \"fault\", $f}"
done
control '{"op": "set", "snapshot_pending_polls": 2}'
if build "$S5" "$R2" --set DEV="$LOOP" --set PAR=4 --set DESC=faults; then
	snap=$(out_id "$S5")
	if [ "$(n_snapshots)" = 1 ] && [ "$(server_blocks "$snap")" = "$WANT" ] &&
		[ "$(state "s['snapshots']['$snap']['status']")" = completed ] &&
		grep -q "retrying" "$S5/logs/02-snapshot.log"; then
		ok snapshot-faults
	else
		cat "$BOUT" "$S5/logs/02-snapshot.log"; not_ok snapshot-faults
	fi
else
	cat "$BOUT" "$S5/logs/02-snapshot.log"; not_ok snapshot-faults
fi

cp "$S2/journal" "$WORK/out.journal2"
for s in "$S1" "$S2" "$S3" "$S4" "$S5"; do cat "$s"/logs/*.log >"$WORK/out.logs.${s##*/}" 2>/dev/null; done
check_no_secrets
cleanup_loop
check "no leftovers" bash -c 'for d; do no_leaks "$d" || exit 1; done' _ "$S1" "$S2" "$S3" "$S4" "$S5"
exit $T_FAILED
