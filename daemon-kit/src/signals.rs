//! The signals a daemon waits for, in one place: SIGTERM and SIGINT stop it, SIGHUP and
//! SIGUSR1 mean what the daemon says (the gateway reloads on SIGHUP; the agent toggles
//! incident mode on SIGUSR1). A handler that cannot be installed is an error at start,
//! never a daemon without a way to stop it cleanly.

use std::future::pending;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// SIGTERM or SIGINT: stop (drain with a deadline).
    Stop,
    /// SIGHUP.
    Hangup,
    /// SIGUSR1.
    User1,
}

/// Installed handlers.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Option<Signal>,
    usr1: Option<Signal>,
}

impl Signals {
    /// SIGTERM and SIGINT, and SIGHUP and SIGUSR1 when asked for (otherwise they keep
    /// their default action).
    pub fn install(hangup: bool, user1: bool) -> std::io::Result<Signals> {
        let optional = |wanted: bool, kind: SignalKind| wanted.then(|| signal(kind)).transpose();
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: optional(hangup, SignalKind::hangup())?,
            usr1: optional(user1, SignalKind::user_defined1())?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Asked {
        async fn maybe(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    if s.recv().await.is_none() {
                        pending::<()>().await;
                    }
                }
                None => pending::<()>().await,
            }
        }
        tokio::select! {
            _ = self.term.recv() => Asked::Stop,
            _ = self.int.recv() => Asked::Stop,
            () = maybe(&mut self.hup) => Asked::Hangup,
            () = maybe(&mut self.usr1) => Asked::User1,
        }
    }

    /// Waits for a stop, handing every other signal to `other` meanwhile.
    pub async fn until_stop(&mut self, mut other: impl AsyncFnMut(Asked)) {
        loop {
            match self.next().await {
                Asked::Stop => return,
                asked => other(asked).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sighup_is_handed_over_and_sigterm_stops() {
        let mut signals = Signals::install(true, false).expect("install");
        let pid = std::process::id().to_string();
        let send = |sig: &str| {
            let status = std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .expect("kill");
            assert!(status.success());
        };
        send("-HUP");
        assert_eq!(signals.next().await, Asked::Hangup);
        send("-TERM");
        assert_eq!(signals.next().await, Asked::Stop);
    }
}
