//! A real Prometheus server for a test: Debian's `prometheus` binary ([`super::metrics::prometheus_server`]) on a
//! free 127.0.0.1 port with a temporary `--storage.tsdb.path`, scraping one target every second (evaluating rule
//! files every second too), and its HTTP API: instant queries, the metric names it holds, the rules' health. Killed
//! on drop. Also [`metric_names`]: the metric names a PromQL expression reads.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http;
use super::metrics::prometheus_server;
use super::ports::free_port;
use super::process::ChildGuard;
use super::TestDir;

/// What Prometheus scrapes: one target, its job name and the labels a Kubernetes scrape would add.
pub struct ScrapeTarget<'a> {
    pub job: &'a str,
    /// `127.0.0.1:PORT`
    pub address: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
}

pub struct Prometheus {
    guard: ChildGuard,
    port: u16,
    _dir: TestDir,
}

/// How long Prometheus may take to be ready.
const READY_LIMIT: Duration = Duration::from_secs(60);

impl Prometheus {
    /// Start Prometheus scraping `target` every second, with these rule files (evaluated every second).
    pub fn start(target: &ScrapeTarget, rule_files: &[&Path]) -> Prometheus {
        let dir = TestDir::new("prometheus");
        let labels: serde_json::Map<String, Value> =
            target.labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        // JSON is YAML: Prometheus reads it as its config file.
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "scrape_configs": [{
                "job_name": target.job,
                "static_configs": [{"targets": [target.address], "labels": labels}],
            }],
        });
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config.to_string()).expect("write prometheus.yml");
        let mut last = String::new();
        for attempt in 1..=3 {
            let port = free_port();
            let mut cmd = Command::new(prometheus_server());
            cmd.arg(format!("--config.file={}", config_file.display()))
                .arg(format!("--storage.tsdb.path={}", dir.subdir(&format!("data-{attempt}")).display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn");
            let mut guard = ChildGuard::spawn(&format!("prometheus-{attempt}"), &mut cmd, dir.path());
            let ready = format!("http://127.0.0.1:{port}/-/ready");
            let client = http::client();
            let start = Instant::now();
            while start.elapsed() < READY_LIMIT {
                if let Some(status) = guard.exit_status() {
                    last = format!("prometheus exited with {status}:\n{}", guard.log_tail());
                    break;
                }
                if client.get(&ready).send().is_ok_and(|r| r.status().is_success()) {
                    return Prometheus { guard, port, _dir: dir };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if last.is_empty() {
                last = format!("prometheus not ready after {READY_LIMIT:?}:\n{}", guard.log_tail());
            }
            guard.kill();
        }
        panic!("Prometheus did not start:\n{last}");
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let url = format!("{}/api/v1/{path}", self.url());
        let resp = http::client().get(&url).query(query).send().map_err(|e| format!("GET {url}: {e}"))?;
        let body: Value = resp.json().map_err(|e| format!("GET {url}: not JSON: {e}"))?;
        if body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {}", body["errorType"].as_str().unwrap_or("?"), body["error"].as_str().unwrap_or("?")))
        }
    }

    /// An instant query: the result's samples (or Prometheus's error, e.g. a parse error).
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api("query", &[("query", promql)])?;
        Ok(match &data["result"] {
            Value::Array(samples) => samples.clone(),
            scalar => vec![scalar.clone()],
        })
    }

    /// Every metric name Prometheus holds (`/api/v1/label/__name__/values`).
    pub fn metric_names(&self) -> BTreeSet<String> {
        let data = self.api("label/__name__/values", &[]).expect("metric names");
        data.as_array().expect("a list").iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
    }

    /// The rule groups as `/api/v1/rules` reports them (each rule with its `health`, `lastError`, `lastEvaluation`).
    pub fn rule_groups(&self) -> Vec<Value> {
        let data = self.api("rules", &[]).expect("rules");
        data["groups"].as_array().cloned().unwrap_or_default()
    }

    /// The tail of Prometheus's log.
    pub fn log_tail(&self) -> String {
        self.guard.log_tail()
    }
}

/// PromQL words that are neither metrics nor functions.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "start",
    "end",
];
/// Words followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names `expr` reads: identifiers outside strings, label matchers, ranges and label lists that are not
/// followed by `(` (a function or an aggregation) and are not keywords.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: usize, close: char| {
        let mut j = i + 1;
        let mut quote = None;
        while j < chars.len() {
            match (quote, chars[j]) {
                (Some(_), '\\') => j += 1,
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'' | '`') => quote = Some(chars[j]),
                (None, c) if c == close => return j + 1,
                _ => {}
            }
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if matches!(c, '"' | '\'' | '`') {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            // A function or an aggregation: `(` next, or an aggregation's `by (...)`/`without (...)` first.
            let following: String =
                chars[next..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
            let call = chars.get(next) == Some(&'(') || following == "by" || following == "without";
            let lower = word.to_ascii_lowercase();
            if call && LABEL_LISTS.contains(&lower.as_str()) {
                i = skip_to(next, ')');
            } else if !call && !KEYWORDS.contains(&lower.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}
