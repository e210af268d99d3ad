//! `edge-agent tap` against a running agent that ships to the real gateway over mTLS
//! (file sinks): the tap shows log records as shipped (tokens, never the PII they
//! replaced; `--source` keeps one service), metric series as they leave the gate (host
//! labels on, a refused point marked with its reason, `--limit` ending the stream), and a
//! tap whose reader stops reading never holds shipping up: every line reaches the
//! gateway exactly once while the tap's drops are counted. Spans from the OpenTelemetry
//! Python SDK show after scrubbing, with the token the gateway gets.
//!
//! Both binaries come from the workspace's target directory (`cargo build -p edge-agent
//! -p edge-gateway`; `cargo test --workspace` builds them).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use edge_tests::procs::{binary, free_port};
use edge_tests::rig::{
    AgentOptions, AgentRig, Certs, GatewayOptions, GatewayRig, otel_python_client,
};

/// Generous: every wait ends as soon as its condition holds; the bound only ends a run
/// that is stuck, never a slow one.
const WAIT: Duration = Duration::from_secs(180);

const PII: &[&str] = &["carol.jones@example.org", "198.51.100.23"];

/// A gateway (mTLS, file sinks) and an agent shipping to it: two log sources, `game`
/// and `ops`, host metrics, a one-second cadence.
struct Rig {
    dir: tempfile::TempDir,
    otlp_http: u16,
    gateway: GatewayRig,
    agent: AgentRig,
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = Certs::generate(dir.path());
        let gateway = GatewayRig::start(&certs, GatewayOptions::files().traces());
        let otlp_http = free_port();
        let agent = AgentRig::start(
            &certs,
            &gateway,
            AgentOptions::new()
                .otlp_http(otlp_http)
                .statsd_off()
                .log_source("game.log", "game")
                .log_source("ops.log", "ops")
                .tokenize("[email, ipv4, ipv6]"),
        );
        Rig {
            dir,
            otlp_http,
            gateway,
            agent,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn logs(&self) -> String {
        format!("{}{}", self.agent.logs(), self.gateway.logs())
    }

    /// Appends `lines` to `file` in one write.
    fn append(&self, file: &str, lines: &[String]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.path(file))
            .expect("open log");
        let mut text = lines.join("\n");
        text.push('\n');
        f.write_all(text.as_bytes()).expect("write");
    }

    /// `edge-agent tap --config agent.yaml ARGS`, stdout to `out` (a file in the rig).
    fn tap(&self, args: &[&str], out: &str) -> Tap {
        let path = self.path(out);
        let child = Command::new(binary("edge-agent"))
            .arg("tap")
            .arg("--config")
            .arg(&self.agent.config)
            .args(args)
            .stdout(std::fs::File::create(&path).expect("tap output"))
            .stderr(std::fs::File::create(path.with_extension("err")).expect("tap stderr"))
            .spawn()
            .expect("start edge-agent tap");
        Tap { child, out: path }
    }

    /// The agent's own metric `name` (no labels), from `GET /metrics`.
    fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    }

    /// `GET path` with `Connection: close`: the whole answer (for answers that end).
    fn get(&self, path: &str) -> String {
        let mut conn =
            std::net::TcpStream::connect(("127.0.0.1", self.agent.listen)).expect("agent API");
        conn.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .expect("request");
        let mut text = String::new();
        conn.read_to_string(&mut text).expect("answer");
        text
    }

    /// Log records the agent's file sources queued so far, all levels.
    fn logs_queued(&self) -> u64 {
        let text = self.get("/metrics");
        text.lines()
            .filter(|l| l.starts_with("edge_logs_records_total{") && l.contains("source=\"file\""))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum::<f64>() as u64
    }

    /// Log documents in the gateway's spool, as JSON.
    fn shipped_logs(&self) -> Vec<serde_json::Value> {
        self.gateway.documents("logs")
    }

    /// How many times each `tag` number arrived at the gateway, for messages that start
    /// with `prefix` and end with ` n=<number>`.
    fn shipped_counts(&self, prefix: &str) -> BTreeMap<u64, u32> {
        let mut counts = BTreeMap::new();
        for doc in self.shipped_logs() {
            if let Some(n) = doc["message"]
                .as_str()
                .filter(|m| m.starts_with(prefix))
                .and_then(|m| m.rsplit_once(" n="))
                .and_then(|(_, n)| n.parse::<u64>().ok())
            {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// A running `edge-agent tap`, killed on drop.
struct Tap {
    child: Child,
    out: PathBuf,
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tap {
    /// Every whole line printed so far, parsed.
    fn lines(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let whole = text.rfind('\n').map_or("", |i| &text[..i]);
        whole
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Waits for the tap to end by itself: whether it exited 0.
    fn wait(&mut self, rig: &Rig) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("tap status") {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "the tap did not end{}",
                rig.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until `done` holds, or fails saying `what`.
fn wait_until(rig: &Rig, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}{}", rig.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn message(tap_line: &serde_json::Value) -> &str {
    tap_line["message"].as_str().unwrap_or("")
}

#[test]
fn tap_shows_tokenized_records_and_gated_series_while_the_agent_ships_them() {
    let rig = Rig::start();
    let game = rig.tap(&["--source", "game"], "game.tap");

    // The tap is open once it shows a record: until then, warm-up lines.
    let mut warmups = 0;
    wait_until(&rig, "the tap showed nothing", || {
        if !game.lines().is_empty() {
            return true;
        }
        rig.append(
            "game.log",
            &[format!(r#"{{"level":"info","msg":"warmup n={warmups}"}}"#)],
        );
        warmups += 1;
        std::thread::sleep(Duration::from_millis(200));
        !game.lines().is_empty()
    });

    const LINES: u64 = 40;
    for n in 0..LINES {
        let pii = PII[n as usize % PII.len()];
        rig.append(
            "game.log",
            &[format!(
                r#"{{"level":"warn","msg":"tapped login from {pii} n={n}","peer":"{pii}"}}"#
            )],
        );
        rig.append(
            "ops.log",
            &[format!(r#"{{"level":"info","msg":"ops line n={n}"}}"#)],
        );
    }
    let tapped = || -> Vec<serde_json::Value> {
        game.lines()
            .into_iter()
            .filter(|l| message(l).starts_with("tapped login"))
            .collect()
    };
    wait_until(&rig, "the tap did not show every game line", || {
        tapped().len() as u64 >= LINES
    });
    wait_until(&rig, "not every line reached the gateway", || {
        rig.shipped_counts("tapped login").len() as u64 >= LINES
            && rig.shipped_counts("ops line").len() as u64 >= LINES
    });

    let tapped = tapped();
    assert_eq!(tapped.len() as u64, LINES, "each record shown once");
    let all = game.lines();
    assert!(
        all.iter().all(|l| l["service"] == "game"),
        "--source game shows only game: {:?}",
        all.iter()
            .find(|l| l["service"] != "game")
            .map(serde_json::Value::to_string)
    );
    let text = std::fs::read_to_string(&game.out).expect("tap output");
    for pii in PII {
        assert!(!text.contains(pii), "{pii} shown by the tap:\n{text}");
    }
    // Each record as shipped: the gateway's document holds the same tokens.
    let shipped = rig.shipped_logs();
    for line in &tapped {
        assert_eq!(line["level"], "warn");
        let tokens = line["tokens"].as_array().expect("tokens");
        assert_eq!(tokens.len(), 2, "message and peer: {line}");
        let peer = line["attributes"]["peer"].as_str().expect("peer");
        assert!(peer.starts_with("tok_"), "{line}");
        assert!(
            tokens
                .iter()
                .any(|t| t["field"] == "attributes.peer" && t["token"] == peer),
            "{line}"
        );
        let doc = shipped
            .iter()
            .find(|d| d["message"] == line["message"])
            .unwrap_or_else(|| panic!("no shipped document for {line}"));
        assert_eq!(doc["attributes"]["peer"], peer, "{doc}");
    }

    // Metric series after the gate: host labels on; --limit ends the stream.
    let mut load = rig.tap(
        &[
            "--signal",
            "metrics",
            "--source",
            "node_load",
            "--limit",
            "3",
        ],
        "load.tap",
    );
    assert!(load.wait(&rig), "tap --limit 3 exits 0");
    let series = load.lines();
    assert_eq!(series.len(), 3, "{series:?}");
    for s in &series {
        assert!(
            s["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("node_load")),
            "{s}"
        );
        assert_eq!(s["labels"]["region"], "eu-test-1", "{s}");
        assert!(s["samples"][0]["value"].is_number(), "{s}");
        assert!(s.get("refused").is_none(), "{s}");
    }

    // A point the policy refuses shows as refused, its values withheld.
    let mut refused = rig.tap(
        &[
            "--signal",
            "metrics",
            "--source",
            "game_players_connected",
            "--limit",
            "1",
        ],
        "refused.tap",
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let push = || {
        let request = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "game_players_connected".into(),
                    },
                    Label {
                        name: "player_id".into(),
                        value: "p-12345678".into(),
                    },
                ],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let body = edge_exporter::export::compress(&prost::Message::encode_to_vec(&request))
            .expect("snappy");
        runtime
            .block_on(edge_tests::procs::remote_write_post(
                rig.agent.listen,
                "/api/v1/push",
                body,
            ))
            .expect("push")
    };
    // Pushed until the tap (opening meanwhile) has seen one.
    wait_until(&rig, "the refused point was not shown", || {
        push();
        refused.child.try_wait().ok().flatten().is_some()
    });
    assert!(refused.wait(&rig));
    let lines = refused.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["refused"], "forbidden_label", "{}", lines[0]);
    assert_eq!(lines[0]["labels"]["player_id"], "[withheld]");
    let text = std::fs::read_to_string(&refused.out).expect("tap output");
    assert!(!text.contains("p-12345678"), "{text}");
}

#[test]
fn a_stalled_tap_reader_never_holds_up_shipping() {
    let rig = Rig::start();
    // A reader that asks for the tap, reads the answer's head, then reads nothing more.
    let stalled = {
        let socket = std::net::SocketAddr::from(([127, 0, 0, 1], rig.agent.listen));
        let mut conn = std::net::TcpStream::connect(socket).expect("connect");
        conn.write_all(b"GET /tap?signal=logs HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        conn
    };
    // The head comes once the tap is open (with the first record at the latest).
    let mut head_reader = stalled.try_clone().expect("clone");
    let head = std::thread::spawn(move || {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head_reader.read(&mut byte).expect("read the head") == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    });
    let mut total: u64 = 0;
    wait_until(&rig, "the tap's answer did not begin", || {
        if head.is_finished() {
            return true;
        }
        rig.append(
            "game.log",
            &[format!(
                r#"{{"level":"info","msg":"stall line n={total}"}}"#
            )],
        );
        total += 1;
        std::thread::sleep(Duration::from_millis(200));
        head.is_finished()
    });
    let head = head.join().expect("head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Lines in rounds until the stalled tap has dropped some: shipping goes on.
    const ROUND: u64 = 2_000;
    const MAX_ROUNDS: u64 = 100;
    let mut rounds = 0;
    while rig.metric("edge_tap_dropped_total") == 0.0 {
        assert!(
            rounds < MAX_ROUNDS,
            "{} lines and the stalled tap dropped nothing{}",
            total,
            rig.logs()
        );
        let lines: Vec<String> = (total..total + ROUND)
            .map(|n| {
                format!(
                    r#"{{"level":"info","msg":"stall line from {} padding {} n={n}"}}"#,
                    PII[0],
                    "x".repeat(120)
                )
            })
            .collect();
        rig.append("game.log", &lines);
        total += ROUND;
        rounds += 1;
        // Let the pipeline read the round before judging.
        wait_until(&rig, "the agent did not read the round", || {
            rig.logs_queued() >= total
        });
    }
    wait_until(&rig, "not every line reached the gateway", || {
        rig.shipped_counts("stall line").len() as u64 >= total
    });
    let counts = rig.shipped_counts("stall line");
    assert_eq!(counts.len() as u64, total, "every line arrived");
    assert!(
        counts.keys().copied().eq(0..total),
        "lines 0..{total} and no other"
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(repeated.is_empty(), "lines not exactly once: {repeated:?}");
    let dropped = rig.metric("edge_tap_dropped_total");
    assert!(dropped > 0.0);
    // The stalled reader is still connected (the tap was not ended to make room) and
    // counts as one of the 4 taps allowed: three more open, a fifth is refused.
    let more: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            let mut c =
                std::net::TcpStream::connect(("127.0.0.1", rig.agent.listen)).expect("connect");
            c.write_all(b"GET /tap?signal=metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("request");
            let mut head = [0u8; 12];
            c.read_exact(&mut head).expect("the answer's status line");
            assert_eq!(&head, b"HTTP/1.1 200");
            c
        })
        .collect();
    let refused = rig.get("/tap?signal=logs");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(refused.contains("4 taps are open already"), "{refused}");
    let bad = rig.get("/tap?signal=events");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(bad.contains("signal=events"), "{bad}");
    drop(more);
    drop(stalled);
    eprintln!("{total} lines shipped exactly once; the stalled tap dropped {dropped}");
}

#[test]
fn tap_shows_spans_from_the_python_sdk_after_scrubbing() {
    let client = otel_python_client();
    let rig = Rig::start();
    let tap = rig.tap(&["--signal", "traces", "--source", "game"], "traces.tap");
    let path = |name: &str| rig.path(name).display().to_string();
    // One round (three spans) a run, until the tap (opening meanwhile) shows a `match`.
    let has_match = || tap.lines().iter().any(|s| s["name"] == "match");
    let mut runs = 0;
    wait_until(&rig, "the tap did not show a match span", || {
        let out = Command::new("python3")
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .args([
                client,
                &format!("http://127.0.0.1:{}/v1/traces", rig.otlp_http),
                &path("ca.crt"),
                &path("agent.crt"),
                &path("agent.key"),
                "1",
                PII[1],
            ])
            .output()
            .expect("run the SDK client");
        assert!(
            out.status.success(),
            "the SDK client failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        runs += 1;
        has_match()
    });
    let spans = tap.lines();
    assert!(spans.len() <= 3 * runs, "no span shown twice: {spans:?}");
    let text = std::fs::read_to_string(&tap.out).expect("tap output");
    assert!(
        !text.contains(PII[1]),
        "the address shown by the tap:\n{text}"
    );
    let names: std::collections::BTreeSet<&str> =
        spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(
        names.is_subset(&["match", "save", "tick"].into()),
        "{names:?}"
    );
    assert!(spans.iter().all(|s| s["service"] == "game"));
    // A `match` span shows the token in place of the address, as the gateway gets it.
    let m = spans
        .iter()
        .find(|s| s["name"] == "match")
        .expect("a match span");
    let token = m["attributes"]["client.address"]
        .as_str()
        .expect("client.address");
    assert!(token.starts_with("tok_"), "{m}");
    assert_eq!(
        m["tokens"],
        serde_json::json!([{ "field": "attributes.client.address", "token": token }]),
        "{m}"
    );
    assert_eq!(m["resource"]["edgepipe.tokenized"], "true", "{m}");
    wait_until(&rig, "the gateway did not get the token", || {
        rig.gateway
            .records("traces")
            .iter()
            .any(|(_, data)| data.windows(token.len()).any(|w| w == token.as_bytes()))
    });
    eprintln!("{runs} SDK runs; spans shown: {names:?}");
}
