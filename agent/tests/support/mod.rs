//! Shared by the agent's delivery tests: a scriptable gateway (plain HTTP or mTLS with
//! certificates generated per test), the real `edge-agent` binary as a child process,
//! and a raw remote_write client.
//!
//! The gateway stands in for `edge-gateway` (not built yet) at the protocol level: it
//! decodes every batch the agent sends, records when and over which protocol it came,
//! and answers from a script (status and headers), 204 once the script runs out.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::{Label, TimeSeries, WriteRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;

/// One batch as the gateway saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub version: http::Version,
    pub body: Vec<u8>,
    pub request: WriteRequest,
    pub client_cert: Option<Vec<u8>>,
    /// The status the gateway answered.
    pub status: u16,
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    /// Until this instant, every answer is this one (before the script).
    until: Option<(Instant, Reply)>,
    /// A sink keeps no bodies, only the count of OTLP log records.
    sink: bool,
    log_records: u64,
    batches: u64,
}

/// A running test gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    /// Plain HTTP on `addr` (port 0: any).
    pub async fn start(addr: &str, script: Vec<Reply>) -> Gateway {
        Self::start_inner(addr, script, None).await
    }

    /// HTTPS requiring a client certificate signed by `certs`' CA.
    pub async fn start_tls(certs: &Certs, script: Vec<Reply>) -> Gateway {
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            r.add(certs.ca_der.clone().into()).expect("CA");
            Arc::new(r)
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .expect("client verifier");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![certs.server_der.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(certs.server_key_der.clone().into()),
            )
            .expect("server cert");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self::start_inner("127.0.0.1:0", script, Some(Arc::new(config))).await
    }

    async fn start_inner(
        addr: &str,
        script: Vec<Reply>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Gateway {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the test gateway");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            ..State::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve(TokioIo::new(tcp), state, None).await,
                        Some(config) => {
                            let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                            else {
                                return;
                            };
                            let cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| c.as_ref().to_vec());
                            serve(TokioIo::new(stream), state, cert).await;
                        }
                    }
                });
            }
        });
        Gateway { addr, state, task }
    }

    pub fn url(&self, scheme: &str) -> String {
        match scheme {
            "https" => format!("https://localhost:{}/api/v1/push", self.addr.port()),
            _ => format!("http://{}/api/v1/push", self.addr),
        }
    }

    /// A gateway that answers 204 to everything and keeps only counts (benchmarks).
    pub async fn start_sink() -> Gateway {
        let g = Self::start_inner("127.0.0.1:0", vec![], None).await;
        g.state.lock().expect("lock").sink = true;
        g
    }

    /// Answers `reply` to every request for `period` from now, then goes on with the
    /// script.
    pub fn answer_for(&self, period: Duration, reply: Reply) {
        self.state.lock().expect("lock").until = Some((Instant::now() + period, reply));
    }

    /// OTLP log records a sink has counted, and the batches it took.
    pub fn counted(&self) -> (u64, u64) {
        let s = self.state.lock().expect("lock");
        (s.log_records, s.batches)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("lock").received.clone()
    }

    /// Waits until `done` holds for what was received, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; received {} batches",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve<I>(io: I, state: Arc<Mutex<State>>, cert: Option<Vec<u8>>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let state = state.clone();
        let cert = cert.clone();
        async move {
            let version = req.version();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            if state.lock().expect("lock").sink {
                let records = count_log_records(&body);
                let mut s = state.lock().expect("lock");
                s.log_records += records;
                s.batches += 1;
                return Ok(http::Response::new(Full::new(Bytes::new())));
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(&body)
                .unwrap_or_default();
            let request = WriteRequest::decode(raw.as_slice()).unwrap_or_default();
            let reply = {
                let mut s = state.lock().expect("lock");
                let at = Instant::now();
                let reply = match &s.until {
                    Some((deadline, reply)) if at < *deadline => reply.clone(),
                    _ => s.script.pop_front().unwrap_or(Reply::status(204)),
                };
                s.received.push(Received {
                    at,
                    version,
                    body,
                    request,
                    client_cert: cert,
                    status: reply.status,
                });
                reply
            };
            let mut response = http::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = http::StatusCode::from_u16(reply.status).expect("status");
            for (name, value) in reply.headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, service)
        .await;
}

fn count_log_records(body: &[u8]) -> u64 {
    let Ok(raw) = zstd::bulk::decompress(body, 256 << 20) else {
        return 0;
    };
    let Ok(req) = edge_schema::proto::otlp::ExportLogsServiceRequest::decode(raw.as_slice()) else {
        return 0;
    };
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len() as u64)
        .sum()
}

/// The workspace's test CA (`ca.crt`, a server certificate for `localhost`) and the
/// agent's client certificates.
pub struct Certs(edge_tests::pki::Pki);

impl std::ops::Deref for Certs {
    type Target = edge_tests::pki::Pki;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Certs {
    /// Writes `ca.crt` and a first client certificate (`agent.crt`, `agent.key`) to `dir`.
    pub fn new(dir: &Path) -> Certs {
        let certs = Certs(edge_tests::pki::Pki::new(dir).expect("test CA"));
        certs.issue_client("gs-1");
        certs
    }

    /// Issues a client certificate named `cn` into `agent.crt`/`agent.key` (replacing
    /// them, as a renewal does); returns its DER.
    pub fn issue_client(&self, cn: &str) -> Vec<u8> {
        let uri = edge_tests::pki::Pki::spiffe(cn, "game");
        let (cert, key) = self.issue(cn, Some(&uri)).expect("client cert");
        // Write the key first and the certificate last, each atomically.
        write_atomic(&self.dir.join("agent.key"), key.serialize_pem().as_bytes());
        write_atomic(&self.dir.join("agent.crt"), cert.pem().as_bytes());
        cert.der().to_vec()
    }
}

fn write_atomic(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

pub use edge_tests::procs::free_port;

/// The real agent binary, running.
pub struct Agent {
    pub child: Child,
    pub listen: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Starts `edge-agent` with `extra` YAML appended to a base config (1 s cadence, no
    /// host metrics, queue in `dir/queue`), output to `urls`.
    pub fn start(dir: &Path, urls: &[String], extra: &str) -> Agent {
        Self::start_with_output(dir, urls, extra, "")
    }

    /// [`Agent::start`] with more keys in the `output` map (e.g. `, logs_url: …`).
    pub fn start_with_output(dir: &Path, urls: &[String], extra: &str, output: &str) -> Agent {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
        let config = format!(
            "cadence: 1s\nincident_cadence: 1s\nlisten: {listen}\n\
             host_labels: {{ region: test-1, cluster: c1, build_id: b1 }}\n\
             {}queue: {{ dir: {} }}\n{extra}\noutput: {{ metrics_url: [{}]{}{output} }}\n",
            if extra.contains("host_metrics:") {
                ""
            } else {
                "host_metrics: { enabled: false }\n"
            },
            dir.join("queue").display(),
            urls.join(", "),
            if urls.iter().any(|u| u.contains("https")) {
                format!(
                    ", tls: {{ cert: {0}/agent.crt, key: {0}/agent.key, ca: {0}/ca.crt }}",
                    dir.display()
                )
            } else {
                String::new()
            }
        );
        let file = dir.join("agent.yaml");
        std::fs::write(&file, config).expect("write config");
        Self::start_with(dir, &file, listen)
    }

    /// Starts the agent again on the same config and queue.
    pub fn restart(dir: &Path, listen: SocketAddr) -> Agent {
        Self::start_with(dir, &dir.join("agent.yaml"), listen)
    }

    fn start_with(dir: &Path, file: &Path, listen: SocketAddr) -> Agent {
        let log = dir.join(format!(
            "agent-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .arg("--config")
            .arg(file)
            .env("EDGE_AGENT_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start edge-agent");
        let mut agent = Agent {
            child,
            listen,
            dir: dir.to_path_buf(),
            log,
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "edge-agent exited ({status}); its log:\n{}",
                    self.log_text()
                );
            }
            if let Some((200, _)) = self.get("/ready") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "edge-agent did not become ready; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A GET on the agent's receiver: status and body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect_timeout(&self.listen, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.listen
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }

    /// The value of one line of `/metrics` (`name{labels}` as rendered).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Pushes a raw remote_write request, as any client may.
    pub fn push(&self, request: &WriteRequest) -> u16 {
        self.push_with(request, &edge_exporter::push::REMOTE_WRITE_HEADERS)
    }

    /// Pushes a raw remote_write request with these headers.
    pub fn push_with(&self, request: &WriteRequest, headers: &[(&str, &str)]) -> u16 {
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .expect("snappy");
        let url =
            edge_exporter::http::HttpUrl::parse(&format!("http://{}/api/v1/push", self.listen))
                .expect("url");
        match edge_exporter::http::post(&url, headers, &body, Duration::from_secs(5)) {
            Ok(status) => status,
            Err(edge_exporter::http::PushError::Status { status, .. }) => status,
            Err(e) => panic!("push not answered: {e}"),
        }
    }

    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A series with one sample.
pub fn series(name: &str, labels: &[(&str, &str)], value: f64, timestamp: i64) -> TimeSeries {
    let mut l = vec![Label {
        name: "__name__".into(),
        value: name.into(),
    }];
    l.extend(labels.iter().map(|(k, v)| Label {
        name: (*k).into(),
        value: (*v).into(),
    }));
    l.sort_by(|a, b| a.name.cmp(&b.name));
    TimeSeries {
        labels: l,
        samples: vec![edge_schema::proto::prometheus::Sample { value, timestamp }],
        ..Default::default()
    }
}

/// The label value of `name` in a series.
pub fn label<'a>(ts: &'a TimeSeries, name: &str) -> Option<&'a str> {
    ts.labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

/// Every series of every batch received.
pub fn all_series(received: &[Received]) -> Vec<&TimeSeries> {
    received
        .iter()
        .flat_map(|r| r.request.timeseries.iter())
        .collect()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    edge_agent::metrics::now_ms()
}

/// Decompressed OTLP bodies.
pub fn raw_bodies(received: &[Received]) -> Vec<Vec<u8>> {
    received
        .iter()
        .map(|r| zstd::bulk::decompress(&r.body, 64 << 20).expect("zstd body"))
        .collect()
}

/// Every record's message and attributes, flattened to one string per record.
pub fn records(received: &[Received]) -> Vec<String> {
    let mut out = Vec::new();
    for raw in raw_bodies(received) {
        let req = edge_schema::proto::otlp::ExportLogsServiceRequest::decode(raw.as_slice())
            .expect("OTLP");
        for rl in req.resource_logs {
            for sl in rl.scope_logs {
                for r in sl.log_records {
                    let mut text = match r.body.and_then(|b| b.value) {
                        Some(edge_schema::proto::otlp::any_value::Value::StringValue(s)) => s,
                        _ => String::new(),
                    };
                    for kv in r.attributes {
                        if let Some(edge_schema::proto::otlp::any_value::Value::StringValue(v)) =
                            kv.value.and_then(|v| v.value)
                        {
                            text.push_str(&format!(" {}={v}", kv.key));
                        }
                    }
                    out.push(text);
                }
            }
        }
    }
    out
}
