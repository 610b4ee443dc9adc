//! Reading `/metrics`: a parser for the Prometheus text format (enough for
//! our exposition: samples with quoted label values) and `promtool check
//! metrics`; where the Prometheus server binary is (tests/common/prometheus.rs
//! runs it).
//!
//! promtool is not packaged on its own in Debian; it ships in the
//! `prometheus` package. When it is not on `PATH`, [`promtool`] fetches that
//! package with `apt-get download` and unpacks it (`dpkg -x`) under the
//! target directory, without installing the server; later runs reuse it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::http;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// GET `url` (e.g. `http://127.0.0.1:PORT/metrics`): 200 with a text body.
    pub fn fetch(url: &str) -> Scrape {
        let resp = http::client().get(url).send().unwrap_or_else(|e| panic!("GET {url}: {e:#}"));
        assert_eq!(resp.status(), http::StatusCode::OK, "GET {url}");
        let content_type = http::header(&resp, "Content-Type");
        assert!(content_type.starts_with("text/plain"), "GET {url}: Content-Type {content_type:?}");
        Scrape::parse(&resp.text().expect("metrics body"))
    }

    /// Parse an exposition; panics on a line it cannot read.
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("unreadable metrics line: {l:?}")))
            .collect();
        Scrape { text: text.to_string(), samples }
    }

    /// Samples named `name` whose labels include every `(label, value)` given.
    pub fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> {
        self.samples
            .iter()
            .filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v)))
    }

    /// The sum of the matching samples; panics if there are none (a missing
    /// metric is a failure, not a zero).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<_> = self.matching(name, labels).collect();
        assert!(!found.is_empty(), "no sample {name}{labels:?} in the scrape:\n{}", self.text);
        found.iter().map(|s| s.value).sum()
    }

    /// The sum of the matching samples, 0 if there are none (a counter whose
    /// labels have not been seen yet).
    pub fn sum_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Whether the exposition declares a metric family `name` (`# TYPE name ...`).
    pub fn declares(&self, name: &str) -> bool {
        self.text.lines().any(|l| l.strip_prefix("# TYPE ").is_some_and(|r| r.split(' ').next() == Some(name)))
    }
}

/// `name{a="x",b="y"} value [timestamp]`
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (i, '"') => break i,
                    (_, other) => value.push(other),
                }
            };
            labels.insert(key.trim().to_string(), value);
            rest = &after[close + 1..];
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.to_string(), labels, value })
}

/// The promtool binary: from `PATH`, or unpacked from Debian's `prometheus`
/// package into the target directory (downloaded once).
pub fn promtool() -> PathBuf {
    from_path_or_package("promtool")
}

/// The Prometheus server binary (Debian's `prometheus` package, 2.x), found
/// like [`promtool`]: from `PATH`, or unpacked from the same package.
pub fn prometheus_server() -> PathBuf {
    from_path_or_package("prometheus")
}

/// `name` from `PATH` when it runs, else `usr/bin/NAME` of the unpacked package.
fn from_path_or_package(name: &str) -> PathBuf {
    if Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()) {
        return PathBuf::from(name);
    }
    unpacked_package().join("usr/bin").join(name)
}

/// Debian's `prometheus` package unpacked under the target directory, once.
fn unpacked_package() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join("prometheus-deb");
    let bin = dir.join("usr/bin/promtool");
    if bin.exists() {
        return dir;
    }
    // Unpack into a private directory and rename it into place, so two test
    // processes doing this at once cannot see a half-written tree.
    let work = tempfile::Builder::new().prefix("promtool-").tempdir_in(base).expect("create promtool work dir");
    let download = || {
        Command::new("apt-get").args(["download", "prometheus"]).current_dir(work.path()).stdin(Stdio::null()).output()
    };
    let mut out = download().expect("run apt-get download");
    if !out.status.success() {
        // A fresh machine may have no package lists yet.
        let _ = Command::new("apt-get").arg("update").stdin(Stdio::null()).status();
        out = download().expect("run apt-get download");
    }
    assert!(
        out.status.success(),
        "cannot get promtool: `apt-get download prometheus` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = std::fs::read_dir(work.path())
        .expect("read work dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download wrote no .deb");
    let tree = work.path().join("tree");
    super::process::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree));
    assert!(tree.join("usr/bin/promtool").exists(), "{} has no usr/bin/promtool", deb.display());
    if std::fs::rename(&tree, &dir).is_err() && !bin.exists() {
        panic!("cannot move promtool into {}", dir.display());
    }
    dir
}

/// `promtool check metrics` on an exposition: the problems it reports, each
/// as (metric name, message). Panics if promtool cannot parse the text at all.
pub fn promtool_problems(text: &str) -> Vec<(String, String)> {
    use std::io::Write;
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("promtool stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Exit 0: clean; 3: lint problems; anything else: it could not check.
    match out.status.code() {
        Some(0) | Some(3) => {}
        _ => panic!("promtool check metrics failed ({}):\n{report}\non:\n{text}", out.status),
    }
    report
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, message) = l.split_once(' ').unwrap_or((l, ""));
            (name.to_string(), message.to_string())
        })
        .collect()
}
