//! A saturated gateway keeps answering fast and serves the important tenant first
//! (issue 22, admission control).
//!
//! The real binary over real mTLS, made CPU-bound on purpose: one runtime worker
//! (`TOKIO_WORKER_THREADS=1`) and the whole process pinned to one core (`taskset`), so
//! the load generator in this test, on the other core, can offer it four times what it
//! can take. Two tenants: `game` (priority 100) and `noisy` (priority 10), both within
//! their quotas, so priority alone decides who is served.
//!
//! The debug build does each request's work about ten times slower than a release
//! build, so the queue budget is 100 ms there; a release build gets the default, 30 ms.
//!
//! Everything is measured in the run, so a busy machine only moves the figures: first
//! the unloaded latency (one request at a time) and the capacity (requests per second
//! with three at once); then, once the overload stage is back at 0, 20 s of `game` at
//! 0.3× and `noisy` at 3.7× the capacity, open loop (a request is sent on time whether
//! or not the earlier ones were answered).
//! What is judged: every request is answered, within a bound derived from the unloaded
//! latency (a gateway that queued the excess would answer in seconds); every refusal is
//! a 503 or 429 with `Retry-After`; `game` gets no 429 and is served far more than
//! `noisy`; the overload stage moves and `game`'s answers carry the shed-logs hint.
//!
//! Then the overload ends and the noisy tenant resends everything it was refused, as its
//! agents would: sixteen senders share its backlog, one request at a time each, and a
//! refused one waits its `Retry-After` and goes back in the backlog; `game` goes on at
//! 0.3×. Judged by counts and end state, within a bound derived from the run (ten times
//! the backlog's work at the measured capacity, plus a minute): every noisy request is
//! answered 2xx in the end, the controller had throttled the noisy tenant (stage 2) and
//! comes back to stage 0, and `game` is never throttled. At last every 2xx is in the
//! spool (each request carries its id in a marker series) exactly once, nothing else is,
//! and every noisy request is there.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::{TimeSeries, WriteRequest};
use edge_tests::fleet::SimHost;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::TokioIo;
use prost::Message;
use support::{Gateway, Pki, free_port, tls_config};

/// How long the saturation lasts.
const SATURATION: Duration = Duration::from_secs(20);
/// A request not answered by then counts as never answered.
const NEVER: Duration = Duration::from_secs(60);
/// The queue budget the gateway gets here (`admission.max_queue_wait`): the default in a
/// release build, more in a debug build (its work is about ten times slower).
const MAX_QUEUE_WAIT: Duration = if cfg!(debug_assertions) {
    Duration::from_millis(100)
} else {
    edge_gateway::config::DEFAULT_MAX_QUEUE_WAIT
};
/// Senders of the noisy tenant's backlog after the saturation (its agents).
const RESENDERS: usize = 16;
/// The p99 of the answers' latency may be twice the queue budget plus this multiple of
/// the unloaded median at most: the wait the budget allows, and work held near twice its
/// unloaded time, fit many times over; a gateway that queues the excess answers in tens
/// of seconds.
const P99_FACTOR: u32 = 40;
/// And the slowest answer (the first seconds, while the limit adapts) twice the budget
/// plus this multiple.
const MAX_FACTOR: u32 = 80;

fn now_ms() -> i64 {
    edge_tests::fleet::now_ms()
}

/// Hosts' pushes merged into one request (300 series each): requests heavy enough that
/// their work, not reading them off the connection, is what saturates the gateway.
const HOSTS_PER_REQUEST: usize = 5;

/// One tenant's traffic: the same series every time and a marker series whose value is
/// the request's id.
struct Traffic {
    tenant: &'static str,
    /// The series, snappy-compressed without the length preamble.
    base: Vec<u8>,
    /// Their uncompressed length.
    base_len: usize,
    marker: TimeSeries,
    /// The encoded length of the marker `WriteRequest` (constant: the value is a double).
    marker_len: usize,
}

impl Traffic {
    fn new(tenant: &'static str) -> Traffic {
        let stamp = now_ms();
        let mut raw = Vec::new();
        for i in 0..HOSTS_PER_REQUEST {
            raw.extend(
                SimHost::named(tenant, i, "eu-west-1")
                    .write_request(stamp)
                    .encode_to_vec(),
            );
        }
        let base_len = raw.len();
        let base = without_preamble(
            &snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy"),
        )
        .to_vec();
        let mut marker = SimHost::named(&format!("{tenant}-marker"), 0, "eu-west-1")
            .write_request(stamp)
            .timeseries
            .swap_remove(0);
        marker.samples.truncate(1);
        // Ids start at 1: a value of 0 would not be encoded at all (proto3 default).
        marker.samples[0].value = 1.0;
        let marker_len = WriteRequest {
            timeseries: vec![marker.clone()],
            ..Default::default()
        }
        .encoded_len();
        Traffic {
            tenant,
            base,
            base_len,
            marker,
            marker_len,
        }
    }

    /// The snappy body of request `id`: the series compressed once, then the marker.
    /// A snappy block's elements only refer back within their own block, so two blocks'
    /// elements in a row, under one length preamble, are one valid block.
    fn body(&self, id: u64) -> Bytes {
        let mut marker = self.marker.clone();
        marker.samples[0].value = id as f64;
        let marker = WriteRequest {
            timeseries: vec![marker],
            ..Default::default()
        }
        .encode_to_vec();
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&marker)
            .expect("snappy");
        let mut body = Vec::with_capacity(self.base.len() + compressed.len() + 10);
        let mut len = (self.base_len + marker.len()) as u64;
        while len >= 0x80 {
            body.push((len as u8) | 0x80);
            len >>= 7;
        }
        body.push(len as u8);
        body.extend_from_slice(&self.base);
        body.extend_from_slice(without_preamble(&compressed));
        Bytes::from(body)
    }

    /// The id in a spooled record of this tenant (its marker is the record's tail).
    fn id_of(&self, data: &[u8]) -> Option<u64> {
        let tail = &data[data.len().checked_sub(self.marker_len)?..];
        let series = WriteRequest::decode(tail).ok()?.timeseries;
        let value = series.first()?.samples.first()?.value;
        Some(value as u64)
    }
}

/// A snappy block without its length preamble (a varint).
fn without_preamble(block: &[u8]) -> &[u8] {
    let n = block
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("a preamble");
    &block[n + 1..]
}

/// What became of one request.
#[derive(Debug, Clone)]
struct Answered {
    tenant: &'static str,
    id: u64,
    status: u16,
    retry_after: Option<u64>,
    shed: bool,
    took: Duration,
    sent_at: Instant,
}

async fn connect(port: u16, tls: Arc<rustls::ClientConfig>) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    send
}

/// Sends one push; `Err` is a request that got no answer.
async fn push(
    mut send: SendRequest<Full<Bytes>>,
    tenant: &'static str,
    id: u64,
    body: Bytes,
    sent: Instant,
) -> Result<Answered, String> {
    let req = http::Request::post("https://localhost/api/v1/push")
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let call = async {
        send.ready().await.map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let shed = resp.headers().contains_key("edge-shed-logs");
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((status, retry_after, shed))
    };
    let (status, retry_after, shed) = tokio::time::timeout(NEVER, call)
        .await
        .map_err(|_| format!("{tenant} request {id}: no answer within {NEVER:?}"))??;
    Ok(Answered {
        tenant,
        id,
        status,
        retry_after,
        shed,
        took: sent.elapsed(),
        sent_at: sent,
    })
}

fn quantile(mut v: Vec<Duration>, q: f64) -> Duration {
    edge_tests::fleet::quantile(std::mem::take(&mut v), q)
}

/// A gauge or counter from the admin port's `/metrics` (exact series text).
async fn metric(admin: u16, series: &str) -> Option<f64> {
    let (_, body) = edge_tests::procs::http_get(admin, "/metrics").await.ok()?;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Offers `per_second` requests of `traffic` over `connections`, open loop, for
/// `duration`; ids start at `first_id`.
#[allow(clippy::too_many_arguments)]
async fn offer(
    traffic: Arc<Traffic>,
    connections: Vec<SendRequest<Full<Bytes>>>,
    per_second: f64,
    duration: Duration,
    first_id: u64,
    answers: Arc<Mutex<Vec<Answered>>>,
    failures: Arc<Mutex<Vec<String>>>,
) -> u64 {
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut n = 0u64;
    while start.elapsed() < duration {
        let due = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let id = first_id + n;
        let send = connections[n as usize % connections.len()].clone();
        let (traffic, answers, failures) = (traffic.clone(), answers.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let body = traffic.body(id);
            match push(send, traffic.tenant, id, body, due).await {
                Ok(a) => answers.lock().expect("answers").push(a),
                Err(e) => failures.lock().expect("failures").push(e),
            }
        }));
        n += 1;
    }
    for t in tasks {
        let _ = t.await;
    }
    n
}

#[test]
fn a_saturated_gateway_answers_fast_and_serves_the_important_tenant_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let (port, admin) = (free_port(), free_port());
    let tenants = "  default: { samples_rate_limit: 1000000000, burst: 1000000000, max_series: 10000000 }\n  \
                   game: { priority: 100 }\n  noisy: { priority: 10 }";
    let policy = dir.path().join("labels.yaml");
    std::fs::write(&policy, edge_tests::fleet::fleet_policy_yaml()).expect("policy");
    // The test's clients keep their connections for the whole run (agents reconnect when
    // the gateway closes one at `max_connection_age`, 5 min by default; these do not).
    let config = format!(
        "{}admin_listen: 127.0.0.1:{admin}\npolicy: {}\n\
         overload: {{ actions: [ {{ reduce_log_sampling: 50% }} ] }}\n\
         admission: {{ max_queue_wait: {}ms, min_limit: 2, initial_limit: 4 }}\n\
         limits: {{ max_connection_age: 1h }}\n",
        support::config_text(dir.path(), port, tenants),
        policy.display(),
        MAX_QUEUE_WAIT.as_millis()
    );
    let gw = Gateway::start_with_env(dir.path(), port, &config, &[("TOKIO_WORKER_THREADS", "1")]);
    // One core for the whole process: the blocking pool's decoding threads too.
    let pinned = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", "0", &gw.child.id().to_string()])
        .output()
        .expect("taskset (util-linux) pins the gateway to one core");
    assert!(pinned.status.success(), "taskset: {pinned:?}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let game_cert = pki.client("gs-1", Some("spiffe://obs.internal/tenant/game/gs-1"));
        let noisy_cert = pki.client("n-1", Some("spiffe://obs.internal/tenant/noisy/n-1"));
        let game_tls = tls_config(&pki.ca_der, Some(&game_cert));
        let noisy_tls = tls_config(&pki.ca_der, Some(&noisy_cert));
        let game = Arc::new(Traffic::new("game"));
        let noisy = Arc::new(Traffic::new("noisy"));
        let mut game_conns = Vec::new();
        for _ in 0..4 {
            game_conns.push(connect(port, game_tls.clone()).await);
        }
        let mut noisy_conns = Vec::new();
        for _ in 0..8 {
            noisy_conns.push(connect(port, noisy_tls.clone()).await);
        }
        let answers = Arc::new(Mutex::new(Vec::<Answered>::new()));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut next_id = 1u64;

        // 1. Unloaded: one request at a time.
        let mut unloaded = Vec::new();
        for _ in 0..40 {
            let a = push(
                game_conns[0].clone(),
                "game",
                next_id,
                game.body(next_id),
                Instant::now(),
            )
            .await
            .expect("unloaded answer");
            assert_eq!(a.status, 204, "unloaded: {a:?}; log: {}", gw.log_text());
            next_id += 1;
            unloaded.push(a.took);
            answers.lock().expect("answers").push(a);
        }
        let unloaded_p50 = quantile(unloaded.clone(), 0.5);

        // 2. Capacity: three at once (one core, and the next one ready), closed loop,
        // for 4 s.
        let capacity_started = Instant::now();
        let ids = Arc::new(std::sync::atomic::AtomicU64::new(next_id));
        let mut loops = Vec::new();
        for c in 0..3 {
            let (send, game, ids, answers) = (
                game_conns[c % game_conns.len()].clone(),
                game.clone(),
                ids.clone(),
                answers.clone(),
            );
            loops.push(tokio::spawn(async move {
                let mut ok = 0u64;
                while capacity_started.elapsed() < Duration::from_secs(4) {
                    let id = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let a = push(send.clone(), "game", id, game.body(id), Instant::now())
                        .await
                        .expect("capacity answer");
                    if a.status == 204 {
                        ok += 1;
                    } else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    answers.lock().expect("answers").push(a);
                }
                ok
            }));
        }
        let mut served = 0u64;
        for l in loops {
            served += l.await.expect("loop");
        }
        let capacity = served as f64 / capacity_started.elapsed().as_secs_f64();
        let before = answers.lock().expect("answers").len();
        eprintln!(
            "unloaded latency p50 {unloaded_p50:?} max {:?}; capacity {capacity:.1} requests/s",
            quantile(unloaded, 1.0)
        );
        assert!(capacity > 0.0);
        // The controller starts the saturation from stage 0, so that what it does next
        // is the saturation's doing.
        let calm = Instant::now();
        while metric(admin, "edge_gateway_overload_stage ").await != Some(0.0) {
            assert!(
                calm.elapsed() < Duration::from_secs(90),
                "the overload stage did not come back to 0 after the capacity run"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // 3. Saturation: 0.3× for game, 3.7× for noisy, while /metrics is watched.
        let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let watch = {
            let watching = watching.clone();
            tokio::spawn(async move {
                let mut stages = Vec::new();
                let mut limits = Vec::new();
                while watching.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(s) = metric(admin, "edge_gateway_overload_stage ").await {
                        stages.push(s);
                    }
                    if let Some(l) = metric(admin, "edge_gateway_admission_limit ").await {
                        limits.push(l);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                (stages, limits)
            })
        };
        let game_load = tokio::spawn(offer(
            game.clone(),
            game_conns.clone(),
            capacity * 0.3,
            SATURATION,
            1_000_000,
            answers.clone(),
            failures.clone(),
        ));
        let noisy_load = tokio::spawn(offer(
            noisy.clone(),
            noisy_conns.clone(),
            capacity * 3.7,
            SATURATION,
            2_000_000,
            answers.clone(),
            failures.clone(),
        ));
        let game_sent = game_load.await.expect("game load");
        let noisy_sent = noisy_load.await.expect("noisy load");
        watching.store(false, std::sync::atomic::Ordering::Relaxed);
        let (stages, limits) = watch.await.expect("watch");
        let refused_noisy = metric(
            admin,
            "edge_gateway_admission_refused_total{reason=\"queue_timeout\",priority=\"10\"} ",
        )
        .await
        .unwrap_or(0.0)
            + metric(
                admin,
                "edge_gateway_admission_refused_total{reason=\"queue_full\",priority=\"10\"} ",
            )
            .await
            .unwrap_or(0.0)
            + metric(
                admin,
                "edge_gateway_admission_refused_total{reason=\"shed_early\",priority=\"10\"} ",
            )
            .await
            .unwrap_or(0.0);

        let failures = failures.lock().expect("failures").clone();
        assert!(
            failures.is_empty(),
            "requests without an answer: {} (first: {:?}); log: {}",
            failures.len(),
            failures.first(),
            gw.log_text()
        );
        let all = answers.lock().expect("answers").clone();
        let saturated: Vec<&Answered> = all[before..].iter().collect();
        assert_eq!(
            saturated.len() as u64,
            game_sent + noisy_sent,
            "every request of the saturation is answered"
        );
        let mut by: BTreeMap<(&str, u16), u64> = BTreeMap::new();
        for a in &saturated {
            *by.entry((a.tenant, a.status)).or_default() += 1;
        }
        let ratio = |tenant: &str, sent: u64| {
            by.get(&(tenant, 204)).copied().unwrap_or(0) as f64 / sent as f64
        };
        let (game_ratio, noisy_ratio) = (ratio("game", game_sent), ratio("noisy", noisy_sent));
        let took = |tenant: &str, ok: bool| -> Vec<Duration> {
            saturated
                .iter()
                .filter(|a| a.tenant == tenant && (a.status == 204) == ok)
                .map(|a| a.took)
                .collect()
        };
        let (p99_bound, max_bound) = (
            MAX_QUEUE_WAIT * 2 + unloaded_p50 * P99_FACTOR,
            MAX_QUEUE_WAIT * 2 + unloaded_p50 * MAX_FACTOR,
        );
        let p99 = quantile(saturated.iter().map(|a| a.took).collect(), 0.99);
        let slowest = saturated.iter().map(|a| a.took).max().unwrap_or_default();
        let game_ok = took("game", true);
        let refusals: Vec<Duration> = saturated
            .iter()
            .filter(|a| a.status != 204)
            .map(|a| a.took)
            .collect();
        let t0 = saturated.iter().map(|a| a.sent_at).min().expect("answers");
        let early_refusals: Vec<Duration> = saturated
            .iter()
            .filter(|a| a.status != 204 && a.sent_at < t0 + Duration::from_secs(3))
            .map(|a| a.took)
            .collect();
        eprintln!(
            "offered game {:.1}/s, noisy {:.1}/s for {SATURATION:?}; answers {by:?}\n\
             game 2xx {:.1}% (TTFB p50 {:?} p99 {:?}), noisy 2xx {:.1}%; refusals p50 {:?} p99 {:?} \
             (in the first 3 s: {} refusals, p99 {:?}, slowest {:?}); \
             answers p99 {p99:?} (bound {p99_bound:?}), slowest {slowest:?} (bound {max_bound:?}); overload stages seen {stages:?}; \
             admission limits seen {:?}..{:?}; noisy refused by admission {refused_noisy}",
            game_sent as f64 / SATURATION.as_secs_f64(),
            noisy_sent as f64 / SATURATION.as_secs_f64(),
            game_ratio * 100.0,
            quantile(game_ok.clone(), 0.5),
            quantile(game_ok.clone(), 0.99),
            noisy_ratio * 100.0,
            quantile(refusals.clone(), 0.5),
            quantile(refusals.clone(), 0.99),
            early_refusals.len(),
            quantile(early_refusals.clone(), 0.99),
            quantile(early_refusals.clone(), 1.0),
            limits.iter().cloned().fold(f64::MAX, f64::min),
            limits.iter().cloned().fold(0.0, f64::max),
        );

        // Per second of the run: the slowest answer, 2xx and refusals (for the log).
        {
            let mut per: BTreeMap<u64, (Duration, u32, u32)> = BTreeMap::new();
            for a in &saturated {
                let e = per.entry((a.sent_at - t0).as_millis() as u64 / 1000).or_default();
                e.0 = e.0.max(a.took);
                if a.status == 204 { e.1 += 1 } else { e.2 += 1 }
            }
            eprintln!("per second (max latency, 2xx, refused): {per:?}");
        }
        // Answers kept coming, fast.
        assert!(
            p99 <= p99_bound,
            "the answers' p99 is {p99:?}: over twice the queue budget and {P99_FACTOR}× the unloaded median ({unloaded_p50:?})"
        );
        assert!(
            slowest <= max_bound,
            "the slowest answer took {slowest:?}: over twice the queue budget and {MAX_FACTOR}× the unloaded median ({unloaded_p50:?})"
        );
        // Refusals are 503 or 429 with a Retry-After; nothing else is answered.
        for a in &saturated {
            match a.status {
                204 => {}
                429 | 503 => assert!(
                    a.retry_after.is_some_and(|s| s >= 1),
                    "a refusal without Retry-After: {a:?}"
                ),
                other => panic!("unexpected answer {other}: {a:?}"),
            }
        }
        // The important tenant within quota first.
        assert_eq!(
            by.get(&("game", 429)),
            None,
            "the game tenant is never throttled"
        );
        assert!(
            game_ratio >= 0.8 && game_ratio >= 2.0 * noisy_ratio,
            "game served {:.1}%, noisy {:.1}%",
            game_ratio * 100.0,
            noisy_ratio * 100.0
        );
        assert!(
            refused_noisy > 0.0,
            "admission refused the noisy tenant (the box was saturated)"
        );
        // The controller saw it: the stage moved and agents were asked to shed logs.
        assert!(
            stages.iter().any(|s| *s >= 1.0),
            "edge_gateway_overload_stage stayed at 0: {stages:?}"
        );
        assert!(
            saturated.iter().any(|a| a.tenant == "game" && a.shed),
            "no answer to the game tenant carried Edge-Shed-Logs"
        );

        // 4. The overload ends: the noisy tenant resends its backlog, game goes on at 0.3×.
        let backlog: std::collections::VecDeque<u64> = saturated
            .iter()
            .filter(|a| a.tenant == "noisy" && a.status != 204)
            .map(|a| a.id)
            .collect();
        let owed = backlog.len();
        let bound = Duration::from_secs(60) + Duration::from_secs_f64(10.0 * owed as f64 / capacity);
        let recovery_started = Instant::now();
        let backlog = Arc::new(Mutex::new(backlog));
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(owed));
        let resent = Arc::new(Mutex::new(Vec::<Answered>::new()));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut senders = Vec::new();
        for i in 0..RESENDERS {
            let (send, noisy, backlog, pending, resent, failures) = (
                noisy_conns[i % noisy_conns.len()].clone(),
                noisy.clone(),
                backlog.clone(),
                pending.clone(),
                resent.clone(),
                failures.clone(),
            );
            senders.push(tokio::spawn(async move {
                use std::sync::atomic::Ordering::Relaxed;
                while pending.load(Relaxed) > 0 && recovery_started.elapsed() < bound {
                    let next = backlog.lock().expect("backlog").pop_front();
                    let Some(id) = next else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let answer =
                        push(send.clone(), "noisy", id, noisy.body(id), Instant::now()).await;
                    let wait = match &answer {
                        Ok(a) if a.status == 204 => None,
                        Ok(a) => Some(Duration::from_secs(a.retry_after.unwrap_or(1))),
                        Err(_) => Some(Duration::from_secs(1)),
                    };
                    match answer {
                        Ok(a) => resent.lock().expect("resent").push(a),
                        Err(e) => failures.lock().expect("failures").push(e),
                    }
                    match wait {
                        None => {
                            pending.fetch_sub(1, Relaxed);
                        }
                        Some(wait) => {
                            backlog.lock().expect("backlog").push_back(id);
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }));
        }
        let game_goes_on = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let game_steady = {
            let (game, conns, answers, failures, on) = (
                game.clone(),
                game_conns.clone(),
                answers.clone(),
                failures.clone(),
                game_goes_on.clone(),
            );
            tokio::spawn(async move {
                let mut first = 3_000_000u64;
                while on.load(std::sync::atomic::Ordering::Relaxed) {
                    first += offer(
                        game.clone(),
                        conns.clone(),
                        capacity * 0.3,
                        Duration::from_secs(2),
                        first,
                        answers.clone(),
                        failures.clone(),
                    )
                    .await;
                }
            })
        };
        let mut recovery_stages = Vec::new();
        let mut drained_at = None;
        let mut calm_at = None;
        while recovery_started.elapsed() < bound {
            let stage = metric(admin, "edge_gateway_overload_stage ").await;
            if let Some(s) = stage {
                recovery_stages.push(s);
            }
            let left = pending.load(std::sync::atomic::Ordering::Relaxed);
            if left == 0 && drained_at.is_none() {
                drained_at = Some(recovery_started.elapsed());
            }
            if drained_at.is_some() && stage == Some(0.0) {
                calm_at = Some(recovery_started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for s in senders {
            s.await.expect("sender");
        }
        game_goes_on.store(false, std::sync::atomic::Ordering::Relaxed);
        game_steady.await.expect("game");
        let resent = resent.lock().expect("resent").clone();
        let mut resent_by: BTreeMap<u16, u64> = BTreeMap::new();
        for a in &resent {
            *resent_by.entry(a.status).or_default() += 1;
        }
        let all_game_after: Vec<Answered> = answers.lock().expect("answers")[all.len()..].to_vec();
        let mut game_after: BTreeMap<u16, u64> = BTreeMap::new();
        for a in &all_game_after {
            *game_after.entry(a.status).or_default() += 1;
        }
        let mut staged = recovery_stages.clone();
        staged.dedup();
        eprintln!(
            "recovery: noisy owed {owed} requests; resends answered {resent_by:?}; drained after \
             {drained_at:?}, stage 0 after {calm_at:?} (bound {bound:?}); stages {staged:?}; \
             game meanwhile {game_after:?}"
        );
        let failures = failures.lock().expect("failures").clone();
        assert!(
            failures.is_empty(),
            "requests without an answer in the recovery: {} (first: {:?})",
            failures.len(),
            failures.first()
        );
        assert_eq!(
            pending.load(std::sync::atomic::Ordering::Relaxed),
            0,
            "the noisy backlog did not drain within {bound:?}: {resent_by:?}, stages {staged:?}; log: {}",
            gw.log_text()
        );
        assert!(
            stages.iter().chain(&recovery_stages).any(|s| *s >= 2.0),
            "the noisy tenant was never throttled: stages {stages:?} then {staged:?}"
        );
        assert!(
            calm_at.is_some(),
            "the overload stage did not come back to 0 within {bound:?}: {staged:?}"
        );
        for a in resent.iter().chain(&all_game_after) {
            match a.status {
                204 => {}
                429 | 503 => assert!(
                    a.retry_after.is_some_and(|s| s >= 1),
                    "a refusal without Retry-After: {a:?}"
                ),
                other => panic!("unexpected answer {other}: {a:?}"),
            }
        }
        assert_eq!(game_after.get(&429), None, "the game tenant is never throttled");
        let all: Vec<Answered> = answers
            .lock()
            .expect("answers")
            .iter()
            .chain(&resent)
            .cloned()
            .collect();

        // Every 2xx is in the spool, and nothing else.
        let (records, _) =
            edge_gateway::sink::file::read_spool(&gw.spool, "metrics").expect("spool");
        let mut spooled: BTreeSet<(String, u64)> = BTreeSet::new();
        for r in &records {
            let traffic = if r.key.starts_with("game/") { &game } else { &noisy };
            let id = traffic
                .id_of(&r.data)
                .unwrap_or_else(|| panic!("a spooled record without its marker: {}", r.key));
            assert!(
                spooled.insert((traffic.tenant.to_string(), id)),
                "request {id} of {} is in the spool twice",
                traffic.tenant
            );
        }
        let acknowledged: BTreeSet<(String, u64)> = all
            .iter()
            .filter(|a| a.status == 204)
            .map(|a| (a.tenant.to_string(), a.id))
            .collect();
        let lost: Vec<_> = acknowledged.difference(&spooled).take(5).collect();
        assert!(lost.is_empty(), "acknowledged but not in the spool: {lost:?}");
        assert_eq!(
            spooled.len(),
            acknowledged.len(),
            "the spool holds exactly the acknowledged requests"
        );
        let noisy_spooled = spooled.iter().filter(|(t, _)| t == "noisy").count() as u64;
        assert_eq!(
            noisy_spooled, noisy_sent,
            "every noisy request of the saturation is in the spool in the end"
        );
    });
}
