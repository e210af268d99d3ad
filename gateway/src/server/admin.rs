//! The admin listener (`admin_listen`): plain HTTP/1.1, no client certificate, for load
//! balancers, scrapers and SREs: `/healthz`, `/ready` and `/metrics` (answered by
//! [`super::handle_admin`]) and `/tap` (a live stream, [`super::tap`]).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Either;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Gateway;
use super::tap::AdminBody;

/// Answers one admin request.
async fn handle(
    gw: Arc<Gateway>,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<AdminBody> {
    if req.uri().path() == "/tap" {
        return super::tap::open(&gw, &req);
    }
    super::handle_admin(gw, req).await.map(Either::Left)
}

/// Serves the admin port until `stop` turns true; connections open then (a tap) end with
/// the process.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    edge_daemon_kit::serve::accept_loop(&listener, &mut stop, "admin", |stream, _peer| {
        let gw = gw.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, Infallible>(handle(gw, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    })
    .await;
}
