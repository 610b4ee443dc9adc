//! Certificates for TLS and token tests, made with the `openssl` command line
//! in the test's own directory (never committed).
//!
//! rustls refuses a self-signed CA used as a server certificate
//! (`CaUsedAsEndEntity`), so every certificate here is a leaf
//! (`basicConstraints=CA:FALSE`) signed by a separate CA:
//!
//! - a server CA and a server leaf for `IP:127.0.0.1, DNS:localhost`
//!   (docker-registry's `http.tls`; our server trusts the CA with `tls.ca`);
//! - a client CA and a client leaf (docker-registry's `http.tls.clientcas`;
//!   our server presents the leaf with `tls.cert`/`tls.key`);
//! - on request, a token-signing CA and an RSA signing leaf (docker-registry's
//!   `auth.token.rootcertbundle`; the token server puts the leaf in the JWT's
//!   `x5c` header and signs with its key).
//!
//! TLS keys are P-256 (fast to make); the signing key is RSA 2048 for RS256.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::run;

/// A certificate (PEM) and its private key (PKCS#8 PEM).
#[derive(Debug, Clone)]
pub struct CertKey {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Server and client PKI for one test.
#[derive(Debug, Clone)]
pub struct Certs {
    /// CA that signed `server`: what our server's `tls.ca` names.
    pub ca: PathBuf,
    /// `subjectAltName=IP:127.0.0.1,DNS:localhost`, for docker-registry.
    pub server: CertKey,
    /// CA that signed `client`: docker-registry's `clientcas`.
    pub client_ca: PathBuf,
    /// A client certificate for mutual TLS.
    pub client: CertKey,
}

/// The token server's signing material.
#[derive(Debug, Clone)]
pub struct SigningCert {
    /// The CA (PEM): docker-registry's `rootcertbundle`.
    pub ca: PathBuf,
    /// The signing certificate, DER (the first `x5c` entry).
    pub cert_der: Vec<u8>,
    /// The CA certificate, DER (the second `x5c` entry).
    pub ca_der: Vec<u8>,
    /// The RSA private key, PKCS#8 DER (for ring).
    pub key_pkcs8: Vec<u8>,
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[signing_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

fn openssl(dir: &Path) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir);
    cmd
}

fn config(dir: &Path) -> PathBuf {
    let cnf = dir.join("openssl.cnf");
    if !cnf.exists() {
        std::fs::write(&cnf, OPENSSL_CNF).expect("write openssl.cnf");
    }
    cnf
}

/// `-newkey` arguments: P-256 or RSA 2048.
fn new_key_args(rsa: bool) -> Vec<&'static str> {
    if rsa {
        vec!["-newkey", "rsa:2048"]
    } else {
        vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    }
}

/// A self-signed CA named `name` in `dir`: `NAME.pem`, `NAME.key`.
fn make_ca(dir: &Path, name: &str, cn: &str) -> CertKey {
    let cnf = config(dir);
    let ck = CertKey { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) };
    run(openssl(dir)
        .args(["req", "-x509", "-nodes", "-days", "2", "-config"])
        .arg(&cnf)
        .args(["-extensions", "ca_ext", "-subj", &format!("/CN={cn}")])
        .args(new_key_args(false))
        .arg("-keyout")
        .arg(&ck.key)
        .arg("-out")
        .arg(&ck.cert));
    ck
}

/// A leaf named `name` signed by `ca`, with the extensions of section `ext`.
fn make_leaf(dir: &Path, ca: &CertKey, name: &str, cn: &str, ext: &str, rsa: bool) -> CertKey {
    let cnf = config(dir);
    let ck = CertKey { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}.key")) };
    let csr = dir.join(format!("{name}.csr"));
    run(openssl(dir)
        .args(["req", "-new", "-nodes", "-config"])
        .arg(&cnf)
        .args(["-subj", &format!("/CN={cn}")])
        .args(new_key_args(rsa))
        .arg("-keyout")
        .arg(&ck.key)
        .arg("-out")
        .arg(&csr));
    let serial = format!("0x{:016x}", rand::random::<u64>() >> 1);
    run(openssl(dir)
        .args(["x509", "-req", "-days", "2", "-set_serial", &serial, "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca.cert)
        .arg("-CAkey")
        .arg(&ca.key)
        .arg("-extfile")
        .arg(&cnf)
        .args(["-extensions", ext, "-out"])
        .arg(&ck.cert));
    ck
}

/// Make a server CA + leaf and a client CA + leaf under `dir`.
pub fn generate(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).expect("create certs dir");
    let ca = make_ca(dir, "ca", "ociregistry e2e server CA");
    let server = make_leaf(dir, &ca, "server", "localhost", "server_ext", false);
    let client_ca = make_ca(dir, "client-ca", "ociregistry e2e client CA");
    let client = make_leaf(dir, &client_ca, "client", "ociregistry e2e client", "client_ext", false);
    Certs { ca: ca.cert, server, client_ca: client_ca.cert, client }
}

fn pem_to_der(dir: &Path, pem: &Path) -> Vec<u8> {
    let der = pem.with_extension("der");
    run(openssl(dir).args(["x509", "-outform", "DER", "-in"]).arg(pem).arg("-out").arg(&der));
    std::fs::read(der).expect("read DER certificate")
}

/// Make a token-signing CA and an RSA signing leaf under `dir`.
pub fn signing_cert(dir: &Path) -> SigningCert {
    std::fs::create_dir_all(dir).expect("create certs dir");
    let ca = make_ca(dir, "token-ca", "ociregistry e2e token CA");
    let leaf = make_leaf(dir, &ca, "token-signer", "ociregistry e2e token signer", "signing_ext", true);
    let key_der = dir.join("token-signer.pk8");
    run(openssl(dir)
        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
        .arg(&leaf.key)
        .arg("-out")
        .arg(&key_der));
    SigningCert {
        cert_der: pem_to_der(dir, &leaf.cert),
        ca_der: pem_to_der(dir, &ca.cert),
        key_pkcs8: std::fs::read(key_der).expect("read PKCS#8 key"),
        ca: ca.cert,
    }
}
