//! Accepting and serving connections: the TLS handshake, HTTP/1.1 and HTTP/2, the
//! connection age limit, and the graceful end on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

use super::Gateway;
use super::ingest::{ConnInfo, handle};
use crate::telemetry::GATEWAY_TLS_HANDSHAKE_FAILURES_TOTAL;

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
        let _ = tcp.set_nodelay(true);
        let gw = gw.clone();
        let open = open.clone();
        let shutdown = stop.clone();
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(gw, tcp, peer, shutdown).await;
            open.fetch_sub(1, Ordering::Relaxed);
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
    gw: Arc<Gateway>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let live = gw.live();
    let max_age = live.config.limits.max_connection_age;
    match live.tls.clone() {
        Some(config) => {
            let handshake = tokio::time::timeout(
                Duration::from_secs(10),
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
                Err(_) => return,
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            drive(
                gw,
                TokioIo::new(stream),
                ConnInfo { cert, peer },
                max_age,
                shutdown,
            )
            .await;
        }
        None => {
            drive(
                gw,
                TokioIo::new(tcp),
                ConnInfo { cert: None, peer },
                max_age,
                shutdown,
            )
            .await
        }
    }
}

async fn drive<I>(
    gw: Arc<Gateway>,
    io: I,
    info: ConnInfo,
    max_age: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let service = hyper::service::service_fn(move |req| handle(gw.clone(), info.clone(), req));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(max_age);
    tokio::pin!(age);
    let mut asked = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut age, if !asked => {
                // Old enough: ask the client to reconnect so the load balancer can
                // spread connections (and per-replica limits stay fair).
                conn.as_mut().graceful_shutdown();
                asked = true;
            }
            _ = shutdown.changed(), if !asked => {
                conn.as_mut().graceful_shutdown();
                asked = true;
            }
        }
    }
}
