//! The acceptance gates, full length:
//!
//! `cargo run --release -p edge-tests --bin gates -- --gate T1 [--duration 30m]
//!  [--hosts 1700] [--cadence 10s] [--load 1.3] [--out docs/gates/<date>]`
//!
//! Writes `report.md` and its plots into `--out` and exits 0 if every gate passed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use edge_tests::gates::{Report, t1};

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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let parsed = (|| -> Result<(String, t1::SoakOptions, PathBuf), String> {
        let gate = value(&args, "--gate").ok_or("give --gate T1")?;
        let out = PathBuf::from(value(&args, "--out").unwrap_or_else(|| "gates-report".into()));
        let opts = t1::SoakOptions {
            hosts: value(&args, "--hosts").map_or(Ok(1700), |h| {
                h.parse().map_err(|_| format!("--hosts {h:?}"))
            })?,
            duration: duration(&value(&args, "--duration").unwrap_or_else(|| "30m".into()))?,
            cadence: duration(&value(&args, "--cadence").unwrap_or_else(|| "10s".into()))?,
            load: value(&args, "--load")
                .map_or(Ok(1.3), |l| l.parse().map_err(|_| format!("--load {l:?}")))?,
            dir: std::env::temp_dir().join(format!("edgepipe-gates-{}", std::process::id())),
        };
        Ok((gate, opts, out))
    })();
    let (gate, opts, out) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gates: {e}");
            return ExitCode::from(2);
        }
    };
    if gate != "T1" {
        eprintln!("gates: {gate} is not built yet; T1 is");
        return ExitCode::from(2);
    }
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
        let verdict = t1::verdict(&acc, &run);
        let report = Report {
            title: format!("Acceptance gates: {gate}"),
            notes: vec![
                format!(
                    "{} simulated hosts × 300 series, {:?} baseline cadence at {}× load, for {:?}",
                    opts.hosts, opts.cadence, opts.load, opts.duration
                ),
                format!(
                    "machine: {} cores; the load generator shares it with the gateway",
                    std::thread::available_parallelism().map_or(0, |n| n.get())
                ),
                format!("command: {}", args.join(" ")),
            ],
            results: vec![verdict],
            plots: run.plots,
        };
        let path = report
            .write(&out)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        let _ = std::fs::remove_dir_all(&opts.dir);
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
