//! The unit files in `systemd/`: `systemd-analyze verify` accepts each, and
//! `systemd-analyze security` rates each "OK" with an exposure of at most 3.0 (the
//! figures are printed; `systemd/README.md` records them). The daemons speak the
//! notification protocol their `Type=notify` and `WatchdogSec` lines rely on.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edge_tests::procs::{Proc, binary, free_port, run_captured};

const UNITS: &[&str] = &[
    "edge-agent.service",
    "edge-gateway.service",
    "edge-relay.service",
];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn systemd_analyze(args: &[&str], dir: &Path) -> (bool, String) {
    run_captured(
        Command::new("systemd-analyze").args(args).current_dir(dir),
        "install Debian's `systemd` package",
    )
}

/// The unit, with the installed binary paths pointed at the ones this build made
/// (`verify` checks that `ExecStart` exists), written into `dir`.
fn staged(unit: &str, dir: &Path) {
    let text = std::fs::read_to_string(units_dir().join(unit)).expect("unit file");
    let text = text
        .replace(
            "/usr/local/bin/edge-agent",
            &binary("edge-agent").display().to_string(),
        )
        .replace(
            "/usr/local/bin/edge-gateway",
            &binary("edge-gateway").display().to_string(),
        );
    std::fs::write(dir.join(unit), text).expect("stage unit");
}

#[test]
fn every_unit_verifies_and_rates_ok() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut report = Vec::new();
    for unit in UNITS {
        staged(unit, dir.path());
        let (ok, text) = systemd_analyze(&["verify", unit], dir.path());
        assert!(
            ok && text.trim().is_empty(),
            "systemd-analyze verify {unit}:\n{text}"
        );
        let (_, text) = systemd_analyze(&["security", "--offline=true", unit], dir.path());
        let overall = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no overall exposure for {unit}:\n{text}"));
        let rating: Vec<&str> = overall
            .rsplit(':')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let exposure: f64 = rating
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unreadable: {overall}"));
        report.push(format!(
            "{unit}: exposure {exposure} {}",
            rating.get(1).unwrap_or(&"")
        ));
        assert!(
            exposure <= 3.0 && rating.get(1) == Some(&"OK"),
            "{unit} rates {overall}:\n{text}"
        );
    }
    println!("{}", report.join("\n"));
}

/// Collects datagrams sent to `socket` until `want` are all seen.
fn wait_for(socket: &UnixDatagram, want: &[&str], what: &Proc) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while !want.iter().all(|w| seen.iter().any(|s: &String| s == w)) {
        assert!(
            Instant::now() < deadline,
            "saw {seen:?}, want {want:?}; log: {}",
            what.log()
        );
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    seen
}

#[test]
fn the_gateway_and_the_relay_notify_systemd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let socket_path = d.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind");
    let notify = socket_path.display().to_string();
    let env = [
        ("NOTIFY_SOCKET", notify.as_str()),
        ("WATCHDOG_USEC", "2000000"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let port = free_port();
    let config = d.join("gateway.yaml");
    edge_tests::pki::write_test_tokenize_key(d).expect("tokenize key");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\ntls: off\n\
             tokenize: {{ key_file: {d}/tokenize.key }}\n\
             sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }} }}\n\
             relay: {{ endpoint_url: \"http://127.0.0.1:9\", checkpoint: {d}/cp.json, \
             target: {{ url: \"http://127.0.0.1:9/api/v1/write\" }}, listen: 127.0.0.1:{relay} }}\n",
            d = d.display(),
            relay = free_port()
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    let mut gateway = Proc::start(
        "edge-gateway",
        &["--config", &config],
        &env,
        d.join("gw.log"),
    );
    wait_for(&socket, &["READY=1", "WATCHDOG=1"], &gateway);
    gateway.kill();
    let relay = Proc::start(
        "edge-gateway",
        &["relay", "--config", &config],
        &env,
        d.join("relay.log"),
    );
    wait_for(&socket, &["READY=1", "WATCHDOG=1"], &relay);
}
