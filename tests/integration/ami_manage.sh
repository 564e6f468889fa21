#!/bin/bash
# `amiforge ami list|share|expire|deregister` against fakeaws.py (and, for
# --delete-bundle, s3rver behind s3faults), run as a user would: tables and
# --json, every filter, launch and createVolumePermission for accounts, an
# organization and the public, expiry tags and deprecation set and cleared,
# deregistration with snapshots and S3 bundles; --dry-run changes nothing;
# one unknown AMI among good ones fails alone (named, exit 1); faults on every
# call type are retried without a duplicate; the register stage's
# expire_after in weeks and calendar months.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="list-table list-json list-filters list-all-regions list-expired share-account share-json
share-remove share-public share-org share-dry-run share-usage expire-in expire-at expire-never
expire-dry-run expire-usage dereg-snapshots-partial dereg-dry-run dereg-json dereg-bundle
dereg-bundle-twice dereg-bundle-dry-run faults-retried faults-no-duplicates perm-refused-77
register-expire-2w register-expire-3mo register-expire-invalid no-secrets"
require_botocore $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

RUN_N=0
# Runs amiforge with ARGS: stdout in $OUT, stderr in $ERR (both scanned for
# secrets at the end), RC the exit code.
af() {
	RUN_N=$((RUN_N + 1))
	OUT=$WORK/out.a$RUN_N ERR=$WORK/err.a$RUN_N
	"$AMIFORGE" "$@" >"$OUT" 2>"$ERR"
	RC=$?
	return $RC
}
ec2() { # REGION BODY
	"$AMIFORGE" aws request POST "$FAKEAWS/" --service ec2 --region "$1" -d "Action=$2&Version=2016-11-15"
}
make_snapshot() { # REGION
	local vol=vol-0$(printf v%s "$1" | sha256sum | cut -c1-16)
	ec2 "$1" "CreateSnapshot&VolumeId=$vol" | grep -o 'snap-[0-9a-f]*' | head -1
}
# An EBS AMI named NAME in REGION on a new snapshot; prints its id.
make_ami() { # REGION NAME
	local snap
	snap=$(make_snapshot "$1")
	ec2 "$1" "RegisterImage&Name=$2&Architecture=x86_64&VirtualizationType=hvm&RootDeviceName=/dev/xvda&BlockDeviceMapping.1.DeviceName=/dev/xvda&BlockDeviceMapping.1.Ebs.SnapshotId=$snap" |
		grep -o 'ami-[0-9a-f]*' | head -1
}
snap_of() { ec2 "${2:-eu-west-1}" "DescribeImages&ImageId.1=$1" | grep -o 'snap-[0-9a-f]*' | head -1; }
# The part of fakeaws's state a command may change (not the call counters).
resources() { state "__import__('json').dumps({'i': s['images'], 's': s['snapshots']}, sort_keys=True)"; }
pyj() { $PY -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
# ok NAME if the last command (a chain of conditions) succeeded; returns its status.
cond() { local rc=$?; if [ $rc = 0 ]; then ok "$1"; else not_ok "$1"; fi; return $rc; }
show() { echo "# rc=$RC"; sed 's/^/# out: /' "$OUT"; sed 's/^/# err: /' "$ERR"; }

A1=$(make_ami eu-west-1 web-2026-01) A2=$(make_ami eu-west-1 web-2026-02) A3=$(make_ami eu-west-1 db-2026-01)
A4=$(make_ami us-east-1 web-east)
S1=$(snap_of "$A1") S2=$(snap_of "$A2") S3=$(snap_of "$A3")
ec2 eu-west-1 "CreateTags&ResourceId.1=$A1&Tag.1.Key=team&Tag.1.Value=web" >/dev/null
ec2 eu-west-1 "CreateTags&ResourceId.1=$A3&Tag.1.Key=amiforge:expires&Tag.1.Value=2020-01-01T00:00:00Z" >/dev/null
ACC=111122223333 ACC2=444455556666
ORG=arn:aws:organizations::123456789012:organization/o-abc123def4

# ---- list -------------------------------------------------------------------
af ami list
{ [ "$RC" = 0 ] && head -1 "$OUT" | grep -q '^REGION *ID *NAME *CREATED *EXPIRES *STATE *SNAPSHOTS *SHARING$' &&
	grep -q "^eu-west-1 *$A1 *web-2026-01 .* available *$S1 *-$" "$OUT" &&
	grep -q "$A3 *db-2026-01 .* 2020-01-01T00:00:00Z *available" "$OUT" && ! grep -q "$A4" "$OUT" &&
	[ "$(awk '{print index($0, "CREATED")}' "$OUT" | sort -u | wc -l)" -ge 1 ]; }
cond list-table || show
af ami share "$A1" --account $ACC >/dev/null
af ami list --json
pyj "$OUT" '(len(j), sorted(i["image_id"] for i in j) == sorted(["'"$A1"'", "'"$A2"'", "'"$A3"'"]),
	[(i["name"], i["snapshots"], i["sharing"]["accounts"], i["sharing"]["public"], i["state"], i["region"],
	  i["expires"], i["tags"].get("team")) for i in j if i["image_id"] == "'"$A1"'"][0], bool(j[0]["creation_date"]))' >"$WORK/lj"
[ "$RC" = 0 ] && [ "$(cat "$WORK/lj")" = "(3, True, ('web-2026-01', ['$S1'], ['$ACC'], False, 'available', 'eu-west-1', None, 'web'), True)" ]; cond list-json || { show; cat "$WORK/lj"; }
n1= n2= n3= n4=
n1= n2= n3= n4=
af ami list --json --name 'web-*' && n1=$(pyj "$OUT" 'sorted(i["name"] for i in j)')
af ami list --json --tag team=web && n2=$(pyj "$OUT" '[i["name"] for i in j]')
af ami list --json --tag team && n3=$(pyj "$OUT" '[i["name"] for i in j]')
af ami list --json --name 'web-*' --tag team=db && n4=$(pyj "$OUT" 'len(j)')
[ "$n1" = "['web-2026-01', 'web-2026-02']" ] && [ "$n2" = "['web-2026-01']" ] && [ "$n3" = "['web-2026-01']" ] && [ "$n4" = 0 ]; cond list-filters ||
	echo "# $n1 $n2 $n3 $n4"
af ami list --json --all-regions
[ "$RC" = 0 ] && [ "$(pyj "$OUT" 'sorted((i["region"], i["name"]) for i in j if i["name"] == "web-east")')" = "[('us-east-1', 'web-east')]" ]; cond list-all-regions ||
	show
af ami list --expired
[ "$RC" = 0 ] && [ "$(grep -c ami- "$OUT")" = 1 ] && grep -q "$A3" "$OUT"; cond list-expired || show

# ---- share ------------------------------------------------------------------
af ami share "$A2" --account $ACC --account $ACC2
[ "$RC" = 0 ] &&
	[ "$(state "(s['images']['$A2']['launch_users'], s['snapshots']['$S2']['volume_users'])")" = "(['$ACC', '$ACC2'], ['$ACC', '$ACC2'])" ] &&
	grep -q "^shared $A2$" "$OUT" && grep -q "^shared $S2$" "$OUT"; cond share-account || show
af ami share "$A2" --account $ACC2 --remove --json
[ "$RC" = 0 ] && [ "$(pyj "$OUT" '(j["image_id"], j["operation"], j["accounts"], j["changed"], j["failed"], j["dry_run"])')" = "('$A2', 'remove', ['$ACC2'], ['$A2', '$S2'], [], False)" ]; cond share-json || show
[ "$(state "(s['images']['$A2']['launch_users'], s['snapshots']['$S2']['volume_users'])")" = "(['$ACC'], ['$ACC'])" ]; cond share-remove
af ami share "$A2" --public && p1=$(state "(s['images']['$A2']['launch_groups'], s['snapshots']['$S2']['volume_groups'])")
af ami share "$A2" --public --remove && p2=$(state "(s['images']['$A2']['launch_groups'], s['snapshots']['$S2']['volume_groups'])")
[ "$RC" = 0 ] && [ "$p1" = "(['all'], ['all'])" ] && [ "$p2" = "([], [])" ]; cond share-public || { show; echo "# $p1 $p2"; }
af ami share "$A2" --org "$ORG"
[ "$RC" = 0 ] && [ "$(state "s['images']['$A2']['launch_orgs']")" = "['$ORG']" ] &&
	grep -q "warning: snapshots cannot be shared with an organization" "$ERR"; cond share-org || show
before=$(resources)
af ami share "$A3" --account $ACC --dry-run && d1=$RC
af ami share "$A3" --public --remove --dry-run --json && d2=$(pyj "$OUT" 'j["dry_run"], j["changed"]')
[ "$d1" = 0 ] && [ "$d2" = "(True, ['$A3', '$S3'])" ] && [ "$(resources)" = "$before" ] &&
	[ "$(state "[r['status'] for r in s['requests'] if r['action'] == 'ModifySnapshotAttribute'][-1]")" = 412 ]; cond share-dry-run || { show; echo "# $d1 $d2"; }
af ami share "$A3" --account 12345; u1=$RC
af ami share "$A3" --account $ACC --public; u2=$RC
af ami share "$A3"; u3=$RC
af ami share "$A3" --org arn:aws:iam::123456789012:root; u4=$RC
[ "$u1$u2$u3$u4" = 2222 ] && grep -q "not an organization ARN" "$ERR"; cond share-usage || echo "# $u1$u2$u3$u4"

# ---- expire -----------------------------------------------------------------
# The expiry: days from now of the tag on image A and on its snapshot S, and
# whether the deprecation time is the tag's minute.
expiry() { # AMI SNAP
	$PY - "$FAKEAWS" "$1" "$2" <<'PY'
import datetime, json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
img, snap = s["images"][sys.argv[2]], s["snapshots"][sys.argv[3]]
t = img["tags"].get("amiforge:expires")
if t is None:
    print(None, snap["tags"].get("amiforge:expires"), img["deprecation"])
    sys.exit()
exp = datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ")
dep = datetime.datetime.strptime(img["deprecation"], "%Y-%m-%dT%H:%M:%S.000Z")
print(round((exp - datetime.datetime.utcnow()).total_seconds() / 86400, 1), snap["tags"]["amiforge:expires"] == t,
      exp.replace(second=0) == dep)
PY
}
af ami expire "$A1" --in 2w
[ "$RC" = 0 ] && [ "$(expiry "$A1" "$S1")" = "14.0 True True" ] && grep -q "^$A1 expires 20" "$OUT"; cond expire-in || { show; expiry "$A1" "$S1"; }
af ami expire "$A1" --at 2031-03-04 --json
[ "$RC" = 0 ] && [ "$(state "s['images']['$A1']['tags']['amiforge:expires'], s['snapshots']['$S1']['tags']['amiforge:expires'], s['images']['$A1']['deprecation']")" = "('2031-03-04T00:00:00Z', '2031-03-04T00:00:00Z', '2031-03-04T00:00:00.000Z')" ] &&
	[ "$(pyj "$OUT" 'j["expires"], j["snapshots"], j["dry_run"]')" = "('2031-03-04T00:00:00Z', ['$S1'], False)" ]; cond expire-at || show
before=$(resources)
af ami expire "$A1" --never --dry-run && e1=$RC
af ami expire "$A1" --in '+3 months' --dry-run --json && e2=$(pyj "$OUT" 'j["dry_run"]')
[ "$e1" = 0 ] && [ "$e2" = True ] && [ "$(resources)" = "$before" ] && grep -q "^would remove amiforge:expires from $A1" "$WORK/out.a$((RUN_N - 1))"; cond expire-dry-run || show
af ami expire "$A1" --never
[ "$RC" = 0 ] && [ "$(expiry "$A1" "$S1")" = "None None None" ]; cond expire-never || { show; expiry "$A1" "$S1"; }
af ami expire "$A1" --in 3 fortnights; x1=$RC
af ami expire "$A1" --in 2w --never; x2=$RC
af ami expire "$A1" --at 2020-01-01; x3=$RC
af ami expire --in 2w; x4=$RC
[ "$x1$x2$x3$x4" = 2222 ]; cond expire-usage || echo "# $x1$x2$x3$x4"

# ---- deregister ---------------------------------------------------------------
before=$(resources)
af ami deregister "$A1" "$A2" --delete-snapshots --dry-run
[ "$RC" = 0 ] && [ "$(resources)" = "$before" ] && grep -q "^would deregister $A1 in eu-west-1" "$OUT" &&
	grep -q "^would delete snapshot $S2" "$OUT"; cond dereg-dry-run || show
BAD=ami-0123456789abcdef0
af ami deregister "$A1" "$BAD" "$A2" --delete-snapshots
[ "$RC" = 1 ] &&
	[ "$(state "[s['images'][a]['state'] for a in ('$A1', '$A2', '$A3')], '$S1' in s['snapshots'], '$S2' in s['snapshots'], '$S3' in s['snapshots']")" = "(['deregistered', 'deregistered', 'available'], False, False, True)" ] &&
	grep -q "$BAD: cannot deregister it: .*InvalidAMIID.NotFound" "$ERR" && [ "$(grep -c "$BAD" "$ERR")" = 1 ]; cond dereg-snapshots-partial || show
af ami deregister "$A3" "$A1" --json
[ "$RC" = 1 ] && [ "$(pyj "$OUT" '[(i["image_id"], i["deregistered"], i["snapshots_deleted"], len(i["failed"])) for i in j]')" = "[('$A3', True, [], 0), ('$A1', False, [], 1)]" ]; cond dereg-json || show

# ---- faults on every call type: retried, nothing twice -------------------------
F1=$(make_ami eu-west-1 fault-1) F2=$(make_ami eu-west-1 fault-2)
FS1=$(snap_of "$F1") FS2=$(snap_of "$F2")
n=0
for a in DescribeImages DescribeImageAttribute ModifyImageAttribute ModifySnapshotAttribute CreateTags \
	EnableImageDeprecation DeleteTags DisableImageDeprecation DeregisterImage DeleteSnapshot; do
	kind=$(echo throttle error reset | cut -d' ' -f$((n % 3 + 1)))
	control "{\"op\": \"fault\", \"action\": \"$a\", \"kind\": \"$kind\", \"count\": 2}"
	n=$((n + 1))
done
fr=""
af ami list --json; fr="$fr$RC"
af ami share "$F1" --account $ACC; fr="$fr$RC"
af ami expire "$F1" --in 30d; fr="$fr$RC"
af ami expire "$F1" --never; fr="$fr$RC"
af ami deregister "$F1" --delete-snapshots; fr="$fr$RC"
[ "$fr" = 00000 ] &&
	[ "$(state "s['images']['$F1']['state'], '$FS1' in s['snapshots']")" = "('deregistered', False)" ]; cond faults-retried || { show; echo "# $fr"; }
[ "$(state "len([i for i in s['images'].values() if i['name'].startswith('fault-')]), s['images']['$F2']['state'], '$FS2' in s['snapshots'], s['images']['$F1']['launch_users']")" = "(2, 'available', True, ['$ACC'])" ]; cond faults-no-duplicates
control '{"op": "fault", "action": "ModifyImageAttribute", "kind": "error", "status": 403, "code": "UnauthorizedOperation", "count": 1}'
af ami share "$F2" --account $ACC
[ "$RC" = 77 ] && grep -q "$F2" "$ERR" && [ "$(state "s['images']['$F2']['launch_users'], s['snapshots']['$FS2']['volume_users']")" = "([], [])" ]; cond perm-refused-77 || show

# ---- --delete-bundle against s3rver behind s3faults ------------------------------
if [ ! -x "$S3RVER" ]; then
	for t in dereg-bundle dereg-bundle-twice dereg-bundle-dry-run; do skip $t "needs s3rver (make test-servers)"; done
else
	start_s3 || { not_ok "s3rver starts"; exit 1; }
	# start_s3 points the S3 variables at s3faults; EC2 stays on fakeaws,
	# which learns s3rver's key pair (any secret: the run's).
	export AWS_ENDPOINT_URL=$FAKEAWS
	control "{\"op\": \"creds\", \"access_key\": \"S3RVER\", \"secret_key\": \"$T_SECRET\"}"
	s3put() { "$AMIFORGE" aws request PUT "$PROXY/$1" --service s3 --region eu-west-1 -d "${2:-}" >/dev/null; }
	s3keys() { (cd "$WORK/s3" && find bundles -name '*._S3rver_object' | sed 's/._S3rver_object$//' | sort | tr '\n' ' '); }
	# An instance-store AMI whose manifest at bundles/PREFIX/NAME.manifest.xml names N parts.
	make_bundle_ami() { # PREFIX NAME N
		local m="<manifest><version>2007-10-10</version><image><name>$2</name><parts count='$3'>" i
		for i in $(seq 0 $(($3 - 1))); do
			m="$m<part index='$i'><filename>$2.part.$i</filename><digest algorithm='SHA1'>00</digest></part>"
			s3put "bundles/$1/$2.part.$i" "part $i"
		done
		s3put "bundles/$1/$2.manifest.xml" "$m</parts></image></manifest>"
		ec2 eu-west-1 "RegisterImage&Name=$2&ImageLocation=bundles/$1/$2.manifest.xml" | grep -o 'ami-[0-9a-f]*' | head -1
	}
	s3put bundles
	B1=$(make_bundle_ami p1 bun-one 3) B2=$(make_bundle_ami p2 bun-two 2)
	s3put bundles/p1/unrelated.txt keep
	before=$(resources) keys=$(s3keys)
	af ami deregister "$B1" --delete-bundle --dry-run
	[ "$RC" = 0 ] && [ "$(resources)" = "$before" ] && [ "$(s3keys)" = "$keys" ] &&
		grep -q "^would delete s3://bundles/p1/bun-one.part.2$" "$OUT" && grep -q "^would delete s3://bundles/p1/bun-one.manifest.xml$" "$OUT"; cond dereg-bundle-dry-run || show
	control '{"op": "fault", "match": "bun-one.part.1", "kind": "500", "method": "DELETE", "count": 1}' "$PROXY"
	control '{"op": "fault", "match": "bun-one.manifest", "kind": "reset", "method": "GET", "count": 1}' "$PROXY"
	af ami deregister "$B1" --delete-bundle --json
	[ "$RC" = 0 ] && [ "$(s3keys)" = "bundles/p1/unrelated.txt bundles/p2/bun-two.manifest.xml bundles/p2/bun-two.part.0 bundles/p2/bun-two.part.1 " ] &&
		[ "$(state "s['images']['$B1']['state']")" = deregistered ] &&
		[ "$(pyj "$OUT" 'len(j[0]["s3_deleted"]), j[0]["failed"]')" = "(4, [])" ]; cond dereg-bundle || { show; s3keys; }
	# A part already gone (an interrupted earlier run) is not an error.
	rm -f "$WORK/s3/bundles/p2/bun-two.part.0._S3rver_object"*
	af ami deregister "$B2" --delete-bundle
	[ "$RC" = 0 ] && [ "$(s3keys)" = "bundles/p1/unrelated.txt " ]; cond dereg-bundle-twice || { show; s3keys; }
	export AWS_ACCESS_KEY_ID=$T_AKID AWS_SECRET_ACCESS_KEY=$T_SECRET
	unset AWS_ENDPOINT_URL_S3
fi

# ---- the register stage's expire_after in weeks and calendar months -------------
recipe() { # FILE NAME EXPIRE
	printf 'name: %s\narch: x86_64\nstages:\n  - register: {snapshot_id: %s, expire_after: "%s"}\n' "$2" "$(make_snapshot eu-west-1)" "$3" >"$1"
}
recipe "$WORK/r2w.yaml" reg-exp-2w 2w
af build "$WORK/r2w.yaml" --state "$WORK/st2w"
R2W=$(state "[i for i, v in s['images'].items() if v['name'] == 'reg-exp-2w'][0]")
[ "$RC" = 0 ] && [ "$($PY - "$FAKEAWS" "$R2W" <<'PY'
import datetime, json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
exp = datetime.datetime.strptime(s["images"][sys.argv[2]]["tags"]["amiforge:expires"], "%Y-%m-%dT%H:%M:%SZ")
print(round((exp - datetime.datetime.utcnow()).total_seconds() / 86400, 1), s["images"][sys.argv[2]]["deprecation"][:16] == exp.isoformat()[:16])
PY
)" = "14.0 True" ]; cond register-expire-2w || show
recipe "$WORK/r3mo.yaml" reg-exp-3mo '+3 months'
af build "$WORK/r3mo.yaml" --state "$WORK/st3mo"
R3=$(state "[i for i, v in s['images'].items() if v['name'] == 'reg-exp-3mo'][0]")
[ "$RC" = 0 ] && [ "$($PY - "$FAKEAWS" "$R3" <<'PY'
import datetime, json, sys, urllib.request, calendar
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
exp = datetime.datetime.strptime(s["images"][sys.argv[2]]["tags"]["amiforge:expires"], "%Y-%m-%dT%H:%M:%SZ")
now = datetime.datetime.utcnow()
m = now.month - 1 + 3
y, m = now.year + m // 12, m % 12 + 1
want = now.replace(year=y, month=m, day=min(now.day, calendar.monthrange(y, m)[1]))
print(abs((exp - want).total_seconds()) < 600)
PY
)" = True ]; cond register-expire-3mo || show
recipe "$WORK/rbad.yaml" reg-exp-bad '3 fortnights'
af validate "$WORK/rbad.yaml"
[ "$RC" = 65 ] && grep -q "expire_after" "$OUT" "$ERR"; cond register-expire-invalid || show

check_no_secrets
exit $T_FAILED
