//! What a reload replaces: the config, the label policy and catalog, and the TLS server config,
//! loaded whole or not at all, and the change stamps that decide when to reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use edge_daemon_kit::pem;
use edge_daemon_kit::stamp::Stamps;
use edge_schema::catalog::Catalog;
use edge_schema::check::Schema;
use edge_schema::policy::LabelPolicy;

use super::Gateway;
use crate::config::GatewayConfig;
use crate::telemetry::labels;
use crate::telemetry::{
    GATEWAY_CONFIG_INFO, GATEWAY_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
    GATEWAY_CONFIG_LAST_RELOAD_SUCCESSFUL, GATEWAY_CONFIG_RELOADS_TOTAL,
};

/// Everything a reload replaces, swapped in whole.
#[derive(Debug)]
pub struct Live {
    /// The config.
    pub config: GatewayConfig,
    /// The label policy and the metric catalog.
    pub schema: Schema,
    /// The tokenizer for log records that arrive without an agent.
    pub tokenizer: Arc<edge_tokenize::Tokenizer>,
    /// The TLS server config (`None`: plain HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// SHA-256 of the config file, hex.
    pub hash: String,
    /// Which load this is: a series found fine by the label checks under one
    /// generation is not checked again until the next ([`crate::quota::Quotas::checked_series`]).
    pub generation: u64,
    pub(super) stamps: Stamps,
}

/// Numbers the loads.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn watched_files(path: &Path, config: &GatewayConfig) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    if let Some(t) = &config.tls {
        files.extend([t.cert.clone(), t.key.clone(), t.client_ca.clone()]);
    }
    files.extend(config.policy.clone());
    files.extend(config.catalog.clone());
    files.extend(config.tokenize.key_file.clone());
    files
}

/// Loads the config, its policy, its catalog, its tokenization key and its TLS files; any failure leaves nothing built.
pub fn load_live(path: &Path) -> Result<Live, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let config = crate::config::load(path).map_err(|e| e.to_string())?;
    let policy = match &config.policy {
        Some(p) => LabelPolicy::from_file(p).map_err(|e| e.to_string())?,
        None => LabelPolicy::shipped(),
    };
    let catalog = match &config.catalog {
        Some(c) => Catalog::from_file(c).map_err(|e| e.to_string())?,
        None => Catalog::shipped(),
    };
    let tokenizer = Arc::new(build_tokenizer(&config.tokenize)?);
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(build_tls(files)?)),
        None => None,
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &text);
    let hash = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let stamps = Stamps::of(watched_files(path, &config));
    Ok(Live {
        config,
        schema: Schema::new(policy, catalog),
        tokenizer,
        tls,
        hash,
        generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        stamps,
    })
}

fn build_tokenizer(
    config: &edge_tokenize::config::TokenizeConfig,
) -> Result<edge_tokenize::Tokenizer, String> {
    let path = config
        .key_file
        .as_ref()
        .ok_or("tokenize.key_file: missing")?;
    let key = edge_tokenize::TokenKey::from_file(path)
        .map_err(|e| format!("tokenize.key_file {}: {e}", path.display()))?;
    edge_tokenize::Tokenizer::new(key, &config.detectors)
        .map_err(|e| format!("tokenize.detectors: {e}"))
}

fn build_tls(files: &crate::config::TlsFiles) -> Result<rustls::ServerConfig, String> {
    let certs = pem::certificates(&files.cert)
        .map_err(|e| format!("TLS certificate {}: {e}", files.cert.display()))?;
    let key = pem::private_key(&files.key)
        .map_err(|e| format!("TLS key {}: {e}", files.key.display()))?;
    let roots = pem::roots(&files.client_ca)
        .map_err(|e| format!("TLS client CA {}: {e}", files.client_ca.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let verifier = if files.client_cert_required {
        builder.build()
    } else {
        builder.allow_unauthenticated().build()
    }
    .map_err(|e| format!("TLS client CA {}: {e}", files.client_ca.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS certificate and key {}: {e}", files.key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

impl Gateway {
    pub(super) fn reloaded(&self, ok: bool) {
        let t = &self.telemetry;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        t.set(
            &GATEWAY_CONFIG_LAST_RELOAD_SUCCESSFUL,
            String::new(),
            if ok { 1.0 } else { 0.0 },
        );
        t.add(
            &GATEWAY_CONFIG_RELOADS_TOTAL,
            labels(&[("result", if ok { "success" } else { "failure" })]),
            1.0,
        );
        if ok {
            t.set(
                &GATEWAY_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
                String::new(),
                now,
            );
            let live = self.live();
            crate::telemetry::set_build_info(t, "gateway");
            if let Some(files) = &live.config.tls {
                crate::telemetry::set_cert_expiry(t, "gateway", "server", &files.cert);
            }
            let mut infos = std::collections::BTreeMap::new();
            infos.insert(labels(&[("sha256", &live.hash)]), 1.0);
            t.set_only(&GATEWAY_CONFIG_INFO, infos);
        }
    }

    /// Reloads if any watched file changed (or always, with `force`: SIGHUP). A config
    /// that does not load is refused, logged and counted; the old one stays.
    pub fn reload(&self, force: bool) -> Result<bool, String> {
        let current = self.live();
        if !force && !current.stamps.changed() {
            return Ok(false);
        }
        match load_live(&self.config_path) {
            Ok(new) => {
                if new.config.listen != current.config.listen
                    || new.config.metrics_sink != current.config.metrics_sink
                    || new.config.logs_sink != current.config.logs_sink
                    || new.config.traces_sink != current.config.traces_sink
                {
                    tracing::warn!(
                        "listen and sinks changed in the config: they take effect at the next restart; the rest applies now"
                    );
                }
                let hash = new.hash.clone();
                *self
                    .live
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
                *self
                    .refused_stamps
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                self.reloaded(true);
                tracing::info!(sha256 = %hash, "config reloaded");
                Ok(true)
            }
            Err(e) => {
                // Stamp the broken files, so they are not re-read every poll; the
                // config in force stays as it is.
                let stamps = current.stamps.now();
                let kept = Live {
                    config: current.config.clone(),
                    schema: current.schema.clone(),
                    tokenizer: current.tokenizer.clone(),
                    tls: current.tls.clone(),
                    hash: current.hash.clone(),
                    generation: current.generation,
                    stamps: stamps.clone(),
                };
                *self
                    .live
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(kept);
                let again = {
                    let mut refused = self
                        .refused_stamps
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let again = refused.as_ref() == Some(&stamps);
                    *refused = Some(stamps);
                    again
                };
                if again {
                    tracing::warn!(error = %e, "the config files are unchanged and still refused; the old one stays in force");
                } else {
                    self.reloaded(false);
                    tracing::error!(error = %e, "the new config is refused; the old one stays in force");
                }
                Err(e)
            }
        }
    }
}
