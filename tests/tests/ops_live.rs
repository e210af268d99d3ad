//! The operator kit on a live pipeline: a game (edge-exporter) → `edge-agent` → mTLS →
//! `edge-gateway` → Kinesis (moto) → `edge-gateway relay` → a stock Prometheus that also
//! scrapes the gateway's `/metrics` (over mTLS, until the admin listener lands), the
//! relay's and the agent's, and loads the
//! kit's rules (a test copy whose `for:` durations are seconds instead of minutes).
//!
//! Every dashboard panel query is evaluated: each parses and evaluates, and each panel of
//! a part that ran shows data. The gameplay recording rules, which promtool cannot feed
//! native histograms, give the quantiles of what the game recorded. Two alerts are then
//! triggered for real and seen firing in `/api/v1/alerts`: series over the host's budget
//! (`EdgeSeriesRefused`) and a stopped gateway, so the agent queues
//! (`EdgeAgentQueueGrowing`); neither fires before its fault.
//!
//! Waits are generous bounds derived from how long the first data took to arrive, not
//! speed judgements.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_exporter::registry::Registry;
use edge_tests::moto::Moto;
use edge_tests::procs::free_port;
use edge_tests::prometheus::Prometheus;
use edge_tests::rig::{AgentOptions, AgentRig, Certs, GatewayOptions, GatewayRig};
use serde_json::Value;

/// Panels of parts this test does not run, with why; every other panel must show data.
const NOT_RUN: &[(&str, &str, &str)] = &[
    (
        "edgepipe / Relay",
        "Retries by reason",
        "the relay's calls succeed here",
    ),
    (
        "edgepipe / Relay",
        "Records skipped by reason",
        "the target refuses nothing here",
    ),
    (
        "edgepipe / Cardinality",
        "Gateway samples refused by reason",
        "the gateway refuses nothing here",
    ),
    (
        "edgepipe / Tenants",
        "Samples refused by reason",
        "the gateway refuses nothing here",
    ),
    (
        "edgepipe / Tenants",
        "Requests over a limit (429)",
        "no tenant reaches a limit here",
    ),
    (
        "edgepipe / Tenants",
        "Log records accepted",
        "no logs are sent",
    ),
    (
        "edgepipe / Tenants",
        "Log records refused by reason",
        "no logs are sent",
    ),
];

/// rcgen's default `notAfter` (4096-01-01T00:00:00Z), which the test certificates carry.
const RCGEN_NOT_AFTER: f64 = 67_090_118_400.0;

fn ops(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(rel)
}

/// The alerts file with every `for:` scaled from minutes to seconds (`for: 10m` becomes
/// `for: 10s`): a condition must still hold over consecutive evaluations (every second
/// here), so a steady pipeline's momentary blips do not fire, but nothing waits minutes.
fn alerts_with_for_in_seconds() -> String {
    let text = std::fs::read_to_string(ops("prometheus/alerts.yaml")).expect("alerts.yaml");
    let mut n = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(value) => {
                let minutes = value
                    .strip_suffix('m')
                    .unwrap_or_else(|| panic!("`for: {value}` is not in minutes"));
                n += 1;
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}for: {minutes}s")
            }
            None => l.to_string(),
        })
        .collect();
    assert!(n >= 10, "only {n} `for:` lines found");
    out.join("\n") + "\n"
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// When Prometheus saw the alert become active (ALERTS_FOR_STATE's value), for the
/// alerts matching `selector`: the earliest.
async fn active_since(prometheus: &Prometheus, selector: &str) -> f64 {
    let result = prometheus
        .query_once(&format!("min(ALERTS_FOR_STATE{{{selector}}})"))
        .await;
    result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no ALERTS_FOR_STATE{{{selector}}}: {result}"))
}

async fn firing(prometheus: &Prometheus, alert: &str) -> Vec<Value> {
    let data = prometheus.api("/api/v1/alerts").await;
    data["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["labels"]["alertname"] == alert && x["state"] == "firing")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_on_a_live_pipeline_panels_show_data_and_two_alerts_fire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let certs = Certs::generate(d);

    let moto = Moto::start();
    moto.create_stream("metrics", 1).await;
    let gw_port = free_port();
    let agent_port = free_port();
    let relay_port = free_port();
    let prom_dir = d.join("prometheus");
    std::fs::create_dir_all(prom_dir.join("rules")).expect("dir");
    std::fs::copy(
        ops("prometheus/recording.yaml"),
        prom_dir.join("rules/recording.yaml"),
    )
    .expect("copy rules");
    std::fs::write(
        prom_dir.join("rules/alerts.yaml"),
        alerts_with_for_in_seconds(),
    )
    .expect("rules");
    let config = format!(
        "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
         rule_files: [ {p}/rules/recording.yaml, {p}/rules/alerts.yaml ]\n\
         scrape_configs:\n\
         \x20 - job_name: edge-gateway\n\
         \x20   scheme: https\n\
         \x20   tls_config: {{ ca_file: {d}/ca.crt, cert_file: {d}/agent.crt, key_file: {d}/agent.key, server_name: localhost }}\n\
         \x20   static_configs: [ {{ targets: [\"127.0.0.1:{gw_port}\"], labels: {{ region: eu-test-1 }} }} ]\n\
         \x20 - job_name: edge-relay\n\
         \x20   static_configs: [ {{ targets: [\"127.0.0.1:{relay_port}\"], labels: {{ region: eu-test-1 }} }} ]\n\
         \x20 - job_name: edge-agent\n\
         \x20   static_configs: [ {{ targets: [\"127.0.0.1:{agent_port}\"] }} ]\n",
        p = prom_dir.display(),
        d = d.display(),
    );
    let prometheus = Prometheus::start_with(&prom_dir, &config).await;

    let mut gateway = GatewayRig::start(
        &certs,
        GatewayOptions::kinesis_relay(&moto.url(), &prometheus.write_url())
            .port(gw_port)
            .relay_port(relay_port),
    );
    let agent = AgentRig::start(
        &certs,
        &gateway,
        AgentOptions::new().listen(agent_port).statsd_off(),
    );
    let logs = |gateway: &GatewayRig| {
        format!(
            "{}{}\nprometheus:\n{}",
            agent.logs(),
            gateway.logs(),
            std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default()
        )
    };

    // The game: every second, ticks of 1..=1000 ms, acks of 1..=100 ms, players,
    // overruns, actions, errors; on `flood`, 250 more series than it had.
    let stop = Arc::new(AtomicBool::new(false));
    let flood = Arc::new(AtomicBool::new(false));
    let push_url = format!("http://127.0.0.1:{agent_port}/api/v1/push");
    let game = {
        let (stop, flood) = (stop.clone(), flood.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let e = |e: edge_exporter::registry::SeriesError| e.to_string();
            let registry = Registry::new();
            let tick = registry
                .histogram("game_tick_duration_seconds", "Duration of one server tick.")
                .map_err(e)?;
            let tick = tick.with(&[("shard_id", "1")]).map_err(|r| r.to_string())?;
            let ack = registry
                .histogram("game_action_ack_latency_seconds", "Action to ack.")
                .map_err(e)?;
            let ack = ack.with(&[("action", "move")]).map_err(|r| r.to_string())?;
            let players = registry
                .gauge("game_players_connected", "Players connected.")
                .map_err(e)?;
            let overruns = registry
                .counter("game_tick_overruns_total", "Overruns.")
                .map_err(e)?;
            let overruns = overruns
                .with(&[("shard_id", "1")])
                .map_err(|r| r.to_string())?;
            let actions = registry
                .counter("game_actions_total", "Actions.")
                .map_err(e)?;
            let actions = actions
                .with(&[("action", "move")])
                .map_err(|r| r.to_string())?;
            let errors = registry
                .counter("game_errors_total", "Errors.")
                .map_err(e)?;
            let errors = errors
                .with(&[("kind", "desync")])
                .map_err(|r| r.to_string())?;
            players
                .with(&[("shard_id", "1")])
                .map_err(|r| r.to_string())?
                .set(40.0);
            let mut flooded = false;
            while !stop.load(Ordering::Relaxed) {
                for ms in 1..=1000 {
                    tick.record(f64::from(ms) / 1000.0);
                }
                for ms in 1..=100 {
                    ack.record(f64::from(ms) / 1000.0);
                }
                overruns.inc();
                actions.add(100);
                errors.inc();
                if flood.load(Ordering::Relaxed) && !flooded {
                    for shard in 100..350 {
                        players
                            .with(&[("shard_id", &shard.to_string())])
                            .map_err(|r| r.to_string())?
                            .set(1.0);
                    }
                    flooded = true;
                }
                // A refused push is retried on the next round, like a game would.
                let _ =
                    edge_exporter::push::push_once(&registry, &push_url, Duration::from_secs(5));
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(())
        })
    };

    // First data: the recorded freshness p99 and the gameplay p99 exist.
    let started = Instant::now();
    let first_bound = Duration::from_secs(180);
    loop {
        let a = prometheus
            .query_once("region:edge_gateway_sample_age_seconds:p99")
            .await;
        let b = prometheus
            .query_once("cluster:game_tick_duration_seconds:p99{cluster=\"c1\"}")
            .await;
        if a.as_array().is_some_and(|r| !r.is_empty())
            && b.as_array().is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(
            started.elapsed() < first_bound,
            "no recorded freshness or tick p99 within {first_bound:?} (a generous bound, not a \
             speed judgement){}",
            logs(&gateway)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Later waits scale with how long that took on this machine.
    let bound = (started.elapsed() * 10).max(Duration::from_secs(120));

    // The gameplay SLIs from native histograms: ticks uniform over 1..=1000 ms, acks over
    // 1..=100 ms; one bucket's width at the default scale (2) bounds the error.
    let width = 2f64.powf(2f64.powi(-2)) - 1.0;
    for (promql, want) in [
        (
            "cluster:game_tick_duration_seconds:p99{cluster=\"c1\"}",
            0.99,
        ),
        (
            "cluster:game_tick_duration_seconds:p95{cluster=\"c1\"}",
            0.95,
        ),
        (
            "region:game_tick_duration_seconds:p99{region=\"eu-test-1\"}",
            0.99,
        ),
        (
            "region:game_tick_duration_seconds:p95{region=\"eu-test-1\"}",
            0.95,
        ),
        (
            "cluster:game_action_ack_latency_seconds:p99{cluster=\"c1\"}",
            0.099,
        ),
        (
            "region:game_action_ack_latency_seconds:p99{region=\"eu-test-1\"}",
            0.099,
        ),
    ] {
        let (got, _) = prometheus.query(promql, bound).await;
        assert!(
            (got - want).abs() <= want * width,
            "{promql} = {got}, want {want} within {:.1}%",
            width * 100.0
        );
    }

    // The self-metrics the kit added: build info and certificate expiry on both daemons.
    for (promql, want) in [
        (
            "edge_build_info{daemon=\"agent\",region=\"eu-test-1\"}",
            1.0,
        ),
        (
            "edge_build_info{daemon=\"gateway\",job=\"edge-gateway\"}",
            1.0,
        ),
        ("edge_build_info{daemon=\"relay\",job=\"edge-relay\"}", 1.0),
        (
            "edge_tls_cert_expiry_timestamp_seconds{daemon=\"agent\",cert=\"client\",region=\"eu-test-1\"}",
            RCGEN_NOT_AFTER,
        ),
        (
            "edge_tls_cert_expiry_timestamp_seconds{daemon=\"gateway\",cert=\"server\"}",
            RCGEN_NOT_AFTER,
        ),
    ] {
        let (got, labels) = prometheus.query(promql, bound).await;
        assert_eq!(got, want, "{promql}: {labels}");
        if promql.starts_with("edge_build_info") {
            assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"), "{labels}");
        }
    }

    // Every family the gateway serves is in the kit's gateway catalog.
    let catalog = std::fs::read_to_string(ops("catalog/gateway.yaml")).expect("catalog");
    let names = prometheus
        .query_once("group by (__name__) ({job=~\"edge-gateway|edge-relay\"})")
        .await;
    let mut seen = 0;
    for series in names.as_array().expect("result") {
        let name = series["metric"]["__name__"].as_str().expect("a name");
        if name == "up" || name.starts_with("scrape_") {
            continue;
        }
        seen += 1;
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| catalog.contains(&format!("- name: {b}\n")))
            })
            .unwrap_or(name);
        assert!(
            catalog.contains(&format!("- name: {base}\n")),
            "the gateway or relay serves {name}, which ops/catalog/gateway.yaml does not declare"
        );
    }
    assert!(seen >= 10, "only {seen} gateway families scraped");

    // Fault 1: series over the host's budget. Nothing was refused before.
    assert!(
        firing(&prometheus, "EdgeSeriesRefused").await.is_empty(),
        "EdgeSeriesRefused fires before any series is over the budget"
    );
    let flooded_at = unix_now();
    flood.store(true, Ordering::Relaxed);
    let t = Instant::now();
    let refused = loop {
        let f = firing(&prometheus, "EdgeSeriesRefused").await;
        if !f.is_empty() {
            break f;
        }
        assert!(
            t.elapsed() < bound,
            "EdgeSeriesRefused not firing within {bound:?} of the flood (a generous bound){}",
            logs(&gateway)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(refused[0]["labels"]["severity"], "warning", "{refused:?}");
    // It became active after the flood (rules run every second; allow one evaluation).
    let since = active_since(&prometheus, "alertname=\"EdgeSeriesRefused\"").await;
    assert!(
        since >= flooded_at - 1.0,
        "EdgeSeriesRefused active since {since}, before the flood at {flooded_at}"
    );
    let (n, _) = prometheus
        .query(
            "sum(edge_series_rejected_total{reason=\"budget\",stage=\"agent\",region=\"eu-test-1\"})",
            bound,
        )
        .await;
    assert!(n > 0.0, "no budget refusal counted");

    // Every dashboard panel: the query parses and evaluates; panels of parts that ran
    // show data.
    let mut checked = 0;
    let mut with_data = 0;
    let mut files: Vec<_> = std::fs::read_dir(ops("grafana"))
        .expect("grafana")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for path in files {
        let board: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard"))
                .expect("JSON");
        let title = board["title"].as_str().expect("title").to_string();
        for panel in board["panels"].as_array().expect("panels") {
            let ptitle = panel["title"].as_str().expect("panel title");
            let exempt = NOT_RUN
                .iter()
                .find(|(b, p, _)| *b == title && (*p == "*" || *p == ptitle));
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let promql = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$region", ".*")
                    .replace("$cluster", ".*")
                    .replace("$tenant", ".*");
                checked += 1;
                let t = Instant::now();
                loop {
                    let (status, body) = prometheus.try_query(&promql).await;
                    assert_eq!(
                        status, 200,
                        "{title} / {ptitle}: `{promql}` does not evaluate: {body}"
                    );
                    let empty = body["data"]["result"]
                        .as_array()
                        .is_none_or(|r| r.is_empty());
                    if !empty {
                        with_data += 1;
                        break;
                    }
                    if exempt.is_some() {
                        break;
                    }
                    assert!(
                        t.elapsed() < bound,
                        "{title} / {ptitle}: `{promql}` shows no data within {bound:?} (a \
                         generous bound){}",
                        logs(&gateway)
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    assert_eq!(checked, 46, "panel queries evaluated");
    // Every panel outside NOT_RUN showed data (the loop above waits for it); the
    // exempt ones are the 7 queries of refusals, retries and logs.
    assert_eq!(
        checked - with_data,
        7,
        "{with_data} of {checked} queries show data"
    );

    // Fault 2: the gateway stops; the agent (scraped directly) queues.
    // Not firing while the gateway answers. (Its pending state is not judged: on a
    // busy machine a slow gateway may leave batches waiting for a few seconds, which is
    // what the alert is about.)
    let queue_alert = |f: Vec<Value>| -> Vec<Value> {
        f.into_iter()
            .filter(|a| a["labels"]["job"] == "edge-agent")
            .collect()
    };
    assert!(
        queue_alert(firing(&prometheus, "EdgeAgentQueueGrowing").await).is_empty(),
        "EdgeAgentQueueGrowing fires while the gateway runs{}",
        logs(&gateway)
    );
    gateway.kill();
    let t = Instant::now();
    let queueing = loop {
        let f = queue_alert(firing(&prometheus, "EdgeAgentQueueGrowing").await);
        if !f.is_empty() {
            break f;
        }
        assert!(
            t.elapsed() < bound,
            "EdgeAgentQueueGrowing not firing within {bound:?} of the gateway's stop (a \
             generous bound){}",
            logs(&gateway)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let annotations = &queueing[0]["annotations"];
    assert!(
        annotations["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("ops/runbooks/alerts/EdgeAgentQueueGrowing.md")),
        "{annotations}"
    );
    let (queued, _) = prometheus
        .query("sum(edge_queue_records{job=\"edge-agent\"})", bound)
        .await;
    assert!(
        queued > 0.0,
        "the agent's queue is empty while the gateway is down"
    );

    stop.store(true, Ordering::Relaxed);
    game.join()
        .expect("game thread")
        .unwrap_or_else(|e| panic!("the game's instruments: {e}"));
}
