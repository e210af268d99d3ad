//! A stock Prometheus (Debian's `prometheus` package, or `EDGE_PROMETHEUS`) with its
//! remote-write receiver and native histograms on, for interop tests: started in a
//! directory, stopped on drop, queried with PromQL.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus with its data and log in `dir`, and waits until it is ready.
    ///
    /// Panics with what to install when the binary is missing.
    pub async fn start(dir: &Path) -> Prometheus {
        Prometheus::start_with(dir, "global: { scrape_interval: 15s }\n").await
    }

    /// [`Prometheus::start`] with `config` as its `prometheus.yml` (scrape jobs, rule
    /// files: paths in it are relative to `dir`).
    pub async fn start_with(dir: &Path, config: &str) -> Prometheus {
        let binary = std::env::var("EDGE_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config_text = config;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text).expect("write config");
        let log = dir.join("prometheus.log");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--enable-feature=native-histograms")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{binary}` ({e}): this test needs a stock Prometheus; install \
                     Debian's package (apt-get install prometheus) or set EDGE_PROMETHEUS, as \
                     scripts/test does"
                )
            });
        let prometheus = Prometheus { child, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !matches!(crate::procs::http_get(port, "/-/ready").await, Ok((200, _))) {
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready; its log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prometheus
    }

    /// Its remote-write receiver.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    /// A GET of the HTTP API (`/api/v1/…`): its JSON `data`.
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = crate::procs::http_get(self.port, path)
            .await
            .expect("Prometheus answers");
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
        v["data"].clone()
    }

    /// An instant query's status and body, whatever they are (for queries that may not
    /// parse).
    pub async fn try_query(&self, promql: &str) -> (u16, serde_json::Value) {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = crate::procs::http_get(self.port, &path)
            .await
            .expect("Prometheus answers");
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The `data.result` array of an instant query, once.
    pub async fn query_once(&self, promql: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = crate::procs::http_get(self.port, &path)
            .await
            .expect("Prometheus answers");
        assert_eq!(
            status,
            200,
            "query {promql}: {}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
        v["data"]["result"].clone()
    }

    /// Runs an instant query until it returns a sample: the first one's value and
    /// labels. Panics after `timeout`.
    pub async fn query(&self, promql: &str, timeout: Duration) -> (f64, serde_json::Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query_once(promql).await;
            if let Some(first) = result.as_array().and_then(|r| r.first()) {
                let value = first["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok())
                    .expect("a numeric value");
                return (value, first["metric"].clone());
            }
            assert!(
                Instant::now() < deadline,
                "no result for {promql} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs an instant query until its first sample has the value `want` (the data
    /// may arrive in several writes); the labels. Panics after `timeout`, naming the
    /// last value seen.
    pub async fn query_until(
        &self,
        promql: &str,
        want: f64,
        timeout: Duration,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let result = self.query_once(promql).await;
            if let Some(first) = result.as_array().and_then(|r| r.first()) {
                let value = first["value"][1]
                    .as_str()
                    .and_then(|s| s.parse::<f64>().ok());
                if value == Some(want) {
                    return first["metric"].clone();
                }
                last = value;
            }
            assert!(
                Instant::now() < deadline,
                "{promql} is not {want} within {timeout:?} (last: {last:?})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
