#!/bin/bash
# The EC2 and EBS clients against fakeaws.py (which checks every signature with
# botocore): a snapshot uploaded and read back, the image lifecycle, paging,
# error messages, signatures made with a wrong secret or with a session token.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
require_botocore "ec2 and ebs clients"
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

drv regions
check "describe regions" grep -qx eu-west-1 "$OUT"

# A sparse 6 MiB image with data in 3 blocks, one of them partly zero.
img=$WORK/disk.img
truncate -s 6M "$img"
head -c 524288 /dev/urandom | dd of="$img" bs=512K seek=0 conv=notrunc status=none
head -c 1000 /dev/urandom | dd of="$img" bs=1000 seek=3000 conv=notrunc status=none
head -c 524288 /dev/urandom | dd of="$img" bs=512K seek=11 conv=notrunc status=none
drv ebs-upload "$img" 4
read -r snap count status <"$OUT"
check "ebs upload: 3 non-zero blocks, completed" [ "$RC" = 0 -a "$count" = 3 -a "$status" = completed ]
check "fakeaws holds exactly blocks 0, 5 and 11" [ "$(state "s['snapshots']['$snap']['blocks']")" = "[0, 5, 11]" ]
drv ebs-download "$snap" "$WORK/back.img"
check "ebs download gives the same bytes" cmp <(head -c 6M "$WORK/back.img") "$img"

# Client token: the same StartSnapshot twice is one snapshot.
a=$(AWSDRV_TOKEN=tok-$$ "$AWSDRV" ebs-upload "$img" 2>&1 | awk '{print $1}')
b=$(AWSDRV_TOKEN=tok-$$ "$AWSDRV" ebs-upload "$img" 2>&1)
check "StartSnapshot with the same ClientToken returns the same snapshot" \
	grep -q "ebs PutSnapshotBlock $a block [0-9]*: ValidationException: Snapshot $a is not pending" <<<"$b"

drv ebs-upload "$img" 4 --bad-count
check "wrong ChangedBlocksCount: one clear message" grep -q \
	"ebs CompleteSnapshot snap-[0-9a-f]*: ValidationException: ChangedBlocksCount 4 does not match the 3 blocks written (reason INVALID_PARAMETER_VALUE) (HTTP 400, request id [0-9a-f-]*)" "$ERR"
drv ebs-upload "$img" 4 --bad-checksum
check "wrong aggregate checksum is refused" grep -q "ValidationException: The aggregated checksum does not match" "$ERR"

drv ec2-lifecycle "$snap"
cat "$OUT"
check "image lifecycle ran" [ "$RC" = 0 ] && [ "$(grep -c '^ok ' "$OUT")" -ge 15 ]

# Paging: 7 images, pages of 5, every image listed once.  (The lifecycle
# deleted the first snapshot with its image.)
drv ebs-upload "$img"
read -r snap count status <"$OUT"
for i in 1 2 3 4 5 6 7; do drv register "paged-image-$i" "$snap"; done
before=$(state "s['calls'].get('DescribeImages', 0)")
drv images 5
after=$(state "s['calls'].get('DescribeImages', 0)")
check "describe images follows NextToken" [ "$(grep -c ' paged-image-' "$OUT")" = 7 -a $((after - before)) -ge 2 ]

drv regions
AWS_SECRET_ACCESS_KEY=wrong-$T_SECRET drv regions
check "a wrong secret gives SignatureDoesNotMatch with the action and request id" grep -q \
	"ec2 DescribeRegions: SignatureDoesNotMatch: The request signature we calculated does not match.*(HTTP 403, request id [0-9a-f-]*)" "$ERR"
AWS_SECRET_ACCESS_KEY=wrong-$T_SECRET drv ebs-upload "$img"
check "ebs too: InvalidSignatureException" grep -q "ebs StartSnapshot: InvalidSignatureException" "$ERR"
AWS_ACCESS_KEY_ID=$T_AKID2 AWS_SECRET_ACCESS_KEY=$T_SECRET2 AWS_SESSION_TOKEN=$T_TOKEN drv regions
check "a session token is sent and signed" [ "$RC" = 0 -a "$(state "s['requests'][-1]['session_token']")" = True ]
AWS_ACCESS_KEY_ID=$T_AKID2 AWS_SECRET_ACCESS_KEY=$T_SECRET2 AWS_SESSION_TOKEN=bad-$T_TOKEN drv regions
check "a wrong session token is refused" grep -q "AuthFailure" "$ERR"
check_no_secrets
exit $T_FAILED
