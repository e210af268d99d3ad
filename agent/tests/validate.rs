//! `edge-agent validate --config FILE` on the real binary: exit codes and key paths.

use std::process::Command;

fn validate(config: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.yaml");
    std::fs::write(&file, config).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["validate", "--config"])
        .arg(&file)
        .env_remove("GATEWAY_URL")
        .envs(env.iter().copied())
        .output()
        .expect("edge-agent runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_config_exits_0() {
    let (code, stdout, stderr) = validate(
        "output: { metrics_url: \"${GATEWAY_URL}/api/v1/push\", tls: { cert: a, key: b, ca: c } }\n",
        &[("GATEWAY_URL", "https://gw.example:8443")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with(": ok\n"));
}

#[test]
fn the_otlp_keys_are_accepted_and_bad_ones_named_by_path() {
    let output = "output: { metrics_url: \"https://gw.example:8443/api/v1/push\", tls: { cert: a, key: b, ca: c } }\n";
    for good in [
        "otlp: { grpc: 127.0.0.1:4317, http: 127.0.0.1:4318 }\n",
        "otlp: off\n",
        "otlp: { grpc: off }\n",
    ] {
        let (code, _, stderr) = validate(&format!("{good}{output}"), &[]);
        assert_eq!(code, 0, "{good}: {stderr}");
    }
    let (code, _, stderr) = validate(
        &format!("otlp: {{ grpc: 0.0.0.0:4317, http: nowhere, gprc: off }}\n{output}"),
        &[],
    );
    assert_eq!(code, 1);
    for path in [
        "otlp.gprc: unknown key",
        "otlp.grpc: 0.0.0.0:4317 is not a loopback address",
        "otlp.http: \"nowhere\" is not an address:port",
    ] {
        assert!(
            stderr.contains(&format!("agent.yaml: {path}")),
            "{path} in {stderr}"
        );
    }
}

#[test]
fn a_bad_config_exits_1_naming_every_key() {
    let (code, _, stderr) = validate(
        "cadence: soon\nlisten: 10.0.0.5:9740\noutput: { metrics_url: \"${GATEWAY_URL}/api/v1/push\" }\n",
        &[],
    );
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].contains("agent.yaml: listen: 10.0.0.5:9740 is not a loopback address"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("agent.yaml: cadence: \"soon\" is not a duration"),
        "{stderr}"
    );
    assert!(
        lines[2].contains(
            "agent.yaml: output.metrics_url: environment variable GATEWAY_URL is not set"
        ),
        "{stderr}"
    );
}

#[test]
fn the_daemon_refuses_a_bad_config_with_the_same_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.yaml");
    std::fs::write(
        &file,
        "cadence: soon\noutput: { metrics_url: http://127.0.0.1:1/api/v1/write }\n",
    )
    .expect("write");
    let run = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--config")
        .arg(&file)
        .output()
        .expect("edge-agent runs");
    let check = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["validate", "--config"])
        .arg(&file)
        .output()
        .expect("edge-agent runs");
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(check.status.code(), Some(1));
    let message = String::from_utf8_lossy(&run.stderr);
    assert!(
        message.contains("agent.yaml: cadence: \"soon\" is not a duration"),
        "{message}"
    );
    assert_eq!(run.stderr, check.stderr);
}

#[test]
fn the_example_config_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/agent-local.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["validate", "--config", file])
        .output()
        .expect("edge-agent runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn traces_url_is_validated_with_its_key_path() {
    let (code, stdout, stderr) = validate(
        "tokenize: { key_file: /etc/edge-agent/tokenize.key }\n\
         output: { metrics_url: \"${GATEWAY_URL}/api/v1/push\", traces_url: [\"${GATEWAY_URL}/v1/traces\", \"https://gw-b.example:8443/v1/traces\"], tls: { cert: a, key: b, ca: c } }\n",
        &[("GATEWAY_URL", "https://gw.example:8443")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with(": ok\n"));
    let (code, _, stderr) = validate(
        "output: { metrics_url: http://127.0.0.1:9090/api/v1/write, traces_url: [\"gw:8443/v1/traces\"] }\n",
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("agent.yaml: output.traces_url[0]: \"gw:8443/v1/traces\" is not an http:// or https:// URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "agent.yaml: output.traces_url: traces are configured but no tokenization key is"
        ),
        "{stderr}"
    );
}
