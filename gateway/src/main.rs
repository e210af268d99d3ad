//! `edge-gateway --config FILE` runs the gateway; `edge-gateway validate --config FILE`
//! checks a config and exits 0, or 1 with every problem; `edge-gateway relay --config
//! FILE` runs the Kinesis → remote_write relay from the file's `relay` block.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edge-gateway",
    version,
    about = "The edgepipe regional ingest gateway"
)]
struct Cli {
    /// The gateway's YAML config.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config: exit 0, or 1 with every problem, one per line.
    Validate,
    /// Run the relay: the `relay` block's Kinesis stream to its remote_write target.
    Relay,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_GATEWAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Some(config) = cli.config else {
        eprintln!("edge-gateway: give --config FILE");
        return ExitCode::from(2);
    };
    match cli.command {
        Some(Command::Validate) => match edge_gateway::server::load_live(&config) {
            Ok(live) => {
                println!("{}: ok (sha256 {})", config.display(), live.hash);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Some(Command::Relay) => relay(&config),
        None => run(&config),
    }
}

fn relay(config: &std::path::Path) -> ExitCode {
    let relay_config = match edge_gateway::config::load_relay(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("edge-relay")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edge-gateway relay: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let listen = relay_config.listen;
        let relay = match edge_gateway::relay::Relay::new(relay_config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("edge-gateway relay: {e:#}");
                return ExitCode::from(1);
            }
        };
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("edge-gateway relay: cannot listen on {listen}: {e}");
                return ExitCode::from(1);
            }
        };
        tokio::spawn(edge_gateway::relay::serve_metrics(relay.clone(), listener));
        let c = relay.config();
        tracing::info!(
            stream = %c.stream,
            target = %c.target.url,
            instance = c.instance_index,
            of = c.instance_count,
            %listen,
            "edge-gateway relay running"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(relay.clone().run(stop_rx));
        let notifier = Arc::new(edge_sd_notify::Notifier::from_env());
        if let Some(every) = notifier.watchdog_interval() {
            let notifier = notifier.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    notifier.notify("WATCHDOG=1");
                }
            });
        }
        notifier.notify("READY=1");
        wait_for_stop().await;
        notifier.notify("STOPPING=1");
        tracing::info!(
            "stopping: the records in flight are not checkpointed and come again after a restart"
        );
        let _ = stop_tx.send(true);
        match running.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("edge-gateway relay: {e:#}");
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("edge-gateway relay: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn run(config: &std::path::Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("edge-gateway")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edge-gateway: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let gw = match edge_gateway::server::Gateway::new(config).await {
            Ok(gw) => gw,
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::from(1);
            }
        };
        let addr = gw.live().config.listen;
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("edge-gateway: cannot listen on {addr}: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!(%addr, tls = gw.live().tls.is_some(), "edge-gateway listening");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(edge_gateway::server::serve(gw.clone(), listener, stop_rx));
        let notifier = Arc::new(edge_sd_notify::Notifier::from_env());
        tokio::spawn(housekeeping(gw.clone(), notifier.clone()));
        notifier.notify("READY=1");
        wait_for_signals(&gw).await;
        tracing::info!("stopping: no new connections; in-flight requests get the grace period");
        notifier.notify("STOPPING=1");
        let _ = stop_tx.send(true);
        let _ = server.await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Every second: the overload controller and the gauges, and systemd's watchdog (so a
/// wedged runtime is restarted); every two, a look at the config and TLS files.
async fn housekeeping(
    gw: Arc<edge_gateway::server::Gateway>,
    notifier: Arc<edge_sd_notify::Notifier>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    let watchdog = notifier.watchdog_interval().is_some();
    loop {
        tick.tick().await;
        gw.overload_tick();
        if watchdog {
            notifier.notify("WATCHDOG=1");
        }
        n += 1;
        if n.is_multiple_of(2) {
            let g = gw.clone();
            let _ = tokio::task::spawn_blocking(move || g.reload(false)).await;
        }
    }
}

async fn wait_for_signals(gw: &Arc<edge_gateway::server::Gateway>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stopping");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                let g = gw.clone();
                let _ = tokio::task::spawn_blocking(move || g.reload(true)).await;
            }
        }
    }
}
