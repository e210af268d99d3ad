use super::*;

const GOOD: &str = r#"
host_labels: { region: "${REGION}", az: imds, cluster: "${CLUSTER:-gs-default}", instance_type: imds, build_id: "${BUILD_ID}" }
series_budget: 300
cadence: 10s
incident_cadence: 5s
listen: 127.0.0.1:9740
host_metrics: { enabled: true, filesystems: [/], disks: [nvme0n1], interfaces: [ens5] }
scrape: [ { url: "http://127.0.0.1:9100/metrics" } ]
logs:
  - { path: "/var/log/game/*.log", service: game, parser: json, multiline: { start: '^\S' } }
tokenize: { key_file: /etc/edge-agent/tokenize.key, detectors: [email, ipv4, ipv6, { name: player_id, pattern: 'plr-[0-9]+', action: tokenize }] }
output:
  metrics_url: "${GATEWAY_URL}/api/v1/push"
  logs_url: "${GATEWAY_URL}/v1/logs"
  tls: { cert: /etc/edge-agent/tls/agent.crt, key: /etc/edge-agent/tls/agent.key, ca: /etc/edge-agent/tls/ca.crt }
queue: { dir: /var/lib/edge-agent/queue, max_bytes: 256MiB }
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "REGION" => Some("eu-west-1".into()),
        "BUILD_ID" => Some("2026.11.3".into()),
        "GATEWAY_URL" => Some("https://gw.eu-west-1.obs.internal:8443".into()),
        _ => None,
    }
}

fn problems(text: &str) -> Vec<(String, String)> {
    parse(Path::new("agent.yaml"), text, &env)
        .expect_err("refused")
        .problems
}

#[test]
fn the_design_example_loads_with_variables_expanded() {
    let c = parse(Path::new("agent.yaml"), GOOD, &env).expect("valid");
    assert_eq!(
        c.host_labels["region"],
        LabelSource::Value("eu-west-1".into())
    );
    assert_eq!(
        c.host_labels["cluster"],
        LabelSource::Value("gs-default".into())
    );
    assert_eq!(c.host_labels["az"], LabelSource::Imds);
    assert_eq!(
        c.metrics_urls[0],
        "https://gw.eu-west-1.obs.internal:8443/api/v1/push"
    );
    assert_eq!(
        c.logs_urls,
        vec!["https://gw.eu-west-1.obs.internal:8443/v1/logs".to_string()]
    );
    assert_eq!(c.cadence, Duration::from_secs(10));
    assert_eq!(c.incident_cadence, Duration::from_secs(5));
    assert_eq!(c.queue.max_bytes, 256 * 1024 * 1024);
    assert_eq!(c.detectors.len(), 4);
    assert_eq!(c.detectors[3].pattern.as_deref(), Some("plr-[0-9]+"));
    assert_eq!(c.logs[0].multiline_start.as_deref(), Some("^\\S"));
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let text = GOOD
        .replace("cadence: 10s", "cadence: 10x")
        .replace("listen: 127.0.0.1:9740", "listen: 0.0.0.0:9740")
        .replace("${BUILD_ID}", "${NO_SUCH_VAR}")
        .replace("parser: json", "parser: yaml")
        .replace("max_bytes: 256MiB", "max_bytes: lots")
        .replace("action: tokenize", "action: shred");
    let found = problems(&text);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "host_labels.build_id",
            "listen",
            "cadence",
            "logs[0].parser",
            "tokenize.detectors[3].action",
            "queue.max_bytes",
        ],
        "{found:?}"
    );
    assert!(found[0].1.contains("NO_SUCH_VAR is not set"));
    assert!(found[1].1.contains("not a loopback address"));
    assert!(found[2].1.contains("\"10x\" is not a duration"));
}

#[test]
fn logs_without_a_tokenization_key_are_refused() {
    let text = GOOD.replace("key_file: /etc/edge-agent/tokenize.key, ", "");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "tokenize.key_file");
    assert!(found[0].1.contains("PII"));
}

#[test]
fn https_without_tls_files_is_refused() {
    let text = GOOD.replace(
        "  tls: { cert: /etc/edge-agent/tls/agent.crt, key: /etc/edge-agent/tls/agent.key, ca: /etc/edge-agent/tls/ca.crt }\n",
        "",
    );
    let found = problems(&text);
    assert_eq!(found[0].0, "output.tls");
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let found =
        problems("output: { metrics_url: http://127.0.0.1:9090/api/v1/write }\ncadense: 10s\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].0.starts_with("line 2"), "{found:?}");
    assert!(found[0].1.contains("cadense"), "{found:?}");
}

#[test]
fn a_minimal_config_for_a_local_prometheus() {
    let c = parse(
        Path::new("agent.yaml"),
        "output: { metrics_url: http://127.0.0.1:9090/api/v1/write }\n",
        &env,
    )
    .expect("valid");
    assert!(c.tls.is_none());
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.series_budget, 300);
}

#[test]
fn logs_like_metrics_may_go_to_several_gateways_in_order() {
    let text = GOOD.replace(
        r#"logs_url: "${GATEWAY_URL}/v1/logs""#,
        r#"logs_url: ["https://gw-a:8443/v1/logs", "https://gw-b:8443/v1/logs"]"#,
    );
    let c = parse(Path::new("agent.yaml"), &text, &env).expect("valid");
    assert_eq!(
        c.logs_urls,
        vec![
            "https://gw-a:8443/v1/logs".to_string(),
            "https://gw-b:8443/v1/logs".to_string()
        ]
    );
    let text = GOOD.replace(r#"logs_url: "${GATEWAY_URL}/v1/logs""#, "logs_url: []");
    assert!(
        problems(&text)
            .iter()
            .any(|(k, m)| k == "output.logs_url" && m.contains("empty")),
        "{:?}",
        problems(&text)
    );
}

#[test]
fn the_default_incident_cadence_follows_a_short_cadence_and_only_an_explicit_longer_one_is_refused()
{
    let base = "output: { metrics_url: http://127.0.0.1:9090/api/v1/write }\n";
    let c = parse(
        Path::new("agent.yaml"),
        &format!("{base}cadence: 1s\n"),
        &env,
    )
    .expect("cadence 1s alone is fine");
    assert_eq!(c.incident_cadence, Duration::from_secs(1));
    let c = parse(Path::new("agent.yaml"), base, &env).expect("defaults");
    assert_eq!(c.incident_cadence, Duration::from_secs(5));
    let p = problems(&format!("{base}cadence: 2s\nincident_cadence: 5s\n"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "incident_cadence");
    assert!(p[0].1.contains("longer than cadence"), "{p:?}");
}

#[test]
fn statsd_is_on_by_default_on_loopback_can_be_turned_off_and_bad_keys_name_their_path() {
    let base = "output: { metrics_url: http://127.0.0.1:9090/api/v1/write }\n";
    let c = parse(Path::new("agent.yaml"), base, &env).expect("defaults");
    let s = c.statsd.expect("on by default");
    assert_eq!(s.listen.to_string(), "127.0.0.1:8125");
    assert!(!s.explicit);
    for off in ["statsd: off\n", "statsd: false\n"] {
        let c = parse(Path::new("agent.yaml"), &format!("{base}{off}"), &env).expect("off");
        assert!(c.statsd.is_none(), "{off}");
    }
    let c = parse(
        Path::new("agent.yaml"),
        &format!("{base}statsd: {{ listen: 127.0.0.1:9125, mappings: [{{ match: \"srv.*.lat\", name: game_lat }}] }}\n"),
        &env,
    )
    .expect("explicit");
    let s = c.statsd.expect("on");
    assert!(s.explicit);
    assert_eq!(s.mappings[0].name, "game_lat");
    let p = problems(&format!(
        "{base}statsd: {{ listen: 0.0.0.0:8125, mappings: [{{ match: x, name: bad.name }}] }}\n"
    ));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "statsd.listen");
    let p = problems(&format!(
        "{base}statsd: {{ mappings: [{{ match: x, name: bad.name }}] }}\n"
    ));
    assert_eq!(p[0].0, "statsd.mappings[0].name", "{p:?}");
    let p = problems(&format!("{base}statsd: maybe\n"));
    assert_eq!(p[0].0, "statsd", "{p:?}");
}

#[test]
fn traces_go_to_one_or_several_gateways_and_need_the_tokenization_key() {
    let with = |traces: &str| {
        GOOD.replace(
            r#"  logs_url: "${GATEWAY_URL}/v1/logs""#,
            &format!("  logs_url: \"${{GATEWAY_URL}}/v1/logs\"\n  traces_url: {traces}"),
        )
    };
    let c = parse(
        Path::new("agent.yaml"),
        &with(r#""${GATEWAY_URL}/v1/traces""#),
        &env,
    )
    .expect("valid");
    assert_eq!(
        c.traces_urls,
        vec!["https://gw.eu-west-1.obs.internal:8443/v1/traces".to_string()]
    );
    let c = parse(
        Path::new("agent.yaml"),
        &with(r#"["https://gw-a:8443/v1/traces", "https://gw-b:8443/v1/traces"]"#),
        &env,
    )
    .expect("valid");
    assert_eq!(c.traces_urls.len(), 2);
    // Absent: no traces pipeline.
    let c = parse(Path::new("agent.yaml"), GOOD, &env).expect("valid");
    assert!(c.traces_urls.is_empty());
    // Bad values name their key path.
    let p = problems(&with(
        r#"["https://gw-a:8443/v1/traces", "ftp://gw-b/v1/traces"]"#,
    ));
    assert!(
        p.iter()
            .any(|(k, m)| k == "output.traces_url[1]" && m.contains("http")),
        "{p:?}"
    );
    let p = problems(&with("[]"));
    assert!(
        p.iter()
            .any(|(k, m)| k == "output.traces_url" && m.contains("empty")),
        "{p:?}"
    );
    // Traces without a tokenization key are refused.
    let text = "output: { metrics_url: http://127.0.0.1:9090/api/v1/write, traces_url: http://127.0.0.1:8443/v1/traces }\n";
    let p = problems(text);
    assert!(
        p.iter()
            .any(|(k, m)| k == "output.traces_url" && m.contains("tokenize.key_file")),
        "{p:?}"
    );
}

#[test]
fn otlp_is_on_by_default_on_loopback_each_receiver_can_be_turned_off_and_bad_keys_name_their_path()
{
    let base = "output: { metrics_url: http://127.0.0.1:9090/api/v1/write }\n";
    let c = parse(Path::new("agent.yaml"), base, &env).expect("defaults");
    let grpc = c.otlp.grpc.expect("gRPC on by default");
    let http = c.otlp.http.expect("HTTP on by default");
    assert_eq!(grpc.addr.to_string(), "127.0.0.1:4317");
    assert_eq!(http.addr.to_string(), "127.0.0.1:4318");
    assert!(!grpc.explicit && !http.explicit);
    for off in ["otlp: off\n", "otlp: false\n"] {
        let c = parse(Path::new("agent.yaml"), &format!("{base}{off}"), &env).expect("off");
        assert!(!c.otlp.any(), "{off}");
    }
    let c = parse(
        Path::new("agent.yaml"),
        &format!("{base}otlp: {{ grpc: off, http: 127.0.0.1:14318 }}\n"),
        &env,
    )
    .expect("one off");
    assert_eq!(c.otlp.grpc, None);
    let http = c.otlp.http.expect("on");
    assert!(http.explicit);
    assert_eq!(http.addr.port(), 14318);
    let p = problems(&format!("{base}otlp: {{ grpc: 0.0.0.0:4317 }}\n"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "otlp.grpc");
    assert!(p[0].1.contains("not a loopback address"), "{p:?}");
    let p = problems(&format!("{base}otlp: {{ http: localhost }}\n"));
    assert_eq!(p[0].0, "otlp.http", "{p:?}");
    let p = problems(&format!("{base}otlp: maybe\n"));
    assert_eq!(p[0].0, "otlp", "{p:?}");
    let p = problems(&format!("{base}otlp: {{ grcp: 127.0.0.1:4317 }}\n"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "otlp.grcp", "{p:?}");
}
