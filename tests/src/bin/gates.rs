//! The acceptance gates, full length:
//!
//! `cargo run --release -p edge-tests --bin gates -- --gate T1|T2|T4|T5|T6|T7|privacy|all
//!  [--duration 30m] [--hosts 1700] [--cadence 10s] [--load 1.3] [--agents 20]
//!  [--agent-duration <--duration>] [--out docs/gates/<date>]`
//!
//! - T1 and T2 drive `--hosts` simulated hosts straight into a gateway (`--load` is
//!   T1's multiple of the baseline; T2 runs 1×, 3×, 5× and a 1× recovery, each a
//!   quarter of `--duration`).
//! - T4–T7 and privacy run `--agents` real agents with their games and logs for
//!   `--agent-duration` (default: `--duration`): the T4
//!   run kills one of two gateways halfway; the T5 run cuts Kinesis off from a sixth of
//!   the way for 60 cycles (10 min at a 10 s cadence). T6, T7 and privacy are judged
//!   on both runs.
//!
//! Writes `report.md` and its plots into `--out` and exits 0 if every gate passed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use edge_tests::gates::edge::{self, EdgeOptions};
use edge_tests::gates::{GateResult, Plot, Report, t1, t2};

fn value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn duration(text: &str) -> Result<Duration, String> {
    edge_schema::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration (30s, 10m, 2h)"))
}

fn number<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    value(args, name).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| format!("{name} {v:?} is not a number"))
    })
}

/// What to run.
struct Plan {
    gates: Vec<String>,
    duration: Duration,
    hosts: usize,
    cadence: Duration,
    load: f64,
    agents: usize,
    agent_duration: Duration,
    out: PathBuf,
    dir: PathBuf,
}

const KNOWN: [&str; 7] = ["T1", "T2", "T4", "T5", "T6", "T7", "privacy"];

fn plan(args: &[String]) -> Result<Plan, String> {
    let gate = value(args, "--gate").ok_or("give --gate T1|T2|T4|T5|T6|T7|privacy|all")?;
    let gates: Vec<String> = if gate == "all" {
        KNOWN.iter().map(|g| (*g).to_string()).collect()
    } else {
        gate.split(',').map(str::to_string).collect()
    };
    if let Some(bad) = gates.iter().find(|g| !KNOWN.contains(&g.as_str())) {
        return Err(format!(
            "no gate {bad:?}; the gates are {}",
            KNOWN.join(", ")
        ));
    }
    Ok(Plan {
        gates,
        duration: duration(&value(args, "--duration").unwrap_or_else(|| "30m".into()))?,
        hosts: number(args, "--hosts", 1700)?,
        cadence: duration(&value(args, "--cadence").unwrap_or_else(|| "10s".into()))?,
        load: number(args, "--load", 1.3)?,
        agents: number(args, "--agents", 20)?,
        agent_duration: match value(args, "--agent-duration") {
            Some(d) => duration(&d)?,
            None => duration(&value(args, "--duration").unwrap_or_else(|| "30m".into()))?,
        },
        out: PathBuf::from(value(args, "--out").unwrap_or_else(|| "gates-report".into())),
        dir: std::env::temp_dir().join(format!("edgepipe-gates-{}", std::process::id())),
    })
}

async fn run(plan: &Plan) -> Result<(Vec<GateResult>, Vec<Plot>, Vec<String>), String> {
    let wants = |g: &str| plan.gates.iter().any(|x| x == g);
    let (mut results, mut plots, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    if wants("T1") {
        let opts = t1::SoakOptions {
            hosts: plan.hosts,
            duration: plan.duration,
            cadence: plan.cadence,
            load: plan.load,
            dir: plan.dir.join("t1"),
        };
        let run = t1::run(&opts).await?;
        // The acknowledged pushes, kept beside the spool: the accounting can be redone
        // from the two files if the read-back is interrupted.
        let acked: Vec<String> = run
            .load
            .acked
            .iter()
            .map(|a| format!("{} {} {}", a.host, a.ts_ms, a.series))
            .collect();
        std::fs::write(opts.dir.join("acked.txt"), acked.join("\n"))
            .map_err(|e| format!("{}: {e}", opts.dir.display()))?;
        let (found, _) = t1::index_spool(&run.spool, |_| true)?;
        let acc = t1::account(&run.load.acked, &found);
        results.push(t1::verdict(&acc, &run));
        plots.extend(run.plots);
        notes.push(format!(
            "T1: {} simulated hosts × 300 series, {:?} baseline cadence at {}× load, for {:?}",
            plan.hosts, plan.cadence, plan.load, plan.duration
        ));
        let _ = std::fs::remove_dir_all(&opts.dir);
    }
    if wants("T2") {
        let opts =
            t2::BurstOptions::scaled(plan.hosts, plan.duration, plan.cadence, plan.dir.join("t2"));
        let run = t2::run(&opts).await?;
        results.push(t2::judge(&run)?);
        plots.extend(run.plots.clone());
        notes.push(format!("T2: {}", opts.describe()));
        let _ = std::fs::remove_dir_all(&opts.dir);
    }
    let edge_gates = ["T4", "T5", "T6", "T7", "privacy"];
    if !edge_gates.iter().any(|g| wants(g)) {
        return Ok((results, plots, notes));
    }
    let base = EdgeOptions {
        name: String::new(),
        agents: plan.agents,
        duration: plan.agent_duration,
        cadence: plan.cadence,
        gateways: 1,
        kill_at: None,
        cut: None,
        log_lines_per_second: 20,
        drain_bound: (plan.cadence * 60).max(Duration::from_secs(30)),
        dir: plan.dir.clone(),
    };
    let mut runs = Vec::new();
    if wants("T4") || !wants("T5") {
        let opts = EdgeOptions {
            name: "T4".into(),
            gateways: 2,
            kill_at: Some(plan.agent_duration / 2),
            dir: plan.dir.join("t4"),
            ..base.clone()
        };
        let run = edge::run(&opts).await?;
        notes.push(format!(
            "T4 run: {} agents with their games and logs, 2 gateways, {:?} cadence, for {:?}; gateway 1 killed at {:?}",
            opts.agents, opts.cadence, opts.duration, opts.kill_at.unwrap_or_default()
        ));
        if wants("T4") {
            results.push(edge::t4_verdict(&run));
        }
        runs.push(run);
    }
    if wants("T5") || !wants("T4") {
        let length = (plan.cadence * 60).min(plan.agent_duration / 2);
        let opts = EdgeOptions {
            name: "T5".into(),
            cut: Some((plan.agent_duration / 6, length)),
            dir: plan.dir.join("t5"),
            ..base.clone()
        };
        let run = edge::run(&opts).await?;
        notes.push(format!(
            "T5 run: {} agents, 1 gateway, {:?} cadence, for {:?}; Kinesis unreachable from {:?} for {:?}",
            opts.agents,
            opts.cadence,
            opts.duration,
            plan.agent_duration / 6,
            length
        ));
        if wants("T5") {
            results.push(edge::t5_verdict(&run));
        }
        runs.push(run);
    }
    let refs: Vec<&edge::EdgeRun> = runs.iter().collect();
    if wants("T6") {
        results.push(edge::t6_verdict(&refs, plan.cadence * 30));
    }
    if wants("T7") {
        results.push(edge::t7_verdict(&refs));
    }
    if wants("privacy") {
        results.push(edge::privacy_verdict(&refs));
    }
    for run in runs {
        plots.extend(run.plots);
        let _ = std::fs::remove_dir_all(&run.opts.dir);
    }
    Ok((results, plots, notes))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gates: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gates: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let started = std::time::Instant::now();
        let (results, plots, mut notes) = run(&plan).await?;
        notes.push(format!(
            "machine: {} cores; the load generators share it with the daemons; wall time {:.0} min",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            started.elapsed().as_secs_f64() / 60.0
        ));
        notes.push(format!(
            "command: `cargo run --release -p edge-tests --bin gates -- {}`",
            args.get(1..).unwrap_or_default().join(" ")
        ));
        let report = Report {
            title: format!("Acceptance gates: {}", plan.gates.join(", ")),
            notes,
            results,
            plots,
        };
        let path = report
            .write(&plan.out)
            .map_err(|e| format!("{}: {e}", plan.out.display()))?;
        let _ = std::fs::remove_dir_all(&plan.dir);
        Ok::<_, String>((report.passed(), path))
    });
    match result {
        Ok((passed, path)) => {
            println!("report: {}", path.display());
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("gates: {e}");
            ExitCode::from(1)
        }
    }
}
