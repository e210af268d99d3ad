//! `edge-gateway --config FILE` runs the gateway; `edge-gateway validate --config FILE`
//! checks a config and exits 0, or 1 with every problem; `edge-gateway relay --config
//! FILE` runs the Kinesis → remote_write relay from the file's `relay` block.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_gateway::daemon::{GatewayDaemon, RelayDaemon};

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
    edge_gateway::daemon::log_to_stderr();
    let Some(config) = cli.config else {
        eprintln!("edge-gateway: give --config FILE");
        return ExitCode::from(2);
    };
    let (who, result) = match cli.command {
        Some(Command::Validate) => match edge_gateway::server::load_live(&config) {
            Ok(live) => {
                println!("{}: ok (sha256 {})", config.display(), live.hash);
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        },
        Some(Command::Relay) => match edge_gateway::config::load_relay(&config) {
            Ok(relay) => (
                "edge-gateway relay: ",
                runtime("edge-relay").and_then(|rt| {
                    rt.block_on(async {
                        let running = RelayDaemon::build(relay).await?.spawn();
                        running.wait().await;
                        let deadline = running.deadline();
                        running.drain(deadline).await
                    })
                }),
            ),
            Err(e) => ("", Err(anyhow::anyhow!("{e}"))),
        },
        None => (
            "",
            runtime("edge-gateway").and_then(|rt| {
                rt.block_on(async {
                    let running = GatewayDaemon::build(&config).await?.spawn();
                    running.wait().await;
                    let deadline = running.deadline();
                    running.drain(deadline).await;
                    Ok(())
                })
            }),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{who}{e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the runtime: {e}"))
}
