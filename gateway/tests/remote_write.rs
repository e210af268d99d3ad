//! The `remote_write` sink: into a stock Prometheus, read back with PromQL; and into a
//! scripted endpoint that checks every request's SigV4 signature with its own
//! implementation of the algorithm, fails the first request with 503 + `Retry-After`,
//! and refuses a later one with 400.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::WriteRequest;
use edge_tests::prometheus::Prometheus;
use http_body_util::Full;
use hyper::body::Bytes;
use prost::Message;
use support::{AWS_TEST_ENV, Client, Gateway, Pki, free_port, series, tls_config};

fn gateway_config(dir: &std::path::Path, port: u16, metrics_sink: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         tls: {{ cert: {d}/test-server.crt, key: {d}/test-server.key, client_ca: {d}/test-ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal }}\n\
         sinks:\n  metrics: {metrics_sink}\n  logs: {{ kind: file, dir: {d}/spool }}\n",
        d = dir.display()
    )
}

async fn client(pki: &Pki, port: u16) -> Client {
    let cert = pki.client("x", Some("spiffe://obs.internal/tenant/game/gs-1"));
    Client::connect(port, tls_config(&pki.ca_der, Some(&cert)))
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_stock_prometheus_gets_what_passes_and_never_a_forbidden_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = Prometheus::start(dir.path()).await;
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let sink = format!(
        "{{ kind: remote_write, url: \"{}\" }}",
        prometheus.write_url()
    );
    let gw = Gateway::start(dir.path(), port, &gateway_config(dir.path(), port, &sink));
    let mut c = client(&pki, port).await;

    let request = WriteRequest {
        timeseries: vec![
            series("game_players_online", &[("shard_id", "7")], 42.0),
            series("game_players_online", &[("player_id", "p-123")], 1.0),
            series("game_matches_total", &[("queue", "duel")], 3.0),
        ],
        ..Default::default()
    };
    let answer = c.push(&request, &[]).await;
    assert_eq!(
        answer.status, 400,
        "the forbidden series is refused: {}",
        answer.body
    );
    assert!(answer.body.contains("forbidden_label"), "{}", answer.body);

    let wait = Duration::from_secs(20);
    let (online, labels) = prometheus
        .query("game_players_online{shard_id=\"7\"}", wait)
        .await;
    assert_eq!(online, 42.0);
    assert_eq!(labels["shard_id"], "7");
    let (matches, _) = prometheus.query("game_matches_total", wait).await;
    assert_eq!(matches, 3.0, "the neighbour of a refused series passes");
    let leaked = prometheus.query_once("{player_id!=\"\"}").await;
    assert_eq!(
        leaked.as_array().map(Vec::len),
        Some(0),
        "a forbidden label reached Prometheus: {leaked}; gateway log: {}",
        gw.log_text()
    );
}

/// A native histogram of 3 observations in two buckets; `deltas` of `[1]` makes it
/// inconsistent (two buckets announced, one sent), as a store would refuse it.
fn native(name: &str, deltas: Vec<i64>) -> edge_schema::proto::prometheus::TimeSeries {
    use edge_schema::proto::prometheus::histogram::{Count, ZeroCount};
    use edge_schema::proto::prometheus::{BucketSpan, Histogram};
    let mut ts = series(name, &[], 0.0);
    let timestamp = ts.samples[0].timestamp;
    ts.samples.clear();
    ts.histograms.push(Histogram {
        count: Some(Count::CountInt(3)),
        zero_count: Some(ZeroCount::ZeroCountInt(0)),
        sum: 0.3,
        schema: 3,
        zero_threshold: 1e-128,
        positive_spans: vec![BucketSpan {
            offset: -20,
            length: 2,
        }],
        positive_deltas: deltas,
        timestamp,
        ..Default::default()
    });
    ts
}

#[tokio::test]
async fn one_bad_histogram_is_refused_alone_the_tenant_keeps_flowing_and_no_tenant_gets_a_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = Prometheus::start(dir.path()).await;
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let sink = format!(
        "{{ kind: remote_write, url: \"{}\" }}",
        prometheus.write_url()
    );
    let gw = Gateway::start(dir.path(), port, &gateway_config(dir.path(), port, &sink));
    let mut game = client(&pki, port).await;
    let studio_cert = pki.client("y", Some("spiffe://obs.internal/tenant/studio/gs-2"));
    let mut studio = Client::connect(port, tls_config(&pki.ca_der, Some(&studio_cert)))
        .await
        .expect("connect");

    let poisoned = WriteRequest {
        timeseries: vec![
            native("game_tick_duration_seconds", vec![1]),
            native("game_action_ack_latency_seconds", vec![1, 1]),
            series("game_players_online", &[("shard_id", "7")], 42.0),
        ],
        ..Default::default()
    };
    let answer = game.push(&poisoned, &[]).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.contains("invalid_native_histogram")
            && answer.body.contains("game_tick_duration_seconds"),
        "the answer names the reason and the metric: {}",
        answer.body
    );
    // The host's next batches flow, and another tenant never sees a 503.
    for round in 0..3 {
        let next = WriteRequest {
            timeseries: vec![series(
                "game_players_online",
                &[("shard_id", "7")],
                43.0 + f64::from(round),
            )],
            ..Default::default()
        };
        let a = game.push(&next, &[]).await;
        assert_eq!(a.status, 204, "round {round}: {}", a.body);
        let other = WriteRequest {
            timeseries: vec![series(
                "game_matches_total",
                &[("queue", "duel")],
                f64::from(round),
            )],
            ..Default::default()
        };
        let a = studio.push(&other, &[]).await;
        assert_eq!(a.status, 204, "round {round}, the other tenant: {}", a.body);
    }
    let wait = Duration::from_secs(30);
    let (count, _) = prometheus
        .query("histogram_count(game_action_ack_latency_seconds)", wait)
        .await;
    assert_eq!(
        count, 3.0,
        "the valid histogram beside the bad one is committed"
    );
    let (online, _) = prometheus.query("game_players_online", wait).await;
    assert_eq!(online, 45.0, "the tenant's metrics keep flowing");
    let (matches, _) = prometheus.query("game_matches_total", wait).await;
    assert_eq!(matches, 2.0);
    let bad = prometheus.query_once("game_tick_duration_seconds").await;
    assert_eq!(
        bad.as_array().map(Vec::len),
        Some(0),
        "the inconsistent histogram reached the store: {bad}; gateway log: {}",
        gw.log_text()
    );
}

/// What the scripted endpoint saw: for each request, whether its signature verified,
/// its credential scope, and its decompressed body.
#[derive(Default)]
struct Seen {
    requests: Vec<(bool, String, Vec<u8>)>,
}

/// Answers, in order: 503 with `Retry-After: 1`, then 204, then 400, then 204 forever.
async fn scripted_endpoint(listener: tokio::net::TcpListener, seen: Arc<Mutex<Seen>>) {
    support::serve_fn(listener, move |parts, body| {
        let seen = seen.clone();
        async move {
            let (valid, scope) = sigv4::verify(&parts, &body, "test");
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .unwrap_or_default();
            let n = {
                let mut seen = seen.lock().expect("lock");
                seen.requests.push((valid, scope, raw));
                seen.requests.len()
            };
            let (status, text, retry) = match (valid, n) {
                (false, _) => (403, "signature does not match", None),
                (true, 1) => (503, "warming up", Some("1")),
                (true, 3) => (400, "out of order sample", None),
                _ => (204, "", None),
            };
            let mut resp = http::Response::new(Full::new(Bytes::from(text)));
            *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
            if let Some(r) = retry {
                resp.headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static(r));
            }
            Ok(resp)
        }
    })
    .await;
}

#[tokio::test]
async fn requests_are_sigv4_signed_retried_after_503_and_a_400_is_passed_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(scripted_endpoint(listener, seen.clone()));

    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let sink = format!(
        "{{ kind: remote_write, url: \"http://{endpoint}/workspaces/ws-1/api/v1/remote_write\", \
         sigv4: {{ region: eu-west-1, service: aps }} }}"
    );
    let gw = Gateway::start_with_env(
        dir.path(),
        port,
        &gateway_config(dir.path(), port, &sink),
        AWS_TEST_ENV,
    );
    let mut c = client(&pki, port).await;

    let first = WriteRequest {
        timeseries: vec![series("game_players_online", &[("shard_id", "1")], 5.0)],
        ..Default::default()
    };
    let started = Instant::now();
    let answer = c.push(&first, &[]).await;
    assert_eq!(
        answer.status,
        204,
        "{}; log: {}",
        answer.body,
        gw.log_text()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the endpoint's Retry-After: 1 was not obeyed ({:?})",
        started.elapsed()
    );

    let second = WriteRequest {
        timeseries: vec![series("game_players_online", &[("shard_id", "2")], 6.0)],
        ..Default::default()
    };
    let answer = c.push(&second, &[]).await;
    assert_eq!(
        answer.status, 400,
        "the endpoint's 400 reaches the client: {}",
        answer.body
    );
    assert!(
        answer.body.contains("out of order sample"),
        "{}",
        answer.body
    );

    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.requests.len(),
        3,
        "503 retried once, then the second push"
    );
    for (valid, scope, _) in &seen.requests {
        assert!(
            valid,
            "a request whose signature did not verify (scope {scope})"
        );
        assert!(
            scope.ends_with("/eu-west-1/aps/aws4_request"),
            "scope {scope}"
        );
        assert!(scope.starts_with("test/"), "scope {scope}");
    }
    let decoded =
        |i: usize| WriteRequest::decode(seen.requests[i].2.as_slice()).expect("a WriteRequest");
    assert_eq!(decoded(0), decoded(1), "the retry carries the same request");
    let got = decoded(1);
    assert_eq!(got.timeseries.len(), 1);
    assert!(
        got.timeseries[0]
            .labels
            .iter()
            .any(|l| l.name == "shard_id" && l.value == "1"),
        "{got:?}"
    );
    assert_eq!(got.timeseries[0].samples[0].value, 5.0);
}

/// SigV4 as the AWS documentation specifies it, written here from the specification
/// so the gateway's signing (a library) is checked by an independent implementation.
mod sigv4 {
    use ring::{digest, hmac};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn mac(key: &[u8], data: &str) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
            .as_ref()
            .to_vec()
    }

    /// Whether the request's `Authorization` verifies with `secret`, and its
    /// credential scope (`AKID/date/region/service/aws4_request`).
    pub(super) fn verify(
        parts: &http::request::Parts,
        body: &[u8],
        secret: &str,
    ) -> (bool, String) {
        let Some(auth) = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        else {
            return (false, "no Authorization header".into());
        };
        let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
            return (false, format!("not SigV4: {auth}"));
        };
        let field = |name: &str| {
            fields
                .split(", ")
                .find_map(|f| f.strip_prefix(name).and_then(|f| f.strip_prefix('=')))
                .unwrap_or("")
                .to_string()
        };
        let (credential, signed, signature) = (
            field("Credential"),
            field("SignedHeaders"),
            field("Signature"),
        );
        let scope: Vec<&str> = credential.splitn(2, '/').collect();
        let Some(scope_tail) = scope.get(1) else {
            return (false, credential);
        };
        let mut scope_parts = scope_tail.split('/');
        let (date, region, service) = (
            scope_parts.next().unwrap_or(""),
            scope_parts.next().unwrap_or(""),
            scope_parts.next().unwrap_or(""),
        );
        let amz_date = parts
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut canonical_headers = String::new();
        for name in signed.split(';') {
            let value = if name == "host" {
                parts
                    .headers
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            } else {
                parts
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            canonical_headers.push_str(&format!("{name}:{value}\n"));
        }
        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            parts.method,
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            canonical_headers,
            signed,
            hex(digest::digest(&digest::SHA256, body).as_ref())
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope_tail}\n{}",
            hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
        );
        let k_date = mac(format!("AWS4{secret}").as_bytes(), date);
        let k_region = mac(&k_date, region);
        let k_service = mac(&k_region, service);
        let k_signing = mac(&k_service, "aws4_request");
        let expected = hex(&mac(&k_signing, &string_to_sign));
        (expected == signature, credential)
    }
}
