//! The `remote_write` sink: metrics straight to a Prometheus-compatible endpoint (a
//! stock Prometheus, Mimir, or Amazon Managed Prometheus with SigV4), for regions or
//! test rigs without Kinesis.
//!
//! - **Requests**: a commit's records (one uncompressed `WriteRequest` per host) are
//!   concatenated into one request, which stays a valid `WriteRequest`, and
//!   snappy-compressed; a commit over [`MAX_REQUEST_BYTES`] is split on record
//!   boundaries. Commits are not coalesced with each other: an endpoint's 400 then
//!   belongs to exactly one client request.
//! - **Answers**: 2xx commits. 429, 5xx and transport errors are retried with backoff
//!   (at least the endpoint's `Retry-After`) up to [`COMMIT_DEADLINE`], then the commit
//!   fails (503 upstream; the agent keeps the batch and retries). Another 4xx (an
//!   out-of-order sample, a limit of the store) refuses the commit: the agent would
//!   only send the same bytes again.
//! - **Budget**: bytes of commits in flight are bounded; past the budget a commit is
//!   answered `Busy` at once (503 + `Retry-After` upstream).

pub mod forward;

use bytes::Bytes;

use super::retry::{COMMIT_DEADLINE, Retry};
use super::{BoxFuture, Record, Sink, SinkError};
use crate::config::Target;
use crate::sink::remote_write::forward::{Forwarder, Outcome};

/// Uncompressed bytes per request at most (a commit above is split).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The sink.
#[derive(Debug)]
pub struct RemoteWriteSink {
    forwarder: Forwarder,
    /// Records and bytes in flight.
    in_flight: crate::sink::InFlight,
}

impl RemoteWriteSink {
    /// A sink writing to `target`.
    pub async fn new(target: &Target, max_in_flight_bytes: u64) -> anyhow::Result<RemoteWriteSink> {
        Ok(RemoteWriteSink {
            forwarder: Forwarder::new(target).await?,
            in_flight: crate::sink::InFlight::new(max_in_flight_bytes),
        })
    }

    async fn commit_all(&self, records: Vec<Record>) -> Result<(), SinkError> {
        let mut retries = Retry::commit();
        for body in requests(&records) {
            self.send(body, &mut retries).await?;
        }
        Ok(())
    }

    async fn send(&self, body: Bytes, retries: &mut Retry) -> Result<(), SinkError> {
        loop {
            let (after, reason) = match self.forwarder.send(body.clone()).await {
                Outcome::Accepted => {
                    retries.succeeded();
                    return Ok(());
                }
                Outcome::Rejected { reason, .. } => return Err(SinkError::Refused(reason)),
                Outcome::Retry { after, reason } => (after, reason),
            };
            let Some(wait) = retries.failed(after) else {
                return Err(SinkError::Failed(format!(
                    "remote_write not accepted within {COMMIT_DEADLINE:?}: {reason}"
                )));
            };
            tracing::debug!(%reason, ?wait, "remote_write: retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The snappy bodies of `records`: concatenated up to [`MAX_REQUEST_BYTES`] each.
fn requests(records: &[Record]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut encoder = snap::raw::Encoder::new();
    let mut flush = |buf: &mut Vec<u8>| {
        if !buf.is_empty() {
            // Compressing a buffer we built cannot fail but for its size, which is
            // bounded far below snappy's 4 GiB limit.
            if let Ok(compressed) = encoder.compress_vec(buf) {
                out.push(Bytes::from(compressed));
            }
            buf.clear();
        }
    };
    for record in records {
        if !buf.is_empty() && buf.len() + record.data.len() > MAX_REQUEST_BYTES {
            flush(&mut buf);
        }
        buf.extend_from_slice(&record.data);
    }
    flush(&mut buf);
    out
}

impl Sink for RemoteWriteSink {
    fn commit(&self, records: Vec<Record>) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(
            self.in_flight
                .run(records, |records| self.commit_all(records)),
        )
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.forwarder.probe())
    }

    fn backlog(&self) -> (u64, u64) {
        self.in_flight.backlog()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_concatenated_and_split_on_record_boundaries() {
        let record = |n: usize, byte: u8| Record {
            key: "t/h".into(),
            data: vec![byte; n],
        };
        let records = vec![
            record(3 << 20, 1),
            record(1 << 20, 2),
            record(10, 3),
            record(5 << 20, 4),
        ];
        let bodies: Vec<Vec<u8>> = requests(&records)
            .iter()
            .map(|b| snap::raw::Decoder::new().decompress_vec(b).expect("snappy"))
            .collect();
        let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
        // 3 MiB + 1 MiB fits in 4 MiB; the 10 bytes do not; a record over the limit
        // goes alone rather than being cut.
        assert_eq!(sizes, vec![4 << 20, 10, 5 << 20]);
        assert_eq!(
            bodies.concat(),
            records
                .iter()
                .flat_map(|r| r.data.clone())
                .collect::<Vec<_>>()
        );
    }
}
