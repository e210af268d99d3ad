//! For the gateway's tests: a CA with server and client certificates made per test,
//! the real `edge-gateway` binary as a child process, and an mTLS client.

#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use edge_schema::proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prost::Message;

pub use edge_tests::pki::ClientCert;

/// The workspace's test CA with the files a gateway needs (`{name}-ca.crt`,
/// `{name}-server.crt`, `{name}-server.key`).
pub struct Pki(edge_tests::pki::Pki);

impl std::ops::Deref for Pki {
    type Target = edge_tests::pki::Pki;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        Pki(edge_tests::pki::Pki::with_prefix(dir, name).expect("test CA"))
    }

    /// A client certificate with CN `cn` and, if given, a URI SAN.
    pub fn client(&self, cn: &str, uri: Option<&str>) -> ClientCert {
        self.0.client_with_uri(cn, uri).expect("client certificate")
    }
}

pub use edge_tests::procs::free_port;

/// The real gateway binary, running.
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    pub spool: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config for a gateway on loopback with mTLS from `pki` named `name`, a file sink in
/// `dir/spool`, and `tenants` (YAML lines under `tenants:`).
pub fn config_text(dir: &Path, port: u16, tenants: &str) -> String {
    format!(
        "listen: 127.0.0.1:{port}\n\
         tokenize: {{ key_file: {d}/tokenize.key }}\n\
         tls: {{ cert: {d}/test-server.crt, key: {d}/test-server.key, client_ca: {d}/test-ca.crt }}\n\
         identities: {{ spiffe_trust_domain: obs.internal, subjects: {{ \"CN=gs-*\": game }} }}\n\
         tenants:\n{tenants}\n\
         fleet: {{ cadence: 10s }}\n\
         sinks: {{ metrics: {{ kind: file, dir: {d}/spool }}, logs: {{ kind: file, dir: {d}/spool }} }}\n",
        d = dir.display()
    )
}

impl Gateway {
    /// Writes `config` to `dir/gateway.yaml` and starts the gateway on `port`.
    pub fn start(dir: &Path, port: u16, config: &str) -> Gateway {
        Self::start_with_env(dir, port, config, &[])
    }

    /// [`Gateway::start`] with extra environment variables.
    pub fn start_with_env(dir: &Path, port: u16, config: &str, env: &[(&str, &str)]) -> Gateway {
        let file = dir.join("gateway.yaml");
        edge_tests::pki::write_test_tokenize_key(dir).expect("tokenize key");
        std::fs::write(&file, config).expect("config");
        let log = dir.join("gateway.log");
        let child = Command::new(env!("CARGO_BIN_EXE_edge-gateway"))
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start edge-gateway");
        let gw = Gateway {
            child,
            port,
            config: file,
            log,
            spool: dir.join("spool"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway did not listen: {}",
                gw.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// An answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// A TLS config presenting `client` (or nothing) and trusting `ca_der`.
pub fn tls_config(ca_der: &[u8], client: Option<&ClientCert>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.to_vec().into()).expect("CA");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                vec![c.cert.clone().into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(c.key.clone().into()),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// One HTTP/2 connection over TLS.
pub struct Client {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
}

impl Client {
    /// Connects; an error is the handshake's (or the first request's) refusal.
    pub async fn connect(port: u16, tls: Arc<rustls::ClientConfig>) -> Result<Client, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Client { send })
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        self.send.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Pushes `request` as remote_write.
    pub async fn push(&mut self, request: &WriteRequest, extra: &[(&str, &str)]) -> Answer {
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .expect("snappy");
        let mut headers = vec![
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "snappy"),
        ];
        headers.extend_from_slice(extra);
        self.request("POST", "/api/v1/push", &headers, body)
            .await
            .expect("push")
    }

    /// A gauge or counter from `/metrics` (exact series text).
    pub async fn metric(&mut self, series: &str) -> Option<f64> {
        let a = self
            .request("GET", "/metrics", &[], Vec::new())
            .await
            .ok()?;
        a.body
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }
}

/// A series `name{labels}` with one sample now.
pub fn series(name: &str, labels: &[(&str, &str)], value: f64) -> TimeSeries {
    let mut l = vec![Label {
        name: "__name__".into(),
        value: name.into(),
    }];
    l.extend(labels.iter().map(|(n, v)| Label {
        name: (*n).into(),
        value: (*v).into(),
    }));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    TimeSeries {
        labels: l,
        samples: vec![Sample {
            value,
            timestamp: now,
        }],
        ..Default::default()
    }
}

/// Every series in the metrics spool, decoded.
pub fn spooled_series(spool: &Path) -> Vec<(String, TimeSeries)> {
    let (records, _) = edge_gateway::sink::file::read_spool(spool, "metrics").expect("spool");
    records
        .into_iter()
        .flat_map(|r| {
            let req = WriteRequest::decode(r.data.as_slice()).expect("WriteRequest in the spool");
            req.timeseries.into_iter().map(move |s| (r.key.clone(), s))
        })
        .collect()
}

pub use edge_tests::moto::{AWS_TEST_ENV, Moto};
pub use edge_tests::proxy::serve_fn;

/// The JSON shape of a batch put: the target's suffix, the request's list of records,
/// the answer's failure count, and the answer's per-record list.
#[derive(Clone, Copy)]
pub struct BatchPut {
    pub target: &'static str,
    pub records: &'static str,
    pub failed_count: &'static str,
    pub answers: &'static str,
}

pub const KINESIS_PUT: BatchPut = BatchPut {
    target: "PutRecords",
    records: "Records",
    failed_count: "FailedRecordCount",
    answers: "Records",
};

pub const FIREHOSE_PUT: BatchPut = BatchPut {
    target: "PutRecordBatch",
    records: "Records",
    failed_count: "FailedPutCount",
    answers: "RequestResponses",
};

/// A proxy that wraps moto: for the first `failing` batch puts of `shape`, only every
/// other record goes through and the rest are answered with a throttling error.
pub async fn half_failing_proxy(
    port: u16,
    moto: u16,
    shape: BatchPut,
    failing: Arc<AtomicU32>,
    injected: Arc<AtomicU32>,
) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("proxy bind");
    serve_fn(listener, move |parts, body| {
        let failing = failing.clone();
        let injected = injected.clone();
        async move {
            let fail_now = amz_target(&parts).ends_with(shape.target)
                && failing
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if !fail_now {
                return Ok(forward(moto, parts, body.to_vec()).await);
            }
            let mut json: serde_json::Value =
                serde_json::from_slice(&body).expect("a JSON batch put body");
            let all = json[shape.records].as_array().cloned().unwrap_or_default();
            let kept: Vec<serde_json::Value> = all.iter().skip(1).step_by(2).cloned().collect();
            // Nothing kept: moto is not asked at all (an empty batch would still write an
            // empty object).
            let (status, answer) = if kept.is_empty() {
                (http::StatusCode::OK, serde_json::json!({}))
            } else {
                json[shape.records] = serde_json::Value::Array(kept);
                let upstream = forward(moto, parts, serde_json::to_vec(&json).expect("json")).await;
                let status = upstream.status();
                let bytes = upstream
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                (status, serde_json::from_slice(&bytes).unwrap_or_default())
            };
            let ok = answer[shape.answers]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut ok = ok.into_iter();
            let mut merged = Vec::new();
            let mut failed = 0;
            for i in 0..all.len() {
                // Odd records pass, even ones fail: a call of one record fails whole.
                if i % 2 == 1 {
                    merged.push(ok.next().unwrap_or_default());
                } else {
                    failed += 1;
                    merged.push(serde_json::json!({
                        "ErrorCode": "ProvisionedThroughputExceededException",
                        "ErrorMessage": "injected by the test proxy",
                    }));
                }
            }
            injected.fetch_add(failed, Ordering::Relaxed);
            let mut out = answer.clone();
            out[shape.failed_count] = serde_json::json!(failed);
            out[shape.answers] = serde_json::Value::Array(merged);
            let mut resp = http::Response::new(Full::new(Bytes::from(
                serde_json::to_vec(&out).expect("json"),
            )));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            Ok(resp)
        }
    })
    .await;
}

/// The AWS JSON API call a request makes (`X-Amz-Target`, say
/// `Kinesis_20131202.PutRecords`), empty if none.
pub fn amz_target(parts: &http::request::Parts) -> &str {
    parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// [`edge_tests::proxy::forward`], for tests: panics if the upstream does not answer.
pub async fn forward(
    upstream: u16,
    parts: http::request::Parts,
    body: Vec<u8>,
) -> http::Response<Full<Bytes>> {
    edge_tests::proxy::forward(upstream, parts, body)
        .await
        .expect("the upstream answers")
}
