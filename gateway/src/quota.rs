//! Per-tenant quotas: sample, log-byte and span rates (GCRA through `governor`) and active
//! series (exact, over a 5-minute window).
//!
//! Every limit is regional: each replica enforces `limit / replicas`. A request that
//! could never fit (more than the burst at once) is refused outright, not with a 429
//! that would send the client into a loop it can never leave.
//!
//! **Catch-up** (`tenants.<t>.catch_up`, a duration of the tenant's rate). An agent that
//! was pushed back (a 503 storm, a network cut) resends its backlog on top of its
//! steady load; a tenant within its quota must not then be refused by its own rate. So
//! each rate has a reserve: what the tenant left unused of its rate while it was under
//! it, saved up to `catch_up` × rate. A request over the rate is admitted from the
//! reserve while it holds enough. The reserve is charged for everything admitted and
//! refills at the rate, so it grows only while the tenant sends less than its rate, and
//! over any stretch of time the tenant gets at most its rate plus one reserve: the quota
//! still holds. It starts empty (a restarted gateway or a new tenant has saved nothing).
//!
//! **Rate cuts** ([`Quotas::throttle`]). A tenant the overload controller throttles is
//! cut to a share of its rate, not walled off: the base is the lower of its quota and
//! what it was admitted lately (an exponentially decayed rate over [`METER_TAU`]; a
//! tenant with an unlimited quota is cut relative to what it actually got), taken when
//! the cut begins and kept while it lasts; the share comes from the controller (it
//! shrinks with each stage that throttles the tenant). Everything admitted while cut is
//! charged to the cut, which may run into debt (a request that passed while the cut had
//! room is never refused after its work); while in debt the tenant is answered 429 before
//! its body is read, with the wait until the debt is paid. The debt is bounded by
//! [`MAX_CUT_WAIT`] of the cut rate, so even a tenant cut to a trickle gets a request
//! through every few seconds and its backlog drains.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::config::TenantLimits;
use crate::validate::SeriesKeys;

/// A series is active while it was written in this window (Mimir's default).
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(300);

/// The answer of a rate check.
#[derive(Debug, PartialEq, Eq)]
pub enum RateCheck {
    /// Admitted.
    Ok,
    /// Over the rate: would fit after `wait`.
    Wait(Duration),
    /// More than the burst at once: can never fit.
    TooLarge {
        /// What the request asked for.
        asked: u64,
        /// The burst (this replica's share).
        burst: u64,
    },
}

/// One rate limit: a GCRA bucket and the figures it was made from.
#[derive(Debug)]
struct Bucket {
    limiter: DefaultDirectRateLimiter,
    rate: f64,
    burst: u32,
}

impl Bucket {
    fn new(rate: f64, burst: u64) -> Bucket {
        let burst = u32::try_from(burst.max(1)).unwrap_or(u32::MAX);
        let period = Duration::from_secs_f64(1.0 / rate.max(1e-9)).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Bucket {
            limiter: DefaultDirectRateLimiter::direct(quota),
            rate,
            burst,
        }
    }

    fn check(&self, n: u64) -> RateCheck {
        let Some(n32) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 {
                RateCheck::Ok
            } else {
                RateCheck::TooLarge {
                    asked: n,
                    burst: u64::from(self.burst),
                }
            };
        };
        match self.limiter.check_n(n32) {
            Ok(Ok(())) => RateCheck::Ok,
            Ok(Err(not_until)) => {
                RateCheck::Wait(not_until.wait_time_from(DefaultClock::default().now()))
            }
            Err(_) => RateCheck::TooLarge {
                asked: n,
                burst: u64::from(self.burst),
            },
        }
    }
}

/// How fast [`Meter`] forgets: its rate is what was admitted over about this long.
pub const METER_TAU: Duration = Duration::from_secs(5);
/// A rate cut's debt is at most this long at the cut rate.
pub const MAX_CUT_WAIT: Duration = Duration::from_secs(10);
/// A rate cut's room, in seconds at the cut rate, when it is not in debt.
const CUT_ROOM_SECS: f64 = 1.0;

/// What a tenant was admitted lately, per second: an exponentially decayed rate.
#[derive(Debug)]
struct Meter {
    rate: f64,
    at: Instant,
}

impl Meter {
    fn rate(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.rate * (-dt / METER_TAU.as_secs_f64()).exp()
    }

    fn add(&mut self, n: u64, now: Instant) {
        self.rate = self.rate(now) + n as f64 / METER_TAU.as_secs_f64();
        self.at = now;
    }
}

/// The catch-up reserve of one rate (see the module docs).
#[derive(Debug)]
struct Reserve {
    tokens: f64,
    at: Instant,
}

impl Reserve {
    /// Refills at `rate` up to `cap`.
    fn refill(&mut self, rate: f64, cap: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + rate * dt).min(cap).max(0.0);
        self.at = now;
    }

    /// `n` admitted by the rate itself: charged, down to empty.
    fn spent(&mut self, n: u64, rate: f64, cap: f64, now: Instant) {
        self.refill(rate, cap, now);
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// `n` over the rate: admitted when the reserve holds them.
    fn take(&mut self, n: u64, rate: f64, cap: f64, now: Instant) -> bool {
        self.refill(rate, cap, now);
        if n as f64 <= self.tokens {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// A rate cut in force (see the module docs).
#[derive(Debug)]
struct Cut {
    /// What the share is of, per second.
    base: f64,
    share: f64,
    tokens: f64,
    at: Instant,
}

impl Cut {
    fn rate(&self) -> f64 {
        (self.base * self.share).max(1e-9)
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        let room = self.rate() * CUT_ROOM_SECS;
        self.tokens = (self.tokens + self.rate() * dt).min(room);
        self.at = now;
    }

    fn charge(&mut self, n: u64, now: Instant) {
        self.refill(now);
        let floor = -self.rate() * MAX_CUT_WAIT.as_secs_f64();
        self.tokens = (self.tokens - n as f64).max(floor);
    }

    /// `Ok` while not in debt; else the wait until it is paid.
    fn check(&mut self, now: Instant) -> RateCheck {
        self.refill(now);
        if self.tokens >= 0.0 {
            RateCheck::Ok
        } else {
            RateCheck::Wait(Duration::from_secs_f64(-self.tokens / self.rate()))
        }
    }
}

/// What a tenant's rate keeps besides its bucket: the catch-up reserve, what it was
/// admitted lately, and the rate cut in force.
#[derive(Debug)]
struct Lane {
    reserve: Reserve,
    meter: Meter,
    cut: Option<Cut>,
}

impl Lane {
    fn new(now: Instant) -> Lane {
        Lane {
            reserve: Reserve {
                tokens: 0.0,
                at: now,
            },
            meter: Meter { rate: 0.0, at: now },
            cut: None,
        }
    }
}

/// A tenant's state on this replica.
#[derive(Debug)]
struct Tenant {
    samples: Bucket,
    log_bytes: Bucket,
    spans: Bucket,
    lanes: [Lane; 3],
    series: Series,
    /// Per [`Rate`]: until when the tenant is refused before any decoding, after a
    /// decoded request was over the rate.
    refused_until: [Option<Instant>; 3],
    overage: Overage,
}

/// What a rate counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// Samples (and histograms).
    Samples = 0,
    /// Log bytes, decompressed.
    LogBytes = 1,
    /// Spans.
    Spans = 2,
}

impl Tenant {
    fn bucket(&self, rate: Rate) -> &Bucket {
        match rate {
            Rate::Samples => &self.samples,
            Rate::LogBytes => &self.log_bytes,
            Rate::Spans => &self.spans,
        }
    }

    /// Takes `n` from `rate`: from its bucket, or over it from the catch-up reserve
    /// (`catch_up` of the rate); what is admitted is metered and charged to a cut in
    /// force.
    fn take(&mut self, rate: Rate, n: u64, catch_up: Duration) -> RateCheck {
        let now = Instant::now();
        let bucket = self.bucket(rate);
        let (per_second, check) = (bucket.rate, bucket.check(n));
        let cap = per_second * catch_up.as_secs_f64();
        let lane = &mut self.lanes[rate as usize];
        let check = match check {
            RateCheck::Ok => {
                lane.reserve.spent(n, per_second, cap, now);
                RateCheck::Ok
            }
            RateCheck::Wait(_) if lane.reserve.take(n, per_second, cap, now) => RateCheck::Ok,
            other => other,
        };
        if check == RateCheck::Ok && n > 0 {
            lane.meter.add(n, now);
            if let Some(cut) = &mut lane.cut {
                cut.charge(n, now);
            }
        }
        check
    }
}

/// How long the quota's refusals are remembered for [`Quotas::overage`]: their weight
/// halves every `OVERAGE_HALF_LIFE`.
pub const OVERAGE_HALF_LIFE: Duration = Duration::from_secs(5);

/// A tenant's rate checks and how many of them were over the rate, both decaying with
/// [`OVERAGE_HALF_LIFE`].
#[derive(Debug)]
struct Overage {
    refused: f64,
    total: f64,
    at: Instant,
}

impl Overage {
    fn decay(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        let k = 0.5f64.powf(dt / OVERAGE_HALF_LIFE.as_secs_f64());
        self.refused *= k;
        self.total *= k;
        self.at = now;
    }

    fn note(&mut self, check: &RateCheck) {
        self.decay(Instant::now());
        self.total += 1.0;
        if matches!(check, RateCheck::Wait(_)) {
            self.refused += 1.0;
        }
    }

    fn ratio(&mut self) -> f64 {
        self.decay(Instant::now());
        if self.total < 1e-9 {
            0.0
        } else {
            self.refused / self.total
        }
    }
}

/// The keys are already hashes: passing them through saves hashing them again.
#[derive(Clone, Copy, Debug, Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type SeenMap = HashMap<u64, Seen, std::hash::BuildHasherDefault<PassThrough>>;

/// One active series.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// When it was last written, in seconds since [`Series::epoch`].
    stamp: u32,
    /// The config generation ([`crate::server::live::Live::generation`], its low 32 bits)
    /// under which its labels were last found fine.
    checked: u32,
}

/// Active series: the keyed hash of each series' labels ([`crate::validate::SeriesKeys`]),
/// when it was last written and under which config it was checked (an entry is 16 bytes:
/// 2 million series take about 50 MB).
#[derive(Debug)]
struct Series {
    seen: SeenMap,
    epoch: Instant,
    pruned: Option<Instant>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            seen: SeenMap::default(),
            epoch: Instant::now(),
            pruned: None,
        }
    }
}

impl Series {
    fn stamp(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    fn prune(&mut self, now: Instant) {
        if self
            .pruned
            .is_some_and(|p| now.saturating_duration_since(p) < Duration::from_secs(10))
        {
            return;
        }
        self.pruned = Some(now);
        let now = self.stamp(now);
        let window = ACTIVE_WINDOW.as_secs() as u32;
        self.seen
            .retain(|_, seen| now.saturating_sub(seen.stamp) < window);
    }
}

/// Quotas of every tenant on this replica.
#[derive(Debug, Default)]
pub struct Quotas {
    tenants: Mutex<HashMap<String, Tenant>>,
    keys: SeriesKeys,
}

/// This replica's share of a regional figure.
fn share(total: f64, replicas: u32) -> f64 {
    total / f64::from(replicas.max(1))
}

impl Quotas {
    fn with_tenant<R>(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        f: impl FnOnce(&mut Tenant) -> R,
    ) -> R {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rate = share(limits.samples_rate_limit, replicas);
        let burst = share(limits.burst as f64, replicas).ceil() as u64;
        let log_rate = share(limits.log_bytes_rate_limit as f64, replicas);
        let log_burst = share(limits.log_bytes_burst as f64, replicas).ceil() as u64;
        let span_rate = share(limits.span_rate_limit, replicas);
        let span_burst = share(limits.span_burst as f64, replicas).ceil() as u64;
        let t = tenants.entry(tenant.to_string()).or_insert_with(|| Tenant {
            samples: Bucket::new(rate, burst),
            log_bytes: Bucket::new(log_rate, log_burst),
            spans: Bucket::new(span_rate, span_burst),
            lanes: std::array::from_fn(|_| Lane::new(Instant::now())),
            series: Series::default(),
            refused_until: [None; 3],
            overage: Overage {
                refused: 0.0,
                total: 0.0,
                at: Instant::now(),
            },
        });
        // A reloaded config with other figures gets a new bucket (and a full burst);
        // unchanged figures keep the bucket and its state.
        if t.samples.rate != rate || u64::from(t.samples.burst) != burst.min(u64::from(u32::MAX)) {
            t.samples = Bucket::new(rate, burst);
        }
        if t.log_bytes.rate != log_rate
            || u64::from(t.log_bytes.burst) != log_burst.min(u64::from(u32::MAX))
        {
            t.log_bytes = Bucket::new(log_rate, log_burst);
        }
        if t.spans.rate != span_rate
            || u64::from(t.spans.burst) != span_burst.min(u64::from(u32::MAX))
        {
            t.spans = Bucket::new(span_rate, span_burst);
        }
        f(t)
    }

    /// Takes `samples` from the tenant's sample rate.
    pub fn check_samples(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        samples: u64,
    ) -> RateCheck {
        self.with_tenant(tenant, limits, replicas, |t| {
            let check = t.take(Rate::Samples, samples, limits.catch_up);
            t.overage.note(&check);
            check
        })
    }

    /// Takes `bytes` from the tenant's log byte rate.
    pub fn check_log_bytes(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        bytes: u64,
    ) -> RateCheck {
        self.with_tenant(tenant, limits, replicas, |t| {
            let check = t.take(Rate::LogBytes, bytes, limits.catch_up);
            t.overage.note(&check);
            check
        })
    }

    /// Takes `spans` from the tenant's span rate.
    pub fn check_spans(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        spans: u64,
    ) -> RateCheck {
        self.with_tenant(tenant, limits, replicas, |t| {
            let check = t.take(Rate::Spans, spans, limits.catch_up);
            t.overage.note(&check);
            check
        })
    }

    /// Before a body is decompressed: a tenant refused after its last decoded request
    /// is refused again at once (until the wait it was given), and `first` (what the
    /// body holds at the least) is taken from its rate, so a tenant already over it is
    /// answered before any decoding.
    pub fn precharge(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        rate: Rate,
        first: u64,
    ) -> RateCheck {
        self.with_tenant(tenant, limits, replicas, |t| {
            let now = Instant::now();
            if let Some(until) = t.refused_until[rate as usize]
                && until > now
            {
                let check = RateCheck::Wait(until - now);
                t.overage.note(&check);
                return check;
            }
            let check = t.take(rate, first, limits.catch_up);
            if matches!(check, RateCheck::Wait(_)) {
                // The request ends here: it counts as one check.
                t.overage.note(&check);
            }
            check
        })
    }

    /// After decoding: takes the rest of `total` (`charged` was taken by
    /// [`Quotas::precharge`]). When the rest is over the rate, the tenant is refused
    /// before any decoding for as long as it was told to wait (its `Retry-After`): a
    /// flood of bodies that expand over the rate costs one decode per wait, not one per
    /// request. A request past the burst is refused alone (413), as it always was.
    pub fn settle(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        rate: Rate,
        charged: u64,
        total: u64,
    ) -> RateCheck {
        self.with_tenant(tenant, limits, replicas, |t| {
            let burst = u64::from(t.bucket(rate).burst);
            let check = if total > burst {
                RateCheck::TooLarge {
                    asked: total,
                    burst,
                }
            } else {
                t.take(rate, total.saturating_sub(charged), limits.catch_up)
            };
            if let RateCheck::Wait(wait) = &check {
                t.refused_until[rate as usize] = Some(Instant::now() + *wait);
            }
            t.overage.note(&check);
            check
        })
    }

    /// The overload controller's rate cut for `tenant`'s `rate`: `share` of its rate
    /// (see the module docs), or `None` when it is not throttled (a cut in force ends).
    /// `Wait` while the cut is in debt: the tenant is answered 429 before its body is
    /// read, and told when the debt is paid.
    pub fn throttle(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        rate: Rate,
        share: Option<f64>,
    ) -> RateCheck {
        self.with_tenant(tenant, limits, replicas, |t| {
            let quota = t.bucket(rate).rate;
            let lane = &mut t.lanes[rate as usize];
            let Some(share) = share else {
                lane.cut = None;
                return RateCheck::Ok;
            };
            let now = Instant::now();
            let cut = lane.cut.get_or_insert_with(|| {
                let admitted = lane.meter.rate(now);
                let base = if admitted > 0.0 {
                    admitted.min(quota)
                } else {
                    quota
                };
                Cut {
                    base,
                    share,
                    tokens: base * share * CUT_ROOM_SECS,
                    at: now,
                }
            });
            if cut.share != share {
                cut.refill(now);
                cut.share = share;
            }
            cut.check(now)
        })
    }

    /// The keys series are hashed with ([`SeriesKeys`]).
    pub fn series_keys(&self) -> &SeriesKeys {
        &self.keys
    }

    /// For each series hash, whether the series is active for `tenant` and its labels
    /// were found fine under config `generation`: such a series need not be checked
    /// again. A series refused by the checks is never admitted, so it is never known.
    pub fn checked_series(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        hashes: &[u64],
        generation: u64,
    ) -> Vec<bool> {
        let generation = generation as u32;
        self.with_tenant(tenant, limits, replicas, |t| {
            hashes
                .iter()
                .map(|h| {
                    t.series
                        .seen
                        .get(h)
                        .is_some_and(|s| s.checked == generation)
                })
                .collect()
        })
    }

    /// Admits the series whose label hashes are given, in order, up to the tenant's
    /// `max_series / replicas` active series; returns, for each, whether it is admitted.
    /// A series already active is always admitted (and kept active). Every series given
    /// was found fine by the label checks under config `generation` (or known to be,
    /// [`Quotas::checked_series`]), and is remembered so.
    pub fn admit_series(
        &self,
        tenant: &str,
        limits: &TenantLimits,
        replicas: u32,
        hashes: &[u64],
        generation: u64,
        now: Instant,
    ) -> Vec<bool> {
        let max = (limits.max_series / u64::from(replicas.max(1))) as usize;
        let checked = generation as u32;
        self.with_tenant(tenant, limits, replicas, |t| {
            t.series.prune(now);
            let stamp = t.series.stamp(now);
            hashes
                .iter()
                .map(|h| {
                    if let Some(seen) = t.series.seen.get_mut(h) {
                        *seen = Seen { stamp, checked };
                        true
                    } else if t.series.seen.len() < max {
                        t.series.seen.insert(*h, Seen { stamp, checked });
                        true
                    } else {
                        false
                    }
                })
                .collect()
        })
    }

    /// How far `tenant` is over its own quota: the share of its recent rate checks
    /// (samples, log bytes, spans; weighted by recency, [`OVERAGE_HALF_LIFE`]) that were
    /// over the rate. 0 within quota (or unknown), 1 when every recent request was
    /// refused. Admission ranks waiters by it.
    pub fn overage(&self, tenant: &str) -> f64 {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(tenant)
            .map_or(0.0, |t| t.overage.ratio())
    }

    /// Active series per tenant.
    pub fn active_series(&self) -> Vec<(String, usize)> {
        let tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<(String, usize)> = tenants
            .iter()
            .map(|(name, t)| (name.clone(), t.series.seen.len()))
            .collect();
        out.sort();
        out
    }
}

/// The `Retry-After` for a wait: whole seconds, rounded up, plus up to half again (at
/// least one second) of jitter so that clients refused together do not return
/// together. Obeyed, it is never too early.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let base = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let base = base.max(1);
    let jitter = fastrand::u64(0..=(base / 2).max(1));
    base + jitter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BUILTIN_LIMITS;

    fn limits(rate: f64, burst: u64, max_series: u64) -> TenantLimits {
        TenantLimits {
            samples_rate_limit: rate,
            burst,
            max_series,
            ..BUILTIN_LIMITS
        }
    }

    #[test]
    fn rate_burst_and_never_fits() {
        let q = Quotas::default();
        let l = limits(100.0, 200, 10);
        assert_eq!(q.check_samples("a", &l, 1, 150), RateCheck::Ok);
        match q.check_samples("a", &l, 1, 150) {
            RateCheck::Wait(w) => {
                // 100 more are needed at 100/s: about a second.
                assert!(
                    w > Duration::from_millis(900) && w <= Duration::from_millis(1000),
                    "{w:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Another tenant is not slowed.
        assert_eq!(q.check_samples("b", &l, 1, 150), RateCheck::Ok);
        assert_eq!(
            q.check_samples("a", &l, 1, 201),
            RateCheck::TooLarge {
                asked: 201,
                burst: 200
            }
        );
        // Two replicas: each takes half.
        assert_eq!(
            q.check_samples("c", &l, 2, 101),
            RateCheck::TooLarge {
                asked: 101,
                burst: 100
            }
        );
    }

    #[test]
    fn spans_have_their_own_rate_and_burst() {
        let q = Quotas::default();
        let l = TenantLimits {
            span_rate_limit: 10.0,
            span_burst: 20,
            ..BUILTIN_LIMITS
        };
        assert_eq!(q.check_spans("a", &l, 1, 20), RateCheck::Ok);
        assert!(
            matches!(q.check_spans("a", &l, 1, 5), RateCheck::Wait(w) if w > Duration::from_millis(400))
        );
        // Samples are not spans: the sample bucket is untouched.
        assert_eq!(q.check_samples("a", &l, 1, 1000), RateCheck::Ok);
        assert_eq!(
            q.check_spans("b", &l, 2, 11),
            RateCheck::TooLarge {
                asked: 11,
                burst: 10
            }
        );
    }

    #[test]
    fn series_limit_and_window() {
        let q = Quotas::default();
        let l = limits(1e9, 1 << 30, 3);
        let t0 = Instant::now();
        assert_eq!(
            q.admit_series("a", &l, 1, &[1, 2, 3, 4], 7, t0),
            [true, true, true, false]
        );
        // Known series stay admitted; new ones do not.
        assert_eq!(q.admit_series("a", &l, 1, &[3, 5], 7, t0), [true, false]);
        // After the window, room again.
        let later = t0 + ACTIVE_WINDOW + Duration::from_secs(11);
        assert_eq!(q.admit_series("a", &l, 1, &[5], 7, later), [true]);
        assert_eq!(q.active_series(), vec![("a".to_string(), 1)]);
    }

    #[test]
    fn a_series_is_known_as_checked_only_for_its_tenant_and_under_the_config_it_was_checked_by() {
        let q = Quotas::default();
        let l = limits(1e9, 1 << 30, 10);
        let t0 = Instant::now();
        assert_eq!(q.checked_series("a", &l, 1, &[1, 2], 7), [false, false]);
        assert_eq!(q.admit_series("a", &l, 1, &[1], 7, t0), [true]);
        assert_eq!(q.checked_series("a", &l, 1, &[1, 2], 7), [true, false]);
        assert_eq!(q.checked_series("b", &l, 1, &[1], 7), [false]);
        // After a reload, every series is checked again, and known once it passed.
        assert_eq!(q.checked_series("a", &l, 1, &[1], 8), [false]);
        assert_eq!(q.admit_series("a", &l, 1, &[1], 8, t0), [true]);
        assert_eq!(q.checked_series("a", &l, 1, &[1], 8), [true]);
        // A series past the tenant's limit was refused: it is not known either.
        let one = limits(1e9, 1 << 30, 1);
        assert_eq!(q.admit_series("c", &one, 1, &[1, 2], 7, t0), [true, false]);
        assert_eq!(q.checked_series("c", &one, 1, &[2], 7), [false]);
    }

    #[test]
    fn a_tenant_refused_after_decoding_is_refused_before_decoding_until_its_wait() {
        let q = Quotas::default();
        let l = TenantLimits {
            log_bytes_rate_limit: 1000,
            log_bytes_burst: 2000,
            ..BUILTIN_LIMITS
        };
        // 100 compressed bytes first, 1,500 in all: fits.
        assert_eq!(q.precharge("a", &l, 1, Rate::LogBytes, 100), RateCheck::Ok);
        assert_eq!(
            q.settle("a", &l, 1, Rate::LogBytes, 100, 1500),
            RateCheck::Ok
        );
        // The next one's first bytes still fit, its whole does not: refused, and the
        // tenant is refused before decoding for the wait it was given.
        assert_eq!(q.precharge("a", &l, 1, Rate::LogBytes, 100), RateCheck::Ok);
        let RateCheck::Wait(w) = q.settle("a", &l, 1, Rate::LogBytes, 100, 1500) else {
            panic!("not a wait");
        };
        assert!(w > Duration::from_millis(900), "{w:?}");
        assert!(matches!(
            q.precharge("a", &l, 1, Rate::LogBytes, 1),
            RateCheck::Wait(v) if v <= w && v > Duration::from_millis(800)
        ));
        // Other rates and tenants are not refused.
        assert_eq!(q.precharge("a", &l, 1, Rate::Spans, 1), RateCheck::Ok);
        assert_eq!(q.precharge("b", &l, 1, Rate::LogBytes, 1), RateCheck::Ok);
        // Past the burst: 413, that request alone.
        assert_eq!(
            q.settle("b", &l, 1, Rate::LogBytes, 1, 5000),
            RateCheck::TooLarge {
                asked: 5000,
                burst: 2000
            }
        );
        assert_eq!(q.precharge("b", &l, 1, Rate::LogBytes, 1), RateCheck::Ok);
    }

    #[test]
    fn overage_is_the_recent_share_of_checks_over_the_rate() {
        let q = Quotas::default();
        let l = limits(10.0, 10, 10);
        assert_eq!(q.overage("a"), 0.0, "an unknown tenant is within quota");
        assert_eq!(q.check_samples("a", &l, 1, 10), RateCheck::Ok);
        assert_eq!(q.overage("a"), 0.0);
        for _ in 0..3 {
            assert!(matches!(
                q.check_samples("a", &l, 1, 10),
                RateCheck::Wait(_)
            ));
        }
        let over = q.overage("a");
        assert!(
            (0.7..=0.76).contains(&over),
            "3 of 4 checks refused: {over}"
        );
        // A burst that can never fit is a 413, not over the rate.
        let _ = q.check_samples("b", &l, 1, 11);
        assert_eq!(q.overage("b"), 0.0);
    }

    #[test]
    fn the_catch_up_reserve_fills_only_under_the_rate_and_is_spent_over_it() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        // 10 a second, a minute of it saved at most: 600.
        let (rate, cap) = (10.0, 600.0);
        let mut r = Reserve {
            tokens: 0.0,
            at: t0,
        };
        assert!(!r.take(1, rate, cap, t0), "it starts empty");
        // 10 s at half the rate: 5 a second unused, 50 saved.
        for i in 1..=10 {
            r.spent(5, rate, cap, s(i));
        }
        assert!((r.tokens - 50.0).abs() < 1e-6, "{}", r.tokens);
        // At the rate exactly: nothing saved, nothing lost.
        for i in 11..=20 {
            r.spent(10, rate, cap, s(i));
        }
        assert!((r.tokens - 50.0).abs() < 1e-6, "{}", r.tokens);
        // Over it: 30 then 20 from the reserve, then no more.
        assert!(r.take(30, rate, cap, s(20)));
        assert!(r.take(20, rate, cap, s(20)));
        assert!(!r.take(1, rate, cap, s(20)), "spent");
        // Never more than the cap, however long the tenant is quiet.
        r.refill(rate, cap, s(3600));
        assert_eq!(r.tokens, cap);
        // No catch-up: nothing is ever saved.
        let mut none = Reserve {
            tokens: 0.0,
            at: t0,
        };
        none.spent(0, rate, 0.0, s(100));
        assert!(!none.take(1, rate, 0.0, s(100)));
    }

    #[test]
    fn a_tenant_in_quota_resending_a_backlog_spends_its_catch_up_not_a_429() {
        let q = Quotas::default();
        // 2 a second, a burst of 2, catch-up 10 s (20 at most).
        let l = TenantLimits {
            samples_rate_limit: 2.0,
            burst: 2,
            catch_up: Duration::from_secs(10),
            ..BUILTIN_LIMITS
        };
        let none = TenantLimits {
            catch_up: Duration::ZERO,
            ..l.clone()
        };
        assert_eq!(q.check_samples("a", &l, 1, 2), RateCheck::Ok);
        assert_eq!(q.check_samples("b", &none, 1, 2), RateCheck::Ok);
        assert!(
            matches!(q.check_samples("a", &l, 1, 2), RateCheck::Wait(_)),
            "nothing saved yet"
        );
        // Quiet for 3 s: the bucket is full again (2) and the reserve holds about 6.
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(q.check_samples("a", &l, 1, 2), RateCheck::Ok);
        assert_eq!(
            q.check_samples("a", &l, 1, 2),
            RateCheck::Ok,
            "from the reserve"
        );
        assert_eq!(q.check_samples("b", &none, 1, 2), RateCheck::Ok);
        assert!(
            matches!(q.check_samples("b", &none, 1, 2), RateCheck::Wait(_)),
            "without catch-up the resend is over the rate"
        );
        // What is left of the reserve (about 2) goes, then the rate answers again.
        let mut taken = 0;
        while let RateCheck::Ok = q.check_samples("a", &l, 1, 1) {
            taken += 1;
            assert!(taken <= 40, "the reserve never runs out");
        }
        assert!(
            (2..=22).contains(&taken),
            "{taken} over the rate: the reserve held about 2, at most 20"
        );
    }

    #[test]
    fn a_rate_cut_runs_into_debt_and_answers_the_wait_until_it_is_paid() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Admitted 1,000 a second lately, cut to a quarter: 250 a second, room for 250.
        let mut c = Cut {
            base: 1000.0,
            share: 0.25,
            tokens: 250.0,
            at: t0,
        };
        assert_eq!(c.check(t0), RateCheck::Ok);
        // A request of 750 passed while there was room: admitted, 500 in debt.
        c.charge(750, t0);
        assert_eq!(c.check(t0), RateCheck::Wait(Duration::from_secs(2)));
        assert_eq!(c.check(ms(1000)), RateCheck::Wait(Duration::from_secs(1)));
        assert_eq!(c.check(ms(2000)), RateCheck::Ok, "paid");
        // The debt is bounded: a tenant cut to a trickle still gets through.
        c.charge(1_000_000, ms(2000));
        assert_eq!(c.check(ms(2000)), RateCheck::Wait(MAX_CUT_WAIT));
        // Never more room than a second at the cut rate.
        c.refill(ms(3_600_000));
        assert_eq!(c.tokens, 250.0);
    }

    #[test]
    fn a_throttled_tenant_is_cut_to_a_share_of_what_it_was_admitted() {
        let q = Quotas::default();
        let l = limits(1e9, 1 << 30, 1 << 20);
        // Admitted 50,000 just now: the meter says about 10,000 a second (over 5 s).
        assert_eq!(q.check_samples("noisy", &l, 1, 50_000), RateCheck::Ok);
        assert_eq!(
            q.throttle("noisy", &l, 1, Rate::Samples, Some(0.5)),
            RateCheck::Ok
        );
        // Cut to about 5,000 a second with 5,000 of room: 20,000 more put it in about
        // 15,000 of debt, about 3 s (the meter decays as the test runs: a little more).
        assert_eq!(q.check_samples("noisy", &l, 1, 20_000), RateCheck::Ok);
        let RateCheck::Wait(w) = q.throttle("noisy", &l, 1, Rate::Samples, Some(0.5)) else {
            panic!("not in debt");
        };
        assert!(
            w > Duration::from_millis(2500) && w < Duration::from_millis(3500),
            "{w:?}"
        );
        // A deeper cut: the same debt takes twice as long to pay.
        let RateCheck::Wait(w) = q.throttle("noisy", &l, 1, Rate::Samples, Some(0.25)) else {
            panic!("not in debt");
        };
        assert!(
            w > Duration::from_secs(5) && w < Duration::from_secs(7),
            "{w:?}"
        );
        // Other rates and tenants are not cut; no throttle, no cut.
        assert_eq!(
            q.throttle("noisy", &l, 1, Rate::LogBytes, Some(0.5)),
            RateCheck::Ok
        );
        assert_eq!(
            q.throttle("game", &l, 1, Rate::Samples, None),
            RateCheck::Ok
        );
        assert_eq!(
            q.throttle("noisy", &l, 1, Rate::Samples, None),
            RateCheck::Ok
        );
        assert_eq!(
            q.throttle("noisy", &l, 1, Rate::Samples, None),
            RateCheck::Ok
        );
        // The cut is not a quota refusal: the tenant's overage is untouched.
        assert_eq!(q.overage("noisy"), 0.0);
        // A tenant with a quota lower than what it got is cut relative to its quota.
        let small = limits(100.0, 100_000, 10);
        assert_eq!(q.check_samples("low", &small, 1, 50_000), RateCheck::Ok);
        assert_eq!(
            q.throttle("low", &small, 1, Rate::Samples, Some(0.5)),
            RateCheck::Ok
        );
        // Cut to 50 a second with 50 of room: 200 more are 150 in debt, 3 s.
        assert_eq!(q.check_samples("low", &small, 1, 200), RateCheck::Ok);
        let RateCheck::Wait(w) = q.throttle("low", &small, 1, Rate::Samples, Some(0.5)) else {
            panic!("not in debt");
        };
        assert!(
            w > Duration::from_millis(2500) && w < Duration::from_millis(3500),
            "{w:?}"
        );
    }

    #[test]
    fn retry_after_is_never_early() {
        for _ in 0..100 {
            let s = retry_after_secs(Duration::from_millis(1500));
            assert!((2..=3).contains(&s), "{s}");
        }
        assert!(retry_after_secs(Duration::ZERO) >= 1);
    }
}
