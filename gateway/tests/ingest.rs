//! The real gateway over real mTLS, with certificates made per test: identity, policy,
//! quotas, reload, and what reaches the file sink.

mod support;

use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::WriteRequest;
use prost::Message;
use support::{Client, Gateway, Pki, config_text, free_port, series, spooled_series, tls_config};

const TENANTS: &str = "  default: { samples_rate_limit: 100000, burst: 200000 }\n  \
                       game: { samples_rate_limit: 100, burst: 200 }\n  \
                       studio: { samples_rate_limit: 100000, burst: 200000, max_label_names: 6 }";

struct Setup {
    _dir: tempfile::TempDir,
    pki: Pki,
    gw: Gateway,
}

fn setup(tenants: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let gw = Gateway::start(dir.path(), port, &config_text(dir.path(), port, tenants));
    Setup { _dir: dir, pki, gw }
}

impl Setup {
    async fn client(&self, cn: &str, uri: Option<&str>) -> Client {
        let cert = self.pki.client(cn, uri);
        Client::connect(self.gw.port, tls_config(&self.pki.ca_der, Some(&cert)))
            .await
            .expect("connect")
    }
}

#[tokio::test]
async fn a_client_without_a_certificate_or_from_another_ca_is_refused_at_the_handshake() {
    let s = setup(TENANTS);
    let none = Client::connect(s.gw.port, tls_config(&s.pki.ca_der, None)).await;
    // TLS 1.3 reports the refusal at the first read: the handshake or the first
    // request fails; neither gets an answer.
    match none {
        Err(_) => {}
        Ok(mut c) => assert!(
            c.request("GET", "/healthz", &[], Vec::new()).await.is_err(),
            "a client without a certificate got an answer"
        ),
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let other = Pki::new(dir.path(), "other");
    let stranger = other.client("gs-1", None);
    match Client::connect(s.gw.port, tls_config(&s.pki.ca_der, Some(&stranger))).await {
        Err(_) => {}
        Ok(mut c) => assert!(
            c.request("GET", "/healthz", &[], Vec::new()).await.is_err(),
            "a certificate from another CA got an answer"
        ),
    }
    let mut good = s.client("gs-1", None).await;
    let a = good
        .request("GET", "/healthz", &[], Vec::new())
        .await
        .expect("healthz");
    assert_eq!(a.status, 200);
    let refused = good
        .metric("edge_gateway_tls_handshake_failures_total")
        .await
        .unwrap_or(0.0);
    assert!(refused >= 2.0, "handshake failures counted: {refused}");
}

#[tokio::test]
async fn a_tenant_header_the_certificate_does_not_allow_is_refused() {
    let s = setup(TENANTS);
    let mut c = s.client("gs-1", None).await;
    let req = WriteRequest {
        timeseries: vec![series("edge_test_total", &[("region", "eu")], 1.0)],
        ..Default::default()
    };
    let a = c.push(&req, &[("x-scope-orgid", "studio")]).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body.contains("studio") && a.body.contains("game"),
        "{}",
        a.body
    );
    let a = c.push(&req, &[("x-scope-orgid", "game")]).await;
    assert_eq!(a.status, 204, "{}", a.body);
    // A certificate that maps to no tenant.
    let mut nobody = s.client("lobby-1", None).await;
    assert_eq!(nobody.push(&req, &[]).await.status, 401);
    // The SPIFFE SAN names the tenant and the host.
    let mut spiffe = s
        .client("whatever", Some("spiffe://obs.internal/tenant/studio/gs-9"))
        .await;
    assert_eq!(spiffe.push(&req, &[]).await.status, 204);
    let keys: Vec<String> = spooled_series(&s.gw.spool)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(keys.contains(&"game/gs-1".to_string()), "{keys:?}");
    assert!(keys.contains(&"studio/gs-9".to_string()), "{keys:?}");
}

#[tokio::test]
async fn a_forbidden_label_never_reaches_the_sink_while_its_neighbours_do() {
    let s = setup(TENANTS);
    let mut c = s
        .client("whatever", Some("spiffe://obs.internal/tenant/studio/gs-2"))
        .await;
    let req = WriteRequest {
        timeseries: vec![
            series("edge_good_total", &[("region", "eu")], 1.0),
            series("edge_bad_total", &[("player_id", "p-12345678")], 1.0),
            series(
                "edge_wide_total",
                &[
                    ("a", "1"),
                    ("b", "2"),
                    ("c", "3"),
                    ("d", "4"),
                    ("e", "5"),
                    ("f", "6"),
                ],
                1.0,
            ),
            series("edge_also_good_total", &[("region", "us")], 2.0),
        ],
        ..Default::default()
    };
    let a = c.push(&req, &[]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body.contains("forbidden_label") && a.body.contains("player_id"),
        "{}",
        a.body
    );
    assert!(a.body.contains("max_label_names_per_series"), "{}", a.body);
    let stored = spooled_series(&s.gw.spool);
    let names: Vec<String> = stored
        .iter()
        .map(|(_, s)| s.labels[0].value.clone())
        .collect();
    assert_eq!(names, ["edge_good_total", "edge_also_good_total"]);
    let raw = std::fs::read_dir(s.gw.spool.join("metrics"))
        .expect("spool")
        .flatten()
        .map(|e| std::fs::read(e.path()).expect("segment"))
        .collect::<Vec<_>>()
        .concat();
    assert!(
        !raw.windows(b"player_id".len()).any(|w| w == b"player_id"),
        "the forbidden label is in the spool"
    );
    let discarded = c
        .metric(
            "edge_gateway_discarded_samples_total{tenant=\"studio\",reason=\"forbidden_label\"}",
        )
        .await;
    assert_eq!(discarded, Some(1.0));
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_and_retry_after_works_while_another_tenant_flows() {
    let s = setup(TENANTS);
    // Tenant game: 100 samples/s, burst 200.
    let mut game = s.client("gs-1", None).await;
    let mut studio = s
        .client("x", Some("spiffe://obs.internal/tenant/studio/gs-3"))
        .await;
    let batch = |n: usize, tag: &str| WriteRequest {
        timeseries: (0..n)
            .map(|i| {
                series(
                    "edge_rate_total",
                    &[("shard_id", &format!("{tag}{i}"))],
                    1.0,
                )
            })
            .collect(),
        ..Default::default()
    };
    assert_eq!(game.push(&batch(150, "a"), &[]).await.status, 204);
    let refused = game.push(&batch(150, "b"), &[]).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let retry: u64 = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=3).contains(&retry), "Retry-After {retry}");
    // Meanwhile the other tenant is not slowed.
    for i in 0..5 {
        let a = studio.push(&batch(150, &format!("s{i}-")), &[]).await;
        assert_eq!(a.status, 204, "{}", a.body);
    }
    // Obeyed, the same request is accepted.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let a = game.push(&batch(150, "b"), &[]).await;
    assert_eq!(a.status, 204, "after Retry-After: {}", a.body);
    // A request that can never fit is a 413 with a reason, not a 429 loop.
    let too_big = game.push(&batch(201, "c"), &[]).await;
    assert_eq!(too_big.status, 413, "{}", too_big.body);
    assert!(too_big.body.contains("never fit"), "{}", too_big.body);
    assert_eq!(
        game.metric("tenant_over_limit_total{tenant=\"game\",limit=\"ingestion_rate\"}")
            .await,
        Some(1.0)
    );
    // The cadence hint rides on every answer.
    assert_eq!(
        refused
            .headers
            .get("edge-cadence")
            .and_then(|v| v.to_str().ok()),
        Some("10s")
    );
}

/// A distinct shard name per number that does not look like an identifier (no run of
/// seven digits), which the gateway would refuse as `pii_label_value`.
fn shard_name(n: usize) -> String {
    format!("s{}-{}", n / 1000, n % 1000)
}

#[tokio::test]
async fn the_2_000_001st_series_is_refused() {
    let s = setup("  default: { samples_rate_limit: 100000000, burst: 100000000 }");
    let mut c = s.client("gs-7", None).await;
    let started = Instant::now();
    const PER_REQUEST: usize = 50_000;
    for r in 0..40 {
        let req = WriteRequest {
            timeseries: (0..PER_REQUEST)
                .map(|i| {
                    series(
                        "edge_card_total",
                        &[("shard_id", &shard_name(r * PER_REQUEST + i))],
                        1.0,
                    )
                })
                .collect(),
            ..Default::default()
        };
        let a = c.push(&req, &[]).await;
        assert_eq!(a.status, 204, "request {r}: {}", a.body);
    }
    let extra = WriteRequest {
        timeseries: vec![
            series(
                "edge_card_total",
                &[("shard_id", &shard_name(2_000_000))],
                1.0,
            ),
            // A series already active is still accepted at the limit.
            series("edge_card_total", &[("shard_id", &shard_name(0))], 2.0),
        ],
        ..Default::default()
    };
    let a = c.push(&extra, &[]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("per_user_series_limit"), "{}", a.body);
    assert!(
        a.body
            .contains("1 samples of the other series were accepted"),
        "{}",
        a.body
    );
    assert_eq!(
        c.metric(
            "edge_gateway_discarded_samples_total{tenant=\"game\",reason=\"per_user_series_limit\"}"
        )
        .await,
        Some(1.0)
    );
    eprintln!("2,000,001 series in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_yaml_edit_changes_a_limit_without_a_restart_and_a_broken_edit_changes_nothing() {
    let s = setup(TENANTS);
    let mut c = s
        .client("x", Some("spiffe://obs.internal/tenant/studio/gs-4"))
        .await;
    let five = WriteRequest {
        timeseries: vec![series(
            "edge_reload_total",
            &[
                ("az", "1"),
                ("build_id", "2"),
                ("cluster", "3"),
                ("region", "4"),
            ],
            1.0,
        )],
        ..Default::default()
    };
    assert_eq!(
        c.push(&five, &[]).await.status,
        204,
        "5 labels under a limit of 6"
    );
    let config = std::fs::read_to_string(&s.gw.config).expect("config");
    let tighter = config.replace("max_label_names: 6", "max_label_names: 3");
    assert_ne!(config, tighter);
    std::fs::write(&s.gw.config, &tighter).expect("edit");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let a = c.push(&five, &[]).await;
        if a.status == 400 {
            assert!(a.body.contains("max_label_names_per_series"), "{}", a.body);
            break;
        }
        assert!(Instant::now() < deadline, "the new limit never took effect");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reloads = c
        .metric("edge_gateway_config_reloads_total{result=\"success\"}")
        .await;
    assert!(reloads.is_some_and(|n| n >= 2.0), "{reloads:?}");
    // A broken edit (an unknown key, and a limit that would loosen things) is refused.
    let broken = tighter.replace("max_label_names: 3", "max_label_names: 30, bogus_key: 1");
    std::fs::write(&s.gw.config, broken).expect("edit");
    // Generous: the poll runs every second or so, and the machine may be busy.
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.metric("edge_gateway_config_last_reload_successful").await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the broken config was not noticed within 120 s: {}",
            s.gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failures = "edge_gateway_config_reloads_total{result=\"failure\"}";
    assert_eq!(c.metric(failures).await, Some(1.0));
    // A SIGHUP over the same broken files is the same refusal: counted once.
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &s.gw.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    while !s.gw.log_text().contains("unchanged and still refused") {
        assert!(
            Instant::now() < deadline,
            "the SIGHUP was not handled within 120 s: {}",
            s.gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        c.metric(failures).await,
        Some(1.0),
        "one refusal, counted once"
    );
    assert_eq!(
        c.push(&five, &[]).await.status,
        400,
        "the old limit stays in force"
    );
    assert!(
        s.gw.log_text().contains("bogus_key"),
        "the log says what is wrong"
    );
    // The connection survived both reloads.
    let a = c
        .request("GET", "/healthz", &[], Vec::new())
        .await
        .expect("healthz");
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn the_json_api_takes_a_bearer_token_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = Pki::new(d, "test");
    let port = free_port();
    // sha256("s3cret")
    let config = format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         tls: {{ cert: {d}/test-server.crt, key: {d}/test-server.key, client_ca: {d}/test-ca.crt, client_auth: optional }}\n\
         identities: {{ tokens: [ {{ sha256: \"a9e5c6a0cd3a5e8b4a3ed8c3b5c2f2e4d1e2c0e83b6a55a4f1b7a2d0e3d6c8b1\", tenant: wrong }}, {{ sha256: \"{hash}\", tenant: studio }} ] }}\n\
         sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }} }}\n",
        d = d.display(),
        hash = sha256_hex(b"s3cret"),
    );
    let mut gw = Gateway::start(d, port, &config);
    let mut c = Client::connect(port, tls_config(&pki.ca_der, None))
        .await
        .expect("a client without a certificate may connect when client_auth is optional");
    let body = br#"[{"timestamp":"2026-11-23T12:00:00Z","level":"INFO","service":"lobby","instance":"i-1","message":"hello","metadata":{"k":"v"}},{"message":"two"}]"#;
    let a = c
        .request(
            "POST",
            "/api/v1/logs",
            &[
                ("authorization", "Bearer s3cret"),
                ("content-type", "application/json"),
            ],
            body.to_vec(),
        )
        .await
        .expect("post");
    assert_eq!(a.status, 200, "{}", a.body);
    let answer: serde_json::Value = serde_json::from_str(&a.body).expect("json answer");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(answer["ingestedCount"], 2);
    let a = c
        .request(
            "POST",
            "/api/v1/logs",
            &[("authorization", "Bearer nope")],
            body.to_vec(),
        )
        .await
        .expect("post");
    assert_eq!(a.status, 401, "{}", a.body);
    let a = c
        .request(
            "POST",
            "/api/v1/logs",
            &[("authorization", "Bearer s3cret")],
            b"{not json".to_vec(),
        )
        .await
        .expect("post");
    assert_eq!(a.status, 400);
    assert!(a.body.contains("not JSON"), "{}", a.body);
    let (records, _) = edge_gateway::sink::file::read_spool(&gw.spool, "logs").expect("spool");
    assert_eq!(records.len(), 2);
    let doc: serde_json::Value = serde_json::from_slice(&records[0].data).expect("doc");
    assert_eq!(doc["tenant"], "studio");
    assert_eq!(doc["host"], "i-1");
    assert_eq!(doc["level"], "info");
    let ready = c
        .request("GET", "/ready", &[], Vec::new())
        .await
        .expect("ready");
    assert_eq!(ready.status, 200);
    // SIGTERM: the gateway stops and exits 0.
    let pid = gw.child.id();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = gw.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not stop: {}",
            gw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit {status:?}: {}", gw.log_text());
    assert!(gw.log_text().contains("stopped"), "{}", gw.log_text());
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Posts `body` over HTTP/1.1 (ALPN `http/1.1`) and returns the status the client read.
async fn post_http1(
    s: &Setup,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<u16, String> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let cert = s.pki.client("gs-1", None);
    let mut config = (*tls_config(&s.pki.ca_der, Some(&cert))).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

#[tokio::test]
async fn an_oversize_body_gets_a_413_the_client_can_read_over_http1_and_http2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let config = format!(
        "{}limits: {{ max_body_bytes: 1MiB }}\n",
        config_text(dir.path(), port, TENANTS)
    );
    let gw = Gateway::start(dir.path(), port, &config);
    let s = Setup { _dir: dir, pki, gw };
    let big = vec![0x42u8; 3 << 20];
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "snappy"),
    ];
    let mut h2 = s.client("gs-1", None).await;
    let answer = h2
        .request("POST", "/api/v1/push", &headers, big.clone())
        .await
        .expect("an HTTP/2 client reads the answer, not a reset");
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(answer.body.contains("over the limit"), "{}", answer.body);
    assert_eq!(
        post_http1(&s, "/api/v1/push", &headers, big).await,
        Ok(413),
        "an HTTP/1.1 client reads the answer, not a reset"
    );
    // A remote_write 2.0 body is refused by name, never answered 2xx unread.
    let v2 = h2
        .request(
            "POST",
            "/api/v1/push",
            &[
                (
                    "content-type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                ),
                ("content-encoding", "snappy"),
            ],
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\x00")
                .expect("snappy"),
        )
        .await
        .expect("answered");
    assert_eq!(v2.status, 415, "{}", v2.body);
    assert!(
        v2.body.contains("io.prometheus.write.v2.Request"),
        "{}",
        v2.body
    );
}

#[tokio::test]
async fn every_series_a_store_would_refuse_is_refused_alone_and_a_body_that_does_not_decode_commits_nothing()
 {
    use edge_schema::proto::prometheus::histogram::Count;
    use edge_schema::proto::prometheus::{BucketSpan, Histogram, Label};
    let s = setup(TENANTS);
    let mut c = s
        .client("whatever", Some("spiffe://obs.internal/tenant/studio/gs-2"))
        .await;
    let mut year_3000 = series("edge_future_total", &[], 1.0);
    year_3000.samples[0].timestamp = 32_503_680_000_000;
    let mut bad_histogram = series("edge_tick_seconds", &[], 0.0);
    bad_histogram.histograms.push(Histogram {
        count: Some(Count::CountInt(1)),
        schema: 3,
        positive_spans: vec![BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![1],
        timestamp: bad_histogram.samples[0].timestamp,
        ..Default::default()
    });
    bad_histogram.samples.clear();
    let mut duplicate = series("edge_twice_total", &[("region", "eu")], 1.0);
    duplicate.labels.push(Label {
        name: "region".into(),
        value: "us".into(),
    });
    let req = WriteRequest {
        timeseries: vec![
            series("edge_first_good_total", &[("region", "eu")], 1.0),
            series("edge.bad.name", &[], 1.0),
            duplicate,
            series("edge_unsorted_total", &[("region", "eu"), ("az", "a")], 1.0),
            year_3000,
            bad_histogram,
            series("edge_pii_total", &[("shard_id", "203.0.113.7")], 1.0),
            series("edge_last_good_total", &[("region", "us")], 2.0),
        ],
        ..Default::default()
    };
    let a = c.push(&req, &[]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    for reason in [
        "metric_name_invalid",
        "duplicate_label_names",
        "labels_not_sorted",
        "too_far_in_future",
        "invalid_native_histogram",
        "pii_label_value",
    ] {
        assert!(a.body.contains(reason), "{reason} missing from: {}", a.body);
    }
    assert!(
        !a.body.contains("203.0.113.7"),
        "the answer repeats a PII value"
    );
    let names = |stored: &[(String, edge_schema::proto::prometheus::TimeSeries)]| -> Vec<String> {
        stored
            .iter()
            .map(|(_, s)| s.labels[0].value.clone())
            .collect()
    };
    assert_eq!(
        names(&spooled_series(&s.gw.spool)),
        ["edge_first_good_total", "edge_last_good_total"],
        "exactly the valid neighbours are committed"
    );

    // A series with a label field of the wrong wire type does not decode: the whole
    // body is a 400 that says so, and nothing of it is committed, not even the valid
    // series before it.
    let good = series("edge_before_bad_total", &[("region", "eu")], 1.0);
    let mut body = WriteRequest {
        timeseries: vec![good],
        ..Default::default()
    }
    .encode_to_vec();
    // timeseries (field 1, length 2) holding labels (field 1) as a varint: 0x08 0x01.
    body.extend_from_slice(&[0x0a, 0x02, 0x08, 0x01]);
    let a = c
        .request(
            "POST",
            "/api/v1/push",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "snappy"),
            ],
            snap::raw::Encoder::new()
                .compress_vec(&body)
                .expect("snappy"),
        )
        .await
        .expect("answered");
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body.contains("not a remote_write WriteRequest") && a.body.contains("nothing"),
        "the answer says the body does not decode and nothing was committed: {}",
        a.body
    );
    assert_eq!(
        names(&spooled_series(&s.gw.spool)),
        ["edge_first_good_total", "edge_last_good_total"],
        "nothing of the malformed body is committed"
    );
}

#[tokio::test]
async fn a_label_outside_the_allowlist_from_a_client_that_skips_the_agent_is_refused_while_its_neighbour_is_committed()
 {
    let s = setup(TENANTS);
    let mut c = s
        .client("whatever", Some("spiffe://obs.internal/tenant/studio/gs-2"))
        .await;
    let req = WriteRequest {
        timeseries: vec![
            series("edge_first_good_total", &[("region", "eu")], 1.0),
            series("edge_session_total", &[("session_uuid", "9b2c")], 1.0),
            // Declared for its metric in the shipped catalog: allowed there only.
            series("node_cpu_seconds_total", &[("mode", "idle")], 5.0),
            series("edge_mode_total", &[("mode", "idle")], 1.0),
        ],
        ..Default::default()
    };
    let a = c.push(&req, &[]).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body.contains("label_not_allowed")
            && a.body.contains("edge_session_total")
            && a.body.contains("session_uuid"),
        "the answer names the reason, the metric and the label: {}",
        a.body
    );
    let stored = spooled_series(&s.gw.spool);
    let names: Vec<String> = stored
        .iter()
        .map(|(_, s)| s.labels[0].value.clone())
        .collect();
    assert_eq!(names, ["edge_first_good_total", "node_cpu_seconds_total"]);
    let discarded = c
        .metric(
            "edge_gateway_discarded_samples_total{tenant=\"studio\",reason=\"label_not_allowed\"}",
        )
        .await;
    assert_eq!(discarded, Some(2.0));
    // Again: the series found fine are known now and not read again; the refused ones
    // never became known, and are refused the same way.
    let again = c.push(&req, &[]).await;
    assert_eq!((again.status, again.body), (a.status, a.body));
    let names: Vec<String> = spooled_series(&s.gw.spool)
        .iter()
        .map(|(_, s)| s.labels[0].value.clone())
        .collect();
    assert_eq!(
        names,
        [
            "edge_first_good_total",
            "node_cpu_seconds_total",
            "edge_first_good_total",
            "node_cpu_seconds_total"
        ]
    );
    let discarded = c
        .metric(
            "edge_gateway_discarded_samples_total{tenant=\"studio\",reason=\"label_not_allowed\"}",
        )
        .await;
    assert_eq!(discarded, Some(4.0));
}

/// `curl` as a load balancer's health check or a scraper runs it: plain HTTP, no client
/// certificate. Its exit status, the HTTP code and the body.
fn curl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl (Debian package curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_admin_port_answers_a_check_without_a_certificate_and_the_mtls_port_still_refuses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path(), "test");
    let port = free_port();
    let admin = free_port();
    let config = format!(
        "admin_listen: 127.0.0.1:{admin}\n{}",
        config_text(dir.path(), port, TENANTS)
    );
    let gw = Gateway::start(dir.path(), port, &config);
    let base = format!("http://127.0.0.1:{admin}");
    let (ok, ready) = curl(&[&format!("{base}/ready")]);
    assert!(ok && ready.ends_with("\n200"), "{ready}");
    let (ok, healthz) = curl(&[&format!("{base}/healthz")]);
    assert!(ok && healthz.ends_with("\n200"), "{healthz}");
    let (ok, metrics) = curl(&[&format!("{base}/metrics")]);
    assert!(ok && metrics.ends_with("\n200"), "{metrics}");
    assert!(
        metrics.contains("edge_gateway_requests_total{endpoint=\"ready\",code=\"200\"} 1"),
        "the admin port counts its own requests: {metrics}"
    );
    let (ok, push) = curl(&["-X", "POST", &format!("{base}/api/v1/push")]);
    assert!(
        ok && push.ends_with("\n404"),
        "no data path on the admin port: {push}"
    );

    // The mTLS port: no certificate, no answer (the handshake fails).
    let ca = dir.path().join("test-ca.crt");
    let (ok, refused) = curl(&[
        "--cacert",
        &ca.display().to_string(),
        &format!("https://localhost:{port}/ready"),
    ]);
    assert!(
        !ok,
        "the mTLS port answered a client without a certificate: {refused}"
    );
    // With a certificate, the data port serves the data paths only.
    let cert = pki.client("gs-1", Some("spiffe://obs.internal/tenant/game/gs-1"));
    let mut c = Client::connect(gw.port, tls_config(&pki.ca_der, Some(&cert)))
        .await
        .expect("connect");
    let a = c
        .request("GET", "/metrics", &[], Vec::new())
        .await
        .expect("an answer");
    assert_eq!(a.status, 404, "{}", a.body);
}
