//! The two daemons' lifecycles, in the agent's shape: `build` (load, open the sinks,
//! bind: fail early) → `spawn` (serve, housekeeping, tell systemd we are ready) →
//! `wait` (until SIGTERM or SIGINT; SIGHUP reloads the gateway's config) → `drain`
//! (stop taking work, give the work in flight until a deadline).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use edge_daemon_kit::notify::Notifier;
use edge_daemon_kit::signals::Signals;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::RelayConfig;
use crate::relay::Relay;
use crate::server::Gateway;
use crate::telemetry::Telemetry;

/// How much longer than the connections' grace period a drain waits for the server to
/// return (it logs what is left at the end of the grace period itself).
pub const DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// How long the relay's shard readers get to stop (they stop at their next call).
pub const RELAY_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// A sink commit under way this long, with none ending meanwhile, is stuck (commits
/// give up after `sink::retry::COMMIT_DEADLINE`, 30 s): the watchdog stops pinging.
pub const STUCK_COMMIT: Duration = Duration::from_secs(60);

/// Logs to stderr, filtered by `EDGE_GATEWAY_LOG` (default `info`).
pub fn log_to_stderr() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_GATEWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// A gateway, built and bound, not yet serving.
#[derive(Debug)]
pub struct GatewayDaemon {
    gw: Arc<Gateway>,
    listener: TcpListener,
    admin: Option<TcpListener>,
}

/// A serving gateway.
#[derive(Debug)]
pub struct RunningGateway {
    gw: Arc<Gateway>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
    housekeeping: JoinHandle<()>,
    watchdog: Option<JoinHandle<()>>,
    notifier: Arc<Notifier>,
}

impl GatewayDaemon {
    /// Loads `config`, opens the sinks and binds the listen address.
    pub async fn build(config: &Path) -> anyhow::Result<GatewayDaemon> {
        let gw = Gateway::new(config).await?;
        let addr = gw.live().config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("edge-gateway: cannot listen on {addr}"))?;
        let admin = match gw.live().config.admin_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("edge-gateway: cannot listen on {addr} (admin_listen)")
            })?),
            None => None,
        };
        Ok(GatewayDaemon {
            gw,
            listener,
            admin,
        })
    }

    /// The gateway.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// Serves, runs the housekeeping (overload controller, watchdog, config look), and
    /// tells systemd the gateway is ready.
    pub fn spawn(self) -> RunningGateway {
        let GatewayDaemon {
            gw,
            listener,
            admin,
        } = self;
        tracing::info!(addr = %gw.live().config.listen, tls = gw.live().tls.is_some(), "edge-gateway listening");
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(crate::server::serve(gw.clone(), listener, stop_rx.clone()));
        let admin = admin.map(|listener| {
            let gw = gw.clone();
            tracing::info!(addr = ?listener.local_addr().ok(), "admin port listening (plain HTTP: /healthz, /ready, /metrics, /tap)");
            tokio::spawn(crate::server::serve_admin(gw, listener, stop_rx))
        });
        let notifier = Arc::new(Notifier::from_env());
        let housekeeping = tokio::spawn(housekeeping(gw.clone()));
        let watchdog = notifier
            .watchdog_interval()
            .map(|every| tokio::spawn(watchdog(gw.clone(), notifier.clone(), every)));
        notifier.notify("READY=1");
        RunningGateway {
            gw,
            stop,
            server,
            admin,
            housekeeping,
            watchdog,
            notifier,
        }
    }
}

impl RunningGateway {
    /// Waits for SIGTERM or SIGINT; SIGHUP reloads the config meanwhile.
    pub async fn wait(&self) {
        let Some(mut signals) = handlers(true) else {
            return;
        };
        signals
            .until_stop(async |_hup| {
                let g = self.gw.clone();
                let _ = tokio::task::spawn_blocking(move || g.reload(true)).await;
            })
            .await;
    }

    /// The deadline a drain should get: the config's grace period and a margin.
    pub fn deadline(&self) -> Duration {
        self.gw.live().config.limits.shutdown_grace + DRAIN_MARGIN
    }

    /// No new connections; the requests in flight get until `deadline`.
    pub async fn drain(self, deadline: Duration) {
        tracing::info!("stopping: no new connections; in-flight requests get the grace period");
        self.notifier.notify("STOPPING=1");
        let _ = self.stop.send(true);
        if tokio::time::timeout(deadline, self.server).await.is_err() {
            tracing::warn!(?deadline, "the server did not stop by the deadline");
        }
        self.housekeeping.abort();
        if let Some(watchdog) = self.watchdog {
            watchdog.abort();
        }
        if let Some(admin) = self.admin {
            admin.abort();
        }
        tracing::info!("stopped");
    }
}

/// Every second: the overload controller and the gauges; every two, a look at the
/// config and TLS files.
async fn housekeeping(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        gw.overload_tick();
        n += 1;
        if n.is_multiple_of(2) {
            let g = gw.clone();
            let _ = tokio::task::spawn_blocking(move || g.reload(false)).await;
        }
    }
}

/// Whether the server makes progress: a task round-trips through the runtime's
/// scheduler and the blocking pool (where bodies are decoded), and the sinks' commits
/// are not stuck (one under way longer than `stuck`, none ending). `None` when the
/// probe did not come back within `wait`.
pub async fn making_progress(
    telemetry: &Telemetry,
    wait: Duration,
    stuck: Duration,
) -> Option<bool> {
    let probe = tokio::spawn(async { tokio::task::spawn_blocking(|| ()).await.is_ok() });
    match tokio::time::timeout(wait, probe).await {
        Ok(Ok(true)) => Some(!telemetry.commits_stuck(stuck)),
        Ok(_) => Some(false),
        Err(_) => None,
    }
}

/// systemd's watchdog: `WATCHDOG=1` every `every` (half of `WatchdogSec`), at most every
/// second, and only after [`making_progress`] says so. A gateway whose runtime, blocking
/// pool or sinks are wedged stops pinging and is restarted; one merely busy answers the
/// probe late and pings late.
async fn watchdog(gw: Arc<Gateway>, notifier: Arc<Notifier>, every: Duration) {
    let mut tick = tokio::time::interval(every.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        tick.tick().await;
        match making_progress(&gw.telemetry, every, STUCK_COMMIT).await {
            Some(true) => {
                if stalled {
                    tracing::info!("the server makes progress again; watchdog pings resume");
                    stalled = false;
                }
                notifier.notify("WATCHDOG=1");
            }
            progress => {
                if !stalled {
                    let why = if progress.is_none() {
                        "the runtime or the blocking pool did not answer the probe"
                    } else {
                        "a sink commit is stuck"
                    };
                    tracing::error!(
                        reason = why,
                        "the server makes no progress: no watchdog ping until it does (systemd restarts it after WatchdogSec)"
                    );
                    stalled = true;
                }
            }
        }
    }
}

/// A relay, built and bound, not yet reading.
#[derive(Debug)]
pub struct RelayDaemon {
    relay: Arc<Relay>,
    listener: TcpListener,
    listen: SocketAddr,
}

/// A reading relay.
#[derive(Debug)]
pub struct RunningRelay {
    stop: watch::Sender<bool>,
    running: JoinHandle<anyhow::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
    notifier: Arc<Notifier>,
}

impl RelayDaemon {
    /// Opens the checkpoints and the clients, and binds the metrics address.
    pub async fn build(config: RelayConfig) -> anyhow::Result<RelayDaemon> {
        let listen = config.listen;
        let relay = Relay::new(config).await?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        Ok(RelayDaemon {
            relay,
            listener,
            listen,
        })
    }

    /// Serves `/metrics`, reads the shards, and tells systemd the relay is ready.
    pub fn spawn(self) -> RunningRelay {
        let RelayDaemon {
            relay,
            listener,
            listen,
        } = self;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(crate::relay::serve_metrics(
            relay.clone(),
            listener,
            stop_rx.clone(),
        ))];
        let c = relay.config();
        tracing::info!(
            stream = %c.stream,
            target = %c.target.url,
            checkpoints = ?c.checkpoints,
            %listen,
            "edge-gateway relay running"
        );
        let running = tokio::spawn(relay.clone().run(stop_rx));
        let notifier = Arc::new(Notifier::from_env());
        tasks.extend(notifier.spawn_watchdog());
        notifier.notify("READY=1");
        RunningRelay {
            stop,
            running,
            tasks,
            notifier,
        }
    }
}

impl RunningRelay {
    /// Waits for SIGTERM or SIGINT.
    pub async fn wait(&self) {
        if let Some(mut signals) = handlers(false) {
            signals.until_stop(async |_| {}).await;
        }
    }

    /// The deadline a drain should get: [`RELAY_DRAIN_DEADLINE`].
    pub fn deadline(&self) -> Duration {
        RELAY_DRAIN_DEADLINE
    }

    /// Stops the shard readers; their records in flight are not checkpointed and come
    /// again after a restart. Waits for them until `deadline`.
    pub async fn drain(self, deadline: Duration) -> anyhow::Result<()> {
        self.notifier.notify("STOPPING=1");
        tracing::info!(
            "stopping: the records in flight are not checkpointed and come again after a restart"
        );
        let _ = self.stop.send(true);
        let result = match tokio::time::timeout(deadline, self.running).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(anyhow::anyhow!("the relay task failed: {e}")),
            Err(_) => Err(anyhow::anyhow!(
                "the shard readers did not stop within {deadline:?}"
            )),
        };
        for task in self.tasks {
            task.abort();
        }
        result
    }
}

/// The signal handlers (SIGHUP too with `hangup`), or `None` (logged) when they cannot be
/// installed: the daemon then stops at once rather than run without a way to stop it
/// cleanly.
fn handlers(hangup: bool) -> Option<Signals> {
    match Signals::install(hangup, false) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers; stopping");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_fails_while_the_blocking_pool_or_a_commit_is_wedged() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let t = Telemetry::default();
            let long = Duration::from_secs(60);
            assert_eq!(making_progress(&t, long, long).await, Some(true));
            // The one blocking thread never comes back: the probe does not either.
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let wedged = tokio::task::spawn_blocking(move || {
                let _ = wait.recv();
            });
            let short = Duration::from_millis(300);
            assert_eq!(making_progress(&t, short, long).await, None);
            release.send(()).expect("release");
            wedged.await.expect("wedged task");
            assert_eq!(making_progress(&t, long, long).await, Some(true));
            // A commit under way past the bound, none ending: no progress.
            let commit = t.commit_begins("metrics", "t");
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(
                making_progress(&t, long, Duration::from_millis(10)).await,
                Some(false)
            );
            drop(commit);
            assert_eq!(
                making_progress(&t, long, Duration::from_millis(10)).await,
                Some(true)
            );
        });
    }
}
