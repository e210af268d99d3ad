//! The agent config a migration builds, and how it is printed: the shape of `DESIGN.md`
//! ("Config shapes"), with a comment on every value that came from the old config or was
//! chosen for it.

use std::fmt::Write as _;

/// A value and the comment printed after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Commented {
    /// The value.
    pub value: String,
    /// Printed as `# …` after the value (empty: none).
    pub comment: String,
}

impl Commented {
    /// A value with a comment.
    pub fn new(value: impl Into<String>, comment: impl Into<String>) -> Self {
        Commented {
            value: value.into(),
            comment: comment.into(),
        }
    }
}

/// One `logs:` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// Comment lines printed above the entry (where it came from).
    pub comments: Vec<String>,
    /// `path:`.
    pub path: String,
    /// `service:`.
    pub service: Commented,
    /// `parser:`: json, regex, logfmt or none.
    pub parser: Commented,
    /// `pattern:` of a regex parser.
    pub pattern: Option<String>,
    /// `multiline.start`.
    pub multiline: Option<Commented>,
    /// `min_level:`.
    pub min_level: Option<Commented>,
    /// `drop:` patterns, each with a comment.
    pub drop: Vec<Commented>,
    /// `tags:`.
    pub tags: Vec<(String, String)>,
    /// `read_from: beginning`.
    pub read_from_beginning: bool,
}

/// The `otlp:` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Otlp {
    /// `otlp: off`.
    Off,
    /// `otlp: { grpc, http }`; a protocol not given is off.
    On {
        /// The gRPC address.
        grpc: Option<String>,
        /// The HTTP address.
        http: Option<String>,
    },
}

/// The agent config being built.
#[derive(Clone, Debug, Default)]
pub struct Agent {
    /// Comment lines at the top.
    pub header: Vec<String>,
    /// `host_labels:` (name, value with comment).
    pub host_labels: Vec<(String, Commented)>,
    /// `scrape:` URLs.
    pub scrape: Vec<Commented>,
    /// `otlp:` (`None`: not written, the default).
    pub otlp: Option<(Otlp, String)>,
    /// `statsd:` listen address (`None`: not written, the default); `Some("off")` for off.
    pub statsd: Option<Commented>,
    /// `logs:`.
    pub logs: Vec<Log>,
    /// `output.metrics_url`.
    pub metrics_url: Commented,
    /// `output.logs_url` (only written with logs).
    pub logs_url: Commented,
    /// `output.tls` (cert, key, ca) with its comment.
    pub tls: Option<([String; 3], String)>,
}

/// Quotes a string for YAML when it needs it: single quotes (a backslash stays a
/// backslash, so regexes read as written), `'` doubled.
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:*".contains(c))
        && !s.starts_with(['-', ':', '*', '.'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_owned()
    } else if s.contains("${") && !s.contains(['"', '\\']) {
        // Double quotes, as the shipped configs write variables.
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn comment(c: &str) -> String {
    if c.is_empty() {
        String::new()
    } else {
        format!("   # {}", c.replace('\n', " "))
    }
}

impl Agent {
    /// The config as YAML.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            let _ = writeln!(out, "# {line}");
        }
        if !self.host_labels.is_empty() {
            out.push_str("host_labels:\n");
            for (name, value) in &self.host_labels {
                let _ = writeln!(
                    out,
                    "  {name}: {}{}",
                    quote(&value.value),
                    comment(&value.comment)
                );
            }
        }
        if !self.scrape.is_empty() {
            out.push_str("scrape:\n");
            for url in &self.scrape {
                let _ = writeln!(
                    out,
                    "  - {{ url: {} }}{}",
                    quote(&url.value),
                    comment(&url.comment)
                );
            }
        }
        if let Some((otlp, c)) = &self.otlp {
            match otlp {
                Otlp::Off => {
                    let _ = writeln!(out, "otlp: off{}", comment(c));
                }
                Otlp::On { grpc, http } => {
                    let mut parts = Vec::new();
                    if let Some(g) = grpc {
                        parts.push(format!("grpc: {}", quote(g)));
                    }
                    if let Some(h) = http {
                        parts.push(format!("http: {}", quote(h)));
                    }
                    let _ = writeln!(out, "otlp: {{ {} }}{}", parts.join(", "), comment(c));
                }
            }
        }
        if let Some(statsd) = &self.statsd {
            if statsd.value == "off" {
                let _ = writeln!(out, "statsd: off{}", comment(&statsd.comment));
            } else {
                let _ = writeln!(
                    out,
                    "statsd: {{ listen: {} }}{}",
                    quote(&statsd.value),
                    comment(&statsd.comment)
                );
            }
        }
        if !self.logs.is_empty() {
            out.push_str("logs:\n");
            for log in &self.logs {
                render_log(&mut out, log);
            }
            out.push_str("tokenize:\n");
            let _ = writeln!(
                out,
                "  key_file: {}   # new: PII is tokenized on the host; the image's key lives here",
                super::DEFAULT_KEY_FILE
            );
            out.push_str("  detectors: [email, ipv4, ipv6]\n");
        }
        out.push_str("output:\n");
        let _ = writeln!(
            out,
            "  metrics_url: {}{}",
            quote(&self.metrics_url.value),
            comment(&self.metrics_url.comment)
        );
        if !self.logs.is_empty() {
            let _ = writeln!(
                out,
                "  logs_url: {}{}",
                quote(&self.logs_url.value),
                comment(&self.logs_url.comment)
            );
        }
        if let Some(([cert, key, ca], c)) = &self.tls {
            let _ = writeln!(out, "  tls:{}", comment(c));
            let _ = writeln!(out, "    cert: {}", quote(cert));
            let _ = writeln!(out, "    key: {}", quote(key));
            let _ = writeln!(out, "    ca: {}", quote(ca));
        }
        out
    }
}

fn render_log(out: &mut String, log: &Log) {
    for c in &log.comments {
        let _ = writeln!(out, "  # {c}");
    }
    let _ = writeln!(out, "  - path: {}", quote(&log.path));
    let field = |out: &mut String, key: &str, v: &Commented| {
        let _ = writeln!(out, "    {key}: {}{}", quote(&v.value), comment(&v.comment));
    };
    field(out, "service", &log.service);
    field(out, "parser", &log.parser);
    if let Some(p) = &log.pattern {
        let _ = writeln!(out, "    pattern: {}", quote(p));
    }
    if let Some(m) = &log.multiline {
        let _ = writeln!(
            out,
            "    multiline: {{ start: {} }}{}",
            quote(&m.value),
            comment(&m.comment)
        );
    }
    if let Some(m) = &log.min_level {
        field(out, "min_level", m);
    }
    if !log.drop.is_empty() {
        out.push_str("    drop:\n");
        for d in &log.drop {
            let _ = writeln!(out, "      - {}{}", quote(&d.value), comment(&d.comment));
        }
    }
    if !log.tags.is_empty() {
        out.push_str("    tags:\n");
        for (k, v) in &log.tags {
            let _ = writeln!(out, "      {}: {}", quote(k), quote(v));
        }
    }
    if log.read_from_beginning {
        out.push_str("    read_from: beginning\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_regexes_and_variables_as_written() {
        assert_eq!(quote("game"), "game");
        assert_eq!(quote("/var/log/game/*.log"), "/var/log/game/*.log");
        assert_eq!(quote("on"), "'on'");
        assert_eq!(quote("10"), "'10'");
        assert_eq!(quote(r"^(?P<a>\S+) it's"), r"'^(?P<a>\S+) it''s'");
        assert_eq!(
            quote("${GATEWAY_URL}/v1/logs"),
            "\"${GATEWAY_URL}/v1/logs\""
        );
        assert_eq!(quote(""), "''");
    }
}
