//! The `tokenize:` block both daemons read, with the same shape and the same checks:
//!
//! ```yaml
//! tokenize: { key_file: /etc/edge-agent/tokenize.key, detectors: [email, ipv4, ipv6, { name: player_id, pattern: 'p-[0-9]{6,}', action: tokenize }] }
//! ```

use std::path::PathBuf;

use edge_schema::config::Validator;
use serde::Deserialize;

use crate::{Action, BUILTINS, DetectorSpec};

/// The raw form of the block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenize {
    key_file: Option<String>,
    #[serde(default)]
    detectors: Vec<RawDetector>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDetector {
    Builtin(String),
    Custom {
        name: String,
        pattern: String,
        #[serde(default = "tokenize_action")]
        action: String,
    },
}

fn tokenize_action() -> String {
    Action::Tokenize.name().into()
}

/// The validated block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenizeConfig {
    /// The key file, if given.
    pub key_file: Option<PathBuf>,
    /// The detectors, in order.
    pub detectors: Vec<DetectorSpec>,
}

impl RawTokenize {
    /// Checks the block found at `path` (`tokenize`), every problem recorded in `v` with
    /// its key path.
    pub fn validate(self, v: &mut Validator<'_>, path: &str) -> TokenizeConfig {
        let key_file = self
            .key_file
            .map(|k| PathBuf::from(v.expand(&format!("{path}.key_file"), &k)));
        let actions = [Action::Tokenize, Action::Redact, Action::Drop].map(Action::name);
        let mut detectors = Vec::new();
        for (i, d) in self.detectors.into_iter().enumerate() {
            let at = format!("{path}.detectors[{i}]");
            match d {
                RawDetector::Builtin(name) => {
                    if !BUILTINS.contains(&name.as_str()) {
                        v.problem(
                            &at,
                            format!(
                                "{name:?} is not a built-in detector ({}); give {{ name, pattern, action }} for your own",
                                BUILTINS.join(", ")
                            ),
                        );
                    }
                    detectors.push(DetectorSpec {
                        name,
                        pattern: None,
                        action: Action::Tokenize,
                    });
                }
                RawDetector::Custom {
                    name,
                    pattern,
                    action,
                } => {
                    let action = match action.parse::<Action>() {
                        Ok(a) if actions.contains(&action.as_str()) => a,
                        _ => {
                            v.problem(
                                format!("{at}.action"),
                                format!("{action:?} is not one of {}", actions.join(", ")),
                            );
                            Action::Tokenize
                        }
                    };
                    if pattern.is_empty() {
                        v.problem(format!("{at}.pattern"), "must not be empty");
                    }
                    detectors.push(DetectorSpec {
                        name,
                        pattern: Some(pattern),
                        action,
                    });
                }
            }
        }
        TokenizeConfig {
            key_file,
            detectors,
        }
    }
}
