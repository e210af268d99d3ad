//! A toy game server instrumented with edge-exporter: tick time, action→ack latency,
//! queue admissions, errors and instance density, pushed to the local agent.
//!
//! ```sh
//! cargo run -p edge-exporter --example game_server -- [--push URL] [--seconds N]
//! ```
//!
//! Without `--push` it prints the text exposition every second instead.

use std::time::{Duration, Instant};

use edge_exporter::push::{PushConfig, Pusher};
use edge_exporter::registry::Registry;

/// A small deterministic generator, so the example needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        #[allow(clippy::cast_precision_loss)]
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        unit
    }
    /// Log-normal around `median` with spread `sigma`.
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        let (u1, u2) = (self.next().max(f64::MIN_POSITIVE), self.next());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median * (sigma * z).exp()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut push_url = None;
    let mut seconds = 30u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--push" => push_url = args.next(),
            "--seconds" => seconds = args.next().ok_or("--seconds needs a number")?.parse()?,
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }

    // Families are created once at start-up; series on first use. Every call checks the
    // label policy and the budget; recording afterwards is lock-free.
    let registry = Registry::new();
    let tick = registry.histogram("game_tick_duration_seconds", "Duration of one server tick.")?;
    let ack = registry.histogram(
        "game_action_ack_latency_seconds",
        "Time from a player action arriving to its acknowledgement leaving.",
    )?;
    let actions = registry.counter("game_actions_total", "Player actions handled.")?;
    let admissions = registry.counter("game_admissions_total", "Queue admission decisions.")?;
    let players = registry.gauge("game_players_connected", "Players connected, per shard.")?;

    let shards: Vec<_> = (0..4)
        .map(|s| tick.with_or_overflow(&[("shard_id", &s.to_string())]))
        .collect();
    let kinds = ["move", "attack", "ability", "chat"];
    let acks: Vec<_> = kinds
        .iter()
        .map(|a| ack.with_or_overflow(&[("action", a)]))
        .collect();
    let counts: Vec<_> = kinds
        .iter()
        .map(|a| actions.with_or_overflow(&[("action", a)]))
        .collect();
    let admitted = admissions.with_or_overflow(&[("queue", "ranked"), ("result", "admitted")]);
    let connected = players.with_or_overflow(&[("shard_id", "0")]);

    // A mistake a game might make: a player id as a label. It is refused (and counted),
    // and its values fold into the overflow series.
    if let Err(refused) = actions.with(&[("action", "move"), ("player_id", "88213")]) {
        eprintln!("refused as expected: {refused}");
        refused.overflow.inc();
    }

    let pusher = match &push_url {
        Some(url) => Some(Pusher::spawn(
            registry.clone(),
            PushConfig {
                url: url.clone(),
                cadence: Duration::from_secs(1),
                ..PushConfig::default()
            },
        )?),
        None => None,
    };

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut last_print = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        for shard in &shards {
            shard.record(rng.lognormal(0.008, 0.3));
        }
        for (i, a) in acks.iter().enumerate() {
            a.record(rng.lognormal(0.030, 0.5));
            counts[i].inc();
        }
        admitted.inc();
        #[allow(clippy::cast_precision_loss)]
        connected.set(150.0 + (started.elapsed().as_secs() % 50) as f64);
        std::thread::sleep(Duration::from_millis(16));
        if push_url.is_none() && last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            println!("{}", registry.render_text());
        }
    }
    if let Some(p) = pusher {
        p.stop();
    }
    Ok(())
}
