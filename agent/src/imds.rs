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
