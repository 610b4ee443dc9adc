//! Basic credentials toward the upstream: docker-registry over TLS with an
//! htpasswd user. The right password (in the config, or from an environment
//! variable named by `passwordFromEnv`) lets skopeo and ctr pull through our
//! server; a wrong or missing one gives the client a 502 OCI error naming the
//! upstream, caches nothing, and the password appears neither in our log
//! (debug level) nor in the error body. A docker credential helper on the
//! server's PATH supplies credentials, and runs once for several pulls.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::certs::{self, Certs};
use common::containerd::Containerd;
use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::server::{Server, ServerConfig};
use common::upstream::{Upstream, UpstreamOptions};
use common::{assert_no_secrets, basic_secrets, cached_files, skopeo, TestDir};

const USER: &str = "e2e-basic-user";

struct Setup {
    certs: Certs,
    password: String,
    up: Upstream,
    dir: TestDir,
}

/// An HTTPS registry with one htpasswd user and a random password.
fn setup() -> Setup {
    let dir = TestDir::new("upstream-auth");
    let certs = certs::generate(&dir.subdir("certs"));
    let password = format!("basic-pass-{:016x}", rand::random::<u64>());
    let up = Upstream::start_with(UpstreamOptions {
        tls: Some(certs.server.clone()),
        htpasswd: Some((USER.to_string(), password.clone())),
        ..Default::default()
    });
    Setup { certs, password, up, dir }
}

/// `docker.io` mapped to the registry, trusting its CA, with these auth keys
/// (YAML under `auth:`, at column 0; empty for none).
fn config(s: &Setup, auth_yaml: &str) -> ServerConfig {
    let mut entry = format!("tls:\n  ca: \"{}\"\n", s.certs.ca.display());
    if !auth_yaml.is_empty() {
        entry.push_str("auth:\n");
        for line in auth_yaml.lines() {
            entry.push_str(&format!("  {line}\n"));
        }
    }
    ServerConfig::default().registry_with("docker.io", &s.up.url(), &entry)
}

/// A manifest request fails with a 502 OCI error that names the upstream,
/// skopeo fails, nothing is cached. Returns the error bodies and skopeo's output.
fn assert_refused(s: &Setup, server: &Server, image: &Image) -> String {
    let client = http::client();
    let mut out = String::new();
    for url in [
        format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, image.tag),
        format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, image.manifest().layers[0].digest),
    ] {
        let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
        let (status, _, body) = http::oci_error(resp, &url);
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{url}: {body}");
        assert!(body.contains("docker.io") || body.contains(&s.up.host()), "the message names the upstream: {body}");
        out.push_str(&body);
    }
    let err = skopeo::try_copy_from(&server.url(), &image.reference(), &s.dir.path().join("skopeo-refused"), false)
        .expect_err("skopeo must fail");
    out.push_str(&err);
    assert_eq!(cached_files(server.cache_dir()), Vec::<PathBuf>::new(), "nothing cached");
    out
}

#[test]
fn the_right_password_pulls_with_skopeo_and_ctr() {
    let s = setup();
    let hello = images::hello(&s.up, s.dir.path());
    let docker2 = images::docker2(&s.up, s.dir.path());
    let server = Server::start_with(config(&s, &format!("user: {USER}\npassword: \"{}\"\n", s.password)));

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello"));
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    ctr.pull(&docker2.reference());
    assert_eq!(ctr.image_digest(&docker2.reference()), Some(docker2.digest.clone()));

    assert_no_secrets(&server.logs(), &basic_secrets(USER, &s.password), "our server's log");
}

#[test]
fn password_from_env_pulls() {
    let s = setup();
    let hello = images::hello(&s.up, s.dir.path());
    let var = "OCIREGISTRY_E2E_UPSTREAM_PASSWORD";
    let server =
        Server::start_with(config(&s, &format!("user: {USER}\npasswordFromEnv: {var}\n")).env(var, &s.password));
    assert!(
        !std::fs::read_to_string(server.config_file()).unwrap().contains(&s.password),
        "premise: the password is only in the environment"
    );

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello"));
    assert_no_secrets(&server.logs(), &basic_secrets(USER, &s.password), "our server's log");
}

#[test]
fn a_wrong_password_is_a_502_naming_the_upstream_without_the_password() {
    let s = setup();
    let hello = images::hello(&s.up, s.dir.path());
    let wrong = format!("wrong-pass-{:016x}", rand::random::<u64>());
    let server = Server::start_with(config(&s, &format!("user: {USER}\npassword: \"{wrong}\"\n")));

    let bodies = assert_refused(&s, &server, &hello);
    let secrets = basic_secrets(USER, &wrong);
    assert_no_secrets(&bodies, &secrets, "the error bodies and skopeo's output");
    assert_no_secrets(&server.logs(), &secrets, "our server's log");
}

#[test]
fn missing_credentials_are_a_502_naming_the_upstream() {
    let s = setup();
    let hello = images::hello(&s.up, s.dir.path());
    let server = Server::start_with(config(&s, ""));

    assert_refused(&s, &server, &hello);
}

/// A fake `docker-credential-test` in its own directory: answers `get` with
/// `USER`/`secret` for whatever server URL it is given, and appends that URL
/// to `calls` per run.
fn credential_helper(dir: &Path, secret: &str) -> (PathBuf, PathBuf) {
    let bin = dir.join("helper-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = dir.join("helper-calls");
    let script = bin.join("docker-credential-test");
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\n\
             set -eu\n\
             [ \"${{1:-}}\" = get ] || {{ echo \"unsupported: ${{1:-}}\" >&2; exit 1; }}\n\
             read -r server || true\n\
             echo \"$server\" >> '{calls}'\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{secret}\"}}\\n' \"$server\"\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, calls)
}

#[test]
fn a_credential_helper_supplies_the_password_once_for_several_pulls() {
    let s = setup();
    let hello = images::hello(&s.up, s.dir.path());
    let docker2 = images::docker2(&s.up, s.dir.path());
    let (bin, calls) = credential_helper(s.dir.path(), &s.password);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let server = Server::start_with(config(&s, "helper: test\n").env("PATH", &path));

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello"));
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    ctr.pull(&docker2.reference());
    assert_eq!(ctr.image_digest(&docker2.reference()), Some(docker2.digest.clone()));
    // A third pull: hello again by tag, which goes upstream for the tag.
    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello-2"));

    let lines = std::fs::read_to_string(&calls).unwrap_or_default();
    let runs: Vec<&str> = lines.lines().collect();
    assert_eq!(runs.len(), 1, "the helper ran once for three pulls: {runs:?}");
    assert!(!runs[0].trim().is_empty(), "the helper was told which registry: {runs:?}");
    assert_no_secrets(&server.logs(), &basic_secrets(USER, &s.password), "our server's log");
}
