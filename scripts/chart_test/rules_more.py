"""More of the rendered chart's rules: scale-out, observability, persistence, routes; each values file rendered,
validated and checked, the ci/fail cases, and capabilities."""
import copy, datetime, hashlib, json, os, re, subprocess, sys, tempfile, time

import jsonschema
import yaml

from common import *  # noqa: F401,F403 (the shared names, as one script had them)

from schemas import *  # noqa: F401,F403
from rules import *  # noqa: F401,F403


def check_scale_out(docs, values):
    """storage.type s3: the config's storage from the values, the credentials as files from the right Secret (or
    AWS_* env), POD_IP from the downward API, the peers' headless Service that cluster.dns names, and a budget
    with more than one replica. Filesystem storage: none of these."""
    dep, pod, c = pod_of(docs)
    cfg, _ = config_of(docs)
    st = values.get("storage") or {}
    s3v = st.get("s3") or {}
    peers = [s for s in find(docs, "Service") if s["spec"].get("clusterIP") == "None"]
    pdbs = find(docs, "PodDisruptionBudget")
    env = {e["name"]: e for e in c.get("env", [])}
    if st.get("type", "filesystem") != "s3":
        assert "storage" not in cfg and "cluster" not in cfg, "storage/cluster without storage.type s3"
        assert not peers and not pdbs and "POD_IP" not in env, "peers Service, budget or POD_IP without s3"
        return
    s3 = cfg["storage"]["s3"]
    assert cfg["storage"]["type"] == "s3"
    for k in ("endpoint", "bucket", "localCacheSize"):
        assert str(s3[k]) == str(s3v[k] if k in s3v else "10Gi"), f"storage.s3.{k} {s3[k]!r}"
    assert s3["pathStyle"] is s3v.get("pathStyle", True), f"pathStyle {s3['pathStyle']!r}"
    assert s3.get("prefix", "") == s3v.get("prefix", ""), "prefix"
    # Credentials: files from existingSecret or the chart's own Secret, else AWS_* in env.
    if s3v.get("existingSecret") or s3v.get("accessKeyId"):
        ak, sk = s3v.get("accessKeyIdKey", "access-key-id"), s3v.get("secretAccessKeyKey", "secret-access-key")
        mount = [m for m in c["volumeMounts"] if m["mountPath"] == os.path.dirname(s3["accessKeyIdFile"])]
        assert len(mount) == 1 and mount[0].get("readOnly") and "subPath" not in mount[0], "credentials mounted"
        assert os.path.dirname(s3["secretAccessKeyFile"]) == mount[0]["mountPath"]
        vol = [v for v in pod["volumes"] if v["name"] == mount[0]["name"]][0]["secret"]
        items = {i["key"]: i["path"] for i in vol["items"]}
        assert items == {ak: os.path.basename(s3["accessKeyIdFile"]),
                         sk: os.path.basename(s3["secretAccessKeyFile"])}, f"secret items {items}"
        own = find(docs, "Secret", vol["secretName"])
        if s3v.get("existingSecret"):
            assert vol["secretName"] == s3v["existingSecret"] and not own, "the existing Secret, none created"
        else:
            assert len(own) == 1 and set(own[0]["data"]) == {ak, sk}, "the chart's own credentials Secret"
            assert "checksum/s3-credentials" in dep["spec"]["template"]["metadata"]["annotations"]
    else:
        assert "accessKeyIdFile" not in s3 and {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env), \
            "credentials from AWS_* env"
    # Peers: POD_IP, and a headless Service of ready pods on the server's port that cluster.dns names.
    assert env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP", \
        "POD_IP from status.podIP"
    assert len(peers) == 1, "one headless peers Service"
    p = peers[0]["spec"]
    assert p.get("publishNotReadyAddresses") is False, "only ready replicas are peers"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert p["selector"] and all(labels.get(k) == v for k, v in p["selector"].items()), "selects the pods"
    assert p["ports"][0]["targetPort"] == "http" and p["ports"][0]["port"] == cfg.get("port", 8080)
    domain = values.get("clusterDomain", "cluster.local")
    want = f"{peers[0]['metadata']['name']}.{NAMESPACE}.svc.{domain}"
    cl = cfg["cluster"]
    assert cl["dns"] == want, f"cluster.dns {cl['dns']!r}, not {want!r}"
    assert cl["port"] == cfg.get("port", 8080), "cluster.port is the server's port"
    assert cl["scheme"] == ("https" if cfg.get("serverTlsConfig") else "http"), f"cluster.scheme {cl['scheme']}"
    # A budget with more than one replica (unless disabled), selecting the pods.
    want_pdb = dep["spec"]["replicas"] > 1 and (values.get("podDisruptionBudget") or {}).get("enabled", True)
    assert len(pdbs) == (1 if want_pdb else 0), f"{len(pdbs)} PodDisruptionBudgets for {dep['spec']['replicas']}"
    for b in pdbs:
        assert b["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the budget selects the pods"
        assert ("minAvailable" in b["spec"]) != ("maxUnavailable" in b["spec"]), "one of minAvailable, maxUnavailable"


def check_observability(docs, values):
    obs = (values.get("observability") or {})
    sm, pr = find(docs, "ServiceMonitor"), find(docs, "PrometheusRule")
    dash = [d for d in find(docs, "ConfigMap") if (d["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"]
    if not obs.get("enabled"):
        assert not (sm or pr or dash), "observability off: no ServiceMonitor, PrometheusRule or dashboards"
        return
    assert len(sm) == 1 and len(pr) == 1, "a ServiceMonitor and a PrometheusRule"
    ep = sm[0]["spec"]["endpoints"]
    assert [e["port"] for e in ep] == ["metrics"] and ep[0]["path"] == "/metrics"
    metrics_svc = [s for s in find(docs, "Service") if s["spec"]["ports"][0]["name"] == "metrics"][0]
    want = sm[0]["spec"]["selector"]["matchLabels"]
    assert all(metrics_svc["metadata"]["labels"].get(k) == v for k, v in want.items()), "selects the metrics Service"
    main = [s for s in find(docs, "Service") if s["spec"]["ports"][0]["name"] == "http"][0]
    assert not all(main["metadata"]["labels"].get(k) == v for k, v in want.items()), "must not select the main one"
    # Alerts: the PromQL parses (promtool), reads only the server's metrics, and covers what the issue asks.
    rules = pr[0]["spec"]["groups"]
    alerts = {r["alert"]: r["expr"] for g in rules for r in g["rules"] if "alert" in r}
    for name, expr in alerts.items():
        unknown = metric_names(expr) - RULE_SERIES
        assert not unknown, f"alert {name} reads unknown metrics {sorted(unknown)}"
    text = " ".join(alerts.values())
    for needed in ("ociregistry_upstream_errors_total", "ociregistry_cache_volume_free_bytes",
                   "kube_pod_container_status_restarts_total", "ociregistry_upstream_ratelimit_remaining",
                   "ociregistry_upstream_breaker_state", "ociregistry_stale_serves_total",
                   "ociregistry_eviction_idle_seconds_bucket", "process_open_fds"):
        assert needed in text, f"no alert on {needed}"
    promtool_check(rules, "PrometheusRule")
    # Dashboards: JSON, the sidecar's label, PromQL that parses and reads only the server's metrics.
    assert len(dash) >= 1, "Grafana dashboard ConfigMaps labelled grafana_dashboard: \"1\""
    records, used = [], set()
    for cm in dash:
        for key, body in cm["data"].items():
            d = json.loads(body)
            assert d.get("uid") and d.get("title") and d.get("panels"), f"{key}: not a dashboard"
            for where, expr in dashboard_queries(d):
                names = metric_names(grafana_to_promql(expr))
                unknown = names - SERIES
                assert not unknown, f"{key} {where} reads unknown metrics {sorted(unknown)}"
                used |= names
                records.append({"record": f"dashboard_query_{len(records)}", "expr": grafana_to_promql(expr)})
    promtool_check([{"name": "dashboards", "rules": records}], "dashboard queries")
    unused = {m for m in SERVER_METRICS if m not in used} | {h for h in HISTOGRAMS if not any(
        u.startswith(h + "_") for u in used)}
    assert not unused, f"dashboards do not show {sorted(unused)}"


def check_persistence_kind(docs, values):
    vol = cache_volume(docs)
    p = values.get("persistence") or {}
    if (p.get("persistentVolumeClaim") or {}).get("enabled"):
        want = p["persistentVolumeClaim"].get("existingClaimName")
        assert "persistentVolumeClaim" in vol, f"cache volume {vol}"
        if want:
            assert vol["persistentVolumeClaim"]["claimName"] == want and not find(docs, "PersistentVolumeClaim")
        else:
            assert find(docs, "PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"])
    elif (p.get("hostPath") or {}).get("enabled"):
        assert vol.get("hostPath", {}).get("path") == p["hostPath"]["path"], f"cache volume {vol}"
    else:
        assert "emptyDir" in vol, f"cache volume {vol}"
        limit = (p.get("emptyDir") or {}).get("sizeLimit")
        assert vol["emptyDir"].get("sizeLimit") == (limit or None), "no emptyDir sizeLimit unless asked for"


def check_routes(docs, values):
    ing, route = find(docs, "Ingress"), find(docs, "HTTPRoute")
    svc = [s for s in find(docs, "Service") if s["spec"]["ports"][0]["name"] == "http"][0]
    assert bool(ing) == bool((values.get("ingress") or {}).get("enabled")), "Ingress iff ingress.enabled"
    assert bool(route) == bool((values.get("httpRoute") or {}).get("enabled")), "HTTPRoute iff httpRoute.enabled"
    for i in ing:
        for rule in i["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == svc["metadata"]["name"] and backend["port"]["name"] == "http"
    for r in route:
        for rule in r["spec"]["rules"]:
            for b in rule["backendRefs"]:
                assert b["name"] == svc["metadata"]["name"] and b["port"] == svc["spec"]["ports"][0]["port"]


def check_values_file(path, rendered_dir):
    name = os.path.relpath(path, CHART)
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    r = run([HELM, "lint", "--strict", "--quiet", CHART, "-f", path])
    check(f"{name}: helm lint --strict", expect, r.returncode == 0, r.stdout + r.stderr)
    r = helm_template(path)
    check(f"{name}: helm template", expect, r.returncode == 0, r.stderr.strip())
    if r.returncode != 0:
        return None
    docs = docs_of(r.stdout)
    # Kinds of the CRD groups in tests/crds are checked against those schemas; all others by kubernetes-validate.
    custom = [d for d in docs if d["apiVersion"].split("/")[0] in CRD_GROUPS]
    core = [d for d in docs if d["apiVersion"].split("/")[0] not in CRD_GROUPS]
    core_file = os.path.join(rendered_dir, name.replace("/", "_"))
    with open(core_file, "w") as f:
        yaml.safe_dump_all(core, f)
    for d in custom:
        check(f"{name}: {d['kind']} {d['metadata']['name']} against its CRD schema", validate_custom_resource, d)
    check(f"{name}: pod security context", check_security, docs)
    check(f"{name}: strategy never starts a second pod on a shared cache", check_strategy, docs, values)
    check(f"{name}: scale-out (s3 storage, credentials, peers Service, POD_IP, budget)", check_scale_out, docs, values)
    check(f"{name}: config file has only the server's keys, and its checksum", check_config, docs)
    check(f"{name}: pod wiring (args, mounts, ports, probes, grace, services)", check_pod_wiring, docs, values)
    check(f"{name}: cache volume", check_persistence_kind, docs, values)
    check(f"{name}: server TLS", check_tls, docs, values)
    check(f"{name}: cache size cap, pins, preload", check_life, docs, values)
    check(f"{name}: ingress and httpRoute", check_routes, docs, values)
    check(f"{name}: observability", check_observability, docs, values)
    return core_file, len(core)


def kubernetes_validate(files):
    """One kubernetes-validate run over every file; each object must pass, and any other line fails."""
    r = run(["kubernetes-validate", "-k", KUBE_VERSION, "--strict"] + [f for f, _ in files])
    lines = (r.stdout + r.stderr).splitlines()
    for f, count in files:
        name = os.path.basename(f)
        mine = [ln for ln in lines if f" {f} " in ln]

        def ok(mine=mine, count=count):
            bad = [ln for ln in mine if not ln.startswith("INFO ")]
            assert not bad, "\n".join(bad)
            passed_lines = [ln for ln in mine if " passed for resource " in ln]
            assert len(passed_lines) == count, f"{len(passed_lines)} of {count} objects passed"
        check(f"{name}: kubernetes-validate -k {KUBE_VERSION} --strict", ok)
    stray = [ln for ln in lines if not any(f" {f} " in ln for f, _ in files)]
    check("kubernetes-validate: exit code 0, no other output", expect, r.returncode == 0 and not stray,
          f"rc={r.returncode} " + "\n".join(stray))


def check_keys_file():
    """templates/_keys.tpl, the key lists ociregistry.checkKeys uses, is what the binary prints from its schema."""
    path = os.path.join(CHART, "templates", "_keys.tpl")
    r = run([BIN, "config-keys", "--helm"])
    assert r.returncode == 0, f"ociregistry config-keys --helm failed: {r.stderr}"
    with open(path) as f:
        committed = f.read()
    assert committed == r.stdout, (f"{os.path.relpath(path, REPO)} differs from `ociregistry config-keys --helm`; "
                                   f"regenerate it with `cargo run --quiet -- config-keys --helm > "
                                   f"charts/ociregistry/templates/_keys.tpl`")


def check_fail_case(path):
    with open(path) as f:
        first = f.readline()
    m = re.match(r"# expect-fail: (.+)", first)
    assert m, "first line must be '# expect-fail: <message>'"
    r = helm_template(path)
    assert r.returncode != 0, "rendered, but must fail"
    assert m.group(1).strip() in r.stderr, f"fails with another message: {r.stderr.strip()}"


def check_capabilities():
    """Custom resources render only when the cluster serves their API."""
    obs, route = os.path.join(CHART, "ci", "observability-values.yaml"), os.path.join(CHART, "ci",
                                                                                        "httproute-values.yaml")
    for path, kinds in ((obs, ("ServiceMonitor", "PrometheusRule")), (route, ("HTTPRoute",))):
        r = helm_template(path, api_versions=False)
        assert r.returncode == 0, r.stderr
        docs = docs_of(r.stdout)
        assert not [d for d in docs if d["kind"] in kinds], f"{kinds} rendered without their API"
        if path == obs:
            assert [d for d in docs if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"]["labels"]]
