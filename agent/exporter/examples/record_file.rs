//! The canary tool: compare histogram quantiles with raw-sample quantiles.
//!
//! ```sh
//! cargo run --release -p edge-exporter --example record_file -- FILE [--scale N] [--push URL]
//! ```
//!
//! Reads one floating-point value per line from FILE, records them all into one
//! exponential histogram, and prints one JSON object with the histogram's estimates
//! (`p50` … `p999`) next to the exact quantiles of the raw data. With `--push URL` it also
//! pushes the histogram once, as the native histogram series `record_file_values`, to a
//! remote_write URL (a stock Prometheus started with `--web.enable-remote-write-receiver`
//! and `--enable-feature=native-histograms`, or the local agent).

use std::process::ExitCode;
use std::time::Duration;

use edge_exporter::histogram::ExpHistogram;
use edge_exporter::registry::{DEFAULT_SCALE, Registry};

struct Args {
    file: String,
    scale: i32,
    push: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut scale = DEFAULT_SCALE;
    let mut push = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--scale" => {
                let v = args.next().ok_or("--scale needs a number")?;
                scale = v
                    .parse()
                    .map_err(|_| format!("--scale: `{v}` is not an integer"))?;
            }
            "--push" => push = Some(args.next().ok_or("--push needs a URL")?),
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with('-') => return Err(format!("unknown option `{other}`")),
            other => file = Some(other.to_string()),
        }
    }
    Ok(Args {
        file: file.ok_or("FILE is required")?,
        scale,
        push,
    })
}

/// The exact quantile of sorted data: the value at rank ⌈q·n⌉ (1-based), the same rank
/// definition the histogram's estimate uses.
fn exact(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn json_number(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("record_file: {e}");
            }
            eprintln!("usage: record_file FILE [--scale N] [--push URL]");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("record_file: cannot read {}: {e}", args.file);
            return ExitCode::from(2);
        }
    };

    let registry = Registry::new();
    let histogram = match registry.histogram_with_scale(
        "record_file_values",
        "Values read from a file by the record_file canary tool.",
        args.scale,
    ) {
        Ok(family) => family.with_or_overflow(&[]),
        Err(e) => {
            eprintln!("record_file: {e}");
            return ExitCode::from(2);
        }
    };
    let mut raw = Vec::new();
    let mut skipped = 0u64;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<f64>() {
            Ok(v) if v.is_finite() => {
                histogram.record(v);
                raw.push(v);
            }
            _ => {
                skipped += 1;
                eprintln!(
                    "record_file: line {}: `{line}` is not a finite number; skipped",
                    n + 1
                );
            }
        }
    }
    raw.sort_by(f64::total_cmp);
    let snapshot: ExpHistogram = histogram.snapshot();
    let mut out = serde_json::Map::new();
    out.insert("count".into(), snapshot.count().into());
    out.insert("sum".into(), json_number(snapshot.sum()));
    out.insert("scale".into(), snapshot.scale().into());
    out.insert("buckets".into(), snapshot.bucket_count().into());
    for (key, q) in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p95", 0.95),
        ("p99", 0.99),
        ("p999", 0.999),
    ] {
        out.insert(
            key.into(),
            json_number(snapshot.quantile(q).unwrap_or(f64::NAN)),
        );
    }
    out.insert("exact_p50".into(), json_number(exact(&raw, 0.5)));
    out.insert("exact_p99".into(), json_number(exact(&raw, 0.99)));
    if skipped > 0 {
        out.insert("skipped".into(), skipped.into());
    }
    println!("{}", serde_json::Value::Object(out));

    if let Some(url) = args.push {
        if let Err(e) = edge_exporter::push::push_once(&registry, &url, Duration::from_secs(5)) {
            eprintln!("record_file: {e}");
            return ExitCode::from(1);
        }
        eprintln!("record_file: pushed record_file_values to {url}");
    }
    ExitCode::SUCCESS
}
