//! The seed's acceptance gates, runnable on one machine against the real binaries: each
//! gate runs a scenario, measures, and says pass or fail against its criterion. A run
//! writes a report: a Markdown table (gate, criterion, measured, pass/fail) and SVG
//! plots of what the gateway saw over time.
//!
//! Built so far: T1 (soak). The short form runs in the test suite
//! (`tests/tests/gates.rs`); the long form is `cargo run --release -p edge-tests --bin
//! gates -- --gate T1 --duration 30m`.

pub mod t1;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One gate's verdict.
#[derive(Clone, Debug)]
pub struct GateResult {
    /// `T1`, `T2`, …
    pub gate: String,
    /// What must hold, in words.
    pub criterion: String,
    /// What was measured, in words.
    pub measured: String,
    /// Whether the criterion held.
    pub pass: bool,
}

/// A series over time: `(seconds since start, value)`.
#[derive(Clone, Debug, Default)]
pub struct Plot {
    /// File stem and title.
    pub name: String,
    /// The value's unit, for the axis.
    pub unit: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// A run's report.
#[derive(Debug, Default)]
pub struct Report {
    /// A heading: what was run, where, with which parameters.
    pub title: String,
    /// Lines under the heading (machine, command, duration).
    pub notes: Vec<String>,
    /// Verdicts.
    pub results: Vec<GateResult>,
    /// Plots.
    pub plots: Vec<Plot>,
}

impl Report {
    /// Whether every gate passed.
    pub fn passed(&self) -> bool {
        !self.results.is_empty() && self.results.iter().all(|r| r.pass)
    }

    /// Writes `report.md` and one SVG per plot into `dir`; the Markdown's path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let mut md = format!("# {}\n\n", self.title);
        for n in &self.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push_str("\n| gate | criterion | measured | result |\n|---|---|---|---|\n");
        for r in &self.results {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.gate,
                r.criterion,
                r.measured,
                if r.pass { "**pass**" } else { "**FAIL**" }
            );
        }
        for p in &self.plots {
            let file = format!("{}.svg", p.name.replace(' ', "_"));
            std::fs::write(dir.join(&file), svg(p))?;
            let _ = write!(md, "\n![{}]({file})\n", p.name);
        }
        let path = dir.join("report.md");
        std::fs::write(&path, md)?;
        Ok(path)
    }
}

/// A line chart, 720×240, with the axes' ranges written on them.
pub fn svg(plot: &Plot) -> String {
    let (w, h, left, bottom, top, right) = (720.0, 240.0, 70.0, 30.0, 28.0, 12.0);
    let max_x = plot.points.iter().map(|p| p.0).fold(1e-9, f64::max);
    let max_y = plot.points.iter().map(|p| p.1).fold(1e-9, f64::max) * 1.1;
    let x = |v: f64| left + (w - left - right) * v / max_x;
    let y = |v: f64| h - bottom - (h - bottom - top) * v / max_y;
    let points: Vec<String> = plot
        .points
        .iter()
        .map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py)))
        .collect();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="#fff"/>
<text x="{left}" y="18" font-weight="bold">{title}</text>
<line x1="{left}" y1="{by}" x2="{rx}" y2="{by}" stroke="#888"/>
<line x1="{left}" y1="{top}" x2="{left}" y2="{by}" stroke="#888"/>
<text x="{lx}" y="{ty}" text-anchor="end">{ymax:.1}</text>
<text x="{lx}" y="{by}" text-anchor="end">0</text>
<text x="{left}" y="{xy}">0 s</text>
<text x="{rx}" y="{xy}" text-anchor="end">{xmax:.0} s</text>
<text x="12" y="{my}" transform="rotate(-90 12 {my})" text-anchor="middle">{unit}</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>
</svg>
"##,
        title = escape(&plot.name),
        unit = escape(&plot.unit),
        by = h - bottom,
        rx = w - right,
        lx = left - 4.0,
        ty = top + 4.0,
        xy = h - 10.0,
        my = (h - bottom + top) / 2.0,
        ymax = max_y,
        xmax = max_x,
        points = points.join(" "),
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The sum of `name`'s series (those whose labels contain `with`) in Prometheus text.
pub fn metric_sum(text: &str, name: &str, with: &str) -> f64 {
    text.lines()
        .filter(|l| {
            (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                && l.contains(with)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // Not `sum()`: an empty float sum is -0.0, which prints as "-0".
        .fold(0.0, |a, b| a + b)
}

/// The values of `pii` that appear anywhere in the file sink's spool under `spool`
/// (every segment of `metrics/` and `logs/`, read as raw bytes, so a value counts
/// wherever it is: key, label, message or attribute), and the bytes searched.
pub fn pii_in_spool<'a>(spool: &Path, pii: &[&'a str]) -> (Vec<&'a str>, usize) {
    let mut all = Vec::new();
    for stream in ["metrics", "logs"] {
        if let Ok(entries) = std::fs::read_dir(spool.join(stream)) {
            for e in entries.flatten() {
                all.extend(std::fs::read(e.path()).unwrap_or_default());
            }
        }
    }
    let found = pii
        .iter()
        .copied()
        .filter(|p| all.windows(p.len()).any(|w| w == p.as_bytes()))
        .collect();
    (found, all.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_has_its_table_and_plots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = Report {
            title: "gates".into(),
            notes: vec!["2 cores".into()],
            results: vec![GateResult {
                gate: "T1".into(),
                criterion: "zero loss".into(),
                measured: "0 lost".into(),
                pass: true,
            }],
            plots: vec![Plot {
                name: "accepted samples per s".into(),
                unit: "samples/s".into(),
                points: vec![(0.0, 1.0), (1.0, 3.0)],
            }],
        };
        assert!(report.passed());
        let md = std::fs::read_to_string(report.write(dir.path()).expect("write")).expect("md");
        assert!(
            md.contains("| T1 | zero loss | 0 lost | **pass** |"),
            "{md}"
        );
        assert!(md.contains("![accepted samples per s](accepted_samples_per_s.svg)"));
        let svg =
            std::fs::read_to_string(dir.path().join("accepted_samples_per_s.svg")).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{svg}"
        );
        assert_eq!(
            metric_sum("a{x=\"1\"} 2\na{x=\"2\"} 3\nab 9\na 1\n", "a", ""),
            6.0
        );
        assert_eq!(format!("{}", metric_sum("", "a", "")), "0", "not -0");
    }
}
