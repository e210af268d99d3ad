//! Where accepted data goes. Every sink answers `commit` only once the records are
//! durable there: the gateway answers its client 2xx only after that.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub mod coalesce;
pub mod file;
pub mod firehose;
pub mod kinesis;
pub mod remote_write;
pub mod retry;
pub mod traces;

/// One record for a sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Metrics: the partition key (`tenant/host`), so one host's samples stay in order
    /// in one shard. Logs: the tenant.
    pub key: String,
    /// Metrics: an uncompressed remote_write `WriteRequest`. Logs: one JSON document.
    pub data: Vec<u8>,
}

/// Why a commit did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The sink is saturated; the client should come back after this long (503).
    #[error("the sink is busy; retry after {retry_after:?}")]
    Busy {
        /// How long.
        retry_after: Duration,
    },
    /// The sink failed (503: the client keeps the data and retries).
    #[error("the sink failed: {0}")]
    Failed(String),
    /// A record the sink can never take (400).
    #[error("a record the sink cannot take: {0}")]
    Refused(String),
}

/// A boxed future, so sinks can be chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A sink.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Commits `records`; resolves when they are durable.
    fn commit(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), SinkError>>;
    /// Whether the sink answers (for `/ready`).
    fn ready(&self) -> BoxFuture<'_, bool>;
    /// Records and bytes waiting to be committed (backlog).
    fn backlog(&self) -> (u64, u64);
}

/// The records and bytes a sink that sends each commit itself (no coalescing) has in
/// flight, bounded by bytes: past the bound a commit is refused at once as busy (503),
/// unless nothing else is in flight (one commit larger than the bound still goes alone).
#[derive(Debug)]
pub struct InFlight {
    max_bytes: u64,
    records: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl InFlight {
    /// A budget of `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        InFlight {
            max_bytes,
            records: std::sync::atomic::AtomicU64::new(0),
            bytes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Runs `commit` over `records` within the budget, counting them while it runs.
    pub async fn run<F>(
        &self,
        records: Vec<Record>,
        commit: impl FnOnce(Vec<Record>) -> F,
    ) -> Result<(), SinkError>
    where
        F: Future<Output = Result<(), SinkError>>,
    {
        use std::sync::atomic::Ordering::Relaxed;
        if records.is_empty() {
            return Ok(());
        }
        let count = records.len() as u64;
        let bytes: u64 = records.iter().map(|r| r.data.len() as u64).sum();
        let before = self.bytes.fetch_add(bytes, Relaxed);
        if before > 0 && before + bytes > self.max_bytes {
            self.bytes.fetch_sub(bytes, Relaxed);
            return Err(SinkError::Busy {
                retry_after: Duration::from_secs(2),
            });
        }
        self.records.fetch_add(count, Relaxed);
        let result = commit(records).await;
        self.records.fetch_sub(count, Relaxed);
        self.bytes.fetch_sub(bytes, Relaxed);
        result
    }

    /// Records and bytes in flight (a sink's backlog).
    pub fn backlog(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.records.load(Relaxed), self.bytes.load(Relaxed))
    }
}
