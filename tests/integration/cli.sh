#!/bin/bash
# The command line without root: usage errors, validate, stages, plan.
. "$(dirname "$0")/lib.sh"
[ -x "$AMIFORGE" ] || skip_all "no binary at $AMIFORGE" cli

"$AMIFORGE" >/dev/null 2>&1; check no-command-2 test $? = 2
"$AMIFORGE" frobnicate >/dev/null 2>"$WORK/e"; rc=$?
check unknown-command-2 bash -c '[ $0 = 2 ] && grep -q "not an amiforge command" "$1"' $rc "$WORK/e"
"$AMIFORGE" build >/dev/null 2>&1; check build-needs-recipe-2 test $? = 2
"$AMIFORGE" build "$TOP/recipes/debian-12-minimal.yaml" --bogus >/dev/null 2>&1; check bad-option-2 test $? = 2
"$AMIFORGE" build "$TOP/recipes/debian-12-minimal.yaml" --set NOEQUALS >/dev/null 2>"$WORK/e"; rc=$?
check set-needs-equals bash -c '[ $0 = 2 ] && grep -q "VAR=VALUE" "$1"' $rc "$WORK/e"
check help bash -c '"$0" --help | grep -q "^usage: amiforge"' "$AMIFORGE"
check version bash -c '"$0" version | grep -q "^amiforge [0-9]"' "$AMIFORGE"

"$AMIFORGE" stages >"$WORK/stages"
check stages-lists-all bash -c 'for t in allocate debootstrap fstab makedev mkfs partition run; do grep -q "^$t: " "$0" || exit 1; done' "$WORK/stages"

check validate-good "$AMIFORGE" validate "$TOP"/recipes/*.yaml "$TOP"/tests/integration/recipes/*.yaml --set MIRROR=http://127.0.0.1/debian
"$AMIFORGE" validate "$TOP/tests/no-such-recipe.yaml" 2>"$WORK/e"; rc=$?
check validate-missing-65 bash -c '[ $0 = 65 ] && grep -q "no-such-recipe.yaml: cannot read" "$1"' $rc "$WORK/e"

"$AMIFORGE" plan "$RECIPES/nodebootstrap.yaml" --state "$WORK/none" >"$WORK/plan"
check plan-format bash -c '[ $(wc -l <"$0") = 4 ] && grep -qx "1 allocate run [0-9a-f]\{12\}" "$0" && grep -qx "4 makedev run [0-9a-f]\{12\}" "$0"' "$WORK/plan"
"$AMIFORGE" plan "$RECIPES/nodebootstrap.yaml" --state "$WORK/none" --set LABEL=x >"$WORK/plan2"
check plan-key-changes bash -c '[ "$(head -2 "$0")" = "$(head -2 "$1")" ] && [ "$(sed -n 3p "$0")" != "$(sed -n 3p "$1")" ] && [ "$(sed -n 4p "$0")" != "$(sed -n 4p "$1")" ]' "$WORK/plan" "$WORK/plan2"
"$AMIFORGE" build "$RECIPES/nodebootstrap.yaml" --state "$WORK/none" --from nosuch >/dev/null 2>"$WORK/e"; rc=$?
check from-unknown-2 bash -c '[ $0 = 2 ] && grep -q "no stage with that id" "$1"' $rc "$WORK/e"
check status-empty bash -c '"$0" status --state "$1" | grep -q "no build has run here"' "$AMIFORGE" "$WORK/none"
# --version names the commit a checkout was built from.
if git -C "$TOP" rev-parse --git-dir >/dev/null 2>&1; then
	check version-git bash -c '"$0" --version | grep -q "^amiforge [0-9.]* (git [0-9a-f]\{7,\}"' "$AMIFORGE"
else
	skip version-git "not built from a git checkout"
fi
# plan --json: the expanded name, and per stage its type, status, key, words and parameters.
"$AMIFORGE" plan "$RECIPES/nodebootstrap.yaml" --state "$WORK/none" --set LABEL=jsonlabel --json >"$WORK/plan.json"
check plan-json python3 - "$WORK/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
s = p["stages"]
assert p["name"] == "it-quick" and len(s) == 4, p
assert [x["id"] for x in s] == ["allocate", "partition", "mkfs", "makedev"]
assert all(x["status"] == "run" and len(x["key"]) == 64 and x["does"] for x in s)
assert s[2]["params"]["label"] == "jsonlabel" and s[0]["params"]["size"] == 256 << 20
PY
# --profile and --region are taken by the commands that may talk to AWS.
check profile-region-accepted "$AMIFORGE" plan "$RECIPES/nodebootstrap.yaml" --state "$WORK/none" --profile ci --region eu-west-1
"$AMIFORGE" validate "$RECIPES/nodebootstrap.yaml" --profile ci >/dev/null 2>&1; check validate-no-profile-2 test $? = 2
# status --json: from a journal; a resource's secret-looking field is never shown.
check status-json-empty bash -c '"$0" status --state "$1" --json | python3 -c "import json,sys; assert json.load(sys.stdin)[\"built\"] is False"' "$AMIFORGE" "$WORK/none"
mkdir -p "$WORK/js" && chmod 700 "$WORK/js"
cat >"$WORK/js/journal" <<'JOURNAL'
{"v":2,"event":"build_start","recipe":"r.yaml","fresh":false,"pid":1,"time":"2026-12-06T10:00:00Z"}
{"v":2,"event":"stage_start","index":1,"id":"allocate","key":"k1","time":"2026-12-06T10:00:01Z"}
{"v":2,"event":"stage_done","index":1,"id":"allocate","key":"k1","seconds":0.5,"outputs":{"disk.size":1048576},"time":"2026-12-06T10:00:02Z"}
{"v":2,"event":"stage_start","index":2,"id":"snapshot","key":"k2","time":"2026-12-06T10:00:03Z"}
{"v":2,"event":"resource","index":2,"id":"snapshot","key":"k2","resource":{"snapshot":"snap-0123456789abcdef0","session_token":"hidden"},"time":"2026-12-06T10:00:04Z"}
{"v":2,"event":"stage_fail","index":2,"id":"snapshot","key":"k2","seconds":1.5,"error":"it broke","time":"2026-12-06T10:00:05Z"}
{"v":2,"event":"build_end","status":"failed","time":"2026-12-06T10:00:06Z"}
JOURNAL
"$AMIFORGE" status --state "$WORK/js" --json >"$WORK/status.json"
check status-json python3 - "$WORK/status.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["built"] and s["result"] == "failed", s
st = s["stages"]
assert [x["status"] for x in st] == ["done", "failed"] and st[1]["error"] == "it broke", st
assert st[0]["outputs"] == {"disk.size": 1048576}
assert s["resources"] == [{"stage": "snapshot", "resource": {"snapshot": "snap-0123456789abcdef0"}}], s
assert "hidden" not in open(sys.argv[1]).read()
PY
exit $T_FAILED
