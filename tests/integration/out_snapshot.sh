#!/bin/bash
# The snapshot stage against fakeaws (EBS direct APIs + EC2, every signature
# checked with botocore): the blocks on the server are the image's non-zero
# blocks (checksums verified by the server on every write and by the client
# on read-back); encrypted snapshots get every block; a build killed with
# SIGKILL mid-upload resumes the same snapshot and sends only the blocks the
# journal does not hold; an expired snapshot is replaced cleanly; throttling,
# 500s and resets on every call type still give exactly one snapshot.
# Incremental snapshots (parent:): after a few blocks of the image change,
# only those are sent (a zeroed block as zeros) over the previous snapshot,
# whose block list the state recorded; the result reads back equal to the
# image through the parent chain; a deleted or refused parent gives a full
# snapshot with a warning; parent: none is full; an explicit parent whose
# list is unknown is read back; SIGKILL mid-incremental resumes the same
# snapshot over the same parent.
# manifest.json: the snapshot stage's own outputs and the image's SHA-256,
# of a file and of a block device.
# Images: allocate+mkfs (a sparse file: SEEK_DATA), and a loop device over a
# file of random data (no SEEK_DATA: every block is read), so no network.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="snapshot-mkfs-image snapshot-incremental-checkpoint snapshot-kill-resume snapshot-expired snapshot-encrypted snapshot-faults
	snapshot-incremental snapshot-incremental-zeroed snapshot-parent-deleted snapshot-parent-refused
	snapshot-parent-none snapshot-parent-readback snapshot-incremental-kill-resume manifest-file-image
	manifest-device-image"
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

out_id() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"]["snapshot.id"])' "$1/manifest.json"; }
out() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"].get(sys.argv[2], ""))' "$1/manifest.json" "$2"; } # STATE FACT
written() { state "s['snapshots']['$1']['written']"; } # SNAP: blocks written to it (not inherited)
# True if snapshot SNAP reads back, block by block through GetSnapshotBlock,
# equal to DEVICE (its first SIZE bytes).
reads_back() { # SNAP DEVICE
	local size
	size=$(blockdev --getsize64 "$2" 2>/dev/null || stat -c %s "$2")
	drv ebs-download "$1" "$WORK/back.img" && cmp -s <(head -c "$size" "$WORK/back.img") "$2"
}
# Writes COUNT 512 KiB blocks of random data (or zeros: ZERO=1) at block
# INDEX of DEVICE, through the device so that its page cache stays true.
put_blocks() { # DEVICE INDEX COUNT
	local src=/dev/urandom
	[ "${ZERO:-0}" = 1 ] && src=/dev/zero
	dd if=$src of="$1" bs=512K seek="$2" count="$3" iflag=fullblock conv=notrunc,fsync status=none
}

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
  - mkfs: {type: ext4, label: "${LABEL:-snap}"}
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
	check manifest-file-image $PY - "$S1/manifest.json" "$snap" "$(sha256sum <"$S1/disk.img" | cut -d' ' -f1)" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
st = m["stages"]
assert st[3]["id"] == "snapshot" and st[3]["outputs"]["snapshot.id"] == sys.argv[2], st[3]
assert "snapshot.id" not in st[2]["outputs"] and "ami" not in m, m
assert m["image"]["sha256"] == sys.argv[3] and m["image"]["size"] == 64 << 20, m["image"]
PY
else
	cat "$BOUT" "$S1"/logs/04-*.log; not_ok snapshot-mkfs-image
fi

# ---- 1b. the recipe changes (a new filesystem): incremental over the first --------
# The first snapshot's block list is the checkpoint taken after mkfs: found
# under its disk key, nothing else recorded, nothing read back.
if [ -n "${snap:-}" ]; then
	lists=$(ls "$S1/checkpoints" | wc -l)
	gets=$(calls GetSnapshotBlock)
	if build "$S1" "$R1" --set LABEL=again; then
		snap1b=$(out_id "$S1")
		echo "# new filesystem: $(out "$S1" snapshot.blocks_sent) blocks sent ($(written "$snap1b")), image $(nonzero_blocks "$S1/disk.img")"
		if [ "$(out "$S1" snapshot.parent)" = "$snap" ] && [ "$(calls GetSnapshotBlock)" = "$gets" ] &&
			grep -q "its block list is recorded" "$S1/logs/04-snapshot.log" &&
			[ "$(ls "$S1/checkpoints" | wc -l)" = $((lists + 1)) ] && reads_back "$snap1b" "$S1/disk.img"; then
			ok snapshot-incremental-checkpoint
		else
			cat "$BOUT" "$S1"/logs/04-*.log; not_ok snapshot-incremental-checkpoint
		fi
	else
		cat "$BOUT" "$S1"/logs/04-*.log; not_ok snapshot-incremental-checkpoint
	fi
else
	not_ok snapshot-incremental-checkpoint
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
      parent: ${PARENT:-auto}
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
journaled=$(journaled_snapshot_blocks "$S2/journal" "$snap1")
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
	# A block device is hashed whole, and its size is its allocation.
	check manifest-device-image $PY - "$S4/manifest.json" "$LOOP" "$(sha256sum <"$LOOP" | cut -d' ' -f1)" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))["image"]
assert i["path"] == sys.argv[2] and i["device"] and i["sha256"] == sys.argv[3], i
assert i["size"] == i["allocated"] == 64 << 20 and i["ctime_ns"] == 0, i
PY
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

control '{"op": "reset"}'

# ---- 6. incremental: a few blocks changed, one zeroed -----------------------------
# The snapshot's stage key changes with its description, as it would with
# any earlier stage; the device keeps the disk key, so the previous
# snapshot's recorded list is found under it (or under its digest).
S6=$WORK/s6
incr() { # STATE DESC [ARGS...]
	build "$1" "$R2" --set DEV="$LOOP" --set PAR=4 --set DESC="$2" "${@:3}"
}
if incr "$S6" gen1; then
	P1=$(out_id "$S6")
	full1=$(out "$S6" snapshot.blocks_sent)
	# Block 5 gets data, 30-31 change, 50 (data) is zeroed.
	put_blocks "$LOOP" 5 1 && put_blocks "$LOOP" 30 2 && ZERO=1 put_blocks "$LOOP" 50 1
	gets=$(calls GetSnapshotBlock)
	if incr "$S6" gen2; then
		P2=$(out_id "$S6")
		w=$(written "$P2")
		sent=$(out "$S6" snapshot.blocks_sent)
		echo "# full snapshot: $full1 blocks; incremental: $sent blocks ($w)"
		if [ "$(out "$S6" snapshot.parent)" = "$P1" ] && [ "$w" = "[5, 30, 31, 50]" ] && [ "$sent" = 4 ] &&
			[ $((sent * 100)) -le $((full1 * 5)) ] && [ "$full1" = "$NWANT" ] &&
			[ "$(calls GetSnapshotBlock)" = "$gets" ] &&
			grep -q "its block list is recorded" "$S6/logs/02-snapshot.log" &&
			[ "$(state "s['snapshots']['$P2']['parent']")" = "$P1" ] && reads_back "$P2" "$LOOP"; then
			ok snapshot-incremental
		else
			cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-incremental
		fi
		# The zeroed block was written as zeros: it reads back as zeros.
		if $PY -c "import sys; sys.exit(0 if 50 in $w else 1)" &&
			[ "$(head -c $((51 * 524288)) "$WORK/back.img" | tail -c 524288 | tr -d '\0' | wc -c)" = 0 ]; then
			ok snapshot-incremental-zeroed
		else
			not_ok snapshot-incremental-zeroed
		fi
	else
		cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-incremental; not_ok snapshot-incremental-zeroed
	fi
else
	cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-incremental; not_ok snapshot-incremental-zeroed
fi

# ---- 7. the parent is gone: a full snapshot, with a warning (in the log and on the terminal)
"$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region eu-west-1 \
	-d "Action=DeleteSnapshot&Version=2016-11-15&SnapshotId=${P2:-none}" >"$WORK/out.del7" 2>&1
put_blocks "$LOOP" 60 1
if incr "$S6" gen3; then
	P3=$(out_id "$S6")
	want=$(nonzero_blocks "$LOOP")
	if [ "$(written "$P3")" = "$want" ] && [ -z "$(out "$S6" snapshot.parent)" ] &&
		grep -q "warning: parent snapshot $P2: it no longer exists; making a full snapshot" "$S6/logs/02-snapshot.log" &&
		grep -q "amiforge: warning: stage 'snapshot': parent snapshot $P2: it no longer exists" "$BOUT" &&
		reads_back "$P3" "$LOOP"; then
		ok snapshot-parent-deleted
	else
		cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-parent-deleted
	fi
else
	cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-parent-deleted
fi

# ---- 8. StartSnapshot refuses the parent: a full one, under another token -----------
put_blocks "$LOOP" 61 1
control '{"op": "fault", "action": "StartSnapshot", "kind": "error", "status": 400, "code": "ValidationException", "message": "The parent snapshot is not usable"}'
starts=$(calls StartSnapshot)
if incr "$S6" gen4; then
	P4=$(out_id "$S6")
	if [ "$(written "$P4")" = "$(nonzero_blocks "$LOOP")" ] && [ -z "$(out "$S6" snapshot.parent)" ] &&
		[ "$(calls StartSnapshot)" = $((starts + 2)) ] &&
		grep -q "StartSnapshot refused the parent snapshot $P3" "$S6/logs/02-snapshot.log" &&
		reads_back "$P4" "$LOOP"; then
		ok snapshot-parent-refused
	else
		cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-parent-refused
	fi
else
	cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-parent-refused
fi

# ---- 9. parent: none ----------------------------------------------------------------
put_blocks "$LOOP" 62 1
if incr "$S6" gen5 --set PARENT=none; then
	P5=$(out_id "$S6")
	if [ "$(written "$P5")" = "$(nonzero_blocks "$LOOP")" ] && [ -z "$(out "$S6" snapshot.parent)" ] &&
		[ "$(state "s['snapshots']['$P5']['parent']")" = None ] && reads_back "$P5" "$LOOP"; then
		ok snapshot-parent-none
	else
		cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-parent-none
	fi
else
	cat "$BOUT" "$S6/logs/02-snapshot.log"; not_ok snapshot-parent-none
fi

# ---- 10. an explicit parent of unknown content is read back -------------------------
# P3 is not the previous run's snapshot (P5 is), and a fresh state knows
# no list at all: its blocks are fetched, only the differences sent.
put_blocks "$LOOP" 63 1
S10=$WORK/s10
gets=$(calls GetSnapshotBlock)
if incr "$S10" gen6 --set PARENT="$P3"; then
	P6=$(out_id "$S10")
	fetched=$(($(calls GetSnapshotBlock) - gets))
	if [ "$(out "$S10" snapshot.parent)" = "$P3" ] && [ "$(written "$P6")" = "[61, 62, 63]" ] &&
		[ "$fetched" = "$(state "len(s['snapshots']['$P3']['blocks'])")" ] &&
		grep -q "reading the snapshot back" "$S10/logs/02-snapshot.log" && reads_back "$P6" "$LOOP"; then
		ok snapshot-parent-readback
	else
		echo "# fetched $fetched"; cat "$BOUT" "$S10/logs/02-snapshot.log"; not_ok snapshot-parent-readback
	fi
else
	cat "$BOUT" "$S10/logs/02-snapshot.log"; not_ok snapshot-parent-readback
fi

# ---- 11. SIGKILL mid-incremental, then resume --------------------------------------
# 90 blocks change (more than a journal batch); the first write stalls
# while the other connection sends the rest; the resumed build continues
# the same snapshot over the same parent (the previous build's) and sends
# only what the journal does not hold.
put_blocks "$LOOP" 20 90
CHANGED=90
S11=$S6
# The snapshot the last start record in STATE's journal names, if it has a parent.
last_incremental() { # STATE
	$PY - "$1/journal" <<'PY'
import json, sys
sid = ""
for line in open(sys.argv[1]):
    r = json.loads(line).get("resource") or {}
    if "generation" in r:
        sid = r["snapshot"] if r.get("parent") else ""
print(sid)
PY
}
snaps_before=$(n_snapshots)
starts=$(calls StartSnapshot)
before=$(calls PutSnapshotBlock)
last=$(last_incremental "$S11")
control '{"op": "fault", "action": "PutSnapshotBlock", "kind": "stall", "seconds": 30, "count": 1}'
"$AMIFORGE" build "$R2" --state "$S11" --set DEV="$LOOP" --set PAR=2 --set DESC=gen7 >"$WORK/out.kill11" 2>&1 &
pid=$!
snap7=
for i in $(seq 300); do
	if [ "$(($(calls PutSnapshotBlock) - before))" -ge "$CHANGED" ]; then
		snap7=$(last_incremental "$S11")
		[ -n "$snap7" ] && [ "$snap7" != "$last" ] && [ "$(journaled_snapshot_blocks "$S11/journal" "$snap7")" -gt 0 ] && break
	fi
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
sleep 0.5
if kill -0 $pid 2>/dev/null; then
	kill -KILL $pid; wait $pid 2>/dev/null; killed=1
else
	wait $pid; killed=0; cat "$WORK/out.kill11"
fi
no_leaks "$S11" || not_ok "no leftovers after the kill"
snap7=$(last_incremental "$S11")
journaled=$(journaled_snapshot_blocks "$S11/journal" "$snap7")
before=$(calls PutSnapshotBlock)
if [ $killed = 1 ] && [ -n "$snap7" ] && build "$S11" "$R2" --set DEV="$LOOP" --set PAR=2 --set DESC=gen7; then
	resent=$(($(calls PutSnapshotBlock) - before))
	echo "# $CHANGED changed blocks, $journaled journaled at the kill, $resent sent on resume"
	if [ "$(out_id "$S11")" = "$snap7" ] && [ "$(out "$S11" snapshot.parent)" = "$P5" ] &&
		[ "$(n_snapshots)" = $((snaps_before + 1)) ] && [ "$(calls StartSnapshot)" = $((starts + 1)) ] &&
		[ "$journaled" -gt 0 ] && [ "$journaled" -lt "$CHANGED" ] && [ "$resent" = $((CHANGED - journaled)) ] &&
		[ "$(written "$snap7")" = "$($PY -c "print(list(range(20, 110)))")" ] &&
		grep -q "resuming snapshot $snap7 (pending, over the parent $P5)" "$S11/logs/02-snapshot.log" &&
		reads_back "$snap7" "$LOOP"; then
		ok snapshot-incremental-kill-resume
	else
		cat "$BOUT" "$S11/logs/02-snapshot.log"; not_ok snapshot-incremental-kill-resume
	fi
else
	cat "$WORK/out.kill11" "$BOUT"; not_ok snapshot-incremental-kill-resume
fi

cp "$S2/journal" "$WORK/out.journal2"
for s in "$S1" "$S2" "$S3" "$S4" "$S5" "$S6" "$S10"; do cat "$s"/logs/*.log >"$WORK/out.logs.${s##*/}" 2>/dev/null; done
check_no_secrets
cleanup_loop
check "no leftovers" bash -c 'for d; do no_leaks "$d" || exit 1; done' _ "$S1" "$S2" "$S3" "$S4" "$S5" "$S6" "$S10"
exit $T_FAILED
