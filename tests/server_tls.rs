//! HTTPS on the main port (`serverTlsConfig`): containerd and skopeo pull
//! through it trusting our test CA; HTTP/2 is offered through ALPN; with
//! `clientAuth: verify` only clients with a certificate from the client CA
//! get past the handshake; rotated certificate files are picked up without
//! dropping open connections, a bad file at reload keeps the old
//! certificate, and a bad file at start stops the server naming it.
//!
//! Certificates are made per test with openssl (`certs`); curl and openssl
//! s_client are the HTTPS clients (`tls_client`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::certs::{self, CertKey, Certs};
use common::containerd::Containerd;
use common::images::{self, Image};
use common::ports::free_port;
use common::process::{try_run, ChildGuard};
use common::server::{Server, ServerConfig};
use common::tls_client::{self, curl, file_serial, served_serial, KeepAlive, TlsOpts};
use common::upstream::Upstream;
use common::{skopeo, wait_for, TestDir};

fn tls_yaml(cert: &CertKey, client_ca: Option<&Path>) -> String {
    let mut y = format!("serverTlsConfig:\n  cert: \"{}\"\n  key: \"{}\"\n", cert.cert.display(), cert.key.display());
    match client_ca {
        Some(ca) => y.push_str(&format!("  ca: \"{}\"\n  clientAuth: verify\n", ca.display())),
        None => y.push_str("  clientAuth: none\n"),
    }
    y
}

/// Our server over HTTPS for `up`, answering `GET /v2/` through `tls`.
fn https_server(up: &Upstream, certs: &Certs, client_ca: Option<&Path>, tls: &TlsOpts) -> Server {
    let server = Server::start_with(ServerConfig::for_upstream(&up.url()).extra(&tls_yaml(&certs.server, client_ca)));
    assert!(server.is_https());
    let url = format!("{}/v2/", server.https_url());
    wait_for("GET /v2/ over HTTPS", Duration::from_secs(20), || {
        (curl(&url, tls, None).status == Some(200)).then_some(())
    });
    server
}

fn ca_opts(certs: &Certs) -> TlsOpts {
    TlsOpts { ca: Some(certs.ca.clone()), ..TlsOpts::default() }
}

/// `skopeo copy` from our HTTPS server with `--src-cert-dir` (TLS verified):
/// `ca.crt`, and with `client` also `client.cert` + `client.key`.
fn skopeo_pull(server: &Server, image: &Image, certs: &Certs, client: Option<&CertKey>, work: &Path, name: &str) {
    let cert_dir = work.join(format!("{name}-certs"));
    std::fs::create_dir_all(&cert_dir).expect("create cert dir");
    std::fs::copy(&certs.ca, cert_dir.join("ca.crt")).expect("copy ca.crt");
    if let Some(c) = client {
        std::fs::copy(&c.cert, cert_dir.join("client.cert")).expect("copy client.cert");
        std::fs::copy(&c.key, cert_dir.join("client.key")).expect("copy client.key");
    }
    let dest = work.join(name);
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--src-no-creds", "--src-cert-dir"])
        .arg(&cert_dir)
        .arg(format!("docker://127.0.0.1:{}/{}", server.port(), image.reference()))
        .arg(format!("oci:{}:latest", dest.display()));
    try_run(&mut cmd).unwrap_or_else(|e| panic!("skopeo over HTTPS: {e}"));
    let pulled = skopeo::verify_oci_layout(&dest);
    assert_eq!(pulled.top, image.digest, "skopeo over HTTPS: top manifest");
    pulled.assert_has_all_of(image);
}

fn assert_ctr_pulled(ctr: &Containerd, image: &Image) {
    assert_eq!(ctr.image_digest(&image.reference()), Some(image.digest.clone()), "ctr image digest");
    let content = ctr.content();
    for b in image.blobs() {
        assert!(content.contains(&b.digest), "{} not in containerd's content store", b.digest);
    }
}

#[test]
fn containerd_and_skopeo_pull_over_https_and_http2_is_offered() {
    let up = Upstream::start();
    let dir = TestDir::new("server-tls");
    let image = images::hello(&up, dir.path());
    let certs = certs::generate(&dir.subdir("certs"));
    let server = https_server(&up, &certs, None, &ca_opts(&certs));
    let v2 = format!("{}/v2/", server.https_url());

    // containerd through hosts.toml with our CA.
    let ctr = Containerd::start();
    ctr.set_mirror_with(&server.https_url(), &format!("ca = \"{}\"", certs.ca.display()));
    ctr.pull(&image.reference());
    assert_ctr_pulled(&ctr, &image);

    // skopeo with --src-cert-dir.
    skopeo_pull(&server, &image, &certs, None, dir.path(), "skopeo");

    // HTTP/2 through ALPN, HTTP/1.1 still there.
    let h2 = curl(&v2, &TlsOpts { http2: true, ..ca_opts(&certs) }, None);
    assert_eq!((h2.status, h2.http_version.as_str()), (Some(200), "2"), "curl --http2: {h2:?}");
    let h1 = curl(&v2, &ca_opts(&certs), None);
    assert_eq!((h1.status, h1.http_version.as_str()), (Some(200), "1.1"), "curl --http1.1: {h1:?}");

    // The certificate really is checked: without our CA curl refuses it, and
    // plain HTTP on the port gets no registry answer.
    let untrusted = curl(&v2, &TlsOpts::default(), None);
    assert!(untrusted.exit != 0 && untrusted.status.is_none(), "curl without our CA: {untrusted:?}");
    let plain = curl(&format!("{}/v2/", server.url()), &TlsOpts::default(), None);
    assert_ne!(plain.status, Some(200), "plain HTTP on the HTTPS port: {plain:?}");
}

#[test]
fn client_auth_verify_admits_only_certificates_from_the_client_ca() {
    let up = Upstream::start();
    let dir = TestDir::new("server-mtls");
    let image = images::hello(&up, dir.path());
    let certs = certs::generate(&dir.subdir("certs"));
    // A client certificate from some other CA.
    let stranger = certs::generate(&dir.subdir("stranger")).client;
    let with_cert = TlsOpts { client: Some(certs.client.clone()), ..ca_opts(&certs) };
    let server = https_server(&up, &certs, Some(&certs.client_ca), &with_cert);
    let v2 = format!("{}/v2/", server.https_url());

    let ok = curl(&v2, &with_cert, None);
    assert_eq!(ok.status, Some(200), "curl with a client certificate: {ok:?}");
    let h2 = curl(&v2, &TlsOpts { http2: true, ..with_cert.clone() }, None);
    assert_eq!((h2.status, h2.http_version.as_str()), (Some(200), "2"), "curl --http2 with a certificate: {h2:?}");

    // Refused at the handshake: a TLS error from curl, no HTTP status.
    for (what, opts) in [
        ("no client certificate", ca_opts(&certs)),
        ("a certificate from another CA", TlsOpts { client: Some(stranger.clone()), ..ca_opts(&certs) }),
    ] {
        for http2 in [false, true] {
            let r = curl(&v2, &TlsOpts { http2, ..opts.clone() }, None);
            assert!(r.exit != 0, "curl with {what} (http2 {http2}) succeeded: {r:?}");
            assert_eq!(r.status, None, "curl with {what} (http2 {http2}) got an HTTP status: {r:?}");
        }
    }

    // containerd with `client = [[cert, key]]` pulls; without it, it cannot.
    let ctr = Containerd::start();
    ctr.set_mirror_with(&server.https_url(), &format!("ca = \"{}\"", certs.ca.display()));
    let refused = ctr.try_pull(&image.reference());
    assert!(refused.is_err(), "containerd pulled without a client certificate: {refused:?}");
    ctr.set_mirror_with(
        &server.https_url(),
        &format!(
            "ca = \"{}\"\nclient = [[\"{}\", \"{}\"]]",
            certs.ca.display(),
            certs.client.cert.display(),
            certs.client.key.display()
        ),
    );
    ctr.pull(&image.reference());
    assert_ctr_pulled(&ctr, &image);

    // skopeo with client.cert/client.key in its cert dir.
    skopeo_pull(&server, &image, &certs, Some(&certs.client), dir.path(), "skopeo");
}

#[test]
fn rotated_certificate_files_are_served_without_dropping_open_connections() {
    let up = Upstream::start();
    let dir = TestDir::new("server-tls-reload");
    let cert_dir = dir.subdir("certs");
    let certs = certs::generate(&cert_dir);
    let mut server = https_server(&up, &certs, None, &ca_opts(&certs));
    let port = server.port();
    let live = certs.server.clone();
    let serial_a = file_serial(&live.cert);
    assert_eq!(served_serial(port, None).as_deref(), Ok(serial_a.as_str()), "serial at start");

    // A keep-alive connection opened before the rotation.
    let mut conn = KeepAlive::open(port, &certs.ca, None);
    assert!(conn.get("/v2/").is_ok_and(|s| s.contains(" 200")), "first request on the kept connection");

    // Rotate: new handshakes present the new leaf; the old connection keeps
    // working throughout (one request a second keeps it from idling out).
    let leaf_b = tls_client::new_server_leaf(&cert_dir, "server-b");
    let serial_b = file_serial(&leaf_b.cert);
    assert_ne!(serial_a, serial_b);
    tls_client::replace_files(&leaf_b, &live);
    let rotated = Instant::now();
    wait_for("new handshakes to present the rotated certificate", Duration::from_secs(30), || {
        let status = conn.get("/v2/").unwrap_or_else(|e| panic!("the kept connection during the rotation: {e}"));
        assert!(status.contains(" 200"), "the kept connection during the rotation: {status}");
        std::thread::sleep(Duration::from_millis(500));
        (served_serial(port, None).ok()? == serial_b).then_some(())
    });
    eprintln!("rotated certificate served after {:?}", rotated.elapsed());
    let status = conn.get("/v2/").expect("the kept connection after the rotation");
    assert!(status.contains(" 200"), "the kept connection after the rotation: {status}");
    let fresh = curl(&format!("{}/v2/", server.https_url()), &ca_opts(&certs), None);
    assert_eq!(fresh.status, Some(200), "a new connection after the rotation: {fresh:?}");

    // A garbage certificate file at reload: the old certificate stays, the
    // server keeps serving. Wait until the server has looked at the file (it
    // logs about it), or long enough for any reload to have happened.
    let logged_before = server.logs().len();
    let garbage = live.cert.with_extension("garbage");
    std::fs::write(&garbage, "this is not a certificate\n").expect("write garbage");
    std::fs::rename(&garbage, &live.cert).expect("rename garbage into place");
    let cert_name = live.cert.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && !server.logs()[logged_before..].contains(&cert_name) {
        let status = conn.get("/v2/").expect("the kept connection after a bad reload");
        assert!(status.contains(" 200"));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(server.is_running(), "the server stopped after a bad certificate file at reload");
    for _ in 0..3 {
        assert!(conn.get("/v2/").is_ok_and(|s| s.contains(" 200")), "the kept connection after a bad reload");
        assert_eq!(served_serial(port, None), Ok(serial_b.clone()), "serial after a bad file at reload");
        let r = curl(&format!("{}/v2/", server.https_url()), &ca_opts(&certs), None);
        assert_eq!(r.status, Some(200), "a new connection after a bad file at reload: {r:?}");
    }

    // The reloader still works after the failure.
    let leaf_c = tls_client::new_server_leaf(&cert_dir, "server-c");
    let serial_c = file_serial(&leaf_c.cert);
    tls_client::replace_files(&leaf_c, &live);
    wait_for("the next good certificate after a bad one", Duration::from_secs(30), || {
        let status = conn.get("/v2/").unwrap_or_else(|e| panic!("the kept connection during the second rotation: {e}"));
        assert!(status.contains(" 200"), "the kept connection during the second rotation: {status}");
        std::thread::sleep(Duration::from_millis(500));
        (served_serial(port, None).ok()? == serial_c).then_some(())
    });
    let status = conn.get("/v2/").expect("the kept connection after the second rotation");
    assert!(status.contains(" 200"), "the kept connection after the second rotation: {status}");

    // SIGHUP asks for a reload: the server neither dies of it nor drops the
    // kept connection, and serves what the files hold.
    let leaf_d = tls_client::new_server_leaf(&cert_dir, "server-d");
    let serial_d = file_serial(&leaf_d.cert);
    tls_client::replace_files(&leaf_d, &live);
    server.signal("HUP");
    wait_for("the certificate after SIGHUP", Duration::from_secs(30), || {
        assert!(server.is_running(), "the server exited on SIGHUP:\n{}", server.log_tail());
        let status = conn.get("/v2/").unwrap_or_else(|e| panic!("the kept connection after SIGHUP: {e}"));
        assert!(status.contains(" 200"), "the kept connection after SIGHUP: {status}");
        std::thread::sleep(Duration::from_millis(200));
        (served_serial(port, None).ok()? == serial_d).then_some(())
    });
}

#[test]
fn a_bad_certificate_file_at_start_stops_the_server_naming_the_file() {
    let dir = TestDir::new("server-tls-bad");
    let certs = certs::generate(&dir.subdir("certs"));
    let garbage = dir.path().join("garbage-cert.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
        .expect("write garbage");
    let missing_key = dir.path().join("no-such-key.pem");
    // Each is an invalid value of a config key: exit code 2 and one line naming the key and the file.
    let cases = [
        (
            "a garbage certificate",
            CertKey { cert: garbage.clone(), key: certs.server.key.clone() },
            &garbage,
            "serverTlsConfig.cert",
        ),
        (
            "a missing key",
            CertKey { cert: certs.server.cert.clone(), key: missing_key.clone() },
            &missing_key,
            "serverTlsConfig.key",
        ),
        (
            "a key that does not match",
            CertKey { cert: certs.server.cert.clone(), key: certs.client.key.clone() },
            &certs.server.cert,
            "serverTlsConfig.key",
        ),
    ];
    for (i, (what, files, named, key)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("config-{i}.yaml"));
        std::fs::write(
            &config,
            format!(
                "imagePath: \"{}\"\nhost: 127.0.0.1\nport: {}\nregistries: []\n{}",
                dir.subdir(&format!("cache-{i}")).display(),
                free_port(),
                tls_yaml(files, None)
            ),
        )
        .expect("write config");
        let mut guard = ChildGuard::spawn(
            &format!("ociregistry-bad-{i}"),
            Command::new(env!("CARGO_BIN_EXE_ociregistry")).arg("--config-file").arg(&config).arg("serve"),
            dir.path(),
        );
        let status =
            wait_for(&format!("the server with {what} to exit"), Duration::from_secs(30), || guard.exit_status());
        let output = guard.log_tail();
        assert_eq!(status.code(), Some(2), "the server with {what} exited with {status}:\n{output}");
        let stderr = std::fs::read_to_string(guard.stderr_path()).expect("stderr log");
        assert_eq!(stderr.trim().lines().count(), 1, "the server with {what}: one line:\n{stderr}");
        assert!(stderr.contains(&format!("'{key}'")), "the server with {what} did not name {key}:\n{stderr}");
        assert!(
            output.contains(&named.display().to_string()),
            "the server with {what} did not name {}:\n{output}",
            named.display()
        );
    }
}

/// The HTTPS helpers themselves, against `openssl s_server` (no ociregistry):
/// a renewed leaf chains to the test CA with a new serial, and the serial a
/// handshake presents is read correctly.
#[test]
fn tls_helpers_read_the_served_certificate() {
    let dir = TestDir::new("tls-helpers");
    let cert_dir = dir.subdir("certs");
    let certs = certs::generate(&cert_dir);
    let renewed = tls_client::new_server_leaf(&cert_dir, "renewed");
    assert_ne!(file_serial(&renewed.cert), file_serial(&certs.server.cert), "a renewed leaf has a new serial");
    common::process::run(Command::new("openssl").arg("verify").arg("-CAfile").arg(&certs.ca).arg(&renewed.cert));

    let port = free_port();
    let mut s_server = ChildGuard::spawn(
        "s_server",
        Command::new("openssl")
            .args(["s_server", "-www", "-accept", &port.to_string(), "-cert"])
            .arg(&renewed.cert)
            .arg("-key")
            .arg(&renewed.key),
        dir.path(),
    );
    let serial = wait_for("openssl s_server to answer", Duration::from_secs(10), || {
        assert!(s_server.is_running(), "s_server exited:\n{}", s_server.log_tail());
        served_serial(port, None).ok()
    });
    assert_eq!(serial, file_serial(&renewed.cert), "served serial");
    let r = curl(&format!("https://127.0.0.1:{port}/"), &ca_opts(&certs), None);
    assert_eq!(r.status, Some(200), "curl to s_server: {r:?}");
    let untrusted = curl(&format!("https://127.0.0.1:{port}/"), &TlsOpts::default(), None);
    assert!(untrusted.exit != 0 && untrusted.status.is_none(), "curl without the CA: {untrusted:?}");
}
