//! Pieces both daemons' YAML configs share: `${VAR}` expansion, durations, sizes, and
//! where a YAML parse error is.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A config that cannot be used, with every problem found, one per line as
/// `file: key.path: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.file, .problems))]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// `(key path, message)`, in key order.
    pub problems: Vec<(String, String)>,
}

fn render(file: &Path, problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(path, message)| format!("{}: {path}: {message}", file.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// Problems found in `file`.
    pub fn new(file: &Path, problems: Vec<(String, String)>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            problems,
        }
    }
}

/// The text of a config file; a file that cannot be read is a problem at `(file)`.
pub fn read_config(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, vec![("(file)".into(), format!("cannot read: {e}"))]))
}

/// The raw (unvalidated) form of a config: unknown keys and wrong types are refused
/// with their line and column.
pub fn parse_raw<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| {
        let (at, message) = yaml_error(&e);
        ConfigError::new(file, vec![(at, message)])
    })
}

/// Reads `file` and validates it with the process environment: [`read_config`], then
/// [`parse_with`].
pub fn load_with<R, W, T>(
    file: &Path,
    wrap: impl FnOnce(Validator<'static>) -> W,
    check: impl FnOnce(&mut W, R) -> T,
) -> Result<T, ConfigError>
where
    R: serde::de::DeserializeOwned,
    W: std::ops::DerefMut<Target = Validator<'static>>,
{
    let text = read_config(file)?;
    parse_with(file, &text, &process_env, wrap, check)
}

/// A variable of the process environment, for `${VAR}`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parses config text into its raw form `R` ([`parse_raw`]) and runs `check` over it
/// with a fresh validator wrapped by `wrap` (a daemon's own validator): the typed config,
/// or every problem found with its key path.
pub fn parse_with<'e, R, W, T>(
    file: &Path,
    text: &str,
    env: &'e dyn Fn(&str) -> Option<String>,
    wrap: impl FnOnce(Validator<'e>) -> W,
    check: impl FnOnce(&mut W, R) -> T,
) -> Result<T, ConfigError>
where
    R: serde::de::DeserializeOwned,
    W: std::ops::DerefMut<Target = Validator<'e>>,
{
    let raw: R = parse_raw(file, text)?;
    let mut validator = wrap(Validator::new(env));
    let config = check(&mut validator, raw);
    let problems = std::mem::take(&mut validator.problems);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::new(file, problems))
    }
}

/// Declares a daemon's validator: a newtype over the shared [`Validator`] that derefs to
/// it, so the daemon adds the checks of its own keys as methods beside the shared ones.
#[macro_export]
macro_rules! daemon_validator {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        $vis struct $name<'a>(pub $crate::config::Validator<'a>);

        impl<'a> ::std::ops::Deref for $name<'a> {
            type Target = $crate::config::Validator<'a>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl ::std::ops::DerefMut for $name<'_> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }
    };
}

/// The shared core of a daemon's config validation: every problem collected with its key
/// path, and the value checks both daemons make (variables, durations, sizes). Each
/// daemon's validator wraps it (by `Deref`) and adds its own keys.
pub struct Validator<'a> {
    /// `(key path, what is wrong)`, in the order found.
    pub problems: Vec<(String, String)>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Validator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl<'a> Validator<'a> {
    /// A validator expanding variables through `env`.
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Validator {
            problems: Vec::new(),
            env,
        }
    }

    /// Records a problem at `path`.
    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push((path.into(), message.into()));
    }

    /// Expands `${VAR}` and `${VAR:-default}` in `value`; an unset variable is a problem
    /// at `path`.
    pub fn expand(&mut self, path: &str, value: &str) -> String {
        let (out, problems) = expand_vars(value, self.env);
        for p in problems {
            self.problem(path, p);
        }
        out
    }

    /// A positive duration (`10s`, `500ms`, `1m`), or `default` when absent; anything
    /// else is a problem at `path` (and `default` is returned).
    pub fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        let value = self.expand(path, value);
        match parse_duration(&value) {
            Some(d) if !d.is_zero() => d,
            _ => {
                self.problem(
                    path,
                    format!("{value:?} is not a duration: use e.g. 10s, 500ms, 1m"),
                );
                default
            }
        }
    }

    /// A number written as one or as text with `${VAR}` (see [`Number`]), or `default`
    /// when absent; text that does not expand to a `T` is a problem at `path` (and
    /// `default` is returned).
    pub fn number<T>(&mut self, path: &str, value: Option<Number<T>>, default: T) -> T
    where
        T: std::str::FromStr,
    {
        match value {
            None => default,
            Some(Number::Value(v)) => v,
            Some(Number::Text(text)) => {
                let expanded = self.expand(path, &text);
                match expanded.trim().parse::<T>() {
                    Ok(v) => v,
                    Err(_) => {
                        self.problem(
                            path,
                            format!(
                                "{expanded:?} (from {text:?}) is not a {}",
                                number_kind::<T>()
                            ),
                        );
                        default
                    }
                }
            }
        }
    }

    /// A positive size (`10MiB`, `512KiB`, `1GB`), or `default` when absent; anything
    /// else is a problem at `path` (and `default` is returned).
    pub fn size(&mut self, path: &str, value: Option<&str>, default: u64) -> u64 {
        let Some(value) = value else { return default };
        let value = self.expand(path, value);
        match parse_size(&value) {
            Some(n) if n > 0 => n,
            _ => {
                self.problem(
                    path,
                    format!("{value:?} is not a size: use e.g. 10MiB, 512KiB, 1GB"),
                );
                default
            }
        }
    }
}

/// A numeric key as written: a YAML number, or text (`"${REPLICAS}"`,
/// `"${BURST:-40000}"`) that is expanded and parsed by [`Validator::number`]. YAML
/// numbers are not strings, so without this a variable could not stand for one.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(untagged)]
pub enum Number<T> {
    /// Written as a number.
    Value(T),
    /// Written as text: expanded, then parsed.
    Text(String),
}

impl<T> From<T> for Number<T> {
    fn from(value: T) -> Self {
        Number::Value(value)
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in `value`; `env` resolves a name. An empty
/// variable counts as unset. Every variable that is unset without a default, or an
/// unterminated `${`, is a problem; the text expanded so far is returned with them.
pub fn expand_vars(value: &str, env: &dyn Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut problems = Vec::new();
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            problems.push(format!("unterminated `${{` in {value:?}"));
            return (out, problems);
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (env(name), default) {
            (Some(v), _) if !v.is_empty() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (_, None) => problems.push(format!(
                "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
            )),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    (out, problems)
}

/// What a number of type `T` is, for a message.
fn number_kind<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    if name.starts_with('f') {
        "number"
    } else if name.starts_with('u') {
        "whole number (0 or more)"
    } else {
        "whole number"
    }
}

/// `10s`, `500ms`, `1m`, `2h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

/// `256MiB`, `1GiB`, `512KiB`, `100MB`, or plain bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// A YAML parse error as `(where, what)`: `line L, column C` (or `(file)`), and its
/// first line without the parser's own position suffix.
pub fn yaml_error(e: &serde_saphyr::Error) -> (String, String) {
    let at = e
        .location()
        .map(|l| format!("line {}, column {}", l.line(), l.column()))
        .unwrap_or_else(|| "(file)".into());
    let message = e.without_snippet().to_string();
    let message = message.lines().next().unwrap_or_default();
    let message = message.rsplit_once(" at line ").map_or(message, |(m, _)| m);
    (at, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_defaults_and_problems() {
        let env = |name: &str| match name {
            "REGION" => Some("eu-west-1".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand_vars("r=${REGION}!", &env),
            ("r=eu-west-1!".into(), vec![])
        );
        assert_eq!(expand_vars("${EMPTY:-x}${NOPE:-y}", &env).0, "xy");
        let (_, problems) = expand_vars("${NOPE}", &env);
        assert!(problems[0].contains("NOPE is not set"), "{problems:?}");
        let (_, problems) = expand_vars("a${REGION", &env);
        assert!(problems[0].contains("unterminated"), "{problems:?}");
    }

    #[test]
    fn numbers_take_variables() {
        #[derive(serde::Deserialize)]
        struct Raw {
            a: Number<u32>,
            b: Number<f64>,
            c: Number<u64>,
            d: Number<u32>,
        }
        let raw: Raw =
            serde_saphyr::from_str("a: 3\nb: \"${RATE}\"\nc: ${NOPE:-40000}\nd: \"${WORD}\"\n")
                .expect("parse");
        let env = |name: &str| match name {
            "RATE" => Some("2.5e4".to_string()),
            "WORD" => Some("three".to_string()),
            _ => None,
        };
        let mut v = Validator::new(&env);
        assert_eq!(v.number("a", Some(raw.a), 0), 3);
        assert_eq!(v.number("b", Some(raw.b), 0.0), 25_000.0);
        assert_eq!(v.number("c", Some(raw.c), 0), 40_000);
        assert_eq!(v.number("d", Some(raw.d), 7), 7);
        assert_eq!(v.number::<u32>("e", None, 9), 9);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert_eq!(v.problems[0].0, "d");
        assert!(v.problems[0].1.contains("\"three\""), "{:?}", v.problems);
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("100MB"), Some(100_000_000));
        assert_eq!(parse_size("12 parsecs"), None);
    }
}
