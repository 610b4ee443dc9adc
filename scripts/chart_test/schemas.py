"""Custom resources validated like the API server would, against the CRD schemas in tests/crds/, and the PromQL
of the alerts and dashboards."""
import copy, datetime, hashlib, json, os, re, subprocess, sys, tempfile, time

import jsonschema
import yaml

from common import *  # noqa: F401,F403 (the shared names, as one script had them)

# ---------------------------------------------------------------------------------------------------------------
# Custom resources: validated like the API server would, against the CRD schemas kept in tests/crds/: defaults
# applied, unknown fields rejected, list-type maps and sets unique, and the CEL rules of the kept schema
# evaluated (each one implemented below, by its message; a rule without an implementation fails the check).
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def load_crds():
    crds = {}
    for f in sorted(os.listdir(CRDS)):
        if not f.endswith(".yaml"):
            continue
        with open(os.path.join(CRDS, f)) as fh:
            crd = yaml.safe_load(fh)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schema = copy.deepcopy(v["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = OBJECT_META
            crds[(f"{group}/{v['name']}", kind)] = schema
    return crds


def strict(schema):
    """Structural schema -> JSON schema that rejects unknown fields, as the API server prunes them."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def apply_defaults(schema, obj):
    if isinstance(obj, dict):
        for k, sub in schema.get("properties", {}).items():
            if k not in obj and "default" in sub:
                obj[k] = copy.deepcopy(sub["default"])
            if k in obj:
                apply_defaults(sub, obj[k])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k in obj:
                if k not in schema.get("properties", {}):
                    apply_defaults(extra, obj[k])
    elif isinstance(obj, list) and "items" in schema:
        for item in obj:
            apply_defaults(schema["items"], item)


def gateway_duration(s):
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in re.findall(r"(\d+)(ms|h|m|s)", s))


def same_parent(a, b):
    return all(a.get(k) == b.get(k) for k in ("group", "kind", "name")) and a.get("namespace", "") == b.get(
        "namespace", "")


EXACT_OR_PREFIX = ("Exact", "PathPrefix")
CEL = {
    "sectionName or port must be specified when parentRefs includes 2 or more references to the same parent":
        lambda s: all((a.get("sectionName", "") == "") == (b.get("sectionName", "") == "")
                      and (a.get("port", 0) == 0) == (b.get("port", 0) == 0)
                      for a in s for b in s if same_parent(a, b)),
    "sectionName or port must be unique when parentRefs includes 2 or more references to the same parent":
        lambda s: all(sum(1 for b in s if same_parent(a, b) and a.get("sectionName", "") == b.get("sectionName", "")
                          and a.get("port", 0) == b.get("port", 0)) == 1 for a in s),
    "Must have port for Service reference":
        lambda s: "port" in s if (len(s["group"]) == 0 and s["kind"] == "Service") else True,
    "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']":
        lambda s: s["value"].startswith("/") if s["type"] in EXACT_OR_PREFIX else True,
    "must not contain '//' when type one of ['Exact', 'PathPrefix']":
        lambda s: "//" not in s["value"] if s["type"] in EXACT_OR_PREFIX else True,
    "must not contain '/./' when type one of ['Exact', 'PathPrefix']":
        lambda s: "/./" not in s["value"] if s["type"] in EXACT_OR_PREFIX else True,
    "must not contain '/../' when type one of ['Exact', 'PathPrefix']":
        lambda s: "/../" not in s["value"] if s["type"] in EXACT_OR_PREFIX else True,
    "must not contain '%2f' when type one of ['Exact', 'PathPrefix']":
        lambda s: "%2f" not in s["value"] if s["type"] in EXACT_OR_PREFIX else True,
    "must not contain '%2F' when type one of ['Exact', 'PathPrefix']":
        lambda s: "%2F" not in s["value"] if s["type"] in EXACT_OR_PREFIX else True,
    "must not contain '#' when type one of ['Exact', 'PathPrefix']":
        lambda s: "#" not in s["value"] if s["type"] in EXACT_OR_PREFIX else True,
    "must not end with '/..' when type one of ['Exact', 'PathPrefix']":
        lambda s: not s["value"].endswith("/..") if s["type"] in EXACT_OR_PREFIX else True,
    "must not end with '/.' when type one of ['Exact', 'PathPrefix']":
        lambda s: not s["value"].endswith("/.") if s["type"] in EXACT_OR_PREFIX else True,
    "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']":
        lambda s: s["type"] in ("Exact", "PathPrefix", "RegularExpression"),
    "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for "
    "types ['Exact', 'PathPrefix']":
        lambda s: bool(re.fullmatch(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+", s["value"]))
        if s["type"] in EXACT_OR_PREFIX else True,
    "backendRequest timeout cannot be longer than request timeout":
        lambda s: not ("request" in s and "backendRequest" in s and gateway_duration(s["request"]) != 0
                       and gateway_duration(s["backendRequest"]) > gateway_duration(s["request"])),
    "While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route "
    "must be less than 128":
        lambda s: sum(len(r.get("matches", [])) for r in s) <= 128,
    "Rule name must be unique within the route":
        lambda s: all("name" not in a or sum(1 for b in s if b.get("name") == a["name"]) == 1 for a in s),
}


def k8s_extensions(schema, obj, path, errors):
    """x-kubernetes-validations (CEL), list-type map/set uniqueness; recursive."""
    for rule in schema.get("x-kubernetes-validations", []):
        impl = CEL.get(rule["message"])
        if impl is None:
            errors.append(f"{path}: no implementation for CEL rule {rule['message']!r}")
        elif not impl(obj):
            errors.append(f"{path}: {rule['message']}")
    if isinstance(obj, list):
        lt = schema.get("x-kubernetes-list-type")
        if lt == "set" and len({json.dumps(i, sort_keys=True) for i in obj}) != len(obj):
            errors.append(f"{path}: duplicate items in a set")
        if lt == "map":
            keys = [tuple(i.get(k) for k in schema["x-kubernetes-list-map-keys"]) for i in obj]
            if len(set(keys)) != len(keys):
                errors.append(f"{path}: duplicate keys in a map list")
        for n, item in enumerate(obj):
            k8s_extensions(schema.get("items", {}), item, f"{path}[{n}]", errors)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            sub = schema.get("properties", {}).get(k)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                k8s_extensions(sub, v, f"{path}.{k}", errors)


CRD_SCHEMAS = load_crds()
CRD_GROUPS = {api.split("/")[0] for api, _ in CRD_SCHEMAS}


def validate_custom_resource(doc):
    key = (doc["apiVersion"], doc["kind"])
    assert key in CRD_SCHEMAS, f"no CRD schema in tests/crds for {key}"
    schema = CRD_SCHEMAS[key]
    obj = copy.deepcopy(doc)
    apply_defaults(schema, obj)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
              for e in jsonschema.Draft7Validator(strict(schema)).iter_errors(obj)]
    k8s_extensions(schema, obj, doc["kind"], errors)
    assert not errors, "; ".join(errors)


# ---------------------------------------------------------------------------------------------------------------
# PromQL: the metric names an expression reads.
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
                "bool", "inf", "nan"}


def metric_names(expr):
    e = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\b\d+(\.\d+)?([eE][-+]?\d+)?\b", "", e)  # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue  # a function, an aggregation or a keyword
        names.add(m.group(0))
    return names


def grafana_to_promql(expr):
    e = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", "x", e)


def dashboard_queries(dash):
    queries = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                queries.append((f"panel {p.get('title')!r}", t["expr"]))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q.strip())
            assert m, f"variable {v['name']}: only label_values(<selector>, <label>) queries are expected, got {q!r}"
            queries.append((f"variable {v['name']!r}", m.group(1)))
    return queries


def promtool_check(rules, what):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": rules}, f)
    try:
        r = run([PROMTOOL, "check", "rules", f.name])
        assert r.returncode == 0, f"promtool check rules ({what}): {r.stdout.strip()} {r.stderr.strip()}"
    finally:
        os.unlink(f.name)
