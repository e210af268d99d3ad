//! Metric cases: Prometheus text sample lines → the metrics pipeline's
//! [`Pipeline::offer_series`] (the store's checks, then the policy and budget gate), as
//! the receiver runs it for a push.

use std::time::Instant;

use edge_schema::check::Schema;
use edge_schema::exposition::parse_sample;
use edge_schema::proto::prometheus::{Label, Sample, TimeSeries};

use super::cases::{ExpectSeries, MetricCase};
use crate::metrics::gate::Gate;
use crate::metrics::{Batch, Offered, Pipeline, now_ms};

/// The verdict on each of a case's series, one fresh gate per case (so a budget case
/// sees only its own series): `kept`, `refused: REASON`, `invalid: REASON`, `unnamed`.
pub fn run(
    schema: &Schema,
    budget: u32,
    host_labels: &[(String, String)],
    case: &MetricCase,
) -> Result<Vec<String>, String> {
    let mut pipeline = Pipeline {
        gate: Gate::new(schema.clone(), budget),
        batch: Batch::default(),
        host_labels: host_labels.to_vec(),
        taps: Default::default(),
    };
    let now = Instant::now();
    let now_ms = now_ms();
    let mut verdicts = Vec::new();
    for (i, line) in case.series.iter().enumerate() {
        let sample = parse_sample(line).map_err(|e| {
            format!(
                "series[{i}] {line:?}: not a sample line at byte {}: {}",
                e.at, e.message
            )
        })?;
        let mut labels = vec![Label {
            name: "__name__".into(),
            value: sample.name.to_owned(),
        }];
        labels.extend(sample.labels.iter().map(|l| Label {
            name: l.name.to_owned(),
            value: l.value.clone().into_owned(),
        }));
        let ts = TimeSeries {
            labels,
            samples: vec![Sample {
                value: sample.value,
                timestamp: sample.timestamp.unwrap_or(now_ms),
            }],
            ..TimeSeries::default()
        };
        verdicts.push(match pipeline.offer_series(ts, now_ms, now) {
            Offered::Unnamed => "unnamed".to_owned(),
            Offered::Invalid(fault) => format!("invalid: {}", fault.reason()),
            Offered::Refused { reason, .. } => format!("refused: {reason}"),
            Offered::Accepted(_) => "kept".to_owned(),
        });
    }
    Ok(verdicts)
}

/// An expectation as the runner writes verdicts.
pub fn render_expected(e: &ExpectSeries) -> String {
    match e {
        ExpectSeries::Word(w) => w.clone(),
        ExpectSeries::Reason {
            refused: Some(r), ..
        } => format!("refused: {r}"),
        ExpectSeries::Reason {
            invalid: Some(r), ..
        } => format!("invalid: {r}"),
        ExpectSeries::Reason { .. } => "(an empty expectation)".to_owned(),
    }
}
