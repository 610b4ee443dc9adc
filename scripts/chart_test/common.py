"""Shared by the chart test's files: the paths and tools given on the command line, the chart's constants, the
check runner (`check`, its `passed` and `failed` counts), helm and YAML helpers, durations, and the server's config
keys read from the binary."""
import copy, datetime, hashlib, json, os, re, subprocess, sys, tempfile, time

import jsonschema
import yaml

REPO, HELM, PROMTOOL, BIN = sys.argv[1:5]
CHART = os.path.join(REPO, "charts", "ociregistry")
CRDS = os.path.join(REPO, "tests", "crds")
KUBE_VERSION = "1.35.0"
API_VERSIONS = ["monitoring.coreos.com/v1", "gateway.networking.k8s.io/v1"]
NAMESPACE = "registry"
RELEASE = "mirror"
UID = 65532
TLS_DIR = "/etc/pki/ociregistry"
CONFIG_FILE = "/var/ociregistry/config/registry-config.yaml"

QUANTITY = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3,
            "Ti": 1024**4}
# The server's Prometheus metrics: dashboards and alerts may query these and no others.
SERVER_METRICS = {
    "ociregistry_cached_pulls_by_ns_total", "ociregistry_upstream_pulls_by_ns", "ociregistry_manifest_pulls_total",
    "ociregistry_blob_pulls_total", "ociregistry_v2_api_endpoint_hits_total", "ociregistry_api_errors_total",
    "ociregistry_blob_bytes_on_disk_total", "ociregistry_manifest_bytes_on_disk_total",
    "ociregistry_cached_manifest_count", "ociregistry_cached_blob_count", "ociregistry_served_bytes_total",
    "ociregistry_upstream_fetches_total", "ociregistry_upstream_bytes_total", "ociregistry_upstream_errors_total",
    "ociregistry_fetches_in_flight", "ociregistry_cache_requests_total", "ociregistry_token_fetches_total",
    "ociregistry_cache_bytes", "ociregistry_cache_entries", "ociregistry_cache_volume_free_bytes",
    "ociregistry_cache_volume_size_bytes",
    # Issue 24: what the alerts and the added dashboard panels read.
    "ociregistry_image_actors", "ociregistry_stale_serves_total", "ociregistry_upstream_breaker_state",
    "ociregistry_evictions_total", "ociregistry_evicted_bytes_total", "ociregistry_upstream_bandwidth_wait_seconds_total",
    "ociregistry_upstream_bandwidth_limit_bytes", "ociregistry_upstream_ratelimit_limit",
    "ociregistry_upstream_ratelimit_remaining", "ociregistry_upstream_ratelimit_reserve",
    "ociregistry_upstream_ratelimit_deferred_total", "process_open_fds", "process_max_fds",
}
HISTOGRAMS = {"ociregistry_http_request_duration_seconds", "ociregistry_fetch_waiters",
              "ociregistry_eviction_idle_seconds"}
SERIES = SERVER_METRICS | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
# Alerts may also use Prometheus' own `up` and kube-state-metrics' restart counter.
RULE_SERIES = SERIES | {"up", "kube_pod_container_status_restarts_total"}

passed, failed = 0, []


def expect(ok, message):
    assert ok, message


def check(name, fn, *args):
    global passed
    try:
        fn(*args)
    except AssertionError as e:
        failed.append(name)
        print(f"FAIL {name}: {e}", flush=True)
    except Exception as e:  # a crash in a check is a failure of that check, not of the run
        failed.append(name)
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    else:
        passed += 1
        print(f"ok   {name}", flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)


# Offline `cargo metadata` must stay on the host platform: crates for other targets are never downloaded by a build.
HOST = next(ln.split(": ", 1)[1] for ln in run(["rustc", "-vV"]).stdout.splitlines() if ln.startswith("host: "))


def helm_template(values=None, api_versions=True):
    cmd = [HELM, "template", RELEASE, CHART, "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    if values:
        cmd += ["-f", values]
    if api_versions:
        for a in API_VERSIONS:
            cmd += ["--api-versions", a]
    return run(cmd)


def docs_of(text):
    return [d for d in yaml.safe_load_all(text) if d]


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs, kind):
    found = find(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


# ---------------------------------------------------------------------------------------------------------------
# Durations: the server's (a number is milliseconds) and the Gateway API's.
UNITS = {"ms": 0.001, "msec": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60,
         "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600,
         "hours": 3600, "d": 86400, "day": 86400, "days": 86400}


def seconds(v):
    if isinstance(v, (int, float)):
        return v / 1000
    s = str(v).replace(" ", "").lower()
    if s.isdigit():
        return int(s) / 1000
    parts = re.findall(r"(\d+)([a-z]+)", s)
    assert parts and "".join(n + u for n, u in parts) == s, f"not a duration: {v!r}"
    return sum(int(n) * UNITS[u] for n, u in parts)


def config_keys():
    """The server's config keys, printed by `ociregistry config-keys` (one path a line, `[]` for a list), as a tree:
    a dict per mapping, a one-element list per list, None per value."""
    out = run([BIN, "config-keys"])
    assert out.returncode == 0 and out.stdout.strip(), f"ociregistry config-keys failed: {out.stderr}"
    tree = {}
    for path in out.stdout.split():
        node, parts = tree, path.split(".")
        for n, part in enumerate(parts):
            name, is_list = (part[:-2], True) if part.endswith("[]") else (part, False)
            if n == len(parts) - 1:
                node[name] = [None] if is_list else None
            elif is_list:
                node = node.setdefault(name, [{}])[0]
            else:
                node = node.setdefault(name, {})
    return tree


# The server's config keys: the chart may render these and no others.
CONFIG_KEYS = config_keys()
