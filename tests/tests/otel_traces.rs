//! The OpenTelemetry Python SDK (a client no one here wrote) exporting spans over
//! OTLP/HTTP (protobuf, gzip) with a client certificate straight into the real gateway's
//! `POST /v1/traces`: every span is in the `traces` file sink, under the certificate's
//! tenant, as the SDK made it (ids, parent links, typed attributes, events, status).
//!
//! The agent's receivers will take the same SDK on `:4318`; this test covers the
//! gateway's half with it now.

use std::process::Command;

use edge_schema::proto::otlp::any_value::Value;
use edge_schema::proto::otlp::trace::{ExportTraceServiceRequest, Span};
use edge_tests::rig::{Certs, GatewayOptions, GatewayRig, otel_python_client};
use prost::Message;

const ROUNDS: usize = 5;

#[test]
fn the_opentelemetry_python_sdk_exports_spans_into_the_gateways_traces_sink_over_mtls() {
    let client = otel_python_client();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let certs = Certs::generate_for(d, "gs-7", "game");
    let gateway = GatewayRig::start(&certs, GatewayOptions::files().traces());
    let path = |name: &str| d.join(name).display().to_string();
    let out = Command::new("python3")
        // `requests` lets these variables override a session's own CA file (the
        // exporter's certificate_file): the SDK would then not trust the test CA.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .args([
            client,
            &gateway.url("/v1/traces"),
            &path("ca.crt"),
            &path("agent.crt"),
            &path("agent.key"),
            &ROUNDS.to_string(),
        ])
        .output()
        .expect("run the SDK client");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the SDK client failed: {said}\ngateway: {}",
        gateway.log()
    );
    assert!(said.contains(&format!("exported {}", 3 * ROUNDS)), "{said}");

    // The exporter got its 200s only after the commits: everything is in the spool now.
    let (records, torn) =
        edge_gateway::sink::file::read_spool(&gateway.spool, "traces").expect("spool");
    assert_eq!(torn, 0);
    assert_eq!(records.len(), 3 * ROUNDS, "one record per export request");
    let mut spans: Vec<Span> = Vec::new();
    for r in &records {
        assert_eq!(r.key, "game", "the certificate's tenant");
        let req = ExportTraceServiceRequest::decode(r.data.as_slice()).expect("OTLP");
        for rs in req.resource_spans {
            let resource = rs.resource.expect("resource");
            assert!(resource.attributes.iter().any(|a| a.key == "service.name"
                && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()), Some(Value::StringValue(s)) if s == "game")));
            for ss in rs.scope_spans {
                assert_eq!(
                    ss.scope.as_ref().map(|s| s.name.as_str()),
                    Some("edgepipe.e2e")
                );
                spans.extend(ss.spans);
            }
        }
    }
    assert_eq!(spans.len(), 3 * ROUNDS);
    let named = |n: &str| spans.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let (matches, ticks, saves) = (named("match"), named("tick"), named("save"));
    assert_eq!(
        (matches.len(), ticks.len(), saves.len()),
        (ROUNDS, ROUNDS, ROUNDS)
    );
    for tick in &ticks {
        // Each tick is a child of its round's match, in the same trace.
        let parent = matches
            .iter()
            .find(|m| m.span_id == tick.parent_span_id)
            .expect("the tick's parent match");
        assert_eq!(parent.trace_id, tick.trace_id);
        assert_eq!(tick.trace_id.len(), 16);
        let attr = |k: &str| {
            tick.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.as_ref())
                .and_then(|v| v.value.clone())
        };
        assert_eq!(attr("tick.ms"), Some(Value::DoubleValue(16.5)));
        match attr("shards") {
            Some(Value::ArrayValue(a)) => assert_eq!(a.values.len(), 3),
            other => panic!("shards: {other:?}"),
        }
        assert_eq!(tick.events.len(), 1);
        assert_eq!(tick.events[0].name, "overrun");
    }
    for save in &saves {
        let status = save.status.as_ref().expect("status");
        assert_eq!((status.code, status.message.as_str()), (2, "disk full"));
    }
    let mut rounds: Vec<i64> = matches
        .iter()
        .filter_map(|m| {
            m.attributes
                .iter()
                .find(|a| a.key == "round")
                .and_then(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::IntValue(i)) => Some(*i),
                    _ => None,
                })
        })
        .collect();
    rounds.sort_unstable();
    assert_eq!(rounds, (0..ROUNDS as i64).collect::<Vec<_>>());
}
