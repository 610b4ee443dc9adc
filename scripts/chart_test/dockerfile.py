"""The Dockerfile and .dockerignore against the chart, and the binary's flags and version."""
import copy, datetime, hashlib, json, os, re, subprocess, sys, tempfile, time

import jsonschema
import yaml

from common import *  # noqa: F401,F403 (the shared names, as one script had them)

from rules import *  # noqa: F401,F403


# ---------------------------------------------------------------------------------------------------------------
# Dockerfile, against the chart and the binary.
def dockerfile_final_stage():
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    stages, cur = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            cur = {"FROM": rest, "lines": []}
            stages.append(cur)
        if cur is not None:
            cur["lines"].append((word, rest.strip()))
    return text, stages


def check_dockerfile():
    text, stages = dockerfile_final_stage()
    assert len(stages) >= 2, "multi-stage: build, then a minimal runtime"
    final = stages[-1]
    base = final["FROM"].split()[0]
    assert base in ("gcr.io/distroless/cc-debian12:nonroot", "scratch"), f"runtime base {base}"
    instr = {}
    for word, rest in final["lines"]:
        instr.setdefault(word, []).append(rest)
    assert instr.get("USER", [""])[-1] in (str(UID), f"{UID}:{UID}"), f"USER {instr.get('USER')}"
    assert json.loads(instr["ENTRYPOINT"][-1]) == ["/ociregistry"], f"ENTRYPOINT {instr.get('ENTRYPOINT')}"
    assert json.loads(instr["CMD"][-1]) == ["serve"], f"CMD {instr.get('CMD')}"
    exposed = {int(p.split("/")[0]) for e in instr.get("EXPOSE", []) for p in e.split()}
    r = helm_template(os.path.join(CHART, "ci", "default-values.yaml"))
    _, _, c = pod_of(docs_of(r.stdout))
    port = [p["containerPort"] for p in c["ports"] if p["name"] == "http"][0]
    assert port in exposed, f"EXPOSE {sorted(exposed)} lacks the chart's container port {port}"
    copies = " ".join(rest for word, rest in final["lines"] if word == "COPY")
    assert re.search(r"--chown=65532:65532\S*\s+\S+\s+/var/lib/ociregistry/?(\s|$)", copies), \
        "/var/lib/ociregistry copied in with --chown=65532:65532"
    assert re.search(r"\S*/ociregistry\s+/ociregistry(\s|$)", copies), "the binary copied to /ociregistry"
    assert re.search(r"cargo build[^\n]*--release[^\n]*--locked|cargo build[^\n]*--locked[^\n]*--release", text), \
        "cargo build --release --locked"
    with open(os.path.join(REPO, "Cargo.toml")) as f:
        cargo = f.read()
    assert re.search(r'\[\[bin\]\]\s*name = "ociregistry"', cargo), "the binary is named ociregistry"
    # The Rust image must be new enough for the workspace and every locked dependency.
    m = re.search(r"ARG RUST_VERSION=(\d+)\.(\d+)", text)
    assert m, "ARG RUST_VERSION=<major>.<minor>"
    have = (int(m.group(1)), int(m.group(2)))
    meta = run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1", "--filter-platform", HOST], cwd=REPO)
    assert meta.returncode == 0, meta.stderr
    need = max(tuple(int(x) for x in p["rust_version"].split(".")[:2])
               for p in json.loads(meta.stdout)["packages"] if p.get("rust_version"))
    assert have >= need, f"RUST_VERSION {have} is older than the locked crates need {need}"


def check_dockerignore():
    with open(os.path.join(REPO, ".dockerignore")) as f:
        entries = {ln.strip().strip("/") for ln in f if ln.strip() and not ln.startswith("#")}
    for must in ("target", ".git"):
        assert must in entries, f".dockerignore lacks {must}"
    # The build context (top-level entries .dockerignore leaves) must hold the whole workspace.
    with tempfile.TemporaryDirectory() as ctx:
        for entry in os.listdir(REPO):
            if entry in entries:
                continue
            src = os.path.join(REPO, entry)
            if os.path.isdir(src):
                subprocess.run(["cp", "-r", src, ctx], check=True)
            else:
                subprocess.run(["cp", src, ctx], check=True)
        r = run(["cargo", "metadata", "--locked", "--offline", "--no-deps", "--format-version", "1"], cwd=ctx)
        assert r.returncode == 0, f"the build context per .dockerignore is not a complete workspace: {r.stderr}"
        names = {p["name"] for p in json.loads(r.stdout)["packages"]}
        assert {"ociregistry", "ociregistry-actors"} <= names, f"workspace packages in the context: {names}"


def check_binary_flags():
    top = run([BIN, "--help"])
    assert top.returncode == 0, top.stderr
    serve = run([BIN, "serve", "--help"])
    assert serve.returncode == 0, serve.stderr
    assert re.search(r"^\s+serve\b", top.stdout, re.M), "no serve command in ociregistry --help"
    r = helm_template(os.path.join(CHART, "ci", "default-values.yaml"))
    _, _, c = pod_of(docs_of(r.stdout))
    for flag in [a for a in c["args"] if a.startswith("--")] + ["--health", "--metrics", "--port"]:
        assert re.search(rf"(^|\s){re.escape(flag)}\b", serve.stdout), f"{flag} not in ociregistry serve --help"
    version = run([BIN, "version"]).stdout.split()
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    assert version[-1] == chart["appVersion"], f"Chart appVersion {chart['appVersion']} vs {version}"
