//! The policy and budget gate every series passes before it may leave the host.
//!
//! A series is a name and a label set (host labels not yet added). The gate checks it
//! against the label policy and the catalog, then against the host's series budget:
//!
//! - An *active* series is one seen in the last [`ACTIVE_WINDOW`]. The budget bounds the
//!   active series of the host, overflow series included.
//! - A twentieth of the budget (at least one slot, [`overflow_reserve`]) is kept for
//!   overflow series (`edge_overflow="true"`): ordinary series never take it, so the
//!   first metrics to overflow always have somewhere to fold their values. The exporter
//!   keeps one slot per family instead; on the host that would cost a slot for each of
//!   the catalog's ~75 names, more than the budget spares.
//! - A refused series (policy or budget) is counted once in
//!   `edge_series_rejected_total{reason, stage="agent"}` when it is first refused, logged
//!   once per metric and reason, and its values are folded into the overflow series of
//!   its name: the overflow series carries the sum of the latest values of its members
//!   (counters and native histograms stay cumulative, gauges add up). Series that are
//!   refused for their labels keep no label but `le`, so nothing forbidden leaves.
//!
//! Overflow series past the reserve take free room if there is any; when there is none
//! their values are lost (they were counted when refused). Classic histogram buckets
//! keep their `le` in the overflow series, one overflow series per bucket.

use edge_schema::reasons;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use edge_schema::check::Schema;
use edge_schema::policy::OVERFLOW_LABEL;
use edge_schema::series::SeriesFault;

use super::{Point, SeriesKey};

/// How long a series stays active after it was last seen (the design's five minutes).
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(300);

/// The most refused series whose values are remembered for folding. Beyond it a refused
/// series is still counted, but its values are not folded (memory stays bounded when a
/// client invents labels without end).
pub const MAX_FOLDED_MEMBERS: usize = 10_000;

/// The most metric names whose refusal has been logged; later ones are counted only.
const MAX_LOGGED: usize = 4_096;

/// Refusal reasons, as counted in `edge_series_rejected_total{reason}`.
pub const REJECT_REASONS: [&str; 11] = [
    reasons::FORBIDDEN_LABEL,
    reasons::LABEL_NOT_ALLOWED,
    reasons::INVALID_LABEL_NAME,
    reasons::LABEL_VALUE_NOT_DECLARED,
    reasons::PII_LABEL_VALUE,
    reasons::BUDGET,
    // From here on, what a store would refuse ([`edge_schema::series`]): such a series
    // is dropped, not folded (its values are not sound), and counted in
    // `edge_series_invalid_total`.
    reasons::METRIC_NAME_INVALID,
    reasons::DUPLICATE_LABEL_NAMES,
    reasons::TOO_FAR_IN_FUTURE,
    reasons::TOO_FAR_IN_PAST,
    reasons::INVALID_NATIVE_HISTOGRAM,
];

/// How many of [`REJECT_REASONS`] are the policy's and the budget's (folded into
/// overflow); the rest are invalid series (dropped).
pub const POLICY_REASONS: usize = 6;

/// What the gate decided for one series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it as it is.
    Pass,
    /// Refused; its values were folded into the overflow series (or dropped when even
    /// that does not fit).
    Refused {
        /// Why, one of [`REJECT_REASONS`].
        reason: &'static str,
    },
}

#[derive(Debug)]
struct Member {
    overflow: SeriesKey,
    reason: &'static str,
    point: Point,
    seen: Instant,
    dirty: bool,
}

/// The gate (see the module docs).
#[derive(Debug)]
pub struct Gate {
    schema: Schema,
    budget: usize,
    /// Active ordinary series and when they were last seen.
    active: HashMap<SeriesKey, Instant>,
    /// Active overflow series and when they were last updated.
    overflow: HashMap<SeriesKey, Instant>,
    /// Refused series whose values are folded, by their own key.
    members: HashMap<SeriesKey, Member>,
    rejected: [u64; REJECT_REASONS.len()],
    logged: HashSet<(String, &'static str)>,
}

impl Gate {
    /// A gate under `schema` with a budget of `budget` active series.
    pub fn new(schema: Schema, budget: u32) -> Self {
        Gate {
            schema,
            budget: budget.max(1) as usize,
            active: HashMap::new(),
            overflow: HashMap::new(),
            members: HashMap::new(),
            rejected: [0; REJECT_REASONS.len()],
            logged: HashSet::new(),
        }
    }

    /// A new policy, catalog and budget (a config reload), from the next series on:
    /// active series the new policy refuses are forgotten, so their next point is
    /// judged again (and refused, counted); refused series it now allows are judged
    /// again too. Overflow series keep their running values.
    pub fn reconfigure(&mut self, schema: Schema, budget: u32) {
        self.schema = schema;
        self.budget = budget.max(1) as usize;
        let schema = &self.schema;
        let allowed = |key: &SeriesKey| {
            schema
                .check_series(
                    &key.name,
                    key.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .is_ok()
        };
        self.active.retain(|key, _| allowed(key));
        self.members
            .retain(|key, member| member.reason == reasons::BUDGET || !allowed(key));
        self.logged.clear();
    }

    /// The budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Active series, overflow series included.
    pub fn active_series(&self) -> usize {
        self.active.len() + self.overflow.len()
    }

    /// Whether one more ordinary series fits beside the overflow reserve.
    fn room_for_ordinary(&self) -> bool {
        self.active.len() + 1 + overflow_reserve(self.budget).max(self.overflow.len())
            <= self.budget
    }

    /// Refusals so far, in the order of [`REJECT_REASONS`].
    pub fn rejected(&self) -> [u64; REJECT_REASONS.len()] {
        self.rejected
    }

    /// Counts a series that a store would refuse (dropped before the gate: its values
    /// cannot be folded), logging it once per metric and reason.
    pub fn count_invalid(&mut self, fault: &SeriesFault) {
        let reason = fault.reason();
        if let Some(i) = REJECT_REASONS.iter().position(|r| *r == reason) {
            self.rejected[i] += 1;
        }
        if self.logged.len() < MAX_LOGGED
            && self.logged.insert((fault.metric().to_string(), reason))
        {
            tracing::warn!(
                metric = %fault.metric(),
                reason,
                "series dropped: {fault} (its neighbours pass; logged once per metric)"
            );
        }
    }

    /// Decides for one series with its newest point. A passed series is the caller's to
    /// send; a refused one is kept here and comes back folded from [`Gate::drain_overflow`].
    pub fn admit(&mut self, key: &SeriesKey, point: &Point, now: Instant) -> Verdict {
        if let Some(seen) = self.active.get_mut(key) {
            *seen = now;
            return Verdict::Pass;
        }
        let room = self.room_for_ordinary();
        if let Some(member) = self.members.get_mut(key) {
            let reason = member.reason;
            if reason != reasons::BUDGET || !room {
                // Still refused: keep folding, count nothing new.
                member.point = point.clone();
                member.seen = now;
                member.dirty = true;
                return Verdict::Refused { reason };
            }
            // Room has come back: the series is admitted from now on. Its overflow
            // contribution stops with it, as any departed series' would.
            self.members.remove(key);
            self.insert_active(key, now);
            return Verdict::Pass;
        }
        let reason = match self.schema.check_series(
            &key.name,
            key.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ) {
            Err(violation) => violation.reason(),
            Ok(()) => {
                if self.room_for_ordinary() {
                    self.insert_active(key, now);
                    return Verdict::Pass;
                }
                reasons::BUDGET
            }
        };
        self.refuse(key, point, reason, now);
        Verdict::Refused { reason }
    }

    /// The policy's objection to `key`, if it has one (for an answer that names the
    /// label; `None` when the series is refused for the budget alone).
    pub fn violation(&self, key: &SeriesKey) -> Option<edge_schema::check::Violation> {
        self.schema
            .check_series(
                &key.name,
                key.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .err()
    }

    fn insert_active(&mut self, key: &SeriesKey, now: Instant) {
        self.active.insert(key.clone(), now);
    }

    fn refuse(&mut self, key: &SeriesKey, point: &Point, reason: &'static str, now: Instant) {
        if let Some(i) = REJECT_REASONS.iter().position(|r| *r == reason) {
            self.rejected[i] += 1;
        }
        if self.logged.len() < MAX_LOGGED && self.logged.insert((key.name.clone(), reason)) {
            tracing::warn!(
                metric = %key.name,
                reason,
                "series refused; its values go to the metric's overflow series (logged once per metric)"
            );
        }
        if self.members.len() >= MAX_FOLDED_MEMBERS {
            return;
        }
        self.members.insert(
            key.clone(),
            Member {
                overflow: overflow_key(key),
                reason,
                point: point.clone(),
                seen: now,
                dirty: true,
            },
        );
    }

    /// The overflow series whose members changed since the last call, each with the sum
    /// of its members' latest points. An overflow series that cannot fit the budget is
    /// not returned (its values are lost, and were counted when refused).
    pub fn drain_overflow(&mut self, now: Instant) -> Vec<(SeriesKey, Point)> {
        let mut sums: HashMap<SeriesKey, (Point, bool)> = HashMap::new();
        for member in self.members.values_mut() {
            let entry = sums.entry(member.overflow.clone());
            match entry {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let (sum, dirty) = e.get_mut();
                    sum.add(&member.point);
                    *dirty |= member.dirty;
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((member.point.clone(), member.dirty));
                }
            }
            member.dirty = false;
        }
        let mut out = Vec::new();
        let mut keys: Vec<_> = sums.into_iter().filter(|(_, (_, dirty))| *dirty).collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, (point, _)) in keys {
            if let Some(seen) = self.overflow.get_mut(&key) {
                *seen = now;
            } else {
                // The reserve, or free room.
                if self.active.len() + self.overflow.len() + 1 > self.budget {
                    continue;
                }
                self.overflow.insert(key.clone(), now);
            }
            out.push((key, point));
        }
        out
    }

    /// Forgets series not seen within [`ACTIVE_WINDOW`], freeing their slots.
    pub fn expire(&mut self, now: Instant) {
        let alive = |seen: &Instant| now.saturating_duration_since(*seen) < ACTIVE_WINDOW;
        self.active.retain(|_, seen| alive(seen));
        self.overflow.retain(|_, seen| alive(seen));
        self.members.retain(|_, m| alive(&m.seen));
    }
}

/// Slots of a budget kept for overflow series: a twentieth, at least one.
pub fn overflow_reserve(budget: usize) -> usize {
    (budget / 20).max(1)
}

/// The overflow series of `key`: its name, `edge_overflow="true"`, and `le` if present.
pub fn overflow_key(key: &SeriesKey) -> SeriesKey {
    let mut labels: Vec<(String, String)> = key
        .labels
        .iter()
        .filter(|(k, _)| k == "le")
        .cloned()
        .collect();
    labels.push((OVERFLOW_LABEL.to_string(), "true".to_string()));
    labels.sort();
    SeriesKey {
        name: key.name.clone(),
        labels,
    }
}

#[cfg(test)]
mod tests;
