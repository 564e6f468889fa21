#!/bin/bash
# The S3 client against s3rver (npm; `make check` installs it): objects with
# Content-MD5 and x-amz-acl, head/get/delete, ListObjectsV2 paging, multipart.
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
exit $T_FAILED
