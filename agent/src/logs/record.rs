//! One log record as the logs path carries it, from parsing to the OTLP batch.

/// Severity, normalized from whatever the source wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Not stated, or not recognised.
    #[default]
    Unknown,
    /// trace
    Trace,
    /// debug
    Debug,
    /// info
    Info,
    /// warn, warning
    Warn,
    /// error, err
    Error,
    /// fatal, critical, panic
    Fatal,
}

impl Level {
    /// The level a word names (`INFO`, `warning`, `E`, `crit`…), case-insensitive.
    pub fn parse(word: &str) -> Level {
        let w = word.trim();
        let eq = |s: &str| w.eq_ignore_ascii_case(s);
        if eq("trace") || eq("trc") || eq("t") {
            Level::Trace
        } else if eq("debug") || eq("dbg") || eq("d") {
            Level::Debug
        } else if eq("info") || eq("inf") || eq("i") || eq("information") || eq("notice") {
            Level::Info
        } else if eq("warn") || eq("warning") || eq("wrn") || eq("w") {
            Level::Warn
        } else if eq("error") || eq("err") || eq("e") {
            Level::Error
        } else if eq("fatal")
            || eq("critical")
            || eq("crit")
            || eq("panic")
            || eq("f")
            || eq("emerg")
            || eq("alert")
        {
            Level::Fatal
        } else {
            Level::Unknown
        }
    }

    /// The lower-case name, as sent.
    pub fn name(self) -> &'static str {
        match self {
            Level::Unknown => "unknown",
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

/// A parsed log record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogRecord {
    /// When the event happened (nanoseconds since the epoch), if the line said so.
    pub timestamp_ns: Option<i64>,
    /// When the agent read it (nanoseconds since the epoch).
    pub observed_ns: i64,
    /// Severity.
    pub level: Level,
    /// The message: the whole line for unparsed text.
    pub message: String,
    /// A trace id, if the line carried one.
    pub trace_id: Option<String>,
    /// Every other field, flattened (`a.b` for nested JSON), values as text.
    pub attributes: Vec<(String, String)>,
    /// The line did not parse with the source's parser and is kept as plain text.
    pub parse_failed: bool,
    /// The line was longer than the maximum and was split; this is one piece.
    pub truncated: bool,
}

/// Where a record came from, as the `source` label of `edge_logs_records_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A tailed file.
    File,
    /// The OTLP receivers.
    Otlp,
}
