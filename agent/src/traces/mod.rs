//! The traces path: spans the OTLP receivers take are tokenized, batched and queued in
//! the disk queue's `traces` class, which a sender delivers to `output.traces_url`.
//!
//! - [`TracesPipeline::offer`] is what a receiver calls with one
//!   `ExportTraceServiceRequest`. It never waits on the disk: it scrubs the spans
//!   ([`scrub`]), adds them to the open batch ([`batch`]) under a mutex held for that
//!   alone, and answers. Closed batches wait in memory, bounded by
//!   [`MAX_WAITING_BYTES`], until [`TracesPipeline::run`] (a task) writes them to the
//!   disk queue and wakes the sender.
//! - Shedding: traces are shed after debug logs and before info logs. While the queue is
//!   above [`SHED_TRACES_AT`] of its bound, the gateway's shed hint is `info`, or the
//!   batches waiting for the disk are at their bound, `offer` answers
//!   [`TraceVerdict::Shedding`] and the client keeps its spans and retries (OTLP: 503
//!   with `Retry-After`, gRPC `Unavailable` with `RetryInfo`).
//! - A span a `drop` detector matches is refused: `rejected_spans` and an
//!   `error_message` naming the detector go back in the OTLP partial success.
//! - Every span is counted in `edge_traces_spans_total{result}`.
//!
//! Delivery is at-least-once from the disk queue on. A span accepted by `offer` is in
//! memory until its batch closes (at most [`batch::DEFAULT_LIMITS`]`.max_age`, 1 s) and
//! reaches the disk queue: an agent killed in that window loses it, as an OpenTelemetry
//! collector's batch processor does. A graceful stop queues everything.

pub mod batch;
/// The span scrub is edge-tokenize's, shared with the gateway.
pub use edge_tokenize::spans as scrub;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_schema::proto::otlp::trace::ExportTraceServiceRequest;
use edge_schema::proto::otlp::{AnyValue, KeyValue, Resource, any_value};
use tokio::sync::{Notify, watch};

use crate::config::AgentConfig;
use crate::queue::{Class, SharedQueue, with_queue};
use crate::telemetry::Telemetry;
use batch::{BatchLimits, Batcher, Closed};
use edge_tokenize::{KeyFile, Tokenizer};

/// Queue fill (of its bound) above which traces are shed: after debug logs (0.8), before
/// info logs (0.9).
pub const SHED_TRACES_AT: f64 = 0.85;

// The shed order, checked when the crate builds.
const _: () = assert!(
    crate::queue::SHED_DEBUG_AT < SHED_TRACES_AT && SHED_TRACES_AT < crate::queue::SHED_INFO_AT
);

/// The shed hint level (see [`crate::sender::parse_shed_hint`]) from which traces are
/// shed: `info`, since traces go before info logs.
pub const SHED_TRACES_HINT: u8 = 2;

/// What a shedding answer asks the client to wait: long enough for the sender to drain
/// some of the queue, short enough that an SDK's export queue does not overflow first.
pub const SHED_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Closed batches (compressed bytes) that may wait in memory for the disk: past this,
/// `offer` sheds. Eight 1 MiB batches compress to far less; a disk this far behind is
/// a disk in trouble.
pub const MAX_WAITING_BYTES: usize = 8 << 20;

/// The longest the task sleeps with nothing due (it then checks the key file): an idle
/// agent wakes for traces every few seconds, not every few milliseconds.
pub const IDLE_WAKE: Duration = KEY_CHECK_EVERY;

/// How often the tokenization key file is checked for a new key.
pub const KEY_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The answer to an `offer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceVerdict {
    /// Taken; `rejected_spans` of them refused (a PII detector with action `drop`
    /// matched), `error_message` says why (empty when none was).
    Accepted {
        /// Spans refused.
        rejected_spans: i64,
        /// Why, for the OTLP partial success.
        error_message: String,
    },
    /// The agent is shedding traces: nothing was taken; retry after this long.
    Shedding {
        /// How long the client should wait.
        retry_after: Duration,
    },
}

struct State {
    tokenizer: Tokenizer,
    key: KeyFile,
    key_checked: Instant,
    batcher: Batcher,
    /// Closed batches not yet in the disk queue, oldest first.
    waiting: VecDeque<Closed>,
    waiting_bytes: usize,
}

/// The traces pipeline (see the module docs). Shared (`Arc`) by the receivers and its
/// own task.
pub struct TracesPipeline {
    state: Mutex<State>,
    host_attributes: Vec<KeyValue>,
    queue: SharedQueue,
    queue_max: u64,
    /// Wakes the traces sender.
    sender_wake: Arc<Notify>,
    /// Wakes this pipeline's task (a batch closed, or the open batch began and has a
    /// deadline now).
    closed: Notify,
    telemetry: Arc<Telemetry>,
    shed_hint: Arc<AtomicU8>,
}

impl std::fmt::Debug for TracesPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracesPipeline")
            .field("queue_max", &self.queue_max)
            .finish_non_exhaustive()
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

impl TracesPipeline {
    /// Builds the pipeline: loads the tokenization key (no key, no traces: PII must never
    /// ship untokenized) and compiles the detectors. `sender_wake` wakes the traces
    /// sender; `shed_hint` is that sender's [`crate::sender::Sender::shed_hint`].
    pub fn new(
        config: &AgentConfig,
        host_name: &str,
        host_labels: &[(String, String)],
        queue: SharedQueue,
        sender_wake: Arc<Notify>,
        telemetry: Arc<Telemetry>,
        shed_hint: Arc<AtomicU8>,
    ) -> anyhow::Result<Self> {
        let (key, tokenizer) = config.load_tokenizer("traces")?;
        Ok(Self::with_tokenizer(
            tokenizer,
            key,
            batch::DEFAULT_LIMITS,
            host_name,
            host_labels,
            queue,
            config.queue.max_bytes,
            sender_wake,
            telemetry,
            shed_hint,
        ))
    }

    /// A new tokenizer and key file (a config reload): spans offered from now on are
    /// scrubbed with it.
    pub fn set_tokenizer(&self, key: KeyFile, tokenizer: Tokenizer) {
        let mut state = self.state();
        state.tokenizer = tokenizer;
        state.key = key;
        state.key_checked = Instant::now();
    }

    /// The pipeline around a built tokenizer and batch limits (tests use small ones).
    #[allow(clippy::too_many_arguments)] // one constructor, called twice
    pub fn with_tokenizer(
        tokenizer: Tokenizer,
        key: KeyFile,
        limits: BatchLimits,
        host_name: &str,
        host_labels: &[(String, String)],
        queue: SharedQueue,
        queue_max: u64,
        sender_wake: Arc<Notify>,
        telemetry: Arc<Telemetry>,
        shed_hint: Arc<AtomicU8>,
    ) -> Self {
        let mut host_attributes = vec![string_kv("host.name", host_name)];
        host_attributes.extend(host_labels.iter().map(|(k, v)| string_kv(k, v)));
        TracesPipeline {
            state: Mutex::new(State {
                tokenizer,
                key,
                key_checked: Instant::now(),
                batcher: Batcher::new(limits),
                waiting: VecDeque::new(),
                waiting_bytes: 0,
            }),
            host_attributes,
            queue,
            queue_max,
            sender_wake,
            closed: Notify::new(),
            telemetry,
            shed_hint,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether traces are being shed now, and why.
    fn shedding(&self, waiting_bytes: usize) -> Option<&'static str> {
        let fill = self.telemetry.queue_total_bytes() as f64 / self.queue_max.max(1) as f64;
        if fill >= SHED_TRACES_AT {
            Some("the disk queue is near its bound")
        } else if self.shed_hint.load(Ordering::Relaxed) >= SHED_TRACES_HINT {
            Some("the gateway asks agents to shed")
        } else if waiting_bytes >= MAX_WAITING_BYTES {
            Some("the disk queue is behind")
        } else {
            None
        }
    }

    /// Takes one export request (see the module docs). Holds the pipeline's mutex while
    /// it tokenizes and batches; never touches the disk.
    pub fn offer(&self, request: ExportTraceServiceRequest) -> TraceVerdict {
        let total: u64 = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        if total == 0 {
            return TraceVerdict::Accepted {
                rejected_spans: 0,
                error_message: String::new(),
            };
        }
        let mut state = self.state();
        if let Some(why) = self.shedding(state.waiting_bytes) {
            drop(state);
            self.telemetry.spans("shed", total);
            tracing::debug!(
                spans = total,
                reason = why,
                "traces shed; the client will retry"
            );
            return TraceVerdict::Shedding {
                retry_after: SHED_RETRY_AFTER,
            };
        }
        let now = Instant::now();
        let was_empty = state.batcher.open_spans() == 0;
        let (mut kept, mut dropped, mut replaced) = (0u64, 0u64, 0u64);
        let mut first_drop: Option<String> = None;
        let mut closed = Vec::new();
        for mut rs in request.resource_spans {
            let s = scrub::scrub_resource_spans(&state.tokenizer, &mut rs);
            kept += s.kept;
            dropped += s.dropped;
            replaced += s.replaced;
            if first_drop.is_none() {
                first_drop = s.first_drop;
            }
            if s.kept == 0 {
                continue;
            }
            self.add_host(&mut rs);
            self.telemetry.taps().spans(&rs, s.kept);
            closed.extend(state.batcher.add(rs, s.kept, now));
        }
        let lost = state.batcher.take_lost();
        let woke = !closed.is_empty() || (was_empty && state.batcher.open_spans() > 0);
        for c in closed {
            state.waiting_bytes += c.body.len();
            state.waiting.push_back(c);
        }
        drop(state);
        if woke {
            self.closed.notify_one();
        }
        self.telemetry.spans("accepted", kept);
        self.telemetry.spans("lost", lost);
        self.telemetry.spans("refused", dropped);
        if replaced > 0 {
            self.telemetry.pii_replaced(replaced);
        }
        let error_message = match first_drop {
            Some(detector) => format!(
                "{dropped} span(s) refused: they hold a value the PII detector {detector:?} drops (tokenize.detectors)"
            ),
            None => String::new(),
        };
        TraceVerdict::Accepted {
            rejected_spans: i64::try_from(dropped).unwrap_or(i64::MAX),
            error_message,
        }
    }

    /// The host's name and labels on the resource, where the client did not set them,
    /// and the mark that tells the gateway these spans are tokenized already.
    fn add_host(&self, rs: &mut edge_schema::proto::otlp::trace::ResourceSpans) {
        let resource = rs.resource.get_or_insert_with(Resource::default);
        resource
            .attributes
            .retain(|a| a.key != crate::logs::ship::TOKENIZED_MARK);
        resource
            .attributes
            .push(string_kv(crate::logs::ship::TOKENIZED_MARK, "true"));
        for kv in &self.host_attributes {
            if !resource.attributes.iter().any(|a| a.key == kv.key) {
                resource.attributes.push(kv.clone());
            }
        }
    }

    /// Closed batches, and the open one if `all` or due; checks the key file when due.
    fn take(&self, now: Instant, all: bool) -> (Vec<Closed>, u64) {
        let mut state = self.state();
        if now.saturating_duration_since(state.key_checked) >= KEY_CHECK_EVERY {
            state.key_checked = now;
            match state.key.reload_if_changed() {
                Ok(true) => {
                    let key = state.key.key().clone();
                    state.tokenizer.set_key(key);
                    tracing::info!(
                        key_id = state.tokenizer.key_id(),
                        "tokenization key reloaded (traces)"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "new tokenization key does not load; keeping the current one")
                }
            }
        }
        let last = if all {
            state.batcher.close()
        } else {
            state.batcher.due(now)
        };
        let lost = state.batcher.take_lost();
        let mut out: Vec<Closed> = state.waiting.drain(..).collect();
        state.waiting_bytes = 0;
        out.extend(last);
        (out, lost)
    }

    /// Writes `batches` to the disk queue (on the blocking pool) and wakes the sender.
    async fn queue(&self, batches: Vec<Closed>) {
        if batches.is_empty() {
            return;
        }
        let telemetry = self.telemetry.clone();
        let figures = with_queue(&self.queue, move |q| {
            for batch in &batches {
                match q.push(Class::Traces, &batch.body) {
                    Ok(shed) if shed.records > 0 => tracing::warn!(
                        records = shed.records,
                        "disk queue at its bound: oldest low-priority batches shed"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        telemetry.spans("lost", batch.spans);
                        tracing::error!(error = %e, spans = batch.spans, "cannot queue a trace batch; it is lost");
                    }
                }
            }
            q.figures()
        })
        .await;
        self.telemetry.set_queue(&figures);
        self.sender_wake.notify_one();
    }

    /// Queues closed batches as they come and the open one when it is due, until `stop`;
    /// then queues everything left.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            let wait = self
                .state()
                .batcher
                .due_in(Instant::now())
                .map_or(IDLE_WAKE, |d| d.min(IDLE_WAKE));
            tokio::select! {
                () = self.closed.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            let (batches, lost) = self.take(Instant::now(), false);
            self.telemetry.spans("lost", lost);
            self.queue(batches).await;
        }
        let (batches, lost) = self.take(Instant::now(), true);
        self.telemetry.spans("lost", lost);
        self.queue(batches).await;
    }

    /// Queues every batch now, the open one included (tests, shutdown).
    pub async fn flush(&self) {
        let (batches, lost) = self.take(Instant::now(), true);
        self.telemetry.spans("lost", lost);
        self.queue(batches).await;
    }
}

#[cfg(test)]
mod tests;
