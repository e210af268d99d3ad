//! What the images are made of: the Packer templates pass `packer fmt -check` and
//! `packer validate -syntax-only` (Debian's `packer`); the agent's cloud-init snippet
//! is cloud-config YAML whose environment file makes the image's default agent config
//! pass `edge-agent validate` (and its absence makes it fail); the gateway image's
//! default configs parse.

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
    let env: BTreeMap<String, String> = env_file
        .content
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=value: {l}"));
            (k.to_string(), v.to_string())
        })
        .collect();
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
}
