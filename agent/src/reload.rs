//! Config reload (SIGHUP, `systemctl reload`).
//!
//! [`prepare`] decides: it reads `agent.yaml`, the policy and the catalog it names, and
//! validates the whole set; it returns every problem at once (a bad file is refused
//! whole, the running config stays) or a [`Candidate`] with the set's hash and the
//! settings that only a restart can change (they keep their running value).
//!
//! [`Reloader::reload`] applies a candidate. Everything that can still fail is built
//! first (the tokenizers, the logs pipeline's new sources); then the logs pipeline swaps
//! between two rounds ([`LogsPipeline::reconfigure`]: a removed source's position is
//! committed, a kept source keeps its open files), the traces pipeline takes the new
//! tokenizer, and the collection loop takes the new policy, catalog, budget, cadence,
//! host metrics and scrape targets between two cycles ([`CycleChange`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_schema::check::Schema;
use tokio::sync::{mpsc, oneshot};

use crate::config::AgentConfig;
use crate::cycle::CycleChange;
use crate::host::HostConfig;
use crate::logs::pipeline::LogsPipeline;
use crate::logs::watch::Watcher;
use crate::telemetry::Telemetry;
use crate::traces::TracesPipeline;

/// A change for the collection loop, with the channel that says it is in force.
pub type CycleRequest = (CycleChange, oneshot::Sender<()>);

/// How long a reload waits for the collection loop to reach a cycle boundary before it
/// reports the change as pending (it still applies at that boundary).
pub const CYCLE_WAIT: Duration = Duration::from_secs(30);

/// The running agent's parts a reload swaps things into.
#[derive(Debug)]
pub struct Reloader {
    /// `agent.yaml`.
    pub file: PathBuf,
    /// The config in force (restart-only settings at their running values).
    pub running: AgentConfig,
    /// The logs pipeline and the watch on its directories, when the agent ships logs.
    pub logs: Option<(Arc<Mutex<LogsPipeline>>, Watcher)>,
    /// The traces pipeline, when the agent ships traces.
    pub traces: Option<Arc<TracesPipeline>>,
    /// The collection loop.
    pub cycle: mpsc::Sender<CycleRequest>,
    /// Self-metrics.
    pub telemetry: Arc<Telemetry>,
}

impl Reloader {
    /// Reloads the config set: validates it whole, then swaps it in. Every problem is
    /// logged; a refused set changes nothing. Returns whether it was applied.
    pub async fn reload(&mut self) -> bool {
        let applied = match self.try_reload().await {
            Ok(sha256) => {
                self.telemetry.config_loaded(&sha256);
                tracing::info!(sha256 = %sha256, "config reloaded");
                true
            }
            Err(problems) => {
                for problem in &problems {
                    tracing::error!(problem = %problem, "config reload: problem");
                }
                tracing::error!(
                    problems = problems.len(),
                    "config reload refused; the running config stays"
                );
                false
            }
        };
        self.telemetry.reloaded(applied);
        applied
    }

    async fn try_reload(&mut self) -> Result<String, Vec<String>> {
        let candidate = prepare(&self.file, &self.running)?;
        for (key, old, new) in &candidate.needs_restart {
            tracing::warn!(
                key,
                running = %old,
                new = %new,
                "config reload: this setting needs a restart; the running value stays until then"
            );
        }
        if self.logs.is_none() && !candidate.config.logs.is_empty() {
            tracing::warn!(
                key = "logs",
                "config reload: the agent started without a logs pipeline (no log source, or no output.logs_url or tokenize.key_file); log sources need a restart"
            );
        }
        let config = keep_restart_only(candidate.config, &self.running, self.logs.is_some());
        // What can still fail is built before anything is swapped.
        let traces_tokenizer = match &self.traces {
            Some(_) => Some(
                config
                    .load_tokenizer("traces")
                    .map_err(|e| vec![format!("{e:#}")])?,
            ),
            None => None,
        };
        if let Some((pipeline, watcher)) = &self.logs {
            let pipeline = pipeline.clone();
            let logs_config = config.clone();
            let changed = tokio::task::spawn_blocking(move || {
                pipeline
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .reconfigure(&logs_config)
            })
            .await
            .map_err(|e| vec![format!("the logs pipeline's reload did not finish: {e}")])?
            .map_err(|e| vec![format!("{e:#}")])?;
            watcher.add(&changed.new_dirs);
            tracing::info!(
                kept = changed.kept,
                added = ?changed.added,
                removed = ?changed.removed,
                "config reload: log sources swapped"
            );
        }
        if let (Some(traces), Some((key, tokenizer))) = (&self.traces, traces_tokenizer) {
            traces.set_tokenizer(key, tokenizer);
        }
        let host = (host_config(&config).map(|h| format!("{h:?}"))
            != host_config(&self.running).map(|h| format!("{h:?}")))
        .then(|| host_config(&config));
        let (done_tx, done_rx) = oneshot::channel();
        let change = CycleChange {
            schema: candidate.schema,
            budget: config.series_budget,
            cadence: (config.cadence, config.incident_cadence),
            host,
            scrape: config.scrape.clone(),
        };
        if self.cycle.send((change, done_tx)).await.is_err() {
            return Err(vec![
                "the collection loop has stopped; the agent is shutting down".into(),
            ]);
        }
        if tokio::time::timeout(CYCLE_WAIT, done_rx).await.is_err() {
            tracing::warn!(
                "config reload: the collection loop is inside a long cycle; its part applies at the next boundary"
            );
        }
        self.running = config;
        Ok(candidate.sha256)
    }
}

/// The host metrics settings of `config` (`None`: off).
pub fn host_config(config: &AgentConfig) -> Option<HostConfig> {
    config.host_metrics.then(|| HostConfig {
        proc_root: "/proc".into(),
        filesystems: config.filesystems.clone(),
        disks: config.disks.clone(),
        interfaces: config.interfaces.clone(),
    })
}

/// A setting that only takes effect at the next start.
struct RestartOnly {
    /// Its key in `agent.yaml`, as reload messages name it.
    key: &'static str,
    /// Its value, as reload messages show it (two values differ when these do).
    shown: fn(&AgentConfig) -> String,
    /// Sets it in the first config to its value in the second.
    keep: fn(&mut AgentConfig, &AgentConfig),
}

/// The settings only a restart changes, in the order reload names them: the listen
/// address (a bound socket), the queue (open segments; its other fields are not
/// settings), the host labels, the outputs and their TLS (open connections), and the
/// StatsD and OTLP receivers (bound sockets). [`needs_restart`] reports them and
/// [`keep_restart_only`] keeps them, from this one list.
const RESTART_ONLY: &[RestartOnly] = &[
    RestartOnly {
        key: "listen",
        shown: |c| c.listen.to_string(),
        keep: |new, running| new.listen = running.listen,
    },
    RestartOnly {
        key: "queue.dir",
        shown: |c| c.queue.dir.display().to_string(),
        keep: |new, running| new.queue.dir = running.queue.dir.clone(),
    },
    RestartOnly {
        key: "queue.max_bytes",
        shown: |c| c.queue.max_bytes.to_string(),
        keep: |new, running| new.queue.max_bytes = running.queue.max_bytes,
    },
    RestartOnly {
        key: "host_labels",
        shown: |c| format!("{:?}", c.host_labels),
        keep: |new, running| new.host_labels = running.host_labels.clone(),
    },
    RestartOnly {
        key: "output.metrics_url",
        shown: |c| c.metrics_urls.join(","),
        keep: |new, running| new.metrics_urls = running.metrics_urls.clone(),
    },
    RestartOnly {
        key: "output.logs_url",
        shown: |c| c.logs_urls.join(","),
        keep: |new, running| new.logs_urls = running.logs_urls.clone(),
    },
    RestartOnly {
        key: "output.traces_url",
        shown: |c| c.traces_urls.join(","),
        keep: |new, running| new.traces_urls = running.traces_urls.clone(),
    },
    RestartOnly {
        key: "tls",
        shown: |c| format!("{:?}", c.tls),
        keep: |new, running| new.tls = running.tls.clone(),
    },
    RestartOnly {
        key: "statsd",
        shown: |c| format!("{:?}", c.statsd),
        keep: |new, running| new.statsd = running.statsd.clone(),
    },
    RestartOnly {
        key: "otlp",
        shown: |c| format!("{:?}", c.otlp),
        keep: |new, running| new.otlp = running.otlp,
    },
];

/// `new` with the settings that need a restart ([`RESTART_ONLY`]) at their `running`
/// values (what is in force until the restart). `logs_live`: the agent runs a logs
/// pipeline (without one, log sources need a restart too).
fn keep_restart_only(mut new: AgentConfig, running: &AgentConfig, logs_live: bool) -> AgentConfig {
    for setting in RESTART_ONLY {
        (setting.keep)(&mut new, running);
    }
    if !logs_live {
        new.logs = running.logs.clone();
    }
    new
}

/// SHA-256 (hex) over `agent.yaml`, then the policy and catalog files `config` names
/// (each prefixed with its length), as `edge_config_info{sha256}` shows it.
pub fn sha256_of_set(file: &Path, config: &AgentConfig) -> Result<String, Vec<String>> {
    let mut hashed = Vec::new();
    let mut problems = Vec::new();
    for path in std::iter::once(file).chain(
        [&config.policy, &config.catalog]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path),
    ) {
        match std::fs::read(path) {
            Ok(bytes) => {
                hashed.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                hashed.extend_from_slice(&bytes);
            }
            Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &hashed);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// A config set that loaded and validated whole, ready to be swapped in.
#[derive(Debug)]
pub struct Candidate {
    /// The new agent config.
    pub config: AgentConfig,
    /// The policy and catalog it names.
    pub schema: Schema,
    /// SHA-256 (hex) over `agent.yaml`, then the policy and catalog files it names.
    pub sha256: String,
    /// Settings that changed but need a restart: `(key, running value, new value)`.
    /// The running value stays until the next start.
    pub needs_restart: Vec<(&'static str, String, String)>,
}

/// Loads and validates the set `file` names, against the `running` config. `Err` holds
/// every problem found, each naming its file (and key, for `agent.yaml`).
pub fn prepare(file: &Path, running: &AgentConfig) -> Result<Candidate, Vec<String>> {
    let config = match crate::config::load(file) {
        Ok(config) => config,
        Err(e) => {
            return Err(e
                .problems
                .iter()
                .map(|(key, message)| format!("{}: {key}: {message}", e.file.display()))
                .collect());
        }
    };
    let sha256 = sha256_of_set(file, &config)?;
    // Policy and catalog are checked each, so a broken policy does not hide a broken
    // catalog.
    let mut problems = Vec::new();
    if let Some(path) = &config.policy
        && let Err(e) = edge_schema::policy::LabelPolicy::from_file(path)
    {
        problems.push(e.to_string());
    }
    if let Some(path) = &config.catalog
        && let Err(e) = edge_schema::catalog::Catalog::from_file(path)
    {
        problems.push(e.to_string());
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let schema = config.load_schema().map_err(|e| vec![format!("{e:#}")])?;
    Ok(Candidate {
        needs_restart: needs_restart(running, &config),
        config,
        schema,
        sha256,
    })
}

/// The settings that differ between `running` and `new` but only take effect at the
/// next start ([`RESTART_ONLY`]): `(key, running value, new value)`.
pub fn needs_restart(
    running: &AgentConfig,
    new: &AgentConfig,
) -> Vec<(&'static str, String, String)> {
    RESTART_ONLY
        .iter()
        .map(|s| (s.key, (s.shown)(running), (s.shown)(new)))
        .filter(|(_, old, new)| old != new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "host_labels: { region: eu-west-1 }\nlisten: 127.0.0.1:9740\noutput: { metrics_url: \"http://127.0.0.1:9/api/v1/push\" }\n";

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("edge-reload-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn running(d: &Path) -> AgentConfig {
        let q = format!("queue: {{ dir: {} }}\n", d.join("q").display());
        let file = write(d, "running.yaml", &format!("{BASE}{q}"));
        crate::config::load(&file).expect("running config loads")
    }

    #[test]
    fn a_good_set_is_a_candidate_and_restart_only_settings_are_named() {
        let d = dir("good");
        let old = running(&d);
        let q = format!("queue: {{ dir: {} }}\n", d.join("q2").display());
        let text = format!("{}{q}", BASE.replace("9740", "9741"));
        let file = write(&d, "agent.yaml", &text);
        let c = prepare(&file, &old).expect("valid set");
        let keys: Vec<_> = c.needs_restart.iter().map(|(k, _, _)| *k).collect();
        assert_eq!(keys, ["listen", "queue.dir"]);
        assert_eq!(c.sha256.len(), 64);
        // Same bytes, same hash; a byte changed, another hash.
        assert_eq!(prepare(&file, &old).expect("valid").sha256, c.sha256);
        let file = write(&d, "agent.yaml", &format!("{text}# edited\n"));
        assert_ne!(prepare(&file, &old).expect("valid").sha256, c.sha256);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_bad_set_is_refused_with_every_problem() {
        let d = dir("bad");
        let old = running(&d);
        let q = format!("queue: {{ dir: {} }}\n", d.join("q").display());
        let text = format!(
            "{}{q}cadence: soon\n",
            BASE.replace("http://127", "ftp://127")
        );
        let file = write(&d, "agent.yaml", &text);
        let problems = prepare(&file, &old).expect_err("refused");
        assert!(problems.len() >= 2, "{problems:?}");
        assert!(
            problems.iter().any(|p| p.contains("cadence")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("metrics_url")),
            "{problems:?}"
        );

        // A policy and a catalog that are both broken are both reported.
        let policy = write(&d, "policy.yaml", "not: [a, policy\n");
        let catalog = write(&d, "catalog.yaml", "families: 7\n");
        let text = format!(
            "{BASE}{q}policy: {}\ncatalog: {}\n",
            policy.display(),
            catalog.display()
        );
        let file = write(&d, "agent.yaml", &text);
        let problems = prepare(&file, &old).expect_err("refused");
        assert!(
            problems.iter().any(|p| p.contains("policy.yaml")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("catalog.yaml")),
            "{problems:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
