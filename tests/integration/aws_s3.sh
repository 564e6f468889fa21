#!/bin/bash
# The S3 client against s3rver (npm; `make check` installs it): objects with
# Content-MD5 and x-amz-acl, head/get/delete, ListObjectsV2 paging, multipart.
# Then, behind tests/servers/s3faults.py (which enforces S3's conditional
# writes, as s3rver does not, and injects faults): create-only and If-Match
# puts, refusals not retried, of two concurrent create-only puts exactly one
# wins, a missing key is found=false, batches of puts and gets with their
# outcomes, faults on GET, HEAD, LIST and DELETE retried, a corrupted GET
# seen, GETs under a prefix counted from the proxy's log.
# s3rver accepts any V4 signature, so this checks flow and shapes only.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
S3RVER=$TOP/tests/servers/s3rver/node_modules/.bin/s3rver
[ -x "$S3RVER" ] || skip_all "needs s3rver (make test-servers installs it with npm)" "s3 client"
require_botocore "s3 client"

mkdir -p "$WORK/s3"
# s3rver ciphers its continuation tokens with DES, which OpenSSL 3 keeps in
# its legacy provider.
node --openssl-legacy-provider "$S3RVER" -d "$WORK/s3" -a 127.0.0.1 -p 0 >"$WORK/s3rver.log" 2>&1 &
SERVER_PIDS+=($!)
for i in $(seq 100); do
	port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/s3rver.log")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || { not_ok "s3rver starts"; cat "$WORK/s3rver.log"; exit 1; }
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
export AWS_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true HOME=$WORK/home

drv s3 amiforge-test-bucket
cat "$OUT"
check "s3 scenario" [ "$RC" = 0 ]
# s3rver has no AbortMultipartUpload: the error still reads well.
drv s3-abort amiforge-test-bucket
check "an S3 error names operation, bucket/key and code" grep -q \
	"s3 AbortMultipartUpload amiforge-test-bucket/k: MethodNotAllowed" "$ERR"

# ---- behind s3faults: conditional writes, batches, faults on every method -------
$PY "$TOP/tests/servers/s3faults.py" --upstream "127.0.0.1:$port" --port-file "$WORK/proxy.port" \
	>"$WORK/proxy.log" 2>&1 &
SERVER_PIDS+=($!)
PROXY=http://127.0.0.1:$(wait_port "$WORK/proxy.port") || { not_ok "s3faults starts"; exit 1; }
export AWS_ENDPOINT_URL_S3=$PROXY
B=amiforge-cond
drv s3 $B >/dev/null  # creates the bucket (and passes through the proxy)
# A python expression on the proxy's state `s` ({"requests": [...]}).
pstate() { # EXPR
	$PY - "$PROXY" "$1" <<'PY'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
print(eval(sys.argv[2]))
PY
}
# Requests of METHOD whose path starts with /$B/PREFIX, as "STATUS" lines.
reqs() { # METHOD PREFIX
	pstate "'\n'.join(str(r['status']) for r in s['requests'] if r['method'] == '$1' and not r['list']
		and r['path'].startswith('/$B/$2'))"
}
# GETs of objects (not listings) under /$B/PREFIX: how a test counts them.
gets_under() { # PREFIX
	pstate "len([r for r in s['requests'] if r['method'] == 'GET' and not r['list']
		and r['path'].startswith('/$B/$1')])"
}
md5() { printf %s "$1" | md5sum | cut -d' ' -f1; }

control '{"op": "reset"}' "$PROXY"
drv s3-put-cond $B cond/a one create
etag1=$(cat "$OUT")
check "create-only put stores a new object" [ "$RC" = 0 -a "$etag1" = "$(md5 one)" ]
drv s3-put-cond $B cond/a two create
check "a second create-only put is refused (S3_CONDITION_FAILED, not retried)" \
	bash -c '[ "$0" = 3 ] && grep -q "s3 PutObject amiforge-cond/cond/a: condition If-None-Match: \* refused, the object exists (HTTP 412 PreconditionFailed, request id s3faults-" "$1"' \
	"$RC" "$ERR" || cat "$ERR"
drv s3-get-found $B cond/a
check "the refused put left the object alone" [ "$(cat "$OUT")" = "found $etag1 3 $etag1" ]
drv s3-put-cond $B cond/a three "$etag1"
etag2=$(cat "$OUT")
check "If-Match with the current ETag replaces" [ "$RC" = 0 -a "$etag2" = "$(md5 three)" ]
drv s3-put-cond $B cond/a four "$etag1"
check "If-Match with a stale ETag is refused" \
	bash -c '[ "$0" = 3 ] && grep -q "If-Match: \"$2\" refused, the object changed (HTTP 412" "$1"' "$RC" "$ERR" "$etag1"
drv s3-put-cond $B cond/none five "$etag1"
check "If-Match on a missing key is refused" \
	bash -c '[ "$0" = 3 ] && grep -q "refused, the object is gone (HTTP 404 NoSuchKey" "$1"' "$RC" "$ERR"
drv s3-get-found $B cond/a
check "the object is the If-Match write's" [ "$(cat "$OUT")" = "found $etag2 5 $etag2" ]
# one PUT per call: a refusal is an answer, not a failure to retry
check "refusals are sent once" [ "$(reqs PUT cond/ | tr '\n' ' ')" = "200 412 200 412 404 " ]

# Two writers at once, several rounds: the proxy decides under a per-key lock,
# as S3 does atomically; each round exactly one wins and its data stays.
races_ok=1
for i in $(seq 8); do
	"$AWSDRV" s3-put-cond $B race/$i "writer A" create >"$WORK/race.a" 2>&1 &
	pa=$!
	"$AWSDRV" s3-put-cond $B race/$i "writer B" create >"$WORK/race.b" 2>&1 &
	pb=$!
	wait $pa; ra=$?
	wait $pb; rb=$?
	drv s3-get-found $B race/$i
	case "$ra $rb" in
	"0 3") want=$(md5 "writer A") ;;
	"3 0") want=$(md5 "writer B") ;;
	*) want=none ;;
	esac
	if [ "$(awk '{print $4}' "$OUT")" != "$want" ]; then
		races_ok=0; echo "round $i: exits $ra $rb, object $(cat "$OUT")"; cat "$WORK/race.a" "$WORK/race.b"
	fi
done
check "of two concurrent create-only puts exactly one wins" [ $races_ok = 1 ]

drv s3-get-found $B cond/missing
check "a get of a missing key reports found=false" [ "$RC" = 0 -a "$(cat "$OUT")" = missing ]
drv s3-get-found no-such-bucket-here k
check "a get in a missing bucket is an error, not found=false" \
	bash -c '[ "$0" = 1 ] && grep -q NoSuchBucket "$1"' "$RC" "$ERR"

# ---- batches ---------------------------------------------------------------------
control '{"op": "reset"}' "$PROXY"
drv s3-batch put $B batch/ 20 create
check "a batch of 20 create-only puts stores them all" \
	bash -c 'grep -qx "stored=20 refused=0 failed=0" "$0" && grep -qx "run ok" "$0"' "$OUT"
drv s3-batch put $B batch/ 25 create 6
check "a second batch stores the 5 new ones; the 20 existing are refused, not failed" \
	bash -c 'grep -qx "stored=5 refused=20 failed=0" "$0" && grep -qx "run ok" "$0" &&
		grep -qx "batch/0003 refused" "$0" && grep -qx "batch/0024 stored" "$0"' "$OUT"
check "batch refusals are sent once" [ "$(reqs PUT batch/ | grep -c .)" = 45 ]
control '{"op": "reset"}' "$PROXY"
drv s3-batch get $B batch/ 30
check "a batch of gets: 25 got with their content, 5 missing" \
	bash -c 'grep -qx "got=25 missing=5 failed=0 bad=0" "$0" && grep -qx "batch/0027 missing" "$0" &&
		grep -qx "run ok" "$0"' "$OUT"
check "the proxy's log counts the GETs under a prefix" [ "$(gets_under batch/)" = 30 -a "$(gets_under batch/002)" = 10 ]

# ---- faults on every method --------------------------------------------------------
control '{"op": "reset"}' "$PROXY"
control '{"op": "fault", "match": "cond/a", "kind": "slowdown", "count": 2, "method": "GET"}' "$PROXY"
drv s3-get-found $B cond/a
check "faults on GET are retried" [ "$(cat "$OUT")" = "found $etag2 5 $etag2" \
	-a "$(reqs GET cond/a | tr '\n' ' ')" = "fault-slowdown fault-slowdown 200 " ]
control '{"op": "fault", "match": "cond/a", "kind": "500", "method": "HEAD"}' "$PROXY"
drv s3-head $B cond/a
check "faults on HEAD are retried" [ "$(cat "$OUT")" = "exists $etag2 5" \
	-a "$(reqs HEAD cond/a | tr '\n' ' ')" = "fault-500 200 " ]
control '{"op": "fault", "match": "prefix=race", "kind": "reset", "method": "LIST"}' "$PROXY"
drv s3-list $B race/
check "faults on LIST are retried" [ "$RC" = 0 -a "$(grep -c . "$OUT")" = 8 \
	-a "$(pstate "[r['status'] for r in s['requests'] if r['list']]")" = "['fault-reset', 200]" ]
control '{"op": "fault", "match": "race/1", "kind": "slowdown", "method": "DELETE"}' "$PROXY"
drv s3-delete $B race/1
drv s3-head $B race/1
check "faults on DELETE are retried" [ "$(cat "$OUT")" = missing \
	-a "$(reqs DELETE race/1 | tr '\n' ' ')" = "fault-slowdown 204 " ]
control '{"op": "reset"}' "$PROXY"
control '{"op": "fault", "match": "cond/a", "kind": "500"}' "$PROXY"
drv s3-get-found $B cond/a
check "a fault without a method hits PUTs only" [ "$(reqs GET cond/a)" = 200 ]
control '{"op": "reset"}' "$PROXY"
control '{"op": "fault", "match": "batch/0003", "kind": "corrupt", "method": "GET"}' "$PROXY"
drv s3-batch get $B batch/ 5
check "a corrupted GET reaches the client, which sees it" \
	bash -c '[ "$0" = 1 ] && grep -qx "batch/0003 bad" "$1" && grep -qx "got=4 missing=0 failed=0 bad=1" "$1"' "$RC" "$OUT"
check "the proxy logs the corrupt fault on a forwarded answer" \
	[ "$(pstate "[(r['status'], r['fault']) for r in s['requests'] if r['fault']]")" = "[(200, 'corrupt')]" ]
exit $T_FAILED
