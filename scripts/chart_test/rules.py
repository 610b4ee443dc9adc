"""The rendered chart's own rules, per values file: the config file's keys, pod security, the update strategy, the
pod's wiring, the cache's life and TLS."""
import copy, datetime, hashlib, json, os, re, subprocess, sys, tempfile, time

import jsonschema
import yaml

from common import *  # noqa: F401,F403 (the shared names, as one script had them)

# ---------------------------------------------------------------------------------------------------------------
# The rendered chart, per values file.
def config_of(docs):
    cm = [d for d in find(docs, "ConfigMap") if "registry-config.yaml" in d.get("data", {})]
    assert len(cm) == 1, f"expected one ConfigMap with registry-config.yaml, found {len(cm)}"
    return yaml.safe_load(cm[0]["data"]["registry-config.yaml"]), cm[0]["data"]["registry-config.yaml"]


def check_keys(value, allowed, path="config"):
    if isinstance(allowed, dict):
        assert isinstance(value, dict), f"{path} is not a map"
        for k, v in value.items():
            assert k in allowed, f"{path}.{k} is not a key the server has"
            check_keys(v, allowed[k], f"{path}.{k}")
    elif isinstance(allowed, list):
        assert isinstance(value, list), f"{path} is not a list"
        for n, v in enumerate(value):
            check_keys(v, allowed[0], f"{path}[{n}]")
    else:
        assert not isinstance(value, (dict, list)), f"{path} must be a scalar"


def check_config(docs):
    cfg, text = config_of(docs)
    assert isinstance(cfg, dict), "registry-config.yaml is not a YAML map"
    check_keys(cfg, CONFIG_KEYS)
    assert cfg.get("logLevel", "info").lower() in ("debug", "info", "warn", "warning", "error")
    assert cfg.get("logFormat", "text") in ("text", "json")
    assert cfg.get("upstreamPolicy", "public") in ("public", "listed", "any")
    for k in ("pullTimeout", "connectTimeout", "idleTimeout", "clientIdleTimeout", "shutdownGrace"):
        if k in cfg:
            assert seconds(cfg[k]) > 0, f"{k}: {cfg[k]!r}"
    for r in cfg.get("registries", []):
        assert r.get("name"), "a registry without a name"
        assert r.get("scheme", "https") in ("http", "https")
    ports = [cfg.get("port", 8080), cfg.get("health"), cfg.get("metrics"), (cfg.get("admin") or {}).get("port")]
    ports = [p for p in ports if p is not None]
    assert all(isinstance(p, int) and 0 < p < 65536 for p in ports), f"ports {ports}"
    assert len(set(ports)) == len(ports), f"listeners share a port: {ports}"
    dep = one(docs, "Deployment")
    checksum = dep["spec"]["template"]["metadata"]["annotations"].get("checksum/config")
    assert checksum == hashlib.sha256(text.rstrip("\n").encode()).hexdigest(), \
        "checksum/config is not the sha256 of the rendered config"


def pod_of(docs):
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1, "one container expected"
    return dep, pod, pod["containers"][0]


def check_security(docs):
    _, pod, c = pod_of(docs)
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})

    def eff(k):
        return csc.get(k, psc.get(k))
    assert eff("runAsUser") == UID and eff("runAsGroup") == UID, "uid/gid must be 65532"
    assert eff("runAsNonRoot") is True, "runAsNonRoot"
    assert psc.get("fsGroup") == UID, "fsGroup 65532 (the cache volume is writable by the server)"
    assert csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem"
    assert csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false"
    assert csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL"
    assert not csc.get("capabilities", {}).get("add"), "no capabilities added"
    assert not csc.get("privileged"), "not privileged"
    assert pod.get("automountServiceAccountToken") is False, "no service account token: the server needs none"


def cache_volume(docs):
    _, pod, c = pod_of(docs)
    cfg, _ = config_of(docs)
    mounts = [m for m in c["volumeMounts"] if m["mountPath"] == cfg["imagePath"]]
    assert len(mounts) == 1, f"one volume must be mounted at imagePath {cfg['imagePath']}"
    vol = [v for v in pod["volumes"] if v["name"] == mounts[0]["name"]]
    assert len(vol) == 1
    return vol[0]


def check_strategy(docs, values):
    dep, pod, _ = pod_of(docs)
    cfg, _ = config_of(docs)
    vol = cache_volume(docs)
    if (cfg.get("storage") or {}).get("type") == "s3":
        assert dep["spec"].get("replicas") == values.get("replicaCount", 1), "replicas are replicaCount"
        if dep["spec"]["replicas"] > 1:
            assert "emptyDir" in vol, f"replicas of a Deployment share a claim or hostPath: their local tier {vol}"
    else:
        assert dep["spec"].get("replicas") == 1, "one replica: the server locks its cache"
    strategy = dep["spec"].get("strategy", {})
    shared = "persistentVolumeClaim" in vol or "hostPath" in vol
    if "persistentVolumeClaim" in vol:
        claim = vol["persistentVolumeClaim"]["claimName"]
        pvcs = find(docs, "PersistentVolumeClaim", claim)
        modes = pvcs[0]["spec"]["accessModes"] if pvcs else ["(existing claim: assume ReadWriteOnce)"]
        what = f"claim {claim} {modes}"
    else:
        what = "hostPath" if shared else "emptyDir"
    if shared:
        t = strategy.get("type", "RollingUpdate")
        surge = str(strategy.get("rollingUpdate", {}).get("maxSurge", "25%"))
        assert t == "Recreate" or (t == "RollingUpdate" and surge in ("0", "0%")), \
            f"a cache on a {what} needs Recreate or maxSurge 0, not {strategy}"


def check_pod_wiring(docs, values):
    dep, pod, c = pod_of(docs)
    cfg, _ = config_of(docs)
    assert c["args"] == ["--config-file", CONFIG_FILE, "serve"], f"args {c['args']}"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert os.path.dirname(CONFIG_FILE) in mounts, "config directory mounted"
    names = {v["name"] for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        assert m["name"] in names, f"volumeMount {m['name']} has no volume"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports.get("http") == cfg.get("port", 8080), "containerPort http is the config's port"
    for name in ("health", "metrics"):
        assert ports.get(name) == cfg.get(name), f"containerPort {name} is the config's {name}"
    if cfg.get("admin"):
        assert ports.get("admin") == cfg["admin"]["port"]
    grace = seconds(cfg.get("shutdownGrace", "60s"))
    assert pod["terminationGracePeriodSeconds"] > grace, \
        f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} must exceed shutdownGrace {grace}s"
    # Probes: /health and /ready on the health port, else the main port.
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/health")):
        p = c[probe]
        if cfg.get("health"):
            assert p["httpGet"]["port"] == "health" and p["httpGet"]["path"] == path, f"{probe} {p}"
        elif (cfg.get("serverTlsConfig") or {}).get("clientAuth") == "verify":
            assert p["tcpSocket"]["port"] == "http", f"{probe} {p}"
        else:
            assert p["httpGet"]["port"] == "http" and p["httpGet"]["path"] == "/v2/", f"{probe} {p}"
            assert p["httpGet"].get("scheme", "HTTP") == ("HTTPS" if cfg.get("serverTlsConfig") else "HTTP")
    svc = [s for s in find(docs, "Service") if s["spec"]["ports"][0]["name"] == "http"]
    assert len(svc) == 1, "one main Service"
    assert svc[0]["spec"]["ports"][0]["targetPort"] == "http"
    sel = svc[0]["spec"]["selector"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in sel.items()), "the Service selects the pod"
    assert dep["spec"]["selector"]["matchLabels"] == sel
    if cfg.get("metrics"):
        ms = [s for s in find(docs, "Service") if s["spec"]["ports"][0]["name"] == "metrics"]
        assert len(ms) == 1 and ms[0]["spec"]["type"] == "ClusterIP", "metrics on their own ClusterIP Service"
        assert ms[0]["spec"]["ports"][0]["port"] == cfg["metrics"]


def check_life(docs, values):
    """The cap (explicit, or 90% of a volume size the chart sets), pins, and the preload list wired to a mount."""
    _, pod, c = pod_of(docs)
    cfg, _ = config_of(docs)
    cache = values.get("cache") or {}
    persistence = values.get("persistence") or {}
    pvc = persistence.get("persistentVolumeClaim") or {}
    size = None
    if (cfg.get("storage") or {}).get("type") == "s3":
        assert "maxCacheSize" not in cfg, "maxCacheSize with s3 storage (the server refuses it: localCacheSize caps)"
    elif pvc.get("enabled") and not pvc.get("existingClaimName"):
        size = ((pvc.get("newClaimSpec") or {}).get("resources") or {}).get("requests", {}).get("storage")
    elif not pvc.get("enabled") and not (persistence.get("hostPath") or {}).get("enabled"):
        size = (persistence.get("emptyDir") or {}).get("sizeLimit")
    if cache.get("maxSize"):
        assert str(cfg.get("maxCacheSize")) == str(cache["maxSize"]), f"maxCacheSize {cfg.get('maxCacheSize')}"
    elif size:
        m = re.fullmatch(r"([0-9]+)(k|M|G|T|Ki|Mi|Gi|Ti)?", str(size))
        assert m, f"volume size {size}"
        want = int(m.group(1)) * QUANTITY[m.group(2) or ""] * 9 // 10
        assert int(cfg.get("maxCacheSize", 0)) == want, f"maxCacheSize {cfg.get('maxCacheSize')} is not 90% of {size}"
    elif "maxCacheSize" not in ((values.get("serverConfig") or {}).get("configuration") or {}):
        assert "maxCacheSize" not in cfg, "no cap without a size"
    if str(cache.get("maxBlobSize", "")) != "":
        assert str(cfg.get("maxBlobSize")) == str(cache["maxBlobSize"]), f"maxBlobSize {cfg.get('maxBlobSize')}"
    if cache.get("pinned"):
        assert cfg.get("pinned") == cache["pinned"], "cache.pinned is the config's pinned"
    preload = values.get("preload") or {}
    if preload.get("images") or preload.get("configMap"):
        path = cfg.get("preloadImages", "")
        mount = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        assert len(mount) == 1, f"preloadImages {path} is not on a mounted volume"
        vol = [v for v in pod["volumes"] if v["name"] == mount[0]["name"]][0]
        name = vol["configMap"]["name"]
        if preload.get("configMap"):
            assert name == preload["configMap"] and not find(docs, "ConfigMap", name)
        else:
            cm = find(docs, "ConfigMap", name)
            assert len(cm) == 1, f"the preload ConfigMap {name}"
            listed = [ln.strip() for ln in cm[0]["data"][os.path.basename(path)].splitlines() if ln.strip()]
            assert listed == preload["images"], f"preload list {listed}"
    else:
        assert "preloadImages" not in cfg or (values.get("serverConfig") or {}).get("configuration", {}).get(
            "preloadImages"), "preloadImages without a preload"


def check_tls(docs, values):
    _, pod, c = pod_of(docs)
    cfg, _ = config_of(docs)
    st = (values.get("serverTls") or {})
    if not st.get("enabled"):
        assert "serverTlsConfig" not in cfg or not values.get("serverTls"), "serverTlsConfig without serverTls"
        return
    stc = cfg["serverTlsConfig"]
    assert stc["cert"] == f"{TLS_DIR}/tls.crt" and stc["key"] == f"{TLS_DIR}/tls.key", f"serverTlsConfig {stc}"
    assert stc["clientAuth"] == st.get("clientAuth", "none")
    if stc["clientAuth"] == "verify":
        assert stc.get("ca") == f"{TLS_DIR}/ca.crt", "clientAuth verify needs the CA"
    mount = [m for m in c["volumeMounts"] if m["mountPath"] == TLS_DIR]
    assert len(mount) == 1 and "subPath" not in mount[0], "TLS mounted as a directory (so updates reach the pod)"
    vol = [v for v in pod["volumes"] if v["name"] == mount[0]["name"]][0]
    secret_name = vol["secret"]["secretName"]
    if st.get("secretName"):
        assert secret_name == st["secretName"]
        assert not [s for s in find(docs, "Secret") if s.get("type") == "kubernetes.io/tls"], \
            "no Secret created for an existing one"
    else:
        sec = find(docs, "Secret", secret_name)
        assert len(sec) == 1 and sec[0]["type"] == "kubernetes.io/tls", "inline TLS creates a kubernetes.io/tls Secret"
        assert {"tls.crt", "tls.key"} <= set(sec[0]["data"]), "tls.crt and tls.key"
        if st.get("ca"):
            assert "ca.crt" in sec[0]["data"]
