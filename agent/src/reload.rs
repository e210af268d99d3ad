//! Config reload, the half that decides (issue 20, item 4): everything SIGHUP must know
//! before it may swap anything in. [`prepare`] reads `agent.yaml`, the policy and the
//! catalog it names, and validates the whole set; it returns every problem at once (a
//! bad file is refused whole, the running config stays) or a [`Candidate`] with the
//! set's hash and the settings that only a restart can change (they keep their running
//! value). Applying a candidate at a cycle boundary is the daemon's part.

use std::path::Path;

use edge_schema::check::Schema;

use crate::config::AgentConfig;

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
    let mut problems = Vec::new();
    let mut hashed = Vec::new();
    let mut read = |path: &Path, problems: &mut Vec<String>| match std::fs::read(path) {
        Ok(bytes) => {
            hashed.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            hashed.extend_from_slice(&bytes);
        }
        Err(e) => problems.push(format!("{}: cannot read: {e}", path.display())),
    };
    read(file, &mut problems);
    let config = match crate::config::load(file) {
        Ok(config) => config,
        Err(e) => {
            problems.extend(
                e.problems
                    .iter()
                    .map(|(key, message)| format!("{}: {key}: {message}", e.file.display())),
            );
            return Err(problems);
        }
    };
    // Policy and catalog are checked each, so a broken policy does not hide a broken
    // catalog.
    for path in [&config.policy, &config.catalog].into_iter().flatten() {
        read(path, &mut problems);
    }
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
    let digest = ring::digest::digest(&ring::digest::SHA256, &hashed);
    let sha256 = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Candidate {
        needs_restart: needs_restart(running, &config),
        config,
        schema,
        sha256,
    })
}

/// The settings that differ between `running` and `new` but only take effect at the
/// next start: the listen address (a bound socket) and the queue (open segments).
pub fn needs_restart(
    running: &AgentConfig,
    new: &AgentConfig,
) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    if running.listen != new.listen {
        out.push(("listen", running.listen.to_string(), new.listen.to_string()));
    }
    if running.queue.dir != new.queue.dir {
        out.push((
            "queue.dir",
            running.queue.dir.display().to_string(),
            new.queue.dir.display().to_string(),
        ));
    }
    if running.queue.max_bytes != new.queue.max_bytes {
        out.push((
            "queue.max_bytes",
            running.queue.max_bytes.to_string(),
            new.queue.max_bytes.to_string(),
        ));
    }
    out
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
