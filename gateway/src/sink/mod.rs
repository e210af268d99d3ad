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
