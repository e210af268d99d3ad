//! The `firehose` sink: log documents to Amazon Data Firehose as NDJSON.
//!
//! Documents are packed, in order, one per line, into records of at most 1,000 KiB
//! (Firehose's record limit); up to 500 records / 4 MiB go in one `PutRecordBatch`.
//! Commits from concurrent requests are coalesced (see `coalesce`). Records that fail
//! (`FailedPutCount`) are retried alone with jittered backoff for up to
//! [`COMMIT_DEADLINE`]; a document that alone exceeds a record fails its commit (400).

use std::collections::VecDeque;
use std::time::Duration;

use aws_sdk_firehose::Client;
use aws_sdk_firehose::primitives::Blob;

use super::coalesce::Coalescer;
use super::retry::{COMMIT_DEADLINE, Retry};
use super::{BoxFuture, Record, Sink, SinkError};

/// Firehose's limit on one record.
pub const MAX_RECORD_BYTES: usize = 1000 << 10;
/// Records per `PutRecordBatch`.
pub const MAX_CALL_RECORDS: usize = 500;
/// Bytes per `PutRecordBatch`.
pub const MAX_CALL_BYTES: usize = 4 << 20;
/// How long commits are gathered before a call.
pub const LINGER: Duration = Duration::from_millis(5);

/// Where and how much.
#[derive(Clone, Debug)]
pub struct FirehoseConfig {
    /// Delivery stream name.
    pub delivery_stream: String,
    /// AWS region.
    pub region: String,
    /// A local AWS API server, for tests.
    pub endpoint_url: Option<String>,
    /// Bytes of commits that may wait at once.
    pub max_in_flight_bytes: u64,
}

/// The sink.
#[derive(Debug)]
pub struct FirehoseSink {
    client: Client,
    stream: String,
    coalescer: Coalescer,
}

impl FirehoseSink {
    /// A sink writing to `config.delivery_stream`, flushing on the current runtime.
    pub async fn new(config: FirehoseConfig) -> FirehoseSink {
        let sdk = crate::aws::sdk_config(&config.region, config.endpoint_url.as_deref()).await;
        let client = Client::new(&sdk);
        let (c, stream) = (client.clone(), config.delivery_stream.clone());
        let coalescer = Coalescer::start(
            "Firehose",
            LINGER,
            MAX_CALL_BYTES as u64,
            config.max_in_flight_bytes,
            move |commits| {
                let (client, stream) = (c.clone(), stream.clone());
                async move { flush(&client, &stream, commits).await }
            },
        );
        FirehoseSink {
            client,
            stream: config.delivery_stream,
            coalescer,
        }
    }
}

impl Sink for FirehoseSink {
    fn commit(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(self.coalescer.commit(records))
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            self.client
                .describe_delivery_stream()
                .delivery_stream_name(&self.stream)
                .send()
                .await
                .is_ok()
        })
    }

    fn backlog(&self) -> (u64, u64) {
        self.coalescer.backlog()
    }
}

/// One Firehose record: NDJSON lines, and the commits they belong to.
struct Outgoing {
    data: Vec<u8>,
    owners: Vec<usize>,
}

/// Packs every commit's documents, in order, into records under the limit.
fn pack(commits: &[Vec<Record>], failed: &mut [Option<SinkError>]) -> VecDeque<Outgoing> {
    let mut out = VecDeque::new();
    let mut current = Outgoing {
        data: Vec::new(),
        owners: Vec::new(),
    };
    for (owner, docs) in commits.iter().enumerate() {
        if let Some(big) = docs.iter().find(|d| d.data.len() + 1 > MAX_RECORD_BYTES) {
            failed[owner] = Some(SinkError::Refused(format!(
                "a log document of {} bytes is over Firehose's record limit of 1000 KiB",
                big.data.len()
            )));
            continue;
        }
        for doc in docs {
            if current.data.len() + doc.data.len() + 1 > MAX_RECORD_BYTES {
                out.push_back(std::mem::replace(
                    &mut current,
                    Outgoing {
                        data: Vec::new(),
                        owners: Vec::new(),
                    },
                ));
            }
            current.data.extend_from_slice(&doc.data);
            current.data.push(b'\n');
            if current.owners.last() != Some(&owner) {
                current.owners.push(owner);
            }
        }
    }
    if !current.data.is_empty() {
        out.push_back(current);
    }
    out
}

async fn flush(
    client: &Client,
    stream: &str,
    commits: Vec<Vec<Record>>,
) -> Vec<Result<(), SinkError>> {
    let mut failed: Vec<Option<SinkError>> = (0..commits.len()).map(|_| None).collect();
    let mut queue = pack(&commits, &mut failed);
    let mut retries = Retry::commit();
    while !queue.is_empty() {
        let mut call: Vec<Outgoing> = Vec::new();
        let mut bytes = 0usize;
        while let Some(o) = queue.front() {
            if call.len() >= MAX_CALL_RECORDS
                || (bytes + o.data.len() > MAX_CALL_BYTES && !call.is_empty())
            {
                break;
            }
            bytes += o.data.len();
            if let Some(o) = queue.pop_front() {
                call.push(o);
            }
        }
        let records: Vec<aws_sdk_firehose::types::Record> = call
            .iter()
            .filter_map(|o| {
                aws_sdk_firehose::types::Record::builder()
                    .data(Blob::new(o.data.clone()))
                    .build()
                    .ok()
            })
            .collect();
        let result = client
            .put_record_batch()
            .delivery_stream_name(stream)
            .set_records(Some(records))
            .send()
            .await;
        let mut retry = Vec::new();
        match result {
            Ok(out) => {
                let answers = out.request_responses();
                for (i, o) in call.into_iter().enumerate() {
                    match answers.get(i) {
                        Some(a) if a.error_code().is_none() => {}
                        _ => retry.push(o),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_firehose::error::DisplayErrorContext(&e), "PutRecordBatch failed; retrying");
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
                        "Firehose did not accept the records within {COMMIT_DEADLINE:?}"
                    )));
                }
            }
            break;
        };
        tokio::time::sleep(wait).await;
        for o in retry.into_iter().rev() {
            queue.push_front(o);
        }
    }
    failed.into_iter().map(|f| f.map_or(Ok(()), Err)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: usize, c: u8) -> Record {
        Record {
            key: "t".into(),
            data: vec![c; n],
        }
    }

    #[test]
    fn packs_ndjson_under_the_record_limit_and_refuses_a_giant() {
        let commits = vec![
            vec![doc(600 << 10, b'a'), doc(600 << 10, b'b')],
            vec![doc(1001 << 10, b'c')],
            vec![doc(10, b'd')],
        ];
        let mut failed: Vec<Option<SinkError>> = (0..3).map(|_| None).collect();
        let out = pack(&commits, &mut failed);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o.data.len() <= MAX_RECORD_BYTES));
        assert_eq!(out[0].data.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(out[1].owners, [0, 2]);
        assert!(matches!(failed[1], Some(SinkError::Refused(_))));
        assert!(failed[0].is_none() && failed[2].is_none());
    }
}
