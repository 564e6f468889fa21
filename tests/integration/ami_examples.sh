#!/bin/bash
# The AMI workflows in examples/ (systemd units, the cron line) run as
# written, with --dry-run added, against fakeaws: their options exist and
# parse, and a dry run changes nothing.  Keeps the examples from drifting
# away from the commands.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
TESTS="examples-found example-backup-service example-purge-service example-purge-cron examples-changed-nothing"
require_botocore $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }
start_imds || { not_ok "imds starts"; exit 1; }
export AWS_EC2_METADATA_SERVICE_ENDPOINT=$IMDS AWS_EC2_METADATA_DISABLED=false

EX=$TOP/examples
cmd_of_unit() { sed -n 's/^ExecStart=[^ ]*amiforge //p' "$1"; }
cmd_of_cron() { sed -n 's/^[0-9*, ]* [0-9*, ]* [0-9*, ]* [0-9*, ]* [0-9*, ]*  *root  *amiforge \([^>]*\)>>.*/\1/p' "$1"; }
backup=$(cmd_of_unit "$EX/systemd/amiforge-backup.service")
purge=$(cmd_of_unit "$EX/systemd/amiforge-purge.service")
cron=$(cmd_of_cron "$EX/cron/amiforge-purge")
check examples-found bash -c '[ -n "$0" ] && [ -n "$1" ] && [ -n "$2" ]' "$backup" "$purge" "$cron"

# Something for each to act on: an expired AMI with a snapshot, and an
# instance for `ami create` (imds.py's instance id).
control '{"op": "image", "region": "eu-west-1", "name": "old-build", "created": "2026-01-01T00:00:00Z",
	"tags": {"amiforge:expires": "2026-02-01T00:00:00Z"}, "snapshots": 1}' >/dev/null
iid=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$IMDS/latest/api/token" |
	xargs -I{} curl -s -H 'X-aws-ec2-metadata-token: {}' "$IMDS/latest/meta-data/instance-id")
control "{\"op\": \"instance\", \"region\": \"eu-west-1\", \"instance_id\": \"$iid\", \"image_id\": \"ami-00000000000000001\"}" >/dev/null
snapshot_state() { state "json.dumps({k: s[k] for k in ('images', 'snapshots', 'deletes')}, sort_keys=True)"; }
before=$(snapshot_state)
run_example() { # NAME COMMAND-WORDS
	local name=$1
	shift
	# shellcheck disable=SC2086
	"$AMIFORGE" $* --dry-run >"$WORK/$name.out" 2>&1
	local rc=$?
	[ $rc = 0 ] || { echo "# $name: amiforge $* --dry-run: exit $rc"; sed 's/^/#   /' "$WORK/$name.out"; }
	return $rc
}
check example-backup-service run_example backup $backup
check example-purge-service run_example purge $purge
check example-purge-cron run_example cron $cron
after=$(snapshot_state)
check examples-changed-nothing bash -c '[ "$0" = "$1" ] && grep -q "old-build" "$2"' "$before" "$after" "$WORK/purge.out"
exit $T_FAILED
