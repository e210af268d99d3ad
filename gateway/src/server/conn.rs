//! Accepting and serving connections: the connection cap, the TLS handshake (with its
//! timeout), HTTP/1.1 and HTTP/2 (a header read timeout against slowloris, kept by
//! `head_deadline.rs` from a request's first byte), the idle and
//! age limits, and the graceful end on shutdown. Failed `accept()`s pause
//! (`edge_daemon_kit::serve::accept_loop`), so a full descriptor table never spins a core.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;

use super::Gateway;
use super::head_deadline::HeadDeadline;
use super::ingest::{ConnInfo, handle};
use crate::telemetry::{
    GATEWAY_CONNECTIONS_CLOSED_TOTAL, GATEWAY_OPEN_CONNECTIONS,
    GATEWAY_TLS_HANDSHAKE_FAILURES_TOTAL, labels,
};

/// Counts a connection the gateway closed itself, for `reason`.
fn closed(gw: &Gateway, reason: &str) {
    gw.telemetry.add(
        &GATEWAY_CONNECTIONS_CLOSED_TOTAL,
        labels(&[("reason", reason)]),
        1.0,
    );
}

/// Accepts connections until `shutdown` turns true, then asks every connection to
/// finish (HTTP/2 GOAWAY) and waits up to the grace period for them.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let open = Arc::new(AtomicI64::new(0));
    let stop = shutdown.clone();
    edge_daemon_kit::serve::accept_loop(&listener, &mut shutdown, "data", |tcp, peer| {
        let cap = gw.live().config.limits.max_connections;
        if open.load(Ordering::Relaxed) >= cap as i64 {
            // Over the cap: closed at once, before any TLS work.
            drop(tcp);
            closed(&gw, "over_cap");
            return;
        }
        let _ = tcp.set_nodelay(true);
        let gw = gw.clone();
        let open = open.clone();
        let shutdown = stop.clone();
        let now_open = open.fetch_add(1, Ordering::Relaxed) + 1;
        gw.telemetry
            .set(&GATEWAY_OPEN_CONNECTIONS, String::new(), now_open as f64);
        tokio::spawn(async move {
            connection(&gw, tcp, peer, shutdown).await;
            let now_open = open.fetch_sub(1, Ordering::Relaxed) - 1;
            gw.telemetry
                .set(&GATEWAY_OPEN_CONNECTIONS, String::new(), now_open as f64);
        });
    })
    .await;
    let grace = gw.live().config.limits.shutdown_grace;
    let deadline = Instant::now() + grace;
    while open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = open.load(Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(
            connections = left,
            "connections still open at the end of the grace period"
        );
    }
}

async fn connection(
    gw: &Arc<Gateway>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let live = gw.live();
    let limits = live.config.limits.clone();
    match live.tls.clone() {
        Some(config) => {
            let handshake = tokio::time::timeout(
                limits.handshake_timeout,
                tokio_rustls::TlsAcceptor::from(config).accept(tcp),
            )
            .await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    gw.telemetry
                        .add(&GATEWAY_TLS_HANDSHAKE_FAILURES_TOTAL, String::new(), 1.0);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    closed(gw, "handshake_timeout");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::identity::CertNames::from_der(c.as_ref()));
            let expired = Arc::new(AtomicBool::new(false));
            let stream = HeadDeadline::new(stream, limits.header_read_timeout, expired.clone());
            drive(
                gw.clone(),
                TokioIo::new(stream),
                expired,
                ConnInfo { cert, peer },
                &limits,
                shutdown,
            )
            .await;
        }
        None => {
            let expired = Arc::new(AtomicBool::new(false));
            let tcp = HeadDeadline::new(tcp, limits.header_read_timeout, expired.clone());
            drive(
                gw.clone(),
                TokioIo::new(tcp),
                expired,
                ConnInfo { cert: None, peer },
                &limits,
                shutdown,
            )
            .await
        }
    }
}

async fn drive<I>(
    gw: Arc<Gateway>,
    io: I,
    head_expired: Arc<AtomicBool>,
    info: ConnInfo,
    limits: &crate::config::Limits,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    // Requests in flight on this connection, and when the last one ended: a connection
    // with none for the idle timeout is asked to go.
    let activity = Arc::new(Activity::default());
    let service = {
        let (gw, activity) = (gw.clone(), activity.clone());
        hyper::service::service_fn(move |req| {
            let (gw, info, activity) = (gw.clone(), info.clone(), activity.clone());
            async move {
                activity.begin();
                let answer = handle(gw, info, req).await;
                activity.end();
                answer
            }
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer also runs while a keep-alive connection waits for its
    // next request; the head deadline is kept by `HeadDeadline` (from a request's first
    // byte), the wait between requests by the idle timeout below.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(age);
    // The idle check sleeps until the earliest moment the connection could have been
    // idle for the timeout, then looks again: one wake-up per idle timeout, not one per
    // second for each of a region's thousands of connections.
    let idle_check = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle_check);
    let mut asked = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                if head_expired.load(Ordering::Relaxed) {
                    closed(&gw, "header_timeout");
                }
                return;
            }
            () = &mut age, if !asked => {
                // Old enough: ask the client to reconnect so the load balancer can
                // spread connections (and per-replica limits stay fair).
                conn.as_mut().graceful_shutdown();
                asked = true;
            }
            () = &mut idle_check, if !asked => {
                let idle = activity.idle_for();
                if idle >= limits.idle_timeout {
                    closed(&gw, "idle");
                    conn.as_mut().graceful_shutdown();
                    asked = true;
                } else {
                    // Busy now (idle for 0) or idle for less: the earliest it can be
                    // idle long enough. A request in flight is looked at again after a
                    // whole timeout.
                    idle_check
                        .as_mut()
                        .reset(tokio::time::Instant::now() + (limits.idle_timeout - idle));
                }
            }
            _ = shutdown.changed(), if !asked => {
                conn.as_mut().graceful_shutdown();
                asked = true;
            }
        }
    }
}

/// A connection's requests in flight and the end of its last one.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicI64,
    since: std::sync::Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicI64::new(0),
            since: std::sync::Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        *self
            .since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// How long the connection has had no request in flight.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }
}
