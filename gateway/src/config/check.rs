//! Validation: the raw YAML form into the typed config, every problem collected with
//! its key path (the gateway's and the relay's blocks).

use super::*;

edge_schema::daemon_validator! {
    /// Turns the raw form into the typed config, collecting every problem with its key
    /// path: the shared core (problems, variables, durations, sizes) and the gateway's keys.
    pub(super) struct Validator;
}

impl Validator<'_> {
    /// A numeric key that may be absent: its value (`${VAR}` expanded), or `None` when
    /// absent or not a number (then a problem at `path`).
    fn optional<T>(&mut self, path: &str, value: &Option<Number<T>>) -> Option<T>
    where
        T: std::str::FromStr + Copy,
    {
        let value = value.clone()?;
        let before = self.problems.len();
        let fallback = match &value {
            Number::Value(v) => *v,
            Number::Text(_) => {
                // Only returned together with a problem, which discards it below.
                let Ok(v) = "0".parse::<T>() else {
                    self.problem(path, "not a number");
                    return None;
                };
                v
            }
        };
        let v = self.number(path, Some(value), fallback);
        (self.problems.len() == before).then_some(v)
    }

    pub(super) fn validate(&mut self, raw: Raw) -> GatewayConfig {
        // Without TLS the gateway only listens on loopback (a test, the local demo): the
        // default follows, and a network address is refused below.
        let tls_off = matches!(raw.tls, Some(RawTls::Switch(false) | RawTls::Off(_)));
        let listen_given = raw.listen.is_some();
        let listen_text = raw
            .listen
            .as_deref()
            .map(|l| self.expand("listen", l))
            .unwrap_or_else(|| {
                if tls_off {
                    "127.0.0.1:8443"
                } else {
                    "0.0.0.0:8443"
                }
                .into()
            });
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    "listen",
                    format!("{listen_text:?} is not an address like 0.0.0.0:8443"),
                );
                SocketAddr::from(([0, 0, 0, 0], 8443))
            }
        };
        if tls_off && listen_given && !listen.ip().is_loopback() {
            self.problem(
                "tls",
                format!(
                    "`tls: off` with listen {listen}, which is not a loopback address: agents' \
                     data and credentials would cross the network in clear text; give \
                     {{ cert, key, client_ca }}, or listen on 127.0.0.1"
                ),
            );
        }
        let tls = match raw.tls {
            None => {
                self.problem(
                    "tls",
                    "missing: give { cert, key, client_ca }, or `tls: off` for a loopback test or the local demo",
                );
                None
            }
            Some(RawTls::Switch(on)) => {
                if on {
                    self.problem("tls", "give { cert, key, client_ca } to turn TLS on");
                }
                None
            }
            Some(RawTls::Off(word)) => {
                if word != "off" {
                    self.problem(
                        "tls",
                        format!("{word:?}: give {{ cert, key, client_ca }} or `off`"),
                    );
                }
                None
            }
            Some(RawTls::Files(f)) => {
                let client_cert_required = match f.client_auth.as_deref() {
                    None | Some("required") => true,
                    Some("optional") => false,
                    Some(other) => {
                        self.problem(
                            "tls.client_auth",
                            format!("{other:?}: use required or optional"),
                        );
                        true
                    }
                };
                Some(TlsFiles {
                    cert: PathBuf::from(self.expand("tls.cert", &f.cert)),
                    key: PathBuf::from(self.expand("tls.key", &f.key)),
                    client_ca: PathBuf::from(self.expand("tls.client_ca", &f.client_ca)),
                    client_cert_required,
                })
            }
        };
        let replicas = self.number("replicas", raw.replicas, 1);
        if replicas == 0 {
            self.problem("replicas", "must be at least 1");
        }
        let identities = self.identities(raw.identities);
        let policy = raw
            .policy
            .as_deref()
            .map(|p| PathBuf::from(self.expand("policy", p)));
        let catalog = raw
            .catalog
            .as_deref()
            .map(|c| PathBuf::from(self.expand("catalog", c)));
        let tokenize = raw
            .tokenize
            .map(|t| t.validate(&mut self.0, "tokenize"))
            .unwrap_or_default();
        if tokenize.key_file.is_none() {
            self.problem(
                "tokenize.key_file",
                "missing: the gateway tokenizes log records that arrive without an agent (the JSON API, OTLP from other clients) and never stores them untokenized; give the key file the agents use, so a value gets the same token either way",
            );
        }
        let tenants = self.tenants(&raw.tenants);
        let fleet_cadence = self.duration(
            "fleet.cadence",
            raw.fleet.cadence.as_deref(),
            Duration::from_secs(10),
        );
        let overload = self.overload(raw.overload, &tenants);
        let (metrics_sink, logs_sink, traces_sink) = match raw.sinks {
            Some(s) => (
                self.sink("sinks.metrics", s.metrics, "metrics"),
                self.sink("sinks.logs", s.logs, "logs"),
                s.traces.map(|t| self.sink("sinks.traces", t, "traces")),
            ),
            None => {
                self.problem("sinks", "missing: give sinks.metrics and sinks.logs (kind: kinesis, firehose, remote_write or file)");
                let dir = PathBuf::from("/var/lib/edge-gateway/spool");
                (
                    SinkConfig::File { dir: dir.clone() },
                    SinkConfig::File { dir },
                    None,
                )
            }
        };
        for (path, sink) in [("sinks.metrics", &metrics_sink), ("sinks.logs", &logs_sink)] {
            if matches!(sink, SinkConfig::Otlp(_)) {
                self.problem(
                    format!("{path}.kind"),
                    "otlp carries traces only (sinks.traces)",
                );
            }
        }
        if let Some(sink @ (SinkConfig::Kinesis { .. } | SinkConfig::RemoteWrite(_))) = &traces_sink
        {
            let kind = if matches!(sink, SinkConfig::Kinesis { .. }) {
                "kinesis"
            } else {
                "remote_write"
            };
            self.problem(
                "sinks.traces.kind",
                format!("{kind} carries metrics only: use otlp, file or firehose for traces"),
            );
        }
        if matches!(logs_sink, SinkConfig::RemoteWrite(_)) {
            self.problem(
                "sinks.logs.kind",
                "remote_write carries metrics only: use firehose or file for logs",
            );
        }
        let relay = raw.relay.map(|r| self.relay(r));
        let l = raw.limits;
        let limits = Limits {
            max_body_bytes: self.size(
                "limits.max_body_bytes",
                l.max_body_bytes.as_deref(),
                16 << 20,
            ) as usize,
            max_decompressed_bytes: self.size(
                "limits.max_decompressed_bytes",
                l.max_decompressed_bytes.as_deref(),
                64 << 20,
            ) as usize,
            max_decompressed_bytes_in_flight: self.size(
                "limits.max_decompressed_bytes_in_flight",
                l.max_decompressed_bytes_in_flight.as_deref(),
                256 << 20,
            ),
            max_connection_age: self.duration(
                "limits.max_connection_age",
                l.max_connection_age.as_deref(),
                Duration::from_secs(300),
            ),
            shutdown_grace: self.duration(
                "limits.shutdown_grace",
                l.shutdown_grace.as_deref(),
                Duration::from_secs(20),
            ),
            max_connections: self.number("limits.max_connections", l.max_connections, 20_000),
            handshake_timeout: self.duration(
                "limits.handshake_timeout",
                l.handshake_timeout.as_deref(),
                Duration::from_secs(10),
            ),
            header_read_timeout: self.duration(
                "limits.header_read_timeout",
                l.header_read_timeout.as_deref(),
                Duration::from_secs(10),
            ),
            body_read_timeout: self.duration(
                "limits.body_read_timeout",
                l.body_read_timeout.as_deref(),
                Duration::from_secs(30),
            ),
            idle_timeout: self.duration(
                "limits.idle_timeout",
                l.idle_timeout.as_deref(),
                Duration::from_secs(90),
            ),
        };
        let one_body = 2 * limits.max_decompressed_bytes as u64 + (8 << 20);
        if limits.max_decompressed_bytes_in_flight < one_body {
            self.problem(
                "limits.max_decompressed_bytes_in_flight",
                format!(
                    "{} is less than {one_body}: the budget must hold one body of limits.max_decompressed_bytes twice (growing its buffer holds the old and the new one) and a zstd window of 8 MiB, or such a body is refused forever",
                    limits.max_decompressed_bytes_in_flight
                ),
            );
        }
        let admission = self.admission(raw.admission);
        if limits.max_connections == 0 {
            self.problem("limits.max_connections", "must be at least 1");
        }
        let admin_listen = match raw
            .admin_listen
            .as_deref()
            .map(|a| self.expand("admin_listen", a))
        {
            None => None,
            Some(off) if off == "off" => None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(addr) if addr == listen => {
                    self.problem(
                        "admin_listen",
                        format!("{addr} is the data port's address too"),
                    );
                    None
                }
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem(
                        "admin_listen",
                        format!("{text:?} is not an address like 0.0.0.0:9743 (or `off`)"),
                    );
                    None
                }
            },
        };
        GatewayConfig {
            listen,
            admin_listen,
            tls,
            replicas: replicas.max(1),
            identities,
            policy,
            catalog,
            tokenize,
            tenants,
            fleet_cadence,
            overload,
            metrics_sink,
            logs_sink,
            traces_sink,
            limits,
            admission,
            relay,
        }
    }

    fn admission(&mut self, raw: RawAdmission) -> AdmissionConfig {
        let d = DEFAULT_ADMISSION;
        let max_queue_wait = self.duration(
            "admission.max_queue_wait",
            raw.max_queue_wait.as_deref(),
            d.max_queue_wait,
        );
        if max_queue_wait.is_zero() || max_queue_wait > Duration::from_secs(10) {
            self.problem(
                "admission.max_queue_wait",
                "between 1ms and 10s (a few tens of milliseconds: a request that cannot start by then is answered 503 at once)",
            );
        }
        let min_limit = self.number("admission.min_limit", raw.min_limit, d.min_limit);
        let max_limit = self.number("admission.max_limit", raw.max_limit, d.max_limit);
        let initial_limit = self.number(
            "admission.initial_limit",
            raw.initial_limit,
            d.initial_limit.min(max_limit).max(min_limit),
        );
        if min_limit == 0 {
            self.problem("admission.min_limit", "must be at least 1");
        }
        if max_limit < min_limit {
            self.problem(
                "admission.max_limit",
                format!("{max_limit} is below admission.min_limit ({min_limit})"),
            );
        }
        if initial_limit < min_limit || initial_limit > max_limit {
            self.problem(
                "admission.initial_limit",
                format!("{initial_limit}: must be within admission.min_limit..=max_limit ({min_limit}..={max_limit})"),
            );
        }
        let smoothing = self.number("admission.smoothing", raw.smoothing, d.smoothing);
        if !(smoothing > 0.0 && smoothing <= 1.0) {
            self.problem(
                "admission.smoothing",
                format!("{smoothing}: a fraction above 0 and at most 1, like 0.2"),
            );
        }
        let latency_tolerance = self.number(
            "admission.latency_tolerance",
            raw.latency_tolerance,
            d.latency_tolerance,
        );
        if !(1.0..=100.0).contains(&latency_tolerance) {
            self.problem(
                "admission.latency_tolerance",
                format!("{latency_tolerance}: a multiple of the baseline latency between 1 and 100, like 2"),
            );
        }
        let max_queued = self.number("admission.max_queued", raw.max_queued, d.max_queued);
        if max_queued == 0 {
            self.problem("admission.max_queued", "must be at least 1");
        }
        AdmissionConfig {
            max_queue_wait,
            min_limit,
            max_limit,
            initial_limit,
            smoothing,
            latency_tolerance,
            max_queued,
        }
    }

    pub(super) fn relay(&mut self, raw: RawRelay) -> RelayConfig {
        let stream = raw
            .stream
            .map_or_else(|| "metrics".into(), |s| self.expand("relay.stream", &s));
        let region = raw
            .region
            .map_or_else(|| "us-east-1".into(), |s| self.expand("relay.region", &s));
        let endpoint_url = raw
            .endpoint_url
            .map(|e| self.expand("relay.endpoint_url", &e));
        let checkpoints = match (raw.checkpoint, raw.leases) {
            (Some(_), Some(_)) => {
                self.problem(
                    "relay.checkpoint",
                    "with `leases` the checkpoints live in the lease table: remove `checkpoint`",
                );
                Checkpoints::File(PathBuf::new())
            }
            (Some(c), None) => {
                Checkpoints::File(PathBuf::from(self.expand("relay.checkpoint", &c)))
            }
            (None, Some(l)) => {
                let table = match l.table {
                    Some(t) => self.expand("relay.leases.table", &t),
                    None => {
                        self.problem(
                            "relay.leases.table",
                            "missing: the DynamoDB table, e.g. edge-relay-leases",
                        );
                        String::new()
                    }
                };
                let valid_name = (3..=255).contains(&table.len())
                    && table
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                if !table.is_empty() && !valid_name {
                    self.problem(
                        "relay.leases.table",
                        format!("{table:?} is not a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, _ - .)"),
                    );
                }
                let timeout = self.duration(
                    "relay.leases.timeout",
                    l.timeout.as_deref(),
                    DEFAULT_LEASE_TIMEOUT,
                );
                if timeout < Duration::from_secs(1) {
                    self.problem(
                        "relay.leases.timeout",
                        format!("{timeout:?}: at least 1s (leases are renewed every third of it)"),
                    );
                }
                Checkpoints::Leases(LeaseConfig { table, timeout })
            }
            (None, None) => {
                self.problem(
                    "relay.checkpoint",
                    "missing: a file for the shards' checkpoints (one relay), or \
                     `leases: { table: edge-relay-leases }` for relays that share the stream",
                );
                Checkpoints::File(PathBuf::new())
            }
        };
        let target = match raw.target {
            Some(t) => {
                let url = self.expand("relay.target.url", &t.url);
                self.target("relay.target", url, t.sigv4, t.tls)
            }
            None => {
                self.problem(
                    "relay.target",
                    "missing: { url: …, sigv4: { region, service: aps } }",
                );
                Target {
                    url: String::new(),
                    sigv4: None,
                    tls: None,
                }
            }
        };
        for (key, given) in [
            ("relay.instance_index", raw.instance_index.is_some()),
            ("relay.instance_count", raw.instance_count.is_some()),
        ] {
            if given {
                self.problem(
                    key,
                    "no longer read: relays share a stream through `leases: { table: edge-relay-leases }` \
                     (DynamoDB), which balances the shards between them; one relay alone may keep \
                     `checkpoint: FILE`",
                );
            }
        }
        let max_batch_bytes = self.size(
            "relay.max_batch_bytes",
            raw.max_batch_bytes.as_deref(),
            DEFAULT_MAX_BATCH_BYTES,
        );
        // A request must hold any record (1 MiB compressed decompresses to more); the
        // top keeps one request within the gateway's own body limit.
        let max_batch_bytes = if !(64 << 10..=64 << 20).contains(&max_batch_bytes) {
            self.problem(
                "relay.max_batch_bytes",
                format!("{max_batch_bytes} bytes: between 64KiB and 64MiB"),
            );
            DEFAULT_MAX_BATCH_BYTES
        } else {
            max_batch_bytes
        };
        let start = match raw.start.as_deref() {
            None | Some("trim_horizon") => StartAt::TrimHorizon,
            Some("latest") => StartAt::Latest,
            Some(other) => {
                self.problem(
                    "relay.start",
                    format!("{other:?}: use trim_horizon or latest"),
                );
                StartAt::TrimHorizon
            }
        };
        let listen = raw.listen.map_or_else(
            || SocketAddr::from(([127, 0, 0, 1], 9742)),
            |l| {
                let l = self.expand("relay.listen", &l);
                l.parse().unwrap_or_else(|_| {
                    self.problem("relay.listen", format!("{l:?} is not an address:port"));
                    SocketAddr::from(([127, 0, 0, 1], 9742))
                })
            },
        );
        RelayConfig {
            stream,
            region,
            endpoint_url,
            checkpoints,
            target,
            max_batch_bytes: max_batch_bytes as usize,
            start,
            listen,
        }
    }

    fn identities(&mut self, raw: RawIdentities) -> Identities {
        let mut tokens = Vec::new();
        for (i, t) in raw.tokens.into_iter().enumerate() {
            let path = format!("identities.tokens[{i}].sha256");
            let hex = self.expand(&path, &t.sha256);
            match decode_sha256(&hex) {
                Some(h) => tokens.push((h, t.tenant)),
                None => self.problem(
                    path,
                    "not a SHA-256: 64 hex digits (sha256sum of the token)",
                ),
            }
        }
        let mut subjects = Vec::new();
        for (pattern, tenant) in raw.subjects {
            if !pattern.contains('=') {
                self.problem(
                    format!("identities.subjects.{pattern}"),
                    "a subject pattern names its attribute, like CN=gs-*",
                );
            }
            subjects.push((pattern, tenant));
        }
        Identities {
            spiffe_trust_domain: raw.spiffe_trust_domain,
            subjects,
            tokens,
        }
    }

    fn tenants(&mut self, raw: &BTreeMap<String, RawTenant>) -> BTreeMap<String, TenantLimits> {
        let default_raw = raw.get(DEFAULT_TENANT).cloned().unwrap_or_default();
        let default = self.tenant(DEFAULT_TENANT, &default_raw, &BUILTIN_LIMITS);
        let mut out = BTreeMap::new();
        for (name, t) in raw {
            if name == DEFAULT_TENANT {
                continue;
            }
            let limits = self.tenant(name, t, &default);
            out.insert(name.clone(), limits);
        }
        out.insert(DEFAULT_TENANT.to_string(), default);
        out
    }

    fn tenant(&mut self, name: &str, t: &RawTenant, base: &TenantLimits) -> TenantLimits {
        let path = |key: &str| format!("tenants.{name}.{key}");
        let mut l = base.clone();
        let rate = self.optional(&path("samples_rate_limit"), &t.samples_rate_limit);
        if let Some(r) = rate {
            if r.is_finite() && r > 0.0 {
                l.samples_rate_limit = r;
            } else {
                self.problem(path("samples_rate_limit"), format!("{r}: must be above 0"));
            }
        }
        if let Some(b) = self.optional(&path("burst"), &t.burst) {
            l.burst = b;
        } else if rate.is_some() {
            // A tenant that sets its rate but not its burst gets two seconds' worth, as
            // the design's default does (20,000/s, 40,000).
            l.burst = (l.samples_rate_limit * 2.0) as u64;
        }
        if l.burst == 0 || l.burst > u64::from(u32::MAX) {
            self.problem(
                path("burst"),
                format!("{}: must be between 1 and {}", l.burst, u32::MAX),
            );
            l.burst = base.burst;
        }
        if let Some(m) = self.optional(&path("max_series"), &t.max_series) {
            l.max_series = m;
        }
        if let Some(m) = self.optional(&path("max_label_names"), &t.max_label_names) {
            l.max_label_names = m;
        }
        if let Some(m) = self.optional(&path("max_label_value_length"), &t.max_label_value_length) {
            l.max_label_value_length = m;
        }
        if let Some(m) = self.optional(&path("max_label_name_length"), &t.max_label_name_length) {
            l.max_label_name_length = m;
        }
        if let Some(p) = self.optional(&path("priority"), &t.priority) {
            l.priority = p;
        }
        match t.catch_up.as_deref() {
            None => {}
            Some("off" | "0" | "0s") => l.catch_up = Duration::ZERO,
            Some(v) => {
                let d = self.duration(&path("catch_up"), Some(v), l.catch_up);
                if d > MAX_CATCH_UP {
                    self.problem(
                        path("catch_up"),
                        format!(
                            "{v}: at most {}s (an hour of the tenant's rate); 0s or off for none",
                            MAX_CATCH_UP.as_secs()
                        ),
                    );
                } else {
                    l.catch_up = d;
                }
            }
        }
        if t.creation_grace_period.is_some() {
            let d = self.duration(
                &path("creation_grace_period"),
                t.creation_grace_period.as_deref(),
                Duration::from_millis(l.creation_grace_period_ms as u64),
            );
            l.creation_grace_period_ms = d.as_millis() as i64;
        }
        match t.past_grace_period.as_deref() {
            None => {}
            Some("off" | "0" | "0s") => l.past_grace_period_ms = 0,
            Some(v) => {
                let d = self.duration(&path("past_grace_period"), Some(v), Duration::ZERO);
                l.past_grace_period_ms = d.as_millis() as i64;
            }
        }
        let rate_set = t.log_bytes_rate_limit.is_some();
        l.log_bytes_rate_limit = self.size(
            &path("log_bytes_rate_limit"),
            t.log_bytes_rate_limit.as_deref(),
            l.log_bytes_rate_limit,
        );
        let burst_default = if rate_set {
            l.log_bytes_rate_limit.saturating_mul(2)
        } else {
            l.log_bytes_burst
        };
        l.log_bytes_burst = self.size(
            &path("log_bytes_burst"),
            t.log_bytes_burst.as_deref(),
            burst_default,
        );
        if l.log_bytes_burst > u64::from(u32::MAX) {
            self.problem(path("log_bytes_burst"), "must be under 4GiB");
            l.log_bytes_burst = base.log_bytes_burst;
        }
        if let Some(r) = t.span_rate_limit {
            if r.is_finite() && r > 0.0 {
                l.span_rate_limit = r;
            } else {
                self.problem(path("span_rate_limit"), format!("{r}: must be above 0"));
            }
        }
        if let Some(b) = t.span_burst {
            l.span_burst = b;
        } else if t.span_rate_limit.is_some() {
            // Two seconds' worth, as for samples.
            l.span_burst = (l.span_rate_limit * 2.0) as u64;
        }
        if l.span_burst == 0 || l.span_burst > u64::from(u32::MAX) {
            self.problem(
                path("span_burst"),
                format!("{}: must be between 1 and {}", l.span_burst, u32::MAX),
            );
            l.span_burst = base.span_burst;
        }
        l
    }

    fn overload(
        &mut self,
        raw: Option<RawOverload>,
        tenants: &BTreeMap<String, TenantLimits>,
    ) -> Overload {
        let Some(raw) = raw else {
            return Overload {
                freshness_threshold_p99: Duration::from_secs(10),
                ttfb_threshold_p99: DEFAULT_TTFB_THRESHOLD_P99,
                actions: Vec::new(),
            };
        };
        let freshness_threshold_p99 = self.duration(
            "overload.freshness_threshold_p99",
            raw.freshness_threshold_p99.as_deref(),
            Duration::from_secs(10),
        );
        let ttfb_threshold_p99 = self.duration(
            "overload.ttfb_threshold_p99",
            raw.ttfb_threshold_p99.as_deref(),
            DEFAULT_TTFB_THRESHOLD_P99,
        );
        if ttfb_threshold_p99.is_zero() {
            self.problem("overload.ttfb_threshold_p99", "must be above 0");
        }
        let mut actions = Vec::new();
        for (i, a) in raw.actions.into_iter().enumerate() {
            let path = format!("overload.actions[{i}]");
            match (a.reduce_log_sampling, a.throttle_tenants) {
                (Some(p), None) => {
                    let n = p.trim().trim_end_matches('%').trim().parse::<u8>().ok();
                    match n {
                        Some(n) if (1..=100).contains(&n) => {
                            actions.push(OverloadAction::ReduceLogSampling(n))
                        }
                        _ => self.problem(
                            format!("{path}.reduce_log_sampling"),
                            format!("{p:?}: a percentage, like 50%"),
                        ),
                    }
                }
                (None, Some(list)) => {
                    for t in &list {
                        if !tenants.contains_key(t) {
                            self.problem(
                                format!("{path}.throttle_tenants"),
                                format!("{t:?} is not a tenant under `tenants`"),
                            );
                        }
                    }
                    actions.push(OverloadAction::ThrottleTenants(list));
                }
                _ => self.problem(path, "one of reduce_log_sampling or throttle_tenants"),
            }
        }
        Overload {
            freshness_threshold_p99,
            ttfb_threshold_p99,
            actions,
        }
    }

    fn sink(&mut self, path: &str, raw: RawSink, default_stream: &str) -> SinkConfig {
        let need = |v: &mut Self, key: &str, value: Option<String>| -> String {
            match value {
                Some(s) => v.expand(&format!("{path}.{key}"), &s),
                None => {
                    v.problem(
                        format!("{path}.{key}"),
                        format!("missing for kind {}", raw.kind),
                    );
                    String::new()
                }
            }
        };
        let region = |v: &mut Self, r: Option<String>| -> String {
            r.map(|r| v.expand(&format!("{path}.region"), &r))
                .unwrap_or_else(|| "us-east-1".into())
        };
        let endpoint = |v: &mut Self, e: Option<String>| {
            e.map(|e| v.expand(&format!("{path}.endpoint_url"), &e))
        };
        match raw.kind.as_str() {
            "file" => SinkConfig::File {
                dir: PathBuf::from(need(self, "dir", raw.dir)),
            },
            "kinesis" => SinkConfig::Kinesis {
                stream: raw.stream.map_or_else(
                    || default_stream.to_string(),
                    |s| self.expand(&format!("{path}.stream"), &s),
                ),
                region: region(self, raw.region),
                endpoint_url: endpoint(self, raw.endpoint_url),
            },
            "firehose" => SinkConfig::Firehose {
                delivery_stream: need(self, "delivery_stream", raw.delivery_stream),
                region: region(self, raw.region),
                endpoint_url: endpoint(self, raw.endpoint_url),
            },
            "remote_write" => {
                let url = need(self, "url", raw.url);
                SinkConfig::RemoteWrite(self.target(path, url, raw.sigv4, raw.tls))
            }
            "otlp" => {
                let url = need(self, "url", raw.url);
                // AWS X-Ray's OTLP endpoint is the SigV4 service `xray`.
                let default_service = raw.sigv4.as_ref().is_some_and(|s| s.service.is_none());
                let mut target = self.target(path, url, raw.sigv4, raw.tls);
                if default_service && let Some(s) = target.sigv4.as_mut() {
                    s.service = "xray".into();
                }
                SinkConfig::Otlp(target)
            }
            other => {
                self.problem(
                    format!("{path}.kind"),
                    format!("{other:?}: use kinesis, firehose, remote_write, otlp or file"),
                );
                SinkConfig::File {
                    dir: PathBuf::new(),
                }
            }
        }
    }
}

impl Validator<'_> {
    /// A remote_write target at `path` (`url` already expanded).
    fn target(
        &mut self,
        path: &str,
        url: String,
        sigv4: Option<RawSigv4>,
        tls: Option<RawClientTls>,
    ) -> Target {
        match url.parse::<http::Uri>() {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                if uri.scheme_str() == Some("http") && tls.is_some() {
                    self.problem(
                        format!("{path}.tls"),
                        "given for an http:// URL: use https://",
                    );
                }
            }
            _ if url.is_empty() => {}
            _ => self.problem(
                format!("{path}.url"),
                format!("{url:?} is not an http:// or https:// URL"),
            ),
        }
        let sigv4 = sigv4.map(|s| Sigv4 {
            region: self.expand(&format!("{path}.sigv4.region"), &s.region),
            service: s.service.map_or_else(
                || "aps".into(),
                |v| self.expand(&format!("{path}.sigv4.service"), &v),
            ),
        });
        let tls = tls.map(|t| {
            let mut file = |key: &str, v: Option<String>| {
                v.map(|v| PathBuf::from(self.expand(&format!("{path}.tls.{key}"), &v)))
            };
            let tls = ClientTls {
                ca: file("ca", t.ca),
                cert: file("cert", t.cert),
                key: file("key", t.key),
            };
            if tls.cert.is_some() != tls.key.is_some() {
                self.problem(format!("{path}.tls"), "cert and key go together");
            }
            tls
        });
        Target { url, sigv4, tls }
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let t = hex.trim().as_bytes();
    if t.len() != 64 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (nibble(t[2 * i])? << 4) | nibble(t[2 * i + 1])?;
    }
    Some(out)
}
