//! The pusher: a plain thread that sends the registry's snapshot to the local agent every
//! cadence.
//!
//! It never blocks the game: recording goes to the instruments, not to the pusher, and a
//! push that fails or is slow (bounded by [`PushConfig::timeout`]) is dropped and counted
//! in `edge_exporter_pushes_failed_total{reason}`, logged once per reason. Snapshots are
//! cumulative, so the next successful push carries everything a dropped one had.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::export::encode_write_request;
use crate::http::{self, HttpUrl, PushError};
use crate::registry::Registry;

/// The agent's default local push endpoint.
pub const DEFAULT_PUSH_URL: &str = "http://127.0.0.1:9740/api/v1/push";

/// The steady cadence of the design: one snapshot every 10 s.
pub const DEFAULT_CADENCE: Duration = Duration::from_secs(10);

/// How long one push may take: well under the 5 s incident cadence, so a stuck agent
/// never makes pushes pile up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The remote_write 1.0 headers.
pub const REMOTE_WRITE_HEADERS: [(&str, &str); 4] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    (
        "User-Agent",
        concat!("edge-exporter/", env!("CARGO_PKG_VERSION")),
    ),
];

/// Where and how often to push.
#[derive(Clone, Debug)]
pub struct PushConfig {
    /// The remote_write URL (`http://` only).
    pub url: String,
    /// Time between pushes.
    pub cadence: Duration,
    /// Bound on one push (connect, send, answer).
    pub timeout: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            url: DEFAULT_PUSH_URL.to_string(),
            cadence: DEFAULT_CADENCE,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Pushes the registry's current snapshot once, now.
pub fn push_once(registry: &Registry, url: &str, timeout: Duration) -> Result<(), PushError> {
    let url = HttpUrl::parse(url)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let body = encode_write_request(registry, now_ms).map_err(|e| PushError::Io {
        url: format!("http://{}{}", url.host, url.path),
        source: std::io::Error::other(e),
    })?;
    http::post(&url, &REMOTE_WRITE_HEADERS, &body, timeout).map(|_| ())
}

/// A running pusher thread. Dropping it stops the thread after a final push.
#[derive(Debug)]
pub struct Pusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Pusher {
    /// Starts pushing `registry` with `config` on a new thread named `edge-exporter-push`.
    pub fn spawn(registry: Registry, config: PushConfig) -> std::io::Result<Pusher> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("edge-exporter-push".into())
            .spawn(move || run(&registry, &config, &signal))?;
        Ok(Pusher {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after one last push and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cvar.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(registry: &Registry, config: &PushConfig, stop: &(Mutex<bool>, Condvar)) {
    let logged: [AtomicBool; 8] = Default::default();
    let (lock, cvar) = stop;
    loop {
        let stopping = {
            let guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (guard, _) = cvar
                .wait_timeout_while(guard, config.cadence, |stopped| !*stopped)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *guard
        };
        if let Err(err) = push_once(registry, &config.url, config.timeout) {
            let reason = err.reason();
            registry.count_push_failure(reason);
            let slot = crate::export::PUSH_FAILURE_REASONS
                .iter()
                .position(|r| *r == reason)
                .unwrap_or(logged.len() - 1);
            if !logged[slot].swap(true, Ordering::Relaxed) {
                eprintln!("edge-exporter: snapshot dropped: {err} (logged once per reason)");
            }
        }
        if stopping {
            return;
        }
    }
}
