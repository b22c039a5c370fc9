#!/usr/bin/python3
"""Contract check: wisp's HTTP API against Firecracker's swagger.

Usage: api_contract.py SWAGGER_YAML WISP_SCHEMA_JSON   (needs PyYAML: Debian python3-yaml)
  SWAGGER_YAML      Firecracker's API description (firecracker-api.yaml, swagger 2.0)
  WISP_SCHEMA_JSON  what wisp accepts, as printed by `wisp --api-schema`:
                    {"paths": {"/drives/{drive_id}": {"put": {"body": FIELDS}, ...}, ...}}
                    FIELDS = {"name": null | FIELDS}: null for a scalar or array field,
                    a nested FIELDS for an object field; "body": null for a bodyless method.

What a pass proves, for every path+method wisp reports:
  - Firecracker's API has that path template and method;
  - the body matches field for field, at every nesting level, after resolving the
    swagger's $ref and allOf: wisp accepts no field Firecracker lacks, Firecracker
    defines no field wisp ignores, both agree on which fields are objects (arrays are
    opaque values and are not looked into), and both agree on whether there is a body.
  A free-form swagger object (no "properties", e.g. MmdsContentsObject or a string map)
  has no fields to compare: wisp may describe it as null or as any FIELDS, and a
  free-form body must be reported as an object ({}), not as null.
It does not prove field types, required-ness, enums or behaviour, only the field names.
Swagger endpoints wisp does not report are listed as "# not implemented: ..." (no failure).

Output (like tests/run-unit.sh): one `ok - contract/PUT /path` or `not ok - ...` line per
path+method, reasons indented below a `not ok`, then `# ` lines.
Exit status: 0 all ok, 1 something not ok (or wisp reports no path), 2 usage or input error.
"""
import json
import sys

import yaml

METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
FREE = "free-form object"  # shape of a swagger object without fixed properties


class InputError(Exception):
    """A problem with the command line or an input file (exit status 2)."""


def load(path, what, parse):
    try:
        with open(path, encoding="utf-8") as f:
            return parse(f)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from exc
    except (yaml.YAMLError, ValueError) as exc:
        raise InputError(f"{what} {path} does not parse: {exc}") from exc


def follow(doc, ref):
    """The node a local JSON reference ('#/definitions/Drive') points to."""
    if not isinstance(ref, str) or not ref.startswith("#/"):
        raise InputError(f"swagger: unsupported $ref {ref!r}")
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise InputError(f"swagger: dangling $ref {ref}")
        node = node[part]
    return node


def shape(doc, schema, refs=()):
    """A swagger schema in wisp's FIELDS form: None (scalar or array), FREE, or
    {field: shape}. `refs` is the chain of $refs followed so far (to stop cycles)."""
    while isinstance(schema, dict) and "$ref" in schema:
        if schema["$ref"] in refs:
            raise InputError(f"swagger: recursive $ref {schema['$ref']} has no finite shape")
        refs += (schema["$ref"],)
        schema = follow(doc, schema["$ref"])
    if not isinstance(schema, dict):
        raise InputError(f"swagger: schema is not an object: {schema!r}")
    if "allOf" in schema:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        parts = [shape(doc, part, refs) for part in schema["allOf"] + [rest]]
        fields = [p for p in parts if isinstance(p, dict)]
        if fields:
            return {name: sub for p in fields for name, sub in p.items()}
        return FREE if FREE in parts else None
    if "properties" in schema:
        return {name: shape(doc, sub, refs) for name, sub in schema["properties"].items()}
    if schema.get("type") == "object" or "additionalProperties" in schema:
        return FREE
    return None


def describe(s):
    return "an object" if isinstance(s, dict) else "a scalar or array"


def compare(fc, wisp, prefix, reasons, op):
    """Append to `reasons` every difference between Firecracker's shape `fc` and wisp's."""
    if fc == FREE:
        return
    if isinstance(fc, dict) != isinstance(wisp, dict):
        reasons.append(f"{op}: field '{prefix[:-1]}' is {describe(fc)} in Firecracker's "
                       f"schema but {describe(wisp)} in wisp's")
        return
    if not isinstance(fc, dict):
        return
    for name in wisp:
        if name not in fc:
            reasons.append(f"{op}: wisp accepts field '{prefix}{name}', which Firecracker's "
                           f"schema does not have")
    for name, sub in fc.items():
        if name not in wisp:
            reasons.append(f"{op}: Firecracker's field '{prefix}{name}' is not accepted")
        else:
            compare(sub, wisp[name], f"{prefix}{name}.", reasons, op)


def swagger_body(doc, path_item, op):
    """Shape of an operation's body, or None when it takes no body parameter."""
    params = list(path_item.get("parameters", [])) + list(op.get("parameters", []))
    for param in params:
        if isinstance(param, dict) and "$ref" in param:
            param = follow(doc, param["$ref"])
        if isinstance(param, dict) and param.get("in") == "body":
            return {"body": shape(doc, param.get("schema", {}))}
    return None


def check_fields(fields, where):
    if not isinstance(fields, dict):
        raise InputError(f"wisp schema: {where} is neither null nor an object")
    for name, sub in fields.items():
        if sub is not None:
            check_fields(sub, f"{where}.{name}")


def wisp_operations(schema):
    """[(METHOD, path, body FIELDS or None)] from wisp's schema, validated, sorted."""
    if not isinstance(schema, dict) or not isinstance(schema.get("paths"), dict):
        raise InputError('wisp schema: no "paths" object at the top level')
    ops = []
    for path, methods in schema["paths"].items():
        if not isinstance(methods, dict):
            raise InputError(f"wisp schema: {path} is not an object of methods")
        for method, op in methods.items():
            if not isinstance(op, dict) or "body" not in op:
                raise InputError(f'wisp schema: {method} {path} has no "body" key')
            if op["body"] is not None:
                check_fields(op["body"], f"{method} {path} body")
            ops.append((method.upper(), path, op["body"]))
    return sorted(ops, key=lambda o: (o[1], METHODS.index(o[0].lower())
                                      if o[0].lower() in METHODS else len(METHODS)))


def check(doc, method, path, wisp_body):
    """Reasons why wisp's METHOD path differs from Firecracker's (empty: it matches)."""
    op_name = f"{method} {path}"
    path_item = doc["paths"].get(path)
    op = path_item.get(method.lower()) if isinstance(path_item, dict) else None
    if not isinstance(op, dict):
        return [f"wisp implements {op_name}, which Firecracker's API does not have"]
    fc = swagger_body(doc, path_item, op)
    if fc is None:
        if wisp_body is None:
            return []
        return [f"{op_name}: wisp's API gives it a body, Firecracker's does not"]
    if wisp_body is None:
        return [f"{op_name}: Firecracker's API gives it a body, wisp's does not"]
    reasons = []
    if fc["body"] != FREE and not isinstance(fc["body"], dict):
        reasons.append(f"{op_name}: Firecracker's body is not an object, wisp's is")
    else:
        compare(fc["body"], wisp_body, "", reasons, op_name)
    return reasons


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        raise InputError(f"usage: {argv[0]} SWAGGER_YAML WISP_SCHEMA_JSON")
    doc = load(argv[1], "Firecracker swagger", yaml.safe_load)
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise InputError(f'Firecracker swagger {argv[1]}: no "paths" object at the top level')
    ops = wisp_operations(load(argv[2], "wisp schema", json.load))

    passed = failed = 0
    for method, path, body in ops:
        reasons = check(doc, method, path, body)
        passed, failed = passed + (not reasons), failed + bool(reasons)
        print(f"{'not ok' if reasons else 'ok'} - contract/{method} {path}")
        for reason in reasons:
            print(f"    {reason}")
    if not ops:
        failed += 1
        print("not ok - contract (wisp's schema lists no path)")

    implemented = {(m, p) for m, p, _ in ops}
    missing = [f"{m.upper()} {p}" for p, item in doc["paths"].items() if isinstance(item, dict)
               for m in item if m in METHODS and (m.upper(), p) not in implemented]
    for name in missing:
        print(f"# not implemented: {name}")
    print(f"# contract: {passed} ok, {failed} not ok, "
          f"{len(missing)} Firecracker endpoints not implemented")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except InputError as exc:
        print(f"api_contract: {exc}", file=sys.stderr)
        sys.exit(2)
