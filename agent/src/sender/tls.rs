//! The client side of mTLS, reloaded when its files change: certificates are
//! short-lived, so the agent must pick up a renewed certificate without a restart.
//!
//! The files are checked (size and modification time) before each new connection and
//! at most every [`CHECK_EVERY`]. A change that does not load (a half-written file, a key
//! that does not match) is logged and the previous config stays in force; the next check
//! tries again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use edge_daemon_kit::pem;
use edge_daemon_kit::stamp::Stamps;
use rustls::ClientConfig;

use crate::config::TlsFiles;

/// How often the files are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("TLS {what} {path}: {why}")]
    File {
        /// certificate, key or CA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        why: String,
    },
    /// rustls refused the combination (e.g. the key does not match the certificate).
    #[error("TLS client config: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS client config that follows its files.
#[derive(Debug)]
pub struct ReloadingTls {
    files: TlsFiles,
    stamps: Stamps,
    config: Arc<ClientConfig>,
    checked: Instant,
    generation: u64,
    /// The leaf certificate's expiry (Unix seconds), shared with the self-metrics.
    expiry: Arc<AtomicI64>,
}

impl ReloadingTls {
    /// Loads the files once; an error here stops the agent at startup.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let stamps = Stamps::of([&files.cert, &files.key, &files.ca]);
        let (config, not_after) = build(&files)?;
        Ok(ReloadingTls {
            files,
            stamps,
            config: Arc::new(config),
            checked: Instant::now(),
            generation: 0,
            expiry: Arc::new(AtomicI64::new(not_after)),
        })
    }

    /// Reports the certificate's expiry into `slot` from now on (the agent's
    /// `edge_tls_cert_expiry_timestamp_seconds`), reloads included.
    #[must_use]
    pub fn reporting_expiry_to(mut self, slot: Arc<AtomicI64>) -> Self {
        slot.store(self.expiry.load(Ordering::Relaxed), Ordering::Relaxed);
        self.expiry = slot;
        self
    }

    /// The config, reloaded first if the files changed. The generation counts reloads,
    /// so connections made under an older one can be replaced.
    pub fn current(&mut self) -> (Arc<ClientConfig>, u64) {
        if self.checked.elapsed() >= CHECK_EVERY {
            self.reload_if_changed();
        }
        (self.config.clone(), self.generation)
    }

    /// Looks at the files now.
    pub fn reload_if_changed(&mut self) {
        self.checked = Instant::now();
        if !self.stamps.changed() {
            return;
        }
        let now = self.stamps.now();
        match build(&self.files) {
            Ok((config, not_after)) => {
                self.config = Arc::new(config);
                self.expiry.store(not_after, Ordering::Relaxed);
                self.stamps = now;
                self.generation += 1;
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate, key or CA reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but do not load; keeping the previous ones");
            }
        }
    }
}

/// The client config, and the leaf certificate's expiry (Unix seconds).
fn build(files: &TlsFiles) -> Result<(ClientConfig, i64), TlsError> {
    let file_err = |what: &'static str, path: &Path, why: String| TlsError::File {
        what,
        path: path.to_path_buf(),
        why,
    };
    let certs =
        pem::certificates(&files.cert).map_err(|e| file_err("certificate", &files.cert, e))?;
    let expiry =
        pem::not_after(&certs[0]).map_err(|why| file_err("certificate", &files.cert, why))?;
    let key = pem::private_key(&files.key).map_err(|e| file_err("key", &files.key, e))?;
    // An empty trust store is an error, not an open door.
    let roots = pem::roots(&files.ca).map_err(|e| file_err("CA", &files.ca, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, expiry))
}
