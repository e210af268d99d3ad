//! The acceptance gates in their short form (see `edge_tests::gates`), and each one
//! broken on purpose to show it can fail.

use std::time::Duration;

use edge_tests::gates::{Report, t1};

fn short_soak(dir: &std::path::Path) -> t1::SoakOptions {
    // 150 hosts at 1.3× a 1 s cadence for 8 s: about 1,500 pushes, 450,000 series.
    t1::SoakOptions {
        hosts: 150,
        duration: Duration::from_secs(8),
        cadence: Duration::from_secs(1),
        load: 1.3,
        dir: dir.to_path_buf(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_soak_loses_nothing_and_fails_when_the_sink_drops_one_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = t1::run(&short_soak(&dir.path().join("run")))
        .await
        .expect("soak");
    let (found, records) = t1::index_spool(&run.spool, |_| true).expect("index");
    let acc = t1::account(&run.load.acked, &found);
    let verdict = t1::verdict(&acc, &run);
    assert!(verdict.pass, "{}", verdict.measured);
    assert!(
        acc.acked_requests >= 500,
        "the soak pushed too little: {acc:?}"
    );
    assert_eq!(acc.acked_samples, acc.acked_requests * 300);

    // The report is written, with its plots.
    let report = Report {
        title: "short T1".into(),
        notes: Vec::new(),
        results: vec![verdict],
        plots: run.plots.clone(),
    };
    let md = std::fs::read_to_string(report.write(&dir.path().join("report")).expect("report"))
        .expect("read");
    assert!(
        md.contains("| T1 soak |") && md.contains("**pass**"),
        "{md}"
    );
    let accepted = &run.plots[0];
    assert!(
        accepted.points.iter().any(|p| p.1 > 0.0),
        "the gateway's accepted rate was sampled: {accepted:?}"
    );

    // A sink that dropped one record: the same run read back without it fails T1.
    let gone = records / 2;
    let (found, _) = t1::index_spool(&run.spool, |i| i != gone).expect("index");
    let acc = t1::account(&run.load.acked, &found);
    let broken = t1::verdict(&acc, &run);
    assert!(!broken.pass, "T1 passed without record {gone} of {records}");
    assert!(acc.lost_samples > 0 && acc.lost_requests > 0, "{acc:?}");
}
