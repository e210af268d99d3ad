//! Decompression bombs and floods on the real gateway over real mTLS: the budget of
//! decompressed bytes in flight holds the process's peak memory, a tenant over its
//! quota is answered before its bodies are decompressed, and the watchdog keeps pinging
//! (systemd's notification socket, bound here, counts the pings).
//!
//! Figures and bounds are judged by counts (exact answers, exact counter values) and by
//! the process's own peak RSS (`VmHWM`); time bounds are derived from the run.

mod support;

use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_schema::proto::otlp::{
    AnyValue, ExportLogsServiceRequest, LogRecord, ResourceLogs, ScopeLogs, any_value,
};
use edge_schema::proto::prometheus::WriteRequest;
use prost::Message;
use support::{Answer, Client, Gateway, Pki, config_text, free_port, series, tls_config};

const MIB: u64 = 1 << 20;

/// What a bomb expands to: under the per-body limit below, so only the budget stops it.
const BOMB: usize = 30 << 20;
/// `limits.max_decompressed_bytes` in these tests.
const MAX_BODY: u64 = 32 * MIB;
/// `limits.max_decompressed_bytes_in_flight`: twice the largest body and a zstd window
/// (the least the config takes), so two bombs fit at once and a third does not.
const BUDGET: u64 = 2 * MAX_BODY + 8 * MIB;
/// What the process may hold beyond the budget at its peak, over its peak before the
/// bombs: the compressed bodies, a zstd context per decoding thread, the blocking
/// threads' stacks and the allocator's own bookkeeping (measured: see the README).
const BEYOND_BUDGET: u64 = 48 * MIB;

/// The process's peak resident set (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// An OTLP logs request of `records` records whose bodies are `size` bytes each.
fn logs_request(records: usize, size: usize) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..records)
                    .map(|_| LogRecord {
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("a".repeat(size))),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// A 30 MB body of zeros in zstd that declares its size (about a kilobyte).
fn zstd_declared_bomb() -> Vec<u8> {
    zstd::bulk::compress(&vec![0u8; BOMB], 19).expect("zstd")
}

/// The same, streamed: the frame does not say how large it is.
fn zstd_streamed_bomb() -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("zstd");
    std::io::copy(&mut &vec![0u8; BOMB][..], &mut e).expect("zstd");
    e.finish().expect("zstd")
}

/// A snappy block that declares 30 MB and carries 2 KB of it.
fn snappy_bomb() -> Vec<u8> {
    let mut s = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; BOMB])
        .expect("snappy");
    s.truncate(2048);
    s
}

#[derive(Clone, Copy, Debug)]
enum Bomb {
    ZstdDeclared,
    ZstdStreamed,
    Snappy,
    OverTheLimit,
}

async fn send(client: &mut Client, bomb: Bomb, bodies: &Bodies) -> Answer {
    let (path, encoding, body) = match bomb {
        Bomb::ZstdDeclared => ("/v1/logs", "zstd", bodies.zstd_declared.clone()),
        Bomb::ZstdStreamed => ("/v1/logs", "zstd", bodies.zstd_streamed.clone()),
        Bomb::Snappy => ("/api/v1/push", "snappy", bodies.snappy.clone()),
        Bomb::OverTheLimit => ("/v1/logs", "zstd", bodies.over_the_limit.clone()),
    };
    client
        .request(
            "POST",
            path,
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", encoding),
            ],
            body,
        )
        .await
        .expect("an answer")
}

struct Bodies {
    zstd_declared: Vec<u8>,
    zstd_streamed: Vec<u8>,
    snappy: Vec<u8>,
    over_the_limit: Vec<u8>,
}

fn retry_after(a: &Answer) -> Option<u64> {
    a.headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The allocator settings the systemd unit gives the gateway.
const MALLOC_ENV: &[(&str, &str)] = &[("MALLOC_MMAP_THRESHOLD_", "4194304")];

/// Waves of bombs at once.
const WAVES: usize = 4;

/// What a run of bombs did.
struct Run {
    sent: u64,
    refused_503: u64,
    /// Peak RSS after a warm-up request, and after the bombs.
    before: u64,
    after: u64,
}

/// Starts a gateway with `budget`, sends [`WAVES`] waves of eight bombs at once (each
/// on its own connection), checks every answer, then that the gateway still serves.
async fn bombs(budget: u64) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let config = format!(
        "{}limits: {{ max_decompressed_bytes: {MAX_BODY}, max_decompressed_bytes_in_flight: {budget} }}\n",
        config_text(
            dir.path(),
            port,
            // A quota that takes the bombs: only the memory budget is tested here.
            "  game: { samples_rate_limit: 100000, burst: 200000, log_bytes_rate_limit: 1GiB, log_bytes_burst: 2GiB }"
        )
    );
    let gw = Gateway::start_with_env(dir.path(), port, &config, MALLOC_ENV);
    let tls = tls_config(&pki.ca_der, Some(&pki.client("gs-1", None)));
    let bodies = Arc::new(Bodies {
        zstd_declared: zstd_declared_bomb(),
        zstd_streamed: zstd_streamed_bomb(),
        snappy: snappy_bomb(),
        over_the_limit: zstd::bulk::compress(&vec![0u8; 40 << 20], 19).expect("zstd"),
    });
    assert!(bodies.zstd_declared.len() < 4096 && bodies.zstd_streamed.len() < 4096);
    // Warm: a normal push, so the peak before the bombs includes serving.
    let mut c = Client::connect(port, tls.clone()).await.expect("connect");
    let push = WriteRequest {
        timeseries: vec![series("edge_test_total", &[("region", "eu")], 1.0)],
        ..Default::default()
    };
    assert_eq!(c.push(&push, &[]).await.status, 204);
    let before = peak_rss(gw.child.id());

    let kinds = [
        Bomb::ZstdDeclared,
        Bomb::ZstdStreamed,
        Bomb::Snappy,
        Bomb::ZstdDeclared,
        Bomb::Snappy,
        Bomb::ZstdStreamed,
        Bomb::ZstdDeclared,
        Bomb::OverTheLimit,
    ];
    let (mut refused_503, mut sent) = (0u64, 0u64);
    for _wave in 0..WAVES {
        let mut clients = Vec::new();
        for _ in &kinds {
            clients.push(Client::connect(port, tls.clone()).await.expect("connect"));
        }
        let start = Arc::new(tokio::sync::Barrier::new(kinds.len()));
        let tasks: Vec<_> = clients
            .into_iter()
            .zip(kinds)
            .map(|(mut client, bomb)| {
                let (bodies, start) = (bodies.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    (bomb, send(&mut client, bomb, &bodies).await)
                })
            })
            .collect();
        for t in tasks {
            let (bomb, a) = t.await.expect("task");
            sent += 1;
            if a.status == 503 {
                assert!(
                    a.body.contains("limits.max_decompressed_bytes_in_flight"),
                    "{bomb:?}: {a:?}"
                );
                assert!(
                    retry_after(&a).is_some_and(|s| (2..=3).contains(&s)),
                    "{a:?}"
                );
                refused_503 += 1;
                continue;
            }
            // Not refused by the budget: decompressed and found not to be a request
            // (400), or past the per-body limit (413, before anything is reserved).
            let expected = match bomb {
                Bomb::OverTheLimit => 413,
                _ => 400,
            };
            assert_eq!(a.status, expected, "{bomb:?}: {a:?}");
        }
    }
    let after = peak_rss(gw.child.id());
    eprintln!(
        "bombs: {sent} sent ({refused_503} answered 503); peak RSS {} MiB before, {} MiB after (budget {} MiB)",
        before / MIB,
        after / MIB,
        budget / MIB
    );
    // Every 503 is counted, under the tenant that sent it.
    assert_eq!(
        c.metric("tenant_over_limit_total{tenant=\"game\",limit=\"decompressed_bytes_in_flight\"}")
            .await
            .unwrap_or(0.0),
        refused_503 as f64
    );
    // Nothing stays reserved: normal requests are served.
    assert_eq!(c.push(&push, &[]).await.status, 204);
    let logs = zstd::bulk::compress(&logs_request(3, 100), 3).expect("zstd");
    let a = c
        .request(
            "POST",
            "/v1/logs",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "zstd"),
            ],
            logs,
        )
        .await
        .expect("logs");
    assert_eq!(a.status, 200, "{a:?}");
    Run {
        sent,
        refused_503,
        before,
        after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bombs_stay_within_the_budget_and_are_answered_503_or_refused() {
    let run = bombs(BUDGET).await;
    assert!(
        run.after <= run.before + BUDGET + BEYOND_BUDGET,
        "peak RSS {} MiB after the bombs, {} MiB before, budget {} MiB",
        run.after / MIB,
        run.before / MIB,
        BUDGET / MIB
    );
    // Eight bombs at once that each hold 30 MB or more, against a budget two of them
    // fill: the budget refuses some in every wave (each is refused at its first
    // reservation, which is made before it decompresses a byte).
    assert!(
        run.refused_503 >= 1,
        "the budget never refused a bomb in {}",
        run.sent
    );
}

/// The same bombs with a budget that never refuses, for the README's before/after
/// figure: `cargo test -p edge-gateway --test bombs -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: the gateway takes what the bombs expand to"]
async fn the_same_bombs_without_a_budget() {
    let run = bombs(64 << 30).await;
    assert_eq!(run.refused_503, 0);
}

/// systemd's notification socket: counts `WATCHDOG=1` and when each came.
struct NotifySocket {
    pings: Arc<std::sync::Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotifySocket {
    fn bind(path: &std::path::Path) -> NotifySocket {
        let sock = UnixDatagram::bind(path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let pings = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (pings, stop) = (pings.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf)
                        && buf[..n].split(|b| *b == b'\n').any(|l| l == b"WATCHDOG=1")
                    {
                        pings.lock().expect("pings").push(Instant::now());
                    }
                }
            })
        };
        NotifySocket {
            pings,
            stop,
            thread: Some(thread),
        }
    }

    fn pings(&self) -> Vec<Instant> {
        self.pings.lock().expect("pings").clone()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Posts OTLP logs in zstd.
async fn post_logs(c: &mut Client, body: &[u8]) -> Answer {
    c.request(
        "POST",
        "/v1/logs",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "zstd"),
        ],
        body.to_vec(),
    )
    .await
    .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_over_quota_is_answered_before_decompression_and_the_watchdog_keeps_pinging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let notify = dir.path().join("notify.sock");
    let socket = NotifySocket::bind(&notify);
    // 64 KiB/s of log bytes with a burst of 128 KiB; each request is about 1 KB of zstd
    // that declares 96 KiB (as the agent's do): the flood asks for a hundred times the
    // rate, and every request over it is answered from the declared size.
    let config = config_text(
        dir.path(),
        port,
        "  game: { log_bytes_rate_limit: 64KiB, log_bytes_burst: 128KiB }",
    );
    // A watchdog of 10 s: pings every second, and systemd would restart the gateway
    // after 10 s without one.
    let watchdog = Duration::from_secs(10);
    let gw = Gateway::start_with_env(
        dir.path(),
        port,
        &config,
        &[
            ("NOTIFY_SOCKET", notify.to_str().expect("path")),
            ("WATCHDOG_USEC", &watchdog.as_micros().to_string()),
        ],
    );
    let raw = logs_request(3, 32 << 10);
    let body = zstd::bulk::compress(&raw, 19).expect("zstd");
    assert!(body.len() < 4096, "{} bytes", body.len());
    let tls = tls_config(&pki.ca_der, Some(&pki.client("gs-1", None)));
    let mut admin = Client::connect(port, tls.clone()).await.expect("connect");

    const WORKERS: usize = 8;
    let flood_for = Duration::from_secs(6);
    let started = Instant::now();
    let tasks: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (tls, body) = (tls.clone(), body.clone());
            tokio::spawn(async move {
                let mut c = Client::connect(port, tls).await.expect("connect");
                let mut answers = Vec::new();
                while started.elapsed() < flood_for {
                    answers.push(post_logs(&mut c, &body).await);
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.expect("flood"));
    }
    let flooded = started.elapsed();
    // The pings a while past the flood too: the last gap is judged against it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ended = Instant::now();

    let n = answers.len() as u64;
    let accepted = answers.iter().filter(|a| a.status == 200).count() as u64;
    let refused = answers.iter().filter(|a| a.status == 429).count() as u64;
    assert_eq!(accepted + refused, n, "only 200 and 429: {answers:?}");
    assert!(
        answers
            .iter()
            .filter(|a| a.status == 429)
            .all(|a| retry_after(a).is_some_and(|s| s >= 1)),
        "every 429 says when to come back"
    );
    // Exactly the accepted bodies were decompressed: every refusal came before.
    let decompressed = admin
        .metric("edge_gateway_decompressed_bytes_total")
        .await
        .unwrap_or(0.0) as u64;
    eprintln!(
        "flood: {n} requests in {flooded:?}: {accepted} accepted, {refused} answered 429, {} bytes decompressed",
        decompressed
    );
    assert_eq!(decompressed, accepted * raw.len() as u64);
    // The rate holds: the burst and 64 KiB/s for the run, no more.
    let allowed = (128 << 10) + (64 << 10) * (flooded.as_secs() + 1);
    assert!(
        accepted >= 1 && accepted * raw.len() as u64 <= allowed,
        "{accepted} accepted"
    );
    assert!(
        refused > 10 * accepted,
        "{refused} refused, {accepted} accepted"
    );
    assert_eq!(
        admin
            .metric("tenant_over_limit_total{tenant=\"game\",limit=\"log_bytes_rate\"}")
            .await,
        Some(refused as f64)
    );
    // None of them was decoded: no record was counted as refused.
    assert_eq!(
        admin
            .metric(
                "edge_gateway_discarded_log_records_total{tenant=\"game\",reason=\"rate_limited\"}"
            )
            .await,
        None
    );
    // The watchdog: pinged all along, never a gap systemd would restart on.
    let pings: Vec<Instant> = socket
        .pings()
        .into_iter()
        .filter(|t| *t >= started && *t <= ended)
        .collect();
    let mut edges = vec![started];
    edges.extend(pings.iter().copied());
    edges.push(ended);
    let gap = edges
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default();
    eprintln!(
        "watchdog: {} pings in {:?}, longest gap {gap:?}",
        pings.len(),
        ended - started
    );
    assert!(!pings.is_empty(), "no WATCHDOG=1 during the flood");
    assert!(
        gap < watchdog,
        "{gap:?} without a ping: systemd would restart it"
    );
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_declare_its_size_is_settled_after_decoding_and_the_next_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    // 4 KiB/s with a burst of 128 KiB: a second 96 KiB body is 16 s early.
    let config = config_text(
        dir.path(),
        port,
        "  game: { log_bytes_rate_limit: 4KiB, log_bytes_burst: 128KiB }",
    );
    let _gw = Gateway::start(dir.path(), port, &config);
    let raw = logs_request(3, 32 << 10);
    // Streamed: the frame does not say how large it is, so only its own length is
    // charged before decompression.
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 19).expect("zstd");
    std::io::copy(&mut &raw[..], &mut e).expect("zstd");
    let body = e.finish().expect("zstd");
    let tls = tls_config(&pki.ca_der, Some(&pki.client("gs-1", None)));
    let mut c = Client::connect(port, tls).await.expect("connect");
    let decompressed = async |c: &mut Client| {
        c.metric("edge_gateway_decompressed_bytes_total")
            .await
            .unwrap_or(0.0) as u64
    };
    // The first fits the burst.
    assert_eq!(post_logs(&mut c, &body).await.status, 200);
    assert_eq!(decompressed(&mut c).await, raw.len() as u64);
    // The second is decompressed, found over the rate, and refused.
    let second = post_logs(&mut c, &body).await;
    let answered = Instant::now();
    assert_eq!(second.status, 429, "{second:?}");
    assert_eq!(decompressed(&mut c).await, 2 * raw.len() as u64);
    // It was told to wait about 16 s (Retry-After: that, rounded up, and up to half
    // again); within that wait the next is refused without being decompressed.
    let told = retry_after(&second).expect("Retry-After");
    assert!(told >= 10, "Retry-After {told}");
    let third = post_logs(&mut c, &body).await;
    assert!(
        answered.elapsed() < Duration::from_secs(told * 2 / 3 - 1),
        "the next request came {:?} later, past the wait",
        answered.elapsed()
    );
    assert_eq!(third.status, 429, "{third:?}");
    assert_eq!(decompressed(&mut c).await, 2 * raw.len() as u64);
    assert_eq!(
        c.metric(
            "edge_gateway_discarded_log_records_total{tenant=\"game\",reason=\"rate_limited\"}"
        )
        .await,
        Some(3.0),
        "the records of the one refused after decoding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_decode_into_far_more_than_they_decompress_to_are_refused_within_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let config = format!(
        "{}limits: {{ max_decompressed_bytes: {MAX_BODY}, max_decompressed_bytes_in_flight: {BUDGET} }}\n",
        config_text(
            dir.path(),
            port,
            "  game: { log_bytes_rate_limit: 1GiB, log_bytes_burst: 2GiB }"
        )
    );
    let gw = Gateway::start_with_env(dir.path(), port, &config, MALLOC_ENV);
    let tls = tls_config(&pki.ca_der, Some(&pki.client("gs-1", None)));
    let mut c = Client::connect(port, tls).await.expect("connect");
    let push = WriteRequest {
        timeseries: vec![series("edge_test_total", &[("region", "eu")], 1.0)],
        ..Default::default()
    };
    assert_eq!(c.push(&push, &[]).await.status, 204);
    let before = peak_rss(gw.child.id());
    // 16 MiB of empty ResourceLogs, two bytes each on the wire and 80 in memory (1.3 GB
    // decoded), in about 1.4 KB of zstd.
    let otlp = zstd::bulk::compress(&[0x0au8, 0x00].repeat(8 << 20), 19).expect("zstd");
    let a = post_logs(&mut c, &otlp).await;
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body.contains("decodes into about"), "{a:?}");
    // 16 MiB of JSON zeros: 32 bytes each once parsed.
    let mut zeros = b"[".to_vec();
    zeros.extend_from_slice(&b"0,".repeat(8 << 20));
    zeros.extend_from_slice(b"0]");
    let json = zstd::bulk::compress(&zeros, 19).expect("zstd");
    let a = c
        .request(
            "POST",
            "/api/v1/logs",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "zstd"),
            ],
            json,
        )
        .await
        .expect("an answer");
    assert_eq!(a.status, 413, "{a:?}");
    // 8 MiB of empty remote_write series (88 bytes each in the scan's list), in about
    // 400 KB of snappy.
    let empty = snap::raw::Encoder::new()
        .compress_vec(&[0x0au8, 0x00].repeat(4 << 20))
        .expect("snappy");
    let a = c
        .request(
            "POST",
            "/api/v1/push",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "snappy"),
            ],
            empty,
        )
        .await
        .expect("an answer");
    assert_eq!(a.status, 413, "{a:?}");
    assert!(a.body.contains("max_decompressed_bytes_in_flight"), "{a:?}");
    let after = peak_rss(gw.child.id());
    eprintln!(
        "empty messages: peak RSS {} MiB before, {} MiB after",
        before / MIB,
        after / MIB
    );
    assert!(
        after <= before + BUDGET + BEYOND_BUDGET,
        "peak RSS {} MiB, {} MiB before",
        after / MIB,
        before / MIB
    );
    // The body was refused, not the client: an ordinary batch passes.
    let logs = zstd::bulk::compress(&logs_request(3, 100), 3).expect("zstd");
    assert_eq!(post_logs(&mut c, &logs).await.status, 200);
    assert_eq!(c.push(&push, &[]).await.status, 204);
}
