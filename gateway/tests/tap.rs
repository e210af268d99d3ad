//! The SRE tools against the real gateway binary over real mTLS: `edge-gateway spool cat`
//! prints exactly what was acknowledged, `edge-gateway tap` shows a tenant's records as
//! committed (tokenized, that tenant's only), and a tap whose reader stalls never holds up
//! ingest: its records are dropped for it and counted, every request is still answered
//! 2xx and every acknowledged record is in the spool.
//!
//! Judged by counts and content, never by how fast the machine is: time bounds are only
//! generous ceilings (a gateway that blocked on a tap would wait forever).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::histogram::{Count, ZeroCount};
use edge_schema::proto::prometheus::{BucketSpan, Histogram, TimeSeries, WriteRequest};
use serde_json::{Value, json};
use support::{Client, Gateway, Pki, config_text, free_port, series, tls_config};

/// Only a gateway that never answers misses this.
const NEVER: Duration = Duration::from_secs(120);

const TENANTS: &str = "  game: { samples_rate_limit: 10000000, burst: 20000000, log_bytes_rate_limit: 1GiB, log_bytes_burst: 2GiB }\n  \
                       studio: { samples_rate_limit: 10000000, burst: 20000000, log_bytes_rate_limit: 1GiB, log_bytes_burst: 2GiB }";

const EMAIL: &str = "alice.moreau@example.org";

struct Setup {
    dir: tempfile::TempDir,
    pki: Pki,
    gw: Gateway,
    admin: u16,
}

fn setup() -> Setup {
    setup_admin_on("127.0.0.1")
}

/// [`setup`] with the admin port bound to `ip`.
fn setup_admin_on(ip: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let admin = free_port();
    let config = format!(
        "admin_listen: {ip}:{admin}\n{}",
        config_text(dir.path(), port, TENANTS)
    );
    let gw = Gateway::start(dir.path(), port, &config);
    Setup {
        dir,
        pki,
        gw,
        admin,
    }
}

impl Setup {
    async fn game(&self) -> Client {
        let cert = self.pki.client("gs-1", None);
        Client::connect(self.gw.port, tls_config(&self.pki.ca_der, Some(&cert)))
            .await
            .expect("connect")
    }

    async fn studio(&self) -> Client {
        let cert = self
            .pki
            .client("whatever", Some("spiffe://obs.internal/tenant/studio/gs-9"));
        Client::connect(self.gw.port, tls_config(&self.pki.ca_der, Some(&cert)))
            .await
            .expect("connect")
    }

    /// A counter or gauge from the admin port's `/metrics`.
    fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = get(self.admin, "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    /// Waits until the gateway has logged `what` at least `n` times.
    fn wait_logged(&self, what: &str, n: usize) {
        let deadline = Instant::now() + NEVER;
        while self.gw.log_text().matches(what).count() < n {
            assert!(
                Instant::now() < deadline,
                "the gateway did not log {what:?} {n} times: {}",
                self.gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plain HTTP/1.1 GET on the admin port: status and body.
fn get(port: u16, path: &str) -> (u16, String) {
    get_at(SocketAddr::from(([127, 0, 0, 1], port)), path)
}

/// [`get`] on `addr`, whose IP is also the connection's own (the peer the gateway sees).
fn get_at(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).expect("connect admin");
    assert_eq!(
        conn.local_addr().expect("local address").ip(),
        addr.ip(),
        "a connection to this machine's own {} comes from it",
        addr.ip()
    );
    conn.set_read_timeout(Some(NEVER)).expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    conn.read_to_string(&mut text).expect("answer");
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Opens `GET /tap?query` and reads its answer's head; the connection stays open.
fn open_tap(port: u16, query: &str) -> (TcpStream, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect admin");
    conn.set_read_timeout(Some(NEVER)).expect("timeout");
    write!(conn, "GET /tap?{query} HTTP/1.1\r\nHost: admin\r\n\r\n").expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("the tap's head did not come: {other:?}"),
        }
    }
    (conn, String::from_utf8_lossy(&head).into_owned())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A native histogram series: 5 observations, one in the zero bucket, two in (1, 2],
/// two in (2, 4].
fn histogram_series(name: &str) -> TimeSeries {
    let mut s = series(name, &[("region", "eu")], 0.0);
    s.samples.clear();
    s.histograms.push(Histogram {
        count: Some(Count::CountInt(5)),
        sum: 7.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count: Some(ZeroCount::ZeroCountInt(1)),
        positive_spans: vec![BucketSpan {
            offset: 1,
            length: 2,
        }],
        positive_deltas: vec![2, 0],
        timestamp: now_ms(),
        ..Default::default()
    });
    s
}

/// What `spool cat` or the tap prints of a series: its labels and samples.
fn expected_series(s: &TimeSeries) -> (Value, Value) {
    let labels: serde_json::Map<String, Value> = s
        .labels
        .iter()
        .map(|l| (l.name.clone(), Value::String(l.value.clone())))
        .collect();
    let samples: Vec<Value> = s
        .samples
        .iter()
        .map(|p| json!([p.timestamp, p.value]))
        .collect();
    (Value::Object(labels), Value::Array(samples))
}

/// A JSON log batch of `n` records, messages `{prefix}-{i}`; the first also carries an
/// e-mail address and an IP address.
fn log_batch(prefix: &str, n: usize, pii: bool) -> (Vec<u8>, Vec<String>) {
    let mut messages = Vec::new();
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let mut m = format!("{prefix}-{i}");
            if pii && i == 0 {
                m.push_str(&format!(" login from {EMAIL} at 203.0.113.77"));
            }
            messages.push(m.clone());
            json!({"level": "INFO", "service": "lobby", "instance": "i-1", "message": m, "metadata": {"pad": "x".repeat(400)}})
        })
        .collect();
    (serde_json::to_vec(&records).expect("json"), messages)
}

async fn post_logs(c: &mut Client, body: Vec<u8>) -> support::Answer {
    c.request(
        "POST",
        "/api/v1/logs",
        &[("content-type", "application/json")],
        body,
    )
    .await
    .expect("post logs")
}

/// Runs `edge-gateway ARGS`; exit code, stdout, stderr.
fn run_gateway_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args(args)
        .output()
        .expect("run edge-gateway");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test]
async fn spool_cat_prints_exactly_the_series_and_documents_that_were_acknowledged() {
    let s = setup();
    let mut c = s.game().await;
    // Acknowledged series, as sent: (labels, samples) → how many times.
    let mut acked: BTreeMap<String, usize> = BTreeMap::new();
    let key = |s: &TimeSeries| {
        let (labels, samples) = expected_series(s);
        json!({"tenant": "game", "host": "gs-1", "labels": labels, "samples": samples}).to_string()
    };
    for i in 0..8 {
        let req = WriteRequest {
            timeseries: (0..3)
                .map(|j| {
                    series(
                        &format!("edge_cat_{j}_total"),
                        &[("region", "eu")],
                        (i * 10 + j) as f64,
                    )
                })
                .collect(),
            ..Default::default()
        };
        let a = c.push(&req, &[]).await;
        assert_eq!(a.status, 204, "{}", a.body);
        for ts in &req.timeseries {
            *acked.entry(key(ts)).or_default() += 1;
        }
    }
    // One series refused by the policy; its neighbour is acknowledged.
    let good = series("edge_cat_kept_total", &[("region", "us")], 5.0);
    let req = WriteRequest {
        timeseries: vec![
            good.clone(),
            series("edge_cat_bad_total", &[("player_id", "p-12345678")], 1.0),
        ],
        ..Default::default()
    };
    let a = c.push(&req, &[]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    *acked.entry(key(&good)).or_default() += 1;
    let hist = histogram_series("edge_cat_latency_seconds");
    let a = c
        .push(
            &WriteRequest {
                timeseries: vec![hist.clone()],
                ..Default::default()
            },
            &[],
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.body);

    let mut sent_messages = BTreeSet::new();
    for b in 0..3 {
        let (body, messages) = log_batch(&format!("cat-{b}"), 5, b == 0);
        let a = post_logs(&mut c, body).await;
        assert_eq!(a.status, 200, "{}", a.body);
        sent_messages.extend(messages);
    }
    let a = post_logs(&mut c, b"[{not json".to_vec()).await;
    assert_eq!(a.status, 400, "{}", a.body);

    let spool = s.gw.spool.display().to_string();
    let (code, out, err) = run_gateway_cli(&["spool", "cat", &spool]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");
    let lines = json_lines(&out);
    // Metrics: the acknowledged series, each as often as it was acknowledged, and the
    // histogram in its readable form.
    let mut printed: BTreeMap<String, usize> = BTreeMap::new();
    let mut histograms = Vec::new();
    for l in lines.iter().filter(|l| l["stream"] == "metrics") {
        assert!(
            l["segment"].as_str().is_some_and(|s| s.ends_with(".seg")) && l["offset"].is_u64(),
            "{l}"
        );
        if l["labels"]["__name__"] == "edge_cat_latency_seconds" {
            histograms.push(l.clone());
            continue;
        }
        assert_eq!(l["histograms"], json!([]), "{l}");
        let k = json!({"tenant": l["tenant"], "host": l["host"], "labels": l["labels"], "samples": l["samples"]});
        *printed.entry(k.to_string()).or_default() += 1;
    }
    assert_eq!(printed, acked);
    assert_eq!(histograms.len(), 1, "{histograms:?}");
    let h = &histograms[0]["histograms"][0];
    assert_eq!(h["count"], 5);
    assert_eq!(h["zero_count"], 1);
    assert_eq!(h["sum"], 7.5);
    assert_eq!(h["timestamp"], hist.histograms[0].timestamp);
    assert_eq!(
        h["buckets"],
        json!([
            {"lower": 1.0, "upper": 2.0, "count": 2},
            {"lower": 2.0, "upper": 4.0, "count": 2},
        ])
    );
    // Logs: the 15 acknowledged documents, as the spool holds them, PII tokenized.
    let docs: Vec<&Value> = lines
        .iter()
        .filter(|l| l["stream"] == "logs")
        .map(|l| {
            assert_eq!(l["tenant"], "game", "{l}");
            &l["document"]
        })
        .collect();
    let (records, _) = edge_gateway::sink::file::read_spool(&s.gw.spool, "logs").expect("spool");
    let stored: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(&r.data).expect("a JSON document"))
        .collect();
    assert_eq!(docs.len(), 15);
    assert_eq!(docs, stored.iter().collect::<Vec<_>>());
    let messages: BTreeSet<String> = docs
        .iter()
        .map(|d| d["message"].as_str().expect("message").to_string())
        .collect();
    let tokenized: Vec<&String> = messages.difference(&sent_messages).collect();
    assert_eq!(tokenized.len(), 1, "{messages:?}");
    assert!(
        tokenized[0].starts_with("cat-0-0 login from tok_") && !tokenized[0].contains(EMAIL),
        "{tokenized:?}"
    );
    assert_eq!(sent_messages.difference(&messages).count(), 1);
    assert_eq!(lines.len(), 8 * 3 + 1 + 1 + 15);

    // One stream only.
    let (code, out, _) = run_gateway_cli(&["spool", "cat", &spool, "--stream", "logs"]);
    assert_eq!((code, json_lines(&out).len()), (0, 15));

    // A torn record after the gateway stopped: reported with its file and offset, the
    // rest still printed, exit 1.
    drop(s.gw);
    let segments: Vec<_> = std::fs::read_dir(Path::new(&spool).join("metrics"))
        .expect("metrics spool")
        .map(|e| e.expect("entry").path())
        .collect();
    let seg = segments.iter().max().expect("a segment").clone();
    let whole = std::fs::metadata(&seg).expect("segment").len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open segment")
        .write_all(&[200, 0, 0, 0, 1, 2, 3])
        .expect("tear");
    let (code, out, err) = run_gateway_cli(&["spool", "cat", &spool]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{} at byte {whole}: a torn", seg.display())),
        "{err}"
    );
    assert!(err.contains("1 problem(s)"), "{err}");
    assert_eq!(json_lines(&out).len(), lines.len());
    // Not a spool: said, exit 1.
    let (code, _, err) = run_gateway_cli(&[
        "spool",
        "cat",
        &s.dir.path().join("nowhere").display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("nowhere: not a directory"), "{err}");
}

#[tokio::test]
async fn a_tap_shows_its_tenants_tokenized_logs_and_series_as_committed_and_nothing_of_another_tenant()
 {
    let s = setup();
    // The tap, through the CLI: 2 series and 5 log documents of `game`, then it ends.
    let tap = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
        .args([
            "tap",
            "--tenant",
            "game",
            "--limit",
            "7",
            "--admin",
            &format!("127.0.0.1:{}", s.admin),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the tap");
    s.wait_logged("tap opened", 1);

    // At most 4 taps at once: 3 more open, a fifth is told 429.
    let mut others = Vec::new();
    for _ in 0..3 {
        let (conn, head) = open_tap(s.admin, "tenant=nobody&signal=logs");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("application/x-ndjson"), "{head}");
        others.push(conn);
    }
    let (status, body) = get(s.admin, "/tap?tenant=nobody");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("4 taps are open"), "{body}");
    let admin = format!("127.0.0.1:{}", s.admin);
    let (code, out, err) = run_gateway_cli(&["tap", "--tenant", "game", "--admin", &admin]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains(&format!("{admin} answered 429")) && err.contains("4 taps are open"),
        "{err}"
    );
    let closed = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run_gateway_cli(&["tap", "--tenant", "game", "--admin", &closed]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("cannot connect to the admin port {closed}")),
        "{err}"
    );
    let (status, body) = get(s.admin, "/tap?signal=logs");
    assert_eq!(status, 400, "{body}");
    // A tap whose reader leaves frees its place.
    drop(others.pop());
    s.wait_logged("tap closed", 1);
    let (conn, head) = open_tap(s.admin, "tenant=nobody");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    others.push(conn);

    // Another tenant's records first: were they tapped, they would fill the limit.
    let mut studio = s.studio().await;
    let a = studio
        .push(
            &WriteRequest {
                timeseries: vec![series("edge_studio_only_total", &[("region", "eu")], 1.0)],
                ..Default::default()
            },
            &[],
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    let (body, _) = log_batch("studio-only", 3, false);
    assert_eq!(post_logs(&mut studio, body).await.status, 200);

    let mut c = s.game().await;
    let sent = vec![
        series("edge_tap_a_total", &[("region", "eu")], 1.0),
        series("edge_tap_b_total", &[("region", "us")], 2.0),
    ];
    let a = c
        .push(
            &WriteRequest {
                timeseries: sent.clone(),
                ..Default::default()
            },
            &[],
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    let (body, messages) = log_batch("tapped", 5, true);
    assert_eq!(post_logs(&mut c, body).await.status, 200);

    let out = tokio::task::spawn_blocking(move || tap.wait_with_output())
        .await
        .expect("join")
        .expect("the tap ends after its limit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines.len(), 7, "{lines:?}");
    for l in &lines {
        assert_eq!(
            l["tenant"], "game",
            "another tenant's record on the tap: {l}"
        );
    }
    let series_lines: Vec<(Value, Value)> = lines
        .iter()
        .filter(|l| l["signal"] == "metrics")
        .map(|l| (l["labels"].clone(), l["samples"].clone()))
        .collect();
    assert_eq!(
        series_lines,
        sent.iter().map(expected_series).collect::<Vec<_>>()
    );
    // The log documents as committed: what the spool holds, tokenized.
    let docs: Vec<Value> = lines
        .iter()
        .filter(|l| l["signal"] == "logs")
        .map(|l| l["document"].clone())
        .collect();
    let (records, _) = edge_gateway::sink::file::read_spool(&s.gw.spool, "logs").expect("spool");
    let stored: Vec<Value> = records
        .iter()
        .filter(|r| r.key == "game")
        .map(|r| serde_json::from_slice(&r.data).expect("a JSON document"))
        .collect();
    assert_eq!(docs, stored);
    let first = docs[0]["message"].as_str().expect("message");
    assert!(
        first.starts_with("tapped-0 login from tok_")
            && !first.contains(EMAIL)
            && !first.contains("203.0.113.77"),
        "the tap shows the raw value: {first}"
    );
    assert_eq!(
        docs[1..]
            .iter()
            .map(|d| d["message"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        messages[1..]
    );
    assert_eq!(s.metric("edge_gateway_tap_dropped_total"), None);

    // Taps still open do not keep the gateway from stopping: SIGTERM, exit 0.
    let mut gw = s.gw;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(gw.child.id().to_string())
        .status();
    let deadline = Instant::now() + NEVER;
    let status = loop {
        if let Some(status) = gw.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop with taps open: {}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit {status:?}: {}", gw.log_text());
    drop(others);
}

/// This machine's first non-loopback IPv4 address, from `hostname -I`.
fn non_loopback_address() -> IpAddr {
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .expect("`hostname -I` runs (it names this machine's addresses)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
        .unwrap_or_else(|| {
            panic!(
                "this machine has no non-loopback IPv4 address (`hostname -I`: {text:?}), so \
                 the admin port cannot be reached from a non-loopback peer: this test needs one"
            )
        })
}

/// The admin port bound to every address, as shipped: from this machine's own
/// non-loopback address `/tap` is refused 403 (it shows every tenant's records) while
/// `/metrics` is served; from loopback the same tap opens.
#[test]
fn a_tap_from_a_non_loopback_peer_is_refused_403_and_the_rest_of_the_admin_port_is_served() {
    let own = non_loopback_address();
    let s = setup_admin_on("0.0.0.0");
    let admin = s.admin;

    let (status, body) = get_at(SocketAddr::new(own, admin), "/tap?tenant=game");
    assert_eq!(
        status,
        403,
        "from {own}: {body}; gateway log: {}",
        s.gw.log_text()
    );
    assert!(body.contains("loopback clients only"), "{body}");
    let (status, body) = get_at(SocketAddr::new(own, admin), "/metrics");
    assert_eq!(status, 200, "from {own}: {body}");
    assert!(body.contains("edge_"), "{body}");

    let (_tap, head) = open_tap(admin, "tenant=game");
    assert!(head.starts_with("HTTP/1.1 200"), "from loopback: {head}");
}

const CLIENTS: usize = 4;
const BATCHES: usize = 50;
const DOCS: usize = 50;

/// What one round of requests did.
#[derive(Default)]
struct Round {
    requests: usize,
    ok: usize,
    messages: Vec<String>,
    series: usize,
    refused: Vec<String>,
    took: Duration,
}

/// 4 clients at once, each 50 log batches (50 documents of ~0.6 KB) and 50 pushes (20
/// series): ~6 MB of documents and 4,000 series. Every request must be answered within
/// [`NEVER`]; what was not 2xx is listed.
async fn round(s: &Setup, name: &str) -> Round {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CLIENTS {
        let mut c = s.game().await;
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            let mut r = Round::default();
            for b in 0..BATCHES {
                let (body, m) = log_batch(&format!("{name}-{t}-{b}"), DOCS, false);
                let a = tokio::time::timeout(NEVER, post_logs(&mut c, body))
                    .await
                    .expect("a logs request was held up");
                r.requests += 1;
                if a.status == 200 {
                    r.ok += 1;
                    r.messages.extend(m);
                } else {
                    r.refused.push(format!("{}: {}", a.status, a.body));
                }
                let req = WriteRequest {
                    timeseries: (0..20)
                        .map(|j| {
                            series(
                                &format!("edge_stall_{j}_total"),
                                &[("cluster", &format!("c{t}")), ("region", "eu")],
                                b as f64,
                            )
                        })
                        .collect(),
                    ..Default::default()
                };
                let a = tokio::time::timeout(NEVER, c.push(&req, &[]))
                    .await
                    .expect("a push was held up");
                r.requests += 1;
                if a.status == 204 {
                    r.ok += 1;
                    r.series += req.timeseries.len();
                } else {
                    r.refused.push(format!("{}: {}", a.status, a.body));
                }
            }
            r
        }));
    }
    let mut total = Round::default();
    for t in tasks {
        let r = t.await.expect("a client failed");
        total.requests += r.requests;
        total.ok += r.ok;
        total.messages.extend(r.messages);
        total.series += r.series;
        total.refused.extend(r.refused);
    }
    total.took = started.elapsed();
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tap_whose_reader_stalls_never_holds_up_ingest_and_its_drops_are_counted() {
    let s = setup();
    // A round with no tap open: the reference the figures compare with.
    let untapped = round(&s, "untapped").await;
    assert_eq!(untapped.ok, untapped.requests, "{:?}", untapped.refused);

    // A reader that takes the answer's head and then never reads again.
    let (_stalled, head) = open_tap(s.admin, "tenant=game");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.wait_logged("tap opened", 1);
    // Rounds until the tap has dropped something (the socket's buffers take a few MB
    // first); every request answered 2xx all along.
    let mut rounds = Vec::new();
    while s
        .metric("edge_gateway_tap_dropped_total{signal=\"logs\"}")
        .is_none()
    {
        assert!(rounds.len() < 10, "no drops after {} rounds", rounds.len());
        let r = round(&s, &format!("stall{}", rounds.len())).await;
        assert_eq!(
            r.ok, r.requests,
            "every request answered 2xx: {:?}",
            r.refused
        );
        rounds.push(r);
    }
    let first_stalled = rounds[0].took;
    let requests: usize = untapped.requests + rounds.iter().map(|r| r.requests).sum::<usize>();
    let acked_series: usize = untapped.series + rounds.iter().map(|r| r.series).sum::<usize>();
    let mut acked_messages = untapped.messages;
    for r in rounds.iter_mut() {
        acked_messages.append(&mut r.messages);
    }
    let rounds = rounds.len() + 1;

    // Every acknowledged record is in the spool, once.
    let (records, torn) = edge_gateway::sink::file::read_spool(&s.gw.spool, "logs").expect("spool");
    assert_eq!(torn, 0);
    let mut spooled: Vec<String> = records
        .iter()
        .map(|r| {
            let d: Value = serde_json::from_slice(&r.data).expect("document");
            d["message"].as_str().expect("message").to_string()
        })
        .collect();
    spooled.sort();
    acked_messages.sort();
    assert_eq!(spooled.len(), rounds * CLIENTS * BATCHES * DOCS);
    assert_eq!(spooled, acked_messages);
    assert_eq!(support::spooled_series(&s.gw.spool).len(), acked_series);

    // What the stalled tap had no room for was dropped for it, and counted.
    let dropped_logs = s
        .metric("edge_gateway_tap_dropped_total{signal=\"logs\"}")
        .unwrap_or(0.0);
    assert!(
        dropped_logs > 0.0,
        "no drops counted for a tap that never read: {}",
        get(s.admin, "/metrics").1
    );
    assert!(dropped_logs <= spooled.len() as f64);
    let dropped_series = s
        .metric("edge_gateway_tap_dropped_total{signal=\"metrics\"}")
        .unwrap_or(0.0);
    assert!(dropped_series <= acked_series as f64);

    // spool cat reads the same spool: a line per acknowledged document and series.
    let started = Instant::now();
    let (code, out, err) = run_gateway_cli(&["spool", "cat", &s.gw.spool.display().to_string()]);
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    let lines = out.lines().count();
    assert_eq!(lines, spooled.len() + acked_series);
    eprintln!(
        "figures: {requests} requests in {rounds} round(s), all 2xx; a round took {:?} with no tap \
         and {first_stalled:?} with the stalled tap; {} documents and {acked_series} series \
         committed; dropped for the stalled tap: {dropped_logs} documents, {dropped_series} series; \
         spool cat: {lines} lines, {} MB, in {took:?}",
        untapped.took,
        spooled.len(),
        out.len() / 1_000_000
    );
}
