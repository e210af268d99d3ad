//! The collection cadence: steady (10 s) or incident (5 s).
//!
//! Incident mode is switched on locally (SIGUSR1 toggles it; `POST /api/v1/incident`
//! and `DELETE /api/v1/incident` on the local receiver set and clear it) or by the
//! gateway's cadence hint, the [`CADENCE_HINT_HEADER`] of its answers. The hint lasts
//! as long as answers carry it: the first answer without it ends it. Whichever asks for
//! the faster cadence wins. A hint is held between the incident and the steady cadence,
//! so a misconfigured gateway can neither stall nor flood the fleet.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// The answer header that carries the gateway's cadence hint (`5s`, `10s`).
pub const CADENCE_HINT_HEADER: &str = "edge-cadence";

#[derive(Debug)]
struct State {
    steady: Duration,
    incident: Duration,
    local_incident: bool,
    hint: Option<Duration>,
}

/// The cadence in force and what decides it.
#[derive(Debug)]
pub struct Cadence {
    state: Mutex<State>,
    tx: watch::Sender<Duration>,
}

impl Cadence {
    /// Steady cadence `steady`, incident cadence `incident`.
    pub fn new(steady: Duration, incident: Duration) -> Self {
        let (tx, _) = watch::channel(steady);
        Cadence {
            state: Mutex::new(State {
                steady,
                incident: incident.min(steady),
                local_incident: false,
                hint: None,
            }),
            tx,
        }
    }

    /// The cadence now.
    pub fn current(&self) -> Duration {
        *self.tx.borrow()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<Duration> {
        self.tx.subscribe()
    }

    /// Whether incident mode is on locally.
    pub fn local_incident(&self) -> bool {
        self.lock().local_incident
    }

    /// Sets or clears local incident mode.
    pub fn set_local_incident(&self, on: bool) {
        self.update(|s| s.local_incident = on);
    }

    /// Toggles local incident mode (SIGUSR1); returns the new state.
    pub fn toggle_local_incident(&self) -> bool {
        let mut now_on = false;
        self.update(|s| {
            s.local_incident = !s.local_incident;
            now_on = s.local_incident;
        });
        now_on
    }

    /// New steady and incident cadences (a config reload); the next cycle uses them.
    pub fn set_periods(&self, steady: Duration, incident: Duration) {
        self.update(|s| {
            s.steady = steady;
            s.incident = incident.min(steady);
        });
    }

    /// The hint of the gateway's latest answer (`None`: the answer had none, or it did
    /// not parse).
    pub fn set_hint(&self, hint: Option<Duration>) {
        self.update(|s| s.hint = hint);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let next = {
            let mut s = self.lock();
            change(&mut s);
            let mut next = s.steady;
            if s.local_incident {
                next = s.incident;
            }
            if let Some(hint) = s.hint {
                next = next.min(hint.clamp(s.incident, s.steady));
            }
            next
        };
        self.tx.send_if_modified(|current| {
            let changed = *current != next;
            if changed {
                tracing::info!(cadence = ?next, "collection cadence changed");
                *current = next;
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_changes_both_periods_and_incident_mode_keeps_its_meaning() {
        let c = Cadence::new(Duration::from_secs(10), Duration::from_secs(5));
        let rx = c.subscribe();
        c.set_periods(Duration::from_secs(30), Duration::from_secs(15));
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(c.current(), Duration::from_secs(30));
        c.set_local_incident(true);
        assert_eq!(c.current(), Duration::from_secs(15));
        // An incident cadence longer than the steady one is held to it.
        c.set_periods(Duration::from_secs(5), Duration::from_secs(15));
        assert_eq!(c.current(), Duration::from_secs(5));
    }

    #[test]
    fn local_and_hinted_incident_mode_and_back() {
        let c = Cadence::new(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(c.current(), Duration::from_secs(10));
        assert!(c.toggle_local_incident());
        assert_eq!(c.current(), Duration::from_secs(5));
        c.set_local_incident(false);
        c.set_hint(Some(Duration::from_secs(5)));
        assert_eq!(c.current(), Duration::from_secs(5));
        // A hint is held within [incident, steady].
        c.set_hint(Some(Duration::from_millis(10)));
        assert_eq!(c.current(), Duration::from_secs(5));
        c.set_hint(Some(Duration::from_secs(600)));
        assert_eq!(c.current(), Duration::from_secs(10));
        // The hint goes away with the first answer without it.
        c.set_hint(Some(Duration::from_secs(5)));
        c.set_hint(None);
        assert_eq!(c.current(), Duration::from_secs(10));
    }
}
