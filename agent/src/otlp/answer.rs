//! What the receivers answer, for both transports: the outcome of one export
//! ([`Outcome`]), and the `google.rpc` messages the OTLP specification puts in error
//! answers (HTTP bodies, gRPC `grpc-status-details-bin`).

use std::time::Duration;

/// How an export ended, before it is put in a transport's words.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<R> {
    /// Taken (items refused by policy are named in the response's `partial_success`).
    Taken {
        /// The `Export*ServiceResponse`.
        response: R,
        /// Whether some items were refused.
        partial: bool,
    },
    /// The body does not decode, or is not a valid export (400 / `InvalidArgument`).
    BadRequest(String),
    /// Over the size limit (413 / `ResourceExhausted`).
    TooLarge(String),
    /// The agent is shedding this signal; retry after the delay (503 / `Unavailable`).
    Unavailable {
        /// Why.
        message: String,
        /// When to retry.
        retry_after: Duration,
    },
}

impl<R> Outcome<R> {
    /// The `result` label of `edge_otlp_requests_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Taken { partial: false, .. } => "ok",
            Outcome::Taken { partial: true, .. } => "partial",
            Outcome::BadRequest(_) => "bad_request",
            Outcome::TooLarge(_) => "too_large",
            Outcome::Unavailable { .. } => "unavailable",
        }
    }
}

/// `google.rpc.Code` values used here.
pub mod code {
    /// `INVALID_ARGUMENT`
    pub const INVALID_ARGUMENT: i32 = 3;
    /// `RESOURCE_EXHAUSTED`
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// `UNIMPLEMENTED`
    pub const UNIMPLEMENTED: i32 = 12;
    /// `UNAVAILABLE`
    pub const UNAVAILABLE: i32 = 14;
}

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// For the developer.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Details, such as [`RetryInfo`].
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    /// `type.googleapis.com/<full name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RetryInfo {
    /// When to retry.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds past them.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// A status without details.
pub fn status(code: i32, message: &str) -> RpcStatus {
    RpcStatus {
        code,
        message: message.to_string(),
        details: Vec::new(),
    }
}

/// `UNAVAILABLE` with a `RetryInfo` saying when to retry.
pub fn unavailable(message: &str, retry_after: Duration) -> RpcStatus {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(retry_after.as_secs()).unwrap_or(i64::MAX),
            nanos: retry_after.subsec_nanos() as i32,
        }),
    };
    RpcStatus {
        code: code::UNAVAILABLE,
        message: message.to_string(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: prost::Message::encode_to_vec(&info),
        }],
    }
}

/// A status as OTLP/HTTP's JSON encoding of it (details left out but for the retry
/// delay, written as a `RetryInfo` the way the JSON mapping spells it).
pub fn status_json(s: &RpcStatus) -> serde_json::Value {
    let mut out = serde_json::json!({ "code": s.code, "message": s.message });
    let details: Vec<serde_json::Value> = s
        .details
        .iter()
        .filter_map(|d| {
            let info: RetryInfo = prost::Message::decode(d.value.as_slice()).ok()?;
            let delay = info.retry_delay?;
            Some(serde_json::json!({
                "@type": d.type_url,
                "retryDelay": format!("{}s", delay.seconds),
            }))
        })
        .collect();
    if !details.is_empty() {
        out["details"] = serde_json::Value::Array(details);
    }
    out
}
