//! Request handling per route: identity, overload, body limits, decoding, the label
//! policy and quotas, the sink commit. What became of a request is an
//! [`Outcome`]; `answer.rs` turns it into the HTTP answer.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;

use super::Gateway;
use super::answer::{Answer, Outcome};
use super::live::Live;
use crate::config::TenantLimits;
use crate::decode::budget::Reservation;
use crate::decode::remote_write;
use crate::decode::{self, BodyError};
use crate::identity::{self, Identity, TENANT_HEADER};
use crate::quota::{Rate, RateCheck};
use crate::sink::Record;
use crate::telemetry::{
    GATEWAY_DECOMPRESSED_BYTES_TOTAL, GATEWAY_DISCARDED_LOG_RECORDS_TOTAL,
    GATEWAY_DISCARDED_SAMPLES_TOTAL, GATEWAY_DISCARDED_SPANS_TOTAL, GATEWAY_SPANS_ACCEPTED_TOTAL,
    GATEWAY_SPANS_TOKENIZED_TOTAL, labels,
};
use crate::telemetry::{
    GATEWAY_LOG_RECORDS_ACCEPTED_TOTAL, GATEWAY_LOG_RECORDS_TOKENIZED_TOTAL,
    GATEWAY_REQUESTS_TOTAL, GATEWAY_SAMPLE_AGE_SECONDS, GATEWAY_SAMPLES_ACCEPTED_TOTAL,
    GATEWAY_TTFB_SECONDS, TENANT_OVER_LIMIT_TOTAL,
};
use crate::validate::{KnownNames, check_label_count, check_labels, check_samples};

/// What the connection knows of its client.
#[derive(Debug)]
pub struct ConnInfo {
    /// What the client's leaf certificate names (read once, at the handshake).
    pub cert: Option<crate::identity::CertNames>,
    /// The peer address.
    pub peer: SocketAddr,
}

fn header<'a>(req: &'a http::Request<hyper::body::Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Handles one request.
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    gw.in_flight.fetch_add(1, Ordering::Relaxed);
    let live = gw.live();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let endpoint: &'static str = match path.as_str() {
        "/api/v1/push" => "push",
        "/v1/logs" => "otlp_logs",
        "/v1/traces" => "otlp_traces",
        "/api/v1/logs" => "json_logs",
        "/metrics" => "metrics",
        "/healthz" => "healthz",
        "/ready" => "ready",
        _ => "other",
    };
    // With an admin listener, the data port serves the data paths only.
    let admin_elsewhere = live.config.admin_listen.is_some();
    let outcome = match (endpoint, &method) {
        ("healthz" | "ready" | "metrics", _) if admin_elsewhere => Outcome::NoSuchEndpoint(path),
        ("healthz" | "ready" | "metrics", _) => admin_outcome(&gw, endpoint, method, path).await,
        ("push" | "otlp_logs" | "otlp_traces" | "json_logs", &http::Method::POST) => {
            ingest(&gw, &live, &conn, endpoint, req).await
        }
        ("other", _) => Outcome::NoSuchEndpoint(path),
        _ => Outcome::MethodNotAllowed { method, path },
    };
    let answer = Answer::from(outcome);
    gw.in_flight.fetch_sub(1, Ordering::Relaxed);
    let took = started.elapsed();
    let code = answer.status.to_string();
    gw.telemetry.add(
        &GATEWAY_REQUESTS_TOTAL,
        labels(&[("endpoint", endpoint), ("code", &code)]),
        1.0,
    );
    gw.telemetry.observe(
        &GATEWAY_TTFB_SECONDS,
        labels(&[("endpoint", endpoint)]),
        took.as_secs_f64(),
    );
    let shed = gw.overload_now(&live).shed;
    Ok(answer.into_response(live.config.fleet_cadence, shed))
}

/// What `/healthz`, `/ready` and `/metrics` answer, on the admin port or (without one)
/// on the data port.
async fn admin_outcome(
    gw: &Gateway,
    endpoint: &'static str,
    method: http::Method,
    path: String,
) -> Outcome {
    match (endpoint, &method) {
        ("healthz", &http::Method::GET) => Outcome::Healthy,
        ("ready", &http::Method::GET) => {
            let traces = match &gw.traces_sink {
                Some(t) => t.sink().ready().await,
                None => true,
            };
            Outcome::Ready(gw.metrics_sink.ready().await && gw.logs_sink.ready().await && traces)
        }
        ("metrics", &http::Method::GET) => Outcome::Metrics(gw.telemetry.render()),
        ("healthz" | "ready" | "metrics", _) => Outcome::MethodNotAllowed { method, path },
        _ => Outcome::NoSuchEndpoint(path),
    }
}

/// Handles one request on the admin port (plain HTTP, no client certificate):
/// `/healthz`, `/ready` and `/metrics` only, for load balancers and scrapers.
pub async fn handle_admin(
    gw: Arc<Gateway>,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let endpoint: &'static str = match path.as_str() {
        "/metrics" => "metrics",
        "/healthz" => "healthz",
        "/ready" => "ready",
        _ => "other",
    };
    let outcome = admin_outcome(&gw, endpoint, req.method().clone(), path).await;
    let answer = Answer::from(outcome);
    gw.telemetry.add(
        &GATEWAY_REQUESTS_TOTAL,
        labels(&[("endpoint", endpoint), ("code", &answer.status.to_string())]),
        1.0,
    );
    let live = gw.live();
    let shed = gw.overload_now(&live).shed;
    answer.into_response(live.config.fleet_cadence, shed)
}

fn over_limit(gw: &Gateway, tenant: &str, limit: &str) {
    gw.telemetry.add(
        &TENANT_OVER_LIMIT_TOTAL,
        labels(&[("tenant", tenant), ("limit", limit)]),
        1.0,
    );
}

fn discarded(gw: &Gateway, what: &str, tenant: &str, reason: &str, n: u64) {
    if n == 0 {
        return;
    }
    let metric = match what {
        "samples" => &GATEWAY_DISCARDED_SAMPLES_TOTAL,
        "spans" => &GATEWAY_DISCARDED_SPANS_TOTAL,
        _ => &GATEWAY_DISCARDED_LOG_RECORDS_TOTAL,
    };
    gw.telemetry.add(
        metric,
        labels(&[("tenant", tenant), ("reason", reason)]),
        n as f64,
    );
}

async fn ingest(
    gw: &Gateway,
    live: &Live,
    conn: &ConnInfo,
    endpoint: &'static str,
    req: http::Request<hyper::body::Incoming>,
) -> Outcome {
    let identity = match identity::identify(
        &live.config.identities,
        conn.cert.as_ref(),
        header(&req, "authorization"),
        header(&req, TENANT_HEADER),
    ) {
        Ok(id) => id,
        Err(e) => return Outcome::Identity(e),
    };
    let limits = live.config.limits_of(&identity.tenant).clone();
    let pressure = gw.overload_now(live);
    if pressure.everyone {
        over_limit(gw, &identity.tenant, "overload");
        return Outcome::Overloaded;
    }
    let rate = match endpoint {
        "push" => Rate::Samples,
        "otlp_traces" => Rate::Spans,
        _ => Rate::LogBytes,
    };
    // A throttled tenant is cut to a share of its rate (`quota.rs`): 429 while the cut
    // is in debt, before its body is read.
    let share = pressure.share(&identity.tenant, limits.priority);
    let cut = gw
        .quotas
        .throttle(&identity.tenant, &limits, live.config.replicas, rate, share);
    if let RateCheck::Wait(wait) = cut {
        over_limit(gw, &identity.tenant, "overload_throttle");
        return Outcome::Throttled {
            tenant: identity.tenant,
            wait,
        };
    }
    // Saturated, and as good a rank was just refused: 503 before reading the body.
    if let Err(refused) = gw.admit_early(&identity.tenant, limits.priority) {
        return refused;
    }
    if endpoint == "push"
        && let Err(why) =
            edge_schema::remote_write::check_content_type(header(&req, "content-type"))
    {
        return Outcome::UnsupportedContentType(why);
    }
    let encoding = header(&req, "content-encoding").map(str::to_string);
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max_body = live.config.limits.max_body_bytes;
    let body_timeout = live.config.limits.body_read_timeout;
    let read = crate::body::read(req.into_body(), declared, max_body);
    let Ok(read) = tokio::time::timeout(body_timeout, read).await else {
        return Outcome::BodyTimeout(body_timeout);
    };
    let body = match read {
        Ok(b) => b,
        Err(crate::body::ReadError::TooLarge { drained }) => {
            return Outcome::BodyOverLimit {
                max: max_body,
                drained,
            };
        }
        Err(crate::body::ReadError::Failed(e)) => return Outcome::BodyUnreadable(e),
    };
    let max = live.config.limits.max_decompressed_bytes;
    // The tenant's rate first, charged with what the compressed body holds at the least:
    // a tenant over it is answered before anything is decompressed.
    let first = first_charge(rate, &body, encoding.as_deref(), max);
    let check = gw
        .quotas
        .precharge(&identity.tenant, &limits, live.config.replicas, rate, first);
    if let Some(refused) = rate_refusal(gw, live, &identity.tenant, &limits, rate, check, None) {
        return refused;
    }
    // The work (decompressing, decoding, checks, building records) waits for an
    // admission slot, or is answered 503 at once (`admission.rs`). A tenant already over
    // its rate was answered above, without taking a place in the queue.
    let slot = match gw
        .admit(&live.config.admission, &identity.tenant, limits.priority)
        .await
    {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    // Decompressed bytes are reserved from the gateway-wide budget before they are
    // allocated, and held until this request's decoded data is dropped.
    let reserved = gw
        .decompress_budget
        .reservation(live.config.limits.max_decompressed_bytes_in_flight);
    // Decompressing, decoding and tokenizing run off the async runtime: a body that
    // expands to tens of megabytes must not stall the other connections, the overload
    // controller or the watchdog ping.
    let caller = Caller {
        gw,
        live,
        id: &identity,
        limits: &limits,
    };
    match endpoint {
        "push" => push(caller, &body, max, first, reserved, slot).await,
        "otlp_traces" => {
            let decoded = off_runtime(move || {
                let mut reserved = reserved;
                decode::traces_request_within(&body, encoding.as_deref(), max, &mut reserved)
                    .map(|decoded| (decoded, reserved))
            })
            .await;
            match decoded {
                Ok(((request, raw), _held)) => {
                    decompressed(gw, raw.len());
                    traces(caller, request, raw, first, slot).await
                }
                Err(e) => body_error(gw, &identity, "spans", e),
            }
        }
        "otlp_logs" => {
            let (tenant, tokenizer) = (identity.tenant.clone(), live.tokenizer.clone());
            let decoded = off_runtime(move || {
                let mut reserved = reserved;
                decode::logs_request_within(&body, encoding.as_deref(), max, &mut reserved).map(
                    |(request, raw_len)| {
                        let docs = crate::log_document::from_otlp(&request, &tenant, &tokenizer);
                        drop(request);
                        reserved.hold(documents_size(&docs.docs));
                        (docs, raw_len, reserved)
                    },
                )
            })
            .await;
            match decoded {
                Ok((docs, raw_len, _held)) => {
                    decompressed(gw, raw_len);
                    let docs = tokenized(gw, &identity.tenant, docs);
                    let bytes = (raw_len as u64, first);
                    logs(caller, docs, bytes, true, slot).await
                }
                Err(e) => body_error(gw, &identity, "log_records", e),
            }
        }
        _ => {
            let (tenant, tokenizer) = (identity.tenant.clone(), live.tokenizer.clone());
            let decoded = off_runtime(move || {
                let mut reserved = reserved;
                let raw =
                    decode::by_encoding_within(&body, encoding.as_deref(), max, &mut reserved)?;
                decode::reserve_decoded(&mut reserved, raw.len())?;
                decode::reserve_structs(&mut reserved, decode::cost::json(&raw))?;
                let len = raw.len();
                let docs = crate::log_document::from_json_batch(&raw, &tenant, &tokenizer);
                drop(raw);
                if let Ok(docs) = &docs {
                    reserved.hold(documents_size(&docs.docs));
                }
                Ok((docs, len, reserved))
            })
            .await;
            match decoded {
                Ok((Ok(docs), len, _held)) => {
                    decompressed(gw, len);
                    let docs = tokenized(gw, &identity.tenant, docs);
                    logs(caller, docs, (len as u64, first), false, slot).await
                }
                Ok((Err(e), _, _held)) => {
                    discarded(gw, "log_records", &identity.tenant, "malformed", 1);
                    Outcome::MalformedJsonLogs(e.0)
                }
                Err(e) => body_error(gw, &identity, "log_records", e),
            }
        }
    }
}

/// What a body holds at the least, in the unit of its tenant's `rate`, known before it
/// is decompressed. Log bytes: the size a zstd frame declares (what agents send), the
/// length of an uncompressed body, else the compressed length less what compression
/// framing may add (stored blocks and headers). Samples and spans: one (a request
/// carries some).
fn first_charge(rate: Rate, body: &[u8], encoding: Option<&str>, max: usize) -> u64 {
    if body.is_empty() {
        return 0;
    }
    let Rate::LogBytes = rate else {
        return 1;
    };
    let len = body.len() as u64;
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => len,
        Some("zstd") => match decode::zstd_declared_size(body) {
            Some(n) if n <= max as u64 => n,
            _ => len.saturating_sub(len / 1024 + 64),
        },
        _ => len.saturating_sub(len / 1024 + 64),
    }
}

/// What a batch of documents holds (while it commits, a request holds only that).
fn documents_size(docs: &[Vec<u8>]) -> u64 {
    let each = std::mem::size_of::<Vec<u8>>() as u64;
    docs.iter().map(|d| d.capacity() as u64 + each).sum()
}

/// Counts a body that decoded.
fn decompressed(gw: &Gateway, bytes: usize) {
    gw.telemetry.add(
        &GATEWAY_DECOMPRESSED_BYTES_TOTAL,
        String::new(),
        bytes as f64,
    );
}

/// The answer when a rate check did not pass (`None` when it did). `items` are the
/// records, samples or spans refused with it, counted when known (a request refused
/// before decoding is counted in `tenant_over_limit_total` only).
fn rate_refusal(
    gw: &Gateway,
    live: &Live,
    tenant: &str,
    limits: &TenantLimits,
    rate: Rate,
    check: RateCheck,
    items: Option<u64>,
) -> Option<Outcome> {
    let (what, limit_rate, limit_burst) = match rate {
        Rate::Samples => ("samples", "ingestion_rate", "ingestion_burst"),
        Rate::LogBytes => ("log_records", "log_bytes_rate", "log_bytes_burst"),
        Rate::Spans => ("spans", "span_rate", "span_burst"),
    };
    let limit = match &check {
        RateCheck::Ok => return None,
        RateCheck::Wait(_) => limit_rate,
        RateCheck::TooLarge { .. } => limit_burst,
    };
    over_limit(gw, tenant, limit);
    if let Some(n) = items {
        discarded(gw, what, tenant, "rate_limited", n);
    }
    let tenant = tenant.to_string();
    let replicas = f64::from(live.config.replicas);
    Some(match (rate, check) {
        (_, RateCheck::Ok) => return None,
        (Rate::Samples, RateCheck::Wait(wait)) => Outcome::SampleRate {
            tenant,
            per_second: limits.samples_rate_limit / replicas,
            wait,
        },
        (Rate::Samples, RateCheck::TooLarge { asked, burst }) => Outcome::SampleBurst {
            tenant,
            asked,
            burst,
        },
        (Rate::LogBytes, RateCheck::Wait(wait)) => Outcome::LogRate { tenant, wait },
        (Rate::LogBytes, RateCheck::TooLarge { asked, burst }) => Outcome::LogBurst {
            tenant,
            asked,
            burst,
        },
        (Rate::Spans, RateCheck::Wait(wait)) => Outcome::SpanRate {
            tenant,
            per_second: limits.span_rate_limit / replicas,
            wait,
        },
        (Rate::Spans, RateCheck::TooLarge { asked, burst }) => Outcome::SpanBurst {
            tenant,
            asked,
            burst,
        },
    })
}

/// A snappy body that declares at most this many bytes is decompressed on the runtime
/// (about 100 µs of work at the most); a larger one on the blocking pool.
pub(super) const INLINE_SNAPPY_BYTES: usize = 256 << 10;

/// Runs CPU-heavy decoding on the blocking pool; a panic there is a body that could not
/// be decoded, not a crash.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BodyError> + Send + 'static,
) -> Result<T, BodyError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(BodyError::Malformed(format!("decoding failed: {e}"))),
    }
}

/// Counts what the gateway's tokenizer did to a batch; the documents to store.
fn tokenized(gw: &Gateway, tenant: &str, docs: crate::log_document::Documents) -> Vec<Vec<u8>> {
    if docs.tokenized > 0 {
        gw.telemetry.add(
            &GATEWAY_LOG_RECORDS_TOKENIZED_TOTAL,
            labels(&[("tenant", tenant)]),
            docs.tokenized as f64,
        );
    }
    discarded(gw, "log_records", tenant, "pii_drop_detector", docs.dropped);
    docs.docs
}

fn body_error(gw: &Gateway, identity: &Identity, what: &str, e: BodyError) -> Outcome {
    if let BodyError::OverBudget(why) = e {
        over_limit(gw, &identity.tenant, "decompressed_bytes_in_flight");
        return Outcome::DecompressBudget(why);
    }
    discarded(
        gw,
        what,
        &identity.tenant,
        if matches!(e, BodyError::TooLarge(_)) {
            "too_large"
        } else {
            "malformed"
        },
        1,
    );
    Outcome::Body(e)
}

/// The series still kept.
fn kept<'s>(
    series: &'s [crate::decode::remote_write::SeriesView],
    keep: &'s [bool],
) -> impl Iterator<Item = &'s crate::decode::remote_write::SeriesView> {
    series.iter().zip(keep).filter(|(_, k)| **k).map(|(s, _)| s)
}

/// What every route's work needs of its request: the gateway, the config in force, who
/// sent it and that tenant's limits.
#[derive(Clone, Copy)]
struct Caller<'a> {
    gw: &'a Gateway,
    live: &'a Live,
    id: &'a Identity,
    limits: &'a TenantLimits,
}

/// A push's series as judged by the policy, before the quotas.
struct Judged<'r> {
    scanned: remote_write::Scanned<'r>,
    /// Each series' key among its tenant's active series.
    hashes: Vec<u64>,
    /// Whether each series passed the checks.
    keep: Vec<bool>,
    /// reason → (samples, first messages)
    refused: BTreeMap<&'static str, (u64, Vec<String>)>,
}

/// Runs `work` where it may take long: for `large` work on a multi-threaded runtime,
/// with the worker's other tasks handed to another thread meanwhile.
fn heavy<T>(large: bool, work: impl FnOnce() -> T) -> T {
    // The runtime is looked up only for large work: every push comes through here.
    let multi_thread = || {
        tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    };
    if large && multi_thread() {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Scans a decompressed push and judges each series: the label policy (only for a
/// series not known fine under this config) and its samples.
fn judge<'r>(
    caller: Caller<'_>,
    raw: &'r [u8],
    held: &mut Reservation,
) -> Result<Judged<'r>, Outcome> {
    let Caller {
        gw,
        live,
        id,
        limits,
    } = caller;
    // The scan's lists grow within the reservation; a partly accepted body is copied
    // once more (the accepted series' fields), so that is reserved too.
    if let Err(e) = decode::reserve_decoded(held, raw.len()) {
        return Err(body_error(gw, id, "samples", e));
    }
    let scanned = match remote_write::scan_series_within(raw, held) {
        Ok(s) => s,
        Err(e) => return Err(body_error(gw, id, "samples", e)),
    };
    let tenant = id.tenant.as_str();
    let mut refused: BTreeMap<&'static str, (u64, Vec<String>)> = BTreeMap::new();
    let mut keep = vec![false; scanned.series.len()];
    let mut known = KnownNames::default();
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let keys = gw.quotas.series_keys();
    // Collected by hand: a `Result` collect does not know the length and grows by doubling.
    let mut hashes = Vec::with_capacity(scanned.series.len());
    for series in &scanned.series {
        match keys.hash(raw, series) {
            Ok(h) => hashes.push(h),
            Err(e) => {
                let e = BodyError::Malformed(e.to_string());
                return Err(body_error(gw, id, "samples", e));
            }
        }
    }
    // A series active for this tenant and found fine under this config was checked when
    // it first came (and at the first push after each reload): most pushes repeat the
    // same series, and reading and checking their labels was a third of the gateway's
    // CPU. Only the others are read.
    let checked_before = gw.quotas.checked_series(
        tenant,
        limits,
        live.config.replicas,
        &hashes,
        live.generation,
    );
    let mut read = Vec::new();
    for (i, series) in scanned.series.iter().enumerate() {
        let metric = || remote_write::metric_name_in(raw, series);
        let labels_fine = if checked_before[i] {
            Ok(())
        } else if series.label_count > limits.max_label_names {
            check_label_count(metric(), series.label_count, limits)
        } else {
            if let Err(e) = remote_write::labels_in(raw, series, &mut read) {
                let e = BodyError::Malformed(e.to_string());
                return Err(body_error(gw, id, "samples", e));
            }
            check_labels(&read, &live.schema, limits, &mut known)
        };
        let checked =
            labels_fine.and_then(|()| check_samples(&scanned, series, raw, metric, now_ms, limits));
        match checked {
            Ok(()) => keep[i] = true,
            Err(d) => {
                let entry = refused.entry(d.reason).or_default();
                entry.0 += series.samples;
                if entry.1.len() < 3 {
                    entry.1.push(d.message);
                }
            }
        }
    }
    Ok(Judged {
        scanned,
        hashes,
        keep,
        refused,
    })
}

async fn push(
    caller: Caller<'_>,
    body: &Bytes,
    max: usize,
    charged: u64,
    reserved: Reservation,
    slot: super::admission::Slot<'_>,
) -> Outcome {
    let Caller {
        gw,
        live,
        id,
        limits,
    } = caller;
    // A body an agent sends (tens of KB) decompresses in tens of microseconds: handing
    // it to the blocking pool and back would cost more in wake-ups than the work. A
    // larger one goes there, so it cannot hold up the runtime's other connections.
    let inline = snap::raw::decompress_len(body).is_ok_and(|n| n <= INLINE_SNAPPY_BYTES);
    let decoded = if inline {
        let mut reserved = reserved;
        decode::snappy_within(body, max, &mut reserved).map(|raw| (raw, reserved))
    } else {
        let compressed = body.clone();
        off_runtime(move || {
            let mut reserved = reserved;
            decode::snappy_within(&compressed, max, &mut reserved).map(|raw| (raw, reserved))
        })
        .await
    };
    let (raw, mut held) = match decoded {
        Ok(r) => r,
        Err(e) => return body_error(gw, id, "samples", e),
    };
    decompressed(gw, raw.len());
    // Reading a large body's series is milliseconds of work: the runtime hands this
    // worker's other connections to another thread while it runs.
    let judged = heavy(!inline, || judge(caller, &raw, &mut held));
    let Judged {
        scanned,
        hashes,
        mut keep,
        mut refused,
    } = match judged {
        Ok(j) => j,
        Err(outcome) => return outcome,
    };
    let tenant = id.tenant.as_str();
    let samples: u64 = kept(&scanned.series, &keep).map(|s| s.samples).sum();
    let check = gw.quotas.settle(
        tenant,
        limits,
        live.config.replicas,
        Rate::Samples,
        charged,
        samples,
    );
    if let Some(refused) = rate_refusal(
        gw,
        live,
        tenant,
        limits,
        Rate::Samples,
        check,
        Some(samples),
    ) {
        return refused;
    }
    let now = Instant::now();
    let kept_hashes: Vec<u64> = hashes
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(h, _)| *h)
        .collect();
    let admitted = gw.quotas.admit_series(
        tenant,
        limits,
        live.config.replicas,
        &kept_hashes,
        live.generation,
        now,
    );
    let mut over_series = 0u64;
    let mut admitted = admitted.into_iter();
    for (i, series) in scanned.series.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        if admitted.next() == Some(false) {
            keep[i] = false;
            over_series += series.samples;
            let entry = refused.entry("per_user_series_limit").or_default();
            entry.0 += series.samples;
            if entry.1.is_empty() {
                entry.1.push(format!(
                    "tenant {tenant} is at its limit of {} active series (this replica's share); new series are refused",
                    limits.max_series / u64::from(live.config.replicas)
                ));
            }
        }
    }
    if over_series > 0 {
        over_limit(gw, tenant, "max_series");
    }
    let accepted_samples: u64 = kept(&scanned.series, &keep).map(|s| s.samples).sum();
    let accepted_series = kept(&scanned.series, &keep).count();
    if accepted_series > 0 {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let ages: Vec<f64> = kept(&scanned.series, &keep)
            .filter_map(|s| s.newest_ms)
            .map(|ts| (now_ms - ts).max(0) as f64 / 1000.0)
            .collect();
        // All accepted: the bytes as they came. Otherwise the accepted series' fields.
        let data = if accepted_series == scanned.series.len() {
            drop(scanned);
            raw
        } else {
            crate::decode::remote_write::select(&raw, &scanned, &keep)
        };
        // While it commits, the request holds only the bytes it commits.
        held.hold(data.capacity() as u64);
        let tapped = gw.taps.metrics(tenant, &data, accepted_series);
        let record = Record {
            key: format!("{tenant}/{}", id.host),
            data,
        };
        let timer = gw.telemetry.commit_begins("metrics", tenant);
        let hold = gw.admission.commit_hold(&live.config.admission);
        let result = slot
            .during(gw.metrics_sink.commit(vec![record]), hold)
            .await;
        timer.done();
        if let Err(e) = result {
            return Outcome::Sink(e);
        }
        gw.taps.publish(tapped, &gw.telemetry);
        gw.telemetry.add(
            &GATEWAY_SAMPLES_ACCEPTED_TOTAL,
            labels(&[("tenant", tenant)]),
            accepted_samples as f64,
        );
        gw.telemetry
            .observe_many(&GATEWAY_SAMPLE_AGE_SECONDS, String::new(), &ages);
    }
    if refused.is_empty() {
        return Outcome::SamplesCommitted;
    }
    let mut body = String::new();
    for (reason, (n, messages)) in &refused {
        discarded(gw, "samples", tenant, reason, *n);
        body.push_str(&format!("{reason}: {n} samples refused"));
        for m in messages {
            body.push_str(&format!("; {m}"));
        }
        body.push('\n');
    }
    body.push_str(&format!(
        "{accepted_samples} samples of the other series were accepted\n"
    ));
    Outcome::SamplesPartlyRefused(body)
}

async fn logs(
    caller: Caller<'_>,
    docs: Vec<Vec<u8>>,
    (bytes, charged): (u64, u64),
    otlp: bool,
    slot: super::admission::Slot<'_>,
) -> Outcome {
    let Caller {
        gw,
        live,
        id,
        limits,
    } = caller;
    let tenant = id.tenant.as_str();
    let n = docs.len() as u64;
    let check = gw.quotas.settle(
        tenant,
        limits,
        live.config.replicas,
        Rate::LogBytes,
        charged,
        bytes,
    );
    if let Some(refused) = rate_refusal(gw, live, tenant, limits, Rate::LogBytes, check, Some(n)) {
        return refused;
    }
    if !docs.is_empty() {
        let tapped = gw.taps.logs(tenant, &docs);
        let records = docs
            .into_iter()
            .map(|data| Record {
                key: tenant.to_string(),
                data,
            })
            .collect();
        let timer = gw.telemetry.commit_begins("logs", tenant);
        let hold = gw.admission.commit_hold(&live.config.admission);
        let result = slot.during(gw.logs_sink.commit(records), hold).await;
        timer.done();
        if let Err(e) = result {
            return Outcome::Sink(e);
        }
        gw.taps.publish(tapped, &gw.telemetry);
        gw.telemetry.add(
            &GATEWAY_LOG_RECORDS_ACCEPTED_TOTAL,
            labels(&[("tenant", tenant)]),
            n as f64,
        );
    }
    Outcome::LogsCommitted { records: n, otlp }
}

async fn traces(
    caller: Caller<'_>,
    mut request: edge_schema::proto::otlp::trace::ExportTraceServiceRequest,
    raw: Vec<u8>,
    charged: u64,
    slot: super::admission::Slot<'_>,
) -> Outcome {
    let Caller {
        gw,
        live,
        id,
        limits,
    } = caller;
    let tenant = id.tenant.as_str();
    let Some(sink) = &gw.traces_sink else {
        let n = crate::sink::traces::count_spans(&request);
        discarded(gw, "spans", tenant, "no_sink", n);
        return Outcome::NoTracesSink;
    };
    // Spans that did not come tokenized from an agent are tokenized here, as logs are.
    let scrubbed = crate::sink::traces::tokenize_unmarked(&live.tokenizer, &mut request);
    if scrubbed.tokenized > 0 {
        gw.telemetry.add(
            &GATEWAY_SPANS_TOKENIZED_TOTAL,
            labels(&[("tenant", tenant)]),
            scrubbed.tokenized as f64,
        );
    }
    discarded(gw, "spans", tenant, "pii_drop_detector", scrubbed.dropped);
    // Rewritten spans go to the sink re-encoded; untouched ones as they came.
    let raw = if scrubbed.tokenized > 0 {
        prost::Message::encode_to_vec(&request)
    } else {
        raw
    };
    let n = crate::sink::traces::count_spans(&request);
    let check = gw.quotas.settle(
        tenant,
        limits,
        live.config.replicas,
        Rate::Spans,
        charged,
        n,
    );
    if let Some(refused) = rate_refusal(gw, live, tenant, limits, Rate::Spans, check, Some(n)) {
        return refused;
    }
    if n > 0 {
        let tapped = gw.taps.traces(tenant, &raw, n);
        let records = sink.records(tenant, &request, raw);
        let timer = gw.telemetry.commit_begins("traces", tenant);
        let hold = gw.admission.commit_hold(&live.config.admission);
        let result = slot.during(sink.sink().commit(records), hold).await;
        timer.done();
        if let Err(e) = result {
            return Outcome::Sink(e);
        }
        gw.taps.publish(tapped, &gw.telemetry);
        gw.telemetry.add(
            &GATEWAY_SPANS_ACCEPTED_TOTAL,
            labels(&[("tenant", tenant)]),
            n as f64,
        );
    }
    Outcome::SpansCommitted {
        rejected_spans: scrubbed.dropped,
        error_message: scrubbed.first_drop.map_or_else(String::new, |d| {
            format!(
                "{} span(s) refused: they hold a value the PII detector {d:?} drops (tokenize.detectors)",
                scrubbed.dropped
            )
        }),
    }
}
