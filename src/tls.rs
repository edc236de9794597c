//! TLS for the WebSocket and REST listener (rustls with ring): loading the certificate and key,
//! and putting a new pair in place without dropping connections, on SIGHUP or when the files
//! change. Handshakes read the pair current at that moment; established connections keep
//! theirs.

use std::{
    path::Path,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// How often the files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Why a certificate cannot be served; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no PEM certificate in {0}")]
    NoCertificate(String),
    #[error("no PEM private key in {0} (PKCS#8, PKCS#1 or SEC1 expected)")]
    NoKey(String),
    #[error("the private key in {path} cannot be used: {reason}")]
    BadKey { path: String, reason: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: String, key: String },
}

/// Reads the certificate (with the chain after it) and the key, and checks they belong together.
pub fn load(config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    let mut chain = certificates(&config.cert)?;
    if let Some(extra) = &config.chain {
        chain.extend(certificates(extra)?);
    }
    let key_path = config.key.display().to_string();
    let pem = read(&config.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey(key_path.clone()))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // ring cannot always derive the public key; then the first handshake tells.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(_) => Err(TlsError::Mismatch {
            cert: config.cert.display().to_string(),
            key: key_path,
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

/// The pair handshakes use now; [`Certificates::reload`] replaces it.
#[derive(Debug)]
pub struct Certificates {
    config: TlsConfig,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    pub fn new(config: TlsConfig) -> Result<Self, TlsError> {
        let current = RwLock::new(Arc::new(load(&config)?));
        Ok(Certificates { config, current })
    }

    /// Reads the files again; on failure the old pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load(&self.config)?);
        *self.current.write().expect("not poisoned") = fresh;
        Ok(())
    }

    /// The rustls settings for the listener: HTTP/1.1 only (see `service.rs`).
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    fn modified(&self) -> Vec<Option<SystemTime>> {
        let mut paths = vec![&self.config.cert, &self.config.key];
        paths.extend(&self.config.chain);
        paths
            .into_iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("not poisoned").clone())
    }
}

/// Reloads on SIGHUP and when a file's modification time changes, until shutdown. A failed
/// reload is logged and the old pair kept: a half-copied certificate must not take the site
/// down.
pub async fn watch(certificates: Arc<Certificates>, shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut seen = certificates.modified();
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        #[cfg(unix)]
        let signal = async {
            match &mut hangup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signal = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = signal => "SIGHUP",
            _ = tick.tick() => {
                let now = certificates.modified();
                if now == seen {
                    continue;
                }
                seen = now;
                "a file changed"
            }
        };
        match certificates.reload() {
            Ok(()) => tracing::info!(
                cert = %certificates.config.cert.display(),
                "TLS certificate reloaded ({why})"
            ),
            Err(e) => {
                tracing::warn!("TLS certificate not reloaded ({why}), the old one stays: {e}")
            }
        }
    }
}
