//! The statsd receiver: UDP and TCP on loopback (`127.0.0.1:8125` by default), the
//! statsd and DogStatsD line protocol ([`parse`]), aggregated per cycle ([`aggregate`])
//! and offered to the metrics gate like every other source.
//!
//! A malformed line is counted (`edge_statsd_lines_total{result="malformed"}`), logged
//! (the first ones, then every thousandth), and never stops the listener: the next line
//! of the same datagram is read. UDP gives the client no error, so the counter is the
//! only trace of a bad line.
//!
//! When the default address is taken (another daemon on 8125, such as the collector being
//! replaced), the agent says so and tries again every [`RETRY_BIND`] instead of refusing
//! to start; an address given in the config that cannot be bound stops the start.

pub mod aggregate;
pub mod parse;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::config::statsd::{DEFAULT_LISTEN, StatsdConfig};
pub use aggregate::{Aggregator, Mapping};

use crate::metrics::now_ms;
use crate::shared::Shared;

/// How often a taken default address is tried again.
pub const RETRY_BIND: Duration = Duration::from_secs(30);

/// The largest datagram or TCP line read.
const MAX_LINE: usize = 64 * 1024;

/// The bound receiver, before it runs.
#[derive(Debug)]
pub struct Statsd {
    config: StatsdConfig,
    sockets: Option<(UdpSocket, TcpListener)>,
    aggregator: Arc<Mutex<Aggregator>>,
}

/// The UDP receive buffer asked for: a game's burst of datagrams waits in the kernel
/// while the listener is not scheduled (a busy host), instead of being dropped. The
/// kernel caps it at `net.core.rmem_max` unless the agent may force it.
pub const RECV_BUFFER: usize = 8 << 20;

async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(&udp, RECV_BUFFER).is_err()
        && let Err(e) = rustix::net::sockopt::set_socket_recv_buffer_size(&udp, RECV_BUFFER)
    {
        tracing::debug!(error = %e, "statsd: the UDP receive buffer keeps its default size");
    }
    let tcp = TcpListener::bind(addr).await?;
    Ok((udp, tcp))
}

impl Statsd {
    /// Binds the sockets (see the module docs for a taken default address).
    pub async fn bind(config: StatsdConfig) -> anyhow::Result<Statsd> {
        let sockets = match bind(config.listen).await {
            Ok(s) => Some(s),
            Err(e) if !config.explicit => {
                tracing::warn!(
                    address = %config.listen,
                    error = %e,
                    "the default statsd address is taken; trying again every {}s",
                    RETRY_BIND.as_secs()
                );
                None
            }
            Err(e) => {
                return Err(e).with_context(|| format!("statsd.listen {}", config.listen));
            }
        };
        let aggregator = Arc::new(Mutex::new(Aggregator::new(config.mappings.clone())));
        Ok(Statsd {
            config,
            sockets,
            aggregator,
        })
    }

    /// The bound UDP address (`None` while the default address is taken).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockets.as_ref().and_then(|(u, _)| u.local_addr().ok())
    }

    /// Runs the listeners and the per-cycle flush until `stop`.
    pub fn spawn(
        self,
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
    ) -> Vec<(&'static str, JoinHandle<()>)> {
        let ingest = Arc::new(Ingest {
            aggregator: self.aggregator.clone(),
            shared: shared.clone(),
            logged: AtomicU64::new(0),
        });
        let listen = {
            let ingest = ingest.clone();
            let config = self.config.clone();
            let mut stop = stop.clone();
            let sockets = self.sockets;
            tokio::spawn(async move {
                let (udp, tcp) = match sockets {
                    Some(s) => s,
                    None => loop {
                        tokio::select! {
                            () = tokio::time::sleep(RETRY_BIND) => {}
                            _ = stop.changed() => return,
                        }
                        if let Ok(s) = bind(config.listen).await {
                            tracing::info!(address = %config.listen, "statsd listening");
                            break s;
                        }
                    },
                };
                tokio::join!(
                    serve_udp(udp, ingest.clone(), stop.clone()),
                    serve_tcp(tcp, ingest, stop)
                );
            })
        };
        let flush = {
            let aggregator = self.aggregator;
            let mut stop = stop;
            tokio::spawn(async move {
                loop {
                    let every = shared.cadence.current();
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = stop.changed() => {}
                    }
                    let points = lock(&aggregator).snapshot(Instant::now(), now_ms());
                    if !points.is_empty() {
                        let mut pipeline = shared.pipeline();
                        let now = Instant::now();
                        for (key, point) in points {
                            pipeline.offer(key, point, now);
                        }
                    }
                    if *stop.borrow() {
                        return;
                    }
                }
            })
        };
        vec![("statsd", listen), ("statsd flush", flush)]
    }
}

fn lock(a: &Mutex<Aggregator>) -> std::sync::MutexGuard<'_, Aggregator> {
    a.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the listeners share.
struct Ingest {
    aggregator: Arc<Mutex<Aggregator>>,
    shared: Arc<Shared>,
    logged: AtomicU64,
}

impl Ingest {
    /// Adds every line of `text` (several per datagram, newline-separated).
    fn lines(&self, text: &str) {
        let now = Instant::now();
        let mut ok = 0u64;
        let mut bad = 0u64;
        {
            let mut agg = lock(&self.aggregator);
            for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
                match parse::parse(line).and_then(|l| agg.add(&l, now)) {
                    Ok(()) => ok += 1,
                    Err(why) => {
                        bad += 1;
                        self.log(line, &why);
                    }
                }
            }
        }
        self.shared.telemetry.statsd_lines(ok, bad);
    }

    fn log(&self, line: &str, why: &str) {
        let n = self.logged.fetch_add(1, Ordering::Relaxed);
        if n < 10 || n.is_multiple_of(1000) {
            tracing::warn!(
                line = %line.chars().take(200).collect::<String>(),
                reason = why,
                malformed_so_far = n + 1,
                "statsd line refused (the first ten, then every thousandth, are logged)"
            );
        }
    }
}

async fn serve_udp(socket: UdpSocket, ingest: Arc<Ingest>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_LINE];
    loop {
        let n = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "statsd: receive failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        ingest.lines(&String::from_utf8_lossy(&buf[..n]));
    }
}

async fn serve_tcp(listener: TcpListener, ingest: Arc<Ingest>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "statsd: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let ingest = ingest.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                let mut bounded = (&mut reader).take(MAX_LINE as u64);
                let read = tokio::select! {
                    r = bounded.read_until(b'\n', &mut line) => r,
                    _ = stop.changed() => return,
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => ingest.lines(&String::from_utf8_lossy(&line)),
                }
            }
        });
    }
}
