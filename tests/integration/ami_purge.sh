#!/bin/bash
# `amiforge ami purge` against fakeaws.py, state made through its control API
# (images with creation dates and expiries in the past, their snapshots,
# instances, launch templates, snapshots with descriptions and start times).
# Cases: a purge needs a reason (exit 2); the report without --yes changes
# nothing and says why each AMI is included or kept; --json parses; --yes
# --dry-run changes nothing; --yes deletes the expired AMIs and their
# snapshots and keeps those in use (an instance, a launch template's
# default or latest version; a terminated instance does not count) and
# those outside --name; --keep-newest and --older-than; --tag; orphan
# snapshots (gone AMI in the description, amiforge tags; young, foreign
# and mapped ones kept); a persistent failure on one DeregisterImage names
# that AMI, the others are done, exit 1; faults on every call type are
# retried, nothing is deleted twice, nothing hangs; kill -9 mid-purge and
# a re-run deletes nothing twice and leaves every AMI deleted or logged.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="purge-needs-reason report-exit-0 report-changes-nothing report-why-included report-why-kept
report-json dry-run-changes-nothing yes-deletes-expired yes-deletes-snapshots yes-keeps-in-use
yes-keeps-unselected rerun-deletes-nothing keep-newest older-than older-and-keep-newest tag-filter
orphans-report orphans-deleted orphans-kept partial-failure-exit-1 partial-failure-named
partial-failure-others-done faults-complete faults-no-duplicates kill-rerun-complete
kill-no-duplicates kill-logged no-secrets"
$PY -c 'import botocore' 2>/dev/null || skip_all "needs python3-botocore (make check installs it)" $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }
REGION=eu-west-1

RUN_N=0
# Runs amiforge ami purge ARGS; stdout in $OUT, stderr in $ERR, RC.
purge() {
	RUN_N=$((RUN_N + 1))
	OUT=$WORK/out.$RUN_N ERR=$WORK/err.$RUN_N
	timeout 120 "$AMIFORGE" ami purge --region $REGION "$@" >"$OUT" 2>"$ERR"
	RC=$?
}
# POSTs JSON to fakeaws's control and prints FIELD of the answer.
ctl() { # JSON FIELD
	$PY - "$FAKEAWS" "$1" "$2" <<'PY'
import json, sys, urllib.request
r = urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/__control", data=sys.argv[2].encode(), method="POST"), timeout=10)
a = json.load(r)
v = a.get(sys.argv[3])
print(" ".join(v) if isinstance(v, list) else v)
PY
}
ago() { date -u -d "@$(($(date +%s) - $1 * 86400))" +%Y-%m-%dT%H:%M:%S.000Z; } # DAYS
ahead() { date -u -d "@$(($(date +%s) + $1 * 86400))" +%Y-%m-%dT%H:%M:%SZ; }    # DAYS
# An AMI NAME created DAYS ago with one snapshot; EXTRA: more JSON fields.
image() { # NAME DAYS [EXTRA]
	ctl "{\"op\": \"image\", \"region\": \"$REGION\", \"name\": \"$1\", \"created\": \"$(ago "$2")\"${3:+, $3}}" image_id
}
calls() { state "s['calls'].get('$1', 0)"; }
exists() { [ "$(state "'$1' in s['snapshots'] or ('$1' in s['images'] and s['images']['$1']['state'] != 'deregistered')")" = True ]; }
gone() { ! exists "$1"; }
all_gone() { local x; for x in "$@"; do gone "$x" || { echo "still there: $x"; return 1; }; done; }
all_there() { local x; for x in "$@"; do exists "$x" || { echo "gone: $x"; return 1; }; done; }
# The images and snapshots fakeaws holds, as one comparable string.
snapshot_state() { state "json.dumps([sorted((k, v['state']) for k, v in s['images'].items()), sorted(s['snapshots'])])"; }
max_deletes() { state "max(list(s['deletes'].values()) or [0])"; }
snap_ids() { state "' '.join(sorted(k for k in s['snapshots']))"; }
json_check() { # FILE EXPR (on r, the parsed report)
	$PY -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"
}
row() { grep -F -- "$1" "$OUT"; } # the report's line for an id
PAST=$(ahead -3) FUTURE=$(ahead 30)

# ---- usage ----
purge --name 'x*'
check purge-needs-reason eval '[ "$RC" = 2 ] && grep -q "needs a reason" "$ERR"'

# ---- expired, in use, selection ----
A1=$(image nightly-a 100 "\"tags\": {\"amiforge:expires\": \"$PAST\"}")
A2=$(image nightly-b 50 "\"deprecation\": \"$(ago 2)\"")
A3=$(image nightly-c 10 "\"tags\": {\"amiforge:expires\": \"$FUTURE\"}")
A4=$(image nightly-d 60 "\"tags\": {\"amiforge:expires\": \"$PAST\"}")
A5=$(image nightly-e 70 "\"tags\": {\"amiforge:expires\": \"$PAST\"}")
A6=$(image nightly-f 80 "\"tags\": {\"amiforge:expires\": \"$PAST\"}, \"snapshots\": 2")
A7=$(image nightly-g 90 "\"tags\": {\"amiforge:expires\": \"$PAST\"}")
A8=$(image other-x 90 "\"tags\": {\"amiforge:expires\": \"$PAST\"}")
control "{\"op\": \"instance\", \"region\": \"$REGION\", \"instance_id\": \"i-0aaaaaaaaaaaaaaa1\", \"image_id\": \"$A4\"}"
control "{\"op\": \"instance\", \"region\": \"$REGION\", \"instance_id\": \"i-0aaaaaaaaaaaaaaa2\", \"image_id\": \"$A7\"}"
ctl "{\"op\": \"instance_state\", \"instance_id\": \"i-0aaaaaaaaaaaaaaa2\", \"state\": \"terminated\"}" ok >/dev/null
LT1=$(ctl "{\"op\": \"launch_template\", \"region\": \"$REGION\", \"name\": \"web\", \"images\": [\"$A5\", \"$A3\"], \"default\": 1}" launch_template_id)
LT2=$(ctl "{\"op\": \"launch_template\", \"region\": \"$REGION\", \"name\": \"api\", \"images\": [\"$A3\", \"$A6\"], \"default\": 1}" launch_template_id)
# A version neither default nor latest does not keep an AMI: A2 is version 2 of 3.
ctl "{\"op\": \"launch_template\", \"region\": \"$REGION\", \"name\": \"old\", \"images\": [\"$A3\", \"$A2\", \"$A3\"], \"default\": 1}" launch_template_id >/dev/null

BEFORE=$(snapshot_state)
purge --expired --name 'nightly-*'
check report-exit-0 [ "$RC" = 0 ]
check report-changes-nothing eval '[ "$(snapshot_state)" = "$BEFORE" ] && [ "$(calls DeregisterImage)$(calls DeleteSnapshot)" = 00 ]'
check report-why-included eval 'row $A1 | grep -q "purge .*expired" && row $A2 | grep -q "purge .*expired" &&
	row $A7 | grep -q "purge .*expired" && grep -q "run again with --yes" "$OUT"'
check report-why-kept eval 'row $A4 | grep -q "keep .*used by instance i-0aaaaaaaaaaaaaaa1" &&
	row $A5 | grep -q "keep .*launch template web ($LT1) version 1 (\$Default)" &&
	row $A6 | grep -q "keep .*launch template api ($LT2) version 2 (\$Latest)" &&
	row $A3 | grep -q "keep" && ! grep -q "$A8" "$OUT"'
purge --expired --name 'nightly-*' --json
check report-json $PY - "$OUT" "$A1 $A2 $A7" "$A3 $A4 $A5 $A6" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
imgs = {i["id"]: i for i in r["regions"][0]["images"]}
assert r["yes"] is False and r["failed"] == [] and r["regions"][0]["region"] == "eu-west-1", r
assert sorted(imgs) == sorted(sys.argv[2].split() + sys.argv[3].split()), imgs
for a in sys.argv[2].split():
    assert imgs[a]["purge"] and imgs[a]["why_included"].startswith("expired") and imgs[a]["result"] == "purge", imgs[a]
    assert imgs[a]["snapshots"] and imgs[a]["expires"].endswith("Z"), imgs[a]
for a in sys.argv[3].split():
    assert not imgs[a]["purge"] and imgs[a]["why_kept"] and imgs[a]["result"] == "keep", imgs[a]
PY
purge --expired --name 'nightly-*' --yes --dry-run
check dry-run-changes-nothing eval '[ "$RC" = 0 ] && [ "$(snapshot_state)" = "$BEFORE" ] && grep -q "would delete" "$OUT"'

purge --expired --name 'nightly-*' --yes
check yes-deletes-expired eval '[ "$RC" = 0 ] && all_gone $A1 $A2 $A7 && row $A1 | grep -q deleted'
SN_DELETED=$(state "' '.join(k for k in s['deletes'] if k.startswith('snap-'))")
check yes-deletes-snapshots eval '[ "$(echo $SN_DELETED | wc -w)" = 3 ] && [ "$(max_deletes)" = 1 ]'
check yes-keeps-in-use all_there $A3 $A4 $A5 $A6
check yes-keeps-unselected all_there $A8
DEL_BEFORE=$(state "sum(s['deletes'].values())")
purge --expired --name 'nightly-*' --yes
check rerun-deletes-nothing eval '[ "$RC" = 0 ] && [ "$(state "sum(s[\"deletes\"].values())")" = "$DEL_BEFORE" ]'

# ---- keep-newest, older-than, tag ----
C1=$(image ci-1 1) C3=$(image ci-3 3) C5=$(image ci-5 5) C7=$(image ci-7 7) C9=$(image ci-9 9 '"tags": {"team": "web"}')
purge --name 'ci-*' --keep-newest 2
check keep-newest eval 'for c in $C1 $C3; do row $c | grep -q "keep .*among the 2 newest" || exit 1; done
	for c in $C5 $C7 $C9; do row $c | grep -q "purge .*beyond the 2 newest" || exit 1; done'
purge --name 'ci-*' --older-than 4d
check older-than eval 'for c in $C1 $C3; do row $c | grep -q "  keep  " || exit 1; done
	for c in $C5 $C7 $C9; do row $c | grep -q "purge .*older than 4d" || exit 1; done'
purge --name 'ci-*' --older-than 4d --keep-newest 4 --yes
check older-and-keep-newest eval '[ "$RC" = 0 ] && all_gone $C9 && all_there $C1 $C3 $C5 $C7'
C11=$(image ci-11 11 '"tags": {"team": "web"}') C12=$(image ci-12 12 '"tags": {"team": "db"}')
purge --name 'ci-*' --tag team=web --older-than 4d --json
check tag-filter json_check "$OUT" "[i['id'] for i in r['regions'][0]['images']] == ['$C11']"

# ---- orphan snapshots ----
orphan() { # DESCRIPTION DAYS [TAGS]
	ctl "{\"op\": \"snapshot\", \"region\": \"$REGION\", \"description\": \"$1\", \"age_days\": $2, \"tags\": {${3:-}}}" snapshot_id
}
O1=$(orphan "Created by CreateImage(i-0123456789abcdef0) for ami-0deadbeefdeadbeef0 from vol-0123" 10)
O2=$(orphan "Copied for DestinationAmi ami-0aaaabbbbccccdddd0 from SourceAmi ami-01234567 for SourceSnapshot snap-01234567. Task created on 1,700,000,000." 10)
O3=$(orphan "amiforge snapshot stage" 10 '"amiforge:stage-key": "abc"')
O4=$(orphan "Created by CreateImage(i-0123456789abcdef0) for ami-0deadbeefdeadbeef1 from vol-0123" 1)
O5=$(orphan "my own backup" 10)
O6=$(orphan "Created by CreateImage(i-0123456789abcdef0) for $A3 from vol-0123" 10)
purge --name 'none-*' --older-than 4d --orphan-snapshots
check orphans-report eval '[ "$RC" = 0 ] && row $O1 | grep -q "purge .*its AMI ami-0deadbeefdeadbeef0 is gone" &&
	row $O2 | grep -q "purge .*ami-0aaaabbbbccccdddd0" && row $O3 | grep -q "purge .*made by amiforge" &&
	row $O4 | grep -q "keep .*younger than 4d" && ! grep -q "$O5\|$O6" "$OUT" && all_there $O1 $O2 $O3'
purge --name 'none-*' --older-than 4d --orphan-snapshots --yes
check orphans-deleted eval '[ "$RC" = 0 ] && all_gone $O1 $O2 $O3'
check orphans-kept all_there $O4 $O5 $O6 $A3

# ---- partial failure: the first DeregisterImage fails for good ----
P=$(for i in 1 2 3; do image "pf-$i" 30 "\"tags\": {\"amiforge:expires\": \"$PAST\"}"; done)
control '{"op": "fault", "action": "DeregisterImage", "kind": "error", "status": 400, "code": "OperationNotPermitted", "count": 1}'
purge --name 'pf-*' --expired --yes --json
check partial-failure-exit-1 [ "$RC" = 1 ]
FAILED=$($PY -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["failed"]))' "$OUT")
check partial-failure-named eval '[ "$(echo $FAILED | wc -w)" = 1 ] && exists $FAILED && grep -q "$FAILED in $REGION: .*OperationNotPermitted" "$ERR"'
check partial-failure-others-done eval 'for p in $P; do [ $p = "$FAILED" ] || gone $p || exit 1; done'

# ---- faults on every call type ----
F=$(for i in 1 2 3 4; do image "flt-$i" 30 "\"tags\": {\"amiforge:expires\": \"$PAST\"}"; done)
FO=$(for i in 1 2; do orphan "Created by CreateImage(i-0123456789abcdef0) for ami-0eeeeeeeeeeeeeee$i from vol-1" 10; done)
for a in DescribeImages DescribeInstances DescribeLaunchTemplateVersions DescribeSnapshots DeregisterImage DeleteSnapshot; do
	control "{\"op\": \"fault\", \"action\": \"$a\", \"kind\": \"throttle\", \"count\": 1}"
	control "{\"op\": \"fault\", \"action\": \"$a\", \"kind\": \"error\", \"count\": 1}"
	control "{\"op\": \"fault\", \"action\": \"$a\", \"kind\": \"reset\", \"count\": 1}"
done
purge --name 'flt-*' --expired --older-than 4d --orphan-snapshots --yes
check faults-complete eval '[ "$RC" = 0 ] && all_gone $F $FO' || cat "$ERR"
check faults-no-duplicates [ "$(max_deletes)" = 1 ]

# ---- kill -9 mid-purge, then run again ----
K=$(for i in 1 2 3 4 5; do image "kill-$i" 30 "\"tags\": {\"amiforge:expires\": \"$PAST\"}"; done)
KO=$(for i in 1 2; do orphan "Created by CreateImage(i-0123456789abcdef0) for ami-0ffffffffffffff0$i from vol-1" 10; done)
# Every image goes; the first orphan snapshot's deletion stalls: kill then.
control '{"op": "fault", "action": "DeleteSnapshot", "kind": "stall", "seconds": 5, "count": 1}'
DS0=$(calls DeleteSnapshot)
"$AMIFORGE" ami purge --region $REGION --name 'kill-*' --expired --older-than 4d --orphan-snapshots --yes \
	>"$WORK/kill.out" 2>"$WORK/kill.err" &
KPID=$!
for i in $(seq 100); do [ "$(calls DeleteSnapshot)" -gt "$DS0" ] && break; sleep 0.1; done
kill -9 $KPID; wait $KPID 2>/dev/null
KILLED_GONE=$(for k in $K $KO; do gone $k && echo $k; done)
purge --name 'kill-*' --expired --older-than 4d --orphan-snapshots --yes
check kill-rerun-complete eval '[ "$RC" = 0 ] && [ -n "$KILLED_GONE" ] && all_gone $K $KO'
check kill-no-duplicates [ "$(max_deletes)" = 1 ]
check kill-logged eval 'for k in $KILLED_GONE; do grep -q "$k" "$WORK/kill.err" || exit 1; done'

check no-secrets eval '! grep -rqF -- "$T_SECRET" "$WORK"/out.* "$WORK"/err.* "$WORK"/kill.*'
exit $T_FAILED
