//! statsd lines per CPU-second through parsing and aggregation, as the listener does it
//! (one lock of the aggregator per datagram of 20 lines).
//!
//! `cargo bench -p edge-agent --bench statsd [-- --lines N]`
//!
//! The lines: 250 series (counters with a sample rate, gauges with deltas, timers, and
//! distributions, each with two DogStatsD tags), as a game's statsd client sends them.
//! CPU is this process's on-CPU time (`/proc/self/task/*/schedstat`) around the run.

use std::sync::Mutex;
use std::time::Instant;

use edge_agent::statsd::aggregate::Aggregator;
use edge_agent::statsd::parse::parse;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let lines = arg("--lines", 5_000_000);
    let kinds = ["c|@0.5", "g", "ms", "d"];
    let datagrams: Vec<String> = (0..250)
        .map(|i| {
            (0..20)
                .map(|j| {
                    let kind = kinds[(i + j) % kinds.len()];
                    let value = if kind == "g" {
                        format!("+{j}")
                    } else {
                        format!("{}", 1 + j * 7)
                    };
                    format!(
                        "game.svc{}.metric{}:{value}|{kind}|#shard_id:{},queue:q{}\n",
                        i % 25,
                        (i + j) % 10,
                        j % 4,
                        i % 4
                    )
                })
                .collect()
        })
        .collect();
    let aggregator = Mutex::new(Aggregator::new(vec![]));
    let pid = std::process::id();
    let cpu_before = edge_tests::procstat::cpu(pid);
    let started = Instant::now();
    let mut done = 0u64;
    'outer: loop {
        for d in &datagrams {
            let now = Instant::now();
            let mut agg = aggregator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for line in d.split('\n').filter(|l| !l.is_empty()) {
                if let Ok(l) = parse(line) {
                    let _ = agg.add(&l, now);
                }
                done += 1;
            }
            drop(agg);
            if done >= lines {
                break 'outer;
            }
        }
    }
    let cpu = edge_tests::procstat::cpu(pid).saturating_sub(cpu_before);
    let wall = started.elapsed();
    let series = aggregator
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len();
    println!(
        "statsd: {done} lines into {series} series in {:.2} CPU-s ({:.2} s wall): {:.0} lines per CPU-second",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        done as f64 / cpu.as_secs_f64()
    );
}
