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
        ("helloWorld: true\n", "helloWorld"),
        ("tagTtl: soon\n", "tagTtl"),
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

/// Run `ociregistry --config-file FILE serve` until it exits (at most 30 s: a start that hangs fails the test
/// instead of hanging it); its exit code and standard error.
fn serve_until_exit(dir: &TestDir, name: &str, config: &str) -> (Option<i32>, String) {
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, config).expect("write config");
    let mut guard = common::process::ChildGuard::spawn(
        name,
        Command::new(env!("CARGO_BIN_EXE_ociregistry")).arg("--config-file").arg(&file).arg("serve"),
        dir.path(),
    );
    let status = common::wait_for(&format!("{name}: the server to exit"), std::time::Duration::from_secs(30), || {
        guard.exit_status()
    });
    let stderr = std::fs::read_to_string(guard.stderr_path()).unwrap_or_default();
    (status.code(), stderr)
}

#[test]
fn broken_paths_and_files_stop_the_server_with_exit_2_and_one_line_naming_the_key() {
    let dir = TestDir::new("cli-files");
    let d = dir.path().display();
    let port = common::ports::free_port();
    let a_file = dir.path().join("a-file");
    std::fs::write(&a_file, "not a directory").expect("write");
    let not_pem = dir.path().join("not-pem.crt");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("write");
    let fifo = dir.path().join("token-fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo");
    let head = |image_path: &str| format!("imagePath: \"{image_path}\"\nhost: 127.0.0.1\nport: {port}\n");
    let cache = format!("{d}/cache");
    let nf = not_pem.display();
    let cases = [
        ("image-path-file", head(&a_file.display().to_string()), "imagePath", "not a directory"),
        ("image-path-under-file", head(&format!("{}/cache", a_file.display())), "imagePath", "not a directory"),
        ("image-path-empty", head(""), "imagePath", "must not be empty"),
        (
            "server-cert-not-pem",
            format!("{}serverTlsConfig: {{cert: {nf}, key: {nf}}}\n", head(&cache)),
            "serverTlsConfig.cert",
            "",
        ),
        (
            "registry-ca-not-pem",
            format!("{}registries:\n  - name: r.example\n    tls: {{ca: {nf}}}\n", head(&cache)),
            "registries[0].tls.ca",
            "",
        ),
        (
            "token-fifo",
            format!("{}admin: {{port: {}, tokenFile: {}}}\n", head(&cache), common::ports::free_port(), fifo.display()),
            "admin.tokenFile",
            "not a regular file",
        ),
    ];
    for (name, config, key, reason) in cases {
        let (code, stderr) = serve_until_exit(&dir, name, &config);
        assert_eq!(code, Some(2), "{name}: exit code; stderr {stderr}");
        assert!(stderr.contains(&format!("'{key}'")), "{name}: the message names {key}: {stderr}");
        assert!(stderr.contains(reason), "{name}: the message says {reason:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: one line: {stderr}");
    }
    assert!(!dir.path().join("cache").exists(), "no case got as far as creating the cache directory");
}

#[test]
fn bad_allow_and_deny_patterns_stop_the_server_with_exit_2_and_one_line_naming_the_key() {
    let dir = TestDir::new("cli-access");
    let port = common::ports::free_port();
    let head = format!("imagePath: \"{}/cache\"\nhost: 127.0.0.1\nport: {port}\n", dir.path().display());
    let cases = [
        (
            "empty-segment",
            "  - name: quay.io\n    deny: [org/*, 'a//b']\n",
            "registries[0].deny[1]",
            "empty path segment",
        ),
        ("triple-star", "  - name: a.io\n  - name: quay.io\n    allow: ['x/***']\n", "registries[1].allow[0]", "'***'"),
        ("mixed-star", "  - name: quay.io\n    allow: ['org/a**']\n", "registries[0].allow[0]", "whole path segment"),
        ("bad-char", "  - name: quay.io\n    deny: ['org/App']\n", "registries[0].deny[0]", "'A' is not allowed"),
        ("hub-one-segment", "  - name: docker.io\n    deny: [nginx]\n", "registries[0].deny[0]", "library/nginx"),
    ];
    for (name, registries, key, reason) in cases {
        let (code, stderr) = serve_until_exit(&dir, name, &format!("{head}registries:\n{registries}"));
        assert_eq!(code, Some(2), "{name}: exit code; stderr {stderr}");
        assert!(stderr.contains(&format!("'{key}'")), "{name}: the message names {key}: {stderr}");
        assert!(stderr.contains(reason), "{name}: the message says {reason:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{name}: one line: {stderr}");
    }
    assert!(!dir.path().join("cache").exists(), "no case got as far as creating the cache directory");
}

#[test]
fn a_start_error_is_printed_once() {
    // A cache directory held by another process (its lock file taken with flock) fails the start, with exit code 1.
    let dir = TestDir::new("cli-start");
    let cache = dir.subdir("cache");
    let lock = std::fs::File::create(cache.join(".lock")).expect("create lock file");
    let held = Command::new("flock")
        .arg("--exclusive")
        .arg("--nonblock")
        .arg(cache.join(".lock"))
        .arg("sleep")
        .arg("60")
        .spawn();
    drop(lock);
    let mut holder = held.expect("run flock");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let config = format!("imagePath: \"{}\"\nhost: 127.0.0.1\nport: {}\n", cache.display(), common::ports::free_port());
    let (code, stderr) = serve_until_exit(&dir, "locked", &config);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, Some(1), "exit code; stderr {stderr}");
    assert!(
        stderr.contains("imagePath") && stderr.contains(&cache.display().to_string()),
        "names the key and the directory: {stderr}"
    );
    let errors = stderr.lines().filter(|l| l.contains("in use by another")).count();
    assert_eq!(errors, 1, "the error is printed once: {stderr}");
}
