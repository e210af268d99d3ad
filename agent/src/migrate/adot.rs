//! ADOT / OpenTelemetry Collector YAML → `agent.yaml`.
//!
//! | collector | agent |
//! |---|---|
//! | `receivers.otlp.protocols.{grpc,http}.endpoint` | `otlp: { grpc, http }` (on loopback) |
//! | `receivers.statsd.endpoint` | `statsd: { listen }` (on loopback) |
//! | `receivers.prometheus` static `scrape_configs` | `scrape: [ { url } ]` |
//! | `exporters.prometheusremotewrite.endpoint` | `output.metrics_url` (the gateway when it needs SigV4 or has no client certificate) |
//! | `exporters.prometheusremotewrite.external_labels` | `host_labels` |
//! | `processors.resourcedetection` with `ec2` | `host_labels` from IMDS |
//! | `processors.batch`, `memory_limiter`, `filter` | noted: the agent's cycle, bounds and gate |
//!
//! Only components a `service.pipelines` entry uses are translated (the others do not run
//! in the collector either); a receiver the collector did not have is turned `off`, so
//! the agent listens where the collector did and nowhere else. Everything else is listed
//! as not translated, with its line.

use std::path::Path;

use anyhow::Context as _;

use super::emit::{Agent, Commented, Otlp};
use super::node::{self, Item};
use super::{DEFAULT_TLS, Notes};

/// The collector's `${env:VAR}` (and `${VAR}`) as the agent writes it: `${VAR}`.
fn env_vars(value: &str) -> String {
    value.replace("${env:", "${")
}

/// An endpoint on loopback: the agent's receivers never listen on the network.
fn loopback(endpoint: &str, default_port: u16) -> (String, bool) {
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((h, p)) => (h, p.to_owned()),
        None => (endpoint, default_port.to_string()),
    };
    let host = host.trim_matches(['[', ']']);
    match host {
        "127.0.0.1" | "::1" => (
            format!("{}:{port}", if host == "::1" { "[::1]" } else { host }),
            false,
        ),
        "localhost" => (format!("127.0.0.1:{port}"), false),
        _ => (format!("127.0.0.1:{port}"), true),
    }
}

/// The component type of an id (`prometheusremotewrite/amp` → `prometheusremotewrite`).
fn kind(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// Translates collector config `file`.
pub fn translate(file: &Path, gateway: &str, notes: &mut Notes) -> anyhow::Result<Agent> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading collector config {}", file.display()))?;
    let root = node::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if root.get("receivers").is_none() && root.get("service").is_none() {
        anyhow::bail!(
            "{}: no `receivers` or `service`: is this an OpenTelemetry Collector config?",
            file.display()
        );
    }
    // What the pipelines use.
    let mut used: Vec<String> = Vec::new();
    if let Some(pipelines) = root.get("service").and_then(|s| s.get("pipelines")) {
        for (name, p) in pipelines.entries() {
            for part in ["receivers", "processors", "exporters"] {
                for id in p.get(part).map(Item::items).unwrap_or_default() {
                    if let Some(id) = id.text() {
                        used.push(format!("{part}.{id}"));
                    }
                }
            }
            let signal = kind(name.key_text());
            if signal != "metrics" {
                notes.untranslated(
                    file,
                    name.line,
                    format!("service.pipelines.{}", name.key_text()),
                    format!("a {signal} pipeline: the agent's OTLP receiver takes {signal} and sends them to the gateway, whose sinks are configured there"),
                );
            }
        }
    }
    let is_used = |part: &str, id: &str| used.iter().any(|u| *u == format!("{part}.{id}"));

    let mut agent = Agent {
        header: vec![
            format!(
                "Translated from collector config {} by `edge-agent migrate`.",
                file.display()
            ),
            "Settings that were not translated are listed on stderr with their lines.".into(),
        ],
        ..Agent::default()
    };
    let mut otlp = None;
    let mut statsd = None;
    for (id, r) in root.get("receivers").map(Item::entries).unwrap_or_default() {
        let id_text = id.key_text();
        let setting = format!("receivers.{id_text}");
        if !is_used("receivers", id_text) {
            notes.noted(
                file,
                id.line,
                setting,
                "in no pipeline: the collector does not run it, nor will the agent",
            );
            continue;
        }
        match kind(id_text) {
            "otlp" => {
                let (mut grpc, mut http) = (None, None);
                for (proto, p) in r.get("protocols").map(Item::entries).unwrap_or_default() {
                    let (port, slot) = match proto.key_text() {
                        "grpc" => (4317, &mut grpc),
                        "http" => (4318, &mut http),
                        other => {
                            notes.untranslated(file, proto.line, format!("{setting}.protocols.{other}"), "not a protocol the agent takes");
                            continue;
                        }
                    };
                    let endpoint = p.get("endpoint").and_then(Item::text).unwrap_or("127.0.0.1");
                    let (addr, moved) = loopback(endpoint, port);
                    if moved {
                        notes.noted(file, p.get("endpoint").map_or(proto.line, |e| e.line), format!("{setting}.protocols.{}.endpoint", proto.key_text()), format!("{endpoint:?} becomes {addr}: the agent's receivers listen on loopback only (the game runs on the host)"));
                    }
                    for (k, _) in p.entries() {
                        if k.key_text() != "endpoint" {
                            notes.untranslated(file, k.line, format!("{setting}.protocols.{}.{}", proto.key_text(), k.key_text()), "no equivalent in the agent's OTLP receiver");
                        }
                    }
                    *slot = Some(addr);
                }
                otlp = Some(Otlp::On { grpc, http });
            }
            "statsd" => {
                let endpoint = r.get("endpoint").and_then(Item::text).unwrap_or("127.0.0.1:8125");
                let (addr, moved) = loopback(endpoint, 8125);
                if moved {
                    notes.noted(file, r.get("endpoint").map_or(id.line, |e| e.line), format!("{setting}.endpoint"), format!("{endpoint:?} becomes {addr}: the agent's receivers listen on loopback only"));
                }
                for (k, v) in r.entries() {
                    let why = match k.key_text() {
                        "endpoint" => continue,
                        "aggregation_interval" => "the agent aggregates statsd per collection cycle (cadence: 10s)",
                        "transport" => "the agent takes statsd over UDP and TCP at once",
                        "enable_metric_type" | "is_monotonic_counter" => "counters become cumulative `_total` counters, gauges gauges",
                        "timer_histogram_mapping" => "timers become native histograms of seconds, `|h` and `|d` native histograms",
                        _ => {
                            notes.untranslated(file, k.line, format!("{setting}.{}", k.key_text()), "no equivalent in the agent's statsd receiver");
                            continue;
                        }
                    };
                    let _ = v;
                    notes.noted(file, k.line, format!("{setting}.{}", k.key_text()), why);
                }
                statsd = Some(Commented::new(addr, format!("receivers.{id_text}")));
            }
            "prometheus" => scrape_configs(file, r, &setting, &mut agent, notes),
            "hostmetrics" => notes.noted(file, id.line, setting, "host metrics are on by default (host_metrics), under node_exporter's names"),
            other => notes.untranslated(file, id.line, setting, format!("receiver {other:?}: the agent takes OTLP, statsd and remote_write pushes, scrapes Prometheus text, and tails files (logs)")),
        }
    }
    agent.otlp = Some(match otlp {
        Some(o) => (o, "receivers.otlp: the protocols the collector had".to_owned()),
        None => (Otlp::Off, "the collector had no OTLP receiver; remove this line for the agent's default (127.0.0.1:4317 and 4318)".to_owned()),
    });
    agent.statsd = Some(statsd.unwrap_or_else(|| Commented::new("off", "the collector had no statsd receiver; remove this line for the agent's default (127.0.0.1:8125)")));

    for (id, p) in root
        .get("processors")
        .map(Item::entries)
        .unwrap_or_default()
    {
        let id_text = id.key_text();
        let setting = format!("processors.{id_text}");
        if !is_used("processors", id_text) {
            continue;
        }
        match kind(id_text) {
            "batch" => notes.noted(file, id.line, setting, "the agent sends one remote_write batch per collection cycle (cadence: 10s, 5s in incident mode)"),
            "memory_limiter" => notes.noted(file, id.line, setting, "the agent's memory is bounded by design (about 7 MiB for metrics); what waits is bounded by the disk queue (queue.max_bytes)"),
            "filter" => notes.noted(file, id.line, setting, "the agent's filter is the label policy and the catalog: a series they refuse is folded into its metric's overflow series; name-based include/exclude has no equivalent"),
            "resourcedetection" => {
                let detectors: Vec<&str> = p.get("detectors").map(Item::items).unwrap_or_default().iter().filter_map(Item::text).collect();
                if detectors.contains(&"ec2") {
                    for name in ["region", "az", "instance_type"] {
                        if !agent.host_labels.iter().any(|(n, _)| n == name) {
                            agent.host_labels.push((name.into(), Commented::new("imds", format!("{setting} (ec2)"))));
                        }
                    }
                    notes.noted(file, id.line, setting, "ec2: region, az and instance_type come from IMDSv2 (host_labels: imds); other attributes are not labels in the agent");
                } else {
                    notes.untranslated(file, id.line, setting, "only the ec2 detector has an equivalent (host_labels: imds)");
                }
            }
            other => notes.untranslated(file, id.line, setting, format!("processor {other:?}: the agent's series pass only the label policy, the catalog and the host budget")),
        }
    }

    let mut metrics_url: Option<Commented> = None;
    for (id, e) in root.get("exporters").map(Item::entries).unwrap_or_default() {
        let id_text = id.key_text();
        let setting = format!("exporters.{id_text}");
        if !is_used("exporters", id_text) {
            continue;
        }
        match kind(id_text) {
            "prometheusremotewrite" => {
                metrics_url = Some(remote_write(file, e, &setting, gateway, &mut agent, notes));
            }
            "debug" | "logging" => notes.noted(file, id.line, setting, "a debugging exporter; the agent's /metrics counts what it ships"),
            other => notes.untranslated(file, id.line, setting, format!("exporter {other:?}: the agent sends to the edgepipe gateway, whose sinks (Kinesis, remote_write with SigV4, OTLP, file) are configured there")),
        }
    }
    for (id, _) in root
        .get("extensions")
        .map(Item::entries)
        .unwrap_or_default()
    {
        let setting = format!("extensions.{}", id.key_text());
        match kind(id.key_text()) {
            "health_check" => notes.noted(file, id.line, setting, "the agent serves /healthz and /ready on `listen` (127.0.0.1:9740)"),
            "sigv4auth" => notes.noted(file, id.line, setting, "the gateway signs for AWS (sinks.metrics: remote_write with sigv4); the agent uses mTLS to the gateway"),
            other => notes.untranslated(file, id.line, setting, format!("extension {other:?}: no equivalent in the agent")),
        }
    }
    if let Some(t) = root.get("service").and_then(|s| s.get("telemetry")) {
        notes.noted(file, t.line, "service.telemetry", "the agent's own metrics are on /metrics and sent with the host's series; its log level is EDGE_AGENT_LOG");
    }

    agent.metrics_url = metrics_url.unwrap_or_else(|| {
        Commented::new(
            format!("{gateway}/api/v1/push"),
            "the collector had no remote_write exporter: the gateway",
        )
    });
    let https =
        agent.metrics_url.value.starts_with("https://") || agent.metrics_url.value.contains("${");
    if agent.tls.is_none() && https {
        agent.tls = Some((
            DEFAULT_TLS.map(String::from),
            "mTLS to the gateway: where the image's certificates are".into(),
        ));
    }
    Ok(agent)
}

fn scrape_configs(file: &Path, r: &Item, setting: &str, agent: &mut Agent, notes: &mut Notes) {
    let Some(config) = r.get("config") else {
        notes.untranslated(file, r.line, setting, "no `config`: nothing to scrape");
        return;
    };
    for (k, v) in config.entries() {
        match k.key_text() {
            "scrape_configs" => {}
            "global" => notes.noted(
                file,
                k.line,
                format!("{setting}.config.global"),
                "the agent scrapes every target once per collection cycle (cadence: 10s)",
            ),
            other => notes.untranslated(
                file,
                k.line,
                format!("{setting}.config.{other}"),
                "no equivalent in the agent",
            ),
        }
        let _ = v;
    }
    for (i, sc) in config
        .get("scrape_configs")
        .map(Item::items)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let job = sc.get("job_name").and_then(Item::text).unwrap_or("?");
        let base = format!("{setting}.config.scrape_configs[{i}] ({job})");
        let scheme = sc.get("scheme").and_then(Item::text).unwrap_or("http");
        let path = sc
            .get("metrics_path")
            .and_then(Item::text)
            .unwrap_or("/metrics");
        for (k, v) in sc.entries() {
            let key = k.key_text();
            match key {
                "job_name" | "scheme" | "metrics_path" => {}
                "scrape_interval" | "scrape_timeout" => notes.noted(file, k.line, format!("{base}.{key}"), "the agent scrapes once per collection cycle (cadence: 10s) with a timeout of half the cadence"),
                "static_configs" => {
                    for sc in v.items() {
                        for t in sc.get("targets").map(Item::items).unwrap_or_default() {
                            if let Some(target) = t.text() {
                                agent.scrape.push(Commented::new(
                                    env_vars(&format!("{scheme}://{target}{path}")),
                                    format!("job {job}"),
                                ));
                            }
                        }
                        if let Some(labels) = sc.get("labels") {
                            notes.untranslated(file, labels.line, format!("{base}.static_configs.labels"), "the agent adds no per-target labels: the series keep their own labels and get the host labels");
                        }
                    }
                }
                k if k.ends_with("_sd_configs") => notes.untranslated(file, v.line, format!("{base}.{key}"), "the agent scrapes static URLs only: list the targets on this host"),
                _ => notes.untranslated(file, k.line, format!("{base}.{key}"), "no equivalent in the agent's scrape (series pass the label policy and the catalog instead of relabelling)"),
            }
        }
    }
}

fn remote_write(
    file: &Path,
    e: &Item,
    setting: &str,
    gateway: &str,
    agent: &mut Agent,
    notes: &mut Notes,
) -> Commented {
    let endpoint = e
        .get("endpoint")
        .and_then(Item::text)
        .map(env_vars)
        .unwrap_or_default();
    let sigv4 = e
        .get("auth")
        .and_then(|a| a.get("authenticator"))
        .and_then(Item::text)
        .is_some_and(|a| kind(a) == "sigv4auth")
        || endpoint.contains("aps-workspaces");
    let tls = e.get("tls");
    let client_cert = tls.and_then(|t| {
        let get = |k: &str| t.get(k).and_then(Item::text).map(env_vars);
        Some([get("cert_file")?, get("key_file")?, get("ca_file")?])
    });
    let gateway_url = || format!("{gateway}/api/v1/push");
    let url = if sigv4 {
        notes.noted(file, e.line, format!("{setting}.endpoint"), format!("{endpoint} needs SigV4: the agent sends to the gateway, whose `sinks.metrics: {{ kind: remote_write, url: {endpoint}, sigv4: {{ region, service: aps }} }}` writes there"));
        Commented::new(
            gateway_url(),
            format!("the collector wrote to {endpoint} (SigV4): the gateway does now"),
        )
    } else if endpoint.starts_with("http://") {
        Commented::new(endpoint.clone(), format!("{setting}.endpoint"))
    } else if let (true, Some(files)) = (endpoint.starts_with("https://"), client_cert) {
        agent.tls = Some((files, format!("{setting}.tls")));
        Commented::new(endpoint.clone(), format!("{setting}.endpoint"))
    } else {
        notes.noted(file, e.line, format!("{setting}.endpoint"), format!("{endpoint:?}: the agent sends over mTLS with a client certificate, which this exporter has not: it sends to the gateway instead"));
        Commented::new(gateway_url(), format!("the collector wrote to {endpoint}"))
    };
    for (k, v) in e.entries() {
        let key = k.key_text();
        let s = format!("{setting}.{key}");
        match key {
            "endpoint" | "auth" | "tls" => {}
            "external_labels" => {
                for (name, value) in v.entries() {
                    let n = name.key_text();
                    if !edge_schema::names::is_valid_label_name(n) {
                        notes.untranslated(file, name.line, format!("{s}.{n}"), "not a valid label name");
                        continue;
                    }
                    agent.host_labels.retain(|(h, _)| h != n);
                    agent.host_labels.push((n.to_owned(), Commented::new(env_vars(value.text().unwrap_or("")), s.clone())));
                }
                notes.noted(file, k.line, s, "host labels: on every series the agent sends, replacing a pushed label of the same name; the label policy must allow them (host_labels: in labels.yaml)");
            }
            "resource_to_telemetry_conversion" => notes.noted(file, k.line, s, "resource attributes are not labels in the agent: the host labels are"),
            "retry_on_failure" | "sending_queue" | "remote_write_queue" | "timeout" => notes.noted(file, k.line, s, "the agent keeps every batch in its disk queue and retries until a 2xx, backing off exponentially (0.5 s to 30 s)"),
            "compression" => notes.noted(file, k.line, s, "the agent always compresses remote_write with snappy"),
            "add_metric_suffixes" | "send_metadata" => notes.noted(file, k.line, s, "the agent sends the names the catalog declares"),
            _ => notes.untranslated(file, k.line, s, "no equivalent in the agent"),
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_move_to_loopback() {
        assert_eq!(
            loopback("0.0.0.0:4317", 4317),
            ("127.0.0.1:4317".into(), true)
        );
        assert_eq!(
            loopback("localhost:8125", 8125),
            ("127.0.0.1:8125".into(), false)
        );
        assert_eq!(
            loopback("127.0.0.1:4318", 4318),
            ("127.0.0.1:4318".into(), false)
        );
        assert_eq!(loopback(":4318", 4318), ("127.0.0.1:4318".into(), true));
        assert_eq!(env_vars("${env:CLUSTER}"), "${CLUSTER}");
    }
}
