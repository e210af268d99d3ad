//! Faults injected by wrapping the real thing: an HTTP/1.1 proxy in front of a local
//! server (moto, Prometheus) that passes every request through, until it is told to
//! act as if the server were unreachable. [`serve_fn`] is the plain HTTP/1.1 server
//! under every such proxy and scripted endpoint of the tests.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Serves HTTP/1.1 on `listener` for good (spawn it): every connection is served by
/// [`serve_conn`] with `handler`.
pub async fn serve_fn<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<Full<Bytes>>, String>> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(serve_conn(tcp, handler.clone()));
    }
}

/// Serves HTTP/1.1 on one connection: each request's body is read whole, then
/// `handler` is given its head and body and answers it, or returns an error to end the
/// connection with no answer (what a client sees of a network that lost the answer). A
/// body that cannot be read ends the connection too, without asking `handler`.
pub async fn serve_conn<F, Fut>(tcp: tokio::net::TcpStream, handler: Arc<F>)
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<Full<Bytes>>, String>> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            handler(parts, body).await
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .await;
}

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
        let handler = Arc::new(move |parts: http::request::Parts, body: Bytes| {
            let (cut, refused) = (cut.clone(), refused.clone());
            async move {
                if cut.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::Relaxed);
                    return Err("upstream cut off".to_string());
                }
                forward(upstream, parts, body.to_vec()).await
            }
        });
        let (cut, refused) = (out.cut.clone(), out.refused.clone());
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
                tokio::spawn(serve_conn(tcp, handler.clone()));
            }
        });
        Ok(out)
    }

    /// Cuts the upstream off (`true`) or restores it.
    pub fn set(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}
