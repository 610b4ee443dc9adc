//! TLS client configuration for upstream registries: the trust roots (system store, plus a configured CA or only
//! that CA) and the per-registry `insecureSkipVerify` escape hatch. Built once at start so a bad certificate file
//! stops the server with a message naming the file, never at the first pull.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
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
    /// Skip server certificate verification for this upstream only.
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

/// Build the rustls client configuration for one upstream.
pub fn client_config(upstream: &str, opts: &TlsOptions) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = if opts.ca_only { RootCertStore::empty() } else { system_roots() };
    if let Some(ca) = &opts.ca_file {
        load_ca(ca, &mut roots)?;
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config { upstream: upstream.into(), detail: e.to_string() })?;
    let mut config = if opts.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider))).with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // awc does not set ALPN on a custom config; registries all speak HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate; used only for an upstream configured with `insecureSkipVerify`. Signatures are
/// still checked so the handshake itself stays sound.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
