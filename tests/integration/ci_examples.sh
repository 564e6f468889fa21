#!/bin/bash
# examples/ci/ run: tests/ci/run_pipeline.py executes each example's shell
# steps in order as the CI system would (checkout, caches, artifacts, step
# outputs, GitHub's if: always(), GitLab's cache/artifacts when: and dotenv
# report; see its docstring for what is emulated) against fakeaws, with the
# examples' default recipe recipes/debian-12-ebs.yaml.
# Run 1: fakeaws refuses RegisterImage (403, as a missing IAM permission
# would), so the build fails at its last stage; the job fails at the build
# step, the boot-test never runs, and still the state and the package cache
# are saved and the failed manifest is published.
# Run 2, a re-run in a fresh working directory (new workspace, new checkout,
# new clone and build of amiforge: nothing of run 1 but the CI cache):
# restores the state, resumes at register only (the journal shows no other
# stage started), the AMI id reaches the step outputs / dotenv report, the
# manifest artifact says ok, and boot-test boots the image under TCG.
# Every run of a pipeline builds amiforge from a clone of this repository's
# HEAD (commit first); the whole test takes about 20 minutes on 2 cores.
# CI_EXAMPLES=github or gitlab runs one of the two.
. "$(dirname "$0")/lib.sh"
. "$TOP/tests/servers/servers.sh"
KINDS=${CI_EXAMPLES:-github gitlab}
TESTS=""
for k in $KINDS; do
	TESTS+=" $k-run1-fails-at-build $k-run1-state-saved $k-run1-failed-manifest-published $k-run2-fresh-restores
$k-run2-resumes-at-register $k-run2-ami-published $k-run2-manifest-ok $k-run2-boot-test"
done
TESTS+=" ci-no-secrets no-leaks"
require_root $TESTS
require_loop $TESTS
require_botocore $TESTS
python3 -c 'import yaml' 2>/dev/null || skip_all "needs python3-yaml (make check installs it)" $TESTS
command -v qemu-system-x86_64 >/dev/null && command -v ssh >/dev/null ||
	skip_all "needs qemu-system-x86_64 and ssh for boot-test (make check installs them)" $TESTS
require_network $TESTS
start_fakeaws || { not_ok "fakeaws starts"; exit 1; }

# The runner's passwordless sudo (this test already runs as root): -E keeps
# the environment, without it the environment is reset as sudo's env_reset
# does, so a step that forgot -E loses its AWS credentials here too.
mkdir -p "$WORK/bin"
cat >"$WORK/bin/sudo" <<'SH'
#!/bin/bash
keep=0
while [ $# -gt 0 ]; do
	case "$1" in
	-E | --preserve-env) keep=1; shift ;;
	-*) echo "sudo (test): option $1 not emulated" >&2; exit 1 ;;
	*) break ;;
	esac
done
[ $keep = 1 ] && exec "$@"
exec env -i PATH="$PATH" HOME=/root TERM="${TERM:-dumb}" "$@"
SH
chmod +x "$WORK/bin/sudo"
export PATH=$WORK/bin:$PATH TMPDIR=$WORK/tmp
mkdir -p "$TMPDIR"
SHA=$(git -C "$TOP" rev-parse HEAD)
[ -z "$(git -C "$TOP" status --porcelain -- examples recipes)" ] ||
	echo "# note: the pipelines clone HEAD ($SHA); uncommitted changes to examples/ or recipes/ are not in it"

# Runs the KIND example for attempt N in $WORK/KIND-N (fresh), cache in $WORK/KIND-cache.
pipeline() { # KIND N
	local k=$1 n=$2 d=$WORK/$1-$2 file job
	case $k in
	github) file=$TOP/examples/ci/github-actions.yml job=ami ;;
	gitlab) file=$TOP/examples/ci/gitlab-ci.yml job=build-ami ;;
	esac
	mkdir -p "$d"
	# Values of the tables the examples read: the run (both attempts share
	# run_id and sha, as a re-run does), repository variables and secrets
	# for GitHub, project CI/CD variables for GitLab.  The credentials come
	# through the environment, never the command line.
	python3 "$TOP/tests/ci/run_pipeline.py" "$k" "$file" --job "$job" --top "$TOP" \
		--workspace "$d/ws" --cache-dir "$WORK/$k-cache" --artifacts "$d/artifacts" --logs "$d/logs" \
		--result "$d/result.json" \
		--set github.run_id=4242 --set github.run_attempt="$n" --set github.sha="$SHA" --set ref_slug=main \
		--set vars.AMIFORGE_GIT="file://$TOP" --set vars.AMIFORGE_REF= --set vars.AMIFORGE_RECIPE= \
		--set vars.AWS_REGION=eu-west-1 \
		--set-env secrets.AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY_ID \
		--set-env secrets.AWS_SECRET_ACCESS_KEY=AWS_SECRET_ACCESS_KEY \
		--set AMIFORGE_GIT="file://$TOP" --set AMIFORGE_SRC="$d/amiforge-src" \
		--set-env AWS_ACCESS_KEY_ID=AWS_ACCESS_KEY_ID --set-env AWS_SECRET_ACCESS_KEY=AWS_SECRET_ACCESS_KEY \
		>"$d/runner.out" 2>&1
	RC=$?
	echo "# $k attempt $n: exit $RC"
}
# Evaluates a python expression on r (the result JSON) and j (the journal
# events of the workspace's state, a list of dicts); exit 0 if true.
res() { # KIND N EXPR
	python3 - "$WORK/$1-$2" "$3" <<'PY'
import glob, json, os, sys
d, expr = sys.argv[1:]
r = json.load(open(os.path.join(d, "result.json")))
jf = os.path.join(d, "ws", ".amiforge", "state", "journal")
j = [json.loads(l) for l in open(jf)] if os.path.exists(jf) else []
steps = {s["name"]: s for s in r.get("steps", [])}
jobs = {s["name"]: s for s in r.get("jobs", [])}
def since_last_start(ev):  # events of the newest build only
    i = max(n for n, e in enumerate(ev) if e["event"] == "build_start")
    return ev[i:]
def manifest(name):
    return json.load(open(glob.glob(os.path.join(d, "artifacts", name, ".amiforge", "state", "manifest.json"))[0]))
ok = eval("(" + expr + "\n)")  # parenthesised: the expression may span indented lines
if not ok:
    print(f"# false: {expr}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}
# Shows the end of every log of attempt N (after a failed check).
show() { # KIND N
	local f
	for f in "$WORK/$1-$2/runner.out" "$WORK/$1-$2"/logs/*; do echo "== $f"; tail -n 12 "$f" | cut -c1-300; done
}
verdict() { # NAME KIND N: ok if the last command succeeded, else not ok and the logs
	if [ $? = 0 ]; then ok "$1"; else not_ok "$1"; show "$2" "$3"; fi
}
fail_register() {
	control '{"op": "fault", "action": "RegisterImage", "kind": "error", "status": 403, "code": "UnauthorizedOperation", "message": "You are not authorized to perform this operation."}'
}

for k in $KINDS; do
	control '{"op": "reset"}'
	fail_register
	pipeline "$k" 1
	if [ $k = github ]; then
		[ "$RC" = 1 ] && res github 1 'r["status"] == "failure" and steps["Build the AMI"]["status"] == "failure"
			and all(s["status"] == "success" for s in r["steps"][:[s["name"] for s in r["steps"]].index("Build the AMI")])
			and steps["Boot-test the image"]["status"] == "skipped" and steps["Say what was made"]["status"] == "skipped"
			and all(steps[n]["status"] == "success" for n in ("Save the build state", "Save the package cache",
			        "Publish the manifest and outputs"))' 2>&1 || false
	else
		[ "$RC" = 1 ] && res gitlab 1 'r["status"] == "failed" and jobs["build-ami"]["status"] == "failed"
			and jobs["announce"]["status"] == "skipped" and jobs["build-ami"]["after_script_exit"] == 0
			and "$ \"$AMIFORGE_SRC/amiforge\" build" in open(jobs["build-ami"]["log"]).read()
			and "$ \"$AMIFORGE_SRC/amiforge\" boot-test" not in open(jobs["build-ami"]["log"]).read()'
	fi
	verdict "$k-run1-fails-at-build" "$k" 1
	res "$k" 1 '{c["key"] for c in r["cache"] if c["op"] == "save"} >= ({"amiforge-state-'"$SHA"'-1", "amiforge-debs-4242-1"}
			if "'"$k"'" == "github" else {"amiforge-state-main", "amiforge-debs"})' &&
		[ -n "$(ls "$WORK/$k-cache"/*state*/.amiforge/state/checkpoints 2>/dev/null)" ] &&
		[ -n "$(ls -A "$WORK/$k-cache"/*debs*/.amiforge/debs 2>/dev/null)" ]
	verdict "$k-run1-state-saved" "$k" 1
	art=$([ $k = github ] && echo amiforge-4242-1 || echo build-ami)
	res "$k" 1 'manifest("'"$art"'")["status"] == "failed" and manifest("'"$art"'")["failed_stage"] == "register"
		and "snapshot.id" in manifest("'"$art"'")["outputs"]'
	verdict "$k-run1-failed-manifest-published" "$k" 1

	pipeline "$k" 2
	art=$([ $k = github ] && echo amiforge-4242-2 || echo build-ami)
	# Fresh: run_pipeline.py refuses a workspace that exists; only the cache carries state.
	res "$k" 2 'any(c["op"] == "restore" and c["matched"] == ("amiforge-state-'"$SHA"'-1" if "'"$k"'" == "github"
		else "amiforge-state-main") for c in r["cache"])'
	verdict "$k-run2-fresh-restores" "$k" 2
	# The journal the cache carried: run 1 started every stage up to register;
	# run 2's build started only register.
	res "$k" 2 '[e["id"] for e in since_last_start(j) if e["event"] == "stage_start"] == ["register"]
		and [e["id"] for e in j if e["event"] == "stage_start"].count("debootstrap") == 1
		and since_last_start(j)[-1] == {**since_last_start(j)[-1], "event": "build_end", "status": "ok"}'
	verdict "$k-run2-resumes-at-register" "$k" 2
	ami=$(state "[i for i, v in s['images'].items() if v['name'].startswith('debian-12-ebs-')]")
	if [ $k = github ]; then
		res github 2 'r["status"] == "success" and [r["outputs"]["ami_id"]] == '"$ami"'
			and steps["Build the AMI"]["outputs"]["ami_id"] == r["outputs"]["ami_id"]
			and json.loads(r["outputs"]["ami_ids"]) == {"eu-west-1": r["outputs"]["ami_id"]}
			and r["outputs"]["snapshot_id"].startswith("snap-")
			and "ami_id=" + r["outputs"]["ami_id"] in open(os.path.join(d, "artifacts", "amiforge-4242-2", "outputs.env")).read()'
	else
		res gitlab 2 'r["status"] == "success" and [r["outputs"]["ami_id"]] == '"$ami"'
			and jobs["announce"]["status"] == "success"
			and ("built " + r["outputs"]["ami_id"] + " in eu-west-1") in open(jobs["announce"]["log"]).read()'
	fi
	verdict "$k-run2-ami-published" "$k" 2
	res "$k" 2 'manifest("'"$art"'")["status"] == "ok" and manifest("'"$art"'")["outputs"]["ami.id"] in open(os.path.join(d, "result.json")).read()'
	verdict "$k-run2-manifest-ok" "$k" 2
	if [ $k = github ]; then
		res github 2 'steps["Boot-test the image"]["status"] == "success"'
	else
		res gitlab 2 'jobs["build-ami"]["status"] == "success"'
	fi && grep -q '^result: passed (8 checks)$' "$WORK/$k-2"/logs/*
	verdict "$k-run2-boot-test" "$k" 2
done

# The secret went to the jobs as a secret / CI variable: it is in no log, artifact, state or cache.
check ci-no-secrets bash -c '! grep -rlF -e "$1" "$2"/*-[12]/logs "$2"/*-[12]/runner.out "$2"/*-[12]/artifacts "$2"/*-cache/*state*/.amiforge/state/journal "$2"/*-cache/*state*/.amiforge/state/logs 2>/dev/null' _ "$T_SECRET" "$WORK"
stop_servers
check no-leaks no_leaks "$WORK"
exit $T_FAILED
