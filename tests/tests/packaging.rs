//! What the images are made of: the Packer templates pass `packer fmt -check` and
//! `packer validate -syntax-only` (Debian's `packer`); the agent's cloud-init snippet
//! is cloud-config YAML whose environment file makes the image's default agent config
//! pass `edge-agent validate` (and its absence makes it fail); the gateway image's
//! default configs parse, its relays share the stream through leases, and the gateway
//! image's cloud-init snippet gives both daemons what their configs expand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use edge_tests::procs::{binary, run_captured};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

fn packer(args: &[&str]) -> (bool, String) {
    run_captured(
        Command::new("packer").args(args).current_dir(repo()),
        "install Debian's `packer` package (scripts/test does)",
    )
}

#[test]
fn packer_templates_are_formatted_and_valid() {
    for dir in ["packer/agent", "packer/gateway"] {
        let (ok, text) = packer(&["fmt", "-check", dir]);
        assert!(
            ok,
            "packer fmt -check {dir} (run `packer fmt {dir}`):\n{text}"
        );
        let (ok, text) = packer(&["validate", "-syntax-only", dir]);
        assert!(ok, "packer validate -syntax-only {dir}:\n{text}");
    }
    for script in [
        "packer/scripts/install.sh",
        "packer/scripts/supply-chain.sh",
    ] {
        let ok = Command::new("bash")
            .args(["-n", script])
            .current_dir(repo())
            .status()
            .expect("bash")
            .success();
        assert!(ok, "{script} does not parse");
    }
}

#[derive(serde::Deserialize)]
struct CloudConfig {
    write_files: Vec<WriteFile>,
    runcmd: Vec<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct WriteFile {
    path: String,
    owner: String,
    permissions: String,
    content: String,
}

fn validate_agent(env: &BTreeMap<String, String>) -> (bool, String) {
    let config = repo().join("packer/files/etc/edge-agent/agent.yaml");
    run_captured(
        Command::new(binary("edge-agent"))
            .args(["validate", "--config"])
            .arg(&config)
            .env_clear()
            .envs(env),
        "build it with `cargo build -p edge-agent`",
    )
}

#[test]
fn the_cloud_init_snippet_renders_a_config_the_agent_accepts() {
    let text = std::fs::read_to_string(repo().join("packer/cloud-init/agent.yaml"))
        .expect("cloud-init snippet");
    assert!(
        text.starts_with("#cloud-config\n"),
        "cloud-init needs the #cloud-config header"
    );
    let cloud: CloudConfig = serde_saphyr::from_str(&text).expect("valid cloud-config YAML");
    let env_file = cloud
        .write_files
        .iter()
        .find(|f| f.path == "/etc/edge-agent/agent.env")
        .expect("the snippet writes /etc/edge-agent/agent.env");
    assert_eq!(env_file.owner, "root:edge-agent");
    assert_eq!(env_file.permissions, "0640");
    assert!(
        cloud
            .runcmd
            .iter()
            .any(|c| c.contains(&"edge-agent.service".to_string())),
        "the agent is restarted with its environment"
    );
    let env = env_lines(&env_file.content);
    for key in [
        "REGION",
        "CLUSTER",
        "BUILD_ID",
        "GATEWAY_URL",
        "EDGE_TLS_CERT",
    ] {
        assert!(env.contains_key(key), "the environment file lacks {key}");
    }
    let (ok, text) = validate_agent(&env);
    assert!(
        ok,
        "edge-agent validate with the snippet's environment:\n{text}"
    );
    // Without the last mile the image's config is refused, naming what is missing.
    let (ok, text) = validate_agent(&BTreeMap::new());
    assert!(!ok && text.contains("GATEWAY_URL"), "{text}");
}

/// `KEY=value` lines of an environment file.
fn env_lines(content: &str) -> BTreeMap<String, String> {
    content
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_gateway_images_default_configs_parse() {
    let env = |name: &str| match name {
        "AWS_REGION" => Some("us-east-1".to_string()),
        "AMP_REMOTE_WRITE_URL" => Some(
            "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
                .to_string(),
        ),
        _ => None,
    };
    let dir = repo().join("packer/files/etc/edge-gateway");
    let gateway = dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway).expect("gateway.yaml");
    edge_gateway::config::parse(&gateway, &text, &env).expect("the image's gateway.yaml");
    let relay = dir.join("relay.yaml");
    let text = std::fs::read_to_string(&relay).expect("relay.yaml");
    let parsed = edge_gateway::config::parse_relay(&relay, &text, &env).expect("relay.yaml");
    assert!(parsed.target.sigv4.is_some(), "the relay signs for AMP");
    assert_eq!(
        parsed.checkpoints,
        edge_gateway::config::Checkpoints::Leases(edge_gateway::config::LeaseConfig {
            table: "edge-relay-leases".into(),
            timeout: std::time::Duration::from_secs(10),
        }),
        "every gateway instance runs a relay: they share the stream through leases"
    );
}

#[test]
fn the_gateway_cloud_init_snippet_renders_configs_the_gateway_and_relay_accept() {
    let text = std::fs::read_to_string(repo().join("packer/cloud-init/gateway.yaml"))
        .expect("cloud-init snippet");
    assert!(
        text.starts_with("#cloud-config\n"),
        "cloud-init needs the #cloud-config header"
    );
    let cloud: CloudConfig = serde_saphyr::from_str(&text).expect("valid cloud-config YAML");
    let file = |path: &str| {
        cloud
            .write_files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("the snippet writes {path}"))
    };
    let gateway_env = file("/etc/edge-gateway/gateway.env");
    let relay_env = file("/etc/edge-gateway/relay.env");
    assert_eq!(gateway_env.owner, "root:edge-gateway");
    assert_eq!(relay_env.owner, "root:edge-relay");
    for f in [gateway_env, relay_env] {
        assert_eq!(f.permissions, "0640");
    }
    for unit in ["edge-gateway.service", "edge-relay.service"] {
        assert!(
            cloud.runcmd.iter().any(|c| c.contains(&unit.to_string())),
            "{unit} is restarted with its environment"
        );
    }
    // Each daemon sees only its own file (systemd's EnvironmentFile).
    let dir = repo().join("packer/files/etc/edge-gateway");
    let env = env_lines(&gateway_env.content);
    let gateway = dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway).expect("gateway.yaml");
    let parsed = edge_gateway::config::parse(&gateway, &text, &|k| env.get(k).cloned())
        .expect("gateway.yaml with the snippet's gateway.env");
    assert_eq!(
        parsed.replicas.to_string(),
        env["GATEWAY_REPLICAS"],
        "a number from the environment"
    );
    let env = env_lines(&relay_env.content);
    let relay = dir.join("relay.yaml");
    let text = std::fs::read_to_string(&relay).expect("relay.yaml");
    let parsed = edge_gateway::config::parse_relay(&relay, &text, &|k| env.get(k).cloned())
        .expect("relay.yaml with the snippet's relay.env");
    let edge_gateway::config::Checkpoints::Leases(leases) = parsed.checkpoints else {
        panic!("the image's relays must share the stream through leases");
    };
    assert_eq!(leases.table, env["RELAY_LEASE_TABLE"]);
    assert_eq!(parsed.target.url, env["AMP_REMOTE_WRITE_URL"]);
    // Without the last mile the relay is refused, naming what is missing.
    let err =
        edge_gateway::config::parse_relay(&relay, &text, &|_| None).expect_err("no environment");
    assert!(err.to_string().contains("AWS_REGION"), "{err}");
}
