//! Host labels from the EC2 instance metadata service (IMDSv2: a session token by
//! `PUT`, then `GET`s that present it).
//!
//! The service answers in a millisecond on EC2; off EC2 it does not exist. Each lookup
//! is bounded by [`IMDS_TIMEOUT`], and a label that cannot be read falls back to
//! [`FALLBACK_VALUE`] with a warning that names it, so the agent starts and its series
//! keep their shape. `$AWS_EC2_METADATA_SERVICE_ENDPOINT` (the AWS SDKs' variable)
//! points the lookups elsewhere, e.g. at a test server.

use std::time::Duration;

use crate::plain_http;

/// The service's address on EC2.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// Time allowed for the token and for each lookup: the link-local service answers in
/// about a millisecond, so a second means it is not there.
pub const IMDS_TIMEOUT: Duration = Duration::from_secs(1);

/// The value of a label that could not be read.
pub const FALLBACK_VALUE: &str = "unknown";

/// The metadata path of a host label the service knows.
pub fn path_for(label: &str) -> Option<&'static str> {
    Some(match label {
        "region" => "placement/region",
        "az" => "placement/availability-zone",
        "instance_type" => "instance-type",
        _ => return None,
    })
}

/// Looks up `labels` (each one [`path_for`] knows); returns `(label, value)` in the same
/// order, with [`FALLBACK_VALUE`] for any that failed.
pub async fn lookup(labels: &[String]) -> Vec<(String, String)> {
    let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|_| DEFAULT_ENDPOINT.to_string());
    lookup_at(&endpoint, labels).await
}

/// [`lookup`] against the service at `endpoint`.
pub async fn lookup_at(endpoint: &str, labels: &[String]) -> Vec<(String, String)> {
    let endpoint = endpoint.trim_end_matches('/');
    let token = plain_http::request(
        http::Method::PUT,
        &format!("{endpoint}/latest/api/token"),
        &[(
            http::header::HeaderName::from_static("x-aws-ec2-metadata-token-ttl-seconds"),
            "300",
        )],
        IMDS_TIMEOUT,
        4096,
    )
    .await;
    let token = match token {
        Ok((200, body)) => String::from_utf8(body).ok(),
        Ok((status, _)) => {
            tracing::warn!(status, "IMDSv2 refused a session token");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "IMDSv2 is not reachable");
            None
        }
    };
    let mut out = Vec::with_capacity(labels.len());
    for label in labels {
        let value = match (&token, path_for(label)) {
            (Some(token), Some(path)) => {
                let got = plain_http::request(
                    http::Method::GET,
                    &format!("{endpoint}/latest/meta-data/{path}"),
                    &[(
                        http::header::HeaderName::from_static("x-aws-ec2-metadata-token"),
                        token.trim(),
                    )],
                    IMDS_TIMEOUT,
                    4096,
                )
                .await;
                match got {
                    Ok((200, body)) => String::from_utf8(body)
                        .ok()
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty()),
                    _ => None,
                }
            }
            _ => None,
        };
        let value = value.unwrap_or_else(|| {
            tracing::warn!(
                label = %label,
                fallback = FALLBACK_VALUE,
                "host label not available from IMDSv2; set it in host_labels to fix"
            );
            FALLBACK_VALUE.to_string()
        });
        out.push((label.clone(), value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper::body::Bytes;

    /// A metadata service that wants a token, as IMDSv2 does.
    async fn fake_imds() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Never stopped: the service lives as long as the test's runtime.
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _stop = stop;
            edge_daemon_kit::serve::serve_http1(listener, stop_rx, "imds", |req, _| async move {
                let token_ok = req
                    .headers()
                    .get("x-aws-ec2-metadata-token")
                    .is_some_and(|v| v == "t0k3n");
                let (status, body) = match (req.method().as_str(), req.uri().path()) {
                    ("PUT", "/latest/api/token") => (200, "t0k3n"),
                    (_, _) if !token_ok => (401, ""),
                    ("GET", "/latest/meta-data/placement/region") => (200, "eu-west-1"),
                    ("GET", "/latest/meta-data/instance-type") => (200, "c7g.4xlarge"),
                    _ => (404, ""),
                };
                let mut r = http::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                r
            })
            .await;
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn labels_come_from_imdsv2_and_fall_back_when_missing() {
        let endpoint = fake_imds().await;
        let labels = ["region", "az", "instance_type"].map(String::from);
        let got = lookup_at(&endpoint, &labels).await;
        assert_eq!(
            got,
            vec![
                ("region".to_string(), "eu-west-1".to_string()),
                ("az".to_string(), FALLBACK_VALUE.to_string()),
                ("instance_type".to_string(), "c7g.4xlarge".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn no_service_means_the_fallback_within_a_generous_wall_clock_bound() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let started = std::time::Instant::now();
        let got = lookup_at(&format!("http://{closed}"), &["region".to_string()]).await;
        assert_eq!(
            got,
            vec![("region".to_string(), FALLBACK_VALUE.to_string())]
        );
        // A wall-clock bound, generous (ten lookups' worth): it tells "bounded by the
        // lookup timeout" from "hangs", never a slow machine from a fast one.
        assert!(
            started.elapsed() < IMDS_TIMEOUT * 10,
            "no fallback within {:?} (a generous wall-clock bound)",
            IMDS_TIMEOUT * 10
        );
    }
}
