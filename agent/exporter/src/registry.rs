//! The registry: where a game creates its series, under the label policy and a series
//! budget.
//!
//! Creating a series (a metric name plus a label set) is the cold path: it takes the
//! registry's lock, checks the labels against the [`Schema`] (forbidden labels, labels not
//! allowed for the metric, declared values) and the budget, and returns a handle. Recording
//! through the handle never touches the registry again.
//!
//! A refused series is an error that names the metric and the label, is counted in
//! `edge_series_rejected_total{reason, stage="exporter"}` and logged once per metric and
//! reason on stderr. Its values are not lost: [`Refused::overflow`] is a handle to the
//! metric's overflow series (only the label `edge_overflow="true"`), into which every
//! refused series of that metric folds, so totals and rates stay right while detail is
//! capped. [`Family::with_or_overflow`] does that in one call. Existing series are never
//! dropped. The budget keeps one slot per family free for its overflow series, so the
//! overflow series always fits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use edge_schema::catalog::Catalog;
use edge_schema::check::{Schema, Violation};
use edge_schema::policy::{LabelPolicy, OVERFLOW_LABEL};

use crate::instruments::{Counter, FloatCounter, Gauge, Histogram};

/// Reasons a series is refused, as counted in `edge_series_rejected_total{reason}`.
pub const REJECT_REASONS: [&str; 6] = [
    "forbidden_label",
    "label_not_allowed",
    "invalid_label_name",
    "label_value_not_declared",
    "pii_label_value",
    "budget",
];

/// A series that was not created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    /// The label set breaks the label policy.
    #[error(transparent)]
    Policy(#[from] Violation),
    /// The exporter's series budget is spent.
    #[error(
        "metric `{metric}`: new series {labels} refused: the exporter's budget of {budget} series \
         is spent; its values go to the overflow series"
    )]
    Budget {
        /// The metric.
        metric: String,
        /// The label set, rendered `{a="1",b="2"}`.
        labels: String,
        /// The budget.
        budget: u32,
    },
    /// The same name was registered before as another type.
    #[error("metric `{metric}` is already registered as a {existing}, not a {requested}")]
    TypeClash {
        /// The metric.
        metric: String,
        /// Its registered type.
        existing: &'static str,
        /// The type asked for now.
        requested: &'static str,
    },
}

impl SeriesError {
    /// The bounded reason this refusal is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            SeriesError::Policy(v) => v.reason(),
            SeriesError::Budget { .. } => "budget",
            SeriesError::TypeClash { .. } => "type_clash",
        }
    }
}

/// A refused series: the error, and the handle of the metric's overflow series that takes
/// its values instead.
#[derive(Debug)]
pub struct Refused<H> {
    /// Why the series was refused.
    pub error: SeriesError,
    /// The overflow series of the same metric.
    pub overflow: H,
}

impl<H> std::fmt::Display for Refused<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl<H: std::fmt::Debug> std::error::Error for Refused<H> {}

/// What kind of instrument a family holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic integer counter.
    Counter,
    /// Monotonic floating-point counter.
    FloatCounter,
    /// Gauge.
    Gauge,
    /// Exponential histogram, exported as a native histogram.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::FloatCounter => "float counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One series' instrument.
#[derive(Clone, Debug)]
pub(crate) enum Instrument {
    Counter(Arc<Counter>),
    FloatCounter(Arc<FloatCounter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

/// A label set, sorted by label name.
pub(crate) type LabelSet = Vec<(String, String)>;

#[derive(Debug)]
pub(crate) struct FamilyState {
    pub(crate) name: String,
    pub(crate) help: String,
    pub(crate) kind: Kind,
    pub(crate) scale: i32,
    /// Never removed from (nor is `overflow` replaced): the C ABI's handles are raw
    /// pointers into these `Arc`s, valid for the registry's life (`ffi`).
    pub(crate) series: BTreeMap<LabelSet, Instrument>,
    pub(crate) overflow: Option<Instrument>,
}

impl FamilyState {
    fn new_instrument(&self) -> Instrument {
        match self.kind {
            Kind::Counter => Instrument::Counter(Arc::new(Counter::new())),
            Kind::FloatCounter => Instrument::FloatCounter(Arc::new(FloatCounter::new())),
            Kind::Gauge => Instrument::Gauge(Arc::new(Gauge::new())),
            Kind::Histogram => Instrument::Histogram(Arc::new(Histogram::with_scale(self.scale))),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) families: Vec<FamilyState>,
    by_name: HashMap<String, usize>,
    regular_series: u32,
    logged: HashSet<(String, &'static str)>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    schema: Schema,
    budget: u32,
    pub(crate) state: Mutex<State>,
    pub(crate) rejected: [AtomicU64; REJECT_REASONS.len()],
    pub(crate) push_failures: Mutex<BTreeMap<&'static str, u64>>,
}

/// Where the game's series live. Cheap to clone; all clones share one set of series.
#[derive(Clone, Debug)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

pub use crate::histogram::DEFAULT_SCALE;

impl Registry {
    /// A registry under the shipped label policy and catalog, with the policy's budget.
    pub fn new() -> Self {
        Self::with_schema(Schema::new(LabelPolicy::shipped(), Catalog::shipped()))
    }

    /// A registry under `schema`, with the policy's per-host budget as its own: the agent
    /// enforces the host's total, and the exporter's cap stops a runaway label before it
    /// leaves the process.
    pub fn with_schema(schema: Schema) -> Self {
        let budget = schema.policy().max_series_per_host();
        Self::with_schema_and_budget(schema, budget)
    }

    /// A registry under `schema` with its own series budget (at least 1).
    pub fn with_schema_and_budget(schema: Schema, budget: u32) -> Self {
        Registry {
            inner: Arc::new(Inner {
                schema,
                budget: budget.max(1),
                state: Mutex::new(State::default()),
                rejected: Default::default(),
                push_failures: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The label policy and catalog the registry checks series against.
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// The series budget.
    pub fn budget(&self) -> u32 {
        self.inner.budget
    }

    /// Series created so far, overflow series included.
    pub fn series_count(&self) -> u32 {
        let state = self.lock();
        state.regular_series
            + u32::try_from(
                state
                    .families
                    .iter()
                    .filter(|f| f.overflow.is_some())
                    .count(),
            )
            .unwrap_or(u32::MAX)
    }

    /// Refusals so far by reason (see [`REJECT_REASONS`]).
    pub fn rejected(&self, reason: &str) -> u64 {
        REJECT_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.inner.rejected[i].load(Ordering::Relaxed))
    }

    /// A counter family.
    pub fn counter(&self, name: &str, help: &str) -> Result<Family<Counter>, SeriesError> {
        self.family(name, help, Kind::Counter, DEFAULT_SCALE)
    }

    /// A floating-point counter family (seconds, fractional amounts).
    pub fn float_counter(
        &self,
        name: &str,
        help: &str,
    ) -> Result<Family<FloatCounter>, SeriesError> {
        self.family(name, help, Kind::FloatCounter, DEFAULT_SCALE)
    }

    /// A gauge family.
    pub fn gauge(&self, name: &str, help: &str) -> Result<Family<Gauge>, SeriesError> {
        self.family(name, help, Kind::Gauge, DEFAULT_SCALE)
    }

    /// An exponential-histogram family starting at [`DEFAULT_SCALE`].
    pub fn histogram(&self, name: &str, help: &str) -> Result<Family<Histogram>, SeriesError> {
        self.family(name, help, Kind::Histogram, DEFAULT_SCALE)
    }

    /// An exponential-histogram family starting at `scale` (−10..=20).
    pub fn histogram_with_scale(
        &self,
        name: &str,
        help: &str,
        scale: i32,
    ) -> Result<Family<Histogram>, SeriesError> {
        self.family(name, help, Kind::Histogram, scale.clamp(-10, 20))
    }

    fn family<T>(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        scale: i32,
    ) -> Result<Family<T>, SeriesError> {
        let mut state = self.lock();
        let index = match state.by_name.get(name) {
            Some(&i) => {
                let existing = state.families[i].kind;
                if existing != kind {
                    return Err(SeriesError::TypeClash {
                        metric: name.to_string(),
                        existing: existing.name(),
                        requested: kind.name(),
                    });
                }
                i
            }
            None => {
                let i = state.families.len();
                state.families.push(FamilyState {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    scale,
                    series: BTreeMap::new(),
                    overflow: None,
                });
                state.by_name.insert(name.to_string(), i);
                i
            }
        };
        Ok(Family {
            registry: self.clone(),
            index,
            _kind: std::marker::PhantomData,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only fully-inserted entries behind, so the
        // state is still consistent: recover it rather than poison the game's metrics.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn series(
        &self,
        index: usize,
        labels: &[(&str, &str)],
    ) -> Result<Instrument, Refused<Instrument>> {
        let mut state = self.lock();
        let family = &state.families[index];
        let mut set: LabelSet = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        set.sort();
        if let Some(existing) = family.series.get(&set) {
            return Ok(existing.clone());
        }
        let checked = self
            .inner
            .schema
            .check_series(&family.name, labels.iter().copied())
            .map_err(SeriesError::from)
            .and_then(|()| {
                // One overflow slot per family stays reserved.
                let reserved = u32::try_from(state.families.len()).unwrap_or(u32::MAX);
                if state
                    .regular_series
                    .saturating_add(1)
                    .saturating_add(reserved)
                    > self.inner.budget
                {
                    Err(SeriesError::Budget {
                        metric: family.name.clone(),
                        labels: render_labels(&set),
                        budget: self.inner.budget,
                    })
                } else {
                    Ok(())
                }
            });
        match checked {
            Ok(()) => {
                let instrument = family.new_instrument();
                state.families[index].series.insert(set, instrument.clone());
                state.regular_series += 1;
                Ok(instrument)
            }
            Err(error) => {
                let reason = error.reason();
                if let Some(i) = REJECT_REASONS.iter().position(|r| *r == reason) {
                    self.inner.rejected[i].fetch_add(1, Ordering::Relaxed);
                }
                let name = family.name.clone();
                if state.logged.insert((name, reason)) {
                    eprintln!("edge-exporter: {error} (logged once per metric and reason)");
                }
                let family = &mut state.families[index];
                let overflow = match &family.overflow {
                    Some(o) => o.clone(),
                    None => {
                        let o = family.new_instrument();
                        family.overflow = Some(o.clone());
                        o
                    }
                };
                Err(Refused { error, overflow })
            }
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// Renders a label set as `{a="1",b="2"}`.
pub(crate) fn render_labels(set: &[(String, String)]) -> String {
    let inner: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// The label set of an overflow series.
pub(crate) fn overflow_labels() -> LabelSet {
    vec![(OVERFLOW_LABEL.to_string(), "true".to_string())]
}

/// A metric family: creates its series.
#[derive(Debug)]
pub struct Family<T> {
    registry: Registry,
    index: usize,
    _kind: std::marker::PhantomData<fn() -> T>,
}

impl<T> Clone for Family<T> {
    fn clone(&self) -> Self {
        Family {
            registry: self.registry.clone(),
            index: self.index,
            _kind: std::marker::PhantomData,
        }
    }
}

macro_rules! family_for {
    ($t:ty, $variant:ident) => {
        impl Family<$t> {
            /// The series with these labels, created on first use. A refused series gives
            /// the error and the metric's overflow series.
            pub fn with(&self, labels: &[(&str, &str)]) -> Result<Arc<$t>, Refused<Arc<$t>>> {
                match self.registry.series(self.index, labels) {
                    Ok(Instrument::$variant(h)) => Ok(h),
                    Err(Refused {
                        error,
                        overflow: Instrument::$variant(h),
                    }) => Err(Refused { error, overflow: h }),
                    _ => unreachable!("a family holds one kind of instrument"),
                }
            }

            /// The series with these labels, or the overflow series when it is refused
            /// (the refusal is still counted and logged).
            pub fn with_or_overflow(&self, labels: &[(&str, &str)]) -> Arc<$t> {
                self.with(labels).unwrap_or_else(|refused| refused.overflow)
            }
        }
    };
}

family_for!(Counter, Counter);
family_for!(FloatCounter, FloatCounter);
family_for!(Gauge, Gauge);
family_for!(Histogram, Histogram);
