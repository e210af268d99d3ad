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

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::coalesce::Coalescer;
use super::retry::{COMMIT_DEADLINE, Retry};
use super::{BoxFuture, Record, Sink, SinkError};

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

/// An AWS SDK config from the default chain (environment, profile, instance role),
/// with `region` and an optional endpoint.
pub async fn aws_config(region: &str, endpoint_url: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

impl KinesisSink {
    /// A sink writing to `config.stream`; the flushing task runs on the current
    /// runtime.
    pub async fn new(config: KinesisConfig) -> KinesisSink {
        let sdk = aws_config(&config.region, config.endpoint_url.as_deref()).await;
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

/// One Kinesis record and the commits (indexes into the flush) it carries.
struct Outgoing {
    key: String,
    data: Vec<u8>,
    owners: Vec<usize>,
}

fn too_big(key: &str) -> SinkError {
    SinkError::Refused(format!(
        "a request for {key} compresses to more than a Kinesis record holds (1 MiB)"
    ))
}

/// Bundles the records of each key, in order, into compressed Kinesis records ≤ 1 MiB.
/// A request that alone compresses past the limit fails its commit.
fn bundle(commits: &[Vec<Record>], failed: &mut [Option<SinkError>]) -> VecDeque<Outgoing> {
    let mut order: Vec<String> = Vec::new();
    let mut by_key: HashMap<String, Vec<(usize, &[u8])>> = HashMap::new();
    for (i, records) in commits.iter().enumerate() {
        for r in records {
            by_key
                .entry(r.key.clone())
                .or_insert_with(|| {
                    order.push(r.key.clone());
                    Vec::new()
                })
                .push((i, r.data.as_slice()));
        }
    }
    let mut out = VecDeque::new();
    let mut encoder = snap::raw::Encoder::new();
    for key in order {
        let limit = MAX_RECORD_BYTES.saturating_sub(key.len());
        let mut raw: Vec<u8> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        let mut compressed: Option<Vec<u8>> = None;
        for (owner, data) in by_key.remove(&key).unwrap_or_default() {
            let mut candidate = raw.clone();
            candidate.extend_from_slice(data);
            // Cheap bound first; compress only when it might not fit.
            let fits = if snap::raw::max_compress_len(candidate.len()) <= limit {
                None
            } else {
                match encoder.compress_vec(&candidate) {
                    Ok(c) if c.len() <= limit => Some(c),
                    _ => {
                        if raw.is_empty() {
                            failed[owner] = Some(too_big(&key));
                            continue;
                        }
                        // Flush what fits, start over with this one.
                        let done = compressed
                            .take()
                            .or_else(|| encoder.compress_vec(&raw).ok())
                            .unwrap_or_default();
                        out.push_back(Outgoing {
                            key: key.clone(),
                            data: done,
                            owners: std::mem::take(&mut owners),
                        });
                        raw.clear();
                        let alone = data.to_vec();
                        match encoder.compress_vec(&alone) {
                            Ok(c) if c.len() <= limit => {
                                raw = alone;
                                owners.push(owner);
                                compressed = Some(c);
                            }
                            _ => {
                                failed[owner] = Some(too_big(&key));
                            }
                        }
                        continue;
                    }
                }
            };
            raw = candidate;
            compressed = fits;
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        if !raw.is_empty() {
            let data = compressed
                .or_else(|| encoder.compress_vec(&raw).ok())
                .unwrap_or_default();
            out.push_back(Outgoing { key, data, owners });
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(records: Vec<(&str, Vec<u8>)>) -> Vec<Record> {
        records
            .into_iter()
            .map(|(k, d)| Record {
                key: k.into(),
                data: d,
            })
            .collect()
    }

    #[test]
    fn bundles_per_key_in_order_under_a_megabyte() {
        let flush = vec![
            commit(vec![("game/a", vec![1; 1000])]),
            commit(vec![("game/b", vec![2; 1000])]),
            commit(vec![("game/a", vec![3; 1000])]),
        ];
        let mut failed: Vec<Option<SinkError>> = (0..3).map(|_| None).collect();
        let out = bundle(&flush, &mut failed);
        assert_eq!(out.len(), 2, "one record per key");
        assert_eq!(out[0].key, "game/a");
        assert_eq!(out[0].owners, [0, 2]);
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&out[0].data)
            .expect("snappy");
        assert_eq!(raw.len(), 2000);
        assert_eq!(raw[0], 1);
        assert_eq!(raw[1999], 3, "in order");
        assert!(failed.iter().all(Option::is_none));
    }

    #[test]
    fn incompressible_data_splits_and_a_huge_request_fails_alone() {
        let noise = |n: usize, seed: u64| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..n).map(|_| rng.u8(..)).collect::<Vec<u8>>()
        };
        let flush = vec![
            commit(vec![("k", noise(700_000, 1))]),
            commit(vec![("k", noise(700_000, 2))]),
            commit(vec![("k", noise(1_200_000, 3))]),
        ];
        let mut failed: Vec<Option<SinkError>> = (0..3).map(|_| None).collect();
        let out = bundle(&flush, &mut failed);
        assert_eq!(out.len(), 2, "two 700 KB requests do not fit one record");
        assert!(
            out.iter()
                .all(|o| o.data.len() + o.key.len() <= MAX_RECORD_BYTES)
        );
        assert!(failed[2].is_some(), "1.2 MB of noise can never fit");
        assert!(failed[0].is_none() && failed[1].is_none());
    }
}
