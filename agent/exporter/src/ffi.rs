//! The C ABI: the same registry, instruments and pusher for C and C++ games.
//!
//! `include/edge_exporter.h` is generated from this module by cbindgen (the test
//! `tests/c_header.rs` regenerates it and fails when the checked-in copy is stale). Every
//! `unsafe` block of the crate is here, each with the argument that makes it sound.
//!
//! - Handles (`edge_counter *`, …) point at instruments the registry owns: the registry
//!   never drops a series, so a handle stays valid as long as the registry does.
//! - Every entry point runs under `catch_unwind`: no panic crosses into C. A caught panic
//!   returns what invalid arguments return (NULL, or nothing) and sets the last error.
//! - The record functions (`edge_counter_add`, `edge_gauge_set`, `edge_histogram_record`,
//!   …) are a few atomic operations, allocate nothing, take no lock shared between game
//!   threads (a histogram record waits only while a snapshot copies its stripe), and
//!   never touch the last error.
//! - Errors are per thread (`edge_last_error`), as `errno` is.
#![allow(unsafe_code, non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use edge_schema::catalog::{Catalog, MetricType};
use edge_schema::check::Schema;
use edge_schema::policy::LabelPolicy;

use crate::instruments::{Counter, FloatCounter, Gauge, Histogram};
use crate::push::{DEFAULT_CADENCE, DEFAULT_PUSH_URL, PushConfig, Pusher};
use crate::registry::{DEFAULT_SCALE, Refused, Registry};

/// A registry: where a game creates its series, under a label policy, a metric catalog
/// and a series budget. Opaque.
#[derive(Debug)]
pub struct edge_registry {
    registry: Registry,
}

/// A monotonic integer counter series. Opaque; owned by its registry.
#[derive(Debug)]
pub struct edge_counter {
    _opaque: [u8; 0],
}

/// A monotonic floating-point counter series. Opaque; owned by its registry.
#[derive(Debug)]
pub struct edge_float_counter {
    _opaque: [u8; 0],
}

/// A gauge series. Opaque; owned by its registry.
#[derive(Debug)]
pub struct edge_gauge {
    _opaque: [u8; 0],
}

/// An exponential-histogram series (exported as a Prometheus native histogram). Opaque;
/// owned by its registry.
#[derive(Debug)]
pub struct edge_histogram {
    _opaque: [u8; 0],
}

/// A running pusher thread. Opaque; owned by the caller until `edge_pusher_stop`.
#[derive(Debug)]
pub struct edge_pusher {
    pusher: Pusher,
}

/// One label of a series: a name and a value, both NUL-terminated UTF-8. The strings are
/// only read during the call that takes them; the caller keeps ownership.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edge_label {
    /// The label name, e.g. `"shard_id"`.
    pub name: *const c_char,
    /// The label value, e.g. `"3"`.
    pub value: *const c_char,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn clear_error() {
    let _ = LAST_ERROR.try_with(|e| e.borrow_mut().take());
}

fn set_error(message: &str) {
    // A message never holds a NUL byte of its own; should one come from a caller's
    // string, it is shown escaped rather than cutting the message short.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = Some(text));
}

/// Runs `f` under `catch_unwind`; a panic becomes `fallback` and the last error.
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        set_error("edge-exporter: internal error (a panic was caught at the C boundary)");
        fallback
    })
}

/// Reads a C string argument: `None` (and the last error) when NULL or not UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for reads for the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Option<&'a str> {
    if p.is_null() {
        set_error(&format!("edge-exporter: {what} is NULL"));
        return None;
    }
    // SAFETY: `p` is not NULL, and the caller guarantees (the header's contract) that it
    // points to a NUL-terminated string readable for the duration of this call; the
    // returned borrow does not outlive the entry point that called `text`.
    let c = unsafe { CStr::from_ptr(p) };
    match c.to_str() {
        Ok(s) => Some(s),
        Err(e) => {
            set_error(&format!(
                "edge-exporter: {what} is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ));
            None
        }
    }
}

/// Reads a label array.
///
/// # Safety
/// `labels` is NULL with `n == 0`, or points to `n` readable `edge_label`s whose strings
/// are NUL-terminated and readable for the call.
unsafe fn label_pairs<'a>(
    metric: &str,
    labels: *const edge_label,
    n: usize,
) -> Option<Vec<(&'a str, &'a str)>> {
    if n == 0 {
        return Some(Vec::new());
    }
    if labels.is_null() {
        set_error(&format!(
            "edge-exporter: metric `{metric}`: labels is NULL but n is {n}"
        ));
        return None;
    }
    // SAFETY: `labels` is not NULL and the caller guarantees it points to `n` initialised,
    // properly aligned `edge_label`s that stay readable for this call; `edge_label` is
    // `repr(C)` with the layout of the header's struct.
    let slice = unsafe { std::slice::from_raw_parts(labels, n) };
    let mut pairs = Vec::with_capacity(n);
    for (i, label) in slice.iter().enumerate() {
        // SAFETY: the caller guarantees each name and value is NULL or a NUL-terminated
        // string readable for this call (`text` checks for NULL).
        let name = unsafe { text(label.name, &format!("metric `{metric}`: labels[{i}].name")) }?;
        // SAFETY: as above.
        let value = unsafe {
            text(
                label.value,
                &format!("metric `{metric}`: labels[{i}].value (label `{name}`)"),
            )
        }?;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// The registry behind a handle, or `None` (and the last error) for NULL.
///
/// # Safety
/// `r` is NULL or a pointer returned by `edge_registry_new`/`edge_registry_with_policy`
/// and not yet freed.
unsafe fn registry<'a>(r: *mut edge_registry) -> Option<&'a Registry> {
    if r.is_null() {
        set_error("edge-exporter: registry is NULL");
        return None;
    }
    // SAFETY: not NULL, and the caller guarantees it came from `Box::into_raw` in one of
    // the registry constructors and has not been passed to `edge_registry_free`; only
    // shared references are ever made from it (`Registry` is `Sync`).
    Some(unsafe { &(*r).registry })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Counter,
    FloatCounter,
    Gauge,
    Histogram,
}

impl Wanted {
    fn catalog_type(self) -> MetricType {
        match self {
            Wanted::Counter | Wanted::FloatCounter => MetricType::Counter,
            Wanted::Gauge => MetricType::Gauge,
            Wanted::Histogram => MetricType::Histogram,
        }
    }
}

fn type_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
    }
}

/// The handle of series `name{labels}`, created on first use; the overflow handle when
/// the policy or budget refuses it; NULL for invalid arguments.
///
/// # Safety
/// As the `edge_*_get` functions: `r`, `name` and `labels` as the header documents.
unsafe fn get(
    r: *mut edge_registry,
    name: *const c_char,
    labels: *const edge_label,
    n: usize,
    wanted: Wanted,
    scale: i32,
) -> *const () {
    clear_error();
    // SAFETY: the caller passes `r` as `registry` requires.
    let Some(registry) = (unsafe { registry(r) }) else {
        return ptr::null();
    };
    // SAFETY: the caller passes `name` as `text` requires.
    let Some(name) = (unsafe { text(name, "metric name") }) else {
        return ptr::null();
    };
    // SAFETY: the caller passes `labels` and `n` as `label_pairs` requires.
    let Some(pairs) = (unsafe { label_pairs(name, labels, n) }) else {
        return ptr::null();
    };
    let Some(family) = registry.schema().catalog().family(name) else {
        set_error(&format!(
            "edge-exporter: metric `{name}` is not in the metric catalog"
        ));
        return ptr::null();
    };
    if family.kind != wanted.catalog_type() {
        set_error(&format!(
            "edge-exporter: metric `{name}` is a {} in the metric catalog, not a {}",
            type_name(family.kind),
            type_name(wanted.catalog_type())
        ));
        return ptr::null();
    }
    let help = family.help.clone();
    /// The raw handle of a series: valid while the registry lives, because the registry
    /// holds its own `Arc` to every series (overflow series included) and never drops
    /// one. A refusal also becomes the last error.
    fn handle<T>(got: Result<Arc<T>, Refused<Arc<T>>>) -> *const () {
        match got {
            Ok(series) => Arc::as_ptr(&series).cast(),
            Err(Refused { error, overflow }) => {
                set_error(&format!(
                    "edge-exporter: {error} [reason: {}]; its values go to the overflow series",
                    error.reason()
                ));
                Arc::as_ptr(&overflow).cast()
            }
        }
    }
    let families = match wanted {
        Wanted::Counter => registry
            .counter(name, &help)
            .map(|f| handle(f.with(&pairs))),
        Wanted::FloatCounter => registry
            .float_counter(name, &help)
            .map(|f| handle(f.with(&pairs))),
        Wanted::Gauge => registry.gauge(name, &help).map(|f| handle(f.with(&pairs))),
        Wanted::Histogram => registry
            .histogram_with_scale(name, &help, scale)
            .map(|f| handle(f.with(&pairs))),
    };
    families.unwrap_or_else(|clash| {
        set_error(&format!("edge-exporter: {clash}"));
        ptr::null()
    })
}

/// Creates a registry under the shipped label policy and metric catalog, with a budget
/// of 300 series (the policy's per-host budget).
///
/// Returns a registry the caller owns and frees with `edge_registry_free`; NULL only if
/// it could not be created (see `edge_last_error`). Thread safety: may be called from
/// any thread; the registry may be used from any number of threads at once.
#[unsafe(no_mangle)]
pub extern "C" fn edge_registry_new() -> *mut edge_registry {
    guard(ptr::null_mut(), || {
        clear_error();
        Box::into_raw(Box::new(edge_registry {
            registry: Registry::new(),
        }))
    })
}

/// Creates a registry under a label policy and a metric catalog given as YAML text
/// (the formats of `schemas/labels.yaml` and `schemas/metrics.yaml`), with a series
/// budget.
///
/// `labels_yaml` NULL means the shipped policy, `catalog_yaml` NULL the shipped catalog;
/// `budget` 0 means the policy's `max_series_per_host`. Returns NULL when a text is not
/// UTF-8 or not a valid policy or catalog; `edge_last_error` then says what and where.
/// The strings are only read during the call. Thread safety: any thread.
///
/// # Safety
/// `labels_yaml` and `catalog_yaml` are NULL or NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_registry_with_policy(
    labels_yaml: *const c_char,
    catalog_yaml: *const c_char,
    budget: u32,
) -> *mut edge_registry {
    guard(ptr::null_mut(), || {
        clear_error();
        let policy = if labels_yaml.is_null() {
            LabelPolicy::shipped()
        } else {
            // SAFETY: not NULL; the caller guarantees a NUL-terminated string.
            let Some(yaml) = (unsafe { text(labels_yaml, "labels_yaml") }) else {
                return ptr::null_mut();
            };
            match LabelPolicy::from_yaml(Path::new("labels_yaml"), yaml) {
                Ok(p) => p,
                Err(e) => {
                    set_error(&format!("edge-exporter: invalid label policy: {e}"));
                    return ptr::null_mut();
                }
            }
        };
        let catalog = if catalog_yaml.is_null() {
            Catalog::shipped()
        } else {
            // SAFETY: not NULL; the caller guarantees a NUL-terminated string.
            let Some(yaml) = (unsafe { text(catalog_yaml, "catalog_yaml") }) else {
                return ptr::null_mut();
            };
            match Catalog::from_yaml(Path::new("catalog_yaml"), yaml) {
                Ok(c) => c,
                Err(e) => {
                    set_error(&format!("edge-exporter: invalid metric catalog: {e}"));
                    return ptr::null_mut();
                }
            }
        };
        let schema = Schema::new(policy, catalog);
        let registry = if budget == 0 {
            Registry::with_schema(schema)
        } else {
            Registry::with_schema_and_budget(schema, budget)
        };
        Box::into_raw(Box::new(edge_registry { registry }))
    })
}

/// Frees a registry. Every handle it gave out (counters, gauges, histograms) is invalid
/// afterwards; stop its pushers first (`edge_pusher_stop`). NULL is a no-op.
///
/// Thread safety: call once, when no other thread uses the registry or its handles.
///
/// # Safety
/// `r` is NULL or a registry from `edge_registry_new`/`edge_registry_with_policy` not
/// freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_registry_free(r: *mut edge_registry) {
    guard((), || {
        if !r.is_null() {
            // SAFETY: not NULL, and the caller guarantees it came from `Box::into_raw` in
            // a registry constructor and is freed only once, with no other use running.
            drop(unsafe { Box::from_raw(r) });
        }
    });
}

/// The counter series `name` with `labels[0..n]`, created on first use.
///
/// `name` must be a counter of the registry's catalog. A series the label policy or the
/// budget refuses (a forbidden or undeclared label, an undeclared value, a value that
/// looks like personal data, a spent budget) returns the metric's overflow series (never NULL), counted in
/// `edge_series_rejected_total{reason}`, and `edge_last_error` names the metric, the label
/// and the reason. NULL is returned only for invalid arguments: `r` or `name` NULL, a
/// NULL or non-UTF-8 string, `labels` NULL with `n` > 0, a metric not in the catalog or of
/// another type. The strings are only read during the call. The handle is valid until
/// `edge_registry_free(r)`. Thread safety: any thread, concurrently (takes the registry's
/// lock: call it at start-up or once per new series, not per record).
///
/// # Safety
/// `r` is NULL or a live registry; `name` is NULL or a NUL-terminated string; `labels` is
/// NULL or points to `n` labels whose strings are NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_counter_get(
    r: *mut edge_registry,
    name: *const c_char,
    labels: *const edge_label,
    n: usize,
) -> *mut edge_counter {
    guard(ptr::null_mut(), || {
        // SAFETY: the arguments are passed on under this function's own contract.
        unsafe { get(r, name, labels, n, Wanted::Counter, DEFAULT_SCALE) }
            .cast_mut()
            .cast()
    })
}

/// The floating-point counter series `name` with `labels[0..n]` (a counter of the
/// catalog, for seconds or fractional amounts). Results and NULL as `edge_counter_get`. A
/// name is one type for the registry's life: the first of `edge_counter_get` and
/// `edge_float_counter_get` for it wins, the other returns NULL.
///
/// # Safety
/// As `edge_counter_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_float_counter_get(
    r: *mut edge_registry,
    name: *const c_char,
    labels: *const edge_label,
    n: usize,
) -> *mut edge_float_counter {
    guard(ptr::null_mut(), || {
        // SAFETY: the arguments are passed on under this function's own contract.
        unsafe { get(r, name, labels, n, Wanted::FloatCounter, DEFAULT_SCALE) }
            .cast_mut()
            .cast()
    })
}

/// The gauge series `name` with `labels[0..n]` (a gauge of the catalog). Results and
/// NULL as `edge_counter_get`.
///
/// # Safety
/// As `edge_counter_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_gauge_get(
    r: *mut edge_registry,
    name: *const c_char,
    labels: *const edge_label,
    n: usize,
) -> *mut edge_gauge {
    guard(ptr::null_mut(), || {
        // SAFETY: the arguments are passed on under this function's own contract.
        unsafe { get(r, name, labels, n, Wanted::Gauge, DEFAULT_SCALE) }
            .cast_mut()
            .cast()
    })
}

/// The exponential-histogram series `name` with `labels[0..n]` (a histogram of the
/// catalog), at the default scale 2 (about 13 buckets per decade, relative error at most
/// 8.6%). Results and NULL as `edge_counter_get`.
///
/// # Safety
/// As `edge_counter_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_histogram_get(
    r: *mut edge_registry,
    name: *const c_char,
    labels: *const edge_label,
    n: usize,
) -> *mut edge_histogram {
    guard(ptr::null_mut(), || {
        // SAFETY: the arguments are passed on under this function's own contract.
        unsafe { get(r, name, labels, n, Wanted::Histogram, DEFAULT_SCALE) }
            .cast_mut()
            .cast()
    })
}

/// `edge_histogram_get` with an explicit starting scale (-10..20, clamped; each step up
/// doubles the buckets per decade and halves the relative error). The scale is the
/// metric's: the first registration of `name` sets it, later ones keep it.
///
/// # Safety
/// As `edge_counter_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_histogram_get_with_scale(
    r: *mut edge_registry,
    name: *const c_char,
    labels: *const edge_label,
    n: usize,
    scale: i32,
) -> *mut edge_histogram {
    guard(ptr::null_mut(), || {
        // SAFETY: the arguments are passed on under this function's own contract.
        unsafe { get(r, name, labels, n, Wanted::Histogram, scale) }
            .cast_mut()
            .cast()
    })
}

/// Adds `n` to a counter. NULL is a no-op. Lock-free, allocation-free, never blocks;
/// any thread, concurrently.
///
/// # Safety
/// `c` is NULL or a handle from `edge_counter_get` whose registry is not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_counter_add(c: *mut edge_counter, n: u64) {
    if c.is_null() {
        return;
    }
    guard((), || {
        // SAFETY: not NULL; the caller guarantees a handle from `edge_counter_get`, which
        // is `Arc::as_ptr` of a `Counter` the registry holds an `Arc` to until it is freed,
        // so the pointee is a live `Counter`; only `&` access (atomics) is made.
        unsafe { &*c.cast::<Counter>() }.add(n);
    });
}

/// Adds `v` to a floating-point counter. NULL is a no-op; a negative, NaN or infinite
/// `v` is refused and counted. Lock-free, allocation-free; any thread, concurrently.
///
/// # Safety
/// `c` is NULL or a handle from `edge_float_counter_get` whose registry is not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_float_counter_add(c: *mut edge_float_counter, v: f64) {
    if c.is_null() {
        return;
    }
    guard((), || {
        // SAFETY: as in `edge_counter_add`, for a `FloatCounter`.
        let _ = unsafe { &*c.cast::<FloatCounter>() }.add(v);
    });
}

/// Sets a gauge to `v`. NULL is a no-op. One atomic store; any thread, concurrently.
///
/// # Safety
/// `g` is NULL or a handle from `edge_gauge_get` whose registry is not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_gauge_set(g: *mut edge_gauge, v: f64) {
    if g.is_null() {
        return;
    }
    guard((), || {
        // SAFETY: as in `edge_counter_add`, for a `Gauge`.
        unsafe { &*g.cast::<Gauge>() }.set(v);
    });
}

/// Adds `v` (may be negative) to a gauge. NULL is a no-op. Lock-free; any thread.
///
/// # Safety
/// `g` is NULL or a handle from `edge_gauge_get` whose registry is not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_gauge_add(g: *mut edge_gauge, v: f64) {
    if g.is_null() {
        return;
    }
    guard((), || {
        // SAFETY: as in `edge_counter_add`, for a `Gauge`.
        unsafe { &*g.cast::<Gauge>() }.add(v);
    });
}

/// Records `v` into a histogram. NULL is a no-op; NaN and ±Inf are refused and counted,
/// never stored. A few atomic operations on the calling thread's stripe, no allocation,
/// no lock shared with other game threads (it waits only while the pusher's snapshot
/// copies that stripe, microseconds); any thread, concurrently.
///
/// # Safety
/// `h` is NULL or a handle from `edge_histogram_get` whose registry is not freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_histogram_record(h: *mut edge_histogram, v: f64) {
    if h.is_null() {
        return;
    }
    guard((), || {
        // SAFETY: as in `edge_counter_add`, for a `Histogram`.
        unsafe { &*h.cast::<Histogram>() }.record(v);
    });
}

/// Starts a thread that pushes the registry's series to `url` every `cadence_ms`
/// milliseconds, following the agent's cadence (its answers' `Edge-Cadence`) down to
/// half of `cadence_ms` (10 s steady → 5 s in an incident).
///
/// `url` NULL means the local agent, `http://127.0.0.1:9740/api/v1/push`; `cadence_ms` 0
/// means 10000. Returns NULL for a NULL registry, a URL that is not UTF-8 or not
/// `http://host:port/path`, or a thread that could not start (see `edge_last_error`). A
/// push never blocks the game: a failed one is counted and dropped. The pusher keeps the
/// registry's series alive until it is stopped. Thread safety: any thread.
///
/// # Safety
/// `r` is NULL or a live registry; `url` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_pusher_start(
    r: *mut edge_registry,
    url: *const c_char,
    cadence_ms: u32,
) -> *mut edge_pusher {
    guard(ptr::null_mut(), || {
        let steady = if cadence_ms == 0 {
            u32::try_from(DEFAULT_CADENCE.as_millis()).unwrap_or(10_000)
        } else {
            cadence_ms
        };
        // SAFETY: the arguments are passed on under this function's own contract.
        unsafe { edge_pusher_start_with(r, url, steady, (steady / 2).max(1)) }
    })
}

/// `edge_pusher_start` with explicit bounds: pushes every `steady_ms` (0: 10000), and as
/// often as every `incident_ms` (0: half of `steady_ms`; held to at most `steady_ms`) when
/// the agent's answers ask for it. Results as `edge_pusher_start`.
///
/// # Safety
/// As `edge_pusher_start`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_pusher_start_with(
    r: *mut edge_registry,
    url: *const c_char,
    steady_ms: u32,
    incident_ms: u32,
) -> *mut edge_pusher {
    guard(ptr::null_mut(), || {
        clear_error();
        // SAFETY: the caller passes `r` as `registry` requires.
        let Some(registry) = (unsafe { registry(r) }) else {
            return ptr::null_mut();
        };
        let url = if url.is_null() {
            DEFAULT_PUSH_URL
        } else {
            // SAFETY: not NULL; the caller guarantees a NUL-terminated string.
            match unsafe { text(url, "url") } {
                Some(u) => u,
                None => return ptr::null_mut(),
            }
        };
        if let Err(e) = crate::http::HttpUrl::parse(url) {
            set_error(&format!("edge-exporter: {e}"));
            return ptr::null_mut();
        }
        let steady = if steady_ms == 0 {
            DEFAULT_CADENCE
        } else {
            Duration::from_millis(u64::from(steady_ms))
        };
        let incident = if incident_ms == 0 {
            steady / 2
        } else {
            Duration::from_millis(u64::from(incident_ms))
        };
        let config = PushConfig {
            url: url.to_string(),
            cadence: steady,
            incident_cadence: incident.min(steady),
            ..PushConfig::default()
        };
        match Pusher::spawn(registry.clone(), config) {
            Ok(pusher) => Box::into_raw(Box::new(edge_pusher { pusher })),
            Err(e) => {
                set_error(&format!(
                    "edge-exporter: cannot start the pusher thread: {e}"
                ));
                ptr::null_mut()
            }
        }
    })
}

/// The cadence the pusher follows now, in milliseconds (its steady cadence, or the
/// agent's hint within its bounds); 0 for NULL. Any thread.
///
/// # Safety
/// `p` is NULL or a pusher from `edge_pusher_start` not yet stopped.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_pusher_cadence_ms(p: *const edge_pusher) -> u32 {
    if p.is_null() {
        return 0;
    }
    guard(0, || {
        // SAFETY: not NULL; the caller guarantees a live pusher from `Box::into_raw` in
        // `edge_pusher_start_with`, not yet stopped; only `&` access is made.
        let cadence = unsafe { &(*p).pusher }.cadence();
        u32::try_from(cadence.as_millis()).unwrap_or(u32::MAX)
    })
}

/// Pushes the agent has accepted (2xx) so far; 0 for NULL. Any thread.
///
/// # Safety
/// `p` is NULL or a pusher from `edge_pusher_start` not yet stopped.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_pusher_pushes(p: *const edge_pusher) -> u64 {
    if p.is_null() {
        return 0;
    }
    guard(0, || {
        // SAFETY: as in `edge_pusher_cadence_ms`.
        unsafe { &(*p).pusher }.pushes()
    })
}

/// Stops a pusher: pushes once more (everything recorded so far), then joins its thread.
/// Blocks the caller for that push and any push already under way, each bounded by the
/// 2 s push timeout (at most about 4 s with an agent that does not answer). The pusher is
/// freed; NULL is a no-op.
///
/// Thread safety: call once per pusher, from any thread.
///
/// # Safety
/// `p` is NULL or a pusher from `edge_pusher_start` not stopped before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn edge_pusher_stop(p: *mut edge_pusher) {
    guard((), || {
        if !p.is_null() {
            // SAFETY: not NULL; the caller guarantees it came from `Box::into_raw` in
            // `edge_pusher_start_with` and is stopped only once.
            unsafe { Box::from_raw(p) }.pusher.stop();
        }
    });
}

/// This thread's last error or refusal, or NULL when the last call that can fail
/// (registry creation, `edge_*_get`, `edge_pusher_start*`) succeeded.
///
/// The text names what was wrong: for a refused series the metric, the label and the
/// reason (`forbidden_label`, `label_not_allowed`, `invalid_label_name`,
/// `label_value_not_declared`, `pii_label_value`, `budget`). The string is owned by the
/// library and valid until the next call that can fail on this thread; copy it to keep
/// it. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn edge_last_error() -> *const c_char {
    guard(ptr::null(), || {
        LAST_ERROR
            .try_with(|e| e.borrow().as_ref().map_or(ptr::null(), |c| c.as_ptr()))
            .unwrap_or(ptr::null())
    })
}

/// A histogram recorded through the C ABI, for Rust-side benchmarks: [`AbiHistogram::record`]
/// calls `edge_histogram_record` through a function pointer the optimiser cannot see
/// through, as a C or C++ caller's call is (an indirect call, no inlining).
#[derive(Debug)]
pub struct AbiHistogram {
    histogram: Arc<Histogram>,
    record: unsafe extern "C" fn(*mut edge_histogram, f64),
}

impl AbiHistogram {
    /// Wraps `histogram`, which it keeps alive.
    pub fn new(histogram: Arc<Histogram>) -> Self {
        AbiHistogram {
            histogram,
            record: std::hint::black_box(edge_histogram_record as unsafe extern "C" fn(_, _)),
        }
    }

    /// `edge_histogram_record(handle, v)`, as C calls it.
    #[inline]
    pub fn record(&self, v: f64) {
        let handle: *mut edge_histogram = Arc::as_ptr(&self.histogram).cast_mut().cast();
        // SAFETY: `record` is `edge_histogram_record` (set in `new`, never changed), and
        // `handle` points to the `Histogram` this struct keeps alive through its `Arc`,
        // which is exactly the handle `edge_histogram_record` requires.
        unsafe { (self.record)(handle, v) }
    }
}
