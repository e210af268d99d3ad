//! `edge-agent`: the per-host telemetry daemon.
//!
//! `edge-agent --config FILE` runs it; `edge-agent validate --config FILE` checks a
//! config and exits 0, or 1 with every problem and its key path. A bad config stops the
//! daemon with the same message and exit code 1. `edge-agent migrate` translates a Fluent
//! Bit or ADOT config (`edge_agent::migrate`); `edge-agent test --config FILE CASES...`
//! runs config unit tests (`edge_agent::casetest`); `edge-agent tap` shows what leaves a
//! running agent's pipelines (`edge_agent::tap`).

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
    /// Translate a Fluent Bit or ADOT config into an agent.yaml (stdout); what could not
    /// be translated goes to stderr with its line.
    Migrate(edge_agent::migrate::Args),
    /// Run config unit tests (case files) through the production parse, filter,
    /// tokenize and gate code; exit 0 when all pass.
    Test(edge_agent::casetest::Args),
    /// Show what leaves a running agent's pipelines (after tokenization and the gate),
    /// live, as NDJSON from its loopback API.
    Tap(edge_agent::tap_client::Args),
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Migrate(migrate)) = &args.command {
        return edge_agent::migrate::run(migrate);
    }
    if let Some(Command::Tap(tap)) = &args.command {
        return edge_agent::tap_client::run(tap, args.config.as_deref());
    }
    let Some(path) = args.config else {
        eprintln!("edge-agent: --config FILE is required");
        return ExitCode::from(2);
    };
    // Parse the config: all errors at once.
    let config = match edge_agent::config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::Test(test)) = &args.command {
        return edge_agent::casetest::run(&path, &config, test);
    }
    if matches!(args.command, Some(Command::Validate)) {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // One thread: the agent shares the host with the game, and its work per cycle is
    // small. File-system work runs on a small blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-agent: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        // Build (bind, load certificates, open the queue: fail early), then run.
        let agent = edge_agent::daemon::build(config.clone()).await?;
        agent.run_reloading(path.clone(), config).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-agent: {e:#}");
            ExitCode::from(1)
        }
    }
}
