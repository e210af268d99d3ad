//! The `kinesis` sink: metrics to Amazon Kinesis Data Streams, in the design's record
//! format.
//!
//! - **Record**: the snappy-compressed (block format) remote_write `WriteRequest`,
//!   ≤ 1 MiB, partition key `tenant/host`. Records of one key in one flush are bundled:
//!   their uncompressed requests are concatenated (repeated fields concatenate into one
//!   valid message) and compressed once, while the result stays under 1 MiB.
//! - **Calls**: concurrent commits are coalesced by one task that flushes every few
//!   milliseconds or when a `PutRecords` is full (500 records, 5 MiB).
//! - **Order**: a call carries at most one record per key; a key's next record waits
//!   for the previous one's success, so a retried record never lands after a later one.
//! - **Partial failures** (`FailedRecordCount`, throttling, internal errors) are retried
//!   for just the failed records, with exponential backoff and full jitter, up to
//!   [`COMMIT_DEADLINE`]; then the commits they belong to fail (503 upstream, and the
//!   agent retries).
//! - **Budget**: commits waiting hold bytes of a fixed budget; when it is spent,
//!   `commit` answers `Busy` at once (503 + `Retry-After` upstream) instead of queueing
//!   without bound.

use std::collections::VecDeque;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

mod record;

use super::coalesce::Coalescer;
use super::retry::{COMMIT_DEADLINE, Retry};
use super::{BoxFuture, Record, Sink, SinkError};
use record::{Outgoing, bundle};

/// Kinesis's limit on one record's data plus key.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Records per `PutRecords`.
pub const MAX_CALL_RECORDS: usize = 500;
/// Bytes per `PutRecords`.
pub const MAX_CALL_BYTES: usize = 5 << 20;
/// How long commits are gathered before a call.
pub const LINGER: Duration = Duration::from_millis(5);

/// Where and how much.
#[derive(Clone, Debug)]
pub struct KinesisConfig {
    /// Stream name.
    pub stream: String,
    /// AWS region.
    pub region: String,
    /// A local AWS API server, for tests.
    pub endpoint_url: Option<String>,
    /// Bytes of commits that may wait at once.
    pub max_in_flight_bytes: u64,
}

/// The sink.
#[derive(Debug)]
pub struct KinesisSink {
    client: Client,
    stream: String,
    coalescer: Coalescer,
}

impl KinesisSink {
    /// A sink writing to `config.stream`; the flushing task runs on the current
    /// runtime.
    pub async fn new(config: KinesisConfig) -> KinesisSink {
        let sdk = crate::aws::sdk_config(&config.region, config.endpoint_url.as_deref()).await;
        let client = Client::new(&sdk);
        let (c, stream) = (client.clone(), config.stream.clone());
        let coalescer = Coalescer::start(
            "Kinesis",
            LINGER,
            MAX_CALL_BYTES as u64,
            config.max_in_flight_bytes,
            move |commits| {
                let (client, stream) = (c.clone(), stream.clone());
                async move { flush(&client, &stream, commits).await }
            },
        );
        KinesisSink {
            client,
            stream: config.stream,
            coalescer,
        }
    }
}

impl Sink for KinesisSink {
    fn commit(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.coalescer.commit(records))
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            self.client
                .describe_stream_summary()
                .stream_name(&self.stream)
                .send()
                .await
                .is_ok()
        })
    }

    fn backlog(&self) -> (u64, u64) {
        self.coalescer.backlog()
    }
}

/// Bundles and sends the commits gathered; answers each.
async fn flush(
    client: &Client,
    stream: &str,
    commits: Vec<Vec<Record>>,
) -> Vec<Result<(), SinkError>> {
    let mut failed: Vec<Option<SinkError>> = (0..commits.len()).map(|_| None).collect();
    let outgoing = bundle(&commits, &mut failed);
    put_all(client, stream, outgoing, &mut failed).await;
    failed.into_iter().map(|f| f.map_or(Ok(()), Err)).collect()
}

/// Sends every outgoing record, retrying failures, at most one record per key per call.
async fn put_all(
    client: &Client,
    stream: &str,
    mut queue: VecDeque<Outgoing>,
    failed: &mut [Option<SinkError>],
) {
    let mut retries = Retry::commit();
    while !queue.is_empty() {
        // One call: the first record of each key, within the call's limits.
        let mut call: Vec<Outgoing> = Vec::new();
        let mut call_bytes = 0usize;
        let mut rest = VecDeque::new();
        while let Some(o) = queue.pop_front() {
            let size = o.data.len() + o.key.len();
            let key_taken = call.iter().any(|c| c.key == o.key)
                || rest.iter().any(|r: &Outgoing| r.key == o.key);
            if key_taken || call.len() >= MAX_CALL_RECORDS || call_bytes + size > MAX_CALL_BYTES {
                rest.push_back(o);
            } else {
                call_bytes += size;
                call.push(o);
            }
        }
        queue = rest;
        let entries: Vec<PutRecordsRequestEntry> = call
            .iter()
            .filter_map(|o| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(o.data.clone()))
                    .partition_key(&o.key)
                    .build()
                    .ok()
            })
            .collect();
        let result = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await;
        let mut retry: Vec<Outgoing> = Vec::new();
        match result {
            Ok(out) => {
                let results = out.records();
                for (i, o) in call.into_iter().enumerate() {
                    match results.get(i) {
                        Some(r) if r.error_code().is_none() => {}
                        Some(r) => {
                            tracing::debug!(code = ?r.error_code(), message = ?r.error_message(), "Kinesis record failed; retrying it");
                            retry.push(o);
                        }
                        None => retry.push(o),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_kinesis::error::DisplayErrorContext(&e), "PutRecords failed; retrying");
                retry = call;
            }
        }
        if retry.is_empty() {
            retries.succeeded();
            continue;
        }
        let Some(wait) = retries.failed(None) else {
            for o in retry.iter().chain(queue.iter()) {
                for owner in &o.owners {
                    failed[*owner] = Some(SinkError::Failed(format!(
                        "Kinesis did not accept the records within {COMMIT_DEADLINE:?}"
                    )));
                }
            }
            return;
        };
        tokio::time::sleep(wait).await;
        // Retried records go first, ahead of later records of their keys.
        for o in retry.into_iter().rev() {
            queue.push_front(o);
        }
    }
}
