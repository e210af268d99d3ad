//! The `otlp:` key: both receivers on by default on loopback, each can be turned off.
//!
//! ```yaml
//! otlp: { grpc: 127.0.0.1:4317, http: 127.0.0.1:4318 }   # `otlp: off` disables both
//! otlp: { grpc: off }                                     # HTTP only, on its default
//! ```

use std::net::SocketAddr;

use serde::Deserialize;

use super::Validator;
use crate::otlp::{DEFAULT_GRPC, DEFAULT_HTTP, Endpoint, OtlpConfig};

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawOtlp {
    /// `otlp: off` (or `false`).
    Switch(bool),
    Word(String),
    On(RawOtlpOn),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtlpOn {
    grpc: Option<RawEndpoint>,
    http: Option<RawEndpoint>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawEndpoint {
    Switch(bool),
    Text(String),
}

impl Validator<'_> {
    pub(super) fn otlp(&mut self, raw: Option<RawOtlp>) -> OtlpConfig {
        let on = match raw {
            None | Some(RawOtlp::Switch(true)) => RawOtlpOn::default(),
            Some(RawOtlp::Switch(false)) => return OtlpConfig::off(),
            Some(RawOtlp::Word(w)) if w == "off" => return OtlpConfig::off(),
            Some(RawOtlp::Word(w)) => {
                self.problem("otlp", format!("{w:?}: give {{ grpc, http }} or `off`"));
                return OtlpConfig::off();
            }
            Some(RawOtlp::On(on)) => on,
        };
        OtlpConfig {
            grpc: self.otlp_endpoint("otlp.grpc", on.grpc, DEFAULT_GRPC),
            http: self.otlp_endpoint("otlp.http", on.http, DEFAULT_HTTP),
        }
    }

    fn otlp_endpoint(
        &mut self,
        path: &str,
        raw: Option<RawEndpoint>,
        default: &str,
    ) -> Option<Endpoint> {
        let (text, explicit) = match raw {
            None | Some(RawEndpoint::Switch(true)) => (default.to_string(), false),
            Some(RawEndpoint::Switch(false)) => return None,
            Some(RawEndpoint::Text(t)) if t == "off" => return None,
            Some(RawEndpoint::Text(t)) => (self.expand(path, &t), true),
        };
        match text.parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => Some(Endpoint { addr, explicit }),
            Ok(_) => {
                self.problem(
                    path,
                    format!("{text} is not a loopback address: the OTLP receivers have no authentication and must not be reachable from the network"),
                );
                None
            }
            Err(_) => {
                self.problem(path, format!("{text:?} is not an address:port or `off`"));
                None
            }
        }
    }
}
