//! The `otlp` traces sink: each request POSTed as OTLP/HTTP protobuf to the configured
//! endpoint (AWS X-Ray's `https://xray.<region>.amazonaws.com/v1/traces` with SigV4,
//! service `xray`, or any OTLP collector).
//!
//! Answers as for the `remote_write` sink ([`Forwarder`]): 2xx commits; 429, 5xx and
//! transport errors are retried with backoff (at least the endpoint's `Retry-After`) up
//! to [`COMMIT_DEADLINE`], then the commit fails (503 upstream, the agent retries);
//! another 4xx refuses the commit (400 upstream). Bytes in flight are bounded; past the
//! bound a commit is answered `Busy`.

use bytes::Bytes;

use crate::config::Target;
use crate::sink::remote_write::forward::{Forwarder, Outcome};
use crate::sink::retry::{COMMIT_DEADLINE, Retry};
use crate::sink::{BoxFuture, Record, Sink, SinkError};

/// The OTLP/HTTP protobuf request headers. The body goes uncompressed: SigV4 signs the
/// bytes sent, and X-Ray's endpoint is reached over a fast AWS network.
fn otlp_headers() -> Vec<(http::HeaderName, http::HeaderValue)> {
    vec![(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-protobuf"),
    )]
}

/// The sink.
#[derive(Debug)]
pub struct OtlpSink {
    forwarder: Forwarder,
    in_flight: crate::sink::InFlight,
}

impl OtlpSink {
    /// A sink posting to `target`.
    pub async fn new(target: &Target, max_in_flight_bytes: u64) -> anyhow::Result<OtlpSink> {
        Ok(OtlpSink {
            forwarder: Forwarder::with_headers(target, otlp_headers()).await?,
            in_flight: crate::sink::InFlight::new(max_in_flight_bytes),
        })
    }

    async fn commit_all(&self, records: Vec<Record>) -> Result<(), SinkError> {
        let mut retries = Retry::commit();
        for record in records {
            let body = Bytes::from(record.data);
            loop {
                let (after, reason) = match self.forwarder.send(body.clone()).await {
                    Outcome::Accepted => {
                        retries.succeeded();
                        break;
                    }
                    Outcome::Rejected { reason, .. } => return Err(SinkError::Refused(reason)),
                    Outcome::Retry { after, reason } => (after, reason),
                };
                let Some(wait) = retries.failed(after) else {
                    return Err(SinkError::Failed(format!(
                        "OTLP endpoint did not accept the spans within {COMMIT_DEADLINE:?}: {reason}"
                    )));
                };
                tracing::debug!(%reason, ?wait, "traces otlp: retrying");
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }
}

impl Sink for OtlpSink {
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
