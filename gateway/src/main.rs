//! `edge-gateway --config FILE` runs the gateway; `edge-gateway validate --config FILE`
//! checks a config and exits 0, or 1 with every problem; `edge-gateway relay --config
//! FILE` runs the Kinesis → remote_write relay from the file's `relay` block.
//! `edge-gateway spool cat DIR` prints a file sink's spool and `edge-gateway tap --tenant
//! T` a tenant's records as committed, as NDJSON (`edge_gateway::tools`).

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
    /// Read a file sink's spool.
    Spool {
        #[command(subcommand)]
        command: SpoolCommand,
    },
    /// Stream one tenant's records as they are committed (after the policy and
    /// tokenization), as NDJSON, from the admin port's /tap.
    Tap {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// One signal only (default: all).
        #[arg(long, value_parser = ["metrics", "logs", "traces"])]
        signal: Option<String>,
        /// End after this many records (series, log documents or spans).
        #[arg(long)]
        limit: Option<u64>,
        /// The admin address (default: --config's admin_listen, else 127.0.0.1:9743).
        #[arg(long)]
        admin: Option<String>,
    },
}

/// What runs with a config.
enum Daemon {
    Gateway,
    Validate,
    Relay,
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Print the spool as NDJSON: one line per series, log document or span, with its
    /// tenant, segment and offset. Exit 1 if a record is torn or does not decode.
    Cat {
        /// The file sink's `dir` (or one stream's directory under it).
        dir: PathBuf,
        /// One stream only (default: every stream present).
        #[arg(long, value_parser = ["metrics", "logs", "traces"])]
        stream: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The tools first: they need no config and log nothing.
    let daemon = match cli.command {
        Some(Command::Spool {
            command: SpoolCommand::Cat { dir, stream },
        }) => return edge_gateway::tools::spool_cat::main(&dir, stream.as_deref()),
        Some(Command::Tap {
            tenant,
            signal,
            limit,
            admin,
        }) => {
            let ask = edge_gateway::tools::tap::Ask {
                tenant,
                signal,
                limit,
            };
            return edge_gateway::tools::tap::main(&ask, admin.as_deref(), cli.config.as_deref());
        }
        Some(Command::Validate) => Daemon::Validate,
        Some(Command::Relay) => Daemon::Relay,
        None => Daemon::Gateway,
    };
    edge_gateway::daemon::log_to_stderr();
    let Some(config) = cli.config else {
        eprintln!("edge-gateway: give --config FILE");
        return ExitCode::from(2);
    };
    let (who, result) = match daemon {
        Daemon::Validate => match edge_gateway::server::load_live(&config) {
            Ok(live) => {
                println!("{}: ok (sha256 {})", config.display(), live.hash);
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        },
        Daemon::Relay => match edge_gateway::config::load_relay(&config) {
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
        Daemon::Gateway => (
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
