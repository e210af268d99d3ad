//! The logs path's throughput: tail → parse → tokenize → batch → zstd → disk queue →
//! a local receiver, over a generated game-server log, reported as lines per
//! CPU-second of the agent and its peak RSS.
//!
//! `cargo bench -p edge-agent --bench logs_throughput [-- --mib 1024] [-- --tap reading|stalled]`
//!
//! `--tap reading` keeps an `edge-agent tap` stream (`GET /tap?signal=logs`) open and
//! read to the end of the run; `--tap stalled` opens one and never reads it: what a tap
//! costs the pipeline, and that a stalled one costs it nothing more.
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
    (
        edge_tests::procstat::cpu(pid),
        edge_tests::procstat::peak_rss(pid),
    )
}

/// The generated game log, one record at a time (a stack trace is one record of five
/// lines).
struct GameLog {
    i: u64,
    x: u64,
}

impl GameLog {
    fn new() -> Self {
        GameLog {
            i: 0,
            x: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn next_record(&mut self) -> String {
        const ACTIONS: [&str; 5] = ["move", "attack", "ability", "item", "chat"];
        let mut x = self.x;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.x = x;
        let i = self.i;
        self.i += 1;
        let ts = 1_795_000_000_000 + i;
        let shard = x % 64;
        let action = ACTIONS[(x % 5) as usize];
        match i % 100 {
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
            25 if i % 1000 == 25 => format!(
                "{ts} ERROR unhandled exception in shard {shard}\n    at game::world::step (world.rs:{})\n    at game::tick::run (tick.rs:88)\n    at game::main (main.rs:12)\n    at std::rt::lang_start (rt.rs:165)",
                x % 900
            ),
            _ => format!(
                r#"{{"ts":{ts},"level":"{}","msg":"action {action} handled","shard":"{shard}","latency_us":{},"entities":{}}}"#,
                if i.is_multiple_of(7) { "debug" } else { "info" },
                x % 20_000,
                x % 4_000
            ),
        }
    }
}

/// Writes about `bytes` of log; returns the records the agent should produce.
fn generate(path: &std::path::Path, bytes: u64) -> u64 {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("log"));
    let mut game = GameLog::new();
    let mut written = 0u64;
    let mut records = 0u64;
    while written < bytes {
        let record = game.next_record();
        written += record.len() as u64 + 1;
        writeln!(w, "{record}").expect("write");
        records += 1;
    }
    w.flush().expect("flush");
    records
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("logs_throughput: benchmark");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rate = arg("--rate", 0);
    let log = dir.path().join("game.log");
    let (records, lines) = if rate == 0 {
        let mib = arg("--mib", 1024);
        eprintln!("generating {mib} MiB of log…");
        let records = generate(&log, mib << 20);
        let lines = std::fs::read(&log)
            .map(|b| memchr::memchr_iter(b'\n', &b).count() as u64)
            .expect("count lines");
        (records, lines)
    } else {
        std::fs::write(&log, "").expect("log");
        (0, 0)
    };

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
    if rate > 0 {
        steady(&agent, &log, rate, arg("--seconds", 30), &logs);
        return;
    }
    let tap = open_tap(agent.listen);
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
        "logs_throughput: {} MiB, {lines} lines ({records} records) in {:.1} s wall, {batches} batches, {got} records received",
        arg("--mib", 1024),
        wall.as_secs_f64()
    );
    println!(
        "edge-agent: {:.2} CPU-s, {:.0} lines per CPU-second, peak RSS {:.1} MiB",
        cpu.as_secs_f64(),
        lines as f64 / cpu.as_secs_f64(),
        peak as f64 / (1 << 20) as f64
    );
    if let Some((mode, lines)) = tap {
        let dropped = agent
            .get("/metrics")
            .and_then(|(_, text)| {
                text.lines().find_map(|l| {
                    l.strip_prefix("edge_tap_dropped_total ")?
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
            })
            .unwrap_or(f64::NAN);
        println!(
            "tap ({mode}): {} lines read by the tap, {dropped} records dropped for it",
            lines.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    drop(agent);
}

/// With `--tap reading` or `--tap stalled`, a tap on the agent's API: the mode and the
/// lines read from it so far.
fn open_tap(
    api: std::net::SocketAddr,
) -> Option<(String, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    use std::io::Read;
    let args: Vec<String> = std::env::args().collect();
    let mode = args
        .iter()
        .position(|a| a == "--tap")
        .and_then(|i| args.get(i + 1))?
        .clone();
    assert!(
        mode == "reading" || mode == "stalled",
        "--tap reading|stalled, not {mode}"
    );
    let mut conn = std::net::TcpStream::connect(api).expect("the agent's API");
    conn.write_all(b"GET /tap?signal=logs HTTP/1.1\r\nHost: bench\r\n\r\n")
        .expect("tap request");
    let lines = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = lines.clone();
    let reading = mode == "reading";
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut last = 0u8;
        loop {
            if !reading {
                // Holds the connection open, reading nothing.
                std::thread::sleep(Duration::from_secs(3600));
                continue;
            }
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    // NDJSON lines end in a bare `\n`; the chunked framing's in `\r\n`.
                    let mut records = 0;
                    for &b in &buf[..n] {
                        if b == b'\n' && last != b'\r' {
                            records += 1;
                        }
                        last = b;
                    }
                    counted.fetch_add(records, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    Some((mode, lines))
}

/// A game writing `rate` records a second in 10 ms bursts for `seconds`: the agent's
/// CPU above its idle cost (measured first, for as long), as a share of one core.
fn steady(
    agent: &support::Agent,
    log: &std::path::Path,
    rate: u64,
    seconds: u64,
    sink: &support::Gateway,
) {
    let pid = agent.child.id();
    let period = Duration::from_secs(seconds);
    std::thread::sleep(Duration::from_secs(2));
    let (idle0, _) = cpu_and_rss(pid);
    std::thread::sleep(period);
    let (idle1, _) = cpu_and_rss(pid);
    let idle = idle1 - idle0;

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(log)
        .expect("open the log");
    let mut game = GameLog::new();
    let per_tick = (rate / 100).max(1);
    let (busy0, _) = cpu_and_rss(pid);
    let start = Instant::now();
    let mut written = 0u64;
    let mut tick = 0u32;
    while start.elapsed() < period {
        let mut chunk = String::new();
        for _ in 0..per_tick {
            chunk.push_str(&game.next_record());
            chunk.push('\n');
            written += 1;
        }
        f.write_all(chunk.as_bytes()).expect("write");
        tick += 1;
        let next = start + Duration::from_millis(10) * tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let (busy1, rss) = cpu_and_rss(pid);
    let busy = busy1 - busy0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.counted().0 < written {
        assert!(
            Instant::now() < deadline,
            "the sink did not get every record"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let share = |cpu: Duration| 100.0 * cpu.as_secs_f64() / period.as_secs_f64();
    println!(
        "steady: {written} records at {rate}/s for {seconds} s: agent {:.3}% of a core (idle {:.3}%, so logs cost {:.3}%), peak RSS {:.1} MiB",
        share(busy),
        share(idle),
        share(busy.saturating_sub(idle)),
        rss as f64 / (1 << 20) as f64
    );
}
