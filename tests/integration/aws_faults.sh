#!/bin/bash
# Retries and bounds: fakeaws injects throttling, 500s, connection resets and
# a stall; the clients retry, give up with a clear message, or time out in time.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
require_botocore "aws retries and timeouts"
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }
calls() { state "s['calls'].get('$1', 0)"; }

control '{"op": "fault", "action": "DescribeRegions", "kind": "throttle", "count": 3}'
drv regions
check "throttled 3 times, then success" [ "$RC" = 0 -a "$(calls DescribeRegions)" = 4 ]
check "one redacted log line per retry" [ "$(grep -c 'DescribeRegions.*RequestLimitExceeded' "$ERR")" = 3 ]

control '{"op": "fault", "action": "DescribeRegions", "kind": "error", "count": 100}'
AWSDRV_ATTEMPTS=3 drv regions
check "always 500: gives up after the maximum" [ "$RC" = 1 -a "$(calls DescribeRegions)" = 7 ]
check "the message names the action, code and request id" grep -q \
	"ec2 DescribeRegions: InternalError: .*(HTTP 500, request id [0-9a-f-]*).*3 attempts" "$ERR"
control '{"op": "reset"}'

control '{"op": "fault", "action": "DescribeRegions", "kind": "reset", "count": 1}'
drv regions
check "a reset connection is retried" [ "$RC" = 0 -a "$(calls DescribeRegions)" = 2 ]

control '{"op": "fault", "action": "DescribeRegions", "kind": "stall", "seconds": 20, "count": 5}'
start=$(date +%s.%N)
AWSDRV_TIMEOUT_MS=1000 AWSDRV_TOTAL_MS=2500 drv regions
took=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || $PY -c "print($(date +%s.%N) - $start)")
check "a stalled server times out within the bound" [ "$RC" = 1 ] && $PY -c "import sys; sys.exit(not $took < 6)"
grep -m1 . "$ERR"
control '{"op": "reset"}'

# EBS: throttled block writes are retried inside the parallel batch.
img=$WORK/disk.img
truncate -s 3M "$img"
head -c 1572864 /dev/urandom | dd of="$img" conv=notrunc status=none
control '{"op": "fault", "action": "PutSnapshotBlock", "kind": "throttle", "count": 4}'
control '{"op": "fault", "action": "PutSnapshotBlock", "kind": "reset", "count": 1}'
drv ebs-upload "$img" 3
read -r snap count status <"$OUT"
check "ebs upload survives throttling and a reset" [ "$RC" = 0 -a "$count" = 3 -a "$status" = completed ]
check_no_secrets
exit $T_FAILED
