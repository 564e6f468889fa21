#!/bin/bash
# The IMDS client against imds.py: v2 tokens (one per process), v1 fallback,
# role credentials in the credential chain, their refresh before expiry, and
# their use on fakeaws.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
require_botocore "imds client"
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_EC2_METADATA_DISABLED

start_imds --region ap-southeast-2 --cred-ttl 604 --rotate-before 600 --register "$FAKEAWS"
export AWS_EC2_METADATA_SERVICE_ENDPOINT=$IMDS
drv imds region
check "region through IMDSv2" [ "$(cat "$OUT")" = "ap-southeast-2
via v2" ]
drv imds instance-id
check "instance id" grep -qx i-0123456789abcdef0 "$OUT"
drv imds creds
check "role credentials with their expiration" grep -q "^ASIAIMDS[0-9]* instance metadata role 'amiforge-test-role' [0-9]*$" "$OUT"

puts=$(FAKEAWS=$IMDS state "s['token_puts']")
drv creds 3 2.5
check "the chain falls back to IMDS" grep -q "instance metadata role" "$OUT"
check "IMDS credentials are refreshed before they expire" \
	[ "$(awk '{print $1}' "$OUT" | uniq | wc -l)" = 2 ]
check "one IMDSv2 token serves every lookup of the process" \
	[ "$(FAKEAWS=$IMDS state "s['token_puts']")" = $((puts + 1)) ]
AWS_REGION=ap-southeast-2 drv regions
check "IMDS credentials sign a request fakeaws accepts" [ "$RC" = 0 -a "$(state "s['requests'][-1]['session_token']")" = True ]
AWS_ACCESS_KEY_ID=$T_AKID AWS_SECRET_ACCESS_KEY=$T_SECRET drv creds
check "the environment wins over IMDS" grep -q "^$T_AKID environment" "$OUT"

stop_servers
start_imds --mode v1 --no-role
export AWS_EC2_METADATA_SERVICE_ENDPOINT=$IMDS
drv imds region
check "an IMDS without tokens: v1 fallback" [ "$(tail -1 "$OUT")" = "via v1" ]
drv creds
check "no role and nothing else: a message that lists where it looked" \
	grep -q "no AWS credentials found.*environment.*instance metadata" "$ERR"
grep -m1 . "$ERR"
AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9 drv imds region
check "an unreachable IMDS is 'not available', quickly" grep -qx "not available" "$OUT"
check_no_secrets
exit $T_FAILED
