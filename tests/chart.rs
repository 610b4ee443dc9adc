//! The Helm chart and the Dockerfile, through `scripts/chart-test`: lint, render and validate the chart for every
//! values file in `charts/ociregistry/ci/`, require each `ci/fail/` case to fail with its message, and check the
//! Dockerfile against the chart and this binary's `--help`. The script installs helm, kubernetes-validate and
//! promtool into the target directory on first use; it needs python3 with pip.

use std::path::Path;
use std::process::Command;

/// Whether `python3 -m pip` runs; without it the script cannot install its tools.
fn python_with_pip() -> bool {
    Command::new("python3").args(["-m", "pip", "--version"]).output().is_ok_and(|o| o.status.success())
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
