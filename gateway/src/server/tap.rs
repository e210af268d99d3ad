//! `GET /tap?tenant=T[&signal=metrics|logs|traces][&limit=N]` on the admin port: a live
//! view of one tenant's records as they are committed, after the policy and tokenization,
//! streamed as NDJSON (the shapes of [`crate::ndjson`]; each line also names its
//! `signal` and `tenant`). `edge-gateway tap` is its client.
//!
//! A tap never holds up ingest. The commit path checks one atomic (no tap open: nothing
//! else happens), copies a committed request's bytes only when a tap of that tenant and
//! signal is open, and hands them over with `try_send` once the sink has committed them.
//! Each tap has a bounded queue ([`TAP_QUEUE_ITEMS`] requests, [`TAP_QUEUE_BYTES`]
//! bytes); what does not fit is dropped for that tap alone and counted in
//! `edge_gateway_tap_dropped_total{signal}` (records: series, log documents, spans).
//! Rendering to JSON happens on the blocking pool, one request at a time as the reader
//! takes lines, never on the commit path nor on a runtime worker.
//! At most [`MAX_TAPS`] taps are open at once; one more is answered 429.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Frame};
use tokio::sync::mpsc;

use super::Gateway;
use crate::ndjson::{self, Line};
use crate::telemetry::{GATEWAY_TAP_DROPPED_TOTAL, labels};

/// Taps open at once; one more is answered 429. Each costs a copy of its tenant's
/// committed bytes, so a handful of SREs watching is the use, not a fleet of consumers.
pub const MAX_TAPS: usize = 4;

/// `Retry-After` (seconds) of the 429 past [`MAX_TAPS`]: a person retrying a tool, not a
/// fleet, so no jitter.
pub const TAP_RETRY_AFTER: &str = "10";

/// Committed requests waiting in one tap's queue for its reader; more are dropped.
pub const TAP_QUEUE_ITEMS: usize = 64;

/// Bytes waiting in one tap's queue; a request that would pass this is dropped (a few
/// large remote_write requests must not pin hundreds of megabytes for a slow reader).
/// One larger request is taken into an empty queue, so a tap can show it at all.
pub const TAP_QUEUE_BYTES: usize = 8 << 20;

/// What a tap shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Series committed to the metrics sink.
    Metrics,
    /// Log documents committed to the logs sink.
    Logs,
    /// Spans committed to the traces sink.
    Traces,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }

    fn parse(s: &str) -> Option<Signal> {
        match s {
            "metrics" => Some(Signal::Metrics),
            "logs" => Some(Signal::Logs),
            "traces" => Some(Signal::Traces),
            _ => None,
        }
    }
}

/// One request's committed records, as the sink got them.
#[derive(Debug)]
pub struct Item {
    signal: Signal,
    tenant: String,
    /// Metrics: the `WriteRequest`; traces: the `ExportTraceServiceRequest`; logs: one
    /// document each.
    data: Vec<Vec<u8>>,
    /// Series, documents or spans.
    records: u64,
    bytes: usize,
}

impl Item {
    /// The NDJSON lines, at most `max`.
    fn lines(&self, max: u64) -> Vec<String> {
        let head = || Line::new("signal", self.signal.name()).with("tenant", self.tenant.as_str());
        let mut out = Vec::new();
        for data in &self.data {
            let rendered: Result<Vec<String>, ndjson::RenderError> = match self.signal {
                Signal::Metrics => ndjson::metrics_record(data).map(|series| {
                    series
                        .into_iter()
                        .map(|fields| head().with_all(fields).end())
                        .collect()
                }),
                Signal::Logs => ndjson::log_document(data)
                    .map(|doc| vec![head().with_raw("document", &doc).end()]),
                Signal::Traces => ndjson::traces_record(data, &self.tenant).map(|spans| {
                    spans
                        .into_iter()
                        .map(|span| head().with("span", span).end())
                        .collect()
                }),
            };
            match rendered {
                Ok(lines) => out.extend(lines),
                // Bytes the gateway committed itself: this is a bug, said on the tap too.
                Err(e) => out.push(head().with("error", e.to_string()).end()),
            }
            if out.len() as u64 >= max {
                out.truncate(max as usize);
                break;
            }
        }
        out
    }
}

/// A committed request held for the taps, or nothing (no tap wants it).
pub type Tapped = Option<Arc<Item>>;

#[derive(Debug)]
struct Subscriber {
    tenant: String,
    signal: Option<Signal>,
    queue: mpsc::Sender<Arc<Item>>,
    /// Bytes in `queue`, shared with the tap's renderer.
    queued_bytes: Arc<AtomicUsize>,
}

impl Subscriber {
    fn wants(&self, tenant: &str, signal: Signal) -> bool {
        self.tenant == tenant && self.signal.is_none_or(|s| s == signal)
    }
}

/// The open taps.
#[derive(Debug, Default)]
pub struct Taps {
    /// Taps open (the commit path's only cost when it is 0).
    open: AtomicUsize,
    subscribers: Mutex<Vec<Arc<Subscriber>>>,
}

impl Taps {
    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Subscriber>>> {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wanted(&self, tenant: &str, signal: Signal) -> bool {
        self.open.load(Ordering::Relaxed) > 0
            && self.subscribers().iter().any(|s| s.wants(tenant, signal))
    }

    fn hold(&self, tenant: &str, signal: Signal, records: u64, data: Vec<Vec<u8>>) -> Tapped {
        let bytes = data.iter().map(Vec::len).sum();
        Some(Arc::new(Item {
            signal,
            tenant: tenant.to_string(),
            data,
            records,
            bytes,
        }))
    }

    /// Before a metrics commit: a copy of `data` (`series` series) if a tap wants it.
    pub fn metrics(&self, tenant: &str, data: &[u8], series: usize) -> Tapped {
        if !self.wanted(tenant, Signal::Metrics) {
            return None;
        }
        self.hold(tenant, Signal::Metrics, series as u64, vec![data.to_vec()])
    }

    /// Before a logs commit: a copy of the documents if a tap wants them.
    pub fn logs(&self, tenant: &str, docs: &[Vec<u8>]) -> Tapped {
        if !self.wanted(tenant, Signal::Logs) {
            return None;
        }
        self.hold(tenant, Signal::Logs, docs.len() as u64, docs.to_vec())
    }

    /// Before a traces commit: a copy of the request (`spans` spans) if a tap wants it.
    pub fn traces(&self, tenant: &str, request: &[u8], spans: u64) -> Tapped {
        if !self.wanted(tenant, Signal::Traces) {
            return None;
        }
        self.hold(tenant, Signal::Traces, spans, vec![request.to_vec()])
    }

    /// After the commit: hands the records to every tap that wants them without waiting;
    /// a full tap drops them, counted.
    pub fn publish(&self, tapped: Tapped, telemetry: &crate::telemetry::Telemetry) {
        let Some(item) = tapped else {
            return;
        };
        let mut dropped = 0u64;
        for sub in self.subscribers().iter() {
            if !sub.wants(&item.tenant, item.signal) {
                continue;
            }
            let queued = sub.queued_bytes.load(Ordering::Relaxed);
            if queued + item.bytes > TAP_QUEUE_BYTES && queued > 0 {
                dropped += item.records;
                continue;
            }
            match sub.queue.try_send(item.clone()) {
                Ok(()) => {
                    sub.queued_bytes.fetch_add(item.bytes, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => dropped += item.records,
                // The reader is gone; its tap is being closed.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        if dropped > 0 {
            telemetry.add(
                &GATEWAY_TAP_DROPPED_TOTAL,
                labels(&[("signal", item.signal.name())]),
                dropped as f64,
            );
        }
    }

    fn close(&self, sub: &Arc<Subscriber>) {
        self.subscribers().retain(|s| !Arc::ptr_eq(s, sub));
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the admin port answers: a whole body, or a tap's stream.
pub type AdminBody = Either<Full<Bytes>, TapBody>;

/// A tap's stream: lines as its reader takes them, until `limit` records or the reader
/// leaves (then the tap is closed).
#[derive(Debug)]
pub struct TapBody {
    gw: Arc<Gateway>,
    sub: Arc<Subscriber>,
    /// Rendered lines, from [`render`].
    lines: mpsc::Receiver<Bytes>,
}

impl Drop for TapBody {
    fn drop(&mut self) {
        self.gw.taps.close(&self.sub);
        tracing::info!(tenant = %self.sub.tenant, "tap closed");
    }
}

/// Turns a tap's queued requests into NDJSON on the blocking pool (a large remote_write
/// request takes milliseconds to render: never on a runtime worker that serves ingest),
/// one request at a time as the reader takes the lines, until `limit` records. Ends
/// when the tap closes (its queue's sender is gone) or its reader is gone.
async fn render(
    mut queue: mpsc::Receiver<Arc<Item>>,
    queued_bytes: Arc<AtomicUsize>,
    out: mpsc::Sender<Bytes>,
    limit: u64,
) {
    let mut left = limit;
    while left > 0 {
        let Some(item) = queue.recv().await else {
            return;
        };
        queued_bytes.fetch_sub(item.bytes, Ordering::Relaxed);
        let Ok(lines) = tokio::task::spawn_blocking(move || item.lines(left)).await else {
            return;
        };
        if lines.is_empty() {
            continue;
        }
        left -= lines.len() as u64;
        if out.send(Bytes::from(lines.concat())).await.is_err() {
            return;
        }
    }
}

impl hyper::body::Body for TapBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.lines
            .poll_recv(cx)
            .map(|lines| lines.map(|l| Ok(Frame::data(l))))
    }
}

fn answer(status: http::StatusCode, body: String) -> http::Response<AdminBody> {
    let mut r = http::Response::new(Either::Left(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r
}

/// `%XX` and `+` decoded.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a tap asks for.
#[derive(Debug, PartialEq)]
struct Ask {
    tenant: String,
    signal: Option<Signal>,
    limit: Option<u64>,
}

fn parse_query(query: Option<&str>) -> Result<Ask, String> {
    let (mut tenant, mut signal, mut limit) = (None, None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = unescape(v);
        match unescape(k).as_str() {
            "tenant" if !v.is_empty() => tenant = Some(v),
            "tenant" => return Err("tenant= is empty; name a tenant".into()),
            "signal" => {
                signal = Some(
                    Signal::parse(&v)
                        .ok_or_else(|| format!("signal={v}: not metrics, logs or traces"))?,
                )
            }
            "limit" => {
                limit = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("limit={v}: not a count of records"))?,
                )
            }
            other => {
                return Err(format!(
                    "unknown parameter {other:?}: /tap takes tenant, signal and limit"
                ));
            }
        }
    }
    let tenant = tenant.ok_or("give tenant=T: a tap shows one tenant's records")?;
    Ok(Ask {
        tenant,
        signal,
        limit,
    })
}

/// Answers `GET /tap?…`: 400 for a bad query, 429 past [`MAX_TAPS`], else 200 and the
/// stream.
pub fn open(
    gw: &Arc<Gateway>,
    req: &http::Request<hyper::body::Incoming>,
) -> http::Response<AdminBody> {
    if req.method() != http::Method::GET {
        return answer(
            http::StatusCode::METHOD_NOT_ALLOWED,
            format!("{} /tap: use GET\n", req.method()),
        );
    }
    let ask = match parse_query(req.uri().query()) {
        Ok(a) => a,
        Err(e) => return answer(http::StatusCode::BAD_REQUEST, format!("/tap: {e}\n")),
    };
    let taps = &gw.taps;
    if taps.open.fetch_add(1, Ordering::Relaxed) >= MAX_TAPS {
        taps.open.fetch_sub(1, Ordering::Relaxed);
        let mut r = answer(
            http::StatusCode::TOO_MANY_REQUESTS,
            format!(
                "/tap: {MAX_TAPS} taps are open, the most this gateway serves at once; try again when one closes\n"
            ),
        );
        r.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(TAP_RETRY_AFTER),
        );
        return r;
    }
    let (tx, rx) = mpsc::channel(TAP_QUEUE_ITEMS);
    let sub = Arc::new(Subscriber {
        tenant: ask.tenant,
        signal: ask.signal,
        queue: tx,
        queued_bytes: Arc::new(AtomicUsize::new(0)),
    });
    taps.subscribers().push(sub.clone());
    tracing::info!(tenant = %sub.tenant, signal = ?sub.signal, limit = ?ask.limit, "tap opened");
    // One rendered request waits for the reader; the rest wait unrendered in the queue.
    let (out, lines) = mpsc::channel(1);
    tokio::spawn(render(
        rx,
        sub.queued_bytes.clone(),
        out,
        ask.limit.unwrap_or(u64::MAX),
    ));
    let body = TapBody {
        gw: gw.clone(),
        sub,
        lines,
    };
    let mut r = http::Response::new(Either::Right(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_a_tenant_and_optionally_a_signal_and_a_limit() {
        assert_eq!(
            parse_query(Some("tenant=game&signal=logs&limit=5")),
            Ok(Ask {
                tenant: "game".into(),
                signal: Some(Signal::Logs),
                limit: Some(5)
            })
        );
        assert_eq!(
            parse_query(Some("tenant=studio%2Dx")).map(|a| a.tenant),
            Ok("studio-x".into())
        );
        assert!(parse_query(None).is_err_and(|e| e.contains("tenant")));
        assert!(parse_query(Some("tenant=a&signal=spans")).is_err_and(|e| e.contains("spans")));
        assert!(parse_query(Some("tenant=a&limit=x")).is_err_and(|e| e.contains("limit=x")));
        assert!(parse_query(Some("tenant=a&who=b")).is_err_and(|e| e.contains("who")));
        assert_eq!(unescape("a%2"), "a%2");
        assert_eq!(unescape("%41+b%zz"), "A b%zz");
    }

    #[test]
    fn a_full_tap_drops_and_counts_and_a_tap_of_another_tenant_sees_nothing() {
        let taps = Taps::default();
        let telemetry = crate::telemetry::Telemetry::default();
        assert!(
            taps.logs("game", &[b"{}".to_vec()]).is_none(),
            "no tap: no copy"
        );
        let (tx, mut rx) = mpsc::channel(TAP_QUEUE_ITEMS);
        let sub = Arc::new(Subscriber {
            tenant: "game".into(),
            signal: Some(Signal::Logs),
            queue: tx,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
        });
        taps.open.fetch_add(1, Ordering::Relaxed);
        taps.subscribers().push(sub.clone());
        assert!(taps.logs("studio", &[b"{}".to_vec()]).is_none());
        assert!(taps.metrics("game", b"", 1).is_none(), "a logs tap");
        for _ in 0..TAP_QUEUE_ITEMS + 3 {
            let t = taps.logs("game", &[b"{}".to_vec(), b"{}".to_vec()]);
            taps.publish(t, &telemetry);
        }
        assert_eq!(
            telemetry.counter(&GATEWAY_TAP_DROPPED_TOTAL, "signal=\"logs\""),
            6.0
        );
        let item = rx.try_recv().expect("queued");
        assert_eq!(item.lines(10).len(), 2);
        assert_eq!(
            item.lines(1),
            ["{\"signal\":\"logs\",\"tenant\":\"game\",\"document\":{}}\n"]
        );
        taps.close(&sub);
        assert!(taps.logs("game", &[b"{}".to_vec()]).is_none());
    }
}
