//! Delivery: batches from the disk queue to the gateway, in order, one at a time per
//! stream, removed from the queue only after a 2xx.
//!
//! - HTTP/2 with keep-alive over rustls mTLS for `https` URLs (ALPN; HTTP/1.1 if the
//!   peer offers only that); HTTP/1.1 keep-alive for plain `http` (a stock Prometheus on
//!   loopback).
//! - Several URLs may be given: the first one up is used; a failed one is skipped until
//!   its backoff ends and it answers again. Each destination has its own backoff
//!   ([`backoff::Backoff`], exponential with full jitter); one failure costs one
//!   backoff step, whatever the number of batches waiting.
//! - `Retry-After` on 429 and 503 (seconds or HTTP-date) holds the whole stream, since it
//!   speaks for the tenant or the sink behind every gateway.
//! - Any other 4xx drops the batch: it is counted, its reason logged, and never retried.
//! - The gateway's cadence hint is applied from every answer ([`crate::cadence`]).
//!
//! [`decide`] is the one place where an answer becomes a retry decision.

pub mod backoff;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{Notify, watch};

use crate::cadence::{CADENCE_HINT_HEADER, Cadence};
use crate::queue::{Class, Entry, RecordId, SharedQueue, with_queue};
use crate::telemetry::{Stream, Telemetry};
use backoff::Backoff;
use tls::ReloadingTls;

/// Time allowed for one attempt: connect, send, answer.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The most of an answer's body kept (for the log line that says why).
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// HTTP/2 pings keep an idle connection (and its NAT/NLB flow) alive.
const H2_KEEPALIVE: Duration = Duration::from_secs(30);

/// The answer header by which the gateway asks agents to shed verbose logs:
/// `debug` (shed debug and trace) or `info` (shed info too); absent means none.
pub const SHED_HINT_HEADER: &str = "edge-shed-logs";

/// The log classes the gateway asks to shed, as a level: 0 none, 1 debug, 2 info (and
/// traces, which the queue sheds between debug and info logs).
pub fn parse_shed_hint(value: Option<&str>) -> u8 {
    match value.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("info") => 2,
        Some(v) if v.eq_ignore_ascii_case("debug") => 1,
        _ => 0,
    }
}

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// 2xx: acknowledge the batch.
    Delivered,
    /// A 4xx other than 401, 403, 408 and 429, or an unexpected status: the batch can
    /// never succeed; drop it, count it, log why.
    Drop,
    /// Wait this long (the peer's `Retry-After`), then send the same batch again.
    RetryAfter(Duration),
    /// Back off this destination and try again (transport error, 5xx, 408, 401/403, or a
    /// 429/503 without a usable `Retry-After`).
    Retry,
}

/// The retry decision for a status (`None`: a transport error or timeout) and its
/// `Retry-After`.
pub fn decide(status: Option<u16>, retry_after: Option<Duration>) -> Decision {
    match status {
        None => Decision::Retry,
        Some(200..=299) => Decision::Delivered,
        Some(429 | 503) => retry_after.map_or(Decision::Retry, Decision::RetryAfter),
        Some(408) => Decision::Retry,
        // The gateway does not accept this agent's identity: a mistake in the gateway's
        // identity or trust-domain config, fixed by a reload there. Dropping would make
        // every agent of the fleet discard its queue for one wrong line; hold and retry.
        Some(401 | 403) => Decision::Retry,
        Some(500..=599) => retry_after.map_or(Decision::Retry, Decision::RetryAfter),
        Some(_) => Decision::Drop,
    }
}

/// What a sender sends and where.
#[derive(Debug)]
pub struct SenderConfig {
    /// The stream, for telemetry.
    pub stream: Stream,
    /// Destinations in order of preference.
    pub urls: Vec<String>,
    /// Queue classes served, highest priority first.
    pub classes: Vec<Class>,
    /// Headers on every request (content type and encoding, protocol version).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

struct Destination {
    url: String,
    uri: http::Uri,
    host: String,
    port: u16,
    https: bool,
    backoff: Backoff,
    down_until: Option<Instant>,
    conn: Option<(Conn, u64)>,
}

/// An answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    hint: Option<Duration>,
    shed: u8,
    body: String,
}

/// A URL that cannot be a destination.
#[derive(Debug, thiserror::Error)]
#[error("output URL {url}: {why}")]
pub struct UrlError {
    url: String,
    why: &'static str,
}

/// The sender of one stream.
pub struct Sender {
    config: SenderConfig,
    destinations: Vec<Destination>,
    tls: Option<ReloadingTls>,
    queue: SharedQueue,
    wake: Arc<Notify>,
    telemetry: Arc<Telemetry>,
    cadence: Arc<Cadence>,
    shed: Arc<std::sync::atomic::AtomicU8>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("stream", &self.config.stream)
            .field("urls", &self.config.urls)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender; `tls` is required when any URL is `https`.
    pub fn new(
        config: SenderConfig,
        tls: Option<ReloadingTls>,
        queue: SharedQueue,
        wake: Arc<Notify>,
        telemetry: Arc<Telemetry>,
        cadence: Arc<Cadence>,
    ) -> Result<Self, UrlError> {
        let mut destinations = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let bad = |why| UrlError {
                url: url.clone(),
                why,
            };
            let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => return Err(bad("must be http:// or https://")),
            };
            if https && tls.is_none() {
                return Err(bad("https needs output.tls (client certificate, key, CA)"));
            }
            let host = uri.host().ok_or_else(|| bad("no host"))?.to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            destinations.push(Destination {
                url: url.clone(),
                uri,
                host,
                port,
                https,
                backoff: backoff::destination(),
                down_until: None,
                conn: None,
            });
        }
        if destinations.is_empty() {
            return Err(UrlError {
                url: String::new(),
                why: "no destination configured",
            });
        }
        Ok(Sender {
            config,
            destinations,
            tls,
            queue,
            wake,
            telemetry,
            cadence,
            shed: Arc::default(),
        })
    }

    /// The gateway's latest shed hint (see [`SHED_HINT_HEADER`]), for the logs path.
    pub fn shed_hint(&self) -> Arc<std::sync::atomic::AtomicU8> {
        self.shed.clone()
    }

    /// Sends until `stop` turns true (the batch in flight is finished first).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let stream = self.config.stream;
        let mut hold_until: Option<Instant> = None;
        // The batch just delivered (or dropped) is acknowledged together with the next
        // peek: one trip to the blocking pool per batch instead of two.
        let mut to_ack: Option<(Class, RecordId, usize)> = None;
        loop {
            if *stop.borrow() {
                if let Some((class, id, len)) = to_ack.take() {
                    let acked = with_queue(&self.queue, move |q| {
                        (q.ack_read(class, id, len), q.figures())
                    })
                    .await;
                    self.telemetry.set_queue(&acked.1);
                }
                return;
            }
            if let Some(until) = hold_until.take() {
                tokio::select! {
                    () = tokio::time::sleep_until(until.into()) => {}
                    _ = stop.changed() => continue,
                }
            }
            let classes = self.config.classes.clone();
            let ack = to_ack.take();
            let (acked, next, figures) = with_queue(&self.queue, move |q| {
                let acked = ack.map(|(class, id, len)| q.ack_read(class, id, len));
                let next = (|| -> Result<Option<(Class, Entry)>, crate::queue::QueueError> {
                    for class in classes {
                        let mut entries = q.peek(class, 1)?;
                        if !entries.is_empty() {
                            return Ok(Some((class, entries.remove(0))));
                        }
                    }
                    Ok(None)
                })();
                (acked, next, q.figures())
            })
            .await;
            self.telemetry.set_queue(&figures);
            if let Some(Err(e)) = acked {
                tracing::error!(error = %e, "cannot acknowledge a sent batch; it may be sent again");
            }
            let (class, entry) = match next {
                Ok(Some(next)) => next,
                Ok(None) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the disk queue; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            let Some(i) = self.pick(Instant::now()) else {
                // Every destination is backing off: wait for the first to come back.
                let until = self
                    .destinations
                    .iter()
                    .filter_map(|d| d.down_until)
                    .min()
                    .unwrap_or_else(Instant::now);
                hold_until = Some(until);
                continue;
            };
            let started = Instant::now();
            let result = tokio::time::timeout(SEND_TIMEOUT, self.attempt(i, &entry)).await;
            let answer = match result {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("no answer within {SEND_TIMEOUT:?}")),
            };
            let status = answer.as_ref().ok().map(|a| a.status);
            self.telemetry.response(stream, status, started.elapsed());
            let retry_after = answer.as_ref().ok().and_then(|a| a.retry_after);
            let dest = &mut self.destinations[i];
            match decide(status, retry_after) {
                Decision::Delivered => {
                    if dest.backoff.failures() > 0 {
                        tracing::info!(url = %dest.url, "destination answers again");
                    }
                    dest.backoff.reset();
                    dest.down_until = None;
                    if let Ok(a) = &answer {
                        apply_hints(self.config.stream, &self.cadence, &self.shed, a);
                    }
                    to_ack = Some((class, entry.id, entry.payload.len()));
                }
                Decision::Drop => {
                    let body = answer.as_ref().map(|a| a.body.as_str()).unwrap_or("");
                    tracing::warn!(
                        url = %dest.url,
                        status = status.unwrap_or(0),
                        reason = %body.trim(),
                        "batch refused for good; dropped, not retried"
                    );
                    self.telemetry.dropped(stream);
                    to_ack = Some((class, entry.id, entry.payload.len()));
                }
                Decision::RetryAfter(delay) => {
                    if let Ok(a) = &answer {
                        apply_hints(self.config.stream, &self.cadence, &self.shed, a);
                    }
                    tracing::info!(
                        url = %dest.url,
                        status = status.unwrap_or(0),
                        ?delay,
                        "gateway asked to wait (Retry-After)"
                    );
                    hold_until = Some(Instant::now() + backoff::spread(delay));
                }
                Decision::Retry => {
                    let delay = dest.backoff.next_delay();
                    if dest.backoff.failures() == 1 {
                        match &answer {
                            Ok(a) => {
                                tracing::warn!(url = %dest.url, status = a.status, reason = %a.body.trim(), "send failed; backing off")
                            }
                            Err(e) => {
                                tracing::warn!(url = %dest.url, error = %e, "send failed; backing off")
                            }
                        }
                    }
                    if answer.is_err() {
                        dest.conn = None;
                    }
                    dest.down_until = Some(Instant::now() + delay);
                }
            }
        }
    }

    /// The first destination not backing off.
    fn pick(&self, now: Instant) -> Option<usize> {
        self.destinations
            .iter()
            .position(|d| d.down_until.is_none_or(|t| t <= now))
    }

    async fn attempt(&mut self, i: usize, entry: &Entry) -> Result<Answer, String> {
        let generation = match &mut self.tls {
            Some(tls) if self.destinations[i].https => Some(tls.current()),
            _ => None,
        };
        let d = &mut self.destinations[i];
        let reconnect = match &d.conn {
            None => true,
            Some((conn, made_under)) => {
                let closed = match conn {
                    Conn::H1(s) => s.is_closed(),
                    Conn::H2(s) => s.is_closed(),
                };
                // A reloaded certificate is presented from the next connection on.
                closed
                    || generation
                        .as_ref()
                        .is_some_and(|(_, now)| now != made_under)
            }
        };
        if reconnect {
            let conn = connect(d, generation.as_ref().map(|(c, _)| c.clone())).await?;
            d.conn = Some((conn, generation.as_ref().map_or(0, |(_, g)| *g)));
        }
        let mut builder = http::Request::post(match &d.conn {
            Some((Conn::H2(_), _)) => d.uri.clone(),
            _ => d
                .uri
                .path_and_query()
                .cloned()
                .map_or_else(|| http::Uri::from_static("/"), http::Uri::from),
        });
        if let Some(h) = builder.headers_mut() {
            for (name, value) in &self.config.headers {
                h.insert(name.clone(), value.clone());
            }
            if let Ok(host) = HeaderValue::from_str(&format!("{}:{}", d.host, d.port)) {
                h.insert(http::header::HOST, host);
            }
        }
        let request = builder
            .body(Full::new(Bytes::from(entry.payload.clone())))
            .map_err(|e| e.to_string())?;
        let response = match d.conn.as_mut() {
            Some((Conn::H1(s), _)) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
            Some((Conn::H2(s), _)) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
            None => return Err("no connection".into()),
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                d.conn = None;
                return Err(e.to_string());
            }
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after =
            header("retry-after").and_then(|v| backoff::parse_retry_after(&v, SystemTime::now()));
        let hint = header(CADENCE_HINT_HEADER).and_then(|v| crate::config::parse_duration(&v));
        let shed = parse_shed_hint(header(SHED_HINT_HEADER).as_deref());
        let body = match Limited::new(response.into_body(), MAX_ANSWER_BODY)
            .collect()
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(_) => {
                // An oversized or broken body: the answer stands, the connection goes.
                d.conn = None;
                String::new()
            }
        };
        Ok(Answer {
            status,
            retry_after,
            hint,
            shed,
            body,
        })
    }
}

/// Applies the gateway's hints: the cadence (metrics stream) and the shed level (logs
/// and traces streams: `debug` sheds debug logs, `info` sheds traces and info logs
/// too, the queue's shed order); an answer without a hint ends it.
fn apply_hints(
    stream: Stream,
    cadence: &Cadence,
    shed: &std::sync::atomic::AtomicU8,
    answer: &Answer,
) {
    match stream {
        Stream::Metrics => cadence.set_hint(answer.hint),
        Stream::Logs | Stream::Traces => {
            shed.store(answer.shed, std::sync::atomic::Ordering::Relaxed)
        }
    }
}

async fn connect(d: &Destination, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Conn, String> {
    let tcp = tokio::net::TcpStream::connect((d.host.as_str(), d.port))
        .await
        .map_err(|e| format!("connect {}:{}: {e}", d.host, d.port))?;
    let _ = tcp.set_nodelay(true);
    if !d.https {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(Conn::H1(send));
    }
    let Some(config) = tls else {
        return Err("https without a TLS config".into());
    };
    let name = rustls::pki_types::ServerName::try_from(d.host.clone())
        .map_err(|e| format!("server name {}: {e}", d.host))?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {}: {e}", d.host))?;
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEPALIVE)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn::H2(send))
    } else {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn::H1(send))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_decision() {
        let two = Some(Duration::from_secs(2));
        assert_eq!(decide(Some(204), None), Decision::Delivered);
        assert_eq!(decide(Some(400), None), Decision::Drop);
        assert_eq!(decide(Some(413), None), Decision::Drop);
        assert_eq!(decide(Some(401), two), Decision::Retry);
        assert_eq!(decide(Some(403), None), Decision::Retry);
        assert_eq!(
            decide(Some(429), two),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(decide(Some(429), None), Decision::Retry);
        assert_eq!(
            decide(Some(503), two),
            Decision::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(decide(Some(502), None), Decision::Retry);
        assert_eq!(decide(Some(408), None), Decision::Retry);
        assert_eq!(decide(None, None), Decision::Retry);
    }
}
