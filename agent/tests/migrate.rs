//! `edge-agent migrate` on the real binary: the bench's Fluent Bit config (copied from
//! `../shared/bench/` into `tests/data/migrate/`), a fleet config in both of Fluent Bit's
//! formats, and an ADOT config. Every translation must pass `edge-agent validate`, list
//! what it could not translate with its line, and the translated regex parser must yield
//! the records the original Fluent Bit regex yields on the bench's game log.

use std::path::{Path, PathBuf};
use std::process::Command;

use edge_agent::logs::parse::Parser;
use edge_agent::logs::record::Level;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/migrate")
        .join(name)
}

/// Runs `edge-agent migrate ARGS` from the data directory: (exit code, stdout, stderr).
fn migrate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("migrate")
        .args(args)
        .current_dir(data(""))
        .output()
        .expect("edge-agent runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `edge-agent validate` on `config` with the variables the image's cloud-init
/// writes to agent.env (GATEWAY_URL, CLUSTER) set; returns stderr on failure.
fn validate(config: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("agent.yaml");
    std::fs::write(&file, config).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["validate", "--config"])
        .arg(&file)
        .env("GATEWAY_URL", "https://gateway.us-east-1.obs.internal:8443")
        .env("CLUSTER", "game-use1-a")
        .output()
        .expect("edge-agent runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The lines a note list holds for `file`, without the summary line.
fn notes(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.starts_with("edge-agent migrate:"))
        .collect()
}

#[test]
fn the_bench_config_translates_validates_and_lists_what_did_not_carry_over() {
    let (code, stdout, stderr) = migrate(&["--from", "fluent-bit", "fluent-bit-otlp.conf"]);
    assert_eq!(code, 0, "{stderr}");
    validate(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    assert!(
        stdout.contains("    parser: regex   # from [PARSER] gamelog\n    pattern: '^(?P<time>[^ ]+) (?P<level>[A-Z]+) (?P<message>.*)$'\n    read_from: beginning\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  - path: /var/log/game/game.log\n    service: game "),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("Fluent Bit sent OTLP to http://127.0.0.1:18999/v1/logs ([OUTPUT] line 13)"),
        "{stdout}"
    );
    assert_eq!(
        notes(&stderr),
        [
            "fluent-bit-otlp.conf:2: note: [SERVICE] Flush: the agent closes a log batch at 1 s, 1 MiB or 8,192 records",
            "fluent-bit-otlp.conf:3: note: [SERVICE] Log_Level: the agent's own log level is EDGE_AGENT_LOG (e.g. EDGE_AGENT_LOG=warn in its unit's environment)",
            "fluent-bit-otlp.conf:9: not translated: [INPUT] tail: Exit_On_Eof: the agent is a daemon: it follows files until stopped",
            "fluent-bit-otlp.conf:11: note: [INPUT] tail: Buffer_Chunk_Size: the agent reads with its own buffer; lines over max_line_bytes (64KiB) are split and flagged, not skipped",
            "fluent-bit-otlp.conf:12: note: [INPUT] tail: Buffer_Max_Size: the agent reads with its own buffer; lines over max_line_bytes (64KiB) are split and flagged, not skipped",
            "fluent-bit-otlp.conf:19: note: [OUTPUT] opentelemetry: Compress: the agent always compresses batches with zstd",
        ]
    );
    assert!(stderr.ends_with("edge-agent migrate: 1 setting(s) not translated, 5 note(s)\n"));

    // With the gateway given, the config validates with no environment at all.
    let (code, stdout, _) = migrate(&[
        "--from",
        "fluent-bit",
        "--gateway",
        "http://127.0.0.1:18999",
        "fluent-bit-otlp.conf",
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("logs_url: http://127.0.0.1:18999/v1/logs"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("tls:"),
        "plain http needs no client certificate"
    );
}

/// Nanoseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`, the bench log's time form
/// (`Time_Format %Y-%m-%dT%H:%M:%S.%LZ`), computed here rather than by the agent.
fn fluent_bit_time(text: &str) -> i64 {
    let n = |a: usize, b: usize| -> i64 { text[a..b].parse().expect("digits") };
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    // Days from civil (proleptic Gregorian), for March-based years.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19);
    secs * 1_000_000_000 + n(20, 23) * 1_000_000
}

#[test]
fn the_translated_parser_yields_the_records_of_the_fluent_bit_regex() {
    const LINES: usize = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("game.log");
    let generated = Command::new("python3")
        .arg(data("gen_gamelog.py"))
        .arg(&log)
        .arg(LINES.to_string())
        .status()
        .expect("python3 runs (the test generates the bench's game log with it)");
    assert!(generated.success());
    let text = std::fs::read_to_string(&log).expect("log");

    let (code, stdout, stderr) = migrate(&["--from", "fluent-bit", "fluent-bit-otlp.conf"]);
    assert_eq!(code, 0, "{stderr}");
    let config = edge_agent::config::parse(Path::new("agent.yaml"), &stdout, &|_| {
        Some("https://gw.example:8443".into())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.logs.len(), 1);
    let source = &config.logs[0];
    let parser = Parser::new(source.parser, source.pattern.as_deref()).expect("parser");

    // The original regex, as Fluent Bit has it, applied by the regex crate (which reads
    // Onigmo's `(?<name>…)` groups as they are).
    let parsers = std::fs::read_to_string(data("parsers.conf")).expect("parsers.conf");
    let original = parsers
        .lines()
        .find_map(|l| l.trim().strip_prefix("Regex"))
        .expect("a Regex line")
        .trim();
    let fluent_bit = regex::Regex::new(original).expect("the original regex");

    let mut records = 0;
    let mut by_level = [0usize; 3];
    for (n, line) in text.lines().enumerate() {
        let caps = fluent_bit.captures(line).expect("every bench line matches");
        let record = parser.parse(line, 0);
        records += 1;
        assert!(!record.parse_failed, "line {n}: {line}");
        assert_eq!(
            record.timestamp_ns,
            Some(fluent_bit_time(&caps["time"])),
            "line {n}"
        );
        assert_eq!(
            record.level.name(),
            caps["level"].to_ascii_lowercase(),
            "line {n}"
        );
        assert_eq!(record.message, &caps["message"], "line {n}");
        // Fluent Bit's record has no other field (time is its Time_Key): nor has ours.
        assert!(
            record.attributes.is_empty(),
            "line {n}: {:?}",
            record.attributes
        );
        match record.level {
            Level::Warn => by_level[0] += 1,
            Level::Info => by_level[1] += 1,
            Level::Debug => by_level[2] += 1,
            other => panic!("line {n}: level {other:?}"),
        }
    }
    assert_eq!(records, LINES);
    assert_eq!(by_level.iter().sum::<usize>(), LINES);
    // The generator's mix: about 10% WARN, 50% INFO, 40% DEBUG.
    assert!(
        by_level[0] > LINES / 20 && by_level[1] > LINES * 2 / 5,
        "{by_level:?}"
    );
}

/// The config without comments and blank lines, for comparing two translations.
fn uncommented(config: &str) -> String {
    config
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split("   # ").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_fleet_config_in_classic_and_yaml_form_translates_alike() {
    let (code, classic, classic_notes) = migrate(&["--from", "fluent-bit", "fleet.conf"]);
    assert_eq!(code, 0, "{classic_notes}");
    let (code, yaml, yaml_notes) = migrate(&["--from", "fluent-bit", "fleet.yaml"]);
    assert_eq!(code, 0, "{yaml_notes}");
    validate(&classic).unwrap_or_else(|e| panic!("{e}\n{classic}"));
    validate(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(uncommented(&classic), uncommented(&yaml));

    for expected in [
        // Onigmo named groups and a Time_Key the agent does not know by name.
        r"pattern: '^(?P<time>\S+) \[(?P<level>\w+)\] (?P<component>[\w.]+): (?P<message>.*)$'",
        // grep Exclude on the level → min_level; on the message → drop.
        "min_level: info",
        "      - 'healthcheck (ok|passed)'",
        // A custom [MULTILINE_PARSER]'s start rule, and its parser.
        r"multiline: { start: '^\d{4}-\d\d-\d\d ' }",
        r"pattern: '^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<level>[A-Z]+) (?P<message>(?:.*))$'",
        // modify Add → tags, on every source `Match *` selects.
        "    tags:\n      team: netcode\n",
        // @SET variables are expanded.
        "  - path: /var/log/game/server-*.log\n",
        "delivery_stream: game-logs",
    ] {
        assert!(classic.contains(expected), "{expected}\n{classic}");
    }
    assert_eq!(classic.matches("team: netcode").count(), 3);
    // The look-behind parser could not be translated: that source keeps lines as text.
    assert!(classic.contains("    service: jvm "), "{classic}");

    let untranslated: Vec<&str> = classic_notes
        .lines()
        .filter(|l| l.contains(": not translated: "))
        .collect();
    assert_eq!(
        untranslated,
        [
            "fleet.conf:13: not translated: [INPUT] tail: Exclude_Path: \"/var/log/game/server-debug.log\": the agent tails every file its glob matches; narrow the path glob instead",
            "fleet-parsers.conf:17: not translated: [PARSER] nginx_like: Regex: look-around ((?=…), (?!…), (?<=…), (?<!…)): the agent's regexes have none; rewrite it with the captured parts instead; lines are kept as text (parser: none)",
            "fleet.conf:32: not translated: [INPUT] systemd: input \"systemd\": the agent tails files (tail), takes OTLP, statsd and remote_write pushes, and scrapes Prometheus text",
            "fleet.conf:49: not translated: [FILTER] grep: Regex: the agent drops records that match (drop:), it cannot keep only those that match; write the opposite as a drop pattern",
            "fleet.conf:56: not translated: [FILTER] modify: Rename: no equivalent in the agent's per-source stages (parse, min_level, drop, sample, tags)",
            "fleet.conf:58: not translated: [FILTER] lua: filter \"lua\": the agent's per-source stages are parse, min_level, drop, sample and tags",
        ],
        "{classic_notes}"
    );
    // The YAML form names the same settings at its own lines.
    assert_eq!(
        yaml_notes
            .lines()
            .filter(|l| l.contains(": not translated: "))
            .count(),
        untranslated.len(),
        "{yaml_notes}"
    );
    assert!(
        yaml_notes.contains("fleet.yaml:14: not translated: [INPUT] tail: exclude_path:"),
        "{yaml_notes}"
    );
    assert!(classic_notes.contains("fleet-parsers.conf:5: note: [PARSER] server: Time_Key: the group \"when\" is renamed `time`"), "{classic_notes}");
    assert!(
        classic_notes.contains("fleet.conf:16: note: [INPUT] tail: Mem_Buf_Limit:"),
        "{classic_notes}"
    );
}

#[test]
fn a_file_that_is_not_a_config_is_refused_with_where() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x.conf");
    std::fs::write(&file, "Name tail\n").expect("write");
    let (code, stdout, stderr) = migrate(&["--from", "fluent-bit", file.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("x.conf:1: `Name` is outside any [SECTION]"),
        "{stderr}"
    );
}

#[test]
fn an_adot_config_translates_receivers_scrapes_and_remote_write() {
    let (code, stdout, stderr) = migrate(&["--from", "adot", "adot.yaml"]);
    assert_eq!(code, 0, "{stderr}");
    validate(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    for expected in [
        "host_labels:\n  region: imds   # processors.resourcedetection (ec2)\n  az: imds   # processors.resourcedetection (ec2)\n  instance_type: imds   # processors.resourcedetection (ec2)\n  cluster: \"${CLUSTER}\"   # exporters.prometheusremotewrite.external_labels\n  build_id: 2026.11.23-1   # exporters.prometheusremotewrite.external_labels\n",
        "scrape:\n  - { url: http://127.0.0.1:9100/metrics }   # job node\n  - { url: http://127.0.0.1:9901/stats/prometheus }   # job matchmaker\n  - { url: http://127.0.0.1:9902/stats/prometheus }   # job matchmaker\n",
        "otlp: { grpc: 127.0.0.1:4317, http: 127.0.0.1:4318 }",
        "statsd: { listen: 127.0.0.1:8125 }",
        "  metrics_url: \"${GATEWAY_URL}/api/v1/push\"   # the collector wrote to https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1234/api/v1/remote_write (SigV4): the gateway does now\n",
    ] {
        assert!(stdout.contains(expected), "{expected}\n{stdout}");
    }
    assert!(
        !stdout.contains("logs:"),
        "no logs in a metrics collector: {stdout}"
    );
    let untranslated: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": not translated: "))
        .collect();
    assert_eq!(
        untranslated,
        [
            "adot.yaml:85: not translated: service.pipelines.traces: a traces pipeline: the agent's OTLP receiver takes traces and sends them to the gateway, whose sinks are configured there",
            "adot.yaml:37: not translated: receivers.prometheus.config.scrape_configs[1] (matchmaker).static_configs.labels: the agent adds no per-target labels: the series keep their own labels and get the host labels",
            "adot.yaml:38: not translated: receivers.prometheus.config.scrape_configs[1] (matchmaker).metric_relabel_configs: no equivalent in the agent's scrape (series pass the label policy and the catalog instead of relabelling)",
            "adot.yaml:57: not translated: processors.metricstransform: processor \"metricstransform\": the agent's series pass only the label policy, the catalog and the host budget",
            "adot.yaml:73: not translated: exporters.prometheusremotewrite.namespace: no equivalent in the agent",
            "adot.yaml:74: not translated: exporters.awsxray: exporter \"awsxray\": the agent sends to the edgepipe gateway, whose sinks (Kinesis, remote_write with SigV4, OTLP, file) are configured there",
        ],
        "{stderr}"
    );
    for noted in [
        "adot.yaml:14: note: receivers.otlp.protocols.grpc.endpoint: \"0.0.0.0:4317\" becomes 127.0.0.1:4317",
        "adot.yaml:42: note: receivers.awsecscontainermetrics: in no pipeline",
        "adot.yaml:45: note: processors.batch:",
        "adot.yaml:47: note: processors.memory_limiter:",
        "adot.yaml:52: note: processors.filter/drop_debug:",
    ] {
        assert!(stderr.contains(noted), "{noted}\n{stderr}");
    }
}

#[test]
fn a_collector_without_statsd_or_otlp_turns_them_off_and_keeps_a_plain_remote_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("collector.yaml");
    std::fs::write(
        &file,
        "receivers:\n  prometheus:\n    config:\n      scrape_configs:\n        - job_name: game\n          static_configs: [ { targets: ['localhost:9400'] } ]\n          ec2_sd_configs: [ { region: us-east-1 } ]\nexporters:\n  prometheusremotewrite/local:\n    endpoint: http://127.0.0.1:9090/api/v1/write\nservice:\n  pipelines:\n    metrics:\n      receivers: [prometheus]\n      exporters: [prometheusremotewrite/local]\n",
    )
    .expect("write");
    let (code, stdout, stderr) = migrate(&["--from", "adot", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stderr}");
    validate(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    assert!(
        stdout.contains("scrape:\n  - { url: http://localhost:9400/metrics }   # job game\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\notlp: off   # the collector had no OTLP receiver"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nstatsd: off   # the collector had no statsd receiver"),
        "{stdout}"
    );
    assert!(stdout.contains("  metrics_url: http://127.0.0.1:9090/api/v1/write   # exporters.prometheusremotewrite/local.endpoint\n"), "{stdout}");
    assert!(!stdout.contains("tls:"), "{stdout}");
    assert!(stderr.contains("collector.yaml:7: not translated: receivers.prometheus.config.scrape_configs[0] (game).ec2_sd_configs: the agent scrapes static URLs only"), "{stderr}");
}
