//! Faults injected by wrapping the real thing: an HTTP/1.1 proxy in front of a local
//! server (moto, Prometheus) that passes every request through, until it is told to
//! act as if the server were unreachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Sends `parts` + `body` to `127.0.0.1:upstream` over a new HTTP/1.1 connection and
/// returns the answer, read whole.
pub async fn forward(
    upstream: u16,
    parts: http::request::Parts,
    body: Vec<u8>,
) -> Result<http::Response<Full<Bytes>>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
        .await
        .map_err(|e| format!("127.0.0.1:{upstream}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(parts.method).uri(parts.uri);
    for (k, v) in &parts.headers {
        if k != http::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string())?;
    Ok(http::Response::from_parts(parts, Full::new(bytes)))
}

/// A proxy that can cut its upstream off: while `cut` is set, new connections are
/// closed at once and requests on open ones end their connection unanswered, which
/// is what a client sees of an unreachable endpoint.
#[derive(Clone, Debug)]
pub struct Cutoff {
    /// The proxy's port on 127.0.0.1.
    pub port: u16,
    /// Set: the upstream is unreachable.
    pub cut: Arc<AtomicBool>,
    /// Requests refused while cut.
    pub refused: Arc<AtomicU64>,
}

impl Cutoff {
    /// Starts the proxy in front of `127.0.0.1:upstream`, passing everything.
    pub async fn start(upstream: u16) -> Result<Cutoff, String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let out = Cutoff {
            port,
            cut: cut.clone(),
            refused: refused.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                if cut.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::Relaxed);
                    drop(tcp);
                    continue;
                }
                let (cut, refused) = (cut.clone(), refused.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (cut, refused) = (cut.clone(), refused.clone());
                            async move {
                                if cut.load(Ordering::SeqCst) {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                    return Err("upstream cut off".to_string());
                                }
                                let (parts, body) = req.into_parts();
                                let body =
                                    body.collect().await.map_err(|e| e.to_string())?.to_bytes();
                                forward(upstream, parts, body.to_vec()).await
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(out)
    }

    /// Cuts the upstream off (`true`) or restores it.
    pub fn set(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}
