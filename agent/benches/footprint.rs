//! The agent's footprint on a game server: CPU time per collection cycle and peak RSS
//! with a full series budget (host metrics, the agent's own, and a game pushing native
//! histograms, counters and gauges through edge-exporter), side by side with Debian's
//! `prometheus-node-exporter` scraped at the same cadence.
//!
//! `cargo bench -p edge-agent --bench footprint [-- --cycles N --cadence-ms MS]`
//!
//! CPU is the on-CPU time of every thread (`/proc/<pid>/task/*/schedstat`) between the end of a warm-up and
//! the end of the run, divided by the cycles run; peak RSS is `VmHWM`. The sink the
//! agent sends to and the game load run in this process and are not counted.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_exporter::push::{PushConfig, Pusher};
use edge_exporter::registry::Registry;
use edge_schema::catalog::Catalog;
use edge_schema::check::Schema;
use edge_schema::policy::LabelPolicy;

const FILLER_CATALOG: &str = "metrics:\n  - name: bench_filler_total\n    type: counter\n    help: Filler series that bring the host to its budget.\n    labels:\n      n: { max_cardinality: 400 }\n";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of `pid` (every thread, nanosecond resolution from
/// `/proc/<pid>/task/*/schedstat`) and its peak RSS in bytes. Threads that exited are
/// not counted; the agent's threads live as long as it does.
fn usage(pid: u32) -> (Duration, u64) {
    (
        edge_tests::procstat::cpu(pid),
        edge_tests::procstat::peak_rss(pid),
    )
}

/// User CPU, system CPU and peak RSS of `pid`.
fn usage_split(pid: u32) -> (Duration, Duration, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let utime: f64 = fields[11].parse().expect("utime");
    let stime: f64 = fields[12].parse().expect("stime");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    (
        Duration::from_secs_f64(utime / ticks),
        Duration::from_secs_f64(stime / ticks),
        hwm_kb * 1024,
    )
}

fn game_load(registry: &Registry, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let r = registry.clone();
    let h = |name: &str, label: &str, values: &[&str]| {
        let family = r.histogram(name, "bench").expect("family");
        values
            .iter()
            .map(|v| {
                if label.is_empty() {
                    family.with(&[]).expect("series")
                } else {
                    family.with(&[(label, v)]).expect("series")
                }
            })
            .collect::<Vec<_>>()
    };
    let shards = ["1", "2", "3", "4"];
    let actions = ["move", "attack", "ability", "item", "chat", "other"];
    let queues = ["q1", "q2", "q3", "q4"];
    let asns: Vec<String> = (0..16).map(|i| format!("b{i}")).collect();
    let asns: Vec<&str> = asns.iter().map(String::as_str).collect();
    let mut histograms = Vec::new();
    histograms.extend(h("game_tick_duration_seconds", "shard_id", &shards));
    histograms.extend(h("game_action_ack_latency_seconds", "action", &actions));
    histograms.extend(h("game_queue_wait_seconds", "queue", &queues));
    histograms.extend(h("game_edge_rtt_seconds", "asn_bucket", &asns));
    histograms.extend(h("game_edge_jitter_seconds", "asn_bucket", &asns));
    histograms.extend(h("game_edge_packet_loss_ratio", "asn_bucket", &asns));
    let actions_total = r.counter("game_actions_total", "bench").expect("family");
    let counters: Vec<_> = actions
        .iter()
        .map(|a| actions_total.with(&[("action", a)]).expect("series"))
        .collect();
    let players = r.gauge("game_players_connected", "bench").expect("family");
    let gauges: Vec<_> = shards
        .iter()
        .map(|s| players.with(&[("shard_id", s)]).expect("series"))
        .collect();
    let filler = r.counter("bench_filler_total", "bench").expect("family");
    let fillers: Vec<_> = (0..300)
        .map(|n| filler.with_or_overflow(&[("n", &n.to_string())]))
        .collect();
    std::thread::spawn(move || {
        let mut x = 1u64;
        while !stop.load(Ordering::Relaxed) {
            // About 20,000 recordings a second: a busy game server's ticks and actions.
            for _ in 0..200 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (x >> 40) as f64 / (1u64 << 24) as f64;
                histograms[(x % histograms.len() as u64) as usize].record(0.001 + v * 0.2);
                counters[(x % counters.len() as u64) as usize].inc();
            }
            for (i, g) in gauges.iter().enumerate() {
                g.set(40.0 + i as f64);
            }
            for f in &fillers {
                f.inc();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn node_exporter(port: u16) -> Child {
    let binary =
        std::env::var("EDGE_NODE_EXPORTER").unwrap_or_else(|_| "prometheus-node-exporter".into());
    Command::new(&binary)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{binary}` ({e}): the comparison needs Debian's package: \
                 apt-get install prometheus-node-exporter (or set EDGE_NODE_EXPORTER)"
            )
        })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("footprint: benchmark");
        return;
    }
    let cycles = arg("--cycles", 30);
    let cadence = Duration::from_millis(arg("--cadence-ms", 1000));
    let warmup = 3;
    // The sink runs on its own thread, on its own runtime.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let gateway = support::Gateway::start("127.0.0.1:0", vec![]).await;
            tx.send(gateway).expect("send");
            std::future::pending::<()>().await;
        });
    });
    let gateway = rx.recv().expect("sink started");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("filler.yaml"), FILLER_CATALOG).expect("catalog");
    let extra = format!(
        "catalog: {}\nhost_metrics: {{ enabled: true, filesystems: [/], interfaces: [lo] }}\n",
        dir.path().join("filler.yaml").display()
    );
    let mut agent = support::Agent::start(dir.path(), &[gateway.url("http")], &extra);
    // The config's cadence is 1 s; other cadences are set here.
    if cadence != Duration::from_secs(1) {
        let text = std::fs::read_to_string(dir.path().join("agent.yaml")).expect("config");
        let ms = cadence.as_millis();
        let text = text.replace(
            "cadence: 1s\nincident_cadence: 1s",
            &format!("cadence: {ms}ms\nincident_cadence: {ms}ms"),
        );
        std::fs::write(dir.path().join("agent.yaml"), text).expect("config");
        let listen = agent.listen;
        agent.kill_9();
        agent = support::Agent::restart(dir.path(), listen);
    }
    let mut catalog = Catalog::from_yaml(std::path::Path::new("filler.yaml"), FILLER_CATALOG)
        .expect("filler catalog");
    catalog.merge(Catalog::shipped());
    let registry = Registry::with_schema(Schema::new(LabelPolicy::shipped(), catalog));
    let stop = Arc::new(AtomicBool::new(false));
    let load = game_load(&registry, stop.clone());
    let pusher = Pusher::spawn(
        registry,
        PushConfig {
            url: format!("http://{}/api/v1/push", agent.listen),
            cadence,
            timeout: Duration::from_secs(2),
            ..PushConfig::default()
        },
    )
    .expect("pusher");

    let ne_port = support::free_port();
    let mut ne = node_exporter(ne_port);
    let scrape = |port: u16| -> usize {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return 0;
        };
        let _ = write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text.split_once("\r\n\r\n").map_or(0, |(_, body)| {
            body.lines()
                .filter(|l| !l.starts_with('#') && l.contains(' '))
                .count()
        })
    };

    let mut ne_series = 0;
    let mut next = Instant::now();
    let mut marks = None;
    for cycle in 0..warmup + cycles {
        if cycle == warmup {
            marks = Some((
                usage(agent.child.id()),
                usage(ne.id()),
                usage_split(agent.child.id()),
                Instant::now(),
            ));
        }
        next += cadence;
        ne_series = scrape(ne_port);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let (agent_start, ne_start, split_start, started) = marks.expect("warm-up ran");
    let (agent_end, ne_end) = (usage(agent.child.id()), usage(ne.id()));
    let split_end = usage_split(agent.child.id());
    let elapsed = started.elapsed();
    let run_cycles = elapsed.as_secs_f64() / cadence.as_secs_f64();
    let active = agent.metric("edge_active_series").unwrap_or(0.0);
    let budget = agent.metric("edge_series_budget").unwrap_or(0.0);
    let batches = gateway.received().len();
    stop.store(true, Ordering::Relaxed);
    let _ = load.join();
    pusher.stop();
    let _ = ne.kill();
    let _ = ne.wait();

    let per_cycle = |start: Duration, end: Duration| {
        (end.saturating_sub(start)).as_secs_f64() * 1000.0 / run_cycles
    };
    println!(
        "footprint: {cycles} cycles of {cadence:?} after {warmup} warm-up cycles ({} batches delivered)",
        batches
    );
    println!(
        "{:<28} {:>16} {:>14} {:>10}",
        "process", "CPU ms / cycle", "peak RSS MiB", "series"
    );
    println!(
        "{:<28} {:>16.3} {:>14.1} {:>10}",
        "edge-agent",
        per_cycle(agent_start.0, agent_end.0),
        agent_end.1 as f64 / (1 << 20) as f64,
        format!("{active}/{budget}")
    );
    println!(
        "{:<28} {:>16.3} {:>14.1} {:>10}",
        "prometheus-node-exporter",
        per_cycle(ne_start.0, ne_end.0),
        ne_end.1 as f64 / (1 << 20) as f64,
        ne_series
    );
    println!(
        "edge-agent split: user {:.3} ms, system {:.3} ms per cycle",
        per_cycle(split_start.0, split_end.0),
        per_cycle(split_start.1, split_end.1)
    );
    println!(
        "(CPU per cycle from schedstat, ns resolution; the user/system split from /proc/<pid>/stat, in clock ticks)"
    );
}
