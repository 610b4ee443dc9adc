//! The PromQL the Helm chart ships, as a Prometheus would run it: every alert of templates/prometheusrule.yaml with
//! its label selectors and thresholds filled in (from values.yaml's defaults), and every Grafana dashboard query in
//! dashboards/*.json (panel targets and `label_values` variables) with the dashboard variables filled in. Read from
//! the chart's files, without helm: the template's few substitutions are made here, and any `{{` or `$` left over
//! fails the test, so a new one cannot slip past.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// What the chart's `$sel` and `$pods` stand for, and the dashboards' variables.
pub struct Fill<'a> {
    /// The release's namespace (`namespace` label, dashboard `$namespace`).
    pub namespace: &'a str,
    /// The metrics Service's name (`job` label, dashboard `$job`).
    pub job: &'a str,
    /// The pods' name prefix (the chart's `<fullname>-`).
    pub pod_prefix: &'a str,
    /// `$__rate_interval` and `$__interval`.
    pub interval: &'a str,
}

/// One alerting rule.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub expr: String,
    pub for_: Option<String>,
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/ociregistry")
}

/// `observability.prometheusRule`'s scalar values in values.yaml: (key, value).
fn rule_values() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(chart().join("values.yaml")).expect("read values.yaml");
    let mut lines = text.lines().skip_while(|l| l.trim_end() != "  prometheusRule:").skip(1);
    let mut out = Vec::new();
    for line in lines.by_ref() {
        let indent = line.len() - line.trim_start().len();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if indent < 4 {
            break;
        }
        if let Some((key, value)) = line.trim().split_once(": ") {
            out.push((key.to_string(), value.trim().to_string()));
        }
    }
    assert!(!out.is_empty(), "no observability.prometheusRule values in values.yaml");
    out
}

/// The template's text with `$sel`, `$pods` and `{{ $r.KEY }}` replaced.
fn fill_template(text: &str, fill: &Fill) -> String {
    let sel = format!("namespace=\"{}\", job=\"{}\"", fill.namespace, fill.job);
    let pods = format!("namespace=\"{}\", pod=~\"{}.*\", container=\"ociregistry\"", fill.namespace, fill.pod_prefix);
    // `{ {{- $sel -}} }`: the dashes trim the spaces around the action.
    let mut out = text.replace(" {{- $sel -}} ", &sel).replace(" {{- $sel -}}", &sel);
    out = out.replace(" {{- $pods -}} ", &pods).replace(" {{- $pods -}}", &pods);
    for (key, value) in rule_values() {
        out = out.replace(&format!("{{{{ $r.{key} }}}}"), &value);
    }
    out
}

/// Every alert of the chart's PrometheusRule, filled in.
pub fn alerts(fill: &Fill) -> Vec<Alert> {
    let text = std::fs::read_to_string(chart().join("templates/prometheusrule.yaml")).expect("read the rule template");
    let text = fill_template(&text, fill);
    let lines: Vec<&str> = text.lines().collect();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let indent = lines[i].len() - line.len();
        if let Some(name) = line.strip_prefix("- alert: ") {
            alerts.push(Alert { name: name.trim().to_string(), expr: String::new(), for_: None });
        } else if let (Some(expr), Some(alert)) = (line.strip_prefix("expr: "), alerts.last_mut()) {
            if expr.trim() == "|-" {
                let mut body = Vec::new();
                while i + 1 < lines.len() && lines[i + 1].len() - lines[i + 1].trim_start().len() > indent {
                    i += 1;
                    body.push(lines[i].trim());
                }
                alert.expr = body.join("\n");
            } else {
                alert.expr = expr.trim().to_string();
            }
        } else if let (Some(d), Some(alert)) = (line.strip_prefix("for: "), alerts.last_mut()) {
            alert.for_ = Some(d.trim().to_string());
        }
        i += 1;
    }
    for a in &alerts {
        assert!(!a.expr.is_empty(), "alert {} has no expr", a.name);
        assert!(!a.expr.contains("{{"), "alert {}: a template action this reader does not fill: {}", a.name, a.expr);
    }
    assert!(alerts.len() >= 12, "only {} alerts read from the template", alerts.len());
    alerts
}

/// Every query of every dashboard: (where, PromQL), the variables filled in.
pub fn dashboard_queries(fill: &Fill) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(chart().join("dashboards"))
        .expect("read dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy().to_string();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read a dashboard"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut raw = Vec::new();
        walk(&dash["panels"], &mut raw);
        for var in dash["templating"]["list"].as_array().into_iter().flatten() {
            if var["type"] == "query" {
                let q = var["query"]["query"].as_str().or(var["query"].as_str()).unwrap_or_default();
                let inner = q
                    .trim()
                    .strip_prefix("label_values(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|r| r.rsplit_once(','))
                    .map(|(selector, _)| selector.trim().to_string())
                    .unwrap_or_else(|| {
                        panic!("{name}: variable {}: not label_values(<selector>, <label>)", var["name"])
                    });
                raw.push((format!("variable {}", var["name"]), inner));
            }
        }
        for (place, expr) in raw {
            let filled = expr
                .replace("${namespace}", fill.namespace)
                .replace("$namespace", fill.namespace)
                .replace("${job}", fill.job)
                .replace("$job", fill.job)
                .replace("$__rate_interval", fill.interval)
                .replace("$__interval", fill.interval)
                .replace("$__range", "5m");
            assert!(!filled.contains('$'), "{name} {place}: a dashboard variable this test does not fill: {filled}");
            out.push((format!("{name} {place}"), filled));
        }
    }
    out
}

fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
    for p in panels.as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((format!("panel {:?} {}", p["title"].as_str().unwrap_or(""), t["refId"]), expr.to_string()));
            }
        }
        walk(&p["panels"], out);
    }
}
