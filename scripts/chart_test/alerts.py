"""The chart's alerts tested as Prometheus tests them: tests/alerts/rules.test.yaml run by `promtool test rules`
against the PrometheusRule's groups rendered with ci/observability-values.yaml, and every alert covered by a case
where it fires and one where it does not."""
import os, shutil, tempfile

import yaml

from common import *  # noqa: F401,F403 (the shared names, as one script had them)

ALERT_TESTS = os.path.join(REPO, "tests", "alerts", "rules.test.yaml")


def check_alert_tests():
    r = helm_template(os.path.join(CHART, "ci", "observability-values.yaml"))
    assert r.returncode == 0, f"helm template: {r.stderr}"
    groups = one(docs_of(r.stdout), "PrometheusRule")["spec"]["groups"]
    alerts = {rule["alert"] for g in groups for rule in g["rules"] if "alert" in rule}
    with open(ALERT_TESTS) as f:
        tests = yaml.safe_load(f)
    assert tests["rule_files"] == ["rules.yaml"], "the tests read the rendered rules as rules.yaml"
    cases = [c for t in tests["tests"] for c in t.get("alert_rule_test", [])]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert not alerts - fires, f"alerts without a case where they fire: {sorted(alerts - fires)}"
    assert not alerts - quiet, f"alerts without a case where they do not fire: {sorted(alerts - quiet)}"
    assert not (fires | quiet) - alerts, f"tests of alerts the chart lacks: {sorted((fires | quiet) - alerts)}"
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "rules.yaml"), "w") as f:
            yaml.safe_dump({"groups": groups}, f)
        shutil.copy(ALERT_TESTS, os.path.join(d, "rules.test.yaml"))
        r = run([PROMTOOL, "test", "rules", "rules.test.yaml"], cwd=d)
        assert r.returncode == 0, f"promtool test rules:\n{r.stdout}{r.stderr}"
