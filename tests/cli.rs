//! The command line as an operator meets it: version, configuration errors that name the key, warnings for unknown
//! keys, and the embedded default configuration.

mod common;

use std::process::{Command, Output};

use common::TestDir;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ociregistry")).args(args).output().expect("run ociregistry")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_prints_the_crate_version() {
    let out = run(&["version"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("ociregistry {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unsupported_and_invalid_config_keys_stop_the_server_naming_the_key() {
    let dir = TestDir::new("cli");
    let cases = [
        ("serverTlsConfig:\n  cert: /x.pem\n  key: /x.key\n", "serverTlsConfig"),
        ("registries:\n  - name: docker.io\n    auth:\n      user: u\n", "auth.password"),
        ("alwaysPullLatest: true\n", "alwaysPullLatest"),
        ("port: 70000\n", "port"),
        ("registries:\n  - name: docker.io\n    scheme: ftp\n", "scheme"),
        ("pullTimeout: soon\n", "pullTimeout"),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{i}.yaml"));
        std::fs::write(&file, format!("imagePath: {}\n{yaml}", dir.path().join("cache").display())).expect("write");
        let out = run(&["--config-file", file.to_str().expect("utf-8 path"), "serve"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "case {key}: exit code; stderr {err}");
        assert!(err.contains(key), "case {key}: the message names the key: {err}");
        assert_eq!(err.trim().lines().count(), 1, "case {key}: one line: {err}");
    }
    let missing = dir.path().join("nope.yaml");
    let out = run(&["serve", "--config-file", missing.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.yaml"), "names the file: {}", stderr(&out));
}

#[test]
fn unknown_keys_warn_and_the_server_still_starts() {
    let dir = TestDir::new("cli-warn");
    let port = common::ports::free_port();
    let file = dir.path().join("cfg.yaml");
    std::fs::write(
        &file,
        format!(
            "imagePath: {}\nhost: 127.0.0.1\nport: {port}\nimagepath: /typo\nregistries:\n  - name: docker.io\n",
            dir.path().join("cache").display()
        ),
    )
    .expect("write");
    let mut guard = common::process::ChildGuard::spawn(
        "ociregistry",
        Command::new(env!("CARGO_BIN_EXE_ociregistry")).arg("--config-file").arg(&file).arg("serve"),
        dir.path(),
    );
    let url = format!("http://127.0.0.1:{port}/v2/");
    common::wait_for("the server to start despite the unknown key", std::time::Duration::from_secs(30), || {
        common::http::client().get(&url).send().ok().filter(|r| r.status().is_success())
    });
    assert!(guard.log_tail().contains("imagepath"), "the warning names the unknown key: {}", guard.log_tail());
    guard.kill();
}
