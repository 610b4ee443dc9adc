//! TLS toward the upstream: docker-registry serving HTTPS with a certificate
//! from the test's own CA (made with openssl), optionally requiring client
//! certificates. With `tls.ca` our server trusts it and skopeo and ctr pull
//! through; without it the pull fails with a 502 OCI error that names the
//! certificate problem and nothing is cached; `insecureSkipVerify` works
//! without the CA. With `clientcas` on the registry, `tls.cert`/`tls.key`
//! make the pull work, and without them it fails clearly. `caOnly` drops the
//! system roots (made to hold the registry's CA through `SSL_CERT_FILE`).

mod common;

use std::path::PathBuf;

use common::certs::{self, Certs};
use common::containerd::Containerd;
use common::http::{self, StatusCode};
use common::images::{self, Image};
use common::server::{Server, ServerConfig};
use common::upstream::{Upstream, UpstreamOptions};
use common::{cached_files, skopeo, TestDir};

struct Setup {
    certs: Certs,
    up: Upstream,
    dir: TestDir,
}

/// An HTTPS registry, requiring client certificates if `mutual`.
fn setup(mutual: bool) -> Setup {
    let dir = TestDir::new("upstream-tls");
    let certs = certs::generate(&dir.subdir("certs"));
    let up = Upstream::start_with(UpstreamOptions {
        tls: Some(certs.server.clone()),
        client_cas: mutual.then(|| certs.client_ca.clone()),
        ..Default::default()
    });
    assert!(up.url().starts_with("https://"));
    Setup { certs, up, dir }
}

fn server(s: &Setup, tls_yaml: &str) -> Server {
    Server::start_with(ServerConfig::default().registry_with("docker.io", &s.up.url(), tls_yaml))
}

fn ca_yaml(s: &Setup) -> String {
    format!("tls:\n  ca: \"{}\"\n", s.certs.ca.display())
}

fn client_cert_yaml(s: &Setup) -> String {
    format!(
        "tls:\n  ca: \"{}\"\n  cert: \"{}\"\n  key: \"{}\"\n",
        s.certs.ca.display(),
        s.certs.client.cert.display(),
        s.certs.client.key.display()
    )
}

/// A manifest and a blob request both fail with a 502 OCI error naming the
/// upstream, skopeo fails too, and nothing reaches the cache. Returns the
/// manifest error's body.
fn assert_refused(s: &Setup, server: &Server, image: &Image) -> String {
    let client = http::client();
    let url = format!("{}/v2/{}/manifests/{}?ns=docker.io", server.url(), image.repo, image.tag);
    let resp = client.get(&url).header("Accept", http::ACCEPT_ALL_MANIFESTS).send().unwrap();
    let (status, _, body) = http::oci_error(resp, &url);
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{url}: {body}");
    assert!(body.contains("docker.io") || body.contains(&s.up.host()), "the message names the upstream: {body}");

    let url = format!("{}/v2/{}/blobs/{}?ns=docker.io", server.url(), image.repo, image.manifest().layers[0].digest);
    let (status, _, blob_body) = http::oci_error(client.get(&url).send().unwrap(), &url);
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{url}: {blob_body}");

    skopeo::try_copy_from(&server.url(), &image.reference(), &s.dir.path().join("skopeo-refused"), false)
        .expect_err("skopeo must fail");
    assert_eq!(cached_files(server.cache_dir()), Vec::<PathBuf>::new(), "nothing cached");
    body
}

#[test]
fn skopeo_and_ctr_pull_through_a_tls_upstream_with_our_ca() {
    let s = setup(false);
    let hello = images::hello(&s.up, s.dir.path());
    let docker2 = images::docker2(&s.up, s.dir.path());
    let server = server(&s, &ca_yaml(&s));

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello"));
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    ctr.pull(&docker2.reference());
    assert_eq!(ctr.image_digest(&docker2.reference()), Some(docker2.digest.clone()));
    assert_eq!(ctr.snapshot_count(), 2, "both layers unpacked");
}

#[test]
fn an_untrusted_upstream_certificate_is_a_502_naming_the_problem() {
    let s = setup(false);
    let hello = images::hello(&s.up, s.dir.path());
    let server = server(&s, "");

    let body = assert_refused(&s, &server, &hello);
    assert!(body.to_lowercase().contains("certificate"), "the message names the certificate problem: {body}");
}

#[test]
fn insecure_skip_verify_pulls_without_the_ca() {
    let s = setup(false);
    let hello = images::hello(&s.up, s.dir.path());
    let server = server(&s, "tls:\n  insecureSkipVerify: true\n");

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello"));
}

#[test]
fn mutual_tls_with_a_client_certificate_pulls() {
    let s = setup(true);
    let hello = images::hello(&s.up, s.dir.path());
    let multi = images::multi(&s.up, s.dir.path());
    let server = server(&s, &client_cert_yaml(&s));

    skopeo::pull_verified(&server.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-hello"));
    let ctr = Containerd::start();
    ctr.set_mirror(&server.url());
    ctr.pull(&multi.reference());
    assert_eq!(ctr.image_digest(&multi.reference()), Some(multi.digest.clone()));
}

#[test]
fn mutual_tls_without_a_client_certificate_fails_clearly() {
    let s = setup(true);
    let hello = images::hello(&s.up, s.dir.path());
    // Trusts the registry, but has no certificate to present.
    let server = server(&s, &ca_yaml(&s));

    let body = assert_refused(&s, &server, &hello);
    assert!(body.to_lowercase().contains("certificate"), "the message says a certificate was required: {body}");
}

#[test]
fn ca_only_trusts_the_configured_ca_instead_of_the_system_roots() {
    let s = setup(false);
    let hello = images::hello(&s.up, s.dir.path());
    // The system roots hold the registry's CA; tls.ca names an unrelated CA.
    let system_roots = s.certs.ca.display().to_string();
    let entry = |ca_only: bool| format!("tls:\n  ca: \"{}\"\n  caOnly: {ca_only}\n", s.certs.client_ca.display());
    let start = |ca_only: bool| {
        Server::start_with(
            ServerConfig::default()
                .registry_with("docker.io", &s.up.url(), &entry(ca_only))
                .env("SSL_CERT_FILE", &system_roots),
        )
    };

    let with_system_roots = start(false);
    skopeo::pull_verified(&with_system_roots.url(), &hello, &hello.reference(), &s.dir.path().join("skopeo-system"));

    let ca_only = start(true);
    let body = assert_refused(&s, &ca_only, &hello);
    assert!(body.to_lowercase().contains("certificate"), "the message names the certificate problem: {body}");
}
