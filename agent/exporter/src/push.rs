//! The pusher: a plain thread that sends the registry's snapshot to the local agent every
//! cadence.
//!
//! It never blocks the game: recording goes to the instruments, not to the pusher, and a
//! push that fails or is slow (bounded by [`PushConfig::timeout`]) is dropped and counted
//! in `edge_exporter_pushes_failed_total{reason}`, logged once per reason. Snapshots are
//! cumulative, so the next successful push carries everything a dropped one had.
//!
//! It follows the agent's cadence: the agent's answer to a push carries `Edge-Cadence`
//! (10 s steady, 5 s in an incident), and the next wait is that cadence, held within
//! [`PushConfig::incident_cadence`, `PushConfig::cadence`]. An answer without the header
//! goes back to the configured cadence; a failed push keeps the cadence in force.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::export::encode_write_request;
use crate::http::{self, Answer, HttpUrl, PushError};
use crate::registry::Registry;

/// The agent's default local push endpoint.
pub const DEFAULT_PUSH_URL: &str = "http://127.0.0.1:9740/api/v1/push";

/// The steady cadence of the design: one snapshot every 10 s.
pub const DEFAULT_CADENCE: Duration = Duration::from_secs(10);

/// The incident cadence of the design: the fastest an agent's hint can make the pusher go.
pub const DEFAULT_INCIDENT_CADENCE: Duration = Duration::from_secs(5);

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
    /// Time between pushes (the steady cadence, and the slowest an agent's hint can make
    /// it).
    pub cadence: Duration,
    /// The fastest cadence an agent's hint can ask for (held to at most `cadence`).
    pub incident_cadence: Duration,
    /// Bound on one push (connect, send, answer).
    pub timeout: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            url: DEFAULT_PUSH_URL.to_string(),
            cadence: DEFAULT_CADENCE,
            incident_cadence: DEFAULT_INCIDENT_CADENCE,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Pushes the registry's current snapshot once, now.
pub fn push_once(registry: &Registry, url: &str, timeout: Duration) -> Result<(), PushError> {
    push_once_answer(registry, url, timeout).map(|_| ())
}

/// [`push_once`], returning the agent's answer (status and cadence hint).
pub fn push_once_answer(
    registry: &Registry,
    url: &str,
    timeout: Duration,
) -> Result<Answer, PushError> {
    let url = HttpUrl::parse(url)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let body = encode_write_request(registry, now_ms).map_err(|e| PushError::Io {
        url: format!("http://{}{}", url.host, url.path),
        source: std::io::Error::other(e),
    })?;
    http::post_answer(&url, &REMOTE_WRITE_HEADERS, &body, timeout)
}

/// What a running pusher shows of itself.
#[derive(Debug)]
struct Live {
    /// The cadence in force, in milliseconds.
    cadence_ms: AtomicU64,
    /// Pushes the agent answered 2xx.
    pushes: AtomicU64,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A running pusher thread. Dropping it stops the thread after a final push.
#[derive(Debug)]
pub struct Pusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    live: Arc<Live>,
    thread: Option<JoinHandle<()>>,
}

impl Pusher {
    /// Starts pushing `registry` with `config` on a new thread named `edge-exporter-push`.
    pub fn spawn(registry: Registry, config: PushConfig) -> std::io::Result<Pusher> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let live = Arc::new(Live {
            cadence_ms: AtomicU64::new(millis(config.cadence)),
            pushes: AtomicU64::new(0),
        });
        let shown = Arc::clone(&live);
        let thread = std::thread::Builder::new()
            .name("edge-exporter-push".into())
            .spawn(move || run(&registry, &config, &signal, &shown))?;
        Ok(Pusher {
            stop,
            live,
            thread: Some(thread),
        })
    }

    /// The cadence in force: the configured one, or the agent's hint within
    /// [incident, steady].
    pub fn cadence(&self) -> Duration {
        Duration::from_millis(self.live.cadence_ms.load(Ordering::Relaxed))
    }

    /// Pushes the agent has answered with 2xx so far.
    pub fn pushes(&self) -> u64 {
        self.live.pushes.load(Ordering::Acquire)
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

/// The cadence to follow after an answer that carried `hint`.
pub fn follow(hint: Option<Duration>, steady: Duration, incident: Duration) -> Duration {
    hint.map_or(steady, |h| h.clamp(incident.min(steady), steady))
}

fn run(registry: &Registry, config: &PushConfig, stop: &(Mutex<bool>, Condvar), live: &Live) {
    let logged: [AtomicBool; 8] = Default::default();
    let (lock, cvar) = stop;
    let mut cadence = config.cadence;
    loop {
        let stopping = {
            let guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (guard, _) = cvar
                .wait_timeout_while(guard, cadence, |stopped| !*stopped)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *guard
        };
        match push_once_answer(registry, &config.url, config.timeout) {
            Ok(answer) => {
                cadence = follow(answer.cadence, config.cadence, config.incident_cadence);
                live.cadence_ms.store(millis(cadence), Ordering::Relaxed);
                // Released after the cadence: whoever sees this push counted sees the
                // cadence its answer set.
                live.pushes.fetch_add(1, Ordering::Release);
            }
            Err(err) => {
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
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_is_held_within_incident_and_steady() {
        let (steady, incident) = (Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(follow(None, steady, incident), steady);
        assert_eq!(
            follow(Some(Duration::from_secs(5)), steady, incident),
            incident
        );
        assert_eq!(
            follow(Some(Duration::from_secs(7)), steady, incident),
            Duration::from_secs(7)
        );
        assert_eq!(
            follow(Some(Duration::from_millis(1)), steady, incident),
            incident
        );
        assert_eq!(
            follow(Some(Duration::from_secs(600)), steady, incident),
            steady
        );
        // An incident bound above the steady cadence is held to it.
        let fast = Duration::from_secs(1);
        assert_eq!(follow(Some(Duration::from_secs(5)), fast, incident), fast);
    }
}
