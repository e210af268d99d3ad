//! The agent's metrics path and delivery, end to end: the real binary, a scripted
//! gateway, real TLS.

mod support;

use std::time::Duration;

use edge_schema::proto::prometheus::WriteRequest;
use support::{Agent, Certs, Gateway, Reply, all_series, free_port, label, now_ms, series};

/// Generous: every wait returns as soon as its condition holds; the bound only ends a
/// run that is stuck, never a slow one.
const WAIT: Duration = Duration::from_secs(120);

fn has_series(received: &[support::Received], name: &str, value: f64) -> bool {
    all_series(received).iter().any(|ts| {
        label(ts, "__name__") == Some(name) && ts.samples.iter().any(|s| s.value == value)
    })
}

#[tokio::test]
async fn a_forbidden_label_never_leaves_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::start("127.0.0.1:0", vec![]).await;
    let agent = Agent::start(dir.path(), &[gw.url("http")], "");
    let t = now_ms();
    let status = agent.push(&WriteRequest {
        timeseries: vec![
            series(
                "game_errors_total",
                &[("kind", "crash"), ("player_id", "p-4242")],
                3.0,
                t,
            ),
            series("game_errors_total", &[("kind", "desync")], 5.0, t),
        ],
        ..Default::default()
    });
    assert_eq!(status, 204);
    let got = gw
        .wait_for("the clean neighbour and the overflow series", WAIT, |r| {
            has_series(r, "game_errors_total", 5.0) && has_series(r, "game_errors_total", 3.0)
        })
        .await;
    for ts in all_series(&got) {
        for l in &ts.labels {
            assert_ne!(
                l.name, "player_id",
                "a forbidden label left the agent: {ts:?}"
            );
            assert!(
                !l.value.contains("p-4242"),
                "a player id left the agent: {ts:?}"
            );
        }
        if label(ts, "__name__") == Some("game_errors_total") {
            assert_eq!(
                label(ts, "region"),
                Some("test-1"),
                "host labels on every series"
            );
        }
    }
    let overflow = all_series(&got)
        .into_iter()
        .find(|ts| ts.samples.iter().any(|s| s.value == 3.0))
        .expect("the refused series' value");
    assert_eq!(label(overflow, "edge_overflow"), Some("true"));
    assert_eq!(
        label(overflow, "kind"),
        None,
        "an overflow series keeps no label"
    );
    assert_eq!(
        agent.metric("edge_series_rejected_total{reason=\"forbidden_label\",stage=\"agent\"}"),
        Some(1.0)
    );
    assert!(
        agent.log_text().contains("game_errors_total"),
        "the refusal is logged with the metric's name"
    );
}

#[tokio::test]
async fn series_past_the_budget_fold_into_overflow_while_the_first_keep_flowing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("catalog.yaml"),
        "metrics:\n  - name: test_items_total\n    type: counter\n    help: Items.\n    labels:\n      n: { max_cardinality: 1000 }\n",
    )
    .expect("catalog");
    let gw = Gateway::start("127.0.0.1:0", vec![]).await;
    let extra = format!(
        "catalog: {}\nseries_budget: 300\n",
        dir.path().join("catalog.yaml").display()
    );
    let agent = Agent::start(dir.path(), &[gw.url("http")], &extra);
    // The agent's own series count too: see how many there are before pushing.
    gw.wait_for("a first batch", WAIT, |r| r.len() >= 2).await;
    let own = agent
        .metric("edge_active_series")
        .expect("edge_active_series") as usize;
    let reserve = 300 / 20;
    let room = 300 - reserve - own;
    let push = |round: f64| {
        let t = now_ms();
        let timeseries = (0..room + 50)
            .map(|n| series("test_items_total", &[("n", &n.to_string())], round, t))
            .collect();
        agent.push(&WriteRequest {
            timeseries,
            ..Default::default()
        })
    };
    assert_eq!(push(1.0), 204);
    let overflow_value = 50.0;
    let got = gw
        .wait_for("the overflow series", WAIT, |r| {
            all_series(r).iter().any(|ts| {
                label(ts, "__name__") == Some("test_items_total")
                    && label(ts, "edge_overflow") == Some("true")
            })
        })
        .await;
    let items: Vec<_> = all_series(&got)
        .into_iter()
        .filter(|ts| label(ts, "__name__") == Some("test_items_total"))
        .collect();
    let ordinary: std::collections::BTreeSet<usize> = items
        .iter()
        .filter_map(|ts| label(ts, "n")?.parse().ok())
        .collect();
    assert_eq!(
        ordinary,
        (0..room).collect(),
        "exactly the first {room} series pass"
    );
    let overflow = items
        .iter()
        .find(|ts| label(ts, "edge_overflow") == Some("true"))
        .expect("overflow series");
    assert_eq!(
        overflow.samples[0].value, overflow_value,
        "the 50 refused series' sum"
    );
    assert_eq!(
        agent.metric("edge_series_rejected_total{reason=\"budget\",stage=\"agent\"}"),
        Some(50.0)
    );
    let active = agent.metric("edge_active_series").expect("active");
    assert!(active <= 300.0, "{active} active series exceed the budget");
    // The first series keep flowing on the next push.
    assert_eq!(push(2.0), 204);
    gw.wait_for("the second round of the first series", WAIT, |r| {
        all_series(r)
            .iter()
            .any(|ts| label(ts, "n") == Some("0") && ts.samples.iter().any(|s| s.value == 2.0))
    })
    .await;
}

#[tokio::test]
async fn a_429_with_retry_after_delays_the_next_attempt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::start(
        "127.0.0.1:0",
        vec![Reply::status(429).header("retry-after", "2")],
    )
    .await;
    let agent = Agent::start(dir.path(), &[gw.url("http")], "");
    let got = gw.wait_for("a retry", WAIT, |r| r.len() >= 2).await;
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(got[0].body, got[1].body, "the same batch is retried");
    assert_eq!(
        agent.metric("edge_send_responses_total{code=\"429\",stream=\"metrics\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn an_http_date_retry_after_is_obeyed_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = std::time::SystemTime::now() + Duration::from_secs(3);
    let gw = Gateway::start(
        "127.0.0.1:0",
        vec![Reply::status(503).header("retry-after", httpdate::fmt_http_date(at))],
    )
    .await;
    let _agent = Agent::start(dir.path(), &[gw.url("http")], "");
    let got = gw.wait_for("a retry", WAIT, |r| r.len() >= 2).await;
    let waited = got[1].at - got[0].at;
    // The date has one-second resolution.
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
    assert_eq!(got[0].body, got[1].body);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::start("127.0.0.1:0", vec![Reply::status(400)]).await;
    let agent = Agent::start(dir.path(), &[gw.url("http")], "");
    let got = gw
        .wait_for("three more batches", WAIT, |r| r.len() >= 4)
        .await;
    for later in &got[1..] {
        assert_ne!(later.body, got[0].body, "the refused batch was sent again");
    }
    assert_eq!(
        agent.metric("edge_send_dropped_batches_total{stream=\"metrics\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_series_a_store_would_refuse_is_dropped_alone_and_remote_write_2_is_a_415() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = Gateway::start("127.0.0.1:0", vec![]).await;
    let agent = Agent::start(dir.path(), &[gw.url("http")], "");
    let t = now_ms();
    let year_3000 = 32_503_680_000_000;
    let request = WriteRequest {
        timeseries: vec![
            series("game_errors_total", &[("kind", "desync")], 7.0, t),
            series("game_errors_total", &[("kind", "crash")], 9.0, year_3000),
        ],
        ..Default::default()
    };
    let v2 = agent.push_with(
        &request,
        &[
            ("content-encoding", "snappy"),
            (
                "content-type",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            ),
        ],
    );
    assert_eq!(v2, 415, "a 2.0 body is never answered 2xx unread");
    assert_eq!(
        agent.push(&request),
        200,
        "a dropped series is named in a 200"
    );
    let got = gw
        .wait_for("the valid neighbour", WAIT, |r| {
            has_series(r, "game_errors_total", 7.0)
        })
        .await;
    assert!(
        all_series(&got)
            .iter()
            .all(|ts| ts.samples.iter().all(|s| s.timestamp < year_3000)),
        "the year-3000 sample left the agent"
    );
    assert_eq!(
        agent.metric("edge_series_invalid_total{reason=\"too_far_in_future\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_401_or_403_holds_the_queue_until_the_gateway_accepts_the_agent_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The gateway's identity config is wrong for four attempts, then fixed.
    let gw = Gateway::start(
        "127.0.0.1:0",
        vec![
            Reply::status(401),
            Reply::status(403),
            Reply::status(401),
            Reply::status(403),
        ],
    )
    .await;
    let agent = Agent::start(dir.path(), &[gw.url("http")], "");
    let got = gw
        .wait_for("the refused batch and one more", WAIT, |r| r.len() >= 6)
        .await;
    for attempt in &got[1..5] {
        assert_eq!(
            attempt.body, got[0].body,
            "the refused batch is sent again until it is accepted"
        );
    }
    assert_ne!(got[5].body, got[0].body, "then the queue moves on");
    assert_eq!(
        agent.metric("edge_send_dropped_batches_total{stream=\"metrics\"}"),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_gateway_down_for_a_while_receives_every_queued_batch_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api/v1/push");
    let agent = Agent::start(dir.path(), &[url], "");
    // Nothing listens: batches pile up in the queue.
    let deadline = std::time::Instant::now() + WAIT;
    while agent
        .metric("edge_queue_records{class=\"metrics\"}")
        .unwrap_or(0.0)
        < 4.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "batches are not queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gw = Gateway::start(&format!("127.0.0.1:{port}"), vec![]).await;
    let got = gw
        .wait_for("the backlog", Duration::from_secs(60), |r| r.len() >= 5)
        .await;
    let stamps: Vec<i64> = got
        .iter()
        .map(|r| {
            r.request
                .timeseries
                .iter()
                .find(|ts| label(ts, "__name__") == Some("edge_active_series"))
                .and_then(|ts| ts.samples.first())
                .map(|s| s.timestamp)
                .expect("every batch carries the agent's own series")
        })
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "batches out of order: {stamps:?}"
    );
}

#[tokio::test]
async fn kill_9_between_queueing_and_sending_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api/v1/push");
    let agent = Agent::start(dir.path(), &[url], "");
    let listen = agent.listen;
    let marker = 424_242.0;
    agent.push(&WriteRequest {
        timeseries: vec![series("game_instances_active", &[], marker, now_ms())],
        ..Default::default()
    });
    // Wait for the batch with the marker to be queued (the next cycle), then kill.
    let queued_before = agent
        .metric("edge_queue_records{class=\"metrics\"}")
        .unwrap_or(0.0);
    let deadline = std::time::Instant::now() + WAIT;
    while agent
        .metric("edge_queue_records{class=\"metrics\"}")
        .unwrap_or(0.0)
        < queued_before + 2.0
    {
        assert!(std::time::Instant::now() < deadline, "nothing queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.kill_9();
    let gw = Gateway::start(&format!("127.0.0.1:{port}"), vec![]).await;
    let _agent = Agent::restart(dir.path(), listen);
    gw.wait_for("the batch queued before kill -9", WAIT, |r| {
        has_series(r, "game_instances_active", marker)
    })
    .await;
}

#[tokio::test]
async fn mtls_over_http2_with_failover_and_certificate_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = Certs::new(dir.path());
    let gw = Gateway::start_tls(&certs, vec![]).await;
    let first_cert = std::fs::read(dir.path().join("agent.crt")).expect("cert");
    // The first URL has nothing behind it: the agent skips it.
    let dead = format!("https://localhost:{}/api/v1/push", free_port());
    let _agent = Agent::start(dir.path(), &[dead, gw.url("https")], "");
    let got = gw
        .wait_for("a batch over mTLS", WAIT, |r| !r.is_empty())
        .await;
    assert_eq!(got[0].version, http::Version::HTTP_2);
    let pem = String::from_utf8(first_cert).expect("pem");
    assert!(pem.contains("BEGIN CERTIFICATE"));
    let first_der = got[0].client_cert.clone().expect("a client certificate");
    // Renew the certificate: new connections present the new one, no restart.
    let renewed = certs.issue_client("gs-1-renewed");
    assert_ne!(renewed, first_der);
    gw.wait_for("a batch under the renewed certificate", WAIT, |r| {
        r.iter()
            .any(|b| b.client_cert.as_deref() == Some(renewed.as_slice()))
    })
    .await;
}

#[tokio::test]
async fn sigterm_flushes_the_current_batch_to_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api/v1/push");
    let agent = Agent::start(dir.path(), &[url], "");
    let listen = agent.listen;
    let marker = 777_777.0;
    agent.push(&WriteRequest {
        timeseries: vec![series("game_player_capacity", &[], marker, now_ms())],
        ..Default::default()
    });
    // Straight away, before the next cycle could run.
    let status = agent.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let gw = Gateway::start(&format!("127.0.0.1:{port}"), vec![]).await;
    let _agent = Agent::restart(dir.path(), listen);
    gw.wait_for("the batch flushed at SIGTERM", WAIT, |r| {
        has_series(r, "game_player_capacity", marker)
    })
    .await;
}
