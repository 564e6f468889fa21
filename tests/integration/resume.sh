#!/bin/bash
# Resume: the last stage fails; `build --set PASS=1` reports every earlier
# stage as done without running it and finishes.  --from re-runs from a
# stage; a changed parameter re-runs that stage and what follows only.
. "$(dirname "$0")/lib.sh"
TESTS="first-build-fails failure-names-stage failed-build-manifest resume-skips-done resume-ran-only-gate resume-image from-reruns fresh-quick param-change-quick damaged-checkpoint-falls-back no-leaks"
require_root $TESTS
require_loop $TESTS
require_network $TESTS

S=$WORK/resume R=$RECIPES/resume.yaml
"$AMIFORGE" build "$R" --state "$S" >"$WORK/1.out" 2>"$WORK/1.err"
rc=$?
check first-build-fails test $rc = 1
check failure-names-stage grep -q "stage 8 'gate' (run) failed: command 'test \"0\" = 1'.* exited with status 1" "$WORK/1.err"
# A failed build writes its manifest too: what was made so far, and which stage failed.
check failed-build-manifest python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
assert m["status"] == "failed" and m["failed_stage"] == "gate", m
assert m["outputs"]["root.fstype"] and len(m["stages"]) == 8 and m["stages"][7]["status"] == "failed"
assert m["error"].startswith("stage 8 \x27gate\x27 (run) failed: ") and m["stages"][7]["error"] in m["error"], m["error"]
assert all(s["status"] == "done" for s in m["stages"][:7]) and m["stages"][7]["outputs"] == {}, m["stages"]
assert m["stages"][0]["outputs"]["disk.size"] > 0 and m["stages"][2]["outputs"]["root.fstype"], m["stages"]
# The image as the failing stage left it: hashed, but no disk key names it.
assert m["image"]["sha256"] == sys.argv[2] and "disk_key" not in m["image"], m["image"]
' "$S/manifest.json" "$(sha256sum <"$S/disk.img" | cut -d" " -f1)"

starts_before=$(grep -c '"stage_start"' "$S/journal")
"$AMIFORGE" build "$R" --state "$S" --set PASS=1 >"$WORK/2.out" 2>"$WORK/2.err"
rc=$?
[ $rc = 0 ] || { cat "$WORK/2.out" "$WORK/2.err"; }
check resume-skips-done bash -c '[ $0 = 0 ] && [ $(grep -c "done (cached)" "$1") = 7 ] && grep -q "^\[8/8\] gate .*done" "$1"' $rc "$WORK/2.out"
# Only the gate stage started in the second build.
check resume-ran-only-gate bash -c '[ $(( $(grep -c "\"stage_start\"" "$0") - $1 )) = 1 ] && tail -n 4 "$0" | grep -q "\"stage_start\".*\"gate\""' "$S/journal" "$starts_before"
off=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"]["root.offset"])' "$S/manifest.json")
check resume-image with_image "$S/disk.img" "$off" bash -c 'grep -qx built "$MNT/etc/amiforge-marker"'

"$AMIFORGE" build "$R" --state "$S" --set PASS=1 --from marker >"$WORK/3.out" 2>&1
check from-reruns bash -c '[ $(grep -c "done (cached)" "$0") = 6 ] && grep -q "^\[7/8\] marker .*done  " "$0"' "$WORK/3.out"

# Quick recipe (no network): --fresh re-runs everything; a changed
# parameter in stage 3 re-runs 3..4 and reuses 1..2.
Q=$RECIPES/nodebootstrap.yaml QS=$WORK/quick
"$AMIFORGE" build "$Q" --state "$QS" >/dev/null 2>&1
"$AMIFORGE" build "$Q" --state "$QS" --fresh >"$WORK/q2.out" 2>&1
check fresh-quick bash -c '! grep -q "cached" "$0" && [ $(grep -c " done " "$0") = 4 ]' "$WORK/q2.out"
"$AMIFORGE" build "$Q" --state "$QS" --set LABEL=other >"$WORK/q3.out" 2>&1
off=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["outputs"]["root.offset"])' "$QS/manifest.json")
check param-change-quick bash -c '[ $(grep -c "done (cached)" "$0") = 2 ] && grep -q "^\[3/4\] mkfs .*done  " "$0" && [ "$(blkid -p -O "$2" -o value -s LABEL "$1")" = other ]' "$WORK/q3.out" "$QS/disk.img" "$off"
# A checkpoint whose blocks were damaged (same size, wrong content: the
# compressed data after the 16-byte header) is refused by its hash check,
# dropped, and the build falls back.
find "$QS/checkpoints/blocks" -type f -exec sh -c 'printf garbage | dd of="$1" bs=1 seek=20 conv=notrunc status=none' _ {} \;
"$AMIFORGE" build "$Q" --state "$QS" --set LABEL=third >"$WORK/q4.out" 2>&1
rc=$?
check damaged-checkpoint-falls-back bash -c '[ $0 = 0 ] && grep -q "dropped the damaged checkpoint" "$1" && [ "$(blkid -p -O "$3" -o value -s LABEL "$2")" = third ]' $rc "$WORK/q4.out" "$QS/disk.img" "$off"
check no-leaks no_leaks "$WORK"
exit $T_FAILED
