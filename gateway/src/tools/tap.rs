//! `edge-gateway tap --tenant T [--signal metrics|logs|traces] [--limit N] [--admin ADDR]`:
//! the client of the admin port's `GET /tap` ([`crate::server::tap`]). Prints the NDJSON
//! lines as they come, until the gateway ends the stream (`--limit`) or the reader goes
//! away (`| head`).

use std::io::Write;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// The admin address when neither `--admin` nor a config names one (DESIGN.md's
/// `admin_listen` port, on this host).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9743";

/// What to tap.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The tenant.
    pub tenant: String,
    /// `metrics`, `logs` or `traces`; all three when `None`.
    pub signal: Option<String>,
    /// End after this many records.
    pub limit: Option<u64>,
}

/// `s` with everything but unreserved characters percent-encoded.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The request path and query for `ask`.
pub fn path(ask: &Ask) -> String {
    let mut p = format!("/tap?tenant={}", escape(&ask.tenant));
    if let Some(s) = &ask.signal {
        p.push_str(&format!("&signal={}", escape(s)));
    }
    if let Some(n) = ask.limit {
        p.push_str(&format!("&limit={n}"));
    }
    p
}

/// The admin address to use: `--admin`, else the config's `admin_listen` (an unspecified
/// address such as 0.0.0.0 is reached on loopback), else [`DEFAULT_ADMIN`].
pub fn admin_address(
    admin: Option<&str>,
    config: Option<&std::path::Path>,
) -> Result<String, String> {
    if let Some(a) = admin {
        return Ok(a.to_string());
    }
    let Some(file) = config else {
        return Ok(DEFAULT_ADMIN.to_string());
    };
    let config = crate::config::load(file).map_err(|e| e.to_string())?;
    let Some(mut addr) = config.admin_listen else {
        return Err(format!(
            "{}: no admin_listen: the tap is served on the admin port only",
            file.display()
        ));
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr.to_string())
}

/// Streams the tap at `admin` into `out`. An answer other than 200 is an error with its
/// status and body.
pub async fn run(admin: &str, ask: &Ask, out: &mut dyn Write) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| format!("cannot connect to the admin port {admin}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("{admin}: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get(path(ask))
        .header(http::header::HOST, admin)
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("tap request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("{admin}: {e}"))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != http::StatusCode::OK {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(format!("{admin} answered {status}: {}", text.trim_end()));
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("{admin}: the stream broke: {e}"))?;
        if let Some(data) = frame.data_ref() {
            let written = out.write_all(data).and_then(|()| out.flush());
            match written {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(format!("cannot write the output: {e}")),
            }
        }
    }
    Ok(())
}

/// `edge-gateway tap`: [`run`] to stdout on a runtime of its own; exit 1 with the
/// reason on stderr when the tap could not be read.
pub fn main(
    ask: &Ask,
    admin: Option<&str>,
    config: Option<&std::path::Path>,
) -> std::process::ExitCode {
    let result = admin_address(admin, config).and_then(|admin| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        rt.block_on(run(&admin, ask, &mut std::io::stdout().lock()))
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-gateway tap: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_escaped_and_an_unspecified_admin_address_is_reached_on_loopback() {
        let ask = Ask {
            tenant: "studio x&y".into(),
            signal: Some("logs".into()),
            limit: Some(3),
        };
        assert_eq!(path(&ask), "/tap?tenant=studio%20x%26y&signal=logs&limit=3");
        assert_eq!(
            admin_address(Some("10.0.0.1:1"), None),
            Ok("10.0.0.1:1".into())
        );
        assert_eq!(admin_address(None, None), Ok(DEFAULT_ADMIN.into()));
    }
}
