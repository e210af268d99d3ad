//! The README's first command, run for a few seconds: the demo prints a summary line a
//! second whose counts grow, ends with a passing PII check, and its spool holds the
//! game's metrics and tokenized log documents with no PII value from the game's log.

use std::process::Command;

use edge_schema::proto::prometheus::WriteRequest;
use prost::Message;

/// The number after `label` in a summary line.
fn figure(line: &str, label: &str) -> u64 {
    line.split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"))
}

#[test]
fn the_local_pipeline_runs_and_leaks_no_pii() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--seconds", "7", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let logs = || {
        format!(
            "stdout:\n{stdout}\nstderr:\n{}\nagent:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        )
    };
    assert!(out.status.success(), "the demo failed\n{}", logs());
    let summary: Vec<&str> = stdout.lines().filter(|l| l.starts_with("t=")).collect();
    assert!(summary.len() >= 6, "one line a second\n{}", logs());
    let last = summary[summary.len() - 1];
    for label in ["samples accepted", "series", "log lines shipped", "tokens"] {
        assert!(
            figure(last, label) > 0,
            "{label} is 0 at the end\n{}",
            logs()
        );
    }
    assert!(
        figure(last, "samples accepted") > figure(summary[0], "samples accepted"),
        "samples keep arriving\n{}",
        logs()
    );
    assert_eq!(figure(last, "429s"), 0, "{}", logs());
    assert!(
        stdout.contains("PII check: none of the"),
        "the PII check\n{}",
        logs()
    );

    // The spool: the game's histograms under the agent's tenant and host, and log
    // documents whose PII is tokenized.
    let spool = dir.path().join("spool");
    let (metrics, _) =
        edge_gateway::sink::file::read_spool(&spool, "metrics").expect("metrics spool");
    let names: std::collections::BTreeSet<String> = metrics
        .iter()
        .flat_map(|r| {
            WriteRequest::decode(r.data.as_slice())
                .expect("a WriteRequest")
                .timeseries
        })
        .flat_map(|s| {
            s.labels
                .into_iter()
                .filter(|l| l.name == "__name__")
                .map(|l| l.value)
        })
        .collect();
    for name in [
        "game_tick_duration_seconds",
        "game_action_ack_latency_seconds",
        "game_match_duration_seconds",
        "game_queue_wait_seconds",
        "node_load1",
    ] {
        assert!(
            names.contains(name),
            "{name} is not in the spool: {names:?}"
        );
    }
    assert!(
        metrics.iter().all(|r| r.key == "game/gs-demo-1"),
        "tenant/host keys"
    );
    let (docs, _) = edge_gateway::sink::file::read_spool(&spool, "logs").expect("logs spool");
    assert!(docs.len() as u64 >= figure(last, "log lines shipped"));
    let texts: Vec<String> = docs
        .iter()
        .map(|d| String::from_utf8_lossy(&d.data).into_owned())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("tok_")),
        "tokens in the documents"
    );

    // Every PII value the game wrote (read back from what is left of its log) is absent.
    let mut pii = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir.path().join("game"))
        .expect("game logs")
        .flatten()
    {
        for line in std::fs::read_to_string(entry.path())
            .unwrap_or_default()
            .lines()
        {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(p) = v["player_id"].as_str() {
                pii.insert(p.to_string());
            }
            if let Some(from) = v["msg"]
                .as_str()
                .and_then(|m| m.split("session from ").nth(1))
            {
                pii.insert(from.to_string());
            }
        }
    }
    assert!(pii.len() >= 5, "the game log holds PII: {pii:?}");
    for value in &pii {
        assert!(
            !texts.iter().any(|t| t.contains(value.as_str())),
            "{value} reached the spool"
        );
    }
}
