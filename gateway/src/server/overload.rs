//! The overload controller: stages that shed logs, throttle tenants and at last
//! answer 503, stepped by the commit latency's p99.
//!
//! The stages, in order: the configured `overload.actions` (shed logs, throttle the
//! listed tenants); then one stage per tenant `priority` below the highest, lowest
//! first, each throttling (429) every tenant at or below that priority; then 503 to
//! everyone. So the seed's shed order holds (verbose logs, then low-priority tenants,
//! then ingest), and the most important tenant is the last one refused.

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

/// What the overload stage in force means for a request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Pressure {
    /// The stage.
    pub(super) stage: u8,
    /// The log levels agents are asked to shed.
    pub(super) shed: Option<&'static str>,
    /// Tenants throttled by name (`throttle_tenants`).
    pub(super) throttled: Vec<String>,
    /// Tenants at or below this priority are throttled.
    pub(super) priority_at_most: Option<u32>,
    /// The last stage: 503 to everyone.
    pub(super) everyone: bool,
}

impl Pressure {
    /// Whether `tenant`, of `priority`, is throttled (429).
    pub(super) fn throttles(&self, tenant: &str, priority: u32) -> bool {
        self.throttled.iter().any(|t| t == tenant)
            || self.priority_at_most.is_some_and(|p| priority <= p)
    }
}

/// The tenant priorities below the highest configured one, lowest first: one stage each.
pub(super) fn priority_tiers(config: &crate::config::GatewayConfig) -> Vec<u32> {
    let mut tiers: Vec<u32> = config.tenants.values().map(|l| l.priority).collect();
    tiers.sort_unstable();
    tiers.dedup();
    tiers.pop();
    tiers
}

/// The last stage: past every action and every priority tier.
pub(super) fn last_stage(config: &crate::config::GatewayConfig) -> u8 {
    let stages = config.overload.actions.len() + priority_tiers(config).len() + 1;
    u8::try_from(stages).unwrap_or(u8::MAX)
}

/// What `stage` means under `config`.
pub(super) fn pressure_at(config: &crate::config::GatewayConfig, stage: u8) -> Pressure {
    let actions = &config.overload.actions;
    let mut pressure = Pressure {
        stage,
        ..Pressure::default()
    };
    for a in &actions[..usize::from(stage).min(actions.len())] {
        match a {
            OverloadAction::ReduceLogSampling(p) => {
                pressure.shed = Some(if *p > 50 { "info" } else { "debug" });
            }
            OverloadAction::ThrottleTenants(t) => pressure.throttled.extend(t.iter().cloned()),
        }
    }
    let tiers = priority_tiers(config);
    let past_actions = usize::from(stage).saturating_sub(actions.len());
    if past_actions > 0 {
        pressure.priority_at_most = tiers
            .get(past_actions.min(tiers.len()).wrapping_sub(1))
            .copied();
    }
    pressure.everyone = stage >= last_stage(config);
    pressure
}

impl Gateway {
    /// The overload stage now, and what it means.
    pub(super) fn overload_now(&self, live: &Live) -> Pressure {
        pressure_at(&live.config, self.overload.stage.load(Ordering::Relaxed))
    }

    /// One step of the overload controller (every second): escalates after 5 s over
    /// the threshold, steps back after 15 s under it.
    pub fn overload_tick(&self) {
        let live = self.live();
        let threshold = live.config.overload.freshness_threshold_p99;
        let over = self.telemetry.commit_p99() > threshold;
        let max = last_stage(&live.config);
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
    fn low_priority_tenants_are_throttled_tier_by_tier_before_everyone_gets_503() {
        let config = crate::config::parse(
            std::path::Path::new("gateway.yaml"),
            "tls: off\ntokenize: { key_file: /k }\n\
             sinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\n\
             tenants:\n  default: { priority: 50 }\n  game: { priority: 100 }\n  batch: { priority: 10 }\n  studio: { priority: 100 }\n\
             overload: { actions: [ { reduce_log_sampling: 50% }, { throttle_tenants: [studio] } ] }\n",
            &|_| None,
        )
        .expect("config");
        assert_eq!(priority_tiers(&config), [10, 50]);
        // Two actions, two tiers below the highest, then 503: six stages.
        assert_eq!(last_stage(&config), 5);
        let limits = |t: &str| config.limits_of(t).priority;
        let throttled = |stage: u8| -> Vec<&str> {
            ["game", "default", "batch", "studio"]
                .into_iter()
                .filter(|t| pressure_at(&config, stage).throttles(t, limits(t)))
                .collect()
        };
        assert!(throttled(1).is_empty(), "stage 1 sheds logs only");
        assert_eq!(throttled(2), ["studio"], "the listed tenant");
        assert_eq!(
            throttled(3),
            ["batch", "studio"],
            "then the lowest priority"
        );
        assert_eq!(
            throttled(4),
            ["default", "batch", "studio"],
            "then the next tier; the game tenant is the last one refused"
        );
        assert!(!pressure_at(&config, 4).everyone);
        assert!(pressure_at(&config, 5).everyone, "at last 503 to everyone");
        assert_eq!(pressure_at(&config, 1).shed, Some("debug"));
    }

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
