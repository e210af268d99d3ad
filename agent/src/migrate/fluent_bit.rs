//! Fluent Bit → `agent.yaml`: classic `.conf` (with `@INCLUDE` and `@SET`) and YAML
//! configs, and their parsers files.
//!
//! | Fluent Bit | agent |
//! |---|---|
//! | `[INPUT] tail`: `Path` (comma-separated) | one `logs:` entry per path |
//! | `Read_from_Head true` | `read_from: beginning` |
//! | `Parser` → `[PARSER]` regex / json / logfmt | `parser:` (+ `pattern:`, Onigmo translated) |
//! | `Time_Key` not named like a time field | the capture renamed to `time` |
//! | `multiline.parser` docker / cri | `parser: json` / a CRI `regex` |
//! | `multiline.parser` java / python / go, `[MULTILINE_PARSER]` start rules | `multiline: { start }` |
//! | `[FILTER] grep` `Regex`/`Exclude` on the level | `min_level:` |
//! | `[FILTER] grep` `Exclude` on the message | `drop:` |
//! | `[FILTER] record_modifier` `Record`, `modify` `Add`/`Set` | `tags:` |
//! | `[OUTPUT]` opentelemetry / http / kinesis_firehose | `output.logs_url`: the gateway, with a comment |
//!
//! Filters apply to the inputs whose `Tag` their `Match` (or `Match_Regex`) selects, as
//! in Fluent Bit. Everything else is listed as not translated, with its line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::emit::{Agent, Commented, Log};
use super::node::{self, Item};
use super::{DEFAULT_TLS, Notes, onig};

mod read;

use read::*;

/// The agent's log parser for a Fluent Bit parser.
struct Parsed {
    parser: &'static str,
    pattern: Option<String>,
    comment: String,
}

/// Time formats the agent reads without being told (RFC 3339 / ISO 8601, epoch seconds).
fn time_format_understood(format: &str) -> bool {
    let f = format.trim();
    if f == "%s" {
        return true;
    }
    let rest = f
        .strip_prefix("%Y-%m-%dT%H:%M:%S")
        .or_else(|| f.strip_prefix("%Y-%m-%d %H:%M:%S"));
    let Some(rest) = rest else { return false };
    let rest = rest
        .strip_prefix(".%L")
        .or_else(|| rest.strip_prefix(".%f"))
        .or_else(|| rest.strip_prefix(",%L"))
        .unwrap_or(rest);
    matches!(rest, "" | "Z" | "%z" | "%:z")
}

/// Field names the agent lifts as the time.
const TIME_NAMES: &[&str] = &["@timestamp", "timestamp", "ts", "time"];

fn translate_parser(p: &Section, notes: &mut Notes) -> Parsed {
    let name = p.value("name").unwrap_or("?").to_owned();
    let file = &p.file;
    let format = p.value("format").unwrap_or("").to_ascii_lowercase();
    let time_key = p.get("time_key");
    let mut parsed = match format.as_str() {
        "json" => Parsed {
            parser: "json",
            pattern: None,
            comment: format!("[PARSER] {name} (json)"),
        },
        "logfmt" => Parsed {
            parser: "logfmt",
            pattern: None,
            comment: format!("[PARSER] {name} (logfmt)"),
        },
        "regex" => {
            let Some(re) = p.get("regex") else {
                notes.untranslated(
                    file,
                    p.line,
                    format!("[PARSER] {name}"),
                    "a regex parser without Regex: lines are kept as text (parser: none)",
                );
                return none_parser(&name);
            };
            match onig::translate(&re.value) {
                Ok(t) => {
                    for n in t.notes {
                        notes.noted(file, re.line, format!("[PARSER] {name}: Regex"), n);
                    }
                    let mut pattern = t.pattern;
                    if let Some(tk) = time_key
                        && !TIME_NAMES.iter().any(|n| n.eq_ignore_ascii_case(&tk.value))
                    {
                        if pattern.contains("(?P<time>") {
                            notes.untranslated(file, tk.line, format!("[PARSER] {name}: Time_Key"), format!("{:?} is the time, but a group is already named `time`: rename one so the agent lifts the right field", tk.value));
                        } else {
                            pattern = onig::rename_group(&pattern, &tk.value, "time");
                            notes.noted(
                                file,
                                tk.line,
                                format!("[PARSER] {name}: Time_Key"),
                                format!(
                                    "the group {:?} is renamed `time`, the name the agent reads a record's time from",
                                    tk.value
                                ),
                            );
                        }
                    }
                    Parsed {
                        parser: "regex",
                        pattern: Some(pattern),
                        comment: format!("[PARSER] {name}"),
                    }
                }
                Err(why) => {
                    notes.untranslated(
                        file,
                        re.line,
                        format!("[PARSER] {name}: Regex"),
                        format!("{why}; lines are kept as text (parser: none)"),
                    );
                    return none_parser(&name);
                }
            }
        }
        other => {
            notes.untranslated(
                file,
                p.line,
                format!("[PARSER] {name}"),
                format!(
                    "format {other:?}: the agent parses json, regex and logfmt; lines are kept as text (parser: none)"
                ),
            );
            return none_parser(&name);
        }
    };
    for e in &p.entries {
        let setting = format!("[PARSER] {name}: {}", e.key);
        match e.key.to_ascii_lowercase().as_str() {
            "name" | "format" | "regex" => {}
            "time_key" => {
                if parsed.parser != "regex"
                    && !TIME_NAMES.iter().any(|n| n.eq_ignore_ascii_case(&e.value))
                {
                    notes.untranslated(file, e.line, setting, format!("the agent reads the time from @timestamp, timestamp, ts or time; {:?} stays an attribute", e.value));
                }
            }
            "time_format" => {
                if !time_format_understood(&e.value) {
                    notes.untranslated(file, e.line, setting, format!("{:?}: the agent reads RFC 3339 and epoch times by itself; a time in another form stays an attribute and the record takes the time it was read", e.value));
                }
            }
            "time_keep" => notes.noted(
                file,
                e.line,
                setting,
                "the agent lifts the time out of the record (Time_Keep Off)",
            ),
            "types" => notes.noted(
                file,
                e.line,
                setting,
                "the agent keeps attribute values as text",
            ),
            "skip_empty_values" => {}
            _ => notes.untranslated(file, e.line, setting, "no equivalent in the agent"),
        }
    }
    parsed.comment = format!("from {}", parsed.comment);
    parsed
}

fn none_parser(name: &str) -> Parsed {
    Parsed {
        parser: "none",
        pattern: None,
        comment: format!("[PARSER] {name} could not be translated (see stderr)"),
    }
}

/// A start pattern for lines that begin with a non-blank character other than one of
/// `prefixes` (whose first characters differ): without look-ahead, each prefix is
/// excluded one character at a time.
fn start_except(prefixes: &[&str]) -> String {
    fn not_rest(rest: &[char]) -> String {
        // Matches when the text does not go on with `rest`.
        let Some((first, tail)) = rest.split_first() else {
            return String::from("(?:[^\\s\\S])");
        };
        let c = regex::escape(&first.to_string());
        if tail.is_empty() {
            format!("(?:$|[^{c}])")
        } else {
            format!("(?:$|[^{c}]|{c}{})", not_rest(tail))
        }
    }
    let mut firsts = String::from("\\s");
    let mut alts = Vec::new();
    for p in prefixes {
        let chars: Vec<char> = p.chars().collect();
        let Some((first, tail)) = chars.split_first() else {
            continue;
        };
        let c = regex::escape(&first.to_string());
        firsts.push_str(&c);
        alts.push(format!("{c}{}", not_rest(tail)));
    }
    let mut out = format!("^(?:[^{firsts}]");
    for a in alts {
        out.push('|');
        out.push_str(&a);
    }
    out.push(')');
    out
}

/// The CRI log format (containerd, CRI-O): time, stream, partial flag, message.
const CRI_PATTERN: &str = r"^(?P<time>\S+) (?P<stream>stdout|stderr) (?P<logtag>\S+) (?P<log>.*)$";

/// What one `[INPUT] tail` became.
struct Source {
    tag: String,
    logs: Vec<Log>,
}

/// Translates Fluent Bit config `file` (and `parsers`, or the `Parsers_File` it names).
pub fn translate(
    file: &Path,
    parsers: Option<&Path>,
    gateway: &str,
    notes: &mut Notes,
) -> anyhow::Result<Agent> {
    let mut sections = Vec::new();
    load(file, &mut sections, 0)?;
    let mut parser_sections: Vec<Section> = Vec::new();
    // Parsers files: the one given, else the ones the service names.
    let mut parser_files: Vec<PathBuf> = parsers.map(Path::to_path_buf).into_iter().collect();
    for s in sections.iter().filter(|s| s.kind == "SERVICE") {
        for e in &s.entries {
            let setting = format!("[SERVICE] {}", e.key);
            match e.key.to_ascii_lowercase().as_str() {
                "parsers_file" => {
                    if parsers.is_none() {
                        parser_files
                            .push(s.file.parent().unwrap_or(Path::new(".")).join(&e.value));
                    }
                }
                "flush" => notes.noted(&s.file, e.line, setting, "the agent closes a log batch at 1 s, 1 MiB or 8,192 records"),
                "log_level" => notes.noted(&s.file, e.line, setting, "the agent's own log level is EDGE_AGENT_LOG (e.g. EDGE_AGENT_LOG=warn in its unit's environment)"),
                "http_server" | "http_listen" | "http_port" | "health_check" => notes.noted(&s.file, e.line, setting, "the agent always serves /metrics, /healthz and /ready on `listen` (127.0.0.1:9740)"),
                "daemon" | "grace" | "hot_reload" => notes.noted(&s.file, e.line, setting, "the agent runs under systemd (Type=notify) and drains for up to 3 s on SIGTERM"),
                k if k.starts_with("storage.") => notes.noted(&s.file, e.line, setting, "the agent keeps every batch in its disk queue until the gateway's 2xx (queue.dir, queue.max_bytes, default 256MiB)"),
                _ => notes.untranslated(&s.file, e.line, setting, "no equivalent in the agent"),
            }
        }
    }
    for pf in &parser_files {
        let mut loaded = Vec::new();
        load(pf, &mut loaded, 0).with_context(|| {
            "reading the parsers file (give it with --parsers FILE)".to_string()
        })?;
        parser_sections.extend(loaded);
    }
    parser_sections.extend(
        sections
            .iter()
            .filter(|s| s.kind == "PARSER" || s.kind == "MULTILINE_PARSER")
            .cloned(),
    );

    let mut sources: Vec<Source> = Vec::new();
    for (index, s) in sections.iter().filter(|s| s.kind == "INPUT").enumerate() {
        let name = s.name();
        match name.as_str() {
            "tail" => {
                if let Some(src) = translate_tail(s, index, &parser_sections, notes) {
                    sources.push(src);
                }
            }
            "cpu" | "mem" | "disk" | "netif" | "proc" | "node_exporter_metrics" => notes.noted(
                &s.file,
                s.line,
                s.setting(""),
                "host metrics are on by default (host_metrics), under node_exporter's names",
            ),
            "statsd" => notes.noted(&s.file, s.line, s.setting(""), "the agent's statsd receiver is on by default on 127.0.0.1:8125"),
            "opentelemetry" => notes.noted(&s.file, s.line, s.setting(""), "the agent's OTLP receiver is on by default on 127.0.0.1:4317 (gRPC) and 4318 (HTTP)"),
            "prometheus_scrape" => {
                let host = s.value("host").unwrap_or("127.0.0.1");
                let port = s.value("port").unwrap_or("9100");
                let path = s.value("metrics_path").unwrap_or("/metrics");
                notes.untranslated(&s.file, s.line, s.setting(""), format!("add `scrape: [ {{ url: \"http://{host}:{port}{path}\" }} ]` if its metrics should pass the agent's gate"));
            }
            other => notes.untranslated(
                &s.file,
                s.line,
                s.setting(""),
                format!("input {other:?}: the agent tails files (tail), takes OTLP, statsd and remote_write pushes, and scrapes Prometheus text"),
            ),
        }
    }

    for f in sections.iter().filter(|s| s.kind == "FILTER") {
        translate_filter(f, &mut sources, notes);
    }

    let mut agent = Agent::default();
    let mut logs_comment = String::from("the gateway: it commits logs to Firehose/OpenSearch");
    for o in sections.iter().filter(|s| s.kind == "OUTPUT") {
        let name = o.name();
        let host = o.value("host").unwrap_or("127.0.0.1");
        let port = o.value("port").unwrap_or("80");
        let tls = o.value("tls").is_some_and(is_on);
        let scheme = if tls { "https" } else { "http" };
        match name.as_str() {
            "opentelemetry" => {
                let uri = o.value("logs_uri").unwrap_or("/v1/logs");
                logs_comment = format!(
                    "Fluent Bit sent OTLP to {scheme}://{host}:{port}{uri} ([OUTPUT] line {}); the agent sends OTLP to the gateway",
                    o.line
                );
            }
            "http" => {
                let uri = o.value("uri").unwrap_or("/");
                logs_comment = format!(
                    "Fluent Bit sent HTTP to {scheme}://{host}:{port}{uri} ([OUTPUT] line {}); the agent sends OTLP to the gateway",
                    o.line
                );
            }
            "kinesis_firehose" => {
                let stream = o.value("delivery_stream").unwrap_or("?");
                let region = o.value("region").unwrap_or("?");
                logs_comment = format!(
                    "Fluent Bit wrote to Firehose {stream} in {region} ([OUTPUT] line {}); the gateway's `sinks.logs: {{ kind: firehose, delivery_stream: {stream}, region: {region} }}` does now",
                    o.line
                );
            }
            "stdout" | "null" | "counter" => {
                notes.noted(
                    &o.file,
                    o.line,
                    o.setting(""),
                    "a debugging output; the agent's /metrics counts what it ships",
                );
                continue;
            }
            other => {
                notes.untranslated(&o.file, o.line, o.setting(""), format!("output {other:?}: the agent ships to the edgepipe gateway only, whose sinks (Firehose, Kinesis, OTLP, file) take over"));
                continue;
            }
        }
        for e in &o.entries {
            let k = e.key.to_ascii_lowercase();
            let known = [
                "name",
                "match",
                "match_regex",
                "host",
                "port",
                "tls",
                "logs_uri",
                "uri",
                "delivery_stream",
                "region",
                "format",
            ];
            if known.contains(&k.as_str()) {
                continue;
            }
            let why = match k.as_str() {
                "compress" => "the agent always compresses batches with zstd",
                "metrics_uri" | "traces_uri" => {
                    "the agent sends metrics with remote_write to output.metrics_url"
                }
                k if k.starts_with("tls.") => {
                    "the agent always uses mTLS to the gateway: output.tls"
                }
                k if k.starts_with("retry") => {
                    "the agent retries every batch from its disk queue until a 2xx"
                }
                _ => {
                    "no equivalent in the agent (the gateway's sinks are configured on the gateway)"
                }
            };
            notes.noted(&o.file, e.line, o.setting(&e.key), why);
        }
    }

    agent.header = vec![
        format!(
            "Translated from Fluent Bit config {} by `edge-agent migrate`.",
            file.display()
        ),
        "Settings that were not translated are listed on stderr with their lines.".into(),
    ];
    agent.host_labels = vec![
        (
            "region".into(),
            Commented::new("imds", "from the instance metadata service"),
        ),
        ("az".into(), Commented::new("imds", "")),
        ("instance_type".into(), Commented::new("imds", "")),
    ];
    agent.logs = sources.into_iter().flat_map(|s| s.logs).collect();
    agent.metrics_url = Commented::new(
        format!("{gateway}/api/v1/push"),
        "new: host metrics and the game's metrics, to the gateway",
    );
    agent.logs_url = Commented::new(format!("{gateway}/v1/logs"), logs_comment);
    if gateway.starts_with("https://") || gateway.contains("${") {
        agent.tls = Some((
            DEFAULT_TLS.map(String::from),
            "mTLS to the gateway: where the image's certificates are".into(),
        ));
    }
    Ok(agent)
}

fn is_on(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "yes" | "1")
}

/// A service name from a tag, a path or a parser: letters, digits, `_`, `-`, `.`.
fn service_name(tag: Option<&str>, path: &str, fallback: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
            .trim_matches(['_', '.', '-'])
            .to_owned()
    };
    if let Some(t) = tag {
        let t = clean(t.split('*').next().unwrap_or(""));
        if !t.is_empty() {
            return t;
        }
    }
    let stem = Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    let stem = clean(stem);
    if !stem.is_empty() {
        return stem;
    }
    fallback.to_owned()
}

fn translate_tail(
    s: &Section,
    index: usize,
    parsers: &[Section],
    notes: &mut Notes,
) -> Option<Source> {
    let file = &s.file;
    let Some(path) = s.get("path") else {
        notes.untranslated(file, s.line, s.setting(""), "a tail input without Path");
        return None;
    };
    let tag = s.value("tag").map(str::to_owned);
    let mut template = Log {
        parser: Commented::new("none", ""),
        ..Log::default()
    };
    let mut parser_name: Option<String> = None;
    for e in &s.entries {
        let setting = s.setting(&e.key);
        match e.key.to_ascii_lowercase().as_str() {
            "name" | "path" | "tag" => {}
            "read_from_head" => template.read_from_beginning = is_on(&e.value),
            "parser" => {
                parser_name = Some(e.value.clone());
                match find_parser(parsers, "PARSER", &e.value) {
                    Some(p) => {
                        let parsed = translate_parser(p, notes);
                        template.parser = Commented::new(parsed.parser, parsed.comment);
                        template.pattern = parsed.pattern;
                    }
                    None if e.value.eq_ignore_ascii_case("json") || e.value.eq_ignore_ascii_case("docker") => {
                        template.parser = Commented::new("json", format!("Fluent Bit's stock {} parser", e.value));
                    }
                    None => notes.untranslated(file, e.line, setting, format!("parser {:?} is not in the parsers file (give it with --parsers FILE); lines are kept as text", e.value)),
                }
            }
            "multiline.parser" => {
                for ml in e.value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                    multiline(ml, e, s, &mut template, parsers, notes);
                }
            }
            "multiline" => {
                if is_on(&e.value)
                    && let Some(first) = s.get("parser_firstline")
                {
                    match find_parser(parsers, "PARSER", &first.value).and_then(|p| p.get("regex")).map(|r| onig::translate(&r.value)) {
                        Some(Ok(t)) => template.multiline = Some(Commented::new(t.pattern, format!("Parser_Firstline {}", first.value))),
                        _ => notes.untranslated(file, first.line, s.setting("Parser_Firstline"), format!("parser {:?} is missing or its Regex does not translate", first.value)),
                    }
                }
            }
            "parser_firstline" => {}
            "exclude_path" => notes.untranslated(file, e.line, setting, format!("{:?}: the agent tails every file its glob matches; narrow the path glob instead", e.value)),
            "mem_buf_limit" => notes.noted(file, e.line, setting, "the agent's memory is bounded by itself (about 15 MiB at full speed); backpressure goes to its disk queue (queue.max_bytes)"),
            "buffer_chunk_size" | "buffer_max_size" => notes.noted(file, e.line, setting, "the agent reads with its own buffer; lines over max_line_bytes (64KiB) are split and flagged, not skipped"),
            "skip_long_lines" => notes.noted(file, e.line, setting, "lines over max_line_bytes are split and flagged edge.truncated=true, never skipped"),
            "db" | "db.sync" | "db.locking" | "db.journal_mode" => notes.noted(file, e.line, setting, "positions are kept in the queue directory (queue.dir/positions), committed only once the lines are in the disk queue"),
            "refresh_interval" | "rotate_wait" | "inotify_watcher" | "watcher_interval" => notes.noted(file, e.line, setting, "the agent looks at its files every 250 ms and at once on inotify events; rotated files are drained"),
            "skip_empty_lines" | "docker_mode" | "threaded" | "storage.type" | "key" => notes.noted(file, e.line, setting, "no setting needed in the agent"),
            "exit_on_eof" => notes.untranslated(file, e.line, setting, "the agent is a daemon: it follows files until stopped"),
            _ => notes.untranslated(file, e.line, setting, "no equivalent in the agent"),
        }
    }
    if template.parser.value == "none" && template.multiline.is_none() && parser_name.is_none() {
        notes.noted(
            file,
            s.line,
            s.setting(""),
            "no Parser: lines are kept as text (parser: none), with a level word found in them",
        );
    }
    let mut logs = Vec::new();
    for (i, p) in path
        .value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        if Path::new(p)
            .parent()
            .is_some_and(|d| d.to_string_lossy().contains(['*', '?']))
        {
            notes.untranslated(file, path.line, s.setting("Path"), format!("{p:?}: the agent's glob may have wildcards in the file name only; give one logs entry per directory"));
        }
        let mut log = template.clone();
        log.comments = vec![format!(
            "[INPUT] tail at {}:{}{}",
            file.display(),
            s.line,
            tag.as_deref()
                .map(|t| format!(", Tag {t}"))
                .unwrap_or_default()
        )];
        log.path = p.to_owned();
        let fallback = parser_name
            .clone()
            .unwrap_or_else(|| format!("tail{index}"));
        let mut service = service_name(tag.as_deref(), p, &fallback);
        if i > 0 && tag.is_some() {
            service = format!("{service}-{i}");
        }
        log.service = Commented::new(
            service,
            "service.name on every record: what dashboards filter by",
        );
        logs.push(log);
    }
    Some(Source {
        tag: tag.unwrap_or_else(|| format!("tail.{index}")),
        logs,
    })
}

fn multiline(
    ml: &str,
    e: &Entry,
    s: &Section,
    template: &mut Log,
    parsers: &[Section],
    notes: &mut Notes,
) {
    let file = &s.file;
    let setting = format!("{} {ml}", s.setting(&e.key));
    match ml.to_ascii_lowercase().as_str() {
        "docker" => {
            template.parser = Commented::new("json", "docker's json-file lines; `log` is the message");
            notes.noted(file, e.line, setting, "docker lines are parsed as JSON; lines docker split at 16 KiB are not joined");
        }
        "cri" => {
            template.parser = Commented::new("regex", "the CRI log format (containerd, CRI-O)");
            template.pattern = Some(CRI_PATTERN.to_owned());
            notes.noted(file, e.line, setting, "CRI lines are parsed (time, stream, logtag, log); partial lines (logtag P) are not joined");
        }
        "java" => {
            template.multiline = Some(Commented::new(
                start_except(&["Caused by:", "Suppressed:"]),
                "Java stack traces: indented frames, Caused by: and Suppressed: continue a record",
            ));
        }
        "python" => {
            template.multiline = Some(Commented::new(r"^\S", "Python tracebacks: indented lines continue a record"));
            notes.noted(file, e.line, setting, "a traceback's last line (`ValueError: …`) is not indented and starts a record of its own; set multiline.start to your log line's prefix (e.g. its timestamp) to keep it with its traceback");
        }
        "go" => {
            template.multiline = Some(Commented::new(
                start_except(&["goroutine ", "created by "]),
                "Go panics: indented lines, blank lines and goroutine headers continue a record",
            ));
            notes.noted(file, e.line, setting, "a panic's function lines (`main.main()`) are not indented and start records of their own; set multiline.start to your log line's prefix (e.g. its timestamp) to keep a panic whole");
        }
        _ => match find_parser(parsers, "MULTILINE_PARSER", ml) {
            Some(p) => custom_multiline(p, template, parsers, notes),
            None => notes.untranslated(file, e.line, setting, "not a built-in (docker, cri, java, python, go) and no [MULTILINE_PARSER] has this name"),
        },
    }
}

/// The start rules of a `[MULTILINE_PARSER]` (`rule "start_state" "/re/" "next"`) become
/// the agent's start pattern; continuation rules are implied (any other line continues).
fn custom_multiline(p: &Section, template: &mut Log, parsers: &[Section], notes: &mut Notes) {
    let name = p.value("name").unwrap_or("?").to_owned();
    let mut starts = Vec::new();
    for e in &p.entries {
        let setting = format!("[MULTILINE_PARSER] {name}: {}", e.key);
        match e.key.to_ascii_lowercase().as_str() {
            "name" => {}
            "type" => {
                if !e.value.eq_ignore_ascii_case("regex") {
                    notes.untranslated(
                        &p.file,
                        e.line,
                        setting,
                        format!("type {:?}: only regex rules translate", e.value),
                    );
                }
            }
            "rule" => {
                let parts = quoted_parts(&e.value);
                let [state, re, _next] = parts.as_slice() else {
                    notes.untranslated(
                        &p.file,
                        e.line,
                        setting,
                        "expected rule \"state\" \"/regex/\" \"next_state\"",
                    );
                    continue;
                };
                if state != "start_state" {
                    continue;
                }
                let re = re
                    .strip_prefix('/')
                    .and_then(|r| r.strip_suffix('/'))
                    .unwrap_or(re);
                match onig::translate(re) {
                    Ok(t) => starts.push(t.pattern),
                    Err(why) => notes.untranslated(&p.file, e.line, setting, why),
                }
            }
            "flush_timeout" => notes.noted(
                &p.file,
                e.line,
                setting,
                "the agent completes a record 1 s after its last line (multiline.timeout)",
            ),
            "parser" => {
                if template.parser.value == "none"
                    && let Some(pp) = find_parser(parsers, "PARSER", &e.value)
                {
                    let parsed = translate_parser(pp, notes);
                    template.parser = Commented::new(parsed.parser, parsed.comment);
                    template.pattern = parsed.pattern;
                }
            }
            "key_content" => notes.noted(
                &p.file,
                e.line,
                setting,
                "the agent joins raw lines before parsing them",
            ),
            _ => notes.untranslated(&p.file, e.line, setting, "no equivalent in the agent"),
        }
    }
    match starts.len() {
        0 => notes.untranslated(
            &p.file,
            p.line,
            format!("[MULTILINE_PARSER] {name}"),
            "no start_state rule translated: the source is not joined",
        ),
        1 => {
            template.multiline = Some(Commented::new(
                starts.remove(0),
                format!("[MULTILINE_PARSER] {name}'s start_state"),
            ))
        }
        _ => {
            template.multiline = Some(Commented::new(
                starts
                    .iter()
                    .map(|s| format!("(?:{s})"))
                    .collect::<Vec<_>>()
                    .join("|"),
                format!("[MULTILINE_PARSER] {name}'s start_state rules"),
            ))
        }
    }
}

/// The `"…"` parts of a rule line.
fn quoted_parts(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = value.trim();
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        // A quote inside the regex is escaped as \".
        let mut end = None;
        let bytes = after.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                i += 2;
                continue;
            }
            if bytes[i] == b'"' {
                end = Some(i);
                break;
            }
            i += 1;
        }
        let Some(end) = end else { break };
        parts.push(after[..end].replace("\\\"", "\""));
        rest = &after[end + 1..];
    }
    parts
}

/// The `[PARSER]` or `[MULTILINE_PARSER]` named `name`.
fn find_parser<'p>(parsers: &'p [Section], kind: &str, name: &str) -> Option<&'p Section> {
    parsers.iter().find(|p| {
        p.kind == kind
            && p.value("name")
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// Field names the agent lifts as the level, and as the message.
const LEVEL_NAMES: &[&str] = &["level", "severity", "lvl", "loglevel", "log.level"];
const MESSAGE_NAMES: &[&str] = &["message", "msg", "log"];
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

/// Which of [`LEVELS`] a regex matches, trying the words logs write for each.
fn levels_matched(re: &regex::Regex) -> [bool; 6] {
    let words: [&[&str]; 6] = [
        &["trace", "TRACE", "Trace", "TRC"],
        &["debug", "DEBUG", "Debug", "DBG"],
        &["info", "INFO", "Info", "INF"],
        &[
            "warn", "WARN", "Warn", "warning", "WARNING", "Warning", "WRN",
        ],
        &["error", "ERROR", "Error", "ERR"],
        &["fatal", "FATAL", "Fatal", "critical", "CRITICAL", "CRIT"],
    ];
    words.map(|ws| ws.iter().any(|w| re.is_match(w)))
}

fn translate_filter(f: &Section, sources: &mut [Source], notes: &mut Notes) {
    let file = &f.file;
    let name = f.name();
    let matched: Vec<usize> = match (f.value("match"), f.value("match_regex")) {
        (_, Some(re)) => match regex::Regex::new(re) {
            Ok(re) => (0..sources.len())
                .filter(|&i| re.is_match(&sources[i].tag))
                .collect(),
            Err(e) => {
                notes.untranslated(
                    file,
                    f.line,
                    f.setting("Match_Regex"),
                    format!("does not compile: {e}"),
                );
                return;
            }
        },
        (Some(m), None) => (0..sources.len())
            .filter(|&i| wild_match(m, &sources[i].tag))
            .collect(),
        (None, None) => Vec::new(),
    };
    if matched.is_empty() {
        notes.noted(
            file,
            f.line,
            f.setting(""),
            "matches no translated tail input: nothing to apply it to",
        );
        return;
    }
    if !matches!(name.as_str(), "grep" | "record_modifier" | "modify") {
        notes.untranslated(
            file,
            f.line,
            f.setting(""),
            format!("filter {name:?}: the agent's per-source stages are parse, min_level, drop, sample and tags"),
        );
        return;
    }
    for e in &f.entries {
        let setting = f.setting(&e.key);
        let key = e.key.to_ascii_lowercase();
        if matches!(key.as_str(), "name" | "match" | "match_regex") {
            continue;
        }
        match (name.as_str(), key.as_str()) {
            ("grep", "regex" | "exclude") => {
                let keep = key == "regex";
                let Some((field, pattern)) = e.value.split_once(char::is_whitespace) else {
                    notes.untranslated(file, e.line, setting, "expected `KEY REGEX`");
                    continue;
                };
                let field = field.trim_start_matches('$').to_ascii_lowercase();
                let translated = match onig::translate(pattern.trim()) {
                    Ok(t) => t.pattern,
                    Err(why) => {
                        notes.untranslated(file, e.line, setting, why);
                        continue;
                    }
                };
                let Ok(re) = regex::Regex::new(&translated) else { continue };
                if LEVEL_NAMES.contains(&field.as_str()) {
                    let hit = levels_matched(&re);
                    let kept: Vec<bool> = hit.iter().map(|h| *h == keep).collect();
                    // The kept levels must be all those from one level up.
                    let Some(lowest) = kept.iter().position(|k| *k) else {
                        notes.untranslated(file, e.line, setting, "keeps no level at all");
                        continue;
                    };
                    if kept[lowest..].iter().all(|k| *k) {
                        for &i in &matched {
                            for log in &mut sources[i].logs {
                                log.min_level = Some(Commented::new(LEVELS[lowest], format!("[FILTER] grep {} {}", e.key, e.value)));
                            }
                        }
                        notes.noted(file, e.line, setting, format!("min_level: {}; records without a level are kept, where grep dropped them", LEVELS[lowest]));
                    } else {
                        notes.untranslated(file, e.line, setting, "the levels it keeps are not all those above one level: the agent's min_level cannot say it");
                    }
                } else if MESSAGE_NAMES.contains(&field.as_str()) && !keep {
                    for &i in &matched {
                        for log in &mut sources[i].logs {
                            log.drop.push(Commented::new(translated.clone(), format!("[FILTER] grep Exclude {field}")));
                        }
                    }
                } else if MESSAGE_NAMES.contains(&field.as_str()) {
                    notes.untranslated(file, e.line, setting, "the agent drops records that match (drop:), it cannot keep only those that match; write the opposite as a drop pattern");
                } else {
                    notes.untranslated(file, e.line, setting, format!("the agent's drop patterns and min_level read the message and the level, not {field:?}"));
                }
            }
            ("grep", "logical_op") => notes.noted(file, e.line, setting, "each rule was translated on its own"),
            ("record_modifier", "record") | ("modify", "add" | "set") => {
                let Some((k, v)) = e.value.split_once(char::is_whitespace) else {
                    notes.untranslated(file, e.line, setting, "expected `KEY VALUE`");
                    continue;
                };
                let v = v.trim();
                if v.contains("${HOSTNAME}") || v.contains("${HOST}") {
                    notes.noted(file, e.line, setting, "host.name is on every record's resource already");
                    continue;
                }
                if v.contains("${") {
                    notes.noted(file, e.line, setting, "the agent does not expand variables in tags: the value is kept as written");
                }
                for &i in &matched {
                    for log in &mut sources[i].logs {
                        log.tags.retain(|(tk, _)| tk != k);
                        log.tags.push((k.to_owned(), v.to_owned()));
                    }
                }
            }
            _ => notes.untranslated(file, e.line, setting, "no equivalent in the agent's per-source stages (parse, min_level, drop, sample, tags)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_match_like_fluent_bit() {
        assert!(wild_match("*", "tail.0"));
        assert!(wild_match("kube.*", "kube.var.log"));
        assert!(!wild_match("kube.*", "app.x"));
        assert!(wild_match("a*c", "abbc"));
    }

    #[test]
    fn start_except_keeps_continuations_together() {
        let re =
            regex::Regex::new(&start_except(&["Caused by:", "Suppressed:"])).expect("compiles");
        assert!(re.is_match("2026-01-01 ERROR boom"));
        assert!(re.is_match("java.lang.IllegalStateException: x"));
        assert!(re.is_match("Cause"));
        assert!(re.is_match("Called"));
        assert!(re.is_match("S"));
        assert!(!re.is_match("\tat a.b.C.d(C.java:1)"));
        assert!(!re.is_match("Caused by: java.io.IOException"));
        assert!(!re.is_match("Suppressed: x"));
        assert!(!re.is_match(""));
    }

    #[test]
    fn rules_split_into_their_quoted_parts() {
        assert_eq!(
            quoted_parts(r#""start_state"  "/^\d{4} \"x\"/"  "cont""#),
            vec!["start_state", r#"/^\d{4} "x"/"#, "cont"]
        );
    }

    #[test]
    fn time_formats_the_agent_reads() {
        assert!(time_format_understood("%Y-%m-%dT%H:%M:%S.%LZ"));
        assert!(time_format_understood(
            "%Y-%m-%d %H:%M:%S %z".replace(" %z", "%z").as_str()
        ));
        assert!(!time_format_understood("%d/%b/%Y:%H:%M:%S %z"));
    }
}
