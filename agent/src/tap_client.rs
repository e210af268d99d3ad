//! `edge-agent tap`, the client: reads `GET /tap` from a running agent's loopback API
//! and prints its lines (see [`crate::tap`] for what a tap shows and why it never holds
//! up the pipelines).

use std::process::ExitCode;

use hyper::body::Bytes;

use crate::tap::{Signal, TapRequest};

/// `edge-agent tap`: what leaves the agent's pipelines, live, as NDJSON on stdout.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only records of this source: a log source's `service` (or an OTLP record's
    /// `service.name`), a span's `service.name`, or the start of a metric name
    /// (`node_` shows `node_*`).
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Which signal to show.
    #[arg(long, value_name = "SIGNAL", default_value = "logs", value_parser = ["logs", "metrics", "traces"])]
    pub signal: String,
    /// End after this many records.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// The agent's loopback API (its `listen`); by default the `listen` of `--config`,
    /// else the default `127.0.0.1:9740`.
    #[arg(long, value_name = "ADDR")]
    pub api: Option<String>,
}

/// Runs `edge-agent tap`: 0 when the stream ended (the limit, or the agent stopping),
/// 1 when the agent cannot be reached or refuses the tap, 2 for a bad argument.
pub fn run(args: &Args, config: Option<&std::path::Path>) -> ExitCode {
    let api = match (&args.api, config) {
        (Some(api), _) => api.clone(),
        (None, Some(path)) => match crate::config::load(path) {
            Ok(config) => config.listen.to_string(),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        (None, None) => crate::config::DEFAULT_LISTEN.to_owned(),
    };
    let request = TapRequest {
        signal: Signal::parse(&args.signal).unwrap_or(Signal::Logs),
        source: args.source.clone(),
        limit: args.limit,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-agent tap: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(stream(&api, &request, &mut std::io::stdout().lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-agent tap: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Streams a tap from the agent at `api` into `out` until it ends, at most
/// `request.limit` lines. A closed `out` (a pager quit, `| head`) ends it quietly.
pub async fn stream(
    api: &str,
    request: &TapRequest,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(api)
        .await
        .with_context(|| format!("connecting to the agent's API at {api} (its `listen`)"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .with_context(|| format!("HTTP to {api}"))?;
    tokio::spawn(conn);
    let req = http::Request::get(format!("/tap?{}", request.to_query()))
        .header(http::header::HOST, api)
        .body(http_body_util::Empty::<Bytes>::new())
        .context("building the request")?;
    let response = send
        .send_request(req)
        .await
        .with_context(|| format!("GET /tap from {api}"))?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        anyhow::bail!("the agent at {api} answered {status}: {text}");
    }
    let mut lines = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("reading the tap from {api}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let mut data = &data[..];
        if let Some(limit) = request.limit {
            // The agent ends at the limit too; this only guards against an older one.
            let room = limit.saturating_sub(lines);
            let cut = data
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .nth(
                    usize::try_from(room)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(1),
                )
                .map_or(data.len(), |(i, _)| i + 1);
            data = &data[..if room == 0 { 0 } else { cut }];
        }
        lines += data.iter().filter(|b| **b == b'\n').count() as u64;
        if out.write_all(data).and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        if request.limit.is_some_and(|l| lines >= l) {
            return Ok(());
        }
    }
    Ok(())
}
