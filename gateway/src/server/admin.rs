//! The admin listener (`admin_listen`): plain HTTP/1.1, no client certificate, for load
//! balancers, scrapers and SREs: `/healthz`, `/ready` and `/metrics` (answered by
//! [`super::handle_admin`]) and `/tap` (a live stream, [`super::tap`]).

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Either;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Gateway;
use super::tap::AdminBody;

/// Answers one admin request from `peer`. `/tap` is served to loopback peers only: the
/// admin port has no authentication and the shipped config binds it to every address
/// (for load balancers and scrapers), and a tap shows every tenant's records (tokenized,
/// but log text and values all the same). SREs run `edge-gateway tap` on the host.
async fn handle(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<AdminBody> {
    if req.uri().path() == "/tap" {
        if !peer.ip().is_loopback() {
            let mut r = http::Response::new(Either::Left(http_body_util::Full::from(
                "/tap is served to loopback clients only: run `edge-gateway tap` on the gateway's host\n",
            )));
            *r.status_mut() = http::StatusCode::FORBIDDEN;
            return r;
        }
        return super::tap::open(&gw, &req);
    }
    super::handle_admin(gw, req).await.map(Either::Left)
}

/// Serves the admin port until `stop` turns true; connections open then (a tap) end with
/// the process.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, stop: watch::Receiver<bool>) {
    edge_daemon_kit::serve::serve_http1(listener, stop, "admin", move |req, peer| {
        handle(gw.clone(), peer, req)
    })
    .await;
}
