#!/bin/bash
# `amiforge schema`: the committed schemas/recipe.schema.json is its output
# (the drift check), a valid JSON Schema 2020-12 that accepts every recipe
# `amiforge validate` accepts and refuses some it does not.
. "$(dirname "$0")/lib.sh"
NAMES="schema-exit-0 schema-matches-file schema-valid-2020-12 schema-accepts-good schema-rejects-bad schema-every-stage"
[ -x "$AMIFORGE" ] || skip_all "no binary at $AMIFORGE" $NAMES
SCHEMA=$TOP/schemas/recipe.schema.json

"$AMIFORGE" schema >"$WORK/schema.json"; rc=$?
check schema-exit-0 test $rc = 0
if cmp -s "$WORK/schema.json" "$SCHEMA"; then
	ok schema-matches-file
else
	diff -u "$SCHEMA" "$WORK/schema.json" | head -40
	not_ok "schema-matches-file: schemas/recipe.schema.json differs from 'amiforge schema'; regenerate it with 'make && ./amiforge schema >schemas/recipe.schema.json' and commit it"
fi

python3 -c 'import jsonschema, yaml' 2>/dev/null ||
	skip_all "needs python3-jsonschema and python3-yaml" schema-valid-2020-12 schema-accepts-good schema-rejects-bad schema-every-stage

# Recipes are read as a YAML 1.2 editor reads them (yaml-language-server):
# true/false are booleans, yes/no/on/off are strings.
cat >"$WORK/check.py" <<'PY'
import json, re, sys, yaml, jsonschema

class Loader(yaml.SafeLoader):
    pass
Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                             list("tTfF"))

schema = json.load(open(sys.argv[2]))
mode = sys.argv[1]
if mode == "check":
    jsonschema.Draft202012Validator.check_schema(schema)
    sys.exit(0)
v = jsonschema.Draft202012Validator(schema)
failed = 0
for path in sys.argv[3:]:
    try:
        doc = yaml.load(open(path), Loader=Loader)
    except yaml.YAMLError as e:
        print(f"{path}: not YAML: {e}")
        failed += 1
        continue
    errors = list(v.iter_errors(doc))
    if mode == "good" and errors:
        failed += 1
        for e in errors[:3]:
            print(f"{path}: {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}")
    if mode == "bad" and not errors:
        failed += 1
        print(f"{path}: accepted by the schema")
sys.exit(1 if failed else 0)
PY

check schema-valid-2020-12 python3 "$WORK/check.py" check "$SCHEMA"

# Every recipe validate accepts: shipped, good test recipes, the integration
# tests' own (with the variables the tests set).
good=()
for r in "$TOP"/recipes/*.yaml "$TOP"/tests/recipes/good/*.yaml "$TOP"/tests/integration/recipes/*.yaml; do
	"$AMIFORGE" validate "$r" --set MIRROR=http://127.0.0.1/debian >/dev/null 2>&1 && good+=("$r")
done
if [ ${#good[@]} -lt 5 ]; then
	not_ok "schema-accepts-good: only ${#good[@]} recipes pass amiforge validate"
else
	check schema-accepts-good python3 "$WORK/check.py" good "$SCHEMA" "${good[@]}"
fi

# Problems the schema can see: unknown stage types and parameters, wrong types.
bad=()
for n in unknown-stage unknown-stage-suggest unknown-param unknown-param-list unknown-top-key \
	wrong-type-bool wrong-type-int wrong-type-list-for-string wrong-type-mapping-for-list \
	bad-arch bad-checkpoint bad-enum bad-size bad-timeout missing-name missing-stages empty-stages \
	missing-required stage-two-keys stage-not-mapping stage-params-not-mapping stages-not-list \
	fstab-entry-missing command-empty; do
	[ -f "$TOP/tests/recipes/bad/$n.yaml" ] && bad+=("$TOP/tests/recipes/bad/$n.yaml")
done
check schema-rejects-bad python3 "$WORK/check.py" bad "$SCHEMA" "${bad[@]}"

"$AMIFORGE" stages | sed -n 's/^\([a-z_0-9]*\): .*/\1/p' >"$WORK/types"
check schema-every-stage python3 - "$SCHEMA" "$WORK/types" <<'PY'
import json, sys
schema = json.load(open(sys.argv[1]))
items = schema["properties"]["stages"]["items"]["oneOf"]
have = {k for alt in items for k in alt["properties"]}
want = set(open(sys.argv[2]).read().split())
missing = want - have
if missing or len(want) < 10:
    print("stage types missing from the schema:", sorted(missing))
    sys.exit(1)
PY
exit $T_FAILED
