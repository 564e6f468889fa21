#!/bin/bash
# The upload stage against s3rver, behind tests/servers/s3faults.py (which
# counts requests and injects faults: s3rver cannot): every part and the
# manifest land with the right size and MD5, with x-amz-acl and Content-MD5;
# a build killed with SIGKILL mid-upload resumes and sends only the parts the
# journal lacks; throttling, 500s and resets are retried; a stall ends in the
# stage's timeout with a clear error and a resume finishes.  Root-free: a
# synthetic bundle (random parts, a manifest with their SHA-1s) is uploaded
# with `manifest:`; with the bundle stage, a real one made from a small image.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="upload-all objects-present acl-and-md5-on-every-put outputs rerun-sends-nothing kill-mid-upload
resume-sends-only-missing resumed-objects-present faults-retried faults-objects-present stall-times-out
stall-resume missing-bucket-clear-error create-bucket bundle-stage-upload no-secrets"
require_s3rver $TESTS
start_s3 || { not_ok "s3rver and s3faults start"; exit 1; }

# python helpers: s3 (ListObjectsV2 of s3rver), proxy state, bundles
s3py() { $PY - "http://127.0.0.1:$s3port" "$PROXY" "$@"; }
make_bucket() { s3py "$1" <<'PY'
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/" + sys.argv[3], method="PUT"), timeout=10).read()
PY
}
# A synthetic bundle: N random parts of SIZE bytes (the last shorter) and a
# manifest naming them with their SHA-1s, as the bundle stage writes it.
make_bundle() { # DIR NAME N SIZE
	$PY - "$@" <<'PY'
import hashlib, os, sys
d, name, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(d, exist_ok=True)
w = len(str(n))
parts = ""
for i in range(n):
    data = os.urandom(size if i < n - 1 else size // 3 + 1)
    fn = "%s.part.%s" % (name, str(i).rjust(w, "0"))
    open(os.path.join(d, fn), "wb").write(data)
    parts += "<part index='%d'><filename>%s</filename><digest algorithm='SHA1'>%s</digest></part>" % (
        i, fn, hashlib.sha1(data).hexdigest())
m = ("<?xml version='1.0'?><manifest><version>2007-10-10</version><machine_configuration>"
     "<architecture>x86_64</architecture></machine_configuration><image><name>%s</name>"
     "<user>111122223333</user><type>machine</type><parts count='%d'>%s</parts></image>"
     "<signature>00</signature></manifest>" % (name, n, parts))
open(os.path.join(d, name + ".manifest.xml"), "w").write(m)
PY
}
# ok (exit 0) when every file of DIR/NAME.* is at BUCKET/PREFIX/FILE with its
# size and MD5 (ETag); prints what differs otherwise.
objects_match() { # DIR NAME BUCKET PREFIX
	s3py "$@" <<'PY'
import glob, hashlib, os, sys, urllib.request, xml.etree.ElementTree as ET
s3, d, name, bucket, prefix = sys.argv[1], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
x = ET.fromstring(urllib.request.urlopen("%s/%s?list-type=2&max-keys=1000" % (s3, bucket), timeout=10).read())
for e in x.iter():
    e.tag = e.tag.split("}")[-1]  # s3rver's namespace is not S3's
have = {c.findtext("Key"): (int(c.findtext("Size")), c.findtext("ETag").strip('"')) for c in x.iter("Contents")}
bad = 0
files = sorted(glob.glob(os.path.join(d, name + ".*")))
for f in files:
    key = (prefix + "/" if prefix else "") + os.path.basename(f)
    data = open(f, "rb").read()
    want = (len(data), hashlib.md5(data).hexdigest())
    if have.get(key) != want:
        print("%s: in S3 %s, local %s" % (key, have.get(key), want)); bad = 1
sys.exit(bad or not files)
PY
}
# PUTs the proxy forwarded or failed since its last reset, as "STATUS PATH" lines.
puts() { s3py <<'PY'
import json, sys, urllib.request
for r in json.load(urllib.request.urlopen(sys.argv[2] + "/__control/state", timeout=10))["requests"]:
    if r["method"] == "PUT":
        print(r["status"], r["path"], r["acl"], r["md5"])
PY
}
# Keys (without the bucket) the journal of STATE holds as uploaded objects.
journaled() { # STATE
	$PY - "$1/journal" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    ev = json.loads(line)
    r = ev.get("resource") or {}
    if ev.get("event") == "resource" and r.get("type") == "s3_object":
        print(r["key"])
PY
}
recipe() { # FILE MANIFEST BUCKET PREFIX [EXTRA]
	cat >"$1" <<EOF
name: it-upload
stages:
  - upload: {manifest: $2, bucket: $3, prefix: $4, parallel: 2${5:+, $5}}
EOF
}
BN=0
build() { # RECIPE STATE [ARGS]: output in $WORK/out.N
	BN=$((BN + 1)); OUT=$WORK/out.$BN
	"$AMIFORGE" build "$1" --state "$2" "${@:3}" >"$OUT" 2>&1
}

# ---- a full upload --------------------------------------------------------
make_bucket bundles
make_bundle "$WORK/b1" img 5 300000
recipe "$WORK/r1.yaml" "$WORK/b1/img.manifest.xml" bundles images/2024
control '{"op": "reset"}' "$PROXY"
if build "$WORK/r1.yaml" "$WORK/st1"; then ok upload-all; else cat "$OUT" "$WORK"/st1/logs/*; not_ok upload-all; fi
check objects-present objects_match "$WORK/b1" img bundles images/2024
puts >"$WORK/puts1"
check acl-and-md5-on-every-put bash -c '[ "$(wc -l <"$0")" = 6 ] && ! grep -v "^200 .* aws-exec-read [A-Za-z0-9+/]*==$" "$0"' "$WORK/puts1"
check outputs $PY - "$WORK/st1/manifest.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))["outputs"]
o = o.get("upload", o)  # per stage or flat
want = {"bundle.manifest_location": "bundles/images/2024/img.manifest.xml", "bundle.bucket": "bundles",
        "bundle.prefix": "images/2024", "bundle.bucket_region": "eu-west-1"}
got = {k: o.get(k) for k in want}
print(got) if got != want else None
sys.exit(got != want)
PY
control '{"op": "reset"}' "$PROXY"
build "$WORK/r1.yaml" "$WORK/st1"
rc=$?
check rerun-sends-nothing [ "$rc" = 0 -a -z "$(puts)" ] || { cat "$OUT"; puts; }

# ---- SIGKILL mid-upload, then resume -----------------------------------------
make_bundle "$WORK/b2" big 12 200000
recipe "$WORK/r2.yaml" "$WORK/b2/big.manifest.xml" bundles kill
control '{"op": "reset"}' "$PROXY"
control '{"op": "delay", "seconds": 0.4}' "$PROXY"
"$AMIFORGE" build "$WORK/r2.yaml" --state "$WORK/st2" >"$WORK/out.kill" 2>&1 &
pid=$!
for i in $(seq 200); do
	[ "$(journaled "$WORK/st2" 2>/dev/null | wc -l)" -ge 4 ] && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.1
done
n_before=$(journaled "$WORK/st2" | wc -l)
if kill -KILL $pid 2>/dev/null; then
	wait $pid 2>/dev/null
	check kill-mid-upload [ "$n_before" -ge 4 -a "$n_before" -lt 13 ]
else
	not_ok kill-mid-upload; cat "$WORK/out.kill"
fi
sleep 0.5 # a request in flight at the kill may still reach s3rver
journaled "$WORK/st2" | sort >"$WORK/j2"
control '{"op": "reset"}' "$PROXY"
if build "$WORK/r2.yaml" "$WORK/st2"; then :; else cat "$OUT"; fi
puts | awk '{print $2}' | sed 's,^/bundles/,,' | sort >"$WORK/resent"
# Sent again: exactly the 13 objects minus those journaled before the kill.
check resume-sends-only-missing bash -c '[ -z "$(comm -12 "$0" "$1")" ] &&
	[ $(($(wc -l <"$0") + $(wc -l <"$1"))) = 13 ]' "$WORK/j2" "$WORK/resent"
check resumed-objects-present objects_match "$WORK/b2" big bundles kill
check no-leaks-after-kill no_leaks "$WORK/st2"

# ---- faults: throttling, 500, reset are retried ---------------------------------
make_bundle "$WORK/b3" flt 4 100000
recipe "$WORK/r3.yaml" "$WORK/b3/flt.manifest.xml" bundles faults
control '{"op": "reset"}' "$PROXY"
control '{"op": "fault", "match": "flt.part.0", "kind": "slowdown", "count": 2}' "$PROXY"
control '{"op": "fault", "match": "flt.part.1", "kind": "500", "count": 1}' "$PROXY"
control '{"op": "fault", "match": "flt.part.2", "kind": "reset", "count": 1}' "$PROXY"
control '{"op": "fault", "match": "flt.manifest", "kind": "slowdown", "count": 1}' "$PROXY"
build "$WORK/r3.yaml" "$WORK/st3"
rc=$?
puts >"$WORK/puts3"
check faults-retried bash -c '[ "$0" = 0 ] && [ "$(grep -c flt.part.0 "$1")" = 3 ] &&
	[ "$(grep -c flt.part.1 "$1")" = 2 ] && [ "$(grep -c flt.part.2 "$1")" = 2 ] &&
	[ "$(grep -c flt.part.3 "$1")" = 1 ] && [ "$(grep -c flt.manifest "$1")" = 2 ]' "$rc" "$WORK/puts3"
check faults-objects-present objects_match "$WORK/b3" flt bundles faults

# ---- a stall: the stage's timeout ends it clearly; a resume finishes ---------------
make_bundle "$WORK/b4" stl 4 100000
recipe "$WORK/r4.yaml" "$WORK/b4/stl.manifest.xml" bundles stall "timeout: 6s"
control '{"op": "reset"}' "$PROXY"
control '{"op": "fault", "match": "stl.part.3", "kind": "stall", "seconds": 60, "count": 20}' "$PROXY"
t0=$(date +%s)
build "$WORK/r4.yaml" "$WORK/st4"
rc=$? took=$(($(date +%s) - t0))
if [ "$rc" = 1 ] && [ "$took" -lt 20 ] && grep -q "stl.part.3.*timed out" "$OUT"; then
	ok stall-times-out
else
	cat "$OUT"; echo "exit $rc after $took s"; not_ok stall-times-out
fi
journaled "$WORK/st4" | sort >"$WORK/j4"
control '{"op": "reset"}' "$PROXY"
build "$WORK/r4.yaml" "$WORK/st4"
rc=$?
puts | awk '{print $2}' | sed 's,^/bundles/,,' | sort >"$WORK/resent4"
check stall-resume bash -c '[ "$0" = 0 ] && [ -z "$(comm -12 "$1" "$2")" ] &&
	[ $(($(wc -l <"$1") + $(wc -l <"$2"))) = 5 ]' "$rc" "$WORK/j4" "$WORK/resent4"

# ---- bucket ------------------------------------------------------------------
recipe "$WORK/r5.yaml" "$WORK/b3/flt.manifest.xml" no-such-bucket p
build "$WORK/r5.yaml" "$WORK/st5"
rc=$?
check missing-bucket-clear-error bash -c '[ "$0" = 1 ] && grep -q "no-such-bucket/p/flt.part.*NoSuchBucket" "$1"' \
	"$rc" "$OUT" || cat "$OUT"
recipe "$WORK/r6.yaml" "$WORK/b3/flt.manifest.xml" fresh-bucket p "create_bucket: true"
build "$WORK/r6.yaml" "$WORK/st6" && objects_match "$WORK/b3" flt fresh-bucket p
check create-bucket [ $? = 0 ] || cat "$OUT"

# ---- a real bundle from the bundle stage ---------------------------------------
if "$AMIFORGE" stages 2>/dev/null | grep -q '^bundle:'; then
	cat >"$WORK/r7.yaml" <<EOF
name: it-upload-bundle
stages:
  - allocate: {size: 24MiB}
  - partition: {table: none}
  - mkfs: {label: upl}
  - bundle: {account: "111122223333", x509: generate}
  - upload: {bucket: bundles, prefix: real}
EOF
	if build "$WORK/r7.yaml" "$WORK/st7" && objects_match "$WORK/st7/bundle" it-upload-bundle bundles real; then
		ok bundle-stage-upload
	else
		cat "$OUT"; not_ok bundle-stage-upload
	fi
else
	skip bundle-stage-upload "the bundle stage is not in this build"
fi

[ -n "${KEEP_OUT:-}" ] && cp -r "$WORK" /tmp/upl-keep
bad=0
for s in "$T_SECRET" "$T_TOKEN"; do grep -rlF -- "$s" "$WORK"/out.* "$WORK"/st*/journal "$WORK"/st*/logs \
	"$WORK"/st*/manifest.json && bad=1; done
check no-secrets [ $bad = 0 ]
exit $T_FAILED
