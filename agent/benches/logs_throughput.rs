//! The logs path's throughput: tail → parse → tokenize → batch → zstd → disk queue →
//! a local receiver, over a generated game-server log, reported as lines per
//! CPU-second of the agent and its peak RSS.
//!
//! `cargo bench -p edge-agent --bench logs_throughput [-- --mib 1024]`
//!
//! The log mixes JSON lines (most), plain text lines, and multi-line stack traces;
//! about one line in ten carries an email, an IPv4 or IPv6 address, or a player id.
//! The agent's CPU is its threads' on-CPU time (`/proc/<pid>/task/*/schedstat`) from
//! start to the last record received; peak RSS is `VmHWM`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_and_rss(pid: u32) -> (Duration, u64) {
    let mut ns = 0u64;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    let hwm_kb = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    (Duration::from_nanos(ns), hwm_kb * 1024)
}

/// Writes about `bytes` of log; returns the records the agent should produce (a
/// stack trace is one record).
fn generate(path: &std::path::Path, bytes: u64) -> u64 {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("log"));
    let mut written = 0u64;
    let mut records = 0u64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let actions = ["move", "attack", "ability", "item", "chat"];
    let mut i = 0u64;
    while written < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ts = 1_795_000_000_000 + i;
        let shard = x % 64;
        let action = actions[(x % 5) as usize];
        let line = match i % 100 {
            // ~10% with PII.
            0..=3 => format!(
                r#"{{"ts":{ts},"level":"info","msg":"login ok for player{} <player{}@example.com> from 198.51.100.{}","shard":"{shard}","player_id":"p-{:08}"}}"#,
                x % 100_000,
                x % 100_000,
                x % 250,
                x % 100_000_000
            ),
            4..=6 => format!(
                r#"{{"ts":{ts},"level":"warn","msg":"slow ack to 2001:db8::{:x}:{:x} rtt={}ms","shard":"{shard}"}}"#,
                x % 65_000,
                (x >> 16) % 65_000,
                x % 300
            ),
            7..=9 => format!(
                "{ts} INFO match {}: p-{:08} joined queue q{} (build 4.2.{})",
                x % 1_000_000,
                x % 100_000_000,
                x % 4,
                x % 20
            ),
            10..=24 => format!(
                "{ts} DEBUG tick {} took {}us entities={} shard={shard}",
                i,
                x % 16_000,
                x % 5_000
            ),
            25 if i % 1000 == 25 => {
                // A stack trace: one record of five lines.
                format!(
                    "{ts} ERROR unhandled exception in shard {shard}\n    at game::world::step (world.rs:{})\n    at game::tick::run (tick.rs:88)\n    at game::main (main.rs:12)\n    at std::rt::lang_start (rt.rs:165)",
                    x % 900
                )
            }
            _ => format!(
                r#"{{"ts":{ts},"level":"{}","msg":"action {action} handled","shard":"{shard}","latency_us":{},"entities":{}}}"#,
                if i.is_multiple_of(7) { "debug" } else { "info" },
                x % 20_000,
                x % 4_000
            ),
        };
        written += line.len() as u64 + 1;
        writeln!(w, "{line}").expect("write");
        records += 1;
        i += 1;
    }
    w.flush().expect("flush");
    records
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("logs_throughput: benchmark");
        return;
    }
    let mib = arg("--mib", 1024);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("game.log");
    eprintln!("generating {mib} MiB of log…");
    let records = generate(&log, mib << 20);
    let lines = std::fs::read(&log)
        .map(|b| memchr::memchr_iter(b'\n', &b).count() as u64)
        .expect("count lines");

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let metrics = support::Gateway::start_sink().await;
            let logs = support::Gateway::start_sink().await;
            tx.send((metrics, logs)).expect("send");
            std::future::pending::<()>().await;
        });
    });
    let (metrics, logs) = rx.recv().expect("sinks");
    std::fs::write(
        dir.path().join("tokenize.key"),
        "bench-key-0123456789abcdef\n",
    )
    .expect("key");
    let extra = format!(
        "logs:\n  - {{ path: \"{d}/game.log\", service: game, parser: json, read_from: beginning, multiline: {{ start: '^(\\{{|[0-9])' }} }}\n\
         tokenize: {{ key_file: {d}/tokenize.key, detectors: [email, ipv4, ipv6, {{ name: player_id, pattern: 'p-[0-9]{{6,}}', action: tokenize }}] }}\n",
        d = dir.path().display()
    );
    let started = Instant::now();
    let agent = support::Agent::start_with_output(
        dir.path(),
        &[metrics.url("http")],
        &extra,
        &format!(", logs_url: \"{}\"", logs.url("http")),
    );
    let pid = agent.child.id();
    let mut peak = 0u64;
    let mut last = (0, Instant::now());
    loop {
        let (got, batches) = logs.counted();
        let (_, rss) = cpu_and_rss(pid);
        peak = peak.max(rss);
        if got >= records {
            break;
        }
        if got > last.0 {
            last = (got, Instant::now());
        }
        assert!(
            last.1.elapsed() < Duration::from_secs(30),
            "stalled at {got} of {records} records ({batches} batches); the agent's log: {}",
            agent.log_text() + &agent.get("/metrics").map(|(_, b)| b).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = started.elapsed();
    let (cpu, rss) = cpu_and_rss(pid);
    peak = peak.max(rss);
    let (got, batches) = logs.counted();
    println!(
        "logs_throughput: {mib} MiB, {lines} lines ({records} records) in {:.1} s wall, {batches} batches, {got} records received",
        wall.as_secs_f64()
    );
    println!(
        "edge-agent: {:.2} CPU-s, {:.0} lines per CPU-second, peak RSS {:.1} MiB",
        cpu.as_secs_f64(),
        lines as f64 / cpu.as_secs_f64(),
        peak as f64 / (1 << 20) as f64
    );
    drop(agent);
}
