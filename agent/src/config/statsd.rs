//! The `statsd:` key: on by default on loopback, `statsd: off` to disable.
//!
//! ```yaml
//! statsd: { listen: 127.0.0.1:8125, mappings: [{ match: "srv.*.latency", name: game_action_ack_latency }] }
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use super::Validator;
use crate::statsd::aggregate::Mapping;

/// The default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8125";

/// The validated `statsd:` config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsdConfig {
    /// Where to listen (UDP and TCP).
    pub listen: SocketAddr,
    /// Whether `listen` was given (then failing to bind stops the start).
    pub explicit: bool,
    /// Renames by glob.
    pub mappings: Vec<Mapping>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawStatsd {
    /// `statsd: off` (or `false`).
    Switch(bool),
    Word(String),
    On(RawStatsdOn),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStatsdOn {
    listen: Option<String>,
    #[serde(default)]
    mappings: Vec<RawMapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    #[serde(rename = "match")]
    pattern: String,
    name: String,
}

impl Validator<'_> {
    pub(super) fn statsd(&mut self, raw: Option<RawStatsd>) -> Option<StatsdConfig> {
        let on = match raw {
            None => RawStatsdOn {
                listen: None,
                mappings: Vec::new(),
            },
            Some(RawStatsd::Switch(false)) => return None,
            Some(RawStatsd::Word(w)) if w == "off" => return None,
            Some(RawStatsd::Switch(true)) => RawStatsdOn {
                listen: None,
                mappings: Vec::new(),
            },
            Some(RawStatsd::Word(w)) => {
                self.problem(
                    "statsd",
                    format!("{w:?}: give {{ listen, mappings }} or `off`"),
                );
                return None;
            }
            Some(RawStatsd::On(on)) => on,
        };
        let explicit = on.listen.is_some();
        let text = on.listen.map_or_else(
            || DEFAULT_LISTEN.to_string(),
            |l| self.expand("statsd.listen", &l),
        );
        let listen = match text.parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => a,
            Ok(_) => {
                self.problem(
                    "statsd.listen",
                    format!("{text} is not a loopback address: statsd has no authentication and must not be reachable from the network"),
                );
                return None;
            }
            Err(_) => {
                self.problem("statsd.listen", format!("{text:?} is not an address:port"));
                return None;
            }
        };
        let mut mappings = Vec::new();
        for (i, m) in on.mappings.into_iter().enumerate() {
            let path = format!("statsd.mappings[{i}]");
            if m.pattern.is_empty() {
                self.problem(format!("{path}.match"), "an empty pattern");
            }
            let name = crate::statsd::aggregate::sanitize(&m.name, true);
            if name != m.name || !edge_schema::names::is_valid_metric_name(&m.name) {
                self.problem(
                    format!("{path}.name"),
                    format!("{:?} is not a valid metric name", m.name),
                );
            }
            mappings.push(Mapping {
                pattern: m.pattern,
                name: m.name,
            });
        }
        Some(StatsdConfig {
            listen,
            explicit,
            mappings,
        })
    }
}
