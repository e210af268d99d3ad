//! What the AWS sinks share: commits from concurrent requests are gathered for a few
//! milliseconds (or until a call is full) and flushed together by one task, and the
//! bytes waiting are bounded: past the budget a commit is answered `Busy` at once
//! (503 + `Retry-After` upstream) instead of queueing without bound.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Record, SinkError};

struct Pending {
    records: Vec<Record>,
    bytes: u64,
    done: oneshot::Sender<Result<(), SinkError>>,
}

/// The commit side of a coalescing sink.
#[derive(Debug)]
pub struct Coalescer {
    tx: mpsc::UnboundedSender<Pending>,
    /// Records and bytes waiting.
    waiting: Arc<(AtomicU64, AtomicU64)>,
    max_waiting_bytes: u64,
    what: &'static str,
}

impl Coalescer {
    /// Starts the flushing task on the current runtime. `flush` gets the records of
    /// each commit gathered (in arrival order) and answers each commit.
    pub fn start<F, Fut>(
        what: &'static str,
        linger: Duration,
        max_flush_bytes: u64,
        max_waiting_bytes: u64,
        flush: F,
    ) -> Coalescer
    where
        F: Fn(Vec<Vec<Record>>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Result<(), SinkError>>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let waiting = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let shared = waiting.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let until = tokio::time::Instant::now() + linger;
                let mut bytes = first.bytes;
                let mut gathered = vec![first];
                while bytes < max_flush_bytes {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(p)) => {
                            bytes += p.bytes;
                            gathered.push(p);
                        }
                        _ => break,
                    }
                }
                let (records, rest): (Vec<Vec<Record>>, Vec<(u64, oneshot::Sender<_>)>) = gathered
                    .into_iter()
                    .map(|p| (p.records, (p.bytes, p.done)))
                    .unzip();
                let counts: Vec<u64> = records.iter().map(|r| r.len() as u64).collect();
                let results = flush(records).await;
                let mut results = results.into_iter();
                for ((bytes, done), count) in rest.into_iter().zip(counts) {
                    shared.0.fetch_sub(count, Ordering::Relaxed);
                    shared.1.fetch_sub(bytes, Ordering::Relaxed);
                    let result = results
                        .next()
                        .unwrap_or_else(|| Err(SinkError::Failed("no answer for a commit".into())));
                    let _ = done.send(result);
                }
            }
        });
        Coalescer {
            tx,
            waiting,
            max_waiting_bytes,
            what,
        }
    }

    /// Hands `records` to the flushing task and waits for their answer.
    pub async fn commit(&self, records: Vec<Record>) -> Result<(), SinkError> {
        if records.is_empty() {
            return Ok(());
        }
        let bytes: u64 = records.iter().map(|r| r.data.len() as u64).sum();
        let before = self.waiting.1.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.max_waiting_bytes {
            self.waiting.1.fetch_sub(bytes, Ordering::Relaxed);
            return Err(SinkError::Busy {
                retry_after: Duration::from_secs(2),
            });
        }
        let count = records.len() as u64;
        self.waiting.0.fetch_add(count, Ordering::Relaxed);
        let (done, wait) = oneshot::channel();
        let stopped = || SinkError::Failed(format!("the {} flusher has stopped", self.what));
        if self
            .tx
            .send(Pending {
                records,
                bytes,
                done,
            })
            .is_err()
        {
            self.waiting.0.fetch_sub(count, Ordering::Relaxed);
            self.waiting.1.fetch_sub(bytes, Ordering::Relaxed);
            return Err(stopped());
        }
        wait.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Records and bytes waiting.
    pub fn backlog(&self) -> (u64, u64) {
        (
            self.waiting.0.load(Ordering::Relaxed),
            self.waiting.1.load(Ordering::Relaxed),
        )
    }
}
