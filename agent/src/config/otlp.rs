//! The `otlp:` key: both receivers on by default on loopback, each can be turned off.
//!
//! ```yaml
//! otlp: { grpc: 127.0.0.1:4317, http: 127.0.0.1:4318 }   # `otlp: off` disables both
//! otlp: { grpc: off }                                     # HTTP only, on its default
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::Validator;

/// The default gRPC address.
pub const DEFAULT_GRPC: &str = "127.0.0.1:4317";

/// The default HTTP address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:4318";

/// One receiver's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Whether it was given (then failing to bind stops the start).
    pub explicit: bool,
}

/// The validated `otlp:` config: each receiver, or `None` when off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// gRPC.
    pub grpc: Option<Endpoint>,
    /// HTTP.
    pub http: Option<Endpoint>,
}

impl OtlpConfig {
    /// Both off.
    pub fn off() -> Self {
        OtlpConfig {
            grpc: None,
            http: None,
        }
    }

    /// Whether either receiver is on.
    pub fn any(&self) -> bool {
        self.grpc.is_some() || self.http.is_some()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawOtlp {
    /// `otlp: off` (or `false`).
    Switch(bool),
    Word(String),
    /// The receivers by name; an unknown name is a problem at its own key path (a
    /// struct with unknown fields denied would only say that no variant matched).
    On(BTreeMap<String, RawEndpoint>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawEndpoint {
    Switch(bool),
    Text(String),
}

impl Validator<'_> {
    pub(super) fn otlp(&mut self, raw: Option<RawOtlp>) -> OtlpConfig {
        let mut on = match raw {
            None | Some(RawOtlp::Switch(true)) => BTreeMap::new(),
            Some(RawOtlp::Switch(false)) => return OtlpConfig::off(),
            Some(RawOtlp::Word(w)) if w == "off" => return OtlpConfig::off(),
            Some(RawOtlp::Word(w)) => {
                self.problem("otlp", format!("{w:?}: give {{ grpc, http }} or `off`"));
                return OtlpConfig::off();
            }
            Some(RawOtlp::On(on)) => on,
        };
        let grpc = on.remove("grpc");
        let http = on.remove("http");
        for key in on.keys() {
            self.problem(
                format!("otlp.{key}"),
                "unknown key: the OTLP receivers are `grpc` and `http` (an address or `off`)",
            );
        }
        OtlpConfig {
            grpc: self.otlp_endpoint("otlp.grpc", grpc, DEFAULT_GRPC),
            http: self.otlp_endpoint("otlp.http", http, DEFAULT_HTTP),
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
