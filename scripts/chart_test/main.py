"""The chart test (scripts/chart-test starts it): every values file in charts/ociregistry/ci/ linted, rendered and
validated, the ci/fail cases, custom-resource capabilities, the Dockerfile and the binary's flags. Arguments: the
repository, helm, promtool and the server binary."""
import copy, datetime, hashlib, json, os, re, subprocess, sys, tempfile, time

import jsonschema
import yaml

import common
from common import *  # noqa: F401,F403
from dockerfile import *  # noqa: F401,F403
from rules_more import *  # noqa: F401,F403
from alerts import check_alert_tests

# ---------------------------------------------------------------------------------------------------------------
start = time.monotonic()
ci = sorted(os.path.join(CHART, "ci", f) for f in os.listdir(os.path.join(CHART, "ci")) if f.endswith(".yaml"))
fails = sorted(os.path.join(CHART, "ci", "fail", f) for f in os.listdir(os.path.join(CHART, "ci", "fail")))
check("chart: templates/_keys.tpl is what `ociregistry config-keys --helm` prints", check_keys_file)
r = run([HELM, "lint", "--strict", "--quiet", CHART])
check("chart: helm lint --strict (defaults)", expect, r.returncode == 0, r.stdout + r.stderr)
with tempfile.TemporaryDirectory() as rendered:
    core_files = [cf for cf in (check_values_file(p, rendered) for p in ci) if cf]
    kubernetes_validate(core_files)
for p in fails:
    check(f"{os.path.relpath(p, CHART)}: fails with its message", check_fail_case, p)
check("custom resources render only when the cluster has their API", check_capabilities)
check("alerts: promtool test rules (tests/alerts/rules.test.yaml), each alert firing and not", check_alert_tests)
check("Dockerfile: stages, user, port, entrypoint, cache directory, Rust version", check_dockerfile)
check(".dockerignore", check_dockerignore)
check("binary: flags and version the chart and Dockerfile rely on", check_binary_flags)
print(f"chart-test: {common.passed} passed, {len(failed)} failed ({time.monotonic() - start:.1f}s)")
sys.exit(1 if failed else 0)
