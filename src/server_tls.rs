//! Server-side TLS for the main port: the certificate, optional client-certificate verification, and reloading.
//!
//! Kubernetes rotates mounted secrets in place, so the certificate (and the client CA) are re-read when their files
//! change (checked every `POLL`) or on SIGHUP, without dropping open connections: new handshakes use the new
//! certificate, established connections keep theirs. A file that fails to load at start stops the server with a
//! message naming it; one that fails at reload is logged and the previous certificate stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

/// How often the certificate files are checked for changes.
const POLL: Duration = Duration::from_secs(5);

/// The TLS files of the main port, as configured.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA for client certificates; with `require_client_cert`, clients must present one it signed.
    pub client_ca: Option<PathBuf>,
    /// `clientAuth: verify`.
    pub require_client_cert: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why the server's TLS files could not be used. Each variant names the file (and so the config key) at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsLoadError {
    /// The certificate file (`serverTlsConfig.cert`) cannot be read or holds no PEM certificate.
    #[error("server certificate {}: {detail}", path.display())]
    Cert { path: PathBuf, detail: String },
    /// The key file (`serverTlsConfig.key`) cannot be read or holds no PEM private key.
    #[error("server key {}: {detail}", path.display())]
    Key { path: PathBuf, detail: String },
    /// The certificate and the key do not belong together (or rustls refuses them).
    #[error("server certificate {} with key {}: {detail}", cert.display(), key.display())]
    Pair { cert: PathBuf, key: PathBuf, detail: String },
    /// The client CA file (`serverTlsConfig.ca`) cannot be read or holds no usable CA certificate.
    #[error("client CA {}: {detail}", path.display())]
    ClientCa { path: PathBuf, detail: String },
    /// rustls refused the configuration itself.
    #[error("server TLS: {0}")]
    Config(String),
}

fn load_certified(files: &TlsFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsLoadError> {
    let cert_err = |detail: String| TlsLoadError::Cert { path: files.cert.clone(), detail };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate in it".to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsLoadError::Key { path: files.key.clone(), detail: e.to_string() })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        // The certificate parsed, and the key is not its key.
        rustls::Error::InconsistentKeys(_) => {
            TlsLoadError::Pair { cert: files.cert.clone(), key: files.key.clone(), detail: e.to_string() }
        }
        // PEM armour around something that is not a certificate.
        rustls::Error::InvalidCertificate(_) => cert_err(e.to_string()),
        _ => TlsLoadError::Pair { cert: files.cert.clone(), key: files.key.clone(), detail: e.to_string() },
    })?;
    Ok(Arc::new(certified))
}

fn load_client_verifier(
    ca: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<(Arc<dyn ClientCertVerifier>, Vec<DistinguishedName>), TlsLoadError> {
    let err = |detail: String| TlsLoadError::ClientCa { path: ca.to_path_buf(), detail };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(e.to_string()))?;
    for cert in certs {
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no PEM certificate in it".to_string()));
    }
    let hints = roots.subjects();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| err(e.to_string()))?;
    Ok((verifier, hints))
}

/// The current certificate, swapped on reload.
#[derive(Debug)]
struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|c| c.clone())
    }
}

/// The current client-certificate verifier, swapped on reload.
#[derive(Debug)]
struct VerifierSlot {
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    /// The CA subjects sent as hints (those of the CA at start; verification always uses the current CA).
    hints: Vec<DistinguishedName>,
}

impl VerifierSlot {
    fn get(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.current.read().map(|v| v.clone()).map_err(|_| rustls::Error::General("verifier lock poisoned".into()))
    }
}

impl ClientCertVerifier for VerifierSlot {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get()?.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().map(|v| v.supported_verify_schemes()).unwrap_or_default()
    }
}

/// A loaded server TLS setup: the rustls configuration to bind with, and what reloads it.
pub struct ServerTls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    cert: Arc<CertSlot>,
    verifier: Option<Arc<VerifierSlot>>,
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// Load the files and build the configuration (HTTP/2 and HTTP/1.1 offered through ALPN). The error names the
    /// file that failed.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsLoadError> {
        let provider = provider();
        let cert = Arc::new(CertSlot(RwLock::new(load_certified(&files, &provider)?)));
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsLoadError::Config(e.to_string()))?;
        let (builder, verifier) = match (&files.client_ca, files.require_client_cert) {
            (Some(ca), true) => {
                let (inner, hints) = load_client_verifier(ca, &provider)?;
                let slot = Arc::new(VerifierSlot { current: RwLock::new(inner), hints });
                (builder.with_client_cert_verifier(slot.clone()), Some(slot))
            }
            (None, true) => return Err(TlsLoadError::Config("clientAuth: verify needs serverTlsConfig.ca".into())),
            _ => (builder.with_no_client_auth(), None),
        };
        let mut config = builder.with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls { files, provider, cert, verifier, config: Arc::new(config) })
    }

    /// The configuration to bind the main port with.
    pub fn config(&self) -> rustls::ServerConfig {
        (*self.config).clone()
    }

    /// Re-read the files; on failure keep what is loaded and log why.
    fn reload(&self) {
        match load_certified(&self.files, &self.provider) {
            Ok(new) => {
                if let Ok(mut slot) = self.cert.0.write() {
                    *slot = new;
                }
                tracing::info!(cert = %self.files.cert.display(), "server certificate reloaded");
            }
            Err(e) => tracing::error!("server certificate not reloaded, keeping the previous one: {e}"),
        }
        if let (Some(slot), Some(ca)) = (&self.verifier, &self.files.client_ca) {
            match load_client_verifier(ca, &self.provider) {
                Ok((inner, _)) => {
                    if let Ok(mut current) = slot.current.write() {
                        *current = inner;
                    }
                }
                Err(e) => tracing::error!("client CA not reloaded, keeping the previous one: {e}"),
            }
        }
    }

    fn stamp(&self) -> Vec<Option<SystemTime>> {
        let mut paths = vec![&self.files.cert, &self.files.key];
        paths.extend(self.files.client_ca.as_ref());
        paths.into_iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
    }

    /// Watch the files (and SIGHUP) for as long as the server runs. Call inside the actix system.
    pub fn watch(self: Arc<Self>) {
        actix_rt::spawn(async move {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut seen = self.stamp();
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let forced = tokio::select! {
                    _ = tokio::time::sleep(POLL) => false,
                    _ = hangup => true,
                };
                let now = self.stamp();
                if forced || now != seen {
                    // Kubernetes swaps secret files through a symlink; give the writer a moment to finish.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    self.reload();
                    seen = self.stamp();
                }
            }
        });
    }
}
