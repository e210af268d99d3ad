//! A remote_write client: POSTs snappy `WriteRequest`s to a Prometheus-compatible
//! endpoint (a stock Prometheus, Mimir, Amazon Managed Prometheus) and says what the
//! answer means for the caller.
//!
//! - **Transport**: pooled keep-alive connections, HTTP/2 where the endpoint offers it
//!   (ALPN), over rustls with the system's roots or a configured CA, and a client
//!   certificate for mTLS.
//! - **SigV4**: with `sigv4`, every request is signed (AMP: service `aps`) with
//!   credentials from the default AWS chain (environment, profile, web identity,
//!   instance role). Credentials are cached until five minutes before they expire.
//! - **Answers** follow the remote_write spec: 2xx accepted; 429 and 5xx (and a
//!   transport error) are worth retrying, after `Retry-After` if the endpoint sent one;
//!   any other 4xx is final: retrying the same bytes cannot succeed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use edge_daemon_kit::pem;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{ClientTls, Sigv4, Target};

/// How long one request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest `Retry-After` obeyed.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Bytes of an error answer kept for the reason.
const MAX_REASON_BYTES: usize = 512;

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the endpoint has the samples.
    Accepted,
    /// 429, 5xx or no answer: send the same bytes again, not before `after` if given.
    Retry {
        /// The endpoint's `Retry-After`, capped at [`MAX_RETRY_AFTER`].
        after: Option<Duration>,
        /// Status and message, for logs.
        reason: String,
    },
    /// Another 4xx: the request can never be accepted as it is.
    Rejected {
        /// The status.
        status: u16,
        /// The endpoint's message.
        reason: String,
    },
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for one endpoint.
#[derive(Clone)]
pub struct Forwarder {
    client: HttpsClient,
    uri: http::Uri,
    signer: Option<Arc<Signer>>,
    /// Content type and encoding (and protocol headers) of every request.
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// The remote_write request headers.
fn remote_write_headers() -> Vec<(http::HeaderName, http::HeaderValue)> {
    vec![
        (
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-protobuf"),
        ),
        (
            http::header::CONTENT_ENCODING,
            http::HeaderValue::from_static("snappy"),
        ),
        (
            http::HeaderName::from_static("x-prometheus-remote-write-version"),
            http::HeaderValue::from_static("0.1.0"),
        ),
    ]
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("uri", &self.uri)
            .field("sigv4", &self.signer.as_ref().map(|s| &s.settings))
            .finish()
    }
}

impl Forwarder {
    /// A client for `target`: reads its TLS files and, with SigV4, sets up the AWS
    /// credential chain (on the current runtime).
    pub async fn new(target: &Target) -> anyhow::Result<Forwarder> {
        Forwarder::with_headers(target, remote_write_headers()).await
    }

    /// A client for `target` whose requests carry `headers` (another protocol's content
    /// type and encoding: the traces sink's OTLP/HTTP).
    pub async fn with_headers(
        target: &Target,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    ) -> anyhow::Result<Forwarder> {
        let uri: http::Uri = target
            .url
            .parse()
            .map_err(|e| anyhow::anyhow!("url {:?}: {e}", target.url))?;
        let tls = client_tls(target.tls.as_ref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let signer = match &target.sigv4 {
            Some(settings) => Some(Arc::new(Signer::new(settings.clone()).await)),
            None => None,
        };
        Ok(Forwarder {
            client,
            uri,
            signer,
            headers,
        })
    }

    /// The endpoint.
    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// Whether the endpoint answers at all (any HTTP status to a `GET`): for `/ready`.
    pub async fn probe(&self) -> bool {
        let Ok(request) = http::Request::get(self.uri.clone()).body(Full::new(Bytes::new())) else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.client.request(request)).await,
            Ok(Ok(_))
        )
    }

    /// POSTs one body (a snappy-compressed `WriteRequest`, or what the headers given
    /// to [`Forwarder::with_headers`] say).
    pub async fn send(&self, body: Bytes) -> Outcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(body)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retry {
                after: None,
                reason: format!("no answer within {REQUEST_TIMEOUT:?}"),
            },
        }
    }

    async fn send_inner(&self, body: Bytes) -> Outcome {
        let mut builder = http::Request::post(self.uri.clone());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let mut request = match builder
            .header(
                http::header::USER_AGENT,
                concat!("edge-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body.clone()))
        {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Rejected {
                    status: 0,
                    reason: format!("cannot build the request: {e}"),
                };
            }
        };
        if let Some(signer) = &self.signer
            && let Err(reason) = signer.sign(&mut request, &body).await
        {
            return Outcome::Retry {
                after: None,
                reason,
            };
        }
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("{}: {e}", self.uri),
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            // Drain the (usually empty) body so the connection goes back to the pool.
            let _ = Limited::new(response.into_body(), 64 << 10).collect().await;
            return Outcome::Accepted;
        }
        let after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = match Limited::new(response.into_body(), 64 << 10).collect().await {
            Ok(b) => {
                let b = b.to_bytes();
                let cut = b.len().min(MAX_REASON_BYTES);
                String::from_utf8_lossy(&b[..cut]).trim().to_string()
            }
            Err(_) => String::new(),
        };
        let reason = format!("{} {}: {text}", status.as_u16(), self.uri);
        if status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Outcome::Retry { after, reason }
        } else {
            Outcome::Rejected {
                status: status.as_u16(),
                reason,
            }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    edge_daemon_kit::retry::parse_retry_after(value, SystemTime::now(), MAX_RETRY_AFTER)
}

fn client_tls(tls: Option<&ClientTls>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match tls.and_then(|t| t.ca.as_ref()) {
        Some(ca) => {
            roots = pem::roots(ca).map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system bundle may hold a certificate rustls cannot use; skip it.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                tracing::warn!(
                    "no system CA certificates found ({} errors): https endpoints will fail unless tls.ca is set",
                    found.errors.len()
                );
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let config = match tls.and_then(|t| t.cert.as_ref().zip(t.key.as_ref())) {
        Some((cert, key)) => {
            let chain =
                pem::certificates(cert).map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
            let key =
                pem::private_key(key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// SigV4 signing with cached credentials from the default chain.
struct Signer {
    settings: Sigv4,
    provider: Option<SharedCredentialsProvider>,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

/// Credentials are renewed this long before they expire.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);

impl Signer {
    async fn new(settings: Sigv4) -> Signer {
        let sdk = crate::aws::sdk_config(&settings.region, None).await;
        let provider = sdk.credentials_provider();
        if provider.is_none() {
            tracing::warn!("SigV4: the AWS credential chain has no provider; requests will fail");
        }
        Signer {
            settings,
            provider,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    async fn credentials(&self) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expiry()
                .is_none_or(|e| e > SystemTime::now() + CREDENTIALS_MARGIN);
            if fresh {
                return Ok(c.clone());
            }
        }
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| "SigV4: no AWS credential provider".to_string())?;
        let fresh = provider
            .provide_credentials()
            .await
            .map_err(|e| format!("SigV4: no AWS credentials: {e}"))?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    async fn sign(
        &self,
        request: &mut http::Request<Full<Bytes>>,
        body: &[u8],
    ) -> Result<(), String> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let credentials = self.credentials().await?;
        let identity = credentials.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.settings.region)
            .name(&self.settings.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("SigV4: {e}"))?
            .into();
        let uri = request.uri().to_string();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            &uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("SigV4: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("SigV4: {e}"))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon"), None);
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = parse_retry_after(&later).expect("a date");
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }
}
