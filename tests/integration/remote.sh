#!/bin/bash
# The remote state store (--remote s3://BUCKET/PREFIX) against s3rver, behind
# tests/servers/s3faults.py (which counts requests, injects faults and adds
# S3's conditional writes that s3rver lacks): a build that failed on state A
# resumes on an empty state B from the store alone, downloading only the
# blocks of the checkpoint it restores; plan and status read the store; a
# second recipe sharing the first stages starts from their checkpoint, also
# while the first build is still running; faults on pushes and pulls are
# retried, a corrupt block is fetched again and then the checkpoint is
# dropped; an unreachable store falls back to local state (or fails with
# --remote-required); a held lease stops a second build with the holder's
# name; nothing in the store holds a secret.  No network: the recipes copy
# files into a fresh filesystem.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="remote-first-build-fails remote-store-filled remote-lease-released remote-plan-fresh-machine
remote-resume-fresh-machine remote-pulled-only-missing remote-image-equals-clean remote-status
remote-shared-recipe remote-parallel-share remote-store-consistent remote-push-faults
remote-pull-corrupt-refetched remote-pull-corrupt-dropped remote-unreachable-falls-back
remote-unreachable-required remote-lease-held remote-lease-stale-taken remote-snapshot-kill-resume-elsewhere
remote-snapshot-incremental-elsewhere remote-no-secrets no-leaks"
require_root $TESTS
require_loop $TESTS
require_botocore $TESTS
require_s3rver $TESTS
start_s3 || { not_ok "s3rver and s3faults start"; exit 1; }
$PY - "http://127.0.0.1:$s3port/amiforge-state" <<'PY'
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="PUT"), timeout=10).read()
PY
STORE=$WORK/s3/amiforge-state  # s3rver keeps KEY as STORE/KEY._S3rver_object
pcontrol() { control "$1" "$PROXY"; }
# Requests the proxy saw: METHOD, and a substring of the path.
count_requests() { # METHOD SUBSTR
	$PY - "$PROXY" "$1" "$2" <<'PY'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
print(sum(1 for r in s["requests"] if r["method"] == sys.argv[2] and sys.argv[3] in r["path"]
          and r["status"] == 200))
PY
}
# The distinct data blocks of a checkpoint list in the store.
list_blocks() { # PREFIX DKEY
	$PY - "$STORE/$1/checkpoints/$2.ckpt._S3rver_object" <<'PY'
import json, sys
print(len({b for b in json.load(open(sys.argv[1]))["blocks"] if b}))
PY
}
# The disk key journaled with stage ID's checkpoint in STATE.
ckpt_key() { # STATE ID
	$PY - "$1/journal" "$2" <<'PY'
import json, sys
k = [json.loads(l)["disk_key"] for l in open(sys.argv[1]) if '"checkpoint"' in l and json.loads(l).get("id") == sys.argv[2]]
print(k[-1] if k else "")
PY
}
# From the journal: a failed build writes no manifest.
root_offset() {
	$PY - "$1/journal" <<'PY'
import json, sys
off = None
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("event") == "stage_done" and "root.offset" in (e.get("outputs") or {}):
        off = e["outputs"]["root.offset"]
print(off)
PY
}
tree_of() { # STATE
	with_image "$1/disk.img" "$(root_offset "$1")" bash -c 'python3 "$0" "$MNT"' "$TOP/tests/integration/treehash.py"
}

# The recipes: a payload of random data, then a gate that fails until
# GATE_DEST names a place it can go (/opt/payload is a file).
RD=$WORK/recipes
mkdir -p "$RD/files"
head -c 3000000 /dev/urandom >"$RD/files/payload"
echo second >"$RD/files/second"
cat >"$RD/remote.yaml" <<'EOF'
name: it-remote
stages:
  - allocate: {size: 256MiB}
  - partition: {table: mbr}
  - mkfs: {label: remote}
  - makedev: {devices: [null, zero]}
  - files: {id: payload, source: files/payload, destination: /opt/payload, owner: "0:0"}
  - files: {id: gate, source: files/second, destination: "${GATE_DEST:-/opt/payload/gate}", owner: "0:0"}
EOF
# Shares stages 1-5 with remote.yaml (same keys: the recipe's name is not in them).
cat >"$RD/other.yaml" <<'EOF'
name: it-remote-other
stages:
  - allocate: {size: 256MiB}
  - partition: {table: mbr}
  - mkfs: {label: remote}
  - makedev: {devices: [null, zero]}
  - files: {id: payload, source: files/payload, destination: /opt/payload, owner: "0:0"}
  - files: {id: extra, source: files/second, destination: /opt/other, owner: "0:0"}
EOF
R=$RD/remote.yaml O=$RD/other.yaml
REMOTE=s3://amiforge-state/ci

# ---- a failed build on A, resumed on an empty B ------------------------------------
A=$WORK/A
"$AMIFORGE" build "$R" --state "$A" --remote "$REMOTE" >"$WORK/a.out" 2>&1
rc=$?
check remote-first-build-fails bash -c '[ $0 = 1 ] && grep -q "stage 6 .gate. (files) failed" "$1"' $rc "$WORK/a.out"
KEY5=$(ckpt_key "$A" payload)
check remote-store-filled bash -c '[ -n "$1" ] && [ -e "$0/ci/checkpoints/$1.ckpt._S3rver_object" ] &&
	[ -e "$0/ci/states/remote/journal._S3rver_object" ] && ls "$0/ci/stages" | grep -q json &&
	[ -d "$0/ci/blocks" ] && [ -e "$0/ci/used/$1._S3rver_object" ] &&
	cmp -s <(grep -v "^$" "$2/journal") "$0/ci/states/remote/journal._S3rver_object"' "$STORE" "$KEY5" "$A"
check remote-lease-released $PY -c 'import json,sys,time; l=json.load(open(sys.argv[1])); sys.exit(l["expires"] > time.time())' \
	"$STORE/ci/states/remote/lease._S3rver_object"
tree_a=$(tree_of "$A")
rm -rf "$A"

B=$WORK/B
"$AMIFORGE" plan "$R" --state "$B" --remote "$REMOTE" >"$WORK/plan.out" 2>&1
check remote-plan-fresh-machine bash -c '[ $(grep -c " done " "$0") = 5 ] && grep -q "^6 gate run " "$0" && [ ! -e "$1" ]' \
	"$WORK/plan.out" "$B"
pcontrol '{"op": "reset"}'
"$AMIFORGE" build "$R" --state "$B" --remote "$REMOTE" --set GATE_DEST=/opt/gate >"$WORK/b.out" 2>&1
rc=$?
check remote-resume-fresh-machine bash -c '[ $0 = 0 ] && [ $(grep -c "done (cached)" "$1") = 5 ] && grep -q "^\[6/6\] gate .*done  " "$1"' \
	$rc "$WORK/b.out"
got=$(count_requests GET /ci/blocks/)
want=$(list_blocks ci "$KEY5")
echo "# blocks fetched: $got, blocks of the restored checkpoint: $want"
check remote-pulled-only-missing test "$got" = "$want" -a "$want" -gt 0
C=$WORK/C
"$AMIFORGE" build "$R" --state "$C" --set GATE_DEST=/opt/gate >"$WORK/c.out" 2>&1 || cat "$WORK/c.out"
tree_b=$(tree_of "$B")
tree_c=$(tree_of "$C")
check remote-image-equals-clean bash -c '[ -n "$0" ] && [ "$0" = "$1" ] && [ "$(echo "$0" | grep -v "opt/gate")" = "$(echo "$2" | grep -v "opt/gate")" ]' \
	"$tree_b" "$tree_c" "$tree_a"
"$AMIFORGE" status "$R" --remote "$REMOTE" >"$WORK/status.out" 2>&1
check remote-status bash -c 'grep -q "^result: ok" "$0" && grep -q "gate .*done" "$0" && grep -q "s3://amiforge-state/ci" "$0"' \
	"$WORK/status.out"

# ---- sharing: another recipe with the same first stages ------------------------------
D=$WORK/D
"$AMIFORGE" build "$O" --state "$D" --remote "$REMOTE" >"$WORK/d.out" 2>&1
rc=$?
check remote-shared-recipe bash -c '[ $0 = 0 ] && [ $(grep -c "done (cached)" "$1") = 5 ] && grep -q "^\[6/6\] extra .*done  " "$1" &&
	grep -q "pulled checkpoint" "$1"' $rc "$WORK/d.out"

# Two recipes at once on a new prefix: the second starts when the first has
# pushed its payload stage, and takes it from the store.
P2=s3://amiforge-state/par
"$AMIFORGE" build "$R" --state "$WORK/P1" --remote "$P2" --set GATE_DEST=/opt/gate >"$WORK/p1.out" 2>&1 &
p1=$!
for i in $(seq 600); do
	ls "$STORE/par/stages" 2>/dev/null | grep -q . && [ "$(ls "$STORE/par/stages" | wc -l)" -ge 5 ] && break
	sleep 0.1
done
"$AMIFORGE" build "$O" --state "$WORK/P2" --remote "$P2" >"$WORK/p2.out" 2>&1
rc2=$?
wait $p1
rc1=$?
check remote-parallel-share bash -c '[ $0 = 0 ] && [ $1 = 0 ] && grep -q "done (cached)" "$2"' $rc1 $rc2 "$WORK/p2.out"
"$AMIFORGE" clean --remote "$P2" --check >"$WORK/check.out" 2>&1
rc=$?
check remote-store-consistent bash -c '[ $0 = 0 ]' $rc || cat "$WORK/check.out"

# ---- faults -------------------------------------------------------------------------
P3=s3://amiforge-state/faults
pcontrol '{"op": "reset"}'
pcontrol '{"op": "fault", "match": "/faults/blocks/", "kind": "slowdown", "count": 3}'
pcontrol '{"op": "fault", "match": "/faults/blocks/", "kind": "500", "count": 2}'
pcontrol '{"op": "fault", "match": "/faults/blocks/", "kind": "reset", "count": 2}'
pcontrol '{"op": "fault", "match": "/faults/states/", "kind": "slowdown", "count": 2}'
"$AMIFORGE" build "$R" --state "$WORK/F1" --remote "$P3" --remote-required --set GATE_DEST=/opt/gate >"$WORK/f1.out" 2>&1
rc=$?
"$AMIFORGE" clean --remote "$P3" --check >"$WORK/f1check.out" 2>&1
rc2=$?
check remote-push-faults bash -c '[ $0 = 0 ] && [ $1 = 0 ]' $rc $rc2 || cat "$WORK/f1.out" "$WORK/f1check.out"

# One corrupt answer: fetched again (and 500s, resets, a throttled listing
# and a stalled write on the way are retried).  Every answer corrupt: the checkpoint
# is dropped and the build plans again (from an earlier one or from scratch).
pcontrol '{"op": "reset"}'
pcontrol '{"op": "fault", "method": "GET", "match": "/faults/blocks/", "kind": "corrupt", "count": 1}'
pcontrol '{"op": "fault", "method": "GET", "match": "/faults/blocks/", "kind": "500", "count": 2}'
pcontrol '{"op": "fault", "method": "GET", "match": "/faults/", "kind": "reset", "count": 2}'
pcontrol '{"op": "fault", "method": "LIST", "match": "faults", "kind": "slowdown", "count": 1}'
pcontrol '{"op": "fault", "method": "PUT", "match": "/faults/", "kind": "stall", "seconds": 20, "count": 1}'
"$AMIFORGE" build "$R" --state "$WORK/F2" --remote "$P3" --set GATE_DEST=/opt/gate2 >"$WORK/f2.out" 2>&1
rc=$?
check remote-pull-corrupt-refetched bash -c '[ $0 = 0 ] && grep -q "does not match its hash; fetching it again" "$1" && grep -q "pulled checkpoint" "$1"' \
	$rc "$WORK/f2.out"
pcontrol '{"op": "reset"}'
pcontrol '{"op": "fault", "method": "GET", "match": "/faults/blocks/", "kind": "corrupt", "count": 100000}'
"$AMIFORGE" build "$R" --state "$WORK/F3" --remote "$P3" --set GATE_DEST=/opt/gate3 >"$WORK/f3.out" 2>&1
rc=$?
pcontrol '{"op": "reset"}'
check remote-pull-corrupt-dropped bash -c '[ $0 = 0 ] && grep -q "is corrupt" "$1" && grep -q "planning again" "$1"' $rc "$WORK/f3.out"

# ---- an unreachable store ---------------------------------------------------------------
DEAD=http://127.0.0.1:$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
AWS_ENDPOINT_URL_S3=$DEAD "$AMIFORGE" build "$R" --state "$WORK/U1" --remote "$REMOTE" --set GATE_DEST=/opt/gate >"$WORK/u1.out" 2>&1
rc=$?
check remote-unreachable-falls-back bash -c '[ $0 = 0 ] && grep -q "going on with local state only" "$1"' $rc "$WORK/u1.out"
AWS_ENDPOINT_URL_S3=$DEAD "$AMIFORGE" build "$R" --state "$WORK/U2" --remote "$REMOTE" --remote-required >"$WORK/u2.out" 2>&1
rc=$?
check remote-unreachable-required bash -c '[ $0 = 69 ] && grep -q "remote store" "$1" && [ ! -e "$2/disk.img" ]' $rc "$WORK/u2.out" "$WORK/U2"

# ---- leases -----------------------------------------------------------------------------
put_lease() { # PREFIX STATE HOLDER PID EXPIRES-IN
	$PY - "http://127.0.0.1:$s3port/amiforge-state/$1/states/$2/lease" "$3" "$4" "$5" <<'PY'
import json, sys, time, urllib.request
body = json.dumps({"v": 1, "holder": sys.argv[2], "pid": int(sys.argv[3]), "boot_id": "elsewhere",
                   "acquired": int(time.time()), "expires": int(time.time()) + int(sys.argv[4])}).encode()
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=body, method="PUT"), timeout=10).read()
PY
}
put_lease ci remote runner-7.example 4242 600
"$AMIFORGE" build "$R" --state "$WORK/L1" --remote "$REMOTE" --remote-wait 2s >"$WORK/l1.out" 2>&1
rc=$?
check remote-lease-held bash -c '[ $0 = 1 ] && grep -q "is held by runner-7.example pid 4242" "$1" && ! grep -q "\[1/6\]" "$1"' $rc "$WORK/l1.out"
put_lease ci remote runner-7.example 4242 -5
"$AMIFORGE" build "$R" --state "$WORK/L2" --remote "$REMOTE" --set GATE_DEST=/opt/gate >"$WORK/l2.out" 2>&1
rc=$?
check remote-lease-stale-taken test $rc = 0

# ---- a snapshot killed on A continues on B; the next one is incremental on E ---------------
# fakeaws serves EC2 and EBS (and knows the S3 key pair), the proxy S3.
start_fakeaws --cred "S3RVER:$T_SECRET" || { not_ok "fakeaws starts"; exit 1; }
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=$T_SECRET AWS_ENDPOINT_URL_S3=$PROXY
calls() { state "s['calls'].get('$1', 0)"; }
output_of() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"].get(sys.argv[2], ""))' "$1/manifest.json" "$2" 2>/dev/null; }
head -c 60000000 /dev/urandom >"$RD/files/big"
cat >"$RD/snap.yaml" <<'EOF'
name: it-remote-snap
stages:
  - allocate: {size: 256MiB}
  - partition: {table: mbr}
  - mkfs: {label: snap}
  - files: {id: big, source: files/big, destination: /opt/big, owner: "0:0"}
  - files: {id: tag, source: files/second, destination: "${TAG_DEST:-/opt/tag}", owner: "0:0"}
  - snapshot: {region: eu-west-1, parallel: 2}
EOF
SN=$RD/snap.yaml P4=s3://amiforge-state/snap
# The first block write stalls: the other connection sends the rest, the
# journal (and through it the store) takes them in batches; then SIGKILL.
control '{"op": "fault", "action": "PutSnapshotBlock", "kind": "stall", "seconds": 30, "count": 1}'
"$AMIFORGE" build "$SN" --state "$WORK/SA" --remote "$P4" >"$WORK/sa.out" 2>&1 &
pid=$!
for i in $(seq 600); do
	grep -q '"blocks"' "$STORE/snap/states/snap/journal._S3rver_object" 2>/dev/null && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
sleep 0.5
killed=0
if kill -0 $pid 2>/dev/null; then kill -KILL $pid; wait $pid 2>/dev/null; killed=1; else wait $pid; cat "$WORK/sa.out"; fi
no_leaks "$WORK/SA" || not_ok "no leftovers after the kill"
snap1=$(state "list(s['snapshots'])[0]" 2>/dev/null)
journaled=$(journaled_snapshot_blocks "$STORE/snap/states/snap/journal._S3rver_object" "$snap1")
rm -rf "$WORK/SA"
before=$(calls PutSnapshotBlock)
"$AMIFORGE" build "$SN" --state "$WORK/SB" --remote "$P4" >"$WORK/sb.out" 2>&1
rc=$?
snap2=$(output_of "$WORK/SB" snapshot.id)
nall=$(output_of "$WORK/SB" snapshot.blocks_sent)
resent=$(($(calls PutSnapshotBlock) - before))
starts=$(calls StartSnapshot)
echo "# snapshot $snap1: $journaled blocks journaled at the kill, $resent sent on the resume elsewhere, $nall in all, $starts StartSnapshot"
check remote-snapshot-kill-resume-elsewhere bash -c '[ $0 = 1 ] && [ $1 = 0 ] && [ -n "$2" ] && [ "$2" = "$3" ] &&
	[ "$4" -gt 0 ] && [ "$5" = $(( $6 - $4 )) ] && [ "$7" = 1 ]' \
	$killed $rc "$snap1" "$snap2" "$journaled" "$resent" "$nall" "$starts" || cat "$WORK/sb.out"
# A later stage edited, built on a third empty state: the parent is the
# snapshot above, its block list came from the store, few blocks go.
rm -rf "$WORK/SB"
before=$(calls PutSnapshotBlock)
"$AMIFORGE" build "$SN" --state "$WORK/SE" --remote "$P4" --set TAG_DEST=/opt/tag2 >"$WORK/se.out" 2>&1
rc=$?
sent=$(($(calls PutSnapshotBlock) - before))
parent=$(output_of "$WORK/SE" snapshot.parent)
echo "# incremental snapshot elsewhere: $sent blocks sent, parent $parent; the full one: $nall"
check remote-snapshot-incremental-elsewhere bash -c '[ $0 = 0 ] && [ "$1" = "$2" ] && [ "$3" -gt 0 ] && [ $(( $3 * 20 )) -le "$4" ] &&
	! grep -q "reading the snapshot back" "$5"' $rc "$parent" "$snap2" "$sent" "$nall" "$WORK/SE/logs/06-snapshot.log" ||
	cat "$WORK/se.out" "$WORK/SE/logs/06-snapshot.log"

check remote-no-secrets bash -c '! grep -rqF -- "$0" "$1"' "$T_SECRET" "$STORE"
stop_servers  # they name $WORK too
check no-leaks no_leaks "$WORK"
exit $T_FAILED
