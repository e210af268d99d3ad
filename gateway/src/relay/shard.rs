//! One shard's reader: `GetRecords` in a loop; the records of each are merged into as
//! few remote_write requests as `max_batch_bytes` allows, each request checkpointed
//! after the target took it, in order.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use tokio::sync::watch;

use super::checkpoint::Checkpoint;
use super::leases::LeaseLost;
use super::{Position, Relay, sequence_cmp};
use crate::sink::remote_write::forward::Outcome;
use crate::sink::retry::Retry;
use crate::telemetry::{Counter, labels};
use crate::telemetry::{
    RELAY_BYTES_FORWARDED_TOTAL, RELAY_CHECKPOINT_CONFLICTS_TOTAL, RELAY_FRESHNESS_SECONDS,
    RELAY_MILLIS_BEHIND_LATEST, RELAY_RECORDS_FORWARDED_TOTAL, RELAY_RECORDS_SKIPPED_TOTAL,
    RELAY_REQUESTS_TOTAL, RELAY_RETRIES_TOTAL,
};

/// Kinesis allows five `GetRecords` a second per shard.
const MIN_POLL_GAP: Duration = Duration::from_millis(200);
/// A shard that is caught up is polled once a second.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Records per `GetRecords` (Kinesis' most): catching up reads in large steps.
const BATCH: i32 = 10_000;

/// How a reader ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The shard is closed and every record was forwarded.
    Finished,
    /// Shutdown, or told to stop (the lease was lost).
    Stopped,
    /// A checkpoint was refused: the lease is another relay's.
    Lost,
}

pub(crate) struct Reader {
    relay: Arc<Relay>,
    shard: String,
    /// The last record done with (forwarded or skipped), or where to begin.
    position: Position,
}

impl Reader {
    pub(crate) fn new(relay: Arc<Relay>, shard: String, position: Position) -> Reader {
        Reader {
            relay,
            shard,
            position,
        }
    }

    fn count(&self, metric: &Counter, extra: &[(&str, &str)], by: f64) {
        let mut pairs = vec![("shard", self.shard.as_str())];
        pairs.extend_from_slice(extra);
        self.relay.telemetry.add(metric, labels(&pairs), by);
    }

    fn retried(&self, reason: &str) {
        self.count(&RELAY_RETRIES_TOTAL, &[("reason", reason)], 1.0);
    }

    async fn iterator(&self) -> Result<Option<String>, String> {
        let kinesis = &self.relay.kinesis;
        let request = kinesis
            .get_shard_iterator()
            .stream_name(&self.relay.config.stream)
            .shard_id(&self.shard);
        let request = match &self.position {
            Position::After(seq) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            Position::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
        };
        request
            .send()
            .await
            .map(|r| r.shard_iterator)
            .map_err(|e| DisplayErrorContext(e).to_string())
    }

    /// Reads until the shard is finished or `shutdown` turns true.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> End {
        let mut retries = Retry::forever(MIN_POLL_GAP);
        let mut iterator: Option<String> = None;
        loop {
            if *shutdown.borrow() {
                return End::Stopped;
            }
            let current = match iterator.take() {
                Some(i) => i,
                None => match self.iterator().await {
                    Ok(Some(i)) => i,
                    // No iterator: a closed shard with nothing after the position.
                    Ok(None) => return self.finish().await,
                    Err(e) => {
                        tracing::warn!(shard = %self.shard, error = %e, "GetShardIterator failed");
                        self.retried("kinesis_error");
                        if pause(&mut shutdown, retries.failed(None).unwrap_or(MIN_POLL_GAP)).await
                        {
                            return End::Stopped;
                        }
                        continue;
                    }
                },
            };
            let started = tokio::time::Instant::now();
            let answer = self
                .relay
                .kinesis
                .get_records()
                .shard_iterator(&current)
                .limit(BATCH)
                .send()
                .await;
            let got = match answer {
                Ok(got) => got,
                Err(e) => {
                    let code = e.code().unwrap_or("").to_string();
                    let reason = match code.as_str() {
                        "ProvisionedThroughputExceededException" => "throttled",
                        // Acquired again from the position below.
                        "ExpiredIteratorException" => "iterator_expired",
                        _ => "kinesis_error",
                    };
                    if reason == "kinesis_error" {
                        tracing::warn!(shard = %self.shard, error = %DisplayErrorContext(&e), "GetRecords failed");
                    }
                    self.retried(reason);
                    // A throttled or failed call keeps its iterator unless it expired.
                    if reason != "iterator_expired" {
                        iterator = Some(current);
                    }
                    if pause(&mut shutdown, retries.failed(None).unwrap_or(MIN_POLL_GAP)).await {
                        return End::Stopped;
                    }
                    continue;
                }
            };
            retries.succeeded();
            let behind = got.millis_behind_latest().unwrap_or(0);
            self.relay.telemetry.set(
                &RELAY_MILLIS_BEHIND_LATEST,
                labels(&[("shard", self.shard.as_str())]),
                behind as f64,
            );
            let empty = got.records().is_empty();
            match self.forward_all(got.records(), &mut shutdown).await {
                Step::Done => {}
                Step::Stopped => return End::Stopped,
                Step::Lost => return End::Lost,
            }
            // Finished: no next iterator, or (for servers that always give one) closed
            // and read past its last record.
            let Some(next) = got.next_shard_iterator().map(str::to_string) else {
                return self.finish().await;
            };
            if let Some(ending) = self.relay.ending_of(&self.shard) {
                let past_end = match &self.position {
                    Position::After(seq) => sequence_cmp(seq, &ending).is_ge(),
                    _ => false,
                };
                if past_end || (empty && behind == 0) {
                    return self.finish().await;
                }
            }
            iterator = Some(next);
            let gap = if empty || behind == 0 {
                IDLE_POLL
            } else {
                MIN_POLL_GAP
            };
            let wait = gap.saturating_sub(started.elapsed());
            if pause(&mut shutdown, wait).await {
                return End::Stopped;
            }
        }
    }

    async fn finish(&self) -> End {
        let (_tx, mut never) = watch::channel(false);
        match self.checkpoint(Checkpoint::Finished, &mut never).await {
            Step::Lost => End::Lost,
            Step::Done | Step::Stopped => End::Finished,
        }
    }

    /// Saves a checkpoint, retrying until it is saved: reading on without one would
    /// repeat everything since after a restart. `Lost` if the lease is another relay's
    /// now (the checkpoint did not move; the shard is given up).
    async fn checkpoint(&self, at: Checkpoint, shutdown: &mut watch::Receiver<bool>) -> Step {
        let mut retries = Retry::forever(MIN_POLL_GAP);
        let mut tries_stopping = 0;
        loop {
            let Err(e) = self.relay.store.save(&self.shard, at.clone()).await else {
                return Step::Done;
            };
            if e.is::<LeaseLost>() {
                tracing::warn!(shard = %self.shard, "checkpoint refused: the lease is another relay's now; giving the shard up");
                self.count(&RELAY_CHECKPOINT_CONFLICTS_TOTAL, &[], 1.0);
                return Step::Lost;
            }
            tracing::error!(shard = %self.shard, error = %e, "cannot save the checkpoint; retrying");
            self.retried("checkpoint");
            if pause(shutdown, retries.failed(None).unwrap_or(MIN_POLL_GAP)).await {
                // Stopping (shutdown, or a handover): the target has these records; a
                // few more tries spare the next reader sending them again.
                tries_stopping += 1;
                if tries_stopping > 3 {
                    return Step::Stopped;
                }
                tokio::time::sleep(MIN_POLL_GAP).await;
            }
        }
    }

    /// Forwards the records of one `GetRecords`, merged into as few requests as
    /// `max_batch_bytes` allows, each checkpointed after the target took it.
    async fn forward_all(
        &mut self,
        records: &[aws_sdk_kinesis::types::Record],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Step {
        let max = self.relay.config.max_batch_bytes;
        let mut batch = Batch::default();
        // The last record done with, not yet checkpointed.
        let mut pending: Option<String> = None;
        for record in records {
            let data = record.data().as_ref();
            let seq = record.sequence_number().to_string();
            let Some((raw, newest)) = decode_record(data) else {
                tracing::warn!(shard = %self.shard, bytes = data.len(), "a record that is not a snappy WriteRequest; skipped");
                self.count(
                    &RELAY_RECORDS_SKIPPED_TOTAL,
                    &[("reason", "malformed")],
                    1.0,
                );
                pending = Some(seq);
                continue;
            };
            if !batch.is_empty() && batch.raw.len() + raw.len() > max {
                match self.flush(&mut batch, pending.take(), shutdown).await {
                    Step::Done => {}
                    other => return other,
                }
            }
            batch.raw.extend_from_slice(&raw);
            batch.records.push((Bytes::copy_from_slice(data), newest));
            pending = Some(seq);
        }
        self.flush(&mut batch, pending, shutdown).await
    }

    /// Sends `batch` (if any) and then checkpoints `through` (if any).
    async fn flush(
        &mut self,
        batch: &mut Batch,
        through: Option<String>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Step {
        if !batch.is_empty() {
            let merged = std::mem::take(batch);
            if !self.send(merged, shutdown).await {
                // Stopped while retrying: the batch is not checkpointed.
                return Step::Stopped;
            }
        }
        let Some(seq) = through else {
            return Step::Done;
        };
        let step = self
            .checkpoint(Checkpoint::After(seq.clone()), shutdown)
            .await;
        if step == Step::Done {
            self.position = Position::After(seq);
        }
        step
    }

    /// Sends a batch as one request until the target takes it or refuses it for good; a
    /// refused batch of several records is sent again record by record, so one bad
    /// record does not cost its neighbours. False if `shutdown` came first.
    async fn send(&self, batch: Batch, shutdown: &mut watch::Receiver<bool>) -> bool {
        let body = if batch.records.len() == 1 {
            batch.records[0].0.clone()
        } else {
            match snap::raw::Encoder::new().compress_vec(&batch.raw) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::error!(shard = %self.shard, error = %e, "cannot compress a batch; sending its records one by one");
                    return self.send_each(batch, shutdown).await;
                }
            }
        };
        match self.send_one(body, shutdown).await {
            Sent::Accepted => {
                self.accepted(&batch.records);
                true
            }
            Sent::Stopped => false,
            Sent::Rejected { status, reason } if batch.records.len() == 1 => {
                tracing::warn!(shard = %self.shard, status, %reason, "the target refused a record; skipped");
                self.count(&RELAY_RECORDS_SKIPPED_TOTAL, &[("reason", "rejected")], 1.0);
                true
            }
            Sent::Rejected { status, reason } => {
                tracing::info!(shard = %self.shard, status, %reason, records = batch.records.len(), "the target refused a merged request; sending its records one by one");
                self.send_each(batch, shutdown).await
            }
        }
    }

    async fn send_each(&self, batch: Batch, shutdown: &mut watch::Receiver<bool>) -> bool {
        for (data, newest) in batch.records {
            match self.send_one(data.clone(), shutdown).await {
                Sent::Accepted => self.accepted(&[(data, newest)]),
                Sent::Stopped => return false,
                Sent::Rejected { status, reason } => {
                    tracing::warn!(shard = %self.shard, status, %reason, "the target refused a record; skipped");
                    self.count(&RELAY_RECORDS_SKIPPED_TOTAL, &[("reason", "rejected")], 1.0);
                }
            }
        }
        true
    }

    fn accepted(&self, records: &[(Bytes, Option<i64>)]) {
        self.count(&RELAY_RECORDS_FORWARDED_TOTAL, &[], records.len() as f64);
        let bytes: usize = records.iter().map(|(d, _)| d.len()).sum();
        self.count(&RELAY_BYTES_FORWARDED_TOTAL, &[], bytes as f64);
        self.count(&RELAY_REQUESTS_TOTAL, &[], 1.0);
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let ages: Vec<f64> = records
            .iter()
            .filter_map(|(_, newest)| *newest)
            .map(|ms| (now_ms - ms).max(0) as f64 / 1000.0)
            .collect();
        if !ages.is_empty() {
            self.relay
                .telemetry
                .observe_many(&RELAY_FRESHNESS_SECONDS, String::new(), &ages);
        }
    }

    /// POSTs `body` until the target answers 2xx or a final 4xx.
    async fn send_one(&self, body: Bytes, shutdown: &mut watch::Receiver<bool>) -> Sent {
        let mut retries = Retry::forever(Duration::ZERO);
        loop {
            match self.relay.forwarder.send(body.clone()).await {
                Outcome::Accepted => return Sent::Accepted,
                Outcome::Rejected { status, reason } => return Sent::Rejected { status, reason },
                Outcome::Retry { after, reason } => {
                    tracing::debug!(shard = %self.shard, %reason, "the target asks to retry");
                    self.retried("target");
                    let wait = retries.failed(after).unwrap_or_default();
                    if pause(shutdown, wait).await {
                        return Sent::Stopped;
                    }
                }
            }
        }
    }
}

/// How a step of the reader went.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Done,
    Stopped,
    /// The lease is another relay's: give the shard up.
    Lost,
}

/// What became of one request.
enum Sent {
    Accepted,
    Rejected { status: u16, reason: String },
    Stopped,
}

/// Records read together, to go as one request.
#[derive(Default)]
struct Batch {
    /// Their `WriteRequest`s, decompressed and concatenated: one `WriteRequest` with
    /// every series (protobuf merges repeated fields of concatenated messages).
    raw: Vec<u8>,
    /// Each record as read, with its newest sample timestamp.
    records: Vec<(Bytes, Option<i64>)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The largest record Kinesis takes (1 MiB); a larger one did not come from a stream.
pub(super) const MAX_RECORD_BYTES: usize = 1 << 20;

/// The most a record may decompress to: the gateway's own limit for a request body.
pub(super) const MAX_RECORD_DECOMPRESSED: usize = 64 << 20;

/// A snappy `WriteRequest` decompressed, with its newest sample timestamp (ms; `None`
/// if it holds no sample); `None` if it is not one — including a record over
/// [`MAX_RECORD_BYTES`] or a snappy header that declares more than
/// [`MAX_RECORD_DECOMPRESSED`], refused before anything is allocated.
fn decode_record(data: &[u8]) -> Option<(Vec<u8>, Option<i64>)> {
    if data.len() > MAX_RECORD_BYTES {
        return None;
    }
    let raw = crate::decode::snappy(data, MAX_RECORD_DECOMPRESSED).ok()?;
    let scanned = crate::decode::remote_write::scan(&raw).ok()?;
    let newest = scanned.series.iter().filter_map(|s| s.newest_ms).max();
    Some((raw, newest))
}

/// Sleeps `wait`; true if `shutdown` turned true first.
async fn pause(shutdown: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => *shutdown.borrow(),
        r = shutdown.changed() => match r {
            Ok(()) => *shutdown.borrow(),
            // Nobody can stop us any more: just wait.
            Err(_) => {
                tokio::time::sleep(wait).await;
                false
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_that_lies_or_is_too_large_is_malformed_before_it_is_decompressed() {
        // A snappy header declaring 4 GiB: refused on the header alone.
        assert_eq!(decode_record(b"\xff\xff\xff\xff\x0f"), None);
        assert_eq!(decode_record(&vec![0u8; MAX_RECORD_BYTES + 1]), None);
        let empty = snap::raw::Encoder::new().compress_vec(b"").expect("snappy");
        assert_eq!(decode_record(&empty), Some((Vec::new(), None)));
    }
}
