//! The gates that run through real agents (see `edge_tests::gates::edge`), short form:
//! T4 chaos and T5 replay, each run also judged for T6 completeness, T7 cardinality
//! guard and privacy; and every one of them broken on purpose to show it can fail.

use std::time::Duration;

use edge_schema::proto::prometheus::{Label, Sample, TimeSeries};
use edge_tests::gates::edge::{self, EdgeOptions, EdgeRun};

fn options(dir: &std::path::Path, name: &str) -> EdgeOptions {
    EdgeOptions {
        name: name.into(),
        agents: 4,
        duration: Duration::from_secs(16),
        cadence: Duration::from_secs(1),
        gateways: 1,
        kill_at: None,
        cut: None,
        log_lines_per_second: 20,
        // A wall-clock bound, generous on purpose: the drain ends as soon as the queues
        // are empty (a few seconds on an idle machine), so the bound only matters when
        // the machine is slow, and then it must not turn slowness into a failure. Loss,
        // order and counts are judged exactly.
        drain_bound: Duration::from_secs(120),
        dir: dir.join(name),
    }
}

/// A window of 5 cycles: the seed's 5 min at 10 s is 30 cycles; the short runs are
/// too short for that.
const WINDOW: Duration = Duration::from_secs(5);

fn logs(run: &EdgeRun) -> String {
    let d = &run.opts.dir;
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    format!(
        "\nagent0:\n{}\ngw0:\n{}",
        read(d.join("agent0/agent.log")),
        read(d.join("gw0/gateway.log"))
    )
}

/// T6, T7 and privacy on a run, then each broken on purpose.
fn judge_the_rest(run: &mut EdgeRun) {
    let t6 = edge::t6_verdict(&[run], WINDOW);
    let t7 = edge::t7_verdict(&[run]);
    let privacy = edge::privacy_verdict(&[run]);
    for v in [&t6, &t7, &privacy] {
        println!("{}: {}", v.gate, v.measured);
    }
    assert!(t6.pass, "{}{}", t6.measured, logs(run));
    assert!(t7.pass, "{}{}", t7.measured, logs(run));
    assert!(privacy.pass, "{}", privacy.measured);

    // T6 broken: a sink that lost every record of one host for ten seconds.
    let from = run.acked[0].ts_ms + 3_000;
    let kept: Vec<_> = run.records.clone();
    run.records.retain(|r| {
        r.host != "gs-0"
            || !r.request.timeseries.iter().any(|s| {
                s.samples
                    .iter()
                    .any(|p| p.timestamp >= from && p.timestamp < from + 10_000)
            })
    });
    let broken = edge::t6_verdict(&[run], WINDOW);
    assert!(
        !broken.pass,
        "T6 passed with a host missing: {}",
        broken.measured
    );
    run.records = kept;

    // T7 broken: a sink that let one series labelled player_id through.
    let mut leaked = run.records[0].clone();
    leaked.request.timeseries.push(TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: "game_actions_total".into(),
            },
            Label {
                name: "player_id".into(),
                value: "p-1".into(),
            },
        ],
        samples: vec![Sample {
            value: 1.0,
            timestamp: 1,
        }],
        ..Default::default()
    });
    run.records.push(leaked);
    let broken = edge::t7_verdict(&[run]);
    assert!(!broken.pass, "T7 passed with a forbidden series stored");
    run.records.pop();

    // Privacy broken: a record holding one of the log's e-mail addresses.
    let mut leaked = run.records[0].clone();
    leaked.raw.extend_from_slice(edge::PII[0].as_bytes());
    run.records.push(leaked);
    let broken = edge::privacy_verdict(&[run]);
    assert!(!broken.pass, "privacy passed with an address in the stream");
    assert!(
        broken.measured.contains(edge::PII[0]),
        "{}",
        broken.measured
    );
    run.records.pop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_a_gateway_killed_under_load_loses_nothing_and_fails_when_a_record_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EdgeOptions {
        gateways: 2,
        kill_at: Some(Duration::from_secs(7)),
        ..options(dir.path(), "T4")
    };
    let mut run = edge::run(&opts).await.expect("the T4 run");
    let t4 = edge::t4_verdict(&run);
    println!("T4: {}", t4.measured);
    assert!(t4.pass, "{}{}", t4.measured, logs(&run));
    judge_the_rest(&mut run);

    // Broken: a stream that lost one record of a game host.
    let at = run
        .records
        .iter()
        .position(|r| {
            r.host == "gs-1"
                && r.request
                    .timeseries
                    .iter()
                    .any(|s| s.labels.iter().any(|l| l.value == "game_players_connected"))
        })
        .expect("a record of gs-1");
    run.records.remove(at);
    let broken = edge::t4_verdict(&run);
    assert!(
        !broken.pass,
        "T4 passed without a record: {}",
        broken.measured
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t5_a_sink_outage_is_buffered_and_replayed_in_order_within_a_generous_wall_clock_bound_and_fails_out_of_order()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EdgeOptions {
        duration: Duration::from_secs(24),
        cut: Some((Duration::from_secs(5), Duration::from_secs(12))),
        ..options(dir.path(), "T5")
    };
    let mut run = edge::run(&opts).await.expect("the T5 run");
    let t5 = edge::t5_verdict(&run);
    println!("T5: {}", t5.measured);
    assert!(t5.pass, "{}{}", t5.measured, logs(&run));
    judge_the_rest(&mut run);

    // Broken: agents that lost debug lines without having been told to shed them.
    assert!(run.logs_shed > 0, "{}", t5.measured);
    let shed = std::mem::take(&mut run.logs_shed);
    let broken = edge::t5_verdict(&run);
    assert!(
        !broken.pass,
        "T5 passed with no shed counted: {}",
        broken.measured
    );
    run.logs_shed = shed;

    // Broken: a stream that put a host's newest record before an older one.
    let of_host: Vec<usize> = (0..run.records.len())
        .filter(|i| {
            let r = &run.records[*i];
            r.host == "gs-2"
                && r.request
                    .timeseries
                    .iter()
                    .any(|s| s.labels.iter().any(|l| l.value == "game_players_connected"))
        })
        .collect();
    let (a, b) = (of_host[0], of_host[of_host.len() - 1]);
    run.records.swap(a, b);
    let broken = edge::t5_verdict(&run);
    assert!(!broken.pass, "T5 passed out of order: {}", broken.measured);
}
