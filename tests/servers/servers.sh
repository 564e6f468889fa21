# Sourced by tests/integration/aws_*.sh (after lib.sh): starts the local AWS
# servers on 127.0.0.1 with ephemeral ports and stops them at exit.
# Test credentials are random per run, so that the secret scan means something.
PY=/usr/bin/python3
AWSDRV=${BUILD_DIR:-$TOP/build}/tests/awsdrv
T_AKID=AKIDTEST$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
# The run's secret and token (tests/run-all scans every output for them).
T_SECRET=$AMIFORGE_TEST_SECRET
T_AKID2=ASIATEST$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
T_SECRET2=test-secret2-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
T_TOKEN=$AMIFORGE_TEST_TOKEN
SERVER_PIDS=()

stop_servers() {
	local p
	for p in "${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}"; do kill "$p" 2>/dev/null; done
	for p in "${SERVER_PIDS[@]+"${SERVER_PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
	SERVER_PIDS=()
}
trap 'stop_servers; cleanup_work' EXIT

# Waits for FILE (a port number written by a server) and prints the port.
wait_port() { # FILE
	local i
	for i in $(seq 100); do
		[ -s "$1" ] && { cat "$1"; return 0; }
		sleep 0.1
	done
	return 1
}

# Skips every named test unless the python servers can run.
require_botocore() {
	$PY -c 'import botocore' 2>/dev/null || skip_all "needs python3-botocore (make check installs it)" "$@"
	[ -x "$AWSDRV" ] || skip_all "needs $AWSDRV (make unit)" "$@"
}

# Starts fakeaws.py; sets FAKEAWS (base URL) and points the AWS variables at it.
start_fakeaws() {
	local pf=$WORK/fakeaws.port
	rm -f "$pf"
	$PY "$TOP/tests/servers/fakeaws.py" --port-file "$pf" --cred "$T_AKID:$T_SECRET" \
		--cred "$T_AKID2:$T_SECRET2:$T_TOKEN" "$@" >>"$WORK/fakeaws.log" 2>&1 &
	SERVER_PIDS+=($!)
	FAKEAWS=http://127.0.0.1:$(wait_port "$pf") || { echo "fakeaws did not start"; cat "$WORK/fakeaws.log"; return 1; }
	export AWS_ENDPOINT_URL=$FAKEAWS AWS_ACCESS_KEY_ID=$T_AKID AWS_SECRET_ACCESS_KEY=$T_SECRET
	export AWS_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true HOME=$WORK/home
	unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_DEFAULT_REGION
	mkdir -p "$HOME"
}

# Starts imds.py with ARGS; sets IMDS (base URL).
start_imds() {
	local pf=$WORK/imds.port
	rm -f "$pf"
	$PY "$TOP/tests/servers/imds.py" --port-file "$pf" "$@" >>"$WORK/imds.log" 2>&1 &
	SERVER_PIDS+=($!)
	IMDS=http://127.0.0.1:$(wait_port "$pf") || { echo "imds did not start"; cat "$WORK/imds.log"; return 1; }
}

# POSTs JSON to a server's /__control (default fakeaws).
control() { # JSON [BASE]
	$PY - "${2:-$FAKEAWS}" "$1" <<'PY'
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/__control", data=sys.argv[2].encode(), method="POST"), timeout=10).read()
PY
}
# Prints a value from fakeaws's /__control/state: a python expression on `s`.
state() { # EXPR
	$PY - "$FAKEAWS" "$1" <<'PY'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/__control/state", timeout=10))
print(eval(sys.argv[2]))
PY
}

# Runs awsdrv, keeping stdout in $WORK/out.N and stderr in $WORK/err.N (scanned
# for secrets at the end); OUT and ERR name the files, RC is the exit code.
DRV_N=0
drv() {
	DRV_N=$((DRV_N + 1))
	OUT=$WORK/out.$DRV_N ERR=$WORK/err.$DRV_N
	"$AWSDRV" "$@" >"$OUT" 2>"$ERR"
	RC=$?
	return $RC
}

# ok if no secret of this run appears in any output or server log.
check_no_secrets() {
	local s bad=0
	for s in "$T_SECRET" "$T_SECRET2" "$T_TOKEN" "imds-secret-" "imds-token-"; do
		if grep -rlF -- "$s" "$WORK"/out.* "$WORK"/err.* 2>/dev/null; then bad=1; fi
	done
	check "no secret in any output" [ $bad = 0 ]
}

# S3: s3rver (npm; `make check` installs it) behind tests/servers/s3faults.py,
# which counts requests, injects faults and adds the conditional writes
# s3rver lacks.
# How many EBS blocks the journal (file) JOURNAL says were sent to snapshot
# SNAP: what a resumed build must not send again.
journaled_snapshot_blocks() { # JOURNAL SNAP
	$PY - "$1" "$2" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    ev = json.loads(line)
    r = ev.get("resource") or {}
    if ev.get("event") == "resource" and r.get("snapshot") == sys.argv[2] and "blocks" in r:
        n += sum(b - a + 1 for a, b in r["blocks"])
print(n)
PY
}

S3RVER=$TOP/tests/servers/s3rver/node_modules/.bin/s3rver
# Skips every named test unless s3rver can run.
require_s3rver() {
	[ -x "$S3RVER" ] || skip_all "needs s3rver (make test-servers installs it with npm)" "$@"
	command -v node >/dev/null || skip_all "needs nodejs" "$@"
}
# Starts both; sets s3port (s3rver's own port: unsigned set-up requests)
# and PROXY (where AWS_ENDPOINT_URL_S3 points), and the S3 environment:
# s3rver knows the key S3RVER; the secret is the run's, so the scan means
# something.  s3rver keeps BUCKET/KEY as $WORK/s3/BUCKET/KEY._S3rver_object.
start_s3() {
	local i
	mkdir -p "$WORK/s3" "$WORK/home"
	# s3rver ciphers its continuation tokens with DES, which OpenSSL 3 keeps
	# in its legacy provider.
	node --openssl-legacy-provider "$S3RVER" -d "$WORK/s3" -a 127.0.0.1 -p 0 >"$WORK/s3rver.log" 2>&1 &
	SERVER_PIDS+=($!)
	for i in $(seq 100); do
		s3port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/s3rver.log")
		[ -n "$s3port" ] && break
		sleep 0.1
	done
	[ -n "$s3port" ] || { echo "s3rver did not start"; cat "$WORK/s3rver.log"; return 1; }
	$PY "$TOP/tests/servers/s3faults.py" --upstream "127.0.0.1:$s3port" --port-file "$WORK/proxy.port" \
		>"$WORK/proxy.log" 2>&1 &
	SERVER_PIDS+=($!)
	PROXY=http://127.0.0.1:$(wait_port "$WORK/proxy.port") || { echo "s3faults did not start"; return 1; }
	export AWS_ENDPOINT_URL_S3=$PROXY AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=$T_SECRET
	export AWS_REGION=eu-west-1 AWS_EC2_METADATA_DISABLED=true HOME=$WORK/home
	unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_DEFAULT_REGION AWS_ENDPOINT_URL AMIFORGE_REMOTE
}
