#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Validates every STATE/manifest.json under a test's work directory against
schemas/manifest.schema.json (lib.sh runs it before removing the directory,
so every manifest any test writes is checked).  Prints "ok manifest-schema"
with the count, or "not ok manifest-schema" per invalid file: run-all counts
both like any test line; nothing when the directory holds no manifest."""
import json
import os
import sys

sys.dont_write_bytecode = True


def main():
    work, schema_path = sys.argv[1], sys.argv[2]
    found = []
    for d, _, files in os.walk(work):
        found += [os.path.join(d, f) for f in files if f == "manifest.json"]
    if not found:
        return 0
    try:
        import jsonschema
    except ImportError:
        print("skip manifest-schema: needs python3-jsonschema (make check installs it)")
        return 0
    validator = jsonschema.Draft202012Validator(json.load(open(schema_path)))
    bad = 0
    for path in found:
        try:
            doc = json.load(open(path))
        except ValueError as e:
            print(f"not ok manifest-schema {path}: not JSON: {e}")
            bad += 1
            continue
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        for e in errors[:3]:
            print(f"not ok manifest-schema {path}: at {'/'.join(map(str, e.path)) or '(top)'}: {e.message}")
        bad += bool(errors)
    if not bad:
        print(f"ok manifest-schema ({len(found)} manifests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
