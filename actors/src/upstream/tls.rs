//! TLS client configuration for upstream registries: the trust roots (system store, plus a configured CA or only
//! that CA) and the per-registry `insecureSkipVerify` escape hatch. Built once at start so a bad certificate file
//! stops the server with a message naming the file, never at the first pull.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The client certificate or key could not be read or do not match.
    #[error("cannot use client certificate {cert} with key {key}: {detail}")]
    ClientCert {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The CA file could not be read or holds no usable certificate.
    #[error("cannot use CA file {path}: {detail}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration for {upstream}: {detail}")]
    Config {
        /// The upstream it was for.
        upstream: String,
        /// rustls' message.
        detail: String,
    },
}

/// TLS options of one upstream, as configured.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra CA certificates (PEM) trusted for this upstream, added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Trust only `ca_file`, not the system roots.
    pub ca_only: bool,
    /// Client certificate chain and key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Skip server certificate verification for this upstream's own host only (redirect targets such as a CDN are
    /// still verified).
    pub insecure_skip_verify: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system trust store, or the bundled Mozilla roots when the system has none (a scratch container image).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed system certificate is skipped: one bad file must not break every upstream.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

fn load_ca(path: &Path, roots: &mut RootCertStore) -> Result<(), TlsSetupError> {
    let err = |detail: String| TlsSetupError::CaFile { path: path.to_path_buf(), detail };
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))?;
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(())
}

fn load_client_cert(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    let err = |detail: String| TlsSetupError::ClientCert { cert: cert.to_path_buf(), key: key.to_path_buf(), detail };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(format!("certificate file: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("certificate file: {e}")))?;
    if chain.is_empty() {
        return Err(err("no PEM certificate in the certificate file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err(format!("key file: {e}")))?;
    Ok((chain, key))
}

/// Build the rustls client configuration for one upstream whose own host is `host` (for `insecureSkipVerify`).
pub fn client_config(host: &str, opts: &TlsOptions) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let config_err = |e: rustls::Error| TlsSetupError::Config { upstream: host.into(), detail: e.to_string() };
    let mut roots = if opts.ca_only { RootCertStore::empty() } else { system_roots() };
    if let Some(ca) = &opts.ca_file {
        load_ca(ca, &mut roots)?;
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config_err)?;
    let builder = if opts.insecure_skip_verify {
        let verified = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsSetupError::Config { upstream: host.into(), detail: e.to_string() })?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        builder.dangerous().with_custom_certificate_verifier(Arc::new(SkipForHost { host, provider, verified }))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match &opts.client_cert {
        Some((cert, key)) => {
            let (chain, key_der) = load_client_cert(cert, key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| TlsSetupError::ClientCert {
                cert: cert.clone(),
                key: key.clone(),
                detail: e.to_string(),
            })?
        }
        None => builder.with_no_client_auth(),
    };
    // awc does not set ALPN on a custom config; registries all speak HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any certificate from the upstream's own host (`insecureSkipVerify`); every other host (a redirect to a CDN
/// or object store) is verified normally. Signatures are always checked so the handshake itself stays sound.
#[derive(Debug)]
struct SkipForHost {
    host: String,
    provider: Arc<CryptoProvider>,
    verified: Arc<WebPkiServerVerifier>,
}

fn server_name_str(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}

impl ServerCertVerifier for SkipForHost {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if server_name_str(server_name) == self.host {
            return Ok(ServerCertVerified::assertion());
        }
        self.verified.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
