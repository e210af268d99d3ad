//! `edge-agent`: the per-host telemetry daemon.
//!
//! `edge-agent validate --config FILE` checks a config and exits 0, or 1 with every
//! problem and its key path. Running the daemon (`edge-agent --config FILE`) is not built
//! yet: it exits 2 and says so, rather than pretend to run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "edge-agent",
    version,
    about = "The edgepipe per-host telemetry agent."
)]
struct Args {
    /// The agent's YAML config.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a config and exit 0, or 1 with every problem.
    Validate,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(config) = args.config else {
        eprintln!("edge-agent: --config FILE is required");
        return ExitCode::from(2);
    };
    match args.command {
        Some(Command::Validate) => match edge_agent::config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        None => {
            eprintln!(
                "edge-agent: running the daemon is not built yet (only `validate` is); see the \
                 open issue \"edge-agent: the metrics path, the sender and the disk queue\""
            );
            ExitCode::from(2)
        }
    }
}
