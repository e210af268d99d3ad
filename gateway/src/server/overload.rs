//! The overload controller: stages that shed logs, throttle tenants and at last
//! answer 503, stepped by the commit latency's p99.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::Gateway;
use super::live::Live;
use crate::config::OverloadAction;
use crate::telemetry::labels;
use crate::telemetry::{
    GATEWAY_ACTIVE_SERIES, GATEWAY_OVERLOAD_STAGE, GATEWAY_SINK_BACKLOG_BYTES,
    GATEWAY_SINK_BACKLOG_RECORDS,
};

/// The overload controller's state: stage 0 is normal; stage k ≤ actions applies the
/// first k actions; one past the last answers 503 to everyone.
#[derive(Debug, Default)]
pub(super) struct OverloadState {
    stage: AtomicU8,
    since: Mutex<Option<Instant>>,
}

impl Gateway {
    /// The overload stage now, and what it means.
    pub(super) fn overload_now(&self, live: &Live) -> (u8, Option<&'static str>, Vec<String>) {
        let stage = self.overload.stage.load(Ordering::Relaxed);
        let actions = &live.config.overload.actions;
        let applied = &actions[..usize::from(stage).min(actions.len())];
        let mut shed = None;
        let mut throttled = Vec::new();
        for a in applied {
            match a {
                OverloadAction::ReduceLogSampling(p) => {
                    shed = Some(if *p > 50 { "info" } else { "debug" });
                }
                OverloadAction::ThrottleTenants(t) => throttled.extend(t.iter().cloned()),
            }
        }
        (stage, shed, throttled)
    }

    /// One step of the overload controller (every second): escalates after 5 s over
    /// the threshold, steps back after 15 s under it.
    pub fn overload_tick(&self) {
        let live = self.live();
        let threshold = live.config.overload.freshness_threshold_p99;
        let over = self.telemetry.commit_p99() > threshold;
        let max = live.config.overload.actions.len() as u8 + 1;
        let stage = self.overload.stage.load(Ordering::Relaxed);
        let mut since = self
            .overload
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let held = since.map_or(Duration::MAX, |s| now.saturating_duration_since(s));
        let next = next_stage(stage, over, held, max);
        if next != stage {
            *since = Some(now);
            self.overload.stage.store(next, Ordering::Relaxed);
            tracing::warn!(stage = next, p99 = ?self.telemetry.commit_p99(), "overload stage changed");
        }
        self.telemetry
            .set(&GATEWAY_OVERLOAD_STAGE, String::new(), f64::from(next));
        let traces = self.traces_sink.as_ref().map(|t| ("traces", t.sink()));
        let sinks = [("metrics", &self.metrics_sink), ("logs", &self.logs_sink)];
        for (name, sink) in sinks.into_iter().chain(traces) {
            let (records, bytes) = sink.backlog();
            self.telemetry.set(
                &GATEWAY_SINK_BACKLOG_RECORDS,
                labels(&[("sink", name)]),
                records as f64,
            );
            self.telemetry.set(
                &GATEWAY_SINK_BACKLOG_BYTES,
                labels(&[("sink", name)]),
                bytes as f64,
            );
        }
        for (tenant, n) in self.quotas.active_series() {
            self.telemetry.set(
                &GATEWAY_ACTIVE_SERIES,
                labels(&[("tenant", &tenant)]),
                n as f64,
            );
        }
    }
}

/// How long the sink must be over the threshold before the next action, and under it
/// before stepping back.
pub const ESCALATE_AFTER: Duration = Duration::from_secs(5);
/// See [`ESCALATE_AFTER`].
pub const RECOVER_AFTER: Duration = Duration::from_secs(15);

/// The overload stage after one tick: up one stage (to at most `max`) after
/// [`ESCALATE_AFTER`] over the threshold in this stage, down one after
/// [`RECOVER_AFTER`] under it.
pub fn next_stage(stage: u8, over: bool, held: Duration, max: u8) -> u8 {
    if over && stage < max && held >= ESCALATE_AFTER {
        stage + 1
    } else if !over && stage > 0 && held >= RECOVER_AFTER {
        stage - 1
    } else {
        stage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_escalates_in_order_and_recovers_slowly() {
        let s = Duration::from_secs;
        // Over the threshold: one stage per ESCALATE_AFTER, up to one past the actions.
        assert_eq!(next_stage(0, true, Duration::MAX, 3), 1);
        assert_eq!(next_stage(1, true, s(4), 3), 1, "not yet");
        assert_eq!(next_stage(1, true, s(5), 3), 2);
        assert_eq!(next_stage(3, true, s(60), 3), 3, "the last stage holds");
        // Under it: back one stage per RECOVER_AFTER.
        assert_eq!(next_stage(3, false, s(14), 3), 3);
        assert_eq!(next_stage(3, false, s(15), 3), 2);
        assert_eq!(next_stage(0, false, s(60), 3), 0);
    }
}
