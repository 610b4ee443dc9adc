//! The Helm chart and the Dockerfile, through `scripts/chart-test`: lint, render and validate the chart for every
//! values file in `charts/ociregistry/ci/`, require each `ci/fail/` case to fail with its message, and check the
//! Dockerfile against the chart and this binary's `--help`. The script installs helm, kubernetes-validate and
//! promtool into the target directory on first use; it needs python3 with pip. Without them, the chart's key lists
//! (`templates/_keys.tpl`) are still checked against what this binary prints from the config schema.

use std::path::Path;
use std::process::Command;

/// Whether `python3 -m pip` runs; without it the script cannot install its tools.
fn python_with_pip() -> bool {
    Command::new("python3").args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success())
}

/// The chart's key lists are generated from the server's config schema; the committed file must be what this
/// binary prints, so a key added to (or taken out of) the schema reaches the chart's check.
#[test]
fn chart_key_lists_are_the_schemas() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_ociregistry"))
        .args(["config-keys", "--helm"])
        .output()
        .expect("run ociregistry config-keys --helm");
    assert!(out.status.success(), "ociregistry config-keys --helm failed: {}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    let file = "charts/ociregistry/templates/_keys.tpl";
    let committed = std::fs::read_to_string(repo.join(file)).unwrap_or_default();
    assert!(
        committed == printed,
        "{file} is not what `ociregistry config-keys --helm` prints from the config schema; regenerate it with \
         `cargo run --quiet -- config-keys --helm > {file}`"
    );
}

/// The chart's README names every key the chart's lists hold (as a word of its section on the server's
/// configuration), so that a key added to the schema reaches the chart's docs too.
#[test]
fn chart_readme_names_every_key_the_chart_takes() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("charts/ociregistry/README.md")).expect("read the chart's README");
    let start = readme.find("## The server's configuration").expect("the README's section on the configuration");
    let section = &readme[start..];
    let section = &section[..section[2..].find("\n## ").map_or(section.len(), |end| end + 2)];
    let words: Vec<&str> = section.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let lists = std::fs::read_to_string(repo.join("charts/ociregistry/templates/_keys.tpl")).expect("read _keys.tpl");
    for line in lists.lines().filter(|line| line.starts_with("{{- define \"ociregistry.keys.")) {
        let keys = line.split("-}}").nth(1).and_then(|rest| rest.strip_suffix("{{- end }}")).expect("a define");
        for key in keys.split_whitespace() {
            assert!(words.contains(&key), "charts/ociregistry/README.md does not name the config key '{key}'");
        }
    }
}

#[test]
fn chart_and_dockerfile() {
    if !python_with_pip() {
        println!("skipped: python3 with pip is missing, so scripts/chart-test cannot install helm and its validators");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(repo.join("scripts/chart-test"))
        .current_dir(repo)
        .env("OCIREGISTRY_BIN", env!("CARGO_BIN_EXE_ociregistry"))
        .output()
        .expect("run scripts/chart-test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success(), "scripts/chart-test failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(" passed, 0 failed"), "scripts/chart-test printed no summary:\n{stdout}");
}
