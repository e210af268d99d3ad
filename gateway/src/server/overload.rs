//! The overload controller: stages that shed logs, throttle tenants and at last
//! answer 503, stepped every second by what the gateway sees of itself.
//!
//! What it judges, over the last 10 s ([`judge`]):
//! - **the sink**: the commit latency p99, *per tenant*. The sink counts as slow when
//!   some tenant with at least [`MIN_COMMITS_JUDGED`] commits is over
//!   `overload.freshness_threshold_p99` and no tenant's commits are under it: one
//!   tenant's failing or slow commits (a poison series its store answers 500 to,
//!   retried for 30 s) say nothing about the sink for the others, and throttle no one.
//! - **the box**: saturated when admission refused at least [`REFUSED_RATIO`] of the
//!   requests, or when the p99 of the gateway's own time per request (admission wait,
//!   work and commit while it holds its slot) is over `overload.ttfb_threshold_p99`; each
//!   only with at least [`MIN_REQUESTS_JUDGED`] requests. Only the requests of tenants
//!   *above* the priority tiers the stage in force throttles are judged
//!   ([`judged_above`]): the throttled tenants' own resends and refusals say nothing
//!   about whether the box has room for the others, and judged with them the box would
//!   look saturated for as long as their backlog lasts, so the stage would never step
//!   back (the 2026-12-05 T2 run held the noisy tenant at stage 3 through its recovery).
//!   When the tenants still served are admitted and fast, the stage steps back; if the
//!   released tenants saturate the box again, it goes up again ([`ESCALATE_AFTER`]).
//!
//! A slow sink may take the stages to the last (503 to everyone: the sink cannot take
//! more). A saturated box takes them up to the last priority tier but not to the 503
//! stage: admission already refuses request by request, the least important first, and
//! 503 to everyone would serve no one.
//!
//! The stages, in order: the configured `overload.actions` (shed logs, throttle the
//! listed tenants); then one stage per tenant `priority` below the highest, lowest
//! first, each throttling every tenant at or below that priority; then 503 to
//! everyone. So the seed's shed order holds (verbose logs, then low-priority tenants,
//! then ingest), and the most important tenant is the last one refused.
//!
//! **A throttle is a rate cut, not a wall** ([`Pressure::share`]): a throttled tenant
//! is cut to [`THROTTLE_SHARE`] of its rate for each stage in force that throttles it
//! (a half, a quarter, ...; at least [`MIN_SHARE`]), of the lower of its quota and what
//! it was admitted lately (`quota.rs`, [`crate::quota::Quotas::throttle`]); the excess
//! is answered 429 with the wait until the cut has room again. So a throttled tenant's
//! backlog still drains, slowly, and the box's load from it falls by the share; as
//! Envoy's overload manager scales its actions with the pressure rather than switching
//! them on and off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use super::Gateway;
use super::admission::Picture;
use super::live::Live;
use crate::config::{Overload, OverloadAction};
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
    /// Tenants throttled by name (`throttle_tenants`), once per action listing them.
    pub(super) throttled: Vec<String>,
    /// Tenants at or below this priority are throttled.
    pub(super) priority_at_most: Option<u32>,
    /// The priority tiers throttled, one per stage in force (tenants at or below each).
    pub(super) tiers: Vec<u32>,
    /// The last stage: 503 to everyone.
    pub(super) everyone: bool,
}

/// A throttled tenant keeps this share of its rate per stage in force that throttles
/// it.
pub(super) const THROTTLE_SHARE: f64 = 0.5;
/// The least share a throttled tenant keeps.
pub(super) const MIN_SHARE: f64 = 1.0 / 16.0;

impl Pressure {
    /// The share of its rate `tenant`, of `priority`, keeps (`None`: not throttled):
    /// [`THROTTLE_SHARE`] per stage in force that throttles it, at least [`MIN_SHARE`].
    pub(super) fn share(&self, tenant: &str, priority: u32) -> Option<f64> {
        let by_name = self.throttled.iter().filter(|t| *t == tenant).count();
        let by_tier = self.tiers.iter().filter(|p| priority <= **p).count();
        let stages = i32::try_from(by_name + by_tier).unwrap_or(i32::MAX);
        (stages > 0).then(|| THROTTLE_SHARE.powi(stages).max(MIN_SHARE))
    }
}

/// The tenants whose requests the controller judges the box on at `stage`: those above
/// the highest priority tier it throttles (`None`: every tenant).
pub(super) fn judged_above(config: &crate::config::GatewayConfig, stage: u8) -> Option<u32> {
    pressure_at(config, stage).priority_at_most
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
        pressure.tiers = tiers[..past_actions.min(tiers.len())].to_vec();
        pressure.priority_at_most = pressure.tiers.last().copied();
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
        let stage = self.overload.stage.load(Ordering::Relaxed);
        let above = judged_above(&live.config, stage);
        let picture = self.admission.picture_above(above);
        self.admission_gauges(&picture);
        let verdict = judge(
            &live.config.overload,
            &self.telemetry.commit_p99_by_tenant(),
            &picture,
        );
        let last = last_stage(&live.config);
        let (over, max) = if verdict.sink_slow {
            (true, last)
        } else if verdict.saturated && stage < last {
            (true, last - 1)
        } else {
            (false, last)
        };
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
            tracing::warn!(
                stage = next,
                commit_p99 = ?self.telemetry.commit_p99(),
                sink_slow = verdict.sink_slow,
                saturated = verdict.saturated,
                admitted = picture.admitted,
                refused = picture.refused,
                own_p99 = ?picture.own_p99,
                judged_above = ?above,
                "overload stage changed"
            );
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

/// Commits a tenant needs in the window before its p99 can call the sink slow.
pub const MIN_COMMITS_JUDGED: usize = 20;
/// Requests in the window before admission's picture can call the box saturated.
pub const MIN_REQUESTS_JUDGED: u64 = 20;
/// The share of requests refused by admission from which the box counts as saturated.
pub const REFUSED_RATIO: f64 = 0.05;

/// What the controller concluded from one look.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Verdict {
    /// The sink is slow for every tenant that committed.
    pub(super) sink_slow: bool,
    /// The box is saturated: admission refuses, or the gateway's own time is long.
    pub(super) saturated: bool,
}

/// Judges the commit latency per tenant (p99 and count) and admission's picture.
pub(super) fn judge(
    config: &Overload,
    commits: &BTreeMap<String, (Duration, usize)>,
    picture: &Picture,
) -> Verdict {
    let threshold = config.freshness_threshold_p99;
    let slow = commits
        .values()
        .any(|(p99, n)| *n >= MIN_COMMITS_JUDGED && *p99 > threshold);
    // A tenant whose commits are fast shows the sink works, whatever its volume.
    let fine = commits.values().any(|(p99, n)| *n > 0 && *p99 <= threshold);
    let requests = picture.admitted + picture.refused;
    let refusing = requests >= MIN_REQUESTS_JUDGED
        && picture.refused as f64 >= REFUSED_RATIO * requests as f64;
    let slow_inside = picture.samples as u64 >= MIN_REQUESTS_JUDGED
        && picture.own_p99 > config.ttfb_threshold_p99;
    Verdict {
        sink_slow: slow && !fine,
        saturated: refusing || slow_inside,
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
                .filter(|t| pressure_at(&config, stage).share(t, limits(t)).is_some())
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

    fn picture(admitted: u64, refused: u64, own_p99_ms: u64, samples: usize) -> Picture {
        Picture {
            admitted,
            refused,
            own_p99: Duration::from_millis(own_p99_ms),
            samples,
            limit: 8,
            in_flight: 0,
            queued: 0,
        }
    }

    #[test]
    fn one_tenants_slow_commits_do_not_make_the_sink_slow_for_the_others() {
        let config = Overload {
            freshness_threshold_p99: Duration::from_secs(2),
            ttfb_threshold_p99: Duration::from_millis(250),
            actions: Vec::new(),
        };
        let quiet = picture(100, 0, 5, 100);
        let commits = |list: &[(&str, u64, usize)]| -> BTreeMap<String, (Duration, usize)> {
            list.iter()
                .map(|(t, ms, n)| (t.to_string(), (Duration::from_millis(*ms), *n)))
                .collect()
        };
        // The poison tenant's commits are retried for 30 s; the other's take 5 ms.
        let v = judge(
            &config,
            &commits(&[("poison", 30_000, 50), ("game", 5, 200)]),
            &quiet,
        );
        assert_eq!(v, Verdict::default(), "the sink works for game");
        // Every tenant slow: the sink is slow.
        let v = judge(
            &config,
            &commits(&[("poison", 30_000, 50), ("game", 4_000, 200)]),
            &quiet,
        );
        assert!(v.sink_slow);
        // Too few commits to judge.
        let v = judge(&config, &commits(&[("poison", 30_000, 19)]), &quiet);
        assert!(!v.sink_slow, "a minimum volume before judging");
        assert!(judge(&config, &commits(&[("poison", 30_000, 20)]), &quiet).sink_slow);
    }

    #[test]
    fn refusals_and_the_gateways_own_time_make_the_box_saturated() {
        let config = Overload {
            freshness_threshold_p99: Duration::from_secs(2),
            ttfb_threshold_p99: Duration::from_millis(250),
            actions: Vec::new(),
        };
        let none = BTreeMap::new();
        assert!(!judge(&config, &none, &picture(96, 4, 5, 96)).saturated);
        assert!(judge(&config, &none, &picture(95, 5, 5, 95)).saturated);
        assert!(
            !judge(&config, &none, &picture(5, 10, 5, 5)).saturated,
            "too few requests to judge"
        );
        assert!(judge(&config, &none, &picture(100, 0, 300, 100)).saturated);
        assert!(!judge(&config, &none, &picture(100, 0, 300, 10)).saturated);
        assert!(!judge(&config, &none, &picture(100, 0, 250, 100)).sink_slow);
    }

    fn two_tier_config() -> crate::config::GatewayConfig {
        crate::config::parse(
            std::path::Path::new("gateway.yaml"),
            "tls: off\ntokenize: { key_file: /k }\n\
             sinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\n\
             tenants:\n  default: { priority: 50 }\n  game: { priority: 100 }\n  noisy: { priority: 10 }\n\
             overload: { actions: [ { reduce_log_sampling: 50% } ] }\n",
            &|_| None,
        )
        .expect("config")
    }

    #[test]
    fn a_throttle_is_a_rate_cut_that_deepens_with_each_stage_that_throttles_the_tenant() {
        let config = two_tier_config();
        // Shed logs; noisy; default and noisy; 503.
        assert_eq!(last_stage(&config), 4);
        let share = |stage: u8, tenant: &str| {
            pressure_at(&config, stage).share(tenant, config.limits_of(tenant).priority)
        };
        assert_eq!(share(1, "noisy"), None, "stage 1 sheds logs only");
        assert_eq!(share(2, "noisy"), Some(0.5));
        assert_eq!(share(2, "default"), None);
        assert_eq!(share(3, "noisy"), Some(0.25), "two stages throttle it");
        assert_eq!(share(3, "default"), Some(0.5));
        assert_eq!(
            share(3, "game"),
            None,
            "the most important tenant is never cut"
        );
        // A tenant listed by an action and in a throttled tier: both count.
        let mut p = pressure_at(&config, 3);
        p.throttled = vec!["noisy".into(); 3];
        assert_eq!(p.share("noisy", 10), Some(MIN_SHARE), "at least MIN_SHARE");
    }

    #[test]
    fn the_box_is_judged_on_the_tenants_the_stage_does_not_throttle() {
        let config = two_tier_config();
        assert_eq!(judged_above(&config, 0), None);
        assert_eq!(judged_above(&config, 1), None, "nobody throttled: everyone");
        assert_eq!(judged_above(&config, 2), Some(10));
        assert_eq!(judged_above(&config, 3), Some(50));
    }

    #[tokio::test]
    async fn a_throttled_tenants_refusals_do_not_hold_the_stage_so_it_steps_back() {
        let config = two_tier_config();
        let ad = crate::config::AdmissionConfig {
            max_queue_wait: Duration::from_millis(5),
            initial_limit: 1,
            min_limit: 1,
            max_limit: 1,
            ..crate::config::DEFAULT_ADMISSION
        };
        let admission = super::super::admission::Admission::new(&ad);
        // The game's requests are admitted at once and quick; each time the slot is
        // taken, the noisy tenant's resend waits and is refused.
        for _ in 0..30 {
            let slot = admission
                .acquire(&ad, 100, 0.0)
                .await
                .expect("game admitted");
            assert!(admission.acquire(&ad, 10, 0.5).await.is_err());
            slot.release();
        }
        let none = BTreeMap::new();
        // Judged by refusals here: a threshold on the own time no stall reaches.
        let overload = Overload {
            ttfb_threshold_p99: Duration::from_secs(60),
            ..config.overload.clone()
        };
        let judged = |stage: u8| {
            judge(
                &overload,
                &none,
                &admission.picture_above(judged_above(&config, stage)),
            )
        };
        // Judged on everyone (stage 1), half the requests are refused: saturated, so
        // the controller goes on to throttle the noisy tenant.
        assert!(judged(1).saturated);
        let last = last_stage(&config);
        assert_eq!(next_stage(1, true, ESCALATE_AFTER, last - 1), 2);
        // At stage 2 only the game is judged: admitted and fast, the box has room for
        // it, so after RECOVER_AFTER the stage steps back and the noisy tenant's cut
        // ends, though its own resends are still being refused.
        assert_eq!(judged(2), Verdict::default());
        assert_eq!(next_stage(2, false, RECOVER_AFTER, last - 1), 1);
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
