use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "REGION" => Some("eu-west-1".into()),
        _ => None,
    }
}

fn parse_text(text: &str) -> Result<GatewayConfig, ConfigError> {
    parse(Path::new("gateway.yaml"), text, &env)
}

const GOOD: &str = r#"
listen: 127.0.0.1:8443
admin_listen: 127.0.0.1:9743
tls: { cert: /etc/gw/tls.crt, key: /etc/gw/tls.key, client_ca: /etc/gw/ca.crt }
catalog: /etc/gw/metrics.yaml
tokenize: { key_file: /etc/gw/tokenize.key, detectors: [email, ipv4, { name: player_id, pattern: 'p-[0-9]{6,}', action: redact }] }
replicas: 3
identities: { spiffe_trust_domain: obs.internal, subjects: { "CN=gs-*": game }, tokens: [ { sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", tenant: studio-x } ] }
tenants:
  default: { samples_rate_limit: 20000, burst: 40000, max_series: 2000000, max_label_names: 30, max_label_value_length: 128, log_bytes_rate_limit: 10MiB, priority: 100 }
  lowprio: { samples_rate_limit: 5000, priority: 10 }
fleet: { cadence: 10s }
overload: { freshness_threshold_p99: 10s, actions: [ { reduce_log_sampling: 50% }, { throttle_tenants: [lowprio] } ] }
sinks:
  metrics: { kind: kinesis, stream: metrics, region: "${REGION}", endpoint_url: "http://127.0.0.1:5055" }
  logs: { kind: firehose, delivery_stream: logs, region: us-east-1 }
relay: { stream: metrics, checkpoint: /var/lib/edge-relay/checkpoints.json, target: { url: "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write", sigv4: { region: us-east-1, service: aps } } }
"#;

#[test]
fn the_design_example_parses() {
    let c = parse_text(GOOD).expect("valid");
    assert_eq!(c.replicas, 3);
    assert_eq!(c.limits_of("lowprio").samples_rate_limit, 5000.0);
    assert_eq!(c.limits_of("lowprio").burst, 10_000, "two seconds' worth");
    assert_eq!(
        c.limits_of("lowprio").max_series,
        2_000_000,
        "inherited from default"
    );
    assert_eq!(c.limits_of("someone-else").priority, 100);
    assert_eq!(c.limits_of("default").log_bytes_rate_limit, 10 << 20);
    assert_eq!(c.identities.tokens.len(), 1);
    assert_eq!(
        c.metrics_sink,
        SinkConfig::Kinesis {
            stream: "metrics".into(),
            region: "eu-west-1".into(),
            endpoint_url: Some("http://127.0.0.1:5055".into())
        }
    );
    assert_eq!(
        c.overload.actions,
        vec![
            OverloadAction::ReduceLogSampling(50),
            OverloadAction::ThrottleTenants(vec!["lowprio".into()])
        ]
    );
    assert!(c.tls.as_ref().is_some_and(|t| t.client_cert_required));
    assert_eq!(
        c.admin_listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9743")
    );
    assert_eq!(
        c.catalog.as_deref(),
        Some(Path::new("/etc/gw/metrics.yaml"))
    );
    assert_eq!(
        c.tokenize.key_file.as_deref(),
        Some(Path::new("/etc/gw/tokenize.key"))
    );
    assert_eq!(c.tokenize.detectors.len(), 3);
    assert_eq!(
        c.tokenize.detectors[2].action,
        edge_tokenize::Action::Redact
    );
}

#[test]
fn the_tokenizer_key_is_required_and_the_admin_port_must_be_its_own() {
    let sinks =
        "tls: off\nsinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\n";
    let err = parse_text(sinks).expect_err("no tokenization key");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["tokenize.key_file"], "{err}");
    let err = parse_text(&format!(
        "{sinks}tokenize: {{ key_file: /k, detectors: [mac, {{ name: card, pattern: '4[0-9]{{15}}', action: shred }}] }}\n\
         admin_listen: 127.0.0.1:8443\n"
    ))
    .expect_err("bad detectors and a shared port");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "tokenize.detectors[0]",
            "tokenize.detectors[1].action",
            "admin_listen"
        ],
        "{err}"
    );
    let c = parse_text(&format!(
        "{sinks}tokenize: {{ key_file: /k }}\nadmin_listen: \"off\"\n"
    ))
    .expect("valid");
    assert_eq!(c.admin_listen, None);
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let text = r#"
listen: nowhere
tls: maybe
replicas: 0
identities: { subjects: { "gs-*": game }, tokens: [ { sha256: "abc", tenant: x } ] }
tenants:
  t1: { samples_rate_limit: -1, log_bytes_rate_limit: lots }
overload: { freshness_threshold_p99: soon, actions: [ { reduce_log_sampling: "500%" }, { throttle_tenants: [nobody] } ] }
sinks:
  metrics: { kind: s3 }
  logs: { kind: file }
"#;
    let err = parse_text(text).expect_err("invalid");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "listen",
        "tls",
        "replicas",
        "identities.tokens[0].sha256",
        "identities.subjects.gs-*",
        "tenants.t1.samples_rate_limit",
        "tenants.t1.log_bytes_rate_limit",
        "overload.freshness_threshold_p99",
        "overload.actions[0].reduce_log_sampling",
        "overload.actions[1].throttle_tenants",
        "sinks.metrics.kind",
        "sinks.logs.dir",
    ] {
        assert!(keys.contains(&key), "no problem at {key}: {err}");
    }
}

#[test]
fn unknown_keys_and_tls_off() {
    let err = parse_text("tls: off\ntokenize: { key_file: /k }\nsinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\nbogus: 1\n")
        .expect_err("unknown key");
    assert!(err.to_string().contains("bogus"), "{err}");
    let c = parse_text(
        "tls: off\ntokenize: { key_file: /k }\nsinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\n",
    )
    .expect("tls off");
    assert!(c.tls.is_none());
    assert_eq!(c.limits_of("any"), &BUILTIN_LIMITS);
}

#[test]
fn remote_write_sinks_and_the_relay_block() {
    let c = parse_text(GOOD).expect("good");
    let relay = c.relay.expect("relay block");
    assert_eq!(relay.stream, "metrics");
    assert_eq!(relay.start, StartAt::TrimHorizon);
    assert_eq!(
        relay.target.sigv4,
        Some(Sigv4 {
            region: "us-east-1".into(),
            service: "aps".into()
        })
    );
    let standalone = parse_relay(Path::new("relay.yaml"), GOOD, &env).expect("relay alone");
    assert_eq!(
        standalone.checkpoints,
        Checkpoints::File(PathBuf::from("/var/lib/edge-relay/checkpoints.json"))
    );
    assert_eq!(standalone.max_batch_bytes, 4 << 20);

    let c = parse_text(
        "tls: off\ntokenize: { key_file: /k }\nsinks: { metrics: { kind: remote_write, url: \"https://mimir:8080/api/v1/push\", \
         tls: { ca: /etc/ca.pem, cert: /etc/c.pem, key: /etc/k.pem } }, logs: { kind: file, dir: /x } }\n",
    )
    .expect("remote_write sink");
    let SinkConfig::RemoteWrite(target) = c.metrics_sink else {
        panic!("not remote_write: {:?}", c.metrics_sink);
    };
    assert_eq!(target.sigv4, None);
    assert_eq!(
        target.tls.and_then(|t| t.cert),
        Some(PathBuf::from("/etc/c.pem"))
    );

    let err = parse_text(
        "tls: off\ntokenize: { key_file: /k }\nsinks: { metrics: { kind: remote_write, url: \"ftp://x\", tls: { cert: /c } }, \
         logs: { kind: remote_write, url: \"http://x\" } }\n\
         relay: { instance_index: 2, instance_count: 2, start: yesterday, target: { url: \"http://x\" } }\n",
    )
    .expect_err("bad");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "sinks.metrics.url",
        "sinks.metrics.tls",
        "sinks.logs.kind",
        "relay.checkpoint",
        "relay.instance_index",
        "relay.start",
    ] {
        assert!(keys.contains(&key), "no problem at {key}: {err}");
    }
    let err = parse_relay(Path::new("r.yaml"), "listen: 1.2.3.4:5\n", &env).expect_err("no relay");
    assert!(err.to_string().contains("relay: missing"), "{err}");
}

#[test]
fn relays_share_a_stream_through_leases_and_the_static_split_is_refused() {
    let relay =
        |block: &str| parse_relay(Path::new("relay.yaml"), &format!("relay: {block}\n"), &env);
    let c = relay("{ leases: { table: edge-relay-leases }, target: { url: \"http://x\" } }")
        .expect("leases");
    assert_eq!(
        c.checkpoints,
        Checkpoints::Leases(LeaseConfig {
            table: "edge-relay-leases".into(),
            timeout: Duration::from_secs(10)
        })
    );
    let c = relay(
        "{ leases: { table: \"relays-${REGION}\", timeout: 3s }, max_batch_bytes: 1MiB, target: { url: \"http://x\" } }",
    )
    .expect("leases");
    assert_eq!(
        c.checkpoints,
        Checkpoints::Leases(LeaseConfig {
            table: "relays-eu-west-1".into(),
            timeout: Duration::from_secs(3)
        })
    );
    assert_eq!(c.max_batch_bytes, 1 << 20);

    let err = relay(
        "{ checkpoint: /x, instance_index: 0, instance_count: \"${COUNT:-3}\", target: { url: \"http://x\" } }",
    )
    .expect_err("the static split");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["relay.instance_index", "relay.instance_count"],
        "{err}"
    );
    assert!(err.problems[0].1.contains("leases: { table"), "{err}");

    let err = relay(
        "{ checkpoint: /x, leases: { table: t!, timeout: 10ms }, max_batch_bytes: 1KiB, target: { url: \"http://x\" } }",
    )
    .expect_err("bad");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["relay.checkpoint", "relay.max_batch_bytes"], "{err}");
    let err = relay("{ leases: { table: t!, timeout: 10ms }, target: { url: \"http://x\" } }")
        .expect_err("bad");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["relay.leases.table", "relay.leases.timeout"],
        "{err}"
    );
    let err = relay("{ target: { url: \"http://x\" } }").expect_err("neither");
    assert!(err.to_string().contains("leases"), "{err}");
}

#[test]
fn numeric_keys_take_variables() {
    let env = |name: &str| match name {
        "REPLICAS" => Some("3".to_string()),
        "RATE" => Some("51000".to_string()),
        "PRIO" => Some("high".to_string()),
        _ => None,
    };
    let sinks = "tokenize: { key_file: /k }\nsinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\n";
    let c = parse(
        Path::new("gateway.yaml"),
        &format!(
            "tls: off\nreplicas: ${{REPLICAS}}\n{sinks}tenants:\n  game: {{ samples_rate_limit: \"${{RATE}}\", \
             burst: \"${{BURST:-120000}}\", max_series: 5 }}\n"
        ),
        &env,
    )
    .expect("numbers from variables");
    assert_eq!(c.replicas, 3);
    assert_eq!(c.limits_of("game").samples_rate_limit, 51_000.0);
    assert_eq!(c.limits_of("game").burst, 120_000);
    assert_eq!(c.limits_of("game").max_series, 5);
    let err = parse(
        Path::new("gateway.yaml"),
        &format!("tls: off\nreplicas: \"${{NOPE}}\"\n{sinks}tenants: {{ game: {{ priority: \"${{PRIO}}\" }} }}\n"),
        &env,
    )
    .expect_err("not numbers");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"replicas"), "{err}");
    assert!(keys.contains(&"tenants.game.priority"), "{err}");
    assert!(err.to_string().contains("NOPE is not set"), "{err}");
}

#[test]
fn tls_off_is_for_loopback_only() {
    let sinks = "tokenize: { key_file: /k }\nsinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\n";
    let c = parse_text(&format!("tls: off\n{sinks}")).expect("loopback by default");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8443");
    let err = parse_text(&format!("tls: off\nlisten: 0.0.0.0:8443\n{sinks}"))
        .expect_err("clear text on the network")
        .to_string();
    assert!(err.contains("tls"), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(parse_text(&format!("tls: off\nlisten: \"[::1]:9000\"\n{sinks}")).is_ok());
}

#[test]
fn the_traces_sink_and_span_quota_parse_and_bad_ones_name_their_key() {
    let with = |traces: &str| {
        GOOD.replace(
            "  logs: { kind: firehose, delivery_stream: logs, region: us-east-1 }\n",
            &format!("  logs: {{ kind: firehose, delivery_stream: logs, region: us-east-1 }}\n  traces: {traces}\n"),
        )
    };
    // The design's line: X-Ray's OTLP endpoint with SigV4.
    let c = parse_text(&with(
        r#"{ kind: otlp, url: "https://xray.us-east-1.amazonaws.com/v1/traces", sigv4: { region: us-east-1, service: xray } }"#,
    ))
    .expect("valid");
    match &c.traces_sink {
        Some(SinkConfig::Otlp(t)) => {
            assert_eq!(t.url, "https://xray.us-east-1.amazonaws.com/v1/traces");
            assert_eq!(
                t.sigv4,
                Some(Sigv4 {
                    region: "us-east-1".into(),
                    service: "xray".into()
                })
            );
        }
        other => panic!("{other:?}"),
    }
    // SigV4 without a service signs for X-Ray.
    let c = parse_text(&with(
        r#"{ kind: otlp, url: "https://xray.eu-west-1.amazonaws.com/v1/traces", sigv4: { region: "${REGION}" } }"#,
    ))
    .expect("valid");
    assert!(
        matches!(&c.traces_sink, Some(SinkConfig::Otlp(t)) if t.sigv4.as_ref().is_some_and(|s| s.service == "xray" && s.region == "eu-west-1"))
    );
    let c = parse_text(&with("{ kind: file, dir: /var/lib/edge-gateway/spool }")).expect("valid");
    assert_eq!(
        c.traces_sink,
        Some(SinkConfig::File {
            dir: "/var/lib/edge-gateway/spool".into()
        })
    );
    let c = parse_text(&with(
        "{ kind: firehose, delivery_stream: spans, region: us-east-1 }",
    ))
    .expect("valid");
    assert!(
        matches!(c.traces_sink, Some(SinkConfig::Firehose { ref delivery_stream, .. }) if delivery_stream == "spans")
    );
    // Optional.
    assert_eq!(parse_text(GOOD).expect("valid").traces_sink, None);
    // Refusals, with their key path.
    let problems = |text: &str| parse_text(text).expect_err("refused").problems;
    let p = problems(&with("{ kind: kinesis, stream: spans }"));
    assert!(
        p.iter()
            .any(|(k, m)| k == "sinks.traces.kind" && m.contains("metrics only")),
        "{p:?}"
    );
    let p = problems(&with("{ kind: otlp }"));
    assert!(p.iter().any(|(k, _)| k == "sinks.traces.url"), "{p:?}");
    let p = problems(&with("{ kind: otlp, url: \"xray\" }"));
    assert!(p.iter().any(|(k, _)| k == "sinks.traces.url"), "{p:?}");
    let p = problems(&GOOD.replace(
        "logs: { kind: firehose, delivery_stream: logs, region: us-east-1 }",
        "logs: { kind: otlp, url: \"http://127.0.0.1:4318/v1/logs\" }",
    ));
    assert!(
        p.iter()
            .any(|(k, m)| k == "sinks.logs.kind" && m.contains("traces only")),
        "{p:?}"
    );
    // The span quota: its own rate, a burst of two seconds' worth unless given.
    let text = GOOD.replace(
        "lowprio: { samples_rate_limit: 5000, priority: 10 }",
        "lowprio: { samples_rate_limit: 5000, priority: 10, span_rate_limit: 300 }\n  chatty: { span_rate_limit: 1000, span_burst: 5000 }",
    );
    let c = parse_text(&text).expect("valid");
    assert_eq!(c.limits_of("lowprio").span_rate_limit, 300.0);
    assert_eq!(c.limits_of("lowprio").span_burst, 600);
    assert_eq!(c.limits_of("chatty").span_burst, 5000);
    assert_eq!(
        c.limits_of("default").span_rate_limit,
        DEFAULT_SPAN_RATE_LIMIT
    );
    let p = problems(&GOOD.replace(
        "lowprio: { samples_rate_limit: 5000, priority: 10 }",
        "lowprio: { span_rate_limit: -1, span_burst: 0 }",
    ));
    assert!(
        p.iter()
            .any(|(k, _)| k == "tenants.lowprio.span_rate_limit"),
        "{p:?}"
    );
    assert!(
        p.iter().any(|(k, _)| k == "tenants.lowprio.span_burst"),
        "{p:?}"
    );
}

#[test]
fn catch_up_is_a_duration_of_the_tenants_rate_within_an_hour() {
    let c = parse_text(GOOD).expect("valid");
    assert_eq!(c.limits_of("lowprio").catch_up, DEFAULT_CATCH_UP);
    assert_eq!(DEFAULT_CATCH_UP, Duration::from_secs(60));
    let text = GOOD.replace(
        "lowprio: { samples_rate_limit: 5000, priority: 10 }",
        "lowprio: { samples_rate_limit: 5000, priority: 10, catch_up: 2m }\n  strict: { catch_up: off }\n  none: { catch_up: 0s }",
    );
    let c = parse_text(&text).expect("valid");
    assert_eq!(c.limits_of("lowprio").catch_up, Duration::from_secs(120));
    assert_eq!(c.limits_of("strict").catch_up, Duration::ZERO);
    assert_eq!(c.limits_of("none").catch_up, Duration::ZERO);
    let problems = |text: &str| parse_text(text).expect_err("refused").problems;
    let p = problems(&GOOD.replace(
        "lowprio: { samples_rate_limit: 5000, priority: 10 }",
        "lowprio: { catch_up: 2h }\n  other: { catch_up: soon }",
    ));
    assert!(
        p.iter()
            .any(|(k, m)| k == "tenants.lowprio.catch_up" && m.contains("at most 3600s")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|(k, _)| k == "tenants.other.catch_up"),
        "{p:?}"
    );
}

#[test]
fn the_decompression_budget_holds_one_largest_body() {
    let base = "tls: off\ntokenize: { key_file: /k }\nsinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\n";
    let c = parse_text(base).expect("defaults");
    assert_eq!(c.limits.max_decompressed_bytes_in_flight, 256 << 20);
    let c = parse_text(&format!(
        "{base}limits: {{ max_decompressed_bytes: 32MiB, max_decompressed_bytes_in_flight: 72MiB }}\n"
    ))
    .expect("just enough");
    assert_eq!(c.limits.max_decompressed_bytes_in_flight, 72 << 20);
    let err = parse_text(&format!(
        "{base}limits: {{ max_decompressed_bytes: 32MiB, max_decompressed_bytes_in_flight: 64MiB }}\n"
    ))
    .expect_err("too small");
    assert!(
        err.problems
            .iter()
            .any(|(k, _)| k == "limits.max_decompressed_bytes_in_flight"),
        "{err}"
    );
}

#[test]
fn admission_defaults_values_and_problems() {
    let head = "tls: off\ntokenize: { key_file: /k }\nsinks: { metrics: { kind: file, dir: /x }, logs: { kind: file, dir: /x } }\n";
    let c = parse_text(head).expect("defaults");
    assert_eq!(c.admission, DEFAULT_ADMISSION);
    assert_eq!(c.admission.max_queue_wait, Duration::from_millis(30));
    assert_eq!(c.overload.ttfb_threshold_p99, DEFAULT_TTFB_THRESHOLD_P99);
    let c = parse_text(&format!(
        "{head}admission: {{ max_queue_wait: 50ms, min_limit: 4, max_limit: 64, initial_limit: 8, smoothing: 0.5, latency_tolerance: 1.5, max_queued: 100 }}\n\
         overload: {{ ttfb_threshold_p99: 300ms }}\n"
    ))
    .expect("valid");
    assert_eq!(
        c.admission,
        AdmissionConfig {
            max_queue_wait: Duration::from_millis(50),
            min_limit: 4,
            max_limit: 64,
            initial_limit: 8,
            smoothing: 0.5,
            latency_tolerance: 1.5,
            max_queued: 100,
        }
    );
    assert_eq!(c.overload.ttfb_threshold_p99, Duration::from_millis(300));
    // A max below the default initial limit: the initial limit follows.
    let c = parse_text(&format!(
        "{head}admission: {{ min_limit: 2, max_limit: 3 }}\n"
    ))
    .expect("valid");
    assert_eq!(c.admission.initial_limit, 3);
    let err = parse_text(&format!(
        "{head}admission: {{ max_queue_wait: 0ms, min_limit: 0, max_limit: 4, initial_limit: 9, smoothing: 2, latency_tolerance: 0.5, max_queued: 0 }}\n\
         overload: {{ ttfb_threshold_p99: 0s }}\n"
    ))
    .expect_err("invalid");
    let keys: Vec<&str> = err.problems.iter().map(|(k, _)| k.as_str()).collect();
    for key in [
        "admission.max_queue_wait",
        "admission.min_limit",
        "admission.initial_limit",
        "admission.smoothing",
        "admission.latency_tolerance",
        "admission.max_queued",
        "overload.ttfb_threshold_p99",
    ] {
        assert!(keys.contains(&key), "no problem at {key}: {err}");
    }
    let err = parse_text(&format!(
        "{head}admission: {{ min_limit: 10, max_limit: 5 }}\n"
    ))
    .expect_err("min above max");
    assert!(err.to_string().contains("admission.max_limit"), "{err}");
    let err = parse_text(&format!("{head}admission: {{ max_wait: 5ms }}\n")).expect_err("unknown");
    assert!(err.to_string().contains("max_wait"), "{err}");
}
