//! C and C++ games on edge-exporter's C ABI, end to end: the examples
//! `agent/exporter/examples/game_c.c` and `game_cpp.cpp` are compiled with the system
//! compilers against the checked-in header and the static library, record from two
//! threads into one histogram, push to the real `edge-agent`, and a stock Prometheus
//! answers `histogram_count` (exact) and `histogram_quantile` (within the bucket bound).
//! A forbidden label goes to the overflow series, and nothing forbidden reaches Prometheus.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edge_tests::prometheus::Prometheus;
use support::Agent;

fn exporter_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("exporter")
}

/// The static library built with this test's dependencies (`target/<profile>/deps`), or
/// the one `cargo build -p edge-exporter` leaves in `target/<profile>`: the newer.
fn static_lib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates = [
        deps.join("libedge_exporter.a"),
        deps.parent()
            .expect("target/<profile>")
            .join("libedge_exporter.a"),
    ];
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no libedge_exporter.a in {candidates:?}"))
}

fn build(source: &str, dir: &Path) -> PathBuf {
    let (compiler, std) = if source.ends_with(".c") {
        ("gcc", "-std=c11")
    } else {
        ("g++", "-std=c++17")
    };
    let out = dir.join(source.replace('.', "_"));
    let result = Command::new(compiler)
        .arg(std)
        .args(["-Wall", "-Wextra", "-Werror", "-O2"])
        .arg(format!("-I{}", exporter_dir().join("include").display()))
        .arg(exporter_dir().join("examples").join(source))
        .arg(static_lib())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler} ({e}): install gcc and g++"));
    assert!(
        result.status.success(),
        "{compiler} {source} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// Polls an instant query until its first value satisfies `done`; the last value.
async fn query_until(
    prometheus: &Prometheus,
    promql: &str,
    timeout: Duration,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + timeout;
    loop {
        let result = prometheus.query_once(promql).await;
        let value = result
            .as_array()
            .and_then(|r| r.first())
            .and_then(|first| first["value"][1].as_str())
            .and_then(|s| s.parse::<f64>().ok());
        if let Some(v) = value
            && done(v)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{promql}: last value {value:?}, not the expected one within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn c_and_cpp_games_push_through_the_agent_into_a_stock_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prometheus = Prometheus::start(dir.path()).await;
    let agent = Agent::start(dir.path(), &[prometheus.write_url()], "");
    let push_url = format!("http://{}/api/v1/push", agent.listen);
    let records_per_thread: u64 = 50_000;

    for (source, shard) in [("game_c.c", "1"), ("game_cpp.cpp", "2")] {
        let program = build(source, dir.path());
        let out = Command::new(&program)
            .args([&push_url, shard, &records_per_thread.to_string()])
            .output()
            .expect("run the game");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{source} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("refused: ") && stdout.contains("player_id"),
            "{stdout}"
        );
    }

    let wait = Duration::from_secs(120);
    let total = (2 * records_per_thread) as f64;
    for shard in ["1", "2"] {
        let selector = format!("game_tick_duration_seconds{{shard_id=\"{shard}\"}}");
        // Exact: every record of both threads, once.
        query_until(
            &prometheus,
            &format!("histogram_count({selector})"),
            wait,
            |v| v == total,
        )
        .await;
        // Values 1..=1000 ms, equally often: scale-2 buckets hold any quantile within
        // 8.6% of the value at its rank.
        for (q, exact) in [(0.5, 0.5), (0.99, 0.99)] {
            let (estimate, _) = prometheus
                .query(&format!("histogram_quantile({q}, {selector})"), wait)
                .await;
            assert!(
                (estimate - exact).abs() <= 0.09 * exact,
                "shard {shard}: p{q} {estimate}, exact {exact}"
            );
        }
    }
    // The forbidden label's value went to the overflow series (both games send the same
    // series, each with its own count of 1), the rest as declared.
    let (overflow, labels) = prometheus
        .query("game_errors_total{edge_overflow=\"true\"}", wait)
        .await;
    assert_eq!(overflow, 1.0, "{labels}");
    // The refusal is counted as in Rust (each game refused one series).
    query_until(
        &prometheus,
        "edge_series_rejected_total{reason=\"forbidden_label\",stage=\"exporter\"}",
        wait,
        |v| v == 1.0,
    )
    .await;
    let (desync, _) = prometheus
        .query("game_errors_total{kind=\"desync\"}", wait)
        .await;
    assert_eq!(desync, 2.0);
    let (players, _) = prometheus
        .query("game_players_connected{shard_id=\"1\"}", wait)
        .await;
    assert_eq!(players, 42.0);
    // Nothing forbidden reached Prometheus.
    let forbidden = prometheus
        .query_once("count({__name__=~\".+\", player_id!=\"\"})")
        .await;
    assert_eq!(forbidden, serde_json::json!([]), "forbidden series stored");
}
