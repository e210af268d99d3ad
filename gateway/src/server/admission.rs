//! Admission control: how many requests may do their work at once, who waits, and who
//! is answered 503 at once when the box cannot take more.
//!
//! **What is bounded.** A request's work is its decoding, the label policy, the quota
//! checks, building the records and their commit. It takes a slot after its body has
//! been read (a client that trickles its body in holds no slot: `limits.body_read_timeout`
//! bounds it) and gives the slot back when it answers. A commit that takes longer than
//! [`Admission::commit_hold`] (4× the baseline, at least 4× `max_queue_wait`) gives its
//! slot back early and its hold is not sampled: a store that is slow for one tenant's
//! records (retried for 30 s) must not hold the slots every other tenant needs, nor
//! drag the limit down for them; a sink slow for everyone is the overload controller's
//! (commit p99 per tenant), and the sinks' in-flight budgets bound those commits.
//!
//! **The limit** adapts to the work's latency, in the spirit of TCP Vegas and the
//! gradient limiters of Netflix's concurrency-limits: a request's *hold time* (slot taken
//! → slot given back) grows with the work in progress once the CPU is busy, so latency
//! above the unloaded latency is queueing inside the box. Hold times are averaged over
//! windows of [`WINDOW`] requests. The *baseline* is the lowest window average seen; it
//! drifts up by [`BASELINE_DRIFT`] per window so a box that became slower for good (larger
//! requests) is re-learned within minutes. A baseline learned while already saturated
//! (a restart into a storm) would be too high, so every [`PROBE_EVERY`] windows one window
//! runs at `min_limit` (like BBR's RTT probe): its average is the unloaded latency, and
//! the baseline takes it if it is lower. At each other window's end:
//! - the average over `latency_tolerance` × baseline (both floored at
//!   [`LATENCY_FLOOR`]): the limit moves towards `limit × tolerance × baseline / average`
//!   (at least half the limit) by the `smoothing` factor — a multiplicative decrease;
//! - or the runtime lags: a probe task asks to wake every [`LAG_TICK`] and notes how
//!   late it woke; a mean lateness (or a silence) over [`LAG_LIMIT`] in the window means
//!   the async workers, which read requests and send every answer, get too little CPU
//!   beside the decoding threads, and every answer waits for them: the limit is halved
//!   at once. The probe does not wait for the window to close: every [`LAG_TICKS`]
//!   wake-ups (or at once, after one wake-up [`LAG_BURST`] late) it halves the limit
//!   when their mean lateness is over [`LAG_LIMIT`], and the window's end then does not
//!   halve it again. A window is [`WINDOW`] requests given back, and when the box is
//!   saturated from the first second (the limit still at `initial_limit`, each request
//!   sharing the CPU with all the others) those take long; meanwhile every refusal waited
//!   for the starved workers too (refusals p99 140 ms in the release saturation run,
//!   all in the first seconds);
//! - otherwise, if requests had to wait for a slot during the window, the limit grows by
//!   one — an additive increase;
//! - the limit stays within `min_limit..=max_limit`.
//!
//! **The queue.** A request that finds no free slot waits, ranked by its tenant's
//! `priority` (higher first), then by how far the tenant is over its own quota
//! ([`crate::quota::Quotas::overage`], in tenths: within quota first), then by arrival.
//! A freed slot goes to the best-ranked waiter, so the important tenant within quota gets
//! the next one. A request that has not started within `max_queue_wait` is answered 503
//! with a jittered `Retry-After` (`queue_timeout`); so is, at once, a request that could
//! not start within it even if no one better ranked came after it: the waiters ranked
//! before it, and itself, each need a slot for the recent mean hold time, `limit` at a
//! time (Little's law). Waiting out the budget would only add it to the refusal's time,
//! and on a saturated box the refusals that waited it were the slowest answers. With
//! `max_queued` waiters, a newcomer that ranks above the worst waiter takes its place and
//! the worst is answered 503 at once, otherwise the newcomer is (`queue_full`). So the low-priority and over-quota
//! tenants get the refusals first.
//!
//! **Refusing early.** Reading a body costs the async workers CPU too (TLS, HTTP/2,
//! copying), and on a saturated box that alone can keep them from answering. So before
//! its body is read ([`Admission::shed_early`]), a request is answered 503 at once
//! (`shed_early`) when no slot is free and a request ranked as well or better was refused
//! by the queue within the last [`EARLY_WINDOW`]: it would wait in vain. Early refusals do
//! not renew the window, so a request of that rank tries the queue again soon after.
//!
//! **What the overload controller sees** ([`Admission::picture`]): requests admitted and
//! refused over the last [`PICTURE_WINDOW`], and the p99 of the gateway's own time per
//! request (queue wait, work and commit, the commits past the hold bound excluded) over
//! the same window.

use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Gateway;
use super::answer::Outcome;
use crate::config::AdmissionConfig;
use crate::telemetry::{
    GATEWAY_ADMISSION_IN_FLIGHT, GATEWAY_ADMISSION_LIMIT, GATEWAY_ADMISSION_QUEUED,
    GATEWAY_ADMISSION_REFUSED_TOTAL, TENANT_OVER_LIMIT_TOTAL, labels,
};

/// How often the runtime lag probe asks to wake.
pub const LAG_TICK: Duration = Duration::from_millis(5);
/// A mean lateness of the probe's wake-ups above this is a starved runtime.
pub const LAG_LIMIT: Duration = Duration::from_millis(20);
/// The probe judges its lateness every this many wake-ups, between windows.
pub const LAG_TICKS: u32 = 4;
/// One wake-up this late is judged at once.
pub const LAG_BURST: Duration = Duration::from_millis(80);
/// How long a queue refusal makes requests of its rank, and worse, be refused before
/// their bodies are read.
pub const EARLY_WINDOW: Duration = Duration::from_millis(250);
/// Requests whose hold times are averaged into one verdict.
pub const WINDOW: u32 = 16;
/// Every this many windows, one runs at `min_limit` to measure the unloaded latency.
pub const PROBE_EVERY: u64 = 100;
/// How much the baseline may rise per window (0.5%: it doubles in about 140 windows).
pub const BASELINE_DRIFT: f64 = 0.005;
/// Hold times below this count as this: queueing of a millisecond is not saturation, and
/// a baseline near zero would make every window look slow.
pub const LATENCY_FLOOR: Duration = Duration::from_millis(1);
/// How far back the overload controller's picture looks.
pub const PICTURE_WINDOW: Duration = Duration::from_secs(10);
/// Own-time samples kept for the picture at most.
const MAX_SAMPLES: usize = 10_000;

/// The adaptive limit (see the module docs).
#[derive(Debug, Clone)]
pub struct Limiter {
    limit: f64,
    baseline: Option<f64>,
    sum: f64,
    n: u32,
    limited: bool,
    windows: u64,
    /// The lag probe's wake-ups in this window: summed lateness, count, and the last.
    lag_sum: Duration,
    lag_n: u32,
    last_tick: Option<Instant>,
    /// The wake-ups since the probe last judged: summed lateness and count.
    ticks_sum: Duration,
    ticks_n: u32,
    /// The probe halved the limit in this window.
    cut: bool,
    /// The last window's mean hold time (seconds).
    recent: Option<f64>,
    min: f64,
    max: f64,
    smoothing: f64,
    tolerance: f64,
}

impl Limiter {
    /// A limiter at `initial_limit`.
    pub fn new(config: &AdmissionConfig) -> Limiter {
        let mut l = Limiter {
            limit: config.initial_limit as f64,
            baseline: None,
            sum: 0.0,
            n: 0,
            limited: false,
            windows: 0,
            lag_sum: Duration::ZERO,
            lag_n: 0,
            last_tick: None,
            ticks_sum: Duration::ZERO,
            ticks_n: 0,
            cut: false,
            recent: None,
            min: 1.0,
            max: 1.0,
            smoothing: 0.0,
            tolerance: 1.0,
        };
        l.configure(config);
        l
    }

    /// Takes new bounds (a reload); the limit is kept within them.
    pub fn configure(&mut self, config: &AdmissionConfig) {
        self.min = config.min_limit as f64;
        self.max = (config.max_limit as f64).max(self.min);
        self.smoothing = config.smoothing.clamp(0.01, 1.0);
        self.tolerance = config.latency_tolerance.max(1.0);
        self.limit = self.limit.clamp(self.min, self.max);
    }

    /// The limit now: requests that may work at once (`min_limit` in a probe window).
    pub fn limit(&self) -> usize {
        if self.probing() {
            self.min as usize
        } else {
            self.limit as usize
        }
    }

    fn probing(&self) -> bool {
        self.windows % PROBE_EVERY == PROBE_EVERY - 1
    }

    /// The baseline hold time (seconds), once a window has closed.
    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }

    /// The last window's mean hold time (seconds), once a window has closed.
    pub fn recent_hold(&self) -> Option<f64> {
        self.recent
    }

    /// Whether a waiter with `ahead` waiters ranked before it could not start within
    /// `budget`: it and they each need a slot for the recent mean hold, `limit` at a time.
    pub fn hopeless(&self, ahead: usize, budget: Duration) -> bool {
        self.recent.is_some_and(|hold| {
            (ahead + 1) as f64 * hold / self.limit().max(1) as f64 > budget.as_secs_f64()
        })
    }

    /// A request had to wait: the limit was the bound in this window.
    pub fn mark_limited(&mut self) {
        self.limited = true;
    }

    /// The lag probe woke `late` after it asked to, at `now`: every [`LAG_TICKS`]
    /// wake-ups (or after one [`LAG_BURST`] late), a mean lateness over [`LAG_LIMIT`]
    /// halves the limit at once.
    pub fn note_lag(&mut self, late: Duration, now: Instant) {
        self.lag_sum += late;
        self.lag_n += 1;
        self.last_tick = Some(now);
        self.ticks_sum += late;
        self.ticks_n += 1;
        if self.ticks_n >= LAG_TICKS || late > LAG_BURST {
            if self.ticks_sum / self.ticks_n > LAG_LIMIT && !self.probing() {
                self.limit = (self.limit * 0.5).clamp(self.min, self.max);
                self.cut = true;
            }
            self.ticks_sum = Duration::ZERO;
            self.ticks_n = 0;
        }
    }

    /// Whether the runtime lagged in this window: the probe's mean lateness, or its
    /// silence since its last wake-up, over [`LAG_LIMIT`].
    fn lagging(&self) -> bool {
        let mean = if self.lag_n > 0 {
            self.lag_sum / self.lag_n
        } else {
            Duration::ZERO
        };
        let silent = self
            .last_tick
            .is_some_and(|t| t.elapsed() > LAG_TICK + LAG_LIMIT);
        mean > LAG_LIMIT || silent
    }

    /// One request's hold time.
    pub fn sample(&mut self, hold: Duration) {
        self.sum += hold.max(LATENCY_FLOOR).as_secs_f64();
        self.n += 1;
        if self.n >= WINDOW {
            let average = self.sum / f64::from(self.n);
            self.close_window(average);
        }
    }

    fn close_window(&mut self, average: f64) {
        self.recent = Some(average);
        let baseline = match self.baseline {
            Some(b) => (b * (1.0 + BASELINE_DRIFT)).min(average),
            None => average,
        };
        self.baseline = Some(baseline);
        let allowed = baseline * self.tolerance;
        if self.probing() {
            // The probe only measures; the limit stays where it was.
        } else if self.lagging() {
            // Every answer waits for the starved workers: halve at once (unless the
            // probe already did in this window).
            if !self.cut {
                self.limit *= 0.5;
            }
        } else if average > allowed {
            let target = self.limit * (allowed / average).max(0.5);
            self.limit = self.limit * (1.0 - self.smoothing) + target * self.smoothing;
        } else if self.limited {
            self.limit += 1.0;
        }
        self.limit = self.limit.clamp(self.min, self.max);
        self.sum = 0.0;
        self.n = 0;
        self.limited = false;
        self.cut = false;
        self.windows += 1;
        self.lag_sum = Duration::ZERO;
        self.lag_n = 0;
    }
}

/// Why a request was not admitted (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It did not start within `max_queue_wait`.
    QueueTimeout,
    /// The queue was full and it ranked last (or a better-ranked newcomer took its place).
    QueueFull,
    /// Refused before its body was read: as good a rank was refused moments ago.
    ShedEarly,
}

impl Refusal {
    /// The label value.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::QueueTimeout => "queue_timeout",
            Refusal::QueueFull => "queue_full",
            Refusal::ShedEarly => "shed_early",
        }
    }
}

/// A waiter's place: higher priority first, then less over quota, then earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    priority: Reverse<u32>,
    over: u8,
    seq: u64,
}

/// What a waiter is told.
#[derive(Debug)]
enum Word {
    /// A slot is yours (already counted in flight).
    Granted,
    /// A better-ranked newcomer took your place in a full queue.
    Evicted,
}

#[derive(Debug)]
struct State {
    limiter: Limiter,
    in_flight: usize,
    waiters: BTreeMap<Rank, oneshot::Sender<Word>>,
    next: u64,
    /// The last queue refusal of each (priority, tenths over quota).
    refused_at: BTreeMap<(Reverse<u32>, u8), Instant>,
}

impl State {
    /// Hands free slots to the best-ranked waiters still there.
    fn grant(&mut self) {
        while self.in_flight < self.limiter.limit().max(1) {
            let Some((_, tx)) = self.waiters.pop_first() else {
                return;
            };
            if tx.send(Word::Granted).is_ok() {
                self.in_flight += 1;
            }
        }
    }
}

/// Admitted and refused requests in one second, by tenant priority: `(priority,
/// admitted, refused)` (a gateway has a handful of priorities).
#[derive(Debug, Default, Clone)]
struct Second {
    at: u64,
    by_priority: Vec<(u32, u64, u64)>,
}

impl Second {
    fn of(&mut self, priority: u32) -> &mut (u32, u64, u64) {
        let i = match self.by_priority.iter().position(|c| c.0 == priority) {
            Some(i) => i,
            None => {
                self.by_priority.push((priority, 0, 0));
                self.by_priority.len() - 1
            }
        };
        &mut self.by_priority[i]
    }
}

#[derive(Debug)]
struct Recent {
    epoch: Instant,
    seconds: Vec<Second>,
    /// When, how long, and the tenant's priority.
    own: VecDeque<(Instant, Duration, u32)>,
}

impl Recent {
    fn second(&mut self, now: Instant) -> &mut Second {
        let at = now.saturating_duration_since(self.epoch).as_secs();
        let slot = &mut self.seconds[(at % PICTURE_WINDOW.as_secs()) as usize];
        if slot.at != at {
            *slot = Second {
                at,
                ..Second::default()
            };
        }
        slot
    }
}

/// What admission saw over the last [`PICTURE_WINDOW`] (of the tenants it was asked
/// about: see [`Admission::picture_above`]), and where it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused (503).
    pub refused: u64,
    /// The p99 of the gateway's own time per admitted request (queue wait and work).
    pub own_p99: Duration,
    /// Own-time samples the p99 is taken over.
    pub samples: usize,
    /// The limit now.
    pub limit: usize,
    /// Requests working now.
    pub in_flight: usize,
    /// Requests waiting now.
    pub queued: usize,
}

/// Admission control for one gateway.
#[derive(Debug)]
pub struct Admission {
    state: Mutex<State>,
    recent: Mutex<Recent>,
}

/// A slot: the request may work while it holds it. Given back by [`Slot::release`] or
/// when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    admission: &'a Admission,
    priority: u32,
    arrived: Instant,
    granted: Instant,
    held: bool,
}

impl Slot<'_> {
    /// The work is done.
    pub fn release(mut self) {
        self.give_back();
    }

    /// Runs `commit` holding the slot for at most `hold`; past it the slot is given back
    /// unsampled and the commit goes on without it.
    pub async fn during<F: std::future::Future>(mut self, commit: F, hold: Duration) -> F::Output {
        let commit = std::pin::pin!(commit);
        let mut commit = commit;
        match tokio::time::timeout(hold, commit.as_mut()).await {
            Ok(out) => {
                self.give_back();
                out
            }
            Err(_) => {
                if std::mem::take(&mut self.held) {
                    self.admission.abandoned();
                }
                commit.await
            }
        }
    }

    fn give_back(&mut self) {
        if std::mem::take(&mut self.held) {
            let now = Instant::now();
            self.admission
                .released(now - self.granted, now - self.arrived, now, self.priority);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// A waiter's place in the queue; dropped (the request went away, or timed out), it
/// leaves the queue, or gives back the slot it was granted meanwhile.
struct Waiting<'a> {
    admission: &'a Admission,
    rank: Rank,
    rx: oneshot::Receiver<Word>,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.admission.lock();
        if state.waiters.remove(&self.rank).is_none()
            && matches!(self.rx.try_recv(), Ok(Word::Granted))
        {
            state.in_flight -= 1;
            state.grant();
        }
    }
}

/// Tenths over quota, as the queue ranks them.
fn tenths(overage: f64) -> u8 {
    (overage.clamp(0.0, 1.0) * 10.0).round() as u8
}

impl Admission {
    /// Admission at the config's initial limit.
    pub fn new(config: &AdmissionConfig) -> Admission {
        Admission {
            state: Mutex::new(State {
                limiter: Limiter::new(config),
                in_flight: 0,
                waiters: BTreeMap::new(),
                next: 0,
                refused_at: BTreeMap::new(),
            }),
            recent: Mutex::new(Recent {
                epoch: Instant::now(),
                seconds: vec![Second::default(); PICTURE_WINDOW.as_secs() as usize],
                own: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a slot for a request of a tenant of `priority`, `overage` over its
    /// quota (0 within it, 1 refused entirely), for at most `config.max_queue_wait`.
    pub async fn acquire(
        &self,
        config: &AdmissionConfig,
        priority: u32,
        overage: f64,
    ) -> Result<Slot<'_>, Refusal> {
        let arrived = Instant::now();
        let waiting = {
            let mut state = self.lock();
            state.limiter.configure(config);
            if state.in_flight < state.limiter.limit().max(1) && state.waiters.is_empty() {
                state.in_flight += 1;
                drop(state);
                return Ok(self.admitted(arrived, priority));
            }
            state.limiter.mark_limited();
            let rank = Rank {
                priority: Reverse(priority),
                over: tenths(overage),
                seq: state.next,
            };
            state.next += 1;
            let ahead = state.waiters.range(..rank).count();
            if state.limiter.hopeless(ahead, config.max_queue_wait) {
                drop(state);
                self.refused(priority, Some(rank));
                return Err(Refusal::QueueTimeout);
            }
            if state.waiters.len() >= config.max_queued.max(1) {
                let worst = state.waiters.last_key_value().map(|(r, _)| *r);
                match worst {
                    Some(worst) if worst > rank => {
                        if let Some(tx) = state.waiters.remove(&worst) {
                            let _ = tx.send(Word::Evicted);
                        }
                    }
                    _ => {
                        drop(state);
                        self.refused(priority, Some(rank));
                        return Err(Refusal::QueueFull);
                    }
                }
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.insert(rank, tx);
            Waiting {
                admission: self,
                rank,
                rx,
                done: false,
            }
        };
        self.wait(waiting, config.max_queue_wait, arrived, priority)
            .await
    }

    async fn wait(
        &self,
        mut waiting: Waiting<'_>,
        budget: Duration,
        arrived: Instant,
        priority: u32,
    ) -> Result<Slot<'_>, Refusal> {
        let word = match tokio::time::timeout(budget, &mut waiting.rx).await {
            Ok(Ok(word)) => Some(word),
            // The sender is only dropped after a send or by the removal below.
            Ok(Err(_)) => None,
            Err(_) => {
                let mut state = self.lock();
                if state.waiters.remove(&waiting.rank).is_some() {
                    None
                } else {
                    // Granted or evicted just as the budget ran out: take the word.
                    drop(state);
                    waiting.rx.try_recv().ok()
                }
            }
        };
        waiting.done = true;
        match word {
            Some(Word::Granted) => Ok(self.admitted(arrived, priority)),
            Some(Word::Evicted) => {
                self.refused(priority, Some(waiting.rank));
                Err(Refusal::QueueFull)
            }
            None => {
                self.refused(priority, Some(waiting.rank));
                Err(Refusal::QueueTimeout)
            }
        }
    }

    fn admitted(&self, arrived: Instant, priority: u32) -> Slot<'_> {
        let now = Instant::now();
        self.recent().second(now).of(priority).1 += 1;
        Slot {
            admission: self,
            priority,
            arrived,
            granted: now,
            held: true,
        }
    }

    /// Counts a refusal of a request of `priority`; a queue refusal (`rank`) also opens
    /// the early window for its rank.
    fn refused(&self, priority: u32, rank: Option<Rank>) {
        let now = Instant::now();
        if let Some(rank) = rank {
            let mut state = self.lock();
            state.refused_at.insert((rank.priority, rank.over), now);
        }
        self.recent().second(now).of(priority).2 += 1;
    }

    /// Whether a request of `priority`, `overage` over its quota, is refused before its
    /// body is read (see the module docs); counted when it is.
    pub fn shed_early(&self, priority: u32, overage: f64) -> bool {
        let over = tenths(overage);
        let shed = {
            let mut state = self.lock();
            if state.in_flight < state.limiter.limit().max(1) && state.waiters.is_empty() {
                return false;
            }
            let now = Instant::now();
            state
                .refused_at
                .retain(|_, at| now.saturating_duration_since(*at) < EARLY_WINDOW);
            // A refused rank as good or better: higher priority, or the same priority
            // and no more over quota.
            state
                .refused_at
                .keys()
                .any(|(Reverse(p), o)| *p > priority || (*p == priority && *o <= over))
        };
        if shed {
            self.refused(priority, None);
        }
        shed
    }

    /// How long a commit may hold its slot: 4× the baseline hold, at least 4×
    /// `max_queue_wait`.
    pub fn commit_hold(&self, config: &AdmissionConfig) -> Duration {
        let baseline = self.lock().limiter.baseline().unwrap_or(0.0);
        (config.max_queue_wait * 4).max(Duration::from_secs_f64(baseline * 4.0))
    }

    /// A slot given back unsampled (its commit ran past [`Admission::commit_hold`]).
    fn abandoned(&self) {
        let mut state = self.lock();
        state.in_flight -= 1;
        state.grant();
    }

    fn released(&self, hold: Duration, own: Duration, now: Instant, priority: u32) {
        {
            let mut state = self.lock();
            state.in_flight -= 1;
            state.limiter.sample(hold);
            state.grant();
        }
        let mut recent = self.recent();
        recent.own.push_back((now, own, priority));
        while recent.own.len() > MAX_SAMPLES
            || recent
                .own
                .front()
                .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) > PICTURE_WINDOW)
        {
            recent.own.pop_front();
        }
    }

    /// Runs the lag probe until `gateway` is gone: wakes every [`LAG_TICK`] and tells the
    /// limiter how late it woke.
    pub async fn lag_probe(gateway: std::sync::Weak<Gateway>) {
        loop {
            let asked = Instant::now();
            tokio::time::sleep(LAG_TICK).await;
            let now = Instant::now();
            let Some(gw) = gateway.upgrade() else {
                return;
            };
            let late = now
                .saturating_duration_since(asked)
                .saturating_sub(LAG_TICK);
            gw.admission.lock().limiter.note_lag(late, now);
        }
    }

    /// What admission saw over the last [`PICTURE_WINDOW`], of every tenant, and where
    /// it is now.
    pub fn picture(&self) -> Picture {
        self.picture_above(None)
    }

    /// What admission saw over the last [`PICTURE_WINDOW`] of the requests of tenants
    /// whose priority is above `above` (every tenant with `None`), and where it is now.
    /// The overload controller judges the box on the tenants its stage does not
    /// throttle: their requests admitted and fast say the box has room for them.
    pub fn picture_above(&self, above: Option<u32>) -> Picture {
        let counted = |p: u32| above.is_none_or(|a| p > a);
        let (limit, in_flight, queued) = {
            let state = self.lock();
            (state.limiter.limit(), state.in_flight, state.waiters.len())
        };
        let now = Instant::now();
        let recent = self.recent();
        let this = now.saturating_duration_since(recent.epoch).as_secs();
        let (mut admitted, mut refused) = (0, 0);
        for s in &recent.seconds {
            if this.saturating_sub(s.at) < PICTURE_WINDOW.as_secs() && s.at <= this {
                for (p, a, r) in &s.by_priority {
                    if counted(*p) {
                        admitted += a;
                        refused += r;
                    }
                }
            }
        }
        let mut own: Vec<Duration> = recent
            .own
            .iter()
            .filter(|(at, _, p)| {
                now.saturating_duration_since(*at) <= PICTURE_WINDOW && counted(*p)
            })
            .map(|(_, d, _)| *d)
            .collect();
        own.sort_unstable();
        let own_p99 = own
            .get((own.len() * 99 / 100).min(own.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        Picture {
            admitted,
            refused,
            own_p99,
            samples: own.len(),
            limit,
            in_flight,
            queued,
        }
    }
}

impl Gateway {
    /// Waits for a slot for a request of `tenant` (of `priority`); a refusal is counted
    /// (by reason and priority, and per tenant as `limit="admission"`) and is the answer.
    pub(super) async fn admit(
        &self,
        config: &AdmissionConfig,
        tenant: &str,
        priority: u32,
    ) -> Result<Slot<'_>, Outcome> {
        let overage = self.quotas.overage(tenant);
        match self.admission.acquire(config, priority, overage).await {
            Ok(slot) => Ok(slot),
            Err(refusal) => Err(self.not_admitted(refusal, tenant, priority)),
        }
    }

    /// Before a request's body is read: `Err` (its 503, counted) when it would wait in
    /// vain ([`Admission::shed_early`]).
    pub(super) fn admit_early(&self, tenant: &str, priority: u32) -> Result<(), Outcome> {
        if self
            .admission
            .shed_early(priority, self.quotas.overage(tenant))
        {
            return Err(self.not_admitted(Refusal::ShedEarly, tenant, priority));
        }
        Ok(())
    }

    fn not_admitted(&self, refusal: Refusal, tenant: &str, priority: u32) -> Outcome {
        let reason = refusal.reason();
        self.telemetry.add(
            &GATEWAY_ADMISSION_REFUSED_TOTAL,
            labels(&[("reason", reason), ("priority", &priority.to_string())]),
            1.0,
        );
        self.telemetry.add(
            &TENANT_OVER_LIMIT_TOTAL,
            labels(&[("tenant", tenant), ("limit", "admission")]),
            1.0,
        );
        Outcome::NotAdmitted { reason }
    }

    /// Sets the admission gauges (every second, with the overload controller).
    pub(super) fn admission_gauges(&self, picture: &Picture) {
        let t = &self.telemetry;
        t.set(
            &GATEWAY_ADMISSION_LIMIT,
            String::new(),
            picture.limit as f64,
        );
        t.set(
            &GATEWAY_ADMISSION_IN_FLIGHT,
            String::new(),
            picture.in_flight as f64,
        );
        t.set(
            &GATEWAY_ADMISSION_QUEUED,
            String::new(),
            picture.queued as f64,
        );
    }
}

#[cfg(test)]
mod tests;
